"""Store throughput per lake backend and fleet query times (DuckDB over Arrow datasets of the lake).

Backends: local disk, Azurite (Azure Blob emulator, npm) and moto_server (S3, PyPI), both started
here on free loopback ports. Emulators run on this machine, so object-storage figures measure the
client path (serialise, HTTP upload, list) plus the emulator, not Azure or S3 themselves.

    python bench/bench_lake.py [--rows 400000] [--batch 100000] [--sites 20] [--minutes 60]
                               [--backends local,azurite,s3]

Prints one line per backend: ``store <backend>: N rows in F files, R rows/s, M MB/s`` and one line
per fleet query: ``fleet <backend> <query>: S s``.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from collector.lake import Lake, LakeSettings  # noqa: E402
from collector.schema import SAMPLES_SCHEMA  # noqa: E402
from collector.store import Store  # noqa: E402
from hciwatch.fleet import fleet_views  # noqa: E402
from hciwatch.query import run_query  # noqa: E402

AZ_ACCOUNT = "devstoreaccount1"
AZ_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
QUERIES = {
    "count": "SELECT count(*) FROM samples",
    "per-site aggregate": "SELECT site, count(DISTINCT host), sum(value) FROM samples GROUP BY site",
    "ip_conflicts": "SELECT site, count(*) FROM ip_conflicts GROUP BY site",
    "pool_usage": "SELECT site, pool, max(used) FROM pool_usage GROUP BY ALL",
    "congestion_signals": (
        "SELECT site, count(*) FROM congestion_signals WHERE pfc_pause_frames_per_sec > 5 GROUP BY site"
    ),
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(argv: list[str], port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"{argv[0]} did not start")


def _samples(rows: int, hosts: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    ts = (np.int64(1_795_200_000_000) + np.arange(rows, dtype=np.int64) // hosts * 15_000).astype("datetime64[ms]")
    host = pa.array([f"hci-node-{i % hosts:02d}" for i in range(rows)]).dictionary_encode()
    return pa.table(
        {
            "ts": pa.array(ts).cast(SAMPLES_SCHEMA.field("ts").type),
            "source": pa.array(["windows"] * rows).dictionary_encode(),
            "host": host,
            "metric": pa.array(["pfc.rx_pause_frames_total"] * rows).dictionary_encode(),
            "labels": pa.array([[("nic", "SMB1")]] * rows, pa.map_(pa.string(), pa.string())),
            "value": pa.array(rng.random(rows) * 1000),
        }
    ).cast(SAMPLES_SCHEMA)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=400_000, help="rows written per backend (store throughput)")
    ap.add_argument("--batch", type=int, default=100_000, help="rows per flush")
    ap.add_argument("--sites", type=int, default=20, help="sites in the fleet lake")
    ap.add_argument("--minutes", type=int, default=60, help="minutes of data per site")
    ap.add_argument("--backends", default="local,azurite,s3")
    args = ap.parse_args()
    sys.path.insert(0, str(REPO))
    from tests.lake.fleet_synth import write_fleet

    work = Path(tempfile.mkdtemp(prefix="bench-lake-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        lakes: dict[str, tuple[str, LakeSettings]] = {}
        for backend in args.backends.split(","):
            if backend == "local":
                lakes[backend] = (str(work / "local"), LakeSettings())
            elif backend == "azurite":
                port = _free_port()
                binary = REPO / "tools" / "azurite" / "node_modules" / ".bin" / "azurite-blob"
                argv = [str(binary), "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location"]
                procs.append(_start([*argv, str(work / "az"), "--skipApiVersionCheck", "--loose", "--silent"], port))
                import pyarrow.fs as pafs

                kw: dict[str, Any] = {"blob_storage_authority": f"127.0.0.1:{port}", "blob_storage_scheme": "http"}
                pafs.AzureFileSystem(account_name=AZ_ACCOUNT, account_key=AZ_KEY, **kw).create_dir("bench")
                import os

                os.environ["BENCH_AZ"] = (
                    f"AccountName={AZ_ACCOUNT};AccountKey={AZ_KEY};BlobEndpoint=http://127.0.0.1:{port}/{AZ_ACCOUNT}"
                )
                lakes[backend] = ("az://bench/lake", LakeSettings.model_validate({"connection_string": "env:BENCH_AZ"}))
            elif backend == "s3":
                port = _free_port()
                procs.append(_start([str(Path(sys.executable).parent / "moto_server"), "-p", str(port)], port))
                import pyarrow.fs as pafs

                endpoint = f"http://127.0.0.1:{port}"
                pafs.S3FileSystem(
                    access_key="k", secret_key="s", endpoint_override=endpoint, allow_bucket_creation=True
                ).create_dir("bench")
                import os

                os.environ["BENCH_S3_ID"], os.environ["BENCH_S3_SECRET"] = "k", "s"
                lakes[backend] = (
                    "s3://bench/lake",
                    LakeSettings.model_validate(
                        {
                            "endpoint": endpoint,
                            "access_key_id": "env:BENCH_S3_ID",
                            "secret_access_key": "env:BENCH_S3_SECRET",
                            "region": "us-east-1",
                        }
                    ),
                )
        table = _samples(args.rows, 16, 1)
        for backend, (url, settings) in lakes.items():
            lake = Lake.open(url, settings)
            store = Store(work / f"data-{backend}", site="bench", lake=lake, batch_rows=args.batch)
            t = time.perf_counter()
            for i in range(0, args.rows, args.batch):
                store.append("samples", table.slice(i, args.batch))
            store.flush()
            dt = time.perf_counter() - t
            mb = store.stats.bytes_written / 1e6
            print(
                f"store {backend}: {args.rows} rows in {store.stats.files_written} files, "
                f"{args.rows / dt:,.0f} rows/s, {mb / dt:.1f} MB/s ({mb:.1f} MB)"
            )
        for backend, (url, settings) in lakes.items():
            lake = Lake.open(url.replace("/lake", "/fleet") if "://" in url else str(work / "fleet"), settings)
            t = time.perf_counter()
            rows = write_fleet(lake, args.sites, work / f"fleet-{backend}", minutes=args.minutes)
            print(f"fleet {backend} ingest: {args.sites} sites, {rows} rows, {time.perf_counter() - t:.2f} s")
            for name, sql in QUERIES.items():
                t = time.perf_counter()
                result = run_query(Path("."), sql, extra_views=fleet_views(lake), lake=lake)
                print(f"fleet {backend} {name}: {time.perf_counter() - t:.2f} s ({result.table.num_rows} rows)")
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

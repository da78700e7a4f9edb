"""The store suite against every lake backend: local disk, Azurite (Azure Blob) and moto_server (S3).

Each object-storage row talks HTTP to a real emulator started by a fixture on a free loopback
port (tests/fixtures/object_stores.py); credentials reach the store as ``env:`` secret references,
as a deployment gives them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from collector.config import StoreSettings
from collector.errors import ConfigError, StoreError
from collector.lake import Lake, LakeSettings
from collector.schema import Alert, AlertKind, AlertStatus, Sample, Severity, alerts_table, samples_table
from collector.store import Store
from collector.store_read import StoreReader
from collector.wal import undo_uncommitted_flushes
from tests.fixtures.object_stores import ObjectStore

T0 = datetime(2026, 11, 20, 22, 0, tzinfo=UTC)
LakeFactory = Callable[[], Lake]


def _rows(n: int, start: datetime = T0, host: str = "h") -> pa.Table:
    return samples_table(
        [
            Sample(start + timedelta(minutes=i), "windows", f"{host}{i % 3}", "net.bytes_received_total", float(i), ())
            for i in range(n)
        ]
    )


@pytest.fixture(params=["local", "azurite", "s3"])
def make_lake(request: pytest.FixtureRequest, tmp_path: Path) -> LakeFactory:
    """A factory of lakes on one backend; every lake of one test shares one root (a fleet's lake)."""
    if request.param == "local":
        root = tmp_path / "lake"
        return lambda: Lake.open(str(root))
    request.applymarker(pytest.mark.integration)
    return _lakes_on(request.getfixturevalue("azurite" if request.param == "azurite" else "moto_s3"))


def _lakes_on(server: ObjectStore) -> LakeFactory:
    """Lakes on a new bucket of ``server``."""
    url = server.url(server.new_bucket())
    settings = LakeSettings.model_validate({"url": url, **server.lake_settings()})
    return lambda: Lake.open(url, settings)


def _store(lake: Lake, tmp_path: Path, site: str, **kw: object) -> Store:
    return Store(tmp_path / f"data-{site}", site=site, lake=lake, **kw)  # type: ignore[arg-type]


def test_writes_the_site_layout_and_reads_back(make_lake: LakeFactory, tmp_path: Path) -> None:
    lake = make_lake()
    store = _store(lake, tmp_path, "east", writer="node-1")
    store.append("samples", _rows(240))  # crosses midnight: two partitions
    written = store.flush()
    rel = sorted(str(p)[len(lake.root) + 1 :] for p in written)
    assert [r.rsplit("/", 1)[0] for r in rel] == [
        "samples/site=east/date=2026-11-20",
        "samples/site=east/date=2026-11-21",
    ]
    assert all(r.rsplit("/", 1)[1].startswith("part-node_1-") for r in rel)
    reader = StoreReader(tmp_path / "nowhere", lake=lake)
    table = reader.read_range("samples")
    assert table.num_rows == 240
    assert set(table.column("site").to_pylist()) == {"east"}
    day2 = reader.read_range("samples", T0 + timedelta(hours=2))
    assert day2.num_rows == 120
    # the writer's own views (the detectors' bootstrap reads these)
    con = store.connect()
    assert con.execute("SELECT count(*), count(DISTINCT date), min(site) FROM samples").fetchone() == (240, 2, "east")
    assert store.stats.files_written == 2 and store.stats.bytes_written > 0


def test_two_sites_and_two_writers_share_a_lake_without_collisions(make_lake: LakeFactory, tmp_path: Path) -> None:
    east_a = _store(make_lake(), tmp_path, "east", writer="a")
    east_b = Store(tmp_path / "data-east-b", site="east", lake=make_lake(), writer="a")  # same writer id, restarted
    west = _store(make_lake(), tmp_path, "west", writer="a")
    for st, host in ((east_a, "e"), (east_b, "e"), (west, "w")):
        st.append("samples", _rows(30, host=host))  # same first timestamp and sequence number
        st.flush()
    reader = StoreReader(tmp_path / "nowhere", lake=make_lake())
    batches = [f for f in reader.files("samples") if not f.endswith("/part-empty.parquet")]
    assert len(batches) == 3  # same writer id, first timestamp and sequence number: still three files
    con = reader.sandbox(threads=1, max_memory="256MB")
    rows = con.execute("SELECT site, count(*) FROM samples GROUP BY site ORDER BY site").fetchall()
    assert rows == [("east", 60), ("west", 30)]
    only_west = StoreReader(tmp_path / "nowhere", lake=make_lake(), sites={"west"})
    assert only_west.read_range("samples").num_rows == 30


def test_retention_deletes_only_its_own_sites_old_days(make_lake: LakeFactory, tmp_path: Path) -> None:
    east = _store(make_lake(), tmp_path, "east", retention_days=2)
    west = _store(make_lake(), tmp_path, "west", retention_days=2)
    for st in (east, west):
        for d in range(4):
            st.append("samples", _rows(10, T0 - timedelta(days=d)))
        st.flush()
    assert east.apply_retention(now=T0) == 1  # 2026-11-17 (older than 2 days before 11-20)
    reader = StoreReader(tmp_path / "nowhere", lake=make_lake())
    dates = reader.lake.files("samples")
    days = {(f.site, f.date) for f in dates}
    assert ("east", "2026-11-17") not in days and ("west", "2026-11-17") in days
    assert ("east", "1970-01-01") in days  # the empty partition stays


def test_alerts_history_and_extent_through_the_lake(make_lake: LakeFactory, tmp_path: Path) -> None:
    store = _store(make_lake(), tmp_path, "east")
    alert = Alert(
        fingerprint="f" * 16,
        kind=AlertKind.DUPLICATE_IP,
        status=AlertStatus.FIRING,
        severity=Severity.SEV1,
        starts_at=T0,
        resource={"site": "east", "network": "n", "ip": "10.0.0.1"},
        summary="dup",
        ts=T0,
    )
    store.write_now("alerts", alerts_table([alert]), tag="o1")
    store.append("samples", _rows(5))
    store.flush()
    reader = StoreReader(tmp_path / "nowhere", lake=make_lake())
    [got] = reader.alert_history()
    assert got.fingerprint == alert.fingerprint and got.resource["site"] == "east"
    assert reader.extent() == (T0, T0 + timedelta(minutes=4))
    con = reader.window(T0, T0 + timedelta(minutes=2))
    assert con.execute("SELECT count(*) FROM samples").fetchone() == (3,)


def test_files_of_an_uncommitted_flush_are_undone_in_the_lake(make_lake: LakeFactory, tmp_path: Path) -> None:
    lake = make_lake()
    store = _store(lake, tmp_path, "east")
    store.append("samples", _rows(10))
    store.flush(tag="w5")
    store.append("samples", _rows(10, T0 + timedelta(hours=1)))
    store.flush(tag="w9")  # its checkpoint never committed
    assert undo_uncommitted_flushes(tmp_path / "data-east", 5, lake=lake, site="east") == 1
    assert StoreReader(tmp_path / "nowhere", lake=make_lake()).read_range("samples").num_rows == 10


# object storage only: local write failures (ENOSPC, EMFILE, EROFS) are tests/collector/test_store_faults.py
@pytest.mark.integration
@pytest.mark.parametrize("backend", ["azurite", "moto_s3"])
def test_a_failed_upload_keeps_the_rows_for_the_next_flush(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    make_lake = _lakes_on(request.getfixturevalue(backend))
    lake = make_lake()
    store = _store(lake, tmp_path, "east")
    broken = Lake(lake.fs, "no-such-bucket-" + "x" * 8 + "/p", url="broken", local=False)
    store.lake = broken
    store.append("samples", _rows(10))
    with pytest.raises(StoreError):
        store.flush()
    assert store.buffered_rows() == 10 and not store.write_fault.ok
    store.lake = lake
    store.flush()
    assert store.write_fault.ok
    assert StoreReader(tmp_path / "nowhere", lake=make_lake()).read_range("samples").num_rows == 10


def test_the_layout_before_sites_is_still_read_next_to_the_new_one(tmp_path: Path) -> None:
    old = Store(tmp_path)  # a store without a site: what earlier versions wrote
    old.append("samples", _rows(20))
    old.flush()
    new = Store(tmp_path, site="east")
    new.append("samples", _rows(10, T0 + timedelta(hours=1)))
    new.flush()
    reader = StoreReader(tmp_path)
    table = reader.read_range("samples")
    sites = table.column("site").to_pylist()
    assert (sites.count("east"), sites.count(None), len(sites)) == (10, 20, 30)
    # trusted SQL (globs per layout) and the catalog agree
    con = reader.window(None, None)
    assert con.execute("SELECT count(*), count(site) FROM samples").fetchone() == (30, 10)
    assert new.connect().execute("SELECT count(*) FROM samples").fetchone() == (30,)


def test_lake_settings_refuse_what_cannot_work(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown lake scheme"):
        StoreSettings.model_validate({"lake": {"url": "gs://bucket/x"}})
    with pytest.raises(ConfigError, match="names no storage account"):
        Lake.open("az://container/prefix")
    with pytest.raises(ConfigError, match="HCIWATCH_NOT_SET"):
        Lake.open("az://c/p", LakeSettings(account_name="a", account_key="env:HCIWATCH_NOT_SET"))
    with pytest.raises(StoreError, match="needs a site"):
        Store(tmp_path, lake=Lake(Lake.local_dir(tmp_path).fs, str(tmp_path), url="s3://x", local=False))


def test_check_config_reports_a_lake_it_cannot_open(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from hciwatch.cli import main

    cfg = tmp_path / "config.toml"
    cfg.write_text(
        f'data_dir = "{tmp_path / "data"}"\n[api]\nallow_unauthenticated = true\n'
        '[store.lake]\nurl = "az://container/prefix"\naccount_key = "env:HCIWATCH_TEST_UNSET_KEY"\n'
    )
    assert main(["check-config", "--config", str(cfg)]) == 2
    assert "store.lake.account_key: environment variable HCIWATCH_TEST_UNSET_KEY is not set" in capsys.readouterr().err
    cfg.write_text(
        f'data_dir = "{tmp_path / "data"}"\n[api]\nallow_unauthenticated = true\n[store.lake]\nurl = "az://c/p"\n'
    )
    assert main(["check-config", "--config", str(cfg)]) == 2
    assert "names no storage account" in capsys.readouterr().err


def test_readers_of_the_data_dir_follow_the_store_to_its_lake(
    make_lake: LakeFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The service's own API, report and ``sql --data-dir`` read its site where the store writes."""
    from hciwatch.cli import main

    lake = make_lake()
    other = _store(make_lake(), tmp_path, "west")
    other.append("samples", _rows(7))
    other.flush()
    store = _store(lake, tmp_path, "east")
    store.append("samples", _rows(12))
    store.flush()
    reader = StoreReader(tmp_path / "data-east")
    assert reader.read_range("samples").num_rows == 12  # its own site only
    assert "lake.json" in {p.name for p in (tmp_path / "data-east").iterdir()}
    sql = "SELECT site, count(*) AS n FROM samples GROUP BY site"
    assert main(["sql", "--data-dir", str(tmp_path / "data-east"), "--format", "csv", sql]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == ["east,12"]

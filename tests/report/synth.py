"""A synthetic store shaped like a real site, written straight to Parquet (no parsing), for the
report's size and downsampling tests: N hosts' PFC and SMB counters at a scrape interval, a VIP
pool that leaks at a known rate, and many alert changes with bulky evidence.

The lab (``lab``) makes real payloads but replaying 48 h of them takes minutes; the
report reads only the stored tables, so this builds those tables directly, in a second.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

from analytics.views import analyst_views
from collector.config import NetworkSettings
from collector.schema import (
    SAMPLES_SCHEMA,
    TS_TYPE,
    Alert,
    AlertKind,
    AlertStatus,
    IpObservation,
    OwnerKind,
    Severity,
    alerts_table,
    fingerprint,
    ip_observations_table,
)
from collector.store import Store

START = datetime(2026, 11, 16, tzinfo=UTC)
NETWORK = {
    "name": "vnet-synth",
    "vip_pool_start": "10.50.0.200",
    "vip_pool_end": "10.50.0.231",
    "k8s_node_ip_pool_start": "10.50.0.20",
    "k8s_node_ip_pool_end": "10.50.0.59",
    "ip_address_prefix": "10.50.0.0/24",
    "gateway": "10.50.0.1",
    "clusters": ["mgmt", "wl-a"],
    "management_cluster": "mgmt",
}


@dataclass(frozen=True)
class SynthSite:
    data_dir: Path
    start: datetime
    end: datetime
    hosts: list[str]
    vip_start_used: int
    vip_leak_per_hour: float
    vip_size: int
    samples: int


def _samples(hosts: list[str], t_ms: np.ndarray, nics: int, prios: int, rng: np.random.Generator) -> pa.Table:
    series: list[tuple[str, str, list[tuple[str, str]], float]] = []
    for h in hosts:
        for n in range(nics):
            for p in range(prios):
                for d in ("rx", "tx"):
                    series.append((h, f"pfc.{d}_pause_frames_total", [("nic", f"nic{n}"), ("priority", str(p))], 0.5))
        for share in range(2):
            series.append((h, "smb.client.requests_total", [("share", f"s{share}")], 200.0))
            series.append((h, "smb.client.request_seconds_total", [("share", f"s{share}")], 0.2))
    n_t = t_ms.size
    cols_ts, cols_host, cols_metric, cols_val = [], [], [], []
    offsets = [0]
    keys: list[str] = []
    items: list[str] = []
    dt_s = float(np.median(np.diff(t_ms))) / 1000 if n_t > 1 else 60.0
    for host, metric, labels, rate in series:
        inc = rng.poisson(rate * dt_s, n_t).astype(np.float64)
        cols_ts.append(t_ms)
        cols_host.append(np.full(n_t, host, dtype=object))
        cols_metric.append(np.full(n_t, metric, dtype=object))
        cols_val.append(np.cumsum(inc))
        for _ in range(n_t):
            for k, v in labels:
                keys.append(k)
                items.append(v)
            offsets.append(len(keys))
    # the stubs accept only int64 offsets here; a map's offsets are int32
    labels_arr = pa.MapArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(keys), pa.array(items))  # type: ignore[call-overload]
    return pa.table(
        {
            "ts": pa.array(np.concatenate(cols_ts), pa.int64()).cast(TS_TYPE),
            "source": pa.array(["windows"] * (n_t * len(series))).dictionary_encode(),
            "host": pa.array(np.concatenate(cols_host), pa.string()).dictionary_encode(),
            "metric": pa.array(np.concatenate(cols_metric), pa.string()).dictionary_encode(),
            "labels": labels_arr,
            "value": pa.array(np.concatenate(cols_val), pa.float64()),
        },
        schema=SAMPLES_SCHEMA,
    )


def _observations(start: datetime, hours: float, used0: int, leak_per_h: float) -> pa.Table:
    first = int(ipaddress.IPv4Address(NETWORK["vip_pool_start"]))
    obs = []
    t = start
    while t < start + timedelta(hours=hours):
        held = used0 + int(leak_per_h * (t - start).total_seconds() / 3600)
        for i in range(held):
            obs.append(
                IpObservation(
                    ts=t,
                    ip=str(ipaddress.IPv4Address(first + i)),
                    owner_kind=OwnerKind.SERVICE,
                    owner=f"ns/svc-{i}",
                    source="k8s",
                    cluster="wl-a",
                    network=str(NETWORK["name"]),
                )
            )
        t += timedelta(minutes=5)
    return ip_observations_table(obs)


def _alerts(start: datetime, hours: float, hosts: list[str], incidents: int) -> pa.Table:
    changes = []
    span = timedelta(hours=hours) / (incidents + 1)
    bulky = {
        h: {
            "signals": {
                s: {"value": 1.5, "baseline": 0.5, "spread": 0.1, "z": 10.0, "unit": "frames/s"}
                for s in ("pfc_pause_frames", "rdma_errors", "smb_latency", "nic_discards")
            },
            "pfc_pause_frames_by_nic_priority": {
                f"nic{n} prio {p} {d}": 1.0 for n in range(2) for p in range(8) for d in ("rx", "tx")
            },
        }
        for h in hosts
    }
    for i in range(incidents):
        resource = {"host": hosts[i % len(hosts)], "n": str(i)}
        fp = fingerprint(AlertKind.EASTWEST_CONGESTION.value, resource)
        t0 = start + span * (i + 1)
        ev = {"hosts": [resource["host"]], "onset": None, "per_host": bulky}
        changes.append(
            Alert(
                fingerprint=fp,
                kind=AlertKind.EASTWEST_CONGESTION,
                status=AlertStatus.FIRING,
                severity=Severity.SEV2,
                starts_at=t0,
                resource=resource,
                summary=f"synthetic {i}",
                evidence=ev,
                runbook="check PFC " * 50,
                ts=t0,
            )
        )
        changes.append(
            Alert(
                fingerprint=fp,
                kind=AlertKind.EASTWEST_CONGESTION,
                status=AlertStatus.RESOLVED,
                severity=Severity.SEV2,
                starts_at=t0,
                resource=resource,
                summary=f"synthetic {i}",
                evidence=ev,
                runbook="check PFC " * 50,
                ends_at=t0 + span / 2,
                ts=t0 + span / 2,
            )
        )
    return alerts_table(changes)


def write_site(
    data_dir: Path,
    *,
    hours: float = 48.0,
    hosts: int = 4,
    interval_s: int = 60,
    nics: int = 2,
    prios: int = 8,
    incidents: int = 150,
    seed: int = 1,
) -> SynthSite:
    """Write the synthetic store; returns what a correct report must find in it."""
    rng = np.random.default_rng(seed)
    names = [f"hci-node-{i + 1:02d}" for i in range(hosts)]
    start_ms = int(START.timestamp() * 1000)
    t_ms = np.arange(start_ms, start_ms + int(hours * 3_600_000), interval_s * 1000, dtype=np.int64)
    store = Store(data_dir, batch_rows=10_000_000, extra_views=analyst_views([NetworkSettings.model_validate(NETWORK)]))
    samples = _samples(names, t_ms, nics, prios, rng)
    store.append("samples", samples)
    used0, leak = 4, 0.25
    store.append("ip_observations", _observations(START, hours, used0, leak))
    store.append("alerts", _alerts(START, hours, names, incidents))
    store.close()
    store.write_catalog()
    (data_dir / "ingest-summary.json").write_text(json.dumps({"records_read": 1, "records_rejected": 0}))
    return SynthSite(data_dir, START, START + timedelta(hours=hours), names, used0, leak, 32, samples.num_rows)

"""Takeover time on a fleet lake, for ``bench/bench_fleet.py --takeover-hook tests.lake.takeover_hook:measure``.

The bench writes its simulated fleet into the lake and calls :func:`measure` with the lake's URL
and settings. One site's domain is owned by instance ``bench-a``, which then stops renewing (as
after ``kill -9``: nothing is released); ``bench-b`` takes the lease when it expires, loads the
lifecycle state and runs its first detector pass over the site's history in the lake (the
bootstrap window read once). The result is kill → that first pass done, in seconds: the 15 s
lease (Azure's minimum) plus the bootstrap read of one site.

Leases live in Azure Blob only: on a local or S3 lake the result is NaN.
"""

from __future__ import annotations

import math
import tempfile
import time
import tomllib
from datetime import UTC, datetime
from pathlib import Path

from collector.domains import FleetSettings
from collector.lake import Lake, LakeSettings
from collector.store import Store
from hciwatch.config import parse_config
from hciwatch.fleet import read_site_configs
from hciwatch.ownership import DomainOwnership
from hciwatch.pipeline import Pipeline

LEASE_S = 15


def _instance(name: str, url: str, settings: LakeSettings, domain: str) -> DomainOwnership:
    fleet = FleetSettings(
        enabled=True, instance=name, lease_duration=LEASE_S, renew_interval=1.0, member_ttl=3.0, peers=[name]
    )
    return DomainOwnership.from_settings(fleet, [domain], url, settings)


def measure(url: str, settings: LakeSettings) -> float:
    """Seconds from the owner's death to the new owner's first detector pass (NaN off Azure)."""
    if not url.startswith(("az://", "abfs://", "abfss://")):
        return math.nan
    lake = Lake.open(url, settings)
    site = sorted(read_site_configs(lake))[0]
    text = f'[site]\nname = "{site}"\n'
    cfg = parse_config(tomllib.loads(text), text, file="<takeover-hook>")
    with tempfile.TemporaryDirectory(prefix="takeover-") as tmp:
        store = Store(Path(tmp), auto_flush=False, site=site, lake=lake)
        con = store.connect()
        row = con.execute("SELECT max(ts) FROM samples").fetchone()
        con.close()
        now = row[0] if row and row[0] is not None else datetime.now(UTC)
        a = _instance("bench-a", url, settings, site)
        a.tick()
        assert a.owns(site), "the first owner could not take a fresh lease"
        a.save_state(site, b"")
        killed = time.monotonic()  # bench-a stops renewing: a dead owner
        b = _instance("bench-b", url, settings, site)
        while True:
            b.tick()
            if b.owns(site):
                break
            time.sleep(0.5)
        pipe = Pipeline(cfg, store, bootstrap_from_store=True)
        pipe.rebuild_from_store(b.load_state(site))
        pipe.evaluate(now)
        took = time.monotonic() - killed
        pipe.close()
        b.release_all()
    return took

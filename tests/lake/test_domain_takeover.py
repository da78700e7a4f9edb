"""Two instances over one Azurite lake; the owner is killed (-9) mid-replay; the other takes over.

Each instance is a real process (:mod:`tests.lake.domain_worker`: the service's fleet parts on a
virtual clock) replaying ``duplicate_lb_ip``. The first owner is SIGKILLed while the duplicate IP
is firing; the survivor waits for the lease to expire (nobody releases it), takes the domain with
a higher epoch, rebuilds its detectors from the lake (the history window read once) and continues
the incident from the lifecycle state in the lease blob. The alert stream of both together equals
the plain, single-instance replay of the scenario: no lost and no duplicate incident change. The
takeover time (kill → the new owner's first evaluation) is printed; it is the lease duration
(15 s, Azure's minimum) plus the bootstrap read, by design.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

import pytest

from collector.capture import read_captures
from collector.domains import owner
from hciwatch.config import load_config
from hciwatch.pipeline import replay_records
from tests.fixtures.object_stores import ObjectStore

SCENARIO = Path(__file__).parents[1] / "replay" / "scenarios" / "duplicate_lb_ip"
DOMAIN = "demo-azure-local"  # the scenario's site: its default domain
ROOT = Path(__file__).parents[2]


def _start(azurite: ObjectStore, lake: dict[str, str], name: str, tmp: Path, pace: float) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "tests.lake.domain_worker", "--lake", json.dumps(lake), "--instance", name]
    cmd += ["--scenario", str(SCENARIO), "--data-dir", str(tmp / name), "--out", str(tmp / "alerts.jsonl")]
    cmd += ["--pace", str(pace)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    log = open(tmp / f"{name}.log", "w")  # noqa: SIM115 (the child writes it; closed with the test's tmp)
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True, env=env)


def _events(proc: subprocess.Popen[str]) -> Any:
    assert proc.stdout is not None
    out: IO[str] = proc.stdout
    for line in out:
        yield json.loads(line)


def _stream(path: Path) -> list[tuple[str, str, str]]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return [(r["fingerprint"], r["status"], r["changed_at"]) for r in rows]


def _names() -> tuple[str, str]:
    """Two instance ids such that the first is the domain's preferred owner (no hand-back mid-test)."""
    a, b = "hw-a", "hw-b"
    return (a, b) if owner(DOMAIN, [a, b]) == a else (b, a)


@pytest.mark.integration
@pytest.mark.slow  # about 60 s quiet (the lease alone is 15 s); test_service_fleet is the bounded takeover
@pytest.mark.timeout(240)
def test_kill_minus_9_mid_replay_the_other_instance_takes_over(azurite: ObjectStore, tmp_path: Path) -> None:
    # one instance alone, no fleet: the plain replay of the scenario is the reference stream
    solo = replay_records(
        read_captures([SCENARIO / "capture.jsonl.zst"]), load_config(SCENARIO / "config.toml"), tmp_path / "solo"
    )
    expected = [(a.fingerprint, a.status.value, a.changed_at.isoformat()) for a in solo.alerts]
    assert [s for _, s, _ in expected] == ["firing", "resolved"], expected

    # two instances on a fresh lake; the preferred owner starts first and is killed mid-incident
    lake = {"url": azurite.url(azurite.new_bucket()), **azurite.lake_settings()}
    first, second = _names()
    a = _start(azurite, lake, first, tmp_path, 0.02)
    events = _events(a)
    assert [next(events)["event"] for _ in range(2)] == ["ready", "gained"]
    b = _start(azurite, lake, second, tmp_path, 0.0)
    try:
        for ev in events:  # kill while the duplicate IP is firing (it fires about 00:47)
            if ev["event"] == "eval" and ev["at"] >= "2026-11-16T01:00":
                break
        a.send_signal(signal.SIGKILL)
        killed = time.time()
        a.wait(timeout=10)
        b_events = _events(b)
        gained = next(e for e in b_events if e["event"] == "gained")
        took = next(e for e in b_events if e["event"] == "eval")
        assert b.wait(timeout=120) == 0, (tmp_path / f"{second}.log").read_text()[-3000:]
    finally:
        for p in (a, b):
            if p.poll() is None:
                p.kill()
    takeover_s = took["wall"] - killed
    print(
        f"\ntakeover: kill -9 → lease taken {gained['wall'] - killed:.1f} s → first evaluation by the new owner "
        f"{takeover_s:.1f} s (lease 15 s; resumed at {gained['checkpoint']})"
    )

    rows = [json.loads(line) for line in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    assert _stream(tmp_path / "alerts.jsonl") == expected, rows
    assert {r["instance"] for r in rows} == {first, second}, (
        "the firing came from the first owner, the end from the second"
    )
    assert [r["epoch"] for r in rows] == [1, 2]
    assert len({r["key"] for r in rows}) == len(rows)

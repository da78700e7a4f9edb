"""Two ``hciwatch run`` processes for one site over Azurite; the owner is killed with ``-9``.

The owner fires ``source_down`` for a dead target and is SIGKILLed (it cannot release its lease).
The standby takes the domain over when the lease expires, loads the lifecycle state the owner
saved into the lease blob and carries the incident on: across both instances' alert files the
incident fired once and was not fired again. (The full kill-mid-replay comparison with a
single-instance stream, resolution included, is tests/lake/test_domain_takeover.py.)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from collector.domains import owner
from tests.fixtures.fleet_config import fleet_instance_config
from tests.fixtures.loopback import free_port
from tests.fixtures.object_stores import ObjectStore

ROOT = Path(__file__).parents[1]
# slow: the lease alone is 15 s, plus two service start-ups; tests/test_service_fleet.py is the bounded handover
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(240)]


def _config(tmp: Path, name: str, store: ObjectStore, url: str, dead: int, api: int) -> Path:
    alerts = f'[[exporters]]\ntype = "jsonl"\npath = "{tmp / name / "alerts.jsonl"}"'
    return fleet_instance_config(tmp, name, store, url, dead=dead, hold="2m", api=api, extra=alerts)


def _readyz(api: int) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{api}/readyz", timeout=2) as r:
            body: dict[str, Any] = json.load(r)
            return body
    except OSError as exc:
        if hasattr(exc, "read"):
            body = json.load(exc)
            return body
        return {}


def _evaluations(api: int) -> float:
    """``hciwatch_evaluations_total`` of an instance (a standby counts none)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{api}/metrics", timeout=2) as r:
        text = r.read().decode()
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith("hciwatch_evaluations_total"))


def _until(pred: Any, what: str, timeout: float = 60.0, alive: Sequence[subprocess.Popen[bytes]] = ()) -> float:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if any(p.poll() is not None for p in alive):
            raise AssertionError(f"an instance exited while waiting for {what}")
        if pred():
            return time.time()
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout:.0f} s: {what}")


def _changes(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_kill_minus_9_the_standby_carries_the_incident_on(azurite: ObjectStore, tmp_path: Path) -> None:
    url = azurite.url(azurite.new_bucket())
    first, second = ("hw-a", "hw-b") if owner("east", ["hw-a", "hw-b"]) == "hw-a" else ("hw-b", "hw-a")
    dead, api_a, api_b = free_port(), free_port(), free_port()
    procs: list[subprocess.Popen[bytes]] = []

    def run(name: str, api: int) -> subprocess.Popen[bytes]:
        cfg = _config(tmp_path, name, azurite, url, dead, api)
        log = open(tmp_path / f"{name}.log", "wb")  # noqa: SIM115 (the child writes it)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}  # after _config: it sets the credential variable
        p = subprocess.Popen([sys.executable, "-m", "hciwatch", "run", "--config", str(cfg)], stderr=log, env=env)
        procs.append(p)
        return p

    try:
        a = run(first, api_a)
        _until(
            lambda: _readyz(api_a).get("fleet", {}).get("owned") == {"east": 1},
            "the first instance owns east",
            alive=[a],
        )
        b = run(second, api_b)
        _until(lambda: _readyz(api_b).get("fleet", {}).get("standby") == ["east"], "the second stands by", alive=[a, b])
        fired = tmp_path / first / "alerts.jsonl"
        _until(
            lambda: any(c["status"] == "firing" for c in _changes(fired)), "the owner fires source_down", alive=[a, b]
        )
        time.sleep(1.5)  # a few more passes: the saved state has the incident firing
        a.send_signal(signal.SIGKILL)
        killed = time.time()
        a.wait(timeout=10)
        owns = _until(
            lambda: _readyz(api_b).get("fleet", {}).get("owned") == {"east": 2}, "the takeover", 60, alive=[b]
        )
        took = _until(lambda: _evaluations(api_b) > 0, "the new owner's first evaluation", 30, alive=[b])
        print(
            f"\nhciwatch run, kill -9 → the standby holds the lease {owns - killed:.1f} s → "
            f"its first evaluation {took - killed:.1f} s (lease 15 s)"
        )
        time.sleep(4)  # several passes at the new owner, the dead target failing there too
        b.send_signal(signal.SIGTERM)
        assert b.wait(timeout=30) == 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    stream = _changes(fired) + _changes(tmp_path / second / "alerts.jsonl")
    kinds = [(c["kind"], c["status"]) for c in stream]
    assert kinds == [("source_down", "firing")], kinds

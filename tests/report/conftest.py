"""Shared data for the operator-view tests: replayed scenarios (once per session) and the
expectations every view is checked against, derived from the scenario's ``expected.json`` and
from what the replay stored — never from numbers typed into the tests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from collector.capture import read_captures
from collector.registry import parser_kinds
from collector.schema import Alert, AlertStatus
from hciwatch.config import load_config
from hciwatch.pipeline import replay_records, summarize

SCENARIOS = Path(__file__).resolve().parents[1] / "replay" / "scenarios"


@dataclass(frozen=True)
class Replayed:
    """A scenario replayed into ``data_dir``, with what the views must show for it."""

    name: str
    data_dir: Path
    expected: dict[str, Any]
    alerts: list[Alert]
    summary: dict[str, Any]

    def expected_incidents(self, kind: str) -> int:
        return sum(1 for i in self.expected["incidents"] if i["kind"] == kind)

    @property
    def incidents(self) -> int:
        """Incidents as the lifecycle defines them: one per fingerprint and start."""
        return len({(a.fingerprint, a.starts_at) for a in self.alerts})

    @property
    def firing_at_end(self) -> int:
        last: dict[str, Alert] = {}
        for a in self.alerts:
            last[a.fingerprint] = a
        return sum(1 for a in last.values() if a.status is AlertStatus.FIRING)


def replay(name: str, data_dir: Path) -> Replayed:
    folder = SCENARIOS / name
    cfg = load_config(folder / "config.toml")
    result = replay_records(read_captures([folder / "capture.jsonl.zst"], known_kinds=parser_kinds()), cfg, data_dir)
    summary = summarize(result)  # replay also leaves it in <data_dir>/ingest-summary.json for the header
    return Replayed(name, data_dir, json.loads((folder / "expected.json").read_text()), list(result.alerts), summary)


@pytest.fixture(scope="session")
def duplicate_lb_ip(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replayed]:
    yield replay("duplicate_lb_ip", tmp_path_factory.mktemp("duplicate_lb_ip"))


@pytest.fixture(scope="session")
def pfc_storm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replayed]:
    yield replay("pfc_storm", tmp_path_factory.mktemp("pfc_storm"))


@pytest.fixture(scope="session")
def vip_leak(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replayed]:
    yield replay("vip_leak", tmp_path_factory.mktemp("vip_leak"))

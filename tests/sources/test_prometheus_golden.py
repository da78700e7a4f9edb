"""Golden tests: every Prometheus-exposition testdata payload parses to its expected JSON.

The expected files sit next to the payloads (``<name>.expected.json``). To regenerate them after a
deliberate change, run::

    HCIWATCH_REGEN_GOLDEN=1 .venv/bin/pytest tests/sources/test_prometheus_golden.py \
        tests/sources/test_windows.py tests/sources/test_kube_proxy.py \
        tests/sources/test_calico.py tests/sources/test_metallb.py

which rewrites them and fails each test on purpose (so a regeneration can never pass silently);
review the diff, then run the tests again without the variable.
"""

from __future__ import annotations

import json
import math
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from collector.catalog import DEFAULT_CATALOG
from collector.schema import SAMPLES_SCHEMA, ParseResult, RawRecord, iso
from collector.sources.prometheus.parse import parse_record

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ROOT / "collector" / "sources"
RECORD_TS = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
# testdata folder → the `source` label its scraper puts on records (None: the generic scraper)
SOURCE_LABEL = {
    "prometheus": None,
    "windows": "windows",
    "kube_proxy": "kube-proxy",
    "calico": "calico",
    "metallb": "metallb",
}


def payloads(folder: str) -> list[Path]:
    return sorted((SOURCES / folder / "testdata").glob("*.prom"))


def record_for(path: Path) -> RawRecord:
    """The record a scrape of this payload would produce (fixed time, host and context labels)."""
    folder = path.parent.parent.name
    labels = {"cluster": "hci-1", "network": "vnet-hci-1"}
    if SOURCE_LABEL[folder]:
        labels["source"] = str(SOURCE_LABEL[folder])
    return RawRecord(
        ts=RECORD_TS,
        kind="prometheus",
        target="hci-node-01:9182",
        host="hci-node-01",
        body=path.read_bytes(),
        labels=labels,
    )


def _json_value(v: float) -> float | str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return v


def as_json(result: ParseResult) -> dict[str, Any]:
    """A stable, diff-friendly rendering: rows sorted, labels as sorted objects."""
    samples = [
        {
            "ts": iso(r["ts"]),
            "source": r["source"],
            "host": r["host"],
            "metric": r["metric"],
            "labels": dict(sorted(r["labels"])),
            "value": _json_value(r["value"]),
        }
        for r in result.samples.to_pylist()
    ]
    ips = [{**r, "ts": iso(r["ts"])} for r in result.ip_observations.to_pylist()]
    key = lambda r: json.dumps(r, sort_keys=True)  # noqa: E731
    return {
        "samples": sorted(samples, key=key),
        "ip_observations": sorted(ips, key=key),
        "errors": [str(e) for e in result.errors],
    }


def check_golden(path: Path) -> None:
    result = parse_record(record_for(path), DEFAULT_CATALOG)
    assert result.samples.schema == SAMPLES_SCHEMA
    actual = as_json(result)
    expected_path = path.with_name(path.stem + ".expected.json")
    if os.environ.get("HCIWATCH_REGEN_GOLDEN"):
        expected_path.write_text(
            json.dumps(actual, indent=1, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8"
        )
        pytest.fail(f"regenerated {expected_path.relative_to(ROOT)}; unset HCIWATCH_REGEN_GOLDEN and rerun")
    assert expected_path.exists(), f"missing golden file {expected_path} (see module docstring)"
    expected = json.loads(expected_path.read_text(encoding="utf-8"))
    assert actual == expected


@pytest.mark.parametrize("path", payloads("prometheus"), ids=lambda p: p.name)
def test_prometheus_golden(path: Path) -> None:
    check_golden(path)


def test_golden_payloads_exist() -> None:
    for folder in SOURCE_LABEL:
        assert payloads(folder), f"no testdata payloads for {folder}"
        assert (SOURCES / folder / "testdata" / "PROVENANCE.md").exists()

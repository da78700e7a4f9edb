"""The OpenMetrics project's parser conformance suite, replayed through hciwatch's exposition parser.

Every case in ``openmetrics/`` (copied unchanged, see PROVENANCE.md) says whether a parser must
accept it. hciwatch is a collector, not a validator: it must keep every sample of a valid body, and
it refuses (or reports per line) what it cannot read as numbers — but, like Prometheus' own text
parser, it does not enforce OpenMetrics' producer rules (metadata order, histogram bucket
consistency, units, ``_total`` suffixes, whitespace strictness, exemplar size and placement).
``openmetrics-expected.json`` names the cases where hciwatch's verdict differs from the suite's
and why; the test fails if that list drifts either way, so a change in leniency is a decision.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from collector.catalog import DEFAULT_CATALOG
from collector.schema import RawRecord
from hciwatch.parse_pool import parse_one

HERE = Path(__file__).resolve().parent
SUITE = HERE / "openmetrics"
EXPECTED: dict[str, Any] = json.loads((HERE / "openmetrics-expected.json").read_text())
CASES = sorted(p.name for p in SUITE.iterdir() if p.is_dir())


def _samples_in(body: bytes) -> int:
    """Independent count: sample lines are the non-blank lines that are not comments."""
    return sum(1 for ln in body.decode("utf-8", "replace").splitlines() if ln.strip() and not ln.startswith("#"))


def test_suite_is_complete() -> None:
    assert len(CASES) == 211
    named = set(EXPECTED["good_flagged"]) | set(EXPECTED["bad_accepted"])
    assert named <= set(CASES)


@pytest.mark.parametrize("case", CASES)
def test_openmetrics_case(case: str) -> None:
    spec = json.loads((SUITE / case / "test.json").read_text())
    body = (SUITE / case / spec["file"]).read_bytes()
    rec = RawRecord(ts=datetime(2024, 1, 1, tzinfo=UTC), kind="prometheus", target=f"om/{case}", body=body)
    out = parse_one(rec, DEFAULT_CATALOG)  # never raises: a crash would be a rejected "parser crash"
    assert out.rejected is None or out.rejected[0] == "parse error", out.rejected
    flagged = out.rejected is not None or bool(out.errors)
    for e in out.errors:
        assert "(at line " in str(e), e  # every complaint says where
    if spec["shouldParse"]:
        if case in EXPECTED["good_flagged"]:
            assert flagged, f"{case} now parses cleanly: drop it from good_flagged"
        else:
            assert not flagged, (out.rejected, out.errors[:3])
            assert out.samples.num_rows == _samples_in(body)
    else:
        accepted = not flagged
        assert accepted == (case in EXPECTED["bad_accepted"]), (
            f"{case}: hciwatch {'accepts' if accepted else 'flags'} it; update openmetrics-expected.json"
        )

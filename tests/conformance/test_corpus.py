"""Replays the conformance corpus (payloads other projects and real systems wrote) and checks what is stored.

Every file in ``corpus/`` has an entry in ``expected.json`` (how to replay it and what must come
out) and a row in ``PROVENANCE.md``. The expected counts were derived without hciwatch's parsers;
for the formats where a count can be made mechanically, the independent counters below re-derive
it from the file on every run, so a wrong expectation cannot hide behind a wrong parser.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from collector.catalog import DEFAULT_CATALOG
from collector.schema import RawRecord, iso
from hciwatch.config import default_config
from hciwatch.parse_pool import ParseOutcome, parse_one

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
EXPECTED: dict[str, dict[str, Any]] = {
    k: v for k, v in json.loads((HERE / "expected.json").read_text()).items() if not k.startswith("_")
}
T0 = datetime(2024, 11, 19, 7, 0, tzinfo=UTC)

# --- independent counters (stdlib only; they know the formats, not hciwatch) ----------------------

_INT = re.compile(r"-?[0-9]+")
# HAProxy CSV columns that identify a row rather than measure it; `status` becomes one haproxy.up.
# `check_status` is text by HAProxy's documentation (L4OK, HTTP_ERR, ...), whatever a file holds.
_HAPROXY_NOT_METRICS = frozenset({"pxname", "svname", "pid", "iid", "sid", "type", "status", "check_status"})


def prometheus_lines(data: bytes) -> int:
    """Samples in an exposition: every line that is neither blank nor a comment."""
    text = data.decode("utf-8-sig")
    return sum(1 for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#"))


def haproxy_cells(data: bytes) -> int:
    """One sample per integer cell of a metric column, plus one ``haproxy.up`` per row with a status."""
    header: list[str] = []
    n = 0
    # csv.reader over the whole text: a quoted cell may hold newlines (agent-check output)
    for cells in csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")):
        if not cells or not "".join(cells).strip():
            continue
        if cells[0].startswith("#"):
            header = [cells[0][1:].strip(), *cells[1:]]
            if header and header[-1] == "":
                header.pop()
            continue
        if len(cells) == len(header) + 1 and cells[-1] == "":
            cells.pop()
        assert len(cells) == len(header)
        n += sum(1 for h, c in zip(header, cells, strict=True) if h not in _HAPROXY_NOT_METRICS and _INT.fullmatch(c))
        n += 1 if cells[header.index("status")] else 0
    return n


def haproxy_info_numbers(data: bytes) -> int:
    """``show info``: one sample per integer value, plus the version's build_info."""
    n = 0
    for line in data.decode("utf-8-sig").splitlines():
        key, _, value = line.partition(":")
        n += 1 if _INT.fullmatch(value.strip()) else 0
        n += 1 if key == "Version" else 0
    return n


INDEPENDENT = {f.__name__: f for f in (prometheus_lines, haproxy_cells, haproxy_info_numbers)}


# --- replay -------------------------------------------------------------------------------------


def record(name: str) -> RawRecord:
    spec = EXPECTED[name]
    return RawRecord(
        ts=T0,
        kind=spec["kind"],
        target=f"corpus/{name}",
        body=(CORPUS / name).read_bytes(),
        host=spec.get("host", ""),
        labels=spec.get("labels", {}),
        topic=spec.get("topic"),
    )


def _matches(row_labels: dict[str, str], want: dict[str, str]) -> bool:
    return all(row_labels.get(k) == v for k, v in want.items())


def check_outcome(name: str, outcome: ParseOutcome) -> None:
    spec = EXPECTED[name]
    if "rejected_contains" in spec:  # a payload hciwatch must refuse whole, with a precise reason
        assert outcome.rejected is not None and spec["rejected_contains"] in outcome.rejected[1], outcome.rejected
        return
    assert outcome.rejected is None, outcome.rejected
    assert outcome.samples.num_rows == spec["samples"]
    assert outcome.ip_observations.num_rows == spec["ip_observations"]
    assert len(outcome.errors) == spec["errors"], outcome.errors
    for text in spec.get("error_contains", []):
        assert any(text in e for e in outcome.errors), (text, outcome.errors)
    rows = outcome.samples.to_pylist()
    for want in spec.get("values", []):
        hits = [r for r in rows if r["metric"] == want["metric"] and _matches(dict(r["labels"]), want["labels"])]
        assert hits, f"no {want['metric']} {want['labels']} in {name}"
        assert any(math.isclose(r["value"], want["value"], rel_tol=1e-12, abs_tol=0.0) for r in hits), (
            want,
            [r["value"] for r in hits],
        )
        if "ts" in want:
            assert any(iso(r["ts"]) == want["ts"] for r in hits), (want, [iso(r["ts"]) for r in hits])
    obs = outcome.ip_observations.to_pylist()
    for want in spec.get("observations", []):
        assert any(all(o[k] == v for k, v in want.items()) for o in obs), (want, obs)
    for ip in spec.get("absent_ips", []):
        assert all(o["ip"] != ip for o in obs), ip


def test_every_corpus_file_has_expectations_and_provenance() -> None:
    files = {p.name for p in CORPUS.iterdir()}
    assert files == set(EXPECTED)
    provenance = (HERE / "PROVENANCE.md").read_text()
    for name in files:
        assert f"`{name}`" in provenance, f"{name} has no PROVENANCE.md row"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_file(name: str) -> None:
    spec = EXPECTED[name]
    if "independent" in spec:
        assert INDEPENDENT[spec["independent"]]((CORPUS / name).read_bytes()) == spec["samples"]
    check_outcome(name, parse_one(record(name), DEFAULT_CATALOG))


def test_whole_corpus_through_the_flow(tmp_path: Path) -> None:
    """All files through replay (parse → store): every row lands, nothing is rejected."""
    from hciwatch.pipeline import replay_records

    cfg = default_config(tmp_path)
    result = replay_records([record(n) for n in sorted(EXPECTED)], cfg, tmp_path, workers=0)
    s = result.stats
    refused = sum(1 for v in EXPECTED.values() if "rejected_contains" in v)
    assert s.records_read == len(EXPECTED) and s.records_rejected == refused
    assert s.samples_stored == sum(v["samples"] for v in EXPECTED.values())
    assert s.ip_observations_stored == sum(v["ip_observations"] for v in EXPECTED.values())
    assert s.line_errors == sum(v["errors"] for v in EXPECTED.values())
    from collector.store import Store

    store = Store(tmp_path)
    con = store.connect()
    try:
        got = con.execute(
            "SELECT value FROM samples WHERE metric = 'net.current_bandwidth_bytes' AND host = 'azl-old' "
            "AND labels['nic'] = 'Mellanox_ConnectX_4_Lx_Ethernet_Adapter'"
        ).fetchall()
    finally:
        con.close()
        store.close()
    assert got == [(3_125_000_000.0,)]

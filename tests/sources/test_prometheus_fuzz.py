"""Fuzzing the Prometheus parser: whatever the bytes, only ParseError, and always the schema.

Examples per test come from tests/conftest.py's profile (``ci`` by default, ``fuzz`` for 10k).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector.catalog import DEFAULT_CATALOG
from collector.errors import ParseError
from collector.schema import IP_OBSERVATIONS_SCHEMA, SAMPLES_SCHEMA, RawRecord
from collector.sources.prometheus.parse import parse_record

TS = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2] / "collector" / "sources"
CORPUS = [
    p.read_bytes()
    for folder in ("prometheus", "windows", "kube_proxy", "calico", "metallb")
    for p in sorted((ROOT / folder / "testdata").glob("*.prom"))
]


def check(body: bytes, **labels: str) -> None:
    record = RawRecord(ts=TS, kind="prometheus", target="fuzz:1", host="fuzz", body=body, labels=labels)
    try:
        result = parse_record(record, DEFAULT_CATALOG)
    except ParseError as exc:
        assert "internal parser failure" not in str(exc), str(exc)
        assert exc.target == "fuzz:1"
        return
    assert result.samples.schema == SAMPLES_SCHEMA
    assert result.ip_observations.schema == IP_OBSERVATIONS_SCHEMA
    result.samples.validate(full=True)
    result.ip_observations.validate(full=True)
    for err in result.errors:
        assert isinstance(err, ParseError)
        assert "internal parser failure" not in str(err)


@pytest.mark.timeout(3600)  # the "fuzz" profile runs 10k examples
@given(st.binary(max_size=4096))
def test_random_bytes(body: bytes) -> None:
    check(body)


@pytest.mark.timeout(3600)  # the "fuzz" profile runs 10k examples
@given(st.text(max_size=2048))
def test_random_text(text: str) -> None:
    check(text.encode("utf-8", "surrogatepass") if text else b"", cluster="c")


@pytest.mark.timeout(3600)  # the "fuzz" profile runs 10k examples
@given(st.sampled_from(CORPUS), st.integers(min_value=0), st.integers(min_value=0))
def test_truncated_payloads(body: bytes, start: int, length: int) -> None:
    a = start % (len(body) + 1)
    check(body[a : a + length % (len(body) + 1)])


@pytest.mark.timeout(3600)  # the "fuzz" profile runs 10k examples
@given(st.sampled_from(CORPUS), st.sampled_from(["utf-16", "utf-16-le", "utf-32", "latin-1", "cp1252"]))
def test_wrong_encoding(body: bytes, encoding: str) -> None:
    text = body.decode("utf-8")
    check(text.encode(encoding, errors="replace"))


@pytest.mark.timeout(3600)  # the "fuzz" profile runs 10k examples
@given(st.sampled_from(CORPUS), st.lists(st.tuples(st.integers(min_value=0), st.binary(max_size=3)), max_size=8))
def test_mutated_payloads(body: bytes, edits: list[tuple[int, bytes]]) -> None:
    data = bytearray(body)
    for at, chunk in edits:
        i = at % (len(data) + 1)
        data[i : i + len(chunk)] = chunk
    check(bytes(data), source="windows", cluster="c1")


@pytest.mark.timeout(3600)  # the "fuzz" profile runs 10k examples
@given(st.integers(min_value=1, max_value=200_000), st.sampled_from(["x", "\\\\", '\\"', "é", "{},=", " "]))
def test_huge_label_values(size: int, unit: str) -> None:
    value = unit * (size // len(unit))
    body = f'windows_net_bytes_sent_total{{nic="{value}"}} 1\nup{{v="{value}",w="x"}} 2\n'.encode()
    record = RawRecord(ts=TS, kind="prometheus", target="t", host="h", body=body)
    result = parse_record(record, DEFAULT_CATALOG)
    assert result.samples.num_rows == 2
    got = dict(result.samples.column("labels")[1].as_py())["v"]
    assert len(got) == len(value.replace("\\\\", "\\").replace('\\"', '"'))


_value = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["NaN", "+Inf", "-Inf", "Inf", "nan", "inf", "-0", "1e308", "1e-320"]),
)


@pytest.mark.timeout(3600)  # the "fuzz" profile runs 10k examples
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["windows_net_bytes_sent_total", "felix_x", "c"]),
            st.sampled_from(["", '{nic="a"}', '{nic="a",x="1"}', '{instance="b Prio 3"}']),
            _value,
        ),
        min_size=1,
        max_size=40,
    )
)
def test_special_values_duplicates_and_resets(samples: list[tuple[str, str, float | str]]) -> None:
    """NaN/Inf kept, duplicated series kept, a counter going down (reset) is just a value."""
    lines = [f"{n}{lbl} {v if isinstance(v, str) else repr(v)}" for n, lbl, v in samples]
    body = ("\n".join(lines) + "\n").encode()
    record = RawRecord(ts=TS, kind="prometheus", target="t", host="h", body=body)
    result = parse_record(record, DEFAULT_CATALOG)
    assert result.errors == []
    assert result.samples.num_rows == len(samples)

    def key(x: float) -> tuple[int, float]:
        return (1, 0.0) if math.isnan(x) else (0, x)

    want = sorted((float(v) for _, _, v in samples), key=key)
    got = sorted(result.samples.column("value").to_numpy().tolist(), key=key)  # row order is not payload order
    assert [key(x) for x in got] == [key(x) for x in want]


_LABEL_TEXT = st.text(st.characters(codec="utf-8", exclude_characters='\x00"\\\n'), max_size=20)


@st.composite
def _openmetrics_line(draw: st.DrawFn) -> tuple[str, float, float | None]:
    """One well-formed OpenMetrics sample: labels, a value, maybe a seconds timestamp and an exemplar."""
    value = draw(st.floats(allow_nan=False, allow_infinity=False, width=32))
    labels = draw(st.dictionaries(st.from_regex(r"[a-z_][a-z0-9_]{0,6}", fullmatch=True), _LABEL_TEXT, max_size=3))
    ts = draw(st.one_of(st.none(), st.floats(min_value=0, max_value=4e9, allow_nan=False)))
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    line = f"om_sample{{{inner}}} {value!r}" if labels else f"om_sample {value!r}"
    if ts is not None:
        line += f" {ts!r}"
    if draw(st.booleans()):  # an exemplar; label values may hold '#', spaces and braces
        ex = draw(_LABEL_TEXT)
        line += f' # {{trace_id="{ex}"}} {draw(st.floats(allow_nan=False, width=32))!r}'
        if draw(st.booleans()):
            line += f" {draw(st.floats(min_value=0, max_value=4e9))!r}"
    return line, value, ts


@pytest.mark.timeout(3600)
@given(st.lists(_openmetrics_line(), min_size=1, max_size=20), st.booleans())
def test_openmetrics_exemplars_and_second_timestamps(lines: list[tuple[str, float, float | None]], crlf: bool) -> None:
    """Valid OpenMetrics bodies keep every sample; timestamps are seconds (→ ms), exemplars dropped."""
    nl = "\r\n" if crlf else "\n"
    body = (nl.join(line for line, _, _ in lines) + nl + "# EOF" + nl).encode()
    check(body)
    record = RawRecord(ts=TS, kind="prometheus", target="fuzz:1", host="fuzz", body=body)
    result = parse_record(record, DEFAULT_CATALOG)
    assert result.errors == [] and result.samples.num_rows == len(lines)
    # rows come out grouped by parse path, not in line order: compare as sorted (value, ms) pairs
    got = sorted((r["value"], round(r["ts"].timestamp() * 1000)) for r in result.samples.to_pylist())
    default_ms = round(TS.timestamp() * 1000)
    want = sorted((v, default_ms if ts is None else round(ts * 1000)) for _, v, ts in lines)
    for (gv, gms), (wv, wms) in zip(got, want, strict=True):
        assert gv == wv or math.isclose(gv, wv)
        assert abs(gms - wms) <= 1

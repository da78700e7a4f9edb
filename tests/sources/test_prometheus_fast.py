"""The columnar parser's shortcuts give what the per-row rules give (issue 17's cold-parse work).

Each shortcut trades a per-row (or per-pair) step for a per-distinct-value one; these tests pin
that the answer is the per-row answer:

* Windows label normalization grouped by *metric class*: rows are normalized per (class of the
  metric, special labels), not per (metric, special labels);
* comment lines in client_golang's layout accepted by one regex pass instead of ``check_comment``;
* label keys read with their delimiters (``{k=`` / ``,k=``) and checked per distinct string, with
  lines whose pairs are not delimited kept out of the name and value batches;
* duplicate label names found through sorted key ids;
* unescape passes skipped when no backslash escapes a quote / an ``n``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from collector.catalog import DEFAULT_CATALOG, Catalog, normalize_windows_labels
from collector.errors import ParseError
from collector.schema import ParseResult, RawRecord
from collector.sources.prometheus._scan import (
    LineError,
    _comments_to_check,
    check_comment,
    scan,
    unescape,
    unescape_array,
)
from collector.sources.prometheus.parse import _normalization_class, parse_record

TS = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
WINDOWS_NATIVES = sorted(k for k in DEFAULT_CATALOG.prometheus if k.startswith(("windows_", "wmi_")))
SPECIAL_KEYS = ("nic", "instance", "adapter", "port_prio", "priority")
SPECIAL_VALUES = (
    "Ethernet 2",
    "Mellanox ConnectX-6 Dx Adapter #2 Prio 3",
    "vEthernet (SMB1) Prio 0",
    "pNIC1",
    "Prio 7",
    "x Prio",
    "",
    "3",
)


def parse(body: bytes | str, catalog: Catalog = DEFAULT_CATALOG, **labels: str) -> ParseResult:
    data = body.encode() if isinstance(body, str) else body
    return parse_record(
        RawRecord(ts=TS, kind="prometheus", target="n1:9182", host="n1", body=data, labels=labels), catalog
    )


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


_special = st.dictionaries(st.sampled_from(SPECIAL_KEYS), st.sampled_from(SPECIAL_VALUES), max_size=4)


@given(st.sampled_from(WINDOWS_NATIVES), st.sampled_from(WINDOWS_NATIVES), _special)
def test_metrics_of_one_normalization_class_are_normalized_alike(a: str, b: str, labels: dict[str, str]) -> None:
    ca = DEFAULT_CATALOG.prometheus[a].name
    cb = DEFAULT_CATALOG.prometheus[b].name
    if _normalization_class(ca) == _normalization_class(cb):
        assert normalize_windows_labels(ca, labels) == normalize_windows_labels(cb, labels)


@given(
    st.lists(
        st.tuples(
            st.sampled_from(WINDOWS_NATIVES),
            _special,
            st.dictionaries(st.sampled_from(("mode", "core", "z")), st.sampled_from(("a", "b")), max_size=2),
        ),
        min_size=1,
        max_size=40,
    )
)
def test_windows_rows_get_the_catalog_normalization_row_by_row(
    rows: list[tuple[str, dict[str, str], dict[str, str]]],
) -> None:
    lines = []
    want: list[dict[str, Any]] = []
    for i, (native, special, other) in enumerate(rows):
        labels = {**special, **other}
        body = ",".join(f'{k}="{_esc(v)}"' for k, v in sorted(labels.items()))
        lines.append(f"{native}{{{body}}} {i}")
        canonical = DEFAULT_CATALOG.prometheus[native].name
        normalized = normalize_windows_labels(canonical, labels) if set(labels) & set(SPECIAL_KEYS) else labels
        divisor = DEFAULT_CATALOG.prometheus[native].divisor
        want.append({"metric": canonical, "labels": {**normalized, "cluster": "c"}, "value": i / divisor})
    result = parse("\n".join(lines) + "\n", cluster="c")
    got = [
        {"metric": r["metric"], "labels": dict(r["labels"]), "value": r["value"]} for r in result.samples.to_pylist()
    ]
    assert got == want


_comment_word = st.sampled_from(["#", "# ", "#  ", "#\t", "# \x0b", "#\u00a0", "#\u2003", "#\x1c"])
_comment = st.builds(
    lambda hash_, kind, sep, name, sep2, rest: f"{hash_}{kind}{sep}{name}{sep2}{rest}",
    _comment_word,
    st.sampled_from(["HELP", "TYPE", "HELPX", "help", "Type", "EOF", ""]),
    st.sampled_from([" ", "  ", "\t", "", "\u00a0", "\x1c"]),
    st.sampled_from(["a", "go_goroutines", "x:y", "_z", "1x", "a-b", "", "a\u00e9"]),
    st.sampled_from([" ", "  ", "\t", "", "\u0085"]),
    st.sampled_from(["counter", "gauge", "summary", "bogus", "help text", "", "counter ", "info", "stateset x", "é"]),
)


@given(st.lists(_comment, min_size=16, max_size=40))
def test_comments_skipped_by_the_regex_pass_are_ones_check_comment_accepts(comments: list[str]) -> None:
    body = "\n".join(comments).encode()
    sc = scan(body)
    lines = sc.line_start, sc.line_end
    all_lines = np.arange(len(comments), dtype=np.int64)
    checked = set(_comments_to_check(body, lines[0], lines[1], all_lines).tolist())
    for i, text in enumerate(comments):
        if i in checked:
            continue
        check_comment(text)  # must not raise: the regex only skips lines check_comment accepts
    rejected = set()
    for i, text in enumerate(comments):
        try:
            check_comment(text)
        except LineError:
            rejected.add(i)
    assert rejected <= checked
    assert {e[0] for e in sc.errors} == rejected


def test_undelimited_label_pairs_are_errors_and_leave_other_lines_alone() -> None:
    bad = ['a{x="1"y="2"} 1', 'a{,x="1"} 1', 'a{x"1"} 1', 'a{x="1",,y="2"} 1', 'a{="1"} 1', 'a{x="1"=y="2"} 1']
    good = 'b{x="1"} 2\nc{x="1",y="2",} 3\n'
    for line in bad:
        result = parse(f"{good}{line}\n")
        assert [(r["metric"], r["value"]) for r in result.samples.to_pylist()] == [("b", 2.0), ("c", 3.0)]
        assert len(result.errors) == 1
        assert isinstance(result.errors[0], ParseError)
        assert result.errors[0].line == 3
    # spacing the fast path does not take is the exact path's to accept
    spaced = parse(f'{good}a{{x= "1" , y ="2"}} 1\n')
    assert [(r["metric"], dict(r["labels"])) for r in spaced.samples.to_pylist()][-1] == ("a", {"x": "1", "y": "2"})


def test_a_line_kept_out_of_the_batches_does_not_change_how_the_others_parse() -> None:
    # Arrow's cast reads "-nan" where Go's grammar does not; whether a batch falls back to Go's
    # grammar depends on the batch, so an undelimited line must not join it
    alone = parse('m{a="b"} -nan\nn{a="b"} 1\n')
    with_bad = parse('m{a="b"} -nan\nn{a="b"} 1\nx{a="1"b="2"} abc\n')
    assert str(alone.samples.to_pylist()) == str(with_bad.samples.to_pylist())  # NaN != NaN
    assert [r["metric"] for r in alone.samples.to_pylist()] == ["m", "n"]
    assert len(with_bad.errors) == len(alone.errors) + 1


def test_duplicate_label_names_in_unsorted_labels_few_and_many() -> None:
    few = parse('a{b="1",a="2",b="3"} 1\na{b="1",a="2"} 2\n')
    assert [r["value"] for r in few.samples.to_pylist()] == [2.0]
    assert "duplicate label name 'b'" in str(few.errors[0])
    lines = []
    for i in range(600):  # more unsorted rows than are checked one by one
        lines.append(f'a{{z="{i}",b="1",z="2"}} {i}' if i % 3 == 0 else f'a{{z="{i}",b="1"}} {i}')
    many = parse("\n".join(lines) + "\n")
    assert [r["value"] for r in many.samples.to_pylist()] == [float(i) for i in range(600) if i % 3]
    assert sum(1 for e in many.errors if "duplicate label name 'z'" in str(e)) == 100  # the listed ones


@given(st.lists(st.text(alphabet='\\n"ab', max_size=8), min_size=1, max_size=8))
def test_unescape_passes_skipped_only_when_they_change_nothing(values: list[str]) -> None:
    arr = pa.array(values, pa.string())
    quotes = any('\\"' in v for v in values)
    newlines = any("\\n" in v for v in values)
    assert unescape_array(arr, quotes=quotes, newlines=newlines).to_pylist() == [unescape(v) for v in values]


def test_escaped_values_read_as_written() -> None:
    body = 'a{p="C:\\\\Windows\\\\x"} 1\nb{p="say \\"hi\\""} 2\nc{p="l1\\nl2",q="\\\\n"} 3\nd{p="\\\\\\""} 4\n'
    got = [dict(r["labels"]) for r in parse(body).samples.to_pylist()]
    assert got == [{"p": "C:\\Windows\\x"}, {"p": 'say "hi"'}, {"p": "l1\nl2", "q": "\\n"}, {"p": '\\"'}]

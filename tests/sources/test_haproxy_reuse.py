"""The fast HAProxy readers give exactly what the careful parser gives.

Two fast readers: a repeated read taken from the previous read's skeleton (``_reuse``), and a
plain payload read with array operations (``_parse_plain``). Each case parses a first payload
(which leaves the target's skeleton), then a second one with reuse on, then the second one with
reuse off (the plain reader, or the careful one when the payload is not plain), and compares
both with the careful parser's reading of the second payload: same tables (values, timestamps,
labels, schema), same errors, same exceptions. Payloads are every
HAProxy CSV of the conformance corpus and the source's testdata (real captures, the DataDog
"evil" mock data, a headerless answer) with their counters moved, hand-made edge cases (each
a thing the fast path must refuse), and hypothesis-made mutations.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector.catalog import DEFAULT_CATALOG, Catalog
from collector.errors import ParseError
from collector.schema import ParseResult, RawRecord
from collector.sources.haproxy import _reuse
from collector.sources.haproxy.parse import ID_COLUMNS, TEXT_COLUMNS, _parse_careful, _parse_plain, parse_record

TS = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]
CORPUS = {
    p.name: p.read_bytes()
    for p in sorted(
        [
            *(ROOT / "collector" / "sources" / "haproxy" / "testdata").glob("*.csv"),
            *(ROOT / "tests" / "conformance" / "corpus").glob("*haproxy*.csv"),
        ]
    )
}
CAPTURE = CORPUS["show_stat_2.6.12.csv"]
HEADER = b"# pxname,svname,scur,stot,status,check_status,type,addr,last_chk,\n"


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    _reuse.CACHE.clear()
    yield
    _reuse.CACHE.clear()


def record(body: bytes, k: int = 0, **labels: str) -> RawRecord:
    return RawRecord(
        ts=TS + timedelta(seconds=30 * k),
        kind="haproxy-csv",
        target="unix:///run/haproxy/admin.sock",
        body=body,
        host="lb-vm-1",
        labels=labels,
    )


def outcome(rec: RawRecord, catalog: Catalog = DEFAULT_CATALOG) -> tuple[str, ParseResult | None]:
    try:
        return "", parse_record(rec, catalog)
    except ParseError as exc:
        return str(exc), None


def careful(rec: RawRecord) -> tuple[str, ParseResult | None]:
    try:
        return "", _parse_careful(rec, DEFAULT_CATALOG)[0]
    except ParseError as exc:
        return str(exc), None


def assert_equal(got: tuple[str, ParseResult | None], want: tuple[str, ParseResult | None]) -> None:
    assert got[0] == want[0]
    if got[1] is None or want[1] is None:
        assert got[1] is None and want[1] is None
        return
    g, w = got[1], want[1]
    assert g.samples.schema == w.samples.schema
    assert g.samples.equals(w.samples)
    assert g.ip_observations.equals(w.ip_observations)
    assert [str(e) for e in g.errors] == [str(e) for e in w.errors]
    g.samples.validate(full=True)


def assert_same_as_careful(first: bytes, second: bytes, **labels: str) -> int:
    """Parse ``first``, then ``second`` with reuse on and off; returns the skeleton hits."""
    outcome(record(first, 0, **labels))
    hits = _reuse.CACHE.hits
    warm = outcome(record(second, 1, **labels))
    hit = _reuse.CACHE.hits - hits
    _reuse.CACHE.clear()
    cold = outcome(record(second, 1, **labels))
    want = careful(record(second, 1, **labels))
    assert_equal(warm, want)
    assert_equal(cold, want)
    plain = _parse_plain(record(second, 1, **labels), DEFAULT_CATALOG)  # whatever the payload's size
    if plain is not None:
        assert_equal(("", plain[0]), want)
    return hit


def moved(body: bytes, by: int = 7) -> bytes:
    """The same payload one read later: every integer in a metric column moved by ``by``."""
    out: list[bytes] = []
    header: list[str] = []
    for line in body.split(b"\n"):
        if line.startswith(b"#"):
            header = [h.strip() for h in line[1:].lstrip(b" ").decode("utf-8", "replace").split(",")]
        elif header and b'"' not in line:
            cells = line.split(b",")
            for i, cell in enumerate(cells[: len(header)]):
                name = header[i]
                if name and name not in ID_COLUMNS and name not in TEXT_COLUMNS and cell.isdigit():
                    cells[i] = str(int(cell) + by).encode()
            line = b",".join(cells)
        out.append(line)
    return b"\n".join(out)


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_corpus_with_new_values_equals_the_careful_parser(name: str) -> None:
    body = CORPUS[name]
    assert_same_as_careful(body, moved(body), cluster="c1", network="n1")


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_corpus_read_twice_equals_the_careful_parser(name: str) -> None:
    assert_same_as_careful(CORPUS[name], CORPUS[name], cluster="c1")


def test_a_repeated_read_of_the_capture_is_a_hit() -> None:
    """The real 2.6 capture (15 rows, 129 columns, trailing commas) fits its skeleton."""
    assert assert_same_as_careful(CAPTURE, moved(CAPTURE, 3), cluster="c1", network="n1") == 1
    assert assert_same_as_careful(CAPTURE, moved(CAPTURE, 3)) == 1


def test_the_stats_page_answer_is_a_hit() -> None:
    body = CORPUS["stats_page_2.6.12.csv"]
    assert assert_same_as_careful(body, moved(body, 11)) == 1


FIRST = HEADER + (
    b"fe,FRONTEND,1,10,OPEN,,0,,,\n"
    b"be,srv1,2,20,UP,L4OK,2,10.0.0.1:80,5s,\n"
    b"be,srv2,3,30,DOWN,L4CON,2,10.0.0.2:80,,\n"
    b"be,BACKEND,5,50,UP,,1,,,\n"
)


def test_new_numbers_of_a_small_payload_are_a_hit() -> None:
    second = FIRST.replace(b",10,", b",11,").replace(b",2,20,", b",-2,0020,")
    assert assert_same_as_careful(FIRST, second) == 1


@pytest.mark.parametrize(
    "second",
    [
        FIRST.replace(b"DOWN,L4CON", b"UP,L4OK"),  # a status changed: labels and haproxy.up change
        FIRST.replace(b"10.0.0.2:80", b"10.0.0.9:80"),  # a server moved
        FIRST.replace(b"srv2", b"srv3"),  # a server renamed
        FIRST + b"be,srv4,1,1,UP,L4OK,2,10.0.0.4:80,,\n",  # a server added
        FIRST.replace(b"be,srv2,3,30,DOWN,L4CON,2,10.0.0.2:80,,\n", b""),  # a server removed
        FIRST.replace(b",2,20,", b",x,20,"),  # text in a number cell: a precise error
        FIRST.replace(b",2,20,", b",2.5,20,"),  # a decimal: the careful parser's rules
        FIRST.replace(b",2,20,", b",,20,"),  # a cell became empty
        FIRST.replace(b"fe,FRONTEND,1,", b"fe,FRONTEND,,").replace(b"OPEN,,0,,,", b"OPEN,,0,,,"),
        FIRST.replace(b",2,20,", b",1234567890123456789,20,"),  # 19 digits: past the plain form
        FIRST.replace(b",2,20,", b",-,20,"),  # a lone minus
        FIRST.replace(b",2,20,", b",0x1F,20,"),  # hexadecimal, which Arrow's integer cast reads
        FIRST.replace(b",2,20,", b",-0x1,20,"),
        FIRST.replace(b",2,20,", b",+2,20,"),  # a plus sign
        FIRST.replace(b",2,20,", b",\xd9\xa3,20,"),  # an Arabic-Indic digit
        FIRST.replace(b"5s,", b'"5s, ago",'),  # a quoted cell holding a comma
        FIRST.replace(b"5s,", b'"5s\nago",'),  # a quoted cell spanning lines
        FIRST.replace(b"5s,", b'"5s,'),  # a stray quote
        FIRST.replace(b"be,BACKEND,5,50,UP,,1,,,\n", b"be,BACKEND,5,50,UP,,1,,\n"),  # a row too short
        FIRST.replace(b"be,BACKEND,5,50,UP,,1,,,\n", b"be,BACKEND,5,50,UP,,1,,,x\n"),  # text after the last comma
        FIRST.replace(b"be,BACKEND,5,50,UP,,1,,,\n", b"be,BACKEND,5,50,UP,,1,,,,\n"),  # a row too long
        FIRST.replace(b"\n", b"\r\n"),  # CRLF
        FIRST.replace(b"\n", b"\r\r\n"),  # two CRs
        FIRST.replace(b",\n", b"\r\r\n").replace(b",\r\r\n", b"\r\r\n"),  # two CRs, no trailing commas
        FIRST.replace(b",\n", b"\n"),  # no trailing commas
        FIRST.replace(b",\n", b"\r\n"),
        FIRST + b"\n\n",  # blank lines after the rows
        FIRST + b"  \n",  # a whitespace line
        FIRST.replace(b"fe,FRONTEND", b"\nfe,FRONTEND"),  # a blank line between header and rows
        FIRST[:-1],  # no newline at the end
        b"\xef\xbb\xbf" + FIRST,  # a BOM
        FIRST.replace(b"5s", b"5\xffs"),  # bytes that are not UTF-8 in a text cell
        FIRST.replace(b"5s", "5 s à".encode()),  # UTF-8 text in a text cell
        FIRST + HEADER + b"fe2,FRONTEND,1,10,OPEN,,0,,,\n",  # a second header block
        FIRST.replace(b"be,BACKEND", b"# be,BACKEND"),  # a comment-like row
        FIRST.replace(b"# pxname", b"#pxname"),  # the header written differently
        FIRST.replace(b"be,BACKEND,5,50,UP,,1,", b",BACKEND,5,50,UP,,1,"),  # an empty pxname
        FIRST.replace(b"UP,,1,,,", b"UP,,9x,,,"),  # a bad type
        FIRST.replace(b"UP,,1,,,", b"UP,,7,,,"),  # a type number HAProxy does not have
        FIRST.replace(b"UP,,1,,,", b"UP,,,,,"),  # no type: taken from svname
        FIRST.replace(b",type,", b",tipo,"),  # no type column
        FIRST.replace(b"# pxname,svname,", b"# svname,pxname,"),  # columns in another order
        FIRST.replace(b"# pxname,", b"# proxy,"),  # no pxname column
        FIRST.replace(b"scur,stot", b"scur,scur"),  # a column named twice
        FIRST.replace(b"scur,stot", b"scur,gadget"),  # a column nobody declared
        FIRST.replace(b"check_status,", b"check_status,mode,").replace(b"\n", b",\n"),  # a text column
        b"garbage before\n" + FIRST,  # text before the header
        FIRST.split(b"\n", 1)[1],  # no header at all
        b"",
    ],
)
def test_a_changed_payload_is_read_by_the_careful_parser(second: bytes) -> None:
    assert_same_as_careful(FIRST, second)


SHORT = b"# pxname,svname,scur,stot\nfe,FRONTEND,1,10\nbe,BACKEND,2,20"  # no newline at the end


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (SHORT, SHORT.replace(b",20", b",21")),  # the last cell of the body is a sample: a hit
        (SHORT, SHORT[: -len(b"20")]),  # ... that became empty at the very end of the body
        (SHORT, SHORT.replace(b",20", b",")),
        (SHORT + b"\n", SHORT + b"\n7"),  # the blank last line holds a number now
        (FIRST + b"\n\n", FIRST + b"\n3\n"),  # a blank line holds a number now
        (
            FIRST,
            FIRST.replace(b"OPEN,,0,,,\n", b"OPEN,,0,,,").replace(
                b"UP,L4OK,2,10.0.0.1:80,5s,", b"UP,L4OK\n2,10.0.0.1:80,5s,"
            ),
        ),
        (SHORT, SHORT.replace(b",1,10\nbe,", b",1\n10,be,")),  # a newline moved: same separator counts
        (SHORT, SHORT.replace(b"be,BACKEND", b"be,BACKENE")),  # an identifying cell of equal length
        (SHORT, SHORT.replace(b"be,BACKEND", b"bee,BACKEN")),  # identifying cells trade a byte
        (FIRST.replace(b"\n", b"\r\n"), moved(FIRST)),  # a CRLF skeleton, then an LF body
        (FIRST, moved(FIRST).replace(b"\n", b"\r\n")),  # an LF skeleton, then a CRLF body
        (FIRST.replace(b"\n", b"\r\n"), moved(FIRST).replace(b"\n", b"\r\n")),  # CRLF twice: a hit
    ],
)
def test_layout_changes_that_keep_the_separator_counts(first: bytes, second: bytes) -> None:
    """The fast reader of LF bodies numbers cells by separators (commas and newlines): bodies
    with as many of each but other lines, other cells or other line ends are the careful parse."""
    assert_same_as_careful(first, second)


def test_the_reads_of_a_short_body_and_of_a_crlf_body_are_hits() -> None:
    assert assert_same_as_careful(SHORT, SHORT.replace(b",20", b",-21")) == 1
    crlf = FIRST.replace(b"\n", b"\r\n")
    assert assert_same_as_careful(crlf, moved(crlf)) == 1


@pytest.mark.parametrize(
    "first",
    [
        FIRST.replace(b"5s,", b'"5s, ago",'),  # quoted cells: no skeleton is kept
        FIRST.replace(b",2,20,", b",x,20,"),  # an error: no skeleton is kept
        FIRST + HEADER + b"fe2,FRONTEND,1,10,OPEN,,0,,,\n",
        FIRST.replace(b"\n", b"\r\n"),
        b"\xef\xbb\xbf" + FIRST,
        FIRST + b"\n\n",
    ],
)
def test_unusual_first_payloads_then_a_normal_one(first: bytes) -> None:
    assert_same_as_careful(first, FIRST)
    assert_same_as_careful(first, moved(first))


def test_other_targets_and_labels_do_not_share_a_skeleton() -> None:
    outcome(record(FIRST, 0, cluster="c1"))
    hits = _reuse.CACHE.hits
    warm = parse_record(record(FIRST, 1, cluster="c2"), DEFAULT_CATALOG)
    assert _reuse.CACHE.hits == hits
    assert ("cluster", "c2") in warm.samples.column("labels")[0].as_py()


def test_another_catalog_does_not_share_a_skeleton() -> None:
    outcome(record(FIRST))
    other = Catalog()
    other.haproxy_csv.pop("scur")
    hits = _reuse.CACHE.hits
    warm = parse_record(record(FIRST, 1), other)
    assert _reuse.CACHE.hits == hits
    assert "haproxy.csv.scur" in warm.samples.column("metric").to_pylist()


def test_reuse_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HCIWATCH_PARSE_REUSE", "0")
    outcome(record(FIRST, 0))
    outcome(record(FIRST, 1))
    assert _reuse.CACHE.hits == 0


_DIGITS = re.compile(rb"(?<=,)[0-9]+(?=,)")


@given(st.sampled_from(sorted(CORPUS)), st.binary(max_size=48), st.integers(min_value=0, max_value=10**6))
def test_fuzz_spliced_reads_equal_the_careful_parser(name: str, junk: bytes, cut: int) -> None:
    """The first read is a corpus file, the second the same file moved on, with a random splice."""
    _reuse.CACHE.clear()
    body = moved(CORPUS[name])
    at = cut % (len(body) + 1)
    assert_same_as_careful(CORPUS[name], body[:at] + junk + body[at + len(junk) :])


@given(
    st.sampled_from(sorted(CORPUS)),
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=10**6),
            st.sampled_from(
                [
                    b"",
                    b"-1",
                    b"0",
                    b"-0",
                    b"007",
                    b"x",
                    b"0x1F",
                    b"+1",
                    b"1.5",
                    b"99999999999999999999",
                    b"-",
                    b" 1",
                    b'"',
                ]
            ),
        ),
        max_size=4,
    ),
)
def test_fuzz_cell_edits_equal_the_careful_parser(name: str, edits: list[tuple[int, bytes]]) -> None:
    """The second read has some number cells replaced: empty, negative, text, too long, quoted."""
    _reuse.CACHE.clear()
    body = moved(CORPUS[name], 5)
    cells = list(_DIGITS.finditer(body))
    if cells:
        for where, new in sorted(edits, key=lambda e: -cells[e[0] % len(cells)].start()):
            m = cells[where % len(cells)]
            body = body[: m.start()] + new + body[m.end() :]
    assert_same_as_careful(CORPUS[name], body)


PLAIN = {
    "show_stat_2.6.12.csv",
    "stats_page_2.6.12.csv",
    "otelcol-haproxy-stats.csv",
    "telegraf-haproxy-sample_output.csv",
}


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_the_plain_reader_takes_plain_payloads_only_and_equals_the_careful_one(name: str) -> None:
    """Real captures are plain; quoted cells, bad cells and headerless answers are not."""
    rec = record(CORPUS[name])
    got = _parse_plain(rec, DEFAULT_CATALOG)
    if name in PLAIN:
        assert got is not None
    if got is not None:
        assert_equal(("", got[0]), careful(rec))


_cells_plain = st.one_of(
    st.just(""),
    st.integers(min_value=-(10**20), max_value=10**20).map(str),
    st.sampled_from(["UP", "DOWN", "MAINT", "no check", "UP 1/3", "L4OK", "* L7OK", "10.0.0.1:80", "[::1]:8", "1.5"]),
    st.text(alphabet=st.characters(blacklist_characters=',"\n\r', blacklist_categories=["Cs"]), max_size=6),
)


@given(
    st.lists(st.lists(_cells_plain, min_size=9, max_size=9), min_size=1, max_size=6),
    st.booleans(),
    st.sampled_from([0, 0, 0, 1, -1]),
)
def test_fuzz_plain_rows_equal_the_careful_parser(rows: list[list[str]], crlf: bool, longer: int) -> None:
    """Rows of the header's width (the last one maybe a cell longer or shorter) with any cell text."""
    end = b"\r\n" if crlf else b"\n"
    for r in rows:  # mostly rows the plain reader takes: a pxname, a type it knows
        r[0] = r[0] or "px"
        r[6] = ["", "0", "1", "2", "3", "9", r[6]][len(r[1]) % 7]
    rows[-1] = rows[-1] + ["7"] if longer > 0 else rows[-1][: 9 + longer]
    body = HEADER.rstrip(b"\n") + end + b"".join(",".join(r).encode() + b"," + end for r in rows)
    rec = record(body)
    got = _parse_plain(rec, DEFAULT_CATALOG)
    if got is not None:
        assert_equal(("", got[0]), careful(rec))
    _reuse.CACHE.clear()
    assert_same_as_careful(body, body)


@pytest.mark.parametrize(
    "cell",
    [b"0", b"7", b"-7", b"007", b"-0", b"-00", b"123456789012345678", b"-123456789012345678", b"9007199254740993"],
)
def test_plain_integers_are_read_as_the_float_cast_reads_them(cell: bytes) -> None:
    """:func:`_reuse.integers` (an integer cast) gives the float cast's values bit for bit: the
    sign of ``-0`` included, and integers past 2**53 rounded alike."""
    body = b"a," + cell + b",b,1\n"
    buf = np.frombuffer(body, dtype=np.uint8)
    starts, ends = np.array([2, len(body) - 2]), np.array([2 + len(cell), len(body) - 1])
    got = _reuse.integers(body, buf, starts, ends)
    assert got is not None
    assert got.tobytes() == _reuse.cast_integers(body, starts, ends).tobytes()


@pytest.mark.parametrize(
    "cell",
    [b"0x1F", b"0X1f", b"-0x1", b"0x", b"+1", b"-", b"1.5", b"1e3", b" 1", b"1 ", b"x", b"--1", b"1234567890123456789"],
)
def test_anything_but_a_plain_integer_is_refused(cell: bytes) -> None:
    """Arrow's integer cast also reads hexadecimal: refused like every other non-plain cell."""
    body = b"a," + cell + b",1\n"
    buf = np.frombuffer(body, dtype=np.uint8)
    assert _reuse.integers(body, buf, np.array([2, len(body) - 2]), np.array([2 + len(cell), len(body) - 1])) is None

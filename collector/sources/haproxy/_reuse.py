"""Repeated ``show stat`` reads: reuse everything but the numbers when the rows are unchanged.

Why: an LB VM prints the same proxies and servers, in the same order, read after read; only the
counters move. Splitting ~120 cells per row, building one label map per row and parsing every
server address again was nearly all of the CSV parser's cost (and HAProxy CSV is most of the
samples a replay reads). So after a clean parse the *skeleton* of the payload is kept per target
(:mod:`collector.sources.skeletons`): the bytes up to the end of the header line, the field
count of every row, the bytes of the cells that decide labels, row types, ``haproxy.up`` and IP
observations (``pxname``, ``svname``, ``type``, ``status``, ``check_status``, ``addr``), which
metric cells gave a sample, and the parsed tables.

The next payload of that target fits the skeleton when — checked with array operations over the
whole body, no Python work per row or cell —

* it starts with the same header bytes and has no ``"`` anywhere (a quoted cell can span lines
  or hide commas: the careful parser reads those);
* it has the same lines, every non-empty one with the same number of commas;
* those identifying cells are byte-identical, and the same metric cells are empty;
* every non-empty metric cell is a plain decimal integer (``-?[0-9]{1,18}``, what HAProxy
  prints), and the body is UTF-8.

Then only the numbers are converted (one Arrow cast) and the previous tables are returned with
new ``ts`` and ``value`` columns. A body without CR (what HAProxy writes) is checked without
splitting it into rows: one pass finds its commas and newlines, and the skeleton's cells are
looked up by number (:class:`FlatLayout`); a body with CRs is split row by row as the careful
parser cuts its lines. Anything else — a server added, a status changed, text in a
number cell, a stray quote, a short row — falls back to the careful parser, which refreshes the
skeleton, so output and errors are exactly the careful parser's (``tests/sources/
test_haproxy_reuse.py`` compares them on the corpus and under hypothesis).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from collector.catalog import Catalog
from collector.schema import TS_TYPE, ParseResult, RawRecord, to_ms
from collector.sources.prometheus._scan import view_ranges
from collector.sources.skeletons import SkeletonCache
from collector.text import without_bom

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
BOOL = npt.NDArray[np.bool_]

_NL, _CR, _COMMA, _MINUS, _HASH = 10, 13, 44, 45, 35
_MAX_DIGITS = 18  # Arrow's cast and Python's float agree exactly on integers this short


@dataclass
class Skeleton:
    """What a clean parse of one target's ``show stat`` payload leaves for the next read."""

    catalog: Catalog
    head: bytes  # the payload up to and including the header line's newline
    n_lines: int  # lines after the head
    data_lines: I64  # which of them are rows (the others are empty)
    fields: int  # fields per row: the header's width, or one more when rows end with a comma
    trailing: bool  # fields is one more than the header's width (the last field is empty)
    ident_cols: I64  # positions of the identifying cells
    ident_len: I64  # their lengths, row by row
    ident: bytes  # their bytes, concatenated
    plan_cols: I64  # positions of the metric cells (increasing)
    kept: BOOL  # (rows, metric cells): which gave a sample
    is_plan: BOOL  # per sample: from a metric cell (else a haproxy.up sample)
    up: F64  # the haproxy.up values, in sample order
    samples: pa.Table
    ip_observations: pa.Table
    nbytes: int
    flat: FlatLayout


@dataclass
class FlatLayout:
    """The same layout as cell numbers of the body after the head, for a body without CR.

    Cut at every comma and newline, the body is a sequence of cells (one per field of a row, one
    per empty line) and separators: separator ``j`` lies between cells ``j`` and ``j + 1``. With
    the same commas per line, every cell of the skeleton has the same number in the next body, so
    one pass over the bytes (where are the separators) and a few gathers check and read it.
    """

    n_commas: int
    newlines: I64  # the separators that are newlines, by separator number
    empty: I64  # cells that must be empty: blank lines, trailing cells, metric cells without a sample
    ident: I64  # identifying cells, in the order of ``Skeleton.ident``
    ident_cell: I64  # per byte of ``Skeleton.ident``: its cell
    ident_at: I64  # per byte of ``Skeleton.ident``: its offset in the body from its cell's bounds entry
    kept: I64  # metric cells that gave a sample, in sample order


def flat_layout(
    cells: Cells, ident_cols: I64, ident_len: I64, plan_cols: I64, kept: BOOL, trailing: bool
) -> FlatLayout:
    """Cell numbers of a split body (see :class:`FlatLayout`); ``ident_len`` are the identifying
    cells' lengths, row by row."""
    fields = cells.starts.shape[1]
    per_line = np.ones(cells.n_lines, dtype=np.int64)
    per_line[cells.data_lines] = fields
    first = np.zeros(cells.n_lines, dtype=np.int64)  # each line's first cell
    np.cumsum(per_line[:-1], out=first[1:])
    row_first = first[cells.data_lines][:, None]
    blank = np.ones(cells.n_lines, dtype=np.bool_)
    blank[cells.data_lines] = False
    empty = [first[blank], (row_first + plan_cols)[~kept]]
    if trailing:
        empty.append(row_first[:, 0] + fields - 1)
    ident = (row_first + ident_cols).ravel()
    # the ident bytes as one gather once the lengths are known equal: byte b of cell k is at
    # bounds[k] + 1 + (its offset in the cell)
    before = np.zeros(len(ident_len), dtype=np.int64)
    np.cumsum(ident_len[:-1], out=before[1:])
    total = int(ident_len.sum())
    return FlatLayout(
        n_commas=len(cells.data_lines) * (fields - 1),
        newlines=first[1:] - 1,
        empty=np.sort(np.concatenate(empty)),
        ident=ident,
        ident_cell=np.repeat(ident, ident_len),
        ident_at=np.arange(total, dtype=np.int64) - np.repeat(before, ident_len) + 1,
        kept=(row_first + plan_cols)[kept],
    )


CACHE: SkeletonCache[Skeleton] = SkeletonCache()


@dataclass
class Cells:
    """Where every field of every row of a payload starts and ends (byte offsets)."""

    buf: npt.NDArray[np.uint8]
    n_lines: int
    data_lines: I64
    starts: I64  # (rows, fields)
    ends: I64


def split_rows(body: bytes, head_len: int) -> Cells | None:
    """Split the rows after the header on every comma; None when rows differ in field count.

    Lines are cut as the careful parser cuts them (``\\n``, one trailing ``\\r`` dropped); a row's
    commas are all separators because the caller has made sure there is no quote in the body.
    """
    buf = np.frombuffer(body, dtype=np.uint8)
    rest = buf[head_len:]
    nl = np.flatnonzero(rest == _NL) + head_len
    n_lines = len(nl) + 1
    ls = np.empty(n_lines, dtype=np.int64)
    ls[0] = head_len
    ls[1:] = nl + 1
    le = np.empty(n_lines, dtype=np.int64)
    le[:-1] = nl
    le[-1] = len(buf)
    ne = np.flatnonzero(le > ls)
    le[ne] -= buf[le[ne] - 1] == _CR
    data = np.flatnonzero(le > ls)
    commas = np.flatnonzero(rest == _COMMA) + head_len
    n = len(data)
    if n == 0 or len(commas) % n:
        return None
    per = len(commas) // n
    grid = commas.reshape(n, per)
    d_ls, d_le = ls[data], le[data]
    # sorted commas, n * per of them, each row's block inside its own line: every line has `per`
    if per and ((grid[:, 0] < d_ls).any() or (grid[:, -1] >= d_le).any()):
        return None
    starts = np.empty((n, per + 1), dtype=np.int64)
    ends = np.empty((n, per + 1), dtype=np.int64)
    starts[:, 0] = d_ls
    starts[:, 1:] = grid + 1
    ends[:, :-1] = grid
    ends[:, -1] = d_le
    return Cells(buf, n_lines, data, starts, ends)


def _gather(buf: npt.NDArray[np.uint8], starts: I64, ends: I64) -> bytes:
    """The bytes of the ranges ``[starts[i], ends[i])``, concatenated."""
    lens = ends - starts
    total = int(lens.sum())
    if total == 0:
        return b""
    before = np.zeros(len(lens), dtype=np.int64)
    np.cumsum(lens[:-1], out=before[1:])
    idx = np.repeat(starts - before, lens) + np.arange(total, dtype=np.int64)
    return bytes(buf[idx].tobytes())


def header_end(body: bytes) -> int:
    """Bytes up to and including the header line (the first line starting with ``#``), or 0."""
    at = body.find(b"#")
    if at < 0 or (at > 0 and body[at - 1] != _NL):
        return 0
    end = body.find(b"\n", at)
    return end + 1 if end >= 0 else 0


def plain_body(record: RawRecord) -> bytes | None:
    """The payload as the careful parser reads it, or None when it holds anything unusual."""
    body = without_bom(record.body)
    # ``b"\r\r" in`` is a two-byte search (~2 ns a byte); the memchr for one CR rules it out first
    if b'"' in body or (b"\r" in body and b"\r\r" in body) or len(body) >= 2**31 - 1:
        return None  # quoted cells; lines ending in CRs the careful reader strips all of
    if not body.isascii():
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            return None
    return body


def remember(
    record: RawRecord,
    catalog: Catalog,
    width: int,
    ident_cols: list[int],
    plan_cols: list[int],
    keep: BOOL,
    result: ParseResult,
) -> None:
    """Keep the skeleton of a clean parse: one header, no error, no quoted cell.

    ``keep`` is the careful parser's (rows, metric cells + haproxy.up) matrix of cells that gave a
    sample; the layout is read again from the bytes here, and nothing is kept unless it describes
    exactly the rows the careful parser accepted.
    """
    body = plain_body(record)
    head_len = header_end(body) if body is not None else 0
    cells = split_rows(body, head_len) if body is not None and head_len else None
    n_plan = len(plan_cols)
    plan = np.asarray(plan_cols, dtype=np.int64)
    if (
        cells is None
        or result.errors
        or not result.samples.num_rows
        or cells.starts.shape[0] != keep.shape[0]
        or keep.shape[1] != n_plan + 1
        or (n_plan > 1 and (np.diff(plan) <= 0).any())
    ):
        CACHE.drop(record)
        return
    assert body is not None
    fields = cells.starts.shape[1]
    if not (fields == width or (fields == width + 1 and (cells.ends[:, -1] == cells.starts[:, -1]).all())):
        CACHE.drop(record)
        return
    ident = np.asarray(ident_cols, dtype=np.int64)
    i_s, i_e = cells.starts[:, ident].ravel(), cells.ends[:, ident].ravel()
    lens = cells.ends[:, plan] - cells.starts[:, plan]
    kept = keep[:, :n_plan]
    if (kept & (lens == 0)).any() or (~kept & (lens > 0)).any():
        CACHE.drop(record)  # a non-number in a cell nobody declared numeric: read it carefully
        return
    from_plan = np.zeros(keep.shape, dtype=np.bool_)
    from_plan[:, :n_plan] = True
    is_plan = from_plan.ravel()[keep.ravel()]
    values = result.samples.column("value").to_numpy()
    sk = Skeleton(
        catalog=catalog,
        head=body[:head_len],
        n_lines=cells.n_lines,
        data_lines=cells.data_lines,
        fields=fields,
        trailing=fields == width + 1,
        ident_cols=ident,
        ident_len=i_e - i_s,
        ident=_gather(cells.buf, i_s, i_e),
        plan_cols=plan,
        kept=kept.copy(),
        is_plan=is_plan,
        up=np.array(values[~is_plan], dtype=np.float64),
        samples=result.samples,
        ip_observations=result.ip_observations,
        nbytes=0,
        flat=flat_layout(cells, ident, i_e - i_s, plan, kept, fields == width + 1),
    )
    flat = sk.flat
    sk.nbytes = (
        head_len
        + len(sk.ident)
        + sk.ident_len.nbytes
        + sk.data_lines.nbytes
        + sk.kept.nbytes
        + sk.is_plan.nbytes
        + sk.up.nbytes
        + int(result.samples.nbytes)
        + int(result.ip_observations.nbytes)
        + flat.newlines.nbytes
        + flat.empty.nbytes
        + flat.ident.nbytes
        + flat.ident_cell.nbytes
        + flat.ident_at.nbytes
        + flat.kept.nbytes
    )
    CACHE.put(record, sk)


def reuse(record: RawRecord, catalog: Catalog) -> ParseResult | None:
    """The parse of the record from its target's skeleton, or None when it does not fit exactly."""
    sk = CACHE.get(record, catalog)
    if sk is None:
        CACHE.misses += 1
        return None
    out = _reuse(sk, record)
    if out is None:
        CACHE.misses += 1
    else:
        CACHE.hits += 1
    return out


def _reuse(sk: Skeleton, record: RawRecord) -> ParseResult | None:
    body = plain_body(record)
    if body is None or not body.startswith(sk.head):
        return None
    buf = np.frombuffer(body, dtype=np.uint8)
    ranges = _flat_ranges(sk, body, buf) if b"\r" not in body else _split_ranges(sk, body, buf)
    if ranges is None:
        return None
    ks, ke = ranges
    if (ke <= ks).any():
        return None  # a metric cell that gave a sample is empty now
    numbers = integers(body, buf, ks, ke)
    if numbers is None:
        return None
    values = np.empty(len(sk.is_plan), dtype=np.float64)
    values[sk.is_plan] = numbers
    values[~sk.is_plan] = sk.up
    ms = to_ms(record.ts)
    ips = sk.ip_observations
    m = ips.num_rows
    stamps = pa.py_buffer(np.full(max(len(values), m), ms, dtype=np.int64).data)  # one buffer for both
    schema = sk.samples.schema
    samples = sk.samples.set_column(
        0, schema.field(0), pa.Array.from_buffers(TS_TYPE, len(values), [None, stamps])
    ).set_column(5, schema.field(5), pa.array(values, pa.float64()))
    if m:
        ips = ips.set_column(0, ips.schema.field(0), pa.Array.from_buffers(TS_TYPE, m, [None, stamps]))
    result = ParseResult()
    result.samples, result.ip_observations = samples, ips
    return result


def integers(body: bytes, buf: npt.NDArray[np.uint8], ks: I64, ke: I64) -> F64 | None:
    """The cells ``[ks, ke)`` of the body as floats when every one is a plain decimal integer
    ``-?[0-9]{1,18}``, else None; the values are :func:`cast_integers`'s.

    Arrow's string to int64 cast is the digit check (one pass over the cells only, where a
    running count of non-digits read the whole body): it accepts exactly ``-?[0-9]+`` plus
    hexadecimal ``0x…``/``0X…``, which is refused here by the byte after the first digit. At most
    18 digits, an integer converts to the same float as its decimal text (both correctly
    rounded); the one difference, ``-0`` (integer 0, float -0.0), is put back by the sign.
    """
    if len(ks) == 0:
        return np.empty(0, dtype=np.float64)
    minus = buf[ks] == _MINUS
    digits = ke - ks - minus
    if (digits <= 0).any() or (digits > _MAX_DIGITS).any():
        return None
    second = (ks + minus + 1)[digits >= 2]
    if len(second) and ((buf[second] | 0x20) == ord("x")).any():
        return None  # hexadecimal (or no number at all): the careful parser decides
    try:
        cast = pc.cast(view_ranges(pa.py_buffer(body), ks, ke), pa.int64())
    except pa.ArrowInvalid:
        return None
    data = cast.buffers()[1]
    assert data is not None  # an int64 array always has its data buffer
    n = 2 * len(ks) - 1
    values = np.frombuffer(memoryview(data), dtype=np.int64, count=cast.offset + n)[cast.offset :: 2]
    out = values.astype(np.float64)
    if minus.any():
        out[minus] = -np.abs(out[minus])  # "-0" is -0.0, like the float cast of the text
    return out


def _flat_ranges(sk: Skeleton, body: bytes, buf: npt.NDArray[np.uint8]) -> tuple[I64, I64] | None:
    """The sample cells' byte ranges when a body without CR fits the skeleton (else None).

    Same commas and newlines in number, the newlines where the skeleton had them: then every line
    has the skeleton's fields (see :class:`FlatLayout`).
    """
    flat, head_len = sk.flat, len(sk.head)
    n_nl = len(flat.newlines)
    if body.count(b"\n", head_len) != n_nl:
        return None
    rest = buf[head_len:]
    seps = np.flatnonzero((rest == _COMMA) | (rest == _NL))
    if len(seps) != n_nl + flat.n_commas:
        return None
    # cell k is [bounds[k] + 1, bounds[k + 1]): bounds[j + 1] is separator j
    bounds = np.empty(len(seps) + 2, dtype=np.int64)
    bounds[0] = head_len - 1
    bounds[-1] = len(buf)
    np.add(seps, head_len, out=bounds[1:-1])
    if n_nl and (buf[bounds[flat.newlines + 1]] != _NL).any():
        return None  # the newlines elsewhere: lines of other widths
    if len(flat.empty) and (bounds[flat.empty + 1] - bounds[flat.empty] != 1).any():
        return None  # a blank line, trailing cell or metric cell without a sample is no longer empty
    if not np.array_equal(bounds[flat.ident + 1] - bounds[flat.ident] - 1, sk.ident_len):
        return None
    if buf[bounds[flat.ident_cell] + flat.ident_at].tobytes() != sk.ident:
        return None
    return bounds[flat.kept] + 1, bounds[flat.kept + 1]


def _split_ranges(sk: Skeleton, body: bytes, buf: npt.NDArray[np.uint8]) -> tuple[I64, I64] | None:
    """:func:`_flat_ranges` for a body with CRs (lines are cut as the careful parser cuts them)."""
    cells = split_rows(body, len(sk.head))
    if (
        cells is None
        or cells.n_lines != sk.n_lines
        or cells.starts.shape != (sk.kept.shape[0], sk.fields)
        or not np.array_equal(cells.data_lines, sk.data_lines)
    ):
        return None
    starts, ends = cells.starts, cells.ends
    if sk.trailing and (ends[:, -1] != starts[:, -1]).any():
        return None  # a cell after the trailing comma: a row too long
    i_s, i_e = starts[:, sk.ident_cols].ravel(), ends[:, sk.ident_cols].ravel()
    if not np.array_equal(i_e - i_s, sk.ident_len) or _gather(buf, i_s, i_e) != sk.ident:
        return None
    p_s, p_e = starts[:, sk.plan_cols], ends[:, sk.plan_cols]
    if not np.array_equal(p_e > p_s, sk.kept):
        return None
    return p_s[sk.kept], p_e[sk.kept]  # row by row, left to right: the order of the samples


def ts_column(ms: int, n: int) -> pa.Array:  # type: ignore[type-arg]
    """A timestamp column of ``n`` equal values, wrapped without a conversion pass."""
    return pa.Array.from_buffers(TS_TYPE, n, [None, pa.py_buffer(np.full(n, ms, dtype=np.int64).data)])


def cast_integers(body: bytes, starts: I64, ends: I64) -> F64:
    """Plain integers at ``[starts, ends)`` of the body as floats, converted by Arrow in place
    (over the Prometheus scanner's zero-copy range view: only the ranges are read)."""
    if len(starts) == 0:
        return np.empty(0, dtype=np.float64)
    cast = pc.cast(view_ranges(pa.py_buffer(body), starts, ends), pa.float64())
    data = cast.buffers()[1]
    assert data is not None  # a float64 array always has its data buffer
    # the values in place (``to_numpy`` would first copy the array to fill the gaps' nulls)
    n = 2 * len(starts) - 1
    return np.frombuffer(memoryview(data), dtype=np.float64, count=cast.offset + n)[cast.offset :: 2]

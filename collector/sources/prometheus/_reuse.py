"""Repeated scrapes: reuse everything but the numbers when a target's series are unchanged.

Why: an exporter writes the same series, in the same order, with the same label bytes, scrape
after scrape; only the sample values change. Parsing names and label sets again (and storing a
fresh copy of every label string) is most of a scrape's CPU and most of the store's buffered
memory. So after a clean parse the *skeleton* of the payload is kept per target: every line's
bytes up to the end of ``name{...}`` (whole lines for comments and blank lines) and the parsed
result. The next payload from that target is checked against it — same line count, every prefix
byte-identical (one vectorised Arrow ``equal``, line by line, in place), each sample line continuing
with a space and a number — and then only the value tokens are parsed; the result reuses the
previous label/metric/source/host arrays. Tables of one target therefore share their label
buffers in the store's buffer (one copy, not one per scrape).

Anything else (a changed byte, a timestamp on a sample, a token that is not one plain number)
falls back to the full parser, which then refreshes the skeleton, so the output and error
messages are exactly the full parser's (``tests/sources/test_prometheus_reuse.py`` compares them).

The cache (:mod:`collector.sources.skeletons`) is bounded in bytes, least recently used entry
evicted first, and thread-safe; ``HCIWATCH_PARSE_REUSE=0`` turns it off (benchmarks measure the
cold parser with it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from collector.catalog import Catalog
from collector.schema import TS_TYPE, ParseResult, RawRecord, to_ms
from collector.sources import skeletons
from collector.sources.prometheus._scan import _FLOAT as FLOAT_GRAMMAR
from collector.sources.prometheus._scan import F64, I64, Scan, _matches, take_ranges, view_ranges
from collector.sources.skeletons import MAX_BYTES, enabled

__all__ = ["CACHE", "MAX_BYTES", "Skeleton", "SkeletonCache", "enabled", "remember", "reuse"]

_NL, _CR, _SPACE, _RBRACE = 10, 13, 32, 125


@dataclass
class Skeleton:
    """What a clean parse of one target's payload leaves for the next one (see the docstring)."""

    catalog: Catalog
    n_lines: int
    prefix_len: I64  # per line: bytes that must be identical
    sample_lines: I64  # per row (in row order): its line
    other_lines: I64  # lines without a sample (comments, blank lines), increasing
    by_line: I64  # sample_lines[order]: the sample lines in body order
    order: I64  # rows by line (rows of the exact path come after the vectorised ones)
    plain: I64  # positions (in line order) of plain `name value` rows, which Go's float grammar checks
    prefixes: pa.Array[Any]  # element 2j: line j's prefix, odd elements empty (see :func:`_interleaved`)
    divisor: F64 | None  # per row, when any catalog unit divides
    samples: pa.Table
    ip_observations: pa.Table
    nbytes: int


class SkeletonCache(skeletons.SkeletonCache[Skeleton]):
    """Prometheus skeletons by target (least recently used out first, bounded in bytes)."""


CACHE = SkeletonCache()


def _lines(body: bytes) -> tuple[I64, I64]:
    """Every line's byte range without CR/LF, exactly as :func:`~._scan.scan` cuts them."""
    buf = np.frombuffer(body, dtype=np.uint8)
    nl = np.flatnonzero(buf == _NL)
    ls = np.empty(len(nl) + 1, dtype=np.int64)
    ls[0] = 0
    ls[1:] = nl + 1
    le = np.empty(len(nl) + 1, dtype=np.int64)
    le[:-1] = nl
    le[-1] = len(buf)
    if b"\r" in body:  # rare (exporters write LF): only then is a CR before an LF dropped
        ne = np.flatnonzero(le > ls)
        le[ne] -= buf[le[ne] - 1] == _CR
    return ls, le


def remember(
    record: RawRecord, catalog: Catalog, body: bytes, sc: Scan, divisor: F64 | None, result: ParseResult
) -> None:
    """Keep the skeleton of a clean parse (no bad line, every row from the vectorised path)."""
    if sc.bad_lines or sc.errors or not sc.n or sc.has_ts.any() or (sc.prefix_end < 0).any():
        CACHE.drop(record)
        return
    ls, le = sc.line_start, sc.line_end
    plen = le - ls
    plen[sc.line] = sc.prefix_end - ls[sc.line]
    prefix = take_ranges(pa.py_buffer(body), ls, ls + plen)
    order = np.argsort(sc.line, kind="stable")
    other = np.ones(len(ls), dtype=np.bool_)
    other[sc.line] = False
    sk = Skeleton(
        catalog=catalog,
        n_lines=len(ls),
        prefix_len=plen,
        sample_lines=sc.line.copy(),
        other_lines=np.flatnonzero(other),
        by_line=sc.line[order],
        order=order,
        # a labelled row's prefix ends with its "}", a plain row's with its name
        plain=np.flatnonzero(np.frombuffer(body, dtype=np.uint8)[sc.prefix_end[order] - 1] != _RBRACE),
        prefixes=_interleaved(prefix),
        divisor=divisor,
        samples=result.samples,
        ip_observations=result.ip_observations,
        nbytes=0,
    )
    sk.nbytes = (
        _data(prefix).size
        + plen.nbytes
        + 2 * len(ls) * 4
        + 3 * sk.sample_lines.nbytes
        + sk.other_lines.nbytes
        + sk.plain.nbytes
        + (divisor.nbytes if divisor is not None else 0)
        + _nbytes(result.samples.column("labels"))
        + result.ip_observations.nbytes
    )
    CACHE.put(record, sk)


def _interleaved(prefix: pa.Array[Any]) -> pa.Array[Any]:
    """The compact prefixes as the shape of a :func:`~._scan.view_ranges` of the next body's
    prefixes: element ``2j`` is line ``j``'s prefix, the odd elements are empty strings (over the
    same value bytes, only the offsets are new), so one ``equal`` compares line by line."""
    offsets, values = prefix.buffers()[1:3]
    assert offsets is not None and values is not None  # a sample line's prefix has its name
    o = np.frombuffer(memoryview(offsets), dtype=np.int32)[prefix.offset : prefix.offset + len(prefix) + 1]
    off = np.empty(2 * len(prefix), dtype=np.int32)
    off[0::2] = o[:-1]
    off[1::2] = o[1:]
    return pa.StringArray.from_buffers(2 * len(prefix) - 1, pa.py_buffer(off.data), values)


def _data(arr: pa.Array[Any]) -> pa.Buffer:
    """The bytes of a string array's values, exactly (no padding past the last offset)."""
    bufs = arr.buffers()
    if bufs[2] is None or bufs[1] is None or len(arr) == 0:
        return pa.py_buffer(b"")
    offs = np.frombuffer(memoryview(bufs[1]), dtype=np.int32)
    a, b = int(offs[arr.offset]), int(offs[arr.offset + len(arr)])
    return bufs[2].slice(a, b - a)


def _nbytes(col: Any) -> int:
    return int(col.nbytes)


def reuse(record: RawRecord, catalog: Catalog, body: bytes) -> ParseResult | None:
    """The parse of ``body`` from its target's skeleton, or None when it does not fit exactly."""
    sk = CACHE.get(record, catalog)
    if sk is None:
        CACHE.misses += 1
        return None
    ls, le = _lines(body)
    out = _reuse(sk, record, body, ls, le)
    if out is None:
        CACHE.misses += 1
    else:
        CACHE.hits += 1
    return out


def _reuse(sk: Skeleton, record: RawRecord, body: bytes, ls: I64, le: I64) -> ParseResult | None:
    if len(ls) != sk.n_lines:
        return None
    plen = sk.prefix_len
    width = le - ls
    if (width < plen).any():
        return None
    other = sk.other_lines
    if len(other) and (width[other] != plen[other]).any():  # comments and blank lines: whole line, no more
        return None
    data = pa.py_buffer(body)
    # every line's prefix against the skeleton's, in place (no gather of ~all the body): the
    # view's gaps are null, so only its ``2j`` elements compare, each with line j's prefix
    same = pc.equal(view_ranges(data, ls, ls + plen), sk.prefixes)
    if same.true_count != len(ls):
        return None
    buf = np.frombuffer(body, dtype=np.uint8)
    by_line = sk.by_line  # the ranges below must be in body order
    vstart = ls[by_line] + plen[by_line]
    vend = le[by_line]
    if (vstart + 1 >= vend).any() or (buf[vstart] != _SPACE).any():
        return None
    # the value tokens as a zero-copy view (element 2i is row i's token, the gaps are null and
    # skipped by the cast): no copy of the tokens, one Arrow call
    tokens = view_ranges(data, vstart + 1, vend)
    try:
        cast = pc.cast(tokens, pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # timestamps, odd spacing, junk: the
        return None  # full parser decides and explains
    # the full parser reads plain `name value` lines with Go's grammar (go_float), labelled ones
    # with Arrow's cast; Arrow accepts a few spellings Go does not ("-nan"), so check those rows
    if len(sk.plain) and not _matches(tokens.take(2 * sk.plain), f"^(?:{FLOAT_GRAMMAR})$").all():
        return None
    n = len(by_line)
    cast_data = cast.buffers()[1]
    assert cast_data is not None  # a float64 array always has its data buffer
    sorted_values = np.frombuffer(memoryview(cast_data), dtype=np.float64, count=cast.offset + 2 * n - 1)
    values = np.empty(n, dtype=np.float64)
    values[sk.order] = sorted_values[cast.offset :: 2]
    ms = to_ms(record.ts)
    ips = sk.ip_observations
    m = ips.num_rows
    stamps = pa.py_buffer(np.full(max(n, m), ms, dtype=np.int64).data)  # one buffer for both tables
    ts = pa.Array.from_buffers(TS_TYPE, n, [None, stamps])
    if sk.divisor is not None:
        values = values / sk.divisor
    schema = sk.samples.schema
    samples = sk.samples.set_column(0, schema.field(0), ts).set_column(
        5, schema.field(5), pa.array(values, pa.float64())
    )
    if m:
        ips = ips.set_column(0, ips.schema.field(0), pa.Array.from_buffers(TS_TYPE, m, [None, stamps]))
    result = ParseResult()
    result.samples, result.ip_observations = samples, ips
    return result

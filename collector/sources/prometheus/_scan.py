"""Scanner for the Prometheus text exposition format 0.0.4: a vectorized path and an exact path.

Why two paths: a windows_exporter scrape of a big Hyper-V host is ~20 MB and ~176k samples, and a
Python loop over lines (what ``prometheus_client`` does) spends tens of microseconds per sample.
The vectorized path finds every structural byte (newline, quote, brace, backslash) of the whole body
with one ``bytes.translate`` plus one ``numpy.flatnonzero``, then checks the line grammar with array
operations over those positions; strings are cut out of the body with Arrow ``take`` over
zero-copy offset arrays. It only *accepts* lines it has fully proven well-formed, in the exact
shape exporters write (``name{k="v",...} value``, optional timestamp, any escapes inside values).
Every other line — whitespace variations, label-less samples, junk — goes to the exact path, a
small per-line parser that either parses it or says precisely why not. So the fast path can be as
strict as it likes without ever rejecting a valid line (the tests check both paths agree).

Nothing here creates a Python object per sample on the fast path: rows are numpy arrays of
indices into a name dictionary, a label-key dictionary and a list of label-value *segments*
(references into the body), so dropping or moving rows never copies a string.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]
F64 = npt.NDArray[np.float64]
BOOL = npt.NDArray[np.bool_]

_NL, _QUOTE, _LBRACE, _RBRACE, _BSLASH = 10, 34, 123, 125, 92
_SPACE, _EQ, _COMMA, _CR, _HASH, _N = 32, 61, 44, 13, 35, 110

# bytes.translate table: structural bytes → 1, everything else → 0 (viewed as numpy bool).
_SPECIAL_TABLE = bytes(1 if b in (_NL, _QUOTE, _LBRACE, _RBRACE, _BSLASH) else 0 for b in range(256))
_NAME_START = np.zeros(256, dtype=np.bool_)
for _c in b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_:":
    _NAME_START[_c] = True

METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
# Go's strconv.ParseFloat grammar minus hex/underscore forms (those go through _go_float).
_FLOAT = r"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[iI][nN][fF](?:[iI][nN][iI][tT][yY])?)|[nN][aA][nN]"
_FLOAT_RE = re.compile(_FLOAT)
_HEX_FLOAT_RE = re.compile(r"[+-]?0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)[pP][+-]?[0-9]+")
_INT_RE = re.compile(r"-?[0-9]{1,19}")
# OpenMetrics timestamps: seconds, decimal or exponent forms ("1520879607.789", "1.5e3").
_OM_TS_RE = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_LABEL_VALUE = re.compile(r'((?:[^"\\\n]|\\.)*)"')
_UNESCAPE = re.compile(r'\\(["\\n])')
_WS = " \t"
# bytes.strip() strips exactly the ASCII whitespace that a bytes regex's \s matches
_ONLY_EOF = re.compile(rb"\s*# EOF\s*")
# Timestamps a datetime can hold (years 1-9999): anything else is garbage, not a sample time.
TS_MIN_MS = -62_135_596_800_000
TS_MAX_MS = 253_402_300_799_999
METRIC_TYPES = frozenset(
    {"counter", "gauge", "histogram", "summary", "untyped", "unknown", "gaugehistogram", "stateset", "info"}
)


class LineError(Exception):
    """Why one line is not a sample (the caller adds where)."""


def unescape(raw: str) -> str:
    """Label-value escapes as Prometheus reads them: ``\\\\``, ``\\"`` and ``\\n``; others kept."""
    return _UNESCAPE.sub(lambda m: "\n" if m.group(1) == "n" else m.group(1), raw)


def unescape_array(arr: pa.Array[Any], *, quotes: bool = True, newlines: bool = True) -> pa.Array[Any]:
    """:func:`unescape` over an Arrow array; NUL (absent from checked bodies) parks ``\\\\``.

    ``quotes`` / ``newlines`` False: the caller knows no backslash in ``arr`` is followed by
    ``"`` / ``n``, so that pass is skipped (with neither, ``\\\\`` → ``\\`` is one pass).
    """
    if not quotes and not newlines:
        return pc.replace_substring(arr, "\\\\", "\\")
    out = pc.replace_substring(arr, "\\\\", "\x00")
    if quotes:
        out = pc.replace_substring(out, '\\"', '"')
    if newlines:
        out = pc.replace_substring(out, "\\n", "\n")
    return pc.replace_substring(out, "\x00", "\\")


def go_float(text: str) -> float:
    """Parse a sample value the way Prometheus does (Go ``strconv.ParseFloat``)."""
    if _FLOAT_RE.fullmatch(text):
        return float(text)
    if _HEX_FLOAT_RE.fullmatch(text):
        return float.fromhex(text)
    raise LineError(f"invalid sample value {text[:40]!r}")


def parse_line(line: str, *, openmetrics: bool = False) -> tuple[str, list[tuple[str, str]], float, int | None]:
    """The exact path: one sample line → name, labels, value, timestamp (ms) or LineError.

    Whitespace is accepted wherever Prometheus' own lexer accepts it (between tokens, inside
    braces around names, ``=`` and ``,``); a trailing comma before ``}`` is allowed.

    An exemplar (`` # {trace_id="…"} 0.5 [ts]`` after the value) is checked and dropped: the
    store has no place for it, and losing the sample because of it would lose data. With
    ``openmetrics`` (the body ends with ``# EOF``) a timestamp is in **seconds** and may be a
    decimal (OpenMetrics 1.0); otherwise it is integer milliseconds (text format 0.0.4).
    """
    n = len(line)
    pos = 0
    while pos < n and line[pos] in _WS:
        pos += 1
    m = METRIC_NAME.match(line, pos)
    if m is None:
        raise LineError(f"invalid metric name at column {pos + 1}: {line[pos : pos + 40]!r}")
    name = m.group()
    pos = m.end()
    labels: list[tuple[str, str]] = []
    after_name = pos
    while pos < n and line[pos] in _WS:
        pos += 1
    if pos >= n or line[pos] != "{":
        pos = after_name
    else:
        pos += 1
        while True:
            while pos < n and line[pos] in _WS:
                pos += 1
            if pos < n and line[pos] == "}":
                pos += 1
                break
            lm = LABEL_NAME.match(line, pos)
            if lm is None:
                raise LineError(f"invalid label name at column {pos + 1}: {line[pos : pos + 40]!r}")
            key = lm.group()
            pos = lm.end()
            while pos < n and line[pos] in _WS:
                pos += 1
            if pos >= n or line[pos] != "=":
                raise LineError(f"expected '=' after label name {key!r} at column {pos + 1}")
            pos += 1
            while pos < n and line[pos] in _WS:
                pos += 1
            if pos >= n or line[pos] != '"':
                raise LineError(f"expected '\"' to open the value of label {key!r} at column {pos + 1}")
            vm = _LABEL_VALUE.match(line, pos + 1)
            if vm is None:
                raise LineError(f"unterminated value of label {key!r} (opened at column {pos + 1})")
            labels.append((key, unescape(vm.group(1))))
            pos = vm.end()
            while pos < n and line[pos] in _WS:
                pos += 1
            if pos < n and line[pos] == ",":
                pos += 1
                continue
            if pos < n and line[pos] == "}":
                pos += 1
                break
            raise LineError(f"expected ',' or '}}' after the value of label {key!r} at column {pos + 1}")
        if len({k for k, _ in labels}) != len(labels):
            seen: set[str] = set()
            dup = next(k for k, _ in labels if k in seen or seen.add(k))  # type: ignore[func-returns-value]
            raise LineError(f"duplicate label name {dup!r}")
    if pos < n and line[pos] not in _WS:
        raise LineError(f"unexpected character {line[pos]!r} at column {pos + 1} after the metric name")
    tail = line[pos:]
    hash_at = tail.find("#")  # values and timestamps never hold '#': what follows is an exemplar
    if hash_at >= 0:
        _check_exemplar(tail[hash_at + 1 :], pos + hash_at + 1)
        tail = tail[:hash_at]
    rest = tail.split()
    if not rest:
        raise LineError("missing sample value")
    if len(rest) > 2:
        raise LineError(f"unexpected text after the timestamp: {' '.join(rest[2:])[:40]!r}")
    value = go_float(rest[0])
    ts: int | None = None
    if len(rest) == 2:
        ts = _om_timestamp(rest[1]) if openmetrics else _ms_timestamp(rest[1])
        if not TS_MIN_MS <= ts <= TS_MAX_MS:
            raise LineError(f"timestamp out of range (years 1-9999): {rest[1][:40]!r}")
    return name, labels, value, ts


def _ms_timestamp(text: str) -> int:
    if _INT_RE.fullmatch(text):
        return int(text)
    hint = "; an OpenMetrics body, whose timestamps are seconds, ends with '# EOF'" if _OM_TS_RE.fullmatch(text) else ""
    raise LineError(f"invalid timestamp {text[:40]!r} (want integer milliseconds{hint})")


def _om_timestamp(text: str) -> int:
    if not _OM_TS_RE.fullmatch(text):
        raise LineError(f"invalid timestamp {text[:40]!r} (want seconds, as OpenMetrics writes them)")
    try:
        return round(float(text) * 1000)
    except OverflowError:  # float("1e400") is inf; round(inf) overflows
        raise LineError(f"timestamp out of range (years 1-9999): {text[:40]!r}") from None


def _check_exemplar(text: str, col: int) -> None:
    """An exemplar is ``{labels} value [timestamp]``; anything else after a '#' is an error."""
    body = text.strip(_WS)
    close = body.rfind("}")
    if not body.startswith("{") or close < 0:
        raise LineError(f"text after '#' at column {col} is not an exemplar ({{labels}} value): {body[:40]!r}")
    nums = body[close + 1 :].split()
    if not 1 <= len(nums) <= 2:
        raise LineError(f"exemplar at column {col} needs a value after its labels: {body[:40]!r}")
    go_float(nums[0])
    if len(nums) == 2 and not _OM_TS_RE.fullmatch(nums[1]):
        raise LineError(f"invalid exemplar timestamp {nums[1][:40]!r}")


def check_comment(line: str) -> None:
    """HELP and TYPE lines must name a metric; TYPE must name a known type. Other comments pass."""
    parts = line.split(None, 3)
    if len(parts) < 2 or parts[0] != "#" or parts[1] not in ("HELP", "TYPE"):
        return
    if len(parts) < 3 or not METRIC_NAME.fullmatch(parts[2]):
        raise LineError(f"# {parts[1]} line without a valid metric name")
    if parts[1] == "TYPE" and (len(parts) < 4 or parts[3].strip() not in METRIC_TYPES):
        got = parts[3].strip() if len(parts) > 3 else ""
        raise LineError(f"# TYPE {parts[2]}: unknown metric type {got[:30]!r}")


def _segments(data: pa.Buffer, starts: I64, ends: I64, *, pad: bool = False) -> pa.Array[Any]:
    """A zero-copy string array over ``data``: element 2i is range i, odd elements the gaps.

    With ``pad`` a final empty element is added, so the array has exactly ``2 * len(starts)``.
    The offsets are written as int32 directly (one pass per input, no int64 detour).
    """
    n = len(starts)
    if n == 0:
        return pa.array([], pa.string())
    size = 2 * n + (1 if pad else 0)
    large = int(ends[-1]) > 2**31 - 1  # ranges are sorted: the last end is the largest offset
    off = np.empty(size, dtype=np.int64 if large else np.int32)
    off[0 : 2 * n : 2] = starts
    off[1 : 2 * n : 2] = ends
    if pad:
        off[-1] = ends[-1]
    kind = pa.LargeStringArray if large else pa.StringArray
    return kind.from_buffers(size - 1, pa.py_buffer(off.data), data)


def take_ranges(data: pa.Buffer, starts: I64, ends: I64) -> pa.Array[Any]:
    """Copy byte ranges (sorted, non-overlapping) of ``data`` into a compact string array."""
    if len(starts) == 0:
        return pa.array([], pa.string())
    seg = _segments(data, starts, ends)
    out = seg.take(np.arange(0, 2 * len(starts), 2, dtype=np.int64))
    return out.cast(pa.string()) if out.type != pa.string() else out


def view_ranges(data: pa.Buffer, starts: I64, ends: I64, hide: BOOL | None = None) -> pa.Array[Any]:
    """Byte ranges (sorted, non-overlapping) of ``data`` as a string array, without a copy.

    Element ``2i`` is range ``i``; the odd elements, the gaps between ranges, are null. Arrow's
    kernels skip null slots, so hashing (dictionary encoding) and casting read only the ranges,
    and no string is copied to get there. Take the even elements of a kernel's result. Ranges
    where ``hide`` is True are null too.
    """
    n = len(starts)
    if n == 0:
        return pa.array([], pa.string())
    seg = _segments(data, starts, ends)
    if hide is None or not hide.any():
        # every even element valid: the bit pattern 01010101 (Arrow's bitmaps are LSB first)
        validity = pa.py_buffer(np.full((2 * n - 1 + 7) // 8, 0x55, dtype=np.uint8).data)
    else:
        valid = np.zeros(2 * n - 1, dtype=np.bool_)
        valid[0::2] = ~hide
        validity = pa.py_buffer(np.packbits(valid, bitorder="little").data)
    bufs = seg.buffers()
    return pa.Array.from_buffers(seg.type, 2 * n - 1, [validity, bufs[1], bufs[2]])


def _matches(strs: pa.Array[Any], pattern: str) -> npt.NDArray[Any]:
    """Row mask "matches ``pattern``" (nulls do not match)."""
    return pc.match_substring_regex(strs, pattern).fill_null(False).to_numpy(zero_copy_only=False)


def cast_floats(strs: pa.Array[Any]) -> tuple[F64, BOOL]:
    """Parse number strings; returns values and an ok-mask (never raises).

    A null element (a gap of a :func:`view_ranges` array) is "ok" with an undefined value: the
    caller reads only the ranges. Reading the result's buffer in place saves ``to_numpy``'s
    null-filling copy.
    """
    n = len(strs)
    try:
        cast = pc.cast(strs, pa.float64())
        data = cast.buffers()[1]
        assert data is not None  # a float64 array always has its data buffer
        vals = np.frombuffer(memoryview(data), dtype=np.float64, count=cast.offset + n)[cast.offset :]
        return vals, np.ones(n, dtype=np.bool_)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    ok = np.asarray(_matches(strs, f"^(?:{_FLOAT})$"), dtype=np.bool_)
    out = np.zeros(n, dtype=np.float64)
    idx = np.flatnonzero(ok)
    if len(idx):
        sub = strs.take(idx)
        try:
            out[idx] = pc.cast(sub, pa.float64()).to_numpy(zero_copy_only=False)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            for j, s in zip(idx.tolist(), sub.to_pylist(), strict=True):
                try:
                    out[j] = go_float(s if s is not None else "")
                except LineError:
                    ok[j] = False
    return out, ok


def cast_ints(strs: pa.Array[Any]) -> tuple[I64, BOOL]:
    """Parse integer-millisecond timestamps; values and ok-mask (never raises)."""
    n = len(strs)
    ok = np.asarray(
        _matches(strs, r"^-?[0-9]{1,18}$"),
        dtype=np.bool_,
    )
    out = np.zeros(n, dtype=np.int64)
    idx = np.flatnonzero(ok)
    if len(idx):
        out[idx] = pc.cast(strs.take(idx), pa.int64()).to_numpy(zero_copy_only=False)
    return out, ok


@dataclass
class Scan:
    """Rows of one payload, held as indices (see the module docstring).

    Entries (one per label pair) are sorted by row. ``e_val`` indexes the value *segments*: even
    numbers ``2j`` are body range ``[vs[j], ve[j])``, numbers from ``2 * len(vs)`` on are
    ``blob`` strings (unescaped values, values from the exact path, generated labels).
    """

    body: bytes
    names: list[str] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    name_idx: I32 = field(default_factory=lambda: np.zeros(0, np.int32))
    value: F64 = field(default_factory=lambda: np.zeros(0, np.float64))
    ts: I64 = field(default_factory=lambda: np.zeros(0, np.int64))
    has_ts: BOOL = field(default_factory=lambda: np.zeros(0, np.bool_))
    line: I64 = field(default_factory=lambda: np.zeros(0, np.int64))
    # where each row's ``name{...}`` ends (its closing brace + 1; for a plain ``name value`` line
    # the end of the name), -1 for other rows of the exact path; and every line's byte range
    # (what a repeated scrape of the same target is checked against, see ``_reuse``)
    prefix_end: I64 = field(default_factory=lambda: np.zeros(0, np.int64))
    line_start: I64 = field(default_factory=lambda: np.zeros(0, np.int64))
    line_end: I64 = field(default_factory=lambda: np.zeros(0, np.int64))
    e_row: I64 = field(default_factory=lambda: np.zeros(0, np.int64))
    e_key: I32 = field(default_factory=lambda: np.zeros(0, np.int32))
    e_val: I64 = field(default_factory=lambda: np.zeros(0, np.int64))
    vs: I64 = field(default_factory=lambda: np.zeros(0, np.int64))
    ve: I64 = field(default_factory=lambda: np.zeros(0, np.int64))
    errors: list[tuple[int, str]] = field(default_factory=list)  # (0-based line, why)
    bad_lines: int = 0
    # blob: strings that are not body ranges, as chunks (first blob index, bytes, offsets) plus
    # single strings not yet packed into a chunk
    _chunks: list[tuple[int, bytes, I64]] = field(default_factory=list)
    _pending: list[bytes] = field(default_factory=list)
    _pending_start: int = 0
    blob_count: int = 0

    @property
    def n(self) -> int:
        return len(self.name_idx)

    def blob_ref(self, text: str) -> int:
        """Append one string to the blob; its value-segment number."""
        self._pending.append(text.encode("utf-8"))
        self.blob_count += 1
        return 2 * len(self.vs) + self.blob_count - 1

    def blob_add(self, arr: pa.Array[Any]) -> I64:
        """Append a string array to the blob (one copy of its bytes); their segment numbers."""
        self._flush()
        start = self.blob_count
        n = len(arr)
        if n:
            bufs = arr.buffers()
            assert bufs[1] is not None  # a string array always has its offsets buffer
            offs = np.frombuffer(memoryview(bufs[1]), dtype=np.int32)[arr.offset : arr.offset + n + 1].astype(np.int64)
            data = bytes(memoryview(bufs[2])[int(offs[0]) : int(offs[-1])]) if bufs[2] is not None else b""
            self._chunks.append((start, data, offs - offs[0]))
            self.blob_count += n
            self._pending_start = self.blob_count
        return 2 * len(self.vs) + start + np.arange(n, dtype=np.int64)

    def _flush(self) -> None:
        if self._pending:
            lens = np.fromiter((len(b) for b in self._pending), dtype=np.int64, count=len(self._pending))
            off = np.zeros(len(lens) + 1, dtype=np.int64)
            np.cumsum(lens, out=off[1:])
            self._chunks.append((self._pending_start, b"".join(self._pending), off))
            self._pending = []
        self._pending_start = self.blob_count

    def value_str(self, ref: int) -> str:
        """One label value as text (for the few places that need Python strings)."""
        base = 2 * len(self.vs)
        if ref < base:
            j = ref // 2
            return self.body[int(self.vs[j]) : int(self.ve[j])].decode("utf-8")
        idx = ref - base
        if idx >= self._pending_start:
            return self._pending[idx - self._pending_start].decode("utf-8")
        c = bisect.bisect_right([ch[0] for ch in self._chunks], idx) - 1
        start, data, off = self._chunks[c]
        k = idx - start
        return data[int(off[k]) : int(off[k + 1])].decode("utf-8")

    def values_of(self, refs: I64) -> pa.Array[Any]:
        """The label values ``refs`` name, gathered for just those entries (the special labels,
        not every label of the payload)."""
        base = 2 * len(self.vs)
        uniq, inv = np.unique(refs, return_inverse=True)
        n_body = int(np.count_nonzero(uniq < base))
        j = uniq[:n_body] // 2
        parts = [take_ranges(pa.py_buffer(self.body), self.vs[j], self.ve[j])]
        parts.append(pa.array([self.value_str(int(r)) for r in uniq[n_body:].tolist()], pa.string()))
        return pa.concat_arrays(parts).take(inv.reshape(-1))

    def take_values(self, refs: I64) -> pa.Array[Any]:
        """The label values ``refs`` (``e_val`` numbers) name, as one compact string array.

        The body ranges and the blob strings are two chunks of one chunked array: Arrow's
        ``take`` reads both in place, where concatenating them first copied the whole body.
        """
        self._flush()
        n = len(self.vs)
        offs = np.empty(2 * n + (1 if n else 0), dtype=np.int32)  # bodies are < 2 GiB
        offs[0 : 2 * n : 2] = self.vs
        offs[1 : 2 * n : 2] = self.ve
        if n:
            offs[-1] = self.ve[-1]
        chunks: list[pa.Array[Any]] = []
        if n:
            chunks.append(pa.StringArray.from_buffers(2 * n, pa.py_buffer(offs.data), pa.py_buffer(self.body)))
        if self._chunks:
            blob_off = [np.zeros(1, dtype=np.int64)]
            base = 0
            for _, chunk, off in self._chunks:
                blob_off.append(base + off[1:])
                base += len(chunk)
            boff = np.concatenate(blob_off)
            data = pa.py_buffer(b"".join(ch[1] for ch in self._chunks))
            if base > 2**31 - 1:
                big = pa.LargeStringArray.from_buffers(len(boff) - 1, pa.py_buffer(boff.data), data)
                chunks.append(big.cast(pa.string()))
            else:
                chunks.append(
                    pa.StringArray.from_buffers(len(boff) - 1, pa.py_buffer(boff.astype(np.int32).data), data)
                )
        if not chunks:
            return pa.array([], pa.string()).take(refs)
        taken = pa.chunked_array(chunks, pa.string()).take(refs)
        if isinstance(taken, pa.ChunkedArray):  # one chunk in practice
            return cast("pa.Array[Any]", taken.chunk(0) if taken.num_chunks == 1 else taken.combine_chunks())
        return taken

    def keep_rows(self, keep: BOOL) -> None:
        """Drop rows (and their entries) where ``keep`` is False; strings are not touched."""
        if keep.all():
            return
        new_id = np.cumsum(keep, dtype=np.int64) - 1
        ek = keep[self.e_row]
        self.e_row = new_id[self.e_row[ek]]
        self.e_key = self.e_key[ek]
        self.e_val = self.e_val[ek]
        self.name_idx = self.name_idx[keep]
        self.value = self.value[keep]
        self.ts = self.ts[keep]
        self.has_ts = self.has_ts[keep]
        self.line = self.line[keep]
        self.prefix_end = self.prefix_end[keep]


def _dict_encode(view: pa.Array[Any]) -> tuple[I32, list[str]]:
    """Dictionary indices and dictionary of the ranges of a :func:`view_ranges` array."""
    enc = view.dictionary_encode()
    ind = enc.indices
    buf = ind.buffers()[1]
    assert buf is not None
    idx = np.frombuffer(memoryview(buf), dtype=np.int32)[ind.offset : ind.offset + len(ind) : 2]
    return idx, [str(s) for s in enc.dictionary.to_pylist()]


def _label_keys(view: pa.Array[Any]) -> tuple[I32, list[str], BOOL, BOOL]:
    """Label keys read with their delimiters (``{key=`` / ``,key=``): ids, keys, and per id
    whether the key is valid and whether it is delimited (``{``/``,`` before, ``=`` after).

    The delimited strings are dictionary-encoded, then checked and stripped once per distinct
    string. Ids are renumbered so that one key has one id and ids follow the keys' sorted order
    (``_duplicate_label_rows`` uses that). Rows with an invalid key go to the exact path.
    """
    raw_idx, raw = _dict_encode(view)
    stripped: list[str] = []
    for s in raw:
        if len(s) >= 3 and s[0] in "{," and s[-1] == "=":
            stripped.append(s[1:-1])
        else:
            stripped.append("\x00" + s)  # never equal to a key (bodies hold no NUL)
    keys = sorted(set(stripped))
    ids = {k: i for i, k in enumerate(keys)}
    remap = np.array([ids[k] for k in stripped], dtype=np.int32)
    key_ok = np.array([LABEL_NAME.fullmatch(k) is not None for k in keys], dtype=np.bool_)
    delimited = np.array([not k.startswith("\x00") for k in keys], dtype=np.bool_)
    return remap[raw_idx], keys, key_ok, delimited


def _names(data: pa.Buffer, starts: I64, ends: I64, hide: BOOL | None) -> tuple[I32, list[str]]:
    """Dictionary-encode the metric names of accepted lines (first-appearance order).

    A family's samples are consecutive lines with one name, so each name is compared with the
    previous line's (a byte comparison) and only the names that start a run are hashed.
    """
    n = len(starts)
    if hide is not None or n < 2:
        return _dict_encode(view_ranges(data, starts, ends, hide))
    view = view_ranges(data, starts, ends)
    eq = pc.equal(view[2:], view[:-2])  # element 2i: name i+1 == name i (odd elements: gaps)
    bits = eq.buffers()[1]
    assert bits is not None  # a boolean array always has its data bitmap
    same = np.unpackbits(np.frombuffer(memoryview(bits), dtype=np.uint8), bitorder="little", count=eq.offset + len(eq))
    head = np.ones(n, dtype=np.bool_)
    head[1:] = same[eq.offset :: 2] == 0
    first = np.flatnonzero(head)
    idx, names = _dict_encode(view_ranges(data, starts.take(first), ends.take(first)))
    return np.repeat(idx, np.diff(np.r_[first, n])).astype(np.int32), names


def _ranges(starts: I64, ends: I64) -> I64:
    """Indices of the concatenated half-open ranges ``[starts[i], ends[i])``."""
    lens = ends - starts
    total = int(lens.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    before = np.zeros(len(lens), dtype=np.int64)
    np.cumsum(lens[:-1], out=before[1:])
    return np.repeat(starts - before, lens) + np.arange(total, dtype=np.int64)


def _escaped_quotes(pos: I64, cls: npt.NDArray[np.uint8], idx: I64) -> I64:
    """Of the structural bytes ``idx`` (indices into ``pos``), the quotes escaped by a backslash.

    A quote is escaped when an odd run of backslashes immediately precedes it.
    """
    sub_cls = cls[idx]
    sub_pos = pos[idx]
    is_bs = sub_cls == _BSLASH
    bs = np.flatnonzero(is_bs[:-1])
    cand = bs + 1
    cand = cand[(sub_cls[cand] == _QUOTE) & (sub_pos[cand] == sub_pos[bs] + 1)]
    if not len(cand):
        return np.zeros(0, dtype=np.int64)
    cont = np.zeros(len(idx), dtype=np.bool_)
    cont[1:] = is_bs[1:] & is_bs[:-1] & (sub_pos[1:] == sub_pos[:-1] + 1)
    run_start = is_bs & ~cont
    first = np.flatnonzero(run_start)
    run_id = np.cumsum(run_start, dtype=np.int64) - 1
    run = cand - first[run_id[cand - 1]]  # length of the backslash run ending just before the quote
    return np.asarray(idx[cand[(run & 1) == 1]], dtype=np.int64)


def is_openmetrics(body: bytes) -> bool:
    """An OpenMetrics exposition ends with the ``# EOF`` line (text 0.0.4 has no such marker).

    The whole-body test is a regex, not ``body.strip() == ...``: strip copies a 20 MB body.
    """
    return body[-64:].rstrip(b" \t\r\n").endswith(b"\n# EOF") or _ONLY_EOF.fullmatch(body) is not None


def scan(body: bytes, *, openmetrics: bool = False) -> Scan:
    """Scan a UTF-8 body (NUL-free, already validated by the caller) into rows.

    ``openmetrics``: sample timestamps are seconds (see :func:`parse_line`); such rows take the
    exact path, which converts them.
    """
    out = Scan(body=body)
    if not body:
        return out
    buf = np.frombuffer(body, dtype=np.uint8)
    size = len(buf)
    pos = np.flatnonzero(np.frombuffer(body.translate(_SPECIAL_TABLE), dtype=np.bool_))
    cls = buf.take(pos)  # np.take: a leaner loop than fancy indexing for a 1-D gather
    nl_idx = np.flatnonzero(cls == _NL)

    # ---- lines: byte range [ls, le) without CR/LF; structural bytes [sp0, sp1) of pos ----------
    n_lines = len(nl_idx) + 1
    ls = np.empty(n_lines, dtype=np.int64)
    ls[0] = 0
    nl_pos = pos.take(nl_idx)
    ls[1:] = nl_pos + 1
    le = np.empty(n_lines, dtype=np.int64)
    le[:-1] = nl_pos
    le[-1] = size
    ne_idx = np.flatnonzero(le > ls)
    if b"\r" in body:  # a memchr: most exporters write LF only, and the gather is not free
        le[ne_idx] -= buf[le[ne_idx] - 1] == _CR
        ne_idx = ne_idx[le.take(ne_idx) > ls.take(ne_idx)]  # a line that was only "\r"
    out.line_start, out.line_end = ls, le
    first_byte = np.zeros(n_lines, dtype=np.uint8)
    first_byte[ne_idx] = buf.take(ls.take(ne_idx))
    nonempty = first_byte != 0
    is_comment = first_byte == _HASH
    candidate = _NAME_START.take(first_byte)
    other = nonempty & ~is_comment & ~candidate  # leading blanks, junk: the exact path decides
    sp0 = np.empty(n_lines, dtype=np.int64)
    sp0[0] = 0
    sp0[1:] = nl_idx + 1
    sp1 = np.empty(n_lines, dtype=np.int64)
    sp1[:-1] = nl_idx
    sp1[-1] = len(pos)
    is_q = cls == _QUOTE
    cq = np.zeros(len(pos) + 1, dtype=np.int32)  # bodies are < 2 GiB (checked by the caller)
    np.cumsum(is_q, out=cq[1:])
    q_in_line = cq.take(sp1) - cq.take(sp0)

    # ---- candidate lines with braces: check the shape `name{...} value` -------------------
    lab = np.flatnonzero(candidate & (sp1 - sp0 >= 2))
    fast_lines = np.zeros(n_lines, dtype=np.bool_)
    if len(lab):
        f = sp0.take(lab)
        last = sp1.take(lab) - 1
        n_q = q_in_line.take(lab)
        n_other = (last - f + 1) - n_q
        bo = pos.take(f)
        bc = pos.take(last)
        line_end = le.take(lab)
        ok = (cls.take(f) == _LBRACE) & (cls.take(last) == _RBRACE) & ((n_q & 1) == 0) & (bc + 2 < line_end)
        if ok.all():
            ok = buf.take(bc + 1) == _SPACE
        else:
            t = np.flatnonzero(ok)
            ok[t] = buf.take(bc.take(t) + 1) == _SPACE
        # lines with more than their two braces (escapes, braces inside values): check each byte
        real_q = n_q.copy()
        escaped_all = np.zeros(0, dtype=np.int64)
        cx = np.flatnonzero(ok & (n_other > 2))
        if len(cx):
            idx = _ranges(f[cx] + 1, last[cx])  # the bytes between the two outer braces
            escaped = _escaped_quotes(pos, cls, idx)
            sub_q = is_q[idx]
            if len(escaped):
                sub_q[np.searchsorted(idx, escaped)] = False
            counts = last[cx] - f[cx] - 1
            line_of = np.repeat(np.arange(len(cx), dtype=np.int64), counts)
            csum = np.zeros(len(idx) + 1, dtype=np.int64)
            np.cumsum(sub_q, out=csum[1:])
            starts = np.zeros(len(cx), dtype=np.int64)
            np.cumsum(counts[:-1], out=starts[1:])
            parity = csum[:-1] - csum[starts][line_of]
            outside = ~sub_q & ((parity & 1) == 0)  # a brace/backslash/escaped quote outside quotes
            bad = np.zeros(len(cx), dtype=np.bool_)
            bad[line_of[outside]] = True
            real = csum[starts + counts] - csum[starts]
            bad |= (real & 1) == 1
            ok[cx[bad]] = False
            real_q[cx] = real
            escaped_all = escaped
        # the real quotes, line by line (escaped ones removed from the global list)
        n_good = int(ok.sum())
        real_sum = int(real_q[ok].sum())
        if real_sum == int(cq[-1]) - len(escaped_all):  # every quote is an accepted line's (usual)
            if len(escaped_all):
                is_q = is_q.copy()
                is_q[escaped_all] = False
            qpos = pos[is_q]
        else:
            q_all = np.flatnonzero(is_q)
            if len(escaped_all):
                q_all = np.delete(q_all, cq[escaped_all])
            good_lab = np.flatnonzero(ok)
            esc_before = np.zeros(len(lab), dtype=np.int64)
            if len(escaped_all):
                esc_line = np.searchsorted(f, escaped_all, side="right") - 1
                np.add.at(esc_before, esc_line, 1)
            start_in_all = cq[f] - (np.cumsum(esc_before) - esc_before)
            qpos = pos[q_all[_ranges(start_in_all[good_lab], start_in_all[good_lab] + real_q[good_lab])]]
        opens = qpos[0::2]
        closes = qpos[1::2]
        ppl = real_q[ok] // 2  # pairs per accepted line
        good_lab = np.flatnonzero(ok)
        pline = np.repeat(np.arange(n_good, dtype=np.int64), ppl)  # pair → accepted-line number
        n_pairs = len(opens)
        first_pair = np.zeros(n_good, dtype=np.int64)
        np.cumsum(ppl[:-1], out=first_pair[1:])
        all_good = n_good == len(lab)
        bo_g, bc_g = (bo, bc) if all_good else (bo[good_lab], bc[good_lab])
        line_bad = np.zeros(n_good, dtype=np.bool_)
        # a pair's key is read with its delimiters, `{key=` or `,key=`: the checks that the byte
        # before a value's quote is '=' and that a ',' separates pairs are made once per distinct
        # key string (see _label_keys), not once per pair
        key_start = np.empty(n_pairs, dtype=np.int64)
        if n_pairs:
            key_start[1:] = closes[:-1] + 1
            has = ppl > 0
            if has.all():  # every line has labels (the usual case): no subsets to gather
                fp, lp, gb = first_pair, first_pair + ppl - 1, bc_g
                key_start[fp] = bo_g
            else:
                fp = first_pair[has]
                key_start[fp] = bo_g[has]
                lp = first_pair[has] + ppl[has] - 1
                gb = bc_g[has]
            lc = closes.take(lp)
            close_ok = gb == lc + 1  # `"}`, or `",}` (a trailing comma)
            two = np.flatnonzero(gb == lc + 2)
            close_ok[two] = buf[lc[two] + 1] == _COMMA
            line_bad[np.flatnonzero(has)[~close_ok]] = True
        line_bad[(ppl == 0) & (bc_g != bo_g + 1)] = True
        if line_bad.any():  # drop those lines' pairs; the exact path will explain them
            keep_p = ~line_bad[pline]
            opens, closes, key_start = opens[keep_p], closes[keep_p], key_start[keep_p]
            keep_l = ~line_bad
            good_lab, bo_g, bc_g, ppl = good_lab[keep_l], bo_g[keep_l], bc_g[keep_l], ppl[keep_l]
            pline = np.repeat(np.arange(len(good_lab), dtype=np.int64), ppl)
            all_good = False
        lines_ok = lab if all_good else lab[good_lab]
        fast_lines[lines_ok] = True
        if len(lines_ok):
            _build_rows(
                out,
                body,
                lines_ok,
                ls,
                le,
                bo_g,
                bc_g,
                opens,
                closes,
                key_start,
                pline,
                ppl,
                pos,
                cls,
                f if all_good else f[good_lab],
                sp1.take(lines_ok) - 1,
                openmetrics=openmetrics,
            )
            fast_lines[:] = False
            fast_lines[out.line] = True

    # ---- everything else: the exact path ---------------------------------------------------
    slow = np.flatnonzero((candidate & ~fast_lines) | other)
    if len(slow):
        _exact_path(body, ls, le, slow, out, openmetrics=openmetrics)
    for li in _comments_to_check(body, ls, le, np.flatnonzero(is_comment)).tolist():
        try:
            check_comment(body[int(ls[li]) : int(le[li])].decode("utf-8"))
        except LineError as exc:
            out.errors.append((li, str(exc)))
            out.bad_lines += 1
    return out


# Comment lines check_comment certainly accepts: `# HELP name ...` and `# TYPE name type` with
# single spaces (client_golang's layout). Any other comment is checked line by line.
_PLAIN_COMMENT = (
    r"^# (?:HELP [a-zA-Z_:][a-zA-Z0-9_:]*(?: .*)?|TYPE [a-zA-Z_:][a-zA-Z0-9_:]* (?:"
    + "|".join(sorted(METRIC_TYPES))
    + r"))$"
)


def _comments_to_check(body: bytes, ls: I64, le: I64, lines: I64) -> I64:
    """The comment lines that need :func:`check_comment` (one regex pass over all of them)."""
    if len(lines) < 16:
        return lines
    plain = _matches(view_ranges(pa.py_buffer(body), ls[lines], le[lines]), _PLAIN_COMMENT)[0::2]
    return lines[~np.asarray(plain, dtype=np.bool_)]


def _build_rows(
    out: Scan,
    body: bytes,
    lines: I64,
    ls: I64,
    le: I64,
    bo: I64,
    bc: I64,
    opens: I64,
    closes: I64,
    key_start: I64,
    pline: I64,
    ppl: I64,
    pos: I64,
    cls: npt.NDArray[np.uint8],
    sp_first: I64,
    sp_last: I64,
    *,
    openmetrics: bool = False,
) -> None:
    """Turn accepted lines into rows: names, values, label keys and value references.

    Lines whose label pairs are not delimited as ``{k="v",k="v"}`` (found while reading the keys)
    are hidden from the name and value batches, so the batches hold exactly the well-formed lines:
    a batch cast that fails falls back to Go's grammar for the whole batch.
    """
    data = pa.py_buffer(body)
    n_rows = len(lines)
    key_idx, keys, key_ok, delimited = _label_keys(view_ranges(data, key_start, opens))
    hide = None
    if not delimited.all():
        hide = np.zeros(n_rows, dtype=np.bool_)
        hide[pline[~delimited[key_idx]]] = True
    name_idx, names = _names(data, ls.take(lines), bo, hide)
    tokens = view_ranges(data, bc + 2, le.take(lines), hide)
    out.names = names
    out.name_idx = name_idx
    out.line = lines
    out.prefix_end = bc + 1
    values, ok = cast_floats(tokens)
    out.value, v_ok = values[0::2].copy(), ok[0::2].copy()
    out.ts = np.zeros(n_rows, dtype=np.int64)
    out.has_ts = np.zeros(n_rows, dtype=np.bool_)
    if hide is not None:
        v_ok |= hide  # not split below; dropped with the key check
    if not v_ok.all():
        _split_timestamps(tokens, v_ok, out)
    out.keys = keys
    out.e_row = pline
    out.e_key = key_idx
    out.vs = opens + 1
    out.ve = closes
    out.e_val = np.arange(0, 2 * len(opens), 2, dtype=np.int64)
    # values holding a backslash: unescape them (vectorized) into the blob
    has_other = np.flatnonzero(sp_last - sp_first > 2 * ppl + 1)
    if len(has_other):
        idx = _ranges(sp_first[has_other] + 1, sp_last[has_other])
        bs = pos[idx[cls[idx] == _BSLASH]]
        if len(bs):
            # the pair whose value holds each backslash (vs = opens + 1 is contiguous; opens is a
            # strided view searchsorted would copy); sorted, as bs is
            pair_of = np.searchsorted(out.vs, bs, side="right") - 1
            pair_of = pair_of[np.r_[True, pair_of[1:] != pair_of[:-1]]]
            raw = take_ranges(data, opens[pair_of] + 1, closes[pair_of])
            after = np.frombuffer(body, dtype=np.uint8).take(
                bs + 1
            )  # what each backslash escapes (values end in a quote)
            fixed = unescape_array(raw, quotes=bool((after == _QUOTE).any()), newlines=bool((after == _N).any()))
            changed = np.asarray(pc.not_equal(raw, fixed).to_numpy(zero_copy_only=False), dtype=np.bool_)
            if changed.any():
                out.e_val[pair_of[changed]] = out.blob_add(fixed.filter(pa.array(changed)))
    keep = v_ok.copy()
    bad_names = [i for i, s in enumerate(names) if not METRIC_NAME.fullmatch(s)]
    if bad_names:
        keep &= ~np.isin(name_idx, bad_names)
    if not key_ok.all():
        keep[out.e_row[~key_ok[key_idx]]] = False
    keep &= ~_duplicate_label_rows(out, ppl)
    if openmetrics:
        keep &= ~out.has_ts  # seconds, not milliseconds: the exact path converts them
    out.keep_rows(keep)


def _split_timestamps(tokens: pa.Array[Any], v_ok: BOOL, out: Scan) -> None:
    """Tokens that are not one number may be ``value timestamp``: split those, vectorized.

    ``tokens`` is a :func:`view_ranges` array: row ``i``'s token is element ``2i``.
    """
    bad = np.flatnonzero(~v_ok)
    sub = tokens.take(2 * bad)
    parts = pc.split_pattern(sub, " ")
    two = np.asarray(pc.equal(pc.list_value_length(parts), pa.scalar(2)).to_numpy(zero_copy_only=False), dtype=np.bool_)
    idx = np.flatnonzero(two)
    if not len(idx):
        return
    pairs = parts.take(idx)
    vals, ok_v = cast_floats(pc.list_element(pairs, 0))
    tss, ok_t = cast_ints(pc.list_element(pairs, 1))
    ok = ok_v & ok_t & (tss >= TS_MIN_MS) & (tss <= TS_MAX_MS)
    rows = bad[idx[ok]]
    out.value[rows] = vals[ok]
    out.ts[rows] = tss[ok]
    out.has_ts[rows] = True
    v_ok[rows] = True


def _duplicate_label_rows(out: Scan, counts: I64) -> BOOL:
    """Rows with a repeated label name (Prometheus rejects them).

    Key ids follow the keys' sorted order (:func:`_label_keys`) and exporters write labels
    sorted (client_golang does), so a row whose ids strictly increase has no repeat: only the
    other rows are checked one by one, or, when there are many, with a 64-bit signature
    pre-filter.
    """
    n = out.n
    dup = np.zeros(n, dtype=np.bool_)
    multi = counts > 1
    if not multi.any():
        return dup
    er, ek = out.e_row, out.e_key
    unsorted = (er[1:] == er[:-1]) & (ek[1:] <= ek[:-1])
    rows = er[1:][unsorted]
    if not len(rows):
        return dup
    rows = rows[np.r_[True, rows[1:] != rows[:-1]]]
    if len(rows) <= _FEW_UNSORTED:
        starts = np.searchsorted(er, rows, side="left")
        for r, a in zip(rows.tolist(), starts.tolist(), strict=True):
            ks = ek[a : a + int(counts[r])]
            if len(np.unique(ks)) != len(ks):
                dup[r] = True
        return dup
    starts = np.zeros(n, dtype=np.int64)
    np.cumsum(counts[:-1], out=starts[1:])
    bits = np.left_shift(np.uint64(1), (out.e_key & 63).astype(np.uint64))
    nz = np.flatnonzero(counts)
    sig = np.bitwise_or.reduceat(bits, starts[nz])
    popcount = np.zeros(n, dtype=np.int64)
    popcount[nz] = _popcount(sig)
    maybe = np.flatnonzero(multi & (popcount < counts))
    for r in maybe.tolist():
        ks = out.e_key[starts[r] : starts[r] + counts[r]]
        if len(np.unique(ks)) != len(ks):
            dup[r] = True
    return dup


_FEW_UNSORTED = 256  # rows with unsorted labels checked one by one below this count


def _popcount(x: npt.NDArray[np.uint64]) -> I64:
    if hasattr(np, "bitwise_count"):
        return np.asarray(np.bitwise_count(x), dtype=np.int64)
    bits = np.unpackbits(x.view(np.uint8).reshape(-1, 8), axis=1)  # numpy < 2.0
    return np.asarray(bits.sum(axis=1), dtype=np.int64)


def _exact_path(body: bytes, ls: I64, le: I64, lines: I64, out: Scan, *, openmetrics: bool = False) -> None:
    """Parse the given lines one by one and append the good ones as rows."""
    name_ids = {s: i for i, s in enumerate(out.names)}
    key_ids = {s: i for i, s in enumerate(out.keys)}
    rows_name: list[int] = []
    rows_value: list[float] = []
    rows_ts: list[int] = []
    rows_has_ts: list[bool] = []
    rows_line: list[int] = []
    rows_pend: list[int] = []
    e_row: list[int] = []
    e_key: list[int] = []
    e_val: list[int] = []
    base_row = out.n
    for li in lines.tolist():
        text = body[int(ls[li]) : int(le[li])].decode("utf-8")
        if not text.strip(_WS):
            continue
        try:
            name, labels, value, ts = parse_line(text, openmetrics=openmetrics)
        except LineError as exc:
            out.errors.append((li, str(exc)))
            out.bad_lines += 1
            continue
        row = base_row + len(rows_name)
        ni = name_ids.get(name)
        if ni is None:
            ni = name_ids[name] = len(out.names)
            out.names.append(name)
        rows_name.append(ni)
        rows_value.append(value)
        rows_ts.append(ts if ts is not None else 0)
        rows_has_ts.append(ts is not None)
        rows_line.append(li)
        # a plain `name value` line has a reusable prefix (its name) like the vectorised rows
        plain = not labels and text.startswith(name) and text[len(name) : len(name) + 1] == " "
        rows_pend.append(int(ls[li]) + len(name) if plain else -1)
        for k, v in labels:
            ki = key_ids.get(k)
            if ki is None:
                ki = key_ids[k] = len(out.keys)
                out.keys.append(k)
            e_row.append(row)
            e_key.append(ki)
            e_val.append(out.blob_ref(v))
    if not rows_name:
        return
    out.name_idx = np.concatenate([out.name_idx, np.asarray(rows_name, dtype=np.int32)])
    out.value = np.concatenate([out.value, np.asarray(rows_value, dtype=np.float64)])
    out.ts = np.concatenate([out.ts, np.asarray(rows_ts, dtype=np.int64)])
    out.has_ts = np.concatenate([out.has_ts, np.asarray(rows_has_ts, dtype=np.bool_)])
    out.line = np.concatenate([out.line, np.asarray(rows_line, dtype=np.int64)])
    out.prefix_end = np.concatenate([out.prefix_end, np.asarray(rows_pend, dtype=np.int64)])
    if e_row:  # label-less lines (`name value`, the usual exact-path rows) add no entries
        out.e_row = np.concatenate([out.e_row, np.asarray(e_row, dtype=np.int64)])
        out.e_key = np.concatenate([out.e_key, np.asarray(e_key, dtype=np.int32)])
        out.e_val = np.concatenate([out.e_val, np.asarray(e_val, dtype=np.int64)])

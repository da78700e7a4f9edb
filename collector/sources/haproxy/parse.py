"""Pure parsers for HAProxy's statistics: ``show stat`` / ``;csv`` and ``show info``.

The CSV is read by header name, never by position: HAProxy appends columns in every release
(2.6 adds per-module columns such as ``h1_bytes_in`` after a column named ``-``) and older LB VM
images print fewer of them, so a positional reader silently shifts values between metrics.

Each row becomes samples labelled ``proxy`` (pxname), ``server`` (svname) and ``type``
(frontend, backend, server, listener), plus the record's own labels (``cluster``, ...):

* columns the catalog maps (:attr:`Catalog.haproxy_csv`) get their canonical names;
* every other numeric column is kept under its native name, ``haproxy.csv.<column>``, so an
  analyst can still query it (identifier columns ``pid``/``iid``/``sid``/``type`` are not
  metrics and are dropped);
* ``status`` becomes ``haproxy.up`` (1 while the proxy or server takes traffic) with the raw
  status text in a ``status`` label.

A server row's ``addr`` is an IP observation of kind ``haproxy-server`` (on an AKS-HCI load
balancer VM these are the control-plane and worker node IPs); a listener row's ``addr`` (with
``option socket-stats``) is an observation of kind ``haproxy-frontend``: the VIP it binds.
"""

from __future__ import annotations

import csv
import ipaddress
import math
import re
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from collector.catalog import HAPROXY_STATUS_METRIC, Catalog, MetricDef
from collector.errors import ParseError
from collector.schema import (
    EMPTY_IP_OBSERVATIONS,
    EMPTY_SAMPLES,
    IP_OBSERVATIONS_SCHEMA,
    SAMPLES_SCHEMA,
    TS_TYPE,
    OwnerKind,
    ParseResult,
    RawRecord,
    to_ms,
)
from collector.sources import skeletons
from collector.sources.haproxy import _reuse
from collector.text import without_bom

SOURCE = "haproxy"
NATIVE_PREFIX = "haproxy.csv."
INFO_NATIVE_PREFIX = "haproxy.info."

# `type` column values (doc/management.txt §9.1).
TYPE_NAMES: dict[int, str] = {0: "frontend", 1: "backend", 2: "server", 3: "listener"}

# Columns whose values are text in HAProxy 2.6 (`show stat typed` reports them as `str`).
TEXT_COLUMNS = frozenset(
    {
        "pxname",
        "svname",
        "status",
        "tracked",
        "check_status",
        "last_chk",
        "last_agt",
        "agent_status",
        "check_desc",
        "agent_desc",
        "addr",
        "cookie",
        "mode",
        "algo",
        "-",
    }
)
# Numeric columns that identify a row rather than measure it.
ID_COLUMNS = frozenset({"pid", "iid", "sid", "type"})
# Every numeric column of HAProxy 2.6 (u32/u64/s32 in `show stat typed`). A non-number in one of
# these is a broken row; columns nobody has told us about are numbers when they parse as one.
NUMERIC_COLUMNS = frozenset(
    {
        "qcur",
        "qmax",
        "scur",
        "smax",
        "slim",
        "stot",
        "bin",
        "bout",
        "dreq",
        "dresp",
        "ereq",
        "econ",
        "eresp",
        "wretr",
        "wredis",
        "weight",
        "act",
        "bck",
        "chkfail",
        "chkdown",
        "lastchg",
        "downtime",
        "qlimit",
        "pid",
        "iid",
        "sid",
        "throttle",
        "lbtot",
        "type",
        "rate",
        "rate_lim",
        "rate_max",
        "check_code",
        "check_duration",
        "hrsp_1xx",
        "hrsp_2xx",
        "hrsp_3xx",
        "hrsp_4xx",
        "hrsp_5xx",
        "hrsp_other",
        "hanafail",
        "req_rate",
        "req_rate_max",
        "req_tot",
        "cli_abrt",
        "srv_abrt",
        "comp_in",
        "comp_out",
        "comp_byp",
        "comp_rsp",
        "lastsess",
        "qtime",
        "ctime",
        "rtime",
        "ttime",
        "agent_code",
        "agent_duration",
        "check_rise",
        "check_fall",
        "check_health",
        "agent_rise",
        "agent_fall",
        "agent_health",
        "conn_rate",
        "conn_rate_max",
        "conn_tot",
        "intercepted",
        "dcon",
        "dses",
        "wrew",
        "connect",
        "reuse",
        "cache_lookups",
        "cache_hits",
        "srv_icur",
        "src_ilim",
        "qtime_max",
        "ctime_max",
        "rtime_max",
        "ttime_max",
        "eint",
        "idle_conn_cur",
        "safe_conn_cur",
        "used_conn_cur",
        "need_conn_est",
        "uweight",
        "agg_server_status",
        "agg_server_check_status",
        "agg_check_status",
    }
)
# Canonical mappings that mean something else on some row types: on a server row `act` is a
# 0/1 "is an active (non-backup) server" flag, not a count of active servers.
_CANONICAL_NOT_FOR: frozenset[tuple[str, str]] = frozenset({("act", "server")})

_UP_EXACT = frozenset({"UP", "OPEN", "no check"})
_UP_TRANSITION = re.compile(r"UP \d+/\d+")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_SNIPPET = 80


def status_is_up(status: str) -> bool:
    """Whether a ``status`` value means the object takes traffic.

    ``UP``, ``OPEN``, ``no check`` and ``UP n/m`` (up, but failing checks) are up; ``DOWN``,
    ``DOWN n/m`` (down, recovering), ``NOLB``, ``DRAIN``, ``MAINT`` in all its spellings, ``STOP``
    and ``FULL`` are not: none of them accepts new sessions.
    """
    return status in _UP_EXACT or _UP_TRANSITION.fullmatch(status) is not None


def _snippet(text: str) -> str:
    return repr(text if len(text) <= _SNIPPET else text[:_SNIPPET] + "…")


def _number(text: str) -> float | None:
    """HAProxy prints plain decimal integers (``-1`` for "never"); anything else is not a number.

    Python's own ``float``/``int`` would accept ``nan``, ``1e9``, ``1_000`` and padded text, which
    HAProxy never prints; taking them would turn garbage into believable values.
    """
    if text.isascii() and text.isdigit():
        return float(text)  # the common case, without the regex
    if _NUMBER.fullmatch(text) is None:
        return None
    value = float(text)
    return value if math.isfinite(value) else None


def _decode(record: RawRecord, errors: list[Exception]) -> str:
    """Text of the payload; bytes that are not UTF-8 are replaced and reported, not fatal."""
    body = without_bom(record.body)
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        errors.append(
            ParseError(
                f"payload is not valid UTF-8 ({exc.reason}); undecodable bytes were replaced with U+FFFD",
                source=SOURCE,
                target=record.target,
                offset=exc.start,
            )
        )
        return body.decode("utf-8", errors="replace")


def _split_csv(line: str) -> list[str]:
    """Fields of one CSV line; HAProxy quotes text fields that hold commas or quotes (csv_enc)."""
    if '"' not in line:
        return line.split(",")
    return next(csv.reader([line], strict=True))


_PLAIN_IPV4_PORT = re.compile(
    r"((?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}"
    r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])):[^:]*"
)


def _addr_ip(addr: str) -> str | None:
    """The IP of an ``addr`` value (``ip:port``, ``[v6]:port``); None for anything else."""
    plain = _PLAIN_IPV4_PORT.fullmatch(addr)
    if plain is not None and plain[1] != "0.0.0.0":
        return plain[1]  # the common case, already in ipaddress's canonical form
    a = addr.strip()
    if not a:
        return None
    if a.startswith("["):
        end = a.find("]")
        host = a[1:end] if end > 0 else ""
    elif a.count(":") == 1:
        host = a.partition(":")[0]
    else:
        host = a  # a bare IPv4, or an IPv6 printed without brackets/port
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None  # unix@/abns@ sockets and unresolved names carry no IP
    return None if ip.is_unspecified else str(ip)


class _Columns:
    """What one header line means: where the key columns are and what each column becomes."""

    def __init__(self, names: list[str], catalog: Catalog) -> None:
        if names and names[-1] == "":
            names = names[:-1]  # HAProxy ends every line with a comma
        self.width = len(names)
        self.index: dict[str, int] = {}
        for i, name in enumerate(names):
            self.index.setdefault(name.strip(), i)
        self.px = self.index.get("pxname")
        self.sv = self.index.get("svname")
        self.type = self.index.get("type")
        self.status = self.index.get("status")
        self.check_status = self.index.get("check_status")
        self.addr = self.index.get("addr")
        # (position, column, canonical or None, native name, strict)
        self.plan: list[tuple[int, str, MetricDef | None, str, bool]] = []
        for name, i in self.index.items():
            if not name or name in TEXT_COLUMNS or name in ID_COLUMNS:
                continue
            self.plan.append((i, name, catalog.haproxy_csv.get(name), NATIVE_PREFIX + name, name in NUMERIC_COLUMNS))
        # The plan as arrays, so a whole block of rows is checked and converted at once.
        self.positions = np.array([p[0] for p in self.plan], dtype=np.intp)
        self.strict = np.array([p[4] for p in self.plan], dtype=np.bool_)
        self.metrics = [p[2].name if p[2] is not None else p[3] for p in self.plan]
        # the metric codes a payload's first block gets (its samples table starts empty)
        self.first_codes_of: dict[str, int] = {}
        for m in [*self.metrics, HAPROXY_STATUS_METRIC.name]:
            self.first_codes_of.setdefault(m, len(self.first_codes_of))
        self.first_codes = np.array([self.first_codes_of[m] for m in self.metrics], dtype=np.int32)
        # (plan index, row type, metric used instead) for canonical names that do not fit a row type
        self.overrides = [
            (j, row_type, p[3])
            for j, p in enumerate(self.plan)
            for name, row_type in _CANONICAL_NOT_FOR
            if p[1] == name and p[2] is not None
        ]

    def identifying(self) -> list[int]:
        """Positions of the cells a row's labels, type, ``haproxy.up`` and IP observation come from."""
        cells = (self.px, self.sv, self.type, self.status, self.check_status, self.addr)
        return [i for i in cells if i is not None]


_COLUMNS_CACHE: OrderedDict[tuple[int, tuple[str, ...]], tuple[Catalog, _Columns]] = OrderedDict()
_COLUMNS_CACHE_SIZE = 64


def _columns(names: list[str], catalog: Catalog) -> _Columns:
    """The plan of a header line, kept: a target sends the same header every read (read-only)."""
    key = (id(catalog), tuple(names))
    hit = _COLUMNS_CACHE.get(key)
    if hit is not None and hit[0] is catalog:
        return hit[1]
    cols = _Columns(names, catalog)
    _COLUMNS_CACHE[key] = (catalog, cols)
    while len(_COLUMNS_CACHE) > _COLUMNS_CACHE_SIZE:
        _COLUMNS_CACHE.popitem(last=False)
    return cols


class _SampleColumns:
    """Column lists for one samples table (no Python object per sample)."""

    def __init__(self) -> None:
        self.metric: list[str] = []
        self.labels: list[list[tuple[str, str]]] = []
        self.value: list[float] = []

    def add(self, metric: str, labels: list[tuple[str, str]], value: float) -> None:
        self.metric.append(metric)
        self.labels.append(labels)
        self.value.append(value)

    def table(self, ts: datetime, source: str, host: str) -> pa.Table:
        n = len(self.metric)
        if n == 0:
            return EMPTY_SAMPLES
        return pa.table(
            {
                "ts": pa.array([to_ms(ts)] * n, pa.int64()).cast(TS_TYPE),
                "source": pa.array([source] * n, pa.string()).dictionary_encode(),
                "host": pa.array([host] * n, pa.string()).dictionary_encode(),
                "metric": pa.array(self.metric, pa.string()).dictionary_encode(),
                "labels": pa.array(self.labels, pa.map_(pa.string(), pa.string())),
                "value": pa.array(self.value, pa.float64()),
            },
            schema=SAMPLES_SCHEMA,
        )


_LABELS_TYPE = SAMPLES_SCHEMA.field("labels").type


class _Block:
    """The accepted rows under one header line, converted together when the block ends.

    Rows are held either as split Python lists (the careful reader) or, for a plain payload
    (see :func:`_parse_plain`), as the byte offsets of every cell in the body: the cells a
    conversion needs are cut out of the body then, the others never become strings.
    """

    def __init__(self, cols: _Columns) -> None:
        self.cols = cols
        self.rows: list[list[str]] = []
        self.lines: list[str] = []  # each row as exactly `width` comma-separated fields
        self.linenos: list[int] = []
        self.types: list[str] = []
        self.quoted: list[int] = []  # rows whose fields were unquoted by the csv module
        # (rows, metric cells + haproxy.up): the cells that gave a sample, once converted
        self.keep: npt.NDArray[np.bool_] | None = None
        # a plain payload: its bytes and every row's cell offsets (rows, fields)
        self.body: bytes | None = None
        self.starts: npt.NDArray[np.int64] | None = None
        self.ends: npt.NDArray[np.int64] | None = None

    @property
    def n_rows(self) -> int:
        return len(self.types)

    def cell(self, r: int, i: int) -> str:
        """The text of row ``r``'s field ``i``."""
        if self.body is None:
            return self.rows[r][i]
        assert self.starts is not None and self.ends is not None
        return self.body[int(self.starts[r, i]) : int(self.ends[r, i])].decode("utf-8")

    def column(self, i: int | None) -> list[str]:
        """Field ``i`` of every row (empty strings when the header has no such column)."""
        if i is None:
            return [""] * self.n_rows
        if self.body is None:
            return [row[i] for row in self.rows]
        assert self.starts is not None and self.ends is not None
        body = self.body
        return [
            body[a:b].decode("utf-8") for a, b in zip(self.starts[:, i].tolist(), self.ends[:, i].tolist(), strict=True)
        ]


# Where a label value comes from, per row: the pool of label values of a block holds these
# columns one after the other (then the record's own labels, the same on every row).
_PX, _SV, _TYPE, _STATUS, _CHECK = range(5)
_PLAIN, _UP, _UP_CHECK = 0, 1, 2  # label sets: metric cells, haproxy.up, haproxy.up of a checked server


class _LabelSets:
    """The three label sets of a block's samples, in map order (sorted by key), as lookup tables.

    ``key[kind, j]`` is the j-th key of label set ``kind`` (an index into ``keys``) and
    ``source[kind, j]`` where its value comes from: a per-row column (``_PX``...) or, from 5 on,
    the record's own label ``source - 5``.
    """

    def __init__(self, extra: Sequence[tuple[str, str]]) -> None:
        base = [(k, 5 + i) for i, (k, _) in enumerate(extra)] + [("proxy", _PX), ("server", _SV), ("type", _TYPE)]
        sets = [base, [*base, ("status", _STATUS)], [*base, ("status", _STATUS), ("check_status", _CHECK)]]
        self.keys = sorted({k for k, _ in sets[-1]})
        key_id = {k: i for i, k in enumerate(self.keys)}
        width = len(sets[-1])
        self.size = np.array([len(ls) for ls in sets], dtype=np.int32)
        self.key = np.zeros((3, width), dtype=np.int32)
        self.source = np.zeros((3, width), dtype=np.int64)
        for kind, labels in enumerate(sets):
            for j, (k, src) in enumerate(sorted(labels)):
                self.key[kind, j] = key_id[k]
                self.source[kind, j] = src


class _Samples:
    """The samples table under construction, as arrays.

    A block's samples come in groups sharing one label map (all metrics of a CSV row; its
    ``haproxy.up`` sample), so the map column is built with two Arrow ``take`` calls per block
    over a small pool of label strings, not one Python list per sample or per row.
    """

    def __init__(self) -> None:
        self.names: list[str] = []
        self.codes_of: dict[str, int] = {}
        self.codes: list[npt.NDArray[np.int32]] = []
        self.values: list[npt.NDArray[np.float64]] = []
        self.labels: list[pa.Array[Any]] = []

    def code(self, metric: str) -> int:
        code = self.codes_of.get(metric)
        if code is None:
            code = self.codes_of[metric] = len(self.names)
            self.names.append(metric)
        return code

    def add_labels(
        self,
        sets: _LabelSets,
        extra_values: Sequence[str],
        columns: Sequence[Sequence[str]],
        keep: npt.NDArray[np.bool_],
        up_kind: npt.NDArray[np.int8],
    ) -> None:
        """Label maps of a block's samples, in sample order (row by row, ``keep`` cells).

        ``columns`` are the per-row label values (``_PX``...``_CHECK``); ``up_kind`` says per
        row which label set its ``haproxy.up`` sample has. Two maps are built per row (its
        metrics' and its ``haproxy.up``'s) and each sample takes its row's one.
        """
        n_rows, width = keep.shape
        m_kind = np.empty(2 * n_rows, dtype=np.int8)
        m_kind[0::2] = _PLAIN
        m_kind[1::2] = up_kind
        m_row = np.repeat(np.arange(n_rows, dtype=np.int64), 2)
        sizes = sets.size[m_kind]
        offsets = np.zeros(len(sizes) + 1, dtype=np.int32)
        np.cumsum(sizes, out=offsets[1:])
        e_map = np.repeat(np.arange(len(sizes), dtype=np.int64), sizes)
        j = np.arange(len(e_map), dtype=np.int64) - offsets[:-1][e_map]
        flat = m_kind[e_map].astype(np.int64) * sets.key.shape[1] + j  # (kind, j) in the tables
        source = sets.source.ravel()[flat]
        # pool: the five per-row columns, then the record's labels
        index = np.where(source < 5, source * n_rows + m_row[e_map], 5 * n_rows + source - 5)
        pool = pa.array([v for col in columns for v in col] + list(extra_values), pa.string())
        maps = pa.MapArray.from_arrays(  # type: ignore[call-overload]
            pa.array(offsets, pa.int32()),
            pa.array(sets.keys, pa.string()).take(sets.key.ravel()[flat]),
            pool.take(index),
            type=_LABELS_TYPE,
        )
        up = np.zeros((n_rows, width), dtype=np.int64)
        up[:, -1] = 1
        which = (2 * np.arange(n_rows, dtype=np.int64)[:, None] + up).ravel()[keep.ravel()]
        self.labels.append(maps.take(which))

    def table(self, ts: datetime, source: str, host: str) -> pa.Table:
        codes = np.concatenate(self.codes) if self.codes else np.empty(0, np.int32)
        n = len(codes)
        if n == 0:
            return EMPTY_SAMPLES
        # the dictionary in order of first appearance, exactly as dictionary_encode() makes it
        unique, first = np.unique(codes, return_index=True)
        order = unique[np.argsort(first)]
        remap = np.zeros(len(self.names), np.int32)
        remap[order] = np.arange(len(order), dtype=np.int32)
        metric = pa.DictionaryArray.from_arrays(
            remap[codes], pa.array([self.names[c] for c in order.tolist()], pa.string())
        )
        labels = self.labels[0] if len(self.labels) == 1 else pa.concat_arrays(self.labels)
        zeros = np.zeros(n, np.int32)
        return pa.table(
            {
                "ts": _reuse.ts_column(to_ms(ts), n),
                "source": pa.DictionaryArray.from_arrays(zeros, pa.array([source], pa.string())),
                "host": pa.DictionaryArray.from_arrays(zeros, pa.array([host], pa.string())),
                "metric": metric,
                "labels": labels,
                "value": pa.array(np.concatenate(self.values)),
            },
            schema=SAMPLES_SCHEMA,
        )


class _IpColumns:
    def __init__(self) -> None:
        self.ip: list[str] = []
        self.owner_kind: list[str] = []
        self.owner: list[str] = []

    def add(self, ip: str, kind: OwnerKind, owner: str) -> None:
        self.ip.append(ip)
        self.owner_kind.append(kind.value)
        self.owner.append(owner)

    def table(self, ts: datetime, source: str, labels: Mapping[str, str]) -> pa.Table:
        n = len(self.ip)
        if n == 0:
            return EMPTY_IP_OBSERVATIONS

        def dict_col(value: str | None) -> pa.Array[Any]:
            return pa.array([value] * n, pa.string()).dictionary_encode()

        return pa.table(
            {
                "ts": pa.array([to_ms(ts)] * n, pa.int64()).cast(TS_TYPE),
                "ip": pa.array(self.ip, pa.string()),
                "mac": pa.array([None] * n, pa.string()),
                "owner_kind": pa.array(self.owner_kind, pa.string()).dictionary_encode(),
                "owner": pa.array(self.owner, pa.string()),
                "cluster": dict_col(labels.get("cluster")),
                "network": dict_col(labels.get("network")),
                "source": dict_col(source),
            },
            schema=IP_OBSERVATIONS_SCHEMA,
        )


# Labels the payload sets; a record label of the same name would make a duplicate map key.
_PAYLOAD_LABELS = frozenset({"source", "proxy", "server", "type", "status", "check_status", "version"})


def _context(record: RawRecord) -> tuple[str, list[tuple[str, str]]]:
    """Source name and the record labels every sample carries (``source`` only renames)."""
    source = record.labels.get("source") or SOURCE
    extra = sorted((k, v) for k, v in record.labels.items() if k not in _PAYLOAD_LABELS)
    return source, extra


def _row_type(cols: _Columns, row: Sequence[str], svname: str) -> str | None:
    """Row type name; inferred from svname when the column is absent (very old versions)."""
    if cols.type is not None and row[cols.type] != "":
        text = row[cols.type]
        known = _TYPE_TEXT.get(text)
        if known is not None:
            return known
        n = _number(text)
        if n is None or n != int(n):
            return None
        return TYPE_NAMES.get(int(n), str(int(n)))
    if svname == "FRONTEND":
        return "frontend"
    if svname == "BACKEND":
        return "backend"
    return "server"


_TYPE_TEXT = {str(n): name for n, name in TYPE_NAMES.items()}


MAX_RECORD_LINES = 32
"""Physical lines one quoted cell may span (agent-check text can hold newlines); beyond that the
quote is taken for a stray one and the line is reported on its own."""


def _records(text: str) -> Iterator[tuple[int, str]]:
    """CSV records with their first line number: physical lines, joined while a quote is open.

    HAProxy quotes a cell holding ``,``, ``"`` or a newline (``check_desc``/``agent_desc``/
    ``last_chk`` carry whatever an agent check answered), so one row can span several lines. An
    odd number of ``"`` on a line means a quoted cell is still open (``""`` inside one counts
    two). A quote that never closes within :data:`MAX_RECORD_LINES` lines is a broken line, not
    a cell: that line alone is returned (and reported), and reading resumes after it.
    """
    lines = [ln.rstrip("\r") for ln in text.split("\n")]
    i, n = 0, len(lines)
    while i < n:
        line = lines[i]
        if line.count('"') % 2 == 0 or line.startswith("#"):
            yield i + 1, line
            i += 1
            continue
        quotes = line.count('"')
        j = i + 1
        while j < n and j - i < MAX_RECORD_LINES and quotes % 2:
            quotes += lines[j].count('"')
            j += 1
        if quotes % 2:
            yield i + 1, line
            i += 1
            continue
        yield i + 1, "\n".join(lines[i:j])
        i = j


def parse_record(record: RawRecord, catalog: Catalog) -> ParseResult:
    """Parse one ``show stat`` / ``;csv`` payload.

    Raises :class:`ParseError` when there is no CSV header (``# pxname,svname,...``) or the
    header lacks ``pxname``/``svname``; a row with the wrong number of fields is reported in
    ``result.errors`` and skipped whole (its cells cannot be assigned to columns), while a
    non-number in a numeric column costs that cell only: the row's other values, ``haproxy.up``
    included, are still stored and the error names the column and the row.

    Lines are split and checked one by one (field count, pxname, type), but the ~100 metric
    cells of every row are checked and converted for a whole block of rows at once (see
    :func:`_convert_block`): per-cell Python work dominated the cost of a large LB VM's stats.

    A repeated read of the same target whose rows are unchanged but for their numbers is taken
    from the previous read's skeleton (:mod:`collector.sources.haproxy._reuse`), with exactly
    this result; anything unusual in it is read by the careful parser, which refreshes the
    skeleton.
    """
    reusable = skeletons.enabled()
    if reusable:
        hit = _reuse.reuse(record, catalog)
        if hit is not None:
            return hit
    plain = _parse_plain(record, catalog) if len(record.body) >= PLAIN_MIN_BYTES else None
    result, blocks = plain if plain is not None else _parse_careful(record, catalog)
    if reusable:
        block = blocks[0]
        cols = block.cols
        if len(blocks) == 1 and not block.quoted and block.keep is not None:
            plan = [p[0] for p in cols.plan]
            _reuse.remember(record, catalog, cols.width, cols.identifying(), plan, block.keep, result)
        else:
            _reuse.CACHE.drop(record)
    return result


def _parse_plain(record: RawRecord, catalog: Catalog) -> tuple[ParseResult, list[_Block]] | None:
    """A plain payload read with array operations; None when it holds anything unusual.

    Plain: UTF-8 without a ``"``, blank lines at most before one header line, then rows that
    all have the same number of commas (the header's width, or one more ending in an empty
    field), a non-empty ``pxname``, a ``type`` of 0-3 or none, and no further ``#`` line. That
    is every ``show stat`` HAProxy prints; anything else (quoted cells, short rows, a second
    header, stray text) goes to :func:`_parse_careful`, whose reading this one equals
    (``tests/sources/test_haproxy_reuse.py`` compares both on the corpus and under hypothesis).
    """
    body = _reuse.plain_body(record)
    head_len = _reuse.header_end(body) if body is not None else 0
    if body is None or not head_len:
        return None
    at = body.find(b"#")
    if body[:at].strip():
        return None  # text before the header: reported by the careful reader
    header = body[at + 1 : head_len].decode("utf-8").rstrip("\n").rstrip("\r").lstrip(" ")
    cols = _columns(header.split(","), catalog)
    cells = _reuse.split_rows(body, head_len)
    if cols.px is None or cols.sv is None or cells is None:
        return None
    starts, ends = cells.starts, cells.ends
    fields = starts.shape[1]
    buf = cells.buf
    if fields == cols.width + 1:
        if (ends[:, -1] != starts[:, -1]).any():
            return None
    elif fields != cols.width:
        return None
    if (buf[starts[:, 0]] == _HASH_BYTE).any() or (ends[:, cols.px] == starts[:, cols.px]).any():
        return None
    block = _Block(cols)
    block.body, block.starts, block.ends = body, starts, ends
    sv = block.column(cols.sv)
    if cols.type is None:
        block.types = [_INFERRED_TYPE.get(name, "server") for name in sv]
    else:
        named = [
            _TYPE_TEXT.get(t) if t else _INFERRED_TYPE.get(name, "server")
            for t, name in zip(block.column(cols.type), sv, strict=True)
        ]
        if None in named:
            return None  # other type numbers, text: the careful reader's rules
        block.types = [t for t in named if t is not None]
    first_line = body[:head_len].count(b"\n") + 1
    block.linenos = (cells.data_lines + first_line).tolist()
    source, extra = _context(record)
    samples = _Samples()
    ips = _IpColumns()
    row_errors: list[tuple[int, ParseError]] = []

    def error(message: str, lineno: int) -> ParseError:
        return ParseError(message, source=source, target=record.target, line=lineno)

    _convert_block(block, extra, samples, ips, row_errors, error)
    row_errors.sort(key=lambda e: e[0])
    result = ParseResult(
        samples=samples.table(record.ts, source, record.host),
        ip_observations=ips.table(record.ts, source, record.labels),
        errors=[e for _, e in row_errors],
    )
    return result, [block]


_HASH_BYTE = 35
PLAIN_MIN_BYTES = 16 << 10
"""Smaller payloads (an LB VM with a few dozen rows) are read faster row by row than by setting
up the arrays; :func:`_parse_plain` pays off from a few dozen rows on."""
_INFERRED_TYPE = {"FRONTEND": "frontend", "BACKEND": "backend"}


def _parse_careful(record: RawRecord, catalog: Catalog) -> tuple[ParseResult, list[_Block]]:
    """The careful parser: every line read and checked on its own (see :func:`parse_record`).

    Returns the result and the blocks it read (one per header line), whose layout a repeated
    read of the same target may reuse.
    """
    errors: list[Exception] = []
    text = _decode(record, errors)
    source, extra = _context(record)
    samples = _Samples()
    ips = _IpColumns()
    cols: _Columns | None = None
    block: _Block | None = None
    blocks: list[_Block] = []
    pending: list[ParseError] = []  # lines before the first header
    row_errors: list[tuple[int, ParseError]] = []

    def error(message: str, lineno: int) -> ParseError:
        return ParseError(message, source=source, target=record.target, line=lineno)

    for lineno, line in _records(text):
        if not line.strip():
            continue
        if line.startswith("#"):
            try:
                names = _split_csv(line[1:].lstrip(" "))
            except csv.Error as exc:
                raise error(f"unreadable CSV header: {exc}", lineno) from None
            cols = _columns(names, catalog)
            if cols.px is None or cols.sv is None:
                raise error(f"CSV header has no pxname/svname column: {_snippet(line)}", lineno)
            if block is not None:
                _convert_block(block, extra, samples, ips, row_errors, error)
            block = _Block(cols)
            blocks.append(block)
            continue
        if cols is None or block is None:
            pending.append(error(f"text before the CSV header ignored: {_snippet(line)}", lineno))
            continue
        quoted = '"' in line
        if quoted:
            try:
                row = next(csv.reader([line], strict=True))
            except csv.Error as exc:
                row_errors.append((lineno, error(f"unreadable CSV row: {exc}", lineno)))
                continue
        else:
            row = line.split(",")
        width = cols.width
        trailing = len(row) > width and row[-1] == ""
        if trailing:
            row.pop()  # the trailing comma HAProxy ends lines with
        if len(row) != width:
            row_errors.append(
                (lineno, error(f"row has {len(row)} fields but the header has {width}: {_snippet(line)}", lineno))
            )
            continue
        assert cols.px is not None and cols.sv is not None
        pxname = row[cols.px]
        if not pxname:
            row_errors.append((lineno, error("row has an empty pxname", lineno)))
            continue
        row_type = _row_type(cols, row, row[cols.sv])
        if row_type is None:
            row_errors.append(
                (lineno, error(f"column 'type' is not a row type number (row {pxname}/{row[cols.sv]})", lineno))
            )
            continue
        if quoted:
            block.quoted.append(len(block.rows))
            line = "," * (width - 1)  # its cells are taken from `row` instead
        elif trailing:
            line = line[:-1]
        block.rows.append(row)
        block.lines.append(line)
        block.linenos.append(lineno)
        block.types.append(row_type)

    if cols is None or block is None:
        first = next((ln for ln in text.splitlines() if ln.strip()), "")
        raise ParseError(
            "no HAProxy CSV header ('# pxname,svname,...') in the payload; "
            f"first line: {_snippet(first) if first else 'none (empty payload)'}",
            source=source,
            target=record.target,
        )
    _convert_block(block, extra, samples, ips, row_errors, error)
    row_errors.sort(key=lambda e: e[0])  # a block's bad numbers are found after its bad lines
    result = ParseResult(
        samples=samples.table(record.ts, source, record.host),
        ip_observations=ips.table(record.ts, source, record.labels),
        errors=[*pending, *errors, *(e for _, e in row_errors)],
    )
    return result, blocks


def _cell_values(block: _Block) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """Value of every plan cell of the block (NaN where not a number) and which cells are empty.

    The rows are laid out as one byte buffer; each field is checked for being a plain decimal
    integer (``-?[0-9]{1,18}``) with byte arithmetic, and those are converted by Arrow (correctly
    rounded, like Python's ``float``). Anything else that is not empty (decimals, text, long
    digit strings, non-ASCII digits) and every cell of a quoted row goes through :func:`_number`,
    so the result is exactly what the cell-by-cell reading gives.
    """
    if block.body is not None:
        return _plain_cell_values(block)
    cols = block.cols
    rows = block.rows
    n_rows, width, n_plan = len(rows), cols.width, len(cols.plan)
    data = np.frombuffer(("\n".join(block.lines) + "\n").encode(), np.uint8)
    is_sep = (data == 44) | (data == 10)
    ends = np.flatnonzero(is_sep)  # every field ends at one separator
    n = len(ends)
    starts = np.empty_like(ends)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    lengths = ends - starts
    non_digit = np.zeros(len(data) + 1, np.int64)
    np.cumsum((data < 48) | (data > 57), out=non_digit[1:])
    minus = (data[starts] == 45) & (lengths > 0)
    digits = lengths - minus
    plain = (non_digit[ends] - non_digit[starts] == minus) & (digits > 0) & (digits <= 18)
    packed = data[~is_sep]
    offsets = np.empty(n + 1, np.int32)
    offsets[:-1] = starts - np.arange(n)
    offsets[-1] = len(packed)
    fields = pa.StringArray.from_buffers(
        n,
        pa.py_buffer(offsets.data),
        pa.py_buffer(packed.data),
        pa.py_buffer(np.packbits(plain, bitorder="little").data),
    )
    numbers = pc.cast(fields, pa.float64()).to_numpy(zero_copy_only=False)

    cells = (np.arange(n_rows)[:, None] * width + cols.positions).ravel()
    values = numbers[cells].reshape(n_rows, n_plan)
    empty = (lengths[cells] == 0).reshape(n_rows, n_plan)
    positions = [p[0] for p in cols.plan]
    odd = ~empty & ~plain[cells].reshape(n_rows, n_plan)
    for r, j in zip(*(ix.tolist() for ix in np.nonzero(odd)), strict=True):
        value = _number(rows[r][positions[j]])
        values[r, j] = math.nan if value is None else value
    for r in block.quoted:
        row = rows[r]
        for j, i in enumerate(positions):
            cell = row[i]
            empty[r, j] = cell == ""
            value = _number(cell) if cell else None
            values[r, j] = math.nan if value is None else value
    return values, empty


def _plain_cell_values(block: _Block) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """:func:`_cell_values` of a plain block, read in place from the body's cell offsets."""
    assert block.body is not None and block.starts is not None and block.ends is not None
    cols = block.cols
    buf = np.frombuffer(block.body, np.uint8)
    starts, ends = block.starts[:, cols.positions], block.ends[:, cols.positions]
    empty = ends == starts
    minus = (buf[np.minimum(starts, len(buf) - 1)] == 45) & ~empty
    digits = ends - starts - minus
    non_digit = np.flatnonzero((buf < 48) | (buf > 57))
    inside = np.searchsorted(non_digit, ends) - np.searchsorted(non_digit, starts + minus)
    plain = (inside == 0) & (digits > 0) & (digits <= 18)
    values = np.full(starts.shape, math.nan)
    flat = np.flatnonzero(plain.ravel())
    values.ravel()[flat] = _reuse.cast_integers(block.body, starts.ravel()[flat], ends.ravel()[flat])
    positions = [p[0] for p in cols.plan]
    for r, j in zip(*(ix.tolist() for ix in np.nonzero(~empty & ~plain)), strict=True):
        value = _number(block.cell(r, positions[j]))
        values[r, j] = math.nan if value is None else value
    return values, empty


def _convert_block(
    block: _Block,
    extra: list[tuple[str, str]],
    samples: _Samples,
    ips: _IpColumns,
    row_errors: list[tuple[int, ParseError]],
    make_error: Callable[[str, int], ParseError],
) -> None:
    """Samples, IP observations and bad-number errors of one block, in row then column order."""
    cols = block.cols
    n_rows, n_plan = block.n_rows, len(cols.plan)
    if n_rows == 0:
        return
    assert cols.px is not None and cols.sv is not None
    if n_plan:
        values, empty = _cell_values(block)
    else:
        values, empty = np.empty((n_rows, 0)), np.empty((n_rows, 0), np.bool_)
    numeric = ~np.isnan(values)
    bad = ~empty & ~numeric & cols.strict
    for r in np.flatnonzero(bad.any(axis=1)).tolist():
        cells = [cols.plan[int(j)][:2] for j in np.flatnonzero(bad[r]).tolist()]
        shown = ", ".join(f"{name!r}={_snippet(block.cell(r, i))}" for i, name in cells[:5])
        more = f" and {len(cells) - 5} more" if len(cells) > 5 else ""
        row_errors.append(
            (
                block.linenos[r],
                make_error(
                    f"not a number in column(s) {shown}{more} (row {block.cell(r, cols.px)}/{block.cell(r, cols.sv)}); "
                    "only those cells were skipped",
                    block.linenos[r],
                ),
            )
        )

    # one matrix cell per possible sample: the plan's columns, then haproxy.up
    keep = np.zeros((n_rows, n_plan + 1), np.bool_)
    keep[:, :n_plan] = ~empty & numeric  # a bad cell costs that cell only
    codes = np.empty((n_rows, n_plan + 1), np.int32)
    if not samples.names:
        samples.codes_of = dict(cols.first_codes_of)
        samples.names = list(cols.first_codes_of)
        codes[:, :n_plan] = cols.first_codes
    else:
        codes[:, :n_plan] = [samples.code(m) for m in cols.metrics]
    codes[:, n_plan] = samples.code(HAPROXY_STATUS_METRIC.name)
    for j, row_type, metric in cols.overrides:
        codes[[r for r, t in enumerate(block.types) if t == row_type], j] = samples.code(metric)
    full = np.empty((n_rows, n_plan + 1), np.float64)
    full[:, :n_plan] = values

    types = block.types
    px, sv = block.column(cols.px), block.column(cols.sv)
    status, check = block.column(cols.status), block.column(cols.check_status)
    has_status = np.array([st != "" for st in status], dtype=np.bool_)
    has_check = np.array([c != "" for c in check], dtype=np.bool_)
    keep[:, n_plan] = has_status
    full[:, n_plan] = [1.0 if st and status_is_up(st) else 0.0 for st in status]
    up_kind = np.where(has_check, _UP_CHECK, _UP).astype(np.int8)
    columns = (px, sv, types, status, [c.lstrip("* ") for c in check])
    samples.add_labels(_LabelSets(extra), [v for _, v in extra], columns, keep, up_kind)
    if cols.addr is not None:
        for r, row_type in enumerate(types):
            if row_type in ("server", "listener"):
                ip = _addr_ip(block.cell(r, cols.addr))
                if ip is not None:
                    kind = OwnerKind.HAPROXY_SERVER if row_type == "server" else OwnerKind.HAPROXY_FRONTEND
                    ips.add(ip, kind, f"{px[r]}/{sv[r]}")
    chosen = keep.ravel()
    block.keep = keep
    samples.codes.append(codes.ravel()[chosen])
    samples.values.append(full.ravel()[chosen])


# ---------------------------------------------------------------------------------------------
# show info
# ---------------------------------------------------------------------------------------------

_G, _C = False, True

# `show info` key → canonical process metric (names follow the Prometheus exporter's process
# family so the two delivery paths read alike). Keys left out are text, duplicates in other
# units (``*_MB``) or build facts.
HAPROXY_INFO: dict[str, MetricDef] = {
    "Nbthread": MetricDef("haproxy.process.threads", "1", _G),
    "Uptime_sec": MetricDef("haproxy.process.uptime_seconds", "s", _G),
    "Start_time_sec": MetricDef("haproxy.process.start_time_seconds", "s", _G),
    "Memmax_bytes": MetricDef("haproxy.process.memory_limit_bytes", "By", _G, "0 = unlimited"),
    "PoolAlloc_bytes": MetricDef("haproxy.process.pool_allocated_bytes", "By", _G),
    "PoolUsed_bytes": MetricDef("haproxy.process.pool_used_bytes", "By", _G),
    "PoolFailed": MetricDef("haproxy.process.pool_failures_total", "1", _C),
    "Ulimit-n": MetricDef("haproxy.process.max_fds", "1", _G),
    "Maxsock": MetricDef("haproxy.process.max_sockets", "1", _G),
    "Maxconn": MetricDef("haproxy.process.max_connections", "1", _G),
    "Hard_maxconn": MetricDef("haproxy.process.hard_max_connections", "1", _G),
    "CurrConns": MetricDef("haproxy.process.current_connections", "1", _G),
    "CumConns": MetricDef("haproxy.process.connections_total", "1", _C),
    "CumReq": MetricDef("haproxy.process.requests_total", "1", _C),
    "MaxSslConns": MetricDef("haproxy.process.max_ssl_connections", "1", _G),
    "CurrSslConns": MetricDef("haproxy.process.current_ssl_connections", "1", _G),
    "CumSslConns": MetricDef("haproxy.process.ssl_connections_total", "1", _C),
    "ConnRate": MetricDef("haproxy.process.connection_rate", "1/s", _G),
    "ConnRateLimit": MetricDef("haproxy.process.connection_rate_limit", "1/s", _G),
    "MaxConnRate": MetricDef("haproxy.process.max_connection_rate", "1/s", _G),
    "SessRate": MetricDef("haproxy.process.session_rate", "1/s", _G),
    "SessRateLimit": MetricDef("haproxy.process.session_rate_limit", "1/s", _G),
    "MaxSessRate": MetricDef("haproxy.process.max_session_rate", "1/s", _G),
    "SslRate": MetricDef("haproxy.process.ssl_rate", "1/s", _G),
    "MaxSslRate": MetricDef("haproxy.process.max_ssl_rate", "1/s", _G),
    "Tasks": MetricDef("haproxy.process.tasks", "1", _G),
    "Run_queue": MetricDef("haproxy.process.run_queue", "1", _G),
    "Idle_pct": MetricDef("haproxy.process.idle_percent", "%", _G),
    "Stopping": MetricDef("haproxy.process.stopping", "1", _G),
    "Jobs": MetricDef("haproxy.process.jobs", "1", _G),
    "Unstoppable Jobs": MetricDef("haproxy.process.unstoppable_jobs", "1", _G),
    "Listeners": MetricDef("haproxy.process.listeners", "1", _G),
    "ActivePeers": MetricDef("haproxy.process.active_peers", "1", _G),
    "ConnectedPeers": MetricDef("haproxy.process.connected_peers", "1", _G),
    "DroppedLogs": MetricDef("haproxy.process.dropped_logs_total", "1", _C),
    "FailedResolutions": MetricDef("haproxy.process.failed_resolutions_total", "1", _C),
    "TotalBytesOut": MetricDef("haproxy.process.bytes_out_total", "By", _C),
    "TotalSplicdedBytesOut": MetricDef("haproxy.process.spliced_bytes_out_total", "By", _C),
    "BytesOutRate": MetricDef("haproxy.process.bytes_out_rate", "By/s", _G),
}
# One sample of 1 labelled with the running version (as the exporter's build_info).
HAPROXY_BUILD_INFO = MetricDef("haproxy.process.build_info", "1", _G)

# Keys that prove a payload is `show info` output even when none of them is numeric.
_INFO_MARKERS = frozenset({"Name", "Version", "Release_date", "Pid", "Uptime", "node", *HAPROXY_INFO})


def parse_info_record(record: RawRecord, catalog: Catalog) -> ParseResult:
    """Parse one ``show info`` payload (``Key: value`` lines) into ``haproxy.process.*`` samples.

    Keys the catalog maps get canonical names; any other key with a plain number is kept as
    ``haproxy.info.<Key>`` so nothing numeric is silently dropped; text keys are not samples.

    Raises :class:`ParseError` when no line carries a ``show info`` key (an error message or an
    unrelated payload); a malformed line or a non-number under a numeric key is reported in
    ``result.errors``. Stops at a ``# `` line, where a ``show stat`` block would begin.
    """
    del catalog  # process metrics are fixed by HAProxy, not user-mappable
    result = ParseResult()
    text = _decode(record, result.errors)
    source, extra = _context(record)
    samples = _SampleColumns()
    known = 0
    for lineno, raw_line in enumerate(text.split("\n"), start=1):
        line = raw_line.rstrip("\r")
        if not line.strip():
            continue
        if line.startswith("#"):
            break
        key, sep, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            result.errors.append(
                ParseError(
                    f"not a 'Key: value' line: {_snippet(line)}", source=source, target=record.target, line=lineno
                )
            )
            continue
        if key in _INFO_MARKERS:
            known += 1
        if key == "Version" and value:
            samples.add(HAPROXY_BUILD_INFO.name, sorted([*extra, ("version", value)]), 1.0)
            continue
        metric = HAPROXY_INFO.get(key)
        number = _number(value)
        if metric is None:
            # a numeric key the catalog does not name (Maxpipes, SslCacheLookups, newer
            # versions' additions) is kept under its native name, like unknown CSV columns
            if number is not None:
                samples.add(INFO_NATIVE_PREFIX + key, extra, number)
            continue
        if number is None:
            result.errors.append(
                ParseError(
                    f"{key} is not a number: {_snippet(value)}", source=source, target=record.target, line=lineno
                )
            )
            continue
        samples.add(metric.name, extra, number)
    if known == 0:
        first = next((ln for ln in text.splitlines() if ln.strip()), "")
        raise ParseError(
            "no HAProxy 'show info' fields (Name, Version, Uptime_sec, ...) in the payload; "
            f"first line: {_snippet(first) if first else 'none (empty payload)'}",
            source=source,
            target=record.target,
        )
    result.samples = samples.table(record.ts, source, record.host)
    return result

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
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

import pyarrow as pa

from collector.catalog import HAPROXY_STATUS_METRIC, Catalog, MetricDef
from collector.errors import ParseError
from collector.schema import (
    IP_OBSERVATIONS_SCHEMA,
    SAMPLES_SCHEMA,
    TS_TYPE,
    OwnerKind,
    ParseResult,
    RawRecord,
    to_ms,
)

SOURCE = "haproxy"
NATIVE_PREFIX = "haproxy.csv."

# `type` column values (doc/management.txt §9.1).
TYPE_NAMES: dict[int, str] = {0: "frontend", 1: "backend", 2: "server", 3: "listener"}

# Columns whose values are text in HAProxy 2.6 (`show stat typed` reports them as `str`).
TEXT_COLUMNS = frozenset({
    "pxname", "svname", "status", "tracked", "check_status", "last_chk", "last_agt", "agent_status",
    "check_desc", "agent_desc", "addr", "cookie", "mode", "algo", "-",
})
# Numeric columns that identify a row rather than measure it.
ID_COLUMNS = frozenset({"pid", "iid", "sid", "type"})
# Every numeric column of HAProxy 2.6 (u32/u64/s32 in `show stat typed`). A non-number in one of
# these is a broken row; columns nobody has told us about are numbers when they parse as one.
NUMERIC_COLUMNS = frozenset({
    "qcur", "qmax", "scur", "smax", "slim", "stot", "bin", "bout", "dreq", "dresp", "ereq", "econ",
    "eresp", "wretr", "wredis", "weight", "act", "bck", "chkfail", "chkdown", "lastchg", "downtime",
    "qlimit", "pid", "iid", "sid", "throttle", "lbtot", "type", "rate", "rate_lim", "rate_max",
    "check_code", "check_duration", "hrsp_1xx", "hrsp_2xx", "hrsp_3xx", "hrsp_4xx", "hrsp_5xx",
    "hrsp_other", "hanafail", "req_rate", "req_rate_max", "req_tot", "cli_abrt", "srv_abrt", "comp_in",
    "comp_out", "comp_byp", "comp_rsp", "lastsess", "qtime", "ctime", "rtime", "ttime", "agent_code",
    "agent_duration", "check_rise", "check_fall", "check_health", "agent_rise", "agent_fall",
    "agent_health", "conn_rate", "conn_rate_max", "conn_tot", "intercepted", "dcon", "dses", "wrew",
    "connect", "reuse", "cache_lookups", "cache_hits", "srv_icur", "src_ilim", "qtime_max",
    "ctime_max", "rtime_max", "ttime_max", "eint", "idle_conn_cur", "safe_conn_cur", "used_conn_cur",
    "need_conn_est", "uweight", "agg_server_status", "agg_server_check_status", "agg_check_status",
})
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


def _decode(record: RawRecord, result: ParseResult) -> str:
    """Text of the payload; bytes that are not UTF-8 are replaced and reported, not fatal."""
    body = record.body
    if body.startswith(b"\xef\xbb\xbf"):
        body = body[3:]
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        result.errors.append(ParseError(
            f"payload is not valid UTF-8 ({exc.reason}); undecodable bytes were replaced with U+FFFD",
            source=SOURCE, target=record.target, offset=exc.start))
        return body.decode("utf-8", errors="replace")


def _split_csv(line: str) -> list[str]:
    """Fields of one CSV line; HAProxy quotes text fields that hold commas or quotes (csv_enc)."""
    if '"' not in line:
        return line.split(",")
    return next(csv.reader([line], strict=True))


def _addr_ip(addr: str) -> str | None:
    """The IP of an ``addr`` value (``ip:port``, ``[v6]:port``); None for anything else."""
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
            self.plan.append((i, name, catalog.haproxy_csv.get(name), NATIVE_PREFIX + name,
                              name in NUMERIC_COLUMNS))


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

    def add_row(self, metrics: list[str], labels: list[tuple[str, str]], values: list[float]) -> None:
        """All samples of one CSV row; they share one label list."""
        self.metric.extend(metrics)
        self.labels.extend([labels] * len(metrics))
        self.value.extend(values)

    def table(self, ts: datetime, source: str, host: str) -> pa.Table:
        n = len(self.metric)
        if n == 0:
            return SAMPLES_SCHEMA.empty_table()
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
            return IP_OBSERVATIONS_SCHEMA.empty_table()

        def dict_col(value: str | None) -> pa.Array:
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
        n = _number(row[cols.type])
        if n is None or n != int(n):
            return None
        return TYPE_NAMES.get(int(n), str(int(n)))
    if svname == "FRONTEND":
        return "frontend"
    if svname == "BACKEND":
        return "backend"
    return "server"


def parse_record(record: RawRecord, catalog: Catalog) -> ParseResult:
    """Parse one ``show stat`` / ``;csv`` payload.

    Raises :class:`ParseError` when there is no CSV header (``# pxname,svname,...``) or the
    header lacks ``pxname``/``svname``; a row with the wrong number of fields or a non-number in
    a numeric column is reported in ``result.errors`` and skipped whole, so a half-read row never
    mixes with good ones.
    """
    result = ParseResult()
    text = _decode(record, result)
    source, extra = _context(record)
    samples = _SampleColumns()
    ips = _IpColumns()
    cols: _Columns | None = None
    pending: list[ParseError] = []  # lines before the first header

    def error(message: str, lineno: int) -> ParseError:
        return ParseError(message, source=source, target=record.target, line=lineno)

    for lineno, raw_line in enumerate(text.split("\n"), start=1):
        line = raw_line.rstrip("\r")
        if not line.strip():
            continue
        if line.startswith("#"):
            try:
                names = _split_csv(line[1:].lstrip(" "))
            except csv.Error as exc:
                raise error(f"unreadable CSV header: {exc}", lineno) from None
            cols = _Columns(names, catalog)
            if cols.px is None or cols.sv is None:
                raise error(f"CSV header has no pxname/svname column: {_snippet(line)}", lineno)
            continue
        if cols is None:
            pending.append(error(f"text before the CSV header ignored: {_snippet(line)}", lineno))
            continue
        try:
            row = _split_csv(line)
        except csv.Error as exc:
            result.errors.append(error(f"unreadable CSV row: {exc}", lineno))
            continue
        if len(row) > cols.width and row[-1] == "":
            row.pop()  # the trailing comma HAProxy ends lines with
        if len(row) != cols.width:
            result.errors.append(error(
                f"row has {len(row)} fields but the header has {cols.width}: {_snippet(line)}", lineno))
            continue
        _parse_row(cols, row, lineno, extra, samples, ips, result, error)

    if cols is None:
        first = next((ln for ln in text.splitlines() if ln.strip()), "")
        raise ParseError(
            "no HAProxy CSV header ('# pxname,svname,...') in the payload; "
            f"first line: {_snippet(first) if first else 'none (empty payload)'}",
            source=source, target=record.target)
    result.errors[:0] = pending
    result.samples = samples.table(record.ts, source, record.host)
    result.ip_observations = ips.table(record.ts, source, record.labels)
    return result


def _parse_row(cols: _Columns, row: list[str], lineno: int, extra: list[tuple[str, str]],
               samples: _SampleColumns, ips: _IpColumns, result: ParseResult,
               make_error: Callable[[str, int], ParseError]) -> None:
    assert cols.px is not None and cols.sv is not None
    pxname, svname = row[cols.px], row[cols.sv]
    if not pxname:
        result.errors.append(make_error("row has an empty pxname", lineno))
        return
    row_type = _row_type(cols, row, svname)
    if row_type is None:
        result.errors.append(make_error(
            f"column 'type' is not a row type number (row {pxname}/{svname})", lineno))
        return

    metrics: list[str] = []
    values: list[float] = []
    for i, name, canonical, native, strict in cols.plan:
        text = row[i]
        if text == "":
            continue
        value = _number(text)
        if value is None:
            if strict:
                result.errors.append(make_error(
                    f"column {name!r} is not a number: {_snippet(text)} (row {pxname}/{svname})", lineno))
                return
            continue  # an unknown column that holds text
        if canonical is not None and (name, row_type) not in _CANONICAL_NOT_FOR:
            metrics.append(canonical.name)
        else:
            metrics.append(native)
        values.append(value)

    labels = sorted([*extra, ("proxy", pxname), ("server", svname), ("type", row_type)])
    samples.add_row(metrics, labels, values)
    if cols.status is not None and row[cols.status] != "":
        status = row[cols.status]
        up_labels = [*labels, ("status", status)]
        if cols.check_status is not None and row[cols.check_status] != "":
            up_labels.append(("check_status", row[cols.check_status].lstrip("* ")))
        samples.add(HAPROXY_STATUS_METRIC.name, sorted(up_labels), 1.0 if status_is_up(status) else 0.0)
    if cols.addr is not None and row_type in ("server", "listener"):
        ip = _addr_ip(row[cols.addr])
        if ip is not None:
            kind = OwnerKind.HAPROXY_SERVER if row_type == "server" else OwnerKind.HAPROXY_FRONTEND
            ips.add(ip, kind, f"{pxname}/{svname}")


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

    Raises :class:`ParseError` when no line carries a ``show info`` key (an error message or an
    unrelated payload); a malformed line or a non-number under a numeric key is reported in
    ``result.errors``. Stops at a ``# `` line, where a ``show stat`` block would begin.
    """
    del catalog  # process metrics are fixed by HAProxy, not user-mappable
    result = ParseResult()
    text = _decode(record, result)
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
            result.errors.append(ParseError(f"not a 'Key: value' line: {_snippet(line)}",
                                            source=source, target=record.target, line=lineno))
            continue
        if key in _INFO_MARKERS:
            known += 1
        if key == "Version" and value:
            samples.add(HAPROXY_BUILD_INFO.name, sorted([*extra, ("version", value)]), 1.0)
            continue
        metric = HAPROXY_INFO.get(key)
        if metric is None:
            continue
        number = _number(value)
        if number is None:
            result.errors.append(ParseError(f"{key} is not a number: {_snippet(value)}",
                                            source=source, target=record.target, line=lineno))
            continue
        samples.add(metric.name, extra, number)
    if known == 0:
        first = next((ln for ln in text.splitlines() if ln.strip()), "")
        raise ParseError(
            "no HAProxy 'show info' fields (Name, Version, Uptime_sec, ...) in the payload; "
            f"first line: {_snippet(first) if first else 'none (empty payload)'}",
            source=source, target=record.target)
    result.samples = samples.table(record.ts, source, record.host)
    return result

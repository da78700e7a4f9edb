"""Telegraf messages from MQTT → samples (pure: no I/O, no clock).

An ``mqtt`` record's body is what Telegraf's ``outputs.mqtt`` published (domain reference §2.2):

* JSON serializer: one metric ``{"fields", "name", "tags", "timestamp"}`` (``layout =
  "non-batch"``), a batch ``{"metrics": [...]}`` (``layout = "batch"``), or a JSON array of
  metrics (what ``json_transformation`` or other publishers often produce);
* influx line protocol, one or many lines (Telegraf's default ``data_format``), parsed with the
  grammar of Telegraf's own parser (``plugins/parsers/influx/machine.go.rl``): escapes, ``i``/``u``
  integer suffixes, quoted string fields that may span lines, optional nanosecond timestamp;
* ``layout = "field"``: a bare value, the field name being the last topic segment.

``win_perf_counters`` fields map to canonical names through the catalog (formatted per-second
values and ``UseRawValues`` ``_Raw`` cumulative values are different canonical metrics); other
fields keep the native name ``<measurement>.<field>``. The host is the ``source`` tag (the computer
the counter was read from, which differs from the agent's ``host`` when Telegraf reads remote
``Sources``), else ``host``, else the ``{host}`` segment of the topic template, else the record's.

JSON bodies shaped like neighbour rows or Windows event records are handed to the neighbour and
event parsers, so a PowerShell publisher can send ARP rows and Tcpip 4198/4199 events over the
same broker.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from collector.catalog import Catalog, normalize_windows_labels
from collector.errors import ParseError
from collector.rows import SampleRows, clean
from collector.schema import ParseResult, RawRecord, to_ms
from collector.sources.neighbors import parse as neighbors
from collector.text import without_bom

SOURCE = "telegraf"
PARSER = "mqtt"
DEFAULT_TOPIC_TEMPLATE = "telegraf/{host}/{measurement}"
# Record labels that steer parsing and are not copied onto samples.
CONTROL_LABELS = frozenset({"source", "topic_template"})
# The int64-nanosecond range every Telegraf timestamp lives in, in milliseconds.
MAX_TS_MS = 9_223_372_036_854

FieldValue = float | int | bool | str


# ---------------------------------------------------------------------------------------------
# Topic templates
# ---------------------------------------------------------------------------------------------

_GO_TAG = re.compile(r"\{\{-?\s*\.Tag\s+\"([^\"]+)\"\s*-?\}\}")
_GO_NAME = re.compile(r"\{\{-?\s*\.Name\s*-?\}\}")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def normalize_topic_template(template: str) -> str:
    """Accept Telegraf's own Go template (``telegraf/{{ .Tag "host" }}/{{ .Name }}``) as well."""
    text = _GO_TAG.sub(lambda m: "{" + re.sub(r"\W", "_", m.group(1)) + "}", template)
    return _GO_NAME.sub("{measurement}", text)


@lru_cache(maxsize=128)
def compile_topic_template(template: str, *, field_suffix: bool = False) -> re.Pattern[str]:
    """A regex whose named groups recover placeholders (``{host}``, ``{measurement}``, tags).

    Each placeholder matches one topic level. ``field_suffix`` adds the trailing ``/<field>`` level
    Telegraf's ``layout = "field"`` appends.
    """
    text = normalize_topic_template(template)
    out: list[str] = []
    seen: set[str] = set()
    pos = 0
    for m in _PLACEHOLDER.finditer(text):
        out.append(re.escape(text[pos : m.start()]))
        name = m.group(1)
        out.append(f"(?P={name})" if name in seen else f"(?P<{name}>[^/]+)")
        seen.add(name)
        pos = m.end()
    out.append(re.escape(text[pos:]))
    if field_suffix:
        out.append("/(?P<_field>[^/]+)")
    return re.compile("^" + "".join(out) + "$")


def topic_values(topic: str, template: str, *, field_suffix: bool = False) -> dict[str, str]:
    """Placeholder values of ``topic`` under ``template``; empty when it does not match.

    Telegraf omits the level of a missing tag, so a topic that does not match simply yields
    nothing (the host then comes from tags or the record).
    """
    m = compile_topic_template(template, field_suffix=field_suffix).match(topic)
    return {k: v for k, v in m.groupdict().items() if v} if m else {}


# ---------------------------------------------------------------------------------------------
# One metric, whatever the wire format
# ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Metric:
    """A Telegraf metric as it travelled: measurement, tags, fields, optional timestamp."""

    name: str
    tags: dict[str, str] = field(default_factory=dict)
    fields: dict[str, FieldValue] = field(default_factory=dict)
    ts_ms: int | None = None
    where: str = ""  # "line 3" / "metrics[2]" for error messages


class _Bad(Exception):
    """A problem inside one line/metric; becomes a ParseError with the position."""

    def __init__(self, why: str, pos: int) -> None:
        super().__init__(why)
        self.why = why
        self.pos = pos


# ---------------------------------------------------------------------------------------------
# Influx line protocol (grammar of telegraf plugins/parsers/influx/machine.go.rl)
# ---------------------------------------------------------------------------------------------

_WS = " \t\v\f"
_INT = re.compile(r"-?(?:0|[1-9][0-9]*)i")
_UINT = re.compile(r"(?:0|[1-9][0-9]*)u")
_FLOAT = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
_TRUE = frozenset({"t", "T", "true", "True", "TRUE"})
_FALSE = frozenset({"f", "F", "false", "False", "FALSE"})
_TIMESTAMP = re.compile(r"-?[0-9]{1,19}")
_KEY_UNESCAPES = (("\\,", ","), ('\\"', '"'), ("\\ ", " "), ("\\=", "="))
_NAME_UNESCAPES = (("\\,", ","), ("\\ ", " "))
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
# Token grammars of machine.go.rl: a backslash escapes the next character (kept for unescaping);
# a backslash before a control character or the end is literal; in tags a doubled backslash consumes one
# backslash only, so the second may escape what follows.
_MEASUREMENT = re.compile(r"(?:[^\t\n\f\r ,\\]|\\[^\t\n\f\r]|\\)+")
_TAG = re.compile(r"(?:[^\t\n\f\r ,=\\]|\\[^\t\n\f\r\\]|\\)+")
_FIELD_KEY = re.compile(r"(?:[^\t\n\f\r ,=\\]|\\[^\t\n\f\r]|\\)+")
_FIELD_VALUE = re.compile(r"(?:[^\t\n\f\r ,\\]|\\[^\t\n\f\r]|\\)+")


def _unescape(text: str, pairs: tuple[tuple[str, str], ...]) -> str:
    if "\\" not in text:
        return text
    for a, b in pairs:
        text = text.replace(a, b)
    return text


class _LineScanner:
    """A cursor over the whole body; positions are character offsets into it."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.n = len(text)
        self.pos = 0

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < self.n else ""

    def skip_ws(self) -> int:
        start = self.pos
        while self.pos < self.n and self.text[self.pos] in _WS:
            self.pos += 1
        return self.pos - start

    def at_eol(self) -> bool:
        return self.pos >= self.n or self.text[self.pos] in "\r\n"

    def token(self, pattern: re.Pattern[str], what: str) -> str:
        """Read one token matching ``pattern`` (its escape rules are in the pattern)."""
        m = pattern.match(self.text, self.pos)
        if m is None:
            raise _Bad(f"expected {what}", self.pos)
        self.pos = m.end()
        return m.group()

    def string_field(self) -> str:
        """A quoted string field (``\\\\`` and ``\\"`` escapes; raw newlines allowed)."""
        t = self.text
        assert t[self.pos] == '"'
        start = self.pos
        self.pos += 1
        out: list[str] = []
        seg = self.pos
        while self.pos < self.n:
            c = t[self.pos]
            if c == "\\" and self.pos + 1 < self.n and t[self.pos + 1] in '\\"':
                out.append(t[seg : self.pos])
                out.append(t[self.pos + 1])
                self.pos += 2
                seg = self.pos
                continue
            if c == '"':
                out.append(t[seg : self.pos])
                self.pos += 1
                return "".join(out)
            if c in "\f":
                raise _Bad("form feed in a string field", self.pos)
            self.pos += 1
        raise _Bad("unterminated string field (missing closing quote)", start)

    def skip_line(self) -> None:
        nl = self.text.find("\n", self.pos)
        self.pos = self.n if nl < 0 else nl + 1


def _field_value(raw: str, pos: int) -> FieldValue:
    last = raw[-1]
    if last == "i" and _INT.fullmatch(raw):
        v = int(raw[:-1])
        if not _INT64_MIN <= v <= _INT64_MAX:
            raise _Bad(f"integer field {raw!r} out of int64 range", pos)
        return v
    if last == "u" and _UINT.fullmatch(raw):
        v = int(raw[:-1])
        if v > 2**64 - 1:
            raise _Bad(f"unsigned field {raw!r} out of uint64 range", pos)
        return v
    if _FLOAT.fullmatch(raw):
        f = float(raw)
        if not math.isfinite(f):
            raise _Bad(f"float field {raw!r} out of range", pos)
        return f
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise _Bad(f"invalid field value {raw!r} (expected number, 123i, 123u, bool or quoted string)", pos)


def _parse_lp_line(sc: _LineScanner) -> Metric:
    """Parse one metric line starting at the cursor (which sits on its first character)."""
    name_raw = sc.token(_MEASUREMENT, "measurement name")
    name = _unescape(name_raw, _NAME_UNESCAPES)
    tags: dict[str, str] = {}
    while sc.peek() == ",":
        sc.pos += 1
        key = sc.token(_TAG, "tag key")
        if sc.peek() != "=":
            raise _Bad(f"expected '=' after tag key {key!r}", sc.pos)
        sc.pos += 1
        val = sc.token(_TAG, f"value of tag {key!r}")
        tags[_unescape(key, _KEY_UNESCAPES)] = _unescape(val, _KEY_UNESCAPES)
    if sc.skip_ws() == 0 or sc.at_eol():
        raise _Bad("expected a space and a field set after the measurement/tags", sc.pos)
    fields: dict[str, FieldValue] = {}
    while True:
        key = _unescape(sc.token(_FIELD_KEY, "field key"), _KEY_UNESCAPES)
        if sc.peek() != "=":
            raise _Bad(f"expected '=' after field key {key!r}", sc.pos)
        sc.pos += 1
        if sc.peek() == '"':
            fields[key] = sc.string_field()
        else:
            vpos = sc.pos
            raw = sc.token(_FIELD_VALUE, f"value of field {key!r}")
            fields[key] = _field_value(raw, vpos)
        if sc.peek() == ",":
            sc.pos += 1
            continue
        break
    ts_ms: int | None = None
    if sc.skip_ws() and not sc.at_eol():
        tpos = sc.pos
        start = sc.pos
        while sc.pos < sc.n and sc.text[sc.pos] not in _WS + "\r\n":
            sc.pos += 1
        raw_ts = sc.text[start : sc.pos]
        if not _TIMESTAMP.fullmatch(raw_ts):
            raise _Bad(f"invalid timestamp {raw_ts!r} (expected integer nanoseconds)", tpos)
        ns = int(raw_ts)
        if not _INT64_MIN <= ns <= _INT64_MAX:
            raise _Bad(f"timestamp {raw_ts} out of int64 nanosecond range", tpos)
        ts_ms = ns // 1_000_000
        if ts_ms < 0:
            raise _Bad(f"timestamp {raw_ts} is before 1970", tpos)
        sc.skip_ws()
    if not sc.at_eol():
        raise _Bad(f"unexpected text after the metric: {sc.text[sc.pos : sc.pos + 20]!r}", sc.pos)
    if sc.peek() == "\r":
        sc.pos += 1
        if sc.peek() not in ("\n", ""):
            raise _Bad("carriage return not followed by a newline", sc.pos)
    if sc.peek() == "\n":
        sc.pos += 1
    return Metric(name=name, tags=tags, fields=fields, ts_ms=ts_ms)


def iter_line_protocol(text: str) -> Iterator[tuple[Metric | None, int, int, str]]:
    """Yield ``(metric, line, offset, why)`` per line; metric is None when the line is bad.

    Comment and blank lines are skipped. A bad line is skipped to the next newline, as
    Telegraf's parser does, so one broken line costs only itself.
    """
    sc = _LineScanner(text)
    counted_to, counted_line = 0, 1

    def line_at(pos: int) -> int:
        nonlocal counted_to, counted_line
        if pos < counted_to:
            return text.count("\n", 0, pos) + 1
        counted_line += text.count("\n", counted_to, pos)
        counted_to = pos
        return counted_line

    while sc.pos < sc.n:
        sc.skip_ws()
        c = sc.peek()
        if c == "":
            break
        if c in "\r\n":
            sc.pos += 1
            continue
        if c == "#":
            sc.skip_line()
            continue
        start = sc.pos
        try:
            metric = _parse_lp_line(sc)
        except _Bad as bad:
            yield None, line_at(bad.pos), bad.pos, bad.why
            sc.pos = bad.pos
            sc.skip_line()
            continue
        line = line_at(start)
        metric.where = f"line {line}"
        yield metric, line, start, ""


# ---------------------------------------------------------------------------------------------
# Telegraf JSON
# ---------------------------------------------------------------------------------------------


def json_timestamp_ms(value: Any) -> int:
    """Telegraf JSON ``timestamp`` → epoch ms.

    ``json_timestamp_units`` is not in the payload, so the unit is inferred from the magnitude
    (s < 1e11 ≤ ms < 1e14 ≤ µs < 1e17 ≤ ns), which is unambiguous for dates 1973–5138;
    ``json_timestamp_format`` strings are read as ISO-8601/RFC 3339.
    """
    if isinstance(value, bool):
        raise ValueError(f"timestamp must be a number or a string, not {value!r}")
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"-?[0-9]+(\.[0-9]*)?", text):
            return json_timestamp_ms(float(text) if "." in text else int(text))
        t = text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text
        dt = datetime.fromisoformat(t)
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        ms = to_ms(dt)
    elif isinstance(value, int | float):
        num = float(value)
        if not math.isfinite(num):
            raise ValueError(f"timestamp {value!r} is not finite")
        mag = abs(num)
        if mag < 1e11:
            ms = round(num * 1000)
        elif mag < 1e14:
            ms = round(num)
        elif mag < 1e17:
            ms = int(num // 1000)
        else:
            ms = int(value // 1_000_000) if isinstance(value, int) else int(num // 1_000_000)
    else:
        raise ValueError(f"timestamp must be a number or a string, not {type(value).__name__}")
    if not 0 <= ms <= MAX_TS_MS:
        raise ValueError(f"timestamp {value!r} is out of range")
    return ms


def json_metric(obj: Any, where: str) -> Metric:
    """One serializer metric object → :class:`Metric`; ``ValueError`` says what is wrong."""
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: expected a metric object, got {type(obj).__name__}")
    name = obj.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"{where}.name: expected a non-empty string")
    fields = obj.get("fields")
    if not isinstance(fields, dict):
        raise ValueError(f"{where}.fields: expected an object, got {type(fields).__name__}")
    tags_obj = obj.get("tags", {})
    if tags_obj is None:
        tags_obj = {}
    if not isinstance(tags_obj, dict):
        raise ValueError(f"{where}.tags: expected an object, got {type(tags_obj).__name__}")
    tags: dict[str, str] = {}
    for k, v in tags_obj.items():
        if isinstance(v, bool) or not isinstance(v, str | int | float):
            raise ValueError(f"{where}.tags.{k}: expected a string, got {type(v).__name__}")
        tags[clean(k)] = clean(str(v))
    out_fields: dict[str, FieldValue] = {}
    for k, v in fields.items():
        if isinstance(v, bool | int | float | str):
            out_fields[clean(k)] = clean(v) if isinstance(v, str) else v
        elif v is not None:
            raise ValueError(f"{where}.fields.{k}: expected a number, bool or string, got {type(v).__name__}")
    ts_ms = json_timestamp_ms(obj["timestamp"]) if obj.get("timestamp") is not None else None
    return Metric(name=clean(name), tags=tags, fields=out_fields, ts_ms=ts_ms, where=where)


# ---------------------------------------------------------------------------------------------
# Samples
# ---------------------------------------------------------------------------------------------


def _numeric(v: FieldValue) -> float | None:
    if isinstance(v, bool):
        return 1.0 if v else 0.0
    if isinstance(v, int | float):
        try:
            f = float(v)
        except OverflowError:
            return None
        return f if math.isfinite(f) else None
    return None  # string fields are not samples


_HOST_TAGS = ("source", "host")


class _Context:
    """What every metric of one record shares: its time, host fallbacks and extra labels."""

    def __init__(self, record: RawRecord) -> None:
        self.record = record
        self.record_ms = to_ms(record.ts)
        self.source = clean(record.labels.get("source", "")) or SOURCE
        self.template = record.labels.get("topic_template") or DEFAULT_TOPIC_TEMPLATE
        self.topic = clean(record.topic or "")
        self.from_topic = topic_values(self.topic, self.template) if self.topic else {}
        self.extra = {clean(k): clean(v) for k, v in record.labels.items() if k not in CONTROL_LABELS}

    def topic_host(self) -> str:
        return self.from_topic.get("host", "") or clean(self.record.host)


def add_metric(rows: SampleRows, m: Metric, ctx: _Context, catalog: Catalog) -> None:
    """Append the numeric fields of one metric as samples."""
    host = m.tags.get("source") or m.tags.get("host") or ctx.topic_host()
    objectname = m.tags.get("objectname")
    base = dict(ctx.extra)
    base.update({k: v for k, v in m.tags.items() if k not in _HOST_TAGS})
    ts = m.ts_ms if m.ts_ms is not None else ctx.record_ms
    mapped_labels: dict[str, str] | None = None
    for fname, fval in m.fields.items():
        value = _numeric(fval)
        if value is None:
            continue
        md = catalog.lookup_telegraf(objectname, fname) if objectname else None
        if md is not None:
            if mapped_labels is None:
                mapped_labels = {k: v for k, v in base.items() if k != "objectname"}
            value /= md.divisor  # raw Avg. sec/… ticks → seconds, bits → bytes
            rows.add(ts, ctx.source, host, md.name, normalize_windows_labels(md.name, mapped_labels), value)
        else:
            native = f"{m.name}.{fname}"
            rows.add(ts, ctx.source, host, native, normalize_windows_labels(native, base), value)


# ---------------------------------------------------------------------------------------------
# Record entry point
# ---------------------------------------------------------------------------------------------

_NEIGHBOR_KEYS = frozenset({"ip", "dst", "IPAddress", "lladdr", "LinkLayerAddress"})
_EVENT_KEYS = frozenset({"provider", "ProviderName"})


def _evidence_kind(doc: Any) -> str | None:
    """``neighbors`` / ``event`` when a JSON body is evidence rather than Telegraf metrics."""
    first = doc[0] if isinstance(doc, list) and doc else doc
    if not isinstance(first, dict) or "fields" in first or "metrics" in first:
        return None
    keys = set(first)
    if keys & _EVENT_KEYS:
        return "event"
    if keys & _NEIGHBOR_KEYS:
        return "neighbors"
    return None


def _decode(record: RawRecord, target: str, errors: list[Exception]) -> str:
    body = without_bom(record.body)
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        errors.append(
            ParseError(
                f"invalid UTF-8 ({exc.reason}); bad bytes replaced", source=PARSER, target=target, offset=exc.start
            )
        )
        return body.decode("utf-8", "replace")


_BARE_VALUE = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?|true|false")


def parse_record(record: RawRecord, catalog: Catalog) -> ParseResult:
    """Parse one MQTT message (see the module docstring for the accepted bodies)."""
    target = record.topic or record.target
    errors: list[Exception] = []
    text = _decode(record, target, errors)
    if text.startswith("\ufeff"):
        text = text[1:]
    stripped = text.strip()
    result = ParseResult()
    if not stripped:
        return result
    ctx = _Context(record)
    rows = SampleRows()
    if stripped[0] in "{[":
        try:
            doc = json.loads(stripped)
        except (ValueError, RecursionError) as exc:
            line = getattr(exc, "lineno", None)
            pos = getattr(exc, "pos", None)
            msg = getattr(exc, "msg", None) or str(exc)[:200]
            raise ParseError(f"invalid JSON: {msg}", source=PARSER, target=target, line=line, offset=pos) from None
        evidence = _evidence_kind(doc)
        if evidence is not None:
            return _route_evidence(record, evidence, ctx, catalog)
        if isinstance(doc, dict) and "metrics" in doc:
            items = doc["metrics"]
            if not isinstance(items, list):
                raise ParseError("'metrics' must be an array of metric objects", source=PARSER, target=target)
            where = "metrics"
        elif isinstance(doc, dict):
            items, where = [doc], ""
        else:
            items, where = doc, ""
        good = 0
        for i, item in enumerate(items):
            path = f"{where}[{i}]" if (where or len(items) > 1 or isinstance(doc, list)) else "$"
            try:
                m = json_metric(item, path)
            except (ValueError, OverflowError) as exc:
                errors.append(ParseError(str(exc), source=PARSER, target=target))
                continue
            good += 1
            add_metric(rows, m, ctx, catalog)
        if not good and errors and items:
            raise _first(errors)
    elif _BARE_VALUE.fullmatch(stripped) and "/" in ctx.topic:
        _field_layout(stripped, rows, ctx, catalog)
    else:
        good = 0
        for metric, line, offset, why in iter_line_protocol(text):
            if metric is None:
                errors.append(
                    ParseError(
                        f"line protocol: {why}",
                        source=PARSER,
                        target=target,
                        line=line,
                        offset=len(text[:offset].encode("utf-8")),
                    )
                )
                continue
            good += 1
            add_metric(rows, metric, ctx, catalog)
        if not good and errors:
            raise _first(errors)
    result.samples = rows.table()
    result.errors = errors
    return result


def _first(errors: list[Exception]) -> ParseError:
    first = errors[0]
    if isinstance(first, ParseError) and len(errors) == 1:
        return first
    msg = f"nothing parseable ({len(errors)} problems); first: {first}"
    if isinstance(first, ParseError):
        return ParseError(msg, source=first.source, target=first.target)
    return ParseError(msg)


def _field_layout(value_text: str, rows: SampleRows, ctx: _Context, catalog: Catalog) -> None:
    """``layout = "field"``: the topic is ``<template>/<field>`` and the body one value."""
    values = topic_values(ctx.topic, ctx.template, field_suffix=True)
    fname = values.pop("_field", "") or ctx.topic.rsplit("/", 1)[-1]
    measurement = values.pop("measurement", "") or "telegraf"
    tags = {k: v for k, v in values.items() if k != "host"}
    if "host" in values:
        tags["host"] = values["host"]
    value: FieldValue = value_text == "true" if value_text in ("true", "false") else float(value_text)
    add_metric(rows, Metric(name=measurement, tags=tags, fields={fname: value}), ctx, catalog)


def _route_evidence(record: RawRecord, kind: str, ctx: _Context, catalog: Catalog) -> ParseResult:
    """Hand a neighbour/event array to its parser, with the host recovered from the topic."""
    labels = {k: v for k, v in record.labels.items() if k != "topic_template"}
    routed = RawRecord(
        ts=record.ts,
        kind=kind,
        target=record.topic or record.target,
        body=record.body,
        host=ctx.topic_host(),
        labels=labels,
        topic=record.topic,
    )
    if kind == "event":
        return neighbors.parse_event_record(routed, catalog)
    return neighbors.parse_record(routed, catalog)

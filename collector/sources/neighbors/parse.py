"""Neighbour tables and Windows Tcpip conflict events → IP observations (pure: no I/O, no clock).

Duplicate-IP detection needs evidence from the wire, not only from inventories: who answered ARP
for an address (neighbour tables) and what Windows itself noticed (Tcpip 4198/4199, domain
reference §7.1).

``neighbors`` records: a JSON array (or one object) of rows in any of three shapes, normalized to
``{"ip", "mac", "interface", "state"}``:

* hciwatch rows ``{"ip", "mac", "interface", "state"}`` (optional ``"host"``);
* iproute2 ``ip -j neigh``: ``{"dst", "dev", "lladdr", "state": ["REACHABLE"]}``;
* PowerShell ``Get-NetNeighbor | ConvertTo-Json``: ``{"IPAddress", "LinkLayerAddress",
  "InterfaceAlias", "State"}`` with ``State`` the ``NL_NEIGHBOR_STATE`` number (0 Unreachable,
  1 Incomplete, 2 Probe, 3 Delay, 4 Stale, 5 Reachable, 6 Permanent) or its name.

Each row with a unicast MAC becomes owner_kind ``neighbor``, owner ``<host>/<interface>``. Rows
without a MAC, in a failed/incomplete/unreachable state, or naming a broadcast/multicast MAC or
IP are skipped: they say nothing about who holds the address.

``event`` records: a JSON array (or one object) of ``{"provider", "id", "time", "host",
"message", "ip", "mac"}``, raw ``Get-WinEvent | ConvertTo-Json`` objects (``ProviderName``,
``Id``, ``TimeCreated``, ``MachineName``, ``Message``, ``Properties[].Value``) or raw
``Get-EventLog | ConvertTo-Json`` objects (``Source``, ``EventID``/``InstanceId``,
``TimeGenerated``, ``MachineName``, ``Message``, ``ReplacementStrings``). Messages are read
whatever their line wrapping (Windows breaks them with CRLF) and language (the IP and MAC are
the only address-shaped tokens of a localized message). Tcpip 4198/4199
become owner_kind ``event``, owner ``<host>/tcpip-<id>``, mac = the *other* system's MAC, ts =
the event time, plus one ``event.tcpip_address_conflict`` sample (value 1) per event so conflicts
can be counted over any window. Other events are skipped and counted in
``event.records_ignored``.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import re
from collections.abc import Hashable, Iterator
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from collector.catalog import Catalog
from collector.errors import ParseError
from collector.rows import SampleRows, clean
from collector.schema import (
    EMPTY_IP_OBSERVATIONS,
    IP_OBSERVATIONS_SCHEMA,
    TS_TYPE,
    OwnerKind,
    ParseResult,
    RawRecord,
    normalize_mac,
    to_ms,
)
from collector.sources import skeletons
from collector.sources.neighbors import _reuse

NEIGHBOR_SOURCE = "neighbors"
EVENT_SOURCE = "event"
CONFLICT_METRIC = "event.tcpip_address_conflict"
IGNORED_METRIC = "event.records_ignored"
TCPIP_PROVIDERS = frozenset({"tcpip", "microsoft-windows-tcpip", "tcp/ip"})
TCPIP_CONFLICT_IDS = frozenset({4198, 4199})
MAX_TS_MS = 9_223_372_036_854

# NL_NEIGHBOR_STATE (nldef.h), the numbers MSFT_NetNeighbor.State carries.
WINDOWS_STATES = ("unreachable", "incomplete", "probe", "delay", "stale", "reachable", "permanent")
# States whose MAC (if any) is not current evidence of who holds the address.
NOT_EVIDENCE_STATES = frozenset({"unreachable", "incomplete", "failed", "none"})


class IpObservationRows:
    """Column lists for an IP_OBSERVATIONS_SCHEMA table."""

    def __init__(self) -> None:
        self.ts: list[int] = []
        self.ip: list[str] = []
        self.mac: list[str | None] = []
        self.owner_kind: list[str] = []
        self.owner: list[str] = []
        self.cluster: list[str | None] = []
        self.network: list[str | None] = []
        self.source: list[str] = []

    def add(
        self,
        ts_ms: int,
        ip: str,
        mac: str | None,
        owner_kind: OwnerKind,
        owner: str,
        cluster: str | None,
        network: str | None,
        source: str,
    ) -> None:
        self.ts.append(ts_ms)
        self.ip.append(ip)
        self.mac.append(mac)
        self.owner_kind.append(owner_kind.value)
        self.owner.append(owner)
        self.cluster.append(cluster)
        self.network.append(network)
        self.source.append(source)

    def __len__(self) -> int:
        return len(self.ts)

    def table(self) -> pa.Table:
        if not self.ts:
            return EMPTY_IP_OBSERVATIONS

        def dict_col(values: list[str | None] | list[str]) -> pa.Array[Any]:
            return pa.array(values, pa.string()).dictionary_encode()

        return pa.table(
            {
                "ts": pa.array(self.ts, pa.int64()).cast(TS_TYPE),
                "ip": pa.array(self.ip, pa.string()),
                "mac": pa.array(self.mac, pa.string()),
                "owner_kind": dict_col(self.owner_kind),
                "owner": pa.array(self.owner, pa.string()),
                "cluster": dict_col(self.cluster),
                "network": dict_col(self.network),
                "source": dict_col(self.source),
            },
            schema=IP_OBSERVATIONS_SCHEMA,
        )


# ---------------------------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------------------------


class _RowError(ValueError):
    """One row is unusable; the message names the field."""


def _load(record: RawRecord, parser: str) -> tuple[list[Any], str]:
    """Body → list of rows (one object is a list of one); raises ParseError when not JSON."""
    target = record.target or record.topic or ""
    raw = record.body
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            text = raw.decode("utf-16") if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else ""
        except UnicodeDecodeError:
            text = ""
        if not text:
            raise ParseError("body is not UTF-8 text", source=parser, target=target) from None
    if not text.strip():
        return [], target
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ParseError(
            f"invalid JSON: {getattr(exc, 'msg', None) or str(exc)[:200]}",
            source=parser,
            target=target,
            line=getattr(exc, "lineno", None),
            offset=getattr(exc, "pos", None),
        ) from None
    if isinstance(doc, dict):
        # PowerShell 5.1 pipes sometimes wrap arrays as {"value": [...], "Count": n}
        if isinstance(doc.get("value"), list) and "Count" in doc:
            return doc["value"], target
        return [doc], target
    if isinstance(doc, list):
        return doc, target
    raise ParseError(
        f"expected a JSON array of rows or one object, got {type(doc).__name__}", source=parser, target=target
    )


def _str(row: dict[str, Any], *keys: str) -> str:
    for k in keys:
        v = row.get(k)
        if isinstance(v, str) and v.strip():
            return clean(v.strip())
        if isinstance(v, int) and not isinstance(v, bool):
            return str(v)
    return ""


@functools.lru_cache(maxsize=65_536)  # tables repeat the same addresses every poll
def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    addr = text.strip().strip("[]").split("%", 1)[0]
    try:
        return ipaddress.ip_address(addr)
    except ValueError:
        raise _RowError(f"not an IP address: {text[:60]!r}") from None


def _mac(value: Any) -> str | None:
    """MAC from text (any separator) or a 6-byte array (PowerShell byte[]); None when absent."""
    if value is None or value == "":
        return None
    if isinstance(value, list):
        if len(value) == 6 and all(isinstance(b, int) and not isinstance(b, bool) and 0 <= b <= 255 for b in value):
            return ":".join(f"{b:02x}" for b in value)
        raise _RowError(f"not a MAC address: {str(value)[:60]}")
    if not isinstance(value, str):
        raise _RowError(f"not a MAC address: {str(value)[:60]}")
    try:
        return _normalize_mac_cached(value)
    except ValueError:
        raise _RowError(f"not a MAC address: {value[:60]!r}") from None


_normalize_mac_cached = functools.lru_cache(maxsize=65_536)(normalize_mac)


def _is_unicast_mac(mac: str) -> bool:
    first = int(mac[:2], 16)
    return mac != "00:00:00:00:00:00" and not first & 1


def _owner(host: str, suffix: str) -> str:
    if host and suffix:
        return f"{host}/{suffix}"
    return host or suffix or "unknown"


# ---------------------------------------------------------------------------------------------
# Neighbour rows
# ---------------------------------------------------------------------------------------------


def _state(row: dict[str, Any]) -> str:
    v = row.get("state", row.get("State"))
    if isinstance(v, list):
        names = [clean(s).lower() for s in v if isinstance(s, str)]
        # ip -j neigh may list several NUD flags; the entry is evidence if any flag is
        return next((s for s in names if s not in NOT_EVIDENCE_STATES), names[0] if names else "")
    if isinstance(v, bool):
        return ""
    if isinstance(v, int):
        return WINDOWS_STATES[v] if 0 <= v < len(WINDOWS_STATES) else str(v)
    if isinstance(v, str):
        return clean(v).strip().lower()
    return ""


_BROADCAST = ipaddress.IPv4Address("255.255.255.255")


def neighbor_rows(rows: list[Any]) -> Iterator[tuple[int, dict[str, str] | None, str]]:
    """Normalize every shape to ``{"ip", "mac", "interface", "state", "host"}``.

    Yields ``(index, row, why)``: row None with ``why`` for a bad row, row None with an empty
    ``why`` for a skipped one (no MAC, failed state, broadcast/multicast).
    """
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            yield i, None, f"expected an object, got {type(row).__name__}"
            continue
        try:
            if "IPAddress" in row:
                ip_text, mac_val = _str(row, "IPAddress"), row.get("LinkLayerAddress")
                iface = _str(row, "InterfaceAlias", "ifIndex", "InterfaceIndex")
            elif "dst" in row:
                ip_text, mac_val = _str(row, "dst"), row.get("lladdr")
                iface = _str(row, "dev")
            elif "ip" in row:
                ip_text, mac_val = _str(row, "ip"), row.get("mac")
                iface = _str(row, "interface", "dev")
            else:
                yield i, None, "row has none of the keys ip, dst, IPAddress"
                continue
            if not ip_text:
                yield i, None, "row has an empty IP address"
                continue
            addr = _ip(ip_text)
            state = _state(row)
            mac = _mac(mac_val) if not isinstance(mac_val, bool) else None
        except _RowError as exc:
            yield i, None, str(exc)
            continue
        if (
            mac is None
            or state in NOT_EVIDENCE_STATES
            or not _is_unicast_mac(mac)
            or addr.is_multicast
            or addr.is_unspecified
            or (isinstance(addr, ipaddress.IPv4Address) and addr == _BROADCAST)
        ):
            yield i, None, ""
            continue
        host = _str(row, "host", "PSComputerName")
        yield i, {"ip": str(addr), "mac": mac, "interface": iface, "state": state, "host": host}, ""


def parse_record(record: RawRecord, catalog: Catalog) -> ParseResult:
    """``neighbors`` record → owner_kind ``neighbor`` observations (see module docstring).

    Rows seen in the target's previous table are not normalized again, and an unchanged set of
    observations reuses the previous table (:mod:`._reuse`); ``HCIWATCH_PARSE_REUSE=0`` always
    parses carefully.
    """
    if not skeletons.enabled():
        return parse_careful(record, catalog)
    fast = _reuse.fast_rows(record)
    plain: list[Hashable] | None
    if fast is not None:
        rows, plain = fast
        target = record.target or record.topic or ""
    else:
        rows, target = _load(record, NEIGHBOR_SOURCE)
        plain = _reuse.plain_keys(rows)
    source = clean(record.labels.get("source", "")) or NEIGHBOR_SOURCE
    cluster = clean(record.labels.get("cluster", "")) or None
    network = clean(record.labels.get("network", "")) or None
    record_host = clean(record.host)
    consts = (record_host, source, cluster, network)
    sk = _reuse.CACHE.get(record, catalog)
    if sk is not None and sk.consts != consts:
        sk = None
    # rows of earlier tables too (an entry flipping between reachable and stale is two keys),
    # up to a few times this table's size; then only this table's rows are kept
    known = sk.outcomes if sk is not None else {}
    outcomes: dict[Hashable, _reuse.Outcome] = known.copy() if len(known) <= _reuse.KEEP * len(rows) + 64 else {}
    keys = plain if plain is not None else list(map(_reuse.read_key, rows))
    found: list[_reuse.Outcome | None] = list(map(outcomes.get, keys))  # a None key is never stored
    if None in found:
        todo: list[tuple[int, Hashable | None]] = []
        batch: list[Any] = []
        for i, (row, key, outcome) in enumerate(zip(rows, keys, found, strict=True)):
            if outcome is not None:
                continue
            if key is not None:
                outcome = known.get(key)  # kept outcomes were not copied (too many)
                if outcome is not None:
                    outcomes[key] = found[i] = outcome
                    continue
            todo.append((i, key))
            batch.append(row if key is None or plain is not None else _reuse.projected(row))
        for (i, key), outcome in zip(todo, _outcomes(batch, record_host), strict=True):
            found[i] = outcome
            if key is not None:
                outcomes[key] = outcome
    observations = [o for o in found if type(o) is tuple]
    errors: list[Exception] = []
    skipped = 0
    if len(observations) < len(found):
        for i, outcome in enumerate(found):
            if type(outcome) is str:
                if outcome:
                    errors.append(ParseError(f"[{i}]: {outcome}", source=NEIGHBOR_SOURCE, target=target))
                else:
                    skipped += 1
    if errors and not observations and not skipped:
        raise _summary(errors, NEIGHBOR_SOURCE, target)
    ts = to_ms(record.ts)
    if not observations:
        table = EMPTY_IP_OBSERVATIONS
    elif sk is not None and observations == sk.observations:
        table = skeletons.with_ts(sk.table, ts)
    else:
        table = _reuse.table(ts, observations, source, cluster, network)
    _reuse.CACHE.put(record, _reuse.skeleton(catalog, len(record.body), outcomes, consts, observations, table))
    return ParseResult(ip_observations=table, errors=errors)


def _outcomes(rows: list[Any], record_host: str) -> list[_reuse.Outcome]:
    """What :func:`parse_careful` makes of each row: its observation, or why not ("" = skipped)."""
    return [
        (out["ip"], out["mac"], _owner(out["host"] or record_host, out["interface"])) if out is not None else why
        for _, out, why in neighbor_rows(rows)
    ]


def parse_careful(record: RawRecord, catalog: Catalog) -> ParseResult:
    """``neighbors`` record → observations, every row normalized and the table built from scratch."""
    rows, target = _load(record, NEIGHBOR_SOURCE)
    source = clean(record.labels.get("source", "")) or NEIGHBOR_SOURCE
    cluster = clean(record.labels.get("cluster", "")) or None
    network = clean(record.labels.get("network", "")) or None
    record_host = clean(record.host)
    ts = to_ms(record.ts)
    obs = IpObservationRows()
    errors: list[Exception] = []
    skipped = 0
    for i, row, why in neighbor_rows(rows):
        if row is None:
            if why:
                errors.append(ParseError(f"[{i}]: {why}", source=NEIGHBOR_SOURCE, target=target))
            else:
                skipped += 1
            continue
        owner = _owner(row["host"] or record_host, row["interface"])
        obs.add(ts, row["ip"], row["mac"], OwnerKind.NEIGHBOR, owner, cluster, network, source)
    if errors and not obs and not skipped:
        raise _summary(errors, NEIGHBOR_SOURCE, target)
    return ParseResult(ip_observations=obs.table(), errors=errors)


def _summary(errors: list[Exception], parser: str, target: str) -> ParseError:
    first = errors[0]
    if len(errors) == 1 and isinstance(first, ParseError):
        return first
    return ParseError(f"no usable row ({len(errors)} problems); first: {first}", source=parser, target=target)


# ---------------------------------------------------------------------------------------------
# Windows events
# ---------------------------------------------------------------------------------------------

_TIME_KEYS = ("time", "TimeCreated", "TimeGenerated", "TimeWritten")
_MS_DATE = re.compile(r"^/Date\((-?\d+)([+-]\d{4})?\)/$")
# Windows wraps event messages over lines ("…with the system\r\nhaving network hardware
# address…"), so every gap between words is any run of whitespace.
_MSG_CONFLICT = re.compile(
    r"IP\s+address\s+(?P<ip>[0-9A-Fa-f:.]+?)\.?\s+with\s+the\s+system\s+having\s+(?:network\s+)?"
    r"hardware\s+address\s+(?P<mac>[0-9A-Fa-f]{2}(?:[-:][0-9A-Fa-f]{2}){5}|[0-9A-Fa-f]{12})",
    re.IGNORECASE,
)
# Language-neutral fallback for localized messages (German, French, …): the insertion strings
# are the only IP-shaped and MAC-shaped tokens in the text, whatever words surround them.
_MSG_MAC = re.compile(
    r"(?<![0-9A-Fa-f:-])[0-9A-Fa-f]{2}(?:([-:])[0-9A-Fa-f]{2})(?:\1[0-9A-Fa-f]{2}){4}(?![0-9A-Fa-f:-])"
)
_MSG_IP_TOKEN = re.compile(r"[0-9A-Fa-f]*[:.][0-9A-Fa-f:.]*[0-9A-Fa-f]")


def _message_ip_mac(message: str) -> tuple[str, str] | None:
    """(IP, MAC) named in a Tcpip conflict message, in English or any other language."""
    m = _MSG_CONFLICT.search(message)
    if m:
        return m.group("ip"), m.group("mac")
    mac_m = _MSG_MAC.search(message)
    if mac_m is None:
        return None
    text = message[: mac_m.start()] + " " + message[mac_m.end() :]
    for tok in _MSG_IP_TOKEN.findall(text):
        try:
            return str(_ip(tok.rstrip("."))), mac_m.group(0)
        except _RowError:
            continue
    return None


def event_time_ms(value: Any) -> int:
    """Event time → epoch ms: ISO-8601 (PowerShell 7), ``/Date(ms)/`` (Windows PowerShell 5.1),
    or epoch seconds/milliseconds."""
    if isinstance(value, bool):
        raise _RowError("time must be a string or a number")
    if isinstance(value, int | float):
        num = float(value)
        if num != num or num in (float("inf"), float("-inf")):
            raise _RowError("time is not finite")
        ms = round(num * 1000) if abs(num) < 1e11 else round(num)
    elif isinstance(value, str):
        text = value.strip()
        m = _MS_DATE.match(text)
        if m:
            ms = int(m.group(1))
        else:
            t = text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text
            try:
                dt = datetime.fromisoformat(t)
            except ValueError:
                raise _RowError(f"time is not ISO-8601 or /Date(ms)/: {text[:40]!r}") from None
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=UTC)
            ms = to_ms(dt)
    else:
        raise _RowError("time must be a string or a number")
    if not 0 <= ms <= MAX_TS_MS:
        raise _RowError(f"time {value!r} is out of range")
    return ms


def _event_id(row: dict[str, Any]) -> int | None:
    """Event id from ``id``/``Id`` (Get-WinEvent), ``EventID`` or ``InstanceId`` (Get-EventLog).

    ``InstanceId`` is the full message id (severity and facility bits included: Tcpip 4199 is
    3221229671, 0xC0001067); the event id is its low 16 bits.
    """
    for key, mask in (("id", None), ("Id", None), ("EventID", None), ("InstanceId", 0xFFFF)):
        v = row.get(key)
        if isinstance(v, bool) or v is None:
            continue
        if isinstance(v, str) and re.fullmatch(r"[0-9]{1,10}", v.strip()):
            v = int(v.strip())
        if isinstance(v, int):
            return v & mask if mask else v
    return None


def _property_values(row: dict[str, Any]) -> list[Any]:
    """Insertion strings: ``Properties[].Value`` (Get-WinEvent) or ``ReplacementStrings`` (Get-EventLog)."""
    props = row.get("Properties")
    if not isinstance(props, list):
        props = row.get("ReplacementStrings")
    if not isinstance(props, list):
        return []
    return [p.get("Value") if isinstance(p, dict) else p for p in props]


def _conflict_ip_mac(row: dict[str, Any]) -> tuple[str, str | None]:
    """The conflicting IP and the other system's MAC: explicit keys, insertion strings, message."""
    ip_text = _str(row, "ip")
    mac_val: Any = row.get("mac")
    if not ip_text or mac_val in (None, ""):
        for v in _property_values(row):
            if not ip_text and isinstance(v, str):
                try:
                    addr = _ip(v)
                except _RowError:
                    addr = None
                if addr is not None and not addr.is_unspecified:
                    ip_text = str(addr)
                    continue
            if mac_val in (None, "") and v not in (None, ""):
                try:
                    if _mac(v) is not None:
                        mac_val = v
                except _RowError:
                    pass
    if not ip_text or mac_val in (None, ""):
        message = row.get("message", row.get("Message"))
        found = _message_ip_mac(message) if isinstance(message, str) else None
        if found:
            ip_text = ip_text or found[0]
            mac_val = mac_val if mac_val not in (None, "") else found[1]
    if not ip_text:
        raise _RowError("no IP address in ip, Properties or Message")
    return str(_ip(ip_text)), _mac(mac_val)


def parse_event_record(record: RawRecord, catalog: Catalog) -> ParseResult:
    """``event`` record → owner_kind ``event`` observations for Tcpip 4198/4199."""
    rows, target = _load(record, EVENT_SOURCE)
    source = clean(record.labels.get("source", "")) or EVENT_SOURCE
    cluster = clean(record.labels.get("cluster", "")) or None
    network = clean(record.labels.get("network", "")) or None
    record_host = clean(record.host)
    record_ms = to_ms(record.ts)
    extra = {k: clean(v) for k, v in record.labels.items() if k not in ("source", "topic_template", "network")}
    obs = IpObservationRows()
    samples = SampleRows()
    errors: list[Exception] = []
    ignored = 0
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            errors.append(
                ParseError(
                    f"[{i}]: expected an event object, got {type(row).__name__}", source=EVENT_SOURCE, target=target
                )
            )
            continue
        provider = _str(row, "provider", "ProviderName", "Source").lower()
        event_id = _event_id(row)
        if provider not in TCPIP_PROVIDERS or event_id not in TCPIP_CONFLICT_IDS:
            ignored += 1
            continue
        try:
            raw_time = next((row[k] for k in _TIME_KEYS if row.get(k) is not None), None)
            ts = event_time_ms(raw_time) if raw_time is not None else record_ms
            ip, mac = _conflict_ip_mac(row)
        except _RowError as exc:
            errors.append(ParseError(f"[{i}] (Tcpip {event_id}): {exc}", source=EVENT_SOURCE, target=target))
            continue
        host = _str(row, "host", "MachineName") or record_host
        obs.add(ts, ip, mac, OwnerKind.EVENT, _owner(host, f"tcpip-{event_id}"), cluster, network, source)
        labels = dict(extra)
        labels.update({"event_id": str(event_id), "ip": ip})
        if mac:
            labels["mac"] = mac
        samples.add(ts, source, host, CONFLICT_METRIC, labels, 1.0)
    if ignored:
        samples.add(record_ms, source, record_host, IGNORED_METRIC, extra, float(ignored))
    if errors and not obs and not ignored:
        raise _summary(errors, EVENT_SOURCE, target)
    return ParseResult(samples=samples.table(), ip_observations=obs.table(), errors=errors)

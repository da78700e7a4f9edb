"""Prometheus text exposition (0.0.4) → samples and NIC IP observations, built columnarly.

One parser serves every Prometheus-speaking peer: windows_exporter, kube-proxy, Calico Felix and
kube-controllers, MetalLB and HAProxy's built-in exporter. What it decides, and why:

* **Names.** A native name the catalog knows becomes its canonical name; unknown names are kept
  as-is so analysts can still query them. Windows-derived canonical metrics get their labels
  normalized by :func:`collector.catalog.normalize_windows_labels` (``instance``/``adapter`` →
  ``nic``, PFC priority split out), so analyzers see one label scheme whatever agent delivered it.
* **Source column.** By native prefix (``windows_`` → windows, ``kubeproxy_`` → kube-proxy,
  ``felix_``/``ipam_`` → calico, ``metallb_`` → metallb, ``haproxy_`` → haproxy), otherwise the
  record's ``source`` label or ``prometheus``. A ``source`` record label overrides the prefix rule
  (the per-peer sources set it, so an exporter's own ``go_*``/``process_*`` series stay with it).
* **Record labels** other than ``source`` (``cluster``, ``network``, ...) are added to every
  sample. If the payload already has a label of that name, the payload's one is renamed
  ``exported_<name>`` and the record's wins — Prometheus' ``honor_labels: false`` behaviour.
* **Values.** NaN, +Inf and -Inf are kept as IEEE floats: a summary quantile with no observations
  is NaN and a staleness-free store should say so rather than invent a number; queries filter
  with ``isfinite``. Duplicate series in one payload are kept (each is a sample).
* **Timestamps.** A sample's own timestamp (integer ms) is used when present, else ``record.ts``.
* **Histograms/summaries** are plain series: ``_bucket``/``_sum``/``_count`` with ``le`` and
  ``quantile`` labels kept verbatim.
* **Errors.** A bad line is skipped and reported as :class:`ParseError` with its line number
  (the first :data:`MAX_LINE_ERRORS` individually, the rest counted in one summary error). A body
  that is not text (NUL bytes, gzip magic, mostly undecodable UTF-8), or in which no line at all
  is a valid sample while some line is bad (an HTML error page, a wrong port), raises ParseError.

windows_exporter's ``windows_net_nic_info{nic,friendly_name,mac}`` and
``windows_net_nic_address_info{nic,address,family}`` also become IP observations (owner kind
``nic``, owner ``<host>/<nic>``, MAC joined by ``nic``); link-local IPv6 and loopback are skipped.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa

from collector.catalog import Catalog, normalize_windows_labels
from collector.errors import ParseError
from collector.schema import (
    EMPTY_IP_OBSERVATIONS,
    IP_OBSERVATIONS_SCHEMA,
    SAMPLES_SCHEMA,
    TS_TYPE,
    OwnerKind,
    ParseResult,
    RawRecord,
    normalize_mac,
    to_ms,
)
from collector.sources.prometheus import _reuse
from collector.sources.prometheus._scan import I32, I64, Scan, is_openmetrics, scan
from collector.text import without_bom

MAX_LINE_ERRORS = 100
"""Individually reported bad lines per payload; further ones are counted in one summary error."""

PREFIX_SOURCES: tuple[tuple[str, str], ...] = (
    ("windows_", "windows"),
    ("wmi_", "windows"),
    ("kubeproxy_", "kube-proxy"),
    ("felix_", "calico"),
    ("ipam_", "calico"),
    ("metallb_", "metallb"),
    ("haproxy_", "haproxy"),
)

NIC_INFO = "windows_net_nic_info"
NIC_ADDRESS_INFO = "windows_net_nic_address_info"
# Label names normalize_windows_labels reads or writes; everything else passes through it.
_WINDOWS_SPECIAL = ("nic", "instance", "adapter", "port_prio", "priority")
_DICT_TYPE = pa.dictionary(pa.int32(), pa.string())
_WINDOWS_PREFIXES = ("windows_", "wmi_")
# HAProxy exporters name the level in the metric (haproxy_<level>_...); the CSV path has it as `type`.
_HAPROXY_LEVELS = ("frontend", "backend", "server", "listener")
# haproxy_exporter labels the proxy by level; HAProxy's own exporter and the CSV path call it `proxy`.
_HAPROXY_PROXY_KEYS = ("frontend", "backend")


def source_for(native_name: str, labels: Mapping[str, str]) -> str:
    """The ``source`` column value for one native metric name (see the module docstring)."""
    override = labels.get("source")
    if override:
        return override
    for prefix, src in PREFIX_SOURCES:
        if native_name.startswith(prefix):
            return src
    return "prometheus"


def parse_record(record: RawRecord, catalog: Catalog) -> ParseResult:
    """Parse one ``prometheus`` capture record. Pure: no I/O, no clock."""
    src = record.labels.get("source") or "prometheus"
    try:
        return _parse(record, catalog)
    except ParseError:
        raise
    except Exception as exc:  # a bug must still surface as a ParseError naming the payload
        raise ParseError(
            f"internal parser failure ({type(exc).__name__}: {exc})", source=src, target=record.target
        ) from exc


def _text_body(record: RawRecord, src: str) -> tuple[bytes, list[tuple[int, str]]]:
    """Check the body is text; blank out undecodable lines (reported), raise if not text at all."""
    body = without_bom(record.body)  # files saved by PowerShell carry a UTF-8 or UTF-16 BOM
    if body[:2] == b"\x1f\x8b":
        raise ParseError(
            "payload is gzip-compressed bytes, not text (the source must decompress it)",
            source=src,
            target=record.target,
            offset=0,
        )
    if len(body) >= 2**31 - 1:
        raise ParseError(f"payload of {len(body)} bytes is larger than 2 GiB", source=src, target=record.target)
    nul = body.find(b"\x00")
    if nul >= 0:
        raise ParseError("binary payload: NUL byte", source=src, target=record.target, offset=nul)
    if body.isascii():
        return body, []
    try:
        body.decode("utf-8")
        return body, []
    except UnicodeDecodeError:
        pass
    lines = body.split(b"\n")
    bad: list[tuple[int, str]] = []
    for i, line in enumerate(lines):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as exc:
            bad.append((i, f"not UTF-8 (byte 0x{line[exc.start]:02x} at column {exc.start + 1})"))
            lines[i] = b""
    content = sum(1 for ln in lines if ln.strip())
    if len(bad) > content:
        first_line, why = bad[0]
        raise ParseError(
            f"payload is not UTF-8 text ({len(bad)} of {len(bad) + content} non-blank lines undecodable; first: {why})",
            source=src,
            target=record.target,
            line=first_line + 1,
        )
    return b"\n".join(lines), bad


def _parse(record: RawRecord, catalog: Catalog) -> ParseResult:
    src = record.labels.get("source") or "prometheus"
    body, undecodable = _text_body(record, src)
    openmetrics = is_openmetrics(body)
    # OpenMetrics bodies (seconds timestamps, `# EOF`) always take the full parser
    reusable = not undecodable and not openmetrics and _reuse.enabled()
    if reusable:
        hit = _reuse.reuse(record, catalog, body)
        if hit is not None:
            return hit
    sc = scan(body, openmetrics=openmetrics)
    sc.errors.extend(undecodable)
    sc.bad_lines += len(undecodable)
    result = ParseResult()
    result.errors = _errors(sc, src, record.target)
    if sc.n == 0:
        if sc.bad_lines:
            first = min(sc.errors)
            raise ParseError(
                f"no valid sample in payload ({sc.bad_lines} bad lines; first: {first[1]})",
                source=src,
                target=record.target,
                line=first[0] + 1,
            )
        return result
    name_info = _NameInfo(sc.names, record.labels, catalog)
    result.ip_observations = _nic_observations(sc, name_info, record)
    additions = _merge_additions(_normalize_windows(sc, name_info), _normalize_haproxy(sc, name_info))
    result.samples = _samples_table(sc, name_info, record, additions)
    if reusable:
        scaled = (name_info.divisor != 1.0).any()
        _reuse.remember(record, catalog, body, sc, name_info.divisor[sc.name_idx] if scaled else None, result)
    return result


def _errors(sc: Scan, src: str, target: str) -> list[Exception]:
    ordered = sorted(sc.errors)
    errs: list[Exception] = [
        ParseError(why, source=src, target=target, line=li + 1) for li, why in ordered[:MAX_LINE_ERRORS]
    ]
    if sc.bad_lines > MAX_LINE_ERRORS:
        errs.append(
            ParseError(
                f"{sc.bad_lines - MAX_LINE_ERRORS} more bad lines not listed ({sc.bad_lines} in total)",
                source=src,
                target=target,
            )
        )
    return errs


class _NameInfo:
    """Per unique native name: canonical name, source and whether Windows normalization applies."""

    def __init__(self, names: list[str], labels: Mapping[str, str], catalog: Catalog) -> None:
        canon_ids: dict[str, int] = {}
        src_ids: dict[str, int] = {}
        self.canon: list[str] = []
        self.sources: list[str] = []
        n = len(names)
        self.canon_of = np.empty(n, dtype=np.int32)
        self.source_of = np.empty(n, dtype=np.int32)
        self.windows = np.zeros(n, dtype=np.bool_)
        self.haproxy_level = np.full(n, -1, dtype=np.int8)  # index into _HAPROXY_LEVELS, -1: not HAProxy
        self.divisor = np.ones(n, dtype=np.float64)
        self.canonical_name: list[str] = []
        for i, native in enumerate(names):
            d = catalog.lookup_prometheus(native)
            cn = d.name if d is not None else native
            self.canonical_name.append(cn)
            if cn not in canon_ids:
                canon_ids[cn] = len(self.canon)
                self.canon.append(cn)
            self.canon_of[i] = canon_ids[cn]
            s = source_for(native, labels)
            if s not in src_ids:
                src_ids[s] = len(self.sources)
                self.sources.append(s)
            self.source_of[i] = src_ids[s]
            self.windows[i] = d is not None and native.startswith(_WINDOWS_PREFIXES)
            level = native.split("_", 2)[1] if native.startswith("haproxy_") and native.count("_") >= 2 else ""
            if d is not None and d.name.startswith("haproxy.") and level in _HAPROXY_LEVELS:
                self.haproxy_level[i] = _HAPROXY_LEVELS.index(level)
            if d is not None:
                self.divisor[i] = d.divisor
        self.names = names


def _rows_labels(sc: Scan, starts: I64, ends: I64) -> list[dict[str, str]]:
    """The labels of a few rows (entries ``[starts[i], ends[i])``), their values read in one go."""
    lens = ends - starts
    total = int(lens.sum())
    idx = np.repeat(starts - np.cumsum(lens) + lens, lens) + np.arange(total, dtype=np.int64)
    keys = [sc.keys[k] for k in sc.e_key.take(idx).tolist()]
    values = [str(v) for v in sc.values_of(sc.e_val.take(idx)).to_pylist()] if total else []
    out: list[dict[str, str]] = []
    a = 0
    for n in lens.tolist():
        out.append(dict(zip(keys[a : a + n], values[a : a + n], strict=True)))
        a += n
    return out


def _nic_observations(sc: Scan, info: _NameInfo, record: RawRecord) -> pa.Table:
    ids = [i for i, s in enumerate(info.names) if s in (NIC_INFO, NIC_ADDRESS_INFO)]
    if not ids:
        return EMPTY_IP_OBSERVATIONS
    rows = np.flatnonzero(np.isin(sc.name_idx, ids))
    # entries are grouped by row in row order: a row's entries are one searchsorted away
    starts = np.searchsorted(sc.e_row, rows, side="left")
    ends = np.searchsorted(sc.e_row, rows, side="right")
    macs: dict[str, str] = {}
    addrs: list[tuple[int, dict[str, str]]] = []
    for r, labels in zip(rows.tolist(), _rows_labels(sc, starts, ends), strict=True):
        if info.names[sc.name_idx[r]] == NIC_INFO:
            try:
                macs[labels.get("nic", "")] = normalize_mac(labels.get("mac", ""))
            except ValueError:
                continue
        else:
            addrs.append((r, labels))
    record_ms = to_ms(record.ts)
    out: dict[str, list[object]] = {k: [] for k in ("ts", "ip", "mac", "owner", "cluster", "network")}
    seen: set[tuple[int, str, str]] = set()
    for r, labels in addrs:
        try:
            ip = ipaddress.ip_address(labels.get("address", "").strip().strip("[]").split("%")[0])
        except ValueError:
            continue
        if ip.is_loopback or (ip.version == 6 and ip.is_link_local) or ip.is_unspecified:
            continue
        nic = labels.get("nic", "")
        ts = int(sc.ts[r]) if sc.has_ts[r] else record_ms
        key = (ts, str(ip), nic)
        if key in seen:
            continue
        seen.add(key)
        out["ts"].append(ts)
        out["ip"].append(str(ip))
        out["mac"].append(macs.get(nic))
        out["owner"].append(f"{record.host}/{nic}")
        out["cluster"].append(record.labels.get("cluster"))
        out["network"].append(record.labels.get("network"))
    n = len(out["ip"])
    return pa.table(
        {
            "ts": pa.array(out["ts"], pa.int64()).cast(TS_TYPE),
            "ip": pa.array(out["ip"], pa.string()),
            "mac": pa.array(out["mac"], pa.string()),
            "owner_kind": pa.array([OwnerKind.NIC.value] * n, pa.string()).dictionary_encode(),
            "owner": pa.array(out["owner"], pa.string()),
            "cluster": pa.array(out["cluster"], pa.string()).dictionary_encode(),
            "network": pa.array(out["network"], pa.string()).dictionary_encode(),
            "source": pa.array(["windows"] * n, pa.string()).dictionary_encode(),
        },
        schema=IP_OBSERVATIONS_SCHEMA,
    )


Additions = tuple[I64, I32, I64]  # (row, key id, value ref) of entries added to rows, row-sorted


@functools.lru_cache(maxsize=65_536)
def _normalized(metric: str, special: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """The catalog's label normalisation, memoised: the same NICs come back every scrape."""
    return tuple(normalize_windows_labels(metric, dict(special)).items())


# Label sets that exercise every branch of normalize_windows_labels (nic/instance/adapter/port_prio
# precedence, a PFC priority suffix): metrics it treats alike on all of them form one class.
_PROBES: tuple[dict[str, str], ...] = (
    {"instance": "Mellanox ConnectX-6 Dx Adapter #2 Prio 3"},
    {"nic": "Ethernet 2 Prio 5", "instance": "vEthernet (x)", "adapter": "a", "port_prio": "p", "priority": "7"},
    {"adapter": "pNIC1", "port_prio": "q"},
    {"port_prio": "pNIC2 Prio 1", "priority": "2"},
    {"priority": "4"},
)


@functools.lru_cache(maxsize=65_536)
def _normalization_class(metric: str) -> tuple[tuple[tuple[str, str], ...], ...]:
    """How normalize_windows_labels treats ``metric``, as its answers on :data:`_PROBES`.

    The catalog function looks at the metric only to pick a family (PFC, NIC/RDMA, other); rows
    of metrics with the same answers are normalized alike, so a payload's thousands of Windows
    rows need one call per (class, special labels), not one per (metric, special labels).
    """
    return tuple(tuple(normalize_windows_labels(metric, dict(p)).items()) for p in _PROBES)


def _canon_classes(info: _NameInfo) -> I64:
    """Per canonical metric of the payload: its normalization class number."""
    ids: dict[tuple[tuple[tuple[str, str], ...], ...], int] = {}
    return np.array([ids.setdefault(_normalization_class(c), len(ids)) for c in info.canon], dtype=np.int64)


def _normalize_windows(sc: Scan, info: _NameInfo) -> Additions:
    """Rewrite nic/instance/adapter/priority labels of Windows canonical rows.

    Only rows that carry one of those label names change; their other labels pass through, so the
    catalog function is called once per distinct (metric, special labels). Rewritten labels reuse
    the old entries' slots in place; a row that gains labels (``priority`` split out of a QoS
    instance) gets them as additions, placed by the final assembly without moving anything else.

    Rows are grouped with array operations by (normalization class of the metric, special labels):
    a host has thousands of such rows but a few dozen groups, so Python runs once per group.
    """
    none: Additions = (np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0, np.int64))
    special_ids = [i for i, k in enumerate(sc.keys) if k in _WINDOWS_SPECIAL]
    if not special_ids or not info.windows.any():
        return none
    is_special = np.zeros(len(sc.keys), dtype=np.bool_)
    is_special[special_ids] = True
    row_windows = info.windows.take(sc.name_idx)
    ent_idx = np.flatnonzero(is_special.take(sc.e_key))
    ent_idx = ent_idx[row_windows[sc.e_row[ent_idx]]]
    if not len(ent_idx):
        return none
    rows = sc.e_row[ent_idx]
    m = len(ent_idx)
    head = np.r_[True, rows[1:] != rows[:-1]]
    starts = np.flatnonzero(head)
    counts = np.diff(np.r_[starts, m])
    g_rows = rows[starts]
    rank = np.arange(m, dtype=np.int64) - np.repeat(starts, counts)  # slot number within its row
    val_idx, val_dict = _dict_encode_strings(sc.values_of(sc.e_val[ent_idx]))
    # a (key, value) pair as one integer: equal sorted codes <=> equal sorted (key, value) tuples
    code = sc.e_key[ent_idx].astype(np.int64) * max(len(val_dict), 1) + val_idx
    by_code = np.lexsort((code, rows))
    width = int(counts.max())
    sig = np.full((len(g_rows), width + 1), -1, dtype=np.int64)
    sig[:, 0] = _canon_classes(info)[info.canon_of[sc.name_idx[g_rows]]]
    sig[np.repeat(np.arange(len(g_rows)), counts), 1 + rank] = code[by_code]
    _, first, inverse = np.unique(sig, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    # signatures in order of first appearance: keys and blob strings are added in row order
    order = np.argsort(first, kind="stable")
    sig_no = np.empty(len(order), dtype=np.int64)
    sig_no[order] = np.arange(len(order))
    row_sig = sig_no[inverse]
    key_ids = {k: i for i, k in enumerate(sc.keys)}
    hits: list[list[tuple[int, int]]] = []
    for g in first[order].tolist():
        a = int(starts[g])
        slots = range(a, a + int(counts[g]))
        special = tuple(sorted((sc.keys[int(sc.e_key[ent_idx[j]])], val_dict[int(val_idx[j])]) for j in slots))
        metric = info.canonical_name[int(sc.name_idx[int(g_rows[g])])]
        hit: list[tuple[int, int]] = []
        for k, v in _normalized(metric, special):
            if k not in key_ids:
                key_ids[k] = len(sc.keys)
                sc.keys.append(k)
            hit.append((key_ids[k], sc.blob_ref(v)))
        hits.append(hit)
    hit_len = np.array([len(h) for h in hits], dtype=np.int64)
    h_width = max(int(hit_len.max()), 1)
    hit_key = np.zeros((len(hits), h_width), dtype=np.int32)
    hit_val = np.zeros((len(hits), h_width), dtype=np.int64)
    for i, h in enumerate(hits):
        for j, (k_id, v_ref) in enumerate(h):
            hit_key[i, j] = k_id
            hit_val[i, j] = v_ref
    ent_sig = np.repeat(row_sig, counts)
    set_mask = rank < hit_len[ent_sig]
    set_pos = ent_idx[set_mask]
    if not sc.e_key.flags.writeable:  # a zero-copy view of Arrow's dictionary indices
        sc.e_key = sc.e_key.copy()
    sc.e_key[set_pos] = hit_key[ent_sig[set_mask], rank[set_mask]]
    sc.e_val[set_pos] = hit_val[ent_sig[set_mask], rank[set_mask]]
    drop = ent_idx[~set_mask]
    if len(drop):
        keep = np.ones(len(sc.e_row), dtype=np.bool_)
        keep[drop] = False
        sc.e_row, sc.e_key, sc.e_val = sc.e_row[keep], sc.e_key[keep], sc.e_val[keep]
    extra = np.maximum(hit_len[row_sig] - counts, 0)
    if not extra.any():
        return none
    add_g = np.repeat(np.arange(len(g_rows)), extra)
    add_rank = np.arange(len(add_g), dtype=np.int64) - np.repeat(np.cumsum(extra) - extra, extra) + counts[add_g]
    add_sig = row_sig[add_g]
    return (
        g_rows[add_g].astype(np.int64),
        hit_key[add_sig, add_rank].astype(np.int32),
        hit_val[add_sig, add_rank].astype(np.int64),
    )


def _dict_encode_strings(arr: pa.Array[Any]) -> tuple[I32, list[str]]:
    """Dictionary indices and dictionary of a string array (no nulls)."""
    enc = arr.dictionary_encode()
    return np.asarray(enc.indices.to_numpy(zero_copy_only=False), dtype=np.int32), [
        str(x) for x in enc.dictionary.to_pylist()
    ]


def _normalize_haproxy(sc: Scan, info: _NameInfo) -> Additions:
    """Give canonical ``haproxy.*`` rows from an exporter the CSV path's labels: ``proxy``, ``type``.

    Why: analyzers select HAProxy rows by ``proxy``/``server``/``type`` (e.g. idle frontends for
    reclaim), whatever delivered them. HAProxy's built-in exporter says ``proxy`` but has no
    ``type``; the community haproxy_exporter says ``frontend``/``backend`` instead of ``proxy``.
    The level comes from the metric name; haproxy_exporter's pseudo-servers ``FRONTEND`` and
    ``BACKEND`` (old HAProxy CSVs had no ``type`` column) are typed as the CSV path types them.
    Labels already present are never overwritten.
    """
    none: Additions = (np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0, np.int64))
    if not (info.haproxy_level >= 0).any():
        return none
    level_of_row = info.haproxy_level.take(sc.name_idx)
    rows = np.flatnonzero(level_of_row >= 0)
    if not len(rows):
        return none
    key_ids = {k: i for i, k in enumerate(sc.keys)}

    def key_id(k: str) -> int:
        if k not in key_ids:
            key_ids[k] = len(sc.keys)
            sc.keys.append(k)
        return key_ids[k]

    starts = np.searchsorted(sc.e_row, rows, side="left")
    ends = np.searchsorted(sc.e_row, rows, side="right")
    type_refs = {lvl: sc.blob_ref(lvl) for lvl in _HAPROXY_LEVELS}
    rename: list[int] = []
    add_row: list[int] = []
    add_key: list[int] = []
    add_val: list[int] = []
    for r, a, b in zip(rows.tolist(), starts.tolist(), ends.tolist(), strict=True):
        names = {sc.keys[int(sc.e_key[j])]: j for j in range(a, b)}
        if "proxy" not in names:
            slot = next((names[k] for k in _HAPROXY_PROXY_KEYS if k in names), None)
            if slot is not None:
                rename.append(slot)
        if "type" not in names:
            level = _HAPROXY_LEVELS[int(level_of_row[r])]
            if level == "server" and "server" in names:
                pseudo = sc.value_str(int(sc.e_val[names["server"]]))
                level = {"FRONTEND": "frontend", "BACKEND": "backend"}.get(pseudo, level)
            add_row.append(r)
            add_key.append(key_id("type"))
            add_val.append(type_refs[level])
    if rename:
        if not sc.e_key.flags.writeable:  # a zero-copy view of Arrow's dictionary indices
            sc.e_key = sc.e_key.copy()
        sc.e_key[rename] = key_id("proxy")
    return (np.asarray(add_row, np.int64), np.asarray(add_key, np.int32), np.asarray(add_val, np.int64))


def _merge_additions(a: Additions, b: Additions) -> Additions:
    """Two sets of added labels as one, grouped by row (the assembly expects rows in order)."""
    if not len(b[0]):
        return a
    if not len(a[0]):
        return b
    rows = np.concatenate([a[0], b[0]])
    order = np.argsort(rows, kind="stable")
    return (rows[order], np.concatenate([a[1], b[1]])[order], np.concatenate([a[2], b[2]])[order])


def _samples_table(sc: Scan, info: _NameInfo, record: RawRecord, additions: Additions) -> pa.Table:
    n = sc.n
    extras = sorted((k, v) for k, v in record.labels.items() if k != "source")
    x_keys: list[int] = []
    x_vals: list[int] = []
    if extras:
        key_ids = {k: i for i, k in enumerate(sc.keys)}
        for k, v in extras:
            if k in key_ids:  # the payload has this label too: rename the payload's
                sc.keys[key_ids[k]] = "exported_" + k
            x_keys.append(len(sc.keys))
            sc.keys.append(k)
            x_vals.append(sc.blob_ref(v))
    e_row, e_key, e_val = sc.e_row, sc.e_key, sc.e_val
    a_row, a_key, a_val = additions
    counts = np.bincount(e_row, minlength=n).astype(np.int64, copy=False)
    off = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=off[1:])
    k_x = len(extras)
    if k_x or len(a_row):
        # every row keeps its entries in order, then its additions, then the record's labels;
        # positions are computed, so nothing is sorted and no string moves twice
        a_counts = np.bincount(a_row, minlength=n).astype(np.int64, copy=False)
        shift = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(a_counts + k_x, out=shift[1:])
        off = off + shift
        total = int(off[-1])
        new_key = np.empty(total, dtype=np.int32)
        new_val = np.empty(total, dtype=np.int64)
        pos = np.arange(len(e_row), dtype=np.int64) + shift.take(e_row)
        new_key[pos] = e_key
        new_val[pos] = e_val
        if len(a_row):
            a_start = np.zeros(n, dtype=np.int64)
            np.cumsum(a_counts[:-1], out=a_start[1:])
            rank = np.arange(len(a_row), dtype=np.int64) - a_start[a_row]
            p = off[a_row] + counts[a_row] + rank
            new_key[p] = a_key
            new_val[p] = a_val
        for t in range(k_x):
            p = off[1:] - k_x + t
            new_key[p] = x_keys[t]
            new_val[p] = x_vals[t]
        e_key, e_val = new_key, new_val
    keys = pa.array(sc.keys, pa.string()).take(e_key)
    values = sc.take_values(e_val)
    # the stubs accept only int64 offsets here; a map's offsets are int32
    labels = pa.MapArray.from_arrays(pa.array(off.astype(np.int32), pa.int32()), keys, values)  # type: ignore[call-overload]

    record_ms = to_ms(record.ts)
    if sc.has_ts.any():
        ts_ms = np.where(sc.has_ts, sc.ts, record_ms).astype(np.int64)
    else:
        ts_ms = np.full(n, record_ms, dtype=np.int64)
    ts = pa.Array.from_buffers(TS_TYPE, n, [None, pa.py_buffer(ts_ms.data)])
    metric = pa.DictionaryArray.from_arrays(_ids_of_rows(info.canon_of, sc.name_idx), pa.array(info.canon, pa.string()))
    source = pa.DictionaryArray.from_arrays(
        _ids_of_rows(info.source_of, sc.name_idx), pa.array(info.sources, pa.string())
    )
    host = pa.DictionaryArray.from_arrays(np.zeros(n, dtype=np.int32), pa.array([record.host], pa.string()))
    scaled = (info.divisor != 1.0).any()
    value = pa.array(sc.value / info.divisor.take(sc.name_idx) if scaled else sc.value, pa.float64())
    return pa.Table.from_arrays([ts, source, host, metric, labels, value], schema=SAMPLES_SCHEMA)


def _ids_of_rows(of_name: I32, name_idx: I32) -> I32:
    """Per row, the id ``of_name`` gives its name; no gather when that mapping is the identity
    (every name its own canonical name or source, in order: common for the metric column)."""
    if len(of_name) and np.array_equal(of_name, np.arange(len(of_name), dtype=of_name.dtype)):
        return np.asarray(name_idx, dtype=np.int32)
    return of_name.take(name_idx)

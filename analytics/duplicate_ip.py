"""Duplicate IP: one incident per (network, IP) with every piece of evidence.

Evidence, strongest first:

1. **Simultaneous owners** — two *claimants* held the address at the same time for at least
   ``min_overlap`` and both still hold it. A claimant is who really answers for an address:

   ====================================  ===========================================
   owner_kind                            claimant
   ====================================  ===========================================
   service, control-plane,               the cluster (a cluster's Service and the HAProxy
   haproxy-frontend (with a cluster)     frontend that binds it are one allocation; two
                                         Services of one cluster may share an IP on
                                         different ports — MetalLB ``allow-shared-ip``)
   node, load-balancer                   the VM
   nic                                   the host (owner up to the first ``/``)
   pod                                   the pod — compared only with pods of the same
                                         cluster (overlay addresses are per cluster)
   haproxy-server, unattributed          references, not claims: evidence only
   haproxy-frontend
   ====================================  ===========================================

   This covers two workload clusters sharing one cluster network that HAProxy handed the same
   LoadBalancer IP (the documented AKS-HCI issue), a Service IP equal to a node IP, and one
   address configured on two hosts' NICs. An address that *moved* (released by one owner, taken
   by another) has no overlap and is not a duplicate.
2. **ARP flip-flop** — one observer's neighbour table shows the IP's MAC going A→B→A
   (arpwatch "flip flop") at least ``min_flips`` times (default 2: A→B→A→B) within
   ``flip_window``. One change, as a VIP failover makes, is not a duplicate.
3. **Tcpip 4198/4199** — Windows saw another MAC answer for its own address; current for
   ``event_ttl`` after the event.

The incident resolves when no evidence is current any more (the alert manager then waits its hold
period). Severity: Sev0 when an API-server VIP is one of the owners; Sev1 for any other
simultaneous ownership or flip-flops corroborated by an event; Sev2 for a single kind of
indirect evidence (flip-flops or events alone).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from analytics.findings import Finding
from analytics.networks import NetworkIndex
from analytics.observations import Holding, MacChange, ObservationTracker
from analytics.rates import dictionary_codes
from analytics.settings import AnalyticsSettings
from collector.arrow_copy import owned
from collector.schema import AlertKind, Severity, from_ms, iso

UNASSIGNED = "unassigned"

Claimant = tuple[str, ...]


def claimant_of(h: Holding) -> Claimant | None:
    """Who really answers for the address of this holding (None: a reference, not a claim)."""
    k = h.owner_kind
    if k in ("service", "control-plane"):
        return ("vip", h.cluster or h.owner)
    if k == "haproxy-frontend":
        return ("vip", h.cluster) if h.cluster else None
    if k == "node":
        return ("vm", h.cluster or "", h.owner)
    if k == "load-balancer":
        return ("vm", h.cluster or "", h.owner)
    if k == "nic":
        return ("host", h.owner.split("/", 1)[0])
    if k == "pod":
        return ("pod", h.cluster or "", h.owner)
    return None


def _comparable(a: Claimant, b: Claimant) -> bool:
    if a == b:
        return False
    if a[0] == "pod" or b[0] == "pod":
        return a[0] == b[0] == "pod" and a[1] == b[1]
    return True


def _merge(periods: list[list[int]]) -> list[list[int]]:
    out: list[list[int]] = []
    for s, e in sorted(periods):
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return out


def _overlap(a: list[list[int]], b: list[list[int]]) -> int:
    total = 0
    for s1, e1 in a:
        for s2, e2 in b:
            lo, hi = max(s1, s2), min(e1, e2)
            if hi > lo:
                total += hi - lo
    return total


@dataclass(slots=True)
class _Known:
    """One incident as remembered across evaluations (its strongest picture is kept)."""

    evidence: dict[str, Any]
    severity: Severity
    summary: str
    last_active: int
    active: bool = True
    first_detected: int = 0
    strength: int = 0  # 3 simultaneous owners, 2 flip-flops, 1 events only
    headline: str = ""
    scenario: str = ""
    seen: set[str] = field(default_factory=set)


def flip_flops(changes: list[MacChange], window_ms: int) -> list[tuple[MacChange, MacChange]]:
    """Pairs (A→B, B→A) of one observer's consecutive changes within the window."""
    out = []
    for c1, c2 in pairwise(changes):
        if c2.mac == c1.prev and c2.prev == c1.mac and c2.t - c1.t <= window_ms:
            out.append((c1, c2))
    return out


LB_INFO_METRIC = "k8s.service_lb_ip_info"  # k8s inventory: one per (Service, LB IP) with its ports
LB_INFO_EXPR = f"CASE WHEN metric = '{LB_INFO_METRIC}' THEN CAST(to_json(labels) AS VARCHAR) END"


def _valid_texts(col: pa.ChunkedArray[Any]) -> tuple[npt.NDArray[np.int64], list[str | None]]:
    """The rows of a string column that are not null, and their values; a dictionary column (the
    fed step table's ``lbinfo``) decoded by code — its own ``is_valid`` and ``to_pylist`` cost
    ~0.5 ms each for a step table's rows."""
    arr = col.combine_chunks()
    if isinstance(arr, pa.DictionaryArray):
        names = cast(list[str | None], arr.dictionary.to_pylist())
        codes = dictionary_codes(arr)
        rows = np.flatnonzero(codes >= 0)
        return rows, [names[c] for c in codes[rows].tolist()]
    rows = np.flatnonzero(np.asarray(arr.is_valid().to_numpy(zero_copy_only=False), bool))
    return rows, cast(list[str | None], arr.take(pa.array(rows, pa.int64())).to_pylist())


_LbEntry = tuple[str, tuple[str, str], str]  # (ip, (cluster, namespace/service), ports) of one lbinfo text
_NO_FLOOR = 1 << 62  # no IP in ``ports``: any cut-off is below the floor
LBINFO_CACHE = 4096  # distinct lbinfo texts remembered parsed (cleared whole when full)


class DuplicateIpDetector:
    def __init__(self, settings: AnalyticsSettings, index: NetworkIndex) -> None:
        self.s = settings
        self.d = settings.duplicate_ip
        self.index = index
        self.ttl = int(self.d.presence_ttl.total_seconds() * 1000)
        self.min_overlap = int(self.d.min_overlap.total_seconds() * 1000)
        self.flip_ms = int(self.d.flip_window.total_seconds() * 1000)
        self.event_ms = int(self.d.event_ttl.total_seconds() * 1000)
        self.retention = int(self.d.retention.total_seconds() * 1000)
        self.known: dict[tuple[str, str], _Known] = {}
        # ip → {(cluster, namespace/service): (ports, last seen ms)} from the k8s inventory
        self.ports: dict[str, dict[tuple[str, str], tuple[str, int]]] = {}
        # a lower bound of every IP's last sighting in ``ports`` (lowered at each write, made exact
        # at each clean-up), so a pass with nothing past the retention skips the scan of every IP
        self._ports_floor = _NO_FLOOR
        self._lbinfo_cache: dict[str, _LbEntry | None] = {}
        # the last ``lbinfo`` column read, its Service rows and their entries (see _lb_rows)
        self._lb_memo: tuple[Any, npt.NDArray[np.int64], list[_LbEntry | None]] | None = None
        self._groups: (
            tuple[
                ObservationTracker,
                tuple[int, int],
                list[tuple[tuple[str, str], dict[Claimant, list[Holding]], list[Holding]]],
            ]
            | None
        ) = None

    def process_samples(self, tbl: pa.Table, now_ms: int) -> None:
        """Remember each LoadBalancer IP's Services and ports (evidence for the runbook: the
        AKS-HCI fix is to re-deploy on the *same* port or onto another cluster network)."""
        if tbl.num_rows and "lbinfo" in tbl.column_names:
            col = tbl.column("lbinfo")
            if col.null_count < len(col):
                # the few Service rows among a step table's hundreds, and what each names
                rows, entries = self._lb_rows(col)
                buckets = np.asarray(tbl.column("bucket").to_numpy())[rows].tolist()
                ports = self.ports
                for entry, bucket in zip(entries, buckets, strict=True):
                    if entry is not None:
                        ip, key, port_text = entry
                        seen = int(cast(int, bucket))
                        ports.setdefault(ip, {})[key] = (port_text, seen)
                        if seen < self._ports_floor:
                            self._ports_floor = seen
        cutoff = now_ms - self.retention
        if cutoff <= self._ports_floor:
            return  # every IP was seen at or after the floor: none is past the retention
        for ip in [ip for ip, d in self.ports.items() if max(v[1] for v in d.values()) < cutoff]:
            del self.ports[ip]
        self._ports_floor = min((max(v[1] for v in d.values()) for d in self.ports.values()), default=_NO_FLOOR)

    def _lb_rows(self, col: pa.ChunkedArray[Any]) -> tuple[npt.NDArray[np.int64], list[_LbEntry | None]]:
        """The rows of a step table's ``lbinfo`` column that name a Service, and what each names.

        Why: a steady site's step table is the same series pass after pass, so the column equals
        the last pass's (one C++ comparison against the memo's own copy) and its rows and parsed
        entries are the last pass's — instead of decoding it again."""
        arr: Any = col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()
        memo = self._lb_memo
        if memo is not None and memo[0].equals(arr):
            return memo[1], memo[2]
        rows, texts = _valid_texts(col)
        entries = [None if text is None else self._lbinfo(text) for text in texts]
        # a copy: the column's dictionary may be a slice of a shared-memory chunk
        self._lb_memo = (owned(arr), rows, entries)
        return rows, entries

    def _lbinfo(self, text: str) -> _LbEntry | None:
        """(ip, (cluster, namespace/service), ports) of one ``lbinfo`` JSON text, or None when it
        names no IP or is not JSON; parsed once per distinct text (the inventory lists the same
        Services at every scrape)."""
        cache = self._lbinfo_cache
        if text in cache:
            return cache[text]
        try:
            lab = json.loads(text)
        except (ValueError, RecursionError):
            lab = None
        entry = None
        if isinstance(lab, dict):  # an object, as to_json(labels) makes; anything else names no IP
            ip = str(lab.get("ip") or "")
            if ip:
                key = (str(lab.get("cluster") or ""), f"{lab.get('namespace', '')}/{lab.get('service', '')}")
                entry = (ip, key, str(lab.get("ports") or ""))
        if len(cache) >= LBINFO_CACHE:
            cache.clear()
        cache[text] = entry
        return entry

    def evaluate(self, obs: ObservationTracker, now_ms: int) -> list[Finding]:
        current: dict[tuple[str, str], dict[str, Any]] = {}
        self._claims(obs, now_ms, current)
        self._flips(obs, now_ms, current)
        self._events(obs, now_ms, current)
        macs = self._mac_owners(obs) if current else {}
        for key, parts in current.items():
            ev, severity, summary = self._compose(key, parts, obs, macs)
            strength = 3 if "claims" in parts else 2 if "flips" in parts else 1
            k = self.known.get(key)
            if k is None or (not k.active and now_ms - k.last_active > self.retention):
                k = _Known(ev, severity, summary, now_ms, True, now_ms)
                self.known[key] = k
            # the incident keeps its strongest picture: a duplicate that was seen as two owners and
            # now only flip-flops is still that duplicate (and never de-escalates)
            if strength >= k.strength:
                k.strength, k.headline, k.scenario = strength, summary, ev["scenario"]
            if severity.rank < k.severity.rank:
                k.severity = severity
            k.seen.update(ev["evidence_types"])
            ev["scenario"] = k.scenario
            ev["evidence_types_seen"] = sorted(k.seen)
            k.evidence, k.summary, k.last_active, k.active = ev, k.headline, now_ms, True
        out = []
        for key in sorted(self.known):
            k = self.known[key]
            if key not in current:
                if now_ms - k.last_active > self.retention:
                    del self.known[key]
                    continue
                if k.active:
                    k.active = False
                    k.evidence = {**k.evidence, "conflict_last_seen": iso(from_ms(k.last_active))}
                    k.summary = k.headline + " (no longer observed)"
            ev = {**k.evidence, "first_detected": iso(from_ms(k.first_detected))}
            out.append(
                Finding(
                    AlertKind.DUPLICATE_IP,
                    {"network": key[0], "ip": key[1]},
                    k.severity,
                    k.summary,
                    ev,
                    active=k.active,
                )
            )
        return out

    # -- evidence gathering ------------------------------------------------------------------------
    def _net(self, ip: str, network: str | None, cluster: str | None) -> str:
        return self.index.resolve_network(ip, network, cluster) or UNASSIGNED

    def _claims(self, obs: ObservationTracker, now_ms: int, out: dict[tuple[str, str], dict[str, Any]]) -> None:
        for key, claims, refs in self._claim_groups(obs):
            periods = {c: _merge([p for h in v for p in h.periods]) for c, v in claims.items()}
            last = {c: max(h.last for h in v) for c, v in claims.items()}
            live = [c for c in claims if last[c] >= now_ms - self.ttl]
            pairs = []
            for i, a in enumerate(live):
                for b in live[i + 1 :]:
                    if not _comparable(a, b):
                        continue
                    ov = _overlap(periods[a], periods[b])
                    if ov >= self.min_overlap:
                        pairs.append((a, b, ov))
            if not pairs:
                continue
            involved = sorted({c for a, b, _ in pairs for c in (a, b)})
            out.setdefault(key, {})["claims"] = {
                "claimants": [(c, claims[c]) for c in involved],
                "pairs": pairs,
                "references": [r for r in refs if r.last >= now_ms - self.ttl],
            }

    def _claim_groups(
        self, obs: ObservationTracker
    ) -> list[tuple[tuple[str, str], dict[Claimant, list[Holding]], list[Holding]]]:
        """Per (network, IP) with two claimants or more, in holdings order: its claimants' holdings
        and its references. Depends only on which holdings exist (and in what order) and on the
        network index, so it is rebuilt only when either changed (``holdings_epoch``, the
        index's ``epoch``) — not at every pass, where nearly every address has one claimant."""
        sig = (obs.holdings_epoch, self.index.epoch)
        cached = self._groups
        if cached is not None and cached[0] is obs and cached[1] == sig:
            return cached[2]
        by_ip: dict[tuple[str, str], list[Holding]] = defaultdict(list)
        for h in obs.holdings.values():
            by_ip[(self._net(h.ip, h.network, h.cluster), h.ip)].append(h)
        groups = []
        for key, hs in by_ip.items():
            claims: dict[Claimant, list[Holding]] = defaultdict(list)
            refs: list[Holding] = []
            for h in hs:
                c = claimant_of(h)
                if c is None:
                    refs.append(h)
                else:
                    claims[c].append(h)
            if len(claims) >= 2:
                groups.append((key, claims, refs))
        self._groups = (obs, sig, groups)
        return groups

    def _flips(self, obs: ObservationTracker, now_ms: int, out: dict[tuple[str, str], dict[str, Any]]) -> None:
        for (ip, observer), q in obs.changes.items():
            recent = [c for c in q if c.t >= now_ms - 2 * self.flip_ms]
            ff = [p for p in flip_flops(recent, self.flip_ms) if p[1].t >= now_ms - self.flip_ms]
            if len(ff) < self.d.min_flips:
                continue
            net = self._net(ip, recent[-1].network, None)
            slot = out.setdefault((net, ip), {}).setdefault("flips", {})
            slot[observer] = recent

    def _events(self, obs: ObservationTracker, now_ms: int, out: dict[tuple[str, str], dict[str, Any]]) -> None:
        for e in obs.events:
            if e.t < now_ms - self.event_ms or e.t > now_ms:
                continue
            net = self._net(e.ip, e.network, e.cluster)
            out.setdefault((net, e.ip), {}).setdefault("events", []).append(e)

    # -- composing one incident --------------------------------------------------------------------
    @staticmethod
    def _mac_owners(obs: ObservationTracker) -> dict[str, str]:
        """MAC → who it belongs to, from every holding that reported a MAC (VMs, NICs)."""
        out: dict[str, str] = {}
        for h in obs.holdings.values():
            for m in h.macs:
                label = f"{h.owner_kind} {h.owner}" + (f" of cluster {h.cluster}" if h.cluster else "")
                out.setdefault(m, label)
        return out

    def _compose(
        self, key: tuple[str, str], parts: dict[str, Any], obs: ObservationTracker, known_macs: dict[str, str]
    ) -> tuple[dict[str, Any], Severity, str]:
        net, ip = key
        ev: dict[str, Any] = {"ip": ip, "network": net, "evidence_types": []}
        kinds_by_claimant: dict[Claimant, set[str]] = {}
        mac_owner: dict[str, str] = dict(known_macs)
        severity = Severity.SEV2
        scenario = ""
        who: list[str] = []
        if "claims" in parts:
            ev["evidence_types"].append("simultaneous_owners")
            c = parts["claims"]
            owners: list[dict[str, Any]] = []
            for claimant, hs in c["claimants"]:
                kinds = {h.owner_kind for h in hs}
                kinds_by_claimant[claimant] = kinds
                macs = sorted({m for h in hs for m in h.macs})
                label = self._label(claimant, hs)
                who.append(label)
                for m in macs:
                    mac_owner[m] = label
                owners.append(
                    {
                        "claimant": label,
                        "owner_kinds": sorted(kinds),
                        "owners": sorted({h.owner for h in hs}),
                        "clusters": sorted({h.cluster for h in hs if h.cluster}),
                        "first_seen": iso(from_ms(min(h.first for h in hs))),
                        "last_seen": iso(from_ms(max(h.last for h in hs))),
                        "macs": macs,
                        "sources": sorted({s for h in hs for s in h.sources}),
                    }
                )
            ports = {f"{c}/{svc}" if c else svc: p for (c, svc), (p, _t) in self.ports.get(ip, {}).items()}
            for o in owners:
                o["ports"] = {k: v for k, v in ports.items() if any(k.startswith(f"{c}/") for c in o["clusters"])}
            ev["owners"] = owners
            if ports:
                ev["service_ports"] = ports
            ev["overlaps"] = [
                {
                    "a": self._label(a, dict(c["claimants"])[a]),
                    "b": self._label(b, dict(c["claimants"])[b]),
                    "seconds_held_together": round(ov / 1000),
                }
                for a, b, ov in c["pairs"]
            ]
            refs = c["references"]
            if refs:
                ev["references"] = [
                    {
                        "owner_kind": r.owner_kind,
                        "owner": r.owner,
                        "cluster": r.cluster,
                        "last_seen": iso(from_ms(r.last)),
                    }
                    for r in refs
                ]
            severity = Severity.SEV1
            if any("control-plane" in k for k in kinds_by_claimant.values()):
                severity = Severity.SEV0
            port_sets = {frozenset(o["ports"].values()) for o in owners if o["ports"]}
            if len(port_sets) > 1:
                ev["different_ports"] = True  # the documented HAProxy case: same IP, different ports
            scenario = self._scenario(list(kinds_by_claimant))
        if "flips" in parts:
            ev["evidence_types"].append("arp_flip_flop")
            flips = {}
            for observer, changes in sorted(parts["flips"].items()):
                flips[observer] = [
                    {"at": iso(from_ms(ch.t)), "from": ch.prev, "to": ch.mac, "to_owner": mac_owner.get(ch.mac)}
                    for ch in changes[-12:]
                ]
            ev["arp_flip_flops"] = flips
            macs = sorted({m for chs in parts["flips"].values() for ch in chs for m in (ch.prev, ch.mac)})
            ev["macs_answering"] = macs
            ev["mac_owners"] = {m: mac_owner[m] for m in macs if m in mac_owner}
            scenario = scenario or "arp_flip_flop"
        if "events" in parts:
            ev["evidence_types"].append("tcpip_conflict_event")
            evs = sorted(parts["events"], key=lambda e: e.t)
            ev["tcpip_events"] = [
                {
                    "at": iso(from_ms(e.t)),
                    "host": e.host,
                    "conflicting_mac": e.mac,
                    "conflicting_owner": mac_owner.get(e.mac or ""),
                    "source": e.source,
                }
                for e in evs[-10:]
            ]
            scenario = scenario or "tcpip_conflict_event"
        nb = obs.neighbor_latest.get(ip)
        if nb:
            ev["neighbor_latest"] = {
                "mac": nb[0],
                "at": iso(from_ms(nb[1])),
                "observers": nb[3][:10],
                "owner": mac_owner.get(nb[0]),
            }
        if "claims" not in parts and len(ev["evidence_types"]) >= 2:
            severity = Severity.SEV1
        if any(e.host.endswith("tcpip-4198") for e in parts.get("events", [])) and severity.rank > 1:
            severity = Severity.SEV1  # 4198: Windows disabled the address on that host
        ev["scenario"] = scenario
        if "claims" in parts:
            summary = f"Duplicate IP {ip} on {net}: held at the same time by {' and '.join(who[:4])}"
        elif "flips" in parts:
            summary = (
                f"Duplicate IP {ip} on {net}: MAC flip-flops between "
                f"{', '.join(ev['macs_answering'][:4])} (arpwatch-style)"
            )
        else:
            hosts = sorted({e.host for e in parts["events"]})
            summary = f"Duplicate IP {ip} on {net}: Windows Tcpip address-conflict event on {', '.join(hosts)}"
        if "tcpip_events" in ev and "claims" in parts:
            summary += "; confirmed by Tcpip conflict events"
        return ev, severity, summary

    @staticmethod
    def _label(claimant: Claimant, hs: list[Holding]) -> str:
        kind = claimant[0]
        if kind == "vip":
            owners = sorted({h.owner for h in hs if h.owner_kind != "haproxy-frontend"}) or sorted(
                {h.owner for h in hs}
            )
            return f"cluster {claimant[1]} ({', '.join(owners[:3])})"
        if kind == "vm":
            k = sorted({h.owner_kind for h in hs})[0]
            return f"{k} {claimant[2]}" + (f" of cluster {claimant[1]}" if claimant[1] else "")
        if kind == "host":
            return f"host NIC on {claimant[1]}"
        return f"pod {claimant[2]} of cluster {claimant[1]}"

    @staticmethod
    def _scenario(claimants: list[Claimant]) -> str:
        kinds = [c[0] for c in claimants]
        if kinds.count("vip") >= 2:
            return "lb_ip_shared_across_clusters"
        if "vip" in kinds and "vm" in kinds:
            return "service_ip_equals_node_ip"
        if kinds.count("host") >= 2:
            return "nic_address_on_two_hosts"
        if "host" in kinds:
            return "host_address_used_by_cluster"
        if kinds.count("vm") >= 2:
            return "node_ip_on_two_vms"
        return "pod_ip_reused"

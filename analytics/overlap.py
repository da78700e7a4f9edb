"""IP pool overlap (ip_pool_overlap): ranges that collide, and addresses in the wrong pool.

Configuration: every pair of configured ranges — a network's VIP pool, node pool and MetalLB /
custom load-balancer ranges, within one network and across networks — that share addresses. Two
pools handing out the same address guarantee a duplicate IP sooner or later (Microsoft: the VIP
range must not overlap the range planned for a custom load balancer, nor Arc VM logical-network
pools).

Observation: an address currently held by an owner that does not belong in the pool it sits in:

* Service / API-server VIP / attributed HAProxy frontend: must be in its network's VIP pool or a
  load-balancer range — reported when inside the node pool, inside another network's ranges, or
  outside every range of its network;
* node VM / load-balancer VM: must be in its network's node pool when one is configured (static
  IP); with DHCP (no node pool) only a landing inside a VIP/LB range is reported;
* host NIC address: must not be inside any pool (the pool would hand it out again).

MetalLB ranges a cluster declares in its ``IPAddressPool`` CRDs join the configured ones as soon as
the inventory lists them (:meth:`OverlapDetector.refresh_config`), so two clusters' overlapping
MetalLB pools are found even when only the clusters know them — the conflict checking Microsoft
says the MetalLB extension does not do. Config findings are Sev2 and last as long as the
configuration; observed ones are Sev3 and last while the address is seen (``overlap.observed_ttl``).
"""

from __future__ import annotations

from typing import Any

from analytics.findings import Finding
from analytics.networks import NetworkIndex, NetworkPlan, PoolRange, fmt_ip, metallb_pool_of
from analytics.observations import Holding, HoldingKey, ObservationTracker
from analytics.settings import AnalyticsSettings
from collector.schema import AlertKind, Severity, from_ms, iso

VIP_KINDS = frozenset({"service", "control-plane", "haproxy-frontend"})
VM_KINDS = frozenset({"node", "load-balancer"})


def config_overlaps(plans: list[NetworkPlan]) -> list[Finding]:
    """One finding per overlapping pair of configured ranges."""
    ranges: list[PoolRange] = [r for p in plans for r in (*p.ranges, *p.fixed)]
    out = []
    for i, a in enumerate(ranges):
        for b in ranges[i + 1 :]:
            ov = a.overlaps(b)
            if ov is None or (a.network == b.network and {a.kind, b.kind} == {"control-plane", "vip"}):
                continue  # a 23H2 control-plane IP belongs in its network's vip range
            mine = metallb_pool_of(a.pool)
            if mine is not None and mine == metallb_pool_of(b.pool):
                continue  # one MetalLB pool's own entries (configured and declared, or two spellings)
            x, y = sorted([a, b], key=lambda r: (r.network, r.pool))
            n = ov[1] - ov[0] + 1
            where = "" if x.network == y.network else f" of {y.network}"
            summary = (
                f"{x.network}: {x.pool} {x.text} overlaps {y.pool}{where} {y.text} "
                f"({n} shared address{'es' if n != 1 else ''})"
            )
            ev = {
                "a": {"network": x.network, "pool": x.pool, "range": x.text, "size": x.size},
                "b": {"network": y.network, "pool": y.pool, "range": y.text, "size": y.size},
                "shared": f"{fmt_ip(x.version, ov[0])}-{fmt_ip(x.version, ov[1])}",
                "shared_addresses": n,
                "source": "configuration",
            }
            out.append(
                Finding(
                    AlertKind.IP_POOL_OVERLAP,
                    {"network": x.network, "pool": x.pool, "other_network": y.network, "other_pool": y.pool},
                    Severity.SEV2,
                    summary,
                    ev,
                )
            )
    return out


_Verdict = tuple[str, str, list[str], str, list[str]]  # see OverlapDetector._verdict


class OverlapDetector:
    def __init__(self, settings: AnalyticsSettings, plans: list[NetworkPlan], index: NetworkIndex) -> None:
        self.s = settings
        self.plans = plans
        self.index = index
        self.ttl = int(settings.overlap.observed_ttl.total_seconds() * 1000)
        self.config = config_overlaps(plans)
        # 23H2 control-plane IPs: (version, int) → (network, cluster)
        self.cp_ips = {(r.version, r.first): (p.name, r.pool.split(":", 1)[1]) for p in plans for r in p.fixed}
        self.known: dict[tuple[str, str], tuple[Finding, int]] = {}
        # per holding key: its verdict (:meth:`_verdict`), valid for one epoch of the index
        self._verdicts: dict[HoldingKey, tuple[str, str, list[str], str, list[str]] | None] = {}
        self._verdict_epoch = index.epoch
        # the holdings with a verdict, in holdings order (see :meth:`_flagged`), and what they
        # were made from: (tracker, its holdings_epoch, the index epoch, the configuration's)
        self._flagged_list: list[tuple[Holding, _Verdict]] = []
        self._flagged_sig: tuple[ObservationTracker, int, int, int] | None = None
        self._config_generation = 0

    def refresh_config(self) -> None:
        """Recompute the configuration findings (a cluster declared a MetalLB range at run time)."""
        self.config = config_overlaps(self.plans)
        self._verdicts.clear()
        self._config_generation += 1

    def evaluate(self, obs: ObservationTracker, now_ms: int) -> list[Finding]:
        current: dict[tuple[str, str], Finding] = {}
        cut = now_ms - self.ttl
        for h, v in self._flagged(obs):
            if h.last < cut:  # obs.current(now_ms, ttl): held within the TTL
                continue
            netname, problem, inside, summary, expected = v
            kind = h.owner_kind
            ev: dict[str, Any] = {
                "ip": h.ip,
                "owner_kind": kind,
                "owner": h.owner,
                "cluster": h.cluster,
                "network": netname,
                "inside_pools": list(inside),
                "problem": problem,
                "last_seen": iso(from_ms(h.last)),
                "source": "observation",
                "expected": list(expected),
            }
            res = {"network": netname, "ip": h.ip}
            prev = current.get((netname, h.ip))
            if prev is not None:
                owners = prev.evidence.setdefault("also", [])
                owners.append({"owner_kind": kind, "owner": h.owner, "problem": problem})
                continue
            current[(netname, h.ip)] = Finding(AlertKind.IP_POOL_OVERLAP, res, Severity.SEV3, summary, ev)
        for k, f in current.items():
            self.known[k] = (f, now_ms)
        out = list(self.config)
        for k in sorted(self.known):
            f, last = self.known[k]
            if k in current:
                out.append(f)
            elif now_ms - last <= 3_600_000:
                out.append(
                    Finding(
                        f.kind, f.resource, f.severity, f.summary + " (no longer observed)", f.evidence, active=False
                    )
                )
            else:
                del self.known[k]
        return out

    def _flagged(self, obs: ObservationTracker) -> list[tuple[Holding, _Verdict]]:
        """Every holding whose address has a verdict, with it, in holdings order.

        Why: a pass looked up the verdict of every current holding, nearly all of them None.
        Verdicts depend only on a holding's key and the configuration, and which holdings exist
        (and their order) only moves with ``holdings_epoch``; so the list is rebuilt only when
        either changed, and a pass walks the few flagged holdings (those seen within the TTL
        are the ones :meth:`ObservationTracker.current` would have given, in its order)."""
        sig = (obs, obs.holdings_epoch, self.index.epoch, self._config_generation)
        if sig == self._flagged_sig:
            return self._flagged_list
        if self._verdict_epoch != self.index.epoch or len(self._verdicts) > 2 * len(obs.holdings) + 1024:
            self._verdicts.clear()
            self._verdict_epoch = self.index.epoch
        out: list[tuple[Holding, _Verdict]] = []
        for h in obs.holdings.values():
            hk = (h.ip, h.owner_kind, h.owner, h.cluster, h.network)
            if hk in self._verdicts:
                v = self._verdicts[hk]
            else:
                v = self._verdicts[hk] = self._verdict(h)
            if v is not None:
                out.append((h, v))
        self._flagged_list, self._flagged_sig = out, sig
        return out

    def _verdict(self, h: Holding) -> _Verdict | None:
        """What is wrong with a holding's address, if anything: (network, problem, pools it is
        inside, summary, expected ranges). A function of the holding's key and the configuration
        (the network index and the plans, which change only with the index's ``epoch`` or
        :meth:`refresh_config`), so :meth:`evaluate` keeps it per holding key."""
        kind = h.owner_kind
        if kind not in VIP_KINDS and kind not in VM_KINDS and kind != "nic":
            return None
        if kind == "haproxy-frontend" and not h.cluster:
            return None
        key, pools, _covering = self.index.lookup(h.ip)
        if key is None:
            return None
        net = self.index.resolve_network(h.ip, h.network, h.cluster)
        plan = self.index.by_name.get(net) if net else None
        problem = self._problem(kind, pools, plan)
        cp = self.cp_ips.get(key)
        if cp is not None and not (kind in VIP_KINDS and h.cluster == cp[1]):
            # MetalLB does not check conflicts (Microsoft): a Service or VM on a control-plane IP
            problem = f"the configured control-plane IP of cluster {cp[1]}"
        if problem is None and plan is not None and kind in VIP_KINDS and h.cluster:
            owners = {plan.lb_owner[r.pool] for r in pools if r.pool in plan.lb_owner}
            free_for_all = any(r.kind == "vip" or (r.kind == "lb" and r.pool not in plan.lb_owner) for r in pools)
            if owners and h.cluster not in owners and not free_for_all:
                problem = f"inside the MetalLB pool of cluster {', '.join(sorted(owners))}, not its own"
        if problem is None:
            return None
        netname = net or "unassigned"
        inside = [f"{r.network}/{r.pool}" for r in pools]
        summary = (
            f"{netname}: {kind} {h.owner}{' of cluster ' + h.cluster if h.cluster else ''} holds {h.ip}, {problem}"
        )
        return netname, problem, inside, summary, self._expected(kind, plan)

    @staticmethod
    def _expected(kind: str, plan: NetworkPlan | None) -> list[str]:
        if plan is None:
            return []
        if kind in VIP_KINDS:
            return [plan.vip.text, *[r.text for r in plan.lbs]]
        if kind in VM_KINDS and plan.node:
            return [plan.node.text]
        return []

    @staticmethod
    def _problem(kind: str, pools: list[PoolRange], plan: NetworkPlan | None) -> str | None:
        own = [r for r in pools if plan is not None and r.network == plan.name]
        foreign = [r for r in pools if plan is None or r.network != plan.name]
        if kind == "nic":
            if pools:
                return f"a host address inside {', '.join(f'{r.network}/{r.pool}' for r in pools)}"
            return None
        if foreign:
            return f"inside another network's range ({', '.join(f'{r.network}/{r.pool}' for r in foreign)})"
        if plan is None:
            return None
        kinds = {r.kind for r in own}
        if kind in VIP_KINDS:
            if kinds & {"vip", "lb"}:
                return None
            if "node" in kinds:
                return "inside the node pool (it belongs in the VIP pool or a load-balancer range)"
            return "outside the VIP pool and every load-balancer range"
        if kind in VM_KINDS:
            if plan.node is None:
                return (
                    "inside the VIP pool / a load-balancer range (node addresses come from DHCP)"
                    if kinds & {"vip", "lb"}
                    else None
                )
            if "node" in kinds:
                return None
            if kinds & {"vip", "lb"}:
                return "inside the VIP pool / a load-balancer range (it belongs in the node pool)"
            return "outside the node pool"
        return None

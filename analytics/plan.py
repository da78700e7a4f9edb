"""Capacity preflight: will an intended change fit the site's IP pools now, and until when?

``hciwatch plan`` answers "can I upgrade / scale / create / add services now?" from live state:
per affected pool the addresses the change **needs**, the pool's **free** addresses now and after
the change, the **reserve** the pool should still keep afterwards, a **verdict** (fits / fits but
below reserve / does not fit) and, from the pool's usage trend (the pool detector's own
:func:`analytics.trend.usage_trend`), **until when** the change still fits.

The arithmetic is the AKS IP plan (``analytics/ip_plan_rules.md``, copied from the domain
reference §5.2); every number carries the id of the rule it comes from:

22H2 (AKS on Azure Stack HCI 22H2 / Windows Server, ``concepts-node-networking``):

* ``22H2-NODE``      1 node-pool IP per control-plane or worker node VM;
* ``22H2-LB``        1 node-pool IP per workload cluster for its HAProxy load-balancer VM;
* ``22H2-UPD-MGMT``  2 node-pool IPs for update operations of the management (AKS host) cluster;
* ``22H2-UPD-WL``    5 node-pool IPs for update operations per workload cluster;
* ``22H2-VIP-API``   1 VIP per cluster API server (management cluster included);
* ``22H2-VIP-SVC``   1 VIP per Service of type LoadBalancer.

23H2+ (AKS Arc on Azure Local, ``aks-hci-ip-address-planning``):

* ``23H2-NODE``  1 IP per node VM from the Arc VM logical network's IP pool (the ``node`` pool);
* ``23H2-UPG``   1 IP per cluster from that pool for a rolling Kubernetes version upgrade;
* ``23H2-CP``    1 control-plane IP per cluster, same subnet, outside the IP pool (the ``vip`` range);
* ``23H2-LB``    1 load-balancer (MetalLB) IP per Service of type LoadBalancer, outside the IP pool
  (the network's ``lb_ranges`` when configured, else the ``vip`` range).

The reserve a pool keeps after the change is its reserve now (what the pool detector keeps: the
upgrade IPs of every cluster on a node pool, ``vip_reserve`` on a VIP pool) minus the upgrade IPs
this change spends (an upgrade *is* what that reserve is kept for) plus the upgrade IPs of the
clusters it creates. Upgrading several clusters is counted as concurrent (the IP plan reserves
update IPs per cluster; the site never needs fewer than this).
"""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from analytics.networks import NetworkPlan

HOUR_MS = 3_600_000

RULES: dict[str, str] = {
    "22H2-NODE": "22H2: 1 node-pool IP per control-plane/worker node VM (§5.2 node networking table)",
    "22H2-LB": "22H2: 1 node-pool IP per workload cluster's HAProxy load-balancer VM (§5.2 'Load balancer 1 IP')",
    "22H2-UPD-MGMT": "22H2: 2 node-pool IPs for the management cluster's update operations (§5.2)",
    "22H2-UPD-WL": "22H2: 5 node-pool IPs per workload cluster for update operations (§5.2)",
    "22H2-VIP-API": "22H2: 1 VIP per cluster API server, management cluster included (§5.2 VIP pool)",
    "22H2-VIP-SVC": "22H2: 1 VIP per Kubernetes Service of type LoadBalancer (§5.2 VIP pool)",
    "23H2-NODE": "23H2: 1 logical-network IP-pool IP per node VM (§5.2 AKS Arc VM IPs)",
    "23H2-UPG": "23H2: 1 logical-network IP-pool IP per cluster for a rolling upgrade (§5.2 K8s version-upgrade IPs)",
    "23H2-CP": "23H2: 1 control-plane IP per cluster, same subnet outside the IP pool (§5.2 Control plane IP)",
    "23H2-LB": "23H2: 1 MetalLB load-balancer IP per Service, same subnet outside the IP pool (§5.2)",
    "RESERVE": "reserve the pool keeps: the upgrade IPs of every cluster (node pool) or vip_reserve (VIP pool)",
}


class PlanError(ValueError):
    """A plan that cannot be evaluated (unknown cluster, bad file); the message says what and where."""


class Verdict(StrEnum):
    FITS = "fits"
    BELOW_RESERVE = "fits but below reserve"
    DOES_NOT_FIT = "does not fit"


# -- operations --------------------------------------------------------------------------------


class Operation(BaseModel):
    """One intended change, as a plan file's ``[[operation]]`` table (or a CLI flag) states it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    op: Literal["upgrade", "scale", "create", "add-services", "site-update"] = Field(
        description="upgrade: named clusters (or 'all'); scale: one cluster by `nodes` (negative = scale in); "
        "create: a new workload cluster of `nodes` node VMs; add-services: `count` LoadBalancer services; "
        "site-update: every cluster of every network (management included)."
    )
    clusters: list[str] = Field(default_factory=list, description="upgrade: cluster names, or ['all'].")
    cluster: str | None = Field(default=None, description="scale / create / add-services: the cluster.")
    nodes: int = Field(default=0, description="scale: node VMs added (negative removes); create: node VMs.")
    count: int = Field(default=0, ge=0, description="add-services: LoadBalancer services to add.")
    network: str | None = Field(default=None, description="create: the network (default: the only one).")

    @model_validator(mode="after")
    def _shape(self) -> Operation:
        if self.op == "upgrade" and not self.clusters:
            raise ValueError("upgrade needs clusters (names, or ['all'])")
        if self.op in ("scale", "create", "add-services") and not self.cluster:
            raise ValueError(f"{self.op} needs a cluster")
        if self.op == "scale" and self.nodes == 0:
            raise ValueError("scale needs nodes (a non-zero change)")
        if self.op == "create" and self.nodes < 1:
            raise ValueError("create needs nodes >= 1")
        if self.op == "add-services" and self.count < 1:
            raise ValueError("add-services needs count >= 1")
        return self

    @property
    def label(self) -> str:
        if self.op == "upgrade":
            return f"upgrade {', '.join(self.clusters)}"
        if self.op == "scale":
            return f"scale {self.cluster} by {self.nodes:+d} node(s)"
        if self.op == "create":
            return f"create {self.cluster} with {self.nodes} node(s)"
        if self.op == "add-services":
            return f"add {self.count} LoadBalancer service(s) to {self.cluster}"
        return "whole-site update"


class PlanFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    operation: list[Operation] = Field(min_length=1)


def load_plan_file(path: Path) -> list[Operation]:
    """Read a TOML or JSON plan file (``[[operation]]`` tables / ``{"operation": [...]}``)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PlanError(f"plan file {path}: cannot read: {exc.strerror or exc}") from None
    try:
        raw = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise PlanError(f"plan file {path}: not valid {path.suffix.lstrip('.').upper() or 'TOML'}: {exc}") from None
    try:
        return list(PlanFile.model_validate(raw).operation)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in exc.errors())
        raise PlanError(f"plan file {path}: {problems}") from None


def _count(text: str, what: str) -> tuple[str, int]:
    name, sep, num = text.rpartition("=")
    if not sep or not name.strip():
        raise PlanError(f"{what} {text!r}: expected CLUSTER=N")
    try:
        return name.strip(), int(num)
    except ValueError:
        raise PlanError(f"{what} {text!r}: {num!r} is not a whole number") from None


def operations_from_flags(
    *,
    upgrade: Sequence[str] = (),
    scale: Sequence[str] = (),
    create: Sequence[str] = (),
    add_services: Sequence[str] = (),
    site_update: bool = False,
) -> list[Operation]:
    """Operations from CLI flags: ``--upgrade all|A,B``, ``--scale C=+N``, ``--create NAME=N[@NET]``,
    ``--add-services C=K``, ``--site-update``."""
    ops: list[Operation] = []
    try:
        for u in upgrade:
            ops.append(Operation(op="upgrade", clusters=[c.strip() for c in u.split(",") if c.strip()]))
        for s in scale:
            c, n = _count(s, "--scale")
            ops.append(Operation(op="scale", cluster=c, nodes=n))
        for spec in create:
            body, _, net = spec.partition("@")
            c, n = _count(body, "--create")
            ops.append(Operation(op="create", cluster=c, nodes=n, network=net.strip() or None))
        for a in add_services:
            c, n = _count(a, "--add-services")
            ops.append(Operation(op="add-services", cluster=c, count=n))
    except ValidationError as exc:
        raise PlanError("; ".join(str(e["msg"]) for e in exc.errors())) from None
    if site_update:
        ops.append(Operation(op="site-update"))
    return ops


# -- site state --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PoolNow:
    """One pool's state as the plan reads it: size, used now, reserve, and its usage trend."""

    network: str
    pool: str
    pool_type: str  # vip, node, lb
    size: int
    used: int
    reserve: int
    slope_per_h: float = math.nan  # significant growth rate (addresses/h); NaN: no significant growth
    trend_method: str = "none"
    now_ms: int = 0

    @property
    def free(self) -> int:
        return self.size - self.used


@dataclass(slots=True)
class Need:
    """What a plan asks of one pool, with the rule behind every address."""

    needed: int = 0
    reserve_delta: int = 0
    why: list[dict[str, Any]] = field(default_factory=list)

    def add(self, n: int, rule: str, what: str) -> None:
        self.needed += n
        self.why.append({"addresses": n, "rule": rule, "what": what})

    def reserve(self, n: int, rule: str, what: str) -> None:
        self.reserve_delta += n
        self.why.append({"reserve_change": n, "rule": rule, "what": what})


@dataclass(frozen=True, slots=True)
class PoolVerdict:
    network: str
    pool: str
    pool_type: str
    size: int
    used: int
    needed: int
    free_now: int
    free_after: int
    reserve_after: int
    verdict: Verdict
    fits_until_ms: int | None  # None: no significant growth (fits while usage stays put)
    reserve_until_ms: int | None
    trend_method: str
    slope_per_day: float | None
    why: list[dict[str, Any]]

    @property
    def headroom_after(self) -> int:
        """Free addresses above the reserve after the change (negative: below it)."""
        return self.free_after - self.reserve_after

    def as_dict(self) -> dict[str, Any]:
        from collector.schema import from_ms, iso

        def when(ms: int | None) -> str | None:
            return iso(from_ms(ms)) if ms is not None else None

        return {
            "network": self.network,
            "pool": self.pool,
            "pool_type": self.pool_type,
            "size": self.size,
            "used": self.used,
            "needed": self.needed,
            "free_now": self.free_now,
            "free_after": self.free_after,
            "reserve_after": self.reserve_after,
            "headroom_after": self.headroom_after,
            "verdict": self.verdict.value,
            "fits_until": when(self.fits_until_ms),
            "above_reserve_until": when(self.reserve_until_ms),
            "trend_method": self.trend_method,
            "slope_per_day": self.slope_per_day,
            "why": self.why,
        }


@dataclass(frozen=True, slots=True)
class PlanResult:
    operations: list[Operation]
    ip_plan: str
    pools: list[PoolVerdict]
    as_of_ms: int

    @property
    def worst(self) -> Verdict:
        order = [Verdict.FITS, Verdict.BELOW_RESERVE, Verdict.DOES_NOT_FIT]
        return max((p.verdict for p in self.pools), key=order.index, default=Verdict.FITS)

    def as_dict(self) -> dict[str, Any]:
        from collector.schema import from_ms, iso

        return {
            "as_of": iso(from_ms(self.as_of_ms)) if self.as_of_ms else None,
            "ip_plan": self.ip_plan,
            "operations": [o.label for o in self.operations],
            "verdict": self.worst.value,
            "pools": [p.as_dict() for p in self.pools],
            "rules": {r: RULES[r] for r in sorted({w["rule"] for p in self.pools for w in p.why})},
        }


# -- evaluation --------------------------------------------------------------------------------


def _until(now_ms: int, headroom: int, slope_per_h: float) -> int | None:
    if headroom < 0:
        return now_ms
    if not math.isfinite(slope_per_h) or slope_per_h <= 0:
        return None
    return now_ms + int(headroom / slope_per_h * HOUR_MS)


def _is_mgmt(plan: NetworkPlan, cluster: str) -> bool:
    return cluster == plan.management_cluster


def evaluate_plan(
    operations: Iterable[Operation],
    plans: Sequence[NetworkPlan],
    pools: Mapping[tuple[str, str], PoolNow],
    *,
    ip_plan: str,
    management_update_ips: int = 2,
    workload_update_ips: int = 5,
    arc_upgrade_ips_per_cluster: int = 1,
) -> PlanResult:
    """Apply the IP-plan rules to every operation and judge each affected pool.

    ``pools`` is keyed by (network, pool name) with the names of :class:`analytics.networks.PoolRange`
    (``vip``, ``node``, ``lb:<spec>``). Raises :class:`PlanError` for an unknown cluster or network.
    """
    ops = list(operations)
    if not ops:
        raise PlanError(
            "no operation given (use --upgrade, --scale, --create, --add-services, --site-update or --plan)"
        )
    by_name = {p.name: p for p in plans}
    cluster_net: dict[str, NetworkPlan] = {}
    for p in plans:
        for c in p.all_clusters:
            cluster_net.setdefault(c, p)
    known = ", ".join(sorted(cluster_net)) or "none configured"
    arc = ip_plan == "23h2"
    needs: dict[tuple[str, str], Need] = {}

    def need(net: NetworkPlan, pool: str) -> Need:
        if (net.name, pool) not in pools:
            raise PlanError(f"network {net.name!r} has no observed {pool!r} pool to plan against")
        return needs.setdefault((net.name, pool), Need())

    def net_of(cluster: str, what: str) -> NetworkPlan:
        net = cluster_net.get(cluster)
        if net is None:
            raise PlanError(f"{what}: unknown cluster {cluster!r} (configured clusters: {known})")
        return net

    def upgrade(cluster: str) -> None:
        net = net_of(cluster, "upgrade")
        if net.node is None:
            raise PlanError(f"upgrade {cluster}: network {net.name!r} has no node IP pool configured")
        if arc:
            n, rule = arc_upgrade_ips_per_cluster, "23H2-UPG"
        elif _is_mgmt(net, cluster):
            n, rule = management_update_ips, "22H2-UPD-MGMT"
        else:
            n, rule = workload_update_ips, "22H2-UPD-WL"
        nd = need(net, "node")
        nd.add(n, rule, f"upgrade {cluster}")
        nd.reserve(-n, "RESERVE", f"the upgrade of {cluster} spends its reserved update IPs")

    def lb_pool(net: NetworkPlan, cluster: str) -> str:
        """23H2: the cluster's own auto-assign MetalLB range with most room (else any load-balancer
        range); a range with autoAssign false only serves Services that ask for an address in it."""
        own = [r for r in net.lbs if net.lb_owner.get(r.pool) == cluster and r.pool not in net.lb_manual]
        cands = own or [r for r in net.lbs if r.pool not in net.lb_owner]
        if arc and cands:
            best = max(cands, key=lambda r: pools[(net.name, r.pool)].free if (net.name, r.pool) in pools else -1)
            return best.pool
        return "vip"

    upgraded: set[str] = set()
    for op in ops:
        if op.op in ("upgrade", "site-update"):
            names = (
                [c for p in plans for c in p.all_clusters]
                if op.op == "site-update" or "all" in op.clusters
                else op.clusters
            )
            for c in names:
                if c not in upgraded:
                    upgraded.add(c)
                    upgrade(c)
        elif op.op == "scale":
            assert op.cluster is not None
            net = net_of(op.cluster, "scale")
            rule = "23H2-NODE" if arc else "22H2-NODE"
            need(net, "node").add(op.nodes, rule, f"{op.nodes:+d} node VM(s) in {op.cluster}")
        elif op.op == "add-services":
            assert op.cluster is not None
            net = net_of(op.cluster, "add-services")
            rule = "23H2-LB" if arc else "22H2-VIP-SVC"
            need(net, lb_pool(net, op.cluster)).add(
                op.count, rule, f"{op.count} LoadBalancer service(s) in {op.cluster}"
            )
        else:  # create
            assert op.cluster is not None
            if op.cluster in cluster_net:
                raise PlanError(f"create {op.cluster}: a cluster of that name is already configured")
            if op.network:
                net_c = by_name.get(op.network)
                if net_c is None:
                    raise PlanError(f"create {op.cluster}: unknown network {op.network!r} ({', '.join(by_name)})")
            elif len(plans) == 1:
                net_c = plans[0]
            else:
                raise PlanError(f"create {op.cluster}: several networks configured, name one (NAME=N@NETWORK)")
            if net_c.node is None:
                raise PlanError(f"create {op.cluster}: network {net_c.name!r} has no node IP pool configured")
            nd = need(net_c, "node")
            if arc:
                nd.add(op.nodes, "23H2-NODE", f"{op.nodes} node VM(s) of new cluster {op.cluster}")
                nd.reserve(arc_upgrade_ips_per_cluster, "23H2-UPG", f"upgrade IPs of new cluster {op.cluster}")
                need(net_c, "vip").add(1, "23H2-CP", f"control-plane IP of new cluster {op.cluster}")
            else:
                nd.add(op.nodes, "22H2-NODE", f"{op.nodes} node VM(s) of new cluster {op.cluster}")
                nd.add(1, "22H2-LB", f"HAProxy load-balancer VM of new cluster {op.cluster}")
                nd.reserve(workload_update_ips, "22H2-UPD-WL", f"update IPs of new cluster {op.cluster}")
                need(net_c, "vip").add(1, "22H2-VIP-API", f"API-server VIP of new cluster {op.cluster}")

    out: list[PoolVerdict] = []
    as_of = 0
    for key in sorted(needs):
        nd, st = needs[key], pools[key]
        as_of = max(as_of, st.now_ms)
        free_after = st.free - nd.needed
        reserve_after = max(0, st.reserve + nd.reserve_delta)
        if free_after < 0:
            verdict = Verdict.DOES_NOT_FIT
        elif free_after < reserve_after:
            verdict = Verdict.BELOW_RESERVE
        else:
            verdict = Verdict.FITS
        slope = st.slope_per_h
        out.append(
            PoolVerdict(
                st.network,
                st.pool,
                st.pool_type,
                st.size,
                st.used,
                nd.needed,
                st.free,
                free_after,
                reserve_after,
                verdict,
                _until(st.now_ms, free_after, slope),
                _until(st.now_ms, free_after - reserve_after, slope),
                st.trend_method,
                slope * 24 if math.isfinite(slope) else None,
                nd.why,
            )
        )
    return PlanResult(ops, ip_plan, out, as_of)

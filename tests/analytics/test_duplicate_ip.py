"""Duplicate IP: every evidence source fires; moves, failovers and shared IPs stay quiet."""

from __future__ import annotations

import numpy as np
import pytest

from collector.schema import Sample, Severity, from_ms, samples_table
from tests.analytics.harness import HOUR, MIN, Run, connect, replay
from tests.analytics.synth import Holder, IpWorld, Net, lb_mac_of, populate_clusters, random_mac, random_network

START = 1_767_225_600_000


def _world(
    seed: int, hours: float = 5.0, clusters: tuple[str, ...] = ("wl-a", "wl-b")
) -> tuple[IpWorld, Net, dict[str, list[Holder]]]:
    rng = np.random.default_rng(seed)
    names = [f"{c}-{seed}" for c in clusters]
    net = random_network(
        rng,
        f"clusternet-{seed}",
        names,
        vip_size=int(rng.integers(24, 60)),
        node_size=int(rng.integers(20, 40)),
        management=f"mgmt-{seed}",
    )
    world = IpWorld(
        rng,
        START,
        START + int(hours * HOUR),
        poll_s=int(rng.choice([30, 60])),
        observers=[f"hv{i}" for i in range(int(rng.integers(2, 5)))],
    )
    hs = populate_clusters(
        world,
        net,
        services={c: int(rng.integers(2, 6)) for c in names},
        nodes={c: int(rng.integers(2, 4)) for c in names},
    )
    return world, net, hs


def _run(world: IpWorld, net: Net, fine: list[tuple[int, int]]) -> Run:
    return replay(connect(None, world.table()), world.start_ms, world.end_ms, networks=[net], fine=fine, step=2 * MIN)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_lb_ip_handed_to_two_clusters_sharing_a_network(seed: int) -> None:
    """HAProxy gives a second cluster's Service an IP the first already uses (seed: AKS-HCI note)."""
    world, net, hs = _world(seed)
    a, b = net.clusters
    t0 = START + 3 * HOUR
    victim = next(h for h in hs[a] if h.owner_kind == "service")
    lb_a, lb_b = lb_mac_of(hs[a]), lb_mac_of(hs[b])
    world.holders.append(Holder(victim.ip, "service", "shop/frontend", b, net.name, t0, t0 + 40 * MIN, arp_mac=lb_b))
    # both load-balancer VMs answer ARP: observers see the MAC alternate
    world.arp_script[victim.ip] = [(t0 + k * 3 * MIN, lb_b if k % 2 == 0 else lb_a) for k in range(14)] + [
        (t0 + 42 * MIN, lb_a)
    ]
    # the k8s inventory also reports each LoadBalancer IP's Services and their ports
    lb_info = [
        Sample(
            from_ms(t),
            "k8s",
            "k8s-api",
            "k8s.service_lb_ip_info",
            1.0,
            (("cluster", c), ("ip", victim.ip), ("namespace", ns), ("ports", ports), ("service", svc)),
        )
        for t in range(t0, t0 + 40 * MIN, world.poll_s * 1000)
        for c, ns, svc, ports in ((a, *victim.owner.split("/"), "443/TCP"), (b, "shop", "frontend", "8080/TCP"))
    ]
    run = replay(
        connect(samples_table(lb_info), world.table()),
        world.start_ms,
        world.end_ms,
        networks=[net],
        fine=[(t0 - 5 * MIN, t0 + 80 * MIN)],
        step=2 * MIN,
    )

    fired = run.firing("duplicate_ip")
    assert len({x.fingerprint for _, x in fired}) == 1 and fired[0][1].severity is Severity.SEV1
    t_fire, alert = fired[0]
    assert alert.resource == {"network": net.name, "ip": victim.ip}
    assert t0 < t_fire <= t0 + 8 * MIN
    ev = alert.evidence
    assert ev["scenario"] == "lb_ip_shared_across_clusters"
    assert {o["clusters"][0] for o in ev["owners"]} == {a, b}
    assert ev["overlaps"][0]["seconds_held_together"] >= 120
    assert ev["service_ports"] == {f"{a}/{victim.owner}": "443/TCP", f"{b}/shop/frontend": "8080/TCP"}
    assert ev["different_ports"] is True
    owners = set(ev.get("mac_owners", {}).values())
    assert owners == set() or any(a in o for o in owners)
    assert "same port" in alert.runbook and "cluster network" in alert.runbook
    resolved = run.resolved("duplicate_ip")
    assert [x.fingerprint for _, x in resolved] == [alert.fingerprint]
    assert resolved[0][0] > t0 + 40 * MIN
    assert "held at the same time" in resolved[0][1].summary
    assert not run.firing("ip_pool_overlap")


def test_service_ip_equal_to_node_ip_and_api_vip_is_sev0() -> None:
    world, net, hs = _world(4)
    a, b = net.clusters
    t0 = START + 2 * HOUR
    node = next(h for h in hs[a] if h.owner_kind == "node")
    api_vip = next(h for h in hs[b] if h.owner_kind == "control-plane")
    world.holders.append(Holder(node.ip, "service", "web/api", b, net.name, t0, world.end_ms))
    world.holders.append(
        Holder(api_vip.ip, "node", f"{a}-np-9", a, net.name, t0, world.end_ms, mac=random_mac(world.rng))
    )
    run = _run(world, net, [(t0, t0 + 10 * MIN)])
    by_ip = {x.resource["ip"]: x for _, x in run.firing("duplicate_ip")}
    assert by_ip[node.ip].evidence["scenario"] == "service_ip_equals_node_ip"
    assert by_ip[node.ip].severity is Severity.SEV1
    assert by_ip[api_vip.ip].severity is Severity.SEV0, "an API-server VIP conflict is critical"
    # the misplaced service IP also shows up as an address in the wrong pool
    assert any(x.resource.get("ip") == node.ip for _, x in run.firing("ip_pool_overlap"))


def test_same_address_on_two_hosts_nics() -> None:
    world, net, _ = _world(5)
    t0 = START + 2 * HOUR
    ip = "10.250.7.21"
    world.holders += [
        Holder(
            ip,
            "nic",
            "azl-n1/vEthernet (Mgmt)",
            None,
            None,
            START,
            world.end_ms,
            mac=random_mac(world.rng),
            source="windows",
        ),
        Holder(ip, "nic", "azl-n4", None, None, t0, t0 + 30 * MIN, mac=random_mac(world.rng), source="windows"),
    ]
    run = _run(world, net, [(t0, t0 + 60 * MIN)])
    fired = run.firing("duplicate_ip")
    assert len(fired) == 1
    alert = fired[0][1]
    assert alert.resource == {"network": "unassigned", "ip": ip}
    assert alert.evidence["scenario"] == "nic_address_on_two_hosts"
    assert "Get-NetIPAddress" in alert.runbook
    assert run.resolved("duplicate_ip")


def test_arp_flip_flop_alone_and_tcpip_event_alone() -> None:
    world, net, hs = _world(6)
    a, _ = net.clusters
    t0 = START + 2 * HOUR
    svc = next(h for h in hs[a] if h.owner_kind == "service")
    rogue = random_mac(world.rng)
    world.arp_script[svc.ip] = [(t0 + k * 2 * MIN, rogue if k % 2 == 0 else lb_mac_of(hs[a])) for k in range(10)] + [
        (t0 + 21 * MIN, lb_mac_of(hs[a]))
    ]
    host_ip = "172.31.9.14"
    world.events.append((t0 + 5 * MIN, host_ip, "azl-n2", random_mac(world.rng)))
    run = _run(world, net, [(t0, t0 + 70 * MIN)])
    by_ip = {x.resource["ip"]: x for _, x in run.firing("duplicate_ip")}
    assert set(by_ip) == {svc.ip, host_ip}
    flip = by_ip[svc.ip]
    assert flip.severity is Severity.SEV2 and flip.evidence["scenario"] == "arp_flip_flop"
    assert rogue in flip.evidence["macs_answering"]
    assert "flip flop" in flip.runbook
    ev = by_ip[host_ip]
    assert ev.evidence["scenario"] == "tcpip_conflict_event" and ev.evidence["tcpip_events"][0]["host"] == "azl-n2"
    assert "4199" in ev.runbook
    assert {x.resource["ip"] for _, x in run.resolved("duplicate_ip")} == {svc.ip, host_ip}


@pytest.mark.parametrize("seed", [7, 8])
def test_confounders_stay_quiet(seed: int) -> None:
    """A VIP failover (one MAC change), an IP moved between clusters, two Services of one cluster
    sharing an IP (MetalLB allow-shared-ip), equal overlay pod IPs in two clusters."""
    world, net, hs = _world(seed, hours=4)
    a, b = net.clusters
    t0 = START + 2 * HOUR
    svc_a = [h for h in hs[a] if h.owner_kind == "service"]
    world.arp_script[svc_a[0].ip] = [(t0, random_mac(world.rng))]  # failover: one change, stays
    moved = svc_a[1]
    for h in hs[a]:  # the Service and the HAProxy frontend that bound its IP both go away
        if h.ip == moved.ip:
            h.t1 = t0 + 10 * MIN
    world.holders.append(
        Holder(moved.ip, "service", "web/moved", b, net.name, t0 + 10 * MIN + world.poll_s * 1000, world.end_ms)
    )
    world.holders.append(Holder(svc_a[0].ip, "service", "web/shared-udp", a, net.name, START, world.end_ms))
    for c in (a, b):
        world.holders.append(Holder("10.244.1.7", "pod", "default/nginx-0", c, None, START, world.end_ms))
    run = _run(world, net, [(t0 - 5 * MIN, t0 + 40 * MIN)])
    assert run.firing() == [], [x.summary for _, x in run.firing()]

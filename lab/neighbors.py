"""Each host's neighbour (ARP) table, and Windows Tcpip 4199 events when asked for.

Rows are hciwatch's normalized shape ``{"ip", "mac", "interface", "state"}`` with Windows
``Get-NetNeighbor`` state names and interface aliases. A host sees, on its management vNIC, the
gateway, the other hosts of its Azure Local cluster (the nodes it talks to; ``SiteSpec.cluster_nodes``),
every VM of the cluster network and every VIP with the MAC of the VM answering for it; on each
storage adapter, its cluster peers' storage addresses; plus the
permanent multicast/broadcast entries Windows always lists (which say nothing about ownership).

When two VMs answer for one VIP (the duplicate-LB-IP incident) each host's cache follows
whichever ARP reply came last: the MAC flips back and forth between scrapes, independently per
host (arpwatch's "flip flop"). A keepalived failover is a single change everyone sees at once.
Nodes removed by a scale-in linger as ``Stale`` for a few minutes, as cache entries do.
"""

from __future__ import annotations

import ipaddress
import json
from datetime import datetime, timedelta
from typing import Any

from collector.schema import iso
from lab.rand import stream
from lab.scenario import DuplicateLbIp, Scenario
from lab.world import World

FLIP_PROBABILITY = 0.35  # per scrape, while two MACs answer for one IP
STALE_AFTER_REMOVAL = 600.0  # seconds a removed node's entry stays in the cache
PERMANENT = (("224.0.0.22", "01:00:5e:00:00:16"), ("239.255.255.250", "01:00:5e:7f:ff:fa"))


class NeighborTables:
    """Stateful per-host neighbour tables; call :meth:`scrape` in time order per host."""

    def __init__(self, scenario: Scenario, world: World) -> None:
        self.scenario, self.world = scenario, world
        site = scenario.site
        self._rng = [stream(scenario.seed, "neighbors", h) for h in site.hosts]
        self._choice: list[dict[str, str]] = [{} for _ in site.hosts]
        net = ipaddress.ip_network(site.network.ip_address_prefix)
        self._broadcast = str(net.broadcast_address)
        self._event_windows = [
            (i.start.total_seconds(), (i.end or scenario.duration).total_seconds())
            for i in scenario.incidents
            if isinstance(i, DuplicateLbIp) and i.events
        ]
        self._quoted: dict[str, str] = {}
        self._cache: dict[
            tuple[int, int, tuple[int, ...]], tuple[list[tuple[str, int, str, str, str]], dict[str, list[str]]]
        ] = {}

    def _json(self, text: str) -> str:
        out = self._quoted.get(text)
        if out is None:
            out = self._quoted[text] = json.dumps(text)
        return out

    def _static_rows(self, h: int, sec: float) -> tuple[list[tuple[str, int, str, str, str]], dict[str, list[str]]]:
        """Rows that do not depend on chance (state ``""`` = drawn per scrape), and VIPs with 2+ MACs.

        Cached per snapshot and per "removed nodes still cached" phase, so a scrape only draws
        states and walks the flip-flop chains.
        """
        world, site = self.world, self.scenario.site
        snap = world.at(sec)
        lingering = tuple(
            i for i, (_t0, t1, _v) in enumerate(world.scaled_nodes) if t1 <= sec < t1 + STALE_AFTER_REMOVAL
        )
        key = (h, snap.seq, lingering)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        host = world.hosts[h]
        mgmt = site.management_alias
        rows: list[tuple[str, int, str, str, str]] = []

        def add(iface: str, ip: str, mac: str, state: str) -> None:
            rows.append((iface, int(ipaddress.ip_address(ip)), ip, mac, state))

        add(mgmt, site.network.gateway, world.gateway_mac, "Reachable")
        for other in (world.hosts[p] for p in site.cluster_peers(h)):
            if other.index != h:
                add(mgmt, other.mgmt_ip, other.mgmt_mac, "")
                for a, ad in enumerate(other.adapters):
                    add(host.adapters[a].alias, ad.ip, ad.mac, "")
        for vm in snap.vms:
            add(mgmt, vm.ip, vm.mac, "")
        for i in lingering:
            for vm in world.scaled_nodes[i][2]:
                add(mgmt, vm.ip, vm.mac, "Stale")
        multi: dict[str, list[str]] = {}
        for ip, claims in sorted(world.vip_claims(snap).items()):
            macs = [m for m, _c in claims]
            if len(macs) == 1:
                add(mgmt, ip, macs[0], "")
            else:
                multi[ip] = macs
        for ip, mac in PERMANENT:
            add(mgmt, ip, mac, "Permanent")
        add(mgmt, self._broadcast, "ff:ff:ff:ff:ff:ff", "Permanent")
        rows.sort(key=lambda r: (r[0], r[1]))
        self._cache[key] = (rows, multi)
        return rows, multi

    def scrape(self, h: int, sec: float, when: datetime) -> tuple[str, list[dict[str, Any]]]:
        """The neighbour rows body of host ``h`` at ``sec``, and any Tcpip events since its last scrape."""
        rng = self._rng[h]
        static, multi = self._static_rows(h, sec)
        draws = (rng.random(len(static)) < 0.7).tolist()
        rows = [
            (iface, n, ip, mac, st or ("Reachable" if d else "Stale"))
            for (iface, n, ip, mac, st), d in zip(static, draws, strict=True)
        ]
        multi_rows: list[tuple[str, int, str, str, str]] = []
        mgmt = self.scenario.site.management_alias
        events: list[dict[str, Any]] = []
        choice = self._choice[h]
        for ip in [k for k in choice if k not in multi]:
            del choice[ip]
        for ip, macs in multi.items():
            prev = choice.get(ip)
            if prev is None or prev not in macs:
                cur = macs[int(rng.integers(0, len(macs)))]
            elif rng.random() < FLIP_PROBABILITY:
                cur = macs[(macs.index(prev) + 1) % len(macs)]
            else:
                cur = prev
            choice[ip] = cur
            multi_rows.append((mgmt, int(ipaddress.ip_address(ip)), ip, cur, "Reachable"))
            if prev is not None and cur != prev and any(a <= sec < b for a, b in self._event_windows):
                at = when - timedelta(seconds=float(rng.uniform(1, self.scenario.slow_interval.total_seconds())))
                events.append(
                    {
                        "provider": "Tcpip",
                        "id": 4199,
                        "time": iso(at.replace(microsecond=at.microsecond // 1000 * 1000)),
                        "host": self.world.hosts[h].name,
                        "message": (
                            f"The system detected an address conflict for IP address {ip} with the system "
                            f"having network hardware address {cur.upper().replace(':', '-')}. Network "
                            "operations on this system may be disrupted as a result."
                        ),
                        "ip": ip,
                        "mac": cur,
                    }
                )
        if multi_rows:
            rows.extend(multi_rows)
            rows.sort(key=lambda r: (r[0], r[1]))
        body = (
            "["
            + ",".join(
                [
                    f'{{"ip":"{ip}","mac":"{mac}","interface":{self._json(iface)},"state":"{st}"}}'
                    for iface, _n, ip, mac, st in rows
                ]
            )
            + "]"
        )
        return body, events

"""Reclaim rules on hand-made holders: idle services, frontends whose Service is gone, unowned addresses."""

from __future__ import annotations

from dataclasses import dataclass

from analytics.reclaim import FrontendTraffic, WireSighting, find_candidates, holder_rows

H = 3_600_000
NOW = 100 * H


@dataclass(frozen=True)
class Hold:
    ip: str
    owner_kind: str
    owner: str
    cluster: str | None
    first_ms: int
    last_ms: int = NOW


def test_candidates_by_rule() -> None:
    holders = {
        ("n", "vip"): {
            # busy service: traffic 10 min ago
            "10.0.0.10": [
                Hold("10.0.0.10", "service", "web/shop", "c1", 0),
                Hold("10.0.0.10", "haproxy-frontend", "svc-web-shop-80/sock-1", "c1", 0),
            ],
            # idle service: last traffic 8 h ago
            "10.0.0.11": [
                Hold("10.0.0.11", "service", "ci/pr-1", "c1", 10 * H),
                Hold("10.0.0.11", "haproxy-frontend", "svc-ci-pr-1-80/sock-1", "c1", 10 * H),
            ],
            # scraped only 2 h: not judged
            "10.0.0.12": [
                Hold("10.0.0.12", "service", "ci/pr-2", "c1", NOW - 2 * H),
                Hold("10.0.0.12", "haproxy-frontend", "svc-ci-pr-2-80/sock-1", "c1", NOW - 2 * H),
            ],
            # the Service was deleted (with its namespace); the frontend still binds the VIP
            "10.0.0.13": [Hold("10.0.0.13", "haproxy-frontend", "svc-old-api-443/sock-1", "c2", 5 * H)],
            # API server VIP with its frontend: never a candidate
            "10.0.0.14": [
                Hold("10.0.0.14", "control-plane", "c1/apiserver", "c1", 0),
                Hold("10.0.0.14", "haproxy-frontend", "k8s-apiserver/sock-1", "c1", 0),
            ],
        }
    }
    traffic = [
        FrontendTraffic("c1", "svc-web-shop-80", NOW - 10 * H, NOW, NOW - 600_000, 50.0),
        FrontendTraffic("c1", "svc-ci-pr-1-80", NOW - 10 * H, NOW, NOW - 8 * H, 3.0),
        FrontendTraffic("c1", "svc-ci-pr-2-80", NOW - 2 * H, NOW, None, 0.0),
    ]
    wire = {
        "10.0.0.20": WireSighting("10.0.0.20", NOW - H, NOW - 60_000, ("00:15:5d:00:00:01",), ("hci-1",)),
        "10.0.0.10": WireSighting("10.0.0.10", NOW - H, NOW, ("00:15:5d:00:00:02",), ("hci-1",)),  # owned
        "10.0.0.21": WireSighting("10.0.0.21", NOW - 5 * H, NOW - 3 * H, ("00:15:5d:00:00:03",), ("hci-1",)),  # gone
    }
    pool_of = {ip: ("n", "vip") for ip in ("10.0.0.20", "10.0.0.10", "10.0.0.21")}
    got = find_candidates(holders, traffic, wire, pool_of=pool_of, now_ms=NOW, idle_ms=6 * H, ttl_ms=600_000)
    by = {(c.ip, c.reason): c for c in got}
    assert set(by) == {
        ("10.0.0.11", "idle_service"),
        ("10.0.0.13", "orphaned_frontend"),
        ("10.0.0.20", "unowned_on_wire"),
    }
    idle = by[("10.0.0.11", "idle_service")]
    assert idle.command == "kubectl --context c1 get svc -n ci pr-1 -o wide"
    assert idle.evidence["last_traffic_seen"] == NOW - 8 * H and idle.evidence["idle_hours"] == 8.0
    assert (
        by[("10.0.0.13", "orphaned_frontend")].command == "kubectl --context c2 get svc -A -o wide | grep -w 10.0.0.13"
    )
    rows = holder_rows(holders)
    assert [r["ip"] for r in rows][:2] == ["10.0.0.10", "10.0.0.10"] and len(rows) == 9

"""The HAProxy source and parser against a real HAProxy 2.6 (fixture ``haproxy_server``).

What is proved here: the collector's rows are exactly ``show stat``'s for every proxy and server;
the stats page, the unix runtime socket and the TCP runtime socket give the same rows; bad
credentials fail cleanly; and a server put in maintenance through the runtime API shows up as
``haproxy.up 0`` with status ``MAINT`` on the next scrape.
"""

from __future__ import annotations

import asyncio
import csv
from typing import Any

import pytest

from collector.catalog import DEFAULT_CATALOG, HAPROXY_CSV
from collector.errors import FetchError
from collector.schema import ParseResult, RawRecord
from collector.sources.haproxy.parse import (
    ID_COLUMNS,
    NATIVE_PREFIX,
    TEXT_COLUMNS,
    parse_info_record,
    parse_record,
)
from collector.sources.haproxy.source import HaproxySettings, HaproxySource
from tests.fixtures.haproxy import HaproxyServer

pytestmark = pytest.mark.integration

TYPES = {"0": "frontend", "1": "backend", "2": "server", "3": "listener"}


def make_source(hx: HaproxyServer, **kw: Any) -> HaproxySource:
    settings = HaproxySettings.model_validate(
        {
            "type": "haproxy",
            "targets": [hx.stats_url, hx.unix_target, hx.tcp_target],
            "username": hx.stats_user,
            "password_file": str(hx.stats_password_file),
            "labels": {"cluster": "hci-1"},
            "timeout": 5,
            **kw,
        }
    )
    return HaproxySource(settings, hostname="lb-vm-test")


async def scrape(src: HaproxySource, target: str) -> tuple[RawRecord, ParseResult]:
    records = await src.fetch(target)
    csv_record = next(r for r in records if r.kind == "haproxy-csv")
    return csv_record, parse_record(csv_record, DEFAULT_CATALOG)


def csv_rows(body: bytes) -> list[dict[str, str]]:
    lines = [ln for ln in body.decode().splitlines() if ln.strip()]
    assert lines[0].startswith("# ")
    return list(csv.DictReader([lines[0][2:], *lines[1:]]))


def by_row(result: ParseResult) -> dict[tuple[str, str], dict[str, Any]]:
    """(proxy, server) → {"type", "status", "metrics": {metric: value}}."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for s in result.samples.to_pylist():
        labels = dict(s["labels"])
        row = out.setdefault((labels["proxy"], labels["server"]), {"type": labels["type"], "metrics": {}})
        assert row["type"] == labels["type"]
        assert s["metric"] not in row["metrics"], f"two {s['metric']} samples for one row"
        row["metrics"][s["metric"]] = s["value"]
        if s["metric"] == "haproxy.up":
            row["status"] = labels["status"]
    return out


def metric_name(column: str, row_type: str) -> str:
    m = HAPROXY_CSV.get(column)
    if m is None or (column, row_type) == ("act", "server"):
        return NATIVE_PREFIX + column
    return m.name


async def test_rows_match_show_stat_exactly(haproxy_server: HaproxyServer) -> None:
    hx = haproxy_server
    src = make_source(hx)
    try:
        record, result = await scrape(src, hx.unix_target)
    finally:
        await src.close()
    assert result.errors == []
    assert record.host == "lb-vm-test" and record.labels == {"cluster": "hci-1"}
    rows = by_row(result)
    raw = csv_rows(record.body)
    # every proxy/server row of the scraped answer, column by column
    assert set(rows) == {(r["pxname"], r["svname"]) for r in raw}
    for r in raw:
        got = rows[(r["pxname"], r["svname"])]
        rtype = TYPES[r["type"]]
        assert got["type"] == rtype and got["status"] == r["status"]
        want = {
            metric_name(c, rtype): float(v)
            for c, v in r.items()
            if c not in TEXT_COLUMNS and c not in ID_COLUMNS and c and v != ""
        }
        want["haproxy.up"] = 1.0 if r["status"] in ("UP", "OPEN", "no check") else 0.0
        assert got["metrics"] == want, (r["pxname"], r["svname"])
    # and the same objects, in the same states, as a separate `show stat` read over the socket
    separate = {
        (r["pxname"], r["svname"]): (TYPES[r["type"]], r["status"], r["slim"], r["weight"]) for r in hx.show_stat()
    }
    assert separate == {
        k: (
            v["type"],
            v["status"],
            f"{v['metrics']['haproxy.session_limit']:.0f}" if "haproxy.session_limit" in v["metrics"] else "",
            f"{v['metrics']['haproxy.weight']:.0f}" if "haproxy.weight" in v["metrics"] else "",
        )
        for k, v in rows.items()
    }
    statuses = {f"{p}/{s}": v["status"] for (p, s), v in rows.items() if v["type"] == "server"}
    assert statuses == hx.expected_status


async def test_three_transports_give_the_same_rows(haproxy_server: HaproxyServer) -> None:
    hx = haproxy_server
    src = make_source(hx)
    try:
        results = {t: (await scrape(src, t))[1] for t in (hx.stats_url, hx.unix_target, hx.tcp_target)}
    finally:
        await src.close()
    shapes = {}
    for target, result in results.items():
        assert result.errors == [], target
        rows = by_row(result)
        shapes[target] = {k: (v["type"], v["status"], frozenset(v["metrics"])) for k, v in rows.items()}
    http, unix, tcp = shapes.values()
    assert http == unix == tcp
    assert {
        ("k8s-apiserver", "sock-1"),
        ("k8s-apiserver-nodes", "control-plane-3"),
        ("svc-ingress-nginx-443-nodes", "worker-1"),
    } <= set(unix)
    ips = [
        sorted((o["owner_kind"], o["owner"], o["ip"]) for o in r.ip_observations.to_pylist()) for r in results.values()
    ]
    assert ips[0] == ips[1] == ips[2]
    owners = {owner for kind, owner, _ in ips[0] if kind == "haproxy-server"}
    assert owners == set(hx.expected_status)
    assert ("haproxy-frontend", "k8s-apiserver/sock-1", "127.0.0.1") in ips[0]


async def test_socket_info_record(haproxy_server: HaproxyServer) -> None:
    hx = haproxy_server
    src = make_source(hx)
    try:
        for target in (hx.unix_target, hx.tcp_target):
            records = await src.fetch(target)
            assert [r.kind for r in records] == ["haproxy-csv", "haproxy-info"]
            info = parse_info_record(records[1], DEFAULT_CATALOG)
            assert info.errors == []
            values = {s["metric"]: (s["value"], dict(s["labels"])) for s in info.samples.to_pylist()}
            assert values["haproxy.process.max_connections"][0] == 256  # `maxconn 256` in the config
            assert values["haproxy.process.threads"][0] == 1
            assert values["haproxy.process.build_info"][1]["version"] in hx.version
            assert values["haproxy.process.connections_total"][0] >= 1  # at least our own queries
        assert len(await src.fetch(hx.stats_url)) == 1  # the page has no info block
    finally:
        await src.close()


async def test_counters_follow_traffic(haproxy_server: HaproxyServer) -> None:
    hx = haproxy_server
    src = make_source(hx)
    try:
        before = by_row((await scrape(src, hx.tcp_target))[1])
        echoed = await asyncio.to_thread(hx.send, "svc-default-web-80", b"ping through the LB VM\n")
        assert echoed == b"ping through the LB VM\n"
        # HAProxy accounts a session's bytes when it closes, which can trail the echo a little:
        # scrape until the frontend shows the closed session (bounded, ~5 s at most).
        for _ in range(50):
            after = by_row((await scrape(src, hx.tcp_target))[1])
            fe = after[("svc-default-web-80", "FRONTEND")]["metrics"]
            prev = before[("svc-default-web-80", "FRONTEND")]["metrics"].get("haproxy.bytes_in_total", 0)
            if fe.get("haproxy.bytes_in_total", 0) >= prev + 23:
                break
            await asyncio.sleep(0.1)
    finally:
        await src.close()
    fe_before = before[("svc-default-web-80", "FRONTEND")]["metrics"]
    fe_after = after[("svc-default-web-80", "FRONTEND")]["metrics"]
    assert fe_after["haproxy.sessions_total"] == fe_before["haproxy.sessions_total"] + 1
    assert fe_after["haproxy.bytes_in_total"] >= fe_before["haproxy.bytes_in_total"] + 23
    sv_before = before[("svc-default-web-80-nodes", "worker-1")]["metrics"]
    sv_after = after[("svc-default-web-80-nodes", "worker-1")]["metrics"]
    assert sv_after["haproxy.sessions_total"] == sv_before["haproxy.sessions_total"] + 1


async def test_wrong_password_is_a_fetch_error(haproxy_server: HaproxyServer, tmp_path: Any) -> None:
    hx = haproxy_server
    wrong = tmp_path / "wrong.password"
    wrong.write_text("not-" + hx.stats_password)
    src = make_source(hx, password_file=str(wrong))
    try:
        with pytest.raises(FetchError) as info:
            await src.fetch(hx.stats_url)
    finally:
        await src.close()
    err = info.value
    assert "HTTP 401" in str(err) and "password_file" in str(err)
    assert (err.source, err.target, err.retryable) == ("haproxy", hx.stats_url, False)
    assert hx.stats_password not in str(err)


async def test_maintenance_via_runtime_api(haproxy_server_isolated: HaproxyServer) -> None:
    hx = haproxy_server_isolated
    src = make_source(hx)
    cp1, web1 = "k8s-apiserver-nodes/control-plane-1", "svc-default-web-80-nodes/worker-1"
    try:
        assert hx.runtime(f"disable server {cp1}").strip() == ""
        assert hx.runtime_tcp(f"set server {web1} state maint").strip() == ""
        for target in (hx.unix_target, hx.tcp_target, hx.stats_url):
            rows = by_row((await scrape(src, target))[1])
            for name in (cp1, web1):
                row = rows[tuple(name.split("/"))]  # type: ignore[index]
                assert (row["status"], row["metrics"]["haproxy.up"]) == ("MAINT", 0.0), (target, name)
            assert rows[("k8s-apiserver-nodes", "BACKEND")]["metrics"]["haproxy.active_servers"] == 1
            assert rows[("k8s-apiserver-nodes", "control-plane-2")]["metrics"]["haproxy.up"] == 1.0

        hx.runtime(f"set server {web1} state ready")
        await asyncio.to_thread(hx.wait_status, web1, lambda s: s == "UP")
        rows = by_row((await scrape(src, hx.unix_target))[1])
        assert (
            rows[("svc-default-web-80-nodes", "worker-1")]["status"],
            rows[("svc-default-web-80-nodes", "worker-1")]["metrics"]["haproxy.up"],
        ) == ("UP", 1.0)
        assert rows[("k8s-apiserver-nodes", "control-plane-1")]["status"] == "MAINT"
    finally:
        await src.close()


async def test_drain_and_dead_server_states(haproxy_server_isolated: HaproxyServer) -> None:
    hx = haproxy_server_isolated
    src = make_source(hx)
    try:
        hx.runtime("set server k8s-apiserver-nodes/control-plane-2 state drain")
        rows = by_row((await scrape(src, hx.unix_target))[1])
    finally:
        await src.close()
    assert (
        rows[("k8s-apiserver-nodes", "control-plane-2")]["status"],
        rows[("k8s-apiserver-nodes", "control-plane-2")]["metrics"]["haproxy.up"],
    ) == ("DRAIN", 0.0)
    dead = rows[("k8s-apiserver-nodes", "control-plane-3")]
    assert (dead["status"], dead["metrics"]["haproxy.up"]) == ("DOWN", 0.0)
    assert dead["metrics"]["haproxy.check_failures_total"] >= 1

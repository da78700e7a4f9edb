"""The simulated site: deterministic, real formats, scripted incidents where the script says."""

from __future__ import annotations

import csv
import io
import ipaddress
import itertools
import json
import re
from collections import defaultdict
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import zstandard
from prometheus_client.parser import text_string_to_metric_families

import lab
from collector.catalog import windows_perfcounter_metric
from collector.config import NetworkSettings
from collector.schema import AlertKind, RawRecord, parse_iso
from lab.haproxy import FIELDS
from lab.promtext import RowFormatter, go_float
from lab.world import World

MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
RCV_PAUSE = windows_perfcounter_metric("Mellanox WinOF-2 Port QoS", "Rcv Pause Frames")
SENT_PAUSE = windows_perfcounter_metric("Mellanox WinOF-2 Port QoS", "Sent Pause Frames")
CQ_ERRORS = windows_perfcounter_metric("RDMA Activity", "RDMA Completion Queue Errors")


@pytest.fixture(scope="module")
def scenario() -> lab.Scenario:
    return lab.compact_scenario(seed=11)


@pytest.fixture(scope="module")
def records(scenario: lab.Scenario) -> list[RawRecord]:
    return list(lab.generate(scenario))


def _by_kind(records: list[RawRecord], kind: str) -> list[RawRecord]:
    return [r for r in records if r.kind == kind]


def _at(scenario: lab.Scenario, td: timedelta) -> datetime:
    return scenario.start + td


def _samples(rec: RawRecord) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(rec.body.decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


# ------------------------------------------------------------------------------------------------
# determinism, order, capture file


def test_same_seed_same_bytes_and_other_seed_differs(tmp_path: Path) -> None:
    sc = lab.compact_scenario(seed=3, hours=1)
    a = lab.write_capture(sc, tmp_path / "a.jsonl.zst")
    b = lab.write_capture(sc, tmp_path / "b.jsonl.zst")
    assert (tmp_path / "a.jsonl.zst").read_bytes() == (tmp_path / "b.jsonl.zst").read_bytes()
    assert a.records == b.records > 0
    c = lab.write_capture(replace(sc, seed=4), tmp_path / "c.jsonl.zst")
    assert (tmp_path / "c.jsonl.zst").read_bytes() != (tmp_path / "a.jsonl.zst").read_bytes()
    assert c.records > 0


def test_capture_lines_follow_the_capture_format(tmp_path: Path) -> None:
    sc = lab.compact_scenario(seed=3, hours=1)
    stats = lab.write_capture(sc, tmp_path / "cap.jsonl.zst")
    text = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(stats.path.read_bytes())).read().decode()
    lines = text.splitlines()
    assert len(lines) == stats.records == sum(stats.by_kind.values())
    plain = lab.write_capture(sc, tmp_path / "cap.jsonl")
    assert plain.path.read_text() == text
    first = json.loads(lines[0])
    assert list(first) == ["ts", "kind", "target", "host", "labels", "body"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["ts"])
    recs = list(lab.generate(sc))
    for line, rec in zip(lines[:50], recs[:50], strict=True):
        obj = json.loads(line)
        assert obj["body"].encode() == rec.body and obj["kind"] == rec.kind and obj["target"] == rec.target
        assert parse_iso(obj["ts"]) == rec.ts


def test_capture_is_readable_by_the_collector(tmp_path: Path) -> None:
    from collector.capture import read_capture

    sc = lab.compact_scenario(seed=3, hours=1)
    stats = lab.write_capture(sc, tmp_path / "cap.jsonl.zst")
    items = list(read_capture(stats.path))
    assert len(items) == stats.records


def test_records_are_time_sorted(records: list[RawRecord]) -> None:
    ts = [r.ts for r in records]
    assert ts == sorted(ts)
    assert {r.kind for r in records} == {"prometheus", "haproxy-csv", "k8s", "neighbors", "event"}


# ------------------------------------------------------------------------------------------------
# payload formats


def test_prometheus_bodies_are_windows_exporter_text(records: list[RawRecord], scenario: lab.Scenario) -> None:
    prom = _by_kind(records, "prometheus")
    assert {r.host for r in prom} == set(scenario.site.hosts)
    for rec in prom[:: max(1, len(prom) // 40)]:
        assert rec.target == f"{rec.host}:9182"
        fams = {f.name: f for f in text_string_to_metric_families(rec.body.decode())}
        assert fams["windows_net_bytes_received"].type == "counter"
        assert {s.labels["nic"] for s in fams["windows_net_nic_info"].samples} == {
            "Hyper-V Virtual Ethernet Adapter",
            "Mellanox ConnectX-6 Dx Adapter",
            "Mellanox ConnectX-6 Dx Adapter _2",
        }
        for s in fams["windows_net_nic_info"].samples:
            assert re.fullmatch(r"[0-9A-F]{2}(:[0-9A-F]{2}){5}", s.labels["mac"])
        addrs = {s.labels["address"] for s in fams["windows_net_nic_address_info"].samples}
        assert all(ipaddress.ip_address(a) for a in addrs)
        servers = {s.labels["server"] for s in fams["windows_smbclient_request_seconds"].samples}
        assert servers == set(scenario.site.hosts) - {rec.host}
        assert fams["windows_smbclient_requests"].type == "counter"
        rdma = [f for f in fams if f.startswith("windows_performancecounter_rdma_activity_")]
        assert len(rdma) == 10
        prios = {s.labels["instance"] for s in fams[RCV_PAUSE].samples}
        assert "Mellanox ConnectX-6 Dx Adapter Prio 3" in prios and len(prios) == 16
        assert fams["windows_performancecounter_rdma_activity_rdma_active_connections"].type == "gauge"
    body = prom[0].body.decode()
    names = [line.split()[2] for line in body.splitlines() if line.startswith("# HELP")]
    assert names == sorted(names)
    assert re.search(r"^windows_net_bytes_received_total\{nic=\"[^\"]+\"\} \d\.\d+e\+\d\d$", body, re.M)


def test_haproxy_bodies_are_show_stat_csv(records: list[RawRecord], scenario: lab.Scenario) -> None:
    hap = _by_kind(records, "haproxy-csv")
    assert {r.labels["cluster"] for r in hap} == {"workload-a", "workload-b"}
    vip_pool = {str(ip) for ip in scenario.site.network.vip_pool()}
    node_pool = {str(ip) for ip in scenario.site.network.node_pool()}
    for rec in hap[:: max(1, len(hap) // 30)]:
        text = rec.body.decode()
        assert text.endswith("\n\n")
        lines = text.rstrip("\n").split("\n")
        assert lines[0].startswith("# pxname,svname,")
        header = lines[0][2:].split(",")
        assert header == FIELDS and len(header) == 129 and header[99] == "uweight"
        rows = list(csv.reader(lines[1:]))
        assert rows and all(len(r) == len(header) for r in rows)
        col = {name: i for i, name in enumerate(header) if name}
        types = {r[col["type"]] for r in rows}
        assert types == {"0", "1", "2", "3"}
        for r in rows:
            if r[col["type"]] == "3":
                ip, port = r[col["addr"]].rsplit(":", 1)
                assert ip in vip_pool and int(port) > 0
            if r[col["type"]] == "2":
                assert r[col["addr"]].rsplit(":", 1)[0] in node_pool and r[col["status"]] == "UP"
            for name in ("stot", "bin", "bout", "scur"):
                if r[col[name]]:
                    assert int(r[col[name]]) >= 0
        assert any(r[0] == "k8s-apiserver" and r[1] == "FRONTEND" for r in rows)


def test_k8s_bodies_are_api_lists(records: list[RawRecord], scenario: lab.Scenario) -> None:
    k8s = _by_kind(records, "k8s")
    net = scenario.site.network.name
    lb_names = set()
    for rec in _by_kind(records, "haproxy-csv"):
        lb_names.add(rec.host)
    for rec in k8s[:: max(1, len(k8s) // 60)]:
        obj = json.loads(rec.body)
        assert rec.labels["cluster"] == rec.host and rec.labels["network"] == net
        assert rec.labels["resource_version"] == obj["metadata"]["resourceVersion"]
        assert obj["apiVersion"] == "v1" and isinstance(obj["items"], list)
        if obj["kind"] == "ServiceList":
            assert rec.target.endswith("/api/v1/services")
            assert ipaddress.ip_address(rec.labels["control_plane_endpoint"])
            for item in obj["items"]:
                assert {"metadata", "spec", "status"} <= set(item) and "kind" not in item
                if item["spec"]["type"] == "LoadBalancer":
                    ingress = [i["ip"] for i in item["status"]["loadBalancer"]["ingress"]]
                    assert ingress == [item["spec"]["loadBalancerIP"]]
                    assert all(p["nodePort"] >= 30000 for p in item["spec"]["ports"])
        else:
            assert obj["kind"] == "NodeList" and rec.target.endswith("/api/v1/nodes")
            for item in obj["items"]:
                assert item["metadata"]["name"] not in lb_names
                ips = [a["address"] for a in item["status"]["addresses"] if a["type"] == "InternalIP"]
                assert len(ips) == 1 and ipaddress.ip_network(item["spec"]["podCIDR"]).prefixlen == 24


def test_neighbor_and_event_bodies(records: list[RawRecord], scenario: lab.Scenario) -> None:
    nbr = _by_kind(records, "neighbors")
    for rec in nbr[:: max(1, len(nbr) // 40)]:
        rows = json.loads(rec.body)
        assert rows and all(set(r) == {"ip", "mac", "interface", "state"} for r in rows)
        assert all(MAC.match(r["mac"]) and ipaddress.ip_address(r["ip"]) for r in rows)
        assert {r["state"] for r in rows} <= {"Reachable", "Stale", "Permanent"}
    events = _by_kind(records, "event")
    assert events
    for rec in events:
        for ev in json.loads(rec.body):
            assert ev["provider"] == "Tcpip" and ev["id"] == 4199 and ev["host"] == rec.host
            assert ev["ip"] in ev["message"] and MAC.match(ev["mac"])


def test_every_record_parses_with_the_registered_parsers(records: list[RawRecord]) -> None:
    from collector.catalog import DEFAULT_CATALOG
    from collector.registry import get_parser

    seen: dict[str, int] = defaultdict(int)
    for rec in records:
        if seen[rec.kind] >= 25:
            continue
        seen[rec.kind] += 1
        result = get_parser(rec.kind)(rec, DEFAULT_CATALOG)
        assert not result.errors, (rec.kind, rec.target, result.errors[:3])
        assert result.samples.num_rows + result.ip_observations.num_rows > 0


# ------------------------------------------------------------------------------------------------
# counters


def test_counters_are_monotonic_except_after_a_reboot(records: list[RawRecord], scenario: lab.Scenario) -> None:
    reboot = next(i for i in scenario.incidents if isinstance(i, lab.HostReboot))
    back = _at(scenario, reboot.start + reboot.downtime)
    for host in scenario.site.hosts:
        prom = [r for r in records if r.kind == "prometheus" and r.host == host][::4]
        prev: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        prev_ts = None
        drops = 0
        for rec in prom:
            cur = {k: v for k, v in _samples(rec).items() if k[0].endswith("_total")}
            assert cur
            down = [k for k, v in cur.items() if k in prev and v < prev[k]]
            if down:
                assert host == reboot.host and prev_ts is not None, (host, rec.ts, down[:3])
                assert prev_ts < back <= rec.ts
                drops += 1
            prev, prev_ts = cur, rec.ts
        assert drops == (1 if host == reboot.host else 0)


def test_haproxy_counters_only_restart_on_reload(records: list[RawRecord]) -> None:
    by_vm: dict[str, list[RawRecord]] = defaultdict(list)
    for rec in _by_kind(records, "haproxy-csv"):
        by_vm[rec.host].append(rec)
    for recs in by_vm.values():
        prev: dict[tuple[str, str], int] = {}
        prev_lastchg = None
        for rec in recs:
            rows = list(csv.reader(rec.body.decode().strip().split("\n")[1:]))
            cur = {(r[0], r[1]): int(r[7]) for r in rows if r[7]}
            lastchg = int(next(r[23] for r in rows if r[0] == "stats" and r[1] == "BACKEND"))
            reloaded = prev_lastchg is not None and lastchg < prev_lastchg
            if not reloaded:
                assert all(v >= prev.get(k, 0) for k, v in cur.items())
            prev, prev_lastchg = cur, lastchg


# ------------------------------------------------------------------------------------------------
# incidents and confounders


def test_pfc_storm_shows_in_pauses_errors_and_latency(records: list[RawRecord], scenario: lab.Scenario) -> None:
    storm = next(i for i in scenario.incidents if isinstance(i, lab.PfcStorm))
    assert storm.end is not None
    inst = f"{scenario.site.adapter_instances[storm.adapter]} Prio {scenario.site.pfc_priority}"
    prom = [r for r in records if r.kind == "prometheus" and r.host == storm.host]

    def rates(lo: datetime, hi: datetime) -> dict[str, float]:
        window = [r for r in prom if lo <= r.ts <= hi]
        a, b = _samples(window[0]), _samples(window[-1])
        secs = (window[-1].ts - window[0].ts).total_seconds()
        key = ("instance", inst)
        sent = (b[(SENT_PAUSE + "_total", (key,))] - a[(SENT_PAUSE + "_total", (key,))]) / secs
        cq = sum(b[k] - a[k] for k in b if k[0] == CQ_ERRORS + "_total")
        lat_s = sum(b[k] - a[k] for k in b if k[0] == "windows_smbclient_request_seconds_total")
        reqs = sum(b[k] - a[k] for k in b if k[0] == "windows_smbclient_requests_total")
        return {"sent": sent, "cq": cq, "latency_ms": 1000 * lat_s / reqs}

    calm = rates(_at(scenario, storm.start - timedelta(minutes=50)), _at(scenario, storm.start - timedelta(minutes=5)))
    hot = rates(_at(scenario, storm.start + timedelta(minutes=2)), _at(scenario, storm.end - timedelta(minutes=1)))
    assert 0 < calm["sent"] < 10 and hot["sent"] > 1000 * calm["sent"]
    assert calm["cq"] == 0 and hot["cq"] > 10
    assert calm["latency_ms"] < 3 and hot["latency_ms"] > 10


def test_backup_burst_raises_throughput_not_pauses_or_latency(records: list[RawRecord], scenario: lab.Scenario) -> None:
    backup = next(i for i in scenario.incidents if isinstance(i, lab.BackupBurst))
    assert backup.end is not None
    host = scenario.site.hosts[0]
    prom = [r for r in records if r.kind == "prometheus" and r.host == host]
    inb = windows_perfcounter_metric("RDMA Activity", "RDMA Inbound Bytes/sec") + "_total"

    def window(lo: timedelta, hi: timedelta) -> tuple[float, float, float]:
        w = [r for r in prom if _at(scenario, lo) <= r.ts <= _at(scenario, hi)]
        a, b = _samples(w[0]), _samples(w[-1])
        secs = (w[-1].ts - w[0].ts).total_seconds()
        rdma = sum(b[k] - a[k] for k in b if k[0] == inb) / secs
        pauses = sum(b[k] - a[k] for k in b if k[0] == RCV_PAUSE + "_total") / secs
        lat = sum(b[k] - a[k] for k in b if k[0] == "windows_smbclient_request_seconds_total")
        reqs = sum(b[k] - a[k] for k in b if k[0] == "windows_smbclient_requests_total")
        return rdma, pauses, 1000 * lat / reqs

    during = window(backup.start + timedelta(minutes=2), backup.end - timedelta(minutes=2))
    after = window(backup.end + timedelta(minutes=5), backup.end + timedelta(minutes=25))
    assert during[0] > 2 * after[0]
    assert during[1] < 20 and during[2] < 3


def test_vip_leak_grows_services_until_the_end(records: list[RawRecord], scenario: lab.Scenario) -> None:
    leak = next(i for i in scenario.incidents if isinstance(i, lab.VipLeak))
    counts = []
    for rec in records:
        if rec.kind == "k8s" and rec.host == leak.cluster and rec.target.endswith("/services"):
            items = json.loads(rec.body)["items"]
            counts.append(sum(1 for i in items if i["metadata"]["namespace"] == leak.namespace))
    assert counts[0] == 0 and counts == sorted(counts) and counts[-1] >= 5


def test_duplicate_lb_ip_in_two_clusters_and_flip_flopping(records: list[RawRecord], scenario: lab.Scenario) -> None:
    dup = next(i for i in scenario.incidents if isinstance(i, lab.DuplicateLbIp))
    assert dup.end is not None
    lo, hi = _at(scenario, dup.start), _at(scenario, dup.end)
    truth = [g for g in lab.ground_truth(scenario) if g["kind"] == AlertKind.DUPLICATE_IP.value]
    assert len(truth) == 1
    ip = truth[0]["resource"]["ip"]
    owners_in = defaultdict(set)
    for rec in records:
        if rec.kind == "k8s" and rec.target.endswith("/services"):
            for item in json.loads(rec.body)["items"]:
                ingress = item["status"]["loadBalancer"].get("ingress", [])
                if any(i["ip"] == ip for i in ingress):
                    owners_in[lo <= rec.ts < hi].add(rec.host)
    assert owners_in[True] == {dup.cluster, dup.shared_with} and owners_in[False] == {dup.shared_with}
    macs_seen: dict[str, list[str]] = defaultdict(list)
    for rec in _by_kind(records, "neighbors"):
        if lo <= rec.ts < hi:
            macs_seen[rec.host].extend(r["mac"] for r in json.loads(rec.body) if r["ip"] == ip)
    flips = sum(sum(1 for a, b in itertools.pairwise(m) if a != b) for m in macs_seen.values())
    assert flips >= 8 and all(len(set(m)) == 2 for m in macs_seen.values())
    listeners = set()
    for rec in _by_kind(records, "haproxy-csv"):
        if lo <= rec.ts < hi:
            for r in csv.reader(rec.body.decode().strip().split("\n")[1:]):
                if r[32] == "3" and r[73].startswith(ip + ":"):
                    listeners.add((rec.labels["cluster"], r[73]))
    assert {c for c, _ in listeners} == {dup.cluster, dup.shared_with}
    assert len({a for _, a in listeners}) >= 2  # same IP, different ports


def test_vip_failover_is_one_change_per_vip(records: list[RawRecord], scenario: lab.Scenario) -> None:
    fo = next(i for i in scenario.incidents if isinstance(i, lab.VipFailover))
    api_vip = next(
        r.labels["control_plane_endpoint"]
        for r in records
        if r.kind == "k8s" and r.host == fo.cluster and "control_plane_endpoint" in r.labels
    )
    host = scenario.site.hosts[0]
    macs = [
        r2["mac"]
        for rec in records
        if rec.kind == "neighbors" and rec.host == host
        for r2 in json.loads(rec.body)
        if r2["ip"] == api_vip
    ]
    changes = [i for i, (a, b) in enumerate(itertools.pairwise(macs)) if a != b]
    assert len(changes) == 1


def test_node_scale_out_adds_and_releases_node_ips(records: list[RawRecord], scenario: lab.Scenario) -> None:
    so = next(i for i in scenario.incidents if isinstance(i, lab.NodeScaleOut))
    sizes = []
    for rec in records:
        if rec.kind == "k8s" and rec.host == so.cluster and rec.target.endswith("/nodes"):
            sizes.append(len(json.loads(rec.body)["items"]))
    base = sizes[0]
    assert max(sizes) == base + so.nodes and sizes[-1] == base


def test_scrape_gap_and_reboot_leave_holes(records: list[RawRecord], scenario: lab.Scenario) -> None:
    for inc in scenario.incidents:
        if isinstance(inc, lab.ScrapeGap | lab.HostReboot):
            lo, hi = (scenario.start + x for x in inc.window(scenario.duration))
            assert not [r for r in records if r.host == inc.host and lo <= r.ts < hi]
            assert [r for r in records if r.host == inc.host and r.ts >= hi]


# ------------------------------------------------------------------------------------------------
# ground truth, config, API edges


def test_ground_truth_covers_every_scripted_incident() -> None:
    sc = lab.demo_scenario(seed=7)
    truth = lab.ground_truth(sc)
    kinds = {g["kind"] for g in truth}
    assert kinds == {
        AlertKind.VIP_POOL_EXHAUSTION.value,
        AlertKind.DUPLICATE_IP.value,
        AlertKind.EASTWEST_CONGESTION.value,
    }
    assert {g["incident"] for g in truth} == {"vip_leak", "duplicate_lb_ip", "pfc_storm"}
    leak = next(g for g in truth if g["incident"] == "vip_leak")
    assert leak["resource"] == {"network": sc.site.network.name, "pool": "vip"} and leak["end"] is None
    assert leak["details"]["used_at_end"] > leak["details"]["used_at_start"]
    assert parse_iso(leak["details"]["projected_exhaustion"]) < sc.end + timedelta(days=7)
    storm = [g for g in truth if g["incident"] == "pfc_storm"]
    assert {g["resource"]["host"] for g in storm} == {"hci-node-02", "hci-node-03"}
    for g in truth:
        assert parse_iso(g["start"]) >= sc.start
    conf = {c["confounder"] for c in lab.confounder_windows(sc)}
    assert conf == {"backup_burst", "node_scale_out", "vip_failover", "host_reboot", "scrape_gap"}


def test_network_config_is_a_valid_networks_table() -> None:
    sc = lab.demo_scenario()
    nets = lab.network_config(sc)
    assert len(nets) == 1
    model = NetworkSettings(**nets[0])
    assert model.clusters == ["aks-mgmt", "workload-a", "workload-b"]
    assert model.management_cluster == "aks-mgmt"


def test_bad_scripts_fail_with_the_field_named() -> None:
    with pytest.raises(ValueError, match="hci-node-09"):
        lab.Scenario(incidents=(lab.PfcStorm(start=timedelta(0), end=timedelta(hours=1), host="hci-node-09"),))
    with pytest.raises(ValueError, match="one load-balancer VM"):
        lab.Scenario(incidents=(lab.VipFailover(start=timedelta(0), cluster="workload-a"),))
    with pytest.raises(ValueError, match="management cluster"):
        lab.Scenario(incidents=(lab.VipLeak(start=timedelta(0), cluster="aks-mgmt"),))
    with pytest.raises(ValueError, match="end"):
        lab.ScrapeGap(start=timedelta(hours=2), end=timedelta(hours=1))
    with pytest.raises(ValueError, match="overlaps"):
        lab.NetworkSpec(vip_pool_start="10.40.0.50", vip_pool_end="10.40.0.60")


def test_incidents_after_the_end_are_ignored() -> None:
    sc = replace(lab.demo_scenario(), duration=timedelta(hours=1))
    assert lab.ground_truth(sc) == []
    assert [c["confounder"] for c in lab.confounder_windows(sc)] == ["backup_burst"]


# ------------------------------------------------------------------------------------------------
# Go float formatting


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (607984.0, "607984"),
        (2.26406781e8, "2.26406781e+08"),
        (1e6, "1e+06"),
        (0.0, "0"),
        (0.0001, "0.0001"),
        (1e-05, "1e-05"),
        (123456.5, "123456.5"),
        (1234567.5, "1.2345675e+06"),
        (1.8446744073709552e19, "1.8446744073709552e+19"),
        (float("nan"), "NaN"),
        (float("inf"), "+Inf"),
        (-3.5, "-3.5"),
    ],
)
def test_go_float_matches_client_golang(value: float, text: str) -> None:
    assert go_float(value) == text


def test_row_formatter_agrees_with_go_float() -> None:
    import numpy as np

    rng = np.random.default_rng(5)
    vals = np.concatenate(
        [
            rng.integers(0, 10**14, 300).astype(float),
            rng.random(300) * 1e6,
            rng.integers(0, 10**13, 300) * 1e-7,
            rng.random(300) * 10.0 ** rng.integers(-8, 17, 300),
        ]
    )
    matrix = vals.reshape(-1, 6)
    out = RowFormatter(["<"] + ["|"] * 5 + [">"]).render(matrix)
    for row, text in zip(matrix.tolist(), out, strict=True):
        assert text == "<" + "|".join(go_float(v) for v in row) + ">"


# ------------------------------------------------------------------------------------------------
# AKS Arc (23H2) site


def _arc_scenario() -> lab.Scenario:
    pinned = lab.MetalLbPoolSpec("dev-pinned", ("10.60.0.200/29",), auto_assign=False, in_config=False)
    site = replace(
        lab.ARC_SITE,
        clusters=tuple(
            replace(c, metallb_pools=(*c.metallb_pools, pinned)) if c.name == "arc-dev" else c
            for c in lab.ARC_SITE.clusters
        ),
    )
    h = timedelta(hours=1)
    return lab.Scenario(
        site=site,
        duration=2 * h,
        interval=timedelta(seconds=60),
        seed=5,
        incidents=(
            lab.VipLeak(start=timedelta(minutes=10), every=timedelta(minutes=30), cluster="arc-prod"),
            lab.DuplicateLbIp(start=h, end=timedelta(minutes=90), cluster="arc-dev", shared_with="arc-prod"),
            lab.UpgradeBlocked(start=timedelta(minutes=100), cluster="arc-data"),
        ),
    )


def test_arc_site_is_metallb_clusters_on_a_logical_network() -> None:
    sc = _arc_scenario()
    records = list(lab.generate(sc))
    assert not _by_kind(records, "haproxy-csv")  # no HAProxy VMs on AKS Arc
    from collector.catalog import DEFAULT_CATALOG
    from collector.registry import get_parser

    pools = [r for r in records if r.target.endswith("/ipaddresspools")]
    assert {r.labels["cluster"] for r in pools} == {"arc-prod", "arc-dev", "arc-data"}
    body = json.loads(next(r for r in pools if r.labels["cluster"] == "arc-dev").body)
    assert body["kind"] == "IPAddressPoolList" and body["apiVersion"] == "metallb.io/v1beta1"
    assert [(i["metadata"]["name"], i["spec"]["autoAssign"]) for i in body["items"]] == [
        ("dev-lb", True),
        ("dev-pinned", False),
    ]
    for rec in pools[:3] + [r for r in records if "metallb-" in r.target][:6]:
        result = get_parser(rec.kind)(rec, DEFAULT_CATALOG)
        assert not result.errors and result.samples.num_rows > 0, rec.target
    # the controller counts its own allocations: arc-prod's 3 services + the leaked previews
    ctrl = [r for r in records if r.target == "arc-prod-metallb-controller:7472"]
    first, last = _samples(ctrl[0]), _samples(ctrl[-1])
    key = ("metallb_allocator_addresses_in_use_total", (("pool", "prod-lb"),))
    assert (first[key], last[key]) == (3.0, 7.0)
    assert last[("metallb_allocator_addresses_total", (("pool", "prod-lb"),))] == 16.0
    # every LoadBalancer IP in the subnet, outside the IP pool; node VMs inside it
    svc = [json.loads(r.body) for r in records if r.target.endswith("/api/v1/services")]
    ips = {
        i["status"]["loadBalancer"]["ingress"][0]["ip"]
        for b in svc
        for i in b["items"]
        if i["spec"]["type"] == "LoadBalancer"
    }
    node_pool = {str(ip) for ip in sc.site.network.node_pool()}
    assert ips and not ips & node_pool
    nodes = [json.loads(r.body) for r in records if r.target.endswith("/api/v1/nodes")]
    node_ips = {
        a["address"] for b in nodes for i in b["items"] for a in i["status"]["addresses"] if a["type"] == "InternalIP"
    }
    assert node_ips <= node_pool and len(node_ips) == 10  # 9 node VMs + the one UpgradeBlocked adds


def test_arc_ground_truth_and_config() -> None:
    sc = _arc_scenario()
    truth = {t["incident"]: t for t in lab.ground_truth(sc)}
    assert set(truth) == {"metallb_pool_overlap", "vip_leak", "duplicate_lb_ip", "upgrade_blocked"}
    assert truth["metallb_pool_overlap"]["resource"]["pool"] == "lb:arc-dev/dev-pinned:10.60.0.200/29"
    assert truth["vip_leak"]["resource"]["pool"] == "lb:arc-prod/prod-lb:10.60.0.200-10.60.0.215"
    assert truth["duplicate_lb_ip"]["resource"]["ip"] == "10.60.0.200"  # arc-prod's first service
    # 9 node VMs + 1 of a 16-address pool; 3 clusters need 3 upgrade IPs (23H2-UPG)
    assert {k: truth["upgrade_blocked"]["details"][k] for k in ("used_after", "upgrade_ips_needed")} == {
        "used_after": 10,
        "upgrade_ips_needed": 3,
    }
    [net] = lab.network_config(sc)
    model = NetworkSettings(**net)
    assert model.management_cluster is None
    assert model.control_plane_ips == {"arc-prod": "10.60.0.20", "arc-dev": "10.60.0.21", "arc-data": "10.60.0.22"}
    # the hand-added pool lives only in the cluster's CRDs, not in the config
    assert [(p.cluster, p.name) for p in model.metallb_pools] == [
        ("arc-prod", "prod-lb"),
        ("arc-dev", "dev-lb"),
        ("arc-data", "data-lb"),
    ]


def test_bad_arc_sites_fail_with_the_rule_named() -> None:
    with pytest.raises(ValueError, match="no AKS management cluster"):
        replace(lab.ARC_SITE, clusters=(lab.ClusterSpec("mgmt", management=True), *lab.ARC_SITE.clusters))
    bad_pool = lab.MetalLbPoolSpec("oops", ("10.60.0.110-10.60.0.120",))
    with pytest.raises(ValueError, match="outside the logical network's IP pool"):
        replace(
            lab.ARC_SITE,
            clusters=tuple(
                replace(c, metallb_pools=(bad_pool,)) if c.name == "arc-data" else c for c in lab.ARC_SITE.clusters
            ),
        )
    with pytest.raises(ValueError, match="do not overlap"):
        World(
            lab.Scenario(
                site=lab.ARC_SITE,
                duration=timedelta(hours=1),
                incidents=(
                    lab.DuplicateLbIp(
                        start=timedelta(0), end=timedelta(minutes=30), cluster="arc-dev", shared_with="arc-prod"
                    ),
                ),
            )
        )

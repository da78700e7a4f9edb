"""Each defect the conformance corpus found (issue 13), as a test that failed before its fix.

Inputs are real-format payloads: corpus files where one shows the defect, otherwise the smallest
payload in the documented format.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from collector.catalog import DEFAULT_CATALOG, windows_perfcounter_metric
from collector.registry import get_parser
from collector.schema import RawRecord, from_ms
from hciwatch.config import default_config
from tests.conformance.test_corpus import CORPUS

T0 = datetime(2024, 11, 19, 7, 0, tzinfo=UTC)
EVENT_MS = 1_732_000_000_000  # TimeCreated of the 4199 in the corpus files


def parse(kind: str, body: bytes, host: str = "h1", labels: dict[str, str] | None = None) -> list[dict[str, object]]:
    rec = RawRecord(ts=T0, kind=kind, target="test", body=body, host=host, labels=labels or {})
    result = get_parser(kind)(rec, DEFAULT_CATALOG)
    assert result.errors == []
    rows: list[dict[str, object]] = result.samples.to_pylist()
    return rows


def series(rows: list[dict[str, object]]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for r in rows:
        labels = r["labels"]
        assert isinstance(labels, list)
        value = r["value"]
        assert isinstance(value, float)
        out[(str(r["metric"]), tuple(sorted(labels)))] = value
    return out


# --- Tcpip 4198/4199 ------------------------------------------------------------------------------


def _events(name: str) -> pa.Table:
    rec = RawRecord(ts=T0, kind="event", target=name, body=(CORPUS / name).read_bytes(), host="x")
    result = get_parser("event")(rec, DEFAULT_CATALOG)
    assert result.errors == []
    table: pa.Table = result.ip_observations
    return table


def test_crlf_wrapped_4199_message_yields_ip_and_mac() -> None:
    obs = _events("tcpip-get-winevent-en-doc.json").to_pylist()
    first = obs[0]
    assert (first["ip"], first["mac"], first["owner"]) == (
        "10.20.0.21",
        "00:15:5d:0a:0b:99",
        "AZL-NODE1.contoso.local/tcpip-4199",
    )
    assert first["ts"] == from_ms(EVENT_MS)
    assert (obs[1]["ip"], obs[1]["mac"]) == ("10.20.0.22", "00:15:5d:0a:0b:98")  # 4198: "having hardware address"


@pytest.mark.parametrize(
    "message",
    [
        # line breaks where Microsoft KB 178550 prints them (hard-wrapped at ~72 columns)
        "The system detected an address conflict for IP address\r\n10.1.2.3 with the system having network\r\n"
        "hardware address 00:15:5D:00:00:02. Network operations on this system may be disrupted as\r\na result.",
        # the Windows Server documentation's form, with the sentence's period after the address
        "The system detected an address conflict for IP address 10.1.2.3. with the system having network "
        "hardware address 00-15-5D-00-00-02. Network operations on this system may be disrupted as a result.",
        # indented continuation lines (a log viewer's copy)
        "The system detected an address conflict for IP address\n                10.1.2.3 with the system having "
        "network hardware address\n                00-15-5d-00-00-02.",
    ],
)
def test_documented_message_layouts(message: str) -> None:
    row = {"ProviderName": "Tcpip", "Id": 4199, "MachineName": "n1", "TimeCreated": "2024-11-19T07:00:00Z"}
    body = json.dumps({**row, "Message": message}).encode()
    rec = RawRecord(ts=T0, kind="event", target="t", body=body)
    obs = get_parser("event")(rec, DEFAULT_CATALOG).ip_observations.to_pylist()
    assert [(o["ip"], o["mac"]) for o in obs] == [("10.1.2.3", "00:15:5d:00:00:02")]


def test_get_eventlog_shape_is_read() -> None:
    """Source / EventID / InstanceId / ReplacementStrings / TimeGenerated (Get-EventLog | ConvertTo-Json)."""
    obs = _events("tcpip-get-eventlog-en-doc.json").to_pylist()
    assert [(o["ip"], o["mac"], o["owner"], o["ts"]) for o in obs] == [
        ("10.20.0.21", "00:15:5d:0a:0b:99", "AZL-NODE1.contoso.local/tcpip-4199", from_ms(EVENT_MS))
    ]


def test_instance_id_alone_names_the_event() -> None:
    body = (
        b'{"Source":"Tcpip","InstanceId":3221229671,"MachineName":"n1","TimeGenerated":"/Date(1732000000000)/",'
        b'"Message":"The system detected an address conflict for IP address 10.1.1.1 with the system\\r\\n'
        b'having network hardware address 00-15-5D-00-00-01."}'
    )
    rec = RawRecord(ts=T0, kind="event", target="t", body=body)
    obs = get_parser("event")(rec, DEFAULT_CATALOG).ip_observations.to_pylist()
    assert [(o["ip"], o["mac"], o["owner"]) for o in obs] == [("10.1.1.1", "00:15:5d:00:00:01", "n1/tcpip-4199")]


def test_localized_message_yields_ip_and_mac() -> None:
    obs = _events("tcpip-get-winevent-de-doc.json").to_pylist()
    assert [(o["ip"], o["mac"]) for o in obs] == [("10.20.0.21", "00:15:5d:0a:0b:99")]


def test_real_4199_raises_duplicate_ip_against_the_known_owner(tmp_path: Path) -> None:
    """windows_exporter says AZL-NODE1 holds 10.20.0.21 (its own NIC); Windows then logs a 4199 for that
    address naming another MAC: the flow raises duplicate_ip for it with the event as evidence."""
    from hciwatch.pipeline import replay_records

    nic = (
        b'windows_net_nic_info{friendly_name="vEthernet (Management)",mac="00:15:5d:0a:0b:21",'
        b'nic="vEthernet_Management"} 1\n'
        b'windows_net_nic_address_info{address="10.20.0.21",family="ipv4",nic="vEthernet_Management"} 1\n'
    )
    start = from_ms(EVENT_MS) - timedelta(minutes=10)
    records = [
        RawRecord(
            ts=start + timedelta(minutes=i), kind="prometheus", target="azl-node1:9182", body=nic, host="AZL-NODE1"
        )
        for i in range(10)
    ]
    records.append(
        RawRecord(
            ts=from_ms(EVENT_MS),
            kind="event",
            target="wef",
            body=(CORPUS / "tcpip-get-winevent-en-doc.json").read_bytes(),
            host="AZL-NODE1",
        )
    )
    records += [
        RawRecord(
            ts=from_ms(EVENT_MS) + timedelta(minutes=i),
            kind="prometheus",
            target="azl-node1:9182",
            body=nic,
            host="AZL-NODE1",
        )
        for i in range(1, 6)
    ]
    result = replay_records(records, default_config(tmp_path), tmp_path, workers=0)
    assert result.stats.records_rejected == 0
    fired = [a for a in result.alerts if a.kind.value == "duplicate_ip" and a.status.value == "firing"]
    by_ip = {a.resource["ip"]: a for a in fired}
    assert "10.20.0.21" in by_ip, [a.resource for a in fired]
    alert = by_ip["10.20.0.21"]
    assert "00:15:5d:0a:0b:99" in str(alert.evidence)
    assert "4199" in alert.runbook


# --- windows_exporter names and units ----------------------------------------------------------


def test_windows_exporter_before_v016_nic_names_are_mapped_and_bandwidth_is_bytes() -> None:
    got = series(parse("prometheus", (CORPUS / "windows_exporter-v0.15.0-net-doc.prom").read_bytes()))
    nic = (("nic", "Mellanox_ConnectX_4_Lx_Ethernet_Adapter"),)
    assert got[("net.packets_received_discarded_total", nic)] == 1532
    assert got[("net.packets_outbound_discarded_total", nic)] == 0
    assert got[("net.packets_received_errors_total", nic)] == 3
    assert got[("net.current_bandwidth_bytes", nic)] == 25e9 / 8
    assert not any(m.startswith("windows_net_") for m, _ in got)


def test_wmi_exporter_prefix_is_the_same_collector() -> None:
    got = series(parse("prometheus", b'wmi_net_packets_received_discarded{nic="eth0"} 7\n'))
    assert got == {("net.packets_received_discarded_total", (("nic", "eth0"),)): 7.0}


def test_utf8_bom_before_the_first_sample_is_stripped() -> None:
    body = b'\xef\xbb\xbfwindows_net_packets_received_discarded_total{nic="eth0"} 5\n'
    assert series(parse("prometheus", body)) == {("net.packets_received_discarded_total", (("nic", "eth0"),)): 5.0}


def test_raw_avg_sec_ticks_from_performancecounter_are_seconds() -> None:
    """windows_exporter's performancecounter collector exposes PDH raw values: Avg. sec/… in 100 ns ticks."""
    name = windows_perfcounter_metric("SMB Client Shares", "Avg. sec/Data Request")
    body = name.encode() + b'{instance="\\\\\\\\fs\\\\vms"} 1234567890\n'
    got = series(parse("prometheus", body))
    assert got == {("smb.client.request_seconds_total", (("instance", "\\\\fs\\vms"),)): 123.456789}


def test_pdh_current_bandwidth_is_stored_in_bytes_from_every_agent() -> None:
    lp = (
        b"win_perf_counters,host=n1,instance=eth0,objectname=Network\\ Interface "
        b"Current_Bandwidth=10000000000 1732000000000000000\n"
    )
    rec = RawRecord(ts=T0, kind="mqtt", target="t", body=lp, topic="telegraf/n1/win_perf_counters")
    rows = get_parser("mqtt")(rec, DEFAULT_CATALOG).samples.to_pylist()
    assert [(r["metric"], r["value"]) for r in rows] == [("net.current_bandwidth_bytes", 1.25e9)]


# --- Calico pool utilisation -----------------------------------------------------------------------


def test_calico_reserved_addresses_count_as_used_in_pool_usage(tmp_path: Path) -> None:
    from analytics.views import analyst_views
    from collector.store import Store
    from hciwatch.pipeline import replay_records

    body = (
        b'ipam_allocations_in_use{ippool="pods",node="n1"} 30\n'
        b'ipam_allocations_in_use{ippool="pods",node="n2"} 10\n'
        b'ipam_ippool_reserved{ippool="pods"} 12\n'
        b'ipam_ippool_size{ippool="pods"} 64\n'
    )
    records = [
        RawRecord(
            ts=T0 + timedelta(minutes=i),
            kind="prometheus",
            target="kc:9094",
            body=body,
            host="kc",
            labels={"source": "calico", "cluster": "c1"},
        )
        for i in range(3)
    ]
    replay_records(records, default_config(tmp_path), tmp_path, workers=0)
    store = Store(tmp_path, extra_views=analyst_views([]))
    con = store.connect()
    try:
        rows = con.execute("SELECT DISTINCT pool, size, used FROM pool_usage WHERE pool_type = 'calico'").fetchall()
    finally:
        con.close()
        store.close()
    assert rows == [("calico:c1/pods", 64, 52)]


# --- byte-order marks (a principle, not one file: every text parser, every Windows encoding) -------

BOM_CASES: list[tuple[str, str, dict[str, str], str | None]] = [
    ("prometheus", "windows_exporter-v0.15.0-net-doc.prom", {}, None),
    ("haproxy-csv", "otelcol-haproxy-stats.csv", {}, None),
    ("haproxy-info", "otelcol-haproxy-server_info.txt", {}, None),
    ("mqtt", "telegraf-win_perf_counters-doc.json", {}, "telegraf/AZL-NODE2/win_perf_counters"),
    ("mqtt", "telegraf-win_perf_counters-raw-doc.lp", {}, "telegraf/AZL-NODE1/win_perf_counters"),
]


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16"])
@pytest.mark.parametrize(("kind", "name", "labels", "topic"), BOM_CASES, ids=[c[1] for c in BOM_CASES])
def test_powershell_encodings_parse_like_plain_utf8(
    kind: str, name: str, labels: dict[str, str], topic: str | None, encoding: str
) -> None:
    """Set-Content -Encoding UTF8 (UTF-8 BOM) and Windows PowerShell's Out-File (UTF-16 LE BOM)."""
    plain = (CORPUS / name).read_bytes()
    marked = plain.decode("utf-8").encode(encoding)

    def run(body: bytes) -> list[tuple[str, float]]:
        rec = RawRecord(ts=T0, kind=kind, target=name, body=body, host="h", labels=labels, topic=topic)
        result = get_parser(kind)(rec, DEFAULT_CATALOG)
        assert result.errors == []
        return sorted((r["metric"], r["value"]) for r in result.samples.to_pylist())

    assert run(marked) == run(plain)


def test_kubectl_json_saved_by_powershell_is_read() -> None:
    path = Path(__file__).resolve().parents[2] / "collector" / "sources" / "k8s_inventory" / "testdata"
    plain = (path / "services_wl-dev.json").read_bytes()

    def run(body: bytes) -> int:
        rec = RawRecord(
            ts=T0, kind="k8s", target="https://10.0.0.1:6443/api/v1/services", body=body, labels={"cluster": "wl-dev"}
        )
        n: int = get_parser("k8s")(rec, DEFAULT_CATALOG).ip_observations.num_rows
        return n

    assert run(plain) > 0
    assert run(b"\xef\xbb\xbf" + plain) == run(plain) == run(plain.decode("utf-8").encode("utf-16"))

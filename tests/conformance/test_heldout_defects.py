"""Defects the held-out payloads found, one test each (every one failed before its fix, except the
one guard marked as such).

The payloads themselves are in ``corpus/heldout-*`` (see PROVENANCE.md); these tests pin the
principle behind each fix on a minimal body, so a regression names the rule it breaks.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from collector.catalog import DEFAULT_CATALOG
from collector.schema import RawRecord, iso
from collector.sources.prometheus.parse import parse_record as parse_prometheus
from collector.sources.typeperf.parse import parse_record as parse_typeperf

T0 = datetime(2024, 11, 19, 7, 0, tzinfo=UTC)


def _prom(body: str, **labels: str) -> list[dict[str, Any]]:
    rec = RawRecord(ts=T0, kind="prometheus", target="t", host="h", body=body.encode(), labels=labels)
    result = parse_prometheus(rec, DEFAULT_CATALOG)
    assert result.errors == [], result.errors
    return [dict(r, labels=dict(r["labels"])) for r in result.samples.to_pylist()]


def test_openmetrics_exemplar_keeps_the_sample() -> None:
    """client_golang's OpenMetrics output: an exemplar after the value used to cost the sample."""
    rows = _prom('# TYPE a histogram\na_bucket{le="1"} 3 # {trace_id="x # y {z}"} 0.5 1.7e9\n# EOF\n')
    assert [(r["metric"], r["value"]) for r in rows] == [("a_bucket", 3.0)]


def test_openmetrics_timestamps_are_seconds() -> None:
    """With '# EOF' the body is OpenMetrics: '1.5' and '1520879607' are seconds, not milliseconds."""
    rows = _prom('a_total{x="1"} 1 1520879607.789\na_total{x="2"} 2 1520879607\n# EOF\n')
    assert sorted(iso(r["ts"]) for r in rows) == ["2018-03-12T18:33:27.000Z", "2018-03-12T18:33:27.789Z"]


def test_text_format_float_timestamp_error_points_at_openmetrics() -> None:
    rec = RawRecord(ts=T0, kind="prometheus", target="t", host="h", body=b"a 1\nb 1 1.5\n")
    errors = [str(e) for e in parse_prometheus(rec, DEFAULT_CATALOG).errors]
    assert len(errors) == 1 and "want integer milliseconds" in errors[0] and "# EOF" in errors[0]


def test_haproxy_exporter_rows_get_the_csv_labels() -> None:
    """prometheus/haproxy_exporter says backend=…; analyzers select HAProxy rows by proxy and type."""
    rows = _prom(
        'haproxy_server_bytes_in_total{backend="foo",server="web-1"} 10\n'
        'haproxy_server_up{backend="foo",server="BACKEND"} 1\n'
        'haproxy_frontend_current_sessions{frontend="fe"} 3\n'
    )
    got = {(r["metric"], tuple(sorted(r["labels"].items()))) for r in rows}
    assert got == {
        ("haproxy.bytes_in_total", (("proxy", "foo"), ("server", "web-1"), ("type", "server"))),
        ("haproxy.up", (("proxy", "foo"), ("server", "BACKEND"), ("type", "backend"))),
        ("haproxy.current_sessions", (("proxy", "fe"), ("type", "frontend"))),
    }


def test_haproxy_builtin_exporter_rows_get_a_type_but_keep_their_own() -> None:
    rows = _prom(
        'haproxy_frontend_bytes_in_total{proxy="k8s-api"} 5\nhaproxy_backend_current_queue{proxy="b",type="x"} 1\n',
        cluster="c",
    )
    labels = {r["metric"]: r["labels"] for r in rows}
    assert labels["haproxy.bytes_in_total"] == {"proxy": "k8s-api", "type": "frontend", "cluster": "c"}
    assert labels["haproxy.queue_current"]["type"] == "x"


def _typeperf(body: str) -> tuple[list[dict[str, Any]], list[str]]:
    rec = RawRecord(ts=T0, kind="typeperf-csv", target="t", body=body.encode())
    result = parse_typeperf(rec, DEFAULT_CATALOG)
    return result.samples.to_pylist(), [str(e) for e in result.errors]


def test_typeperf_console_header_without_time_zone() -> None:
    """typeperf printing to the console writes "(PDH-CSV 4.0)" alone: read, as UTC, and say so once."""
    rows, errors = _typeperf(
        '\r\n"(PDH-CSV 4.0)","\\\\h\\Memory\\Commit Limit"\r\n"09/22/2026 21:42:32.824","1.0"\r\n'
        '"09/22/2026 21:42:33.824","2.0"\r\nExiting, please wait...\r\n'
    )
    assert [iso(r["ts"]) for r in rows] == ["2026-09-22T21:42:32.824Z", "2026-09-22T21:42:33.824Z"]
    assert len(errors) == 1 and "no time zone" in errors[0] and "(at line 2)" in errors[0]


def test_german_network_interface_counters_are_mapped() -> None:
    rows, _ = _typeperf(
        '"(PDH-CSV 4.0) (Mitteleuropäische Zeit)(-60)",'
        '"\\\\PC\\Netzwerkschnittstelle(Intel[R] I350 #2)\\Empfangene Bytes/s"\r\n'
        '"01/02/2025 10:00:00.000","1234.5"\r\n'
    )
    assert [(r["metric"], dict(r["labels"]), r["value"]) for r in rows] == [
        ("net.bytes_received_per_sec", {"nic": "Intel[R] I350 #2"}, 1234.5)
    ]


def _haproxy(body: str) -> tuple[list[dict[str, Any]], list[str]]:
    from collector.sources.haproxy.parse import parse_record as parse_haproxy

    rec = RawRecord(ts=T0, kind="haproxy-csv", target="t", host="lb", body=body.encode())
    result = parse_haproxy(rec, DEFAULT_CATALOG)
    return [dict(r, labels=dict(r["labels"])) for r in result.samples.to_pylist()], [str(e) for e in result.errors]


_HDR = "# pxname,svname,scur,status,check_desc,stot,\n"


def test_haproxy_quoted_cell_spanning_lines_keeps_the_row() -> None:
    """Agent-check text may hold newlines; HAProxy quotes the cell, so the row spans lines."""
    rows, errors = _haproxy(_HDR + 'be,s1,3,UP,"agent says:\nok, ""fine""\n",10,\nbe,s2,4,UP,,11,\n')
    assert errors == []
    got = {(r["metric"], r["labels"]["server"]): r["value"] for r in rows}
    assert got[("haproxy.current_sessions", "s1")] == 3 and got[("haproxy.sessions_total", "s1")] == 10
    assert got[("haproxy.current_sessions", "s2")] == 4


def test_haproxy_stray_quote_costs_its_line_only() -> None:
    """Guard for the fix above (passes on the old code too): joining lines must not swallow rows."""
    lines = [f"be,s{i},{i},UP,,{i},\n" for i in range(40)]
    lines[1] = 'be,s1,1,UP,"never closed,1,\n'
    rows, errors = _haproxy(_HDR + "".join(lines))
    assert len(errors) == 1 and "(at line 3)" in errors[0]
    assert {r["labels"]["server"] for r in rows} == {f"s{i}" for i in range(40) if i != 1}


def test_kube_proxy_before_1_14_sync_latency_in_microseconds() -> None:
    """A real v1.9 scrape names the sync histogram in microseconds; it lands in canonical seconds."""
    rows = _prom(
        "kubeproxy_sync_proxy_rules_latency_microseconds_sum 4.1572652e+08\n"
        "kubeproxy_sync_proxy_rules_latency_microseconds_count 30218\n",
        source="kube-proxy",
    )
    got = {r["metric"]: r["value"] for r in rows}
    assert got == {"kubeproxy.sync_duration_seconds_total": 415.72652, "kubeproxy.syncs_total": 30218.0}

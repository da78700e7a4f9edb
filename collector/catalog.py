"""The canonical metric catalog: every agent's native metric name → one canonical name and unit.

Analyzers only ever see canonical names, so it does not matter whether a number came from
windows_exporter, Telegraf ``win_perf_counters`` (formatted or ``UseRawValues``), a typeperf CSV,
HAProxy's CSV or its Prometheus exporter.

Naming rules for canonical names (``<domain>.<what>[_<unit>]``):

* cumulative counters end in ``_total`` (raw, never rated at ingest; queries derive rates);
* per-second values as Windows formats them end in ``_per_sec``;
* gauges have neither suffix.

A PDH counter ending in ``/sec`` is a cumulative bulk counter in raw form and a rate when
formatted, so one PDH row yields ``<base>_total`` (raw) and ``<base>_per_sec`` (formatted).

Native names come from ``reference/domain-reference.md`` (windows_exporter @589ec15,
Telegraf @b272631, HAProxy 2.6, kube-proxy, Calico, MetalLB).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum


class PdhKind(StrEnum):
    """How a Windows PDH counter behaves in raw and formatted form."""

    RATE = "rate"  # PERF_COUNTER_BULK_COUNT ("…/sec"): raw cumulative, formatted per second
    COUNT = "count"  # cumulative count without /sec (errors, pause frames): same both ways
    GAUGE = "gauge"  # instantaneous value (active connections, queue length)
    AVG_TIMER = "avg_timer"  # PERF_AVERAGE_TIMER ("Avg. sec/…"): raw ticks, formatted seconds


@dataclass(frozen=True, slots=True)
class MetricDef:
    """A canonical metric: its name, unit and whether it is a cumulative counter."""

    name: str
    unit: str
    counter: bool
    description: str = ""
    # Native value / divisor = value in ``unit``: 8 for bit/s stored as bytes/s, 10^7 for raw
    # PERF_AVERAGE_TIMER numerators (100 ns ticks) stored as seconds. Parsers apply it.
    divisor: float = 1.0


@dataclass(frozen=True, slots=True)
class PdhCounter:
    """One Windows performance counter (PDH object + counter) and its canonical base name."""

    obj: str
    counter: str
    base: str
    kind: PdhKind
    unit: str
    divisor: float = 1.0  # native value / divisor = canonical unit (Current Bandwidth: bits → bytes)


BITS_PER_BYTE = 8.0
# PERF_AVERAGE_TIMER raw numerators are 100 ns ticks (PDH's 10 MHz performance frequency).
TICKS_PER_SECOND = 10_000_000.0

# Canonical bases whose PDH value is not in the canonical unit: Current Bandwidth is bits/s.
PDH_DIVISORS: dict[str, float] = {"net.current_bandwidth_bytes": BITS_PER_BYTE}

# (PDH object, counter, canonical base, kind, unit). The Telegraf field, the typeperf column
# and windows_exporter's performancecounter default name are all derived from these.
PDH_COUNTERS: tuple[PdhCounter, ...] = tuple(
    PdhCounter(*row, divisor=PDH_DIVISORS.get(row[2], 1.0))
    for row in [
        # RDMA Activity (per RDMA adapter)
        ("RDMA Activity", "RDMA Accepted Connections", "rdma.accepted_connections", PdhKind.COUNT, "1"),
        ("RDMA Activity", "RDMA Active Connections", "rdma.active_connections", PdhKind.GAUGE, "1"),
        ("RDMA Activity", "RDMA Completion Queue Errors", "rdma.cq_errors", PdhKind.COUNT, "1"),
        ("RDMA Activity", "RDMA Connection Errors", "rdma.connection_errors", PdhKind.COUNT, "1"),
        ("RDMA Activity", "RDMA Failed Connection Attempts", "rdma.failed_connection_attempts", PdhKind.COUNT, "1"),
        ("RDMA Activity", "RDMA Inbound Bytes/sec", "rdma.inbound_bytes", PdhKind.RATE, "By"),
        ("RDMA Activity", "RDMA Inbound Frames/sec", "rdma.inbound_frames", PdhKind.RATE, "1"),
        ("RDMA Activity", "RDMA Initiated Connections", "rdma.initiated_connections", PdhKind.COUNT, "1"),
        ("RDMA Activity", "RDMA Outbound Bytes/sec", "rdma.outbound_bytes", PdhKind.RATE, "By"),
        ("RDMA Activity", "RDMA Outbound Frames/sec", "rdma.outbound_frames", PdhKind.RATE, "1"),
        # SMB Direct Connection
        ("SMB Direct Connection", "Bytes RDMA Read/sec", "smbdirect.rdma_read_bytes", PdhKind.RATE, "By"),
        ("SMB Direct Connection", "Bytes RDMA Written/sec", "smbdirect.rdma_written_bytes", PdhKind.RATE, "By"),
        ("SMB Direct Connection", "Bytes Sent/sec", "smbdirect.sent_bytes", PdhKind.RATE, "By"),
        ("SMB Direct Connection", "Bytes Received/sec", "smbdirect.received_bytes", PdhKind.RATE, "By"),
        # SMB Client Shares
        ("SMB Client Shares", "Avg. sec/Data Request", "smb.client.request", PdhKind.AVG_TIMER, "s"),
        ("SMB Client Shares", "Avg. sec/Read", "smb.client.read", PdhKind.AVG_TIMER, "s"),
        ("SMB Client Shares", "Avg. sec/Write", "smb.client.write", PdhKind.AVG_TIMER, "s"),
        ("SMB Client Shares", "Data Requests/sec", "smb.client.requests", PdhKind.RATE, "1"),
        ("SMB Client Shares", "Read Requests/sec", "smb.client.read_requests", PdhKind.RATE, "1"),
        ("SMB Client Shares", "Write Requests/sec", "smb.client.write_requests", PdhKind.RATE, "1"),
        ("SMB Client Shares", "Data Bytes/sec", "smb.client.data_bytes", PdhKind.RATE, "By"),
        ("SMB Client Shares", "Read Bytes/sec", "smb.client.read_bytes", PdhKind.RATE, "By"),
        ("SMB Client Shares", "Write Bytes/sec", "smb.client.write_bytes", PdhKind.RATE, "By"),
        ("SMB Client Shares", "Credit Stalls/sec", "smb.client.credit_stalls", PdhKind.RATE, "1"),
        ("SMB Client Shares", "Current Data Queue Length", "smb.client.queue_length", PdhKind.GAUGE, "1"),
        (
            "SMB Client Shares",
            "Read Bytes transmitted via SMB Direct/sec",
            "smb.client.read_bytes_smbdirect",
            PdhKind.RATE,
            "By",
        ),
        (
            "SMB Client Shares",
            "Write Bytes transmitted via SMB Direct/sec",
            "smb.client.write_bytes_smbdirect",
            PdhKind.RATE,
            "By",
        ),
        # SMB Server Shares
        ("SMB Server Shares", "Received Bytes/sec", "smb.server.received_bytes", PdhKind.RATE, "By"),
        ("SMB Server Shares", "Sent Bytes/sec", "smb.server.sent_bytes", PdhKind.RATE, "By"),
        ("SMB Server Shares", "Read Requests/sec", "smb.server.read_requests", PdhKind.RATE, "1"),
        ("SMB Server Shares", "Write Requests/sec", "smb.server.write_requests", PdhKind.RATE, "1"),
        ("SMB Server Shares", "Current Open File Count", "smb.server.open_files", PdhKind.GAUGE, "1"),
        ("SMB Server Shares", "Avg. sec/Data Request", "smb.server.request", PdhKind.AVG_TIMER, "s"),
        # Network Interface / Network Adapter
        ("Network Interface", "Bytes Received/sec", "net.bytes_received", PdhKind.RATE, "By"),
        ("Network Interface", "Bytes Sent/sec", "net.bytes_sent", PdhKind.RATE, "By"),
        ("Network Interface", "Bytes Total/sec", "net.bytes", PdhKind.RATE, "By"),
        ("Network Interface", "Packets Received/sec", "net.packets_received", PdhKind.RATE, "1"),
        ("Network Interface", "Packets Sent/sec", "net.packets_sent", PdhKind.RATE, "1"),
        ("Network Interface", "Packets Received Discarded", "net.packets_received_discarded", PdhKind.COUNT, "1"),
        ("Network Interface", "Packets Outbound Discarded", "net.packets_outbound_discarded", PdhKind.COUNT, "1"),
        ("Network Interface", "Packets Received Errors", "net.packets_received_errors", PdhKind.COUNT, "1"),
        ("Network Interface", "Packets Outbound Errors", "net.packets_outbound_errors", PdhKind.COUNT, "1"),
        ("Network Interface", "Current Bandwidth", "net.current_bandwidth_bytes", PdhKind.GAUGE, "By/s"),
        ("Network Interface", "Output Queue Length", "net.output_queue_length", PdhKind.GAUGE, "1"),
        # Mellanox WinOF-2 Port QoS (instance = adapter × priority)
        ("Mellanox WinOF-2 Port QoS", "Rcv Pause Frames", "pfc.rx_pause_frames", PdhKind.COUNT, "1"),
        ("Mellanox WinOF-2 Port QoS", "Sent Pause Frames", "pfc.tx_pause_frames", PdhKind.COUNT, "1"),
        ("Mellanox WinOF-2 Port QoS", "Rcv Pause Duration", "pfc.rx_pause_duration", PdhKind.COUNT, "us"),
        ("Mellanox WinOF-2 Port QoS", "Sent Pause Duration", "pfc.tx_pause_duration", PdhKind.COUNT, "us"),
        ("Mellanox WinOF-2 Port QoS", "Bytes Received", "pfc.bytes_received", PdhKind.COUNT, "By"),
        ("Mellanox WinOF-2 Port QoS", "Bytes Sent", "pfc.bytes_sent", PdhKind.COUNT, "By"),
        # Legacy WinOF (ConnectX-3) QoS set uses the same pause counter names
        ("Mellanox Adapter QoS Counters", "Rcv Pause Frames", "pfc.rx_pause_frames", PdhKind.COUNT, "1"),
        ("Mellanox Adapter QoS Counters", "Sent Pause Frames", "pfc.tx_pause_frames", PdhKind.COUNT, "1"),
    ]
)

# Network Adapter mirrors Network Interface counter names.
PDH_COUNTERS = PDH_COUNTERS + tuple(
    PdhCounter("Network Adapter", c.counter, c.base, c.kind, c.unit, c.divisor)
    for c in PDH_COUNTERS
    if c.obj == "Network Interface"
)


def pdh_canonical(c: PdhCounter, *, raw: bool) -> MetricDef:
    """The canonical metric a PDH counter becomes, in raw or formatted form."""
    if c.kind is PdhKind.RATE:
        if raw:
            return MetricDef(c.base + "_total", c.unit, True)
        return MetricDef(c.base + "_per_sec", c.unit + "/s", False)
    if c.kind is PdhKind.COUNT:
        return MetricDef(c.base + "_total", c.unit, True)
    if c.kind is PdhKind.GAUGE:
        return MetricDef(c.base, c.unit, False, divisor=c.divisor)
    # AVG_TIMER: raw cumulative 100 ns ticks (scaled to seconds), formatted average seconds
    if raw:
        return MetricDef(c.base + "_seconds_total", "s", True, divisor=TICKS_PER_SECOND)
    return MetricDef(c.base + "_avg_seconds", "s", False)


# ---------------------------------------------------------------------------------------------
# Native spellings derived from the PDH table
# ---------------------------------------------------------------------------------------------


def telegraf_field(counter: str, *, raw: bool = False) -> str:
    """Telegraf win_perf_counters field name for a PDH counter (its replacer, then ``_Raw``)."""
    name = (
        counter.replace("/sec", "_persec")
        .replace("/Sec", "_persec")
        .replace(" ", "_")
        .replace("%", "Percent")
        .replace("\\", "")
    )
    return name + "_Raw" if raw else name


_PROM_DROP = re.compile(r"[()]")
_PROM_OTHER = re.compile(r"[^a-zA-Z0-9]")


def windows_perfcounter_metric(obj: str, counter: str) -> str:
    """windows_exporter ``performancecounter`` default metric name (runs of ``_`` kept)."""
    text = f"windows_performancecounter_{obj}_{counter}".replace("%", "percent")
    text = _PROM_DROP.sub("", text)
    text = _PROM_OTHER.sub("_", text).lower()
    return text.strip("_")


# ---------------------------------------------------------------------------------------------
# Prometheus-exposition native names (windows_exporter, kube-proxy, Calico, MetalLB, HAProxy)
# ---------------------------------------------------------------------------------------------

_COUNTER = True
_GAUGE = False

PROMETHEUS_NATIVE: dict[str, MetricDef] = {
    # windows_exporter net (label nic)
    "windows_net_bytes_received_total": MetricDef("net.bytes_received_total", "By", _COUNTER),
    "windows_net_bytes_sent_total": MetricDef("net.bytes_sent_total", "By", _COUNTER),
    "windows_net_bytes_total": MetricDef("net.bytes_total", "By", _COUNTER),
    "windows_net_packets_received_total": MetricDef("net.packets_received_total", "1", _COUNTER),
    "windows_net_packets_sent_total": MetricDef("net.packets_sent_total", "1", _COUNTER),
    "windows_net_packets_total": MetricDef("net.packets_total", "1", _COUNTER),
    "windows_net_packets_received_discarded_total": MetricDef("net.packets_received_discarded_total", "1", _COUNTER),
    "windows_net_packets_outbound_discarded_total": MetricDef("net.packets_outbound_discarded_total", "1", _COUNTER),
    "windows_net_packets_received_errors_total": MetricDef("net.packets_received_errors_total", "1", _COUNTER),
    "windows_net_packets_outbound_errors_total": MetricDef("net.packets_outbound_errors_total", "1", _COUNTER),
    "windows_net_packets_received_unknown_total": MetricDef("net.packets_received_unknown_total", "1", _COUNTER),
    "windows_net_current_bandwidth_bytes": MetricDef("net.current_bandwidth_bytes", "By/s", _GAUGE),
    "windows_net_output_queue_length_packets": MetricDef("net.output_queue_length", "1", _GAUGE),
    "windows_net_nic_operation_status": MetricDef("net.nic_operation_status", "1", _GAUGE),
    # windows_exporter before v0.16 (docs/collector.net.md @v0.15.0): no _total on the error and
    # discard counters, and the bandwidth gauge in bits per second
    "windows_net_packets_received_discarded": MetricDef("net.packets_received_discarded_total", "1", _COUNTER),
    "windows_net_packets_outbound_discarded": MetricDef("net.packets_outbound_discarded_total", "1", _COUNTER),
    "windows_net_packets_received_errors": MetricDef("net.packets_received_errors_total", "1", _COUNTER),
    "windows_net_packets_outbound_errors": MetricDef("net.packets_outbound_errors_total", "1", _COUNTER),
    "windows_net_packets_received_unknown": MetricDef("net.packets_received_unknown_total", "1", _COUNTER),
    "windows_net_current_bandwidth": MetricDef("net.current_bandwidth_bytes", "By/s", _GAUGE, divisor=BITS_PER_BYTE),
    # windows_exporter smbclient (labels server, share)
    "windows_smbclient_request_seconds_total": MetricDef("smb.client.request_seconds_total", "s", _COUNTER),
    "windows_smbclient_requests_total": MetricDef("smb.client.requests_total", "1", _COUNTER),
    "windows_smbclient_read_seconds_total": MetricDef("smb.client.read_seconds_total", "s", _COUNTER),
    "windows_smbclient_write_seconds_total": MetricDef("smb.client.write_seconds_total", "s", _COUNTER),
    "windows_smbclient_read_requests_total": MetricDef("smb.client.read_requests_total", "1", _COUNTER),
    "windows_smbclient_write_requests_total": MetricDef("smb.client.write_requests_total", "1", _COUNTER),
    "windows_smbclient_data_bytes_total": MetricDef("smb.client.data_bytes_total", "By", _COUNTER),
    "windows_smbclient_read_bytes_total": MetricDef("smb.client.read_bytes_total", "By", _COUNTER),
    "windows_smbclient_write_bytes_total": MetricDef("smb.client.write_bytes_total", "By", _COUNTER),
    "windows_smbclient_stalls_total": MetricDef("smb.client.credit_stalls_total", "1", _COUNTER),
    "windows_smbclient_requests_queued": MetricDef("smb.client.queue_length", "1", _GAUGE),
    "windows_smbclient_data_queue_seconds_total": MetricDef("smb.client.data_queue_seconds_total", "s", _COUNTER),
    "windows_smbclient_read_bytes_via_smbdirect_total": MetricDef(
        "smb.client.read_bytes_smbdirect_total", "By", _COUNTER
    ),
    "windows_smbclient_write_bytes_via_smbdirect_total": MetricDef(
        "smb.client.write_bytes_smbdirect_total", "By", _COUNTER
    ),
    # windows_exporter smb (label share)
    "windows_smb_server_shares_received_bytes_total": MetricDef("smb.server.received_bytes_total", "By", _COUNTER),
    "windows_smb_server_shares_sent_bytes_total": MetricDef("smb.server.sent_bytes_total", "By", _COUNTER),
    "windows_smb_server_shares_read_requests_count_total": MetricDef("smb.server.read_requests_total", "1", _COUNTER),
    "windows_smb_server_shares_write_requests_count_total": MetricDef("smb.server.write_requests_total", "1", _COUNTER),
    "windows_smb_server_shares_current_open_file_count": MetricDef("smb.server.open_files", "1", _GAUGE),
    "windows_smb_server_shares_tree_connect_count": MetricDef("smb.server.tree_connects", "1", _GAUGE),
    # kube-proxy
    "kubeproxy_sync_proxy_rules_duration_seconds_sum": MetricDef(
        "kubeproxy.sync_duration_seconds_total", "s", _COUNTER
    ),
    "kubeproxy_sync_proxy_rules_duration_seconds_count": MetricDef("kubeproxy.syncs_total", "1", _COUNTER),
    # kube-proxy before 1.14 (seen on a real v1.9 scrape): the same histogram in microseconds.
    # _sum is stored in seconds; the buckets stay native (their `le` bounds are microseconds).
    "kubeproxy_sync_proxy_rules_latency_microseconds_sum": MetricDef(
        "kubeproxy.sync_duration_seconds_total", "s", _COUNTER, divisor=1e6
    ),
    "kubeproxy_sync_proxy_rules_latency_microseconds_count": MetricDef("kubeproxy.syncs_total", "1", _COUNTER),
    "kubeproxy_sync_proxy_rules_last_timestamp_seconds": MetricDef("kubeproxy.last_sync_timestamp", "s", _GAUGE),
    "kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds": MetricDef(
        "kubeproxy.last_queued_timestamp", "s", _GAUGE
    ),
    "kubeproxy_network_programming_duration_seconds_sum": MetricDef(
        "kubeproxy.network_programming_seconds_total", "s", _COUNTER
    ),
    "kubeproxy_network_programming_duration_seconds_count": MetricDef(
        "kubeproxy.network_programming_total", "1", _COUNTER
    ),
    "kubeproxy_sync_proxy_rules_endpoint_changes_pending": MetricDef("kubeproxy.endpoint_changes_pending", "1", _GAUGE),
    "kubeproxy_sync_proxy_rules_service_changes_pending": MetricDef("kubeproxy.service_changes_pending", "1", _GAUGE),
    "kubeproxy_sync_proxy_rules_iptables_restore_failures_total": MetricDef(
        "kubeproxy.iptables_restore_failures_total", "1", _COUNTER
    ),
    "kubeproxy_sync_proxy_rules_no_local_endpoints_total": MetricDef("kubeproxy.no_local_endpoints", "1", _GAUGE),
    # Calico Felix
    "felix_iptables_restore_errors": MetricDef("calico.felix.iptables_restore_errors_total", "1", _COUNTER),
    "felix_int_dataplane_failures": MetricDef("calico.felix.dataplane_failures_total", "1", _COUNTER),
    "felix_cluster_num_hosts": MetricDef("calico.felix.cluster_hosts", "1", _GAUGE),
    "felix_active_local_endpoints": MetricDef("calico.felix.active_local_endpoints", "1", _GAUGE),
    # calico-kube-controllers IPAM
    "ipam_allocations_in_use": MetricDef("calico.ipam.allocations_in_use", "1", _GAUGE),
    "ipam_allocations_borrowed": MetricDef("calico.ipam.allocations_borrowed", "1", _GAUGE),
    "ipam_allocations_gc_candidates": MetricDef("calico.ipam.gc_candidates", "1", _GAUGE),
    "ipam_blocks": MetricDef("calico.ipam.blocks", "1", _GAUGE),
    "ipam_ippool_size": MetricDef("calico.ipam.ippool_size", "1", _GAUGE),
    # addresses held back from allocation (IPReservation): not free, so counted as used
    "ipam_ippool_reserved": MetricDef("calico.ipam.ippool_reserved", "1", _GAUGE),
    # MetalLB
    "metallb_allocator_addresses_in_use_total": MetricDef("metallb.addresses_in_use", "1", _GAUGE),
    "metallb_allocator_addresses_total": MetricDef("metallb.addresses_total", "1", _GAUGE),
    "metallb_k8s_client_config_stale_bool": MetricDef("metallb.config_stale", "1", _GAUGE),
    "metallb_bgp_session_up": MetricDef("metallb.bgp_session_up", "1", _GAUGE),
    # HAProxy built-in Prometheus exporter (PROMEX)
    "haproxy_frontend_current_sessions": MetricDef("haproxy.current_sessions", "1", _GAUGE),
    "haproxy_backend_current_sessions": MetricDef("haproxy.current_sessions", "1", _GAUGE),
    "haproxy_server_current_sessions": MetricDef("haproxy.current_sessions", "1", _GAUGE),
    "haproxy_frontend_limit_sessions": MetricDef("haproxy.session_limit", "1", _GAUGE),
    "haproxy_backend_limit_sessions": MetricDef("haproxy.session_limit", "1", _GAUGE),
    "haproxy_server_limit_sessions": MetricDef("haproxy.session_limit", "1", _GAUGE),
    "haproxy_frontend_sessions_total": MetricDef("haproxy.sessions_total", "1", _COUNTER),
    "haproxy_backend_sessions_total": MetricDef("haproxy.sessions_total", "1", _COUNTER),
    "haproxy_frontend_bytes_in_total": MetricDef("haproxy.bytes_in_total", "By", _COUNTER),
    "haproxy_frontend_bytes_out_total": MetricDef("haproxy.bytes_out_total", "By", _COUNTER),
    "haproxy_backend_connection_errors_total": MetricDef("haproxy.connection_errors_total", "1", _COUNTER),
    "haproxy_server_connection_errors_total": MetricDef("haproxy.connection_errors_total", "1", _COUNTER),
    "haproxy_backend_current_queue": MetricDef("haproxy.queue_current", "1", _GAUGE),
    "haproxy_backend_active_servers": MetricDef("haproxy.active_servers", "1", _GAUGE),
    "haproxy_server_check_failures_total": MetricDef("haproxy.check_failures_total", "1", _COUNTER),
    "haproxy_backend_response_time_average_seconds": MetricDef("haproxy.response_time_avg_seconds", "s", _GAUGE),
}

# The same counters under the names both HAProxy's built-in exporter and the older community
# haproxy_exporter (prometheus/haproxy_exporter, still common on LB VMs) give them, for the
# frontend/backend/server levels the CSV path also covers. Units agree with the CSV columns
# (bytes, seconds of downtime, plain counts); the ms-valued CSV timers are not mapped from the
# exporters' second-valued gauges. ``*_up`` is the exporter's 1/0 reading of the CSV ``status``.
for _lvl in ("frontend", "backend", "server"):
    for _suffix, _def in {
        "bytes_in_total": MetricDef("haproxy.bytes_in_total", "By", _COUNTER),
        "bytes_out_total": MetricDef("haproxy.bytes_out_total", "By", _COUNTER),
        "current_sessions": MetricDef("haproxy.current_sessions", "1", _GAUGE),
        "limit_sessions": MetricDef("haproxy.session_limit", "1", _GAUGE),
        "sessions_total": MetricDef("haproxy.sessions_total", "1", _COUNTER),
        "current_session_rate": MetricDef("haproxy.session_rate", "1/s", _GAUGE),
    }.items():
        PROMETHEUS_NATIVE.setdefault(f"haproxy_{_lvl}_{_suffix}", _def)
for _lvl in ("backend", "server"):
    for _suffix, _def in {
        "current_queue": MetricDef("haproxy.queue_current", "1", _GAUGE),
        "connection_errors_total": MetricDef("haproxy.connection_errors_total", "1", _COUNTER),
        "response_errors_total": MetricDef("haproxy.response_errors_total", "1", _COUNTER),
        "retry_warnings_total": MetricDef("haproxy.retries_total", "1", _COUNTER),
        "redispatch_warnings_total": MetricDef("haproxy.redispatches_total", "1", _COUNTER),
        "downtime_seconds_total": MetricDef("haproxy.downtime_seconds_total", "s", _COUNTER),
        "weight": MetricDef("haproxy.weight", "1", _GAUGE),
        "up": MetricDef("haproxy.up", "1", _GAUGE),
    }.items():
        PROMETHEUS_NATIVE.setdefault(f"haproxy_{_lvl}_{_suffix}", _def)
PROMETHEUS_NATIVE.setdefault(
    "haproxy_frontend_request_errors_total", MetricDef("haproxy.request_errors_total", "1", _COUNTER)
)
PROMETHEUS_NATIVE.setdefault(
    "haproxy_frontend_requests_denied_total", MetricDef("haproxy.denied_requests_total", "1", _COUNTER)
)

# PDH counter paths are localized: typeperf/relog on a German Windows writes German object and
# counter names. Only names seen in real use are listed (each one with where it was seen, see
# tests/conformance/PROVENANCE.md); anything else keeps its native name and shows in
# ``unmapped_metrics``, rather than guessing a translation.
PDH_LOCALIZED: dict[tuple[str, str], tuple[str, str]] = {
    # a C++ PdhAddCounter call and a German typeperf header in another project's test
    ("Netzwerkschnittstelle", "Empfangene Bytes/s"): ("Network Interface", "Bytes Received/sec"),
    ("Netzwerkschnittstelle", "Gesendete Bytes/s"): ("Network Interface", "Bytes Sent/sec"),
    # Telegraf's German win_perf_counters documentation
    ("Netzwerkschnittstelle", "Gesamtanzahl Bytes/s"): ("Network Interface", "Bytes Total/sec"),
}

# windows_exporter performancecounter default names, derived from the PDH table (raw mode).
for _c in PDH_COUNTERS:
    PROMETHEUS_NATIVE.setdefault(windows_perfcounter_metric(_c.obj, _c.counter), pdh_canonical(_c, raw=True))

# wmi_exporter (windows_exporter's name before v0.10) wrote the same net collector under ``wmi_``.
for _name, _def in list(PROMETHEUS_NATIVE.items()):
    if _name.startswith("windows_net_"):
        PROMETHEUS_NATIVE.setdefault("wmi_" + _name.removeprefix("windows_"), _def)

# ---------------------------------------------------------------------------------------------
# HAProxy CSV columns (show stat / ;csv): column → canonical, per row type
# ---------------------------------------------------------------------------------------------

HAPROXY_CSV: dict[str, MetricDef] = {
    "qcur": MetricDef("haproxy.queue_current", "1", _GAUGE),
    "scur": MetricDef("haproxy.current_sessions", "1", _GAUGE),
    "slim": MetricDef("haproxy.session_limit", "1", _GAUGE),
    "stot": MetricDef("haproxy.sessions_total", "1", _COUNTER),
    "bin": MetricDef("haproxy.bytes_in_total", "By", _COUNTER),
    "bout": MetricDef("haproxy.bytes_out_total", "By", _COUNTER),
    "dreq": MetricDef("haproxy.denied_requests_total", "1", _COUNTER),
    "ereq": MetricDef("haproxy.request_errors_total", "1", _COUNTER),
    "econ": MetricDef("haproxy.connection_errors_total", "1", _COUNTER),
    "eresp": MetricDef("haproxy.response_errors_total", "1", _COUNTER),
    "wretr": MetricDef("haproxy.retries_total", "1", _COUNTER),
    "wredis": MetricDef("haproxy.redispatches_total", "1", _COUNTER),
    "chkfail": MetricDef("haproxy.check_failures_total", "1", _COUNTER),
    "chkdown": MetricDef("haproxy.check_downs_total", "1", _COUNTER),
    "downtime": MetricDef("haproxy.downtime_seconds_total", "s", _COUNTER),
    "act": MetricDef("haproxy.active_servers", "1", _GAUGE),
    "weight": MetricDef("haproxy.weight", "1", _GAUGE),
    "rate": MetricDef("haproxy.session_rate", "1/s", _GAUGE),
    "hrsp_5xx": MetricDef("haproxy.http_5xx_total", "1", _COUNTER),
    "req_tot": MetricDef("haproxy.http_requests_total", "1", _COUNTER),
    "qtime": MetricDef("haproxy.queue_time_avg_ms", "ms", _GAUGE),
    "ctime": MetricDef("haproxy.connect_time_avg_ms", "ms", _GAUGE),
    "rtime": MetricDef("haproxy.response_time_avg_ms", "ms", _GAUGE),
    "ttime": MetricDef("haproxy.total_time_avg_ms", "ms", _GAUGE),
    "check_duration": MetricDef("haproxy.check_duration_ms", "ms", _GAUGE),
}
# `status` becomes haproxy.up (1 when UP/OPEN/no check, 0 otherwise) with the raw text as a label.
HAPROXY_STATUS_METRIC = MetricDef("haproxy.up", "1", _GAUGE)


# ---------------------------------------------------------------------------------------------
# Label normalisation
# ---------------------------------------------------------------------------------------------

_PRIO = re.compile(
    r"^(?P<adapter>.*?)[\s_:-]*(?<![A-Za-z])(?:prio(?:rity)?)[\s_:-]*(?P<prio>[0-7])(?![0-9])(?P<rest>.*)$",
    re.IGNORECASE,
)


def split_priority(instance: str) -> tuple[str, str | None]:
    """Split a Mellanox QoS instance (``<adapter> Prio 3`` and variants) into adapter, priority.

    Instance strings differ between WinOF-2 versions (``... Prio 3``, ``..._Priority_3``,
    ``... priority:3``); any spelling of ``prio``/``priority`` followed by 0-7 is accepted.
    """
    m = _PRIO.match(instance.strip())
    if not m:
        return instance.strip(), None
    adapter = (m.group("adapter") + m.group("rest")).strip(" _-:")
    return adapter or instance.strip(), m.group("prio")


def normalize_windows_labels(metric: str, labels: Mapping[str, str]) -> dict[str, str]:
    """Give Windows-derived series the same label names whatever agent delivered them.

    ``nic`` (windows_exporter) / ``instance`` (Telegraf, performancecounter default) /
    user-renamed instance labels all become ``nic`` for NIC, RDMA and PFC series; PFC series get
    a ``priority`` label split out of the instance name.
    """
    out = {k: v for k, v in labels.items() if k not in ("instance", "adapter", "port_prio")}
    inst = labels.get("nic") or labels.get("instance") or labels.get("adapter") or labels.get("port_prio")
    if metric.startswith("pfc."):
        if inst is not None:
            adapter, prio = split_priority(inst)
            out["nic"] = adapter
            if prio is not None:
                out["priority"] = prio
    elif metric.startswith(("net.", "rdma.")):
        if inst is not None:
            out["nic"] = inst
    elif inst is not None and "instance" in labels:
        out["instance"] = labels["instance"]
    return out


# ---------------------------------------------------------------------------------------------
# The catalog object (built-ins plus user mappings from config)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UserMapping:
    """A user-configured mapping for a renamed or custom native metric."""

    native: str
    canonical: str
    unit: str = "1"
    counter: bool = False


class Catalog:
    """Lookup from native names to canonical metrics; one instance per process, immutable."""

    def __init__(self, extra: Iterable[UserMapping] = ()) -> None:
        self.user_mappings: tuple[UserMapping, ...] = tuple(extra)  # so a worker process can rebuild it
        self.prometheus: dict[str, MetricDef] = dict(PROMETHEUS_NATIVE)
        for m in self.user_mappings:
            self.prometheus[m.native] = MetricDef(m.canonical, m.unit, m.counter, "user mapping")
        # (object lower, counter lower) → PdhCounter; telegraf fields → PdhCounter per object
        self.pdh: dict[tuple[str, str], PdhCounter] = {(c.obj.lower(), c.counter.lower()): c for c in PDH_COUNTERS}
        for (obj, counter), english in PDH_LOCALIZED.items():
            hit = self.pdh.get((english[0].lower(), english[1].lower()))
            if hit is not None:
                self.pdh.setdefault((obj.lower(), counter.lower()), hit)
        self.telegraf: dict[tuple[str, str], tuple[PdhCounter, bool]] = {}
        for c in PDH_COUNTERS:
            self.telegraf[(c.obj.lower(), telegraf_field(c.counter).lower())] = (c, False)
            self.telegraf[(c.obj.lower(), telegraf_field(c.counter, raw=True).lower())] = (c, True)
        self.haproxy_csv = dict(HAPROXY_CSV)

    def lookup_prometheus(self, name: str) -> MetricDef | None:
        """Canonical metric for a Prometheus-exposition name, or None when unmapped."""
        return self.prometheus.get(name)

    def lookup_pdh(self, obj: str, counter: str, *, raw: bool) -> MetricDef | None:
        """Canonical metric for a PDH object/counter pair (typeperf CSV)."""
        c = self.pdh.get((obj.lower(), counter.lower()))
        return pdh_canonical(c, raw=raw) if c else None

    def lookup_telegraf(self, objectname: str, field_name: str) -> MetricDef | None:
        """Canonical metric for a Telegraf win_perf_counters field (``_Raw`` suffix = raw)."""
        hit = self.telegraf.get((objectname.lower(), field_name.lower()))
        if hit is None:
            return None
        c, raw = hit
        return pdh_canonical(c, raw=raw)

    def all_canonical(self) -> dict[str, MetricDef]:
        """Every canonical metric this catalog can produce, by name (for docs and validation)."""
        out: dict[str, MetricDef] = {}
        for d in list(self.prometheus.values()) + list(self.haproxy_csv.values()):
            out.setdefault(d.name, d)
        for c in PDH_COUNTERS:
            for raw in (True, False):
                d = pdh_canonical(c, raw=raw)
                out.setdefault(d.name, d)
        out.setdefault(HAPROXY_STATUS_METRIC.name, HAPROXY_STATUS_METRIC)
        return dict(sorted(out.items()))


DEFAULT_CATALOG = Catalog()

"""Benchmark: hciwatch's columnar Prometheus text parser against prometheus_client's parser.

The payload is a deterministic, synthetic scrape of a large Azure Local (Hyper-V) host running
windows_exporter with the collectors an HCI operator enables: cpu, net (with nic_info /
nic_address_info), hyperv, process, service, logical_disk, mscluster, smb, smbclient and the
``performancecounter`` collector for RDMA Activity, SMB Direct Connection and Mellanox WinOF-2
Port QoS with default metric names. Label values are as long as on a real host (process command
lines, VM adapter names with GUIDs, SMB share paths); numbers are formatted exactly as Go's
client_golang writes them (``strconv.FormatFloat(v, 'g', -1, 64)``).

Run::

    .venv/bin/python bench/bench_prom_parse.py            # ~176k samples, ~20 MB
    .venv/bin/python bench/bench_prom_parse.py --samples 20000 --repeat 5
    .venv/bin/python bench/bench_prom_parse.py --code /tmp/main-snapshot   # an older checkout

It prints samples/s for both parsers and the ratio (the issue's target: >= 30x): for the cold
parser (every payload parsed in full, ``HCIWATCH_PARSE_REUSE=0``) and for a repeated scrape of the
same target with new values (the skeleton of the previous scrape reused, see
``collector/sources/prometheus/_reuse.py``).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import itertools
import os
import random
import re
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path


def _code_root(argv: list[str]) -> Path:
    """The checkout whose ``collector`` is measured: ``--code DIR`` or this file's checkout.

    Read before the imports below (argparse runs later), so an old snapshot can be measured
    against the working tree in the same session: ``--code /tmp/main-snapshot``.
    """
    for i, arg in enumerate(argv):
        if arg == "--code" and i + 1 < len(argv):
            return Path(argv[i + 1]).resolve()
        if arg.startswith("--code="):
            return Path(arg.split("=", 1)[1]).resolve()
    return Path(__file__).resolve().parent.parent


CODE_ROOT = _code_root(sys.argv[1:])
sys.path.insert(0, str(CODE_ROOT))

from collector.catalog import DEFAULT_CATALOG  # noqa: E402 (after --code picks the checkout)
from collector.schema import RawRecord  # noqa: E402
from collector.sources.prometheus.parse import parse_record  # noqa: E402

DEFAULT_SAMPLES = 176_000


def go_float(v: float) -> str:
    """Format like client_golang's text writer (``'g'`` with shortest precision, ``+Inf``)."""
    if v != v:
        return "NaN"
    if v == float("inf"):
        return "+Inf"
    if v == float("-inf"):
        return "-Inf"
    if v == 0:
        return "0"
    d = Decimal(repr(float(v))).normalize()
    sign, digits, exp = d.as_tuple()
    assert isinstance(exp, int)
    ds = "".join(map(str, digits))
    x = len(ds) + exp - 1  # decimal exponent of the first digit
    neg = "-" if sign else ""
    if x < -4 or x >= 6:
        mant = ds[0] + ("." + ds[1:] if len(ds) > 1 else "")
        return f"{neg}{mant}e{'-' if x < 0 else '+'}{abs(x):02d}"
    if x < 0:
        return f"{neg}0.{'0' * (-x - 1)}{ds}"
    if len(ds) <= x + 1:
        return neg + ds + "0" * (x + 1 - len(ds))
    return f"{neg}{ds[: x + 1]}.{ds[x + 1 :]}"


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class _Writer:
    """Accumulates families in client_golang's layout: HELP, TYPE, then sorted-label samples."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.parts: list[str] = []
        self.samples = 0

    def family(self, name: str, help_text: str, mtype: str, series: Iterable[tuple[dict[str, str], float]]) -> None:
        self.parts.append(f"# HELP {name} {help_text}\n# TYPE {name} {mtype}\n")
        for labels, value in series:
            self.sample(name, labels, value)

    def sample(self, name: str, labels: dict[str, str], value: float) -> None:
        if labels:
            body = ",".join(f'{k}="{_esc(v)}"' for k, v in sorted(labels.items()))
            self.parts.append(f"{name}{{{body}}} {go_float(value)}\n")
        else:
            self.parts.append(f"{name} {go_float(value)}\n")
        self.samples += 1

    def counter(self) -> float:
        return float(self.rng.randrange(0, 10 ** self.rng.randrange(1, 13)))

    def seconds(self) -> float:
        return round(self.rng.uniform(0, 1e6), self.rng.choice((3, 6, 7)))


def _guid(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032X}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _pc_name(obj: str, counter: str) -> str:
    from collector.catalog import windows_perfcounter_metric

    return windows_perfcounter_metric(obj, counter)


def generate_payload(samples: int = DEFAULT_SAMPLES, seed: int = 20261120) -> bytes:
    """A windows_exporter-like exposition with about ``samples`` samples (deterministic)."""
    rng = random.Random(seed)
    w = _Writer(rng)
    # Host shape scales with the requested size; the fixed part (~8k samples) is a normal HCI node.
    scale = max(samples - 8_000, 0) / 168_000
    n_proc = max(int(4_650 * scale), 4)
    n_vm = max(int(540 * scale), 2)
    n_res = max(int(2_150 * scale), 4)

    cores = [f"{g},{c}" for g in range(2) for c in range(64)]
    w.family(
        "windows_cpu_time_total",
        "Time that processor spent in different modes (dpc, idle, interrupt, privileged, user)",
        "counter",
        [
            ({"core": c, "mode": m}, w.seconds())
            for c in cores
            for m in ("dpc", "idle", "interrupt", "privileged", "user")
        ],
    )
    for fam in (
        "interrupts_total",
        "dpcs_total",
        "clock_interrupts_total",
        "idle_break_events_total",
        "processor_performance_total",
        "processor_mperf_total",
        "processor_rtc_total",
        "processor_utility_total",
        "processor_privileged_utility_total",
    ):
        w.family(
            f"windows_cpu_{fam}",
            f"Total number of {fam.replace('_', ' ')}",
            "counter",
            [({"core": c}, w.counter()) for c in cores],
        )
    w.family(
        "windows_cpu_cstate_seconds_total",
        "Time spent in low-power idle state",
        "counter",
        [({"core": c, "state": s}, w.seconds()) for c in cores for s in ("c1", "c2", "c3")],
    )
    w.family(
        "windows_cpu_core_frequency_mhz", "Core frequency in megahertz", "gauge", [({"core": c}, 2600.0) for c in cores]
    )
    w.family(
        "windows_cpu_parking_status",
        "Parking Status represents whether a processor is parked or not",
        "gauge",
        [({"core": c}, 0.0) for c in cores],
    )

    # --- net: physical RDMA ports, teaming, host vNICs ----------------------------------------
    nics = ["Mellanox ConnectX-6 Dx Adapter"] + [f"Mellanox ConnectX-6 Dx Adapter _{i}" for i in range(2, 5)]
    nics += [
        "Intel[R] Ethernet Connection X722 for 10GbE SFP+",
        "Intel[R] Ethernet Connection X722 for 10GbE SFP+ _2",
        "Microsoft Network Adapter Multiplexor Driver",
    ]
    nics += [f"Hyper-V Virtual Ethernet Adapter _{i}" for i in range(2, 12)]
    net_fams = [
        ("bytes_received_total", "(Network.BytesReceivedPerSec)", "counter"),
        ("bytes_sent_total", "(Network.BytesSentPerSec)", "counter"),
        ("bytes_total", "(Network.BytesTotalPerSec)", "counter"),
        ("output_queue_length_packets", "(Network.OutputQueueLength)", "gauge"),
        ("packets_outbound_discarded_total", "(Network.PacketsOutboundDiscarded)", "counter"),
        ("packets_outbound_errors_total", "(Network.PacketsOutboundErrors)", "counter"),
        ("packets_total", "(Network.PacketsPerSec)", "counter"),
        ("packets_received_discarded_total", "(Network.PacketsReceivedDiscarded)", "counter"),
        ("packets_received_errors_total", "(Network.PacketsReceivedErrors)", "counter"),
        ("packets_received_total", "(Network.PacketsReceivedPerSec)", "counter"),
        ("packets_received_unknown_total", "(Network.PacketsReceivedUnknown)", "counter"),
        ("packets_sent_total", "(Network.PacketsSentPerSec)", "counter"),
        ("current_bandwidth_bytes", "(Network.CurrentBandwidth)", "gauge"),
    ]
    for fam, help_text, mtype in net_fams:
        w.family(f"windows_net_{fam}", help_text, mtype, [({"nic": n}, w.counter()) for n in nics])
    macs = {n: "-".join(f"{rng.randrange(256):02X}" for _ in range(6)) for n in nics}
    friendly = {n: f"vEthernet (Port{i})" for i, n in enumerate(nics)}
    w.family(
        "windows_net_nic_info",
        "A metric with a constant '1' value labeled with the network interface's general information.",
        "gauge",
        [({"nic": n, "friendly_name": friendly[n], "mac": macs[n]}, 1.0) for n in nics],
    )
    addr_rows = []
    for i, n in enumerate(nics):
        addr_rows.append(({"nic": n, "friendly_name": friendly[n], "address": f"10.71.{i}.11", "family": "ipv4"}, 1.0))
        addr_rows.append(
            (
                {
                    "nic": n,
                    "friendly_name": friendly[n],
                    "address": f"fe80::{i + 1:x}:5dff:fe01:{i + 1:x}",
                    "family": "ipv6",
                },
                1.0,
            )
        )
    w.family(
        "windows_net_nic_address_info",
        "A metric with a constant '1' value labeled with the network interface's address information.",
        "gauge",
        addr_rows,
    )
    w.family(
        "windows_net_nic_operation_status",
        "The operational status for the interface as defined in RFC 2863 as IfOperStatus.",
        "gauge",
        [
            ({"nic": n, "status": s}, 1.0 if s == "up" else 0.0)
            for n in nics
            for s in ("down", "dormant", "lower layer down", "not present", "testing", "unknown", "up")
        ],
    )

    # --- performancecounter: RDMA Activity, SMB Direct Connection, Mellanox Port QoS -----------
    help_pc = "windows_exporter: custom Performance Counter metric"
    for counter in (
        "RDMA Accepted Connections",
        "RDMA Active Connections",
        "RDMA Completion Queue Errors",
        "RDMA Connection Errors",
        "RDMA Failed Connection Attempts",
        "RDMA Inbound Bytes/sec",
        "RDMA Inbound Frames/sec",
        "RDMA Initiated Connections",
        "RDMA Outbound Bytes/sec",
        "RDMA Outbound Frames/sec",
    ):
        w.family(
            _pc_name("RDMA Activity", counter),
            help_pc,
            "gauge" if "Active" in counter else "counter",
            [({"instance": n}, w.counter()) for n in nics[:4]],
        )
    conns = [
        f"10.71.{rng.randrange(1, 4)}.{rng.randrange(11, 40)}:445_10.71.{rng.randrange(1, 4)}."
        f"{rng.randrange(11, 40)}:{rng.randrange(49152, 65535)}"
        for _ in range(64)
    ]
    for counter in ("Bytes RDMA Read/sec", "Bytes RDMA Written/sec", "Bytes Sent/sec", "Bytes Received/sec"):
        w.family(
            _pc_name("SMB Direct Connection", counter),
            help_pc,
            "counter",
            [({"instance": c}, w.counter()) for c in conns],
        )
    for counter in (
        "Rcv Pause Frames",
        "Sent Pause Frames",
        "Rcv Pause Duration",
        "Sent Pause Duration",
        "Bytes Received",
        "Bytes Sent",
    ):
        w.family(
            _pc_name("Mellanox WinOF-2 Port QoS", counter),
            help_pc,
            "counter",
            [({"instance": f"{n} Prio {p}"}, w.counter()) for n in nics[:4] for p in range(8)],
        )

    # --- smbclient / smb server ------------------------------------------------------------
    smbc = [
        "data_queue_seconds_total",
        "read_queue_seconds_total",
        "write_queue_seconds_total",
        "request_seconds_total",
        "read_seconds_total",
        "write_seconds_total",
        "stalls_total",
        "requests_queued",
        "data_bytes_total",
        "requests_total",
        "metadata_requests_total",
        "read_bytes_total",
        "read_requests_total",
        "write_bytes_total",
        "write_requests_total",
        "read_bytes_via_smbdirect_total",
        "read_requests_via_smbdirect_total",
        "write_bytes_via_smbdirect_total",
        "write_requests_via_smbdirect_total",
        "turbo_io_reads_total",
        "turbo_io_writes_total",
    ]
    shares = [
        (f"hci-node-{s:02d}.corp.contoso.com", sh)
        for s in range(1, 9)
        for sh in ("ClusterStorage$", "IPC$", "SLB_Share")
    ]
    for fam in smbc:
        w.family(
            f"windows_smbclient_{fam}",
            f"SMB client shares {fam}",
            "gauge" if fam == "requests_queued" else "counter",
            [({"server": s, "share": sh}, w.counter()) for s, sh in shares],
        )
    srv_shares = [
        "_Total",
        "\\\\?\\GLOBALROOT\\Device\\Harddisk1\\ClusterPartition2\\",
        "ClusterStorage$",
        "IPC$",
        "ADMIN$",
        "C$",
    ] + [f"VMShare{i:02d}" for i in range(20)]
    for fam in (
        "current_open_file_count",
        "tree_connect_count",
        "received_bytes_total",
        "sent_bytes_total",
        "read_requests_count_total",
        "write_requests_count_total",
        "metadata_requests_count_total",
        "files_opened_count_total",
    ):
        w.family(
            f"windows_smb_server_shares_{fam}",
            f"SMB server shares {fam}",
            "counter" if fam.endswith("_total") else "gauge",
            [({"share": s}, w.counter()) for s in srv_shares],
        )

    # --- hyperv: per VM and per VM network adapter ---------------------------------------------
    vms = [f"aks-{'wl' if i % 3 else 'cp'}-{_guid(rng)[:8].lower()}-md-{i:04d}" for i in range(n_vm)]
    adapters = [f"{vm}_Network Adapter_{_guid(rng)}--{_guid(rng)}" for vm in vms for _ in range(2)]
    for fam in (
        "bytes_dropped_total",
        "bytes_received_total",
        "bytes_sent_total",
        "frames_dropped_total",
        "frames_received_total",
        "frames_sent_total",
        "directed_packets_received_total",
        "directed_packets_sent_total",
        "broadcast_packets_received_total",
        "multicast_packets_received_total",
        "dropped_packets_incoming_total",
        "dropped_packets_outgoing_total",
        "ipsec_offload_bytes_receive_total",
        "packets_received_total",
        "packets_sent_total",
    ):
        w.family(
            f"windows_hyperv_virtual_network_adapter_{fam}",
            f"Hyper-V virtual network adapter {fam}",
            "counter",
            [({"adapter": a}, w.counter()) for a in adapters],
        )
    for fam in ("guest_run_time", "hypervisor_run_time", "remote_run_time", "total_run_time"):
        w.family(
            f"windows_hyperv_vm_cpu_{fam}",
            f"Hyper-V VM CPU {fam}",
            "counter",
            [({"vm": vm, "core": str(c)}, w.seconds()) for vm in vms for c in range(8)],
        )
    for fam in (
        "physical",
        "physical_pages_allocated",
        "added_total",
        "pressure_average",
        "pressure_current",
        "removed_total",
        "add_operations_total",
        "remove_operations_total",
    ):
        w.family(
            f"windows_hyperv_dynamic_memory_vm_{fam}",
            f"Hyper-V dynamic memory {fam}",
            "gauge",
            [({"vm": vm}, w.counter()) for vm in vms],
        )

    # --- service -----------------------------------------------------------------------------
    svcs = [f"svc{i:03d}" for i in range(340)]
    w.family(
        "windows_service_info",
        "A metric with a constant '1' value labeled with service information",
        "gauge",
        [
            (
                {
                    "name": s,
                    "display_name": f"Windows Service Display Name Number {s[3:]} for Host",
                    "path_name": f"C:\\Windows\\system32\\svchost.exe -k netsvcs -p -s {s}",
                    "run_as": "LocalSystem",
                },
                1.0,
            )
            for s in svcs
        ],
    )
    w.family(
        "windows_service_state",
        "The state of the service (State)",
        "gauge",
        [
            ({"name": s, "state": st}, 1.0 if st == "running" else 0.0)
            for s in svcs
            for st in (
                "continue pending",
                "pause pending",
                "paused",
                "running",
                "start pending",
                "stop pending",
                "stopped",
            )
        ],
    )
    w.family(
        "windows_service_start_mode",
        "The start mode of the service (StartMode)",
        "gauge",
        [
            ({"name": s, "start_mode": m}, 1.0 if m == "auto" else 0.0)
            for s in svcs
            for m in ("auto", "boot", "disabled", "manual", "system")
        ],
    )

    # --- process -----------------------------------------------------------------------------
    pnames = [
        "vmwp",
        "vmmem",
        "svchost",
        "WmiPrvSE",
        "clussvc",
        "rhs",
        "MsMpEng",
        "powershell",
        "HealthService",
        "windows_exporter",
        "conhost",
        "lsass",
        "csrss",
        "wininit",
    ]
    procs = []
    for i in range(n_proc):
        pn = pnames[0] if i % 3 == 0 else rng.choice(pnames)
        cmd = (
            f'"C:\\Windows\\System32\\{pn}.exe" {_guid(rng)} 0x{rng.getrandbits(16):x} '
            f"-k LocalServiceNetworkRestricted -p -s {pn}Svc{i}"
        )
        procs.append((pn, str(1000 + i * 4), cmd))
    w.family(
        "windows_process_info",
        "Process information.",
        "gauge",
        [
            (
                {
                    "process": p,
                    "process_id": pid,
                    "creating_process_id": "748",
                    "process_group_id": "0",
                    "owner": "NT AUTHORITY\\SYSTEM",
                    "cmdline": cmd,
                },
                1.0,
            )
            for p, pid, cmd in procs
        ],
    )
    for fam, modes in (
        ("cpu_time_total", ("privileged", "user")),
        ("io_bytes_total", ("other", "read", "write")),
        ("io_operations_total", ("other", "read", "write")),
    ):
        w.family(
            f"windows_process_{fam}",
            f"Process {fam}",
            "counter",
            [({"process": p, "process_id": pid, "mode": m}, w.counter()) for p, pid, _ in procs for m in modes],
        )
    for fam in (
        "handles",
        "page_faults_total",
        "page_file_bytes",
        "pool_bytes",
        "priority_base",
        "private_bytes",
        "threads",
        "virtual_bytes",
        "working_set_private_bytes",
        "working_set_peak_bytes",
        "working_set_bytes",
        "start_time_seconds_timestamp",
    ):
        w.family(
            f"windows_process_{fam}",
            f"Process {fam}",
            "gauge",
            [({"process": p, "process_id": pid}, w.counter()) for p, pid, _ in procs],
        )

    # --- mscluster resources -----------------------------------------------------------------
    res = [
        (f"Virtual Machine Configuration {vms[i % len(vms)]}" if i % 2 else f"SCVMM {vms[i % len(vms)]} Resource {i}")
        for i in range(n_res)
    ]
    for fam in (
        "deadlock_timeout",
        "embedded_failure_action",
        "flags",
        "is_alive_poll_interval",
        "looks_alive_poll_interval",
        "monitor_process_id",
        "pending_timeout",
        "restart_action",
        "restart_delay",
        "restart_period",
        "restart_threshold",
        "retry_period_on_failure",
        "state",
        "subclass",
        "owner_node",
    ):
        w.family(
            f"windows_mscluster_resource_{fam}",
            f"MSCluster resource {fam}",
            "gauge",
            [({"type": "Virtual Machine", "owner_group": r[-20:], "name": r}, float(rng.randrange(64))) for r in res],
        )

    # --- logical disks (CSV volumes) ---------------------------------------------------------
    vols = ["C:", "HarddiskVolume3"] + [f"C:\\ClusterStorage\\UserStorage_{i}" for i in range(1, 9)]
    for fam in (
        "avg_read_requests_queued",
        "avg_write_requests_queued",
        "free_bytes",
        "idle_seconds_total",
        "read_bytes_total",
        "read_latency_seconds_total",
        "read_seconds_total",
        "reads_total",
        "requests_queued",
        "size_bytes",
        "split_ios_total",
        "write_bytes_total",
        "write_latency_seconds_total",
        "write_seconds_total",
        "writes_total",
    ):
        w.family(
            f"windows_logical_disk_{fam}",
            f"Logical disk {fam}",
            "counter",
            [({"volume": v}, w.counter()) for v in vols],
        )

    # --- exporter self metrics (summary + histogram shapes) ---------------------------------
    w.family(
        "windows_exporter_collector_duration_seconds",
        "windows_exporter: Duration of a collection.",
        "gauge",
        [
            ({"collector": c}, rng.random())
            for c in (
                "cpu",
                "net",
                "hyperv",
                "process",
                "service",
                "smb",
                "smbclient",
                "mscluster",
                "performancecounter",
                "logical_disk",
            )
        ],
    )
    w.family(
        "go_gc_duration_seconds",
        "A summary of the wall-time pause (stop-the-world) duration in garbage collection cycles.",
        "summary",
        [({"quantile": q}, rng.random() / 1000) for q in ("0", "0.25", "0.5", "0.75", "1")],
    )
    w.sample("go_gc_duration_seconds_sum", {}, 0.0123)
    w.sample("go_gc_duration_seconds_count", {}, 4711.0)
    buckets = ("0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf")
    w.family(
        "promhttp_metric_handler_request_duration_seconds",
        "Histogram of scrape handler durations.",
        "histogram",
        [({"le": b}, float(i * 7)) for i, b in enumerate(buckets)],
    )
    w.sample("promhttp_metric_handler_request_duration_seconds_sum", {}, 1234.5)
    w.sample("promhttp_metric_handler_request_duration_seconds_count", {}, 77.0)
    w.family(
        "windows_os_info",
        "Contains full product name & version in labels",
        "gauge",
        [
            (
                {
                    "product": "Microsoft Azure Stack HCI",
                    "version": "10.0.25398",
                    "major_version": "10",
                    "minor_version": "0",
                    "build_number": "25398",
                    "revision": "1189",
                },
                1.0,
            )
        ],
    )
    return "".join(w.parts).encode()


_SAMPLE_VALUE = re.compile(rb"^([^#\n][^\n]*[} ]|[a-zA-Z_:][a-zA-Z0-9_:]* )([-+0-9.eE]+|NaN|[+-]Inf)$", re.M)


def vary_values(body: bytes, k: int) -> bytes:
    """The same exposition one scrape later: every finite sample value changed, nothing else.

    Real scrapes of a target repeat their series and change their numbers; a benchmark that
    serves one identical body would flatter every cache and every compressor.
    """
    if k == 0:
        return body

    def bump(m: re.Match[bytes]) -> bytes:
        v = m.group(2)
        if not v[:1].isdigit():
            return m.group(0)
        return m.group(1) + go_float(float(v) + k * (1 + float(v) * 1e-3)).encode()

    return _SAMPLE_VALUE.sub(bump, body)


def _time(fn: Callable[[], int], repeat: int) -> tuple[float, float, int]:
    """Median wall and CPU seconds of ``repeat`` runs (CPU time is steadier on a shared machine)."""
    walls, cpus = [], []
    n = 0
    for _ in range(repeat):
        gc.collect()
        t0, c0 = time.perf_counter(), time.process_time()
        n = fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus), n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="hciwatch Prometheus parser vs prometheus_client")
    ap.add_argument("--samples", type=int, default=DEFAULT_SAMPLES, help="approximate sample count")
    ap.add_argument("--repeat", type=int, default=5, help="timed runs of our parser (median reported)")
    ap.add_argument("--peer-repeat", type=int, default=1, help="timed runs of prometheus_client")
    ap.add_argument("--write", type=Path, help="also write the payload to this file")
    ap.add_argument("--code", type=Path, help="measure the collector package of this checkout (default: this one)")
    args = ap.parse_args(argv)

    body = generate_payload(args.samples)
    if args.write:
        args.write.write_bytes(body)
    record = RawRecord(
        ts=datetime(2026, 11, 20, 10, 0, tzinfo=UTC),
        kind="prometheus",
        target="hci-node-01:9182",
        host="hci-node-01",
        body=body,
        labels={"cluster": "hci-1"},
    )

    def ours() -> int:
        return int(parse_record(record, DEFAULT_CATALOG).samples.num_rows)

    # the same target scraped again: same series, new values (what a collector sees every scrape)
    variants = [
        dataclasses.replace(record, body=vary_values(body, k), ts=record.ts + timedelta(seconds=30 * k)) for k in (1, 2)
    ]
    turn = itertools.count()

    def repeat_scrape() -> int:
        rec = variants[next(turn) % len(variants)]
        return int(parse_record(rec, DEFAULT_CATALOG).samples.num_rows)

    def peer() -> int:
        from prometheus_client.parser import text_string_to_metric_families

        return sum(len(f.samples) for f in text_string_to_metric_families(body.decode()))

    os.environ["HCIWATCH_PARSE_REUSE"] = "0"  # the cold parser: every payload parsed in full
    ours()  # warm-up (imports, regex compilation)
    w_ours, c_ours, n_ours = _time(ours, args.repeat)
    os.environ["HCIWATCH_PARSE_REUSE"] = "1"
    repeat_scrape()  # leaves the target's skeleton
    w_rep, c_rep, n_rep = _time(repeat_scrape, args.repeat)
    w_peer, c_peer, n_peer = _time(peer, args.peer_repeat)
    mb = len(body) / 1e6
    print(f"code: {CODE_ROOT}")
    print(f"payload: {mb:.1f} MB, {n_ours} samples parsed by hciwatch, {n_peer} by prometheus_client")
    for label, wall, cpu, n in (
        ("hciwatch parse_record", w_ours, c_ours, n_ours),
        ("  same target, new values", w_rep, c_rep, n_rep),
        ("prometheus_client parser", w_peer, c_peer, n_peer),
    ):
        print(
            f"{label:26s} wall {wall * 1000:8.1f} ms {n / wall:12,.0f} samples/s | "
            f"CPU {cpu * 1000:8.1f} ms {n / cpu:12,.0f} samples/s"
        )
    print(
        f"ratio (samples/s, hciwatch / prometheus_client): wall {(n_ours / w_ours) / (n_peer / w_peer):.1f}x, "
        f"CPU {(n_ours / c_ours) / (n_peer / c_peer):.1f}x; a repeated scrape of the same target: "
        f"CPU {(n_rep / c_rep) / (n_peer / c_peer):.1f}x"
    )
    print(
        f"RESULT parse ratio_cpu_cold={(n_ours / c_ours) / (n_peer / c_peer):.2f} "
        f"ratio_cpu_repeat={(n_rep / c_rep) / (n_peer / c_peer):.2f} samples={n_ours}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

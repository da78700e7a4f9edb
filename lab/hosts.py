"""HCI hosts as windows_exporter sees them: NICs, SMB client shares, RDMA and PFC counters.

The exporter is modelled as started with ``--collectors.enabled=net,smbclient,performancecounter``,
``--collector.net.nic-include`` limited to the management vNIC and the RDMA adapters,
``--web.disable-exporter-metrics`` (no go_*/process_* series) and this ``performancecounter``
configuration (raw values, default metric names, default ``instance`` label)::

    - name: rdma
      object: "RDMA Activity"
      instances: ["*"]
      counters:                        # type: counter for cumulative counts, gauge otherwise
        - {name: "RDMA Accepted Connections", type: counter}
        - {name: "RDMA Active Connections", type: gauge}
        - {name: "RDMA Completion Queue Errors", type: counter}
        - ... (all ten RDMA Activity counters)
    - name: mlxqos
      object: "Mellanox WinOF-2 Port QoS"
      instances: ["*"]                 # "<adapter> Prio 0" .. "<adapter> Prio 7"
      counters:
        - {name: "Rcv Pause Frames", type: counter}
        - {name: "Sent Pause Frames", type: counter}

How the numbers behave (all cumulative counters raw, as windows_exporter reports them):

* SMB client traffic from each host to every other host of its Azure Local cluster's
  ``ClusterStorage$`` share (``SiteSpec.cluster_nodes``; never across clusters) follows a
  per-host working-hours load with slow noise; latency is ~1 ms with a lognormal body and a
  Pareto tail (``request_seconds_total`` is tick-accumulated, i.e. Δseconds/Δrequests = mean
  latency). RDMA Activity bytes are the SMB reads and writes the host sends and receives, split
  over its two adapters. RDMA does not pass through the Windows stack, so the adapters' Network
  Interface counters only carry the little non-RDMA traffic.
* The lossless priority sees a few pause frames per second normally (a different rate per host,
  rising with load, with rare micro-bursts); every other priority sees none (PFC is only enabled
  on the lossless class).
* Incidents and confounders bend these series as described in :mod:`lab.scenario`.
"""

from __future__ import annotations

import os
import tempfile
from typing import IO

import numpy as np
import numpy.typing as npt

from collector.catalog import windows_perfcounter_metric
from lab.promtext import Exposition, RowFormatter
from lab.rand import ar1, stream
from lab.scenario import BackupBurst, HostReboot, IncastBursts, PfcStorm, Scenario, ScrapeGap
from lab.timeline import BOOL, F64, Grid, load
from lab.world import World

I64 = npt.NDArray[np.int64]

PERF_HELP = "windows_exporter: custom Performance Counter metric"
RDMA_OBJECT = "RDMA Activity"
QOS_OBJECT = "Mellanox WinOF-2 Port QoS"
OPER_STATUSES = ("up", "down", "testing", "unknown", "dormant", "not present", "lower layer down")
TICKS = 10_000_000  # PDH 100-ns ticks per second; windows_exporter multiplies by 1e-7

NET_FAMILIES: dict[str, tuple[str, str]] = {
    "bytes_received_total": ("(Network.BytesReceivedPerSec)", "counter"),
    "bytes_sent_total": ("(Network.BytesSentPerSec)", "counter"),
    "bytes_total": ("(Network.BytesTotalPerSec)", "counter"),
    "output_queue_length_packets": ("(Network.OutputQueueLength)", "gauge"),
    "packets_outbound_discarded_total": ("(Network.PacketsOutboundDiscarded)", "counter"),
    "packets_outbound_errors_total": ("(Network.PacketsOutboundErrors)", "counter"),
    "packets_received_discarded_total": ("(Network.PacketsReceivedDiscarded)", "counter"),
    "packets_received_errors_total": ("(Network.PacketsReceivedErrors)", "counter"),
    "packets_received_total": ("(Network.PacketsReceivedPerSec)", "counter"),
    "packets_received_unknown_total": ("(Network.PacketsReceivedUnknown)", "counter"),
    "packets_total": ("(Network.PacketsPerSec)", "counter"),
    "packets_sent_total": ("(Network.PacketsSentPerSec)", "counter"),
    "current_bandwidth_bytes": ("(Network.CurrentBandwidth)", "gauge"),
}

SMB_HELP: dict[str, str] = {
    "data_queue_seconds_total": "Seconds requests waited on queue on this share",
    "read_queue_seconds_total": "Seconds read requests waited on queue on this share",
    "write_queue_seconds_total": "Seconds write requests waited on queue on this share",
    "request_seconds_total": "Seconds waiting for requests on this share",
    "stalls_total": "The number of requests delayed based on insufficient credits on this share",
    "requests_queued": "The point in time number of requests outstanding on this share",
    "data_bytes_total": "The bytes read or written on this share",
    "requests_total": "The requests on this share",
    "metadata_requests_total": "The metadata requests on this share",
    "read_bytes_via_smbdirect_total": "The bytes read from this share via RDMA direct placement",
    "read_bytes_total": "The bytes read on this share",
    "read_requests_via_smbdirect_total": "The read requests on this share via RDMA direct placement",
    "read_requests_total": "The read requests on this share",
    "turbo_io_reads_total": "The read requests that go through Turbo I/O",
    "turbo_io_writes_total": "The write requests that go through Turbo I/O",
    "write_bytes_via_smbdirect_total": "The written bytes to this share via RDMA direct placement",
    "write_bytes_total": "The bytes written on this share",
    "write_requests_via_smbdirect_total": "The write requests to this share via RDMA direct placement",
    "write_requests_total": "The write requests on this share",
    "read_seconds_total": "Seconds waiting for read requests on this share",
    "write_seconds_total": "Seconds waiting for write requests on this share",
}

RDMA_COUNTERS: tuple[tuple[str, str], ...] = (
    ("RDMA Accepted Connections", "counter"),
    ("RDMA Active Connections", "gauge"),
    ("RDMA Completion Queue Errors", "counter"),
    ("RDMA Connection Errors", "counter"),
    ("RDMA Failed Connection Attempts", "counter"),
    ("RDMA Inbound Bytes/sec", "counter"),
    ("RDMA Inbound Frames/sec", "counter"),
    ("RDMA Initiated Connections", "counter"),
    ("RDMA Outbound Bytes/sec", "counter"),
    ("RDMA Outbound Frames/sec", "counter"),
)

CHUNK = 256  # scrapes rendered per formatter call, at most
RENDER_BUDGET = 128 << 20  # bytes of rendered, not yet handed out bodies over all hosts (about)
MATRIX_BUDGET = 64 << 20  # bytes of host series kept in memory; the rest wait in a scratch file
BYTES_PER_SLOT = 120  # text per changing series in a body (name, labels, value), roughly
DEFAULT_PAUSE_BASELINE = (0.4, 1.6, 0.15, 3.2, 0.8, 0.3, 2.2, 1.0)


class SeriesStore:
    """Every host's series matrix (ticks × series, float64), in memory up to a byte budget, then
    in an unlinked scratch file read back a block of ticks at a time.

    Why: the matrices are hosts × ticks × series — 500 hosts over two days is gigabytes, far more
    than the bodies rendered from them at any moment (one block per host, see ``RENDER_BUDGET``).
    The numbers are the same wherever a matrix is kept, so the bytes a scenario renders do not
    depend on the budget; the demo and the test scenarios stay far below it and never touch disk.
    """

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.in_memory = 0
        self.spilled = 0
        self._held: list[F64 | tuple[int, int, int]] = []  # a matrix, or (offset, ticks, columns) in the file
        self._file: IO[bytes] | None = None
        self.max_columns = 0

    def append(self, matrix: F64) -> None:
        """Keep ``matrix`` (C-contiguous) as the next host's; written out once the budget is spent."""
        self.max_columns = max(self.max_columns, matrix.shape[1])
        if self.in_memory + matrix.nbytes <= self.budget:
            self.in_memory += matrix.nbytes
            self._held.append(matrix)
            return
        if self._file is None:
            # lives as long as the store (the generator rendering from it); unlinked from the start,
            # so the space is returned when it is collected or the process ends, however it ends
            self._file = tempfile.TemporaryFile(prefix="hciwatch-lab-series-")  # noqa: SIM115
        offset = self._file.seek(0, os.SEEK_END)
        np.ascontiguousarray(matrix).tofile(self._file)
        self._file.flush()
        self.spilled += matrix.nbytes
        self._held.append((offset, matrix.shape[0], matrix.shape[1]))

    def __len__(self) -> int:
        return len(self._held)

    def rows(self, h: int, lo: int, hi: int) -> F64:
        """Rows ``lo:hi`` (ticks) of host ``h``'s matrix."""
        held = self._held[h]
        if not isinstance(held, tuple):
            return held[lo:hi]
        offset, ticks, cols = held
        lo, hi = max(0, min(lo, ticks)), max(0, min(hi, ticks))
        if hi <= lo or cols == 0:
            return np.zeros((max(0, hi - lo), cols))
        assert self._file is not None
        raw = os.pread(self._file.fileno(), (hi - lo) * cols * 8, offset + lo * cols * 8)
        return np.frombuffer(raw, dtype=np.float64).reshape(hi - lo, cols)


class HostModel:
    """Every host's series over the whole scenario, ready to render one scrape at a time."""

    def __init__(self, scenario: Scenario, world: World, grid: Grid) -> None:
        self.scenario = scenario
        self.world = world
        self.grid = grid
        site = scenario.site
        n_hosts = len(site.hosts)
        self.n_hosts = n_hosts
        g = grid
        sc = scenario
        dur = sc.duration.total_seconds()
        rng0 = stream(sc.seed, "hosts")
        self.loads = [
            load(
                g,
                stream(sc.seed, "load", h),
                scale=float(rng0.uniform(0.8, 1.2)),
                phase_h=float(rng0.uniform(-0.6, 0.6)),
            )
            for h in site.hosts
        ]
        idx = {h: i for i, h in enumerate(site.hosts)}
        # --- incident masks -----------------------------------------------------------------
        none = np.zeros(g.n, dtype=np.bool_)
        self.down = [none.copy() for _ in range(n_hosts)]  # rebooting: not running
        self.no_scrape = [none.copy() for _ in range(n_hosts)]
        self.reset_at: list[list[int]] = [[] for _ in range(n_hosts)]
        self.backup = [none.copy() for _ in range(n_hosts)]
        storm = [[none.copy() for _ in site.rdma_adapters] for _ in range(n_hosts)]  # storm source
        spread = [none.copy() for _ in range(n_hosts)]
        # routine incast bursts: a multiplier per tick (1 outside bursts), own random stream so the
        # other series of a scenario without them are unchanged
        self.incast = [np.ones(g.n) for _ in range(n_hosts)]
        for inc in sc.incidents:
            lo_td, hi_td = inc.window(sc.duration)
            lo, hi = lo_td.total_seconds(), hi_td.total_seconds()
            if isinstance(inc, HostReboot):
                h = idx[inc.host]
                m = (g.sec >= lo) & (g.sec < hi)
                self.down[h] |= m
                self.no_scrape[h] |= m
                if hi < dur:
                    self.reset_at[h].append(g.index_at_or_after(hi))
            elif isinstance(inc, ScrapeGap):
                self.no_scrape[idx[inc.host]] |= (g.sec >= lo) & (g.sec < hi)
            elif isinstance(inc, IncastBursts):
                r = stream(sc.seed, "incast", inc.host, lo)
                n_bursts = int(r.poisson(inc.per_hour * (hi - lo) / 3600.0))
                for a_s, d_s, f in zip(
                    r.uniform(lo, hi, n_bursts),
                    r.uniform(120, 300, n_bursts),
                    r.lognormal(np.log(8.0), 0.5, n_bursts),
                    strict=True,
                ):
                    m = g.mask(float(a_s), float(a_s + d_s))
                    self.incast[idx[inc.host]] = np.where(
                        m, np.maximum(self.incast[idx[inc.host]], f), self.incast[idx[inc.host]]
                    )
            elif isinstance(inc, BackupBurst):
                for name in inc.hosts or site.hosts:
                    self.backup[idx[name]] |= g.mask(lo, hi)
            elif isinstance(inc, PfcStorm):
                storm[idx[inc.host]][inc.adapter] |= g.mask(lo, hi)
                if inc.spread_to is not None:
                    spread[idx[inc.spread_to]] |= g.mask(lo + inc.spread_delay.total_seconds(), hi)
        storm_host = [np.logical_or.reduce(s) for s in storm]
        self._storm, self._storm_host, self._spread = storm, storm_host, spread
        # --- SMB client pairs ------------------------------------------------------------------
        # A pair's increments (21 series per ordered pair of a cluster's nodes, 240 pairs at 16
        # nodes) are made from its own stream whenever they are needed: in full when its client
        # is built, and again when its server is built first. Only the two series a later-built
        # server needs (the bytes it serves) are kept meanwhile: with every pair kept in full
        # until both ends were built, a cluster's pairs over two days were hundreds of megabytes.
        self._lat_base = rng0.uniform(0.0007, 0.0012, size=n_hosts)
        self.uptime_ticks = rng0.uniform(3, 40, size=n_hosts) * 86400.0 / g.dt
        self.served: dict[tuple[int, int], tuple[I64, I64]] = {}  # (client, server) → read, write bytes
        # --- per-host series -------------------------------------------------------------------
        self.formatters: list[RowFormatter] = []
        self.matrices = SeriesStore(MATRIX_BUDGET)
        self._chunks: list[tuple[int, list[str | None]]] = [(-1, []) for _ in range(n_hosts)]
        for h in range(n_hosts):
            segments, matrix = self._host_series(h)
            self.formatters.append(RowFormatter(segments))
            self.matrices.append(matrix)
            del matrix
        assert not self.served, "every pair's server was built"
        # Bodies are rendered a block of ticks at a time (one formatter call per block), a block
        # small enough that every host's pending bodies together stay within RENDER_BUDGET.
        body_bytes = max(1, self.matrices.max_columns * BYTES_PER_SLOT)
        self.block = int(min(CHUNK, max(1, RENDER_BUDGET // (body_bytes * max(1, n_hosts)))))

    def _pair(self, c: int, s: int) -> dict[str, I64]:
        """The increments of client ``c`` → server ``s``; the bytes are kept for ``s`` if it is built later."""
        inc = self._smb_pair(c, s, float(self._lat_base[c]))
        if s > c:
            self.served[(c, s)] = (inc["read_bytes_total"], inc["write_bytes_total"])
        return inc

    def _served_bytes(self, c: int, s: int) -> tuple[I64, I64]:
        """The read and write bytes server ``s`` serves client ``c`` (kept since ``c`` was built, or made now)."""
        kept = self.served.pop((c, s), None)
        if kept is not None:
            return kept
        inc = self._smb_pair(c, s, float(self._lat_base[c]))
        return inc["read_bytes_total"], inc["write_bytes_total"]

    # ------------------------------------------------------------------------------------------
    def _smb_pair(self, c: int, s: int, lat_c: float) -> dict[str, I64]:
        """Per-tick increments of one client→server share (counts, bytes, 100-ns ticks)."""
        g, sc = self.grid, self.scenario
        rng = stream(sc.seed, "smb", c, s)
        dt = g.dt
        w = float(rng.uniform(0.7, 1.3))
        rate = 1200.0 * self.loads[c] * w * np.exp(ar1(rng, g.n, 0.9, 0.12))
        involved_storm = self._storm_host[c] | self._storm_host[s]
        involved_spread = (self._spread[c] | self._spread[s]) & ~involved_storm
        rate = rate * np.where(involved_storm, 0.5, 1.0) * np.where(involved_spread, 0.8, 1.0)
        rate = np.where(self.down[s] | self.down[c], 0.0, rate)
        backup_rate = np.where(self.backup[c] & ~self.down[s], 300.0 * np.exp(rng.normal(0, 0.1, g.n)), 0.0)
        lat = lat_c * (0.85 + 0.3 * self.loads[c]) * np.exp(rng.normal(0.0, 0.18, g.n))
        tail = rng.random(g.n) < 0.015
        lat = np.where(tail, lat * np.minimum(1.0 + rng.pareto(2.0, g.n), 15.0), lat)
        storm_lat = np.clip(0.035 * np.exp(ar1(rng, g.n, 0.8, 0.35)), 0.012, 0.09)
        lat = np.where(involved_storm, storm_lat, lat)
        lat = np.where(involved_spread, lat * rng.uniform(3.0, 8.0, g.n), lat)
        lat_b = 0.0013 * np.exp(rng.normal(0.0, 0.15, g.n))
        reads_n = rng.poisson(rate * 0.62 * dt)
        reads_b = rng.poisson(backup_rate * dt)
        writes = rng.poisson(rate * 0.38 * dt)
        read_bytes = np.rint(reads_n * 49152.0 * np.exp(rng.normal(0, 0.08, g.n))) + reads_b * 524288
        write_bytes = np.rint(writes * 32768.0 * np.exp(rng.normal(0, 0.08, g.n)))
        read_ticks = np.rint((reads_n * lat * 0.85 + reads_b * lat_b) * TICKS)
        write_ticks = np.rint(writes * lat * 1.25 * TICKS)
        queue_factor = rng.uniform(1.0, 1.05, g.n)
        stall_p = np.where(involved_storm, 0.004, 2e-6)
        out = {
            "read_requests_total": reads_n + reads_b,
            "write_requests_total": writes,
            "read_bytes_total": read_bytes,
            "write_bytes_total": write_bytes,
            "read_seconds_total": read_ticks,
            "write_seconds_total": write_ticks,
            "read_queue_seconds_total": np.rint(read_ticks * queue_factor),
            "write_queue_seconds_total": np.rint(write_ticks * queue_factor),
            "metadata_requests_total": rng.poisson(rate * 0.05 * dt),
            "stalls_total": rng.poisson((reads_n + writes) * stall_p),
        }
        out["requests_total"] = out["read_requests_total"] + writes
        out["data_bytes_total"] = read_bytes + write_bytes
        out["request_seconds_total"] = read_ticks + write_ticks
        out["data_queue_seconds_total"] = out["read_queue_seconds_total"] + out["write_queue_seconds_total"]
        out["read_bytes_via_smbdirect_total"] = read_bytes
        out["write_bytes_via_smbdirect_total"] = write_bytes
        out["read_requests_via_smbdirect_total"] = out["read_requests_total"]
        out["write_requests_via_smbdirect_total"] = writes
        inflight = (reads_n + writes) / dt * lat + reads_b / dt * lat_b
        out["requests_queued"] = rng.poisson(inflight)  # a gauge, not an increment
        return {k: np.asarray(v, dtype=np.int64) for k, v in out.items()}

    # ------------------------------------------------------------------------------------------
    def _accumulate(self, h: int, inc: npt.NDArray[np.int64] | F64, init: float) -> F64:
        """Cumulative counter from per-tick increments; restarts from 0 after a reboot."""
        cum = np.cumsum(np.asarray(inc, dtype=np.float64)) + init
        for r in self.reset_at[h]:
            if r < self.grid.n:
                cum[r:] = np.cumsum(np.asarray(inc[r:], dtype=np.float64))
        return cum

    def _host_series(self, h: int) -> tuple[list[str], F64]:
        sc, g, world = self.scenario, self.grid, self.world
        site = sc.site
        host = world.hosts[h]
        rng = stream(sc.seed, "host", host.name)
        dt = g.dt
        up = float(self.uptime_ticks[h])
        L = self.loads[h]
        ex = Exposition()
        cols: dict[int, F64] = {}

        def counter(
            name: str,
            help_text: str,
            labels: dict[str, str],
            inc: npt.NDArray[np.int64] | F64,
            init: float,
            mtype: str = "counter",
            scale: float = 1.0,
        ) -> None:
            col = ex.add(name, help_text, mtype, labels, None)
            assert col is not None
            cum = self._accumulate(h, inc, float(np.rint(init)))
            cols[col] = cum * scale if scale != 1.0 else cum

        def gauge(
            name: str, help_text: str, labels: dict[str, str], values: F64 | npt.NDArray[np.int64], mtype: str = "gauge"
        ) -> None:
            col = ex.add(name, help_text, mtype, labels, None)
            assert col is not None
            cols[col] = np.asarray(values, dtype=np.float64)

        def const(name: str, help_text: str, mtype: str, labels: dict[str, str], value: float) -> None:
            ex.add(name, help_text, mtype, labels, value)

        # --- windows_exporter self metrics ----------------------------------------------------
        for coll, base in (("net", 0.012), ("performancecounter", 0.031), ("smbclient", 0.009)):
            lab = {"collector": coll}
            gauge(
                "windows_exporter_collector_duration_seconds",
                "windows_exporter: Duration of a collection.",
                lab,
                np.round(base * np.exp(rng.normal(0, 0.25, g.n)), 7),
            )
            const(
                "windows_exporter_collector_success",
                "windows_exporter: Whether the collector was successful.",
                "gauge",
                lab,
                1.0,
            )
            const(
                "windows_exporter_collector_timeout",
                "windows_exporter: Whether the collector timed out.",
                "gauge",
                lab,
                0.0,
            )

        # --- SMB client shares ----------------------------------------------------------------
        inbound = np.zeros(g.n)
        outbound = np.zeros(g.n)
        # (the same pairs, in the same order, as a loop over every (client, server) pair of the
        # host's Azure Local cluster: SMB traffic does not leave a cluster)
        peers = site.cluster_peers(h)
        lo, hi = peers.start, peers.stop
        mine = [(c, h) for c in range(lo, h)] + [(h, s) for s in peers if s != h] + [(c, h) for c in range(h + 1, hi)]
        for c, s in mine:
            if c == h:
                inc = self._pair(c, s)
                inbound += inc["read_bytes_total"]
                outbound += inc["write_bytes_total"]
                lab = {"server": site.hosts[s], "share": site.smb_share}
                mean_rate = {k: float(v.mean()) for k, v in inc.items()}
                for fam, help_text in SMB_HELP.items():
                    fname = "windows_smbclient_" + fam
                    if fam == "requests_queued":
                        gauge(fname, help_text, lab, inc[fam])
                    elif fam.startswith("turbo_io"):
                        const(fname, help_text, "counter", lab, 0.0)
                    elif "seconds" in fam:
                        counter(
                            fname, help_text, lab, inc[fam], mean_rate[fam] * up * rng.uniform(0.9, 1.1), scale=1e-7
                        )
                    else:
                        counter(fname, help_text, lab, inc[fam], mean_rate[fam] * up * rng.uniform(0.9, 1.1))
            elif s == h:
                read_b, write_b = self._served_bytes(c, s)
                inbound += write_b
                outbound += read_b

        # --- RDMA Activity and PFC per adapter ------------------------------------------------
        n_ad = len(host.adapters)
        # SMB multichannel spreads traffic over the adapters, not perfectly evenly.
        if n_ad > 1:
            share0 = np.clip(1.0 / n_ad + ar1(rng, g.n, 0.98, 0.02), 0.05, 0.95)
            shares = [share0] + [(1.0 - share0) / (n_ad - 1) for _ in range(n_ad - 1)]
        else:
            shares = [np.ones(g.n)]
        for a in range(n_ad):
            if self._storm[h][a].any():
                weak = np.where(self._storm[h][a], 0.25, shares[a])
                moved = shares[a] - weak
                shares[a] = weak
                for b in range(n_ad):
                    if b != a:
                        shares[b] = shares[b] + moved / max(1, n_ad - 1)
        peers_up = np.zeros(g.n)
        peer_down_starts = np.zeros(g.n)
        peer_up_again = np.zeros(g.n)
        peer_down = np.zeros(g.n)
        for p in peers:
            if p == h:
                continue
            d = self.down[p]
            peers_up += ~d
            peer_down += d
            starts = d & ~np.concatenate(([False], d[:-1]))
            ends = ~d & np.concatenate(([False], d[:-1]))
            peer_down_starts += starts
            peer_up_again += ends
        baseline = (
            site.pause_baseline[h] if site.pause_baseline else DEFAULT_PAUSE_BASELINE[h % len(DEFAULT_PAUSE_BASELINE)]
        )
        storm_any = self._storm_host[h]
        for a, ad in enumerate(host.adapters):
            lab = {"instance": ad.instance}
            st = self._storm[h][a]
            st_other = storm_any & ~st
            sp = self._spread[h]
            bg = 2e6 * dt * np.exp(rng.normal(0, 0.3, g.n))
            in_b = np.rint(inbound * shares[a] + bg)
            out_b = np.rint(outbound * shares[a] + bg * 0.8)
            in_f = np.rint(in_b / rng.uniform(3300, 3700, g.n))
            out_f = np.rint(out_b / rng.uniform(3300, 3700, g.n))
            base_conn = 2.0 * peers_up
            jitter = rng.choice([-1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0], size=g.n)
            active = np.maximum(0.0, base_conn + jitter)
            active = np.where(st, np.floor(rng.uniform(0, 1, g.n) * (base_conn + 1)), active)
            initiated = rng.poisson(0.0003 * dt, g.n) + 2 * peer_up_again + rng.poisson(np.where(st, 0.02 * dt, 0.0))
            accepted = rng.poisson(0.0003 * dt, g.n) + 2 * peer_up_again + rng.poisson(np.where(st, 0.02 * dt, 0.0))
            failed = rng.poisson(
                3e-7 * dt
                + 0.03 * dt * peer_down
                + np.where(st, 0.08 * dt, 0.0)
                + np.where(st_other, 0.005 * dt, 0.0)
                + np.where(sp, 0.002 * dt, 0.0)
            )
            conn_err = peer_down_starts + rng.poisson(np.where(st, 0.02 * dt, 0.0))
            cq_err = rng.poisson(np.where(st, 0.25 * dt, 0.0) + np.where(st_other, 0.01 * dt, 0.0))
            days = up * dt / 86400.0
            incs: dict[str, tuple[F64 | npt.NDArray[np.int64], float]] = {
                "RDMA Accepted Connections": (accepted, 2 * (len(peers) - 1) + days * rng.uniform(0.5, 3)),
                "RDMA Completion Queue Errors": (cq_err, float(rng.integers(0, 2))),
                "RDMA Connection Errors": (conn_err, float(rng.integers(0, 4))),
                "RDMA Failed Connection Attempts": (failed, float(rng.integers(0, 6))),
                "RDMA Inbound Bytes/sec": (in_b, float(in_b.mean()) * up * rng.uniform(0.9, 1.1)),
                "RDMA Inbound Frames/sec": (in_f, float(in_f.mean()) * up * rng.uniform(0.9, 1.1)),
                "RDMA Initiated Connections": (initiated, 2 * (len(peers) - 1) + days * rng.uniform(0.5, 3)),
                "RDMA Outbound Bytes/sec": (out_b, float(out_b.mean()) * up * rng.uniform(0.9, 1.1)),
                "RDMA Outbound Frames/sec": (out_f, float(out_f.mean()) * up * rng.uniform(0.9, 1.1)),
            }
            for cname, mtype in RDMA_COUNTERS:
                metric = windows_perfcounter_metric(RDMA_OBJECT, cname)
                if mtype == "gauge":
                    gauge(metric, PERF_HELP, lab, active)
                else:
                    inc_arr, init = incs[cname]
                    counter(metric, PERF_HELP, lab, inc_arr, init)
            # PFC pause frames per priority; only the lossless priority ever pauses.
            load_term = 0.4 + 0.8 * L
            rcv_rate = baseline * load_term * np.exp(ar1(rng, g.n, 0.9, 0.35))
            burst = rng.random(g.n) < 0.004
            rcv_rate = np.where(burst, rcv_rate * rng.uniform(4, 12, g.n), rcv_rate) * self.incast[h]
            sent_rate = baseline * 0.3 * load_term * np.exp(ar1(rng, g.n, 0.9, 0.4)) * self.incast[h]
            storm_level = 15000.0 * np.exp(ar1(rng, g.n, 0.7, 0.4))
            sent_rate = np.where(st, storm_level, sent_rate)
            rcv_rate = np.where(st, rcv_rate * 60.0, rcv_rate)
            sent_rate = np.where(st_other, sent_rate * 3.0, sent_rate)
            rcv_rate = np.where(st_other, rcv_rate * 3.0, rcv_rate)
            spread_level = 1500.0 * np.exp(ar1(rng, g.n, 0.7, 0.4))
            rcv_rate = np.where(sp & ~storm_any, spread_level, rcv_rate)
            sent_rate = np.where(sp & ~storm_any, sent_rate * 2.0, sent_rate)
            rcv_metric = windows_perfcounter_metric(QOS_OBJECT, "Rcv Pause Frames")
            sent_metric = windows_perfcounter_metric(QOS_OBJECT, "Sent Pause Frames")
            for prio in range(8):
                plab = {"instance": f"{ad.instance} Prio {prio}"}
                if prio == site.pfc_priority:
                    counter(
                        rcv_metric,
                        PERF_HELP,
                        plab,
                        rng.poisson(rcv_rate * dt),
                        baseline * 0.8 * up * dt * rng.uniform(0.8, 1.2),
                    )
                    counter(
                        sent_metric,
                        PERF_HELP,
                        plab,
                        rng.poisson(sent_rate * dt),
                        baseline * 0.24 * up * dt * rng.uniform(0.8, 1.2),
                    )
                else:
                    const(rcv_metric, PERF_HELP, "counter", plab, 0.0)
                    const(sent_metric, PERF_HELP, "counter", plab, 0.0)

        # --- Network Interface (net collector) ------------------------------------------------
        nics: list[tuple[str, str, str, str, float, float, float, int]] = [
            (site.management_nic, site.management_alias, host.mgmt_mac, host.mgmt_ip, 1.2e6, 0.8e6, 1.25e9, -1)
        ]
        for a, ad in enumerate(host.adapters):
            nics.append((ad.instance, ad.alias, ad.mac, ad.ip, 4.5e5, 3.8e5, 1.25e10, a))
        for nic, alias, mac, ip, rx_rate, tx_rate, bandwidth, a in nics:
            lab = {"nic": nic}
            rx = np.rint(rx_rate * (0.4 + L) * dt * np.exp(ar1(rng, g.n, 0.95, 0.3)))
            tx = np.rint(tx_rate * (0.4 + L) * dt * np.exp(ar1(rng, g.n, 0.95, 0.3)))
            rx_p = np.rint(rx / rng.uniform(700, 900, g.n))
            tx_p = np.rint(tx / rng.uniform(750, 950, g.n))
            st = self._storm[h][a] if a >= 0 else np.zeros(g.n, dtype=np.bool_)
            # an incast burst overruns the adapter's buffers: a few drops per second per x of burst
            incast = 2.0 * (self.incast[h] - 1.0) * dt if a >= 0 else 0.0
            rx_disc = rng.poisson(1e-4 * dt + incast + np.where(st, rng.uniform(50, 400, g.n) * dt, 0.0))
            tx_disc = rng.poisson(2e-5 * dt + np.where(st, rng.uniform(20, 120, g.n) * dt, 0.0))
            unknown = rng.poisson((0.02 if a >= 0 else 0.002) * dt, g.n)
            init_days = up * dt
            specs: dict[str, tuple[F64 | npt.NDArray[np.int64], float]] = {
                "bytes_received_total": (rx, rx_rate * 0.8 * init_days),
                "bytes_sent_total": (tx, tx_rate * 0.8 * init_days),
                "packets_outbound_discarded_total": (tx_disc, float(rng.integers(0, 3))),
                "packets_received_discarded_total": (rx_disc, float(rng.integers(0, 40))),
                "packets_received_total": (rx_p, rx_rate * 0.8 * init_days / 800),
                "packets_received_unknown_total": (unknown, 0.02 * init_days * (1 if a >= 0 else 0.1)),
                "packets_sent_total": (tx_p, tx_rate * 0.8 * init_days / 850),
            }
            specs["bytes_total"] = (rx + tx, specs["bytes_received_total"][1] + specs["bytes_sent_total"][1])
            specs["packets_total"] = (rx_p + tx_p, specs["packets_received_total"][1] + specs["packets_sent_total"][1])
            for fam, (help_text, mtype) in NET_FAMILIES.items():
                name = "windows_net_" + fam
                if fam == "current_bandwidth_bytes":
                    const(name, help_text, mtype, lab, bandwidth)
                elif fam == "output_queue_length_packets" or fam.endswith("errors_total"):
                    const(name, help_text, mtype, lab, 0.0)
                else:
                    inc_arr, init = specs[fam]
                    counter(name, help_text, lab, inc_arr, init)
            const(
                "windows_net_nic_info",
                "A metric with a constant '1' value labeled with the network interface's general information.",
                "gauge",
                {"nic": nic, "friendly_name": alias, "mac": mac.upper()},
                1.0,
            )
            const(
                "windows_net_nic_address_info",
                "A metric with a constant '1' value labeled with the network interface's address information.",
                "gauge",
                {"nic": nic, "address": ip, "family": "ipv4"},
                1.0,
            )
            for status in OPER_STATUSES:
                const(
                    "windows_net_nic_operation_status",
                    "The operational status for the interface as defined in RFC 2863 as IfOperStatus.",
                    "gauge",
                    {"nic": nic, "status": status},
                    1.0 if status == "up" else 0.0,
                )

        segments, order = ex.compile()
        matrix = np.column_stack([cols[c] for c in order]) if order else np.zeros((g.n, 0))
        return segments, np.ascontiguousarray(matrix)

    # ------------------------------------------------------------------------------------------
    def scraped(self, h: int, i: int) -> bool:
        return not bool(self.no_scrape[h][i])

    def body(self, h: int, i: int) -> str:
        """The exposition text of host ``h`` at tick ``i`` (rendered in blocks of ticks).

        A body is handed out once and then forgotten (asked again, its block is rendered again):
        records are made in time order, so a block's earlier bodies are not needed again, and a
        large site's pending text stays within :data:`RENDER_BUDGET`."""
        first, bodies = self._chunks[h]
        if not first <= i < first + len(bodies) or bodies[i - first] is None:
            first = i - i % self.block
            bodies = list(self.formatters[h].render(self.matrices.rows(h, first, first + self.block)))
            self._chunks[h] = (first, bodies)
        out = bodies[i - first]
        assert out is not None
        bodies[i - first] = None
        return out

    def storm_mask(self, h: int, a: int) -> BOOL:
        return self._storm[h][a]

"""The HAProxy load-balancer VMs of the workload clusters, as ``show stat`` CSV.

Row shapes are real HAProxy 2.6.12 output (Debian bookworm; captured with
``option socket-stats`` so each frontend also has a ``listener`` row whose ``addr`` is the VIP
it binds; see ``collector/sources/haproxy/testdata/PROVENANCE.md``); only the numbers and
names change. Each LB VM's configuration mirrors what AKS-HCI programs on it: a ``stats``
listener, ``k8s-apiserver`` on the API-server VIP:6443 over the control-plane nodes, and one
``svc-<namespace>-<name>-<port>`` frontend per LoadBalancer service port over every worker's
NodePort (``externalTrafficPolicy: Cluster``).

A configuration change (a service created or deleted, a node added or removed) reloads HAProxy,
which starts a new process: every counter restarts from 0 and ``lastchg`` restarts, exactly
as a rate calculation must expect. The keepalived standby VM runs the same configuration but
carries no client traffic until it becomes active.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from lab.rand import stream
from lab.scenario import Scenario
from lab.timeline import F64, Grid, load
from lab.world import Snapshot, Vm, World

I64 = npt.NDArray[np.int64]

HEADER = (
    "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,"
    "weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,type,rate,"
    "rate_lim,rate_max,check_status,check_code,check_duration,hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx,"
    "hrsp_other,hanafail,req_rate,req_rate_max,req_tot,cli_abrt,srv_abrt,comp_in,comp_out,comp_byp,comp_rsp,"
    "lastsess,last_chk,last_agt,qtime,ctime,rtime,ttime,agent_status,agent_code,agent_duration,check_desc,"
    "agent_desc,check_rise,check_fall,check_health,agent_rise,agent_fall,agent_health,addr,cookie,mode,algo,"
    "conn_rate,conn_rate_max,conn_tot,intercepted,dcon,dses,wrew,connect,reuse,cache_lookups,cache_hits,"
    "srv_icur,src_ilim,qtime_max,ctime_max,rtime_max,ttime_max,eint,idle_conn_cur,safe_conn_cur,used_conn_cur,"
    "need_conn_est,uweight,agg_server_status,agg_server_check_status,agg_check_status,-,ssl_sess,"
    "ssl_reused_sess,ssl_failed_handshake,h2_headers_rcvd,h2_data_rcvd,h2_settings_rcvd,h2_rst_stream_rcvd,"
    "h2_goaway_rcvd,h2_detected_conn_protocol_errors,h2_detected_strm_protocol_errors,h2_rst_stream_resp,"
    "h2_goaway_resp,h2_open_connections,h2_backend_open_streams,h2_total_connections,h2_backend_total_streams,"
    "h1_open_connections,h1_open_streams,h1_total_connections,h1_total_streams,h1_bytes_in,h1_bytes_out,"
    "h1_spliced_bytes_in,h1_spliced_bytes_out,"
)
FIELDS = HEADER[2:].split(",")
_POS = {name: i for i, name in enumerate(FIELDS) if name}

# Real rows from HAProxy 2.6.12 `show stat` (tcp mode; `stats` is mode http).
_STATS_FE = (
    "stats,FRONTEND,,,0,0,256,0,0,0,0,0,0,,,,,OPEN,,,,,,,,,1,2,0,,,,0,0,0,0,,,,0,0,0,0,0,0,,0,0,0,,,0,0,0"
    ",0,,,,,,,,,,,,,,,,,,,,,http,,0,0,0,0,0,0,0,,,0,0,,,,,,,0,,,,,,,,,-,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0"
    ",0,0,0,0,0,0,0,"
)
_STATS_BE = (
    "stats,BACKEND,0,0,0,0,26,0,0,0,0,0,,0,0,0,0,UP,0,0,0,,0,1,,,1,2,0,,0,,1,0,,0,,,,0,0,0,0,0,0,,,,0,0,0"
    ",0,0,0,0,-1,,,0,0,0,0,,,,,,,,,,,,,,http,roundrobin,,,,,,,0,0,0,0,0,,,0,0,0,0,0,,,,,0,0,0,0,-,0,0,0,0"
    ",0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,"
)
_FE = (
    "k8s-apiserver,FRONTEND,,,0,2,256,5,75,75,0,0,0,,,,,OPEN,,,,,,,,,1,3,0,,,,0,5,0,5,,,,,,,,,,,0,0,0,,,0"
    ",0,0,0,,,,,,,,,,,,,,,,,,,,,tcp,,5,5,5,,0,0,0,,,,,,,,,,,0,,,,,,,,,-,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0"
    ",0,0,0,0,0,0,0,"
)
_LISTENER = (
    "k8s-apiserver,sock-1,,,0,2,0,5,75,75,0,0,0,,,,,OPEN,,,,,,,,,1,3,1,,,,3,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,"
    ",,,,,,,,,,,127.0.0.1:57969,,tcp,,,,,,0,0,0,,,,,,,,,,,0,,,,,,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,"
)
_SERVER = (
    "k8s-apiserver-nodes,control-plane-1,0,0,0,1,,3,45,45,,0,,0,0,0,0,UP,1,1,0,0,0,1,0,,1,4,1,,3,,2,3,,3,"
    "L4OK,,0,,,,,,,,,,,0,0,,,,,1,,,0,0,0,5,,,,Layer4 check passed,,1,2,2,,,,127.0.0.1:45623,,tcp,,,,,,,,0"
    ",3,0,,,0,,0,0,0,6,0,0,0,0,1,1,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,"
)
_BACKEND = (
    "k8s-apiserver-nodes,BACKEND,0,0,0,2,26,5,75,75,0,0,,0,0,0,0,UP,2,2,0,,0,1,0,,1,4,0,,5,,1,5,,5,,,,,,,"
    ",,,,,,,0,0,0,0,0,0,1,,,0,0,0,4,,,,,,,,,,,,,,tcp,roundrobin,,,,,,,0,5,0,,,,,0,0,0,6,0,,,,,2,0,0,0,-,0"
    ",0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,"
)

FE_SLIM = 20000  # global maxconn of the LB VM
BE_SLIM = 2000  # fullconn default: 10 % of the frontend maxconn

_FE_VALUES = ("scur", "smax", "stot", "bin", "bout", "rate", "rate_max", "conn_rate", "conn_rate_max", "conn_tot")
_LI_VALUES = ("scur", "smax", "stot", "bin", "bout")
_SRV_VALUES = (
    "scur",
    "smax",
    "stot",
    "bin",
    "bout",
    "lastchg",
    "lbtot",
    "rate",
    "rate_max",
    "check_duration",
    "lastsess",
    "ctime",
    "ttime",
    "connect",
    "ctime_max",
    "ttime_max",
)
_BE_VALUES = (
    "scur",
    "smax",
    "stot",
    "bin",
    "bout",
    "lastchg",
    "lbtot",
    "rate",
    "rate_max",
    "lastsess",
    "ctime",
    "ttime",
    "connect",
    "ctime_max",
    "ttime_max",
)


def _row_template(real: str, fixed: dict[str, str], dynamic: tuple[str, ...]) -> str:
    """A ``%d``-template of a real row: ``fixed`` fields replaced, ``dynamic`` fields as slots (in order)."""
    fields = real.split(",")
    assert len(fields) == len(FIELDS), (len(fields), len(FIELDS))
    out = [f.replace("%", "%%") for f in fields]
    for k, v in fixed.items():
        out[_POS[k]] = v.replace("%", "%%")
    for k in dynamic:
        out[_POS[k]] = "\x00"
    # the slots are filled in the order their fields appear in the row (see _ordered)
    return ",".join(out).replace("\x00", "%d")


def _ordered(dynamic: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(sorted(dynamic, key=lambda k: _POS[k]))


@dataclass(frozen=True, slots=True)
class _Frontend:
    name: str
    vip: str
    port: int
    backend: str
    servers: tuple[tuple[str, str], ...]  # (server name, addr)
    api: bool
    weight: float
    idle_after: float | None = None  # no client traffic from this second (since the scenario start) on


def lb_config(world: World, snap: Snapshot, cluster: str) -> tuple[_Frontend, ...]:
    """The frontends (and their servers) AKS-HCI programs on a cluster's HAProxy VMs."""
    cps = [v for v in snap.nodes(cluster) if v.role == "control-plane"]
    workers = [v for v in snap.nodes(cluster) if v.role == "worker"]
    fes = [
        _Frontend(
            "k8s-apiserver",
            world.api_vips[cluster],
            6443,
            "k8s-apiserver-nodes",
            tuple((v.name, f"{v.ip}:6443") for v in cps),
            True,
            1.0,
        )
    ]
    for svc in sorted(snap.services_of(cluster), key=lambda s: (s.created, s.key)):
        for port, node_port in zip(svc.ports, svc.node_ports, strict=True):
            name = f"svc-{svc.namespace}-{svc.name}-{port}"
            fes.append(
                _Frontend(
                    name,
                    svc.ip,
                    port,
                    name + "-nodes",
                    tuple((v.name, f"{v.ip}:{node_port}") for v in workers),
                    False,
                    svc.weight / len(svc.ports),
                    svc.idle_after,
                )
            )
    return tuple(fes)


class LbVmSim:
    """One HAProxy VM: its reload epochs and, per epoch, every row's numbers for every scrape."""

    def __init__(self, scenario: Scenario, world: World, grid: Grid, vm: Vm, cluster_load: F64) -> None:
        self.scenario, self.world, self.grid, self.vm = scenario, world, grid, vm
        self.cluster = vm.cluster
        self.load = cluster_load
        # Reload epochs: the tick index where each configuration starts.
        self.epochs: list[tuple[int, float, tuple[_Frontend, ...]]] = []
        last: tuple[_Frontend, ...] | None = None
        for snap in world.snapshots:
            cfg = lb_config(world, snap, self.cluster)
            if cfg != last:
                i0 = grid.index_at_or_after(snap.at + 1e-9) if snap.at > 0 else 0
                if self.epochs and self.epochs[-1][0] == i0:
                    self.epochs[-1] = (i0, snap.at, cfg)
                else:
                    self.epochs.append((i0, snap.at, cfg))
                last = cfg
        self._cur: tuple[int, int, str, I64] | None = None  # (first tick, end tick, template, values)

    def body(self, i: int) -> str:
        cur = self._cur
        if cur is None or not cur[0] <= i < cur[1]:
            k = max(j for j, e in enumerate(self.epochs) if e[0] <= i)
            i0 = self.epochs[k][0]
            i1 = self.epochs[k + 1][0] if k + 1 < len(self.epochs) else self.grid.n
            tmpl, values = self._epoch(k, i0, i1)
            cur = (i0, i1, tmpl, values)
            self._cur = cur
        i0, _i1, tmpl, values = cur
        return tmpl % tuple(values[i - i0].tolist())

    # ------------------------------------------------------------------------------------------
    def _epoch(self, k: int, i0: int, i1: int) -> tuple[str, I64]:
        g, sc = self.grid, self.scenario
        _start_tick, reload_sec, cfg = self.epochs[k]
        n = i1 - i0
        rng = stream(sc.seed, "haproxy", self.vm.name, k)
        sec = g.sec[i0:i1]
        dt = g.dt
        since = np.maximum(0, np.rint(sec - reload_sec)).astype(np.int64)
        active = np.array(
            [self.world.at(float(s)).active_lb_name(self.cluster) == self.vm.name for s in sec], dtype=np.float64
        )
        dup_ips = [(t0, t1, ip) for t0, t1, ip, _o, _i in self.world.duplicate_ips]
        L = self.load[i0:i1]
        rows: list[str] = [HEADER]
        cols: list[I64] = []
        iid = 2
        rows.append(_row_template(_STATS_FE, {"iid": str(iid), "slim": str(FE_SLIM)}, ()))
        rows.append(_row_template(_STATS_BE, {"iid": str(iid), "slim": str(BE_SLIM)}, ("lastchg",)))
        cols.append(since)
        for fe in cfg:
            iid += 1
            fe_iid = iid
            iid += 1
            be_iid = iid
            if fe.api:
                rate = (1.0 + 2.5 * L) * active
                dur, b_in, b_out, ttime0 = 40.0, 2500.0, 30000.0, 45000.0
            else:
                rate = 6.0 * fe.weight * L * active
                dur, b_in, b_out, ttime0 = 2.0, 1500.0, 25000.0, 1500.0
            if fe.idle_after is not None:
                rate = np.where(sec >= fe.idle_after, 0.0, rate)
            for t0, t1, ip in dup_ips:
                if ip == fe.vip:
                    rate = np.where((sec > t0) & (sec - dt < t1), rate * 0.5, rate)
            d_sess = rng.poisson(rate * dt)
            d_in = np.rint(d_sess * b_in * np.exp(rng.normal(0, 0.2, n))).astype(np.int64)
            d_out = np.rint(d_sess * b_out * np.exp(rng.normal(0, 0.3, n))).astype(np.int64)
            scur = rng.poisson(rate * dur)
            smax = np.maximum.accumulate(scur + rng.poisson(0.2 * rate * dur + 0.5))
            cur_rate = rng.poisson(rate)
            rate_max = np.maximum.accumulate(cur_rate + rng.poisson(0.5 * rate + 0.3))
            stot, bin_, bout = np.cumsum(d_sess), np.cumsum(d_in), np.cumsum(d_out)
            fe_vals = {
                "scur": scur,
                "smax": smax,
                "stot": stot,
                "bin": bin_,
                "bout": bout,
                "rate": cur_rate,
                "rate_max": rate_max,
                "conn_rate": cur_rate,
                "conn_rate_max": rate_max,
                "conn_tot": stot,
            }
            rows.append(_row_template(_FE, {"pxname": fe.name, "iid": str(fe_iid), "slim": str(FE_SLIM)}, _FE_VALUES))
            cols.extend(fe_vals[f] for f in _ordered(_FE_VALUES))
            rows.append(
                _row_template(
                    _LISTENER, {"pxname": fe.name, "iid": str(fe_iid), "addr": f"{fe.vip}:{fe.port}"}, _LI_VALUES
                )
            )
            cols.extend(fe_vals[f] for f in _ordered(_LI_VALUES))
            # servers: roundrobin split of sessions and bytes
            m = max(1, len(fe.servers))
            share = rng.multinomial(d_sess, [1.0 / m] * m) if fe.servers else np.zeros((n, 0), dtype=np.int64)
            scur_split = rng.multinomial(scur, [1.0 / m] * m) if fe.servers else np.zeros((n, 0), dtype=np.int64)
            be: dict[str, I64] = {}
            srv_rows: list[dict[str, I64]] = []
            with np.errstate(invalid="ignore", divide="ignore"):
                frac = np.where(d_sess[:, None] > 0, share / np.maximum(d_sess, 1)[:, None], 1.0 / m)
            for j in range(len(fe.servers)):
                s_cnt = share[:, j]
                s_stot = np.cumsum(s_cnt)
                last = _seconds_since_last(s_cnt, sec, rng)
                ctime = rng.integers(0, 2, n)
                ttime = np.rint(ttime0 * np.exp(rng.normal(0, 0.25, n))).astype(np.int64)
                ttime = np.where(s_stot > 0, ttime, 0)
                srv = {
                    "scur": scur_split[:, j],
                    "smax": np.maximum.accumulate(scur_split[:, j] + rng.poisson(0.3, n)),
                    "stot": s_stot,
                    "bin": np.cumsum(np.rint(d_in * frac[:, j]).astype(np.int64)),
                    "bout": np.cumsum(np.rint(d_out * frac[:, j]).astype(np.int64)),
                    "lastchg": since,
                    "lbtot": s_stot,
                    "rate": rng.poisson(rate / m),
                    "rate_max": np.maximum.accumulate(rng.poisson(rate / m + 0.5)),
                    "check_duration": rng.integers(0, 2, n),
                    "lastsess": last,
                    "ctime": ctime,
                    "ttime": ttime,
                    "connect": s_stot,
                    "ctime_max": np.maximum.accumulate(ctime + rng.integers(0, 3, n)),
                    "ttime_max": np.maximum.accumulate(ttime * 3),
                }
                srv_rows.append(srv)
                name, addr = fe.servers[j]
                rows.append(
                    _row_template(
                        _SERVER,
                        {"pxname": fe.backend, "svname": name, "iid": str(be_iid), "sid": str(j + 1), "addr": addr},
                        _SRV_VALUES,
                    )
                )
                cols.extend(srv[f] for f in _ordered(_SRV_VALUES))
            if srv_rows:
                for f in ("scur", "stot", "bin", "bout", "lbtot", "rate", "connect"):
                    be[f] = np.sum([s[f] for s in srv_rows], axis=0)
                be["lastsess"] = np.where(
                    np.min([s["lastsess"] for s in srv_rows], axis=0) < 0,
                    -1,
                    np.min([np.where(s["lastsess"] < 0, 1 << 40, s["lastsess"]) for s in srv_rows], axis=0),
                )
                be["ctime"] = np.rint(np.mean([s["ctime"] for s in srv_rows], axis=0)).astype(np.int64)
                be["ttime"] = np.rint(np.mean([s["ttime"] for s in srv_rows], axis=0)).astype(np.int64)
                be["ctime_max"] = np.max([s["ctime_max"] for s in srv_rows], axis=0)
                be["ttime_max"] = np.max([s["ttime_max"] for s in srv_rows], axis=0)
            else:
                for f in _BE_VALUES:
                    be[f] = np.zeros(n, dtype=np.int64)
                be["lastsess"] = np.full(n, -1, dtype=np.int64)
            be["smax"] = np.maximum.accumulate(be["scur"] + rng.poisson(0.5, n))
            be["rate_max"] = np.maximum.accumulate(be["rate"] + rng.poisson(0.5, n))
            be["lastchg"] = since
            m_srv = str(len(fe.servers))
            status = "UP" if fe.servers else "DOWN"
            rows.append(
                _row_template(
                    _BACKEND,
                    {
                        "pxname": fe.backend,
                        "iid": str(be_iid),
                        "slim": str(BE_SLIM),
                        "weight": m_srv,
                        "act": m_srv,
                        "uweight": m_srv,
                        "status": status,
                    },
                    _BE_VALUES,
                )
            )
            cols.extend(be[f] for f in _ordered(_BE_VALUES))
        template = "\n".join(rows) + "\n\n"
        values = np.column_stack([np.asarray(c, dtype=np.int64) for c in cols])
        return template, values


def _seconds_since_last(counts: I64, sec: F64, rng: np.random.Generator) -> I64:
    """``lastsess``: seconds since the server's last session (-1 if none since the reload)."""
    n = len(counts)
    idx = np.where(counts > 0, np.arange(n), -1)
    last = np.maximum.accumulate(idx)
    gap = np.where(last >= 0, sec - sec[np.maximum(last, 0)], -1.0)
    jitter = rng.integers(0, 3, n)
    return np.where(last >= 0, np.rint(gap).astype(np.int64) + jitter, -1)


def cluster_loads(scenario: Scenario, grid: Grid) -> dict[str, F64]:
    """Client load per workload cluster (drives HAProxy session rates)."""
    out: dict[str, F64] = {}
    for c in scenario.site.clusters:
        rng = stream(scenario.seed, "lbload", c.name)
        out[c.name] = load(grid, rng, scale=float(rng.uniform(0.8, 1.2)), phase_h=float(rng.uniform(-0.5, 0.5)))
    return out

"""Analyst views installed into ``catalog.duckdb`` (``CREATE VIEW <name> AS <body>``).

They express the detectors' logic in SQL so an analyst can see the numbers behind an alert with
any DuckDB client, over the whole history:

``counter_rates``       per-sample per-second rate of every counter (``*_total``) and formatted rate
                        (``*_per_sec``), with resets and gaps (> 5 min) marked, not rated;
``pool_usage``          per network/pool and 5-minute bucket: size, addresses held, free, reserve,
                        and an OLS trend over the trailing 12 h with hours to the reserve (the
                        alerting forecast is the robust Theil–Sen one; DuckDB has no Theil–Sen);
                        MetalLB / Calico pools from their gauges;
``ip_conflicts``        per network/IP and 5-minute bucket where more than one claimant held an IP,
                        neighbour tables saw more than one MAC, or a Tcpip conflict event arrived;
``congestion_signals``  per host and minute: PFC pause, RDMA error and NIC discard rates, SMB
                        client latency, RDMA/NIC throughput.

Pool ranges come from the configured networks (IPv4 ranges are turned into integers in SQL; IPv6
pools are listed but not counted in ``pool_usage``).
"""

from __future__ import annotations

from collections.abc import Sequence

from analytics.networks import NetworkLike, compile_networks
from analytics.rates import COUNTER_RATES_VIEW, counter_rates_sql, sql_str
from analytics.settings import PoolSettings

IPV4_INT = (
    "CASE WHEN regexp_full_match(ip, '[0-9]+\\.[0-9]+\\.[0-9]+\\.[0-9]+') THEN "
    "split_part(ip, '.', 1)::BIGINT * 16777216 + split_part(ip, '.', 2)::BIGINT * 65536 + "
    "split_part(ip, '.', 3)::BIGINT * 256 + split_part(ip, '.', 4)::BIGINT END"
)

CLAIMANT = """CASE CAST(owner_kind AS VARCHAR)
        WHEN 'service' THEN 'cluster ' || coalesce(CAST(cluster AS VARCHAR), owner)
        WHEN 'control-plane' THEN 'cluster ' || coalesce(CAST(cluster AS VARCHAR), owner)
        WHEN 'haproxy-frontend' THEN CASE WHEN cluster IS NOT NULL THEN 'cluster ' || CAST(cluster AS VARCHAR) END
        WHEN 'node' THEN 'vm ' || owner
        WHEN 'load-balancer' THEN 'vm ' || owner
        WHEN 'nic' THEN 'host ' || split_part(owner, '/', 1)
    END"""


def _pools_values(networks: Sequence[NetworkLike], pools: PoolSettings) -> str:
    rows = []
    for plan in compile_networks(networks, pools):
        for r in plan.ranges:
            reserve = plan.node_reserve if r.kind == "node" else plan.vip_reserve
            first, last = (r.first, r.last) if r.version == 4 else ("NULL", "NULL")
            rows.append(
                f"({sql_str(plan.name)}, {sql_str(r.pool)}, {sql_str(r.kind)}, {first}, {last}, {r.size}, {reserve})"
            )
    if not rows:
        return (
            "SELECT * FROM (VALUES (NULL::VARCHAR, NULL::VARCHAR, NULL::VARCHAR, NULL::BIGINT, "
            "NULL::BIGINT, NULL::BIGINT, NULL::BIGINT)) t(network, pool, pool_type, first_ip, last_ip, "
            "size, reserve) WHERE false"
        )
    return (
        "SELECT * FROM (VALUES " + ", ".join(rows) + ") t(network, pool, pool_type, first_ip, last_ip, size, reserve)"
    )


def _cluster_values(networks: Sequence[NetworkLike], pools: PoolSettings) -> str:
    rows = [f"({sql_str(c)}, {sql_str(p.name)})" for p in compile_networks(networks, pools) for c in p.all_clusters]
    if not rows:
        return "SELECT * FROM (VALUES (NULL::VARCHAR, NULL::VARCHAR)) t(cluster, network) WHERE false"
    return "SELECT * FROM (VALUES " + ", ".join(rows) + ") t(cluster, network)"


def pool_usage_sql(networks: Sequence[NetworkLike], pools: PoolSettings | None = None) -> str:
    return _pool_usage(_pools_values(networks, pools or PoolSettings()), fleet=False)


def _pool_usage(pools_values: str, *, fleet: bool) -> str:
    """The ``pool_usage`` body; ``fleet`` keys every step by ``site`` (pools are each site's own)."""
    s, ps, join = ("site, ", "p.site, ", "o.site = p.site AND ") if fleet else ("", "", "")
    return f"""
WITH pools AS ({pools_values}),
obs AS (
    SELECT {s}time_bucket(INTERVAL 5 MINUTE, ts) AS bucket, ip, {IPV4_INT} AS ipn
    FROM ip_observations
    WHERE CAST(owner_kind AS VARCHAR) NOT IN ('pod', 'neighbor', 'event')
),
configured AS (
    SELECT {ps}p.network, p.pool, p.pool_type, o.bucket, p.size, p.reserve, count(DISTINCT o.ip) AS used
    FROM pools p JOIN obs o ON {join}o.ipn BETWEEN p.first_ip AND p.last_ip
    GROUP BY ALL
),
gauges AS (
    SELECT {s}coalesce(labels['cluster'], host) AS scope, metric,
           coalesce(labels['pool'], labels['ippool'], '') AS pname,
           time_bucket(INTERVAL 5 MINUTE, ts) AS bucket, ts, sum(value) AS v
    FROM samples
    WHERE metric IN ('metallb.addresses_in_use', 'metallb.addresses_total',
                     'calico.ipam.allocations_in_use', 'calico.ipam.ippool_size', 'calico.ipam.ippool_reserved')
    GROUP BY ALL
),
gauge_pools AS (
    SELECT {s}scope AS network,
           CASE WHEN metric LIKE 'metallb.%' THEN 'metallb:' ELSE 'calico:' END || scope || '/' || pname AS pool,
           CASE WHEN metric LIKE 'metallb.%' THEN 'metallb' ELSE 'calico' END AS pool_type,
           bucket,
           max(v) FILTER (WHERE metric IN ('metallb.addresses_total', 'calico.ipam.ippool_size')) AS size,
           arg_max(v, ts) FILTER (WHERE metric IN ('metallb.addresses_in_use',
                                                    'calico.ipam.allocations_in_use'))
             + coalesce(arg_max(v, ts) FILTER (WHERE metric = 'calico.ipam.ippool_reserved'), 0) AS used
    FROM gauges GROUP BY ALL
),
allp AS (
    SELECT {s}network, pool, pool_type, bucket, size, reserve, used FROM configured
    UNION ALL
    SELECT {s}network, pool, pool_type, bucket, CAST(size AS BIGINT), 0, CAST(used AS BIGINT) FROM gauge_pools
    WHERE used IS NOT NULL
),
trend AS (
    SELECT *, size - used AS free,
           regr_slope(used, epoch(bucket)) OVER (
               PARTITION BY {s}network, pool ORDER BY bucket
               RANGE BETWEEN INTERVAL 12 HOURS PRECEDING AND CURRENT ROW) * 86400 AS slope_per_day
    FROM allp
)
SELECT {s}network, pool, pool_type, bucket, size, used, free, reserve, slope_per_day,
       CASE WHEN slope_per_day > 0 AND free > reserve THEN (free - reserve) / (slope_per_day / 24) END
           AS hours_to_reserve,
       free < reserve AS below_reserve
FROM trend
"""


def ip_conflicts_sql(networks: Sequence[NetworkLike], pools: PoolSettings | None = None) -> str:
    return _ip_conflicts(_cluster_values(networks, pools or PoolSettings()), fleet=False)


def _ip_conflicts(cluster_values: str, *, fleet: bool) -> str:
    """The ``ip_conflicts`` body; ``fleet`` keys it by ``site`` (clusters are each site's own)."""
    s, cs, os_, join = ("site, ", "site AS csite, ", "o.site, ", "o.site = c.csite AND ") if fleet else ("",) * 4
    return f"""
WITH clusters AS (SELECT {cs}cluster AS cname, network AS cnet FROM ({cluster_values})),
o AS (
    SELECT {os_}time_bucket(INTERVAL 5 MINUTE, ts) AS bucket, ip,
           coalesce(CAST(o.network AS VARCHAR), c.cnet, 'unassigned') AS network,
           CAST(owner_kind AS VARCHAR) AS kind, owner, mac, {CLAIMANT} AS claimant
    FROM ip_observations o LEFT JOIN clusters c ON {join}CAST(o.cluster AS VARCHAR) = c.cname
)
SELECT {s}network, ip, bucket,
       count(DISTINCT claimant) AS claimants,
       list(DISTINCT claimant) FILTER (WHERE claimant IS NOT NULL) AS claimed_by,
       count(DISTINCT mac) FILTER (WHERE kind = 'neighbor') AS neighbor_macs,
       list(DISTINCT mac) FILTER (WHERE kind = 'neighbor' AND mac IS NOT NULL) AS macs,
       count(*) FILTER (WHERE kind = 'event') AS conflict_events
FROM o
GROUP BY {s}network, ip, bucket
HAVING count(DISTINCT claimant) > 1 OR count(DISTINCT mac) FILTER (WHERE kind = 'neighbor') > 1
    OR count(*) FILTER (WHERE kind = 'event') > 0
"""


CONGESTION_SIGNALS = """
WITH r AS (
    SELECT host, metric, labels, ts, epoch_ms(ts) - epoch_ms(lag(ts) OVER w) AS dt_ms,
           value - lag(value) OVER w AS dv, value
    FROM samples
    WHERE metric IN ('pfc.rx_pause_frames_total', 'pfc.tx_pause_frames_total', 'rdma.cq_errors_total',
                     'rdma.failed_connection_attempts_total', 'rdma.connection_errors_total',
                     'net.packets_received_discarded_total', 'net.packets_outbound_discarded_total',
                     'smb.client.request_seconds_total', 'smb.client.requests_total',
                     'smb.client.request_avg_seconds', 'smb.client.requests_per_sec',
                     'rdma.inbound_bytes_total', 'rdma.outbound_bytes_total',
                     'rdma.inbound_bytes_per_sec', 'rdma.outbound_bytes_per_sec')
    WINDOW w AS (PARTITION BY source, host, metric, labels ORDER BY ts)
), v AS (
    SELECT host, metric, labels, time_bucket(INTERVAL 1 MINUTE, ts) AS minute,
           avg(CASE WHEN suffix(metric, '_total') AND dv >= 0 AND dt_ms > 0 AND dt_ms <= 300000
                    THEN dv * 1000.0 / dt_ms END) AS rate,
           sum(CASE WHEN dv >= 0 AND dt_ms > 0 AND dt_ms <= 300000 THEN dv END) AS inc,
           avg(value) AS val
    FROM r GROUP BY ALL
)
SELECT host, minute,
       sum(rate) FILTER (WHERE metric LIKE 'pfc.%') AS pfc_pause_frames_per_sec,
       sum(rate) FILTER (WHERE metric IN ('rdma.cq_errors_total', 'rdma.failed_connection_attempts_total',
                                          'rdma.connection_errors_total')) AS rdma_errors_per_sec,
       sum(rate) FILTER (WHERE metric LIKE 'net.packets_%discarded_total') AS nic_discards_per_sec,
       coalesce(sum(inc) FILTER (WHERE metric = 'smb.client.request_seconds_total')
                / nullif(sum(inc) FILTER (WHERE metric = 'smb.client.requests_total'), 0),
                avg(val) FILTER (WHERE metric = 'smb.client.request_avg_seconds' AND val > 0))
           AS smb_latency_seconds,
       coalesce(sum(rate) FILTER (WHERE metric IN ('rdma.inbound_bytes_total', 'rdma.outbound_bytes_total')),
                sum(val) FILTER (WHERE metric IN ('rdma.inbound_bytes_per_sec', 'rdma.outbound_bytes_per_sec')))
           AS rdma_bytes_per_sec
FROM v GROUP BY host, minute
"""


def analyst_views(networks: Sequence[NetworkLike], pools: PoolSettings | None = None) -> dict[str, str]:
    """View name → SELECT body (the store wraps it in ``CREATE OR REPLACE VIEW name AS``)."""
    return {
        "counter_rates": COUNTER_RATES_VIEW.strip(),
        "pool_usage": pool_usage_sql(networks, pools).strip(),
        "ip_conflicts": ip_conflicts_sql(networks, pools).strip(),
        "congestion_signals": CONGESTION_SIGNALS.strip(),
    }


ANALYST_VIEWS: dict[str, str] = analyst_views([])


# -- fleet views -------------------------------------------------------------------------------
# The same four views over a lake shared by many sites (``hciwatch sql --lake``): every row carries
# its ``site``, pools and clusters are each site's own configuration, and nothing is compared or
# windowed across sites (the same network name or host name at two sites is two things).

SiteConfig = tuple[Sequence[NetworkLike], PoolSettings | None]


def _fleet_pools_values(sites: dict[str, SiteConfig]) -> str:
    rows = []
    for site, (networks, pools) in sorted(sites.items()):
        for plan in compile_networks(networks, pools or PoolSettings()):
            for r in plan.ranges:
                reserve = plan.node_reserve if r.kind == "node" else plan.vip_reserve
                first, last = (r.first, r.last) if r.version == 4 else ("NULL", "NULL")
                rows.append(
                    f"({sql_str(site)}, {sql_str(plan.name)}, {sql_str(r.pool)}, {sql_str(r.kind)}, "
                    f"{first}, {last}, {r.size}, {reserve})"
                )
    cols = "t(site, network, pool, pool_type, first_ip, last_ip, size, reserve)"
    if not rows:
        return (
            "SELECT * FROM (VALUES (NULL::VARCHAR, NULL::VARCHAR, NULL::VARCHAR, NULL::VARCHAR, NULL::BIGINT, "
            f"NULL::BIGINT, NULL::BIGINT, NULL::BIGINT)) {cols} WHERE false"
        )
    return "SELECT * FROM (VALUES " + ", ".join(rows) + f") {cols}"


def _fleet_cluster_values(sites: dict[str, SiteConfig]) -> str:
    rows = [
        f"({sql_str(site)}, {sql_str(c)}, {sql_str(p.name)})"
        for site, (networks, pools) in sorted(sites.items())
        for p in compile_networks(networks, pools or PoolSettings())
        for c in p.all_clusters
    ]
    if not rows:
        return (
            "SELECT * FROM (VALUES (NULL::VARCHAR, NULL::VARCHAR, NULL::VARCHAR)) t(site, cluster, network) WHERE false"
        )
    return "SELECT * FROM (VALUES " + ", ".join(rows) + ") t(site, cluster, network)"


def fleet_pool_usage_sql(sites: dict[str, SiteConfig]) -> str:
    return _pool_usage(_fleet_pools_values(sites), fleet=True)


def fleet_ip_conflicts_sql(sites: dict[str, SiteConfig]) -> str:
    return _ip_conflicts(_fleet_cluster_values(sites), fleet=True)


FLEET_CONGESTION_SIGNALS = (
    CONGESTION_SIGNALS.replace("SELECT host, metric, labels, ts,", "SELECT site, host, metric, labels, ts,")
    .replace("PARTITION BY source, host, metric, labels", "PARTITION BY site, source, host, metric, labels")
    .replace("SELECT host, metric, labels, time_bucket", "SELECT site, host, metric, labels, time_bucket")
    .replace("SELECT host, minute,", "SELECT site, host, minute,")
    .replace("FROM v GROUP BY host, minute", "FROM v GROUP BY site, host, minute")
)


def fleet_analyst_views(sites: dict[str, SiteConfig]) -> dict[str, str]:
    """The analyst views over a fleet's lake: ``site`` in every row, each site's own pools."""
    return {
        "counter_rates": counter_rates_sql(fleet=True).strip(),
        "pool_usage": fleet_pool_usage_sql(sites).strip(),
        "ip_conflicts": fleet_ip_conflicts_sql(sites).strip(),
        "congestion_signals": FLEET_CONGESTION_SIGNALS.strip(),
    }

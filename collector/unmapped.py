"""The ``unmapped_metrics`` view: what a known source sent that the catalog does not understand.

Parsers keep every number they cannot map under its native name (a Prometheus name, Telegraf's
``<measurement>.<field>``, typeperf's ``Object\\Counter``, ``haproxy.csv.<column>``,
``haproxy.info.<key>``), so nothing is lost; this view shows those names, counted per source and
name, so a user sees at a glance that e.g. a new windows_exporter release renamed a counter the
detectors need, and can add a ``[[metric_mappings]]`` entry for it.

A name counts as *mapped* when the catalog (built-ins and the user's mappings) or a source's own
parser gives it meaning; only sources with a catalog are listed (a generic ``prometheus`` scrape
is made of native names by design).
"""

from __future__ import annotations

from collections.abc import Iterable

from collector.catalog import Catalog

VIEW_NAME = "unmapped_metrics"

# `source` column values of the sources whose metrics the catalog maps.
CATALOGUED_SOURCES = ("windows", "kube-proxy", "calico", "metallb", "haproxy", "telegraf", "typeperf")

# Names sources produce themselves (not through the catalog) that carry meaning.
SOURCE_METRICS = (
    "event.tcpip_address_conflict",
    "event.records_ignored",
    "k8s.services_loadbalancer",
    "k8s.nodes",
    "k8s.service_lb_ip_info",
    "k8s.node_pod_cidr_info",
)
SOURCE_PREFIXES = ("haproxy.process.",)  # `show info` keys the HAProxy parser maps itself


def known_metrics(catalog: Catalog) -> list[str]:
    """Every metric name that is not an unmapped native name."""
    names = set(catalog.all_canonical()) | set(SOURCE_METRICS)
    names |= {m.canonical for m in catalog.user_mappings}
    return sorted(names)


def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def unmapped_metrics_sql(known: Iterable[str], sources: Iterable[str] = CATALOGUED_SOURCES) -> str:
    """SELECT body of the view: one row per (source, native name) with counts and first/last seen."""
    known_list = ", ".join(_sql_str(k) for k in known)
    source_list = ", ".join(_sql_str(s) for s in sources)
    prefixes = " AND ".join(f"NOT starts_with(metric, {_sql_str(p)})" for p in SOURCE_PREFIXES)
    return f"""
SELECT CAST(source AS VARCHAR) AS source, CAST(metric AS VARCHAR) AS metric,
       count(*) AS samples, count(DISTINCT host) AS hosts,
       min(ts) AS first_seen, max(ts) AS last_seen,
       any_value(labels) AS example_labels
FROM samples
WHERE CAST(source AS VARCHAR) IN ({source_list})
  AND CAST(metric AS VARCHAR) NOT IN ({known_list})
  AND {prefixes}
GROUP BY ALL
ORDER BY samples DESC, source, metric
""".strip()


def unmapped_metrics_view(catalog: Catalog) -> dict[str, str]:
    """``{view name: body}`` for a store's extra views."""
    return {VIEW_NAME: unmapped_metrics_sql(known_metrics(catalog))}

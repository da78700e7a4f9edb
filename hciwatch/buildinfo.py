"""The running build: version string for ``--version``, the start banner and ``hciwatch_build_info``.

``hciwatch_build_info{version, python, duckdb} 1`` follows the Prometheus convention
(``prometheus_build_info``) so a dashboard can show which build each instance runs and join it
onto other series.
"""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version

from prometheus_client.core import GaugeMetricFamily

from exporters.service_metrics import spec


def hciwatch_version() -> str:
    """The installed distribution's version (``0+unknown`` when run from a bare checkout)."""
    try:
        return version("hciwatch")
    except PackageNotFoundError:
        return "0+unknown"


def _duckdb_version() -> str:
    try:
        return version("duckdb")
    except PackageNotFoundError:
        return "unknown"


def build_info_metric() -> GaugeMetricFamily:
    m = spec("hciwatch.build_info")
    g = GaugeMetricFamily(m.prometheus_name, m.help, labels=list(m.labels))
    g.add_metric([hciwatch_version(), platform.python_version(), _duckdb_version()], 1.0)
    return g

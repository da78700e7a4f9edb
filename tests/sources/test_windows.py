"""windows source: golden parse of its testdata and a real scrape through its SPEC."""

from __future__ import annotations

from pathlib import Path

import pytest

from collector.registry import get_source_spec
from tests.sources.test_prometheus_golden import check_golden, payloads
from tests.sources.test_prometheus_source import scrape_payload_via_spec


@pytest.mark.parametrize("path", payloads("windows"), ids=lambda p: p.name)
def test_windows_golden(path: Path) -> None:
    check_golden(path)


@pytest.mark.parametrize("path", payloads("windows"), ids=lambda p: p.name)
async def test_windows_scrape_through_spec(path: Path) -> None:
    spec = get_source_spec("windows")
    await scrape_payload_via_spec(spec, "windows", path)


def test_windows_nic_addresses_become_ip_observations() -> None:
    from collector.catalog import DEFAULT_CATALOG
    from collector.sources.prometheus.parse import parse_record
    from tests.sources.test_prometheus_golden import record_for

    (path,) = payloads("windows")
    result = parse_record(record_for(path), DEFAULT_CATALOG)
    ips = {r["ip"]: r for r in result.ip_observations.to_pylist()}
    assert "fe80::5dff:fe01:211" not in ips and "127.0.0.1" not in ips
    assert ips["10.71.1.11"]["mac"] == "0c:42:a1:5d:10:01"
    assert ips["10.71.1.11"]["owner"] == "hci-node-01/Mellanox ConnectX-6 Dx Adapter"
    assert ips["192.168.20.50"]["cluster"] == "hci-1"

"""kube_proxy source: golden parse of its testdata and a real scrape through its SPEC."""

from __future__ import annotations

from pathlib import Path

import pytest

from collector.registry import get_source_spec
from tests.sources.test_prometheus_golden import check_golden, payloads
from tests.sources.test_prometheus_source import scrape_payload_via_spec


@pytest.mark.parametrize("path", payloads("kube_proxy"), ids=lambda p: p.name)
def test_kube_proxy_golden(path: Path) -> None:
    check_golden(path)


@pytest.mark.parametrize("path", payloads("kube_proxy"), ids=lambda p: p.name)
async def test_kube_proxy_scrape_through_spec(path: Path) -> None:
    spec = get_source_spec("kube_proxy")
    await scrape_payload_via_spec(spec, "kube_proxy", path)

"""metallb source: golden parse of its testdata and a real scrape through its SPEC."""

from __future__ import annotations

from pathlib import Path

import pytest

from collector.registry import get_source_spec
from tests.sources.test_prometheus_golden import check_golden, payloads
from tests.sources.test_prometheus_source import scrape_payload_via_spec


@pytest.mark.parametrize("path", payloads("metallb"), ids=lambda p: p.name)
def test_metallb_golden(path: Path) -> None:
    check_golden(path)


@pytest.mark.parametrize("path", payloads("metallb"), ids=lambda p: p.name)
async def test_metallb_scrape_through_spec(path: Path) -> None:
    spec = get_source_spec("metallb")
    await scrape_payload_via_spec(spec, "metallb", path)

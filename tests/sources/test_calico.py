"""calico source: golden parse of its testdata and a real scrape through its SPEC."""

from __future__ import annotations

from pathlib import Path

import pytest

from collector.registry import get_source_spec
from tests.sources.test_prometheus_golden import check_golden, payloads
from tests.sources.test_prometheus_source import scrape_payload_via_spec


@pytest.mark.parametrize("path", payloads("calico"), ids=lambda p: p.name)
def test_calico_golden(path: Path) -> None:
    check_golden(path)


@pytest.mark.parametrize("path", payloads("calico"), ids=lambda p: p.name)
async def test_calico_scrape_through_spec(path: Path) -> None:
    spec = get_source_spec("calico")
    await scrape_payload_via_spec(spec, "calico", path)


def test_felix_and_kube_controllers_targets_get_their_own_ports() -> None:
    from collector.sources.calico.source import CalicoSettings
    from collector.sources.prometheus.source import PrometheusScraper

    s = CalicoSettings(
        type="calico",
        targets=["node-1", "node-2:19091"],
        kube_controllers_targets=["kc.calico-system"],
        hosts={"kc.calico-system": "kc"},
    )
    scraper = PrometheusScraper(s)
    assert scraper.targets() == ["node-1:9091", "node-2:19091", "kc.calico-system:9094"]
    assert scraper.host_for("kc.calico-system:9094") == "kc"
    assert (
        "Flannel: no Prometheus metrics"
        in (Path(__file__).resolve().parents[2] / "collector" / "sources" / "calico" / "README.md").read_text()
    )

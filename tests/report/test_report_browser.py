"""``hciwatch report`` opened in headless Chromium: every view draws what the replayed scenario
holds, the file makes no request at all, and the console stays clean.

One screenshot per view is kept in ``test-artifacts/report/`` (see tests/fixtures/chromium.py).
"""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from typing import Any

import pytest

from hciwatch.report import build_model, write_report
from tests.fixtures.chromium import ChromiumSession, PageInfo, artifacts_dir
from tests.report.conftest import Replayed
from tests.report.synth import write_site

VIEWS = ("view-header", "view-pools", "view-duplicates", "view-congestion", "view-alerts")
RENDER_TIMEOUT_MS = 20_000  # bounds a hang; not a timing assertion

# Counts the non-blank pixels of each chart canvas: a chart that threw or drew nothing is empty.
INKED = """() => [...document.querySelectorAll('.chart canvas')].map((c) => {
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
  return n;
})"""


def open_report(chromium: ChromiumSession, path: Path) -> PageInfo:
    info = chromium.new_page()
    info.page.goto(path.as_uri())
    info.page.wait_for_selector("#app[data-rendered='1']", timeout=RENDER_TIMEOUT_MS)
    return info


def screenshots(info: PageInfo, prefix: str) -> list[Path]:
    out = []
    for view in VIEWS:
        path = artifacts_dir("report") / f"{prefix}-{view.removeprefix('view-')}.png"
        info.page.locator(f"#{view}").screenshot(path=str(path))
        out.append(path)
    return out


def check_common(info: PageInfo, model: dict[str, Any], rep: Replayed) -> dict[str, Any]:
    """What every scenario's report must show; returns the page's counts for specific checks."""
    counts: dict[str, Any] = info.page.evaluate("hciwatchViews.counts()")
    assert counts["pools"] == len(model["pools"]) >= 2  # the scenario's network has a VIP and a node pool
    assert counts["poolSeries"] == [7] * counts["pools"]  # used, size, reserve line, trend, forecast ×3
    assert counts["alertIncidents"] == rep.incidents
    assert counts["currentAlerts"] == rep.firing_at_end
    assert info.page.locator("#current-alerts tbody tr").count() == rep.firing_at_end
    hosts = next(s for s in model["collected"]["sources"] if s["source"] == "windows")["targets"]
    assert counts["congestionHosts"] == len(hosts) == 4
    assert counts["congestionSignals"] == 2
    assert info.page.locator(".heat-chart[data-series='4']").count() == 2
    assert info.page.locator("#collected-table tbody tr").count() == len(model["collected"]["sources"])
    # every source that delivered anything has its time span, observation-only ones (neighbours) too
    assert all(s["first"] and s["last"] for s in model["collected"]["sources"] if s["samples"] or s["ip_observations"])
    text = info.page.locator("#parse-errors").inner_text()
    assert f"{rep.summary['records_rejected']} record(s) rejected" in text
    check_status_banner(info, rep)
    inked = info.page.evaluate(INKED)
    assert len(inked) == counts["charts"] and all(n > 0 for n in inked), inked
    assert info.outside == [], f"requests left the machine: {info.outside}"
    assert info.errors == [], info.errors
    return counts


def check_status_banner(info: PageInfo, rep: Replayed) -> None:
    """The first screen answers "what is wrong now and what do I do": the banner comes first."""
    page = info.page
    assert page.evaluate("document.getElementById('app').firstElementChild.id") == "status-banner"
    banner = page.locator("#status-banner")
    assert int(banner.get_attribute("data-firing") or -1) == rep.firing_at_end
    text = banner.inner_text()
    if rep.firing_at_end:
        assert f"{rep.firing_at_end} alert(s) firing now" in text
        assert banner.locator("li").count() == min(8, rep.firing_at_end)
        assert "First step:" in text and "text as of" in text and "details ↓" in text
        box = banner.bounding_box()
        assert box is not None and box["y"] < 50  # at the top of the first screen
    else:
        assert "Nothing is firing" in text
    # resolved incidents are drawn quieter than live ones
    for card in page.locator(".incident.resolved").all():
        assert float(card.evaluate("(e) => getComputedStyle(e).opacity")) < 1


@pytest.mark.integration
def test_time_axis_labels_do_not_repeat(chromium: ChromiumSession, duplicate_lb_ip: Replayed, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    write_report(duplicate_lb_ip.data_dir, out)
    info = open_report(chromium, out)
    # ticks 20 s apart (a zoomed-in chart) used to print "10:55 10:55 10:56"
    labels = info.page.evaluate("hciwatchViews.timeTicks([1763290500, 1763290520, 1763290540, 1763290560])")
    assert all(a != b for a, b in itertools.pairwise(labels)), labels
    labels = info.page.evaluate("hciwatchViews.timeTicks([1763290500, 1763290500 + 3600, 1763290500 + 7200])")
    assert labels[1] == "11:55" and labels[0].startswith("10:55\n2025-11-16"), labels
    step = info.page.evaluate("hciwatchViews.firstStep('Intro line.\\n1. Do this\\n   and that.\\n2. Then')")
    assert step == "Do this and that."


@pytest.mark.integration
def test_duplicate_ip_report(chromium: ChromiumSession, duplicate_lb_ip: Replayed, tmp_path: Path) -> None:
    rep = duplicate_lb_ip
    out = tmp_path / "report.html"
    stats = write_report(rep.data_dir, out)
    model = build_model(rep.data_dir)
    info = open_report(chromium, out)
    counts = check_common(info, model, rep)
    info.page.set_viewport_size({"width": 1280, "height": 800})
    info.page.screenshot(path=str(artifacts_dir("report") / "duplicate-ip-first-screen.png"))
    assert info.requests == [out.as_uri()]  # the file itself and nothing else

    assert counts["duplicates"] == rep.expected_incidents("duplicate_ip") == stats.duplicate_ip_incidents == 1
    truth = next(i for i in rep.expected["incidents"] if i["kind"] == "duplicate_ip")
    box = info.page.locator(".incident").first
    assert truth["resource"]["ip"] in box.locator("h3").inner_text()
    owners = box.locator("table.owners tbody tr")
    assert owners.count() == len(truth["details"]["owners"])
    table = box.locator("table.owners").inner_text()
    for owner in truth["details"]["owners"]:  # "cluster/namespace/service"
        cluster, service = owner.split("/", 1)
        assert cluster in table and service in table
    for mac in truth["details"]["macs"]:
        assert mac in table  # attributed through the neighbour tables
    assert "evidence" in box.locator("details.evidence summary").inner_text()
    assert counts["congestionIncidents"] == rep.expected_incidents("eastwest_congestion") == 0
    assert info.page.locator("#duplicates-timeline canvas").count() == 1
    screenshots(info, "duplicate_lb_ip")
    info.page.close()


@pytest.mark.integration
def test_congestion_report(chromium: ChromiumSession, pfc_storm: Replayed, tmp_path: Path) -> None:
    rep = pfc_storm
    out = tmp_path / "report.html"
    write_report(rep.data_dir, out)
    model = build_model(rep.data_dir)
    info = open_report(chromium, out)
    counts = check_common(info, model, rep)
    assert counts["congestionIncidents"] == rep.expected_incidents("eastwest_congestion") == 1
    assert counts["duplicates"] == rep.expected_incidents("duplicate_ip") == 0
    assert info.page.locator("#view-congestion").get_attribute("data-incidents") == "1"
    # the storm's source host is one of the hosts the alert marks on the strip
    truth = next(i for i in rep.expected["incidents"] if i["kind"] == "eastwest_congestion")
    marked = info.page.evaluate("""() => {
        const s = document.querySelector('#view-congestion');
        return s ? s.innerText : '';
    }""")
    assert truth["resource"]["host"] in marked
    # and the strip is hottest there during the storm: the model's cell over the baseline
    pfc = next(s for s in model["congestion"]["signals"] if s["key"] == "pfc")
    i = model["congestion"]["hosts"].index(truth["resource"]["host"])
    peak = max(v for v in pfc["values"][i] if v is not None)
    assert peak > 10 * max(pfc["baseline"][i], pfc["floor"])
    screenshots(info, "pfc_storm")
    info.page.close()


def test_report_is_one_self_contained_file(duplicate_lb_ip: Replayed, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    write_report(duplicate_lb_ip.data_dir, out)
    text = out.read_text(encoding="utf-8")
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)=\"(https?:)?//", text)
    assert "connect-src 'none'" in text and "default-src 'none'" in text
    scripts = re.findall(r"<script>(.*?)</script>", text, flags=re.S)
    assert len(scripts) == 2  # uPlot and the views, both pinned by hash in the CSP
    block = re.search(r'<script type="application/json" id="hciwatch-model">(.*?)</script>', text, flags=re.S)
    assert block is not None
    assert json.loads(block.group(1))["schema"] == "hciwatch.report/1"


@pytest.mark.integration
def test_48h_four_host_site_renders(chromium: ChromiumSession, tmp_path: Path) -> None:
    site = write_site(tmp_path / "site", hours=48, hosts=4, interval_s=60, incidents=300)
    out = tmp_path / "r.html"
    stats = write_report(site.data_dir, out)
    assert stats.bytes < 3 * 1024 * 1024
    info = open_report(chromium, out)
    counts = info.page.evaluate("hciwatchViews.counts()")
    assert counts["congestionHosts"] == 4 and counts["alertIncidents"] == 300
    assert int(info.page.locator("#alerts-timeline").get_attribute("data-series") or 0) <= 80
    assert info.errors == [] and info.outside == []
    info.page.close()


@pytest.mark.integration
def test_empty_store_says_so_in_every_view(chromium: ChromiumSession, tmp_path: Path) -> None:
    from collector.store import Store

    Store(tmp_path / "data").close()  # initialised, nothing collected yet, no analyst views
    out = tmp_path / "r.html"
    write_report(tmp_path / "data", out)
    info = open_report(chromium, out)
    for view in VIEWS[1:]:
        assert info.page.locator(f"#{view} .empty").count() >= 1, view
    assert "not recorded" in info.page.locator("#parse-errors").inner_text()
    assert info.errors == [] and info.outside == []
    info.page.close()


@pytest.mark.integration
def test_report_shows_silences(chromium: ChromiumSession, vip_leak: Replayed, tmp_path: Path) -> None:
    """A maintenance window is on the first screen: its alerts are listed as silenced, not as paging."""
    import shutil
    from datetime import timedelta

    from hciwatch.silences import SilenceStore

    data = tmp_path / "data"
    shutil.copytree(vip_leak.data_dir, data)
    sil = SilenceStore(data).add(
        {"kind": "vip_pool_exhaustion"}, duration=timedelta(hours=2), comment="planned VIP clean-up CHG-77"
    )
    out = tmp_path / "report.html"
    write_report(data, out)
    model = build_model(data)
    assert [s["id"] for s in model["silences"]] == [sil.id] and model["silences"][0]["active_now"]
    info = open_report(chromium, out)
    page = info.page
    banner = page.locator("#status-banner")
    firing_vip = [a for a in vip_leak.alerts if a.kind.value == "vip_pool_exhaustion" and a.status.value == "firing"]
    assert firing_vip and vip_leak.firing_at_end >= 1
    assert page.locator("#active-silences").get_attribute("data-active") == "1"
    assert "planned VIP clean-up CHG-77" in banner.inner_text()
    assert "silenced" in page.locator("#silenced-firing").inner_text()
    assert "VIP pool exhaustion" in page.locator("#silenced-firing").inner_text()
    assert banner.locator("li[data-kind='vip_pool_exhaustion']").count() == 0  # not listed as paging
    assert info.errors == [] and info.outside == []

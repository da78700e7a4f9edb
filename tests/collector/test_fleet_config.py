"""``[[domains]]`` and ``[fleet]``: defaults, and one line with the key path per mistake."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from collector.errors import ConfigError
from hciwatch.config import load_config

LAKE = """
[store.lake]
url = "az://lake/fleet"
account_name = "acct"
"""


def _load(tmp_path: Path, text: str) -> list[str]:
    p = tmp_path / "hciwatch.toml"
    p.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_config(p)
    return [line.split(":", 2)[2].strip() for line in exc.value.problems]


def test_default_is_one_domain_per_site_and_no_fleet(tmp_path: Path) -> None:
    p = tmp_path / "hciwatch.toml"
    p.write_text('[site]\nname = "east"\n')
    cfg = load_config(p)
    assert cfg.domain.id == "east" and cfg.domain.sites == ["east"]
    assert not cfg.fleet.enabled and cfg.fleet.lease == "azure_blob" and cfg.fleet.lease_duration == 30


def test_fleet_with_an_azure_lake_and_mqtt_placeholders(tmp_path: Path) -> None:
    p = tmp_path / "hciwatch.toml"
    p.write_text(
        '[site]\nname = "east"\n'
        + LAKE
        + """
[[domains]]
id = "east-l2"
sites = ["east"]
[fleet]
enabled = true
instance = "hw-1"
lease_duration = 20
renew_interval = 5
member_ttl = 15
[[sources]]
type = "mqtt"
client_id = "hciwatch-{domain}"
topics = ["telegraf/{site}/#"]
"""
    )
    cfg = load_config(p)
    assert cfg.domain.id == "east-l2" and cfg.fleet.instance_id() == "hw-1"
    mqtt = cfg.sources[0]
    assert getattr(mqtt, "topics", None) == ["telegraf/east/#"]
    assert getattr(mqtt, "client_id", None) == "hciwatch-east-l2"


def test_each_fleet_mistake_is_one_line_with_its_key(tmp_path: Path) -> None:
    problems = _load(
        tmp_path,
        """
[site]
name = "east"
[store.lake]
url = "s3://bucket/fleet"
[[domains]]
id = "l2"
sites = ["east", "west"]
[[domains]]
id = "l2"
sites = ["north"]
[[domains]]
id = "other"
sites = ["west"]
[fleet]
enabled = true
[[sources]]
type = "mqtt"
client_id = "hciwatch-{hostname}"
""",
    )
    assert "domains[1].id: duplicate domain id 'l2' (also domains[0])" in problems
    assert "domains[2].sites: site 'west' is already in domain 'l2' (a site is in one domain)" in problems
    assert any(p.startswith("fleet.lease: the azure_blob lease lives in the lake's container") for p in problems)
    assert any(p.startswith("domains[0].sites: domain 'l2' spans sites east, west") for p in problems)
    assert any(p.startswith("sources[0].client_id: with [fleet] the persistent session must follow") for p in problems)


def test_timing_is_checked(tmp_path: Path) -> None:
    problems = _load(tmp_path, '[site]\nname = "east"\n' + LAKE + "[fleet]\nenabled = true\nrenew_interval = 20\n")
    assert problems == [
        "fleet: renew_interval (20 s) must be at most half of lease_duration (30 s), "
        "so one missed renewal does not lose the domain"
    ]
    problems = _load(tmp_path, "[fleet]\nlease_duration = 90\n")
    assert problems == ["fleet.lease_duration: Input should be less than or equal to 60 (got 90)"]


def test_check_config_prints_the_lines(tmp_path: Path) -> None:
    p = tmp_path / "hciwatch.toml"
    p.write_text('[site]\nname = "east"\n[fleet]\nenabled = true\nbogus = 1\n')
    out = subprocess.run([sys.executable, "-m", "hciwatch", "check-config", str(p)], capture_output=True, text=True)
    assert out.returncode != 0
    assert f"{p}:5: fleet.bogus: unknown key (allowed keys: enabled, instance, lease," in out.stderr

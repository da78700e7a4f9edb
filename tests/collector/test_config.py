"""Config validation: every problem reported at once, each naming file:line, key path and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from collector.config import resolve_secret
from collector.errors import ConfigError
from hciwatch.config import load_config

GOOD = """
data_dir = "./data"

[site]
name = "contoso-hci-1"

[[networks]]
name = "aks-net"
vip_pool_start = "10.0.0.50"
vip_pool_end = "10.0.0.99"
k8s_node_ip_pool_start = "10.0.0.100"
k8s_node_ip_pool_end = "10.0.0.199"
ip_address_prefix = "10.0.0.0/24"
clusters = ["mgmt", "wl-1", "wl-2"]
management_cluster = "mgmt"
"""


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "hciwatch.toml"
    p.write_text(text)
    return p


def test_good_config_loads(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, GOOD))
    net = cfg.collector.networks[0]
    assert net.vip_pool == ("10.0.0.50", "10.0.0.99")
    assert cfg.data_dir == tmp_path / "data"


def test_every_problem_is_reported_with_line_and_allowed_values(tmp_path: Path) -> None:
    text = GOOD.replace('vip_pool_end = "10.0.0.99"', 'vip_pool_end = "10.0.0.300"')
    text = text.replace('management_cluster = "mgmt"', 'management_cluster = "mgmt"\nvip_pol_start = "x"')
    text += "\n[store]\nbatch_rows = -5\n\n[bogus]\nx = 1\n"
    p = _write(tmp_path, text)
    with pytest.raises(ConfigError) as ei:
        load_config(p)
    probs = "\n".join(ei.value.problems)
    lines = text.splitlines()
    end_line = next(i for i, ln in enumerate(lines, 1) if ln.startswith("vip_pool_end"))
    assert f"{p}:{end_line}: networks[0].vip_pool_end: not an IP address: '10.0.0.300'" in probs
    assert "networks[0].vip_pol_start: unknown key (allowed keys: name, vip_pool_start" in probs
    assert "store.batch_rows: Input should be greater than or equal to 1" in probs
    assert "bogus: unknown top-level key (allowed:" in probs


def test_pool_consistency(tmp_path: Path) -> None:
    text = GOOD.replace('vip_pool_start = "10.0.0.50"', 'vip_pool_start = "10.0.0.150"')
    with pytest.raises(ConfigError) as ei:
        load_config(_write(tmp_path, text))
    assert any("end 10.0.0.99 is before start 10.0.0.150" in p for p in ei.value.problems)


def test_unknown_source_type_lists_allowed_types(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as ei:
        load_config(_write(tmp_path, GOOD + '\n[[sources]]\ntype = "snmp"\n'))
    msg = "\n".join(ei.value.problems)
    assert "sources[0].type: unknown source type 'snmp'" in msg and "windows" in msg and "haproxy" in msg


def test_toml_syntax_error_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"line 3"):
        load_config(_write(tmp_path, 'data_dir = "x"\n[site]\nname = \n'))


def test_secrets_from_env_or_file_never_echoed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HCIW_TOKEN", "s3cret")
    assert resolve_secret("env:HCIW_TOKEN", what="api.token_file") == "s3cret"
    f = tmp_path / "tok"
    f.write_text("filetoken\n")
    assert resolve_secret(str(f), what="x") == "filetoken"
    with pytest.raises(ConfigError) as ei:
        resolve_secret("env:NOPE_NOT_SET", what="api.token_file")
    assert "NOPE_NOT_SET" in str(ei.value)

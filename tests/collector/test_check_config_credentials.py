"""``hciwatch check-config`` reads every secret and TLS file the way ``run`` will, and names each key."""

from __future__ import annotations

from pathlib import Path

import pytest

from hciwatch.cli import main


def test_check_config_reports_unusable_secrets_and_tls_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HCIW_LB_PW", raising=False)
    monkeypatch.setenv("HCIW_HOOK_TOKEN", "hook-s3cret")
    cfg = tmp_path / "hciwatch.toml"
    cfg.write_text(
        f"""
[api]
allow_unauthenticated = true

[[sources]]
type = "haproxy"
name = "lb"
targets = ["https://10.0.0.5:8404/stats"]
username = "hciwatch"
password_file = "env:HCIW_LB_PW"

[[sources]]
type = "k8s_inventory"
[[sources.clusters]]
name = "wl"
api_url = "https://10.0.0.9:6443"
bearer_token_file = "{tmp_path / "no-token"}"

[[exporters]]
type = "webhook"
url = "https://hooks.example/alerts"
bearer_token_file = "env:HCIW_HOOK_TOKEN"
tls = {{ ca_file = "{tmp_path / "no-ca.pem"}" }}
"""
    )
    assert main(["check-config", str(cfg)]) == 2
    err = capsys.readouterr().err.replace("\n", " ")
    assert "sources[0].password_file: environment variable HCIW_LB_PW is not set" in err
    assert "sources[1].clusters[0].bearer_token_file: cannot read secret file" in err
    assert "exporters[0].tls.ca_file: cannot load CA certificates" in err
    assert "hook-s3cret" not in err
    monkeypatch.setenv("HCIW_LB_PW", "pw")
    (tmp_path / "no-token").write_text("token\n")
    cfg.write_text(cfg.read_text().replace(f'tls = {{ ca_file = "{tmp_path / "no-ca.pem"}" }}', "tls = true"))
    assert main(["check-config", str(cfg)]) == 0

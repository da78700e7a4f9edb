"""What a Prometheus/Telegraf user expects of a CLI: --version, logging options on either side of
the verb, help with a description and default for every flag, --config on every verb that reads
a config, check-config in both forms, sample-config that validates, test-sources against a real peer.
"""

from __future__ import annotations

import argparse
import json
import socket
from pathlib import Path

import pytest

from hciwatch.cli import build_parser, main
from tests.fixtures.haproxy import HaproxyServer


def _subparsers(p: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for a in p._actions:
        if isinstance(a, argparse._SubParsersAction):
            return dict(a.choices)
    raise AssertionError("no sub-commands")


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith("hciwatch 0.")


def test_every_flag_has_help_and_every_verb_a_description() -> None:
    verbs = _subparsers(build_parser())
    assert {"run", "check-config", "test-sources", "sample-config", "demo", "sql", "alerts"} <= set(verbs)
    for name, sp in verbs.items():
        assert sp.description, name
        for a in sp._actions:
            if isinstance(a, argparse._HelpAction):
                continue
            assert a.help and a.help != argparse.SUPPRESS, f"{name} {a.option_strings or a.dest}: no help"
        text = sp.format_help()
        assert "--log-level" in text and "--log-format" in text, name
    assert "(default: 10000)" in verbs["sql"].format_help().replace("\n", " ").replace("  ", " ")


@pytest.mark.parametrize("verb", ["run", "capture", "import", "replay", "sql", "alerts", "report", "test-sources"])
def test_config_everywhere(verb: str) -> None:
    assert "--config" in _subparsers(build_parser())[verb].format_help()


@pytest.mark.parametrize(
    "argv",
    [
        ["--log-level", "debug", "--log-format", "json", "sample-config"],
        ["sample-config", "--log-level", "debug", "--log-format", "json"],
        ["-v", "sample-config", "-v"],
    ],
)
def test_logging_options_before_or_after_the_verb(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    assert args.command == "sample-config"
    if "--log-level" in argv:
        assert args.log_level == "debug" and args.log_format == "json"
    else:
        assert args.verbose == 1


def test_json_logs_are_one_object_per_line_and_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    import logging

    from hciwatch.logsetup import configure

    configure("info", "json")
    try:
        logging.getLogger("hciwatch.test").info("posting to https://u:hunter2@example.com/?sig=abc123")
    finally:
        configure("warning", "text")
    line = capsys.readouterr().err.strip().splitlines()[-1]
    rec = json.loads(line)
    assert rec["level"] == "info" and rec["logger"] == "hciwatch.test"
    assert "hunter2" not in line and "abc123" not in line and "u:***@" in rec["msg"]


def test_sample_config_validates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["sample-config"]) == 0
    text = capsys.readouterr().out
    assert text == (Path(__file__).resolve().parents[2] / "deploy" / "hciwatch.toml").read_text()
    # point the sample's secret and kubeconfig paths and data dir at files that exist here
    for name in ("api-token", "haproxy-stats.pass", "kubeconfig-wl-prod", "kubeconfig-wl-dev"):
        (tmp_path / name).write_text("x\n")
    text = text.replace("/etc/hciwatch/", f"{tmp_path}/").replace("/var/lib/hciwatch", f"{tmp_path}/data")
    cfg = tmp_path / "hciwatch.toml"
    cfg.write_text(text)
    assert main(["check-config", "--config", str(cfg)]) == 0
    assert "OK" in capsys.readouterr().out
    assert main(["check-config", str(cfg)]) == 0  # the positional form still works


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.integration
def test_test_sources_against_real_haproxy(
    haproxy_server: HaproxyServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dead = f"http://127.0.0.1:{_free_port()}/stats"
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        "[api]\nallow_unauthenticated = true\n"
        '[[sources]]\ntype = "haproxy"\n'
        f'targets = ["{haproxy_server.stats_url}", "{dead}"]\n'
        f'username = "{haproxy_server.stats_user}"\npassword_file = "{haproxy_server.stats_password_file}"\n'
        "timeout = 3.0\n"
    )
    rc = main(["test-sources", "--config", str(cfg)])
    out = capsys.readouterr().out
    assert rc == 1  # one target is down
    ok = next(line for line in out.splitlines() if haproxy_server.stats_url in line)
    assert ok.startswith("OK ") and " 0 sample(s)" not in ok
    assert "haproxy.current_sessions" in out  # metric names it parsed
    bad = next(line for line in out.splitlines() if dead in line)
    assert bad.startswith("FAIL")
    assert haproxy_server.stats_password not in out

    assert main(["test-sources", "--config", str(cfg), "--format", "json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    by_target = {t["target"]: t for t in doc["targets"]}
    assert by_target[haproxy_server.stats_url]["ok"] and by_target[haproxy_server.stats_url]["samples"] > 0
    assert not by_target[dead]["ok"] and by_target[dead]["errors"]

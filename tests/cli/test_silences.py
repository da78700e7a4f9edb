"""Silences: a maintenance window keeps matching alert changes from every sink, persists, is
recorded, and is managed from the CLI and the API (behind the token)."""

from __future__ import annotations

import json
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from collector.schema import AlertKind, AlertStatus
from hciwatch.cli import main
from hciwatch.silences import SilenceStore, parse_matchers
from tests.api.helpers import make_alert


def test_matchers_parse_and_match() -> None:
    assert parse_matchers("kind=duplicate_ip, host=hci-node-0*") == {"kind": "duplicate_ip", "host": "hci-node-0*"}
    for bad in ("", "kind", "kind=", "=x", "a=1,a=2"):
        with pytest.raises(ValueError):
            parse_matchers(bad)
    store_dir = Path("/nonexistent-never-written")
    s = SilenceStore(store_dir)
    assert s.current() == []
    from hciwatch.silences import Silence

    now = datetime.now(UTC)
    sil = Silence("x", {"kind": "duplicate_ip", "host": "hci-node-0?"}, now, now + timedelta(hours=1), "c")
    assert sil.matches(make_alert(1, host="hci-node-01"))
    assert not sil.matches(make_alert(1, host="hci-node-11"))
    assert not sil.matches(make_alert(1, kind=AlertKind.EASTWEST_CONGESTION))
    assert Silence("y", {"resource": "10.0.0.*"}, now, now, "c").matches(make_alert(3))
    assert not Silence("z", {"pool": "vip"}, now, now, "c").matches(make_alert(3))  # label absent


def test_store_persists_filters_and_records(tmp_path: Path) -> None:
    store = SilenceStore(tmp_path)
    start = datetime(2026, 11, 16, tzinfo=UTC)
    sil = store.add({"host": "hci-node-04"}, duration=timedelta(hours=2), comment="reboot CHG-1", starts_at=start)
    hit = make_alert(1, host="hci-node-04")
    miss = make_alert(2, host="hci-node-01")
    passed = store.filter([hit, miss], now=start + timedelta(minutes=30))
    assert passed == [miss]
    again = SilenceStore(tmp_path)  # what a restarted service reads
    (only,) = again.current(start + timedelta(minutes=31))
    assert only.id == sil.id and only.suppressed[0]["fingerprint"] == hit.fingerprint
    assert again.filter([hit], now=start + timedelta(hours=3)) == [hit]  # the window is over
    again.expire(sil.id, now=start + timedelta(minutes=40))
    assert SilenceStore(tmp_path).filter([hit], now=start + timedelta(minutes=41)) == [hit]
    with pytest.raises(ValueError):
        store.add({"host": "x"}, duration=timedelta(hours=1), comment="  ")
    with pytest.raises(ValueError):
        store.add({"host": "x"}, duration=timedelta(0), comment="c")


def test_cli_add_list_expire(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = str(tmp_path)
    argv = ["silence", "add", "--data-dir", d, "--match", "kind=eastwest_congestion,host=hci-node-04"]
    assert main([*argv, "--for", "2h", "--comment", "firmware upgrade CHG-1234"]) == 0
    out = capsys.readouterr().out
    sid = out.split()[1]
    assert "active until" in out
    assert main(["silence", "list", "--data-dir", d, "--format", "json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [s["id"] for s in listed] == [sid] and listed[0]["comment"] == "firmware upgrade CHG-1234"
    assert main(["silence", "expire", "--data-dir", d, sid]) == 0
    capsys.readouterr()
    assert main(["silence", "list", "--data-dir", d, "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert main(["silence", "list", "--data-dir", d, "--all", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["expired_at"]
    # mistakes: exit 2 with the fix
    assert main(["silence", "add", "--data-dir", d, "--match", "kind", "--for", "2h", "--comment", "x"]) == 2
    assert "not key=value" in capsys.readouterr().err
    assert main(["silence", "expire", "--data-dir", d, "nope"]) == 2
    assert "no silence 'nope'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["silence", "add", "--data-dir", d, "--match", "a=b", "--for", "soon", "--comment", "x"])


async def test_service_keeps_silenced_changes_from_every_sink(tmp_path: Path) -> None:
    """Every change reaches the outbox (the alerts table is written from it); the paging sinks
    are wrapped so a silenced change reaches none of them; the silence records it."""
    from hciwatch.config import parse_config
    from hciwatch.service import Service
    from hciwatch.silences import SilencingExporter

    text = (
        f'data_dir = "{tmp_path}/data"\n[api]\nallow_unauthenticated = true\n'
        '[[exporters]]\ntype = "memory"\nname = "pager"\n'
    )
    svc = Service(parse_config(tomllib.loads(text), text, file="t.toml"))
    try:
        hit = make_alert(1, host="hci-node-04")
        miss = make_alert(2, host="hci-node-01")
        resolved = make_alert(1, host="hci-node-04", status=AlertStatus.RESOLVED)
        svc.silences.add({"host": "hci-node-04"}, duration=timedelta(hours=1), comment="reboot", starts_at=hit.ts)
        pager = next(e for e in svc.exporters if e.name == "pager")
        assert isinstance(pager, SilencingExporter)
        assert not isinstance(next(e for e in svc.exporters if e.name == svc.feed.name), SilencingExporter)
        before = svc.outbox.lag("pager")
        svc._to_outbox([hit, miss, resolved])
        assert svc.outbox.lag("pager") - before == 3  # all stored for the history
        result = await pager.export([hit, miss, resolved])
        assert result.ok
        assert [a.fingerprint for a in pager.inner.alerts] == [miss.fingerprint]  # type: ignore[attr-defined]
        assert (await pager.export([hit])).ok and len(pager.inner.batches) == 1  # type: ignore[attr-defined]
        recorded = json.loads((tmp_path / "data" / "silences.json").read_text())["silences"][0]["suppressed"]
        assert [r["status"] for r in recorded] == ["firing", "resolved"]
    finally:
        await svc.stop()

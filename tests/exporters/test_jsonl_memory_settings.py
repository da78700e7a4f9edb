"""JSONL and memory sinks, sink settings validation and the exporter factory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from collector.schema import Alert
from exporters.base import Exporter
from exporters.jsonl import JsonlExporter
from exporters.memory import MemoryExporter
from exporters.registry import build_exporter, parse_sink_settings, sink_types
from exporters.settings import (
    JsonlSettings,
    OtlpSettings,
    OutboxSettings,
    read_headers_file,
)
from tests.exporters.script import many_alerts, scripted_alerts


async def test_jsonl_lines_are_the_alert_json_lines(tmp_path: Path) -> None:
    alerts = scripted_alerts()
    sink = JsonlExporter.from_settings(JsonlSettings(path=tmp_path / "out" / "alerts.jsonl"))
    await sink.start()
    assert (await sink.export(alerts[:7])).ok
    assert (await sink.export(alerts[7:])).ok
    lines = (tmp_path / "out" / "alerts.jsonl").read_text().splitlines()
    assert lines == [a.to_json_line() for a in alerts]
    assert [Alert.from_json(json.loads(line)) for line in lines] == alerts
    assert await sink.healthcheck()
    await sink.shutdown()


async def test_jsonl_rotates_by_size_without_splitting_batches(tmp_path: Path) -> None:
    alerts = many_alerts(200)
    path = tmp_path / "alerts.jsonl"
    sink = JsonlExporter(path, max_bytes=4096, backups=2)
    for i in range(0, 200, 10):
        assert (await sink.export(alerts[i : i + 10])).ok
    files = [path, path.with_name("alerts.jsonl.1"), path.with_name("alerts.jsonl.2")]
    assert all(f.exists() for f in files)
    assert not path.with_name("alerts.jsonl.3").exists()
    for f in files:
        n = len(f.read_text().splitlines())
        assert n % 10 == 0 and f.stat().st_size <= 4096
    newest_last = [line for f in reversed(files) for line in f.read_text().splitlines()]
    assert newest_last == [a.to_json_line() for a in alerts[-len(newest_last) :]]


async def test_jsonl_unwritable_is_a_retryable_failure(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    sink = JsonlExporter(tmp_path / "dir")  # a directory cannot be opened for append
    result = await sink.export(scripted_alerts()[:1])
    assert not result.ok and result.retryable and "dir" in result.error
    assert not await sink.healthcheck()


async def test_memory_exporter_fails_as_told() -> None:
    sink = MemoryExporter("m", fail_times=2, retry_after=3)
    assert isinstance(sink, Exporter)
    first = await sink.export(scripted_alerts()[:1])
    assert not first.ok and first.retryable and first.retry_after == 3
    assert not (await sink.export(scripted_alerts()[:1])).ok
    assert (await sink.export(scripted_alerts()[:2])).ok
    sink.fail_next(1, retryable=False)
    assert not (await sink.export(scripted_alerts()[:1])).retryable
    assert sink.alerts == scripted_alerts()[:2] and sink.attempts == 4


@pytest.mark.parametrize(
    "data",
    [
        {"type": "otlp", "endpont": "typo"},
        {"type": "otlp", "protocol": "thrift"},
        {"type": "otlp", "tls": {"cert_file": "/x.pem"}},
        {"type": "otlp", "tls": {"insecure_skip_verify": True}},
        {"type": "otlp", "protocol": "http/protobuf", "tls": {"server_name": "collector.local"}},
        {"type": "jsonl"},
        {"type": "jsonl", "path": "/x", "name": "../escape"},
        {"type": "mqtt", "host": "h", "topic_prefix": "a/#"},
        {"type": "mqtt", "host": "h", "password_file": "/pw"},
        {"type": "memory", "backoff_initial": 10, "backoff_max": 1},
        {"type": "azure_monitor", "connection_string_file": "/a", "connection_string_env": "B"},
        {"type": "kafka"},
    ],
)
def test_bad_sink_settings_are_rejected(data: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        parse_sink_settings(data)


def test_names_default_to_the_type_and_the_factory_builds_every_type(tmp_path: Path) -> None:
    cs = tmp_path / "cs"
    cs.write_text("InstrumentationKey=00000000-0000-0000-0000-000000000001;IngestionEndpoint=http://127.0.0.1:9/")
    tables: dict[str, dict[str, Any]] = {
        "otlp": {},
        "azure_monitor": {"connection_string_file": cs},
        "webhook": {"url": "http://127.0.0.1:9/h"},
        "mqtt": {"host": "127.0.0.1"},
        "jsonl": {"path": tmp_path / "a.jsonl"},
        "memory": {},
    }
    assert set(tables) == set(sink_types())
    for kind, extra in tables.items():
        s = parse_sink_settings({"type": kind, **extra})
        assert s.name == kind
        exporter = build_exporter(s)
        assert isinstance(exporter, Exporter) and exporter.name == kind
    assert OtlpSettings().name == "otlp"
    assert parse_sink_settings({"type": "jsonl", "name": "audit", "path": "/x"}).name == "audit"


def test_outbox_settings_bounds() -> None:
    assert OutboxSettings().max_bytes == 256 * 1024 * 1024
    with pytest.raises(ValidationError, match="half"):
        OutboxSettings(max_bytes=1 << 20, segment_bytes=1 << 20)


def test_headers_file_format(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from collector.errors import ConfigError

    monkeypatch.setenv("HCIW_TOKEN", "xyz")
    f = tmp_path / "h"
    f.write_text("# comment\n\nAuthorization: Bearer env-not-applied\nX-Token: env:HCIW_TOKEN\n")
    assert read_headers_file(f, key="k") == {"Authorization": "Bearer env-not-applied", "X-Token": "xyz"}
    f.write_text("Authorization Bearer secret-value\n")
    with pytest.raises(ConfigError) as info:
        read_headers_file(f, key="exporters.otlp.headers_file")
    assert f"{f}:1" in str(info.value) and "secret-value" not in str(info.value)

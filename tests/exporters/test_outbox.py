"""The outbox: durability, per-sink cursors, retries, skipping, disk bound, crash recovery."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.schema import Alert, AlertKind, AlertStatus, Severity
from exporters.base import ExportResult
from exporters.delivery import DeliveryPolicy, OutboxDispatcher
from exporters.memory import MemoryExporter
from exporters.outbox import Outbox
from tests.exporters.script import change_key, many_alerts, scripted_alerts
from tests.fixtures.otlp_receiver import OtlpReceiver

FAST = DeliveryPolicy(max_batch=10, max_wait=0, backoff_initial=0.01, backoff_max=0.05)
REPO = Path(__file__).resolve().parents[2]


class Waits:
    """An injected sleep: records the requested delays and returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(0)


async def until(cond: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not reached in time")


def assert_in_order_per_fingerprint(received: Sequence[Alert], appended: Sequence[Alert]) -> None:
    """Every appended change arrives; per fingerprint, first arrivals follow the appended order
    (a re-sent batch may repeat changes already seen, but nothing new jumps ahead)."""
    position = {change_key(a): i for i, a in enumerate(appended)}
    assert {change_key(a) for a in appended} <= {change_key(a) for a in received}
    seen: set[tuple[str, str, str]] = set()
    last_new: dict[str, int] = {}
    for a in received:
        key = change_key(a)
        if key in seen:
            continue
        seen.add(key)
        assert position[key] > last_new.get(a.fingerprint, -1), f"reordered: {key}"
        last_new[a.fingerprint] = position[key]


# ---------------------------------------------------------------------------------------------
# The log itself
# ---------------------------------------------------------------------------------------------


def test_append_read_commit_and_reopen(tmp_path: Path) -> None:
    alerts = scripted_alerts()
    box = Outbox(tmp_path, ["a", "b"])
    assert box.append(alerts[:12]) == 12
    assert box.append(alerts[12:]) == 20
    got = box.read("a", 5)
    assert [s for s, _ in got] == [0, 1, 2, 3, 4]
    assert [a for _, a in got] == alerts[:5]
    box.commit("a", 5)
    assert box.lag("a") == 15 and box.lag("b") == 20
    box.close()
    assert json.loads((tmp_path / "outbox" / "cursors" / "a.json").read_text())["next_seq"] == 5

    again = Outbox(tmp_path, ["a", "b"])
    assert again.end_seq == 20
    assert [a for _, a in again.read("a", 100)] == alerts[5:]
    assert [a for _, a in again.read("b", 100)] == alerts
    again.close()


def test_new_sink_starts_at_the_end_and_commit_never_goes_back(tmp_path: Path) -> None:
    alerts = scripted_alerts()
    box = Outbox(tmp_path, ["a"])
    box.append(alerts[:10])
    box.close()
    box = Outbox(tmp_path, ["a", "late"])
    assert box.cursor("late") == 10 and box.read("late", 10) == []
    box.append(alerts[10:12])
    assert [s for s, _ in box.read("late", 10)] == [10, 11]
    box.commit("a", 8)
    box.commit("a", 3)
    assert box.cursor("a") == 8
    box.close()


def test_torn_last_append_is_cut_off_on_open(tmp_path: Path) -> None:
    alerts = scripted_alerts()
    box = Outbox(tmp_path, ["a"], start="oldest")
    box.append(alerts[:3])
    box.close()
    seg = sorted((tmp_path / "outbox").glob("segment-*.jsonl"))[-1]
    with open(seg, "ab") as fh:
        fh.write(b'{"seq":3,"alert":{"fingerprint":"abc","ki')  # crash mid-write
    box = Outbox(tmp_path, ["a"])
    assert box.end_seq == 3
    box.append(alerts[3:5])
    assert [a for _, a in box.read("a", 10)] == alerts[:5]
    box.close()


def test_damaged_complete_line_in_the_last_segment_keeps_what_follows(tmp_path: Path) -> None:
    alerts = scripted_alerts()
    box = Outbox(tmp_path, ["a"], start="oldest")
    box.append(alerts[:3])
    box.close()
    seg = sorted((tmp_path / "outbox").glob("segment-*.jsonl"))[-1]
    lines = seg.read_bytes().splitlines(keepends=True)
    seg.write_bytes(lines[0] + b"\x00\x00garbage\n" + lines[2])
    box = Outbox(tmp_path, ["a"])
    assert box.end_seq == 3
    assert [(s, a) for s, a in box.read("a", 10)] == [(0, alerts[0]), (2, alerts[2])]
    box.close()


def test_unreadable_record_is_skipped_and_counted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    alerts = scripted_alerts()
    box = Outbox(tmp_path, ["a"], segment_bytes=4096, max_bytes=1 << 20)
    box.append(alerts[:2])
    box.close()
    seg = sorted((tmp_path / "outbox").glob("segment-*.jsonl"))[0]
    lines = seg.read_bytes().splitlines(keepends=True)
    lines[0] = b'{"seq":0,"alert":{"kind":"no-such-kind"}}\n'
    seg.write_bytes(b"".join(lines))
    box = Outbox(tmp_path, ["a"])
    box.append(alerts[2:3])
    with caplog.at_level(logging.ERROR):
        got = box.read("a", 10)
    assert [s for s, _ in got] == [1, 2]
    assert box.stats()["corrupt_lines"] == 1
    assert "seq 0 is unreadable" in caplog.text
    box.close()


def test_consumed_segments_are_deleted(tmp_path: Path) -> None:
    alerts = many_alerts(300)
    box = Outbox(tmp_path, ["a", "b"], segment_bytes=4096, max_bytes=1 << 20)
    for i in range(0, 300, 10):
        box.append(alerts[i : i + 10])  # segments roll over between appends, never inside one
    segments = box.stats()["segments"]
    assert segments > 3
    box.commit("a", 300)
    assert box.stats()["segments"] == segments  # b still needs them
    box.commit("b", 300)
    assert box.stats()["segments"] == 1
    assert len(list((tmp_path / "outbox").glob("segment-*"))) == 1
    box.close()


def test_disk_bound_drops_the_laggards_oldest_segment(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    alerts = many_alerts(600)
    box = Outbox(tmp_path, ["fast", "dead"], segment_bytes=8192, max_bytes=32768)
    with caplog.at_level(logging.ERROR):
        for i in range(0, 600, 20):
            box.append(alerts[i : i + 20])
            box.commit("fast", box.end_seq)
            assert box.disk_bytes <= 32768 + 8192
    stats = box.stats()
    dead = stats["sinks"]["dead"]
    assert dead["dropped"] > 0
    assert stats["dropped"] == dead["dropped"]
    assert stats["sinks"]["fast"]["dropped"] == 0
    assert dead["cursor"] == dead["dropped"]  # moved past exactly what was deleted
    assert dead["lag"] == 600 - dead["dropped"]
    assert "sink dead loses" in caplog.text
    remaining = [a for _, a in box.read("dead", 1000)]
    assert remaining == alerts[dead["dropped"] :]  # newest kept, in order
    box.close()


async def test_outbox_append_async(tmp_path: Path) -> None:
    box = Outbox(tmp_path, ["x"], start="oldest")
    assert await box.append_async(scripted_alerts()[:3]) == 3
    assert len(box.read("x", 10)) == 3
    box.close()


# ---------------------------------------------------------------------------------------------
# Delivery
# ---------------------------------------------------------------------------------------------


async def test_retry_after_is_honoured_and_backoff_is_full_jitter(tmp_path: Path) -> None:
    box = Outbox(tmp_path, ["m"])
    sink = MemoryExporter("m", fail_times=2, retry_after=42.0)
    waits = Waits()
    d = OutboxDispatcher(box, sink, FAST, sleep=waits)
    d.start()
    box.append(scripted_alerts()[:5])
    await until(lambda: len(sink.alerts) == 5)
    assert waits.delays == [42.0, 42.0]

    policy = DeliveryPolicy(max_batch=10, max_wait=0, backoff_initial=1.0, backoff_max=8.0)
    sink2 = MemoryExporter("m", fail_times=6)
    await d.stop()
    waits2 = Waits()
    d2 = OutboxDispatcher(box, sink2, policy, sleep=waits2, rng=random.Random(7))
    d2.start()
    box.append(scripted_alerts()[5:8])
    await until(lambda: len(sink2.alerts) == 3)
    caps = [1, 2, 4, 8, 8, 8]
    assert len(waits2.delays) == 6
    assert all(0 <= w <= c for w, c in zip(waits2.delays, caps, strict=True))
    assert len(set(waits2.delays)) == 6  # jittered, not fixed
    await d2.stop()
    box.close()


async def test_non_retryable_batch_is_skipped_counted_and_does_not_block(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    alerts = scripted_alerts()
    box = Outbox(tmp_path, ["m"])
    sink = MemoryExporter("m")
    sink.fail_next(1, retryable=False)
    waits = Waits()
    d = OutboxDispatcher(box, sink, DeliveryPolicy(max_batch=4, max_wait=0), sleep=waits)
    with caplog.at_level(logging.ERROR):
        d.start()
        box.append(alerts)
        await until(lambda: box.lag("m") == 0)
    await d.stop()
    assert sink.alerts == alerts[4:]
    c = box.stats()["sinks"]["m"]
    assert c["skipped"] == 4 and c["failures"] == 1 and c["delivered"] == 16
    assert waits.delays == []
    assert "permanent failure, skipping 4 alert changes" in caplog.text
    box.close()


async def test_a_dead_sink_does_not_block_the_others_or_the_caller(tmp_path: Path) -> None:
    alerts = many_alerts(100)
    box = Outbox(tmp_path, ["dead", "slow", "ok"])
    dead = MemoryExporter("dead", fail_times=10**9)

    class Slow(MemoryExporter):
        async def export(self, batch: Sequence[Alert]) -> ExportResult:
            await asyncio.sleep(0.01)
            return await super().export(batch)

    slow, ok = Slow("slow"), MemoryExporter("ok")
    ds = [OutboxDispatcher(box, s, FAST, sleep=Waits()) for s in (dead, slow, ok)]
    for d in ds:
        d.start()
    for i in range(0, 100, 10):
        box.append(alerts[i : i + 10])  # returns after fsync, whatever the sinks do
    await until(lambda: len(ok.alerts) == 100 and len(slow.alerts) == 100)
    assert ok.alerts == alerts and slow.alerts == alerts
    assert dead.alerts == [] and box.lag("dead") == 100
    assert box.stats()["sinks"]["dead"]["failures"] > 0
    for d in ds:
        await d.stop()
    box.close()


async def test_an_exporter_that_raises_is_retried(tmp_path: Path) -> None:
    class Flaky(MemoryExporter):
        raised = 0

        async def export(self, batch: Sequence[Alert]) -> ExportResult:
            if self.raised < 2:
                self.raised += 1
                raise RuntimeError("bug in a sink")
            return await super().export(batch)

    box = Outbox(tmp_path, ["f"])
    sink = Flaky("f")
    d = OutboxDispatcher(box, sink, FAST, sleep=Waits())
    d.start()
    box.append(scripted_alerts()[:3])
    await until(lambda: len(sink.alerts) == 3)
    assert "RuntimeError: bug in a sink" in box.stats()["sinks"]["f"]["last_error"]
    await d.stop()
    box.close()


async def test_max_wait_collects_appends_into_one_batch(tmp_path: Path) -> None:
    alerts = scripted_alerts()
    box = Outbox(tmp_path, ["m"])
    sink = MemoryExporter("m")
    d = OutboxDispatcher(box, sink, DeliveryPolicy(max_batch=9, max_wait=10.0))
    d.start()
    box.append(alerts[:2])
    await asyncio.sleep(0.02)
    box.append(alerts[2:4])
    await asyncio.sleep(0.02)
    box.append(alerts[4:9])
    await until(lambda: len(sink.alerts) == 9)
    assert [len(b) for b in sink.batches] == [9]  # three appends, one batch: sent once it was full
    assert sink.alerts == alerts[:9]
    await d.stop()
    box.close()


async def test_exported_but_not_committed_is_sent_again_after_restart(tmp_path: Path) -> None:
    alerts = scripted_alerts()

    class LostAck(MemoryExporter):
        """The peer takes the batch but the answer never comes back (crash before commit)."""

        async def export(self, batch: Sequence[Alert]) -> ExportResult:
            self.batches.append(list(batch))
            await asyncio.Event().wait()
            return ExportResult.success()

    box = Outbox(tmp_path, ["peer"])
    first = LostAck("peer")
    d = OutboxDispatcher(box, first, DeliveryPolicy(max_batch=5, max_wait=0))
    d.start()
    box.append(alerts[:8])
    await until(lambda: len(first.alerts) == 5)
    await d.stop()
    box.close()

    box = Outbox(tmp_path, ["peer"])
    second = MemoryExporter("peer")
    d = OutboxDispatcher(box, second, DeliveryPolicy(max_batch=5, max_wait=0))
    d.start()
    await until(lambda: len(second.alerts) == 8)
    await d.stop()
    assert second.alerts == alerts[:8]  # the unacknowledged batch again, then the rest
    assert_in_order_per_fingerprint(first.alerts + second.alerts, alerts[:8])
    box.close()


def test_dispatcher_needs_a_declared_sink(tmp_path: Path) -> None:
    box = Outbox(tmp_path, ["a"])
    with pytest.raises(ValueError, match="not declared"):
        OutboxDispatcher(box, MemoryExporter("b"))
    box.close()


@settings(max_examples=25)
@given(
    chunks=st.lists(st.integers(1, 9), min_size=1, max_size=8),
    failures=st.lists(st.sampled_from(["ok", "retry", "retry_after"]), max_size=10),
    max_batch=st.integers(1, 7),
)
async def test_any_failure_pattern_delivers_everything_in_order(
    tmp_path_factory: pytest.TempPathFactory, chunks: list[int], failures: list[str], max_batch: int
) -> None:
    alerts = many_alerts(sum(chunks))
    box = Outbox(tmp_path_factory.mktemp("ob"), ["m"], segment_bytes=4096, max_bytes=1 << 20)
    pattern = iter(failures)

    class Scripted(MemoryExporter):
        async def export(self, batch: Sequence[Alert]) -> ExportResult:
            step = next(pattern, "ok")
            if step == "retry":
                return ExportResult.failure("scripted")
            if step == "retry_after":
                return ExportResult.failure("scripted", retry_after=5)
            return await super().export(batch)

    sink = Scripted("m")
    d = OutboxDispatcher(box, sink, DeliveryPolicy(max_batch=max_batch, max_wait=0), sleep=Waits())
    d.start()
    i = 0
    for n in chunks:
        box.append(alerts[i : i + n])
        i += n
    await until(lambda: box.lag("m") == 0)
    await d.stop()
    assert sink.alerts == alerts
    assert all(len(b) <= max_batch for b in sink.batches)
    box.close()


# ---------------------------------------------------------------------------------------------
# Crash during an outage, in a real process, against the real OTLP receiver
# ---------------------------------------------------------------------------------------------


class Child:
    def __init__(self, args: list[str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.exporters.outbox_child", *args],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        assert self.readline() == "ready"

    def readline(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip()

    def append(self, a: int, b: int) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"append {a} {b}\n")
        self.proc.stdin.flush()
        assert self.readline() == f"ok {b}"

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def _wait(cond: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise AssertionError("condition not reached in time")


def _jsonl(path: Path) -> list[Alert]:
    if not path.exists():
        return []
    return [Alert.from_json(json.loads(line)) for line in path.read_text().splitlines() if line]


@pytest.mark.integration
@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_sigkill_during_outage_then_restart_delivers_everything(
    otlp_receiver: OtlpReceiver, tmp_path: Path, protocol: str
) -> None:
    n = 60
    alerts = many_alerts(n)
    endpoint = otlp_receiver.grpc_endpoint if protocol == "grpc" else otlp_receiver.http_endpoint
    jsonl = tmp_path / "alerts.jsonl"
    args = [str(tmp_path / "data"), protocol, endpoint, str(jsonl), str(n)]

    child = Child(args)
    try:
        child.append(0, 30)
        _wait(lambda: len(otlp_receiver.logs) >= 30 and len(_jsonl(jsonl)) == 30)
        otlp_receiver.set_unavailable(True)
        child.append(30, 45)
        child.append(45, 60)
        _wait(lambda: len(_jsonl(jsonl)) == 60 and otlp_receiver.refused >= 2)
        child.kill()  # mid-outage: 30 changes accepted but not delivered to OTLP
    finally:
        child.stop()
    assert len(otlp_receiver.logs) < 60

    otlp_receiver.set_unavailable(False)
    child = Child(args)
    try:
        _wait(
            lambda: (
                {
                    r.attributes["hciwatch.alert.fingerprint"]
                    + r.attributes["hciwatch.alert.status"]
                    + str(r.time_unix_nano)
                    for r in otlp_receiver.logs
                }.__len__()
                >= n
            )
        )
    finally:
        child.stop()

    received = [_from_record(r.attributes, r.body, r.severity_text) for r in otlp_receiver.logs]
    delivered_jsonl = _jsonl(jsonl)
    assert len(received) >= len({change_key(a) for a in delivered_jsonl})
    assert_in_order_per_fingerprint(received, alerts)
    assert {change_key(a) for a in delivered_jsonl} == {change_key(a) for a in alerts}


def _from_record(attrs: dict[str, object], body: object, severity: str) -> Alert:
    from collector.schema import parse_iso

    ends = attrs.get("hciwatch.alert.ends_at")
    return Alert(
        fingerprint=str(attrs["hciwatch.alert.fingerprint"]),
        kind=AlertKind(str(attrs["hciwatch.alert.kind"])),
        status=AlertStatus(str(attrs["hciwatch.alert.status"])),
        severity=Severity(severity),
        starts_at=parse_iso(str(attrs["hciwatch.alert.starts_at"])),
        ends_at=parse_iso(str(ends)) if ends else None,
        resource={},
        summary=str(body),
    )

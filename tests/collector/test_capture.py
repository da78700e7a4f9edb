"""Capture files: exact round trips (plain and zstd) and precise errors for bad lines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import zstandard

from collector.capture import read_capture, read_captures, write_capture
from collector.schema import RawRecord

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
KINDS = ["prometheus", "haproxy-csv", "k8s", "mqtt", "neighbors"]


def _recs() -> list[RawRecord]:
    return [
        RawRecord(
            T0,
            "prometheus",
            "hci-node-01:9182",
            b'windows_net_bytes_total{nic="a"} 1\n',
            "hci-node-01",
            {"cluster": "hci-1"},
        ),
        RawRecord(
            T0 + timedelta(seconds=1),
            "mqtt",
            "tcp://broker:1883",
            b'{"fields":{}}',
            "hci-node-02",
            topic="telegraf/hci-node-02/rdma_activity",
        ),
        RawRecord(T0 + timedelta(seconds=2), "haproxy-csv", "lb:stats", b"\xff\xfe binary \x00", "lb"),
    ]


def test_round_trip_plain_and_zstd_is_exact(tmp_path: Path) -> None:
    for name in ("c.jsonl", "c.jsonl.zst"):
        p = tmp_path / name
        assert write_capture(p, _recs()) == 3
        items = list(read_capture(p, known_kinds=KINDS))
        assert [i.error for i in items] == [None, None, None]
        assert [i.record for i in items] == _recs()
    # writing the same records twice gives byte-identical files
    write_capture(tmp_path / "again.jsonl", _recs())
    assert (tmp_path / "again.jsonl").read_bytes() == (tmp_path / "c.jsonl").read_bytes()


def test_bad_lines_are_reported_precisely_and_skipped(tmp_path: Path) -> None:
    good = '{"ts":"2026-11-20T10:00:00.000Z","kind":"prometheus","target":"h:9182","host":"h","body":"a 1"}'
    lines = [
        good,
        '{"ts":"2026-11-20T10:00:01.000Z","kind":"prometheus","target":"h:9182","bo',  # truncated
        '{"ts":"2026-11-20T10:00:02.000Z","kind":"smtp","target":"mail:25","body":"x"}',  # unknown kind
        '{"ts":"yesterday","kind":"prometheus","target":"h:9182","body":"x"}',  # bad ts
        '{"ts":"2026-11-20T09:00:00.000Z","kind":"prometheus","target":"late:9182","body":"x"}',  # out of order
        '{"kind":"prometheus","target":"h:9182","body":"x"}',  # missing ts
        "[1, 2]",
        good.replace("10:00:00", "10:00:05"),
    ]
    p = tmp_path / "bad.jsonl"
    p.write_text("\n".join(lines))  # the last line has no newline: still a whole record
    items = list(read_capture(p, known_kinds=KINDS))
    errors = {i.line: str(i.error) for i in items if i.error}
    assert [i.line for i in items if i.record] == [1, 8]
    assert "truncated JSON" in errors[2] and f"{p}:2" in errors[2]
    assert "unknown kind 'smtp'" in errors[3] and "[mail:25]" in errors[3]
    assert "bad ts" in errors[4] and "yesterday" in errors[4]
    assert "out of order" in errors[5] and "[late:9182]" in errors[5]
    assert "missing field(s) ts" in errors[6]
    assert "must be a JSON object" in errors[7]


def test_valid_json_no_record_can_hold_is_one_error_not_a_crash(tmp_path: Path) -> None:
    """JSON the decoder accepts but no record can hold (or the decoder refuses past a limit)."""
    good = '{"ts":"2026-11-20T10:00:00.000Z","kind":"prometheus","target":"h:9182","host":"h","body":"a 1"}'
    lines = [
        good.replace('"a 1"', '"a\\ud800 1"'),  # a lone surrogate in the body
        good.replace('"host":"h"', '"host":"h","labels":{"c":"\\udfff"}'),  # ... in a label
        good.replace('"a 1"', '"a \\ud83d\\ude00 1"'),  # a surrogate *pair* is a character: kept
        "1" * 5000,  # past the decoder's 4,300-digit limit
        "[" * 100_000 + "]" * 100_000,  # past the recursion limit
        good,
    ]
    p = tmp_path / "odd.jsonl"
    p.write_text("\n".join(lines) + "\n")
    items = list(read_capture(p, known_kinds=KINDS))
    errors = {i.line: str(i.error) for i in items if i.error}
    assert [i.line for i in items if i.record] == [3, 6]
    assert "lone surrogate" in errors[1] and "lone surrogate" in errors[2]
    assert "invalid JSON" in errors[4] and "digits" in errors[4]
    assert "nested too deeply" in errors[5]
    assert items[2].record is not None and items[2].record.body == "a \U0001f600 1".encode()


def test_corrupt_zstd_stream_ends_with_one_error(tmp_path: Path) -> None:
    p = tmp_path / "c.jsonl.zst"
    write_capture(p, [RawRecord(T0 + timedelta(seconds=i), "k8s", "api", b"{}" * 50, "c") for i in range(3000)])
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])  # cut mid-frame
    items = list(read_capture(p, known_kinds=KINDS))
    assert items[-1].error is not None
    assert "unreadable" in str(items[-1].error) or "truncated" in str(items[-1].error)
    assert sum(1 for i in items if i.error) == 1


def test_not_zstd_at_all(tmp_path: Path) -> None:
    p = tmp_path / "x.jsonl.zst"
    p.write_bytes(b"this is not zstd")
    items = list(read_capture(p))
    assert len(items) == 1 and items[0].error is not None


def test_merging_several_files_keeps_time_order(tmp_path: Path) -> None:
    a, b = _recs(), [RawRecord(T0 + timedelta(milliseconds=500), "k8s", "api", b"{}", "c1")]
    write_capture(tmp_path / "a.jsonl", a)
    write_capture(tmp_path / "b.jsonl.zst", b)
    merged = [i.record for i in read_captures([tmp_path / "a.jsonl", tmp_path / "b.jsonl.zst"])]
    assert [r.ts for r in merged if r] == sorted(r.ts for r in a + b)
    assert zstandard  # the module is the one capture files use

"""Parsing in worker processes gives exactly what inline parsing gives, in the same order."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

import lab
from collector.capture import read_capture, record_to_json
from collector.catalog import Catalog, UserMapping
from collector.errors import CaptureError
from collector.schema import RawRecord, iso
from hciwatch import shm_handoff
from hciwatch.parse_pool import ChunkSplit, FeedSets, OffloadParser, Parsed, ParsePool, SplitRuns, parse_one

MAPPINGS = [UserMapping("windows_custom_thing_total", "custom.thing_total", "1", True)]


def _records() -> list[tuple[RawRecord | None, str | CaptureError]]:
    scen = lab.Scenario(duration=timedelta(minutes=4), interval=timedelta(seconds=60))
    recs: list[tuple[RawRecord | None, str | CaptureError]] = [
        (r, f"cap:{i}") for i, r in enumerate(lab.generate(scen))
    ]
    ts = datetime(2026, 1, 1, tzinfo=UTC)
    # a rejected payload, an unknown kind and a capture line without a record, mid-stream
    recs.insert(5, (RawRecord(ts, "prometheus", "bad", b"garbage{{{ \x00"), "cap:bad"))
    recs.insert(9, (RawRecord(ts, "snmp", "x", b""), "cap:snmp"))
    recs.insert(13, (None, CaptureError("truncated JSON", file="cap", line=13)))
    recs.append((RawRecord(ts, "prometheus", "custom", b"windows_custom_thing_total 3\n"), "cap:custom"))
    return recs


def _plain(table: pa.Table) -> pa.Table:
    """``table`` with its dictionary columns decoded (the values, whatever the dictionary)."""
    for i, f in enumerate(table.schema):
        if pa.types.is_dictionary(f.type):
            table = table.set_column(
                i, pa.field(f.name, f.type.value_type, f.nullable), table.column(i).cast(f.type.value_type)
            )
    return table


def test_workers_give_the_inline_outcome_in_input_order() -> None:
    items = _records()
    catalog = Catalog(MAPPINGS)
    with ParsePool(MAPPINGS, workers=2, chunk=7, ahead=2, start_after=3) as pool:
        got = list(pool.parse(items))
    assert [(r, p) for r, p, _ in got] == items
    for rec, _, outcome in got:
        if rec is None:
            assert outcome is None
            continue
        want = parse_one(rec, catalog)
        assert outcome is not None
        assert outcome.rejected == want.rejected and outcome.errors == want.errors
        # the same rows; a worker's dictionary columns index one dictionary for its whole chunk
        assert _plain(outcome.samples).equals(_plain(want.samples))
        assert _plain(outcome.ip_observations).equals(_plain(want.ip_observations))
        # the counts a replay reads instead of the tables (a pooled outcome cuts no slice for them)
        assert outcome.sample_rows == want.samples.num_rows == outcome.samples.num_rows
        assert outcome.ip_observation_rows == want.ip_observations.num_rows
        for rows, origin, table in (
            (outcome.sample_rows, outcome.samples_origin, outcome.samples),
            (outcome.ip_observation_rows, outcome.ip_observations_origin, outcome.ip_observations),
        ):
            if origin is not None:  # a worker's record: its rows are that slice of the chunk's table
                assert rows and origin[0].slice(origin[1], rows).equals(table)
    rejected = {o.rejected[0] for _, _, o in got if o is not None and o.rejected}
    assert rejected == {"parse error", "unknown kind"}
    # a consumer that replaces a pooled record's rows (a filter, say) stores what it set, not the chunk's
    pooled = next(o for _, _, o in got if o is not None and o.samples_origin is not None and o.sample_rows > 1)
    pooled.samples = pooled.samples.slice(0, 1)
    assert pooled.samples_origin is None and pooled.sample_rows == 1
    custom = got[-1][2]
    assert custom is not None and custom.samples.column("metric").to_pylist() == ["custom.thing_total"]


def test_no_workers_parses_inline() -> None:
    items = _records()[:6]
    with ParsePool([], workers=0) as pool:
        got = list(pool.parse(items))
    assert pool._pool is None and len(got) == 6


def test_offload_parser_gives_the_inline_outcome_and_survives_its_worker() -> None:
    """Big payloads go to the worker process; what comes back equals an inline parse, and a
    killed worker costs an inline parse of that record, never the record."""
    catalog = Catalog(MAPPINGS)
    recs = [r for r, _ in _records() if r is not None]
    parser = OffloadParser(MAPPINGS, min_bytes=1)  # every record goes to the worker
    try:
        for rec in recs:
            got, want = parser.parse(rec, catalog), parse_one(rec, catalog)
            assert got.rejected == want.rejected and got.errors == want.errors
            assert got.samples.equals(want.samples) and got.ip_observations.equals(want.ip_observations)
        assert parser.offloaded == sum(1 for r in recs if r.body)  # an empty body stays inline
        pool = parser._pool
        assert pool is not None
        for proc in list(pool._processes.values()):  # the worker dies (OOM killer, say)
            proc.kill()
            proc.join(5)
        got = parser.parse(recs[0], catalog)
        assert got.samples.equals(parse_one(recs[0], catalog).samples)
        assert parser.worker_failures <= 1  # the dead pool is noticed at once or on the next submit
        assert parser.parse(recs[1], catalog).samples.num_rows == parse_one(recs[1], catalog).samples.num_rows
    finally:
        parser.close()
    with pytest.raises(RuntimeError, match="stopping"):  # an abandoned batch must not parse on
        parser.parse(recs[0], catalog)


def test_small_payloads_parse_inline_without_a_worker() -> None:
    parser = OffloadParser(MAPPINGS)
    rec = RawRecord(datetime(2026, 1, 1, tzinfo=UTC), "prometheus", "custom", b"windows_custom_thing_total 3\n")
    assert parser.parse(rec, Catalog(MAPPINGS)).samples.num_rows == 1
    assert parser._pool is None and parser.offloaded == 0
    parser.close()


# -- a capture read by the workers (ParsePool.parse_capture) ----------------------------------

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
KINDS = frozenset({"prometheus", "haproxy-csv", "k8s", "neighbors", "event"})


def _line(ts: datetime, target: str = "h:9182", kind: str = "prometheus", body: str = "a 1\n") -> bytes:
    obj = {"ts": iso(ts), "kind": kind, "target": target, "host": "h", "labels": {"cluster": "c"}, "body": body}
    return json.dumps(obj).encode()


def _bad_lines() -> list[bytes]:
    """One of each line a capture reader must refuse (or skip), each with its precise message."""
    return [
        b"",  # blank lines are skipped but counted
        b"   \t",
        _line(T0 + timedelta(minutes=1))[:-9],  # truncated JSON
        b"{not json at all}",
        _line(T0 + timedelta(minutes=1), kind="smtp"),  # unknown kind
        _line(T0).replace(iso(T0).encode(), b"yesterday"),  # bad ts
        _line(T0 - timedelta(days=1), target="late:1"),  # out of order
        b'{"kind": "prometheus", "target": "x", "body": "a 1"}',  # missing ts
        b"[1, 2]",
        b'{"ts": "2026-11-20T10:00:00Z", "kind": "prometheus", "target": "x", "body": 3}',
        _line(T0 + timedelta(minutes=1), target="\xe9t\xe9"),
        b"\xff\xfe not utf-8",
        _line(T0 + timedelta(minutes=2), body="garbage{{{ \x00"),  # a payload its parser refuses
        _line(T0 + timedelta(minutes=2)) + b"\r",  # CRLF line end
        # valid JSON that used to stop a replay (reported by review): a lone surrogate, an integer
        # past the decoder's digit limit, nesting past the recursion limit
        b'{"ts": "2026-11-20T10:00:00Z", "kind": "prometheus", "target": "x", "body": "a\\ud800 1"}',
        b'{"ts": "2026-11-20T10:00:00Z", "kind": "prometheus", "target": "\\udc00", "body": "a 1"}',
        b"1" * 5000,
        b"[" * 100_000 + b"]" * 100_000,
    ]


def _located(path: Path) -> list[tuple[RawRecord | None, str | CaptureError]]:
    """The reference: ``read_capture`` line by line, as a replay of items sees it."""
    return [
        (it.record, f"{it.file}:{it.line}") if it.record is not None else (None, it.error)  # type: ignore[misc]
        for it in read_capture(path, known_kinds=KINDS)
    ]


def _same(got: list[Parsed[str | CaptureError]], want: list[Parsed[str | CaptureError]]) -> None:
    """``parse_capture``'s items are the reference's: records (all but the body), where, outcomes."""
    assert len(got) == len(want)
    for (g_rec, g_where, g_out), (w_rec, w_where, w_out) in zip(got, want, strict=True):
        if w_rec is None:
            assert g_rec is None and g_out is None and w_out is None
            assert isinstance(g_where, CaptureError) and isinstance(w_where, CaptureError)
            assert (str(g_where), g_where.reason, g_where.file, g_where.line, g_where.target) == (
                str(w_where),
                w_where.reason,
                w_where.file,
                w_where.line,
                w_where.target,
            )
            continue
        assert g_rec is not None and g_out is not None and w_out is not None
        assert (g_rec.ts, g_rec.kind, g_rec.target, g_rec.host) == (w_rec.ts, w_rec.kind, w_rec.target, w_rec.host)
        assert g_where == w_where
        assert (g_out.rejected, g_out.errors) == (w_out.rejected, w_out.errors)
        assert _plain(g_out.samples).equals(_plain(w_out.samples))
        assert _plain(g_out.ip_observations).equals(_plain(w_out.ip_observations))


def _reference(path: Path) -> list[Parsed[str | CaptureError]]:
    with ParsePool(MAPPINGS, workers=0) as pool:
        return list(pool.parse(_located(path)))


@pytest.fixture(scope="module")
def lab_lines() -> list[bytes]:
    """A few minutes of the lab site (every record kind) with every kind of bad line mixed in."""
    scen = lab.Scenario(duration=timedelta(minutes=6), interval=timedelta(seconds=60))
    good = [json.dumps(record_to_json(r), separators=(",", ":")).encode() for r in lab.generate(scen)]
    out: list[bytes] = []
    bad = _bad_lines()
    for i, line in enumerate(good):
        out.append(line)
        if i % 7 == 3 and bad:
            out.append(bad.pop(0))
    return out + bad


@pytest.fixture(scope="module")
def two_workers() -> Iterator[ParsePool]:
    with ParsePool(MAPPINGS, workers=2, block_bytes=3000, start_bytes=0, ahead=3) as pool:
        yield pool


@pytest.mark.parametrize("form", ["plain", "zst", "zst-cut", "no-last-newline"])
def test_workers_reading_the_capture_give_the_line_by_line_outcome(
    tmp_path: Path, lab_lines: list[bytes], two_workers: ParsePool, form: str
) -> None:
    data = b"\n".join(lab_lines) + (b"" if form == "no-last-newline" else b"\n")
    path = tmp_path / ("c.jsonl.zst" if form.startswith("zst") else "c.jsonl")
    if form.startswith("zst"):
        packed = zstandard.ZstdCompressor().compress(data)
        data = packed[: len(packed) * 2 // 3] if form == "zst-cut" else packed
    path.write_bytes(data)
    want = _reference(path)
    reasons = {w.reason.split(" ")[0].split(":")[0] for _, w, _ in want if isinstance(w, CaptureError)}
    if form == "zst-cut":
        assert "unreadable" in reasons
    else:
        assert {"truncated", "invalid", "unknown", "bad", "out", "missing", "not", "field"} <= reasons, reasons
        assert any(o is not None and o.rejected for _, _, o in want), "a record its parser refuses"
    _same(list(two_workers.parse_capture(read_capture(path, known_kinds=KINDS))), want)
    with ParsePool(MAPPINGS, workers=0, block_bytes=5000) as pool:  # no workers: inline, block by block
        _same(list(pool.parse_capture(read_capture(path, known_kinds=KINDS))), want)
    with ParsePool(MAPPINGS, workers=2) as pool:  # smaller than start_bytes: no worker started
        _same(list(pool.parse_capture(read_capture(path, known_kinds=KINDS))), want)
        assert pool._pool is None


def test_blocks_go_by_pipe_when_no_shared_memory_file_can_be_written(
    tmp_path: Path, lab_lines: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lines travel through ``/dev/shm`` files reused once read (as many as blocks in flight),
    or (no space) the pipe."""
    path = tmp_path / "c.jsonl"
    path.write_bytes(b"\n".join(lab_lines) + b"\n")
    want = _reference(path)
    with ParsePool(MAPPINGS, workers=2, block_bytes=3000, start_bytes=0, ahead=4) as pool:
        _same(list(pool.parse_capture(read_capture(path, known_kinds=KINDS))), want)
        assert pool._shm is None or 0 < len(list(pool._shm.glob("in-*"))) <= 4
        monkeypatch.setattr(shm_handoff.BlockFiles, "write", lambda *_: None)
        _same(list(pool.parse_capture(read_capture(path, known_kinds=KINDS))), want)


def test_a_missing_capture_is_one_error(tmp_path: Path, two_workers: ParsePool) -> None:
    path = tmp_path / "gone.jsonl.zst"
    got = list(two_workers.parse_capture(read_capture(path, known_kinds=KINDS)))
    _same(got, _reference(path))
    assert len(got) == 1 and "cannot open" in str(got[0][1])


@given(
    kinds=st.lists(st.integers(0, len(_bad_lines()) + 3), max_size=40),
    steps=st.lists(st.integers(-2, 3), min_size=40, max_size=40),
    block_bytes=st.integers(1, 2000),
    workers=st.booleans(),
)
@settings(max_examples=60)
def test_any_mix_of_lines_gives_the_line_by_line_outcome(
    tmp_path_factory: pytest.TempPathFactory,
    two_workers: ParsePool,
    kinds: list[int],
    steps: list[int],
    block_bytes: int,
    workers: bool,
) -> None:
    """Good records whose times may go backwards (out of order), bad lines of every kind, any block size."""
    bad = _bad_lines()
    lines: list[bytes] = []
    ts = T0
    for k, step in zip(kinds, steps, strict=False):
        if k < len(bad):
            lines.append(bad[k])
            continue
        ts += timedelta(seconds=step)
        lines.append(_line(ts, target=f"t{k}:1", body=f'm{{k="{k}"}} {step}\n'))
    path = tmp_path_factory.mktemp("mix") / "c.jsonl"
    path.write_bytes(b"\n".join(lines))
    if workers:
        two_workers.block_bytes, before = block_bytes, two_workers.block_bytes
        try:
            got = list(two_workers.parse_capture(read_capture(path, known_kinds=KINDS)))
        finally:
            two_workers.block_bytes = before
    else:
        with ParsePool(MAPPINGS, workers=0, block_bytes=block_bytes) as pool:
            got = list(pool.parse_capture(read_capture(path, known_kinds=KINDS)))
    _same(got, _reference(path))


def test_an_input_given_up_part_way_waits_for_its_workers_and_leaves_no_handoff_files(
    tmp_path: Path, lab_lines: list[bytes]
) -> None:
    """A consumer that stops reading (a ``break``) leaves tasks running: closing the pool waits for
    them before their ``/dev/shm`` directory is removed, so no worker writes into a removed dir."""
    path = tmp_path / "c.jsonl"
    path.write_bytes(b"\n".join(lab_lines * 4) + b"\n")
    with ParsePool(MAPPINGS, workers=2, block_bytes=2000, start_bytes=0, ahead=6) as pool:
        for n, _ in enumerate(pool.parse_capture(read_capture(path, known_kinds=KINDS))):
            if n == 3:
                break
        handoff = pool._shm
        assert pool._pool is not None and not pool._complete
    assert handoff is None or not handoff.exists()
    assert pool._pool is None and pool._shm is None


def test_workers_are_forked_from_a_preloading_forkserver_and_see_the_environment_of_now(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A replay's workers come from the forkserver (the parsers imported once), yet read the
    parent's environment as it is when the pool starts, as spawned workers would: the parsers
    read switches such as ``HCIWATCH_PARSE_REUSE`` at call time."""
    import importlib
    import os

    from collector.registry import BUILTIN_PARSERS
    from hciwatch import parse_pool

    assert parse_pool.worker_context().get_start_method() == "forkserver"
    with ParsePool([], workers=1) as first:  # starts the forkserver, if no test did before
        assert first._start().submit(os.getpid).result() != os.getpid()
    monkeypatch.setenv("HCIWATCH_TEST_WORKER_ENV", "after the forkserver started")
    monkeypatch.delenv("HCIWATCH_PARSE_REUSE", raising=False)
    with ParsePool([], workers=1) as pool:
        ex = pool._start()
        assert ex.submit(os.getenv, "HCIWATCH_TEST_WORKER_ENV").result() == "after the forkserver started"
        assert ex.submit(os.getenv, "HCIWATCH_PARSE_REUSE").result() is None
    # the forkserver skips a module it cannot import without a word: every name must be real
    for name in parse_pool.PRELOAD[1:]:
        assert importlib.import_module(name).__name__ == name
    assert parse_pool.PRELOAD[0] == "__main__"  # multiprocessing's default entry (a no-op on 3.11)
    assert {"prometheus", "haproxy-csv", "k8s", "neighbors"} <= {
        kind for kind, ref in BUILTIN_PARSERS.items() if ref.split(":")[0] in parse_pool.PRELOAD
    }


def test_a_forkserver_that_cannot_start_workers_falls_back_to_spawn(tmp_path: Path) -> None:
    """A preloaded module that raises kills the forkserver before it forks anything; the pool
    says so once and spawns its workers instead, and the parse gives what it gives inline.

    Run in a fresh interpreter: the forkserver is one per process, and this test's broken one
    must not be the one later tests (or a module-scoped pool's workers) use.
    """
    import os
    import subprocess
    import sys

    (tmp_path / "hciwatch_test_broken_preload.py").write_text("raise RuntimeError('broken on purpose')\n")
    script = """
import logging, sys
logging.basicConfig(level=logging.WARNING, stream=sys.stdout, format="%(message)s")
from collector.catalog import Catalog
from hciwatch import parse_pool
from hciwatch.parse_pool import ParsePool, parse_one
from tests.test_parse_pool import _records, _same
parse_pool.PRELOAD = ("hciwatch_test_broken_preload",)
items = _records()
with ParsePool([], workers=2, start_after=0, chunk=8) as pool:
    got = list(pool.parse(items))
    print("start method", pool._start()._mp_context.get_start_method())
_same(got, [(r, w, None if r is None else parse_one(r, Catalog([]))) for r, w in items])
print("same outcome")
"""
    repo = str(Path(__file__).resolve().parent.parent)
    # the forkserver's interpreter finds modules on PYTHONPATH (3.11 ignores the parent's sys.path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), repo])}
    run = subprocess.run([sys.executable, "-c", script], env=env, cwd=repo, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "spawning them instead" in run.stdout
    assert "start method spawn" in run.stdout and "same outcome" in run.stdout


def test_the_forkserver_is_started_ahead_of_a_replay_of_a_large_capture_only(tmp_path: Path) -> None:
    """``prestart_workers`` starts the forkserver (without waiting for it) for a capture worth
    workers, and not for a small one, nor with no workers. In a fresh interpreter: the forkserver
    is one per process, and an earlier test may have started this one's."""
    import os
    import subprocess
    import sys

    from hciwatch.parse_pool import PRESTART_MIN_FILE_BYTES

    small, large = tmp_path / "small.jsonl.zst", tmp_path / "large.jsonl.zst"
    small.write_bytes(b"x" * 1000)
    large.write_bytes(b"x" * PRESTART_MIN_FILE_BYTES)
    script = f"""
import multiprocessing.forkserver as fs
from pathlib import Path
from typing import Any
from hciwatch.parse_pool import prestart_workers
prestart_workers(2, Path({str(small)!r})); prestart_workers(0, Path({str(large)!r})); prestart_workers(2, None)
print("after small", fs._forkserver._forkserver_pid is not None)
prestart_workers(2, Path({str(large)!r}))
print("after large", fs._forkserver._forkserver_pid is not None)
"""
    repo = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": repo}
    run = subprocess.run([sys.executable, "-c", script], env=env, cwd=repo, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "after small False" in run.stdout and "after large True" in run.stdout


# the detectors' kind of sets: one no lab record has, one of a few metrics most prometheus records have
SETS = (
    frozenset(["k8s.metallb_pool_range_info"]),
    frozenset(["net.bytes_total", "pfc.rx_pause_frames_total", "custom.thing_total"]),
)


def _set_rows(samples: pa.Table, values: frozenset[str]) -> list[dict[str, object]]:
    metric = samples.column("metric").cast(pa.string())
    return _plain(samples.filter(pc.is_in(metric, pa.array(sorted(values), pa.string())))).to_pylist()


def _check_split(got: Sequence[Parsed[Any]], inline: int) -> int:
    """Every pooled record's split rows are its samples of each set, in order; returns how many
    records with samples came with a split (the first ``inline`` records, parsed here, have none)."""
    split = 0
    for n, (_, _, outcome) in enumerate(got):
        if outcome is None or outcome.rejected is not None:
            continue
        if outcome.split is None:
            assert n < inline or not outcome.sample_rows
            continue
        chunk, k = outcome.split
        assert chunk.sets is SETS
        for values, part in zip(SETS, chunk.rows(k, k + 1), strict=True):
            want = _set_rows(outcome.samples, values)
            assert (_plain(part).to_pylist() if part is not None else []) == want
        split += bool(_set_rows(outcome.samples, SETS[1]))
    return split


def test_a_pool_given_feed_sets_hands_over_each_set_s_rows_of_every_record() -> None:
    items = _records()
    with ParsePool(MAPPINGS, workers=2, chunk=7, ahead=2, start_after=3, feed_sets=SETS) as pool:
        got = list(pool.parse(items))
        with pytest.raises(AttributeError):  # the workers cut by the sets they started with
            pool.feed_sets = (SETS[1], SETS[0])  # type: ignore[misc]
    assert _check_split(got, inline=3) > 5
    # a consumer that replaces a record's rows replaces its split too (it no longer describes them)
    pooled = next(o for _, _, o in got if o is not None and o.split is not None and o.sample_rows > 1)
    pooled.samples = pooled.samples.slice(0, 1)
    assert pooled.split is None


def test_workers_reading_a_capture_hand_over_the_split_too(tmp_path: Path, lab_lines: list[bytes]) -> None:
    path = tmp_path / "c.jsonl"
    path.write_bytes(b"\n".join(lab_lines) + b"\n")
    with ParsePool(MAPPINGS, workers=2, block_bytes=3000, start_bytes=0, ahead=3, feed_sets=SETS) as pool:
        got = list(pool.parse_capture(read_capture(path, known_kinds=KINDS)))
    assert _check_split(got, inline=0) > 5


def _chunk(first: int, counts: list[list[int]], sets: FeedSets = SETS) -> ChunkSplit:
    """A chunk split whose set j holds the values first, first + 1, … (counts[j]: per record)."""
    tables = [
        pa.table({"v": pa.array(range(first + 100 * j, first + 100 * j + sum(c)), pa.int64())})
        for j, c in enumerate(counts)
    ]
    return ChunkSplit(sets, tables, [[0, *itertools.accumulate(c)] for c in counts])


def test_split_runs_gather_runs_of_records_and_give_up_on_a_record_without_a_split() -> None:
    a = _chunk(0, [[0, 0, 0, 0], [2, 1, 0, 3]])
    b = _chunk(50, [[0, 1], [1, 1]])
    runs = SplitRuns()
    assert runs.take() is None  # nothing, no sets yet
    for k in (0, 1, 3):  # record 2 was late (dropped): two runs of chunk a
        runs.add((a, k))
    runs.add((b, 0))
    runs.add((b, 1))
    got = runs.take()
    assert got is not None and got[0] is SETS
    declared, watched = got[1]
    assert declared is not None and declared.column("v").to_pylist() == [50]
    assert watched is not None and watched.column("v").to_pylist() == [100, 101, 102, 103, 104, 105, 150, 151]
    assert watched.column("v").num_chunks == 3  # one slice per run
    runs.add((b, 0))
    runs.add(None)  # a record parsed inline: the engine sorts this commit's rows itself
    assert runs.take() is None
    other = _chunk(0, [[1], [1]], (SETS[1], SETS[0]))
    runs.add((b, 1))
    runs.add((other, 0))  # another pool's sets within one batch: not this batch's split
    assert runs.take() is None
    runs.add((b, 1))
    got = runs.take()
    assert got is not None and [t.num_rows if t is not None else 0 for t in got[1]] == [1, 1]
    runs.add((other, 0))  # a later batch of other sets (an engine rebuilt): its split is used
    got = runs.take()
    assert got is not None and got[0] == (SETS[1], SETS[0])
    runs.add((_chunk(0, [[1], [1]], (frozenset(SETS[0]), frozenset(SETS[1]))), 0))
    runs.add((b, 0))  # equal sets in another tuple: one batch
    got = runs.take()
    assert got is not None and got[0] == SETS

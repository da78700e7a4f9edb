"""Parse results handed over through shared-memory files: same tables, nothing left behind."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow as pa

from hciwatch import shm_handoff


def _table(n: int) -> pa.Table:
    return pa.table({"v": pa.array(range(n), pa.int64()), "s": pa.array([f"x{i % 7}" for i in range(n)])})


def test_tables_come_back_equal_and_the_file_is_gone(tmp_path: Path) -> None:
    d = shm_handoff.open_dir(tmp_path)
    assert d is not None
    big, small = _table(200_000), _table(10)  # one mapped, one copied out
    written = shm_handoff.write_streams(d, [(big, big.schema), (small, small.schema), (None, small.schema)])
    assert written is not None
    got = shm_handoff.read_streams(*written)
    assert got[0].equals(big) and got[1].equals(small) and got[2].num_rows == 0
    assert list(d.iterdir()) == []  # unlinked once read; the mapping lives on in the tables
    shm_handoff.close_dir(d)
    assert not d.exists()


def test_an_unwritable_directory_means_bytes_instead(tmp_path: Path) -> None:
    assert shm_handoff.write_streams(tmp_path / "gone", [(_table(3), _table(3).schema)]) is None
    assert shm_handoff.open_dir(tmp_path / "no-such-root") is None


def test_directories_of_dead_processes_are_removed(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f"{shm_handoff.PREFIX}{int(dead.stdout)}-abc"
    stale.mkdir()
    (stale / "1-0.arrow").write_bytes(b"left by a killed replay")
    mine = shm_handoff.open_dir(tmp_path)
    assert mine is not None and mine.exists()
    assert not stale.exists()


def test_block_files_carry_blocks_written_in_parts_and_are_reused_once_released(tmp_path: Path) -> None:
    d = shm_handoff.open_dir(tmp_path)
    assert d is not None
    files = shm_handoff.BlockFiles(d)
    piece = b"b" * 300_000
    first = files.write([b"a\n" * 1000, memoryview(piece)[:1000], b""])
    second = files.write([piece])
    assert first is not None and second is not None and first[0] != second[0]
    assert shm_handoff.take_block(*first) == b"a\n" * 1000 + b"b" * 1000
    assert shm_handoff.take_block(*second) == piece
    files.release(first[0])
    third = files.write([b"c\n"])  # shorter than what the file held: only its own bytes are read
    assert third == (first[0], 2) and shm_handoff.take_block(*third) == b"c\n"
    assert len(list(d.iterdir())) == 2
    shm_handoff.close_dir(d)
    assert not d.exists()


def test_a_block_that_cannot_be_written_is_none(tmp_path: Path) -> None:
    assert shm_handoff.BlockFiles(tmp_path / "gone").write([b"a\n"]) is None

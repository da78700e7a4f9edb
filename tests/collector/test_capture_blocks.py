"""Blocks of whole lines (what a replay's parse workers read) are exactly the capture's lines.

:func:`collector.capture.iter_line_data` cuts the decompressed file into blocks that a worker
splits with :func:`collector.capture.split_lines` (the consumer numbers them as it takes the
blocks in order); together they must give the lines the line-by-line reader gives, in the same
order (so with the same line numbers), whatever the block size, line lengths,
blank lines or a missing last newline, and must stop at a damaged stream after the same lines.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import zstandard
from hypothesis import given
from hypothesis import strategies as st

from collector.capture import READ_FAULTS, _iter_lines, iter_line_data, iter_line_parts, split_lines

LINE = st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"."))


def _lines_of_blocks(path: Path, block_bytes: int) -> tuple[list[bytes], str | None]:
    got: list[bytes] = []
    try:
        for data in iter_line_data(path, block_bytes):
            got += split_lines(data)
    except READ_FAULTS as exc:
        return got, type(exc).__name__
    return got, None


def _lines_one_by_one(path: Path) -> tuple[list[bytes], str | None]:
    got: list[bytes] = []
    try:
        for line in _iter_lines(path):
            got.append(line)
    except READ_FAULTS as exc:
        return got, type(exc).__name__
    return got, None


@given(
    lines=st.lists(LINE, max_size=60),
    last_newline=st.booleans(),
    block_bytes=st.integers(1, 400),
    zst=st.booleans(),
)
def test_blocks_hold_the_same_lines_as_the_line_reader(
    tmp_path_factory: pytest.TempPathFactory, lines: list[bytes], last_newline: bool, block_bytes: int, zst: bool
) -> None:
    data = b"\n".join(lines) + (b"\n" if last_newline and lines else b"")
    path = tmp_path_factory.mktemp("blocks") / ("c.jsonl.zst" if zst else "c.jsonl")
    path.write_bytes(zstandard.ZstdCompressor().compress(data) if zst else data)
    assert _lines_of_blocks(path, block_bytes) == _lines_one_by_one(path)


@given(cut=st.floats(0.05, 0.95), block_bytes=st.integers(1, 5000))
def test_a_damaged_stream_stops_after_the_same_lines(
    tmp_path_factory: pytest.TempPathFactory, cut: float, block_bytes: int
) -> None:
    data = b"".join(b'{"n": %d, "pad": "%s"}\n' % (i, b"x" * (i % 97)) for i in range(3000))
    packed = zstandard.ZstdCompressor(level=1).compress(data)
    path = tmp_path_factory.mktemp("damaged") / "c.jsonl.zst"
    path.write_bytes(packed[: int(len(packed) * cut)])
    got = _lines_of_blocks(path, block_bytes)
    assert got == _lines_one_by_one(path)
    assert got[1] is not None, "a stream cut mid-frame is reported"


def test_several_frames_and_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl.zst"
    path.write_bytes(b"".join(zstandard.ZstdCompressor().compress(b"a\nbb\n" * n) for n in (1, 1000, 3)))
    assert _lines_of_blocks(path, 100) == _lines_one_by_one(path) == ([b"a\n", b"bb\n"] * 1004, None)
    assert _lines_of_blocks(tmp_path / "gone.jsonl", 100) == ([], "FileNotFoundError")


def _pieces(path: Path, block_bytes: int, parts: bool) -> tuple[list[bytes], str | None]:
    got: list[bytes] = []
    try:
        if parts:
            got += (b"".join(p) for p in iter_line_parts(path, block_bytes))
        else:
            got += iter_line_data(path, block_bytes)
    except READ_FAULTS as exc:
        return got, type(exc).__name__
    return got, None


@given(cut=st.floats(0.05, 1.0), block_bytes=st.integers(1, 5000), frames=st.integers(1, 3))
def test_the_parts_of_a_piece_are_that_piece_not_joined(
    tmp_path_factory: pytest.TempPathFactory, cut: float, block_bytes: int, frames: int
) -> None:
    """What a replay writes into a worker's shared-memory file is what the pipe would carry."""
    data = b"".join(b'{"n": %d, "pad": "%s"}\n' % (i, b"x" * (i % 97)) for i in range(2000)) + b"last"
    step = len(data) // frames + 1
    packed = b"".join(zstandard.ZstdCompressor(level=1).compress(data[i : i + step]) for i in range(0, len(data), step))
    path = tmp_path_factory.mktemp("parts") / "c.jsonl.zst"
    path.write_bytes(packed[: int(len(packed) * cut)])
    assert _pieces(path, block_bytes, True) == _pieces(path, block_bytes, False)

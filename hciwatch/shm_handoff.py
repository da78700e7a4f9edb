"""Parse results from worker processes through shared memory instead of a pipe.

A replay's parse workers return about 150 bytes of Arrow IPC per sample (the labels map is most
of it): ~400 MB for the 8 h demo capture. Through the executor's pipe that is copied four times
(to bytes, into the pickle, through the kernel, out of the pickle) and lands in the consumer's
heap as big ``bytes`` objects, which glibc's allocator keeps after they are freed. Written to a
file on ``/dev/shm`` instead, it is copied once (by the worker, into tmpfs pages); the consumer
maps the file and reads the tables zero-copy, unlinks it at once, and the pages go back to the
system when the last table slice referring to them is dropped.

Files live in one directory per consumer process, named after its pid; the consumer removes it
when done, and a later consumer removes the directories of dead processes (a consumer killed
with ``SIGKILL`` leaves files in tmpfs, which is memory). Where there is no writable
``/dev/shm`` (or it fills up), the results travel as bytes as before.

The capture blocks a replay hands to its workers go the other way through the same directory
(:class:`BlockFiles`), and likewise by pipe where a file cannot be written.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa

SHM_ROOT = Path("/dev/shm")
PREFIX = "hciwatch-parse-"
COPY_BELOW = 1 << 20  # streams smaller than this are copied to the heap (see read_streams)
_seq = itertools.count()


def open_dir(root: Path = SHM_ROOT) -> Path | None:
    """A fresh hand-off directory for this process (None: no usable shared memory here)."""
    if not root.is_dir() or not os.access(root, os.W_OK):
        return None
    remove_stale(root)
    try:
        return Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=root))
    except OSError:
        return None


def close_dir(path: Path | None) -> None:
    """Remove a hand-off directory and any file left in it (a chunk never read back)."""
    if path is not None:
        shutil.rmtree(path, ignore_errors=True)


def remove_stale(root: Path = SHM_ROOT) -> None:
    """Remove hand-off directories whose owning process is gone."""
    for d in root.glob(f"{PREFIX}*"):
        pid = d.name[len(PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(d, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def write_streams(directory: Path, tables: list[tuple[pa.Table | None, pa.Schema]]) -> tuple[str, list[int]] | None:
    """Write each table as one IPC stream, back to back, into a new file in ``directory``.

    Returns the file and the length of each stream, or None when it could not be written (no
    space, the directory gone): the caller sends bytes instead.
    """
    path = directory / f"{os.getpid()}-{next(_seq)}.arrow"
    lengths: list[int] = []
    try:
        with pa.OSFile(str(path), "wb") as sink:
            for table, schema in tables:
                start = sink.tell()
                with pa.ipc.new_stream(sink, schema) as writer:
                    if table is not None:
                        writer.write_table(table)
                lengths.append(sink.tell() - start)
    except (OSError, pa.ArrowException):
        with contextlib.suppress(OSError):
            path.unlink()
        return None
    return str(path), lengths


def read_streams(path: str, lengths: list[int]) -> list[pa.Table]:
    """The tables :func:`write_streams` wrote, mapped zero-copy; the file is unlinked at once."""
    mapped = pa.memory_map(path)
    try:
        buf = mapped.read_buffer()
    finally:
        mapped.close()  # the mapping itself lives on as long as a buffer refers to it
        with contextlib.suppress(OSError):
            os.unlink(path)
    out: list[pa.Table] = []
    at = 0
    for n in lengths:
        stream = buf.slice(at, n)
        if n < COPY_BELOW:
            # a small table is copied out: a store may buffer it for long (IP observations
            # fill a batch slowly), and a slice would pin the whole chunk's mapping meanwhile
            stream = pa.py_buffer(stream.to_pybytes())
        out.append(pa.ipc.open_stream(stream).read_all())
        at += n
    return out


class BlockFiles:
    """Files in a hand-off directory that carry capture blocks to the workers, each rewritten in
    place for a later block once its worker has read it.

    Why: a capture block handed to a worker through the executor's pipe is joined into one
    ``bytes``, pickled (a second copy) and pushed through the pipe in 64 KiB turns of both
    processes; written here it is copied once, by the kernel, and the worker reads it in one
    call (:func:`take_block`). Rewriting a file keeps its tmpfs pages: a new file per block cost
    three times the CPU (pages allocated and zeroed by the writer, freed at the unlink).
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._free: list[str] = []

    def write(self, parts: Sequence[bytes | memoryview]) -> tuple[str, int] | None:
        """Write ``parts`` one after the other from the start of a free file: that file and the
        length written (a reused file may be longer), or None when it could not be written (no
        space, the directory gone): the caller sends the bytes instead."""
        path = self._free.pop() if self._free else str(self.directory / f"in-{next(_seq)}")
        size = 0
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                for part in parts:
                    view = memoryview(part)
                    size += len(view)
                    while view:
                        view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(path)
            return None
        return path, size

    def release(self, path: str) -> None:
        """``path`` was read by its worker (its task's result is in): a later block may use it."""
        self._free.append(path)


def take_block(path: str, size: int) -> bytes:
    """In a worker: the ``size`` bytes a :meth:`BlockFiles.write` put at the start of ``path``."""
    with open(path, "rb") as f:  # buffered: its read(size) reads on past a short read
        data = f.read(size)
    if len(data) != size:
        raise OSError(f"capture block {path}: {len(data)} bytes of {size}")
    return data

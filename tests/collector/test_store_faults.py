"""A failed Parquet write is a state, not a death: rows are kept, the fault is reported, writes resume.

Before this, one failed write lost the batch it swapped out of the buffer and (in the service) ended
the flush loop for good.
"""

from __future__ import annotations

import errno
import logging
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

import collector.store as store_mod
from collector.errors import StoreError
from collector.schema import Sample, samples_table
from collector.store import Store
from tests.fixtures.mounts import mount_tmpfs, umount

T0 = datetime(2026, 11, 20, 22, 0, tzinfo=UTC)


def _rows(n: int, start: datetime = T0) -> pa.Table:
    return samples_table(
        Sample(start + i * timedelta(minutes=1), "windows", "h1", "net.bytes_received_total", float(i), {"nic": "e0"})
        for i in range(n)
    )


class FlakyDisk:
    """Stands in for the filesystem: the first ``failures`` writes raise ``OSError(code)``."""

    def __init__(self, code: int, failures: int) -> None:
        self.code = code
        self.failures = failures
        self.calls = 0
        self._real = store_mod.write_parquet_atomic

    def __call__(self, table: pa.Table, final: Path, **kw: int) -> None:
        self.calls += 1
        if self.failures > 0:
            self.failures -= 1
            raise OSError(self.code, os.strerror(self.code), str(final))
        self._real(table, final, **kw)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EMFILE, errno.EIO, errno.EROFS])
def test_a_failed_write_keeps_the_rows_reports_the_fault_and_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, code: int
) -> None:
    store = Store(tmp_path)
    disk = FlakyDisk(code, failures=3)
    monkeypatch.setattr(store_mod, "write_parquet_atomic", disk)
    store.append("samples", _rows(240))  # crosses midnight: two partitions
    caplog.set_level(logging.WARNING, logger="collector.faults")
    for _ in range(3):
        with pytest.raises(StoreError, match=os.strerror(code)):
            store.flush()
        assert store.buffered_rows() == 240  # nothing accepted is dropped
        assert store.write_fault.code == errno.errorcode[code]
    assert store.write_fault.describe()["attempts"] == 3
    store.append("samples", _rows(10, T0 + timedelta(days=2)))
    store.flush()  # the cause cleared: everything goes out, in one pass
    assert store.write_fault.ok and store.buffered_rows() == 0
    n = store.connect().execute("SELECT count(*), count(DISTINCT ts) FROM samples").fetchone()
    assert n == (250, 250)
    faults = [r.getMessage() for r in caplog.records]
    assert len(faults) == 2, faults  # one line entering the fault, one on recovery: not one per attempt
    assert errno.errorcode[code] in faults[0] and "recovered" in faults[1]


def test_a_write_failing_half_way_keeps_only_the_unwritten_partition(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(tmp_path)
    real = store_mod.write_parquet_atomic
    calls = {"n": 0}

    def second_fails(table: pa.Table, final: Path, **kw: int) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(table, final, **kw)

    monkeypatch.setattr(store_mod, "write_parquet_atomic", second_fails)
    store.append("samples", _rows(240))  # 120 rows on each day
    with pytest.raises(StoreError):
        store.flush()
    assert store.buffered_rows() == 120  # the first day is on disk, the second is kept
    store.flush()
    assert store.connect().execute("SELECT count(*), count(DISTINCT ts) FROM samples").fetchone() == (240, 240)


def test_automatic_flushes_from_append_never_raise_and_wait_for_the_backoff(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(tmp_path, batch_rows=10)
    disk = FlakyDisk(errno.ENOSPC, failures=1)
    monkeypatch.setattr(store_mod, "write_parquet_atomic", disk)
    store.append("samples", _rows(20))  # the auto flush fails: recorded, not raised
    assert store.write_fault.code == "ENOSPC" and store.buffered_rows() == 20
    store.append("samples", _rows(20, T0 + timedelta(hours=1)))  # within the backoff: no new attempt
    assert disk.calls == 1 and store.buffered_rows() == 40
    store.flush()
    assert store.buffered_rows() == 0 and store.write_fault.ok


# -- a real full disk ------------------------------------------------------------------------------


@pytest.fixture
def tiny_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs: a real full disk (see tests/fixtures/mounts.py for what mounting needs)."""
    mnt = tmp_path / f"tmpfs-{uuid.uuid4().hex[:6]}"
    why = mount_tmpfs(mnt, "4m")
    assert why is None, why
    try:
        yield mnt
    finally:
        umount(mnt)


def _fill(path: Path) -> None:
    with open(path, "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * (1 << 16))
                fh.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC


def test_a_real_full_tmpfs_is_survived_and_writes_resume_when_space_returns(tiny_tmpfs: Path) -> None:
    store = Store(tiny_tmpfs / "data")
    filler = tiny_tmpfs / "filler"
    _fill(filler)
    store.append("samples", _rows(2000))
    with pytest.raises(StoreError, match="No space left"):
        store.flush()
    assert store.write_fault.code == "ENOSPC" and store.buffered_rows() == 2000
    assert not list((tiny_tmpfs / "data").glob("samples/*/.*.tmp"))  # no partial file left behind
    filler.unlink()
    store.flush()
    assert store.write_fault.ok
    assert store.connect().execute("SELECT count(*) FROM samples").fetchone() == (2000,)

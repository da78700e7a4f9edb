"""Alert changes as JSON lines in a local file: the audit trail and the hand-off to log shippers.

Each batch is appended and fsynced before the export reports success, so a line in the file
means the change was delivered. The file is rotated by size, by renaming (``alerts.jsonl`` →
``alerts.jsonl.1`` → ``.2`` …), keeping ``backups`` old files (0 keeps none), so a shipper that
follows the name (Fluent Bit, Vector, the OTel filelog receiver) picks up the new file. A
rotation never splits a batch.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path

from collector.schema import Alert
from exporters.base import ExportResult
from exporters.settings import JsonlSettings, MiB


class JsonlExporter:
    """Appends ``Alert.to_json_line()`` per change to :attr:`path`; fsync per batch."""

    def __init__(self, path: Path, *, name: str = "jsonl", max_bytes: int = 64 * MiB, backups: int = 5) -> None:
        self.name = name
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backups = backups
        self._healthy = True

    @classmethod
    def from_settings(cls, s: JsonlSettings) -> JsonlExporter:
        return cls(s.path, name=s.name, max_bytes=s.max_bytes, backups=s.backups)

    async def start(self) -> None:
        await asyncio.to_thread(self.path.parent.mkdir, parents=True, exist_ok=True)

    async def export(self, batch: Sequence[Alert]) -> ExportResult:
        data = "".join(a.to_json_line() + "\n" for a in batch).encode("utf-8")
        try:
            await asyncio.to_thread(self._write, data)
        except OSError as exc:
            self._healthy = False
            return ExportResult.failure(f"cannot write {self.path}: {exc.strerror or exc}")
        self._healthy = True
        return ExportResult.success()

    def _write(self, data: bytes) -> None:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            size = 0
        if size and size + len(data) > self.max_bytes:
            self._rotate()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            os.fsync(fd)
        finally:
            os.close(fd)

    def _rotate(self) -> None:
        if self.backups == 0:
            self.path.unlink(missing_ok=True)
            return
        oldest = self.path.with_name(f"{self.path.name}.{self.backups}")
        oldest.unlink(missing_ok=True)
        for i in range(self.backups - 1, 0, -1):
            src = self.path.with_name(f"{self.path.name}.{i}")
            if src.exists():
                os.replace(src, self.path.with_name(f"{self.path.name}.{i + 1}"))
        os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))

    async def healthcheck(self) -> bool:
        return self._healthy

    async def shutdown(self) -> None:
        return None

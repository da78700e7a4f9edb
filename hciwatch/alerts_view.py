"""Reading stored alert state changes back (for ``hciwatch alerts`` and the eval harness)."""

from __future__ import annotations

from pathlib import Path

from collector.schema import Alert
from collector.store_read import StoreReader


def load_alerts(data_dir: Path, *, status: str | None = None, kind: str | None = None) -> list[Alert]:
    """Alert state changes in time order; ``status="open"`` keeps incidents not yet resolved.

    See :meth:`collector.store_read.StoreReader.alert_history`.
    """
    return StoreReader(data_dir).alert_history(status=status, kind=kind)

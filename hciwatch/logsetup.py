"""Logging for every command: ``--log-level`` and ``--log-format text|json``, secrets redacted.

JSON lines (``ts``, ``level``, ``logger``, ``msg`` and the exception text when there is one) are
what Fluent Bit / the OpenTelemetry Collector's filelog receiver and journald exporters parse
without a custom regex. Both formats go to stderr so command output on stdout stays clean.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from hciwatch.redact import redact

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("text", "json")


class _RedactingText(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        if record.exc_info:
            out["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(out, ensure_ascii=False)


def configure(level: str, fmt: str) -> None:
    """Replace the root handlers (safe to call twice, e.g. from tests)."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(_RedactingText("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper()))

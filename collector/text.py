"""Byte-order marks as Windows tools write them, removed once for every text parser.

PowerShell is how most payloads leave a Windows host, and it marks its files: Windows PowerShell
5.1 ``Out-File`` / ``>`` write UTF-16 LE with a BOM, ``Set-Content -Encoding UTF8`` writes UTF-8
with a BOM (so does windows_exporter's own end-to-end test output). A parser that sees the BOM
as text rejects the first line (often the only header) or, for UTF-16, the whole payload as
binary. Every text format hciwatch reads is ASCII-structured, so a marked payload is re-encoded
to plain UTF-8 before parsing and an unmarked one is passed through untouched (no copy).
"""

from __future__ import annotations

import importlib
from typing import Any

UTF8_BOM = b"\xef\xbb\xbf"
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


def without_bom(body: bytes) -> bytes:
    """``body`` as UTF-8 without a byte-order mark (UTF-16 with a BOM is transcoded)."""
    if body.startswith(UTF8_BOM):
        return body[len(UTF8_BOM) :]
    if body[:2] in UTF16_BOMS:
        return body.decode("utf-16", errors="replace").encode("utf-8")
    return body


def _orjson() -> Any:
    """orjson's module when installed (a dependency, but every reader works without it), else None."""
    try:
        return importlib.import_module("orjson")
    except ImportError:
        return None


ORJSON: Any = _orjson()
"""For readers of JSON whose common case holds only strings, where orjson and :mod:`json` agree
exactly (they differ on numbers: orjson refuses ``NaN`` and makes floats of integers past 64
bits, and on lone surrogates, which orjson refuses): a third of ``json.loads``' CPU."""

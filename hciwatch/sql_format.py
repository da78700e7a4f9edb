"""Printing any query result as CSV, JSON lines or a table, nested columns included.

The store's own tables have nested columns (``labels`` is a MAP, alert ``resource``/``evidence``
are structs or JSON) and analysts select them with ``SELECT *``. Arrow's CSV writer refuses
nested types, so every value goes through :func:`plain`: maps become JSON objects, lists JSON
arrays, structs JSON objects, timestamps ISO-8601 text; in CSV a nested value is one JSON-encoded
cell, in JSON lines it stays nested.
"""

from __future__ import annotations

import base64
import csv
import json
import math
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import IO, Any

import pyarrow as pa
from rich.table import Table

from collector.schema import iso


def plain(value: Any, typ: pa.DataType | None = None) -> Any:
    """A JSON-able form of one Arrow value (as ``to_pylist`` gives it)."""
    if value is None:
        return None
    if isinstance(typ, pa.MapType) and isinstance(value, list):
        return {str(k): plain(v, typ.item_type) for k, v in value}
    if isinstance(value, dict):
        fields = {f.name: f.type for f in typ} if isinstance(typ, pa.StructType) else {}
        return {str(k): plain(v, fields.get(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        item = typ.value_type if isinstance(typ, pa.ListType | pa.LargeListType | pa.FixedSizeListType) else None
        return [plain(v, item) for v in value]
    if isinstance(value, datetime):
        return iso(value) if value.tzinfo is not None else value.isoformat()
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # NaN/Infinity are not JSON; keep them visible rather than null
    return value


def rows(table: pa.Table) -> Iterator[dict[str, Any]]:
    """Each row as a dict of JSON-able values."""
    types = [f.type for f in table.schema]
    names = table.column_names
    for batch in table.to_batches(max_chunksize=10_000):
        for r in batch.to_pylist():
            yield {n: plain(r[n], t) for n, t in zip(names, types, strict=True)}


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def write_csv(table: pa.Table, out: IO[str]) -> None:
    """CSV with a header row; a nested value is one JSON-encoded cell, NULL is an empty cell."""
    w = csv.writer(out, lineterminator="\n")
    w.writerow(table.column_names)
    for r in rows(table):
        w.writerow([_cell(v) for v in r.values()])


def write_json_lines(table: pa.Table, out: IO[str]) -> None:
    """One JSON object per row, nested values nested."""
    for r in rows(table):
        out.write(json.dumps(r, ensure_ascii=False) + "\n")


def rich_table(table: pa.Table) -> Table:
    """A rich table; nested values shown as compact JSON."""
    t = Table()
    for name in table.column_names:
        t.add_column(name, overflow="fold")
    for r in rows(table):
        t.add_row(*[_cell(v) for v in r.values()])
    return t

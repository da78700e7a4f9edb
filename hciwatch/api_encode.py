"""Query results as the API returns them: JSON documents or Arrow IPC streams (also used in workers)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa

from collector.lake import Lake, LakeSettings
from collector.schema import iso
from exporters.feed import FeedEvent
from hciwatch.query import QueryLimits, QueryResult, run_query


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def event_json(event: FeedEvent) -> dict[str, Any]:
    return {"seq": event.seq, **event.alert.to_json()}


def run_and_encode(
    data_dir: Path,
    sql: str,
    limit: int | None,
    limits: QueryLimits,
    extra_views: Mapping[str, str] | None,
    arrow: bool,
    lake: LakeSettings | None = None,
) -> tuple[QueryResult, bytes]:
    """Run one query (over ``lake`` when given: a central reader) and encode its result."""
    opened = Lake.open(lake.url, lake) if lake is not None else None
    result = run_query(data_dir, sql, limit=limit, limits=limits, extra_views=extra_views, lake=opened)
    if arrow:
        return result, arrow_ipc(result)
    return result, json_result(result).encode("utf-8")


def arrow_ipc(result: QueryResult) -> bytes:
    """The result as an Arrow IPC stream; ``hciwatch.truncated`` is in the schema metadata."""
    table = result.table
    meta = dict(table.schema.metadata or {})
    meta[b"hciwatch.truncated"] = b"true" if result.truncated else b"false"
    table = table.replace_schema_metadata(meta)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def json_result(result: QueryResult) -> str:
    """The result as the API's JSON document (rows are arrays in column order)."""
    table = result.table
    columns = [_column_values(table.column(i)) for i in range(table.num_columns)]
    rows = [list(r) for r in zip(*columns, strict=True)] if columns else []
    return dumps(
        {
            "columns": table.column_names,
            "types": [str(f.type) for f in table.schema],
            "rows": rows,
            "row_count": table.num_rows,
            "truncated": result.truncated,
            "elapsed_ms": round(result.elapsed_s * 1000, 3),
        }
    )


def _column_values(column: pa.ChunkedArray[Any]) -> list[Any]:
    try:
        values = column.to_pylist()
    except (pa.ArrowException, ValueError, OverflowError):
        # e.g. DuckDB's 'infinity' timestamps do not fit Python datetimes: show them as text
        return [None if v is None else str(v) for v in column.cast(pa.string()).to_pylist()]
    return [_json_value(v, column.type) for v in values]


def _json_value(value: Any, typ: pa.DataType) -> Any:
    """One Arrow value as JSON, by its Arrow type (maps become objects, times ISO-8601)."""
    if value is None:
        return None
    if pa.types.is_dictionary(typ):
        return _json_value(value, typ.value_type)
    if pa.types.is_map(typ):
        return {str(k): _json_value(v, typ.item_type) for k, v in value}
    if pa.types.is_struct(typ):
        return {
            typ.field(i).name: _json_value(value.get(typ.field(i).name), typ.field(i).type)
            for i in range(typ.num_fields)
        }
    if pa.types.is_list(typ) or pa.types.is_large_list(typ) or pa.types.is_fixed_size_list(typ):
        return [_json_value(v, typ.value_type) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dt.datetime):
        return iso(value) if value.tzinfo is not None else value.isoformat()
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        if not value.is_finite():
            return None
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, bool | int | str):
        return value
    if hasattr(value, "months") and hasattr(value, "days"):  # MonthDayNano interval
        return {"months": value.months, "days": value.days, "nanoseconds": value.nanoseconds}
    return str(value)

"""Column builders for the store's tables, next to the schema they fill.

Every parser that produces samples (Telegraf over MQTT, typeperf CSV, neighbour tables) appends
to a :class:`SampleRows` and turns it into one Arrow table at the end: one Python list per
column is several times faster than one tuple per sample. It lives here, not in any one parser,
so parsers share it without importing each other.
"""

from __future__ import annotations

from collections.abc import Mapping

import pyarrow as pa

from collector.schema import EMPTY_SAMPLES, SAMPLES_SCHEMA, TS_TYPE


def clean(text: str) -> str:
    """Strings decoded from JSON may hold lone surrogates that Arrow cannot encode."""
    return text.encode("utf-8", "replace").decode("utf-8")


class SampleRows:
    """Column lists for a SAMPLES_SCHEMA table (one Python tuple per sample is too slow)."""

    def __init__(self) -> None:
        self.ts: list[int] = []
        self.source: list[str] = []
        self.host: list[str] = []
        self.metric: list[str] = []
        self.labels: list[list[tuple[str, str]]] = []
        self.value: list[float] = []

    def add(self, ts_ms: int, source: str, host: str, metric: str, labels: Mapping[str, str], value: float) -> None:
        self.ts.append(ts_ms)
        self.source.append(source)
        self.host.append(host)
        self.metric.append(metric)
        self.labels.append(sorted(labels.items()))
        self.value.append(value)

    def __len__(self) -> int:
        return len(self.ts)

    def table(self) -> pa.Table:
        if not self.ts:
            return EMPTY_SAMPLES
        return pa.table(
            {
                "ts": pa.array(self.ts, pa.int64()).cast(TS_TYPE),
                "source": pa.array(self.source, pa.string()).dictionary_encode(),
                "host": pa.array(self.host, pa.string()).dictionary_encode(),
                "metric": pa.array(self.metric, pa.string()).dictionary_encode(),
                "labels": pa.array(self.labels, pa.map_(pa.string(), pa.string())),
                "value": pa.array(self.value, pa.float64()),
            },
            schema=SAMPLES_SCHEMA,
        )

"""Per-target skeletons of the last clean parse, shared by the parsers that reuse them.

Why: a target answers scrape after scrape with the same rows (series, proxies, servers) and new
numbers. A parser that keeps what did not change (label maps, metric dictionaries, IP
observations) only has to read the numbers of the next payload, and the store keeps one copy of
the label buffers per target instead of one per scrape. Each parser decides what its skeleton
holds and when a payload fits it; this module only keeps them: least recently used first out,
bounded in bytes, thread-safe (the service parses on several threads). A cache whose records
carry a label that changes every time (Kubernetes' ``resource_version``) overrides
:meth:`SkeletonCache.key` to leave it out. The column helpers at the end build exactly the
columns the careful builders make (``dictionary_encode`` of a constant, a cast timestamp) for
less CPU, and put a new ``ts`` on a reused table.

``HCIWATCH_PARSE_REUSE=0`` turns reuse off for every parser (benchmarks measure the cold parsers
with it).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any, Generic, Protocol, TypeVar, cast

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from collector.catalog import Catalog
from collector.schema import TS_TYPE, RawRecord

MAX_BYTES = int(os.environ.get("HCIWATCH_PARSE_REUSE_BYTES", str(256 << 20)))
"""Bytes of skeletons one cache keeps."""


def enabled() -> bool:
    """Whether parsers may reuse skeletons (read every call, so tests and benches can toggle it)."""
    return os.environ.get("HCIWATCH_PARSE_REUSE", "1").strip() != "0"


class Sized(Protocol):
    """What the cache needs of a skeleton: the catalog it was built with and its size."""

    catalog: Catalog
    nbytes: int


S = TypeVar("S", bound=Sized)


def target_key(record: RawRecord) -> Hashable:
    """One skeleton per (kind, target, host, record labels): labels change every sample's map."""
    return (record.kind, record.target, record.host, tuple(sorted(record.labels.items())))


class SkeletonCache(Generic[S]):
    """Least-recently-used skeletons by target, bounded in bytes."""

    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Hashable, S] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def nbytes(self) -> int:
        return self._bytes

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0
            self.hits = self.misses = 0

    def key(self, record: RawRecord) -> Hashable:
        """The entry a record belongs to; a parser whose records carry a label that changes every
        time (the Kubernetes ``resource_version``) overrides this to leave it out."""
        return target_key(record)

    def get(self, record: RawRecord, catalog: Catalog) -> S | None:
        """The target's skeleton, if it was built with this very catalog (mappings may differ)."""
        key = self.key(record)
        with self._lock:
            sk = self._entries.get(key)
            if sk is not None and sk.catalog is catalog:
                self._entries.move_to_end(key)
                return sk
        return None

    def put(self, record: RawRecord, sk: S) -> None:
        if sk.nbytes > self.max_bytes:
            return
        key = self.key(record)
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old.nbytes
            self._entries[key] = sk
            self._bytes += sk.nbytes
            while self._bytes > self.max_bytes and self._entries:
                _, ev = self._entries.popitem(last=False)
                self._bytes -= ev.nbytes

    def drop(self, record: RawRecord) -> None:
        with self._lock:
            old = self._entries.pop(self.key(record), None)
            if old is not None:
                self._bytes -= old.nbytes


# ---------------------------------------------------------------------------------------------
# Column helpers: the exact columns the careful builders make, for less CPU
# ---------------------------------------------------------------------------------------------


def timestamps(ts_ms: int, n: int) -> pa.Array[Any]:
    """``pa.array([ts_ms] * n, pa.int64()).cast(TS_TYPE)`` from numpy (a fifth of its CPU)."""
    return pa.Array.from_buffers(TS_TYPE, n, [None, pa.py_buffer(np.full(n, ts_ms, np.int64).data)])


def _indices(values: npt.NDArray[np.int32]) -> pa.Array[Any]:
    """Dictionary indices from numpy (zero-copy; the stubs type ``pa.array`` of an array oddly)."""
    return cast("pa.Array[Any]", pa.array(values))


def constant_dictionary(value: str | None, n: int) -> pa.Array[Any]:
    """``pa.array([value] * n, pa.string()).dictionary_encode()`` without hashing n strings."""
    if value is None or n == 0:
        return pa.array([value] * n, pa.string()).dictionary_encode()
    return pa.DictionaryArray.from_arrays(_indices(np.zeros(n, np.int32)), pa.array([value], pa.string()))


def dictionary(values: list[str]) -> pa.Array[Any]:
    """``pa.array(values, pa.string()).dictionary_encode()`` for few distinct values (first-seen order)."""
    if not values:
        return pa.array(values, pa.string()).dictionary_encode()
    distinct = dict.fromkeys(values)
    if len(distinct) == 1:
        return constant_dictionary(values[0], len(values))
    position = {v: i for i, v in enumerate(distinct)}
    return pa.DictionaryArray.from_arrays(
        _indices(np.fromiter(map(position.__getitem__, values), np.int32, len(values))),
        pa.array(list(distinct), pa.string()),
    )


def with_ts(table: pa.Table, ts_ms: int) -> pa.Table:
    """A reused table with every row at ``ts_ms`` (column 0 is ``ts`` in every store schema)."""
    if not table.num_rows:
        return table
    return table.set_column(0, table.schema.field(0), timestamps(ts_ms, table.num_rows))

"""Repeated Kubernetes lists: reuse the previous answer when only the list's metadata changed.

Why: a cluster is listed every minute and its Services and Nodes rarely change between two lists;
what does change every time is the list's ``metadata.resourceVersion`` (and with it the record's
``resource_version`` label). Decoding, walking and building Arrow tables for the same items again
was nearly all of this parser's CPU (building two small tables cost more than the walk).

So after a parse of a ``…List`` the *skeleton* of that record is kept per target
(:mod:`collector.sources.skeletons`, keyed by kind, target, host and every label but
``resource_version``): the body's text before and after its top-level ``metadata`` value, the
rows the tables were built from and the tables and errors the parse gave.

* The next body of that target that is the same text around a ``metadata`` value that is one
  JSON value (the standard library's scanner reads it and must stop exactly where the remembered
  tail starts) is the same document but for its metadata, which a List's parse does not read:
  the previous tables come back with the new ``ts``, nothing is decoded.
* Any other body is decoded (:func:`split_top`: ``json.loads`` read one top-level key at a time,
  to know where ``metadata`` is) and walked as before; when the rows come out equal to the
  previous ones (a Node's heartbeat changed, not its addresses) the previous tables are reused
  with the new ``ts``, otherwise they are built again (:func:`tables`, the same columns for less
  CPU). A body the top-level reader does not take goes to the careful parser, which says why.

So output, errors and rejections are exactly the careful parser's (``tests/sources/
test_k8s_inventory_reuse.py`` compares them on the corpus and under hypothesis).

Nesting: on CPython 3.11 the JSON scanner's depth limit shares the interpreter's recursion
counter, so whether a deeply nested body is "too deep" depends on how deep the stack already is.
The fast readers scan :data:`_MARGIN` frames deeper than the careful parser would, so a body they
accept the careful parser accepts too (one they refuse is handed to the careful parser). A List
served from its skeleton is not scanned again, so one accepted once is accepted again even when
called from a much deeper stack, where the careful parser might run out of recursion.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from json.scanner import make_scanner
from typing import Any, Protocol, TypeVar

import pyarrow as pa

from collector.catalog import Catalog
from collector.schema import IP_OBSERVATIONS_SCHEMA, SAMPLES_SCHEMA, RawRecord
from collector.sources import skeletons

VOLATILE_LABELS = frozenset({"resource_version"})
"""Labels the parse does not read that change with every list."""

MAX_BYTES = skeletons.MAX_BYTES // 8
"""Bytes of skeletons kept (32 MiB by default): a few hundred lists of a few hundred kB."""

_WS = re.compile(r"[ \t\n\r]*")  # json.decoder.WHITESPACE
_WS_START = tuple(" \t\n\r")
# what json.loads uses (the C scanner when available); typeshed types its argument as itself
_SCAN: Callable[[str, int], tuple[Any, int]] = make_scanner(json.JSONDecoder())  # type: ignore[arg-type]
_MARGIN = 16
"""Frames the fast readers scan below their caller: more than ``json.loads`` adds under the
careful parser (``parse_careful`` → ``_load`` → ``loads`` → ``decode`` → ``raw_decode``)."""

T = TypeVar("T")


def _deeper(n: int, fn: Callable[[], T], too_deep: T) -> T:
    """``fn()`` called ``n`` frames further down the stack (see the module docstring);
    ``too_deep`` when the stack has no room for them (the careful path then gives its verdict)."""
    try:
        return _down(n, fn)
    except RecursionError:
        return too_deep


def _down(n: int, fn: Callable[[], T]) -> T:
    return fn() if n <= 0 else _down(n - 1, fn)


def split_top(text: str) -> tuple[dict[str, Any], tuple[int, int] | None] | None:
    """``json.loads(text)`` for a JSON object, read one top-level key at a time, and where the
    text of its ``metadata`` value is (``None`` when absent or repeated); ``None`` when ``text``
    is not one JSON object (the careful parser then says why)."""
    return _deeper(_MARGIN, lambda: _split_top(text), None)


def _skip_ws(text: str, i: int) -> int:
    return _WS.match(text, i).end() if text.startswith(_WS_START, i) else i  # type: ignore[union-attr]


def _split_top(text: str) -> tuple[dict[str, Any], tuple[int, int] | None] | None:
    try:
        i = _skip_ws(text, 0)
        if not text.startswith("{", i):
            return None
        i = _skip_ws(text, i + 1)
        obj: dict[str, Any] = {}
        meta: tuple[int, int] | None = None
        metas = 0
        if text.startswith("}", i):
            i += 1
        else:
            while True:
                if not text.startswith('"', i):
                    return None
                key, i = _SCAN(text, i)
                i = _skip_ws(text, i)
                if not text.startswith(":", i):
                    return None
                i = _skip_ws(text, i + 1)
                value, stop = _SCAN(text, i)
                obj[key] = value
                if key == "metadata":
                    meta, metas = (i, stop), metas + 1
                i = _skip_ws(text, stop)
                if text.startswith(",", i):
                    i = _skip_ws(text, i + 1)
                    continue
                if text.startswith("}", i):
                    i += 1
                    break
                return None
        if _skip_ws(text, i) != len(text):
            return None
    except (StopIteration, ValueError, RecursionError):
        return None
    return obj, (meta if metas == 1 else None)


@dataclass
class Skeleton:
    """What a parse of one target's List leaves for the next list."""

    catalog: Catalog
    head: str  # the body's text up to its metadata value (all of it when there is none)
    tail: str | None  # the text after the metadata value
    columns: tuple[object, ...]  # what the tables were built from (:func:`columns`)
    samples: pa.Table
    ip_observations: pa.Table
    errors: list[Exception]
    nbytes: int


class SkeletonCache(skeletons.SkeletonCache[Skeleton]):
    """Skeletons by target, ignoring the labels that change with every list."""

    def key(self, record: RawRecord) -> Hashable:
        labels = tuple(sorted((k, v) for k, v in record.labels.items() if k not in VOLATILE_LABELS))
        return (record.kind, record.target, record.host, labels)


CACHE = SkeletonCache(MAX_BYTES)


def skeleton(
    catalog: Catalog,
    text: str,
    meta: tuple[int, int] | None,
    columns: tuple[object, ...],
    samples: pa.Table,
    observations: pa.Table,
    errors: list[Exception],
) -> Skeleton:
    """A skeleton with an estimate of its size: the body's text (head and tail), and per row
    about 600 bytes for the tables' buffers and the Python column lists, and the errors."""
    head, tail = (text[: meta[0]], text[meta[1] :]) if meta is not None else (text, None)
    rows = samples.num_rows + observations.num_rows
    nbytes = sys.getsizeof(text) + 600 * rows + 400 * len(errors) + 2048
    return Skeleton(catalog, head, tail, columns, samples, observations, errors, nbytes)


def same_list(sk: Skeleton, text: str) -> bool:
    """Whether ``text`` is the skeleton's body but for its ``metadata`` value (see the module
    docstring): then the List's kind and items, all its parse reads, are the same."""
    if sk.tail is None:
        return text == sk.head
    start, stop = len(sk.head), len(text) - len(sk.tail)
    if stop <= start or not text.startswith(sk.head) or not text.endswith(sk.tail):
        return False
    return _deeper(_MARGIN, lambda: _value_end(text, start), -1) == stop


def _value_end(text: str, i: int) -> int:
    """Where the JSON value at ``i`` ends; -1 when there is none."""
    try:
        return _SCAN(text, i)[1]
    except (StopIteration, ValueError, RecursionError):
        return -1


class Columns(Protocol):
    """The column lists a parse collects (the parser's ``_Builder``)."""

    cluster: str | None
    network: str | None
    source: str
    host: str
    ts: int
    obs_ip: list[str]
    obs_kind: list[str]
    obs_owner: list[str]
    s_metric: list[str]
    s_labels: list[list[tuple[str, str]]]
    s_value: list[float]


def columns(b: Columns) -> tuple[object, ...]:
    """Everything the tables are made of but ``ts``: equal columns give equal tables. (Sample
    values are ``float`` of integers, never NaN or -0.0, so ``==`` on them is exact.)"""
    return (
        b.cluster,
        b.network,
        b.source,
        b.host,
        b.obs_ip,
        b.obs_kind,
        b.obs_owner,
        b.s_metric,
        b.s_labels,
        b.s_value,
    )


def tables(b: Columns) -> tuple[pa.Table, pa.Table]:
    """(samples, ip_observations): exactly the careful builder's tables, built for less CPU."""
    n_obs = len(b.obs_ip)
    observations = pa.Table.from_arrays(
        [
            skeletons.timestamps(b.ts, n_obs),
            pa.array(b.obs_ip, pa.string()),
            pa.nulls(n_obs, pa.string()),
            skeletons.dictionary(b.obs_kind),
            pa.array(b.obs_owner, pa.string()),
            skeletons.constant_dictionary(b.cluster, n_obs),
            skeletons.constant_dictionary(b.network, n_obs),
            skeletons.constant_dictionary(b.source, n_obs),
        ],
        schema=IP_OBSERVATIONS_SCHEMA,
    )
    n_s = len(b.s_metric)
    samples = pa.Table.from_arrays(
        [
            skeletons.timestamps(b.ts, n_s),
            skeletons.constant_dictionary(b.source, n_s),
            skeletons.constant_dictionary(b.host, n_s),
            skeletons.dictionary(b.s_metric),
            pa.array(b.s_labels, pa.map_(pa.string(), pa.string())),
            pa.array(b.s_value, pa.float64()),
        ],
        schema=SAMPLES_SCHEMA,
    )
    return samples, observations

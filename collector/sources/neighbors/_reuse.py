"""Repeated neighbour tables: read each row once, not at every poll.

Why: a host's ARP/NDP table is polled every 30 s and comes back with the same rows, a few of
them changed (a state flipping between reachable and stale, an entry added or aged out).
Normalizing a row (IP and MAC parsing, state names, owner text) cost about 9 µs of Python, and
building the Arrow table once per record cost about as much as all its rows: together most of a
replay's CPU for 3 % of its rows.

So the outcome of every row of a target's last table is kept per target
(:mod:`collector.sources.skeletons`, keyed as for every parser by kind, target, host and labels),
by the row's *content*:

* when every value of every row is a string or null (hciwatch rows), the key is the row's
  ``items()`` — two rows with equal keys are the same JSON object;
* otherwise the key is the values of the keys the row normalization reads (:data:`READ_KEYS`,
  absent ones marked), numbers and booleans tagged with their type (``1``, ``1.0`` and ``true``
  are equal in Python but not to the parser); a row holding an object there is not keyed.

A row whose key was seen is not normalized again; a new or changed row is (by the careful
:func:`~collector.sources.neighbors.parse.neighbor_rows`), and only the rows of the current table
are kept for the next one. When the observations come out equal to the previous table's, that
table is reused with the new ``ts``. Output, errors and rejections are exactly the careful
parser's (``tests/sources/test_neighbors_reuse.py`` compares them on the corpus and under
hypothesis, including rows changed between polls).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from itertools import chain
from typing import Any, Final

import pyarrow as pa

from collector.catalog import Catalog
from collector.schema import IP_OBSERVATIONS_SCHEMA, OwnerKind, RawRecord
from collector.sources import skeletons
from collector.text import ORJSON

MAX_BYTES = skeletons.MAX_BYTES // 8
"""Bytes of skeletons kept (32 MiB by default): hundreds of hosts' tables of a few thousand rows."""

READ_KEYS: Final = (
    "IPAddress",
    "LinkLayerAddress",
    "InterfaceAlias",
    "ifIndex",
    "InterfaceIndex",
    "dst",
    "lladdr",
    "dev",
    "ip",
    "mac",
    "interface",
    "state",
    "State",
    "host",
    "PSComputerName",
)
"""Every key :func:`~collector.sources.neighbors.parse.neighbor_rows` reads (presence or value)."""


class _Absent:
    """Marks a key the row does not have (``None`` is a JSON null)."""

    def __repr__(self) -> str:
        return "<absent>"


ABSENT: Final = _Absent()
_DEFAULTS = (ABSENT,) * len(READ_KEYS)
KEEP = 4
"""Outcomes kept per target: up to this many times the rows of its last table (plus 64)."""
_PLAIN = frozenset({str, type(None)})
_PLAIN_READ = frozenset({str, type(None), _Absent})

Outcome = tuple[str, str, str] | str
"""A row's outcome: (ip, mac, owner) for an observation, else why it is an error ("" = skipped)."""


def plain_keys(rows: list[Any]) -> list[Hashable] | None:
    """Every row's ``items()`` when all rows are objects of strings and nulls, else None."""
    try:
        if not _PLAIN.issuperset(map(type, chain.from_iterable(map(dict.values, rows)))):
            return None
    except TypeError:  # a row that is not an object
        return None
    return list(map(tuple, map(dict.items, rows)))


def fast_rows(record: RawRecord) -> tuple[list[Any], list[Hashable]] | None:
    """The rows of a body that is UTF-8 JSON of plain rows (objects of strings and nulls), decoded
    by orjson, with their :func:`plain_keys`; None for any other body (``_load`` reads it).

    For such rows orjson and ``json`` agree exactly (see :data:`collector.text.ORJSON`): strings
    only, and a string with a lone surrogate is refused here.
    """
    if ORJSON is None:
        return None
    try:
        doc = ORJSON.loads(record.body)
    except ValueError:  # not JSON to orjson (a BOM, UTF-16, NaN, a lone surrogate, blank): json decides
        return None
    if type(doc) is dict:
        value = doc.get("value")
        rows = value if type(value) is list and "Count" in doc else [doc]
    elif type(doc) is list:
        rows = doc
    else:
        return None
    keys = plain_keys(rows)
    return None if keys is None else (rows, keys)


def read_key(row: Any) -> Hashable | None:
    """The values of :data:`READ_KEYS` in ``row``, type-tagged where ``==`` would mix types;
    None for a row that is not an object or holds an object where the parser reads."""
    if type(row) is not dict:
        return None
    values = tuple(map(row.get, READ_KEYS, _DEFAULTS))
    if _PLAIN_READ.issuperset(map(type, values)):
        return values
    tagged = tuple(map(_tag, values))
    return None if _UNKEYABLE in tagged else tagged


class _Unkeyable:
    """A value the key cannot hold exactly."""


_UNKEYABLE: Final = _Unkeyable()


def _tag(value: Any) -> Any:
    """A hashable stand-in equal only to the stand-in of an identical JSON value."""
    kind = type(value)
    if kind is str or value is None or kind is _Absent:
        return value
    if kind is int or kind is bool:
        return (kind, value)
    if kind is float:
        return (kind, repr(value))  # -0.0 == 0.0 and nan != nan, but their texts are exact
    if kind is list:
        items = tuple(map(_tag, value))
        return _UNKEYABLE if _UNKEYABLE in items else (kind, items)
    return _UNKEYABLE


def projected(row: dict[str, Any]) -> dict[str, Any]:
    """The part of ``row`` the parser reads (what a :func:`read_key` stands for)."""
    return {k: row[k] for k in READ_KEYS if k in row}


@dataclass
class Skeleton:
    """What one target's last table leaves for the next poll."""

    catalog: Catalog
    outcomes: dict[Hashable, Outcome]  # by row key, the rows of the last table
    consts: tuple[str | None, ...]  # record host, source, cluster, network
    observations: list[tuple[str, str, str]]
    table: pa.Table
    nbytes: int


CACHE: skeletons.SkeletonCache[Skeleton] = skeletons.SkeletonCache(MAX_BYTES)


def skeleton(
    catalog: Catalog,
    body_bytes: int,
    outcomes: dict[Hashable, Outcome],
    consts: tuple[str | None, ...],
    observations: list[tuple[str, str, str]],
    table: pa.Table,
) -> Skeleton:
    """A skeleton with an estimate of its size: per kept outcome about 700 bytes (its key, the
    decoded strings the key holds on to, the outcome), per observation 200 bytes of table buffers
    and list, and the last body twice over for rows longer than usual."""
    nbytes = 2 * body_bytes + 700 * len(outcomes) + 200 * len(observations) + 2048
    return Skeleton(catalog, outcomes, consts, observations, table, nbytes)


def table(
    ts_ms: int, observations: list[tuple[str, str, str]], source: str, cluster: str | None, network: str | None
) -> pa.Table:
    """The careful parser's table for these observations (``owner_kind`` neighbor), for less CPU."""
    n = len(observations)
    ips, macs, owners = zip(*observations, strict=True)
    return pa.Table.from_arrays(
        [
            skeletons.timestamps(ts_ms, n),
            pa.array(ips, pa.string()),
            pa.array(macs, pa.string()),
            skeletons.constant_dictionary(OwnerKind.NEIGHBOR.value, n),
            pa.array(owners, pa.string()),
            skeletons.constant_dictionary(cluster, n),
            skeletons.constant_dictionary(network, n),
            skeletons.constant_dictionary(source, n),
        ],
        schema=IP_OBSERVATIONS_SCHEMA,
    )

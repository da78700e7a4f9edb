"""Compaction of a lake on object storage: many small part files of a closed day become one.

Why: an instance flushes every few seconds, so a site's day is thousands of small files per table
(on object storage every file is a request to list and to read). The service compacts its own
local data dir (:meth:`collector.store.Store.compact`: write a hidden file, delete the sources,
rename); on object storage a rename is a copy and nothing is atomic across objects, so this
module swaps files with a **manifest** that readers honour (:meth:`collector.lake.Lake.files`,
the one listing every reader goes through):

1. upload ``_compact-<id>.json`` naming the ``target`` and its ``sources`` — no effect yet: a
   manifest whose target does not exist hides nothing;
2. upload the target (one atomic PUT): **the switch** — from now on a reader that lists the
   partition sees the manifest and the target and skips the sources;
3. delete the sources;
4. delete the manifest — the partition is plain again (target only), and readers pay for no
   manifest read once compaction is done.

A crash leaves the partition readable at every step (before 2: sources only; after 2: target
only), and the next run finishes it (:func:`finish_in_flight`). A reader that listed before the
switch and opens a source deleted in step 3 gets a vanished file, which the query layer answers by
listing again. Two compactors racing on one partition cannot double-count: readers accept the
manifest with the lowest id and ignore the other's target, which the next run deletes. Still,
run one compactor per lake (a CronJob with ``concurrencyPolicy: Forbid``).

Engines that do not read manifests (Spark, ADX) skip ``_``-prefixed names and see the target next
to the sources between steps 2 and 3 (seconds, on closed days only).

On a local lake the store's own ordering is used (hidden staged file, manifest as journal, delete
sources, rename), because local readers also scan by glob and must never see both.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from collector.errors import StoreError
from collector.lake import COMPACT_MANIFEST, MANIFEST_RE, Lake, LakeFile, writer_id
from collector.schema import TABLE_SCHEMAS
from collector.store_layout import EMPTY_DATE

log = logging.getLogger(__name__)

SORT_KEYS = ("metric", "host", "ip", "fingerprint", "ts")
# input Parquet bytes merged into one output file: a merge holds its rows in memory (several times
# the compressed size), so a big day (hundreds of hosts) becomes several files, not one OOM kill
MAX_BYTES_PER_FILE = 64 << 20


@dataclass
class CompactionStats:
    """What one run did."""

    partitions: int = 0
    files_in: int = 0
    files_out: int = 0
    rows: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    finished: int = 0  # in-flight compactions of an earlier run completed
    failed: int = 0  # file groups left as they were after an error (logged; the next run retries)
    skipped: dict[str, int] = field(default_factory=lambda: defaultdict(int))


def _sorted(table: pa.Table) -> pa.Table:
    """Rows by (metric/kind, host, ip, fingerprint, ts) where present: scans prune row groups well."""
    keys: list[tuple[str, Literal["ascending", "descending"]]] = [
        (c, "ascending") for c in SORT_KEYS if c in table.column_names
    ]
    keytab = pa.table(
        {c: (pc.cast(table[c], pa.string()) if pa.types.is_dictionary(table[c].type) else table[c]) for c, _ in keys}
    )
    return table.take(pc.sort_indices(keytab, sort_keys=keys))


def _manifests(lake: Lake, name: str, sites: set[str] | None) -> dict[str, list[str]]:
    """Partition dir → manifest paths of one table (compactions in flight)."""
    base = lake.path(name)
    try:
        infos = lake.fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    except (OSError, pa.ArrowException) as exc:
        raise StoreError(f"cannot list {lake.url}/{name}: {exc}") from exc
    out: dict[str, list[str]] = defaultdict(list)
    for info in infos:
        m = MANIFEST_RE.match(info.path[len(base) + 1 :])
        if m is not None and (sites is None or m["site"] in sites):
            out[info.path.rsplit("/", 1)[0]].append(info.path)
    return out


def finish_in_flight(lake: Lake, name: str, *, sites: set[str] | None = None) -> int:
    """Complete (or undo) compactions an earlier run left half done; returns how many.

    Uses the readers' own rule (:meth:`Lake.superseded`), so what it deletes is exactly what no
    reader sees: the sources of accepted manifests and the targets of rejected ones.
    """
    done = 0
    for part_dir, paths in _manifests(lake, name, sites).items():
        present = {
            i.path
            for i in lake.fs.get_file_info(pafs.FileSelector(part_dir))
            if i.type == pafs.FileType.File and i.size  # empty: an upload that never committed
        }
        hidden = lake.superseded(paths, present)
        for path in hidden:
            lake.delete_file(path)
        for path in paths:
            got = lake.read_manifest(path)
            if lake.local:  # a staged target whose sources are already gone: finish the rename
                _finish_local(lake, path)
            if got is not None and got[0] not in present and not lake.fs.get_file_info(got[0]).size:
                lake.delete_file(got[0])  # the empty blob of an upload killed before its commit
            lake.delete_file(path)
            done += 1
    return done


def _finish_local(lake: Lake, manifest: str) -> None:
    try:
        doc = json.loads(Path(manifest).read_text())
    except (OSError, ValueError):
        return
    part_dir = Path(manifest).parent
    staged, target = part_dir / f".{doc['target']}.staged", part_dir / str(doc["target"])
    if staged.exists():
        for src in doc["sources"]:
            (part_dir / str(src)).unlink(missing_ok=True)
        os.replace(staged, target)


def compact_lake(
    lake: Lake,
    *,
    before: date | None = None,
    min_files: int = 8,
    tables: list[str] | None = None,
    sites: set[str] | None = None,
    writer: str = "compactor",
    max_bytes: int = MAX_BYTES_PER_FILE,
) -> CompactionStats:
    """Merge the part files of every closed partition (``date < before``, default today UTC) that
    has at least ``min_files`` of them, per table and site, into files of at most about
    ``max_bytes`` of input each; see the module docstring for the swap. A group that fails (a
    vanished file, storage errors) is logged and left for the next run; the others go on."""
    before = before or datetime.now(UTC).date()
    stats = CompactionStats()
    wid = writer_id(writer)
    for name in tables or list(TABLE_SCHEMAS):
        if not lake.has_table(name):
            continue
        stats.finished += finish_in_flight(lake, name, sites=sites)
        groups: dict[tuple[str | None, str], list[LakeFile]] = defaultdict(list)
        for f in lake.files(name, sites=sites):
            groups[(f.site, f.date)].append(f)
        for (site, day), files in sorted(groups.items(), key=lambda kv: (kv[0][0] or "", kv[0][1])):
            if day == EMPTY_DATE or date.fromisoformat(day) >= before:
                stats.skipped["open or empty"] += 1
                continue
            if len(files) < min_files:
                stats.skipped["few files"] += 1
                continue
            for group in _bins(files, max_bytes):
                try:
                    _compact_partition(lake, name, site, day, group, wid, stats)
                except (StoreError, OSError, pa.ArrowException) as exc:
                    stats.failed += 1
                    log.error("compaction of %s %s/%s left for the next run: %s", name, site, day, exc)
    return stats


def _bins(files: list[LakeFile], max_bytes: int) -> list[list[LakeFile]]:
    """Consecutive groups of at most ``max_bytes`` (one file at least); a lone file is left alone."""
    out: list[list[LakeFile]] = [[]]
    size = 0
    for f in sorted(files, key=lambda f: f.path):
        if out[-1] and size + f.size > max_bytes:
            out.append([])
            size = 0
        out[-1].append(f)
        size += f.size
    return [g for g in out if len(g) > 1]


def _compact_partition(
    lake: Lake, name: str, site: str | None, day: str, files: list[LakeFile], wid: str, stats: CompactionStats
) -> None:
    schema = TABLE_SCHEMAS[name]
    data = ds.dataset([f.path for f in files], schema=schema, format="parquet", filesystem=lake.fs)
    table = _sorted(data.to_table())
    d = date.fromisoformat(day)
    day_ms = int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp() * 1000)
    cid = secrets.token_hex(6)
    target = lake.new_name(wid, day_ms, 0, tag=f"compact{cid}")
    part = Lake.partition_dir(name, day, site)
    manifest_rel = f"{part}/{COMPACT_MANIFEST.format(id=cid)}"
    sources = [f.path.rsplit("/", 1)[1] for f in files]
    doc = json.dumps({"target": target, "sources": sources, "rows": table.num_rows}).encode("utf-8")
    if lake.local:
        staged = Path(lake.path(part)) / f".{target}.staged"
        lake.write_parquet(table, f"{part}/.{target}.staged")
        lake.write_bytes(manifest_rel, doc)  # the journal: a crash from here on is finished forward
        for f in files:
            lake.delete_file(f.path)
        os.replace(staged, Path(lake.path(part, target)))
        size = Path(lake.path(part, target)).stat().st_size
    else:
        lake.write_bytes(manifest_rel, doc)  # 1. no effect until the target exists
        size = lake.write_parquet(table, f"{part}/{target}")  # 2. the switch
        for f in files:  # 3.
            lake.delete_file(f.path)
    lake.delete_file(lake.path(manifest_rel))  # 4. plain partition again
    stats.partitions += 1
    stats.files_in += len(files)
    stats.files_out += 1
    stats.rows += table.num_rows
    stats.bytes_in += sum(f.size for f in files)
    stats.bytes_out += size
    log.info("compacted %s %s/%s: %d files -> 1 (%d rows)", name, site, day, len(files), table.num_rows)


__all__ = ["CompactionStats", "compact_lake", "finish_in_flight"]

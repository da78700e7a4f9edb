"""``hciwatch compact``: small files of closed days merged on local disk, Azurite and moto S3, with
readers never counting a row twice or missing one — including in every state a crash can leave."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pytest

from collector.lake import Lake, LakeSettings
from collector.lake_compact import compact_lake
from collector.schema import SAMPLES_SCHEMA
from hciwatch.cli import main
from hciwatch.fleet import fleet_views
from hciwatch.query import run_query
from lab.fleet import FLEET_START, fleet_plan, write_site
from tests.fixtures.object_stores import ObjectStore

CLOSED = FLEET_START.date().isoformat()  # the fleet starts at 23:30: one closed date, one open
OPEN = date.fromordinal(FLEET_START.date().toordinal() + 1)
COUNTS = (
    "SELECT site, CAST(date AS VARCHAR) AS d, count(*) AS n, sum(value) AS v FROM samples GROUP BY ALL ORDER BY site, d"
)


@pytest.fixture(params=["local", "azurite", "s3"])
def lake(request: pytest.FixtureRequest, tmp_path: Path) -> Lake:
    """Two sites, one hour across midnight, one file per 5 minutes: 6 small files per closed partition."""
    if request.param == "local":
        lake = Lake.open(str(tmp_path / "lake"))
    else:
        request.applymarker(pytest.mark.integration)
        server: ObjectStore = request.getfixturevalue("azurite" if request.param == "azurite" else "moto_s3")
        url = server.url(server.new_bucket())
        lake = Lake.open(url, LakeSettings.model_validate({"url": url, **server.lake_settings()}))
    for site in fleet_plan(2, 6):
        write_site(lake, site, tmp_path / "w", hours=1.0, interval_s=60, slice_minutes=5)
    return lake


def _q(lake: Lake, sql: str) -> list[dict[str, object]]:
    return run_query(Path("."), sql, extra_views=fleet_views(lake), lake=lake).table.to_pylist()


def _files(lake: Lake, day: str) -> dict[str | None, int]:
    out: dict[str | None, int] = {}
    for f in lake.files("samples"):
        if f.date == day:
            out[f.site] = out.get(f.site, 0) + 1
    return out


def test_compaction_merges_closed_days_and_keeps_every_row(lake: Lake) -> None:
    before = _q(lake, COUNTS)
    assert _files(lake, CLOSED) == {"site-000": 6, "site-001": 6}
    open_files = _files(lake, OPEN.isoformat())

    stats = compact_lake(lake, before=OPEN, min_files=4)

    assert stats.partitions == 4  # samples and ip_observations of two sites' closed day
    assert _files(lake, CLOSED) == {"site-000": 1, "site-001": 1}
    assert _files(lake, OPEN.isoformat()) == open_files  # the open day is the writers' own
    assert _q(lake, COUNTS) == before
    # nothing left over: no manifest, no staged file
    names = [i.base_name for i in lake.fs.get_file_info(_selector(lake)) if i.type.name == "File"]
    assert not [n for n in names if n.startswith(("_compact-", "."))]
    assert compact_lake(lake, before=OPEN, min_files=4).partitions == 0  # idempotent


def test_a_big_day_becomes_several_files_each_within_the_byte_budget(lake: Lake) -> None:
    """A merge holds its rows in memory, so a day larger than the budget is merged in groups."""
    before = _q(lake, COUNTS)
    sizes = sorted(f.size for f in lake.files("samples") if f.date == CLOSED)
    budget = sizes[-1] + sizes[-2]  # any two of a site's six files fit, never all six

    stats = compact_lake(lake, before=OPEN, min_files=4, tables=["samples"], max_bytes=budget)

    assert stats.failed == 0 and stats.partitions > 2
    assert all(1 < n < 6 for n in _files(lake, CLOSED).values()), _files(lake, CLOSED)
    assert _q(lake, COUNTS) == before


def _selector(lake: Lake) -> pafs.FileSelector:
    return pafs.FileSelector(lake.root, recursive=True)


def _crash_state(lake: Lake, *, upload_target: bool, second_target: bool = False, empty: bool = False) -> None:
    """What a compactor killed after step 1 (manifest) or step 2 (target) leaves in site-000's closed
    partition; with ``second_target`` a second compactor raced the first on the same sources; with
    ``empty`` it was killed during the target's upload (Azure's output stream creates the blob empty
    at open and commits the content at close)."""
    files = [f for f in lake.files("samples", sites={"site-000"}) if f.date == CLOSED]
    part = Lake.partition_dir("samples", CLOSED, "site-000")
    table = ds.dataset([f.path for f in files], schema=SAMPLES_SCHEMA, filesystem=lake.fs).to_table()
    sources = [f.path.rsplit("/", 1)[1] for f in files]
    for cid, name in (("a1", "part-x-0000000000000-000000-compacta1-000000.parquet"),) + (
        (("b2", "part-y-0000000000000-000000-compactb2-000000.parquet"),) if second_target else ()
    ):
        lake.write_bytes(f"{part}/_compact-{cid}.json", json.dumps({"target": name, "sources": sources}).encode())
        if empty:
            lake.write_bytes(f"{part}/{name}", b"")
        elif upload_target:
            lake.write_parquet(table, f"{part}/{name}")


@pytest.mark.parametrize(
    ("upload_target", "second_target", "empty"),
    [(False, False, False), (False, False, True), (True, False, False), (True, True, False)],
    ids=["killed-after-manifest", "killed-mid-upload", "killed-after-switch", "two-compactors-raced"],
)
def test_readers_see_each_row_once_in_every_crash_state(
    lake: Lake, upload_target: bool, second_target: bool, empty: bool
) -> None:
    before = _q(lake, COUNTS)
    _crash_state(lake, upload_target=upload_target, second_target=second_target, empty=empty)
    assert _q(lake, COUNTS) == before  # no duplicate, no gap, whatever the crash left
    assert _files(lake, CLOSED)["site-000"] == (1 if upload_target else 6)

    stats = compact_lake(lake, before=OPEN, min_files=4)  # the next run finishes it
    assert stats.finished == (2 if second_target else 1)
    assert _q(lake, COUNTS) == before
    assert _files(lake, CLOSED) == {"site-000": 1, "site-001": 1}
    left = [i for i in lake.fs.get_file_info(_selector(lake)) if i.type.name == "File"]
    assert not [i.path for i in left if i.base_name.startswith("_compact-") or not i.size]  # no manifest, no empty blob


def test_cli_compact(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The verb on a directory lake (the code path is compact_lake's, covered per backend above)."""
    lake = Lake.open(str(tmp_path / "lake"))
    for site in fleet_plan(2, 6):
        write_site(lake, site, tmp_path / "w", hours=1.0, interval_s=60, slice_minutes=5)
    before = _q(lake, COUNTS)
    assert main(["compact", "--lake", lake.root, "--before", OPEN.isoformat(), "--min-files", "4"]) == 0
    assert "compacted 4 partition(s): 24 files -> 4" in capsys.readouterr().out
    assert _q(lake, COUNTS) == before

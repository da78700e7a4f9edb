"""``hciwatch test-sources``: scrape every configured source once and show what it parsed.

Like ``telegraf --test``: nothing is stored, no detector runs, no sink is called. Each pull
target is fetched once (bounded by the source's own timeout) and the payload goes through the
same parser the service uses, so a user sees per target whether it answered, how many samples
and IP observations it gave, which metrics, and the exact fetch or parse error otherwise. Push
sources (MQTT, watches) have no "once"; they are listed as such.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from collector.catalog import Catalog, UserMapping
from collector.errors import HciwatchError
from collector.sources.base import PullSource, PushSource
from hciwatch.config import AppConfig
from hciwatch.parse_pool import parse_one
from hciwatch.redact import redact


@dataclass
class TargetResult:
    """What one target gave on one scrape."""

    source: str
    target: str
    ok: bool
    records: int = 0
    samples: int = 0
    ip_observations: int = 0
    metrics: list[tuple[str, int]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


async def _one(src: PullSource, target: str, catalog: Catalog) -> TargetResult:
    res = TargetResult(source=src.name, target=redact(target), ok=False)
    try:
        records = await asyncio.wait_for(src.fetch(target), timeout=src.settings.timeout + 1.0)
    except TimeoutError:
        res.errors.append(f"timed out after {src.settings.timeout:g} s")
        return res
    except HciwatchError as exc:
        res.errors.append(redact(str(exc)))
        return res
    except Exception as exc:  # a fetch bug is shown per target; the other targets still run
        res.errors.append(redact(f"{type(exc).__name__}: {exc}"))
        return res
    counts: Counter[str] = Counter()
    res.records = len(records)
    for rec in records:
        out = parse_one(rec, catalog)
        if out.rejected is not None:
            res.errors.append(redact(f"rejected ({out.rejected[0]}): {out.rejected[1]}"))
            continue
        res.errors += [redact(f"skipped part: {e}") for e in out.errors[:5]]
        res.samples += out.samples.num_rows
        res.ip_observations += out.ip_observations.num_rows
        if out.samples.num_rows:
            counts.update(str(m) for m in out.samples.column("metric").to_pylist())
    res.metrics = counts.most_common()
    res.ok = res.records > 0 and not any(e.startswith("rejected") for e in res.errors)
    if res.records == 0:
        res.errors.append("the target answered but gave no record")
    return res


async def test_sources(cfg: AppConfig) -> tuple[list[TargetResult], list[str]]:
    """(one result per pull target, names of push sources not tested)."""
    from hciwatch.service import build_sources

    catalog = Catalog(UserMapping(m.native, m.canonical, m.unit, m.counter) for m in cfg.collector.metric_mappings)
    pull, push = build_sources(cfg)
    try:
        jobs = [_one(src, t, catalog) for src in pull for t in src.targets()]
        results = list(await asyncio.gather(*jobs))
    finally:
        sources: list[PullSource | PushSource] = [*pull, *push]
        for s in sources:
            with contextlib.suppress(Exception):  # closing a half-open client must not hide the results
                await s.close()
    return results, [p.name for p in push]


def summary_line(r: TargetResult) -> str:
    """One plain line per target (also what the tests read)."""
    status = "OK  " if r.ok else "FAIL"
    return f"{status} {r.source} {r.target}: {r.records} record(s), {r.samples} sample(s), {r.ip_observations} IP obs"


def as_dict(r: TargetResult) -> dict[str, Any]:
    return {
        "source": r.source,
        "target": r.target,
        "ok": r.ok,
        "records": r.records,
        "samples": r.samples,
        "ip_observations": r.ip_observations,
        "metrics": dict(r.metrics),
        "errors": r.errors,
    }

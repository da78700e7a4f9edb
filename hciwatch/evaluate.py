"""``hciwatch eval``: replay scenario folders and score the detectors against their ground truth.

A scenario folder holds ``capture.jsonl.zst`` (or ``.jsonl``), ``config.toml`` and
``expected.json`` ``{"incidents": [...], "confounders": [...]}`` as written by
``lab.ground_truth`` / ``confounder_windows``. One folder = one test.

Scoring rules (the same for every scenario):

* an expected incident is **detected** when a firing change of its kind (the first firing of an
  alert, or a later one announcing an escalation or a widening) happens between ``start − 5 min``
  and ``end + 30 min`` whose resource agrees with the incident's on every key both carry and
  shares at least one identifying key (network, ip, host, pool). A key agrees when the expected
  value is the alert's value, one of its comma-separated values, or one the alert's announced
  ``scope`` lists for that key (a congestion incident that widened to a second host has detected
  that host's incident too — at the change that announced it). Time to detect is the first such
  change minus ``start``;
* every firing incident (fingerprint) that matches no expected incident is a **false alert**,
  unless a confounder window overlapping it lists its kind under ``may_raise`` (a host reboot may
  raise ``source_down``);
* the exit code is non-zero on any miss or false alert.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from collector.capture import read_captures
from collector.registry import parser_kinds
from collector.schema import Alert, AlertStatus, parse_iso
from hciwatch.config import load_config
from hciwatch.pipeline import replay_records

IDENTITY_KEYS = ("network", "ip", "host", "pool")
EARLY = timedelta(minutes=5)
LATE = timedelta(minutes=30)


@dataclass
class ScenarioScore:
    """Outcome of one scenario."""

    name: str
    expected: int
    detected: int = 0
    missed: list[str] = field(default_factory=list)
    false_alerts: list[str] = field(default_factory=list)
    ttd_s: list[float] = field(default_factory=list)
    alerts: int = 0

    @property
    def precision(self) -> float:
        tp = self.detected
        return tp / (tp + len(self.false_alerts)) if tp + len(self.false_alerts) else 1.0

    @property
    def recall(self) -> float:
        return self.detected / self.expected if self.expected else 1.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.name,
            "expected": self.expected,
            "detected": self.detected,
            "missed": self.missed,
            "false_alerts": self.false_alerts,
            "precision": round(self.precision, 3),
            "recall": round(self.recall, 3),
            "mean_time_to_detect_s": round(sum(self.ttd_s) / len(self.ttd_s), 1) if self.ttd_s else None,
        }


def _agrees(expected: dict[str, str], alert: Alert) -> bool:
    got = dict(alert.resource)
    scope = alert.evidence.get("scope") or {}
    shared = [k for k in expected if k in got]
    if not any(k in IDENTITY_KEYS for k in shared):
        return False
    for k in shared:
        values = {v.strip() for v in str(got[k]).split(",")} | {str(v) for v in scope.get(k, [])}
        if str(expected[k]) not in values:
            return False
    return True


def _window(item: dict[str, Any], end_default: datetime) -> tuple[datetime, datetime]:
    start = parse_iso(item["start"])
    end = parse_iso(item["end"]) if item.get("end") else end_default
    return start, end


def score(name: str, alerts: Sequence[Alert], expected: dict[str, Any], end: datetime) -> ScenarioScore:
    """Score the firing alerts of one replay against a scenario's expectations."""
    incidents = expected.get("incidents", [])
    confounders = expected.get("confounders", [])
    first_firing: dict[str, Alert] = {}
    changes = [a for a in alerts if a.status is AlertStatus.FIRING]
    for a in changes:
        if a.fingerprint not in first_firing:
            first_firing[a.fingerprint] = a
    firing = list(first_firing.values())
    result = ScenarioScore(name, expected=len(incidents), alerts=len(firing))
    matched: set[str] = set()
    for inc in incidents:
        start, stop = _window(inc, end)
        hits = [
            a
            for a in changes
            if a.kind.value == inc["kind"]
            and _agrees(inc["resource"], a)
            and start - EARLY <= a.changed_at <= stop + LATE
        ]
        label = f"{inc.get('incident', inc['kind'])} {inc['resource']}"
        if hits:
            result.detected += 1
            matched.update(a.fingerprint for a in hits)
            result.ttd_s.append(max(0.0, (min(a.changed_at for a in hits) - start).total_seconds()))
        else:
            result.missed.append(label)
    for a in firing:
        if a.fingerprint in matched:
            continue
        excused = False
        for c in confounders:
            c_start, c_end = _window(c, end)
            if (
                a.kind.value in c.get("may_raise", [])
                and c_start - EARLY <= a.changed_at <= c_end + LATE
                and all(a.resource.get(k, v) == v for k, v in c.get("resource", {}).items())
            ):
                excused = True
        if not excused:
            result.false_alerts.append(f"{a.kind.value} {dict(a.resource)} at {a.changed_at:%m-%d %H:%M}")
    return result


def find_capture(folder: Path) -> Path:
    for name in ("capture.jsonl.zst", "capture.jsonl"):
        if (folder / name).exists():
            return folder / name
    raise FileNotFoundError(f"{folder}: no capture.jsonl(.zst)")


def run_scenario(folder: Path) -> tuple[ScenarioScore, list[Alert]]:
    """Replay one scenario folder into a temporary data dir and score it."""
    cfg = load_config(folder / "config.toml")
    expected = json.loads((folder / "expected.json").read_text())
    with tempfile.TemporaryDirectory(prefix="hciwatch-eval-") as tmp:
        res = replay_records(read_captures([find_capture(folder)], known_kinds=parser_kinds()), cfg, Path(tmp))
    end = res.last_ts or datetime.now().astimezone()
    return score(folder.name, res.alerts, expected, end), res.alerts


def run_eval(folders: Sequence[Path], *, console: Console, fmt: str = "table") -> int:
    """Score every folder; print a table (or JSON); non-zero exit on any miss or false alert."""
    scores = [run_scenario(f)[0] for f in folders]
    tp = sum(s.detected for s in scores)
    exp = sum(s.expected for s in scores)
    fp = sum(len(s.false_alerts) for s in scores)
    ttd = [t for s in scores for t in s.ttd_s]
    total = {
        "scenario": "TOTAL",
        "expected": exp,
        "detected": tp,
        "missed": exp - tp,
        "false_alerts": fp,
        "precision": round(tp / (tp + fp), 3) if tp + fp else 1.0,
        "recall": round(tp / exp, 3) if exp else 1.0,
        "mean_time_to_detect_s": round(sum(ttd) / len(ttd), 1) if ttd else None,
    }
    if fmt == "json":
        console.print_json(json.dumps({"scenarios": [s.as_dict() for s in scores], "total": total}))
    else:
        t = Table(title="detector evaluation")
        for col in ("scenario", "expected", "TP", "missed", "false", "precision", "recall", "mean TTD"):
            t.add_column(col)
        for s in scores:
            d = s.as_dict()
            t.add_row(
                s.name,
                str(s.expected),
                str(s.detected),
                str(len(s.missed)),
                str(len(s.false_alerts)),
                f"{s.precision:.2f}",
                f"{s.recall:.2f}",
                f"{d['mean_time_to_detect_s']} s" if d["mean_time_to_detect_s"] is not None else "-",
            )
        t.add_row(
            "TOTAL",
            str(exp),
            str(tp),
            str(exp - tp),
            str(fp),
            f"{total['precision']:.2f}",
            f"{total['recall']:.2f}",
            f"{total['mean_time_to_detect_s']} s" if total["mean_time_to_detect_s"] is not None else "-",
        )
        console.print(t)
        for s in scores:
            for m in s.missed:
                console.print(f"  [red]missed[/] {s.name}: {m}", markup=True)
            for f in s.false_alerts:
                console.print(f"  [yellow]false alert[/] {s.name}: {f}", markup=True)
    return 0 if exp == tp and fp == 0 else 1

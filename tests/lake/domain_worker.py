"""One fleet instance replaying a scenario on a virtual clock: ``python -m tests.lake.domain_worker``.

The service evaluates on the wall clock, so a two-hour scenario cannot be replayed through
``hciwatch run`` inside a test; this process wires the same parts the service uses in fleet mode
(:class:`hciwatch.ownership.DomainOwnership` with the Azure Blob lease and lake membership, a
:class:`collector.store.Store` on the shared lake, :class:`hciwatch.pipeline.Pipeline` with
:meth:`~hciwatch.pipeline.Pipeline.rebuild_from_store` on gain, fenced state saves, alert changes
refused once the domain is not owned) around a virtual clock.

The shared input stands in for the domain's persistent MQTT session: every instance reads the
same capture, and an owner resumes after the checkpoint the last owner saved with its lifecycle
state (the records before it are in the lake, flushed before each pass). Per evaluation step:
flush the store to the lake, evaluate, append the alert changes to ``--out`` (fsynced, fenced),
save ``{"checkpoint", "lifecycle"}`` into the lease blob (fenced). Progress goes to stdout as JSON
lines (``gained``, ``eval``, ``done``) so the test knows when to kill it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from collector.capture import read_capture
from collector.domains import FleetSettings
from collector.lake import Lake, LakeSettings
from collector.schema import Alert, RawRecord
from collector.store import Store
from hciwatch.config import load_config
from hciwatch.ownership import DomainOwnership
from hciwatch.pipeline import Pipeline, iter_records


def say(event: str, **kw: Any) -> None:
    print(json.dumps({"event": event, "wall": time.time(), **kw}), flush=True)


def _align(ts: datetime, step: timedelta) -> datetime:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return epoch + ((ts - epoch) // step) * step


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--lake", required=True, help="JSON of [store.lake] settings (url included)")
    p.add_argument("--instance", required=True)
    p.add_argument("--scenario", required=True, type=Path)
    p.add_argument("--data-dir", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--pace", type=float, default=0.0, help="wall seconds to sleep per evaluation step")
    args = p.parse_args(argv)

    lake_settings = LakeSettings.model_validate(json.loads(args.lake))
    cfg = load_config(args.scenario / "config.toml")
    domain = cfg.domain.id
    fleet = FleetSettings(enabled=True, instance=args.instance, lease_duration=15, renew_interval=1.0, member_ttl=3.0)
    own = DomainOwnership.from_settings(fleet, [domain], lake_settings.url, lake_settings)
    lake = Lake.open(lake_settings.url, lake_settings)
    args.data_dir.mkdir(parents=True, exist_ok=True)
    out = open(args.out, "a", encoding="utf-8")  # noqa: SIM115

    def fenced_sink(changes: Sequence[Alert]) -> None:
        if not own.owns(domain):  # the service's _to_outbox refuses the same way
            say("refused", n=len(changes))
            return
        for a in changes:
            doc: dict[str, Any] = {"key": a.idempotency_key, "fingerprint": a.fingerprint, "status": a.status.value}
            doc |= {"changed_at": a.changed_at.isoformat(), "instance": args.instance, "epoch": own.epoch(domain)}
            out.write(json.dumps(doc) + "\n")
        out.flush()
        os.fsync(out.fileno())

    # a standby is a running instance: store, pipeline and its input are ready before it owns anything
    store = Store(args.data_dir, batch_rows=10_000_000, auto_flush=False, site=cfg.collector.site.name, lake=lake)
    pipe = Pipeline(cfg, store, alert_sinks=[fenced_sink])
    records = [r for r in iter_records(read_capture(args.scenario / "capture.jsonl.zst")) if isinstance(r, RawRecord)]
    say("ready")
    while not own.owns(domain):  # standby: heartbeat, wait for the lease
        own.tick()
        if not own.owns(domain):
            time.sleep(fleet.renew_interval)
    gained = time.time()
    raw = own.load_state(domain)
    doc = json.loads(raw) if raw else {}
    checkpoint = datetime.fromisoformat(doc["checkpoint"]) if doc.get("checkpoint") else None
    say("gained", epoch=own.epoch(domain), checkpoint=doc.get("checkpoint"))
    if checkpoint is not None:  # a takeover: detectors from the lake, incidents from the last owner's state
        pipe.rebuild_from_store(doc["lifecycle"].encode())
    step = cfg.analytics.evaluation_interval
    next_eval = checkpoint
    last_tick = time.monotonic()
    first_eval = True

    def evaluate(at: datetime) -> None:
        nonlocal last_tick, first_eval
        if time.monotonic() - last_tick >= fleet.renew_interval:
            own.tick()
            last_tick = time.monotonic()
        if not own.owns(domain):
            say("lost")
            raise SystemExit(3)
        t0 = time.perf_counter()
        pipe.flush_store()  # what the next owner bootstraps from
        t1 = time.perf_counter()
        pipe.evaluate(at)
        t2 = time.perf_counter()
        state = json.dumps({"checkpoint": (at + step).isoformat(), "lifecycle": pipe.manager.to_bytes().decode()})
        if not own.save_state(domain, state.encode()):
            say("lost")
            raise SystemExit(3)
        timings = {"flush_s": t1 - t0, "evaluate_s": t2 - t1, "save_s": time.perf_counter() - t2}
        say("eval", at=at.isoformat(), first=first_eval, since_gain_s=time.time() - gained, **timings)
        first_eval = False
        if args.pace:
            time.sleep(args.pace)

    last: datetime | None = None
    for rec in records:
        if checkpoint is not None and rec.ts < checkpoint:
            continue  # in the lake already (flushed before the pass that saved the checkpoint)
        if next_eval is None:
            next_eval = _align(rec.ts, step) + step
        while rec.ts >= next_eval:
            evaluate(next_eval)
            next_eval += step
        pipe.ingest(rec)
        last = rec.ts
    if last is not None:
        evaluate(last)
    pipe.close()
    out.close()
    own.release_all()
    say("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())

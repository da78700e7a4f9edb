"""Alert lifecycle: pending → firing → resolved, one alert per incident, no flapping.

:class:`AlertManager` turns the findings of each evaluation into alert *state changes*
(:class:`collector.schema.Alert`), Prometheus-Alertmanager style:

* **identity** — ``fingerprint(kind, resource)``, with the manager's ``site`` added to every
  resource (so identical incidents at two sites never share an id in a fleet's shared sinks); the
  same incident keeps it while its numbers change, so there is never a second firing for one
  incident;
* **pending** — an active finding must stay active for its kind's ``for`` duration before it fires
  (``for = 0`` fires at once). A condition that goes away while pending never produces an alert;
* **firing** — emitted once, with the latest evidence. If the incident's severity *escalates*
  (e.g. Sev2 → Sev1) or its scope *widens* (a congestion incident reaches another host; see
  :attr:`analytics.findings.Finding.scope`) while firing, a new firing change with the same
  fingerprint and ``starts_at`` is emitted; de-escalation emits nothing (the incident keeps its
  worst severity and everything it ever covered until it resolves; the evidence still shows the
  current numbers). The scope announced so far is in the alert's evidence under ``scope``;
* **resolved** — only after the condition has been gone (finding inactive or absent) for the
  kind's ``hold`` duration; coming back within the hold keeps the same firing incident, so a value
  hovering at a threshold cannot flap. The resolution carries the last evidence seen.

State survives restarts: :meth:`save` writes it to a JSON file atomically (temporary file, fsync,
rename) and the constructor restores it, so a restarted service neither re-fires a firing alert
nor forgets to resolve it. :meth:`update` saves by itself after any firing/resolved change when a
path was given.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from analytics.findings import Finding
from analytics.runbooks import runbook
from analytics.settings import AnalyticsSettings
from collector.schema import Alert, AlertKind, AlertStatus, Severity, fingerprint, iso, parse_iso, utc

log = logging.getLogger(__name__)

STATE_VERSION = 1
PENDING = "pending"
FIRING = "firing"


def json_safe(value: Any) -> Any:
    """Evidence made JSON-clean (NaN/inf → None, sets/tuples → lists, keys → str)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, set | frozenset):
        return [json_safe(v) for v in sorted(value, key=str)]
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        return json_safe(value.item())
    return value


@dataclass(slots=True)
class _State:
    fingerprint: str
    kind: AlertKind
    resource: dict[str, str]
    status: str
    since: datetime  # pending since
    severity: Severity
    summary: str
    evidence: dict[str, Any]
    starts_at: datetime | None = None
    inactive_since: datetime | None = None
    last_seen: datetime | None = None
    worst: Severity = field(default=Severity.SEV4)
    scope: dict[str, list[str]] = field(default_factory=dict)  # announced so far

    def widen(self, scope: Mapping[str, tuple[str, ...]]) -> bool:
        """Add a finding's scope; True when it names something not announced yet."""
        grew = False
        for k, vals in scope.items():
            cur = self.scope.setdefault(k, [])
            for v in vals:
                if v not in cur:
                    cur.append(v)
                    grew = True
        return grew

    def to_json(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "kind": self.kind.value,
            "resource": self.resource,
            "status": self.status,
            "since": iso(self.since),
            "severity": self.severity.value,
            "summary": self.summary,
            "evidence": json_safe(self.evidence),
            "starts_at": iso(self.starts_at) if self.starts_at else None,
            "inactive_since": iso(self.inactive_since) if self.inactive_since else None,
            "last_seen": iso(self.last_seen) if self.last_seen else None,
            "scope": self.scope,
        }

    @classmethod
    def from_json(cls, o: Mapping[str, Any]) -> _State:
        def ts(key: str) -> datetime | None:
            v = o.get(key)
            return parse_iso(v) if v else None

        since = ts("since")
        if since is None:
            raise ValueError("state entry without 'since'")
        st = cls(
            str(o["fingerprint"]),
            AlertKind(o["kind"]),
            {str(k): str(v) for k, v in o["resource"].items()},
            str(o["status"]),
            since,
            Severity(o["severity"]),
            str(o["summary"]),
            dict(o.get("evidence") or {}),
            ts("starts_at"),
            ts("inactive_since"),
            ts("last_seen"),
        )
        if st.status not in (PENDING, FIRING):
            raise ValueError(f"unknown status {st.status!r}")
        st.worst = st.severity
        st.scope = {str(k): [str(x) for x in v] for k, v in (o.get("scope") or {}).items()}
        return st


def _merge_batch(findings: Iterable[Finding]) -> dict[str, Finding]:
    """One finding per fingerprint: active beats inactive, then the more severe."""
    out: dict[str, Finding] = {}
    for f in findings:
        fp = f.fingerprint
        prev = out.get(fp)
        if prev is None or (f.active, -f.severity.rank) > (prev.active, -prev.severity.rank):
            out[fp] = f
    return out


class AlertManager:
    """Stateful alert lifecycle over a stream of findings (one instance per service/replay)."""

    def __init__(self, settings: AnalyticsSettings, state_path: Path | None = None, *, site: str = "") -> None:
        self.settings = settings
        self.state_path = Path(state_path) if state_path is not None else None
        # ``site`` goes into every incident's resource and therefore its fingerprint: identical
        # incidents at two sites (same network name and IP, same host name) must stay apart in any
        # shared sink (webhook alert ids, retained MQTT topics, the fleet lake).
        self.site = site
        self.states: dict[str, _State] = {}
        if self.state_path is not None and self.state_path.exists():
            self._load(self.state_path)

    # -- persistence ---------------------------------------------------------------------------
    def _load(self, path: Path) -> None:
        try:
            self.load_bytes(path.read_bytes())
        except (OSError, ValueError, KeyError, TypeError) as exc:
            bad = path.with_name(path.name + ".corrupt")
            log.warning("alert state %s unreadable (%s); starting empty, kept the file as %s", path, exc, bad)
            with contextlib.suppress(OSError):
                os.replace(path, bad)

    def to_bytes(self) -> bytes:
        """The state document (what :meth:`save` writes; a domain's new owner loads it elsewhere)."""
        doc = {"version": STATE_VERSION, "alerts": [s.to_json() for _, s in sorted(self.states.items())]}
        return json.dumps(doc, indent=1, sort_keys=True, allow_nan=False).encode("utf-8")

    def load_bytes(self, data: bytes) -> None:
        """Replace the state with a document from :meth:`to_bytes` (raises ValueError when unusable).

        This is how lifecycle state is carried over when another instance takes a network domain
        over: its incidents continue (no re-fire) and resolve under the ids sinks already know.
        """
        try:
            doc = json.loads(data.decode("utf-8"))
            if not isinstance(doc, dict) or doc.get("version") != STATE_VERSION:
                raise ValueError(f"unsupported state version {doc.get('version') if isinstance(doc, dict) else doc!r}")
            states = [_State.from_json(o) for o in doc.get("alerts", [])]
        except (KeyError, TypeError, UnicodeDecodeError) as exc:
            raise ValueError(str(exc)) from exc
        self.states = {}
        migrated = 0
        for st in states:
            if self.site and "site" not in st.resource:
                # State written before incidents carried their site: the incident keeps the id
                # its sinks already know (st.fingerprint) until it resolves, but is looked up by
                # its new identity, so the next evaluation continues it instead of re-firing.
                st.resource = {"site": self.site, **st.resource}
                migrated += 1
            self.states[fingerprint(st.kind.value, st.resource)] = st
        if migrated:
            log.info("alert state: %d incident(s) from before site-scoped fingerprints keep their old ids", migrated)

    def save(self) -> None:
        """Write the state file atomically (no-op without a state path)."""
        if self.state_path is None:
            return
        path = self.state_path
        path.parent.mkdir(parents=True, exist_ok=True)
        data = self.to_bytes()
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        try:
            dfd = os.open(path.parent, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(dfd)
        except OSError:
            pass
        finally:
            os.close(dfd)

    # -- the lifecycle -------------------------------------------------------------------------
    def update(self, findings: Iterable[Finding], now: datetime) -> list[Alert]:
        """Feed one evaluation's findings; return the alert state changes it caused."""
        now = utc(now)
        batch = _merge_batch(self._with_site(findings))
        changes: list[Alert] = []
        for fp, f in sorted(batch.items()):
            st = self.states.get(fp)
            if not f.active:
                if st is not None:
                    st.evidence, st.summary = dict(f.evidence), f.summary
                continue
            pol = self.settings.policy(f.kind)
            if st is None:
                st = _State(
                    fp,
                    f.kind,
                    dict(f.resource),
                    PENDING,
                    now,
                    f.severity,
                    f.summary,
                    dict(f.evidence),
                    worst=f.severity,
                )
                self.states[fp] = st
            st.summary, st.evidence, st.last_seen, st.inactive_since = f.summary, dict(f.evidence), now, None
            if st.status == PENDING:
                if f.severity.rank < st.worst.rank:
                    st.worst = f.severity
                if now - st.since >= pol.for_:
                    st.status, st.starts_at, st.severity = FIRING, now, st.worst
                    st.widen(f.scope)
                    changes.append(self._alert(st, AlertStatus.FIRING, now))
            else:
                escalated = f.severity.rank < st.severity.rank
                if escalated:
                    st.severity = st.worst = f.severity
                if st.widen(f.scope) or escalated:
                    changes.append(self._alert(st, AlertStatus.FIRING, now))
        for fp in sorted(self.states):
            st = self.states[fp]
            if fp in batch and batch[fp].active:
                continue
            if st.status == PENDING:
                del self.states[fp]
                continue
            if st.inactive_since is None:
                st.inactive_since = now
            if now - st.inactive_since >= self.settings.policy(st.kind).hold:
                changes.append(self._alert(st, AlertStatus.RESOLVED, now))
                del self.states[fp]
        if changes:
            try:
                self.save()
            except OSError as exc:  # a full disk must not lose the changes: they still go to the outbox
                log.warning("alert state not saved (%s); kept in memory, saved with the next change", exc)
        return changes

    def _with_site(self, findings: Iterable[Finding]) -> Iterable[Finding]:
        if not self.site:
            yield from findings
            return
        for f in findings:
            yield f if "site" in f.resource else replace(f, resource={"site": self.site, **f.resource})

    def _alert(self, st: _State, status: AlertStatus, now: datetime) -> Alert:
        ev = dict(st.evidence)
        if status is AlertStatus.RESOLVED and st.inactive_since is not None:
            ev["condition_cleared_at"] = iso(st.inactive_since)
        if st.scope:
            ev["scope"] = {k: list(v) for k, v in st.scope.items()}
        assert st.starts_at is not None
        return Alert(
            fingerprint=st.fingerprint,
            kind=st.kind,
            status=status,
            severity=st.severity,
            starts_at=st.starts_at,
            resource=st.resource,
            summary=st.summary,
            evidence=json_safe(ev),
            runbook=runbook(st.kind, ev),
            ends_at=now if status is AlertStatus.RESOLVED else None,
            ts=now,
        )

    # -- inspection ----------------------------------------------------------------------------
    def firing(self) -> list[Alert]:
        """Alerts currently firing (latest evidence), most severe first."""
        out = []
        for st in self.states.values():
            if st.status == FIRING and st.starts_at is not None:
                out.append(self._alert(st, AlertStatus.FIRING, st.last_seen or st.starts_at))
        return sorted(out, key=lambda a: (a.severity.rank, a.starts_at, a.fingerprint))

    def pending(self) -> list[tuple[str, AlertKind, dict[str, str], datetime]]:
        """(fingerprint, kind, resource, pending since) of conditions waiting out their 'for'."""
        return [(s.fingerprint, s.kind, s.resource, s.since) for s in self.states.values() if s.status == PENDING]


def policy_table(settings: AnalyticsSettings) -> dict[str, tuple[timedelta, timedelta]]:
    """kind → (for, hold), for documentation and ``hciwatch check-config``."""
    return {k.value: (settings.policy(k).for_, settings.policy(k).hold) for k in AlertKind}

"""Silences (maintenance windows): alert changes that match are kept from every sink for a while.

A planned host reboot or an upgrade window should page nobody, as Alertmanager silences and Azure
Monitor action rules (alert processing rules) allow. A silence is a set of matchers, a time span
and a comment:

* ``kind=duplicate_ip`` matches the alert kind, ``severity=Sev2`` its severity, any other key a
  resource label (``host=hci-node-04``, ``network=aks-vnet``, ``ip=10.20.0.*``); values may use
  shell wildcards (``*``, ``?``). ``resource=VALUE`` matches any resource label's value. Every
  matcher must match.
* Detection is not silenced: the change is still stored in the alert history (the ``alerts``
  table), the live page and report show it as silenced, and the silence records which changes it
  kept from the sinks (``suppressed``) so the history says why nobody was paged.

The service hands every change to the outbox (the alerts table is written from it) and wraps each
paging sink in :class:`SilencingExporter`; the live page's feed is not wrapped, it shows silenced
changes marked as such.

Silences live in ``<data_dir>/silences.json`` (written atomically). ``hciwatch silence add`` while
the service runs takes effect at its next alert change: the service re-reads the file when it
changed.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import secrets
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from collector.schema import Alert, iso, parse_iso
from exporters.base import Exporter, ExportResult

log = logging.getLogger(__name__)

SILENCES_FILE = "silences.json"
MAX_SUPPRESSED_KEPT = 200  # per silence: the newest changes it kept from the sinks
SPECIAL_KEYS = ("kind", "severity", "status", "resource")


def parse_matchers(text: str) -> dict[str, str]:
    """``kind=duplicate_ip,host=hci-node-0*`` → matchers; ``ValueError`` says what is wrong."""
    out: dict[str, str] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise ValueError(f"matcher {part!r} is not key=value (e.g. kind=duplicate_ip,host=hci-node-04)")
        if key in out:
            raise ValueError(f"matcher key {key!r} given twice")
        out[key] = value
    if not out:
        raise ValueError("give at least one matcher (e.g. --match kind=eastwest_congestion,host=hci-node-04)")
    return out


@dataclass
class Silence:
    """One maintenance window."""

    id: str
    matchers: dict[str, str]
    starts_at: datetime
    ends_at: datetime
    comment: str
    created_by: str = ""
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    expired_at: datetime | None = None
    suppressed: list[dict[str, str]] = field(default_factory=list)

    def active(self, now: datetime) -> bool:
        end = min(self.ends_at, self.expired_at) if self.expired_at else self.ends_at
        return self.starts_at <= now < end

    def matches(self, alert: Alert) -> bool:
        values = {
            "kind": alert.kind.value,
            "severity": alert.severity.value,
            "status": alert.status.value,
        }
        for key, pattern in self.matchers.items():
            if key == "resource":
                if not any(fnmatch.fnmatchcase(str(v), pattern) for v in alert.resource.values()):
                    return False
            elif key in values:
                if not fnmatch.fnmatchcase(values[key], pattern):
                    return False
            elif key not in alert.resource or not fnmatch.fnmatchcase(str(alert.resource[key]), pattern):
                return False
        return True

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("starts_at", "ends_at", "created_at", "expired_at"):
            d[k] = iso(d[k]) if d[k] is not None else None
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Silence:
        return cls(
            id=str(d["id"]),
            matchers={str(k): str(v) for k, v in dict(d["matchers"]).items()},
            starts_at=parse_iso(str(d["starts_at"])),
            ends_at=parse_iso(str(d["ends_at"])),
            comment=str(d.get("comment", "")),
            created_by=str(d.get("created_by", "")),
            created_at=parse_iso(str(d["created_at"])) if d.get("created_at") else datetime.now(UTC),
            expired_at=parse_iso(str(d["expired_at"])) if d.get("expired_at") else None,
            suppressed=[dict(x) for x in d.get("suppressed", [])],
        )


class SilenceStore:
    """The silences of one data dir; every change is written to disk before it returns."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / SILENCES_FILE
        self._silences: list[Silence] = []
        self._mtime: float | None = None
        self.reload()

    # -- persistence ---------------------------------------------------------------------------

    def reload(self, *, if_changed: bool = False) -> None:
        """Read the file (again); a damaged file is logged and leaves the current silences."""
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            self._silences, self._mtime = [], None
            return
        if if_changed and mtime == self._mtime:
            return
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
            self._silences = [Silence.from_json(d) for d in doc.get("silences", [])]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("%s cannot be read (%s); silences unchanged", self.path, exc)
        self._mtime = mtime

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = json.dumps({"silences": [s.to_json() for s in self._silences]}, indent=1)
        fd, tmp = tempfile.mkstemp(prefix=".silences.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(body)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._mtime = self.path.stat().st_mtime

    # -- operations ----------------------------------------------------------------------------

    def add(
        self,
        matchers: Mapping[str, str],
        *,
        duration: timedelta,
        comment: str,
        created_by: str = "",
        starts_at: datetime | None = None,
    ) -> Silence:
        if duration <= timedelta(0):
            raise ValueError("a silence needs a positive duration (e.g. --for 2h)")
        if not comment.strip():
            raise ValueError("say why in a comment (e.g. --comment 'hci-node-04 firmware upgrade, CHG-1234')")
        start = starts_at or datetime.now(UTC)
        s = Silence(
            id=secrets.token_hex(4),
            matchers=dict(matchers),
            starts_at=start,
            ends_at=start + duration,
            comment=comment.strip(),
            created_by=created_by,
        )
        self.reload(if_changed=True)
        self._silences.append(s)
        self._save()
        log.info("silence %s added: %s until %s (%s)", s.id, _fmt(s.matchers), iso(s.ends_at), s.comment)
        return s

    def expire(self, silence_id: str, now: datetime | None = None) -> Silence:
        self.reload(if_changed=True)
        for s in self._silences:
            if s.id == silence_id:
                s.expired_at = now or datetime.now(UTC)
                self._save()
                log.info("silence %s expired", s.id)
                return s
        raise KeyError(silence_id)

    def current(self, now: datetime | None = None, *, include_expired: bool = False) -> list[Silence]:
        self.reload(if_changed=True)
        t = now or datetime.now(UTC)
        out = [s for s in self._silences if include_expired or s.active(t) or s.starts_at > t]
        return sorted(out, key=lambda s: s.ends_at)

    def silencing(self, alert: Alert, now: datetime | None = None) -> Silence | None:
        """The active silence that matches ``alert``, if any."""
        t = now or alert.changed_at
        for s in self._silences:
            if s.active(t) and s.matches(alert):
                return s
        return None

    def filter(self, changes: Sequence[Alert], now: datetime | None = None, *, record: bool = True) -> list[Alert]:
        """The changes no active silence matches (at their own time, so a retried delivery decides
        the same); with ``record`` the others are logged and recorded on their silence."""
        self.reload(if_changed=True)
        passed: list[Alert] = []
        touched = False
        for a in changes:
            s = self.silencing(a, now)
            if s is None:
                passed.append(a)
                continue
            if not record:
                continue
            touched = True
            s.suppressed.append(
                {"fingerprint": a.fingerprint, "kind": a.kind.value, "status": a.status.value, "ts": iso(a.changed_at)}
            )
            del s.suppressed[:-MAX_SUPPRESSED_KEPT]
            log.info(
                "alert %s %s %s [%s] silenced by %s (%s)",
                a.status.value,
                a.severity.value,
                a.kind.value,
                ",".join(f"{k}={v}" for k, v in sorted(a.resource.items())),
                s.id,
                s.comment,
            )
        if touched:
            self._save()
        return passed


class SilencingExporter:
    """A sink behind a silence check: matching changes are acknowledged without being sent.

    The outbox still holds every change (the alerts table, the history, is written from it); only
    the paging sinks are wrapped. Everything else is the wrapped sink's.
    """

    def __init__(self, inner: Exporter, store: SilenceStore) -> None:
        self.inner = inner
        self.store = store
        self.name = inner.name

    async def start(self) -> None:
        await self.inner.start()

    async def export(self, batch: Sequence[Alert]) -> ExportResult:
        passed = self.store.filter(batch, record=False)
        if not passed:
            return ExportResult.success()
        return await self.inner.export(passed)

    async def healthcheck(self) -> bool:
        return await self.inner.healthcheck()

    async def shutdown(self) -> None:
        await self.inner.shutdown()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _fmt(matchers: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in matchers.items())


def silences_for_view(data_dir: Path, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Silences overlapping ``[start, end]`` or active now, for the report and live page."""
    store = SilenceStore(data_dir)
    now = datetime.now(UTC)
    out = []
    for s in store.current(include_expired=True):
        stop = min(s.ends_at, s.expired_at) if s.expired_at else s.ends_at
        if (s.starts_at <= end and stop >= start) or s.active(now):
            d = s.to_json()
            d["active_now"] = s.active(now)
            d["suppressed"] = d["suppressed"][-20:]
            out.append(d)
    return out


def describe(silences: Iterable[Silence], now: datetime) -> list[list[str]]:
    """Rows for ``hciwatch silence list``."""
    rows = []
    for s in silences:
        state = "active" if s.active(now) else ("expired" if s.expired_at or s.ends_at <= now else "pending")
        rows.append(
            [s.id, state, _fmt(s.matchers), iso(s.starts_at), iso(s.ends_at), str(len(s.suppressed)), s.comment]
        )
    return rows

"""What a detector reports: a condition on a resource, with the numbers that justify it.

A :class:`Finding` is stateless: detectors emit the conditions they see on each evaluation and the
:class:`analytics.lifecycle.AlertManager` turns the stream of findings into alert state changes
(pending → firing → resolved). The identity of an incident is ``fingerprint(kind, resource)``, so
``resource`` holds only what names the incident (network + IP, host, pool), never values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from collector.schema import AlertKind, Severity, fingerprint


@dataclass(frozen=True, slots=True)
class Finding:
    """One detector verdict for one resource at one evaluation.

    ``active`` is False when the detector still knows the incident but its condition no longer
    holds (the resolution then carries the final evidence); a finding that is simply absent is
    treated the same way by the alert manager.

    ``scope`` is what the incident covers beyond its resource, per resource key (e.g. every host
    of a congestion incident that widened from its first host). It is not part of the identity —
    an incident keeps its fingerprint as it widens — but growing it is news: the alert manager
    announces it like a severity escalation.
    """

    kind: AlertKind
    resource: dict[str, str]
    severity: Severity
    summary: str
    evidence: dict[str, Any] = field(default_factory=dict)
    active: bool = True
    scope: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", AlertKind(self.kind))
        object.__setattr__(self, "scope", {str(k): tuple(str(x) for x in v) for k, v in self.scope.items()})
        object.__setattr__(self, "severity", Severity(self.severity))
        object.__setattr__(self, "resource", {str(k): str(v) for k, v in self.resource.items()})
        if not self.summary:
            raise ValueError("a finding needs a summary")

    @property
    def fingerprint(self) -> str:
        """The incident identity (stable while values change)."""
        return fingerprint(self.kind.value, self.resource)

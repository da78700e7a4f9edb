"""What every source is: settings shared by all, and the two shapes a source can take.

A *pull* source is asked for records on an interval by the scheduler (HTTP scrapes, HAProxy
sockets, Kubernetes lists); a *push* source runs until cancelled and hands records to ``emit`` as
they arrive (MQTT, Kubernetes watches). Either way a source only does I/O: it returns
:class:`~collector.schema.RawRecord` payloads exactly as received, and the pure parsers registered
in :mod:`collector.registry` turn them into rows. That split is what makes capture and replay
exact: a capture file is just those records.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import ClassVar, Protocol, runtime_checkable

from pydantic import ConfigDict, Field

from collector.schema import RawRecord
from collector.settings.deprecated import RenamedKeys

Emit = Callable[[RawRecord], Awaitable[None]]


class SourceSettings(RenamedKeys):
    """Keys every ``[[sources]]`` table accepts; each source type subclasses this with its own.

    Unknown keys are rejected (``extra="forbid"``) so a typo fails at start-up with its key path;
    old spellings listed in ``renamed_keys`` still work for one release, with a warning.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    section: ClassVar[str] = "sources"

    type: str = Field(description="source type (windows, haproxy, mqtt, k8s_inventory, ...)")
    name: str = Field(default="", description="instance name; defaults to the type")
    interval: float = Field(default=30.0, gt=0, le=86400, description="seconds between pulls")
    timeout: float = Field(default=10.0, gt=0, le=600, description="per-target timeout, seconds")
    jitter: float = Field(default=0.1, ge=0, le=1, description="fraction of interval to jitter")
    labels: dict[str, str] = Field(default_factory=dict, description="labels added to every record")
    down_after: float = Field(default=300.0, gt=0, description="seconds a target may fail before source_down fires")
    sample_limit: int = Field(
        default=0, ge=0, description="a payload with more samples is refused whole (0 = no limit; as Prometheus)"
    )
    label_limit: int = Field(
        default=0, ge=0, description="a payload with a sample carrying more labels is refused (0 = no limit)"
    )

    def for_domain(self, site: str, domain: str) -> SourceSettings:
        """These settings with ``{site}``/``{domain}`` placeholders filled in (none here; MQTT has some)."""
        return self


@runtime_checkable
class PullSource(Protocol):
    """A source the scheduler polls; one ``fetch`` gathers every target once."""

    name: str
    settings: SourceSettings

    def targets(self) -> list[str]:
        """The targets this source talks to (for health and source_down alerts)."""
        ...

    async def fetch(self, target: str) -> list[RawRecord]:
        """Fetch one target once; raise :class:`collector.errors.FetchError` on failure."""
        ...

    async def close(self) -> None:
        """Release connections; safe to call twice and without a fetch."""
        ...


@runtime_checkable
class PushSource(Protocol):
    """A source that runs until cancelled and emits records as they arrive."""

    name: str
    settings: SourceSettings

    async def run(self, emit: Emit) -> None:
        """Consume forever; reconnect with backoff internally; return only when cancelled."""
        ...

    async def close(self) -> None:
        """Release connections; safe to call twice."""
        ...

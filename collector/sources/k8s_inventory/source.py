"""Kubernetes inventory source: list (or list + watch) Services, Nodes and Pods per cluster.

I/O only. Each fetch lists every configured resource of one cluster with ``limit``/``continue``
pagination and returns one ``k8s`` :class:`RawRecord` per resource holding the *complete* list,
so a record is a snapshot the pure parser (:mod:`.parse`) can account IPs from without any
state. A one-page list is passed on byte for byte; a multi-page list is merged into one List
object carrying the resourceVersion of its first page (every page of a paginated list is served
from that same snapshot). A ``continue`` token that expired (HTTP 410) restarts the list.

``watch = true`` turns the source into a push source: list, then watch from the list's
resourceVersion (with bookmarks), re-list on 410 Gone, and emit a fresh full snapshot after each
batch of changes (debounced), so downstream sees the same record shape in both modes.

Credentials come from a kubeconfig (reloaded when the file changes) or from ``api_url`` +
``bearer_token_file`` + ``tls``; a token file is re-read for every request, so projected
ServiceAccount tokens rotate without a restart. Tokens never appear in logs or errors.

Module layout: :mod:`.settings` (the TOML keys), :mod:`.client` (one API server: credentials,
lists, watch requests), :mod:`.watch` (the objects a watch keeps), this module (records, pull and
push sources, registration).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from collector.errors import FetchError
from collector.registry import SourceSpec
from collector.schema import RawRecord
from collector.settings import Backoff
from collector.sources.base import Emit
from collector.sources.k8s_inventory.client import (
    RESOURCE_PATHS,
    ClusterClient,
    SessionFactory,
    default_session,
)
from collector.sources.k8s_inventory.settings import ClusterSettings, K8sInventorySettings
from collector.sources.k8s_inventory.watch import Gone, WatchState

__all__ = ["SPEC", "ClusterSettings", "K8sInventorySettings", "K8sInventorySource", "K8sInventoryWatchSource", "build"]

log = logging.getLogger(__name__)

RECORD_KIND = "k8s"


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


# ---------------------------------------------------------------------------------------------
# Shared base: record building
# ---------------------------------------------------------------------------------------------


class _Base:
    def __init__(
        self,
        settings: K8sInventorySettings,
        *,
        session_factory: SessionFactory | None = None,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        self.settings = settings
        self.name = settings.name or settings.type
        self._now = now or (lambda: datetime.now(UTC))
        factory = session_factory or default_session
        self._clients = {
            c.name: ClusterClient(
                c,
                source=self.name,
                timeout=settings.timeout,
                session_factory=factory,
                key=f"sources.{self.name}.clusters[{i}]",
            )
            for i, c in enumerate(settings.clusters)
        }
        self._closed = False

    def targets(self) -> list[str]:
        """One target per cluster (its name), for health and source_down alerts."""
        return list(self._clients)

    def _labels(self, cluster: ClusterSettings, resource_version: str) -> dict[str, str]:
        s = self.settings
        labels = dict(s.labels)
        labels["cluster"] = cluster.name
        if cluster.network:
            labels["network"] = cluster.network
        if resource_version:
            labels["resource_version"] = resource_version
        if s.lb_node_name_pattern is not None:
            labels["lb_node_name_pattern"] = s.lb_node_name_pattern
        if s.lb_node_label is not None:
            labels["lb_node_label"] = s.lb_node_label
        return labels

    def _record(
        self,
        client: ClusterClient,
        server: str,
        resource: str,
        body: bytes,
        resource_version: str,
        control_plane: str | None,
    ) -> RawRecord:
        labels = self._labels(client.cfg, resource_version)
        if control_plane:
            labels["control_plane_endpoint"] = control_plane
        return RawRecord(
            ts=self._now(),
            kind=RECORD_KIND,
            target=server + RESOURCE_PATHS[resource],
            body=body,
            host=client.cfg.name,
            labels=labels,
        )

    def _control_plane_resource(self) -> str:
        """The VIP rides on one record per snapshot so it is counted once (services if listed)."""
        res = self.settings.resources
        return "services" if "services" in res else res[0]

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for client in self._clients.values():
            await client.close()


# ---------------------------------------------------------------------------------------------
# Pull mode
# ---------------------------------------------------------------------------------------------


class K8sInventorySource(_Base):
    """Pull source: each fetch lists every configured resource of one cluster."""

    async def fetch(self, target: str) -> list[RawRecord]:
        client = self._clients.get(target)
        if client is None:
            raise FetchError(
                f"unknown cluster {target!r}; configured: {', '.join(self._clients)}",
                source=self.name,
                target=target,
                retryable=False,
            )
        creds = await client.credentials()
        control_plane = await client.control_plane_ip(creds)
        records = []
        for resource in self.settings.resources:
            result = await client.list(resource, self.settings.page_size)
            cp = control_plane if resource == self._control_plane_resource() else None
            records.append(self._record(client, creds.server, resource, result.body, result.resource_version, cp))
        return records


# ---------------------------------------------------------------------------------------------
# Watch mode
# ---------------------------------------------------------------------------------------------


class K8sInventoryWatchSource(_Base):
    """Push source: list + watch per (cluster, resource); a full snapshot record after each change batch."""

    backoff_initial = 1.0
    backoff_max = 60.0
    rng: random.Random | None = None  # tests inject a seeded one

    async def run(self, emit: Emit) -> None:
        try:
            async with asyncio.TaskGroup() as tg:
                for client in self._clients.values():
                    for resource in self.settings.resources:
                        tg.create_task(
                            self._run_one(client, resource, emit), name=f"k8s-watch-{client.cfg.name}-{resource}"
                        )
        except BaseExceptionGroup as group:  # only emit() can fail: surface its own exception
            raise _first(group) from None

    async def _run_one(self, client: ClusterClient, resource: str, emit: Emit) -> None:
        state = WatchState()
        async with asyncio.TaskGroup() as tg:  # an emit failure stops the watch with it
            tg.create_task(self._emit_loop(client, resource, state, emit))
            tg.create_task(self._list_watch_loop(client, resource, state))

    async def _list_watch_loop(self, client: ClusterClient, resource: str, state: WatchState) -> None:
        backoff = Backoff(self.backoff_initial, self.backoff_max, rng=self.rng)
        while True:
            try:
                creds = await client.credentials()
                listed = await client.list(resource, self.settings.page_size)
                state.server = creds.server
                if resource == self._control_plane_resource():
                    state.control_plane = await client.control_plane_ip(creds)
                state.reset(listed)
                backoff.reset()
                while True:  # each watch request ends at watch_timeout; resume from the last rv
                    if not await client.watch(resource, state, self.settings.watch_timeout):
                        await asyncio.sleep(self.backoff_initial)  # ended at once: do not spin
            except Gone:
                log.info("cluster %s: watch of %s expired (410); listing again", client.cfg.name, resource)
            except FetchError as exc:
                delay = backoff.next_delay()
                log.warning("%s; retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)

    async def _emit_loop(self, client: ClusterClient, resource: str, state: WatchState, emit: Emit) -> None:
        while True:
            await state.changed.wait()
            await asyncio.sleep(self.settings.watch_debounce)  # gather the rest of the batch
            state.changed.clear()
            await emit(
                self._record(
                    client, state.server, resource, state.snapshot(), state.resource_version, state.control_plane
                )
            )


# ---------------------------------------------------------------------------------------------
# Registration
# ---------------------------------------------------------------------------------------------


def build(settings: K8sInventorySettings, **kwargs: Any) -> K8sInventorySource | K8sInventoryWatchSource:
    """Factory for :data:`SPEC`: a pull source, or a push source when ``watch = true``."""
    if settings.watch:
        return K8sInventoryWatchSource(settings, **kwargs)
    return K8sInventorySource(settings, **kwargs)


SPEC = SourceSpec(K8sInventorySettings, build, RECORD_KIND)

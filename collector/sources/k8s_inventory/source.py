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
``token_file`` + ``ca_file``; the token file is re-read for every list, so projected
ServiceAccount tokens rotate without a restart. Tokens never appear in logs or errors.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import re
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from collector.errors import ConfigError, FetchError
from collector.registry import SourceSpec
from collector.schema import RawRecord
from collector.sources.base import Emit, SourceSettings
from collector.sources.k8s_inventory.kubeconfig import ApiCredentials, from_settings, load_kubeconfig

log = logging.getLogger(__name__)

RECORD_KIND = "k8s"
Resource = Literal["services", "nodes", "pods"]
RESOURCE_PATHS: dict[str, str] = {
    "services": "/api/v1/services",
    "nodes": "/api/v1/nodes",
    "pods": "/api/v1/pods",
}
DEFAULT_RESOURCES: tuple[Resource, ...] = ("services", "nodes")
MAX_PAGES = 10_000  # 5 million objects at the default page size: a bound, not a plan
MAX_LIST_RESTARTS = 3
MAX_WATCH_LINE = 16 * 1024 * 1024
USER_AGENT = "hciwatch-k8s-inventory"


# ---------------------------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------------------------


class ClusterSettings(BaseModel):
    """One ``[[sources.clusters]]`` table: a cluster, its cluster network and how to reach it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, description="cluster name (the `cluster` column)")
    network: str = Field(default="", description="AksHciClusterNetwork object the cluster uses")
    kubeconfig: Path | None = Field(default=None, description="kubeconfig file")
    context: str | None = Field(default=None, description="kubeconfig context (default: current)")
    api_url: str | None = Field(default=None, description="API server URL instead of a kubeconfig")
    token_file: Path | None = Field(default=None, description="bearer token file (with api_url)")
    ca_file: Path | None = Field(default=None, description="cluster CA bundle (with api_url)")
    insecure_skip_tls_verify: bool = Field(default=False, description="do not verify the server")
    control_plane_endpoint: str | None = Field(
        default=None, description='API-server VIP to report; default: the host of the server URL; "" disables'
    )

    @field_validator("api_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("expected an http(s):// URL such as https://10.0.0.5:6443")
        return v.rstrip("/")

    @field_validator("control_plane_endpoint")
    @classmethod
    def _endpoint(cls, v: str | None) -> str | None:
        if v:
            ipaddress.ip_address(v.strip().strip("[]"))
        return v

    @model_validator(mode="after")
    def _one_way_in(self) -> ClusterSettings:
        if (self.kubeconfig is None) == (self.api_url is None):
            raise ValueError(f"cluster {self.name!r}: set exactly one of kubeconfig or api_url")
        if self.kubeconfig is not None and (self.token_file or self.ca_file or self.insecure_skip_tls_verify):
            raise ValueError(
                f"cluster {self.name!r}: token_file, ca_file and insecure_skip_tls_verify "
                "go with api_url; a kubeconfig carries its own"
            )
        if self.api_url is not None and self.context is not None:
            raise ValueError(f"cluster {self.name!r}: context goes with kubeconfig")
        return self


class K8sInventorySettings(SourceSettings):
    """``[[sources]] type = "k8s_inventory"``."""

    type: Literal["k8s_inventory"] = "k8s_inventory"
    clusters: list[ClusterSettings] = Field(min_length=1)
    resources: list[Resource] = Field(
        default_factory=lambda: list(DEFAULT_RESOURCES), min_length=1, description="what to list per cluster"
    )
    page_size: int = Field(default=500, ge=1, le=100_000, description="items per list page (limit)")
    watch: bool = Field(default=False, description="list + watch and push snapshots on change")
    watch_debounce: float = Field(default=2.0, ge=0, le=600, description="seconds to gather changes before a snapshot")
    watch_timeout: int = Field(
        default=300, ge=1, le=3600, description="server-side timeoutSeconds of one watch request"
    )
    lb_node_name_pattern: str | None = Field(
        default=None, description='regex that marks the HAProxy LB VM node by name; "" disables'
    )
    lb_node_label: str | None = Field(
        default=None, description='node label (key or key=value) that marks the LB VM; "" disables'
    )

    @field_validator("clusters")
    @classmethod
    def _unique_clusters(cls, v: list[ClusterSettings]) -> list[ClusterSettings]:
        names = [c.name for c in v]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"cluster names must be unique; repeated: {', '.join(dupes)}")
        return v

    @field_validator("resources")
    @classmethod
    def _unique_resources(cls, v: list[Resource]) -> list[Resource]:
        return list(dict.fromkeys(v))

    @field_validator("lb_node_name_pattern")
    @classmethod
    def _regex(cls, v: str | None) -> str | None:
        if v:
            try:
                re.compile(v)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
        return v


# ---------------------------------------------------------------------------------------------
# One API server
# ---------------------------------------------------------------------------------------------

SessionFactory = Callable[[ssl.SSLContext | None], aiohttp.ClientSession]


def default_session(ssl_ctx: ssl.SSLContext | None) -> aiohttp.ClientSession:
    """A session bound to one cluster's TLS settings (CA, client certificate)."""
    connector = aiohttp.TCPConnector(ssl=ssl_ctx if ssl_ctx is not None else True, limit=8)
    return aiohttp.ClientSession(connector=connector, headers={"User-Agent": USER_AGENT})


class _Gone(Exception):
    """HTTP 410: the resourceVersion or continue token is too old; list again."""


class _WatchFailed(Exception):
    """The watch stream reported an ERROR event other than 410."""


@dataclass(slots=True)
class ListResult:
    """A complete list of one resource: the body to record and what it was read at."""

    body: bytes
    resource_version: str
    items: list[Any]
    api_version: str
    kind: str
    pages: int


class ClusterClient:
    """Talks to one API server; reloads the kubeconfig when it changes."""

    def __init__(self, cfg: ClusterSettings, *, source: str, timeout: float, session_factory: SessionFactory) -> None:
        self.cfg = cfg
        self.source = source
        self.timeout = timeout
        self._session_factory = session_factory
        self._session: aiohttp.ClientSession | None = None
        self._creds: ApiCredentials | None = None
        self._stamp: tuple[int, int] | None = None

    def error(self, message: str, *, retryable: bool = True) -> FetchError:
        return FetchError(message, source=self.source, target=self.cfg.name, retryable=retryable)

    async def credentials(self) -> ApiCredentials:
        """Current credentials; a changed kubeconfig is re-read and a new session opened."""
        cfg = self.cfg
        if cfg.kubeconfig is None:
            if self._creds is None:
                assert cfg.api_url is not None
                self._creds = from_settings(
                    cfg.api_url,
                    token_file=cfg.token_file,
                    ca_file=cfg.ca_file,
                    insecure_skip_tls_verify=cfg.insecure_skip_tls_verify,
                )
            return self._creds
        try:
            st = await asyncio.to_thread(cfg.kubeconfig.stat)
        except OSError as exc:
            raise self.error(f"cannot read kubeconfig {cfg.kubeconfig}: {exc.strerror}", retryable=False) from None
        stamp = (st.st_mtime_ns, st.st_size)
        if self._creds is None or stamp != self._stamp:
            try:
                creds = await asyncio.to_thread(load_kubeconfig, cfg.kubeconfig, cfg.context)
            except ConfigError as exc:
                raise self.error(str(exc), retryable=False) from None
            if self._creds is not None:
                log.info("kubeconfig %s changed; reconnecting to cluster %s", cfg.kubeconfig, cfg.name)
            await self._close_session()
            self._creds, self._stamp = creds, stamp
        assert self._creds is not None
        return self._creds

    async def session(self, creds: ApiCredentials) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            try:
                ctx = await asyncio.to_thread(creds.ssl_context)
            except ConfigError as exc:
                raise self.error(str(exc), retryable=False) from None
            self._session = self._session_factory(ctx)
        return self._session

    async def headers(self, creds: ApiCredentials) -> dict[str, str]:
        try:
            token = await asyncio.to_thread(creds.bearer_token)
        except ConfigError as exc:
            raise self.error(str(exc), retryable=False) from None
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    async def get(self, creds: ApiCredentials, path: str, params: dict[str, str]) -> bytes:
        """GET one page; HTTP and transport failures become :class:`FetchError` (410 → _Gone)."""
        session = await self.session(creds)
        headers = await self.headers(creds)
        url = creds.server + path
        try:
            async with session.get(
                url,
                params=params,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                server_hostname=creds.tls_server_name,
            ) as resp:
                data = await resp.read()
                status = resp.status
        except TimeoutError:
            raise self.error(f"GET {url}: no answer within {self.timeout:g} s") from None
        except aiohttp.ClientConnectorCertificateError as exc:  # wrong CA: retrying will not help
            raise self.error(
                f"GET {url}: server certificate rejected ({exc.certificate_error}); "
                "check the CA (certificate-authority / ca_file)",
                retryable=False,
            ) from None
        except aiohttp.ClientError as exc:
            raise self.error(f"GET {url}: {type(exc).__name__}: {exc}") from None
        if status == 200:
            return data
        self.raise_status(status, url, data)
        raise AssertionError("unreachable")

    def raise_status(self, status: int, url: str, data: bytes) -> None:
        why = _status_message(data)
        if status == 410:
            raise _Gone(why)
        hint = ""
        if status == 401:
            hint = " (token or client certificate rejected: check token_file / kubeconfig user)"
        elif status == 403:
            hint = " (RBAC: grant list/watch on services, nodes, pods; see the README ClusterRole)"
        retryable = status == 429 or status >= 500
        raise self.error(f"GET {url}: HTTP {status}{hint}: {why}", retryable=retryable)

    async def list(self, resource: str, page_size: int) -> ListResult:
        """List one resource completely, following ``continue`` tokens; restart on 410."""
        creds = await self.credentials()
        path = RESOURCE_PATHS[resource]
        for attempt in range(MAX_LIST_RESTARTS + 1):
            try:
                return await self._list_once(creds, path, page_size)
            except _Gone as gone:
                if attempt == MAX_LIST_RESTARTS:
                    raise self.error(
                        f"list of {resource} kept expiring (HTTP 410 Gone {MAX_LIST_RESTARTS + 1} times): {gone}"
                    ) from None
                log.info("cluster %s: continue token for %s expired (410); listing again", self.cfg.name, resource)
        raise AssertionError("unreachable")

    async def _list_once(self, creds: ApiCredentials, path: str, page_size: int) -> ListResult:
        items: list[Any] = []
        first_raw = b""
        head: dict[str, Any] = {}
        token: str | None = None
        for page_no in range(MAX_PAGES):
            params = {"limit": str(page_size)}
            if token:
                params["continue"] = token
            try:
                raw = await self.get(creds, path, params)
            except _Gone:
                if token is None:  # 410 on a fresh list is not a stale token: report it
                    raise self.error(f"GET {creds.server}{path}: HTTP 410 Gone on a fresh list") from None
                raise
            page = _json_object(raw)
            if page is None or not isinstance(page.get("items", []), list | None):
                raise self.error(f"GET {creds.server}{path}: page {page_no + 1} is not a Kubernetes List")
            meta = _mapping(page.get("metadata"))
            if page_no == 0:
                first_raw, head = raw, page
            items.extend(page.get("items") or [])
            token = meta.get("continue") or None
            if not isinstance(token, str | None):
                raise self.error(f"GET {creds.server}{path}: metadata.continue is not a string")
            if token is None:
                rv = str(_mapping(head.get("metadata")).get("resourceVersion") or "")
                api_version = str(head.get("apiVersion") or "v1")
                kind = str(head.get("kind") or "List")
                if page_no == 0:
                    body = first_raw
                else:
                    body = _dump(
                        {"apiVersion": api_version, "kind": kind, "metadata": {"resourceVersion": rv}, "items": items}
                    )
                return ListResult(body, rv, items, api_version, kind, page_no + 1)
        raise self.error(f"GET {creds.server}{path}: more than {MAX_PAGES} pages; raise page_size")

    async def control_plane_ip(self, creds: ApiCredentials) -> str | None:
        """The API-server VIP: the configured one, or the server URL's host (resolved if a name)."""
        if self.cfg.control_plane_endpoint is not None:
            return self.cfg.control_plane_endpoint.strip().strip("[]") or None
        host = creds.host
        if not host or host == "localhost" or host.startswith("kubernetes.default"):
            return None  # a proxy or the in-cluster service name: not the VIP
        try:
            return str(ipaddress.ip_address(host))
        except ValueError:
            pass
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(loop.getaddrinfo(host, None, type=socket.SOCK_STREAM), timeout=self.timeout)
        except (OSError, TimeoutError) as exc:
            log.warning(
                "cluster %s: cannot resolve API server host %s (%s); control-plane VIP not reported",
                self.cfg.name,
                host,
                exc,
            )
            return None
        return str(infos[0][4][0]) if infos else None

    async def _close_session(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def close(self) -> None:
        await self._close_session()


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _json_object(raw: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _dump(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _status_message(data: bytes) -> str:
    """The ``message`` of a Kubernetes Status body, else a short excerpt of the body."""
    obj = _json_object(data)
    if obj is not None and isinstance(obj.get("message"), str):
        reason = obj.get("reason")
        text = f"{reason}: {obj['message']}" if isinstance(reason, str) and reason else obj["message"]
    else:
        text = data[:200].decode("utf-8", "replace").strip() or "(empty body)"
    return text[:300]


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
            c.name: ClusterClient(c, source=self.name, timeout=settings.timeout, session_factory=factory)
            for c in settings.clusters
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


def _object_key(obj: Any) -> str | None:
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str):
        return None
    ns = meta.get("namespace")
    return f"{ns}/{meta['name']}" if isinstance(ns, str) and ns else str(meta["name"])


class _WatchState:
    """The current objects of one (cluster, resource), kept up to date by watch events."""

    def __init__(self) -> None:
        self.objects: dict[str, Any] = {}
        self.resource_version = ""
        self.api_version = "v1"
        self.kind = "List"
        self.server = ""
        self.control_plane: str | None = None
        self.changed = asyncio.Event()

    def reset(self, listed: ListResult) -> None:
        self.objects = {}
        for obj in listed.items:
            key = _object_key(obj)
            if key is not None:
                self.objects[key] = obj
        self.resource_version = listed.resource_version
        self.api_version, self.kind = listed.api_version, listed.kind
        self.changed.set()

    def apply(self, event: Any) -> bool:
        """Apply one watch event; ``True`` when the object set changed. 410 raises _Gone."""
        if not isinstance(event, dict):
            return False
        etype, obj = event.get("type"), event.get("object")
        if etype == "ERROR":
            code = obj.get("code") if isinstance(obj, dict) else None
            if code == 410:
                raise _Gone(_status_message(_dump(obj)))
            raise _WatchFailed(_status_message(_dump(obj)))
        meta = obj.get("metadata") if isinstance(obj, dict) else None
        if isinstance(meta, dict) and isinstance(meta.get("resourceVersion"), str):
            self.resource_version = meta["resourceVersion"]
        if etype == "BOOKMARK":
            return False
        key = _object_key(obj)
        if key is None:
            return False
        if etype in ("ADDED", "MODIFIED"):
            self.objects[key] = obj
        elif etype == "DELETED":
            self.objects.pop(key, None)
        else:
            return False
        return True

    def snapshot(self) -> bytes:
        items = [self.objects[k] for k in sorted(self.objects)]
        return _dump(
            {
                "apiVersion": self.api_version,
                "kind": self.kind,
                "metadata": {"resourceVersion": self.resource_version},
                "items": items,
            }
        )


class K8sInventoryWatchSource(_Base):
    """Push source: list + watch per (cluster, resource); a full snapshot record after each change batch."""

    backoff_initial = 1.0
    backoff_max = 60.0

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
        state = _WatchState()
        async with asyncio.TaskGroup() as tg:  # an emit failure stops the watch with it
            tg.create_task(self._emit_loop(client, resource, state, emit))
            tg.create_task(self._list_watch_loop(client, resource, state))

    async def _list_watch_loop(self, client: ClusterClient, resource: str, state: _WatchState) -> None:
        backoff = self.backoff_initial
        while True:
            try:
                creds = await client.credentials()
                listed = await client.list(resource, self.settings.page_size)
                state.server = creds.server
                if resource == self._control_plane_resource():
                    state.control_plane = await client.control_plane_ip(creds)
                state.reset(listed)
                backoff = self.backoff_initial
                while True:  # each watch request ends at watch_timeout; resume from the last rv
                    if not await self._watch(client, resource, state):
                        await asyncio.sleep(self.backoff_initial)  # ended at once: do not spin
            except _Gone:
                log.info("cluster %s: watch of %s expired (410); listing again", client.cfg.name, resource)
            except FetchError as exc:
                log.warning("%s; retrying in %.0f s", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.backoff_max)

    async def _emit_loop(self, client: ClusterClient, resource: str, state: _WatchState, emit: Emit) -> None:
        while True:
            await state.changed.wait()
            await asyncio.sleep(self.settings.watch_debounce)  # gather the rest of the batch
            state.changed.clear()
            await emit(
                self._record(
                    client, state.server, resource, state.snapshot(), state.resource_version, state.control_plane
                )
            )

    async def _watch(self, client: ClusterClient, resource: str, state: _WatchState) -> bool:
        """One watch request until the server ends it; ``True`` if any event arrived."""
        creds = await client.credentials()
        session = await client.session(creds)
        headers = await client.headers(creds)
        url = creds.server + RESOURCE_PATHS[resource]
        params = {
            "watch": "1",
            "resourceVersion": state.resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(self.settings.watch_timeout),
        }
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self.settings.timeout, sock_read=self.settings.watch_timeout + 30
        )
        try:
            async with session.get(
                url, params=params, headers=headers, timeout=timeout, server_hostname=creds.tls_server_name
            ) as resp:
                if resp.status != 200:
                    client.raise_status(resp.status, url, await resp.read())
                pending = bytearray()
                seen = False
                async for chunk in resp.content.iter_any():
                    start = 0
                    while (newline := chunk.find(b"\n", start)) >= 0:
                        pending += chunk[start:newline]
                        start = newline + 1
                        if pending.strip():
                            seen = True
                            if state.apply(_json_object(bytes(pending))):
                                state.changed.set()
                        pending.clear()
                    pending += chunk[start:]
                    if len(pending) > MAX_WATCH_LINE:
                        raise client.error(f"watch {url}: event larger than {MAX_WATCH_LINE} bytes")
                return seen
        except _WatchFailed as exc:
            raise client.error(f"watch {url}: {exc}") from None
        except TimeoutError:
            raise client.error(f"watch {url}: no data within {self.settings.watch_timeout + 30} s") from None
        except aiohttp.ClientError as exc:
            raise client.error(f"watch {url}: {type(exc).__name__}: {exc}") from None


# ---------------------------------------------------------------------------------------------
# Registration
# ---------------------------------------------------------------------------------------------


def build(settings: K8sInventorySettings, **kwargs: Any) -> K8sInventorySource | K8sInventoryWatchSource:
    """Factory for :data:`SPEC`: a pull source, or a push source when ``watch = true``."""
    if settings.watch:
        return K8sInventoryWatchSource(settings, **kwargs)
    return K8sInventorySource(settings, **kwargs)


SPEC = SourceSpec(K8sInventorySettings, build, RECORD_KIND)

"""One Kubernetes API server: credentials, sessions, paginated lists and watch requests.

:class:`ClusterClient` is the I/O half of the inventory source: it reloads a changed kubeconfig,
lists a resource completely (following ``continue`` tokens, restarting on HTTP 410) and runs one
watch request at a time into a :class:`~.watch.WatchState`. It knows nothing about records or
scheduling; :mod:`.source` builds records from what it returns.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import ssl
from collections.abc import Callable
from typing import Any

import aiohttp

from collector.errors import ConfigError, FetchError
from collector.sources.k8s_inventory.kubeconfig import ApiCredentials, from_settings, load_kubeconfig
from collector.sources.k8s_inventory.settings import ClusterSettings
from collector.sources.k8s_inventory.watch import (
    Gone,
    ListResult,
    WatchFailed,
    WatchState,
    dump,
    json_object,
    mapping,
    status_message,
)

log = logging.getLogger("collector.sources.k8s_inventory.source")

RESOURCE_PATHS: dict[str, str] = {
    "services": "/api/v1/services",
    "nodes": "/api/v1/nodes",
    "pods": "/api/v1/pods",
    "ipaddresspools": "/apis/metallb.io/v1beta1/ipaddresspools",
    "l2advertisements": "/apis/metallb.io/v1beta1/l2advertisements",
}
MAX_PAGES = 10_000  # 5 million objects at the default page size: a bound, not a plan
MAX_LIST_RESTARTS = 3
MAX_WATCH_LINE = 16 * 1024 * 1024
USER_AGENT = "hciwatch-k8s-inventory"


SessionFactory = Callable[[ssl.SSLContext | None], aiohttp.ClientSession]


def default_session(ssl_ctx: ssl.SSLContext | None) -> aiohttp.ClientSession:
    """A session bound to one cluster's TLS settings (CA, client certificate)."""
    connector = aiohttp.TCPConnector(ssl=ssl_ctx if ssl_ctx is not None else True, limit=8)
    return aiohttp.ClientSession(connector=connector, headers={"User-Agent": USER_AGENT})


class ClusterClient:
    """Talks to one API server; reloads the kubeconfig when it changes."""

    def __init__(
        self, cfg: ClusterSettings, *, source: str, timeout: float, session_factory: SessionFactory, key: str = ""
    ) -> None:
        self.cfg = cfg
        self.source = source
        self.timeout = timeout
        self._session_factory = session_factory
        self._session: aiohttp.ClientSession | None = None
        self._creds: ApiCredentials | None = None
        self._stamp: tuple[int, int] | None = None
        if cfg.api_url is not None:  # explicit settings: check the token and TLS files now, at start-up
            token = cfg.bearer_token_file.resolve(key=f"{key}.bearer_token_file") if cfg.bearer_token_file else None
            self._creds = from_settings(cfg.api_url, token=token, tls=cfg.tls, where=f"{key}.tls")
            self._creds.ssl_context()

    def error(self, message: str, *, retryable: bool = True) -> FetchError:
        return FetchError(message, source=self.source, target=self.cfg.name, retryable=retryable)

    async def credentials(self) -> ApiCredentials:
        """Current credentials; a changed kubeconfig is re-read and a new session opened."""
        cfg = self.cfg
        if cfg.kubeconfig is None:
            assert self._creds is not None
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
        """GET one page; HTTP and transport failures become :class:`FetchError` (410 → Gone)."""
        session = await self.session(creds)
        headers = await self.headers(creds)
        url = creds.server + path
        try:
            async with session.get(
                url,
                params=params,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            ) as resp:
                data = await resp.read()
                status = resp.status
        except TimeoutError:
            raise self.error(f"GET {url}: no answer within {self.timeout:g} s") from None
        except aiohttp.ClientConnectorCertificateError as exc:  # wrong CA: retrying will not help
            raise self.error(
                f"GET {url}: server certificate rejected ({exc.certificate_error}); "
                "check the CA (certificate-authority / tls.ca_file)",
                retryable=False,
            ) from None
        except aiohttp.ClientError as exc:
            raise self.error(f"GET {url}: {type(exc).__name__}: {exc}") from None
        if status == 200:
            return data
        self.raise_status(status, url, data)
        raise AssertionError("unreachable")

    def raise_status(self, status: int, url: str, data: bytes) -> None:
        why = status_message(data)
        if status == 410:
            raise Gone(why)
        hint = ""
        if status == 401:
            hint = " (token or client certificate rejected: check bearer_token_file / kubeconfig user)"
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
            except Gone as gone:
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
            except Gone:
                if token is None:  # 410 on a fresh list is not a stale token: report it
                    raise self.error(f"GET {creds.server}{path}: HTTP 410 Gone on a fresh list") from None
                raise
            page = json_object(raw)
            if page is None or not isinstance(page.get("items", []), list | None):
                raise self.error(f"GET {creds.server}{path}: page {page_no + 1} is not a Kubernetes List")
            meta = mapping(page.get("metadata"))
            if page_no == 0:
                first_raw, head = raw, page
            items.extend(page.get("items") or [])
            token = meta.get("continue") or None
            if not isinstance(token, str | None):
                raise self.error(f"GET {creds.server}{path}: metadata.continue is not a string")
            if token is None:
                rv = str(mapping(head.get("metadata")).get("resourceVersion") or "")
                api_version = str(head.get("apiVersion") or "v1")
                kind = str(head.get("kind") or "List")
                if page_no == 0:
                    body = first_raw
                else:
                    body = dump(
                        {"apiVersion": api_version, "kind": kind, "metadata": {"resourceVersion": rv}, "items": items}
                    )
                return ListResult(body, rv, items, api_version, kind, page_no + 1)
        raise self.error(f"GET {creds.server}{path}: more than {MAX_PAGES} pages; raise page_size")

    async def watch(self, resource: str, state: WatchState, watch_timeout: int) -> bool:
        """One watch request from ``state.resource_version`` until the server ends it.

        Events are applied to ``state`` (``state.changed`` is set on a change); ``True`` if any
        event arrived. 410 Gone raises :class:`Gone`; other failures :class:`FetchError`.
        """
        client = self
        creds = await self.credentials()
        session = await self.session(creds)
        headers = await self.headers(creds)
        url = creds.server + RESOURCE_PATHS[resource]
        params = {
            "watch": "1",
            "resourceVersion": state.resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(watch_timeout),
        }
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.timeout, sock_read=watch_timeout + 30)
        try:
            async with session.get(url, params=params, headers=headers, timeout=timeout) as resp:
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
                            if state.apply(json_object(bytes(pending))):
                                state.changed.set()
                        pending.clear()
                    pending += chunk[start:]
                    if len(pending) > MAX_WATCH_LINE:
                        raise client.error(f"watch {url}: event larger than {MAX_WATCH_LINE} bytes")
                return seen
        except WatchFailed as exc:
            raise client.error(f"watch {url}: {exc}") from None
        except TimeoutError:
            raise client.error(f"watch {url}: no data within {watch_timeout + 30} s") from None
        except aiohttp.ClientError as exc:
            raise client.error(f"watch {url}: {type(exc).__name__}: {exc}") from None

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

"""A network domain's lease on Azure Blob: exactly one instance evaluates a domain at a time.

One blob per domain (``<container>/<prefix>/_leases/<domain>``) in the fleet's lake; an instance
evaluates a domain only while it holds that blob's lease (15-60 s, renewed well before expiry).
Why a blob lease: the lake is already there (no extra service), Azure Blob leases are exclusive
server-side (Azurite implements them too, so the tests use a real one), and a lease that is not
renewed expires by itself, so a dead instance's domains free up without anyone's help.

Fencing: every acquisition increments an ``epoch`` in the blob's metadata, written under the new
lease (a write the old holder can no longer make). The epoch goes with what the owner produces;
an owner that fails to renew (:meth:`BlobLease.renew` returns False) has lost the domain and must
stop evaluating it before doing anything else.

Credentials are the lake's (:class:`collector.lake.LakeSettings`): connection string, account
key, SAS, or ``DefaultAzureCredential``.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from collector.errors import ConfigError
from collector.lake import LakeSettings, parse_connection_string

log = logging.getLogger(__name__)

LEASES_DIR = "_leases"
MEMBERS_DIR = "_members"


# A lease call that hangs in the SDK's default retries (up to minutes) would hold the ownership
# loop past the lease's own expiry; fail fast instead and let the loop retry (a fault state).
_FAST_FAIL: dict[str, Any] = {"retry_total": 1, "connection_timeout": 3, "read_timeout": 5}


def _container_client(url: str, s: LakeSettings) -> tuple[Any, str]:
    from azure.storage.blob import BlobServiceClient

    http_log = logging.getLogger("azure.core.pipeline.policies.http_logging_policy")
    if http_log.level == logging.NOTSET:
        http_log.setLevel(logging.WARNING)  # it logs every request at INFO otherwise (a renewal every few s)

    parts = urlsplit(url)
    if parts.scheme not in ("az", "abfs", "abfss"):
        raise ConfigError(f"domain leases need an Azure lake (az://, abfs[s]://), not {parts.scheme}://")
    container, account = parts.netloc, s.account_name
    if "@" in container:
        container, host = container.split("@", 1)
        account = account or host.split(".", 1)[0]
    prefix = parts.path.strip("/")
    if s.connection_string is not None:
        cs = s.connection_string.read(key="store.lake.connection_string")
        if s.endpoint:
            fields = parse_connection_string(cs)
            cs = f"AccountName={fields.get('AccountName', account)};AccountKey={fields.get('AccountKey', '')};"
            cs += f"BlobEndpoint={s.endpoint.rstrip('/')}/{fields.get('AccountName', account)}"
        service = BlobServiceClient.from_connection_string(cs, **_FAST_FAIL)
    else:
        if not account:
            raise ConfigError("store.lake: no storage account for the domain leases (set account_name)")
        base = s.endpoint.rstrip("/") + f"/{account}" if s.endpoint else f"https://{account}.blob.core.windows.net"
        credential: Any
        if s.account_key is not None:
            credential = {"account_name": account, "account_key": s.account_key.read(key="store.lake.account_key")}
        elif s.sas_token is not None:
            credential = s.sas_token.read(key="store.lake.sas_token").lstrip("?")
        else:
            from azure.identity import DefaultAzureCredential

            credential = DefaultAzureCredential()
        service = BlobServiceClient(base, credential=credential, **_FAST_FAIL)
    return service.get_container_client(container), prefix


class BlobLease:
    """This instance's claim on one domain (not thread-safe: one owner task per domain)."""

    def __init__(self, container: Any, blob: str, *, holder: str, duration_s: int = 30) -> None:
        if not 15 <= duration_s <= 60:
            raise ValueError("an Azure blob lease lasts 15-60 s")
        self._blob = container.get_blob_client(blob)
        self.holder = holder
        self.duration_s = duration_s
        self._lease: Any = None
        self.epoch = 0

    @classmethod
    def for_domain(
        cls, url: str, settings: LakeSettings, domain: str, *, holder: str, duration_s: int = 30
    ) -> BlobLease:
        container, prefix = _container_client(url, settings)
        return cls.in_container(container, prefix, domain, holder=holder, duration_s=duration_s)

    @classmethod
    def in_container(cls, container: Any, prefix: str, domain: str, *, holder: str, duration_s: int = 30) -> BlobLease:
        """The lease of ``domain`` in an open container (one client shared by every domain)."""
        name = "/".join(p for p in (prefix, LEASES_DIR, domain) if p)
        return cls(container, name, holder=holder, duration_s=duration_s)

    @property
    def held(self) -> bool:
        return self._lease is not None

    def try_acquire(self) -> bool:
        """Take the lease if nobody holds it; True on success (then :attr:`epoch` is the new epoch,
        unless this holder's own earlier lease could simply be renewed)."""
        from azure.core.exceptions import HttpResponseError, ResourceExistsError

        if self._lease is not None and self.renew():
            # still ours: the owner gave up on it while storage was unreachable, and nobody took it
            # since (a renewal succeeds only then), so the epoch stays
            return True
        with contextlib.suppress(ResourceExistsError):  # the domain's blob, created once
            self._blob.upload_blob(b"", overwrite=False)
        try:
            lease = self._blob.acquire_lease(lease_duration=self.duration_s, lease_id=str(uuid.uuid4()))
        except HttpResponseError as exc:
            if exc.status_code == 409:  # LeaseAlreadyPresent: another instance owns the domain
                return False
            raise
        props = self._blob.get_blob_properties(lease=lease)
        epoch = int((props.metadata or {}).get("epoch", "0")) + 1
        self._blob.set_blob_metadata({"epoch": str(epoch), "holder": self.holder}, lease=lease)
        self._lease, self.epoch = lease, epoch
        log.info("lease %s taken by %s (epoch %d)", self._blob.blob_name, self.holder, epoch)
        return True

    def renew(self) -> bool:
        """Keep the lease; False when it was lost (expired and taken, or broken): stop evaluating."""
        from azure.core.exceptions import HttpResponseError

        if self._lease is None:
            return False
        try:
            self._lease.renew()
        except HttpResponseError as exc:
            if exc.status_code in (409, 412):
                log.warning("lease %s lost by %s (epoch %d)", self._blob.blob_name, self.holder, self.epoch)
                self._lease = None
                return False
            raise
        return True

    def save_state(self, data: bytes) -> bool:
        """Write the domain's state into the leased blob itself: fenced by the lease.

        Azure refuses a write to a leased blob without the current lease id (412), so an owner
        that lost the domain (expired, broken, taken with a higher epoch) cannot overwrite what
        the new owner saved. False when refused: the caller has lost the domain.
        """
        from azure.core.exceptions import HttpResponseError

        if self._lease is None:
            return False
        try:
            self._blob.upload_blob(
                data, overwrite=True, lease=self._lease, metadata={"epoch": str(self.epoch), "holder": self.holder}
            )
        except HttpResponseError as exc:
            if exc.status_code in (409, 412):
                log.warning("state of %s refused (epoch %d): lease lost", self._blob.blob_name, self.epoch)
                self._lease = None
                return False
            raise
        return True

    def load_state(self) -> bytes | None:
        """The last state an owner saved with :meth:`save_state` (None before the first save)."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            data = bytes(self._blob.download_blob().readall())
        except ResourceNotFoundError:
            return None
        return data or None

    def release(self) -> None:
        """Give the domain up now (a clean shutdown: the next owner need not wait for expiry)."""
        from azure.core.exceptions import HttpResponseError

        if self._lease is None:
            return
        try:
            self._lease.release()
        except HttpResponseError as exc:
            if exc.status_code not in (409, 412):
                raise
        self._lease = None

    def break_now(self) -> None:
        """Break whoever holds the lease (an operator's forced takeover; tests use it for a dead holder)."""
        from azure.storage.blob import BlobLeaseClient

        BlobLeaseClient(self._blob).break_lease(lease_break_period=0)


class BlobMembership:
    """Which instances are alive: each one touches ``<prefix>/_members/<instance>`` every renew.

    Liveness is judged on the storage server's clock (each blob's ``last_modified`` against the
    ``last_modified`` of this instance's own, fresh heartbeat), so instances' clocks may drift.
    """

    def __init__(self, container: Any, prefix: str, *, me: str, ttl: timedelta) -> None:
        self._container = container
        self._dir = "/".join(p for p in (prefix, MEMBERS_DIR) if p) + "/"
        self.me = me
        self.ttl = ttl

    def heartbeat_and_list(self) -> list[str]:
        """Touch this instance's heartbeat; return the live instances (this one included)."""
        mine = self._container.get_blob_client(self._dir + self.me)
        now = mine.upload_blob(self.me.encode(), overwrite=True)["last_modified"]
        live = {self.me}
        for b in self._container.list_blobs(name_starts_with=self._dir):
            if now - b.last_modified <= self.ttl:
                live.add(b.name[len(self._dir) :])
        return sorted(live)

    def leave(self) -> None:
        """Remove the heartbeat at a clean stop (peers need not wait for the TTL)."""
        from azure.core.exceptions import ResourceNotFoundError

        with contextlib.suppress(ResourceNotFoundError):
            self._container.delete_blob(self._dir + self.me)


def azure_container(url: str, settings: LakeSettings) -> tuple[Any, str]:
    """The lake's container client and path prefix (for leases and membership)."""
    return _container_client(url, settings)

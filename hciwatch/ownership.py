"""Network-domain ownership inside the service: who evaluates a domain, and the handover.

Every ``renew_interval`` the ownership loop (supervised like the service's other loops):

1. heartbeats into the lake and lists the live instances (or takes the static ``peers``);
2. computes the domains this instance should own by rendezvous hashing over the live instances
   (:func:`collector.domains.owned_by`; every instance computes the same answer);
3. renews the leases it holds. A renewal that fails means the domain is **lost**: the service
   stops evaluating it before anything else (no detector pass, no alert for it). A domain another
   live instance should own is released (a hand-back after that instance returns);
4. tries to acquire the leases of the domains it should own and does not hold. A domain **gained**
   makes the service rebuild detector state from the lake (one bootstrap read) and load the
   lifecycle state the last owner saved into the lease blob, so a takeover neither re-fires nor
   drops an incident.

The lease backend failing (storage down, credentials expired) is a fault *state*: logged once,
shown on ``/readyz`` and ``/metrics``, retried with backoff. A held domain whose lease could not be
renewed for longer than ``lease_duration - renew_interval`` is dropped as lost: by then another
instance may already own it, and two evaluating owners is what the lease exists to prevent.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol

from collector.domains import FleetSettings, owned_by
from collector.faults import FaultState
from collector.lake import LakeSettings
from collector.lease import BlobLease, BlobMembership, azure_container

log = logging.getLogger(__name__)


class Lease(Protocol):
    """One domain's fenced lease (:class:`collector.lease.BlobLease`; a Kubernetes Lease would fit too)."""

    epoch: int

    @property
    def held(self) -> bool: ...

    def try_acquire(self) -> bool: ...

    def renew(self) -> bool: ...

    def release(self) -> None: ...

    def save_state(self, data: bytes) -> bool: ...

    def load_state(self) -> bytes | None: ...


class Membership(Protocol):
    """The live instances (this one included), refreshed on each call."""

    def heartbeat_and_list(self) -> list[str]: ...

    def leave(self) -> None: ...


class StaticMembership:
    """``[fleet] peers``: a fixed instance list (no heartbeats; a dead peer's domains move only by lease expiry)."""

    def __init__(self, peers: Sequence[str]) -> None:
        self.peers = sorted(set(peers))

    def heartbeat_and_list(self) -> list[str]:
        return self.peers

    def leave(self) -> None:
        return None


@dataclass
class Change:
    """What one ownership tick changed."""

    gained: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)


class DomainOwnership:
    """Which of ``domains`` this instance evaluates now.

    One tick at a time (the ownership loop's thread); :meth:`owns`, :meth:`save_state` and
    :meth:`drop` may be called from the pipeline's worker thread meanwhile, so the held set is
    guarded by a lock (never held across storage I/O), and the lease calls themselves by a second
    one (a release from the worker thread must not interleave with a renewal of the same lease).
    """

    def __init__(
        self,
        me: str,
        domains: Sequence[str],
        leases: dict[str, Lease],
        membership: Membership,
        *,
        lease_duration: float,
        renew_interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.me = me
        self.domains = sorted(domains)
        self.leases = leases
        self.membership = membership
        self.lease_duration = lease_duration
        self.renew_interval = renew_interval
        self.fault = FaultState(
            "fleet lease",
            max_delay=renew_interval,
            then="retried every renewal; a domain not renewed in time stops being evaluated before its lease expires",
        )
        self.members: list[str] = [me]
        self._renewed: dict[str, float] = {}  # domain → when its lease was last renewed (clock())
        self._clock = clock
        self._mu = threading.Lock()
        self._io = threading.Lock()  # one lease call at a time

    @classmethod
    def from_settings(
        cls, fleet: FleetSettings, domains: Sequence[str], lake_url: str, lake: LakeSettings
    ) -> DomainOwnership:
        """The azure_blob backend: leases and heartbeats in the lake's container."""
        me = fleet.instance_id()
        container, prefix = azure_container(lake_url, lake)
        leases: dict[str, Lease] = {
            d: BlobLease.in_container(container, prefix, d, holder=me, duration_s=fleet.lease_duration) for d in domains
        }
        membership: Membership = (
            StaticMembership(fleet.peers)
            if fleet.peers
            else BlobMembership(container, prefix, me=me, ttl=timedelta(seconds=fleet.member_ttl))
        )
        return cls(
            me,
            domains,
            leases,
            membership,
            lease_duration=fleet.lease_duration,
            renew_interval=fleet.renew_interval,
        )

    def owns(self, domain: str) -> bool:
        """Whether this instance may evaluate ``domain`` now.

        Judged on the time of the last successful renewal as well, so an ownership loop that is
        stuck (a hung storage call) cannot leave a stale owner evaluating past its lease.
        """
        with self._mu:
            at = self._renewed.get(domain)
        return at is not None and self._clock() - at < self.lease_duration - self.renew_interval

    def epoch(self, domain: str) -> int:
        """The fencing epoch of a held domain (0 when not held)."""
        return self.leases[domain].epoch if self.owns(domain) else 0

    def tick(self) -> Change:
        """One round (blocking I/O: run it in a thread). Raises on backend errors after expiring stale holds."""
        change = Change()
        try:
            with self._io:
                self._round(change)
        except Exception:
            change.lost += self._expire_unrenewed()
            raise
        return change

    def _round(self, change: Change) -> None:
        self.members = self.membership.heartbeat_and_list()
        live = self.members if self.me in self.members else sorted({*self.members, self.me})
        desired = set(owned_by(self.me, self.domains, live))
        with self._mu:
            held = sorted(self._renewed)
        for d in held:
            lease = self.leases[d]
            if not lease.renew():
                self._lost(d, change, "lease lost")
            elif d not in desired:
                lease.release()
                self._lost(d, change, "handed back to its preferred owner")
            else:
                self._mark(d)
        with self._mu:
            wanted = sorted(desired - self._renewed.keys())
        for d in wanted:
            if self.leases[d].try_acquire():
                self._mark(d)
                change.gained.append(d)
                log.info("domain %s gained by %s (epoch %d)", d, self.me, self.leases[d].epoch)

    def _mark(self, d: str) -> None:
        with self._mu:
            self._renewed[d] = self._clock()

    def _lost(self, d: str, change: Change, why: str) -> None:
        with self._mu:
            self._renewed.pop(d, None)
        change.lost.append(d)
        log.warning("domain %s no longer evaluated by %s: %s", d, self.me, why)

    def _expire_unrenewed(self) -> list[str]:
        """Held domains not renewed for too long while the backend fails: presumed taken."""
        limit = self.lease_duration - self.renew_interval
        now = self._clock()
        out = []
        with self._mu:
            stale = [(d, at) for d, at in sorted(self._renewed.items()) if now - at > limit]
            for d, _ in stale:
                del self._renewed[d]
        for d, at in stale:
            out.append(d)
            log.warning("domain %s dropped by %s: lease not renewed for %.0f s", d, self.me, now - at)
        return out

    def save_state(self, domain: str, data: bytes) -> bool:
        """Save ``domain``'s lifecycle state, fenced: False (and the domain is lost) when refused."""
        if not self.owns(domain):
            return False
        with self._io:
            saved = self.leases[domain].save_state(data)
        if saved:
            return True
        with self._mu:
            self._renewed.pop(domain, None)
        return False

    def drop(self, domain: str) -> None:
        """Give ``domain`` up now (its output was refused mid-pass): released, so the next tick
        takes it again as a gain and the state is rebuilt from what the lease blob holds."""
        with self._mu:
            held = self._renewed.pop(domain, None) is not None
        if held:
            try:
                with self._io:
                    self.leases[domain].release()
            except Exception as exc:  # it frees at expiry instead
                log.warning("domain %s: release failed (%s); it frees at lease expiry", domain, exc)

    def load_state(self, domain: str) -> bytes | None:
        return self.leases[domain].load_state()

    def release_all(self) -> None:
        """A clean stop: free every held domain and leave the membership (peers take over at once)."""
        with self._mu:
            held = sorted(self._renewed)
            self._renewed.clear()
        for d in held:
            try:
                with self._io:
                    self.leases[d].release()
            except Exception as exc:  # the lease expires by itself; a stop must not hang on it
                log.warning("domain %s: release failed (%s); it frees at lease expiry", d, exc)
        try:
            self.membership.leave()
        except Exception as exc:
            log.warning("fleet: leaving the membership failed (%s); peers see the heartbeat expire", exc)

    def describe(self) -> dict[str, Any]:
        """For /readyz: this instance, the live members and what it owns (with epochs)."""
        with self._mu:
            held = sorted(self._renewed)
        return {
            "instance": self.me,
            "members": list(self.members),
            "owned": {d: self.leases[d].epoch for d in held},
            "standby": [d for d in self.domains if d not in held],
        }

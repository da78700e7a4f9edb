"""Network domains and which instance owns each: the unit a fleet of instances splits work by.

A network domain is the set of sites whose clusters share any L2 cluster network (usually one
site). The duplicate-IP and pool detectors need every claimant of a network in one process, so
work is split by domain, never by scrape target or MQTT message: splitting those (Prometheus
``hashmod``, a target allocator, a plain ``$share`` subscription) scatters one network's evidence
over instances and silently breaks detection.

Ownership is rendezvous (highest-random-weight) hashing of the domain id over the live instances:
every instance computes the same owner from the same instance list, with no coordinator, and when
an instance joins or leaves only the domains it gains or held move. Exactly-one-at-a-time is not
the hash's job: the owner must also hold the domain's lease (:mod:`collector.lease`) before it
evaluates, so two instances with different views of the instance list cannot both evaluate.

The service side (acquire, renew, hand over, rebuild state on gain) is
:mod:`hciwatch.ownership`; README "Scaling out" → "Network domains" has the configuration.
"""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Iterable, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

_ID = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"


class DomainSettings(BaseModel):
    """``[[domains]]``: one network domain (default: one per site, named after it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, max_length=64, pattern=_ID, description="the domain id (hashing key, lease name)")
    sites: list[str] = Field(min_length=1, description="the sites whose cluster networks share L2")


class FleetSettings(BaseModel):
    """``[fleet]``: this instance among others sharing a lake; off unless ``enabled``.

    With the fleet on, an instance evaluates (and collects for) a domain only while it holds the
    domain's lease; another instance configured for the same site stands by and takes over when
    the owner stops renewing. ``lease`` names the backend: ``azure_blob`` (the lake's container,
    so the lake must be ``az://``/``abfs[s]://``); the interface leaves room for a Kubernetes
    ``Lease`` (coordination.k8s.io), not built yet.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(default=False, description="take part in domain ownership")
    instance: str = Field(
        default="",
        max_length=64,
        pattern=r"^$|^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="this instance's id (default: the host name); unique in the fleet",
    )
    lease: Literal["azure_blob"] = Field(default="azure_blob", description="lease backend")
    lease_duration: int = Field(default=30, ge=15, le=60, description="seconds a lease lasts unrenewed")
    renew_interval: float = Field(default=10.0, gt=0, description="seconds between renewals and heartbeats")
    member_ttl: float = Field(default=30.0, gt=0, description="a member without a heartbeat this long is gone")
    peers: list[str] = Field(
        default_factory=list,
        description="static instance list (default: the live members heartbeating in the lake)",
    )

    @model_validator(mode="after")
    def _timing(self) -> FleetSettings:
        if self.renew_interval * 2 > self.lease_duration:
            raise ValueError(
                f"renew_interval ({self.renew_interval:g} s) must be at most half of lease_duration "
                f"({self.lease_duration} s), so one missed renewal does not lose the domain"
            )
        if self.member_ttl < 2 * self.renew_interval:
            raise ValueError(f"member_ttl ({self.member_ttl:g} s) must be at least 2 × renew_interval")
        if self.peers and self.instance and self.instance not in self.peers:
            raise ValueError(f"peers must include this instance ({self.instance!r})")
        return self

    def instance_id(self) -> str:
        """The configured id, else the host name (a pod's name in Kubernetes)."""
        return self.instance or socket.gethostname()


def domain_of(site: str, domains: Sequence[DomainSettings]) -> DomainSettings:
    """The domain ``site`` belongs to (its own default domain when none lists it)."""
    for d in domains:
        if site in d.sites:
            return d
    return DomainSettings(id=site, sites=[site])


def check_domains(domains: Sequence[DomainSettings]) -> list[tuple[int, str, str]]:
    """Problems across ``[[domains]]`` as (index, field, why): ids and sites must be unique."""
    out: list[tuple[int, str, str]] = []
    ids: dict[str, int] = {}
    sites: dict[str, str] = {}
    for i, d in enumerate(domains):
        if d.id in ids:
            out.append((i, "id", f"duplicate domain id {d.id!r} (also domains[{ids[d.id]}])"))
        ids.setdefault(d.id, i)
        for s in d.sites:
            if s in sites and sites[s] != d.id:
                out.append((i, "sites", f"site {s!r} is already in domain {sites[s]!r} (a site is in one domain)"))
            sites.setdefault(s, d.id)
    return out


def default_domains(sites: Iterable[str]) -> list[DomainSettings]:
    """One domain per site, named after it (sites that share no cluster network)."""
    return [DomainSettings(id=s, sites=[s]) for s in sorted(set(sites))]


def _weight(instance: str, domain: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{instance}\0{domain}".encode()).digest()[:8], "big")


def owner(domain: str, instances: Sequence[str]) -> str:
    """The instance that should own ``domain`` among ``instances`` (rendezvous hashing)."""
    if not instances:
        raise ValueError("no instances to own the domain")
    return max(instances, key=lambda i: (_weight(i, domain), i))


def owned_by(me: str, domains: Iterable[str], instances: Sequence[str]) -> list[str]:
    """The domains ``me`` should own (it must be among ``instances``)."""
    if me not in instances:
        raise ValueError(f"{me!r} is not among the instances")
    return sorted(d for d in domains if owner(d, instances) == me)

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

Status: this module and the lease are built and tested; the service does not yet run several
domains or hand them over (issue 15, part 4; see README "Scaling out").
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from pydantic import BaseModel, ConfigDict, Field

_ID = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"


class DomainSettings(BaseModel):
    """``[[domains]]``: one network domain (default: one per site, named after it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, max_length=64, pattern=_ID, description="the domain id (hashing key, lease name)")
    sites: list[str] = Field(min_length=1, description="the sites whose cluster networks share L2")


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

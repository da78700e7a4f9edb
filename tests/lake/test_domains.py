"""Network-domain ownership: rendezvous hashing, and the domain lease on a real Azurite."""

from __future__ import annotations

from collections import Counter

import pytest

from collector.domains import DomainSettings, default_domains, owned_by, owner
from collector.lake import LakeSettings
from collector.lease import BlobLease
from tests.fixtures.object_stores import ObjectStore

DOMAINS = [f"site-{i:03d}" for i in range(200)]


def test_every_instance_computes_the_same_owner_and_the_load_spreads() -> None:
    instances = ["hw-0", "hw-1", "hw-2", "hw-3"]
    owners = {d: owner(d, instances) for d in DOMAINS}
    assert owners == {d: owner(d, list(reversed(instances))) for d in DOMAINS}  # order does not matter
    load = Counter(owners.values())
    assert set(load) == set(instances) and min(load.values()) >= 30  # 50 each on average
    assert sorted(d for i in instances for d in owned_by(i, DOMAINS, instances)) == sorted(DOMAINS)


def test_an_instance_leaving_moves_only_its_own_domains() -> None:
    before = {d: owner(d, ["hw-0", "hw-1", "hw-2", "hw-3"]) for d in DOMAINS}
    after = {d: owner(d, ["hw-0", "hw-1", "hw-3"]) for d in DOMAINS}
    moved = {d for d in DOMAINS if before[d] != after[d]}
    assert moved == {d for d in DOMAINS if before[d] == "hw-2"}


def test_domain_settings() -> None:
    assert default_domains(["b", "a", "a"]) == [
        DomainSettings(id="a", sites=["a"]),
        DomainSettings(id="b", sites=["b"]),
    ]
    with pytest.raises(ValueError):
        DomainSettings(id="a/b", sites=["x"])
    with pytest.raises(ValueError):
        DomainSettings(id="a", sites=[])


@pytest.mark.integration
def test_one_holder_at_a_time_and_a_fenced_takeover(azurite: ObjectStore) -> None:
    url = azurite.url(azurite.new_bucket())
    settings = LakeSettings.model_validate({"url": url, **azurite.lake_settings()})
    a = BlobLease.for_domain(url, settings, "site-007", holder="hw-a", duration_s=15)
    b = BlobLease.for_domain(url, settings, "site-007", holder="hw-b", duration_s=15)
    assert a.try_acquire() and a.epoch == 1
    assert not b.try_acquire(), "the domain is held"
    assert a.renew()
    a.release()  # clean hand-over
    assert b.try_acquire() and b.epoch == 2
    # b dies without releasing; an operator (or expiry) frees the domain: a takes it, b is fenced
    b.break_now()
    assert a.try_acquire() and a.epoch == 3
    assert not b.renew(), "the old holder learns it lost the domain and must stop evaluating"
    assert a.renew()
    other = BlobLease.for_domain(url, settings, "site-008", holder="hw-b", duration_s=15)
    assert other.try_acquire(), "leases are per domain"
    with pytest.raises(ValueError):
        BlobLease.for_domain(url, settings, "x", holder="h", duration_s=5)

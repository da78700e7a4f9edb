"""The ownership loop's rounds against a real Azurite: hand-back, fencing, the backend down.

Each :class:`DomainOwnership` stands for one instance (heartbeats and leases in the same
container, as in the service). Time for ``owns()`` comes from a clock the test moves, so "the
lease was not renewed for too long" needs no real wait; the storage errors are real (Azurite
stopped).
"""

from __future__ import annotations

import pytest

from collector.domains import FleetSettings, owner
from collector.lake import LakeSettings
from hciwatch.ownership import DomainOwnership
from tests.fixtures.object_stores import ObjectStore, StoppableAzurite

pytestmark = pytest.mark.integration


def _instance(store: ObjectStore, url: str, me: str, domains: list[str], clock: list[float]) -> DomainOwnership:
    fleet = FleetSettings(enabled=True, instance=me, lease_duration=15, renew_interval=1.0, member_ttl=30.0)
    settings = LakeSettings.model_validate({"url": url, **store.lake_settings()})
    own = DomainOwnership.from_settings(fleet, domains, url, settings)
    own._clock = lambda: clock[0]
    return own


def test_domains_spread_and_hand_back_to_their_preferred_owner(azurite: ObjectStore) -> None:
    url = azurite.url(azurite.new_bucket())
    domains = [f"site-{i}" for i in range(8)]
    clock = [0.0]
    a = _instance(azurite, url, "hw-a", domains, clock)
    b = _instance(azurite, url, "hw-b", domains, clock)

    assert a.tick().gained == domains, "alone, an instance owns every domain"
    b_first = b.tick()  # b joins: it should own some, but a still holds their leases
    assert b_first.gained == [] and sorted(b.members) == ["hw-a", "hw-b"]
    b_share = sorted(d for d in domains if owner(d, ["hw-a", "hw-b"]) == "hw-b")
    assert 0 < len(b_share) < len(domains)
    handed = a.tick()  # a sees b and hands its share back (released at once)
    assert handed.lost == b_share and not any(a.owns(d) for d in b_share)
    taken = b.tick()
    assert taken.gained == b_share and all(b.leases[d].epoch == 2 for d in b_share)
    # a fenced write: the old owner cannot overwrite the new owner's state
    d = b_share[0]
    assert b.save_state(d, b'{"by": "hw-b"}')
    assert not a.save_state(d, b'{"by": "hw-a"}')
    assert a.load_state(d) == b'{"by": "hw-b"}'
    a.release_all()  # a clean stop: b takes everything at its next round
    assert b.tick().gained == sorted(set(domains) - set(b_share))


def test_an_unreachable_backend_is_a_fault_and_the_domain_is_dropped_before_expiry(
    azurite_stoppable: StoppableAzurite,
) -> None:
    store = azurite_stoppable
    url = store.url(store.new_bucket())
    clock = [100.0]
    a = _instance(store, url, "hw-a", ["east"], clock)
    assert a.tick().gained == ["east"] and a.owns("east")
    store.stop()
    clock[0] += 5
    with pytest.raises(Exception):  # noqa: B017 (whatever the SDK raises for a refused connection)
        a.tick()
    assert a.owns("east"), "a short outage does not stop evaluation (the lease is still ours)"
    clock[0] += 10  # 15 s without a renewal: past lease_duration - renew_interval
    assert not a.owns("east"), "evaluation stops before the lease could have been taken"
    with pytest.raises(Exception):  # noqa: B017
        a.tick()
    assert a.describe()["owned"] == {}
    store.start()
    back = a.tick()  # storage is back: the domain is taken again (a gain: the state is reloaded)
    assert back.gained == ["east"] and a.owns("east")

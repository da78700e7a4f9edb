"""Lifecycle state carried over in the domain's lease blob: a domain's new owner neither re-fires nor drops.

Two alert managers stand for two instances; the first owns domain ``east`` (holds its lease on a
real Azurite), fires an incident and saves its lifecycle state into the leased blob (a write
only the lease holder can make, as the service does), then dies without
releasing. The second takes the lease (after breaking it, as expiry would), loads the state from
that blob and continues with the same findings: no second firing, and the resolution carries the
same fingerprint and idempotency scheme. Together with the first instance's changes the stream
equals what one instance alone produces.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from analytics.findings import Finding
from analytics.lifecycle import AlertManager
from analytics.settings import AnalyticsSettings
from collector.lake import LakeSettings
from collector.lease import BlobLease
from collector.schema import Alert, AlertKind, Severity
from tests.fixtures.object_stores import ObjectStore

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
M = timedelta(minutes=1)
SETTINGS = AnalyticsSettings.model_validate({"lifecycle": {"duplicate_ip": {"for": "2m", "hold": "5m"}}})


def _findings(minute: int) -> list[Finding]:
    """The duplicate IP is there from minute 0 to 9, gone afterwards."""
    if minute >= 10:
        return []
    return [Finding(AlertKind.DUPLICATE_IP, {"network": "akshci-vnet", "ip": "10.40.0.203"}, Severity.SEV1, "dup")]


def _single(minutes: int) -> list[Alert]:
    am = AlertManager(SETTINGS, site="east")
    return [a for m in range(minutes) for a in am.update(_findings(m), T0 + m * M)]


@pytest.mark.integration
def test_takeover_through_the_lake_neither_refires_nor_drops(azurite: ObjectStore) -> None:
    url = azurite.url(azurite.new_bucket())
    settings = LakeSettings.model_validate({"url": url, **azurite.lake_settings()})
    lease_a = BlobLease.for_domain(url, settings, "east", holder="hw-a", duration_s=15)
    lease_b = BlobLease.for_domain(url, settings, "east", holder="hw-b", duration_s=15)

    stream: list[Alert] = []
    assert lease_a.try_acquire()
    a = AlertManager(SETTINGS, site="east")
    for m in range(6):  # fires at minute 2
        stream += a.update(_findings(m), T0 + m * M)
        assert lease_a.save_state(a.to_bytes())
    # hw-a dies holding the lease; the domain is freed (expiry, here broken at once) and hw-b takes it
    assert not lease_b.try_acquire()
    lease_b.break_now()
    assert lease_b.try_acquire() and lease_b.epoch == 2
    state = lease_b.load_state()
    assert state is not None
    b = AlertManager(SETTINGS, site="east")
    b.load_bytes(state)
    for m in range(6, 20):
        stream += b.update(_findings(m), T0 + m * M)
    assert not lease_a.renew(), "the old owner is fenced off"

    assert [(x.status.value, x.fingerprint, x.changed_at) for x in stream] == [
        (x.status.value, x.fingerprint, x.changed_at) for x in _single(20)
    ]
    assert [x.status.value for x in stream] == ["firing", "resolved"]
    assert len({x.idempotency_key for x in stream}) == 2

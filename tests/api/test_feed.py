"""The in-process alert feed: state, ring, filters, replay and slow-subscriber handling."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import pytest

from collector.schema import AlertKind, AlertStatus, Severity
from exporters.base import Exporter
from exporters.feed import AlertFeed, AlertFilter
from tests.api.helpers import T0, make_alert


async def test_is_an_exporter_and_healthy() -> None:
    feed = AlertFeed()
    assert isinstance(feed, Exporter)
    await feed.start()
    assert await feed.healthcheck()
    result = await feed.export([make_alert(1)])
    assert result.ok
    await feed.shutdown()
    await feed.shutdown()  # idempotent


async def test_firing_state_follows_changes() -> None:
    feed = AlertFeed(first_seq=1)
    await feed.export([make_alert(1), make_alert(2, severity=Severity.SEV0), make_alert(3)])
    await feed.export([make_alert(1, status=AlertStatus.RESOLVED)])
    firing = feed.firing()
    assert [e.alert.summary for e in firing] == ["alert 2", "alert 3"]  # Sev0 first
    assert feed.firing_count == 2
    assert [e.seq for e in feed.recent(limit=10)] == [4, 3, 2, 1]  # newest first
    assert feed.last_seq == 4


async def test_ring_is_bounded() -> None:
    feed = AlertFeed(ring_size=5, first_seq=1)
    feed.publish(make_alert(i) for i in range(12))
    recent = feed.recent(limit=100)
    assert [e.seq for e in recent] == [12, 11, 10, 9, 8]
    assert feed.changes_total == 12


async def test_filters() -> None:
    feed = AlertFeed(first_seq=1)
    feed.publish(
        [
            make_alert(1, host="a", network="n1"),
            make_alert(2, host="b", network="n2", kind=AlertKind.VIP_POOL_EXHAUSTION),
            make_alert(3, host="a", network="n2", status=AlertStatus.RESOLVED),
        ]
    )

    def summaries(f: AlertFilter) -> list[str]:
        return sorted(e.alert.summary for e in feed.recent(f, 10))

    assert summaries(AlertFilter(hosts=frozenset({"a"}))) == ["alert 1", "alert 3"]
    assert summaries(AlertFilter(networks=frozenset({"n2"}))) == ["alert 2", "alert 3"]
    assert summaries(AlertFilter(kinds=frozenset({"vip_pool_exhaustion"}))) == ["alert 2"]
    assert summaries(AlertFilter(statuses=frozenset({"resolved"}))) == ["alert 3"]
    # alert n changes at T0 + n minutes (resolved ones at their end, 5 minutes later)
    assert summaries(AlertFilter(since=T0 + timedelta(minutes=2))) == ["alert 2", "alert 3"]
    assert [e.alert.summary for e in feed.firing(AlertFilter(hosts=frozenset({"b"})))] == ["alert 2"]
    assert feed.recent(limit=0) == []


async def test_subscriber_gets_live_changes_in_order() -> None:
    feed = AlertFeed(first_seq=1)
    async with feed.subscribe(filters=AlertFilter(hosts=frozenset({"a"}))) as sub:
        assert feed.subscriber_count == 1
        feed.publish([make_alert(1, host="a"), make_alert(2, host="b"), make_alert(3, host="a")])
        got = [await asyncio.wait_for(sub.next(), 5) for _ in range(2)]
        assert [(e.seq, e.alert.summary) for e in got if e] == [(1, "alert 1"), (3, "alert 3")]
    assert feed.subscriber_count == 0


async def test_replay_after_last_event_id_then_live() -> None:
    feed = AlertFeed(first_seq=100)
    feed.publish(make_alert(i) for i in range(5))  # seq 100..104
    with feed.subscribe(after=102) as sub:
        assert sub.gap is None
        feed.publish([make_alert(9)])  # seq 105, arrives after the replay
        seqs = [(await asyncio.wait_for(sub.next(), 5)) for _ in range(3)]
        assert [e.seq for e in seqs if e] == [103, 104, 105]


async def test_replay_reports_gap_when_ring_does_not_reach_back() -> None:
    feed = AlertFeed(ring_size=3, first_seq=1)
    feed.publish(make_alert(i) for i in range(6))  # ring holds 4, 5, 6
    with feed.subscribe(after=1) as sub:
        assert sub.gap == (1, 4)
        seqs = [(await sub.next()) for _ in range(3)]
        assert [e.seq for e in seqs if e] == [4, 5, 6]
    with feed.subscribe(after=3) as sub:  # 4 is the oldest kept: nothing missed
        assert sub.gap is None


async def test_default_ids_survive_restart() -> None:
    """A new feed's ids start above an old feed's, so an old Last-Event-ID reads as a gap."""
    old = AlertFeed()
    old.publish(make_alert(i) for i in range(3))
    await asyncio.sleep(0.001)
    new = AlertFeed()
    new.publish([make_alert(7)])
    assert new.last_seq > old.last_seq
    with new.subscribe(after=old.last_seq) as sub:
        assert sub.gap is not None
        event = await sub.next()
        assert event is not None and event.alert.summary == "alert 7"


async def test_slow_subscriber_is_dropped_without_blocking_export(caplog: pytest.LogCaptureFixture) -> None:
    feed = AlertFeed(queue_size=3, first_seq=1)
    slow = feed.subscribe(peer="203.0.113.9:5555")
    fast = feed.subscribe()
    with caplog.at_level(logging.WARNING, logger="exporters.feed"):
        for i in range(10):
            result = await feed.export([make_alert(i)])  # never waits for readers
            assert result.ok
            event = await asyncio.wait_for(fast.next(), 5)
            assert event is not None and event.seq == i + 1
    assert slow.dropped and not fast.dropped
    assert feed.dropped_total == 1 and feed.subscriber_count == 1
    assert await slow.next() is None  # its stream ends; the client reconnects with Last-Event-ID
    assert [r for r in caplog.records if "dropping subscriber #1 (203.0.113.9:5555)" in r.getMessage()]
    fast.close()


async def test_shutdown_ends_subscriptions() -> None:
    feed = AlertFeed(first_seq=1)
    sub = feed.subscribe()

    async def drain() -> list[int]:
        return [e.seq async for e in sub]

    feed.publish([make_alert(1)])
    first = await sub.next()
    assert first is not None and first.seq == 1
    task = asyncio.create_task(drain())  # now waiting for a change that never comes
    await asyncio.sleep(0)
    await feed.shutdown()
    assert await asyncio.wait_for(task, 5) == []
    assert feed.subscriber_count == 0
    assert feed.firing_count == 1  # state is kept for reads after shutdown


def test_bad_sizes_rejected() -> None:
    with pytest.raises(ValueError, match="ring_size"):
        AlertFeed(ring_size=0)
    with pytest.raises(ValueError, match="queue_size"):
        AlertFeed(queue_size=0)

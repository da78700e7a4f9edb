"""The MQTT source against a real, private Mosquitto 2.0 (tests/fixtures/mosquitto.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from pydantic import ValidationError

from collector.catalog import DEFAULT_CATALOG
from collector.errors import ConfigError
from collector.registry import get_parser
from collector.schema import RawRecord
from collector.settings import DeprecatedKeyWarning
from collector.sources.base import PushSource
from collector.sources.mqtt.source import SPEC, MqttSettings, MqttSource
from tests.fixtures.mosquitto import MosquittoBroker

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


def settings(broker: MosquittoBroker, **kw: Any) -> MqttSettings:
    base: dict[str, Any] = {
        "type": "mqtt",
        "server": broker.url,
        "username": broker.username,
        "password_file": broker.password_file,
        "client_id": "hciwatch-test",
        "backoff_initial": 0.05,
        "backoff_max": 0.3,
        "timeout": 5,
    }
    base.update(kw)
    return MqttSettings(**base)


async def wait_until(pred: Callable[[], bool], timeout: float = 15.0, what: str = "condition") -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not pred():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def running(
    source: MqttSource, sink: list[RawRecord], on_record: Callable[[RawRecord], Any] | None = None
) -> AsyncIterator[asyncio.Task[None]]:
    async def emit(record: RawRecord) -> None:
        if on_record is not None:
            on_record(record)
        sink.append(record)

    task = asyncio.create_task(source.run(emit))
    try:
        yield task
    finally:
        await source.close()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


@contextlib.asynccontextmanager
async def publisher(broker: MosquittoBroker) -> AsyncIterator[aiomqtt.Client]:
    async with aiomqtt.Client(
        broker.host,
        broker.port,
        username=broker.username,
        password=broker.password,
        identifier=None,
        clean_session=True,
    ) as client:
        yield client


# ---------------------------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------------------------


def test_settings_validation_messages(tmp_path: Path) -> None:
    ok = MqttSettings(type="mqtt", client_id="c")
    assert ok.subscriptions() == ["telegraf/#"] and ok.qos == 1 and not ok.clean_session
    grouped = MqttSettings(type="mqtt", client_id="c", shared_group="g")
    assert grouped.subscriptions() == ["$share/g/telegraf/#"]
    go = MqttSettings(type="mqtt", client_id="c", topic_template='t/{{ .Tag "host" }}/{{ .Name }}')
    assert go.topic_template == "t/{host}/{measurement}"
    bad: list[tuple[dict[str, Any], str]] = [
        ({}, "client_id is required"),
        ({"client_id": "c", "server": "http://x"}, "scheme"),
        ({"client_id": "c", "server": "mqtt://u:p@x"}, "credentials"),
        ({"client_id": "c", "tls": {"ca_file": str(tmp_path)}}, "mqtts"),
        ({"client_id": "c", "server": "mqtts://x", "tls": {"cert_file": "/c"}}, "key_file"),
        ({"client_id": "c", "backoff_initial": 5, "backoff_max": 1}, "backoff_max"),
        ({"client_id": "c", "topics": ["a/#/b"]}, "'#'"),
        ({"client_id": "c", "topics": ["a+/b"]}, "'+'"),
        ({"client_id": "c", "shared_group": "a/b"}, "shared_group"),
        ({"client_id": "c", "qos": 2}, "qos"),
        ({"client_id": "c", "password_file": str(tmp_path)}, "username"),
        ({"client_id": "c", "topic_template": "telegraf/{measurement}"}, "{host}"),
        ({"client_id": "c", "bogus": 1}, "bogus"),
    ]
    for kw, text in bad:
        with pytest.raises(ValidationError, match=re.escape(text)):
            MqttSettings(type="mqtt", **kw)


def test_spec_and_protocol() -> None:
    source = SPEC.factory(MqttSettings(type="mqtt", client_id="c"))
    assert isinstance(source, PushSource) and isinstance(source, MqttSource)
    assert SPEC.record_kind == "mqtt" and source.targets() == ["mqtt://127.0.0.1:1883"]


def test_old_key_spellings_still_work_with_a_warning(tmp_path: Path) -> None:
    with pytest.warns(DeprecatedKeyWarning) as caught:
        s = MqttSettings(  # type: ignore[call-arg]  # the deprecated spellings are what this test feeds
            type="mqtt",
            client_id="c",
            server="mqtts://b:8883",
            ca_file=str(tmp_path / "ca.pem"),
            tls_insecure=True,
            reconnect_min=0.1,
            reconnect_max=2,
        )
    assert s.tls is not None and s.tls.ca_file == tmp_path / "ca.pem" and s.tls.insecure_skip_verify
    assert (s.backoff_initial, s.backoff_max) == (0.1, 2)
    text = "\n".join(str(w.message) for w in caught)
    for old, new in [
        ("ca_file", "tls.ca_file"),
        ("tls_insecure", "tls.insecure_skip_verify"),
        ("reconnect_min", "backoff_initial"),
    ]:
        assert f"'{old}' is deprecated, use '{new}'" in text


def test_secrets_are_checked_at_start_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = {"type": "mqtt", "client_id": "c", "username": "u"}
    with pytest.raises(ConfigError, match=r"sources\.mqtt\.password_file: cannot read secret file"):
        MqttSource(MqttSettings(**base, password_file=str(tmp_path / "missing")))
    with pytest.raises(ConfigError, match="environment variable MQTT_PW_UNSET is not set"):
        MqttSource(MqttSettings(**base, password_file="env:MQTT_PW_UNSET"))
    with pytest.raises(ConfigError, match=r"sources\.mqtt\.tls\.ca_file"):
        MqttSource(MqttSettings(**base, server="mqtts://b", tls={"ca_file": str(tmp_path / "none.pem")}))
    monkeypatch.setenv("MQTT_PW", "pa55")
    source = MqttSource(MqttSettings(**base, password_file="env:MQTT_PW"))
    assert "pa55" not in repr(source._password) and "pa55" not in repr(source.settings)


# ---------------------------------------------------------------------------------------------
# Real broker
# ---------------------------------------------------------------------------------------------

JSON_SINGLE = json.dumps(
    {
        "fields": {"RDMA_Inbound_Bytes_persec": 1.5e9, "RDMA_Completion_Queue_Errors": 0},
        "name": "win_perf_counters",
        "tags": {"host": "HCI-NODE1", "instance": "NIC1", "objectname": "RDMA Activity", "source": "HCI-NODE1"},
        "timestamp": 1717000000,
    }
)
JSON_BATCH = json.dumps(
    {
        "metrics": [
            {
                "fields": {"Rcv_Pause_Frames_Raw": 10},
                "name": "win_perf_counters",
                "tags": {
                    "host": "HCI-NODE1",
                    "instance": "NIC1 Prio 3",
                    "objectname": "Mellanox WinOF-2 Port QoS",
                    "source": "HCI-NODE1",
                },
                "timestamp": 1717000000,
            },
            {
                "fields": {"Credit_Stalls_persec": 4},
                "name": "win_perf_counters",
                "tags": {
                    "host": "HCI-NODE1",
                    "instance": "\\\\fs\\share",
                    "objectname": "SMB Client Shares",
                    "source": "HCI-NODE1",
                },
                "timestamp": 1717000000,
            },
        ]
    }
)
LINE_PROTOCOL = (
    "rdma_activity,host=HCI-NODE2,instance=NIC\\ 2,objectname=RDMA\\ Activity,source=HCI-NODE2 "
    "RDMA_Outbound_Bytes_persec_Raw=123456789u,RDMA_Active_Connections=3i 1717000000000000000\n"
    "net,host=HCI-NODE2,instance=NIC\\ 2,objectname=Network\\ Interface,source=HCI-NODE2 "
    "Packets_Received_Discarded=5 1717000000000000000\n"
)


async def test_telegraf_formats_arrive_as_canonical_samples(mosquitto_broker: MosquittoBroker) -> None:
    b = mosquitto_broker
    source = MqttSource(settings(b, clean_session=True, client_id=""))
    got: list[RawRecord] = []
    async with running(source, got):
        await wait_until(lambda: source.subscribed, what="subscription")
        async with publisher(b) as pub:
            await pub.publish("telegraf/HCI-NODE1/win_perf_counters", JSON_SINGLE, qos=1)
            await pub.publish("telegraf/HCI-NODE1/win_perf_counters", JSON_BATCH, qos=1)
            await pub.publish("telegraf/HCI-NODE2/rdma_activity", LINE_PROTOCOL, qos=1)
        await wait_until(lambda: len(got) == 3, what="3 records")
    assert {r.kind for r in got} == {"mqtt"} and all(r.topic for r in got)
    parse = get_parser("mqtt")
    metrics = {(s["host"], s["metric"]) for r in got for s in parse(r, DEFAULT_CATALOG).samples.to_pylist()}
    assert metrics == {
        ("HCI-NODE1", "rdma.inbound_bytes_per_sec"),
        ("HCI-NODE1", "rdma.cq_errors_total"),
        ("HCI-NODE1", "pfc.rx_pause_frames_total"),
        ("HCI-NODE1", "smb.client.credit_stalls_per_sec"),
        ("HCI-NODE2", "rdma.outbound_bytes_total"),
        ("HCI-NODE2", "rdma.active_connections"),
        ("HCI-NODE2", "net.packets_received_discarded_total"),
    }
    assert source.stats.received == source.stats.emitted == 3


async def test_wrong_password_is_reported_and_retried_until_fixed(
    mosquitto_broker: MosquittoBroker, tmp_path: Path
) -> None:
    b = mosquitto_broker
    pw = tmp_path / "pw"
    pw.write_text("definitely-wrong\n")
    source = MqttSource(settings(b, password_file=pw))
    got: list[RawRecord] = []
    async with running(source, got) as task:
        await wait_until(lambda: source.stats.failures >= 3, what="three failed attempts")
        assert not task.done()  # keeps retrying, no crash
        assert source.last_error is not None
        text = str(source.last_error)
        assert "refused" in text and "'hciwatch'" in text and "password_file" in text
        assert "definitely-wrong" not in text and b.password not in text
        assert source.last_error.target == b.url
        pw.write_text(b.password + "\n")  # fixing the secret is picked up on the next attempt
        await wait_until(lambda: source.subscribed, what="recovery")
        assert source.last_error is None


async def test_tls_listener_with_ca(mosquitto_broker: MosquittoBroker) -> None:
    b = mosquitto_broker
    source = MqttSource(settings(b, server=b.tls_url, tls={"ca_file": b.ca_file}, clean_session=True, client_id=""))
    got: list[RawRecord] = []
    async with running(source, got):
        await wait_until(lambda: source.subscribed, what="TLS subscription")
        async with publisher(b) as pub:
            await pub.publish("telegraf/HCI-NODE1/win_perf_counters", JSON_SINGLE, qos=1)
        await wait_until(lambda: len(got) == 1, what="message over TLS")
    assert got[0].target == b.tls_url


async def test_tls_server_name_is_the_name_checked(mosquitto_broker: MosquittoBroker) -> None:
    b = mosquitto_broker
    tls = {"ca_file": b.ca_file, "server_name": "localhost"}  # dialled as 127.0.0.1, checked as localhost
    source = MqttSource(settings(b, server=b.tls_url, tls=tls, clean_session=True, client_id=""))
    async with running(source, []):
        await wait_until(lambda: source.subscribed, what="TLS subscription with server_name")
    wrong = MqttSource(
        settings(
            b, server=b.tls_url, tls={**tls, "server_name": "not-the-broker.example"}, clean_session=True, client_id=""
        )
    )
    async with running(wrong, []):
        await wait_until(lambda: wrong.stats.failures >= 1, what="name mismatch")
        assert wrong.last_error is not None and not wrong.subscribed


async def test_tls_without_the_ca_fails_clearly(mosquitto_broker: MosquittoBroker) -> None:
    b = mosquitto_broker
    source = MqttSource(settings(b, server=b.tls_url, clean_session=True, client_id=""))
    async with running(source, []) as task:
        await wait_until(lambda: source.stats.failures >= 1, what="TLS failure")
        assert not task.done()
        assert source.last_error is not None and "certificate" in str(source.last_error).lower()


async def test_shared_subscription_splits_messages(mosquitto_broker: MosquittoBroker) -> None:
    b = mosquitto_broker
    a_src = MqttSource(settings(b, client_id="collector-a", clean_session=True, shared_group="hciwatch"))
    b_src = MqttSource(settings(b, client_id="collector-b", clean_session=True, shared_group="hciwatch"))
    a_got: list[RawRecord] = []
    b_got: list[RawRecord] = []
    n = 60
    async with running(a_src, a_got), running(b_src, b_got):
        await wait_until(lambda: a_src.subscribed and b_src.subscribed, what="both subscribed")
        async with publisher(b) as pub:
            for i in range(n):
                await pub.publish(f"telegraf/HCI-NODE{i % 4}/m", f"m v={i} 1717000000000000000", qos=1)
        await wait_until(lambda: len(a_got) + len(b_got) >= n, what="all messages")
    bodies_a = {r.body for r in a_got}
    bodies_b = {r.body for r in b_got}
    assert a_got and b_got, "both group members must get a share"
    assert not bodies_a & bodies_b, "a shared subscription delivers each message to one member"
    assert len(bodies_a | bodies_b) == n


async def test_broker_restart_loses_no_qos1_message_of_a_persistent_session(mosquitto_broker: MosquittoBroker) -> None:
    b = mosquitto_broker
    n = 300
    source = MqttSource(settings(b, client_id="hciwatch-persistent", clean_session=False))
    got: list[RawRecord] = []

    async def emit_slowly(record: RawRecord) -> None:
        await asyncio.sleep(0.002)  # keep messages in flight when the broker goes down
        got.append(record)

    task = asyncio.create_task(source.run(emit_slowly))
    try:
        await wait_until(lambda: source.subscribed, what="persistent subscription")
        async with publisher(b) as pub:
            for i in range(n // 2):
                await pub.publish("telegraf/HCI-NODE1/m", f"m seq={i}i 1717000000000000000", qos=1)
        assert len({r.body for r in got}) < n // 2, "the restart must hit messages still in flight"
        await asyncio.to_thread(b.restart)
        async with publisher(b) as pub:
            for i in range(n // 2, n):
                await pub.publish("telegraf/HCI-NODE1/m", f"m seq={i}i 1717000000000000000", qos=1)
        await wait_until(lambda: len({r.body for r in got}) >= n, timeout=30, what=f"all {n} messages")
    finally:
        await source.close()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    seqs = {int(r.body.split(b"seq=")[1].split(b"i")[0]) for r in got}
    assert seqs == set(range(n))
    assert source.stats.connects >= 2


async def test_crash_before_ack_redelivers(mosquitto_broker: MosquittoBroker) -> None:
    b = mosquitto_broker
    first = MqttSource(settings(b, client_id="hciwatch-crash"))
    seen: list[bytes] = []

    async def crash_on_third(record: RawRecord) -> None:
        if len(seen) == 2:
            raise RuntimeError("simulated crash inside emit")
        seen.append(record.body)

    task = asyncio.create_task(first.run(crash_on_third))
    await wait_until(lambda: first.subscribed, what="first consumer")
    async with publisher(b) as pub:
        for i in range(5):
            await pub.publish("telegraf/HCI-NODE1/m", f"m seq={i}i", qos=1)
    with pytest.raises(RuntimeError, match="simulated crash"):
        await asyncio.wait_for(task, 10)
    assert seen == [b"m seq=0i", b"m seq=1i"]

    second = MqttSource(settings(b, client_id="hciwatch-crash"))
    got: list[RawRecord] = []
    async with running(second, got):
        await wait_until(lambda: len({r.body for r in got}) >= 3, what="redelivery")
    assert {r.body for r in got} == {b"m seq=2i", b"m seq=3i", b"m seq=4i"}


async def test_the_next_domain_owner_resumes_the_site_session(mosquitto_broker: MosquittoBroker) -> None:
    """Per-site topics and one persistent session per domain: what the broker queued while the
    domain had no owner goes to the next owner (another instance, same resolved client id), and
    another site's messages go to neither."""
    b = mosquitto_broker
    tmpl = settings(b, client_id="hciwatch-{domain}", topics=["telegraf/{site}/#"], clean_session=False)
    resolved = tmpl.for_domain("east", "east-dom")
    assert resolved.topics == ["telegraf/east/#"] and resolved.client_id == "hciwatch-east-dom"

    first, second = MqttSource(resolved), MqttSource(resolved)  # two instances, one domain
    got_first: list[RawRecord] = []
    async with publisher(b) as pub:
        async with running(first, got_first):
            await wait_until(lambda: first.subscribed, what="the first owner's subscription")
            await pub.publish("telegraf/east/hci-node-01/m", "m seq=0i 1717000000000000000", qos=1)
            await pub.publish("telegraf/west/hci-node-01/m", "m seq=100i 1717000000000000000", qos=1)
            await wait_until(lambda: len(got_first) >= 1, what="the first message")
        # the first owner lost the domain (its source stopped): the broker queues for the session
        for i in range(1, 6):
            await pub.publish("telegraf/east/hci-node-01/m", f"m seq={i}i 1717000000000000000", qos=1)
        got_second: list[RawRecord] = []
        async with running(second, got_second):
            await wait_until(lambda: len(got_second) >= 5, what="the queued messages at the next owner")
            await asyncio.sleep(0.3)  # nothing else arrives (no west message, nothing twice)
    seqs = [int(r.body.split(b"seq=")[1].split(b"i")[0]) for r in got_first + got_second]
    assert seqs == [0, 1, 2, 3, 4, 5]

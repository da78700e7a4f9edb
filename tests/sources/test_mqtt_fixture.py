"""The private broker fixture itself: auth enforced, TLS verifies with the CA, restart keeps ports."""

from __future__ import annotations

import ssl

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from tests.fixtures.mosquitto import MosquittoBroker

pytestmark = pytest.mark.integration


def _connect(broker: MosquittoBroker, password: str, *, tls: bool = False) -> ReasonCode | int:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="fixture-check")
    client.username_pw_set(broker.username, password)
    port = broker.port
    if tls:
        client.tls_set(ca_certs=str(broker.ca_file), tls_version=ssl.PROTOCOL_TLS_CLIENT)
        port = broker.tls_port
    result: list[ReasonCode] = []
    client.on_connect = lambda c, u, f, rc, p: result.append(rc)
    client.connect(broker.host, port, keepalive=10)
    for _ in range(100):
        client.loop(timeout=0.05)
        if result:
            break
    client.disconnect()
    return result[0]


def test_password_required_and_tls_and_restart(mosquitto_broker: MosquittoBroker) -> None:
    b = mosquitto_broker
    assert _connect(b, b.password) == 0
    assert _connect(b, "wrong") != 0
    assert _connect(b, b.password, tls=True) == 0
    b.restart()
    assert b.running
    assert _connect(b, b.password) == 0

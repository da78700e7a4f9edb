"""The sinks take the shared ``tls`` table and ``env:NAME``/file secrets, checked at start-up.

OTLP runs against a real gRPC receiver with TLS (the test CA's certificate for 127.0.0.1 and
localhost); MQTT TLS runs against the TLS Mosquitto fixture in tests/exporters/test_mqtt.py and
the webhook against a real HTTPS peer in tests/sources/test_shared_tls_keys.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from collector.errors import ConfigError
from collector.settings import DeprecatedKeyWarning, SecretRef, TlsClientSettings
from exporters.mqtt import MqttExporter
from exporters.otlp import OtlpExporter
from exporters.registry import build_exporter, parse_sink_settings
from exporters.settings import MqttSettings, OtlpSettings
from tests.exporters.script import scripted_alerts
from tests.fixtures.mosquitto import MosquittoCerts
from tests.fixtures.otlp_receiver import OtlpReceiver


async def _export_once(receiver: OtlpReceiver, tls: dict[str, Any] | None) -> bool:
    settings = OtlpSettings(endpoint=receiver.grpc_tls_endpoint, insecure=False, tls=tls, timeout=2, metrics=False)
    exporter = OtlpExporter(settings)
    try:
        await exporter.start()
        result = await exporter.export(scripted_alerts()[:1])
    finally:
        await exporter.shutdown()
    return result.ok


@pytest.mark.integration
async def test_otlp_grpc_over_tls_with_the_shared_keys(
    otlp_tls_receiver: OtlpReceiver, mosquitto_certs: MosquittoCerts
) -> None:
    ca = str(mosquitto_certs.ca_file)
    assert await _export_once(otlp_tls_receiver, {"ca_file": ca})
    assert await _export_once(otlp_tls_receiver, {"ca_file": ca, "server_name": "localhost"})
    assert otlp_tls_receiver.wait_for_logs(2)
    assert not await _export_once(otlp_tls_receiver, None)  # the test CA is not in the system store
    assert not await _export_once(otlp_tls_receiver, {"ca_file": ca, "server_name": "not-the-collector.example"})


def test_otlp_tls_files_are_checked_at_start_up_and_old_keys_warn(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^exporters\.otlp\.tls\.ca_file: cannot load CA certificates"):
        OtlpExporter(OtlpSettings(tls={"ca_file": str(tmp_path / "missing.pem")}))
    with pytest.warns(
        DeprecatedKeyWarning, match="exporters \\(otlp\\): key 'ca_file' is deprecated, use 'tls.ca_file'"
    ):
        s = parse_sink_settings({"type": "otlp", "ca_file": str(tmp_path / "ca.pem")})
    assert isinstance(s, OtlpSettings) and s.tls == TlsClientSettings(ca_file=tmp_path / "ca.pem")


def test_mqtt_sink_secrets_and_tls_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = {"type": "mqtt", "host": "127.0.0.1", "username": "u"}
    with pytest.raises(ConfigError, match=r"exporters\.mqtt\.password_file: cannot read secret file"):
        build_exporter(parse_sink_settings({**base, "password_file": str(tmp_path / "missing")}))
    with pytest.raises(ConfigError, match=r"exporters\.mqtt\.tls\.ca_file"):
        build_exporter(parse_sink_settings({**base, "tls": {"ca_file": str(tmp_path / "none.pem")}}))
    monkeypatch.setenv("MQTT_SINK_PW", "pa55word")
    sink = build_exporter(parse_sink_settings({**base, "password_file": "env:MQTT_SINK_PW", "tls": True}))
    assert isinstance(sink, MqttExporter) and sink.settings.tls == TlsClientSettings()
    assert sink.settings.password_file == SecretRef(env="MQTT_SINK_PW")
    assert "pa55word" not in repr(sink.settings) and "pa55word" not in repr(vars(sink))
    with pytest.warns(DeprecatedKeyWarning) as caught:
        old = MqttSettings.model_validate({**base, "tls": True, "ca_file": "/ca.pem", "tls_insecure": True})
    assert old.tls == TlsClientSettings(ca_file=Path("/ca.pem"), insecure_skip_verify=True)
    assert {str(w.message).split(": ", 1)[1].split(";")[0] for w in caught} >= {
        "key 'ca_file' is deprecated, use 'tls.ca_file'",
    }
    assert MqttSettings.model_validate({**base, "tls": False, "ca_file": "/ca.pem"}).tls is None

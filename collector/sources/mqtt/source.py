"""MQTT push source: subscribe to what Telegraf publishes and emit each message as a record.

Delivery contract (at least once, for QoS 1 subscriptions on a persistent session):

* The paho client underneath aiomqtt is switched to *manual acknowledgement*
  (``paho.mqtt.client.Client.manual_ack_set(True)``; aiomqtt 2.5 builds the paho client itself and
  offers no switch, so :func:`enable_manual_ack` sets it on ``aiomqtt.Client._client`` and fails
  loudly if that attribute ever disappears). A QoS 1 PUBLISH is PUBACKed only after ``emit()``
  has returned for it, in arrival order (MQTT 3.1.1 §4.6).
* If the process dies or the connection drops between receipt and PUBACK, the broker still owns
  the message: with ``clean_session = false`` it keeps the session (subscriptions + unacked and
  queued messages, on disk when mosquitto has ``persistence true``) and re-sends unacked messages
  with DUP=1 when we reconnect with the same ``client_id``. So a message is delivered again rather
  than lost; a message whose PUBACK was lost in flight is emitted twice (downstream must tolerate
  duplicates, which samples with identical keys do).
* What is *not* covered: QoS 0 messages (fire and forget by definition; dropped first under
  backpressure), messages the broker itself discards (mosquitto ``max_queued_messages`` per offline
  session, default 1000: raise it), and sessions with ``clean_session = true``. QoS 2 is not offered:
  paho PUBRECs before the application sees the message and keeps no state on disk, so it would
  promise more than it delivers.

Backpressure: the broker sends at most its in-flight window (mosquitto ``max_inflight_messages``,
default 20) of unacknowledged QoS 1 messages, so a slow ``emit()`` slows the broker down instead of
growing memory. QoS 0 messages are not windowed; beyond ``max_queue`` waiting messages they are
dropped and counted (``stats.dropped``).

aiomqtt does not reconnect by itself: :meth:`MqttSource.run` loops, reconnecting with the shared
backoff of :mod:`collector.settings.retry` (``backoff_initial``/``backoff_max``, full jitter), and
keeps going on every connection failure (wrong password included; the error is kept in
``last_error`` and logged without the secret). ``password_file`` (a file or ``env:NAME``) and the
``tls`` table are checked at start-up: a missing file stops start-up with its key path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlsplit

import aiomqtt
from aiomqtt.exceptions import MqttConnectError
from pydantic import Field, field_validator, model_validator

from collector.errors import FetchError
from collector.registry import SourceSpec
from collector.schema import RawRecord
from collector.settings import Backoff, RetrySettings, SecretRef, TlsClientSettings
from collector.settings.deprecated import Renamed
from collector.settings.tls import TlsTable
from collector.sources.base import Emit, SourceSettings
from collector.sources.mqtt.parse import DEFAULT_TOPIC_TEMPLATE, normalize_topic_template

log = logging.getLogger("hciwatch.sources.mqtt")

SOURCE_KIND = "mqtt"
_SCHEMES = {"mqtt": False, "tcp": False, "mqtts": True, "ssl": True, "tls": True}

# CONNACK return codes of MQTT 3.1.1 (§3.2.2.3), and the MQTT 5 reason codes paho 2 reports them
# as, in words a user can act on.
_CONNACK = {
    1: "unacceptable protocol version",
    2: "client identifier rejected (is client_id in use or too long?)",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorised (wrong password, or the user may not connect)",
    0x84: "unacceptable protocol version",
    0x85: "client identifier rejected (is client_id in use or too long?)",
    0x86: "bad user name or password",
    0x87: "not authorised (wrong password, or the user may not connect)",
    0x88: "server unavailable",
    0x8A: "banned",
}
_AUTH_CODES = frozenset({4, 5, 0x86, 0x87, 0x8A})


_RENAMED = (
    Renamed("ca_file", "tls.ca_file"),
    Renamed("cert_file", "tls.cert_file"),
    Renamed("key_file", "tls.key_file"),
    Renamed(
        "tls_insecure",
        "tls.insecure_skip_verify",
        note="it now skips the chain check too; to accept a certificate for another name, set tls.server_name",
    ),
    Renamed("reconnect_min", "backoff_initial"),
    Renamed("reconnect_max", "backoff_max"),
)


class MqttSettings(RetrySettings, SourceSettings):
    """``[[sources]] type = "mqtt"``: one broker connection with one set of subscriptions."""

    renamed_keys = _RENAMED

    type: Literal["mqtt"] = "mqtt"
    server: str = Field(
        default="mqtt://127.0.0.1:1883", description="mqtt://host:port (1883) or mqtts://host:port (8883)"
    )
    topics: list[str] = Field(
        default_factory=lambda: ["telegraf/#"],
        min_length=1,
        description="topic filters to subscribe to; '{site}' is replaced by [site] name (telegraf/{site}/#)",
    )
    qos: Literal[0, 1] = Field(default=1, description="subscription QoS; 1 = at least once")
    client_id: str = Field(
        default="",
        max_length=128,
        description="MQTT client id; required for persistent sessions; '{hostname}' is replaced by this "
        "machine's name, '{domain}' by the network domain's id (with [fleet]: the session follows the domain owner)",
    )
    clean_session: bool = Field(default=False, description="false = persistent session (broker queues while away)")
    shared_group: str = Field(default="", description="subscribe as $share/<group>/<topic> to split load")
    username: str = Field(default="", description="user name for the broker")
    password_file: SecretRef | None = Field(default=None, description="the password: a file or env:NAME")
    tls: TlsTable = Field(default=None, description="TLS client settings (mqtts:// servers)")
    topic_template: str = Field(
        default=DEFAULT_TOPIC_TEMPLATE, description="Telegraf topic layout, to recover {host} from topics"
    )
    max_queue: int = Field(
        default=10_000, ge=1, le=10_000_000, description="waiting messages beyond which QoS 0 messages are dropped"
    )
    keepalive: int = Field(default=30, ge=5, le=3600, description="MQTT keepalive, seconds")
    backoff_initial: float = Field(default=0.5, gt=0, le=60, description="first reconnect delay cap, s")
    backoff_max: float = Field(default=60.0, gt=0, le=3600, description="reconnect delay cap, s")

    @field_validator("server")
    @classmethod
    def _check_server(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in _SCHEMES:
            raise ValueError(f"server {v!r}: scheme must be one of {', '.join(sorted(_SCHEMES))}")
        if parts.username or parts.password:
            raise ValueError("server must not contain credentials; use username and password_file")
        if not parts.hostname:
            raise ValueError(f"server {v!r} has no host")
        try:
            _ = parts.port
        except ValueError as exc:
            raise ValueError(f"server {v!r}: {exc}") from None
        return v

    @field_validator("topics")
    @classmethod
    def _check_topics(cls, v: list[str]) -> list[str]:
        for t in v:
            check_topic_filter(t)
        return v

    @field_validator("shared_group")
    @classmethod
    def _check_group(cls, v: str) -> str:
        if any(c in v for c in "/+#"):
            raise ValueError("shared_group must not contain '/', '+' or '#'")
        return v

    @field_validator("topic_template")
    @classmethod
    def _check_template(cls, v: str) -> str:
        text = normalize_topic_template(v)
        if "{host}" not in text:
            raise ValueError('topic_template needs a {host} placeholder (or Telegraf\'s {{ .Tag "host" }})')
        return text

    @model_validator(mode="after")
    def _check_combinations(self) -> MqttSettings:
        if not self.clean_session and not self.client_id:
            raise ValueError(
                "client_id is required when clean_session = false (a persistent "
                "session is found again by its client id)"
            )
        if self.password_file is not None and not self.username:
            raise ValueError("password_file is set but username is empty")
        if self.tls is not None and not self.uses_tls:
            raise ValueError("tls settings need an mqtts:// server")
        for t in self.topics:
            if self.shared_group and t.startswith("$share/"):
                raise ValueError(f"topic {t!r} is already a shared subscription; drop shared_group")
        return self

    @property
    def uses_tls(self) -> bool:
        return _SCHEMES[urlsplit(self.server).scheme]

    @property
    def host(self) -> str:
        return urlsplit(self.server).hostname or ""

    @property
    def port(self) -> int:
        return urlsplit(self.server).port or (8883 if self.uses_tls else 1883)

    def subscriptions(self) -> list[str]:
        """The filters actually subscribed (``$share/<group>/`` prefixed when grouped)."""
        if not self.shared_group:
            return list(self.topics)
        return [f"$share/{self.shared_group}/{t}" for t in self.topics]

    def for_domain(self, site: str, domain: str) -> MqttSettings:
        """Per-site topics and a per-domain session: ``{site}`` and ``{domain}`` filled in.

        With ``client_id = "hciwatch-{domain}"`` every instance that may own the domain uses the same
        persistent session, so the broker queues the site's messages while no instance owns it and
        the next owner resumes exactly where the last one stopped acknowledging.
        """

        def fill(text: str) -> str:
            return text.replace("{site}", site).replace("{domain}", domain)

        return self.model_copy(update={"topics": [fill(t) for t in self.topics], "client_id": fill(self.client_id)})

    def resolved_client_id(self) -> str:
        return self.client_id.replace("{hostname}", socket.gethostname())


def check_topic_filter(t: str) -> None:
    """MQTT 3.1.1 §4.7 topic filter rules; ``ValueError`` naming the rule broken."""
    if not t:
        raise ValueError("topic filter must not be empty")
    levels = t.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            raise ValueError(f"topic {t!r}: '#' must be a whole last level")
        if "+" in level and level != "+":
            raise ValueError(f"topic {t!r}: '+' must be a whole level")


def enable_manual_ack(client: aiomqtt.Client) -> Callable[[int, int], None]:
    """Switch paho to manual PUBACK and return ``ack(mid, qos)``.

    aiomqtt 2.5 creates its ``paho.mqtt.client.Client`` as ``_client`` without exposing
    ``manual_ack``; paho ≥ 2.0 supports switching it before connecting.
    """
    paho = getattr(client, "_client", None)
    if paho is None or not hasattr(paho, "manual_ack_set") or not hasattr(paho, "ack"):
        raise RuntimeError(
            "aiomqtt/paho no longer expose manual acknowledgement; the MQTT source "
            "cannot promise at-least-once delivery with this aiomqtt version"
        )
    paho.manual_ack_set(True)

    def ack(mid: int, qos: int) -> None:
        paho.ack(mid, qos)

    return ack


@dataclass(slots=True)
class MqttStats:
    """Counters for self-monitoring (exported by the service as its own metrics)."""

    received: int = 0
    emitted: int = 0
    dropped: int = 0
    connects: int = 0
    failures: int = 0


def describe_mqtt_error(exc: BaseException, settings: MqttSettings) -> FetchError:
    """A user-facing FetchError for a connection problem (never includes the password)."""
    target = settings.server
    if isinstance(exc, aiomqtt.MqttCodeError):
        rc = exc.rc
        value = getattr(rc, "value", rc)
        code = int(value) if isinstance(value, int) else -1
        if isinstance(exc, MqttConnectError):
            why = _CONNACK.get(code, str(exc))
            user = f" for user {settings.username!r}" if settings.username else " (no username set)"
            hint = "; check username/password_file" if code in _AUTH_CODES else ""
            return FetchError(
                f"broker refused the connection{user}: {why} (CONNACK code {code}){hint}",
                source=SOURCE_KIND,
                target=target,
                retryable=True,
            )
        return FetchError(f"MQTT error: {exc}", source=SOURCE_KIND, target=target)
    if isinstance(exc, ssl.SSLError):
        return FetchError(f"TLS failed: {exc.reason or exc}", source=SOURCE_KIND, target=target)
    text = str(exc) or type(exc).__name__
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        return FetchError(
            f"TLS: the broker certificate is not trusted by tls.ca_file ({text})", source=SOURCE_KIND, target=target
        )
    return FetchError(f"connection failed: {text}", source=SOURCE_KIND, target=target)


def _bounded_queue_type(max_queue: int, on_drop: Callable[[], None]) -> type[asyncio.Queue[Any]]:
    """A queue class for aiomqtt that drops QoS 0 messages (only) when ``max_queue`` are waiting.

    QoS 1 messages are never dropped here: they are unacknowledged, so the broker's in-flight
    window already bounds them, and dropping one would stall that window until a reconnect.
    """

    class _Queue(asyncio.Queue[Any]):
        def put_nowait(self, item: Any) -> None:
            if getattr(item, "qos", 0) == 0 and self.qsize() >= max_queue:
                on_drop()
                return
            super().put_nowait(item)

    return _Queue


ClientFactory = Callable[..., aiomqtt.Client]


class MqttSource:
    """PushSource: one broker, reconnecting forever; see the module docstring for delivery."""

    def __init__(
        self,
        settings: MqttSettings,
        *,
        clock: Callable[[], datetime] | None = None,
        client_factory: ClientFactory | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.name = settings.name or "mqtt"
        self.stats = MqttStats()
        self.last_error: FetchError | None = None
        self.connected = False
        self.subscribed = False
        self._clock = clock or (lambda: datetime.now(UTC))
        self._client_factory: ClientFactory = client_factory or aiomqtt.Client
        self._backoff = Backoff(settings.backoff_initial, settings.backoff_max, rng=rng or random.Random())
        key = f"sources.{self.name}"
        # Secrets and TLS files are checked here, at start-up, not at the first connection.
        self._password = settings.password_file.resolve(key=f"{key}.password_file") if settings.password_file else None
        self._ssl_context = (
            (settings.tls or TlsClientSettings()).ssl_context(key=f"{key}.tls") if settings.uses_tls else None
        )
        self._closed = False
        self._task: asyncio.Task[Any] | None = None
        labels = dict(settings.labels)
        if settings.topic_template != DEFAULT_TOPIC_TEMPLATE:
            labels["topic_template"] = settings.topic_template
        self._labels = labels

    def targets(self) -> list[str]:
        return [self.settings.server]

    # -- connection pieces -------------------------------------------------------------------

    def _make_client(self) -> aiomqtt.Client:
        s = self.settings
        return self._client_factory(
            s.host,
            s.port,
            username=s.username or None,
            password=self._password.current() if self._password is not None else None,
            identifier=s.resolved_client_id() or None,
            clean_session=s.clean_session,
            keepalive=s.keepalive,
            timeout=s.timeout,
            tls_context=self._ssl_context,
            queue_type=_bounded_queue_type(s.max_queue, self._count_drop),
            protocol=aiomqtt.ProtocolVersion.V311,
        )

    def _count_drop(self) -> None:
        self.stats.dropped += 1
        if self.stats.dropped in (1, 10, 100) or self.stats.dropped % 1000 == 0:
            log.warning(
                "mqtt %s: %d QoS 0 messages dropped (more than max_queue=%d waiting)",
                self.name,
                self.stats.dropped,
                self.settings.max_queue,
            )

    # -- the loop ----------------------------------------------------------------------------

    async def run(self, emit: Emit) -> None:
        """Consume until cancelled or closed; every failure leads to a backed-off reconnect."""
        self._task = asyncio.current_task()
        while not self._closed:
            connects_before = self.stats.connects
            try:
                await self._session(emit)
            except asyncio.CancelledError:
                raise
            except (aiomqtt.MqttError, OSError, ssl.SSLError, FetchError) as exc:
                err = exc if isinstance(exc, FetchError) else describe_mqtt_error(exc, self.settings)
                self._note_failure(err)
            finally:
                self.connected = False
                self.subscribed = False
            if self._closed:
                break
            if self.stats.connects > connects_before:
                self._backoff.reset()  # the connection came up: a later drop starts the backoff again
            delay = self._backoff.next_delay()
            log.info("mqtt %s: reconnecting in %.1fs", self.name, delay)
            await asyncio.sleep(delay)

    def _note_failure(self, err: FetchError) -> None:
        self.stats.failures += 1
        self.last_error = err
        log.warning("%s", err)

    async def _session(self, emit: Emit) -> None:
        s = self.settings
        client = self._make_client()
        ack = enable_manual_ack(client)
        async with client:
            self.connected = True
            self.stats.connects += 1
            self.last_error = None
            subs = s.subscriptions()
            wanted: list[tuple[str, int]] = [(t, s.qos) for t in subs]
            granted = await client.subscribe(wanted)
            failed = [t for t, rc in zip(subs, granted, strict=False) if _suback_failed(rc)]
            if failed:
                raise FetchError(
                    f"broker refused subscription(s) {', '.join(failed)} (check the ACL of user {s.username!r})",
                    source=SOURCE_KIND,
                    target=s.server,
                )
            self.subscribed = True
            log.info("mqtt %s: connected to %s, subscribed to %s", self.name, s.server, ", ".join(subs))
            async for message in client.messages:
                self.stats.received += 1
                await emit(self._record(message))
                self.stats.emitted += 1
                if message.qos > 0:
                    ack(message.mid, message.qos)

    def _record(self, message: aiomqtt.Message) -> RawRecord:
        payload = message.payload
        if isinstance(payload, bytes | bytearray):
            body = bytes(payload)
        elif payload is None:
            body = b""
        else:
            body = str(payload).encode("utf-8")
        return RawRecord(
            ts=self._clock(),
            kind=SOURCE_KIND,
            target=self.settings.server,
            body=body,
            host="",
            labels=self._labels,
            topic=message.topic.value,
        )

    async def close(self) -> None:
        """Stop the loop (cancelling an in-progress session); safe to call twice."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task() and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def _suback_failed(rc: Any) -> bool:
    value = getattr(rc, "value", rc)
    return isinstance(value, int) and value >= 0x80


SPEC = SourceSpec(MqttSettings, MqttSource, SOURCE_KIND)

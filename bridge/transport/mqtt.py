"""MQTT transport: the broker connection and its two topics, nothing about what messages mean.

Subscribes to the request topic at QoS 1, hands each payload to `handle`, publishes what it
returns on the response topic at QoS 1. Reconnects with back-off and resubscribes. TCP_NODELAY is
set on the socket: with QoS 1, Nagle's algorithm holds the small PUBACK back and a round trip costs
~40-90 ms instead of ~1 ms (measured, see docs/BENCHMARKS.md).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections import deque
from collections.abc import Awaitable, Callable

import aiomqtt
import paho.mqtt.client as mqtt

from bridge.backoff import Backoff, Parameters
from bridge.config import MqttSettings

log = logging.getLogger(__name__)

Handle = Callable[[bytes], Awaitable[bytes | None]]
Busy = Callable[[bytes], bytes | None]

MAX_IN_FLIGHT = 64  # messages being handled at once; beyond that the broker's queue waits
MAX_UNACKNOWLEDGED = 1000  # answers waiting for their PUBACK; beyond that handling waits
MAX_QUEUED = 1000  # messages waiting to be handled; beyond that each gets a "busy" answer
MAX_PENDING = 100  # messages to the OEM kept while the broker is not connected
MAX_BUSY = 5000  # "busy" answers not yet published; beyond that messages are dropped (logged)
# Reconnection waits: 0.5 s doubled up to 32 s, plus up to 0.5 s of jitter.
BACKOFF = Parameters(minimum=0.5, random_range=0.5, repeat_times=6)


def _inbox(overflow: Callable[[aiomqtt.Message], None]) -> type[asyncio.Queue[aiomqtt.Message]]:
    """aiomqtt's incoming queue, bounded; what does not fit goes to `overflow` (aiomqtt itself
    would drop it after its PUBACK, and the OEM would wait for an answer that never comes)."""

    class Inbox(asyncio.Queue[aiomqtt.Message]):
        def put_nowait(self, item: aiomqtt.Message) -> None:
            if self.full():
                overflow(item)
            else:
                super().put_nowait(item)

    return Inbox


def tls_context(settings: MqttSettings) -> ssl.SSLContext | None:
    if not settings.tls:
        return None
    context = ssl.create_default_context(cafile=settings.ca_file or None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class MqttTransport:
    """`will`: published by the broker (retained) if the bridge vanishes without a clean
    disconnect; `on_connected` runs after every (re)connection and subscription."""

    def __init__(
        self,
        settings: MqttSettings,
        client_id: str,
        handle: Handle,
        busy: Busy,
        will: bytes | None = None,
        on_connected: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.client_id = client_id
        self.handle = handle
        self.busy = busy
        self.will = will
        self.on_connected = on_connected
        self._client_now: aiomqtt.Client | None = None
        self._busy: deque[mqtt.MQTTMessageInfo] = deque()
        self.connected = False
        self.last_error = ""
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        self._answers: deque[mqtt.MQTTMessageInfo] = deque()
        self._pending: deque[tuple[bytes, bool]] = deque(maxlen=MAX_PENDING)
        self._tasks: set[asyncio.Task[None]] = set()

    def _client(self) -> aiomqtt.Client:
        s = self.settings
        return aiomqtt.Client(
            s.host,
            s.port,
            username=s.username or None,
            password=s.password.get_secret_value() or None,
            identifier=self.client_id,
            # A persistent session: requests published while the bridge restarts wait for it.
            clean_session=False,
            keepalive=30,
            tls_context=tls_context(s),
            max_queued_incoming_messages=MAX_QUEUED,
            will=(
                aiomqtt.Will(s.response_topic, self.will, qos=1, retain=True)
                if self.will is not None
                else None
            ),
            queue_type=_inbox(self._overflow),
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        )

    async def run(self) -> None:
        """Hold the broker connection until cancelled."""
        client = self._client()
        backoff = Backoff(lambda: BACKOFF)
        while True:
            try:
                async with client:
                    self._client_now = client
                    await client.subscribe(self.settings.request_topic, qos=1)
                    self.connected = True
                    self.last_error = ""
                    backoff.reset()
                    log.info(
                        "MQTT connected to %s:%d, listening on %s",
                        self.settings.host,
                        self.settings.port,
                        self.settings.request_topic,
                    )
                    self._publish_pending()
                    if self.on_connected is not None:
                        self.on_connected()
                    async for message in client.messages:
                        payload = message.payload
                        if not isinstance(payload, bytes | bytearray):
                            continue
                        await self._slots.acquire()
                        task = asyncio.create_task(self._process(client, bytes(payload)))
                        self._tasks.add(task)
                        task.add_done_callback(self._tasks.discard)
            except (
                Exception
            ) as e:  # MqttError mostly; any surprise costs a reconnect, not the service
                if not isinstance(e, aiomqtt.MqttError):
                    log.exception("unexpected MQTT transport error")
                self.last_error = str(e) or type(e).__name__
                if self.connected:
                    log.warning("MQTT connection lost: %s", e)
                else:
                    log.warning(
                        "MQTT broker %s:%d unreachable: %s",
                        self.settings.host,
                        self.settings.port,
                        e,
                    )
            finally:
                self.connected = False
                self._client_now = None
            await asyncio.sleep(backoff.next())

    async def _process(self, client: aiomqtt.Client, payload: bytes) -> None:
        try:
            answer = await self.handle(payload)
            if answer is not None:
                self._answers.append(self._publish(client, answer))
                await _until_acknowledged(self._answers, MAX_UNACKNOWLEDGED)
        except Exception:
            log.exception("handling an MQTT message failed")
        finally:
            self._slots.release()

    def _overflow(self, message: aiomqtt.Message) -> None:
        """More requests than MAX_QUEUED are waiting: answer this one "busy" at once.

        Published straight through paho (non-blocking; paho handles QoS 1 in flight): an
        awaited publish per busy answer would itself fall behind the flood."""
        client, payload = self._client_now, message.payload
        if client is None or not isinstance(payload, bytes | bytearray):
            return
        _forget_acknowledged(self._busy)
        if len(self._busy) >= MAX_BUSY:
            log.warning("overloaded: dropped a message without an answer")
            return
        answer = self.busy(bytes(payload))
        if answer is not None:
            self._busy.append(self._publish(client, answer))

    def publish(self, payload: bytes, retain: bool = False) -> None:
        """Publish on the response topic at QoS 1 without waiting (paho keeps the message until
        the broker acknowledges it). While the broker is not connected, the last MAX_PENDING
        messages wait and go out, in order, right after the next connection."""
        client = self._client_now
        if client is None or not self.connected:
            # Not through paho: its write callback would meet a closed socket.
            if len(self._pending) == self._pending.maxlen:
                log.warning("MQTT disconnected: an old message to the OEM was dropped")
            self._pending.append((payload, retain))
            return
        _forget_acknowledged(self._answers)
        self._answers.append(self._publish(client, payload, retain))

    def _publish_pending(self) -> None:
        while self._pending and self.connected:
            payload, retain = self._pending.popleft()
            self.publish(payload, retain)

    async def publish_and_wait(self, payload: bytes, retain: bool, timeout: float) -> bool:
        """Publish and wait for the broker's acknowledgement (e.g. the last status before a
        clean exit); False when it did not come within `timeout` seconds."""
        client = self._client_now
        if client is None:
            return False
        try:
            async with asyncio.timeout(timeout):
                await client.publish(self.settings.response_topic, payload, qos=1, retain=retain)
        except (TimeoutError, aiomqtt.MqttError):
            return False
        return True

    def _publish(
        self, client: aiomqtt.Client, answer: bytes, retain: bool = False
    ) -> mqtt.MQTTMessageInfo:
        """Publish an answer at QoS 1 without waiting for its PUBACK.

        Straight through paho, which keeps the message until the broker acknowledges it and sends
        it again after a reconnect (a persistent session). aiomqtt's own publish() would await
        each PUBACK in a future: ~15 % of the pipelined throughput (measured, bench/)."""
        info = client._client.publish(self.settings.response_topic, answer, qos=1, retain=retain)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            log.warning("could not publish an answer: %s", mqtt.error_string(info.rc))
        return info


async def _until_acknowledged(sent: deque[mqtt.MQTTMessageInfo], limit: int) -> None:
    """Forget acknowledged answers; while `limit` or more are not, wait (the broker is slow
    or gone: handling more requests would only pile answers up in memory)."""
    while _forget_acknowledged(sent) >= limit:  # noqa: ASYNC110 - paho has no awaitable PUBACK
        await asyncio.sleep(0.05)


def _forget_acknowledged(sent: deque[mqtt.MQTTMessageInfo]) -> int:
    """Drop the acknowledged answers from the front of `sent`; how many are left."""
    while sent and _acknowledged(sent[0]):
        sent.popleft()
    return len(sent)


def _acknowledged(info: mqtt.MQTTMessageInfo) -> bool:
    try:
        return info.is_published()
    except (ValueError, RuntimeError):
        # Never queued, or queued while the connection was down: paho sends the latter after the
        # reconnect, but its info cannot say when. Nothing to wait for either way.
        return True

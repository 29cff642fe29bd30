"""Shared fixtures: a real Mosquitto on a free port, a bridge configuration, an OEM MQTT client."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import aiomqtt
import pytest

from bridge.app import Bridge
from bridge.config import load_settings
from bridge.rpc import CallResult
from bridge.rpc.request import Request
from bridge.station import Station
from bridge.store import Store

# The Josev ocpp_message API's examples as strict JSON.
EXAMPLES = Path(__file__).resolve().parent / "examples" / "ocpp_message"
# The request examples: each gets a CallResult from a fresh station.
SEED_REQUESTS = (
    "request.GetVariables",
    "request.GetVariables.multiple",
    "request.SetVariables",
    "request.InstallCertificate",
    "request.GetInstalledCertificateIds",
    "request.DeleteCertificate",
    "request.SetNetworkProfile",
)
# `ocpp-bridge` as users start it (the console script's module).
BRIDGE = [sys.executable, "-m", "bridge"]
REQUEST_TOPIC, RESPONSE_TOPIC = "cs/josev", "josev/cs"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def example(name: str, fresh_id: bool = True) -> dict[str, Any]:
    """One of the Josev ocpp_message API's examples (tests/examples/ocpp_message/<name>.json), with a new id."""
    message: dict[str, Any] = json.loads((EXAMPLES / f"{name}.json").read_text())
    if fresh_id:
        message["id"] = str(uuid.uuid4())
    return message


def ocpp_message(action: str, payload: Any, version: str = "ocpp2.0.1") -> dict[str, Any]:
    """An ocpp_message request with a new id."""
    return {
        "id": str(uuid.uuid4()),
        "name": "ocpp_message",
        "type": "request",
        "data": {"ocpp_version": version, "message_name": action, "payload": payload},
    }


@dataclass
class Broker:
    host: str
    port: int
    process: subprocess.Popen[bytes]
    config: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def start(self) -> None:
        """(Re)start on the same port."""
        self.process = _spawn_mosquitto(self.config)
        _wait_port(self.host, self.port)


def _spawn_mosquitto(config: Path) -> subprocess.Popen[bytes]:
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    return subprocess.Popen(
        [binary, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def _wait_port(host: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on {host}:{port}")


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A private Mosquitto on a free loopback port, set up as deploy/ recommends."""
    port = free_port()
    config = tmp_path / "mosquitto.conf"
    config.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\n"
        f"persistence false\n"
    )
    b = Broker("127.0.0.1", port, _spawn_mosquitto(config), config)
    _wait_port(b.host, b.port)
    yield b
    b.stop()


def write_config(
    path: Path,
    broker: Broker | None,
    *,
    station_id: str = "CP001",
    evses: str = "[1]",
    csms: str = "",
    extra: str = "",
    mqtt_port: int | None = None,
    oem: str = "startup_timeout = 0",
) -> Path:
    """A bridge configuration file; without a broker, MQTT points at `mqtt_port` (or 1883).

    `oem`: the [oem] section; by default the bridge does not wait for an OEM's device_model
    answer (there is no OEM in most tests)."""
    mqtt_port = broker.port if broker else (mqtt_port or 1883)
    path.write_text(
        f"""
[station]
id = "{station_id}"
vendor = "Acme"
model = "AC22"
serial_number = "SN-0001"
firmware_version = "1.0.0"
evses = {evses}

[csms]
{csms}

[mqtt]
host = "127.0.0.1"
port = {mqtt_port}

[storage]
path = "{path.parent / "bridge.db"}"

[oem]
{oem}

{extra}
"""
    )
    return path


def make_station(tmp_path: Path, **config: str) -> Station:
    """A Station over a fresh store in tmp_path (no broker, no CSMS); config as in write_config."""
    settings = load_settings(write_config(tmp_path / "bridge.toml", None, **config))
    return Station(settings, Store(settings.storage.path))


async def ocpp_call(station: Station, action: str, payload: dict[str, Any]) -> Any:
    """Run a CALL through the station's dispatcher; the CallResult payload or the CallError."""
    result = await station.dispatcher.call(Request("csms", "ocpp2.0.1", action, payload))
    return result.payload if isinstance(result, CallResult) else result


@pytest.fixture
def config_file(tmp_path: Path, broker: Broker) -> Path:
    return write_config(tmp_path / "bridge.toml", broker)


@asynccontextmanager
async def running_bridge(config: Path) -> AsyncIterator[Bridge]:
    """The bridge in this event loop, connected to its broker."""
    async with Bridge(load_settings(config)) as bridge:
        for _ in range(500):
            if bridge.mqtt.connected:
                break
            await asyncio.sleep(0.01)
        assert bridge.mqtt.connected, "the bridge did not connect to the broker"
        yield bridge


@pytest.fixture
async def bridge(config_file: Path) -> AsyncIterator[Bridge]:
    async with running_bridge(config_file) as b:
        yield b


@dataclass
class Oem:
    """The OEM firmware's side: publishes on cs/josev, reads answers from josev/cs."""

    client: aiomqtt.Client
    answers: dict[str, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    unexpected: list[dict[str, Any]] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)  # the bridge's updates
    requests: list[dict[str, Any]] = field(default_factory=list)  # the bridge's requests

    async def send(self, message: dict[str, Any] | bytes | str) -> None:
        raw = message if isinstance(message, bytes | str) else json.dumps(message)
        await self.client.publish(REQUEST_TOPIC, raw, qos=1)

    def expect(self, message_id: str) -> asyncio.Future[dict[str, Any]]:
        """The answer to `message_id`, to come (for a request sent with `send`)."""
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.answers[message_id] = future
        return future

    async def request(self, message: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
        future = self.expect(message["id"])
        await self.send(message)
        return await asyncio.wait_for(future, timeout)

    async def ocpp(
        self, action: str, payload: dict[str, Any], version: str = "ocpp2.0.1"
    ) -> dict[str, Any]:
        """Send an ocpp_message request; return the response's data."""
        answer = await self.request(ocpp_message(action, payload, version))
        return answer["data"]

    async def read_answers(self) -> None:
        async for message in self.client.messages:
            body = json.loads(message.payload)
            if body.get("type") == "update":
                self.updates.append(body)
                continue
            if body.get("type") == "request":
                self.requests.append(body)
                continue
            future = self.answers.pop(body.get("id"), None)
            if future is not None and not future.done():
                future.set_result(body)
            else:
                self.unexpected.append(body)


class AnswerReader(Protocol):
    """An OEM client: its MQTT client, and a loop that takes in what arrives on josev/cs."""

    client: aiomqtt.Client

    async def read_answers(self) -> None: ...


Reader = TypeVar("Reader", bound=AnswerReader)


def oem_mqtt_client(host: str, port: int, **options: Any) -> aiomqtt.Client:
    """An MQTT client as the OEM firmware opens one: its own client id, TCP_NODELAY."""
    return aiomqtt.Client(
        host,
        port,
        identifier=f"oem-{uuid.uuid4().hex[:8]}",
        socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        **options,
    )


@asynccontextmanager
async def reading_answers(oem: Reader) -> AsyncIterator[Reader]:
    """`oem` subscribed to josev/cs, its `read_answers` running until the block ends."""
    await oem.client.subscribe(RESPONSE_TOPIC, qos=1)
    reader = asyncio.create_task(oem.read_answers())
    try:
        yield oem
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
            await reader


@asynccontextmanager
async def oem_client(broker: Broker) -> AsyncIterator[Oem]:
    async with (
        oem_mqtt_client(broker.host, broker.port) as client,
        reading_answers(Oem(client)) as oem,
    ):
        yield oem


@pytest.fixture
async def oem(broker: Broker) -> AsyncIterator[Oem]:
    async with oem_client(broker) as o:
        yield o


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if (
        os.environ.get("CI")
        and not shutil.which("mosquitto")
        and not Path("/usr/sbin/mosquitto").exists()
    ):
        raise pytest.UsageError("mosquitto is not installed; .ci/run installs it")

"""The WebSocket to the CSMS: network profile, security profile, back-off and fail-over.

Knows how to reach the CSMS, nothing about what is said: each open connection is handed to the
session (`Registration.run`) with an `RpcConnection` whose CALLs go to `handle_call`.

- URL `<ocppCsmsUrl>/<identity>`, offering the configured subprotocols; a CSMS that selects none
  is refused.
- Security profile 1: Basic auth over ws://; 2: Basic auth over TLS, the CSMS verified against
  `[csms] ca_file` and the installed CSMSRootCertificates; 3: TLS with a client certificate.
  TLS 1.2 at least.
- Reconnects with the OCPP back-off (OCPP-J 5.3: RetryBackOffWaitMinimum, doubled
  RetryBackOffRepeatTimes times, plus up to RetryBackOffRandomRange at random). An HTTP 401 is
  logged as an authentication failure and retried the same way, never in a hot loop.
- After NetworkProfileConnectionAttempts failures, the next slot of NetworkConfigurationPriority
  (B10.FR.03); a slot below the current SecurityProfile is never used.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import random
import ssl
from collections.abc import Callable, Coroutine
from enum import StrEnum
from typing import Any, Final
from urllib.parse import quote

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidHandshake, InvalidStatus
from websockets.typing import Subprotocol

from bridge import __version__
from bridge.config import Settings
from bridge.rpc.ocppj import HandleCall, RpcConnection
from bridge.station import PASSWORD, Station
from bridge.station.device_model import Variable

log = logging.getLogger(__name__)

MAX_FRAME: Final = 256 * 1024  # the largest frame we accept from the CSMS

Session = Callable[[RpcConnection], Coroutine[Any, Any, None]]


class LinkState(StrEnum):
    disconnected = "disconnected"
    connecting = "connecting"
    connected = "connected"


class ConnectFailure(Exception):
    """One failed connection attempt, as a sentence for the log."""


def backoff_delay(attempt: int, wait_minimum: int, random_range: int, repeat_times: int) -> float:
    """OCPP-J 5.3: the delay before reconnection attempt `attempt` (1, 2, ...)."""
    doublings = min(max(attempt - 1, 0), max(repeat_times, 0))
    jitter = random.uniform(0, max(random_range, 0))  # noqa: S311 - jitter, not cryptography
    return float(max(wait_minimum, 0) * 2**doublings + jitter)


def tls_context(
    profile: int, ca_file: str, roots: list[bytes], client_cert: str, client_key: str
) -> ssl.SSLContext:
    """A client context for security profile 2 or 3; ConnectFailure when it cannot be made."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2  # A00.FR.3xx: TLS 1.2 or higher
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    for der in roots:
        context.load_verify_locations(cadata=der)
    if not ca_file and not roots:
        raise ConnectFailure(
            f"security profile {profile} needs a CSMS root certificate: set [csms] ca_file "
            "or install a CSMSRootCertificate"
        )
    if profile == 3:
        try:
            context.load_cert_chain(client_cert, client_key)
        except (OSError, ssl.SSLError) as e:
            raise ConnectFailure(f"cannot load the client certificate: {e}") from None
    return context


class CsmsLink:
    def __init__(
        self, station: Station, settings: Settings, handle_call: HandleCall, session: Session
    ) -> None:
        self.station = station
        self.settings = settings
        self.handle_call = handle_call
        self.session = session
        self.state = LinkState.disconnected
        self.last_error = ""
        self.active_slot: int | None = None
        self.connection: RpcConnection | None = None
        self._reconnect_now = False
        self._wake = asyncio.Event()
        station.device_model.on_change(self._variable_changed)

    # --- the loop

    async def run(self) -> None:
        """Stay connected to the CSMS until cancelled."""
        attempt = 0  # failed attempts since the last connection (for the back-off)
        failures_on_slot = 0
        slot_index = 0
        while True:
            slots = self._usable_slots()
            if not slots:
                if self.last_error != "no usable network profile":
                    log.info("no CSMS network profile to connect with; waiting for one")
                self._set_state(LinkState.disconnected, "no usable network profile")
                await self._sleep(5.0)
                continue
            slot = slots[slot_index % len(slots)]
            self._set_state(LinkState.connecting, "")
            try:
                try:
                    websocket = await self._connect(slot)
                except (ConnectFailure, asyncio.CancelledError):
                    raise
                except Exception as e:  # a surprise must cost one attempt, not the service
                    log.exception("unexpected error while connecting to the CSMS")
                    raise ConnectFailure(f"unexpected error: {type(e).__name__}") from None
            except ConnectFailure as e:
                attempt += 1
                failures_on_slot += 1
                self._set_state(LinkState.disconnected, str(e))
                log.warning("CSMS connection attempt failed (slot %d): %s", slot, e)
                limit = self.station.device_model.int_value(
                    "OCPPCommCtrlr.NetworkProfileConnectionAttempts"
                )
                if failures_on_slot >= max(limit, 1) and len(slots) > 1:
                    slot_index += 1
                    failures_on_slot = 0
                    log.warning(
                        "switching to network profile slot %d", slots[slot_index % len(slots)]
                    )
                await self._sleep(self._backoff(attempt))
                continue
            attempt = failures_on_slot = 0
            try:
                await self._hold(slot, websocket)
            except Exception:
                log.exception("the CSMS connection failed unexpectedly")
            if self._reconnect_now:
                self._reconnect_now = False
                continue
            attempt = 1  # a lost connection: back off before the first reconnection attempt
            await self._sleep(self._backoff(attempt))

    async def _hold(self, slot: int, websocket: ClientConnection) -> None:
        version = websocket.subprotocol or ""
        timeout = self.station.device_model.int_value("OCPPCommCtrlr.MessageTimeout[Default]")
        connection = RpcConnection(websocket, version, self.handle_call, float(timeout or 30))
        self.connection = connection
        self.active_slot = slot
        self.station.device_model.set_runtime("OCPPCommCtrlr.ActiveNetworkProfile", str(slot))
        self.station.outbox.connection = connection
        self._set_state(LinkState.connected, "")
        log.info("connected to the CSMS (slot %d, %s)", slot, version)
        reader = asyncio.create_task(connection.serve())
        session = asyncio.create_task(self.session(connection))
        try:
            await asyncio.wait({reader, session}, return_when=asyncio.FIRST_COMPLETED)
            if session.done() and not session.cancelled() and session.exception() is not None:
                # The session must outlive the connection; if it died, start over cleanly.
                log.error("the CSMS session failed", exc_info=session.exception())
                await websocket.close(1011, "station error")
            await reader
        finally:
            session.cancel()
            await asyncio.gather(session, return_exceptions=True)
            self.station.outbox.connection = None
            self.connection = None
            self._set_state(LinkState.disconnected, "connection closed")
            await websocket.close()
            log.warning("CSMS connection closed (%s)", websocket.close_code)

    async def _connect(self, slot: int) -> ClientConnection:
        station, dm = self.station, self.station.device_model
        profile = station.network_profiles.get(slot)
        assert profile is not None
        identity = self.settings.station.id
        url = profile["ocppCsmsUrl"].rstrip("/") + "/" + quote(identity, safe="")
        security = int(profile["securityProfile"])
        headers: dict[str, str] = {}
        if security in (1, 2):
            password = dm.value(PASSWORD)
            if not password:
                raise ConnectFailure(f"security profile {security} needs a BasicAuthPassword")
            token = base64.b64encode(f"{identity}:{password}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        context = None
        if url.startswith("wss://"):
            csms = self.settings.csms
            context = tls_context(
                security,
                csms.ca_file,
                station.certificates.trust_anchors(),
                csms.client_cert,
                csms.client_key,
            )
        ping = dm.int_value("OCPPCommCtrlr.WebSocketPingInterval")
        timeout = dm.int_value("OCPPCommCtrlr.MessageTimeout[Default]") or 30
        try:
            websocket = await connect(
                url,
                subprotocols=[Subprotocol(v) for v in self.settings.csms.ocpp_versions],
                additional_headers=headers,
                ssl=context,
                ping_interval=ping or None,
                ping_timeout=ping or None,
                open_timeout=timeout,
                close_timeout=5,
                max_size=MAX_FRAME,
                compression=None,
                proxy=None,
                user_agent_header=f"ocpp-bridge/{__version__}",
            )
        except InvalidStatus as e:
            code = e.response.status_code
            if code == 401:
                raise ConnectFailure(
                    f"the CSMS refused the credentials of {identity} (HTTP 401)"
                ) from None
            raise ConnectFailure(f"the CSMS answered the upgrade with HTTP {code}") from None
        except ssl.SSLCertVerificationError as e:
            raise ConnectFailure(
                f"TLS: the CSMS certificate is not trusted ({e.verify_message})"
            ) from None
        except ssl.SSLError as e:
            raise ConnectFailure(f"TLS handshake failed ({e.reason or e})") from None
        except TimeoutError:  # an OSError too: before it
            raise ConnectFailure(f"no WebSocket upgrade from {url} within {timeout} s") from None
        except (OSError, InvalidHandshake) as e:
            raise ConnectFailure(f"cannot reach {url}: {e}") from None
        if websocket.subprotocol is None:
            await websocket.close(1002, "no OCPP subprotocol selected")
            raise ConnectFailure(
                "the CSMS selected no subprotocol (offered "
                + ", ".join(self.settings.csms.ocpp_versions)
                + "); refusing to run an OCPP session"
            )
        return websocket

    def _usable_slots(self) -> list[int]:
        """NetworkConfigurationPriority's slots with a profile, none below the SecurityProfile."""
        profiles = self.station.network_profiles
        current = profiles.current_security_profile()
        usable = []
        for slot in profiles.priority():
            profile = profiles.get(slot)
            if profile is not None and profile["securityProfile"] >= current:
                usable.append(slot)
        return usable

    def _backoff(self, attempt: int) -> float:
        dm = self.station.device_model
        return backoff_delay(
            attempt,
            dm.int_value("OCPPCommCtrlr.RetryBackOffWaitMinimum"),
            dm.int_value("OCPPCommCtrlr.RetryBackOffRandomRange"),
            dm.int_value("OCPPCommCtrlr.RetryBackOffRepeatTimes"),
        )

    async def _sleep(self, seconds: float) -> None:
        """Wait, unless a reconnect is asked for now (new password, new profile)."""
        self._wake.clear()
        try:
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        except TimeoutError:
            pass

    def _set_state(self, state: LinkState, error: str) -> None:
        self.state = state
        if error:
            self.last_error = error

    # --- changes that need a new connection

    def reconnect(self) -> None:
        """Close the current connection once its CALLs are answered, and connect again at once."""
        self._reconnect_now = True
        self._wake.set()
        connection = self.connection
        if connection is not None:
            connection.spawn(connection.close_when_idle(1000, "reconnecting"))

    def _variable_changed(self, variable: Variable, attribute: str, value: str) -> None:
        if variable.key == PASSWORD:
            # A01: answer first, then reconnect with the new password (profiles 1 and 2).
            log.info("BasicAuthPassword changed; reconnecting with it")
            if self.connection is not None:
                self.reconnect()
        elif variable.key == "OCPPCommCtrlr.NetworkConfigurationPriority":
            self._wake.set()  # used from the next connection (RebootRequired); wake a waiting loop
        elif variable.key == "OCPPCommCtrlr.WebSocketPingInterval" and self.connection is not None:
            websocket: Any = self.connection.websocket
            if websocket.ping_interval and int(value) > 0:
                websocket.ping_interval = websocket.ping_timeout = int(value)

    def confirm(self) -> None:
        """A05.FR.06: after an accepted boot on a higher security profile, that is the new floor."""
        if self.active_slot is not None:
            self.station.network_profiles.confirm(self.active_slot)

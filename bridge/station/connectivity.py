"""Connectivity (B09, B10, A01, A05; OCPP-J 5.3): which CSMS to connect to, how, and when.

Station policy only; the WebSocket itself is the transport's. `next_target()` names the next
attempt (network profile slot of NetworkConfigurationPriority, URL, Basic auth, TLS inputs);
the driver reports back with `connected()`, `failed()` and `lost()`, which return how long to
wait before the next attempt.

- Reconnects with the OCPP back-off (RetryBackOffWaitMinimum, doubled RetryBackOffRepeatTimes
  times, plus up to RetryBackOffRandomRange at random); an HTTP 401 is retried the same way.
- After NetworkProfileConnectionAttempts failures, the next slot of NetworkConfigurationPriority
  (B10.FR.03); a slot below the current SecurityProfile is never used (A05.FR.05).
- A new BasicAuthPassword (A01) applies to the next connection: on security profiles 1 and 2,
  where the password is used, the station reconnects with it after a short jittered delay (a CSMS
  may still be cleaning up the old session); on profiles 0 and 3 nothing changes.
"""

from __future__ import annotations

import base64
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote

from bridge.backoff import Backoff, Parameters
from bridge.config import CsmsSettings
from bridge.station.device_model import DeviceModel, Variable
from bridge.station.effects import Effects, Reconnect
from bridge.station.provisioning.network_profiles import NetworkProfiles
from bridge.station.security import CertificateStore

log = logging.getLogger(__name__)

PASSWORD: Final = "SecurityCtrlr.BasicAuthPassword"  # noqa: S105 - a variable name
IDENTITY: Final = "SecurityCtrlr.Identity"
NO_PROFILE_WAIT: Final = 5.0  # seconds between looks for a usable network profile
# A01: wait this long (plus up to as much again) before reconnecting with a new password.
PASSWORD_RECONNECT_DELAY: Final = 1.0


@dataclass(frozen=True, slots=True)
class Tls:
    """What the TLS context of security profiles 2 and 3 is made of."""

    ca_file: str
    roots: tuple[bytes, ...]  # DER of the installed CSMSRootCertificates
    client_cert: str = ""
    client_key: str = ""


@dataclass(frozen=True, slots=True)
class Target:
    """One connection attempt."""

    slot: int
    url: str  # <ocppCsmsUrl>/<identity>
    security_profile: int
    subprotocols: tuple[str, ...]
    authorization: str | None  # the Basic auth header value (a secret: never logged)
    tls: Tls | None
    ping_interval: int  # WebSocketPingInterval, 0 = off
    message_timeout: int  # MessageTimeout[Default]: also the upgrade's timeout

    def __repr__(self) -> str:  # never the credentials
        return f"Target(slot={self.slot}, url={self.url}, profile={self.security_profile})"


class NoTarget(Exception):
    """No attempt can be made with this slot (e.g. profile 1 without a password)."""


class Connectivity:
    def __init__(
        self,
        settings: CsmsSettings,
        identity: Callable[[], str],
        device_model: DeviceModel,
        network_profiles: NetworkProfiles,
        certificates: CertificateStore,
        effects: Effects,
    ) -> None:
        self.settings = settings
        self.identity = identity
        self.device_model = device_model
        self.network_profiles = network_profiles
        self.certificates = certificates
        self.effects = effects
        self.backoff = Backoff(self._backoff_parameters)
        self.active: Target | None = None
        self._slot_index = 0
        self._failures_on_slot = 0
        device_model.on_change(self._variable_changed)

    # --- the next attempt

    def usable_slots(self) -> list[int]:
        """NetworkConfigurationPriority's slots with a profile, none below the SecurityProfile."""
        profiles = self.network_profiles
        current = profiles.current_security_profile()
        return [
            slot
            for slot in profiles.priority()
            if (profile := profiles.get(slot)) is not None and profile["securityProfile"] >= current
        ]

    def next_target(self) -> Target | None:
        """The next attempt; None when no slot holds a usable profile. NoTarget when the slot's
        profile cannot be used as it is (the reason is the exception's message)."""
        slots = self.usable_slots()
        if not slots:
            return None
        slot = slots[self._slot_index % len(slots)]
        return self._target(slot)

    def _target(self, slot: int) -> Target:
        profile = self.network_profiles.get(slot)
        assert profile is not None
        dm = self.device_model
        identity = self.identity()
        url = profile["ocppCsmsUrl"].rstrip("/") + "/" + quote(identity, safe="")
        security = int(profile["securityProfile"])
        authorization = None
        if security in (1, 2):
            password = dm.value(PASSWORD)
            if not password:
                raise NoTarget(f"security profile {security} needs a BasicAuthPassword")
            token = base64.b64encode(f"{identity}:{password}".encode()).decode()
            authorization = f"Basic {token}"
        tls = None
        if url.startswith("wss://"):
            s = self.settings
            roots = tuple(self.certificates.trust_anchors())
            if not s.ca_file and not roots:
                raise NoTarget(
                    f"security profile {security} needs a CSMS root certificate: set [csms] "
                    "ca_file or install a CSMSRootCertificate"
                )
            if security == 3:
                tls = Tls(s.ca_file, roots, s.client_cert, s.client_key)
            else:
                tls = Tls(s.ca_file, roots)
        return Target(
            slot=slot,
            url=url,
            security_profile=security,
            subprotocols=tuple(self.settings.ocpp_versions),
            authorization=authorization,
            tls=tls,
            ping_interval=dm.int_value("OCPPCommCtrlr.WebSocketPingInterval"),
            message_timeout=dm.int_value("OCPPCommCtrlr.MessageTimeout[Default]") or 30,
        )

    # --- what happened

    def connected(self, target: Target) -> None:
        self.active = target
        self.backoff.reset()
        self._failures_on_slot = 0
        self.device_model.set_runtime("OCPPCommCtrlr.ActiveNetworkProfile", str(target.slot))

    def failed(self) -> float:
        """An attempt failed: the wait before the next one (and maybe the next slot)."""
        self._failures_on_slot += 1
        slots = self.usable_slots()
        limit = max(
            self.device_model.int_value("OCPPCommCtrlr.NetworkProfileConnectionAttempts"), 1
        )
        if self._failures_on_slot >= limit and len(slots) > 1:
            self._slot_index += 1
            self._failures_on_slot = 0
            log.warning(
                "switching to network profile slot %d", slots[self._slot_index % len(slots)]
            )
        return self.backoff.next()

    def lost(self) -> float:
        """The open connection closed: back off before the first reconnection attempt."""
        self.active = None
        self.backoff.reset()
        return self.backoff.next()

    def confirm(self) -> None:
        """A05.FR.06: after an accepted boot on a higher security profile, that is the new floor."""
        if self.active is not None:
            self.network_profiles.confirm(self.active.slot)

    # --- changes that need a new connection

    def _variable_changed(self, variable: Variable, attribute: str, value: str) -> None:
        if variable.key == PASSWORD:
            active = self.active
            if active is None or active.security_profile not in (1, 2):
                return  # A01: used from the next connection; profiles 0 and 3 send none
            delay = PASSWORD_RECONNECT_DELAY * (1 + random.random())  # noqa: S311 - jitter
            log.info("BasicAuthPassword changed; reconnecting with it in %.1f s", delay)
            self.effects.add(Reconnect(delay, "BasicAuthPassword changed"))

    def _backoff_parameters(self) -> Parameters:
        dm = self.device_model
        return Parameters(
            dm.int_value("OCPPCommCtrlr.RetryBackOffWaitMinimum"),
            dm.int_value("OCPPCommCtrlr.RetryBackOffRandomRange"),
            dm.int_value("OCPPCommCtrlr.RetryBackOffRepeatTimes"),
        )

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
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote

from bridge.backoff import Backoff, Parameters
from bridge.config import IDENTITY_PATTERN, CsmsSettings
from bridge.station.device_model import DeviceModel, Rejection, Variable
from bridge.station.effects import Effects, Reconnect
from bridge.station.provisioning.network_profiles import (
    PRIORITY,
    NetworkProfiles,
    check_connection_data,
)
from bridge.station.security import CertificateStore, check_password
from bridge.store import Store
from bridge.versions import OCPP201, PROFILE_VERSION

log = logging.getLogger(__name__)

PASSWORD: Final = "SecurityCtrlr.BasicAuthPassword"  # noqa: S105 - a variable name
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
        store: Store,
    ) -> None:
        self.settings = settings
        self.store = store
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

    def restart(self) -> None:
        """Start over with the first slot of the priority list (a new highest-priority profile)."""
        self._slot_index = self._failures_on_slot = 0
        self.backoff.reset()

    # --- set_ocpp_network_connection: the OEM's own CSMS connection

    def set_network_connection(self, data: dict[str, Any]) -> Rejection | None:
        """Check the connection as SetNetworkProfile would, store it as the highest-priority
        profile and switch to it at once; the Rejection says why not (nothing is stored then)."""
        url: str = data["csms_url"]
        profile: int = data["security_profile"]
        identity = data.get("identity") or self.identity()
        if not re.fullmatch(IDENTITY_PATTERN, identity):
            return Rejection(
                "InvalidValue", "identity must be 1 to 48 characters of A-Z a-z 0-9 *-_=+|@."
            )
        dm = self.device_model
        if url.rstrip("/").rsplit("/", 1)[-1] == identity:
            return Rejection("InvalidURL", "csms_url must not end with the identity")
        connection = {
            "ocppCsmsUrl": url.rstrip("/"),
            "securityProfile": profile,
            "ocppVersion": PROFILE_VERSION[OCPP201],
            "ocppTransport": "JSON",
            "ocppInterface": "Wired0",
            "messageTimeout": dm.int_value("OCPPCommCtrlr.MessageTimeout[Default]") or 30,
        }
        why = check_connection_data(connection, self.network_profiles.current_security_profile())
        if why is not None:
            return why
        password = data.get("basic_auth_password")
        if password is not None and (why := check_password(password)) is not None:
            return Rejection(why.reason, f"basic_auth_password {why.info}")
        if profile in (1, 2) and not (password or dm.value(PASSWORD)):
            return Rejection("MissingParam", f"security profile {profile} needs a password")
        if profile >= 2 and not (self.settings.ca_file or self.certificates.trust_anchors()):
            return Rejection("NoCert", "no CSMS root certificate for a TLS connection")
        if profile == 3 and not (self.settings.client_cert and self.settings.client_key):
            return Rejection("NoCert", "security profile 3 needs a client certificate")
        slot = self._oem_slot()
        order = [slot, *(s for s in self.network_profiles.priority() if s != slot)]
        with self.store.transaction():  # one atomic change
            self.network_profiles.save(slot, connection)
            changes = [(dm[PRIORITY], "Actual", ",".join(str(s) for s in order))]
            if password is not None:
                changes.append((dm[PASSWORD], "Actual", password))
            dm.write(changes)
        log.info("set_ocpp_network_connection: slot %d first; switching to it", slot)
        self.restart()
        self.effects.add(Reconnect(0.0, "new network connection from the OEM"))
        return None

    def _oem_slot(self) -> int:
        """A free slot; else the lowest-priority one that is not in use."""
        profiles = self.network_profiles
        free = [s for s in profiles.slots if profiles.get(s) is None]
        if free:
            return free[0]
        active = self.active.slot if self.active is not None else None
        ranked = profiles.priority()
        candidates = [s for s in reversed(ranked) if s != active] or ranked
        return candidates[0]

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

"""Network connection profiles (B09, A05): the CSMS connections the station may use, by slot.

Slots are the values of `OCPPCommCtrlr.NetworkConfigurationPriority`'s valuesList; the priority
variable orders them. The `[csms]` section of the configuration fills slot 1.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from bridge.station.device_model import DeviceModel, Rejection
from bridge.store import Store
from bridge.versions import PROFILE_VERSION

log = logging.getLogger(__name__)

PRIORITY = "OCPPCommCtrlr.NetworkConfigurationPriority"
SECURITY_PROFILE = "SecurityCtrlr.SecurityProfile"
CONFIG_SLOT = 1


def check_connection_data(data: dict[str, Any], current_profile: int) -> Rejection | None:
    """Is this NetworkConnectionProfileType usable by this station? None when it is."""
    profile = data["securityProfile"]
    if profile not in (0, 1, 2, 3):
        return Rejection("InvalidValue", "securityProfile must be 0, 1, 2 or 3")
    if profile < current_profile:
        # B09.FR.04 / A00.FR.005: the security profile of a connection is never lowered.
        return Rejection(
            "NoSecurityDowngrade",
            f"securityProfile {profile} is lower than the current {current_profile}",
        )
    if data["messageTimeout"] < 1:
        return Rejection("InvalidValue", "messageTimeout must be at least 1 second")
    if data["ocppTransport"] != "JSON":
        return Rejection("UnsupportedParam", "only the JSON transport (OCPP-J) is supported")
    if data["ocppVersion"] not in PROFILE_VERSION.values():
        versions = ", ".join(PROFILE_VERSION.values())
        return Rejection("UnsupportedParam", f"this station runs ocppVersion {versions}")
    url = data["ocppCsmsUrl"]
    if not url.isprintable() or any(c.isspace() for c in url):
        # urlsplit() silently drops tabs and newlines and keeps spaces in the host; such a URL
        # cannot be connected to (and a newline would forge log lines).
        return Rejection("InvalidURL", "ocppCsmsUrl must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return Rejection("InvalidURL", "ocppCsmsUrl is not a valid URL")
    del port
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        return Rejection("InvalidURL", "ocppCsmsUrl must be a ws:// or wss:// URL with a host")
    if parts.username or parts.password or parts.query or parts.fragment:
        return Rejection("InvalidURL", "ocppCsmsUrl must not carry credentials, query or fragment")
    if profile >= 2 and parts.scheme != "wss":
        return Rejection("InvalidURL", f"securityProfile {profile} needs a wss:// URL")
    if profile <= 1 and parts.scheme != "ws":
        return Rejection("InvalidURL", f"securityProfile {profile} uses a ws:// URL")
    return None


class NetworkProfiles:
    """The stored network connection profiles, one per configuration slot.

    `has_csms_root` and `has_client_certificate` tell whether the TLS prerequisites of security
    profiles 2 and 3 are met (A05.FR.02/03).
    """

    def __init__(
        self,
        store: Store,
        device_model: DeviceModel,
        has_csms_root: Callable[[], bool] = lambda: False,
        has_client_certificate: Callable[[], bool] = lambda: False,
    ) -> None:
        self._store = store
        self._device_model = device_model
        self._has_csms_root = has_csms_root
        self._has_client_certificate = has_client_certificate
        self._profiles: dict[int, dict[str, Any]] = {
            slot: json.loads(data) for slot, data in store.network_profiles().items()
        }
        device_model.add_validator(PRIORITY, self._check_priority)

    @property
    def slots(self) -> list[int]:
        """The configuration slots this station has (NetworkConfigurationPriority's valuesList)."""
        values = self._device_model[PRIORITY].definition.values_list or ()
        return [int(v) for v in values]

    def get(self, slot: int) -> dict[str, Any] | None:
        return self._profiles.get(slot)

    def priority(self) -> list[int]:
        """The slots in the order the station tries them; only slots that hold a profile."""
        text = self._device_model.value(PRIORITY) or ""
        return [int(s) for s in text.split(",") if s and int(s) in self._profiles]

    def current_security_profile(self) -> int:
        return self._device_model.int_value(SECURITY_PROFILE)

    def check(self, slot: int, data: dict[str, Any]) -> Rejection | None:
        """B09: may this profile be stored in this slot? The Rejection says why not.

        TLS prerequisites are not checked here but when the priority names the slot (A05; the
        CSMS may install the certificates in between, as OCTT TC_A_20/21 do).
        """
        if slot not in self.slots:  # B09.FR.05
            return Rejection(
                "InvalidConfSlot",
                f"configurationSlot must be one of {','.join(str(s) for s in self.slots)}",
            )
        return check_connection_data(data, self.current_security_profile())

    @contextmanager
    def assuming(self, slot: int, data: dict[str, Any]) -> Iterator[None]:
        """Checks inside the block see `data` in `slot`, as if it were saved (the configuration
        checks its presets against the slot-1 profile it is about to write)."""
        before = self._profiles.get(slot)
        self._profiles[slot] = data
        try:
            yield
        finally:
            if before is None:
                del self._profiles[slot]
            else:
                self._profiles[slot] = before

    def save(self, slot: int, data: dict[str, Any]) -> None:
        self._store.save_network_profile(slot, json.dumps(data, sort_keys=True))
        self._profiles[slot] = data
        log.info(
            "network profile slot %d: %s, security profile %d",
            slot,
            data["ocppCsmsUrl"],
            data["securityProfile"],
        )

    def confirm(self, slot: int) -> None:
        """A05.FR.06: connected and accepted on `slot`; a higher security profile becomes the
        floor, and the profiles below it are removed (also from the priority list)."""
        profile = self._profiles.get(slot)
        dm = self._device_model
        if profile is None or profile["securityProfile"] <= self.current_security_profile():
            return
        level = profile["securityProfile"]
        lower = [s for s, p in self._profiles.items() if p["securityProfile"] < level]
        priority = [s for s in (dm.value(PRIORITY) or "").split(",") if s and int(s) not in lower]
        with self._store.transaction():  # one atomic change
            self._store.delete_network_profiles(lower)
            dm.write(
                [
                    (dm[SECURITY_PROFILE], "Actual", str(level)),
                    (dm[PRIORITY], "Actual", ",".join(priority) or str(slot)),
                ]
            )
        for s in lower:
            del self._profiles[s]
        log.warning("security profile raised to %d; removed the profiles of slots %s", level, lower)

    def _check_priority(self, value: str) -> Rejection | None:
        """B10.FR.02, A05: the priority may only name slots with a usable profile."""
        current = self.current_security_profile()
        for slot in (int(s) for s in value.split(",") if s):
            profile = self._profiles.get(slot)
            if profile is None:
                return Rejection("InvalidValue", f"slot {slot} holds no network profile")
            level = profile["securityProfile"]
            if level < current:  # A00.FR.005: never lowered through OCPP
                return Rejection(
                    "NoSecurityDowngrade",
                    f"slot {slot} uses securityProfile {level}, lower than the current {current}",
                )
            if level > current and level >= 2 and not self._has_csms_root():  # A05.FR.02
                return Rejection("NoCert", f"slot {slot} needs TLS but no CSMS root is installed")
            if level > current and level == 3 and not self._has_client_certificate():  # A05.FR.03
                return Rejection(
                    "NoCert", f"slot {slot} needs a Charging Station certificate (profile 3)"
                )
        return None

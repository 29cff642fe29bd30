"""The OCPP versions, named in one place: wire names, schema folders, the spellings that differ.

A version the station runs is in `RUNNING`; the others are known (their schemas validate, their
actions are answered NotImplemented) until a codec and handlers for them exist.
"""

from __future__ import annotations

from typing import Final, Literal

OCPP16: Final = "ocpp1.6"
OCPP201: Final = "ocpp2.0.1"
OCPP21: Final = "ocpp2.1"

# As named on the wire: the WebSocket subprotocol and the MQTT `ocpp_version`.
KNOWN: Final = (OCPP16, OCPP201, OCPP21)
# The versions the station implements (and may offer to the CSMS).
RUNNING: Final = (OCPP201,)
RunningVersion = Literal["ocpp2.0.1"]

# The folder of each version's JSON schemas inside the `ocpp` package.
SCHEMA_DIRS: Final = {OCPP16: "v16", OCPP201: "v201", OCPP21: "v21"}

# NetworkConnectionProfileType.ocppVersion (SetNetworkProfile) of each running version.
PROFILE_VERSION: Final = {OCPP201: "OCPP20"}

# RPC framework error codes spelt differently by OCPP-J 1.6 (and by older 2.0.1 texts some peers
# still send), mapped to 2.0.1's names.
ERROR_CODE_ALIASES: Final = {
    "FormationViolation": "FormatViolation",
    "OccurenceConstraintViolation": "OccurrenceConstraintViolation",
}

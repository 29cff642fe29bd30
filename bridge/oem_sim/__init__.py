"""An OEM charger firmware simulator: the other side of the bridge's MQTT session API.

Usage (a broker, the demo CSMS and the bridge running, e.g. with scripts/quickstart):

  python -m bridge.oem_sim --config .quickstart/bridge.toml   # or: ocpp-bridge simulate ...
  python -m bridge.oem_sim --host 127.0.0.1 --port 1883 --charge-seconds 20 --power-kw 7.4
  python -m bridge.oem_sim --config bridge.toml --stop unplug --repeat 3
  python -m bridge.oem_sim --config bridge.toml --scenario idle   # only answer, until Ctrl-C

It answers every request of the bridge (josev/cs) as firmware would: device_model, all EVSEs
ready, a meter whose energy register rises while the EV charges (230 V per phase), stop_charging
(accepted: the contactor opens, the EV goes to B1), contactor, cable lock, availability, reset
and authorized tokens (accepted), delegated ocpp_message (CallError NotSupported, or the payload
given with --ocpp-result ACTION=JSON). The session scenario waits for the bridge's retained
service_status ready (and up to --wait-csms for its CSMS connection), then plays:
cp_status A1, B1 (plugged in), authorization request with --token, B2, C2, contactor closed,
--charge-seconds of charging, the same token again (the bridge ends the transaction and sends
stop_charging), or with --stop unplug the EV unplugged while charging, and cp_status A1.

Exit status: 0 the scenario completed (every authorization accepted and, unless
--no-expect-transaction, stop_charging after the stopping token and a transaction_status ended
for each session; idle: stopped by a signal); 1 it failed (a token not accepted, the bridge
silent for --timeout, the broker lost); 2 bad arguments or configuration, broker unreachable.

device_model: by default answered with the --config file's own values so that nothing changes
(not answered without --config, or when the file's CSMS connection cannot be said in an answer:
security profile 0, no URL; the bridge then boots from its file after [oem] startup_timeout);
--device-model demo answers a built-in station, --device-model off never answers.
"""

from typing import Final

# Kept here, light: `ocpp-bridge` builds the simulate options for every command it parses.
EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
DEFAULT_TOKEN: Final = "04A1B2C3D4E5F6"  # noqa: S105 - an RFID card UID (7 bytes, hex)
# OCPP IdTokenEnumType as the session API spells it (SESSION_API.md, token_type).
TOKEN_TYPES: Final = (
    *("ISO14443", "ISO15693", "key_code", "local", "mac_address", "no_authorization"),
    *("e_maid", "central"),
)

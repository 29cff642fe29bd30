"""The MQTT envelope, `{"id", "name", "type", "data"}`: parsed and built, no I/O."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any, Final

from bridge import jsontext
from bridge.rpc import CallError, CallResult
from bridge.schemas import is_uuid

# A request larger than this is not parsed at all (a certificate request is ~6 KiB).
MAX_MESSAGE_BYTES: Final = 256 * 1024
NAME_MAX: Final = 64


@dataclass(frozen=True, slots=True)
class Message:
    """A decoded JSON object with a usable id; everything else about it may still be wrong."""

    id: str
    body: dict[str, Any]

    @property
    def name(self) -> Any:
        return self.body.get("name")

    @property
    def type(self) -> Any:
        return self.body.get("type")


class Dropped(Exception):
    """A message that cannot be answered (not JSON, not an object, no usable id): log and drop."""


def decode(raw: bytes) -> Message:
    """Parse MQTT payload bytes; Dropped (with the reason) when there is nobody to answer."""
    if len(raw) > MAX_MESSAGE_BYTES:
        raise Dropped(f"message of {len(raw)} bytes exceeds {MAX_MESSAGE_BYTES}")
    try:
        body = jsontext.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise Dropped("not valid JSON") from None
    if not isinstance(body, dict):
        raise Dropped(f"a JSON {type(body).__name__}, not an object")
    message_id = body.get("id")
    if not is_uuid(message_id):
        shown = "missing" if message_id is None else f"not a UUID ({json.dumps(message_id)[:50]})"
        raise Dropped(f"id is {shown}")
    return Message(message_id, body)


def encode(body: dict[str, Any]) -> bytes:
    return jsontext.dumps(body).encode()


def response(message_id: str, name: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"id": message_id, "name": name, "type": "response", "data": data}


def update(name: str, data: dict[str, Any]) -> dict[str, Any]:
    """An update, with a fresh id."""
    return {"id": str(uuid.uuid4()), "name": name, "type": "update", "data": data}


def ocpp_data(result: CallResult | CallError, ocpp_version: str) -> dict[str, Any]:
    """`data` of an ocpp_message response, field names and order as the Josev API has them."""
    if isinstance(result, CallResult):
        return {
            "message_type": "CallResult",
            "ocpp_version": ocpp_version,
            "payload": result.payload,
        }
    return {
        "message_type": "CallError",
        "ocpp_version": ocpp_version,
        "error_code": result.code,
        "error_description": result.description,
        "error_details": result.details,
    }


def response_name(name: Any) -> str:
    """The name to answer under: the request's, when it is a sensible string."""
    if isinstance(name, str) and 0 < len(name) <= NAME_MAX:
        return name
    return "unknown"

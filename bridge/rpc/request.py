"""One request type for both doors: a CALL from the CSMS and an OEM `ocpp_message` are the same
`Request` to the dispatcher, and measure the same size."""

from __future__ import annotations

from typing import Any, Literal

from bridge import jsontext

Origin = Literal["csms", "oem"]


def call_size(message_id: str, action: str, payload: Any) -> int:
    """UTF-8 bytes of the CALL frame `[2, messageId, action, payload]` as compact JSON.

    What BytesPerMessage limits (B06.FR.17, B05): the same figure whichever door the request
    came through (an OEM envelope, or a CSMS frame with whatever whitespace its peer sent).
    """
    return jsontext.utf8_size([2, message_id, action, payload])


class Request:
    """A CALL to execute: from the CSMS (`origin="csms"`) or from the OEM's `ocpp_message`."""

    __slots__ = ("_size", "action", "message_id", "origin", "payload", "version")

    def __init__(
        self, origin: Origin, version: str, action: str, payload: Any, message_id: str = ""
    ) -> None:
        self.origin = origin
        self.version = version
        self.action = action
        self.payload = payload
        self.message_id = message_id
        self._size: int | None = None

    @property
    def size(self) -> int:
        """Bytes of the equivalent CALL frame (computed once, when a limit asks for it)."""
        if self._size is None:
            self._size = call_size(self.message_id, self.action, self.payload)
        return self._size

    def __repr__(self) -> str:
        return f"Request({self.origin}, {self.version}, {self.action}, id={self.message_id!r})"

"""JSON as RFC 8259 defines it, for everything that arrives from outside and all we send.

Python's `json.loads` also takes `NaN`, `Infinity` and numbers too large for a float (which become
`inf`): none of these is JSON, and a schema's `number` cannot hold them.
"""

from __future__ import annotations

import json
import math
from typing import Any


def _constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _number(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("a number too large for a double")
    return value


def dumps(value: Any) -> str:
    """Compact JSON, ASCII with \\u escapes: valid for every string, even a lone surrogate from the
    input. What both doors send, so also what a message's size is measured in."""
    return json.dumps(value, separators=(",", ":"))


def utf8_size(value: Any) -> int:
    """Bytes of `value` as compact JSON in UTF-8 (what a peer that does not escape non-ASCII
    sends); a lone surrogate from the input counts the 3 bytes it would take."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return len(text.encode("utf-8", "surrogatepass"))


def loads(text: str | bytes) -> Any:
    """Parse JSON text; ValueError (or UnicodeDecodeError, RecursionError) when it is not JSON."""
    return json.loads(text, parse_constant=_constant, parse_float=_number)

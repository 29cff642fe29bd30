"""IdTokenType as the local list and the authorization cache key it."""

from __future__ import annotations

from typing import Any

# The key of an IdTokenType: (idToken folded, type). The schema says "IdToken is case
# insensitive"; type is an IdTokenEnumType, exact. additionalInfo is not part of the identity.
TokenKey = tuple[str, str]


def token_key(id_token: dict[str, Any]) -> TokenKey:
    return str(id_token["idToken"]).casefold(), str(id_token["type"])

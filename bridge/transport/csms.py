"""The WebSocket to the CSMS: open one, with TLS and Basic auth as asked; nothing about OCPP.

Which URL, credentials and certificates to use, and when to try again, is the station's
connectivity policy (bridge.station.connectivity); this module only turns one attempt into an
open connection or a `ConnectFailure` with a sentence for the log.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from typing import Final

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidHandshake, InvalidStatus
from websockets.typing import Subprotocol

from bridge import __version__

MAX_FRAME: Final = 256 * 1024  # the largest frame we accept from the CSMS


# OpenSSL's reasons for a handshake the CSMS's TLS version or cipher suites made fail: the CSMS
# alerted protocol_version / handshake_failure (no suite, group or signature in common with the
# TLS 1.2+ ones we offer), or we refused the version it chose.
TLS_VERSION_REASONS: Final = frozenset(
    {"TLSV1_ALERT_PROTOCOL_VERSION", "UNSUPPORTED_PROTOCOL", "WRONG_SSL_VERSION"}
)
TLS_CIPHER_REASONS: Final = frozenset(
    {"SSLV3_ALERT_HANDSHAKE_FAILURE", "NO_SHARED_CIPHER", "NO_CIPHERS_AVAILABLE"}
)


class ConnectFailure(Exception):
    """One failed connection attempt, as a sentence for the log; `reason` classes the failures
    the station reports as security events: "unauthorized" (HTTP 401), "certificate" (the
    CSMS's certificate is not trusted), "tls_version", "tls_cipher_suite"; else ""."""

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason


def _tls_reason(error: ssl.SSLError) -> str:
    if error.reason in TLS_VERSION_REASONS:
        return "tls_version"
    if error.reason in TLS_CIPHER_REASONS:
        return "tls_cipher_suite"
    return ""


def tls_context(
    ca_file: str, roots: Sequence[bytes], client_cert: str = "", client_key: str = ""
) -> ssl.SSLContext:
    """A client context that trusts `ca_file` and the DER `roots` only (no system store), with a
    client certificate when given (security profile 3); ConnectFailure when it cannot be made."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    # A00.FR.313 (profile 2), A00.FR.416 (profile 3): TLS 1.2 or higher
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    try:
        if ca_file:
            context.load_verify_locations(cafile=ca_file)
        for der in roots:
            context.load_verify_locations(cadata=der)
    except (OSError, ssl.SSLError) as e:
        raise ConnectFailure(f"cannot load the CSMS root certificates: {e}") from None
    if client_cert:
        try:
            context.load_cert_chain(client_cert, client_key)
        except (OSError, ssl.SSLError) as e:
            raise ConnectFailure(f"cannot load the client certificate: {e}") from None
    return context


async def open_websocket(
    url: str,
    subprotocols: Sequence[str],
    *,
    authorization: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
    ping_interval: int = 0,
    open_timeout: float = 30,
    identity: str = "",
) -> ClientConnection:
    """Open the WebSocket; refuse it when the CSMS selects none of `subprotocols`.

    `identity` only names the station in the sentence of a refused login."""
    headers = {"Authorization": authorization} if authorization else {}
    try:
        websocket = await connect(
            url,
            subprotocols=[Subprotocol(v) for v in subprotocols],
            additional_headers=headers,
            ssl=ssl_context,
            ping_interval=ping_interval or None,
            ping_timeout=ping_interval or None,
            open_timeout=open_timeout,
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
                f"the CSMS refused the credentials of {identity or url} (HTTP 401)",
                "unauthorized",
            ) from None
        raise ConnectFailure(f"the CSMS answered the upgrade with HTTP {code}") from None
    except ssl.SSLCertVerificationError as e:
        raise ConnectFailure(
            f"TLS: the CSMS certificate is not trusted ({e.verify_message})", "certificate"
        ) from None
    except ssl.SSLError as e:
        raise ConnectFailure(f"TLS handshake failed ({e.reason or e})", _tls_reason(e)) from None
    except TimeoutError:  # an OSError too: before it
        raise ConnectFailure(f"no WebSocket upgrade from {url} within {open_timeout} s") from None
    except (OSError, InvalidHandshake) as e:
        raise ConnectFailure(f"cannot reach {url}: {e}") from None
    if websocket.subprotocol is None:
        await websocket.close(1002, "no OCPP subprotocol selected")
        raise ConnectFailure(
            "the CSMS selected no subprotocol (offered "
            + ", ".join(subprotocols)
            + "); refusing to run an OCPP session"
        )
    return websocket

"""Authorization functional blocks C (cache: C10-C15) and D (local list: D01, D02): the CSMS's
SendLocalList, GetLocalListVersion and ClearCache, and what the station knows about a token
without asking the CSMS.

Sans-I/O: the transaction code asks `local_info` / `offline_info` and sends the Authorize itself;
it hands every IdTokenInfo the CSMS returns to `remember`. The list has priority over the cache
and a token in the list is never cached (OCPP 1.6 3.5.3 states it: "Identifiers known in the
Local Authorization List SHALL NOT be added to the Authorization Cache"; 2.0.1 looks in the list
first, C14, and libocpp keeps both rules).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal

from bridge.rpc import OcppError
from bridge.rpc.request import Request
from bridge.station.auth_cache import POLICIES, AuthCache
from bridge.station.device_model import DeviceModel, Rejection
from bridge.station.id_token import TokenKey, token_key
from bridge.station.local_list import LocalList, OutOfStorage
from bridge.store import Store

LIST: Final = "LocalAuthListCtrlr"
CACHE: Final = "AuthCacheCtrlr"
# C02.FR.03 (NoAuthorization: a start button) and C03.FR.02 (Central: a token the CSMS made,
# C05) are never cached; these numbers as libocpp and the SAP simulator cite them.
NOT_CACHED: Final = frozenset({"NoAuthorization", "Central"})


@dataclass(frozen=True, slots=True)
class Known:
    """What the station knows about a token locally, and where from."""

    info: dict[str, Any]  # IdTokenInfoType
    source: Literal["LocalList", "Cache"]


def _limit(device_model: DeviceModel, key: str) -> int | None:
    limit = device_model[key].definition.max_limit
    return None if limit is None else int(limit)


class Authorization:
    def __init__(
        self, store: Store, device_model: DeviceModel, wall: Callable[[], float] = time.time
    ) -> None:
        self._store = store
        self._dm = dm = device_model
        self.local_list = LocalList(
            store, _limit(dm, f"{LIST}.Entries"), _limit(dm, f"{LIST}.Storage")
        )
        self.cache = AuthCache(store, wall, _limit(dm, f"{CACHE}.Storage"))
        # D01.FR.12: Entries is the number of IdTokens in the list.
        dm.bind(f"{LIST}.Entries", lambda: str(self.local_list.entries()))
        dm.bind(f"{LIST}.Storage", lambda: str(self.local_list.size()))
        dm.bind(f"{CACHE}.Storage", lambda: str(self.cache.size()))

    def _enabled(self, ctrlr: str) -> bool:
        return self._dm.bool_value(f"{ctrlr}.Enabled")

    def _lifetime(self) -> int:
        return self._dm.int_value(f"{CACHE}.LifeTime")

    # --- D01: SendLocalList

    def send_local_list(self, request: Request) -> dict[str, Any]:
        payload = request.payload
        items: list[dict[str, Any]] = payload.get("localAuthorizationList", [])
        self._check_message_limits(items, request)
        if not self._enabled(LIST):
            return Rejection("NotEnabled", f"{LIST}.Enabled is false").answer("Failed")
        version, update_type = payload["versionNumber"], payload["updateType"]
        refused = self.local_list.refusal(version, update_type, items)
        if refused is not None:
            status, why = refused
            return why.answer(status) if why else {"status": status}
        try:
            with self._store.transaction():  # one transaction: all of it or nothing
                added = self.local_list.apply(version, update_type, items)
                self.cache.forget(added)  # the list has priority: no copy in the cache
        except OutOfStorage as e:
            return Rejection("OutOfStorage", str(e)).answer("Failed")
        return {"status": "Accepted"}

    def _check_message_limits(self, items: list[dict[str, Any]], request: Request) -> None:
        """D01.FR.11: the CSMS splits a list to fit ItemsPerMessage and BytesPerMessage; a
        request over them is refused with a CALLERROR, as B06.FR.16/17 answer GetVariables."""
        items_limit = self._dm.int_value(f"{LIST}.ItemsPerMessage")
        if items_limit and len(items) > items_limit:
            raise OcppError(
                "OccurrenceConstraintViolation",
                f"SendLocalList carries {len(items)} entries; {LIST}.ItemsPerMessage is "
                f"{items_limit}",
                {"limit": items_limit},
            )
        bytes_limit = self._dm.int_value(f"{LIST}.BytesPerMessage")
        if bytes_limit and request.size > bytes_limit:
            raise OcppError(
                "FormatViolation",
                f"SendLocalList is {request.size} bytes; {LIST}.BytesPerMessage is {bytes_limit}",
                {"limit": bytes_limit},
            )

    # --- D02: GetLocalListVersion

    def get_local_list_version(self, request: Request) -> dict[str, Any]:
        # D02.FR.01; D02.FR.02: 0 before the first SendLocalList; D02.FR.03: 0 while disabled.
        version = self.local_list.version() if self._enabled(LIST) else 0
        return {"versionNumber": version}

    # --- C11: ClearCache

    def clear_cache(self, request: Request) -> dict[str, Any]:
        if not self._enabled(CACHE):  # C11.FR.04
            return Rejection("NotEnabled", f"{CACHE}.Enabled is false").answer("Rejected")
        self.cache.clear()  # C11.FR.01; the local list stays
        return {"status": "Accepted"}

    # --- what the station knows about a token

    def known(self, id_token: dict[str, Any], touch: bool = True) -> Known | None:
        """The local list's entry (when LocalAuthListCtrlr.Enabled) before the cache's (when
        AuthCacheCtrlr.Enabled and not expired). `touch`: count this as a use of the cache
        entry (LRU, LifeTime)."""
        key = token_key(id_token)
        if self._enabled(LIST):
            info = self.local_list.get(key)
            if info is not None:
                return Known(info, "LocalList")
        if self._enabled(CACHE):
            info = self.cache.get(key, self._lifetime(), touch)
            if info is not None:
                return Known(info, "Cache")
        return None

    def local_info(self, id_token: dict[str, Any]) -> dict[str, Any] | None:
        """The IdTokenInfoType known locally (list first, then cache), or None."""
        known = self.known(id_token)
        return known.info if known else None

    def post_authorize(self, known: Known) -> bool:
        """Online, for a locally known token that is not Accepted: ask the CSMS (C10.FR.03 and
        C12.FR.05 for the cache, C14.FR.03 for the list) unless <Ctrlr>.DisablePostAuthorize.
        An Accepted one starts without AuthorizeRequest (C12.FR.02, C14.FR.02)."""
        if known.info.get("status") == "Accepted":
            return False
        ctrlr = LIST if known.source == "LocalList" else CACHE
        return not self._dm.bool_value(f"{ctrlr}.DisablePostAuthorize")

    def offline_info(self, id_token: dict[str, Any]) -> dict[str, Any] | None:
        """The IdTokenInfo to go by when the CSMS cannot be asked (offline, or Authorize timed
        out); None: refuse the token."""
        known = self.known(id_token)
        if known is not None and known.info.get("status") != "Accepted":
            # C13.FR.01, C13.FR.04 (errata): a token known as not Accepted is refused offline,
            # also with OfflineTxForUnknownIdEnabled (and whatever LocalAuthorizeOffline says).
            return known.info
        if known is not None and self._dm.bool_value("AuthCtrlr.LocalAuthorizeOffline"):
            return known.info  # C13.FR.02/03 (list), C12 (cache): LocalAuthorizeOffline
        # Unknown, or known but LocalAuthorizeOffline forbids going by it: C15.FR.01.
        if self._dm.bool_value("AuthCtrlr.OfflineTxForUnknownIdEnabled"):
            return {"status": "Accepted"}
        return None

    # --- C10: store what the CSMS said

    def remember(self, id_token: dict[str, Any], id_token_info: dict[str, Any]) -> None:
        """C10.FR.01 (AuthorizeResponse), C10.FR.04/05 (TransactionEventResponse): store or
        refresh the IdTokenInfo the CSMS gave, whatever its status, when AuthCacheCtrlr.Enabled.
        Never for NoAuthorization or Central tokens, nor for a token in the enabled local list."""
        if not self._enabled(CACHE) or id_token["type"] in NOT_CACHED:
            return
        key = token_key(id_token)
        if self._enabled(LIST) and self.local_list.get(key) is not None:
            return
        policy = self._dm.value(f"{CACHE}.Policy") or "LRU"
        self.cache.put(key, dict(id_token_info), policy, self._lifetime())

    # --- C09: tokens of one group

    def same_group(self, a: dict[str, Any], b: dict[str, Any]) -> bool:
        """Do two tokens belong together (C09): the same token, or both known locally with the
        same groupIdToken?"""
        if token_key(a) == token_key(b):
            return True
        group_a, group_b = self._group(a), self._group(b)
        return group_a is not None and group_a == group_b

    def _group(self, id_token: dict[str, Any]) -> TokenKey | None:
        known = self.known(id_token, touch=False)
        group = known.info.get("groupIdToken") if known else None
        return token_key(group) if isinstance(group, dict) else None


__all__ = ["POLICIES", "Authorization", "Known"]

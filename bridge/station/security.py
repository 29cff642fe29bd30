"""Security functional block: installed certificates (M03, M04, M05) and the BasicAuthPassword rule.

The X.509 work lives in `certificates`, imported on the first certificate operation (it pulls in
`cryptography`, about 11 MB of RSS, measured by bench/mqtt_roundtrip.py): a station without
certificates never loads it.
"""

from __future__ import annotations

import logging
import re
from functools import cached_property
from types import ModuleType
from typing import Any, Final

from bridge.rpc import OcppError
from bridge.rpc.request import Request
from bridge.station.device_model import DeviceModel, Rejection
from bridge.store import Store, StoredCertificate

log = logging.getLogger(__name__)

HASH_ALGORITHMS: Final = ("SHA256", "SHA384", "SHA512")
REPORTED_HASH: Final = "SHA256"

# InstallCertificateUseEnumType: the root certificates a CSMS installs with InstallCertificate.
ROOT_TYPES: Final = (
    "V2GRootCertificate",
    "MORootCertificate",
    "CSMSRootCertificate",
    "ManufacturerRootCertificate",
)

# OCPP 2.0.1 passwordString: 16 to 40 characters (A00.FR.204-206 in OCPP's security part).
PASSWORD_PATTERN: Final = re.compile(r"[A-Za-z0-9*\-_=:+|@.]{16,40}")


def check_password(value: str) -> Rejection | None:
    if not PASSWORD_PATTERN.fullmatch(value):
        return Rejection(
            "InvalidValue", "must be 16 to 40 characters from A-Z a-z 0-9 * - _ = : + | @ ."
        )
    return None


def _x509() -> ModuleType:
    from bridge.station import certificates

    return certificates


class Installed:
    """One stored certificate; parsed only when its hash data is needed."""

    def __init__(self, row: StoredCertificate, issuer: Installed | None) -> None:
        self.row = row
        self._issuer = issuer  # the parent for a child in a chain; None for a root

    @cached_property
    def certificate(self) -> Any:
        return _x509().load_der(self.row.der)

    def hash_data(self, algorithm: str = REPORTED_HASH) -> dict[str, str]:
        issuer = self._issuer.certificate if self._issuer else self.certificate
        data: dict[str, str] = _x509().hash_data(self.certificate, issuer, algorithm)
        return data


class CertificateStore:
    """The certificates installed on the station, kept in the store."""

    def __init__(self, store: Store, device_model: DeviceModel) -> None:
        self._store = store
        self._device_model = device_model
        self._installed: list[Installed] = []
        self._reload()
        device_model.bind("SecurityCtrlr.CertificateEntries", lambda: str(len(self._installed)))

    def _reload(self) -> None:
        by_id: dict[int, Installed] = {}
        for row in self._store.certificates():  # parents come before their children (by id)
            by_id[row.id] = Installed(row, by_id.get(row.parent_id) if row.parent_id else None)
        self._installed = list(by_id.values())

    def installed(self, certificate_type: str | None = None) -> list[Installed]:
        return [
            i
            for i in self._installed
            if certificate_type is None or i.row.certificate_type == certificate_type
        ]

    def trust_anchors(self, certificate_type: str = "CSMSRootCertificate") -> list[bytes]:
        """DER of the installed roots of one type (e.g. to verify the CSMS on the next TLS link)."""
        return [i.row.der for i in self.installed(certificate_type) if i.row.parent_id is None]

    # M05: InstallCertificate

    def install(self, certificate_type: str, pem: str) -> tuple[str, Rejection | None]:
        """Install a root certificate: (status, why) with status Accepted, Rejected or Failed."""
        x509 = _x509()
        certificate, problem = x509.parse_root(pem)  # M05.FR.07
        if problem is not None:
            return "Rejected", problem
        der = x509.der(certificate)
        if any(i.row.der == der for i in self.installed(certificate_type)):
            return "Accepted", None  # M05.FR.17: already installed, nothing to replace
        capacity = self._device_model["SecurityCtrlr.CertificateEntries"].definition.max_limit
        if capacity is not None and len(self._installed) >= capacity:  # M05.FR.06
            return "Rejected", Rejection("OutOfStorage", f"at most {capacity} certificates fit")
        try:
            self._store.add_certificates(certificate_type, [der])
        except Exception:
            log.exception("storing a %s failed", certificate_type)
            return "Failed", Rejection("OutOfStorage", "the certificate could not be stored")
        self._reload()
        log.info("installed %s %s", certificate_type, x509.describe(certificate))
        return "Accepted", None

    # M03: GetInstalledCertificateIds

    def hash_data_chains(self, certificate_types: list[str] | None) -> list[dict[str, Any]]:
        """CertificateHashDataChainType for every installed certificate of the given types."""
        chains = []
        for entry in self._installed:
            if entry.row.parent_id is not None:
                continue
            kind = entry.row.certificate_type
            if certificate_types and kind not in certificate_types:
                continue
            chain: dict[str, Any] = {
                "certificateType": kind,
                "certificateHashData": entry.hash_data(),
            }
            children = [c.hash_data() for c in self._installed if c.row.parent_id == entry.row.id]
            if children:
                chain["childCertificateHashData"] = children
            chains.append(chain)
        return chains

    # M04: DeleteCertificate

    def delete(self, wanted: dict[str, Any]) -> str:
        """Delete the certificate with this hash data: Accepted, NotFound or Failed."""
        algorithm = wanted["hashAlgorithm"]
        for entry in self._installed:
            if _x509().same_hash_data(entry.hash_data(algorithm), wanted):
                try:
                    self._store.delete_certificate(entry.row.id)
                except Exception:
                    log.exception("deleting certificate %d failed", entry.row.id)
                    return "Failed"
                self._reload()
                log.info(
                    "deleted %s (serial %s)", entry.row.certificate_type, wanted["serialNumber"]
                )
                return "Accepted"
        return "NotFound"


class Security:
    """Handlers of the certificate management use cases, over a CertificateStore."""

    def __init__(self, certificates: CertificateStore) -> None:
        self.certificates = certificates

    def install_certificate(self, request: Request) -> dict[str, Any]:
        payload = request.payload
        status, why = self.certificates.install(payload["certificateType"], payload["certificate"])
        return {"status": status} if why is None else why.answer(status)

    def get_installed_certificate_ids(self, request: Request) -> dict[str, Any]:
        chains = self.certificates.hash_data_chains(request.payload.get("certificateType"))
        if not chains:
            return {"status": "NotFound"}
        return {"status": "Accepted", "certificateHashDataChain": chains}

    def delete_certificate(self, request: Request) -> dict[str, Any]:
        wanted = request.payload["certificateHashData"]
        if wanted["hashAlgorithm"] not in HASH_ALGORITHMS:  # pragma: no cover - schema enum
            raise OcppError("PropertyConstraintViolation", "unknown hashAlgorithm")
        return {"status": self.certificates.delete(wanted)}

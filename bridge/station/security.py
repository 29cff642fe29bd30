"""Security functional block: installed certificates (M03, M04, M05) and the BasicAuthPassword rule.

CertificateHashData is the OCSP CertID of RFC 6960 (hash of the issuer's DER name, hash of the
issuer's public key bits, serial number), so `cryptography`'s OCSP request builder computes it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp

from bridge.rpc import OcppError
from bridge.station.device_model import DeviceModel, Rejection
from bridge.store import Store, StoredCertificate

log = logging.getLogger(__name__)

HASH_ALGORITHMS: Final[dict[str, Callable[[], hashes.HashAlgorithm]]] = {
    "SHA256": hashes.SHA256,
    "SHA384": hashes.SHA384,
    "SHA512": hashes.SHA512,
}
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


def hash_data(
    certificate: x509.Certificate, issuer: x509.Certificate, algorithm: str = REPORTED_HASH
) -> dict[str, str]:
    """CertificateHashDataType of `certificate`, issued by `issuer`."""
    request = (
        ocsp.OCSPRequestBuilder()
        .add_certificate(certificate, issuer, HASH_ALGORITHMS[algorithm]())
        .build()
    )
    return {
        "hashAlgorithm": algorithm,
        "issuerNameHash": request.issuer_name_hash.hex(),
        "issuerKeyHash": request.issuer_key_hash.hex(),
        # Hexadecimal without leading zeroes and without a 0x prefix.
        "serialNumber": format(certificate.serial_number, "x"),
    }


def _same_hash_data(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return bool(
        a["issuerNameHash"].lower() == b["issuerNameHash"].lower()
        and a["issuerKeyHash"].lower() == b["issuerKeyHash"].lower()
        and a["serialNumber"].lower().lstrip("0") == b["serialNumber"].lower().lstrip("0")
    )


@dataclass(frozen=True, slots=True)
class Installed:
    row: StoredCertificate
    certificate: x509.Certificate
    issuer: x509.Certificate  # itself for a root, the parent for a child in a chain


class CertificateStore:
    """The certificates installed on the station, kept in the store."""

    def __init__(self, store: Store, device_model: DeviceModel) -> None:
        self._store = store
        self._device_model = device_model
        self._installed: list[Installed] = []
        self._reload()
        device_model.bind("SecurityCtrlr.CertificateEntries", lambda: str(len(self._installed)))

    def _reload(self) -> None:
        rows = self._store.certificates()
        loaded = {row.id: x509.load_der_x509_certificate(row.der) for row in rows}
        self._installed = [
            Installed(
                row, loaded[row.id], loaded[row.parent_id] if row.parent_id else loaded[row.id]
            )
            for row in rows
        ]

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
        try:
            certificates = x509.load_pem_x509_certificates(pem.encode())
        except ValueError:
            return "Rejected", Rejection(
                "InvalidCertificate", "not a PEM encoded X.509 certificate"
            )
        if len(certificates) != 1:
            return "Rejected", Rejection("InvalidCertificate", "expected exactly one certificate")
        (certificate,) = certificates
        try:
            problem = _check_root(certificate)
        except (ValueError, UnsupportedAlgorithm, x509.DuplicateExtension):
            # Parsed lazily: a malformed extension or an unknown key algorithm shows up only here.
            problem = Rejection("InvalidCertificate", "the certificate is malformed or unsupported")
        if problem is not None:
            return "Rejected", problem
        der = certificate.public_bytes(Encoding.DER)
        if any(i.row.der == der for i in self.installed(certificate_type)):
            return "Accepted", None  # M05.FR.17: already installed, nothing to replace
        capacity = self._device_model["SecurityCtrlr.CertificateEntries"].definition.max_limit
        if capacity is not None and len(self._installed) >= capacity:  # M05.FR.06
            return "Rejected", Rejection("OutOfStorage", f"at most {capacity} certificates fit")
        try:
            self._store.add_certificates(certificate_type, [der])
        except Exception:
            log.exception("storing a %s failed", certificate_type)
            return "Failed", Rejection(
                "OutOfStorage", "the certificate could not be stored"
            )  # FR.03
        self._reload()
        log.info(
            "installed %s %s (serial %x)",
            certificate_type,
            certificate.subject.rfc4514_string()[:120],
            certificate.serial_number,
        )
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
                "certificateHashData": hash_data(entry.certificate, entry.issuer),
            }
            children = [
                hash_data(child.certificate, child.issuer)
                for child in self._installed
                if child.row.parent_id == entry.row.id
            ]
            if children:
                chain["childCertificateHashData"] = children
            chains.append(chain)
        return chains

    # M04: DeleteCertificate

    def delete(self, wanted: dict[str, Any]) -> str:
        """Delete the certificate with this hash data: Accepted, NotFound or Failed."""
        algorithm = wanted["hashAlgorithm"]
        for entry in self._installed:
            if _same_hash_data(hash_data(entry.certificate, entry.issuer, algorithm), wanted):
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


def _check_root(certificate: x509.Certificate) -> Rejection | None:
    """M05.FR.07: an invalid certificate is Rejected. OCPP leaves "invalid" open; a root here must
    be in its validity period, have a strong enough key, be a CA and be self-signed."""
    now = datetime.now(UTC)
    # RFC 5280 4.1.2.2: positive, at most 20 octets; CertificateHashData's serialNumber holds 40
    # hex digits, so a longer one would break every GetInstalledCertificateIds response.
    if not 0 < certificate.serial_number < 2**160:
        return Rejection("InvalidCertificate", "the serial number must be positive, 20 octets")
    if certificate.not_valid_after_utc < now:
        return Rejection("InvalidCertificate", "the certificate has expired")
    if certificate.not_valid_before_utc > now:
        return Rejection("InvalidCertificate", "the certificate is not valid yet")
    key = certificate.public_key()
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < 2048:  # A00.FR.502
        return Rejection("InvalidCertificate", "an RSA key must have at least 2048 bits")
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.key_size < 224:  # A00.FR.503
        return Rejection("InvalidCertificate", "an EC key must have at least 224 bits")
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        return Rejection("InvalidCertificate", "a root certificate must be a CA certificate")
    try:
        certificate.verify_directly_issued_by(certificate)
    except (ValueError, TypeError, InvalidSignature):
        return Rejection("InvalidCertificate", "a root certificate must be self-signed")
    return None


class Security:
    """Handlers of the certificate management use cases, over a CertificateStore."""

    def __init__(self, certificates: CertificateStore) -> None:
        self.certificates = certificates

    def install_certificate(self, payload: dict[str, Any]) -> dict[str, Any]:
        status, why = self.certificates.install(payload["certificateType"], payload["certificate"])
        return _with_status(status, why)

    def get_installed_certificate_ids(self, payload: dict[str, Any]) -> dict[str, Any]:
        chains = self.certificates.hash_data_chains(payload.get("certificateType"))
        if not chains:
            return {"status": "NotFound"}
        return {"status": "Accepted", "certificateHashDataChain": chains}

    def delete_certificate(self, payload: dict[str, Any]) -> dict[str, Any]:
        wanted = payload["certificateHashData"]
        if wanted["hashAlgorithm"] not in HASH_ALGORITHMS:  # pragma: no cover - schema enum
            raise OcppError("PropertyConstraintViolation", "unknown hashAlgorithm")
        return {"status": self.certificates.delete(wanted)}


def _with_status(status: str, why: Rejection | None) -> dict[str, Any]:
    out: dict[str, Any] = {"status": status}
    if why is not None:
        out["statusInfo"] = {"reasonCode": why.reason, "additionalInfo": why.info}
    return out

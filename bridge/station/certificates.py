"""X.509 for the security block: parsing, checks and OCPP's CertificateHashData.

The only module that imports `cryptography` (about 11 MB of RSS): `security` loads it on the
first certificate operation, so a station without certificates never pays for it.

CertificateHashData is the OCSP CertID of RFC 6960 (hash of the issuer's DER name, hash of the
issuer's public key bits, serial number), so `cryptography`'s OCSP request builder computes it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp

from bridge.station.device_model import Rejection

Certificate = x509.Certificate

HASHES: Final[dict[str, Callable[[], hashes.HashAlgorithm]]] = {
    "SHA256": hashes.SHA256,
    "SHA384": hashes.SHA384,
    "SHA512": hashes.SHA512,
}


def load_der(der: bytes) -> Certificate:
    return x509.load_der_x509_certificate(der)


def der(certificate: Certificate) -> bytes:
    return certificate.public_bytes(Encoding.DER)


def parse_root(pem: str) -> tuple[Certificate | None, Rejection | None]:
    """One PEM root certificate, checked (M05.FR.07); or why it is Rejected."""
    try:
        certificates = x509.load_pem_x509_certificates(pem.encode())
    except ValueError:
        return None, Rejection("InvalidCertificate", "not a PEM encoded X.509 certificate")
    if len(certificates) != 1:
        return None, Rejection("InvalidCertificate", "expected exactly one certificate")
    (certificate,) = certificates
    try:
        problem = _check_root(certificate)
    except (ValueError, UnsupportedAlgorithm, x509.DuplicateExtension):
        # Parsed lazily: a malformed extension or an unknown key algorithm shows up only here.
        problem = Rejection("InvalidCertificate", "the certificate is malformed or unsupported")
    return (None, problem) if problem else (certificate, None)


def _check_root(certificate: Certificate) -> Rejection | None:
    """OCPP leaves "invalid" open; a root here must have a sane serial number, be in its
    validity period, have an RSA or ECDSA key of OCPP's strength, be a CA (or a version 1
    certificate) and be self-signed."""
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
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:  # A00.FR.502
            return Rejection("InvalidCertificate", "an RSA key must have at least 2048 bits")
    elif isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.key_size < 224:  # A00.FR.503
            return Rejection("InvalidCertificate", "an EC key must have at least 224 bits")
    else:
        return Rejection("InvalidCertificate", "the key must be RSA or ECDSA")
    problem = _check_ca(certificate)
    if problem is not None:
        return problem
    try:
        certificate.verify_directly_issued_by(certificate)
    except (ValueError, TypeError, InvalidSignature):
        return Rejection("InvalidCertificate", "a root certificate must be self-signed")
    return None


def _check_ca(certificate: Certificate) -> Rejection | None:
    """A v3 root must say it is a CA (BasicConstraints cA true). A version 1 certificate has no
    extensions to say so: RFC 5280 §6.1.1 keeps trust anchor information outside the path, and
    OpenSSL (the station's TLS stack) accepts a self-signed v1 certificate as a trust anchor, so
    one is accepted as a root of any type (self-signed is checked next)."""
    extensions = certificate.extensions
    if certificate.version is x509.Version.v1:
        if len(extensions):  # RFC 5280 §4.1.2.9: extensions exist only in version 3
            return Rejection(
                "InvalidCertificate", "a version 1 certificate must not carry extensions"
            )
        return None
    try:
        constraints = extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        return Rejection("InvalidCertificate", "a root certificate must be a CA certificate")
    return None


def hash_data(certificate: Certificate, issuer: Certificate, algorithm: str) -> dict[str, str]:
    """CertificateHashDataType of `certificate`, issued by `issuer`."""
    request = (
        ocsp.OCSPRequestBuilder().add_certificate(certificate, issuer, HASHES[algorithm]()).build()
    )
    return {
        "hashAlgorithm": algorithm,
        "issuerNameHash": request.issuer_name_hash.hex(),
        "issuerKeyHash": request.issuer_key_hash.hex(),
        # Hexadecimal without leading zeroes and without a 0x prefix.
        "serialNumber": format(certificate.serial_number, "x"),
    }


def same_hash_data(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Hex compares case-insensitively; serial numbers without leading zeros."""
    return bool(
        a["issuerNameHash"].lower() == b["issuerNameHash"].lower()
        and a["issuerKeyHash"].lower() == b["issuerKeyHash"].lower()
        and a["serialNumber"].lower().lstrip("0") == b["serialNumber"].lower().lstrip("0")
    )


def describe(certificate: Certificate) -> str:
    """Subject and serial for the log, without control characters (a CN may carry newlines)."""
    subject = certificate.subject.rfc4514_string()[:120]
    printable = "".join(c if c.isprintable() else "?" for c in subject)
    return f"{printable} (serial {certificate.serial_number:x})"

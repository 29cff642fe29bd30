"""M03 GetInstalledCertificateIds, M04 DeleteCertificate, M05 InstallCertificate, at station level.

Every request goes through the station's one dispatcher, as both doors (CSMS and OEM) send it.
The certificates are real, generated here; the expected CertificateHashData is computed in this
file from the certificate's DER bytes, independently of the station's implementation.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import ssl
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from bridge.rpc import CallError, CallResult
from bridge.rpc.request import Request
from bridge.station import Station
from tests.conftest import make_station, write_config

ROOT_TYPES = (
    "V2GRootCertificate",
    "MORootCertificate",
    "CSMSRootCertificate",
    "ManufacturerRootCertificate",
)
HASHES: dict[str, Callable[[bytes], Any]] = {
    "SHA256": hashlib.sha256,
    "SHA384": hashlib.sha384,
    "SHA512": hashlib.sha512,
}
NOW = datetime.now(UTC)
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

# --- certificates


def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@cache
def rsa_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "NL"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Test PKI"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def make_cert(
    common_name: str,
    key: PrivateKey | None = None,
    *,
    issuer: tuple[x509.Certificate, PrivateKey] | None = None,
    ca: bool | None = True,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    serial: int | None = None,
) -> tuple[x509.Certificate, PrivateKey]:
    """A certificate and its key: self-signed unless `issuer` (certificate, key) signs it.

    `ca=None` leaves out BasicConstraints altogether.
    """
    key = key or ec_key()
    issuer_name, signing_key = (
        (issuer[0].subject, issuer[1]) if issuer else (name(common_name), key)
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(name(common_name))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(serial if serial is not None else x509.random_serial_number())
        .not_valid_before(not_before or NOW - timedelta(days=1))
        .not_valid_after(not_after or NOW + timedelta(days=3650))
    )
    if ca is not None:
        builder = builder.add_extension(x509.BasicConstraints(ca=ca, path_length=None), True)
    return builder.sign(signing_key, hashes.SHA256()), key


def pem(*certificates: x509.Certificate) -> str:
    return "".join(c.public_bytes(Encoding.PEM).decode() for c in certificates)


def der(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(Encoding.DER)


# --- a minimal DER reader/writer: the test's own view of the certificate bytes


def _element(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, start of the value, end of the element) of the DER element at `pos`."""
    tag, length = data[pos], data[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    return tag, pos, pos + length


def _children(value: bytes) -> list[bytes]:
    """The complete DER elements (tag, length, value) inside a constructed value."""
    out, pos = [], 0
    while pos < len(value):
        _, _, end = _element(value, pos)
        out.append(value[pos:end])
        pos = end
    return out


def _value(element: bytes) -> bytes:
    _, start, end = _element(element, 0)
    return element[start:end]


def _tlv(tag: int, value: bytes) -> bytes:
    n = len(value)
    if n < 0x80:
        return bytes([tag, n]) + value
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + value


@dataclass(frozen=True)
class Tbs:
    """The fields of a TBSCertificate that OCPP's CertificateHashData is computed from."""

    serial: bytes  # the INTEGER's content octets
    issuer: bytes  # the issuer Name, DER, tag and length included
    subject: bytes
    public_key_bits: bytes  # subjectPublicKey BIT STRING contents after the unused-bits octet
    fields: list[bytes]  # every TBSCertificate element, in order


def tbs_of(certificate_der: bytes) -> Tbs:
    tbs_element = _children(_value(certificate_der))[0]
    fields = _children(_value(tbs_element))
    i = 1 if fields[0][0] == 0xA0 else 0  # explicit [0] version present
    serial, _, issuer, _, subject, spki = fields[i : i + 6]
    assert (serial[0], issuer[0], spki[0]) == (0x02, 0x30, 0x30)
    bit_string = _children(_value(spki))[1]
    assert bit_string[0] == 0x03
    assert _value(bit_string)[0] == 0, "unused bits must be 0"
    return Tbs(_value(serial), issuer, subject, _value(bit_string)[1:], fields)


def expected_hash_data(
    certificate: x509.Certificate | bytes,
    issuer: x509.Certificate | bytes,
    algorithm: str = "SHA256",
) -> dict[str, str]:
    """CertificateHashDataType as OCPP 2.0.1 defines it, from the raw DER."""
    cert = tbs_of(certificate if isinstance(certificate, bytes) else der(certificate))
    parent = tbs_of(issuer if isinstance(issuer, bytes) else der(issuer))
    digest = HASHES[algorithm]
    return {
        "hashAlgorithm": algorithm,
        "issuerNameHash": digest(cert.issuer).hexdigest(),
        "issuerKeyHash": digest(parent.public_key_bits).hexdigest(),
        "serialNumber": cert.serial.hex().lstrip("0") or "0",
    }


def resign(
    certificate: x509.Certificate, key: ec.EllipticCurvePrivateKey, fields: list[bytes]
) -> str:
    """PEM of a certificate with these TBSCertificate fields, signed by `key` (ECDSA SHA-256).

    Builds certificates that `cryptography`'s builder refuses to make (odd serials, odd keys).
    """
    tbs = _tlv(0x30, b"".join(fields))
    signature_algorithm = _children(_value(der(certificate)))[1]
    signature = key.sign(tbs, ec.ECDSA(hashes.SHA256()))
    certificate_der = _tlv(0x30, tbs + signature_algorithm + _tlv(0x03, b"\0" + signature))
    return ssl.DER_cert_to_PEM_cert(certificate_der)


def with_serial_octets(octets: bytes) -> str:
    """A self-signed CA whose serialNumber INTEGER has exactly these content octets."""
    certificate, key = make_cert("Odd serial root", serial=1)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    tbs = tbs_of(der(certificate))
    fields = list(tbs.fields)
    fields[1] = _tlv(0x02, octets)
    return resign(certificate, key, fields)


def with_unknown_curve() -> str:
    """A self-signed CA whose EC key names a curve nobody implements (OID 1.2.840.10045.3.1.99)."""
    certificate, key = make_cert("Unknown curve root")
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    p256 = bytes.fromhex("06082a8648ce3d030107")
    unknown = bytes.fromhex("06082a8648ce3d030163")
    fields = list(tbs_of(der(certificate)).fields)
    assert p256 in fields[6]
    fields[6] = fields[6].replace(p256, unknown)
    return resign(certificate, key, fields)


def with_duplicate_extension() -> str:
    """A self-signed CA carrying its BasicConstraints extension twice (RFC 5280 forbids it)."""
    certificate, key = make_cert("Duplicate extension root")
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    fields = list(tbs_of(der(certificate)).fields)
    assert fields[-1][0] == 0xA3
    extensions = _children(_value(_value(fields[-1])))
    fields[-1] = _tlv(0xA3, _tlv(0x30, b"".join(extensions * 2)))
    return resign(certificate, key, fields)


def version_1(
    certificate: x509.Certificate, key: ec.EllipticCurvePrivateKey, signer: PrivateKey | None = None
) -> str:
    """PEM of `certificate` as an X.509 version 1 certificate: without the [0] version field
    (DEFAULT v1, RFC 5280 4.1) and re-signed by `signer` (default: its own key).

    `cryptography`'s builder always writes version 3; this writes the TBSCertificate itself.
    """
    fields = list(tbs_of(der(certificate)).fields)
    assert fields[0][0] == 0xA0, "a v3 certificate starts with the explicit [0] version"
    signing_key = signer or key
    assert isinstance(signing_key, ec.EllipticCurvePrivateKey)
    return resign(certificate, signing_key, fields[1:])


def make_v1_root(common_name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A self-signed X.509 version 1 root: no extensions at all, so no BasicConstraints."""
    v3, key = make_cert(common_name, ca=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert len(v3.extensions) == 0
    root = x509.load_pem_x509_certificate(version_1(v3, key).encode())
    assert root.version is x509.Version.v1
    return root, key


# --- the station


def open_station(tmp_path: Path) -> Station:
    return make_station(tmp_path)


def reopen(station: Station, tmp_path: Path) -> Station:
    """Close the store and build a new station on the same file, as after a restart."""
    station.store.close()
    return open_station(tmp_path)


@pytest.fixture
def station(tmp_path: Path) -> Station:
    return open_station(tmp_path)


async def call(station: Station, action: str, payload: dict[str, Any]) -> dict[str, Any]:
    result = await station.dispatcher.call(Request("csms", "ocpp2.0.1", action, payload))
    assert isinstance(result, CallResult), result
    return result.payload


async def install(station: Station, certificate_type: str, text: str) -> dict[str, Any]:
    return await call(
        station, "InstallCertificate", {"certificateType": certificate_type, "certificate": text}
    )


async def installed_ids(station: Station, *types: str) -> dict[str, Any]:
    payload: dict[str, Any] = {"certificateType": list(types)} if types else {}
    return await call(station, "GetInstalledCertificateIds", payload)


async def delete(station: Station, hash_data: dict[str, str]) -> dict[str, Any]:
    return await call(station, "DeleteCertificate", {"certificateHashData": hash_data})


async def certificate_entries(station: Station) -> str:
    payload = await call(
        station,
        "GetVariables",
        {
            "getVariableData": [
                {"component": {"name": "SecurityCtrlr"}, "variable": {"name": "CertificateEntries"}}
            ]
        },
    )
    (result,) = payload["getVariableResult"]
    assert result["attributeStatus"] == "Accepted"
    value: str = result["attributeValue"]
    return value


def stored(station: Station) -> list[tuple[str, bytes, int | None]]:
    return [(c.certificate_type, c.der, c.parent_id) for c in station.store.certificates()]


def invalid_certificate(why: str) -> dict[str, Any]:
    """The InstallCertificate answer for a certificate the station refuses (M05.FR.07)."""
    return {
        "status": "Rejected",
        "statusInfo": {"reasonCode": "InvalidCertificate", "additionalInfo": why},
    }


def chain(certificate_type: str, certificate: x509.Certificate) -> dict[str, Any]:
    return {
        "certificateType": certificate_type,
        "certificateHashData": expected_hash_data(certificate, certificate),
    }


# --- the test's own hash computation is what OCPP describes


def test_der_reader_finds_what_ocpp_hashes_for_ec_and_rsa() -> None:
    """issuerKeyHash covers the X9.62 point (EC) or the PKCS#1 RSAPublicKey (RSA)."""
    ec_root, ec_private = make_cert("EC root")
    tbs = tbs_of(der(ec_root))
    point = ec_private.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    assert tbs.public_key_bits == point
    assert point[:1] == b"\x04"
    assert len(point) == 65
    assert tbs.issuer == ec_root.issuer.public_bytes() == tbs.subject
    assert int.from_bytes(tbs.serial, "big", signed=True) == ec_root.serial_number

    rsa_root, rsa_private = make_cert("RSA root", rsa_key())
    tbs = tbs_of(der(rsa_root))
    pkcs1 = rsa_private.public_key().public_bytes(Encoding.DER, PublicFormat.PKCS1)
    assert tbs.public_key_bits == pkcs1


# --- M05 + M03 + M04: the life of a root certificate


@pytest.mark.parametrize("certificate_type", ROOT_TYPES)
async def test_m05_m03_m04_install_list_delete_list(
    station: Station, certificate_type: str
) -> None:
    root, _ = make_cert(f"{certificate_type} root")
    assert await install(station, certificate_type, pem(root)) == {
        "status": "Accepted"
    }  # M05.FR.02

    listed = await installed_ids(station, certificate_type)
    assert listed == {  # M03.FR.03, M03.FR.04
        "status": "Accepted",
        "certificateHashDataChain": [chain(certificate_type, root)],
    }
    assert await installed_ids(station) == listed
    assert stored(station) == [(certificate_type, der(root), None)]

    hash_data = listed["certificateHashDataChain"][0]["certificateHashData"]
    assert await delete(station, hash_data) == {"status": "Accepted"}  # M04.FR.02
    assert await installed_ids(station, certificate_type) == {"status": "NotFound"}
    assert await installed_ids(station) == {"status": "NotFound"}
    assert stored(station) == []
    assert await delete(station, hash_data) == {"status": "NotFound"}  # M04.FR.04


async def test_m03_fr02_not_found_when_nothing_is_installed(station: Station) -> None:
    assert await installed_ids(station) == {"status": "NotFound"}  # TC_M_19: no chain field
    for certificate_type in (*ROOT_TYPES, "V2GCertificateChain"):
        assert await installed_ids(station, certificate_type) == {"status": "NotFound"}


async def test_m03_filters_by_one_several_or_no_certificate_type(station: Station) -> None:
    roots = {t: make_cert(f"{t} root")[0] for t in ROOT_TYPES}
    for certificate_type, root in roots.items():
        assert await install(station, certificate_type, pem(root)) == {"status": "Accepted"}

    for certificate_type, root in roots.items():
        assert await installed_ids(station, certificate_type) == {
            "status": "Accepted",
            "certificateHashDataChain": [chain(certificate_type, root)],
        }

    several = await installed_ids(station, "MORootCertificate", "CSMSRootCertificate")
    assert several["status"] == "Accepted"
    assert sorted(several["certificateHashDataChain"], key=lambda c: c["certificateType"]) == [
        chain("CSMSRootCertificate", roots["CSMSRootCertificate"]),
        chain("MORootCertificate", roots["MORootCertificate"]),
    ]

    everything = await installed_ids(station)  # TC_M_18: omitted = all types
    assert everything["status"] == "Accepted"
    key = lambda c: c["certificateType"]  # noqa: E731
    assert sorted(everything["certificateHashDataChain"], key=key) == sorted(
        (chain(t, r) for t, r in roots.items()), key=key
    )
    assert await installed_ids(station, *ROOT_TYPES, "V2GCertificateChain") == everything

    # A type with nothing installed, alone or with others that have nothing either.
    assert await installed_ids(station, "V2GCertificateChain") == {"status": "NotFound"}


async def test_m03_lists_several_roots_of_one_type(station: Station) -> None:
    """M05 remark: several certificates of the same type may be installed."""
    first, _ = make_cert("MO root 1")
    second, _ = make_cert("MO root 2")
    other, _ = make_cert("V2G root")
    for certificate_type, root in (
        ("MORootCertificate", first),
        ("V2GRootCertificate", other),
        ("MORootCertificate", second),
    ):
        assert await install(station, certificate_type, pem(root)) == {"status": "Accepted"}
    listed = await installed_ids(station, "MORootCertificate")
    assert listed["status"] == "Accepted"
    assert sorted(listed["certificateHashDataChain"], key=str) == sorted(
        [chain("MORootCertificate", first), chain("MORootCertificate", second)], key=str
    )


# --- hash data


@pytest.mark.parametrize(
    "serial",
    [
        pytest.param(0x0F_1234_5678_9ABC_DEF0, id="leading-zero-nibble"),
        pytest.param(0x00_00AB_CDEF, id="leading-zero-octets"),
        pytest.param(0x80_0000_0000_0000_0001, id="high-bit-set"),
        pytest.param(1, id="one"),
        pytest.param(2**159 - 1, id="largest-the-builder-makes"),
    ],
)
@pytest.mark.parametrize("kind", ["EC", "RSA"])
async def test_m03_fr04_hash_data_is_ocsp_cert_id(station: Station, kind: str, serial: int) -> None:
    """SHA-256 of the issuer name DER, of the issuer key bits; serial in hex without leading 0."""
    key = ec_key() if kind == "EC" else rsa_key()
    root, _ = make_cert(f"{kind} root", key, serial=serial)
    assert await install(station, "CSMSRootCertificate", pem(root)) == {"status": "Accepted"}
    listed = await installed_ids(station, "CSMSRootCertificate")
    (entry,) = listed["certificateHashDataChain"]
    hash_data = entry["certificateHashData"]
    assert hash_data == expected_hash_data(root, root)
    # Spelled out, in case the helper above and the station share a mistake.
    assert hash_data["serialNumber"] == format(serial, "x")
    assert not hash_data["serialNumber"].startswith("0")
    assert len(hash_data["issuerNameHash"]) == len(hash_data["issuerKeyHash"]) == 64
    assert hash_data["issuerNameHash"] == hashlib.sha256(root.subject.public_bytes()).hexdigest()
    public = root.public_key()
    key_bits = (
        public.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
        if isinstance(public, ec.EllipticCurvePublicKey)
        else public.public_bytes(Encoding.DER, PublicFormat.PKCS1)
    )
    assert hash_data["issuerKeyHash"] == hashlib.sha256(key_bits).hexdigest()
    assert hash_data["issuerNameHash"] == hash_data["issuerNameHash"].lower()
    assert hash_data["issuerKeyHash"] == hash_data["issuerKeyHash"].lower()


@pytest.mark.parametrize("algorithm", ["SHA256", "SHA384", "SHA512"])
@pytest.mark.parametrize("case", ["lower", "upper"])
@pytest.mark.parametrize("kind", ["EC", "RSA"])
async def test_m04_deletes_by_hash_data_of_any_algorithm_and_case(
    station: Station, algorithm: str, case: str, kind: str
) -> None:
    keep, _ = make_cert("Root that stays")
    root, _ = make_cert("Root to delete", ec_key() if kind == "EC" else rsa_key(), serial=0xABCDEF)
    assert await install(station, "MORootCertificate", pem(keep)) == {"status": "Accepted"}
    assert await install(station, "MORootCertificate", pem(root)) == {"status": "Accepted"}

    hash_data = expected_hash_data(root, root, algorithm)
    if case == "upper":
        hash_data = {k: v.upper() if k != "hashAlgorithm" else v for k, v in hash_data.items()}
        assert hash_data["serialNumber"] == "ABCDEF"
    assert await delete(station, hash_data) == {"status": "Accepted"}
    assert await installed_ids(station) == {
        "status": "Accepted",
        "certificateHashDataChain": [chain("MORootCertificate", keep)],
    }
    assert stored(station) == [("MORootCertificate", der(keep), None)]


async def test_m04_serial_with_leading_zeros_still_matches(station: Station) -> None:
    root, _ = make_cert("Root", serial=0x1234)
    assert await install(station, "V2GRootCertificate", pem(root)) == {"status": "Accepted"}
    hash_data = expected_hash_data(root, root) | {"serialNumber": "001234"}
    assert await delete(station, hash_data) == {"status": "Accepted"}
    assert stored(station) == []


def _other_hash(data: dict[str, str], field: str) -> dict[str, str]:
    """The same hash data with the last hex digit of one field changed."""
    value = data[field]
    return data | {field: value[:-1] + ("0" if value[-1] != "0" else "1")}


@pytest.mark.parametrize("field", ["issuerNameHash", "issuerKeyHash", "serialNumber"])
async def test_m04_fr04_not_found_when_any_field_differs(station: Station, field: str) -> None:
    root, _ = make_cert("Root", serial=0x5A5A5A)
    assert await install(station, "CSMSRootCertificate", pem(root)) == {"status": "Accepted"}
    before = stored(station)
    wrong = _other_hash(expected_hash_data(root, root), field)
    assert wrong != expected_hash_data(root, root)
    assert await delete(station, wrong) == {"status": "NotFound"}
    # A hash of another algorithm than the one named does not match either.
    assert await delete(
        station, expected_hash_data(root, root, "SHA384") | {"hashAlgorithm": "SHA256"}
    ) == {"status": "NotFound"}
    assert stored(station) == before
    assert await certificate_entries(station) == "1"


async def test_m04_fr04_not_found_for_a_certificate_that_was_never_installed(
    station: Station,
) -> None:
    installed, _ = make_cert("Installed root")
    stranger, _ = make_cert("Stranger root")
    assert await install(station, "CSMSRootCertificate", pem(installed)) == {"status": "Accepted"}
    assert await delete(station, expected_hash_data(stranger, stranger)) == {"status": "NotFound"}
    assert stored(station) == [("CSMSRootCertificate", der(installed), None)]


# --- M05.FR.07: invalid certificates are Rejected


def _garbage() -> str:
    return "this is not a certificate"


def _empty() -> str:
    return ""


def _bad_base64_pem() -> str:
    return "-----BEGIN CERTIFICATE-----\nAAAAAAAAAAAAAAAA\n-----END CERTIFICATE-----\n"


def _truncated_pem() -> str:
    lines = pem(make_cert("Truncated root")[0]).splitlines()
    return "\n".join([*lines[:3], lines[-1]]) + "\n"


def _private_key_pem() -> str:
    from cryptography.hazmat.primitives.serialization import NoEncryption, PrivateFormat

    return ec_key().private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()


def _two_certificates() -> str:
    return pem(make_cert("Root A")[0], make_cert("Root B")[0])


def _expired() -> str:
    return pem(
        make_cert(
            "Expired root", not_before=NOW - timedelta(days=30), not_after=NOW - timedelta(days=1)
        )[0]
    )


def _not_yet_valid() -> str:
    return pem(make_cert("Future root", not_before=NOW + timedelta(days=1))[0])


def _not_a_ca() -> str:
    return pem(make_cert("Self-signed leaf", ca=False)[0])


def _no_basic_constraints() -> str:
    return pem(make_cert("Self-signed v3 without BasicConstraints", ca=None)[0])


def _intermediate() -> str:
    root = make_cert("Some root")
    return pem(make_cert("Sub-CA", issuer=root)[0])


def _bad_signature() -> str:
    """Issuer name = subject, CA, but signed by another key: claims to be a root, is not."""
    impostor, key = make_cert("Impostor root")
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return resign(impostor, ec_key(), tbs_of(der(impostor)).fields)


def _weak_rsa() -> str:
    return pem(make_cert("Weak RSA root", rsa_key(1024))[0])


def _weak_ec() -> str:
    return pem(make_cert("Weak EC root", ec.generate_private_key(ec.SECP192R1()))[0])


def _v1_with_extensions() -> str:
    """Version 1 but carrying extensions, which only version 3 may have (RFC 5280 4.1.2.9)."""
    v3, key = make_cert("v1 root with BasicConstraints")
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return version_1(v3, key)


def _v1_not_self_signed() -> str:
    """A version 1 certificate naming itself as issuer but signed by another key."""
    v3, key = make_cert("v1 impostor root", ca=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return version_1(v3, key, signer=ec_key())


def _v1_issued_by_another() -> str:
    """A version 1 certificate issued (and signed) by another CA: not a root."""
    issuer = make_cert("Some v3 root")
    v3, key = make_cert("v1 issued by another", issuer=issuer, ca=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return version_1(v3, key, signer=issuer[1])


def _serial_of_21_octets() -> str:
    # RFC 5280 4.1.2.2: at most 20 octets; OCPP's serialNumber is at most 40 hex digits.
    return with_serial_octets(bytes([0x7F]) + bytes(range(1, 21)))


def _negative_serial() -> str:
    return with_serial_octets(b"\xfb")  # -5


def _zero_serial() -> str:
    return with_serial_octets(b"\x00")


INVALID: dict[str, Callable[[], str]] = {
    "garbage": _garbage,
    "empty": _empty,
    "bad-base64": _bad_base64_pem,
    "truncated": _truncated_pem,
    "private-key": _private_key_pem,
    "two-certificates": _two_certificates,
    "expired": _expired,
    "not-yet-valid": _not_yet_valid,
    "not-a-ca": _not_a_ca,
    "no-basic-constraints": _no_basic_constraints,
    "intermediate": _intermediate,
    "bad-self-signature": _bad_signature,
    "rsa-1024": _weak_rsa,
    "ec-p192": _weak_ec,
    "serial-21-octets": _serial_of_21_octets,
    "serial-negative": _negative_serial,
    "serial-zero": _zero_serial,
    "unknown-curve": with_unknown_curve,
    "duplicate-extension": with_duplicate_extension,
    "v1-with-extensions": _v1_with_extensions,
    "v1-bad-self-signature": _v1_not_self_signed,
    "v1-issued-by-another-ca": _v1_issued_by_another,
}


@pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")
@pytest.mark.parametrize("make", INVALID.values(), ids=INVALID.keys())
async def test_m05_fr07_invalid_certificate_is_rejected_and_changes_nothing(
    station: Station, make: Callable[[], str]
) -> None:
    existing, _ = make_cert("Existing root")
    assert await install(station, "CSMSRootCertificate", pem(existing)) == {"status": "Accepted"}
    before, listed = stored(station), await installed_ids(station)

    for certificate_type in ROOT_TYPES:
        response = await install(station, certificate_type, make())
        assert response["status"] == "Rejected", response
        assert set(response) == {"status", "statusInfo"}
        assert response["statusInfo"]["reasonCode"] == "InvalidCertificate"
        assert response["statusInfo"]["additionalInfo"]

    assert stored(station) == before
    assert await installed_ids(station) == listed
    assert await certificate_entries(station) == "1"


async def test_m05_expired_root_is_rejected_and_not_listed(station: Station) -> None:
    """OCTT TC_M_07."""
    expired, _ = make_cert(
        "Expired CSMS root",
        not_before=NOW - timedelta(days=400),
        not_after=NOW - timedelta(seconds=5),
    )
    response = await install(station, "CSMSRootCertificate", pem(expired))
    assert response == invalid_certificate("the certificate has expired")
    assert await installed_ids(station, "CSMSRootCertificate") == {"status": "NotFound"}
    assert station.certificates.trust_anchors() == []


async def test_m05_not_yet_valid_root_is_rejected(station: Station) -> None:
    future, _ = make_cert("Future root", not_before=datetime.now(UTC) + timedelta(days=1))
    response = await install(station, "V2GRootCertificate", pem(future))
    assert response == invalid_certificate("the certificate is not valid yet")


async def test_m05_intermediate_ca_is_rejected_as_not_self_signed(station: Station) -> None:
    root = make_cert("Real root")
    sub_ca, _ = make_cert("Sub-CA", issuer=root)
    response = await install(station, "MORootCertificate", pem(sub_ca))
    assert response == invalid_certificate("a root certificate must be self-signed")
    # Its own root goes in fine.
    assert await install(station, "MORootCertificate", pem(root[0])) == {"status": "Accepted"}


async def test_m05_non_ca_certificate_is_rejected(station: Station) -> None:
    leaf, _ = make_cert("Leaf", ca=False)
    response = await install(station, "ManufacturerRootCertificate", pem(leaf))
    assert response == invalid_certificate("a root certificate must be a CA certificate")


async def test_m05_v3_root_without_basic_constraints_is_rejected(station: Station) -> None:
    """Only version 1 certificates may be roots without BasicConstraints; a v3 one must say cA."""
    v3, _ = make_cert("v3 without BasicConstraints", ca=None)
    assert v3.version is x509.Version.v3
    response = await install(station, "CSMSRootCertificate", pem(v3))
    assert response == invalid_certificate("a root certificate must be a CA certificate")


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_the_version_1_fixture_is_version_1_for_openssl_too(tmp_path: Path) -> None:
    """The test's hand-made v1 certificate, as another X.509 parser reads it."""
    root, _ = make_v1_root("v1 root for openssl")
    out = subprocess.run(
        ["openssl", "x509", "-noout", "-text"],
        input=pem(root),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "Version: 1 (0x0)" in out
    assert "X509v3" not in out  # no extensions at all


@pytest.mark.parametrize("certificate_type", ROOT_TYPES)
async def test_m05_self_signed_version_1_root_is_accepted(
    station: Station, certificate_type: str
) -> None:
    """A v1 root has no BasicConstraints; it is a trust anchor all the same (RFC 5280 §6.1)."""
    root, _ = make_v1_root(f"v1 {certificate_type}")
    assert await install(station, certificate_type, pem(root)) == {"status": "Accepted"}
    assert stored(station) == [(certificate_type, der(root), None)]
    assert await installed_ids(station, certificate_type) == {
        "status": "Accepted",
        "certificateHashDataChain": [chain(certificate_type, root)],
    }
    assert await delete(station, expected_hash_data(root, root)) == {"status": "Accepted"}
    assert stored(station) == []


async def test_m05_two_certificates_in_one_pem_are_rejected(station: Station) -> None:
    response = await install(station, "V2GRootCertificate", _two_certificates())
    assert response == invalid_certificate("expected exactly one certificate")
    assert stored(station) == []


async def test_m05_pem_with_text_around_it_is_accepted(station: Station) -> None:
    """PEM allows explanatory text outside the BEGIN/END lines (RFC 7468 §2)."""
    root, _ = make_cert("Root with a label")
    text = f"Subject: Root with a label\n{pem(root)}\n# end\n"
    assert await install(station, "CSMSRootCertificate", text) == {"status": "Accepted"}
    assert stored(station) == [("CSMSRootCertificate", der(root), None)]


async def test_m05_pem_with_crlf_line_ends_is_accepted(station: Station) -> None:
    root, _ = make_cert("Root sent with CRLF")
    text = pem(root).replace("\n", "\r\n")
    assert await install(station, "MORootCertificate", text) == {"status": "Accepted"}
    assert await installed_ids(station, "MORootCertificate") == {
        "status": "Accepted",
        "certificateHashDataChain": [chain("MORootCertificate", root)],
    }


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (
            {"certificateType": "ChargingStationCertificate", "certificate": "x"},
            "PropertyConstraintViolation",
        ),
        (
            {"certificateType": "V2GRootCertificate", "certificate": "x" * 5501},
            "PropertyConstraintViolation",
        ),
        ({"certificateType": "V2GRootCertificate"}, "OccurrenceConstraintViolation"),
        ({"certificateType": "V2GRootCertificate", "certificate": 42}, "TypeConstraintViolation"),
        (
            {"certificateType": "V2GRootCertificate", "certificate": "x", "extra": 1},
            "FormatViolation",
        ),
    ],
)
async def test_m05_payload_outside_the_schema_is_a_call_error(
    station: Station, payload: dict[str, Any], code: str
) -> None:
    result = await station.dispatcher.call(
        Request("csms", "ocpp2.0.1", "InstallCertificate", payload)
    )
    assert isinstance(result, CallError)
    assert result.code == code
    assert stored(station) == []


# --- M05.FR.17 and capacity (M05.FR.06, SecurityCtrlr.CertificateEntries)


async def test_m05_fr17_installing_the_same_certificate_twice_is_accepted_once(
    station: Station,
) -> None:
    root, _ = make_cert("Twice root")
    assert await install(station, "CSMSRootCertificate", pem(root)) == {"status": "Accepted"}
    assert await install(station, "CSMSRootCertificate", pem(root)) == {"status": "Accepted"}
    assert await installed_ids(station) == {
        "status": "Accepted",
        "certificateHashDataChain": [chain("CSMSRootCertificate", root)],
    }
    assert stored(station) == [("CSMSRootCertificate", der(root), None)]
    assert await certificate_entries(station) == "1"


async def test_certificate_entries_counts_installed_certificates(
    station: Station, tmp_path: Path
) -> None:
    assert await certificate_entries(station) == "0"
    roots = [make_cert(f"Root {i}")[0] for i in range(3)]
    for i, root in enumerate(roots, start=1):
        assert await install(station, ROOT_TYPES[i], pem(root)) == {"status": "Accepted"}
        assert await certificate_entries(station) == str(i)
    assert await delete(station, expected_hash_data(roots[0], roots[0])) == {"status": "Accepted"}
    assert await certificate_entries(station) == "2"
    station = reopen(station, tmp_path)
    assert await certificate_entries(station) == "2"


async def test_certificate_entries_is_read_only_with_max_limit_50(station: Station) -> None:
    item = {"component": {"name": "SecurityCtrlr"}, "variable": {"name": "CertificateEntries"}}
    result = await call(
        station, "SetVariables", {"setVariableData": [item | {"attributeValue": "0"}]}
    )
    assert result["setVariableResult"][0]["attributeStatus"] == "Rejected"
    definition = station.device_model["SecurityCtrlr.CertificateEntries"].definition
    assert definition.max_limit == 50


async def test_m05_fr06_rejected_when_certificate_entries_max_limit_is_reached(
    station: Station,
) -> None:
    """M05.FR.06 (OCPP 2.0.1 ed. 3): the station answers Rejected when maxLimit would be exceeded."""
    key = ec_key()  # one key, fifty distinct certificates: generating is not what this tests
    roots = [make_cert(f"Root {i:02}", key)[0] for i in range(50)]
    for i, root in enumerate(roots):
        assert await install(station, ROOT_TYPES[i % 4], pem(root)) == {"status": "Accepted"}
    assert await certificate_entries(station) == "50"

    one_too_many, _ = make_cert("Root 51", key)
    before = stored(station)
    response = await install(station, "V2GRootCertificate", pem(one_too_many))
    assert response["status"] == "Rejected"
    assert response["statusInfo"]["reasonCode"] == "OutOfStorage"
    assert stored(station) == before
    assert await certificate_entries(station) == "50"

    # An installed one again is still fine (nothing to add), and room comes back after a delete.
    assert await install(station, ROOT_TYPES[0], pem(roots[0])) == {"status": "Accepted"}
    assert await delete(station, expected_hash_data(roots[7], roots[7])) == {"status": "Accepted"}
    assert await install(station, "V2GRootCertificate", pem(one_too_many)) == {"status": "Accepted"}
    assert await certificate_entries(station) == "50"
    listed = await installed_ids(station)
    assert len(listed["certificateHashDataChain"]) == 50


# --- M05.FR.03, M04.FR.03: a store that fails


async def test_m05_fr03_and_m04_fr03_failed_when_the_store_cannot_write(station: Station) -> None:
    kept, _ = make_cert("Kept root")
    assert await install(station, "CSMSRootCertificate", pem(kept)) == {"status": "Accepted"}
    station.store.close()  # every write now fails: a real sqlite3 error, nothing faked

    new, _ = make_cert("New root")
    response = await install(station, "CSMSRootCertificate", pem(new))
    assert response["status"] == "Failed"
    assert response["statusInfo"]["reasonCode"]
    assert await delete(station, expected_hash_data(kept, kept)) == {"status": "Failed"}
    assert await installed_ids(station) == {
        "status": "Accepted",
        "certificateHashDataChain": [chain("CSMSRootCertificate", kept)],
    }
    assert await certificate_entries(station) == "1"


# --- persistence


async def test_certificates_survive_a_restart(station: Station, tmp_path: Path) -> None:
    roots = {
        t: make_cert(f"{t} root", rsa_key() if i == 0 else None)[0]
        for i, t in enumerate(ROOT_TYPES)
    }
    for certificate_type, root in roots.items():
        assert await install(station, certificate_type, pem(root)) == {"status": "Accepted"}
    before = await installed_ids(station)

    station = reopen(station, tmp_path)
    assert await installed_ids(station) == before
    for certificate_type, root in roots.items():
        assert await installed_ids(station, certificate_type) == {
            "status": "Accepted",
            "certificateHashDataChain": [chain(certificate_type, root)],
        }
    assert station.certificates.trust_anchors() == [der(roots["CSMSRootCertificate"])]

    # A deletion survives as well.
    assert await delete(
        station, expected_hash_data(roots["MORootCertificate"], roots["MORootCertificate"])
    ) == {"status": "Accepted"}
    station = reopen(station, tmp_path)
    assert await installed_ids(station, "MORootCertificate") == {"status": "NotFound"}
    assert await certificate_entries(station) == "3"


async def test_installed_csms_root_is_a_trust_anchor(station: Station) -> None:
    """SPEC §4.2: an installed CSMSRootCertificate verifies the CSMS on the next TLS link."""
    csms_root, _ = make_cert("CSMS root")
    v2g_root, _ = make_cert("V2G root")
    assert await install(station, "V2GRootCertificate", pem(v2g_root)) == {"status": "Accepted"}
    assert station.certificates.trust_anchors() == []
    assert await install(station, "CSMSRootCertificate", pem(csms_root)) == {"status": "Accepted"}
    assert station.certificates.trust_anchors() == [der(csms_root)]
    assert await delete(station, expected_hash_data(csms_root, csms_root)) == {"status": "Accepted"}
    assert station.certificates.trust_anchors() == []


def _server_certificate(
    issuer: tuple[x509.Certificate, PrivateKey], tmp_path: Path
) -> tuple[Path, Path]:
    """A v3 TLS server certificate for localhost issued by `issuer`: (PEM file, key file)."""
    from cryptography.hazmat.primitives.serialization import NoEncryption, PrivateFormat

    key = ec_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name("localhost"))
        .issuer_name(issuer[0].subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        # What VERIFY_X509_STRICT wants of a leaf, so only the root can fail a strict check.
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer[1].public_key()), False
        )
        .sign(issuer[1], hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "server.pem", tmp_path / "server.key"
    cert_file.write_text(pem(certificate))
    key_file.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    return cert_file, key_file


async def _handshake(server: ssl.SSLContext, client: ssl.SSLContext) -> bytes:
    """A real TLS handshake on loopback; the server's first bytes once it is done."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"verified")
        await writer.drain()
        writer.close()

    listener = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server)
    port = listener.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client, server_hostname="localhost"
        )
        data = await reader.read()
        writer.close()
        return data
    finally:
        listener.close()
        await listener.wait_closed()


async def test_an_installed_version_1_csms_root_verifies_the_csms_over_tls(
    station: Station, tmp_path: Path
) -> None:
    """The v1 root installed by InstallCertificate, in the bridge's own TLS client context,
    verifies a CSMS server certificate it issued; without it the same handshake fails."""
    from bridge.transport.csms import tls_context

    root = make_v1_root("v1 CSMS root")
    assert await install(station, "CSMSRootCertificate", pem(root[0])) == {"status": "Accepted"}
    cert_file, key_file = _server_certificate(root, tmp_path)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert_file, key_file)

    client = tls_context("", station.certificates.trust_anchors())
    # OpenSSL refuses a v1 CA under X509_STRICT ("invalid CA certificate"); Python 3.13's
    # create_default_context() sets it, so the bridge's context must not.
    assert not client.verify_flags & ssl.VERIFY_X509_STRICT
    assert await _handshake(server, client) == b"verified"

    other_root, _ = make_v1_root("v1 root of somebody else")
    stranger = tls_context("", [der(other_root)])
    with pytest.raises(ssl.SSLCertVerificationError):
        await _handshake(server, stranger)


# --- childCertificateHashData


async def test_m03_child_certificates_are_listed_under_their_root(
    station: Station, tmp_path: Path
) -> None:
    root = make_cert("V2G root", rsa_key())
    sub_ca, _ = make_cert("V2G Sub-CA 1", issuer=root)
    station.store.add_certificates("V2GRootCertificate", [der(root[0]), der(sub_ca)])
    other, _ = make_cert("MO root")
    station.store.add_certificates("MORootCertificate", [der(other)])
    station = reopen(station, tmp_path)

    child_hash = expected_hash_data(sub_ca, root[0])
    # The child's issuer is the root: its name hash is the root's subject, its key hash the root's.
    assert child_hash["issuerNameHash"] == hashlib.sha256(tbs_of(der(root[0])).subject).hexdigest()
    assert child_hash["issuerKeyHash"] == expected_hash_data(root[0], root[0])["issuerKeyHash"]
    assert await installed_ids(station, "V2GRootCertificate") == {
        "status": "Accepted",
        "certificateHashDataChain": [
            chain("V2GRootCertificate", root[0]) | {"childCertificateHashData": [child_hash]}
        ],
    }
    assert await installed_ids(station, "MORootCertificate") == {
        "status": "Accepted",
        "certificateHashDataChain": [chain("MORootCertificate", other)],
    }
    assert await certificate_entries(station) == "3"

    # Deleting the child leaves the root; deleting a root takes its children along (M04.FR.08).
    assert await delete(station, expected_hash_data(sub_ca, root[0], "SHA512")) == {
        "status": "Accepted"
    }
    assert await installed_ids(station, "V2GRootCertificate") == {
        "status": "Accepted",
        "certificateHashDataChain": [chain("V2GRootCertificate", root[0])],
    }
    assert await delete(station, expected_hash_data(root[0], root[0])) == {"status": "Accepted"}
    assert await certificate_entries(station) == "1"

    sub_ca_2, _ = make_cert("V2G Sub-CA 2", issuer=root)
    station.store.add_certificates("V2GRootCertificate", [der(root[0]), der(sub_ca), der(sub_ca_2)])
    station = reopen(station, tmp_path)
    assert await installed_ids(station, "V2GRootCertificate") == {
        "status": "Accepted",
        "certificateHashDataChain": [
            chain("V2GRootCertificate", root[0])
            | {
                "childCertificateHashData": [
                    expected_hash_data(sub_ca, root[0]),
                    expected_hash_data(sub_ca_2, root[0]),
                ]
            }
        ],
    }
    assert await certificate_entries(station) == "4"
    assert await delete(station, expected_hash_data(root[0], root[0])) == {"status": "Accepted"}
    assert stored(station) == [("MORootCertificate", der(other), None)]
    assert await certificate_entries(station) == "1"


async def test_a_root_with_a_key_ocpp_does_not_allow_is_rejected(station: Station) -> None:
    """OCPP's security profiles use RSA or ECDSA keys; an Ed25519 root is refused."""
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name("Ed25519 Root"))
        .issuer_name(name("Ed25519 Root"))
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, None)
    )
    result = await call(
        station,
        "InstallCertificate",
        {"certificateType": "CSMSRootCertificate", "certificate": pem(certificate)},
    )
    assert result["status"] == "Rejected"
    assert result["statusInfo"]["additionalInfo"] == "the key must be RSA or ECDSA"


async def test_a_subject_with_a_newline_cannot_forge_a_log_line(
    station: Station, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    caplog.set_level(logging.INFO, logger="bridge.station.security")
    certificate, _ = make_cert("Root\nERROR forged line")
    result = await call(
        station,
        "InstallCertificate",
        {"certificateType": "MORootCertificate", "certificate": pem(certificate)},
    )
    assert result["status"] == "Accepted"
    installed = [r.getMessage() for r in caplog.records if "installed" in r.getMessage()]
    assert len(installed) == 1
    assert "\n" not in installed[0]


def test_cryptography_is_loaded_only_when_certificates_are_used(tmp_path: Path) -> None:
    """About 8 MB of memory that a station without certificates never needs."""
    import sys

    config = write_config(tmp_path / "bridge.toml", None)
    code = (
        "import sys\n"
        "from bridge.config import load_settings\n"
        "from bridge.station import Station\n"
        "from bridge.store import Store\n"
        f"settings = load_settings({str(config)!r})\n"
        "station = Station(settings, Store(settings.storage.path))\n"
        "print('cryptography' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

"""Seed 004's ocpp_message examples, verbatim with fresh ids, through Mosquitto and the bridge."""

from __future__ import annotations

import hashlib
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from bridge import schemas
from tests.conftest import Oem, example


def assert_response_envelope(answer: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
    assert answer["id"] == request["id"]
    assert answer["name"] == "ocpp_message"
    assert answer["type"] == "response"
    assert set(answer) == {"id", "name", "type", "data"}
    assert schemas.envelope_validator("ocpp_message.response")(answer) == []
    return answer["data"]


async def ask(oem: Oem, request: dict[str, Any]) -> dict[str, Any]:
    """Send `request` through the broker; its answer's data (the envelope checked)."""
    return assert_response_envelope(await oem.request(request), request)


ACCEPTED = {
    "message_type": "CallResult",
    "ocpp_version": "ocpp2.0.1",
    "payload": {"status": "Accepted"},
}


def independent_hash_data(pem: str) -> dict[str, str]:
    """OCPP CertificateHashData computed from the DER, without the OCSP builder the bridge uses."""
    certificate = x509.load_pem_x509_certificate(pem.encode())
    issuer_name_der = certificate.issuer.public_bytes()
    key = certificate.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    # subjectPublicKey BIT STRING contents of an EC key: the uncompressed point.
    key_bits = key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    return {
        "hashAlgorithm": "SHA256",
        "issuerNameHash": hashlib.sha256(issuer_name_der).hexdigest(),
        "issuerKeyHash": hashlib.sha256(key_bits).hexdigest(),
        "serialNumber": format(certificate.serial_number, "x"),
    }


async def test_get_variables_example_answers_tx_start_point(bridge: object, oem: Oem) -> None:
    request = example("request.GetVariables")
    expected = example("response.GetVariables", fresh_id=False)
    data = await ask(oem, request)
    assert data == expected["data"]


async def test_get_variables_multiple_example(bridge: object, oem: Oem) -> None:
    request = example("request.GetVariables.multiple")
    data = await ask(oem, request)
    assert data["message_type"] == "CallResult"
    assert data["ocpp_version"] == "ocpp2.0.1"
    assert data["payload"] == {
        "getVariableResult": [
            {
                "attributeStatus": "Accepted",
                "component": {"name": "OCPPCommCtrlr"},
                "variable": {"name": "OfflineThreshold"},
                "attributeType": "Actual",
                "attributeValue": "60",
            },
            {
                "attributeStatus": "Accepted",
                "component": {"name": "AuthCtrlr"},
                "variable": {"name": "LocalAuthorizeOffline"},
                "attributeType": "Actual",
                "attributeValue": "true",
            },
        ]
    }


async def test_set_variables_example_is_accepted_and_read_back(bridge: object, oem: Oem) -> None:
    request = example("request.SetVariables")
    expected = example("response.SetVariables", fresh_id=False)
    data = await ask(oem, request)
    assert data == expected["data"]

    read = await oem.request(example("request.GetVariables.multiple"))
    values = [r["attributeValue"] for r in read["data"]["payload"]["getVariableResult"]]
    assert values == ["300", "true"]


async def test_certificate_round_trip_with_seed_examples(bridge: object, oem: Oem) -> None:
    install = example("request.InstallCertificate")
    data = await ask(oem, install)
    assert data == ACCEPTED

    expected_hash = independent_hash_data(install["data"]["payload"]["certificate"])
    # The DeleteCertificate example carries exactly this certificate's hash data.
    delete = example("request.DeleteCertificate")
    assert delete["data"]["payload"]["certificateHashData"] == expected_hash

    listing = example("request.GetInstalledCertificateIds")
    data = await ask(oem, listing)
    assert data["message_type"] == "CallResult"
    assert data["payload"] == {
        "status": "Accepted",
        "certificateHashDataChain": [
            {"certificateType": "CSMSRootCertificate", "certificateHashData": expected_hash}
        ],
    }

    data = await ask(oem, delete)
    assert data["payload"] == {"status": "Accepted"}

    listing = example("request.GetInstalledCertificateIds")
    data = await ask(oem, listing)
    assert data["payload"] == {"status": "NotFound"}

    # Deleting it again finds nothing.
    delete = example("request.DeleteCertificate")
    data = await ask(oem, delete)
    assert data["payload"] == {"status": "NotFound"}


async def test_set_network_profile_example_is_stored_in_slot_2(bridge: Any, oem: Oem) -> None:
    request = example("request.SetNetworkProfile")
    data = await ask(oem, request)
    assert data == ACCEPTED
    stored = bridge.station.network_profiles.get(2)
    assert stored == request["data"]["payload"]["connectionData"]
    assert bridge.store.network_profiles()[2]


async def test_call_error_example_shape_for_a_payload_of_the_wrong_structure(
    bridge: object, oem: Oem
) -> None:
    request = example("request.GetVariables")
    request["data"]["payload"]["getVariableData"][0]["unexpected"] = 1
    data = await ask(oem, request)
    expected = example("response.CallError", fresh_id=False)["data"]
    assert set(data) == set(expected)
    assert data["message_type"] == "CallError"
    assert data["ocpp_version"] == "ocpp2.0.1"
    assert data["error_code"] == "FormatViolation"
    assert len(data["error_description"]) <= 255
    # Paths in a payload's CallError are relative to the OCPP payload, as a CSMS would get them.
    assert data["error_details"]["path"] == "$.getVariableData[0]"
    assert "unexpected" in data["error_description"]

"""FACIAL_AUTHENTICATION webhook signing, content type and parsing (docs/idenfy-api.md,
section 2)."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
from collections.abc import Callable

import pytest

from idenfy_stepup.idenfy.webhook import (
    EVENT_TYPE,
    WebhookEvent,
    WebhookRejected,
    check_content_type,
    parse_event,
    sign,
    verify_signature,
)

KEY = "whsec-current-4f1c"
OLD_KEY = "whsec-previous-9a0b"
BODY = b'{"id":"7f1d","token":"tok-1","status":"SUCCESS"}'

HAPPY = {
    "id": "2b1c6a7e-0b9e-4c2c-9a53-5f1f8f0e2d11",
    "scanRef": "scan-123",
    "clientId": "user-42",
    "status": "SUCCESS",
    "token": "AbCdEf0123456789",
    "type": "AUTHENTICATION",
    "method": "FACE_MATCHING",
    "facePhoto": "https://s3.example/selfie.jpg?X-Amz-Signature=abc",
    "ipAddress": "203.0.113.9",
    "failReason": None,
    "riskTags": None,
}


def body_of(**changes: object) -> bytes:
    data = {**HAPPY, **changes}
    return json.dumps({k: v for k, v in data.items() if v is not ...}).encode()


def reject(body: bytes) -> WebhookRejected:
    with pytest.raises(WebhookRejected) as info:
        parse_event(body)
    return info.value


# --- signing (§2.3) --------------------------------------------------------------------------


def test_sign_matches_rfc_4231_test_case_2() -> None:
    expected = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    assert sign(b"what do ya want for nothing?", "Jefe") == expected


def test_sign_is_hex_hmac_sha256_of_the_raw_body() -> None:
    expected = hmac.new(KEY.encode("utf-8"), BODY, hashlib.sha256).hexdigest()
    assert sign(BODY, KEY) == expected
    assert verify_signature(BODY, expected, [KEY])


def test_sign_uses_utf8_key_bytes() -> None:
    key = "clé-ünïcode"
    assert sign(BODY, key) == hmac.new(key.encode("utf-8"), BODY, hashlib.sha256).hexdigest()


@pytest.mark.parametrize("transform", [str.upper, lambda s: f"  {s}\t", lambda s: s.upper() + "\n"])
def test_header_case_and_surrounding_space_are_ignored(transform: Callable[[str], str]) -> None:
    assert verify_signature(BODY, transform(sign(BODY, KEY)), [KEY])


def test_either_configured_key_is_accepted_during_rotation() -> None:
    assert verify_signature(BODY, sign(BODY, OLD_KEY), [KEY, OLD_KEY])
    assert verify_signature(BODY, sign(BODY, KEY), [KEY, OLD_KEY])
    assert not verify_signature(BODY, sign(BODY, OLD_KEY), [KEY])


GOOD = sign(BODY, KEY)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "   ",
        sign(BODY, "wrong-key"),
        GOOD[:-1],
        GOOD[:32],
        GOOD + "0",
        "g" + GOOD[1:],
        "sha256=" + GOOD,
        GOOD[:31] + " " + GOOD[32:],
        "é" * 64,
        "\x00" * 64,
    ],
)
def test_bad_headers_are_rejected(header: str | None) -> None:
    assert verify_signature(BODY, header, [KEY, OLD_KEY]) is False


def test_tampered_body_is_rejected() -> None:
    assert not verify_signature(BODY.replace(b"SUCCESS", b"SUCCESS "), GOOD, [KEY])


def test_no_keys_or_empty_keys_verify_nothing() -> None:
    assert not verify_signature(BODY, GOOD, [])
    assert not verify_signature(BODY, sign(BODY, ""), [""])


def test_unencodable_key_is_skipped_not_raised() -> None:
    assert verify_signature(BODY, GOOD, ["\udc80", KEY])
    assert not verify_signature(BODY, GOOD, ["\udc80"])


# --- content type (§2) -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON;Charset=UTF-8",
        " application/json ",
        "application/vnd.idenfy.webhook+json",
        "application/problem+json; charset=utf-8",
    ],
)
def test_json_content_types_are_accepted(value: str) -> None:
    check_content_type(value)


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "text/plain",
        "text/json",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/jsonp",
        "application/+json",
        "application/json-seq",
        "application/xml",
    ],
)
def test_other_content_types_are_415(value: str | None) -> None:
    with pytest.raises(WebhookRejected) as info:
        check_content_type(value)
    assert info.value.status_code == 415


# --- parsing (§2.1, §2.2) --------------------------------------------------------------------


def test_event_type_constant() -> None:
    assert EVENT_TYPE == "FACIAL_AUTHENTICATION"


def test_happy_body_parses() -> None:
    event = parse_event(body_of())
    assert event == WebhookEvent(
        id=HAPPY["id"],  # type: ignore[arg-type]
        token="AbCdEf0123456789",
        scan_ref="scan-123",
        client_id="user-42",
        status="SUCCESS",
        fail_reason=None,
        type="AUTHENTICATION",
        method="FACE_MATCHING",
        ip_address="203.0.113.9",
    )
    assert event.success and event.final
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.status = "FAILED"  # type: ignore[misc]


def test_unknown_fields_are_ignored() -> None:
    event = parse_event(body_of(riskTags=["UNTRUSTED_ENVIRONMENT"], newField={"a": [1, 2]}))
    assert event.success


def test_minimal_body_parses_with_optional_fields_absent() -> None:
    event = parse_event(b'{"id": "e1", "token": "t1", "status": "FAILED"}')
    assert (event.scan_ref, event.client_id, event.fail_reason, event.type, event.method) == (
        None,
        None,
        None,
        None,
        None,
    )
    assert event.final and not event.success


@pytest.mark.parametrize(
    ("sent", "status", "final", "success"),
    [
        ("Success", "SUCCESS", True, True),
        ("success", "SUCCESS", True, True),
        ("Failed", "FAILED", True, False),
        ("Expired", "EXPIRED", True, False),
        ("Canceled", "CANCELED", True, False),
        ("CANCELLED", "CANCELED", True, False),
        ("Pending", "PENDING", False, False),
        ("PENDING", "PENDING", False, False),
        ("ABANDONED", "ABANDONED", True, False),
        ("", "", True, False),
    ],
)
def test_status_is_case_insensitive_and_unknown_kept(
    sent: str, status: str, final: bool, success: bool
) -> None:
    event = parse_event(body_of(status=sent))
    assert (event.status, event.final, event.success) == (status, final, success)


def test_enums_are_upper_cased_and_unknown_fail_reason_kept() -> None:
    event = parse_event(
        body_of(
            status="failed",
            failReason="face_mismatch",
            type="enrollment",
            method="active_liveness",
        )
    )
    assert (event.fail_reason, event.type, event.method) == (
        "FACE_MISMATCH",
        "ENROLLMENT",
        "ACTIVE_LIVENESS",
    )
    assert parse_event(body_of(failReason="BRAND_NEW_REASON")).fail_reason == "BRAND_NEW_REASON"


def test_scan_ref_and_client_id_are_kept_verbatim_and_empty_means_absent() -> None:
    event = parse_event(body_of(scanRef="Scan-AbC", clientId=""))
    assert (event.scan_ref, event.client_id) == ("Scan-AbC", None)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[]",
        b'"string"',
        b"42",
        b"null",
        b'{"id": "e1", "token": "t1", "status": "SUCCESS"',
        b'{"id": "e\xff", "token": "t1", "status": "SUCCESS"}',
        b'\xef\xbb\xbf{"id": "e1", "token": "t1", "status": "SUCCESS"}',
        b'{"id": "e1", "token": "t1", "status": "FAILED", "status": "SUCCESS"}',
        b'{"id": "e1", "token": "t1", "status": "SUCCESS", "x": {"a": 1, "a": 2}}',
        b'{"id": "e1", "token": "t1", "status": "SUCCESS", "x": NaN}',
        b"[" * 100_000 + b"]" * 100_000,
    ],
)
def test_malformed_bodies_are_400(body: bytes) -> None:
    assert reject(body).status_code == 400


@pytest.mark.parametrize(
    "changes",
    [
        {"id": ...},
        {"token": ...},
        {"status": ...},
        {"id": ""},
        {"token": ""},
        {"id": 123},
        {"token": 123},
        {"id": None},
        {"token": None},
        {"status": None},
        {"status": 1},
        {"status": ["SUCCESS"]},
        {"scanRef": 5},
        {"clientId": {"x": 1}},
        {"failReason": ["FACE_MISMATCH"]},
        {"type": True},
        {"method": 0},
        {"token": "t" * 65},
        {"token": "x" * 100_000},
        {"token": "tok/../admin"},
        {"token": "tok en"},
        {"id": "i" * 256},
    ],
)
def test_wrong_shapes_are_400(changes: dict[str, object]) -> None:
    assert reject(body_of(**changes)).status_code == 400


def test_token_of_64_characters_is_accepted() -> None:
    assert parse_event(body_of(token="t" * 64)).token == "t" * 64


@pytest.mark.parametrize(
    "body",
    [
        b'{"id": "MARKER-\xff", "token": "t", "status": "SUCCESS"}',
        body_of(token="MARKER-" + "x" * 80),
        body_of(id={"MARKER": 1}),
        body_of(scanRef=["MARKER"]),
        b'{"MARKER": 1, "MARKER": 2}',
    ],
)
def test_rejections_never_echo_the_body(body: bytes) -> None:
    error = reject(body)
    for text in (str(error), repr(error), error.reason):
        assert "MARKER" not in text
        assert "\\xff" not in text
    assert error.__cause__ is None

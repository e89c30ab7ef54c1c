"""Typeform-Signature: signing, verifying, and ``reconcile verify-signature``.

Vectors are checked against HMACs computed outside our code: literal values computed once with
``openssl dgst -sha256 -hmac KEY -binary | base64``, and openssl run live on generated inputs.
Typeform's documentation describes the algorithm (HMAC-SHA256 over the raw body, base64,
``sha256=`` prefix) but publishes no literal secret/body/signature triple to test against.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from datetime import UTC, datetime, timedelta, timezone

import pytest
from click.testing import CliRunner, Result
from hypothesis import given
from hypothesis import strategies as st

from reconciler.commands.signature import MAX_BODY_BYTES, verify_signature
from reconciler.signature import (
    SIGNATURE_HEADER,
    Verdict,
    diagnose,
    sample_form_response,
    sign,
    verify,
)

OPENSSL = shutil.which("openssl")
SECRET = "whsec-test-Ä-ünïcode"
BODY = b'{"event_id":"01JABCDEFGHJKMNPQRSTVWXYZ0","event_type":"form_response"}'
# printf '%s' "$BODY" | openssl dgst -sha256 -hmac "$SECRET" -binary | base64
BODY_SIGNATURE = "sha256=bM5NXxfHFtIMky6JbB+miTM1eu9Lgwbky/mBU7qicA8="
# printf '' | openssl dgst -sha256 -hmac x -binary | base64
EMPTY_BODY_SIGNATURE = "sha256=8n5lJ9a4QIQwpma3RgcMMH9UK7VO5+bcswPz5SwLCfs="


def openssl_signature(body: bytes, key: bytes) -> str:
    if OPENSSL is None:
        pytest.skip("openssl is not installed: the live cross-check needs it")
    digest = subprocess.run(
        [OPENSSL, "dgst", "-sha256", "-hmac", key, "-binary"],
        input=body,
        capture_output=True,
        check=True,
    ).stdout
    return "sha256=" + base64.b64encode(digest).decode()


# --------------------------------------------------------------------------- sign


def test_signature_of_a_body_matches_the_one_openssl_computed() -> None:
    assert sign(BODY, SECRET) == BODY_SIGNATURE
    assert sign(b"", "x") == EMPTY_BODY_SIGNATURE


@pytest.mark.parametrize(
    ("body", "secret"),
    [
        pytest.param(b"hello", "s", id="ascii"),
        pytest.param(json.dumps({"a": "é"}).encode(), "long-" * 40, id="key-longer-than-block"),
        pytest.param(bytes(range(256)) * 5, "ключ", id="binary-body-unicode-key"),
        pytest.param(b"body\n", "trailing-newline-counts", id="newline"),
    ],
)
def test_signature_matches_openssl_computed_live(body: bytes, secret: str) -> None:
    assert sign(body, secret) == openssl_signature(body, secret.encode())


def test_a_secret_from_the_environment_that_is_not_utf8_signs_with_its_original_bytes() -> None:
    raw = b"caf\xe9-latin1"
    secret = os.fsdecode(raw)  # how Python hands such a variable over: surrogate escapes
    assert sign(BODY, secret) == openssl_signature(BODY, raw)
    assert verify(BODY, secret, sign(BODY, secret))


def test_signing_with_an_empty_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="empty secret"):
        sign(BODY, "")


def test_the_header_is_named_as_typeform_sends_it() -> None:
    assert SIGNATURE_HEADER == "Typeform-Signature"


# --------------------------------------------------------------------------- verify


def test_the_signature_typeform_would_send_is_valid() -> None:
    assert verify(BODY, SECRET, BODY_SIGNATURE)
    assert verify(b"", "x", EMPTY_BODY_SIGNATURE)
    assert diagnose(BODY, SECRET, f"  {BODY_SIGNATURE}\r\n") is Verdict.VALID


def test_a_body_changed_by_one_byte_is_refused() -> None:
    for i in range(len(BODY)):
        tampered = BODY[:i] + bytes([BODY[i] ^ 1]) + BODY[i + 1 :]
        assert not verify(tampered, SECRET, BODY_SIGNATURE), i
    assert not verify(BODY + b"\n", SECRET, BODY_SIGNATURE)
    assert not verify(BODY[:-1], SECRET, BODY_SIGNATURE)


def test_a_wrong_secret_is_refused() -> None:
    assert diagnose(BODY, SECRET + "x", BODY_SIGNATURE) is Verdict.MISMATCH
    assert diagnose(BODY, SECRET.upper(), BODY_SIGNATURE) is Verdict.MISMATCH
    assert not verify(BODY, "", BODY_SIGNATURE)
    assert diagnose(BODY, "", BODY_SIGNATURE) is Verdict.EMPTY_SECRET


DIGEST_B64 = BODY_SIGNATURE.removeprefix("sha256=")


@pytest.mark.parametrize(
    ("signature", "verdict"),
    [
        pytest.param("", Verdict.NO_PREFIX, id="empty"),
        pytest.param(DIGEST_B64, Verdict.NO_PREFIX, id="bare-digest"),
        pytest.param("SHA256=" + DIGEST_B64, Verdict.NO_PREFIX, id="uppercase-prefix"),
        pytest.param("sha1=" + DIGEST_B64, Verdict.NO_PREFIX, id="sha1"),
        pytest.param("sha256:" + DIGEST_B64, Verdict.NO_PREFIX, id="colon"),
        pytest.param("sha256=", Verdict.WRONG_LENGTH, id="prefix-only"),
        pytest.param("sha256=" + DIGEST_B64[:-4], Verdict.WRONG_LENGTH, id="truncated"),
        pytest.param("sha256=" + DIGEST_B64.rstrip("="), Verdict.NOT_BASE64, id="unpadded"),
        pytest.param("sha256=" + "A" * 10_000, Verdict.WRONG_LENGTH, id="huge"),
        pytest.param("sha256=!!!!" + DIGEST_B64[4:], Verdict.NOT_BASE64, id="garbage"),
        pytest.param("sha256=é" + DIGEST_B64[1:], Verdict.NOT_BASE64, id="non-ascii"),
        pytest.param(
            "sha256=" + DIGEST_B64.replace("+", "-").replace("/", "_"),
            Verdict.NOT_BASE64,
            id="urlsafe-alphabet",
        ),
        pytest.param(
            "sha256=" + base64.b64decode(DIGEST_B64).hex(), Verdict.WRONG_LENGTH, id="hex-digest"
        ),
        pytest.param(
            "sha256=" + base64.b64encode(bytes(32)).decode(), Verdict.MISMATCH, id="zero-digest"
        ),
    ],
)
def test_a_malformed_or_foreign_signature_is_refused_with_its_reason(
    signature: str, verdict: Verdict
) -> None:
    assert diagnose(BODY, SECRET, signature) is verdict
    assert verify(BODY, SECRET, signature) is False


def test_verify_refuses_values_that_are_not_text_instead_of_raising() -> None:
    assert verify(BODY, SECRET, BODY_SIGNATURE.encode()) is False  # type: ignore[arg-type]
    assert verify(BODY, SECRET, None) is False  # type: ignore[arg-type]
    assert verify(BODY.decode(), SECRET, BODY_SIGNATURE) is False  # type: ignore[arg-type]


@given(body=st.binary(max_size=512), secret=st.text(max_size=40), signature=st.text())
def test_verify_answers_a_bool_for_any_input_and_never_accepts_a_guess(
    body: bytes, secret: str, signature: str
) -> None:
    assert verify(body, secret, signature) is (bool(secret) and signature == sign(body, secret))


@given(body=st.binary(max_size=512), secret=st.text(min_size=1, max_size=40))
def test_every_signature_we_make_verifies(body: bytes, secret: str) -> None:
    assert verify(body, secret, sign(body, secret))


def test_no_reason_repeats_the_secret() -> None:
    for verdict in Verdict:
        assert SECRET not in verdict.reason


# --------------------------------------------------------------------------- sample payload

NOW = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)


def test_the_sample_is_a_form_response_for_the_given_form_submitted_now() -> None:
    sample = sample_form_response("u6nXL7", "intake", now=NOW)
    assert sample["event_type"] == "form_response"
    response = sample["form_response"]
    assert response["form_id"] == "u6nXL7"
    assert response["submitted_at"] == "2026-03-04T05:06:07Z"
    assert response["landed_at"] < response["submitted_at"]
    assert response["definition"]["id"] == "u6nXL7"
    assert "intake" in response["definition"]["title"]
    assert response["definition"]["fields"] == []
    assert response["answers"] == []
    assert len(response["token"]) == 32
    json.dumps(sample)  # it is what gets sent


def test_each_sample_is_a_new_event_whose_id_sorts_by_time() -> None:
    first = sample_form_response("f", "t", now=NOW)
    later = sample_form_response("f", "t", now=NOW + timedelta(seconds=1))
    again = sample_form_response("f", "t", now=NOW)
    assert first["event_id"] != again["event_id"]
    assert first["form_response"]["token"] != again["form_response"]["token"]
    assert first["event_id"][:10] == again["event_id"][:10]  # the time part
    assert first["event_id"] < later["event_id"]
    assert len(first["event_id"]) == 26


def test_the_sample_is_stamped_in_utc_whatever_the_zone_of_now() -> None:
    paris = NOW.astimezone(timezone(timedelta(hours=1)))
    sample = sample_form_response("f", "t", now=paris)
    assert sample["form_response"]["submitted_at"] == "2026-03-04T05:06:07Z"


def test_a_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        sample_form_response("f", "t", now=datetime(2026, 1, 1))


# --------------------------------------------------------------------------- verify-signature CLI

ENV = "HOOK_SECRET_FOR_TEST"


def invoke(*args: str, body: bytes, env: dict[str, str | None] | None = None) -> Result:
    # standalone_mode=False hands back the command's return value, which reconciler.cli.main
    # turns into the exit code.
    environment: dict[str, str | None] = {ENV: SECRET}
    environment.update(env or {})
    return CliRunner().invoke(
        verify_signature, list(args), input=body, env=environment, standalone_mode=False
    )


def exit_code(result: Result) -> int:
    assert result.exception is None, result.exception
    assert isinstance(result.return_value, int)
    assert SECRET not in result.stdout + result.stderr
    return result.return_value


def test_verify_signature_says_valid_and_exits_0() -> None:
    result = invoke("--secret-env", ENV, "--signature", BODY_SIGNATURE, body=BODY)
    assert exit_code(result) == 0
    assert result.stdout == "valid\n"
    assert result.stderr == ""


def test_verify_signature_says_why_a_tampered_body_is_invalid_and_exits_1() -> None:
    result = invoke("--secret-env", ENV, "--signature", BODY_SIGNATURE, body=BODY + b" ")
    assert exit_code(result) == 1
    assert result.stdout == f"invalid: {Verdict.MISMATCH.reason}\n"


def test_verify_signature_names_a_missing_prefix() -> None:
    result = invoke("--secret-env", ENV, "--signature", DIGEST_B64, body=BODY)
    assert exit_code(result) == 1
    assert result.stdout == "invalid: the signature does not start with 'sha256='\n"


def test_verify_signature_points_at_a_line_break_added_when_saving_the_body() -> None:
    result = invoke("--secret-env", ENV, "--signature", BODY_SIGNATURE, body=BODY + b"\n")
    assert exit_code(result) == 1
    assert result.stdout.startswith(f"invalid: {Verdict.MISMATCH.reason} (it would match")
    assert "final line break" in result.stdout


def test_verify_signature_with_an_unset_variable_is_an_error_naming_it() -> None:
    result = invoke("--secret-env", ENV, "--signature", BODY_SIGNATURE, body=BODY, env={ENV: None})
    assert exit_code(result) == 1
    assert result.stdout == ""
    assert result.stderr == f"Error: environment variable {ENV} is not set\n"


def test_verify_signature_with_an_empty_variable_is_an_error() -> None:
    result = invoke("--secret-env", ENV, "--signature", BODY_SIGNATURE, body=BODY, env={ENV: ""})
    assert exit_code(result) == 1
    assert result.stderr == f"Error: environment variable {ENV} is empty\n"


def test_verify_signature_reads_the_body_as_raw_bytes() -> None:
    body = bytes(range(256))
    result = invoke("--secret-env", ENV, "--signature", sign(body, SECRET), body=body)
    assert exit_code(result) == 0


def test_verify_signature_refuses_a_body_over_the_limit_without_checking_it() -> None:
    body = b"x" * (MAX_BODY_BYTES + 1)
    result = invoke("--secret-env", ENV, "--signature", sign(body, SECRET), body=body)
    assert exit_code(result) == 1
    assert result.stdout == ""
    assert result.stderr == "Error: the body on stdin is larger than 10 MB\n"
    at_limit = body[:MAX_BODY_BYTES]
    result = invoke("--secret-env", ENV, "--signature", sign(at_limit, SECRET), body=at_limit)
    assert exit_code(result) == 0


def test_verify_signature_never_prints_the_secret_even_when_given_as_the_signature() -> None:
    result = invoke("--secret-env", ENV, "--signature", SECRET, body=SECRET.encode())
    assert exit_code(result) == 1
    result = invoke("--secret-env", ENV, "--signature", "sha256=" + SECRET, body=BODY)
    assert exit_code(result) == 1


def test_verify_signature_help_gives_exit_codes_and_an_example() -> None:
    result = CliRunner().invoke(verify_signature, ["--help"])
    assert result.exit_code == 0
    assert "Exit codes: 0 valid, 1 invalid" in result.stdout
    assert "reconcile verify-signature --secret-env" in result.stdout

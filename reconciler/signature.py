"""Typeform's webhook signatures, as a receiver checks them, and a sample delivery to sign.

Typeform signs every delivery of a webhook that has a ``secret``: the ``Typeform-Signature``
header is ``sha256=`` followed by the base64 (standard alphabet, padded) of HMAC-SHA256 keyed
with the secret over the raw request body, byte for byte as sent. This module computes and checks
that value, for ``reconcile verify-signature``, ``reconcile ping`` and users' receivers.

It is pure and standard-library only: no I/O, no clock (``now`` is a parameter). It must never
put a secret into a return value, an exception or a log line, and ``verify`` must never raise
for any input a hostile sender controls (body, signature): it answers ``False``. Digests are
compared in constant time (``hmac.compare_digest``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from reconciler.clock import timestamp

__all__ = [
    "SIGNATURE_HEADER",
    "SIGNATURE_PREFIX",
    "Verdict",
    "diagnose",
    "sample_form_response",
    "sign",
    "verify",
]

SIGNATURE_HEADER = "Typeform-Signature"
SIGNATURE_PREFIX = "sha256="

_DIGEST_SIZE = hashlib.sha256().digest_size
# Base64 of a 32-byte digest is 44 characters; anything much longer is not worth decoding.
_MAX_ENCODED = 128


class Verdict(StrEnum):
    """Why a signature was accepted or refused. ``reason`` is safe to print: no secret in it."""

    VALID = "valid"
    EMPTY_SECRET = "empty_secret"
    NO_PREFIX = "no_prefix"
    NOT_BASE64 = "not_base64"
    WRONG_LENGTH = "wrong_length"
    MISMATCH = "mismatch"

    @property
    def reason(self) -> str:
        return _REASONS[self]


_REASONS = {
    Verdict.VALID: "the signature matches the body and the secret",
    Verdict.EMPTY_SECRET: "the secret is empty (Typeform never signs with an empty secret)",
    Verdict.NO_PREFIX: f"the signature does not start with {SIGNATURE_PREFIX!r}",
    Verdict.NOT_BASE64: f"the part after {SIGNATURE_PREFIX!r} is not standard padded base64",
    Verdict.WRONG_LENGTH: (
        f"the part after {SIGNATURE_PREFIX!r} is not a SHA-256 digest "
        f"({_DIGEST_SIZE} bytes, 44 base64 characters)"
    ),
    Verdict.MISMATCH: "the signature does not match this body with this secret",
}


def _key(secret: str) -> bytes:
    # ``surrogateescape``: a secret read from the environment keeps the bytes it was set with,
    # even when they are not UTF-8 (Python decodes environ that way).
    return secret.encode("utf-8", "surrogateescape")


def _digest(body: bytes, secret: str) -> bytes:
    return hmac.new(_key(secret), body, hashlib.sha256).digest()


def sign(body: bytes, secret: str) -> str:
    """The ``Typeform-Signature`` value of ``body`` under ``secret``: ``sha256=<base64>``.

    Raises ``ValueError`` for an empty secret: signing with one is never what was meant.
    """
    if not secret:
        raise ValueError("cannot sign with an empty secret")
    return SIGNATURE_PREFIX + base64.b64encode(_digest(body, secret)).decode("ascii")


def diagnose(body: bytes, secret: str, signature: str) -> Verdict:
    """Check ``signature`` (a ``Typeform-Signature`` value) against ``body`` and ``secret``.

    Surrounding whitespace of ``signature`` is ignored (header values are trimmed on the wire);
    anything else that is not exactly ``sha256=`` + padded standard base64 of the 32-byte
    HMAC-SHA256 is refused, with the reason. Never raises for a ``str`` signature.
    """
    if not secret:
        return Verdict.EMPTY_SECRET
    value = signature.strip()
    if not value.startswith(SIGNATURE_PREFIX):
        return Verdict.NO_PREFIX
    encoded = value[len(SIGNATURE_PREFIX) :]
    if len(encoded) > _MAX_ENCODED:
        return Verdict.WRONG_LENGTH
    try:
        received = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):  # ValueError: non-ASCII characters
        return Verdict.NOT_BASE64
    if len(received) != _DIGEST_SIZE:
        return Verdict.WRONG_LENGTH
    if hmac.compare_digest(_digest(body, secret), received):
        return Verdict.VALID
    return Verdict.MISMATCH


def verify(body: bytes, secret: str, signature: str) -> bool:
    """True only when ``signature`` is Typeform's signature of ``body`` under ``secret``.

    Constant-time in the digest comparison; ``False`` (never an exception) for a missing or
    wrong prefix, bad base64, a wrong length, an empty secret or a mismatch.
    """
    try:
        return diagnose(body, secret, signature) is Verdict.VALID
    except (TypeError, AttributeError):  # not a str / bytes at all: refuse, do not crash
        return False


# --------------------------------------------------------------------------- sample delivery

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def _ulid(now: datetime) -> str:
    """A ULID (time-ordered, 26 characters): the shape of Typeform's recent ``event_id``s."""
    value = (int(now.timestamp() * 1000) << 80) | secrets.randbits(80)
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


def sample_form_response(form_id: str, tag: str, *, now: datetime) -> dict[str, Any]:
    """A minimal but well-formed ``form_response`` delivery for ``form_id``, submitted at ``now``.

    Shaped like Typeform's example payload (``event_id``, ``event_type``, ``form_response`` with
    ``form_id``, ``token``, ``landed_at``, ``submitted_at``, ``definition`` and ``answers``); no
    answers, and a definition title that says it is a test from ``reconcile ping`` for ``tag``,
    so a receiver's logs show where it came from. ``now`` must be timezone-aware.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return {
        "event_id": _ulid(now),
        "event_type": "form_response",
        "form_response": {
            "form_id": form_id,
            "token": secrets.token_hex(16),
            "landed_at": timestamp(now - timedelta(seconds=30)),
            "submitted_at": timestamp(now),
            "definition": {
                "id": form_id,
                "title": f"Sample response sent by reconcile ping (tag {tag})",
                "fields": [],
            },
            "answers": [],
        },
    }

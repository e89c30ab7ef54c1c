"""Validation of webhook PUT bodies, answered as Typeform answers: 400 ``VALIDATION_ERROR``.

Every problem in a body is collected into ``details`` (one entry per field), so a client sees
all of them at once, the way the real API reports schema errors. A detail names the field and
never echoes a value: a bad ``secret`` must not come back in an error body.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from reconciler.emulator.store import WebhookChange
from reconciler.models import EVENT_TYPE_NAMES

__all__ = ["BODY_KEYS", "WebhookValidationError", "parse_webhook_body"]

BODY_KEYS = frozenset({"url", "enabled", "verify_ssl", "event_types", "secret"})
MAX_URL_LENGTH = 2048


class WebhookValidationError(ValueError):
    """A PUT body the API rejects; ``details`` is Typeform's list of field problems."""

    def __init__(self, details: list[dict[str, str]]) -> None:
        super().__init__("; ".join(d["description"] for d in details))
        self.details = details


def _detail(field: str, code: str, description: str) -> dict[str, str]:
    return {"code": code, "description": description, "field": field, "in": "body"}


def parse_webhook_body(body: Any, *, creating: bool) -> WebhookChange:
    """Turn a decoded JSON body into a ``WebhookChange``, or raise ``WebhookValidationError``."""
    if not isinstance(body, Mapping):
        raise WebhookValidationError(
            [_detail("(body)", "INVALID_TYPE", "the request body must be a JSON object")]
        )
    details: list[dict[str, str]] = [
        _detail(str(key), "UNKNOWN_FIELD", f"unknown field {key!s}")
        for key in sorted(map(str, body))
        if key not in BODY_KEYS
    ]

    url = body.get("url")
    if "url" not in body or url is None:
        if creating:
            details.append(_detail("url", "REQUIRED", "url is required to create a webhook"))
    elif not isinstance(url, str):
        details.append(_detail("url", "INVALID_TYPE", "url must be a string"))
    else:
        problem = _url_problem(url)
        if problem:
            details.append(_detail("url", "INVALID_URL", problem))

    for key in ("enabled", "verify_ssl"):
        if key in body and not isinstance(body[key], bool):
            details.append(_detail(key, "INVALID_TYPE", f"{key} must be a boolean"))

    event_types = body.get("event_types")
    if "event_types" in body:
        details.extend(_event_type_problems(event_types))

    secret = body.get("secret")
    if secret is not None and not isinstance(secret, str):
        details.append(_detail("secret", "INVALID_TYPE", "secret must be a string"))

    if details:
        raise WebhookValidationError(details)
    return WebhookChange(
        url=url if isinstance(url, str) else None,
        enabled=body.get("enabled"),
        verify_ssl=body.get("verify_ssl"),
        event_types=dict(event_types) if isinstance(event_types, Mapping) else None,
        # JSON null is treated as "left out": SDKs serialise unset optionals that way.
        secret=secret if isinstance(secret, str) else None,
    )


def _url_problem(url: str) -> str | None:
    if len(url) > MAX_URL_LENGTH:
        return f"url must be at most {MAX_URL_LENGTH} characters"
    try:
        parts = urlsplit(url)
    except ValueError:
        return "url is not a valid URL"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "url must be an absolute http or https URL"
    return None


def _event_type_problems(value: Any) -> list[dict[str, str]]:
    if not isinstance(value, Mapping):
        return [
            _detail(
                "event_types",
                "INVALID_TYPE",
                'event_types must be an object such as {"form_response": true}',
            )
        ]
    problems = []
    for key, flag in value.items():
        if key not in EVENT_TYPE_NAMES:
            problems.append(
                _detail(
                    f"event_types.{key}",
                    "UNKNOWN_EVENT_TYPE",
                    f"unknown event type {key!s}; known: {', '.join(EVENT_TYPE_NAMES)}",
                )
            )
        elif not isinstance(flag, bool):
            problems.append(
                _detail(
                    f"event_types.{key}", "INVALID_TYPE", f"event_types.{key} must be a boolean"
                )
            )
    return problems

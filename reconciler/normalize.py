"""Reduce desired and live webhooks to the same comparable *essence*.

A desired webhook comes from YAML with defaults merged in; a live one comes from the API with
server fields (``id``, timestamps) and maybe without ``event_types``. Both become a plain dict of
the fields this tool manages, under the API's field names, so the planner can compare with ``==``.

Secrets never enter an essence as values. Whether a declared secret matches the live one is
decided at the edge (by fingerprint, or directly where a response carries it) and handed in as a
``SecretStatus``; an essence only says ``"secret": "(sensitive)"`` when a secret is set.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from enum import StrEnum
from typing import Any

from reconciler.models import SENSITIVE, DesiredWebhook, LiveWebhook

__all__ = [
    "MANAGED_FIELDS",
    "SecretStatus",
    "desired_digest",
    "desired_essence",
    "hash_text",
    "live_essence",
    "live_form_fingerprint",
]

MANAGED_FIELDS: tuple[str, ...] = ("url", "enabled", "verify_ssl", "event_types", "secret")


class SecretStatus(StrEnum):
    """How a declared secret compares with the live webhook's (decided outside the planner)."""

    IN_SYNC = "in_sync"
    """The live secret is known to equal the declared one."""
    CHANGED = "changed"
    """The live secret is known to differ (fingerprint or response mismatch)."""
    UNKNOWN = "unknown"
    """Nothing records what the live secret is: setting it is the only way to be sure."""


def desired_essence(webhook: DesiredWebhook) -> dict[str, Any]:
    """The API-shaped body this tool wants live (without the secret's value)."""
    essence: dict[str, Any] = {
        "url": webhook.url,
        "enabled": webhook.enabled,
        "verify_ssl": webhook.verify_ssl,
        "event_types": webhook.event_types.to_api(),
    }
    if webhook.secret is not None:
        essence["secret"] = SENSITIVE
    return essence


def live_essence(webhook: LiveWebhook, *, secret_known: bool = False) -> dict[str, Any]:
    """The managed fields of a live webhook; ``secret`` appears when one is known to be set."""
    essence: dict[str, Any] = {
        "url": webhook.url,
        "enabled": webhook.enabled,
        "verify_ssl": webhook.verify_ssl,
        "event_types": webhook.event_types.to_api(),
    }
    if secret_known or webhook.secret:
        essence["secret"] = SENSITIVE
    return essence


def desired_digest(webhooks: Iterable[DesiredWebhook]) -> str:
    """A digest of desired webhooks as a plan sees them (secret references, never values)."""
    rows = [
        {
            **w.key.to_json(),
            "state": w.state.value,
            "previous_tags": list(w.previous_tags),
            "secret": w.secret.describe() if w.secret else None,
            **({k: v for k, v in desired_essence(w).items() if k != "secret"}),
        }
        for w in sorted(webhooks, key=lambda w: w.key)
    ]
    canonical = json.dumps(rows, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def hash_text(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def live_form_fingerprint(webhooks: Iterable[LiveWebhook]) -> str:
    """A digest of everything the API said about one form's webhooks, in a stable order.

    A saved plan stores it per touched form; any change since (including ``updated_at``) makes
    the plan stale. Secrets are folded in only through a hash, never stored.
    """
    rows = []
    for w in sorted(webhooks, key=lambda w: w.key):
        rows.append(
            {
                **live_essence(w),
                "id": w.id,
                "tag": w.key.tag,
                "updated_at": w.updated_at,
                # After the essence, whose "(sensitive)" would otherwise hide an echoed secret.
                "secret": hashlib.sha256(w.secret.encode()).hexdigest() if w.secret else None,
            }
        )
    canonical = json.dumps(rows, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()

"""Desired + live + last-applied -> DriftReport. Pure: no I/O, no clock, no secrets.

``reconcile drift`` and every ``watch`` cycle end here (SPEC sections 5 and 11). The report must
agree with the plan: a declared webhook is ``drifted`` or ``missing`` exactly when ``build_plan``
would create, update or delete it, so "drift says 2" and "plan says 2 changes" never disagree.
On top of the plan's verdict the report says *why*, by a three-way comparison of the manifest
(D), what this tool last applied (A, from the state file) and what is live (L):

========================  ==================  =============================================
D vs A                    L vs A              cause
========================  ==================  =============================================
(no A recorded)           (any)               ``unknown``: never applied by this tool
equal                     differs             ``changed_outside``: someone changed Typeform
differs                   equal               ``not_applied``: the manifest moved, not applied
differs                   differs             ``both``
========================  ==================  =============================================

Only the managed fields (``url``, ``enabled``, ``verify_ssl``, ``event_types``) take part: A never
holds a secret. A secret-only drift of a webhook with A recorded is ``not_applied`` (the manifest's
secret differs from the fingerprint of the one last applied, or was never recorded).

This module must never see or emit a secret value: secrets arrive as ``SecretStatus`` and
leave as ``SENSITIVE``. It must never decide what to write either; it only describes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from reconciler.models import (
    Action,
    Change,
    DesiredState,
    EventTypes,
    FieldChange,
    Plan,
    Reason,
    Target,
    UntouchedWebhook,
    WebhookKey,
)
from reconciler.normalize import SecretStatus
from reconciler.planner import LiveForms, PlanOptions, build_plan
from reconciler.render import reason_text

__all__ = [
    "DRIFT_FORMAT_VERSION",
    "DriftCause",
    "DriftReport",
    "DriftStatus",
    "WebhookDrift",
    "detect_drift",
    "drift_from_plan",
    "typeform_disabled_issue",
]

DRIFT_FORMAT_VERSION = "1"

_COMPARED = ("url", "enabled", "verify_ssl", "event_types")
"""The fields a last-applied body holds; the cause is judged on these alone."""


class DriftStatus(StrEnum):
    IN_SYNC = "in_sync"
    DRIFTED = "drifted"
    MISSING = "missing"
    UNMANAGED = "unmanaged"


class DriftCause(StrEnum):
    """Why a drifted or missing webhook differs (see the module docstring's table)."""

    CHANGED_OUTSIDE = "changed_outside"
    NOT_APPLIED = "not_applied"
    BOTH = "both"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class WebhookDrift:
    """One webhook's verdict.

    ``cause`` is set for ``drifted`` and ``missing`` only. ``changes`` go from live (``before``)
    to the manifest (``after``), as the plan's would; a secret shows as ``SENSITIVE``, or ``None``
    on the live side when nothing records what it is. ``url`` is the live URL, or the declared one
    when the webhook is not live. ``last_checked`` is when the API was last read for it: a stale
    report keeps the last good verdicts with their own times.
    """

    key: WebhookKey
    status: DriftStatus
    cause: DriftCause | None
    issues: tuple[str, ...]
    changes: tuple[FieldChange, ...]
    url: str | None
    last_checked: str
    heal_suspended: bool = False

    @property
    def is_drift(self) -> bool:
        return self.status in (DriftStatus.DRIFTED, DriftStatus.MISSING)

    def to_json(self) -> dict[str, Any]:
        return {
            **self.key.to_json(),
            "status": self.status.value,
            "cause": self.cause.value if self.cause is not None else None,
            "issues": list(self.issues),
            "changes": [
                {"field": c.field, "before": c.before, "after": c.after} for c in self.changes
            ],
            "url": self.url,
            "last_checked": self.last_checked,
            "heal_suspended": self.heal_suspended,
        }


_COUNTED = ("in_sync", "drifted", "missing", "unmanaged", "heal_suspended")


@dataclass(frozen=True, slots=True)
class DriftReport:
    """What ``drift`` found (SPEC section 5), in stable order (account, form_id, tag).

    ``stale`` is set when the cycle that should have produced this report failed: ``error`` says
    why, ``checked_at`` is when it failed, and ``webhooks`` are the last good verdicts (each with
    its own ``last_checked``). ``scope`` lists the ``--target`` addresses the report was limited
    to; an empty scope means everything declared, recorded or live on the refreshed forms.
    """

    checked_at: str
    webhooks: tuple[WebhookDrift, ...]
    stale: bool = False
    error: str | None = None
    scope: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "webhooks", tuple(sorted(self.webhooks, key=lambda w: w.key)))

    @property
    def in_sync(self) -> bool:
        """No webhook is drifted or missing (unmanaged ones are listed, not drift)."""
        return not any(w.is_drift for w in self.webhooks)

    @property
    def drifted(self) -> tuple[WebhookDrift, ...]:
        """The drifted and missing webhooks, in report order."""
        return tuple(w for w in self.webhooks if w.is_drift)

    def summary(self) -> dict[str, int]:
        """Counts per status, plus how many webhooks healing is suspended for."""
        return _totals(self.webhooks)

    def account_totals(self) -> dict[str, dict[str, int]]:
        """``summary()`` per account, accounts sorted by name."""
        by_account: dict[str, list[WebhookDrift]] = {}
        for w in self.webhooks:
            by_account.setdefault(w.key.account, []).append(w)
        return {a: _totals(rows) for a, rows in sorted(by_account.items())}

    def exits(self, *, fail_on_unmanaged: bool = False) -> int:
        """``drift``'s exit code: 0 in sync, 2 drift, 1 when the check itself failed (stale)."""
        if self.stale:
            return 1
        if not self.in_sync:
            return 2
        if fail_on_unmanaged and any(w.status is DriftStatus.UNMANAGED for w in self.webhooks):
            return 2
        return 0

    def as_stale(self, error: str, checked_at: str) -> DriftReport:
        """This report's verdicts, marked as no longer current because a cycle failed."""
        return replace(self, stale=True, error=error, checked_at=checked_at)

    def to_json(self) -> dict[str, Any]:
        """The versioned drift document (SPEC section 5); also ``latest.json`` of ``watch``."""
        return {
            "format_version": DRIFT_FORMAT_VERSION,
            "checked_at": self.checked_at,
            "in_sync": self.in_sync,
            "stale": self.stale,
            "error": self.error,
            "scope": list(self.scope),
            "summary": self.summary(),
            "accounts": self.account_totals(),
            "webhooks": [w.to_json() for w in self.webhooks],
        }


def _totals(webhooks: Iterable[WebhookDrift]) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for w in webhooks:
        counts[w.status.value] += 1
        if w.heal_suspended:
            counts["heal_suspended"] += 1
    return {name: counts[name] for name in _COUNTED}


# --------------------------------------------------------------------------- detection


def typeform_disabled_issue(url: str) -> str:
    return f"Typeform disables a webhook whose receiver answered 404 or 410: check {url}"


_PRUNE_HINT = "`reconcile apply --prune` deletes it"


def detect_drift(
    desired: DesiredState,
    live: LiveForms,
    *,
    managed: Mapping[WebhookKey, str],
    last_applied: Mapping[WebhookKey, Mapping[str, Any]],
    secrets: Mapping[WebhookKey, SecretStatus],
    checked_at: str,
    targets: Sequence[Target] = (),
    prune: bool = False,
    heal_suspended: Collection[WebhookKey] = (),
) -> DriftReport:
    """Compare what is declared with what is live, and say why each difference exists.

    Inputs are those of ``build_plan`` (``managed`` maps each webhook the state file records to
    its id; ``live`` holds every refreshed form, an empty list for one without webhooks) plus
    ``last_applied`` (the state file's last-applied body per webhook, API field names, no
    secret) and ``heal_suspended`` (webhooks ``watch --heal`` stopped correcting).

    The verdicts are the plan's, computed by ``build_plan`` itself, so drift and plan cannot
    disagree on ownership, renames, targets or forms that failed to refresh:

    * a planned ``noop`` is ``in_sync``, ``create`` is ``missing``, ``update`` and ``delete``
      are ``drifted`` (a ``delete`` of ``state: absent``, a rename, or with ``prune``);
    * what the plan leaves untouched is ``unmanaged`` (listed, never drift). That includes a
      webhook that is ours but no longer declared (or undeclared on an exclusive form) while
      ``prune`` is off: its issue says ``apply --prune`` deletes it, but a routine ``drift`` in
      CI does not fail on a deletion nobody asked for. With ``prune=True`` the plan deletes it,
      so it is ``drifted``.
    """
    plan = build_plan(
        desired,
        live,
        managed=managed,
        secrets=secrets,
        created_at=checked_at,
        options=PlanOptions(prune=prune, targets=tuple(targets)),
    )
    return drift_from_plan(
        plan, last_applied=last_applied, checked_at=checked_at, heal_suspended=heal_suspended
    )


def drift_from_plan(
    plan: Plan,
    *,
    last_applied: Mapping[WebhookKey, Mapping[str, Any]],
    checked_at: str,
    heal_suspended: Collection[WebhookKey] = (),
) -> DriftReport:
    """The drift report of a plan already built: ``watch --heal`` plans once, reports and heals.

    ``plan`` must come from ``build_plan`` over the same refresh (its ``targets`` become the
    report's scope).
    """
    suspended = frozenset(heal_suspended)
    rows = [
        _judge_change(c, _applied_essence(last_applied.get(c.key)), checked_at)
        for c in plan.actions
    ]
    rows += [_untouched(u, checked_at, prunable=False) for u in plan.unmanaged]
    rows += [_untouched(u, checked_at, prunable=True) for u in plan.prune_skipped]
    return DriftReport(
        checked_at=checked_at,
        webhooks=tuple(replace(r, heal_suspended=True) if r.key in suspended else r for r in rows),
        scope=tuple(str(t) for t in plan.targets),
    )


def _compared(essence: Mapping[str, Any]) -> dict[str, Any]:
    return {f: essence[f] for f in _COMPARED if f in essence}


def _applied_essence(body: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A last-applied body in essence form: API defaults filled in, secret dropped."""
    if body is None:
        return None
    event_types = body.get("event_types")
    return {
        "url": body.get("url"),
        "enabled": bool(body.get("enabled", True)),
        "verify_ssl": bool(body.get("verify_ssl", True)),
        "event_types": EventTypes.from_api(
            event_types if isinstance(event_types, Mapping) else None
        ).to_api(),
    }


def _three_way(
    desired: Mapping[str, Any] | None,
    live: Mapping[str, Any] | None,
    applied: Mapping[str, Any] | None,
) -> DriftCause:
    """``None`` for desired or live means "should not exist" / "does not exist"."""
    if applied is None:
        return DriftCause.UNKNOWN
    live_moved = live is None or _compared(live) != applied
    desired_moved = desired is None or _compared(desired) != applied
    if live_moved and desired_moved:
        return DriftCause.BOTH
    if live_moved:
        return DriftCause.CHANGED_OUTSIDE
    # Live equals what was applied: whatever differs is the manifest's (including a secret).
    return DriftCause.NOT_APPLIED


def _judge_change(change: Change, applied: dict[str, Any] | None, checked_at: str) -> WebhookDrift:
    before, after = change.before, change.after
    url = (before or after or {}).get("url")
    if change.action is Action.NOOP:
        return WebhookDrift(change.key, DriftStatus.IN_SYNC, None, (), (), url, checked_at)

    status = DriftStatus.MISSING if change.action is Action.CREATE else DriftStatus.DRIFTED
    issues = []
    for reason in change.reasons:
        text = reason_text((reason,), change.location)
        if reason is Reason.LIVE_DIFFERS:
            fields = sorted({c.field.split(".")[0] for c in change.changes if c.field != "secret"})
            text += f": {', '.join(fields)}"
        issues.append(text)
    if change.action is Action.CREATE and applied is not None:
        issues.append("deleted outside this tool since it was last applied")
    if before is not None and after is not None and _disabled_by_typeform(before, applied):
        issues.append(typeform_disabled_issue(str(before["url"])))
    return WebhookDrift(
        change.key,
        status,
        _three_way(after, before, applied),
        tuple(issues),
        change.changes,
        url,
        checked_at,
    )


def _disabled_by_typeform(live: Mapping[str, Any], applied: Mapping[str, Any] | None) -> bool:
    """``enabled`` went from true (as applied) to false, with nothing else changed live."""
    if applied is None or live["enabled"]:
        return False
    # Equal once re-enabled means: applied enabled, and not another field moved.
    return _compared({**live, "enabled": True}) == applied


def _untouched(item: UntouchedWebhook, checked_at: str, *, prunable: bool) -> WebhookDrift:
    issue = reason_text((item.reason,)) + (f"; {_PRUNE_HINT}" if prunable else "")
    return WebhookDrift(item.key, DriftStatus.UNMANAGED, None, (issue,), (), item.url, checked_at)

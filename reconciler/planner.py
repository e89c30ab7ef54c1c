"""Desired + live + ownership -> Plan. Pure: no I/O, no clock, no secrets.

This is where SPEC section 6 lives. Every live webhook on a refreshed form lands in exactly one
bucket: a planned action (create / update / delete / noop), ``prune_skipped`` (ours, but deleting
needs ``--prune``), or ``unmanaged`` (never touched). Deletion requires proof of ownership: an
explicit ``state: absent``, a record in the state file, or an ``exclusive`` WebhookSet; and the
latter two also require ``--prune``. A missing state file therefore never causes a deletion.

The planner never raises for an unsafe plan: ``check_safety`` does that, so ``plan`` can show a
plan that ``apply`` would refuse.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from reconciler.diff import field_changes
from reconciler.errors import UnsafePlanError
from reconciler.models import (
    Action,
    Change,
    DesiredState,
    DesiredWebhook,
    FieldChange,
    LiveWebhook,
    Location,
    Plan,
    Presence,
    UntouchedWebhook,
    WebhookKey,
)
from reconciler.normalize import (
    SecretStatus,
    desired_essence,
    live_essence,
    live_form_fingerprint,
)

__all__ = [
    "DEFAULT_MAX_DELETES",
    "LiveForms",
    "PlanOptions",
    "Target",
    "build_plan",
    "check_safety",
]

DEFAULT_MAX_DELETES = 10

LiveForms = Mapping[tuple[str, str], Sequence[LiveWebhook]]
"""Live webhooks of every refreshed form, keyed by ``(account, form_id)``."""


@dataclass(frozen=True, slots=True)
class Target:
    """``--target FORM_ID[/TAG]``: limits a run to one form, or one webhook of it."""

    form_id: str
    tag: str | None = None

    @classmethod
    def parse(cls, text: str) -> Target:
        form_id, _, tag = text.strip().partition("/")
        return cls(form_id=form_id, tag=tag or None)

    def matches(self, key: WebhookKey) -> bool:
        return key.form_id == self.form_id and (self.tag is None or key.tag == self.tag)


def in_targets(key: WebhookKey, targets: Sequence[Target]) -> bool:
    return not targets or any(t.matches(key) for t in targets)


@dataclass(frozen=True, slots=True)
class PlanOptions:
    prune: bool = False
    targets: tuple[Target, ...] = ()


def build_plan(
    desired: DesiredState,
    live: LiveForms,
    *,
    managed: Collection[WebhookKey],
    secrets: Mapping[WebhookKey, SecretStatus],
    created_at: str,
    options: PlanOptions | None = None,
) -> Plan:
    """Compute what apply would do.

    ``managed`` is the state file's set of webhooks this tool applied; ``secrets`` says, for each
    desired webhook that declares a secret, how it compares with the live one.
    """
    options = options or PlanOptions()
    declared = {w.key: w for w in desired.webhooks if in_targets(w.key, options.targets)}
    live_by_key = {
        w.key: w for hooks in live.values() for w in hooks if in_targets(w.key, options.targets)
    }
    exclusive = desired.exclusive_forms()

    changes: list[Change] = []
    unmanaged: list[UntouchedWebhook] = []
    prune_skipped: list[UntouchedWebhook] = []

    for key in sorted(declared.keys() | live_by_key.keys()):
        want = declared.get(key)
        have = live_by_key.get(key)
        if want is not None:
            changes.append(_plan_declared(want, have, secrets.get(key)))
            continue
        assert have is not None  # the union above guarantees one side
        if key in managed:
            why = "no longer declared; recorded in the state file as applied by this tool"
        elif (key.account, key.form_id) in exclusive:
            why = "not declared on a form whose WebhookSet has ownership: exclusive"
        else:
            unmanaged.append(
                UntouchedWebhook(key, have.url, "not declared and not applied by this tool")
            )
            continue
        if options.prune:
            changes.append(_delete(have, reason=why, secret_known=False))
        else:
            prune_skipped.append(UntouchedWebhook(key, have.url, f"{why}; --prune deletes it"))

    touched_forms = {(c.key.account, c.key.form_id) for c in changes if c.action is not Action.NOOP}
    return Plan(
        created_at=created_at,
        changes=tuple(changes),
        unmanaged=tuple(unmanaged),
        prune_skipped=tuple(prune_skipped),
        live_fingerprints={
            form: live_form_fingerprint(live.get(form, ())) for form in sorted(touched_forms)
        },
        prune=options.prune,
    )


def _plan_declared(
    want: DesiredWebhook, have: LiveWebhook | None, secret: SecretStatus | None
) -> Change:
    where = f" ({want.location})" if want.location else ""
    if want.state is Presence.ABSENT:
        if have is None:
            return Change(
                Action.NOOP, want.key, None, None, reason="already absent", location=want.location
            )
        return _delete(
            have,
            reason=f"declared state: absent{where}",
            secret_known=False,
            location=want.location,
        )

    after = desired_essence(want)
    if have is None:
        return Change(
            Action.CREATE,
            want.key,
            None,
            after,
            changes=tuple(FieldChange(f, None, v) for f, v in sorted(after.items())),
            reason=f"declared{where}, not found on the form",
            secret_ref=want.secret,
            location=want.location,
        )

    secret_known = secret in (SecretStatus.IN_SYNC, SecretStatus.CHANGED)
    before = live_essence(have, secret_known=secret_known)
    diffs = list(field_changes(_without_secret(before), _without_secret(after)))
    reasons = []
    if diffs:
        reasons.append(f"live differs from the manifest{where}")
    if want.secret is not None and secret is not SecretStatus.IN_SYNC:
        diffs.append(FieldChange("secret", before.get("secret"), after["secret"]))
        diffs.sort(key=lambda c: c.field)
        reasons.append(
            "secret changed"
            if secret is SecretStatus.CHANGED
            else "secret not recorded in the state file: setting it is the only way to be sure"
        )
    action = Action.UPDATE if diffs else Action.NOOP
    return Change(
        action,
        want.key,
        before,
        after if diffs else before,
        changes=tuple(diffs),
        reason="; ".join(reasons) if reasons else "in sync",
        webhook_id=have.id,
        secret_ref=want.secret,
        location=want.location,
    )


def _delete(
    have: LiveWebhook, *, reason: str, secret_known: bool, location: Location | None = None
) -> Change:
    before = live_essence(have, secret_known=secret_known)
    return Change(
        Action.DELETE,
        have.key,
        before,
        None,
        changes=tuple(FieldChange(f, v, None) for f, v in sorted(before.items())),
        reason=reason,
        webhook_id=have.id,
        location=location,
    )


def _without_secret(essence: Mapping[str, object]) -> dict[str, object]:
    return {k: v for k, v in essence.items() if k != "secret"}


def check_safety(
    plan: Plan,
    desired: DesiredState,
    *,
    managed: Collection[WebhookKey],
    max_deletes: int,
    allow_empty: bool,
) -> None:
    """Refuse plans that delete too much (SPEC sections 4 and 6), before anything is written.

    * more deletions than ``max_deletes``;
    * deletions by ownership (``--prune``) that would leave an account with nothing the tool
      manages: no webhook declared present anywhere in the manifests (not only in ``--target``
      scope) and none left in the state file (``managed``). That is the signature of a manifest
      directory that went missing. Explicit ``state: absent`` deletions are intent, not inference,
      and never count as emptying an account.
    """
    deletes = [c for c in plan.changes if c.action is Action.DELETE]
    if len(deletes) > max_deletes:
        raise UnsafePlanError(
            f"the plan deletes {len(deletes)} webhooks, more than --max-deletes {max_deletes}; "
            "review it with `reconcile plan`, then raise --max-deletes if it is right"
        )
    if allow_empty:
        return
    absent = {w.key for w in desired.webhooks if w.state is Presence.ABSENT}
    inferred = [c for c in deletes if c.key not in absent]
    if not inferred:
        return
    deleted = {c.key for c in deletes}
    remaining: dict[str, int] = defaultdict(int)
    for w in desired.webhooks:
        if w.state is Presence.PRESENT:
            remaining[w.key.account] += 1
    for key in managed:
        if key not in deleted:
            remaining[key.account] += 1
    emptied = sorted({c.key.account for c in inferred if not remaining[c.key.account]})
    if emptied:
        raise UnsafePlanError(
            f"the plan deletes every managed webhook of account(s) {', '.join(emptied)} and the "
            "manifests declare none there; if that is really meant, pass --allow-empty"
        )

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
from dataclasses import dataclass, replace

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
    Reason,
    Target,
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
    "in_targets",
]

DEFAULT_MAX_DELETES = 10

LiveForms = Mapping[tuple[str, str], Sequence[LiveWebhook]]
"""Live webhooks of every refreshed form, keyed by ``(account, form_id)``."""


def in_targets(key: WebhookKey, targets: Sequence[Target]) -> bool:
    return not targets or any(t.matches(key) for t in targets)


@dataclass(frozen=True, slots=True)
class PlanOptions:
    prune: bool = False
    targets: tuple[Target, ...] = ()
    changed_since: str | None = None
    """``--changed-since REF``: the plan is partial, limited to ``targets`` (even when empty)."""
    changed_selectors: frozenset[tuple[str, str, str]] = frozenset()
    """With ``changed_since``: the selector entries (set, account, tag) to re-expand."""


def build_plan(
    desired: DesiredState,
    live: LiveForms,
    *,
    managed: Mapping[WebhookKey, str],
    secrets: Mapping[WebhookKey, SecretStatus],
    created_at: str,
    options: PlanOptions | None = None,
) -> Plan:
    """Compute what apply would do.

    ``managed`` maps each webhook the state says this tool applied to the id it recorded: a live
    webhook is ours only under that id (one re-created outside the tool under the same tag is
    not). ``secrets`` says, for each desired webhook that declares a secret, how it compares with
    the live one.
    """
    options = options or PlanOptions()
    # A declared webhook is planned only when its form was refreshed: a form whose account
    # failed to refresh is unknown, not empty (planning a create there would be a guess).
    declared = {
        w.key: w
        for w in desired.webhooks
        if in_targets(w.key, options.targets) and (w.key.account, w.key.form_id) in live
    }
    live_by_key = {
        w.key: w for hooks in live.values() for w in hooks if in_targets(w.key, options.targets)
    }
    exclusive = desired.exclusive_forms()
    renamed = {
        WebhookKey(w.key.account, w.key.form_id, old): w
        for w in declared.values()
        if w.state is Presence.PRESENT
        for old in w.previous_tags
    }

    changes: list[Change] = []
    unmanaged: list[UntouchedWebhook] = []
    prune_skipped: list[UntouchedWebhook] = []

    for key in sorted(declared.keys() | live_by_key.keys()):
        want = declared.get(key)
        have = live_by_key.get(key)
        if want is not None:
            change = _plan_declared(want, have, secrets.get(key))
            if want.previous_tags:
                change = _moved_from(change, want, live_by_key, managed)
            changes.append(change)
            continue
        assert have is not None  # the union above guarantees one side
        ours = managed.get(key) == have.id
        if key in renamed:
            new = renamed[key]
            if ours:  # a rename is intent: no --prune needed, deleted once the new one exists
                changes.append(
                    replace(
                        _delete(have, reasons=(Reason.RENAMED,), location=new.location),
                        moved_to=new.key,
                    )
                )
            else:
                unmanaged.append(UntouchedWebhook(key, have.url, Reason.RENAMED_NOT_OURS))
            continue
        if key in managed and not ours:
            unmanaged.append(UntouchedWebhook(key, have.url, Reason.REPLACED_OUTSIDE))
            continue
        if ours:
            why = Reason.NO_LONGER_DECLARED
        elif (key.account, key.form_id) in exclusive:
            why = Reason.EXCLUSIVE_UNDECLARED
        else:
            unmanaged.append(UntouchedWebhook(key, have.url, Reason.NOT_DECLARED))
            continue
        if options.prune:
            changes.append(_delete(have, reasons=(why,)))
        else:
            prune_skipped.append(UntouchedWebhook(key, have.url, why))

    touched_forms = {(c.key.account, c.key.form_id) for c in changes if c.action is not Action.NOOP}
    return Plan(
        created_at=created_at,
        actions=tuple(changes),
        unmanaged=tuple(unmanaged),
        prune_skipped=tuple(prune_skipped),
        live_fingerprints={
            form: live_form_fingerprint(live.get(form, ())) for form in sorted(touched_forms)
        },
        prune=options.prune,
        targets=options.targets,
        changed_since=options.changed_since,
    )


def _plan_declared(
    want: DesiredWebhook, have: LiveWebhook | None, secret: SecretStatus | None
) -> Change:
    if want.state is Presence.ABSENT:
        if have is None:
            return Change(
                Action.NOOP,
                want.key,
                None,
                None,
                reasons=(Reason.ALREADY_ABSENT,),
                location=want.location,
            )
        return _delete(have, reasons=(Reason.DECLARED_ABSENT,), location=want.location)

    after = desired_essence(want)
    if have is None:
        return Change(
            Action.CREATE,
            want.key,
            None,
            after,
            changes=tuple(FieldChange(f, None, v) for f, v in sorted(after.items())),
            reasons=(Reason.DECLARED_NOT_LIVE,),
            secret_ref=want.secret,
            location=want.location,
        )

    secret_known = secret in (SecretStatus.IN_SYNC, SecretStatus.CHANGED)
    before = live_essence(have, secret_known=secret_known)
    diffs = list(field_changes(_without_secret(before), _without_secret(after)))
    reasons: list[Reason] = []
    if diffs:
        reasons.append(Reason.LIVE_DIFFERS)
    if want.secret is not None and secret is not SecretStatus.IN_SYNC:
        diffs.append(FieldChange("secret", before.get("secret"), after["secret"]))
        diffs.sort(key=lambda c: c.field)
        reasons.append(
            Reason.SECRET_CHANGED if secret is SecretStatus.CHANGED else Reason.SECRET_NOT_RECORDED
        )
    action = Action.UPDATE if diffs else Action.NOOP
    return Change(
        action,
        want.key,
        before,
        after if diffs else before,
        changes=tuple(diffs),
        reasons=tuple(reasons) or (Reason.IN_SYNC,),
        webhook_id=have.id,
        secret_ref=want.secret,
        location=want.location,
    )


def _moved_from(
    change: Change,
    want: DesiredWebhook,
    live_by_key: Mapping[WebhookKey, LiveWebhook],
    managed: Mapping[WebhookKey, str],
) -> Change:
    """Mark the new webhook of a rename with the old one it replaces (if that one is ours)."""
    for old in want.previous_tags:
        key = WebhookKey(want.key.account, want.key.form_id, old)
        have = live_by_key.get(key)
        if have is not None and managed.get(key) == have.id:
            return replace(change, moved_from=key, reasons=(*change.reasons, Reason.RENAMED_FROM))
    return change


def _delete(
    have: LiveWebhook, *, reasons: tuple[Reason, ...], location: Location | None = None
) -> Change:
    before = live_essence(have, secret_known=False)
    return Change(
        Action.DELETE,
        have.key,
        before,
        None,
        changes=tuple(FieldChange(f, v, None) for f, v in sorted(before.items())),
        reasons=reasons,
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
    deletes = [c for c in plan.actions if c.action is Action.DELETE]
    if len(deletes) > max_deletes:
        raise UnsafePlanError(
            f"the plan deletes {len(deletes)} webhooks, more than --max-deletes {max_deletes}; "
            "review it with `reconcile plan`, then raise --max-deletes if it is right"
        )
    if allow_empty:
        return
    absent = {w.key for w in desired.webhooks if w.state is Presence.ABSENT}
    # Declared deletions (state: absent, renames) are intent, not inference.
    inferred = [c for c in deletes if c.key not in absent and c.moved_to is None]
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

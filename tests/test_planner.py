"""Planner rules that golden cases do not show well: safety checks, secrets, determinism."""

from __future__ import annotations

import pytest

from reconciler.errors import UnsafePlanError
from reconciler.models import (
    DEFAULT_ACCOUNT,
    SENSITIVE,
    Action,
    DesiredState,
    DesiredWebhook,
    EventTypes,
    LiveWebhook,
    Ownership,
    Presence,
    SecretRef,
    SecretSource,
    WebhookKey,
    WebhookSet,
)
from reconciler.normalize import SecretStatus
from reconciler.planner import PlanOptions, Target, build_plan, check_safety

NOW = "2026-01-01T00:00:00Z"


def key(form: str, tag: str, account: str = DEFAULT_ACCOUNT) -> WebhookKey:
    return WebhookKey(account, form, tag)


def desired(*hooks: DesiredWebhook, ownership: Ownership = Ownership.DECLARED) -> DesiredState:
    return DesiredState(sets=(WebhookSet("s", DEFAULT_ACCOUNT, ownership, tuple(hooks)),))


def want(form: str, tag: str, **kw: object) -> DesiredWebhook:
    kw.setdefault("url", f"https://hooks.example.com/{tag}")
    return DesiredWebhook(key=key(form, tag), **kw)  # type: ignore[arg-type]


def have(form: str, tag: str, url: str | None = None, **kw: object) -> LiveWebhook:
    return LiveWebhook(
        key=key(form, tag),
        id=f"id-{tag}",
        url=url or f"https://hooks.example.com/{tag}",
        enabled=bool(kw.get("enabled", True)),
        verify_ssl=True,
        event_types=EventTypes(),
    )


def owned(*keys: WebhookKey) -> dict[WebhookKey, str]:
    """State entries for ``keys``, recorded under the ids ``have`` gives them."""
    return {k: f"id-{k.tag}" for k in keys}


def live(*hooks: LiveWebhook) -> dict[tuple[str, str], list[LiveWebhook]]:
    out: dict[tuple[str, str], list[LiveWebhook]] = {}
    for h in hooks:
        out.setdefault((h.key.account, h.key.form_id), []).append(h)
    return out


def test_a_webhook_that_is_declared_and_matches_is_a_noop() -> None:
    plan = build_plan(
        desired(want("f1", "a")), live(have("f1", "a")), managed={}, secrets={}, created_at=NOW
    )
    assert [c.action for c in plan.actions] == [Action.NOOP]
    assert not plan.has_changes


def test_losing_the_state_file_never_plans_a_deletion_even_with_prune() -> None:
    plan = build_plan(
        desired(want("f1", "a")),
        live(have("f1", "a"), have("f1", "ours-once")),
        managed={},
        secrets={},
        created_at=NOW,
        options=PlanOptions(prune=True),
    )
    assert plan.count(Action.DELETE) == 0
    assert [u.key.tag for u in plan.unmanaged] == ["ours-once"]


def test_a_secret_change_shows_both_sides_as_sensitive_and_never_a_value() -> None:
    ref = SecretRef(SecretSource.ENV, "S")
    plan = build_plan(
        desired(want("f1", "a", secret=ref)),
        live(have("f1", "a")),
        managed={},
        secrets={key("f1", "a"): SecretStatus.CHANGED},
        created_at=NOW,
    )
    (change,) = plan.actions
    assert change.action is Action.UPDATE
    assert [(c.field, c.before, c.after) for c in change.changes] == [
        ("secret", SENSITIVE, SENSITIVE)
    ]


def test_a_declared_secret_in_sync_is_a_noop() -> None:
    ref = SecretRef(SecretSource.ENV, "S")
    plan = build_plan(
        desired(want("f1", "a", secret=ref)),
        live(have("f1", "a")),
        managed={},
        secrets={key("f1", "a"): SecretStatus.IN_SYNC},
        created_at=NOW,
    )
    assert not plan.has_changes


def test_changes_are_ordered_by_account_form_and_tag_whatever_the_input_order() -> None:
    hooks = [want("f2", "b"), want("f1", "z"), want("f1", "a")]
    refreshed = {(DEFAULT_ACCOUNT, "f2"): [], (DEFAULT_ACCOUNT, "f1"): []}
    plan = build_plan(desired(*hooks), refreshed, managed={}, secrets={}, created_at=NOW)
    assert [(c.key.form_id, c.key.tag) for c in plan.actions] == [
        ("f1", "a"),
        ("f1", "z"),
        ("f2", "b"),
    ]


def test_a_declared_webhook_on_a_form_that_was_not_refreshed_is_not_planned() -> None:
    # Its account failed to refresh: the form is unknown, not empty, so no create is guessed.
    plan = build_plan(
        desired(want("f1", "a"), want("f2", "b")),
        {(DEFAULT_ACCOUNT, "f1"): []},
        managed={},
        secrets={},
        created_at=NOW,
    )
    assert [str(c.key) for c in plan.actions] == ["f1/a"]


def test_only_touched_forms_get_a_live_fingerprint() -> None:
    plan = build_plan(
        desired(want("f1", "a"), want("f2", "b")),
        live(have("f1", "a"), have("f2", "b", url="https://old.example.com")),
        managed={},
        secrets={},
        created_at=NOW,
    )
    assert list(plan.live_fingerprints) == [(DEFAULT_ACCOUNT, "f2")]


def test_more_deletions_than_max_deletes_is_refused() -> None:
    absent = [want("f1", f"t{i}", url=None, state=Presence.ABSENT) for i in range(3)]
    manifests = desired(want("f1", "keep"), *absent)
    plan = build_plan(
        manifests,
        live(have("f1", "keep"), *(have("f1", f"t{i}") for i in range(3))),
        managed={},
        secrets={},
        created_at=NOW,
    )
    with pytest.raises(UnsafePlanError, match="--max-deletes 2"):
        check_safety(plan, manifests, managed={}, max_deletes=2, allow_empty=False)
    check_safety(plan, manifests, managed={}, max_deletes=3, allow_empty=False)


def test_deleting_every_managed_webhook_of_an_account_needs_allow_empty() -> None:
    plan = build_plan(
        DesiredState(),
        live(have("f1", "a"), have("f1", "b")),
        managed=owned(key("f1", "a"), key("f1", "b")),
        secrets={},
        created_at=NOW,
        options=PlanOptions(prune=True),
    )
    assert plan.count(Action.DELETE) == 2
    managed = owned(key("f1", "a"), key("f1", "b"))
    with pytest.raises(UnsafePlanError, match="--allow-empty"):
        check_safety(plan, DesiredState(), managed=managed, max_deletes=10, allow_empty=False)
    check_safety(plan, DesiredState(), managed=managed, max_deletes=10, allow_empty=True)


def test_deleting_some_managed_webhooks_while_others_remain_is_allowed() -> None:
    plan = build_plan(
        desired(want("f1", "a")),
        live(have("f1", "a"), have("f1", "b")),
        managed=owned(key("f1", "b")),
        secrets={},
        created_at=NOW,
        options=PlanOptions(prune=True),
    )
    assert plan.count(Action.DELETE) == 1
    check_safety(
        plan,
        desired(want("f1", "a")),
        managed=owned(key("f1", "b")),
        max_deletes=10,
        allow_empty=False,
    )


def test_pruning_within_a_target_is_allowed_while_webhooks_outside_it_stay_declared() -> None:
    plan = build_plan(
        desired(want("f2", "kept")),
        live(have("f1", "old")),
        managed=owned(key("f1", "old")),
        secrets={},
        created_at=NOW,
        options=PlanOptions(prune=True, targets=(Target("f1"),)),
    )
    assert [c.action for c in plan.actions] == [Action.DELETE]
    check_safety(
        plan,
        desired(want("f2", "kept")),
        managed=owned(key("f1", "old")),
        max_deletes=10,
        allow_empty=False,
    )


def test_explicit_absent_deletions_never_count_as_emptying_an_account() -> None:
    only_absent = desired(want("f1", "gone", url=None, state=Presence.ABSENT))
    plan = build_plan(
        only_absent,
        live(have("f1", "gone")),
        managed=owned(key("f1", "gone")),
        secrets={},
        created_at=NOW,
    )
    assert plan.count(Action.DELETE) == 1
    check_safety(
        plan, only_absent, managed=owned(key("f1", "gone")), max_deletes=10, allow_empty=False
    )


def test_a_target_leaves_live_webhooks_outside_it_out_of_every_list() -> None:
    plan = build_plan(
        DesiredState(),
        live(have("f1", "a"), have("f2", "b"), have("f2", "ours")),
        managed=owned(key("f2", "ours")),
        secrets={},
        created_at=NOW,
        options=PlanOptions(targets=(Target("f1"),)),
    )
    assert [w.key for w in plan.unmanaged] == [key("f1", "a")]
    assert plan.prune_skipped == ()
    assert plan.actions == ()


def test_the_plan_carries_the_changed_since_reference_it_was_made_for() -> None:
    plan = build_plan(
        desired(want("f1", "a")),
        live(have("f1", "a")),
        managed={},
        secrets={},
        created_at=NOW,
        options=PlanOptions(targets=(Target("f1"),), changed_since="origin/main"),
    )
    assert plan.changed_since == "origin/main"
    assert build_plan(DesiredState(), {}, managed={}, secrets={}, created_at=NOW).changed_since is (
        None
    )


def test_a_noop_shows_the_live_side_including_a_secret_nothing_declares() -> None:
    echoed = LiveWebhook(
        key=key("f1", "a"),
        id="id-a",
        url="https://hooks.example.com/a",
        enabled=True,
        verify_ssl=True,
        event_types=EventTypes(),
        secret="plain-secret-from-the-api",
    )
    plan = build_plan(
        desired(want("f1", "a")), live(echoed), managed={}, secrets={}, created_at=NOW
    )
    [noop] = plan.actions
    assert noop.action is Action.NOOP
    assert noop.after == noop.before
    assert noop.after is not None
    assert noop.after["secret"] == SENSITIVE
    assert "plain-secret-from-the-api" not in repr(plan)


def test_too_many_deletions_are_refused_with_what_to_do() -> None:
    absent = [want("f1", f"t{i}", url=None, state=Presence.ABSENT) for i in range(2)]
    manifests = desired(*absent)
    plan = build_plan(
        manifests,
        live(*(have("f1", f"t{i}") for i in range(2))),
        managed={},
        secrets={},
        created_at=NOW,
    )
    with pytest.raises(UnsafePlanError) as refused:
        check_safety(plan, manifests, managed={}, max_deletes=1, allow_empty=False)
    assert str(refused.value) == (
        "the plan deletes 2 webhooks, more than --max-deletes 1; "
        "review it with `reconcile plan`, then raise --max-deletes if it is right"
    )


def test_emptying_two_accounts_names_both_in_one_refusal() -> None:
    eu = WebhookKey("eu", "f9", "b")
    gone = LiveWebhook(
        key=eu,
        id="id-b",
        url="https://hooks.example.com/b",
        enabled=True,
        verify_ssl=True,
        event_types=EventTypes(),
    )
    managed = {**owned(key("f1", "a")), eu: "id-b"}
    plan = build_plan(
        DesiredState(),
        {**live(have("f1", "a")), ("eu", "f9"): [gone]},
        managed=managed,
        secrets={},
        created_at=NOW,
        options=PlanOptions(prune=True),
    )
    with pytest.raises(UnsafePlanError) as refused:
        check_safety(plan, DesiredState(), managed=managed, max_deletes=10, allow_empty=False)
    assert str(refused.value) == (
        "the plan deletes every managed webhook of account(s) default, eu and the manifests "
        "declare none there; if that is really meant, pass --allow-empty"
    )

"""Drift detection: every status and cause, the Typeform-disabled hint, agreement with plan."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.drift_report import (
    DriftCause,
    DriftReport,
    DriftStatus,
    WebhookDrift,
    detect_drift,
    drift_from_plan,
)
from reconciler.models import (
    DEFAULT_ACCOUNT,
    SENSITIVE,
    Action,
    DesiredState,
    DesiredWebhook,
    EventTypes,
    FieldChange,
    LiveWebhook,
    Location,
    Ownership,
    Presence,
    SecretRef,
    SecretSource,
    WebhookKey,
    WebhookSet,
)
from reconciler.normalize import SecretStatus
from reconciler.planner import PlanOptions, Target, build_plan

NOW = "2026-03-01T12:00:00Z"
URL = "https://hooks.example.com/a"
OTHER = "https://hooks.example.com/b"
SECRET_VALUE = "whsec-drift-test-value-7f3a"


def key(form: str = "F1", tag: str = "t", account: str = DEFAULT_ACCOUNT) -> WebhookKey:
    return WebhookKey(account, form, tag)


def want(
    form: str = "F1", tag: str = "t", account: str = DEFAULT_ACCOUNT, **kw: Any
) -> DesiredWebhook:
    kw.setdefault("url", URL)
    return DesiredWebhook(key=key(form, tag, account), **kw)


def have(
    form: str = "F1",
    tag: str = "t",
    account: str = DEFAULT_ACCOUNT,
    *,
    url: str = URL,
    enabled: bool = True,
    verify_ssl: bool = True,
    partial: bool = False,
    secret: str | None = None,
) -> LiveWebhook:
    return LiveWebhook(
        key=key(form, tag, account),
        id=f"id-{form}-{tag}",
        url=url,
        enabled=enabled,
        verify_ssl=verify_ssl,
        event_types=EventTypes(form_response=True, form_response_partial=partial),
        secret=secret,
    )


def applied(url: str = URL, *, enabled: bool = True, **kw: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "url": url,
        "enabled": enabled,
        "verify_ssl": True,
        "event_types": {"form_response": True, "form_response_partial": False},
    }
    body.update(kw)
    return body


def desired(*hooks: DesiredWebhook, ownership: Ownership = Ownership.DECLARED) -> DesiredState:
    by_account: dict[str, list[DesiredWebhook]] = {}
    for h in hooks:
        by_account.setdefault(h.key.account, []).append(h)
    return DesiredState(
        sets=tuple(
            WebhookSet(f"set-{a}", a, ownership, tuple(hs)) for a, hs in sorted(by_account.items())
        )
    )


def live(*hooks: LiveWebhook) -> dict[tuple[str, str], list[LiveWebhook]]:
    out: dict[tuple[str, str], list[LiveWebhook]] = {}
    for h in hooks:
        out.setdefault((h.key.account, h.key.form_id), []).append(h)
    return out


def drift(
    state: DesiredState,
    live_forms: dict[tuple[str, str], list[LiveWebhook]],
    *,
    last: dict[WebhookKey, dict[str, Any]] | None = None,
    managed: dict[WebhookKey, str] | None = None,
    secrets: dict[WebhookKey, SecretStatus] | None = None,
    **kw: Any,
) -> DriftReport:
    refreshed: dict[tuple[str, str], list[LiveWebhook]] = {
        (w.key.account, w.key.form_id): [] for w in state.webhooks
    }
    refreshed.update(live_forms)
    return detect_drift(
        state,
        refreshed,
        managed=ids(last or {}) if managed is None else managed,
        last_applied=last or {},
        secrets=secrets or {},
        checked_at=NOW,
        **kw,
    )


def ids(keys: Any) -> dict[WebhookKey, str]:
    """The state's id for each key: the id ``have`` gives the live webhook."""
    return {k: f"id-{k.form_id}-{k.tag}" for k in keys}


def only(report: DriftReport) -> WebhookDrift:
    assert len(report.webhooks) == 1, report.webhooks
    return report.webhooks[0]


SECRET = SecretRef(SecretSource.ENV, "HOOK_SECRET")


# --------------------------------------------------------------------------- statuses


def test_a_declared_webhook_that_matches_live_is_in_sync_with_no_cause() -> None:
    row = only(drift(desired(want()), live(have()), last={key(): applied()}))
    assert (row.status, row.cause, row.issues, row.changes) == (DriftStatus.IN_SYNC, None, (), ())
    assert row.url == URL
    assert row.last_checked == NOW


def test_a_declared_webhook_that_is_not_live_is_missing_with_the_fields_it_would_get() -> None:
    row = only(drift(desired(want()), live()))
    assert row.status is DriftStatus.MISSING
    assert row.cause is DriftCause.UNKNOWN
    assert row.issues == ("declared, not found on the form",)
    assert FieldChange("url", None, URL) in row.changes
    assert row.url == URL


def test_a_declared_webhook_whose_live_fields_differ_is_drifted_with_field_changes() -> None:
    row = only(drift(desired(want(verify_ssl=False)), live(have(partial=True))))
    assert row.status is DriftStatus.DRIFTED
    assert row.changes == (
        FieldChange("event_types.form_response_partial", True, False),
        FieldChange("verify_ssl", True, False),
    )
    assert row.issues == ("live differs from the manifest: event_types, verify_ssl",)


def test_a_webhook_declared_absent_but_still_live_is_drifted() -> None:
    row = only(drift(desired(want(state=Presence.ABSENT, url=None)), live(have())))
    assert row.status is DriftStatus.DRIFTED
    assert row.issues == ("declared state: absent",)
    assert FieldChange("url", URL, None) in row.changes


def test_a_webhook_declared_absent_and_gone_is_in_sync() -> None:
    row = only(drift(desired(want(state=Presence.ABSENT, url=None)), live()))
    assert row.status is DriftStatus.IN_SYNC


def test_a_live_webhook_nobody_declared_or_applied_is_unmanaged_and_not_drift() -> None:
    report = drift(desired(), live(have(tag="zapier")))
    row = only(report)
    assert (row.status, row.cause) == (DriftStatus.UNMANAGED, None)
    assert report.in_sync
    assert report.exits() == 0
    assert report.exits(fail_on_unmanaged=True) == 2


def test_an_applied_webhook_no_longer_declared_is_unmanaged_until_prune_is_asked() -> None:
    last = {key(): applied()}
    row = only(drift(desired(), live(have()), last=last))
    assert row.status is DriftStatus.UNMANAGED
    assert row.issues == (
        "no longer declared; recorded in the state file as applied by this tool; "
        "`reconcile apply --prune` deletes it",
    )
    pruned = only(drift(desired(), live(have()), last=last, prune=True))
    assert pruned.status is DriftStatus.DRIFTED
    assert pruned.cause is DriftCause.NOT_APPLIED
    assert FieldChange("url", URL, None) in pruned.changes


def test_an_undeclared_webhook_on_an_exclusive_form_is_drift_only_with_prune() -> None:
    state = desired(want(tag="ours"), ownership=Ownership.EXCLUSIVE)
    forms = live(have(tag="ours"), have(tag="stranger"))
    stranger = drift(state, forms).webhooks[1]
    assert stranger.key.tag == "stranger"
    assert stranger.status is DriftStatus.UNMANAGED
    assert "ownership: exclusive" in stranger.issues[0]
    pruned = drift(state, forms, prune=True).webhooks[1]
    assert (pruned.status, pruned.cause) == (DriftStatus.DRIFTED, DriftCause.UNKNOWN)


def test_a_webhook_re_created_outside_under_a_recorded_tag_is_unmanaged_even_with_prune() -> None:
    row = only(
        drift(
            desired(), live(have()), last={key(): applied()}, managed={key(): "id-old"}, prune=True
        )
    )
    assert row.status is DriftStatus.UNMANAGED
    assert "re-created outside this tool" in row.issues[0]


def test_a_renamed_webhook_shows_the_new_tag_missing_and_the_old_one_drifted() -> None:
    state = desired(want(tag="new", previous_tags=("old",)))
    report = drift(state, live(have(tag="old")), last={key(tag="old"): applied()})
    new, old = (next(w for w in report.webhooks if w.key.tag == t) for t in ("new", "old"))
    assert (new.status, new.cause) == (DriftStatus.MISSING, DriftCause.UNKNOWN)
    assert (old.status, old.cause) == (DriftStatus.DRIFTED, DriftCause.NOT_APPLIED)
    assert "renamed" in old.issues[0]  # the plan's wording, from render.reason_text


def test_issues_name_the_manifest_location_of_the_declaration() -> None:
    where = Location("manifests/hooks.yaml", 7, 7)
    row = only(drift(desired(want(url=OTHER, location=where)), live(have())))
    assert row.issues == ("live differs from the manifest (manifests/hooks.yaml:7:7): url",)


# --------------------------------------------------------------------------- causes


def test_live_changed_while_manifest_equals_last_applied_is_changed_outside() -> None:
    row = only(drift(desired(want()), live(have(url=OTHER)), last={key(): applied()}))
    assert (row.status, row.cause) == (DriftStatus.DRIFTED, DriftCause.CHANGED_OUTSIDE)
    assert row.changes == (FieldChange("url", OTHER, URL),)
    assert row.url == OTHER


def test_manifest_changed_while_live_equals_last_applied_is_not_applied() -> None:
    row = only(drift(desired(want(url=OTHER)), live(have()), last={key(): applied()}))
    assert (row.status, row.cause) == (DriftStatus.DRIFTED, DriftCause.NOT_APPLIED)


def test_manifest_and_live_both_moved_from_last_applied_is_both() -> None:
    row = only(
        drift(
            desired(want(url=OTHER)),
            live(have(verify_ssl=False)),
            last={key(): applied()},
        )
    )
    assert row.cause is DriftCause.BOTH


def test_drift_without_a_last_applied_body_has_an_unknown_cause() -> None:
    row = only(drift(desired(want()), live(have(url=OTHER))))
    assert row.cause is DriftCause.UNKNOWN


def test_a_webhook_deleted_outside_is_missing_and_changed_outside() -> None:
    row = only(drift(desired(want()), live(), last={key(): applied()}))
    assert (row.status, row.cause) == (DriftStatus.MISSING, DriftCause.CHANGED_OUTSIDE)
    assert "deleted outside this tool since it was last applied" in row.issues


def test_a_webhook_deleted_outside_whose_manifest_also_changed_is_missing_for_both() -> None:
    row = only(drift(desired(want(url=OTHER)), live(), last={key(): applied()}))
    assert (row.status, row.cause) == (DriftStatus.MISSING, DriftCause.BOTH)


def test_a_last_applied_body_without_event_types_means_form_response_only() -> None:
    body = applied()
    del body["event_types"]
    row = only(drift(desired(want()), live(have(url=OTHER)), last={key(): body}))
    assert row.cause is DriftCause.CHANGED_OUTSIDE


# --------------------------------------------------------------------------- secrets


def test_a_declared_secret_known_in_sync_is_in_sync() -> None:
    row = only(
        drift(
            desired(want(secret=SECRET)),
            live(have()),
            last={key(): applied()},
            secrets={key(): SecretStatus.IN_SYNC},
        )
    )
    assert row.status is DriftStatus.IN_SYNC


def test_a_changed_secret_is_drift_not_applied_shown_sensitive_on_both_sides() -> None:
    report = drift(
        desired(want(secret=SECRET)),
        live(have(secret=SECRET_VALUE)),
        last={key(): applied()},
        secrets={key(): SecretStatus.CHANGED},
    )
    row = only(report)
    assert (row.status, row.cause) == (DriftStatus.DRIFTED, DriftCause.NOT_APPLIED)
    assert row.changes == (FieldChange("secret", SENSITIVE, SENSITIVE),)
    assert row.issues == ("secret changed",)
    assert SECRET_VALUE not in json.dumps(report.to_json())


def test_an_unrecorded_secret_is_drift_whose_live_side_is_unknown() -> None:
    row = only(drift(desired(want(secret=SECRET)), live(have())))
    assert row.status is DriftStatus.DRIFTED
    assert row.changes == (FieldChange("secret", None, SENSITIVE),)
    assert row.cause is DriftCause.UNKNOWN


def test_a_secret_echoed_by_the_api_never_reaches_the_report_of_a_deletion() -> None:
    report = drift(desired(want(state=Presence.ABSENT, url=None)), live(have(secret=SECRET_VALUE)))
    doc = json.dumps(report.to_json())
    assert SECRET_VALUE not in doc
    assert FieldChange("secret", SENSITIVE, None) in only(report).changes


# ------------------------------------------------------------------ Typeform's own disabling


def test_enabled_turned_false_outside_with_nothing_else_names_typeforms_404_rule_and_url() -> None:
    row = only(drift(desired(want()), live(have(enabled=False)), last={key(): applied()}))
    assert (row.status, row.cause) == (DriftStatus.DRIFTED, DriftCause.CHANGED_OUTSIDE)
    assert row.issues[-1] == (
        "Typeform disables a webhook whose receiver answered 404 or 410: check " + URL
    )


def test_enabled_turned_false_together_with_another_change_does_not_blame_typeform() -> None:
    row = only(
        drift(desired(want()), live(have(enabled=False, url=OTHER)), last={key(): applied()})
    )
    assert not any("404" in issue for issue in row.issues)


def test_a_webhook_applied_disabled_does_not_blame_typeform() -> None:
    row = only(
        drift(
            desired(want(enabled=True)),
            live(have(enabled=False)),
            last={key(): applied(enabled=False)},
        )
    )
    assert row.cause is DriftCause.NOT_APPLIED
    assert not any("404" in issue for issue in row.issues)


def test_a_disabled_webhook_without_last_applied_body_does_not_blame_typeform() -> None:
    row = only(drift(desired(want()), live(have(enabled=False))))
    assert not any("404" in issue for issue in row.issues)


# --------------------------------------------------------------------------- the report


def test_the_report_document_is_the_spec_shape_in_stable_order() -> None:
    eu = "eu"
    state = desired(
        want("F2", "b"),
        want("F1", "a"),
        want("F1", "gone"),
        want("F9", "x", account=eu),
    )
    forms = live(
        have("F9", "x", account=eu, enabled=False),
        have("F2", "b"),
        have("F1", "a", url=OTHER),
        have("F1", "zz"),
    )
    report = drift(
        state,
        forms,
        last={key("F1", "a"): applied(), key("F9", "x", eu): applied()},
        heal_suspended=(key("F9", "x", eu),),
    )
    doc = report.to_json()
    assert json.loads(json.dumps(doc)) == doc
    assert doc["format_version"] == "1"
    assert doc["checked_at"] == NOW
    assert doc["in_sync"] is False
    assert doc["stale"] is False
    assert doc["summary"] == {
        "in_sync": 1,
        "drifted": 2,
        "missing": 1,
        "unmanaged": 1,
        "heal_suspended": 1,
    }
    assert doc["accounts"] == {
        "default": {"in_sync": 1, "drifted": 1, "missing": 1, "unmanaged": 1, "heal_suspended": 0},
        "eu": {"in_sync": 0, "drifted": 1, "missing": 0, "unmanaged": 0, "heal_suspended": 1},
    }
    addresses = [(w["account"], w["form_id"], w["tag"], w["status"]) for w in doc["webhooks"]]
    assert addresses == [
        ("default", "F1", "a", "drifted"),
        ("default", "F1", "gone", "missing"),
        ("default", "F1", "zz", "unmanaged"),
        ("default", "F2", "b", "in_sync"),
        ("eu", "F9", "x", "drifted"),
    ]
    first = doc["webhooks"][0]
    assert first == {
        "account": "default",
        "form_id": "F1",
        "tag": "a",
        "status": "drifted",
        "cause": "changed_outside",
        "issues": ["live differs from the manifest: url"],
        "changes": [{"field": "url", "before": OTHER, "after": URL}],
        "url": OTHER,
        "last_checked": NOW,
        "heal_suspended": False,
    }
    assert doc["webhooks"][-1]["heal_suspended"] is True
    assert report.exits() == 2


def test_a_stale_report_keeps_the_last_verdicts_and_their_times_and_exits_1() -> None:
    good = drift(desired(want()), live(have()))
    stale = good.as_stale("TransportError: connection refused", "2026-03-01T12:05:00Z")
    doc = stale.to_json()
    assert doc["stale"] is True
    assert doc["error"] == "TransportError: connection refused"
    assert doc["checked_at"] == "2026-03-01T12:05:00Z"
    assert doc["webhooks"][0]["last_checked"] == NOW
    assert stale.exits() == 1
    assert good.exits() == 0


def test_targets_limit_the_report_and_are_recorded_as_its_scope() -> None:
    state = desired(want("F1", "a"), want("F2", "b"))
    report = drift(state, live(), targets=(Target("F2"), Target("F9", "x", "eu")))
    assert [w.key.form_id for w in report.webhooks] == ["F2"]
    assert report.to_json()["scope"] == ["F2", "eu:F9/x"]


def test_a_declared_webhook_on_a_form_that_was_not_refreshed_is_left_out() -> None:
    state = desired(want("F1", "a"), want("F2", "b"))
    report = detect_drift(
        state,
        {("default", "F1"): []},
        managed={},
        last_applied={},
        secrets={},
        checked_at=NOW,
    )
    assert [str(w.key) for w in report.webhooks] == ["F1/a"]
    assert report.webhooks[0].status is DriftStatus.MISSING


def test_a_report_built_out_of_order_is_sorted_by_account_form_and_tag() -> None:
    rows = tuple(
        WebhookDrift(key(f, t, a), DriftStatus.IN_SYNC, None, (), (), None, NOW)
        for a, f, t in [("z", "A", "a"), ("default", "B", "a"), ("default", "A", "b")]
    )
    order = [(w.key.account, w.key.form_id, w.key.tag) for w in DriftReport(NOW, rows).webhooks]
    assert order == [("default", "A", "b"), ("default", "B", "a"), ("z", "A", "a")]


# --------------------------------------------------------------------------- agreement with plan

_FORMS = ("F1", "F2")
_TAGS = ("a", "b", "c")
_URLS = (URL, OTHER)

_declared = st.fixed_dictionaries(
    {
        "url": st.sampled_from(_URLS),
        "enabled": st.booleans(),
        "absent": st.booleans(),
        "secret": st.sampled_from([None, *SecretStatus]),
    }
)
_live = st.fixed_dictionaries({"url": st.sampled_from(_URLS), "enabled": st.booleans()})
_slot = st.tuples(
    st.none() | _declared,
    st.none() | _live,
    st.sampled_from([None, "ours", "replaced"]),  # what the state file records
)


@settings(max_examples=300, deadline=None)
@given(
    slots=st.dictionaries(st.tuples(st.sampled_from(_FORMS), st.sampled_from(_TAGS)), _slot),
    exclusive=st.booleans(),
    prune=st.booleans(),
)
def test_drift_agrees_with_the_plan_for_every_webhook(
    slots: dict[tuple[str, str], tuple[Any, Any, str | None]], exclusive: bool, prune: bool
) -> None:
    wants: list[DesiredWebhook] = []
    haves: list[LiveWebhook] = []
    last: dict[WebhookKey, dict[str, Any]] = {}
    managed: dict[WebhookKey, str] = {}
    secrets: dict[WebhookKey, SecretStatus] = {}
    for (form, tag), (d, lv, recorded) in slots.items():
        k = key(form, tag)
        if d is not None:
            wants.append(
                want(
                    form,
                    tag,
                    url=None if d["absent"] else d["url"],
                    enabled=d["enabled"],
                    state=Presence.ABSENT if d["absent"] else Presence.PRESENT,
                    secret=SECRET if d["secret"] is not None else None,
                )
            )
            if d["secret"] is not None:
                secrets[k] = d["secret"]
        if lv is not None:
            haves.append(have(form, tag, url=lv["url"], enabled=lv["enabled"]))
        if recorded is not None:
            last[k] = applied()
            # "replaced": the state's id is not the live one's (re-created outside the tool)
            managed[k] = ids([k])[k] if recorded == "ours" else "id-recreated-outside"
    state = desired(*wants, ownership=Ownership.EXCLUSIVE if exclusive else Ownership.DECLARED)
    forms: dict[tuple[str, str], list[LiveWebhook]] = {("default", f): [] for f in _FORMS}
    forms.update(live(*haves))
    plan = build_plan(
        state,
        forms,
        managed=managed,
        secrets=secrets,
        created_at=NOW,
        options=PlanOptions(prune=prune),
    )
    report = drift(state, forms, last=last, managed=managed, secrets=secrets, prune=prune)

    planned = {c.key: c.action for c in plan.actions}
    for row in report.webhooks:
        action = planned.get(row.key, Action.NOOP)
        assert row.is_drift == (action is not Action.NOOP), (row, action)
        if action is Action.CREATE:
            assert row.status is DriftStatus.MISSING
        assert (row.cause is None) == (not row.is_drift)
    assert report.in_sync == (not plan.has_changes)
    reported = {w.key for w in report.webhooks}
    assert reported == planned.keys() | {u.key for u in (*plan.unmanaged, *plan.prune_skipped)}


def test_a_report_from_an_already_built_plan_equals_detect_drift() -> None:
    state = desired(want("F1", "a", url=OTHER), want("F2", "b"))
    forms = live(have("F1", "a"), have("F1", "zz"))
    forms[("default", "F2")] = []
    last = {key("F1", "a"): applied()}
    targets = (Target("F1"),)
    plan = build_plan(
        state,
        forms,
        managed=ids(last),
        secrets={},
        created_at=NOW,
        options=PlanOptions(targets=targets),
    )
    from_plan = drift_from_plan(
        plan, last_applied=last, checked_at=NOW, heal_suspended=[key("F1", "a")]
    )
    direct = drift(state, forms, last=last, targets=targets, heal_suspended=[key("F1", "a")])
    assert from_plan == direct
    assert from_plan.scope == ("F1",)
    assert [w.status for w in from_plan.webhooks] == [DriftStatus.DRIFTED, DriftStatus.UNMANAGED]

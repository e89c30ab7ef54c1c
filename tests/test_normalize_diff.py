"""Essences, digests and field changes: the pure helpers the planner and saved plans rest on.

``desired_digest`` and ``live_form_fingerprint`` are written into saved plan files, so their
canonical documents are spelled out here literally: a change of format would make every saved plan
stale, and must be a decision, not an accident. ``field_changes`` answers flat differences itself
and hands anything else to deepdiff; the cases below pin what it reports and check that both
paths agree (``tests/test_diff.py`` does the same on random essences).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from typing import Any

import pytest

from reconciler.diff import deep_field_changes, field_changes
from reconciler.models import (
    DEFAULT_ACCOUNT,
    SENSITIVE,
    DesiredWebhook,
    EventTypes,
    FieldChange,
    LiveWebhook,
    Presence,
    SecretRef,
    SecretSource,
    WebhookKey,
)
from reconciler.normalize import desired_digest, desired_essence, hash_text, live_essence
from reconciler.normalize import live_form_fingerprint as form_fingerprint

SECRET_VALUE = "a-Secret-value-never-in-an-essence-5d1"


def key(tag: str, form: str = "f1") -> WebhookKey:
    return WebhookKey(DEFAULT_ACCOUNT, form, tag)


def sha256_of(document: Any) -> str:
    """The canonical JSON (sorted keys, no spaces) of ``document``, hashed as the plan does."""
    text = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


HOOK_A = DesiredWebhook(
    key=key("a"),
    url="https://hooks.example.com/a",
    secret=SecretRef(SecretSource.ENV, "HOOK_SECRET"),
    previous_tags=("old",),
)
HOOK_B = DesiredWebhook(key=key("b"), url=None, state=Presence.ABSENT, enabled=False)

LIVE_A = LiveWebhook(
    key=key("a"),
    id="Wh1",
    url="https://hooks.example.com/a",
    enabled=True,
    verify_ssl=False,
    event_types=EventTypes(form_response_partial=True),
    secret=SECRET_VALUE,
    updated_at="2026-01-01T00:00:00Z",
)
LIVE_B = LiveWebhook(
    key=key("b"),
    id="Wh2",
    url="https://hooks.example.com/b",
    enabled=False,
    verify_ssl=True,
    event_types=EventTypes(),
)

BOTH_EVENTS = {"form_response": True, "form_response_partial": True}
RESPONSES_ONLY = {"form_response": True, "form_response_partial": False}


# --------------------------------------------------------------------------- essences


def test_a_desired_essence_says_sensitive_for_a_declared_secret_and_nothing_otherwise() -> None:
    assert desired_essence(HOOK_A) == {
        "url": "https://hooks.example.com/a",
        "enabled": True,
        "verify_ssl": True,
        "event_types": RESPONSES_ONLY,
        "secret": SENSITIVE,
    }
    assert "secret" not in desired_essence(HOOK_B)


def test_a_live_essence_shows_a_secret_when_one_is_echoed_or_known_and_never_its_value() -> None:
    assert live_essence(LIVE_A) == {
        "url": "https://hooks.example.com/a",
        "enabled": True,
        "verify_ssl": False,
        "event_types": BOTH_EVENTS,
        "secret": SENSITIVE,
    }
    assert "secret" not in live_essence(LIVE_B)
    assert live_essence(LIVE_B, secret_known=True)["secret"] == SENSITIVE


# --------------------------------------------------------------------------- digests


def test_the_desired_digest_is_the_sha256_of_its_documented_canonical_rows() -> None:
    rows = [
        {
            "account": DEFAULT_ACCOUNT,
            "form_id": "f1",
            "tag": "a",
            "state": "present",
            "previous_tags": ["old"],
            "secret": "env:HOOK_SECRET",
            "url": "https://hooks.example.com/a",
            "enabled": True,
            "verify_ssl": True,
            "event_types": RESPONSES_ONLY,
        },
        {
            "account": DEFAULT_ACCOUNT,
            "form_id": "f1",
            "tag": "b",
            "state": "absent",
            "previous_tags": [],
            "secret": None,
            "url": None,
            "enabled": False,
            "verify_ssl": True,
            "event_types": RESPONSES_ONLY,
        },
    ]
    assert desired_digest([HOOK_A, HOOK_B]) == sha256_of(rows)
    assert desired_digest([HOOK_B, HOOK_A]) == sha256_of(rows)  # input order does not matter


@pytest.mark.parametrize(
    "changed",
    [
        DesiredWebhook(key=key("b"), url=None, state=Presence.PRESENT, enabled=False),
        DesiredWebhook(key=key("b"), url=None, state=Presence.ABSENT, enabled=True),
        DesiredWebhook(key=key("b"), url=None, state=Presence.ABSENT, previous_tags=("x",)),
        DesiredWebhook(
            key=key("b"),
            url=None,
            state=Presence.ABSENT,
            enabled=False,
            secret=SecretRef(SecretSource.FILE, "secret.txt"),
        ),
    ],
    ids=["state", "a field", "previous_tags", "a secret reference"],
)
def test_the_desired_digest_changes_with_anything_a_plan_depends_on(
    changed: DesiredWebhook,
) -> None:
    assert desired_digest([HOOK_A, changed]) != desired_digest([HOOK_A, HOOK_B])


def test_hash_text_is_a_labelled_sha256() -> None:
    assert hash_text("abc") == (
        "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )


def test_a_form_fingerprint_is_the_sha256_of_its_documented_rows() -> None:
    unechoed = replace(LIVE_A, secret=None)
    rows = [
        {
            "id": "Wh1",
            "tag": "a",
            "updated_at": "2026-01-01T00:00:00Z",
            "secret": None,
            "url": "https://hooks.example.com/a",
            "enabled": True,
            "verify_ssl": False,
            "event_types": BOTH_EVENTS,
        },
        {
            "id": "Wh2",
            "tag": "b",
            "updated_at": None,
            "secret": None,
            "url": "https://hooks.example.com/b",
            "enabled": False,
            "verify_ssl": True,
            "event_types": RESPONSES_ONLY,
        },
    ]
    assert form_fingerprint([LIVE_B, unechoed]) == sha256_of(rows)


def test_a_form_fingerprint_changes_when_only_an_echoed_secret_changed() -> None:
    rotated = replace(LIVE_A, secret="another-secret")
    assert form_fingerprint([rotated]) != form_fingerprint([LIVE_A])


# --------------------------------------------------------------------------- field changes

ESSENCE = {
    "url": "https://hooks.example.com/a",
    "enabled": True,
    "verify_ssl": True,
    "event_types": RESPONSES_ONLY,
}

CASES: dict[str, tuple[dict[str, Any], dict[str, Any], list[tuple[str, Any, Any]]]] = {
    "a flat value": (
        ESSENCE,
        {**ESSENCE, "url": "https://hooks.example.com/b"},
        [("url", "https://hooks.example.com/a", "https://hooks.example.com/b")],
    ),
    "a nested value and a flat one": (
        ESSENCE,
        {**ESSENCE, "enabled": False, "event_types": BOTH_EVENTS},
        [("enabled", True, False), ("event_types.form_response_partial", False, True)],
    ),
    "only a nested value": (
        ESSENCE,
        {**ESSENCE, "event_types": BOTH_EVENTS},
        [("event_types.form_response_partial", False, True)],
    ),
    "a type, not a value, beside a flat change": (
        ESSENCE,
        {**ESSENCE, "enabled": 1, "url": "b"},
        [("enabled", True, 1), ("url", "https://hooks.example.com/a", "b")],
    ),
    "a field only after": (
        ESSENCE,
        {**ESSENCE, "secret": SENSITIVE},
        [("secret", None, SENSITIVE)],
    ),
    "a field only before": (
        {**ESSENCE, "secret": SENSITIVE},
        ESSENCE,
        [("secret", SENSITIVE, None)],
    ),
    "a nested field only after, with a flat change": (
        {"url": "a"},
        {"url": "b", "event_types": RESPONSES_ONLY},
        [("event_types", None, RESPONSES_ONLY), ("url", "a", "b")],
    ),
    "a nested value of another type beside a flat change": (
        {**ESSENCE, "event_types": {"form_response": True}},
        {**ESSENCE, "event_types": {"form_response": 1}, "url": "b"},
        [("event_types.form_response", True, 1), ("url", "https://hooks.example.com/a", "b")],
    ),
    "a float": (
        {"url": "a", "n": 1.0},
        {"url": "b", "n": 2.0},
        [("n", 1.0, 2.0), ("url", "a", "b")],
    ),
    "equal floats": ({"url": "a", "n": 1.5}, {"url": "b", "n": 1.5}, [("url", "a", "b")]),
    "equal nested values beside a flat change": (
        {"url": "a", "event_types": dict(BOTH_EVENTS), "items": [1, [2, 3]]},
        {"url": "b", "event_types": dict(BOTH_EVENTS), "items": [1, [2, 3]]},
        [("url", "a", "b")],
    ),
    "a tuple of True against a list of 1": (
        {"url": "a", "items": (True,)},
        {"url": "b", "items": [1]},
        [("items", (True,), [1]), ("url", "a", "b")],
    ),
    "several fields on one side only": (
        {"url": "a", "enabled": True, "verify_ssl": True, "x": 1, "y": 2},
        {"url": "b", "enabled": True, "verify_ssl": True, "z": 3, "w": 4},
        [("url", "a", "b"), ("w", None, 4), ("x", 1, None), ("y", 2, None), ("z", None, 3)],
    ),
    "a tuple against an equal list": (
        {"url": "a", "items": (1, 2)},
        {"url": "a", "items": [1, 2]},
        [("items", (1, 2), [1, 2])],
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_field_changes_name_every_differing_leaf_with_both_sides(case: str) -> None:
    before, after, expected = CASES[case]
    changes = field_changes(before, after)
    assert changes == tuple(FieldChange(f, b, a) for f, b, a in expected)
    assert changes == deep_field_changes(before, after)  # whichever path answered


def test_equal_essences_have_no_changes() -> None:
    assert field_changes(ESSENCE, dict(ESSENCE)) == ()
    assert deep_field_changes(ESSENCE, dict(ESSENCE)) == ()
    # Python equality decides: an essence whose only difference is True against 1 is equal.
    assert field_changes(ESSENCE, {**ESSENCE, "enabled": 1}) == ()


def test_list_items_are_compared_in_order() -> None:
    changes = field_changes({"url": "a", "items": [1, 2]}, {"url": "a", "items": [2, 1]})
    assert [c.field for c in changes] == ["items.0", "items.1"]


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ({"url": "a", "items": [1, 2]}, {"url": "b", "items": [1, 3]}),
        ({"url": "a", "items": [1]}, {"url": "b", "items": [1, 2]}),
        ({"url": "a", "deep": {"x": [1, {"y": 2}]}}, {"url": "b", "deep": {"x": [1, {"y": 3}]}}),
        ({"url": "a", "deep": {"x": 1}}, {"url": "b", "deep": {"x": 1, "z": 2}}),
    ],
    ids=["same length", "longer", "deeper", "a key more"],
)
def test_a_differing_list_or_dict_is_reported_beside_a_flat_change(
    before: dict[str, Any], after: dict[str, Any]
) -> None:
    fields = [c.field for c in field_changes(before, after)]
    assert "url" in fields
    assert len(fields) == 2
    assert fields == [c.field for c in deep_field_changes(before, after)]


@pytest.mark.parametrize(
    "odd",
    ["it's", "a.b", "with space", 5],
    ids=["quote", "dot", "space", "int"],
)
def test_keys_deepdiff_would_spell_differently_get_deepdiffs_answer(odd: Any) -> None:
    before, after = {"url": "a", odd: 1}, {"url": "b", odd: 2}
    assert field_changes(before, after) == deep_field_changes(before, after)
    assert field_changes({odd: 1}, {odd: 2}) == deep_field_changes({odd: 1}, {odd: 2})


FLAT_PAIRS = {
    "a flat value": ({"url": "a", "enabled": True}, {"url": "b", "enabled": True}),
    "a type": ({"url": "a", "enabled": True}, {"url": "b", "enabled": 1}),
    "one side only": ({"url": "a"}, {"url": "a", "secret": SENSITIVE, "x": {"y": 1}}),
    "equal nested values": (
        {"url": "a", "event_types": dict(BOTH_EVENTS), "items": [1, (2, None)], "n": None},
        {"url": "b", "event_types": dict(BOTH_EVENTS), "items": [1, (2, None)], "n": None},
    ),
}


@pytest.fixture
def deepdiff_calls(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Counts DeepDiff constructions (deepdiff is a dependency, not one of our modules)."""
    import deepdiff

    calls: list[object] = []
    real = deepdiff.DeepDiff

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(deepdiff, "DeepDiff", counting)
    return calls


@pytest.mark.parametrize("case", sorted(FLAT_PAIRS))
def test_a_flat_difference_is_answered_without_deepdiff(
    case: str, deepdiff_calls: list[object]
) -> None:
    before, after = FLAT_PAIRS[case]
    changes = field_changes(before, after)
    assert deepdiff_calls == [], "the fast path should have answered"
    assert changes == deep_field_changes(before, after)
    assert len(deepdiff_calls) == 1  # the reference answer did use deepdiff


def test_a_nested_difference_is_answered_by_deepdiff(deepdiff_calls: list[object]) -> None:
    changes = field_changes(ESSENCE, {**ESSENCE, "event_types": BOTH_EVENTS})
    assert [c.field for c in changes] == ["event_types.form_response_partial"]
    assert len(deepdiff_calls) == 1

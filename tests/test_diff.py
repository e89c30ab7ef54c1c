"""Field changes of two essences: the plain fast path always says what deepdiff says.

``field_changes`` answers flat differences itself and hands everything else to deepdiff
(``deep_field_changes``, the reference). The properties compare both on random essences, hostile
keys and values included; the subprocess test proves the fast path really answers (a fast path
that always deferred to deepdiff would pass the properties but not that one).
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.diff import deep_field_changes, field_changes
from reconciler.models import FieldChange

# Keys the planner uses, keys deepdiff spells in ways the fast path must not guess at, and
# plain ones.
keys = st.sampled_from(
    ["url", "enabled", "verify_ssl", "event_types", "secret", "a.b", "it's", 'q"', "", "é", "0"]
)
flat = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-2, max_value=2),
    st.sampled_from([0.0, 1.0, 1.5, float("nan"), float("inf")]),
    st.text(max_size=3),
)
values = st.recursive(
    flat,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(keys, inner, max_size=3),
        st.tuples(inner),
    ),
    max_leaves=6,
)
essences = st.dictionaries(keys, values, max_size=5)


@st.composite
def pairs(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    """Two essences that mostly share keys and values, as a live and a desired webhook do."""
    before = draw(essences)
    after = dict(before)
    for key in draw(st.lists(keys, max_size=3)):
        choice = draw(st.sampled_from(["set", "drop", "same-but-equal"]))
        if choice == "set":
            after[key] = draw(values)
        elif choice == "drop":
            after.pop(key, None)
        elif key in before:
            after[key] = json.loads(json.dumps(before[key])) if _jsonable(before[key]) else 1
    return before, after


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


event_types = st.dictionaries(
    st.sampled_from(["form_response", "form_response_partial"]),
    st.one_of(st.booleans(), st.integers(0, 1)),
    min_size=1,
)
webhook_essences = st.fixed_dictionaries(
    {
        "url": st.sampled_from(["https://a.example/1", "https://a.example/2"]),
        "enabled": st.one_of(st.booleans(), st.integers(0, 1)),
        "verify_ssl": st.booleans(),
        "event_types": event_types,
    },
    optional={"secret": st.just("(sensitive)")},
)


@settings(max_examples=600)
@given(pairs())
def test_field_changes_equal_deepdiffs_answer_for_any_pair_of_essences(
    pair: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    before, after = pair
    assert field_changes(before, after) == deep_field_changes(before, after)
    assert field_changes(after, before) == deep_field_changes(after, before)


@settings(max_examples=400)
@given(webhook_essences, webhook_essences)
def test_field_changes_equal_deepdiffs_answer_for_webhook_shaped_essences(
    before: dict[str, Any], after: dict[str, Any]
) -> None:
    assert field_changes(before, after) == deep_field_changes(before, after)


def test_a_changed_url_is_one_field_change_with_both_values() -> None:
    before = {"url": "https://a.example/old", "enabled": True, "event_types": {"a": True}}
    after = {"url": "https://a.example/new", "enabled": True, "event_types": {"a": True}}
    assert field_changes(before, after) == (
        FieldChange("url", "https://a.example/old", "https://a.example/new"),
    )


def test_a_nested_difference_names_the_leaf_that_changed() -> None:
    before = {"url": "u", "event_types": {"form_response": True, "form_response_partial": False}}
    after = {"url": "v", "event_types": {"form_response": True, "form_response_partial": True}}
    assert field_changes(before, after) == (
        FieldChange("event_types.form_response_partial", False, True),
        FieldChange("url", "u", "v"),
    )


def test_true_and_1_differ_once_something_else_differs_as_deepdiff_says() -> None:
    # ``{"enabled": True} == {"enabled": 1}`` in Python, and field_changes starts with ``==``;
    # once the essences differ anyway, a type change is reported like any other change.
    assert field_changes({"enabled": True}, {"enabled": 1}) == ()
    changes = field_changes({"enabled": True, "url": "a"}, {"enabled": 1, "url": "b"})
    assert [c.field for c in changes] == ["enabled", "url"]


def test_a_field_on_one_side_only_shows_the_missing_side_as_none() -> None:
    assert field_changes({"url": "a", "secret": "(sensitive)"}, {"url": "a"}) == (
        FieldChange("secret", "(sensitive)", None),
    )


def test_flat_differences_are_answered_without_importing_deepdiff() -> None:
    code = """
import sys
from reconciler.diff import field_changes
before = {"url": "a", "enabled": True, "verify_ssl": True, "event_types": {"form_response": True}}
after = {**before, "url": "b", "enabled": False}
print([c.field for c in field_changes(before, after)])
print("deepdiff" in sys.modules)
field_changes(before, {**after, "event_types": {"form_response": False}})
print("deepdiff" in sys.modules)
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split("\n")
    assert out[:3] == ["['enabled', 'url']", "False", "True"]

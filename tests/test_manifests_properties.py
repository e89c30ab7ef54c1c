"""Generated manifests: any valid WebhookSet loads and keeps its meaning; errors land on their node.

Each example is built as Python data, dumped with ``yaml.safe_dump`` (which quotes what YAML
would otherwise read as booleans or numbers, e.g. a tag ``on`` or a form id ``0123``), loaded,
and compared field by field with what the data says, defaults merged by hand.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.manifests import check, load_desired
from reconciler.models import (
    EVENT_TYPE_NAMES,
    EventTypes,
    Ownership,
    Presence,
    SecretRef,
    SecretSource,
    WebhookKey,
)

ALNUM = "abcXYZ019"
names = st.builds(
    lambda head, middle, tail: head + middle + tail if middle else head,
    st.sampled_from("a0z"),
    st.text(alphabet="ab0-", max_size=6),
    st.sampled_from("b9"),
)
form_ids = st.text(alphabet=ALNUM, min_size=1, max_size=8)
tags = st.one_of(
    st.builds(
        lambda head, rest: head + rest, st.sampled_from(ALNUM), st.text("aZ0._-", max_size=8)
    ),
    # strings YAML would read as something else unless safe_dump quotes them
    st.sampled_from(["on", "yes", "null", "0123", "1e3", "true"]),
)
urls = st.builds(
    lambda host, path: f"https://{host}.example/{path}",
    st.sampled_from(["hooks", "a-b.c", "x1.y2.z3", "127-0"]),
    st.text(alphabet="aZ09/_.~-", max_size=12),
)
event_types = st.lists(st.sampled_from(EVENT_TYPE_NAMES), min_size=1, max_size=2, unique=True)
secrets = st.one_of(
    st.builds(lambda n: {"env": n}, st.sampled_from(["HOOK_SECRET", "_X", "S3"])),
    st.builds(
        lambda n: {"file": n}, st.sampled_from(["s.txt", "secrets/hook.txt", "sub/../up.txt"])
    ),
)
OPTIONAL_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "enabled": st.booleans(),
    "verify_ssl": st.booleans(),
    "event_types": event_types,
    "secret": secrets,
}


@st.composite
def entries(draw: st.DrawFn) -> dict[str, Any]:
    entry: dict[str, Any] = {"form_id": draw(form_ids), "tag": draw(tags)}
    absent = draw(st.booleans()) and draw(st.booleans())
    if absent:
        entry["state"] = "absent"
    elif draw(st.booleans()):
        entry["state"] = "present"
    if not absent or draw(st.booleans()):
        entry["url"] = draw(urls)
    for key, strategy in OPTIONAL_FIELDS.items():
        if draw(st.booleans()):
            entry[key] = draw(strategy)
    return entry


@st.composite
def webhook_sets(draw: st.DrawFn) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "webhooks": draw(
            st.lists(entries(), max_size=6, unique_by=lambda e: (e["form_id"], e["tag"]))
        )
    }
    if draw(st.booleans()):
        spec["ownership"] = draw(st.sampled_from(["declared", "exclusive"]))
    if draw(st.booleans()):
        spec["account"] = "default"
    defaults = {k: draw(s) for k, s in OPTIONAL_FIELDS.items() if draw(st.booleans())}
    if defaults:
        spec["defaults"] = defaults
    return {
        "apiVersion": "reconciler/v1",
        "kind": "WebhookSet",
        "metadata": {"name": draw(names)},
        "spec": spec,
    }


def _write(directory: str, data: dict[str, Any], *, flow: bool) -> Path:
    path = Path(directory) / "generated.yaml"
    path.write_text(yaml.safe_dump(data, default_flow_style=flow, sort_keys=False))
    return path


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=webhook_sets(), flow=st.sampled_from([False, None]))
def test_a_generated_valid_webhook_set_loads_and_keeps_its_meaning(
    data: dict[str, Any], flow: bool | None
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = _write(directory, data, flow=bool(flow))
        desired = load_desired([path])
        base_dir = str(Path(directory).resolve())

    spec = data["spec"]
    [loaded] = desired.sets
    assert loaded.name == data["metadata"]["name"]
    assert loaded.ownership is Ownership(spec.get("ownership", "declared"))
    assert len(loaded.webhooks) == len(spec["webhooks"])
    for entry, hook in zip(spec["webhooks"], loaded.webhooks, strict=True):
        merged = {**spec.get("defaults", {}), **entry}
        assert hook.key == WebhookKey("default", entry["form_id"], entry["tag"])
        assert hook.url == entry.get("url")
        assert hook.state is Presence(entry.get("state", "present"))
        assert hook.enabled is merged.get("enabled", True)
        assert hook.verify_ssl is merged.get("verify_ssl", True)
        assert hook.event_types == EventTypes.from_names(
            merged.get("event_types", ["form_response"])
        )
        assert hook.event_types.names() == tuple(
            n for n in EVENT_TYPE_NAMES if n in merged.get("event_types", ["form_response"])
        )
        expected_secret = None
        if "secret" in merged:
            ((source, name),) = merged["secret"].items()
            expected_secret = SecretRef(SecretSource(source), name, base_dir, root=base_dir)
        assert hook.secret == expected_secret
        assert hook.ownership is loaded.ownership


BAD_TAGS = st.sampled_from(["-starts-with-dash", "has space", "x" * 65, "semi;colon", "é"])


@settings(max_examples=40, deadline=None)
@given(
    data=webhook_sets().filter(lambda d: bool(d["spec"]["webhooks"])),
    pick=st.integers(min_value=0),
    bad=BAD_TAGS,
)
def test_a_bad_tag_anywhere_is_reported_at_its_own_line_and_column(
    data: dict[str, Any], pick: int, bad: str
) -> None:
    hooks = data["spec"]["webhooks"]
    index = pick % len(hooks)
    hooks[index]["tag"] = bad
    with tempfile.TemporaryDirectory() as directory:
        path = _write(directory, data, flow=False)
        text = path.read_text()
        result = check([path])

    # In block style every entry's tag sits on its own line: the index-th "tag:" line is ours.
    tag_lines = [
        (n, line.index("tag: ") + len("tag: ") + 1)
        for n, line in enumerate(text.splitlines(), start=1)
        if line.lstrip(" -").startswith("tag: ")
    ]
    line, col = tag_lines[index]
    [error] = result.errors
    assert error.location is not None
    assert (error.location.line, error.location.col) == (line, col)
    assert error.message.startswith(f"spec.webhooks[{index}].tag: ")

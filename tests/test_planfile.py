"""Saved plans read back safely, and the Markdown rendering that PR comments show.

A plan file travels as a CI artifact, so anything may arrive in its place: every defect is one
``PlanError`` line naming the file (exit 1 from the CLI), never a traceback or exit 3.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from reconciler.cli import main
from reconciler.errors import PlanError
from reconciler.models import (
    Action,
    Change,
    FieldChange,
    Plan,
    Reason,
    Target,
    WebhookKey,
)
from reconciler.planfile import plan_from_json, read_plan, write_plan
from reconciler.render import plan_to_json, render_plan_markdown

KEY = WebhookKey("default", "onbrd01", "intake")
AFTER = {
    "url": "https://hooks.example.com/intake",
    "enabled": True,
    "verify_ssl": True,
    "event_types": {"form_response": True, "form_response_partial": False},
}


MANIFEST = (
    "apiVersion: reconciler/v1\nkind: WebhookSet\nmetadata: {name: s}\n"
    "spec: {webhooks: [{form_id: onbrd01, tag: intake, url: 'https://h.example.com/i'}]}\n"
)


def a_plan(**kwargs: Any) -> Plan:
    change = Change(
        Action.CREATE,
        KEY,
        None,
        AFTER,
        changes=tuple(FieldChange(f, None, v) for f, v in sorted(AFTER.items())),
        reasons=(Reason.DECLARED_NOT_LIVE,),
    )
    return Plan(created_at="2026-01-01T00:00:00Z", actions=(change,), **kwargs)


def test_a_plan_survives_a_round_trip_through_its_file(tmp_path: Path) -> None:
    plan = a_plan(
        targets=(Target("onbrd01", "intake", "eu-clients"),),
        accounts=("default",),
        live_fingerprints={("default", "onbrd01"): "sha256:" + "0" * 64},
    )
    path = tmp_path / "plan.json"
    write_plan(path, plan)

    back = read_plan(path)

    assert back == plan
    assert plan_to_json(back) == json.loads(path.read_text())


def _doc() -> dict[str, Any]:
    return plan_to_json(a_plan())


def _set(doc: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    node = doc
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return doc


MALFORMED: dict[str, Any] = {
    "not an object": [],
    "no actions": {k: v for k, v in _doc().items() if k != "actions"},
    "actions not a list": _set(_doc(), ("actions",), {"0": 1}),
    "unknown action": _set(_doc(), ("actions", 0, "action"), "replace"),
    "after of the wrong type": _set(_doc(), ("actions", 0, "after"), "https://x"),
    "form_id a number": _set(_doc(), ("actions", 0, "form_id"), 7),
    "unknown reason": _set(_doc(), ("actions", 0, "reasons"), ["because"]),
    "foreign format": _set(_doc(), ("format_version",), "2"),
    "bad target": _set(_doc(), ("scope",), {"targets": ["a b c"], "accounts": []}),
    "bad salt": _set(_doc(), ("guards", "fingerprint_salt"), "!!"),
    "unknown secret source": _set(_doc(), ("actions", 0, "secret_ref"), {"vault": "x"}),
    "prune a string": _set(_doc(), ("prune",), "yes"),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_a_malformed_plan_document_is_one_plan_error_line(name: str) -> None:
    with pytest.raises(PlanError) as refused:
        plan_from_json(MALFORMED[name], source="plan.json")
    message = str(refused.value)
    assert message.startswith("plan.json ")
    assert "\n" not in message


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "invalid JSON"),
        (b'{"format_version": "1", "actions": [', "invalid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b"\xff\xfe{}", "not UTF-8"),
    ],
)
def test_unreadable_plan_files_are_one_line_errors(
    tmp_path: Path, content: bytes, expected: str
) -> None:
    path = tmp_path / "plan.json"
    path.write_bytes(content)
    with pytest.raises(PlanError, match=expected):
        read_plan(path)


def test_apply_of_a_malformed_plan_exits_1_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "manifests").mkdir()
    (tmp_path / "manifests" / "set.yaml").write_text(MANIFEST)
    (tmp_path / "plan.json").write_text(json.dumps(MALFORMED["after of the wrong type"]))

    with pytest.raises(SystemExit) as exited:
        main(["apply", "manifests", "--api-url", "emulator:emu.json", "--plan", "plan.json"])

    err = capsys.readouterr().err
    assert exited.value.code == 1, err
    assert "plan.json is not a plan saved by `reconcile plan --out`" in err
    assert not (tmp_path / "emu.json").exists()


@pytest.mark.parametrize("flag", [["--target", "onbrd01"], ["--account", "eu"], ["--prune"]])
def test_apply_plan_refuses_options_decided_at_plan_time(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    flag: list[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "manifests").mkdir()
    (tmp_path / "manifests" / "set.yaml").write_text(MANIFEST)
    write_plan(tmp_path / "plan.json", a_plan())
    with pytest.raises(SystemExit) as exited:
        main(["apply", "--api-url", "emulator:emu.json", "--plan", "plan.json", *flag])
    assert exited.value.code == 1
    assert f"{flag[0]} cannot be used with --plan" in capsys.readouterr().err


# --------------------------------------------------------------------------- Markdown


def test_markdown_truncation_closes_the_code_fence_and_the_details_it_cut_through() -> None:
    changes = tuple(
        Change(
            Action.CREATE,
            WebhookKey("default", f"form{i:04d}", "intake"),
            None,
            AFTER,
            changes=tuple(FieldChange(f, None, v) for f, v in sorted(AFTER.items())),
            reasons=(Reason.DECLARED_NOT_LIVE,),
        )
        for i in range(400)
    )
    doc = plan_to_json(Plan(created_at="2026-01-01T00:00:00Z", actions=changes))
    full = render_plan_markdown(doc, limit=10**9)
    assert "```diff" in full

    for limit in range(full.index("```diff") + 10, len(full) - 1, 997):
        text = render_plan_markdown(doc, limit=limit)
        assert len(text) <= limit
        assert text.count("```") % 2 == 0, f"an open code fence at limit {limit}"
        assert text.count("<details>") == text.count("</details>"), f"open details at {limit}"
        assert "Truncated" in text

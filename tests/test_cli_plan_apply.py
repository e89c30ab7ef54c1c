"""``reconcile plan`` / ``reconcile apply`` end to end: the CLI against the persisted emulator.

Each test drives ``reconciler.cli.main`` exactly as a user's shell would (argv in, exit code and
stdout/stderr out), in a temporary working directory, against ``emulator:PATH`` at a rate no test
reaches. What happened is read back from the emulator's persisted account, the state file and the
records file, never from the command's own claims. Manifests are small trees written per test
over the demo seed's forms (``onbrd01`` ... ``fdbk001``; ``onbrd02/crm-sync`` and
``onbrd01/legacy-zapier`` exist live from the start).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from cli_harness import (
    COMPANY,
    FEEDBACK,
    INTAKE,
    LEGACY_ABSENT,
    ROTATED,
    SECRET,
    SECRET_ENV,
    SENSITIVE,
    Reconcile,
)

from reconciler.emulator import configure, hash_secret
from reconciler.records import read_records

REPO = Path(__file__).resolve().parents[1]

RECORD_FIELDS = {
    "timestamp",
    "run_id",
    "operation",
    "account",
    "form_id",
    "tag",
    "webhook_id",
    "url",
    "success",
    "error",
    "attempts",
    "duration_ms",
    "note",
}


@pytest.fixture(params=["none", "plain", "masked"])
def secret_echo(request: pytest.FixtureRequest, emulator_path: Path) -> str:
    """Typeform's docs leave open whether responses carry a webhook's secret (SPEC section 8):
    every end-to-end test runs with none, with the plain secret, and with a masked value."""
    mode = str(request.param)
    configure(emulator_path, secret_echo=mode)
    return mode


@pytest.fixture
def reconcile(
    tmp_path: Path,
    emulator_path: Path,
    emulator_url: str,
    secret_echo: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Reconcile:
    monkeypatch.chdir(tmp_path)
    for name in ("TYPEFORM_TOKEN", "TYPEFORM_API_URL", "RECONCILE_STATE", "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(SECRET_ENV, SECRET)
    # Whatever pytest's stdin is, apply must never read a confirmation from it: a pipe that
    # would say "yes" makes the refusal explicit.
    monkeypatch.setattr(sys, "stdin", io.StringIO("yes\n"))
    return Reconcile(tmp_path, emulator_url, emulator_path, capsys)


def actions_by_name(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f"{a['form_id']}/{a['tag']}": a for a in doc["actions"]}


def names(rows: Sequence[dict[str, Any]]) -> list[str]:
    return [f"{r['form_id']}/{r['tag']}" for r in rows]


def writes(doc: dict[str, Any]) -> dict[str, str]:
    return {
        f"{a['form_id']}/{a['tag']}": a["action"] for a in doc["actions"] if a["action"] != "noop"
    }


# --------------------------------------------------------------------------- plan output


def test_plan_text_shows_creates_deletes_and_unmanaged_and_writes_nothing(
    reconcile: Reconcile,
) -> None:
    reconcile.write_base()
    before = reconcile.live()

    result = reconcile("plan")

    assert result.code == 0, result.err
    out = result.out
    assert "\x1b[" not in out  # colour only on a terminal
    assert "  + onbrd01/intake  will be created" in out
    assert "  + onbrd02/company  will be created" in out
    assert "  - onbrd01/legacy-zapier  will be deleted" in out
    assert "+ secret      = (sensitive)" in out
    assert "Unmanaged webhooks (listed, never touched):" in out
    assert "onbrd02/crm-sync  https://crm.example.com/hooks/typeform" in out
    assert out.rstrip().endswith(
        "Plan: 2 to create, 0 to update, 1 to delete, 0 unchanged (1 unmanaged)."
    )
    assert reconcile.live() == before
    assert not reconcile.state.exists()
    assert not reconcile.records.exists()


def test_plan_reads_each_form_in_scope_once_including_forms_known_only_from_state(
    reconcile: Reconcile,
) -> None:
    reconcile.write_base(secret=False)
    reconcile.write_set("feedback", [FEEDBACK], secret=False)

    assert reconcile("plan").code == 0

    assert reconcile.requests() == {"GET /forms/{form_id}/webhooks": {"200": 3}}

    reconcile.apply_ok()
    # onbrd02 is no longer declared, but the state file says the tool owns a webhook there.
    reconcile.write_set("onboarding", [INTAKE, LEGACY_ABSENT], secret=False)
    before = reconcile.requests()["GET /forms/{form_id}/webhooks"]["200"]

    doc = reconcile.plan_json()

    assert reconcile.requests()["GET /forms/{form_id}/webhooks"]["200"] == before + 3
    assert names(doc["prune_skipped"]) == ["onbrd02/company"]


def test_a_declared_form_that_does_not_exist_is_an_error_naming_the_manifest_entry(
    reconcile: Reconcile,
) -> None:
    missing = {"form_id": "nosuch1", "tag": "intake", "url": "https://hooks.example.com/x"}
    reconcile.write_set("onboarding", [INTAKE, missing], secret=False)

    planned = reconcile("plan")
    applied = reconcile("apply", "--auto-approve")

    for result in (planned, applied):
        assert result.code == 1
        assert "onboarding.yaml:" in result.err
        assert "nosuch1" in result.err
        assert "Internal error" not in result.err
    assert "onbrd01/intake" not in reconcile.live()
    assert not reconcile.records.exists()


def test_plan_text_shows_an_update_field_by_field(reconcile: Reconcile) -> None:
    reconcile.write_base(secret=False)
    reconcile.apply_ok()
    moved = {**INTAKE, "url": "https://hooks.example.com/intake-v2", "enabled": False}
    reconcile.write_set("onboarding", [moved, COMPANY, LEGACY_ABSENT], secret=False)

    result = reconcile("plan", "--no-color")

    assert result.code == 0, result.err
    assert "  ~ onbrd01/intake  will be updated in place" in result.out
    assert "~ enabled = true -> false" in result.out
    assert (
        '~ url     = "https://hooks.example.com/intake" -> "https://hooks.example.com/intake-v2"'
        in result.out
    )
    assert "Plan: 0 to create, 1 to update, 0 to delete, 2 unchanged (1 unmanaged)." in result.out


def test_plan_json_has_the_spec_shape_for_every_kind_of_row(reconcile: Reconcile) -> None:
    details = {"form_id": "onbrd03", "tag": "details", "url": "https://hooks.example.com/details"}
    reconcile.write_set("onboarding", [INTAKE, COMPANY, details, LEGACY_ABSENT])
    reconcile.apply_ok()
    reconcile.put_live("onbrd03", "old-hook", {"url": "https://old.example.com/hook"})
    moved = {**INTAKE, "url": "https://hooks.example.com/intake-v2"}
    old_absent = {"form_id": "onbrd03", "tag": "old-hook", "state": "absent"}
    # company dropped (prune skipped), feedback added without a secret.
    reconcile.write_set("onboarding", [moved, details, LEGACY_ABSENT, old_absent])
    reconcile.write_set("feedback", [FEEDBACK], secret=False)

    doc = reconcile.plan_json()

    assert doc["format_version"] == "1"
    assert doc["created_at"].endswith("Z")
    assert doc["summary"] == {
        "create": 1,
        "update": 1,
        "delete": 1,
        "noop": 2,
        "unmanaged": 1,
        "prune_skipped": 1,
    }
    # Stable order: account, form_id, tag.
    keys = [(a["account"], a["form_id"], a["tag"]) for a in doc["actions"]]
    assert keys == sorted(keys)
    for action in doc["actions"]:
        assert {"action", "account", "form_id", "tag", "before", "after", "changes", "reason"} <= (
            action.keys()
        )
        assert action["reason"]
        for change in action["changes"]:
            assert set(change) == {"field", "before", "after"}
    rows = actions_by_name(doc)
    assert {name: row["action"] for name, row in rows.items()} == {
        "fdbk001/inbox": "create",
        "onbrd01/intake": "update",
        "onbrd01/legacy-zapier": "noop",
        "onbrd03/details": "noop",
        "onbrd03/old-hook": "delete",
    }

    create = rows["fdbk001/inbox"]
    assert create["before"] is None
    assert create["after"] == {
        "url": "https://hooks.example.com/feedback",
        "enabled": True,
        "verify_ssl": True,
        "event_types": {"form_response": True, "form_response_partial": False},
    }
    update = rows["onbrd01/intake"]
    assert update["before"]["url"] == "https://hooks.example.com/intake"
    assert update["before"]["secret"] == SENSITIVE
    assert update["after"]["url"] == "https://hooks.example.com/intake-v2"
    assert update["after"]["secret"] == SENSITIVE
    assert update["changes"] == [
        {
            "field": "url",
            "before": "https://hooks.example.com/intake",
            "after": "https://hooks.example.com/intake-v2",
        }
    ]
    delete = rows["onbrd03/old-hook"]
    assert delete["after"] is None
    assert delete["before"]["url"] == "https://old.example.com/hook"
    assert "absent" in delete["reason"]

    assert doc["unmanaged"] == [
        {
            "account": "default",
            "form_id": "onbrd02",
            "tag": "crm-sync",
            "url": "https://crm.example.com/hooks/typeform",
            "reason": "not declared and not applied by this tool",
            "reasons": ["not_declared"],
        }
    ]
    [skipped] = doc["prune_skipped"]
    assert set(skipped) == {"account", "form_id", "tag", "url", "reason", "reasons"}
    assert names([skipped]) == ["onbrd02/company"]
    assert skipped["url"] == COMPANY["url"]
    assert "--prune" in skipped["reason"]


def test_plan_markdown_starts_with_the_summary(reconcile: Reconcile) -> None:
    reconcile.write_base(secret=False)

    result = reconcile("plan", "--format", "markdown")

    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0] == "### Typeform webhooks plan"
    assert lines[2] == (
        "**Plan: 2 to create, 0 to update, 1 to delete, 0 unchanged (1 unmanaged).**"
    )
    assert "| 2 | 0 | 1 | 0 | 1 | 0 |" in lines[4:8]
    assert "`onbrd01/intake`" in result.out
    assert "`onbrd02/crm-sync`" in result.out


def test_demo_manifests_plan_exits_2_then_0_right_after_apply(reconcile: Reconcile) -> None:
    shutil.copytree(REPO / "manifests", reconcile.manifests)

    first = reconcile("plan", "--detailed-exitcode")
    assert first.code == 2, first.err
    reconcile.apply_ok()
    second = reconcile("plan", "--detailed-exitcode")

    assert second.code == 0, second.err
    assert "No changes." in second.out
    # Without --detailed-exitcode a plan with changes still exits 0.
    reconcile.write_set("extra", [FEEDBACK | {"tag": "extra"}], secret=False)
    assert reconcile("plan").code == 0


# --------------------------------------------------------------------------- secrets


def test_second_plan_after_apply_with_secrets_is_empty(reconcile: Reconcile) -> None:
    reconcile.write_base()
    reconcile.apply_ok()

    doc = reconcile.plan_json("--detailed-exitcode")

    assert writes(doc) == {}
    assert doc["summary"]["noop"] == 3
    live = reconcile.live()
    assert live["onbrd01/intake"]["secret_sha256"] == hash_secret(SECRET)
    assert live["onbrd02/company"]["secret_sha256"] == hash_secret(SECRET)
    state = json.loads(reconcile.state.read_text(encoding="utf-8"))
    fingerprints = [w["secret_fingerprint"] for w in state["webhooks"]]
    assert all(f.startswith("v2$") for f in fingerprints)
    # The same secret on two webhooks: the state file must not show that they share it.
    assert len(set(fingerprints)) == len(fingerprints) == 2


def test_plan_without_state_file_sets_the_declared_secret_once_then_is_empty(
    reconcile: Reconcile, secret_echo: str
) -> None:
    # Live already matches the manifest in every field but the secret, which nothing records.
    reconcile.put_live(
        "onbrd01",
        "intake",
        {"url": INTAKE["url"], "enabled": True, "secret": "whatever-it-was"},
    )
    reconcile.write_set("onboarding", [INTAKE])

    result = reconcile("plan", "--no-color")
    doc = reconcile.plan_json()

    # Without an echo nothing says a secret is set; a plain or masked echo says one is.
    before = None if secret_echo == "none" else SENSITIVE
    assert result.code == 0
    assert f"~ secret = {before or '(unknown)'} -> (sensitive)" in result.out
    assert doc["summary"] == {
        "create": 0,
        "update": 1,
        "delete": 0,
        "noop": 0,
        "unmanaged": 1,  # the seeded legacy-zapier on the same form
        "prune_skipped": 0,
    }
    [update] = doc["actions"]
    assert update["changes"] == [{"field": "secret", "before": before, "after": SENSITIVE}]
    assert not reconcile.state.exists()

    reconcile.apply_ok()

    assert reconcile("plan", "--detailed-exitcode").code == 0
    assert reconcile.live()["onbrd01/intake"]["secret_sha256"] == hash_secret(SECRET)


def test_rotated_secret_in_the_environment_plans_an_update_of_field_secret(
    reconcile: Reconcile, monkeypatch: pytest.MonkeyPatch
) -> None:
    reconcile.write_base()
    reconcile.apply_ok()
    monkeypatch.setenv(SECRET_ENV, ROTATED)

    text = reconcile("plan", "--no-color")
    doc = reconcile.plan_json()

    assert "~ secret = (sensitive) -> (sensitive)" in text.out
    assert writes(doc) == {"onbrd01/intake": "update", "onbrd02/company": "update"}
    for name in ("onbrd01/intake", "onbrd02/company"):
        row = actions_by_name(doc)[name]
        assert row["changes"] == [{"field": "secret", "before": SENSITIVE, "after": SENSITIVE}]
        assert row["reason"] == "secret changed"

    reconcile.apply_ok()

    assert reconcile.live()["onbrd01/intake"]["secret_sha256"] == hash_secret(ROTATED)
    assert reconcile("plan", "--detailed-exitcode").code == 0


def test_an_unset_secret_variable_is_an_error_naming_the_reference(
    reconcile: Reconcile, monkeypatch: pytest.MonkeyPatch
) -> None:
    reconcile.write_base()
    monkeypatch.delenv(SECRET_ENV)

    planned = reconcile("plan")
    applied = reconcile("apply", "--auto-approve")

    for result in (planned, applied):
        assert result.code == 1
        assert SECRET_ENV in result.err
        assert "onboarding.yaml:" in result.err
    assert not reconcile.records.exists()


# --------------------------------------------------------------------------- saved plans


def test_saved_plan_applies_without_a_prompt_and_then_nothing_is_left(
    reconcile: Reconcile,
) -> None:
    reconcile.write_base()
    plan_file = reconcile.root / "out" / "plan.json"

    saved = reconcile("plan", "--out", str(plan_file))
    assert saved.code == 0, saved.err
    assert f"reconcile apply --plan {plan_file}" in saved.out
    assert json.loads(plan_file.read_text(encoding="utf-8"))["format_version"] == "1"

    # No --auto-approve, and stdin is not a terminal: a saved plan is its own approval.
    applied = reconcile("apply", "--plan", str(plan_file))

    assert applied.code == 0, applied.err
    live = reconcile.live()
    assert {"onbrd01/intake", "onbrd02/company"} <= live.keys()
    assert "onbrd01/legacy-zapier" not in live
    assert reconcile("plan", "--detailed-exitcode").code == 0


def test_saved_plan_with_nothing_to_do_applies_nothing(reconcile: Reconcile) -> None:
    reconcile.write_base(secret=False)
    reconcile.apply_ok()
    plan_file = reconcile.root / "plan.json"
    assert reconcile("plan", "--out", str(plan_file)).code == 0
    lines = len(reconcile.records_lines())

    result = reconcile("apply", "--plan", str(plan_file))

    assert result.code == 0, result.err
    assert "Nothing to apply." in result.out
    assert len(reconcile.records_lines()) == lines


def test_saved_plan_is_refused_when_a_touched_form_changed_since(reconcile: Reconcile) -> None:
    reconcile.write_base(secret=False)
    plan_file = reconcile.root / "plan.json"
    assert reconcile("plan", "--out", str(plan_file)).code == 0
    # Someone edits a webhook on onbrd02, a form the plan writes to, between plan and apply.
    reconcile.put_live("onbrd02", "crm-sync", {"url": "https://crm.example.com/hooks/v2"})
    before = reconcile.live()

    result = reconcile("apply", "--plan", str(plan_file), "--auto-approve")

    assert result.code == 1
    assert "stale" in result.err
    assert "onbrd02" in result.err
    assert "nothing was written" in result.err
    assert reconcile.live() == before
    assert not reconcile.records.exists()
    assert not reconcile.state.exists()


def test_saved_plan_is_not_stale_when_only_an_untouched_form_changed(
    reconcile: Reconcile,
) -> None:
    reconcile.write_set("onboarding", [INTAKE], secret=False)
    plan_file = reconcile.root / "plan.json"
    assert reconcile("plan", "--out", str(plan_file)).code == 0
    reconcile.put_live("onbrd02", "crm-sync", {"url": "https://crm.example.com/hooks/v2"})

    result = reconcile("apply", "--plan", str(plan_file))

    assert result.code == 0, result.err
    assert "onbrd01/intake" in reconcile.live()


def test_saved_plan_reads_a_file_secret_relative_to_its_manifest_and_guards_it(
    reconcile: Reconcile,
) -> None:
    hook = {**INTAKE, "secret": {"file": "intake.secret"}}
    reconcile.write_set("onboarding", [hook], secret=False)
    secret_file = reconcile.manifests / "intake.secret"
    secret_file.write_text(SECRET + "\n", encoding="utf-8")
    relative = [Path("manifests")]  # as a user in the checkout types it
    plan_file = reconcile.root / "plan.json"
    assert reconcile("plan", "--out", str(plan_file), paths=relative).code == 0
    [row] = json.loads(plan_file.read_text(encoding="utf-8"))["actions"]
    assert row["secret_ref"] == {
        "file": "intake.secret",
        "base_dir": "manifests",
        "root": "manifests",
    }

    secret_file.write_text(ROTATED + "\n", encoding="utf-8")
    refused = reconcile("apply", "--plan", str(plan_file), paths=relative)
    secret_file.write_text(SECRET + "\n", encoding="utf-8")
    applied = reconcile("apply", "--plan", str(plan_file), paths=relative)

    assert refused.code == 1
    assert "secret of onbrd01/intake changed" in refused.err
    assert applied.code == 0, applied.err
    assert reconcile.live()["onbrd01/intake"]["secret_sha256"] == hash_secret(SECRET)


def test_saved_plan_is_refused_when_its_secret_changed_since(
    reconcile: Reconcile, monkeypatch: pytest.MonkeyPatch
) -> None:
    reconcile.write_base()
    plan_file = reconcile.root / "plan.json"
    assert reconcile("plan", "--out", str(plan_file)).code == 0
    monkeypatch.setenv(SECRET_ENV, ROTATED)
    before = reconcile.live()

    result = reconcile("apply", "--plan", str(plan_file))

    assert result.code == 1
    assert "stale" in result.err
    assert "secret" in result.err
    assert "onbrd01/intake" in result.err
    assert reconcile.live() == before
    assert not reconcile.records.exists()
    assert not reconcile.state.exists()


def test_saved_plan_cannot_be_applied_twice(reconcile: Reconcile) -> None:
    reconcile.write_base(secret=False)
    plan_file = reconcile.root / "plan.json"
    assert reconcile("plan", "--out", str(plan_file)).code == 0
    assert reconcile("apply", "--plan", str(plan_file)).code == 0
    lines = len(reconcile.records_lines())

    # Its own writes changed the forms it touches: the second run is refused, not repeated.
    again = reconcile("apply", "--plan", str(plan_file))

    assert again.code == 1
    assert "stale" in again.err
    assert len(reconcile.records_lines()) == lines


def test_a_file_that_is_not_a_saved_plan_is_refused_with_a_clear_message(
    reconcile: Reconcile,
) -> None:
    reconcile.write_base(secret=False)
    bogus = reconcile.root / "plan.json"
    bogus.write_text('{"format_version": "0"}', encoding="utf-8")
    missing = reconcile.root / "nope.json"

    wrong = reconcile("apply", "--plan", str(bogus))
    absent = reconcile("apply", "--plan", str(missing))

    assert wrong.code == 1
    assert "format_version" in wrong.err
    assert absent.code == 1
    assert f"cannot read the saved plan {missing}" in absent.err
    assert not reconcile.records.exists()


# --------------------------------------------------------------------------- confirmation


def test_apply_without_auto_approve_refuses_when_stdin_is_not_a_terminal(
    reconcile: Reconcile,
) -> None:
    reconcile.write_base(secret=False)
    before = reconcile.live()
    assert not sys.stdin.isatty()

    result = reconcile("apply")

    assert result.code == 1
    assert "stdin is not a terminal" in result.err
    assert "--auto-approve" in result.err
    assert reconcile.live() == before
    assert not reconcile.records.exists()
    assert not reconcile.state.exists()


class _Terminal(io.StringIO):
    """A stdin that says it is a terminal, with the user's answer typed in advance."""

    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("answer", "code"), [("yes\n", 0), ("y\n", 1), ("\n", 1)])
def test_apply_on_a_terminal_asks_and_applies_only_after_yes(
    reconcile: Reconcile, monkeypatch: pytest.MonkeyPatch, answer: str, code: int
) -> None:
    reconcile.write_base(secret=False)
    before = reconcile.live()
    monkeypatch.setattr(sys, "stdin", _Terminal(answer))

    result = reconcile("apply")

    assert result.code == code, result.err
    assert "Apply these changes? Only 'yes' is accepted" in result.out
    if code == 0:
        assert "onbrd01/intake" in reconcile.live()
    else:
        assert "apply cancelled" in result.err
        assert reconcile.live() == before
        assert not reconcile.records.exists()


# --------------------------------------------------------------------------- deletion guards


def test_max_deletes_refuses_a_plan_with_more_deletions_and_writes_nothing(
    reconcile: Reconcile,
) -> None:
    for tag in ("old-1", "old-2", "old-3"):
        reconcile.put_live("onbrd03", tag, {"url": f"https://old.example.com/{tag}"})
    absent = [{"form_id": "onbrd03", "tag": t, "state": "absent"} for t in ("old-1", "old-2")]
    absent.append({"form_id": "onbrd03", "tag": "old-3", "state": "absent"})
    reconcile.write_set("onboarding", [INTAKE, *absent], secret=False)
    before = reconcile.live()

    refused = reconcile("apply", "--auto-approve", "--max-deletes", "2")

    assert refused.code == 1
    assert "deletes 3 webhooks, more than --max-deletes 2" in refused.err
    assert reconcile.live() == before
    assert not reconcile.records.exists()
    assert not reconcile.state.exists()

    reconcile.apply_ok("--max-deletes", "3")
    assert not {"onbrd03/old-1", "onbrd03/old-2", "onbrd03/old-3"} & reconcile.live().keys()


def test_max_deletes_defaults_to_ten(reconcile: Reconcile) -> None:
    tags = [f"old-{i}" for i in range(11)]
    for tag in tags:
        reconcile.put_live("onbrd03", tag, {"url": f"https://old.example.com/{tag}"})
    reconcile.write_set(
        "onboarding",
        [INTAKE, *({"form_id": "onbrd03", "tag": t, "state": "absent"} for t in tags)],
        secret=False,
    )

    result = reconcile("apply", "--auto-approve")

    assert result.code == 1
    assert "more than --max-deletes 10" in result.err


def test_pruning_everything_the_state_owns_is_refused_without_allow_empty(
    reconcile: Reconcile,
) -> None:
    reconcile.write_base(secret=False)
    reconcile.apply_ok()
    # The manifests no longer declare anything the state file owns.
    reconcile.write_set("onboarding", [LEGACY_ABSENT], secret=False)
    assert writes(reconcile.plan_json("--prune")) == {
        "onbrd01/intake": "delete",
        "onbrd02/company": "delete",
    }
    before = reconcile.live()
    lines = len(reconcile.records_lines())

    refused = reconcile("apply", "--auto-approve", "--prune")

    assert refused.code == 1
    assert "every managed webhook of account(s) default" in refused.err
    assert "--allow-empty" in refused.err
    assert reconcile.live() == before
    assert len(reconcile.records_lines()) == lines

    reconcile.apply_ok("--prune", "--allow-empty")

    live = reconcile.live()
    assert not {"onbrd01/intake", "onbrd02/company"} & live.keys()
    assert "onbrd02/crm-sync" in live
    assert reconcile.state_keys() == set()


@pytest.mark.parametrize("missing", ["gone", "empty"])
def test_a_missing_or_empty_manifest_directory_is_an_error_never_delete_everything(
    reconcile: Reconcile, missing: str
) -> None:
    reconcile.write_base(secret=False)
    reconcile.apply_ok()
    before = reconcile.live()
    lines = len(reconcile.records_lines())
    path = reconcile.root / missing
    if missing == "empty":
        path.mkdir()

    planned = reconcile("plan", "--prune", paths=[path])
    applied = reconcile("apply", "--auto-approve", "--prune", "--allow-empty", paths=[path])

    for result in (planned, applied):
        assert result.code == 1
        assert str(path) in result.err
        assert "Internal error" not in result.err
    assert reconcile.live() == before
    assert len(reconcile.records_lines()) == lines
    assert reconcile.state_keys() == {"onbrd01/intake", "onbrd02/company"}


# --------------------------------------------------------------------------- ownership


def test_unmanaged_seeded_webhook_is_never_deleted_even_with_prune(reconcile: Reconcile) -> None:
    reconcile.write_base(secret=False)

    reconcile.apply_ok("--prune")
    doc = reconcile.plan_json("--prune")

    assert "onbrd02/crm-sync" in reconcile.live()
    assert names(doc["unmanaged"]) == ["onbrd02/crm-sync"]
    assert "onbrd02/crm-sync" not in actions_by_name(doc)
    assert "onbrd02/crm-sync" not in reconcile.state_keys()


def test_webhook_removed_from_manifests_is_prune_skipped_and_deleted_only_with_prune(
    reconcile: Reconcile,
) -> None:
    reconcile.write_base(secret=False)
    reconcile.apply_ok()
    reconcile.write_set("onboarding", [INTAKE, LEGACY_ABSENT], secret=False)

    doc = reconcile.plan_json()
    reconcile.apply_ok()

    assert names(doc["prune_skipped"]) == ["onbrd02/company"]
    assert "state file" in doc["prune_skipped"][0]["reason"]
    assert writes(doc) == {}
    assert "onbrd02/company" in reconcile.live()

    pruned = reconcile.plan_json("--prune")
    reconcile.apply_ok("--prune")

    assert writes(pruned) == {"onbrd02/company": "delete"}
    assert pruned["prune_skipped"] == []
    live = reconcile.live()
    assert "onbrd02/company" not in live
    assert "onbrd02/crm-sync" in live
    assert reconcile.state_keys() == {"onbrd01/intake"}


def test_exclusive_ownership_deletes_undeclared_webhooks_only_with_prune(
    reconcile: Reconcile,
) -> None:
    reconcile.write_set("documents", [COMPANY], ownership="exclusive", secret=False)
    reconcile.write_set("intake", [INTAKE], secret=False)
    reconcile.put_live("onbrd01", "stray", {"url": "https://stray.example.com/hook"})

    doc = reconcile.plan_json()
    reconcile.apply_ok()

    assert names(doc["prune_skipped"]) == ["onbrd02/crm-sync"]
    assert "exclusive" in doc["prune_skipped"][0]["reason"]
    assert names(doc["unmanaged"]) == ["onbrd01/legacy-zapier", "onbrd01/stray"]
    assert "onbrd02/crm-sync" in reconcile.live()

    reconcile.apply_ok("--prune")

    live = reconcile.live()
    assert "onbrd02/crm-sync" not in live
    assert "onbrd02/company" in live
    # The declared-ownership form keeps its undeclared webhook, even with --prune.
    assert "onbrd01/stray" in live


# --------------------------------------------------------------------------- failures


def test_partial_failure_applies_the_others_records_it_and_a_rerun_converges(
    reconcile: Reconcile,
) -> None:
    reconcile.write_base(secret=False)
    reconcile.script_faults(
        {"method": "PUT", "path": "/forms/onbrd02/webhooks/*", "count": 1, "status": 400}
    )

    failed = reconcile("apply", "--auto-approve")

    assert failed.code == 1
    assert "onbrd02/company: create FAILED" in failed.err
    assert "HTTP 400" in failed.err
    assert "run apply again" in failed.err
    live = reconcile.live()
    assert "onbrd01/intake" in live
    assert "onbrd01/legacy-zapier" not in live
    assert "onbrd02/company" not in live
    records = reconcile.records_lines()
    assert sorted((r["operation"], r["tag"], r["success"]) for r in records) == [
        ("create", "company", False),
        ("create", "intake", True),
        ("delete", "legacy-zapier", True),
    ]
    [failure] = [r for r in records if not r["success"]]
    assert "400" in failure["error"]
    assert reconcile.state_keys() == {"onbrd01/intake"}

    reconcile.script_faults()  # clear whatever is left
    rerun = reconcile.apply_ok()

    assert "+ onbrd02/company: created" in rerun.out
    again = reconcile.records_lines()[len(records) :]
    assert [(r["operation"], r["tag"], r["success"]) for r in again] == [
        ("create", "company", True)
    ]
    assert reconcile("plan", "--detailed-exitcode").code == 0


def test_atomic_apply_reverts_the_writes_that_landed_when_one_fails(
    reconcile: Reconcile,
) -> None:
    reconcile.write_base()
    reconcile.apply_ok()
    old_hook = {
        "url": "https://old.example.com/hook",
        "enabled": False,
        "verify_ssl": False,
        "event_types": {"form_response": True, "form_response_partial": True},
    }
    reconcile.put_live("onbrd03", "old-hook", old_hook)
    moved = {**COMPANY, "url": "https://hooks.example.com/company-v2"}
    old_absent = {"form_id": "onbrd03", "tag": "old-hook", "state": "absent"}
    reconcile.write_set("onboarding", [INTAKE, moved, LEGACY_ABSENT, old_absent])
    reconcile.write_set("feedback", [FEEDBACK], secret=False)
    planned = reconcile.plan_json()
    assert writes(planned) == {
        "fdbk001/inbox": "create",
        "onbrd02/company": "update",
        "onbrd03/old-hook": "delete",
    }
    before = reconcile.live()
    lines = len(reconcile.records_lines())
    reconcile.script_faults(
        {"method": "PUT", "path": "/forms/onbrd02/webhooks/*", "count": 1, "status": 400}
    )

    result = reconcile("apply", "--auto-approve", "--atomic")

    assert result.code == 1
    assert "reverted (--atomic)" in result.err
    live = reconcile.live()
    assert "fdbk001/inbox" not in live  # created, then deleted again
    restored = live["onbrd03/old-hook"]  # deleted, then re-created from its before-image
    assert {k: restored[k] for k in old_hook} == old_hook
    assert live["onbrd02/company"]["url"] == COMPANY["url"]
    assert live.keys() == before.keys()
    run = reconcile.records_lines()[lines:]
    assert sorted((r["operation"], r["form_id"], r["tag"], r["success"]) for r in run) == [
        ("create", "fdbk001", "inbox", True),
        ("delete", "onbrd03", "old-hook", True),
        ("revert", "fdbk001", "inbox", True),
        ("revert", "onbrd03", "old-hook", True),
        ("update", "onbrd02", "company", False),
    ]
    assert len({r["run_id"] for r in run}) == 1
    assert "fdbk001/inbox" not in reconcile.state_keys()
    # Back where it started: the same plan again.
    assert writes(reconcile.plan_json()) == writes(planned)


def test_apply_with_format_json_prints_only_the_plan_document_on_stdout(
    reconcile: Reconcile,
) -> None:
    reconcile.write_base(secret=False)

    applied = reconcile("apply", "--auto-approve", "--format", "json")
    again = reconcile("apply", "--auto-approve", "--format", "json")

    assert applied.code == 0, applied.err
    assert writes(applied.json()) == {
        "onbrd01/intake": "create",
        "onbrd01/legacy-zapier": "delete",
        "onbrd02/company": "create",
    }
    assert "+ onbrd01/intake: created" in applied.err
    assert "Apply complete: 2 created, 1 deleted, 0 failed." in applied.err
    assert again.json()["summary"]["noop"] == 3
    assert "Nothing to apply." in again.err


# --------------------------------------------------------------------------- records


def test_operation_records_are_one_line_per_write_with_every_field_appended_across_runs(
    reconcile: Reconcile, monkeypatch: pytest.MonkeyPatch
) -> None:
    reconcile.write_base()

    first = reconcile.apply_ok()
    lines = reconcile.records.read_text(encoding="utf-8").splitlines()

    assert len(lines) == 3
    records = [json.loads(line) for line in lines]
    live = reconcile.live()
    for record in records:
        assert set(record) == RECORD_FIELDS
        assert record["timestamp"].endswith("Z")
        assert record["account"] == "default"
        assert record["success"] is True
        assert record["error"] is None
        assert isinstance(record["attempts"], int)
        assert record["attempts"] >= 1
        assert isinstance(record["duration_ms"], int)
        assert record["duration_ms"] >= 0
    [run_id] = {r["run_id"] for r in records}
    assert f"(run {run_id})" in first.out
    by_tag = {r["tag"]: r for r in records}
    assert by_tag["intake"]["operation"] == "create"
    assert by_tag["intake"]["webhook_id"] == live["onbrd01/intake"]["id"]
    assert by_tag["intake"]["url"] == INTAKE["url"]
    assert by_tag["legacy-zapier"]["operation"] == "delete"
    assert by_tag["legacy-zapier"]["webhook_id"] == "Wh0zapier1"

    monkeypatch.setenv(SECRET_ENV, ROTATED)
    reconcile.apply_ok()
    after = reconcile.records.read_text(encoding="utf-8").splitlines()

    assert after[:3] == lines
    second = [json.loads(line) for line in after[3:]]
    assert sorted((r["operation"], r["tag"]) for r in second) == [
        ("update", "company"),
        ("update", "intake"),
    ]
    assert {r["run_id"] for r in second} != {run_id}
    assert len({r["run_id"] for r in second}) == 1


def test_records_flag_chooses_the_records_file(reconcile: Reconcile) -> None:
    reconcile.write_base(secret=False)
    elsewhere = reconcile.root / "audit" / "ops.jsonl"

    reconcile.apply_ok("--records", str(elsewhere))

    assert len(read_records(elsewhere)) == 3
    assert not reconcile.records.exists()


def test_nothing_to_apply_writes_no_records(reconcile: Reconcile) -> None:
    reconcile.write_base(secret=False)
    reconcile.apply_ok()
    lines = len(reconcile.records_lines())

    result = reconcile.apply_ok()

    assert "Nothing to apply." in result.out
    assert len(reconcile.records_lines()) == lines


# --------------------------------------------------------------------------- targets


def test_target_limits_plan_and_apply_to_a_form_or_one_webhook(reconcile: Reconcile) -> None:
    reconcile.write_base(secret=False)
    reconcile.write_set("feedback", [FEEDBACK], secret=False)

    form = reconcile.plan_json("--target", "onbrd01")
    one = reconcile.plan_json("--target", "onbrd01/intake")
    reconcile.apply_ok("--target", "onbrd01/intake")

    assert writes(form) == {"onbrd01/intake": "create", "onbrd01/legacy-zapier": "delete"}
    assert form["unmanaged"] == []  # crm-sync lives on onbrd02, out of scope
    assert writes(one) == {"onbrd01/intake": "create"}
    live = reconcile.live()
    assert "onbrd01/intake" in live
    assert "onbrd01/legacy-zapier" in live
    assert "onbrd02/company" not in live
    assert "fdbk001/inbox" not in live
    assert [r["tag"] for r in reconcile.records_lines()] == ["intake"]
    assert writes(reconcile.plan_json()) == {
        "fdbk001/inbox": "create",
        "onbrd01/legacy-zapier": "delete",
        "onbrd02/company": "create",
    }


# --------------------------------------------------------------------------- lock

_HOLD_LOCK = """
import sys
from pathlib import Path
from reconciler.lock import ApplyLock

with ApplyLock(Path(sys.argv[1]), command="watch --heal"):
    print("locked", flush=True)
    sys.stdin.read()
"""


@pytest.fixture
def lock_holder(reconcile: Reconcile) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the apply lock of the state file until its stdin closes."""
    with subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(reconcile.state)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    ) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "locked\n"
        yield proc


def test_apply_exits_1_naming_the_holder_while_another_process_holds_the_lock(
    reconcile: Reconcile, lock_holder: subprocess.Popen[str]
) -> None:
    reconcile.write_base(secret=False)
    before = reconcile.live()

    result = reconcile("apply", "--auto-approve")

    assert result.code == 1
    assert f"is locked by pid {lock_holder.pid} on host" in result.err
    assert "(reconcile watch --heal)" in result.err
    assert "reconcile unlock" in result.err
    assert reconcile.live() == before
    assert not reconcile.records.exists()

    # Once the holder is gone, apply runs.
    assert lock_holder.stdin is not None
    lock_holder.stdin.close()
    assert lock_holder.wait(timeout=10) == 0
    reconcile.apply_ok()

"""Saved plans are approvals, never instructions: every tampering is refused with nothing written.

In CI a plan file travels as an artifact between jobs, and an artifact can be replaced by a
pull request. Each test saves a real plan with ``reconcile plan --out``, changes one thing (the
file, the API it is applied to, the state it was made against), and checks that ``apply --plan``
exits 1 naming the difference while the emulator, the state file and the records stay as they
were.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cli_harness import COMPANY, FEEDBACK, INTAKE, Reconcile

from reconciler.emulator import configure


def saved_plan(cli: Reconcile) -> Path:
    path = cli.root / "plan.json"
    result = cli("plan", "--out", str(path))
    assert result.code == 0, result.err
    return path


def snapshot(cli: Reconcile) -> tuple[Any, ...]:
    state = cli.state.read_text() if cli.state.exists() else None
    return (cli.live(), state, cli.records_lines())


def edit(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


def refused(cli: Reconcile, path: Path, *extra: str) -> str:
    result = cli("apply", "--plan", str(path), *extra)
    assert result.code == 1, result.err
    assert "Traceback" not in result.err
    assert "nothing was written" in result.err
    return result.err


def _redirect_url(doc: dict[str, Any]) -> None:
    row = next(a for a in doc["actions"] if a["tag"] == "intake")
    row["after"]["url"] = "https://attacker.example.net/collect"


def _add_delete_of_unmanaged(doc: dict[str, Any]) -> None:
    doc["actions"].append(
        {
            "action": "delete",
            "account": "default",
            "form_id": "onbrd02",
            "tag": "crm-sync",
            "before": {"url": "https://crm.example.com/hooks/typeform"},
            "after": None,
            "changes": [],
            "reasons": ["declared_absent"],
        }
    )


def _empty_guards(doc: dict[str, Any]) -> None:
    doc["guards"] = {"forms": [], "secrets": []}
    doc["binding"] = None


def _scope_widened(doc: dict[str, Any]) -> None:
    doc["scope"]["targets"] = []


@pytest.mark.parametrize(
    ("tamper", "named"),
    [
        (_redirect_url, "onbrd01/intake"),
        (_add_delete_of_unmanaged, "onbrd02/crm-sync"),
        (_empty_guards, "says nothing about what it was made against"),
        (_scope_widened, "manifests in its scope changed"),
    ],
    ids=["changed-url", "added-delete", "emptied-guards", "scope-widened"],
)
def test_an_edited_plan_file_is_refused_whole_and_nothing_is_written(
    cli: Reconcile, tamper: Callable[[dict[str, Any]], None], named: str
) -> None:
    cli.write_set("onboarding", [INTAKE, COMPANY], secret=False)
    path = cli.root / "plan.json"
    made = cli("plan", "--target", "onbrd01", "--out", str(path))
    assert made.code == 0, made.err
    before = snapshot(cli)

    edit(path, tamper)

    assert named in refused(cli, path)
    assert snapshot(cli) == before


def test_a_plan_made_against_one_api_is_refused_against_another(
    cli: Reconcile, tmp_path: Path
) -> None:
    cli.write_set("onboarding", [INTAKE], secret=False)
    path = saved_plan(cli)
    other = tmp_path / "other-emulator.json"
    configure(other, rate=1000.0, burst=1000)

    result = cli.raw(
        "apply", str(cli.manifests), "--api-url", f"emulator:{other}",
        "--state", str(cli.state), "--plan", str(path),
    )  # fmt: skip

    assert result.code == 1, result.err
    assert "another API URL" in result.err
    assert "onbrd01/intake" not in cli.live()


def test_a_plan_is_refused_once_another_apply_moved_the_state_on(cli: Reconcile) -> None:
    cli.write_set("onboarding", [INTAKE, FEEDBACK], secret=False)
    path = saved_plan(cli)
    cli.apply_ok("--target", "fdbk001")  # someone applied part of it meanwhile
    before = snapshot(cli)

    err = refused(cli, path)

    assert "the state changed since it was made" in err
    assert snapshot(cli) == before


def test_a_plan_is_refused_when_the_manifests_in_its_scope_changed(cli: Reconcile) -> None:
    cli.write_set("onboarding", [INTAKE], secret=False)
    path = saved_plan(cli)
    cli.write_set("onboarding", [{**INTAKE, "enabled": False}], secret=False)

    assert "manifests in its scope changed" in refused(cli, path)
    assert "onbrd01/intake" not in cli.live()


def test_a_targeted_plan_applies_only_its_scope(cli: Reconcile) -> None:
    cli.write_set("onboarding", [INTAKE, FEEDBACK], secret=False)
    path = cli.root / "plan.json"
    assert cli("plan", "--target", "onbrd01/intake", "--out", str(path)).code == 0

    applied = cli("apply", "--plan", str(path))

    assert applied.code == 0, applied.err
    assert "onbrd01/intake" in cli.live()
    assert "fdbk001/inbox" not in cli.live()


def test_a_delete_whose_response_was_lost_converges_with_exit_0(cli: Reconcile) -> None:
    cli.write_set("onboarding", [INTAKE], secret=False)
    cli.apply_ok()
    absent = {"form_id": INTAKE["form_id"], "tag": INTAKE["tag"], "state": "absent"}
    cli.write_set("onboarding", [absent], secret=False)
    # The DELETE lands, then the connection drops before the answer: the client retries, and
    # the retry is told 404.
    cli.script_faults({"method": "DELETE", "path": "/forms/*/webhooks/*", "action": "drop_after"})

    result = cli.apply_ok()

    assert "onbrd01/intake" not in cli.live()
    assert "onbrd01/intake" not in cli.state_keys()
    (record,) = [r for r in cli.records_lines() if r["operation"] == "delete"]
    assert record["success"] is True
    assert record["attempts"] == 2
    assert "already gone" in (record["note"] or "")
    assert "deleted" in result.out + result.err

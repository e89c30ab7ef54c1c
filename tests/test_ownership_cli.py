"""Ownership end to end (SPEC section 6): ids, adoption, renames, targets, out-of-scope entries.

Each test drives the CLI against the persisted emulator and reads back what happened from the
emulator, the state file and the records.
"""

from __future__ import annotations

import json

import anyio
from cli_harness import COMPANY, INTAKE, Reconcile

from reconciler.emulator import open_emulator


def delete_live(cli: Reconcile, form_id: str, tag: str) -> None:
    """Someone else deletes a webhook through the API."""

    async def delete() -> None:
        emulated = open_emulator(cli.url)
        async with emulated.client(headers={"Authorization": "Bearer someone-else"}) as client:
            response = await client.delete(f"/forms/{form_id}/webhooks/{tag}")
            assert response.status_code in (200, 204), response.text

    anyio.run(delete)


def test_a_webhook_recreated_outside_under_a_pruned_tag_is_never_deleted(cli: Reconcile) -> None:
    cli.write_set("onboarding", [INTAKE, COMPANY], secret=False)
    cli.apply_ok()
    ours = cli.live()["onbrd02/company"]["id"]
    cli.write_set("onboarding", [INTAKE], secret=False)  # onbrd02/company: a prune candidate
    # Someone deletes ours and creates a webhook of their own under the same tag.
    delete_live(cli, "onbrd02", "company")
    cli.put_live("onbrd02", "company", {"url": "https://someone-else.example.net/hook"})
    theirs = cli.live()["onbrd02/company"]["id"]
    assert theirs != ours

    doc = cli.plan_json("--prune")

    assert [a["tag"] for a in doc["actions"] if a["action"] == "delete"] == []
    [row] = [u for u in doc["unmanaged"] if u["tag"] == "company"]
    assert row["reasons"] == ["replaced_outside"]
    cli.apply_ok("--prune")
    assert cli.live()["onbrd02/company"]["id"] == theirs


def test_a_rename_creates_the_new_webhook_then_deletes_the_old_one(cli: Reconcile) -> None:
    cli.write_set("onboarding", [INTAKE], secret=False)
    cli.apply_ok()
    old_id = cli.live()["onbrd01/intake"]["id"]
    renamed = {**INTAKE, "tag": "intake-v2", "previous_tags": ["intake"]}
    cli.write_set("onboarding", [renamed], secret=False)

    doc = cli.plan_json()
    moves = {(a["action"], a["tag"]): (a["moved_from"], a["moved_to"]) for a in doc["actions"]}
    assert moves == {
        ("create", "intake-v2"): ("onbrd01/intake", None),
        ("delete", "intake"): (None, "onbrd01/intake-v2"),
    }
    applied = cli.apply_ok()  # no --prune: a rename is intent

    live = cli.live()
    assert "onbrd01/intake" not in live
    assert live["onbrd01/intake-v2"]["url"] == INTAKE["url"]
    assert cli.state_keys() == {"onbrd01/intake-v2"}
    ops = [(r["operation"], r["tag"]) for r in cli.records_lines()][-2:]
    assert ops == [("create", "intake-v2"), ("delete", "intake")]  # create first, then delete
    assert old_id not in json.dumps(cli.state.read_text())
    assert "1 created" in applied.out + applied.err
    assert cli("plan", "--detailed-exitcode").code == 0


def test_a_failed_create_of_a_rename_keeps_the_old_webhook(cli: Reconcile) -> None:
    cli.write_set("onboarding", [INTAKE], secret=False)
    cli.apply_ok()
    renamed = {**INTAKE, "tag": "intake-v2", "previous_tags": ["intake"]}
    cli.write_set("onboarding", [renamed], secret=False)
    cli.script_faults({"method": "PUT", "path": "/forms/*/webhooks/intake-v2", "status": 400})

    result = cli("apply", "--auto-approve")

    assert result.code == 1
    assert "onbrd01/intake" in cli.live()
    assert "its replacement onbrd01/intake-v2 was not created" in result.err


def test_a_target_that_matches_nothing_is_an_error(cli: Reconcile) -> None:
    cli.write_set("onboarding", [INTAKE], secret=False)
    result = cli("plan", "--target", "onbrd01/typo")
    assert result.code == 1
    assert "--target onbrd01/typo matches no declared, state-owned or live webhook" in result.err


def test_every_address_a_plan_prints_is_accepted_back_by_target(cli: Reconcile) -> None:
    cli.write_set("onboarding", [INTAKE, COMPANY], secret=False)
    doc = cli.plan_json()
    for row in doc["actions"] + doc["unmanaged"]:
        address = f"{row['form_id']}/{row['tag']}"
        assert cli("plan", "--target", address).code == 0, address
    assert cli("plan", "--target", "default:onbrd01/intake").code == 0


def test_state_entries_of_an_emptied_manifest_file_are_not_in_sync(cli: Reconcile) -> None:
    cli.write_set("onboarding", [INTAKE], secret=False)
    cli.write_set("other", [COMPANY], secret=False)
    cli.apply_ok()
    cli.write_set("onboarding", [], secret=False)  # emptied, but the tree still has a manifest

    result = cli("plan", "--format", "json")
    text = cli("plan")

    doc = result.json()
    assert [(r["tag"], r["reasons"]) for r in doc["prune_skipped"]] == [
        ("intake", ["no_longer_declared"])
    ]
    assert "No changes without --prune" in text.out
    assert "match the manifests" not in text.out

"""``reconcile show``, ``reconcile state list`` and ``reconcile state rm``: no API call, ever.

They run against a state and a plan made by real ``apply`` / ``plan`` runs on the emulator;
the emulator's request count proves they never call it.
"""

from __future__ import annotations

import json

from cli_harness import COMPANY, FEEDBACK, INTAKE, Reconcile


def total_requests(cli: Reconcile) -> int:
    return sum(sum(codes.values()) for codes in cli.requests().values())


def test_show_renders_a_saved_plan_in_every_format_without_calling_the_api(cli: Reconcile) -> None:
    cli.write_set("onboarding", [INTAKE, COMPANY], secret=False)
    path = cli.root / "plan.json"
    planned = cli("plan", "--out", str(path))
    assert planned.code == 0, planned.err
    before = total_requests(cli)

    text = cli.raw("show", str(path))
    as_json = cli.raw("show", "--format", "json", str(path))
    markdown = cli.raw("show", "--format", "markdown", str(path))

    assert text.code == as_json.code == markdown.code == 0
    assert "+ onbrd01/intake" in text.out
    assert "Plan: 2 to create" in text.out
    assert as_json.json() == json.loads(path.read_text())
    assert markdown.out.startswith("### Typeform webhooks plan")
    assert total_requests(cli) == before


def test_show_of_a_file_that_is_not_a_plan_exits_1_with_one_line(cli: Reconcile) -> None:
    (cli.root / "notes.json").write_text('{"hello": "world"}')
    result = cli.raw("show", str(cli.root / "notes.json"))
    assert result.code == 1
    assert result.err.count("\n") == 1
    assert "is not a plan saved by `reconcile plan --out`" in result.err


def test_state_list_shows_what_apply_recorded(cli: Reconcile) -> None:
    cli.write_set("onboarding", [INTAKE, COMPANY], secret=False)
    cli.apply_ok()
    live = cli.live()

    listed = cli.raw("state", "list", "--state", str(cli.state), "--format", "json")

    assert listed.code == 0, listed.err
    rows = {r["address"]: r for r in listed.json()["webhooks"]}
    assert set(rows) == {"onbrd01/intake", "onbrd02/company"}
    assert rows["onbrd01/intake"]["webhook_id"] == live["onbrd01/intake"]["id"]
    assert rows["onbrd01/intake"]["url"] == INTAKE["url"]
    text = cli.raw("state", "list", "--state", str(cli.state))
    assert "2 managed webhook(s)" in text.out


def test_state_rm_stops_managing_so_prune_leaves_the_webhook_alone(cli: Reconcile) -> None:
    cli.write_set("onboarding", [INTAKE, FEEDBACK], secret=False)
    cli.apply_ok()
    cli.write_set("onboarding", [INTAKE], secret=False)  # fdbk001/inbox no longer declared
    before = total_requests(cli)

    removed = cli.raw("state", "rm", "--state", str(cli.state), "fdbk001/inbox")

    assert removed.code == 0, removed.err
    assert total_requests(cli) == before
    assert cli.state_keys() == {"onbrd01/intake"}
    pruned = cli.apply_ok("--prune")
    assert "fdbk001/inbox" in cli.live()  # now unmanaged: never deleted
    assert "unmanaged" in pruned.out


def test_state_rm_of_an_unknown_address_removes_nothing(cli: Reconcile) -> None:
    cli.write_set("onboarding", [INTAKE], secret=False)
    cli.apply_ok()
    before = cli.state.read_text()

    result = cli.raw("state", "rm", "--state", str(cli.state), "onbrd01/intake", "nope01/x")

    assert result.code == 1
    assert "nope01/x is not in the state; nothing was removed" in result.err
    assert cli.state.read_text() == before

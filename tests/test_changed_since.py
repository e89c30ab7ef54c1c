"""``--changed-since GIT_REF`` (SPEC section 12): a pull request touching 3 forms of many costs 3
requests, and the plan says it is partial. Tested in a real git repository."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from cli_harness import Reconcile

FORMS = ["onbrd01", "onbrd02", "onbrd03", "kyc0001", "fdbk001", "nwsl001", "evnt001"]


def hook(form: str, url: str | None = None) -> dict[str, Any]:
    return {"form_id": form, "tag": "intake", "url": url or f"https://hooks.example.com/{form}"}


def with_url(form: str, url: str) -> list[dict[str, Any]]:
    """Every form's entry, one of them with a new URL."""
    return [hook(f, url) if f == form else hook(f) for f in FORMS]


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)


@pytest.fixture
def repo(cli: Reconcile, tmp_path: Path) -> Reconcile:
    """``cli`` in a git repository whose first commit holds the manifests, applied."""
    cli.write_set("onboarding", [hook(f) for f in FORMS], secret=False)
    git(tmp_path, "init", "-q", "-b", "main")
    git(tmp_path, "-c", "user.email=t@example.com", "-c", "user.name=t", "add", "manifests")
    git(tmp_path, "-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-qm", "base")
    cli.apply_ok()
    return cli


def webhook_reads(cli: Reconcile) -> int:
    return sum(cli.requests().get("GET /forms/{form_id}/webhooks", {}).values())


def test_a_change_to_one_form_reads_only_that_form_and_the_plan_is_partial(
    repo: Reconcile,
) -> None:
    changed = [
        hook(f, "https://hooks.example.com/v2") if f == "kyc0001" else hook(f) for f in FORMS
    ]
    repo.write_set("onboarding", changed, secret=False)
    before = webhook_reads(repo)

    doc = repo.plan_json("--changed-since", "HEAD")

    assert webhook_reads(repo) - before == 1
    assert doc["partial"] is True
    assert doc["scope"]["changed_since"] == "HEAD"
    assert [(a["action"], a["form_id"]) for a in doc["actions"]] == [("update", "kyc0001")]
    text = repo("plan", "--changed-since", "HEAD")
    assert "partial: only what changed since HEAD" in text.out


def test_nothing_changed_reads_nothing(repo: Reconcile) -> None:
    before = webhook_reads(repo)
    doc = repo.plan_json("--changed-since", "HEAD")
    assert webhook_reads(repo) == before
    assert doc["actions"] == []
    assert doc["partial"] is True


def test_a_removed_entry_is_in_scope_so_prune_can_see_it(repo: Reconcile) -> None:
    repo.write_set("onboarding", [hook(f) for f in FORMS if f != "nwsl001"], secret=False)
    doc = repo.plan_json("--changed-since", "HEAD", "--prune")
    assert [(a["action"], a["form_id"]) for a in doc["actions"]] == [("delete", "nwsl001")]


def test_apply_of_a_partial_plan_touches_only_its_scope(repo: Reconcile) -> None:
    repo.put_live("fdbk001", "intake", {"url": "https://changed-outside.example.net/x"})
    changed = [
        hook(f, "https://hooks.example.com/v2") if f == "onbrd02" else hook(f) for f in FORMS
    ]
    repo.write_set("onboarding", changed, secret=False)

    repo.apply_ok("--changed-since", "HEAD")

    live = repo.live()
    assert live["onbrd02/intake"]["url"] == "https://hooks.example.com/v2"
    # Changed in Typeform, not in git: out of a partial plan's sight (a full drift finds it).
    assert live["fdbk001/intake"]["url"] == "https://changed-outside.example.net/x"
    assert repo("drift", "--changed-since", "HEAD").code == 0
    assert repo("drift").code == 2


def test_an_unknown_ref_is_a_clear_error(repo: Reconcile) -> None:
    result = repo("plan", "--changed-since", "no-such-ref")
    assert result.code == 1
    assert "--changed-since" in result.err
    assert "Traceback" not in result.err


def test_a_saved_partial_plan_keeps_its_scope_and_changed_since_is_refused_with_plan(
    repo: Reconcile,
) -> None:
    changed = [
        hook(f, "https://hooks.example.com/v3") if f == "onbrd03" else hook(f) for f in FORMS
    ]
    repo.write_set("onboarding", changed, secret=False)
    path = repo.root / "plan.json"
    assert repo("plan", "--changed-since", "HEAD", "--out", str(path)).code == 0

    refused = repo("apply", "--plan", str(path), "--changed-since", "HEAD")
    applied = repo("apply", "--plan", str(path))

    assert refused.code == 1
    assert "--changed-since cannot be used with --plan" in refused.err
    assert applied.code == 0, applied.err
    assert repo.live()["onbrd03/intake"]["url"] == "https://hooks.example.com/v3"


def test_a_narrowed_selector_puts_its_old_matches_in_scope_so_prune_can_see_them(
    cli: Reconcile,
) -> None:
    selector = {
        "forms": {"workspace_id": "wsclnt01", "title": "Client onboarding*"},
        "tag": "onboarding",
        "url": "https://hooks.example.com/onboarding",
    }
    cli.write_set("onboarding", [selector], secret=False)
    git(cli.root, "init", "-q", "-b", "main")
    git(cli.root, "-c", "user.email=t@example.com", "-c", "user.name=t", "add", "manifests")
    git(cli.root, "-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-qm", "s")
    cli.apply_ok()
    # The selector now matches only the intake form: the other two are no longer declared.
    narrowed = {**selector, "forms": {"workspace_id": "wsclnt01", "title": "*intake"}}
    cli.write_set("onboarding", [narrowed], secret=False)

    doc = cli.plan_json("--changed-since", "HEAD", "--prune")

    deleted = sorted(a["form_id"] for a in doc["actions"] if a["action"] == "delete")
    assert deleted == ["onbrd02", "onbrd03"]
    assert doc["selectors"][0]["matched"] == ["onbrd01"]

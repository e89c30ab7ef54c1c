"""Form selectors (SPEC section 12): ``forms: {workspace_id, title}`` instead of ``form_id``.

Onboarding teams copy a template form for every client; a selector gives each copy its webhook
on the next plan, with no manifest change. Explicit entries win over selector matches.
"""

from __future__ import annotations

from cli_harness import Reconcile

from reconciler.emulator import configure, open_emulator
from reconciler.emulator.seed import Seed, SeedForm, SeedWebhook
from reconciler.models import (
    DesiredState,
    DesiredWebhook,
    FormSelector,
    Ownership,
    SelectorEntry,
    WebhookKey,
    WebhookSet,
)
from reconciler.selectors import expand, listings_needed

ONBOARDING = {
    "forms": {"workspace_id": "wsclnt01", "title": "Client onboarding*"},
    "tag": "onboarding",
    "url": "https://hooks.example.com/onboarding",
}


def copy_template(cli: Reconcile, form_id: str, title: str) -> None:
    """Someone copies the onboarding template for a new client (webhooks are not copied)."""
    store = open_emulator(cli.url).store
    seed = Seed(
        workspaces=store.seed.workspaces,
        forms=(*store.seed.forms, SeedForm(form_id, title, "wsclnt01")),
        webhooks=tuple(
            SeedWebhook(
                w.form_id, w.tag, w.url, w.enabled, w.verify_ssl, dict(w.event_types), id=w.id
            )
            for w in store.webhooks.values()
        ),
    )
    configure(cli.emulator_path, seed=seed)


def test_a_selector_plans_one_webhook_per_matching_form_and_lists_what_it_matched(
    cli: Reconcile,
) -> None:
    cli.write_set("onboarding", [ONBOARDING], secret=False)

    doc = cli.plan_json()

    created = sorted(a["form_id"] for a in doc["actions"] if a["action"] == "create")
    assert created == ["onbrd01", "onbrd02", "onbrd03"]  # not kyc0001: its title differs
    (selector,) = doc["selectors"]
    assert selector["matched"] == ["onbrd01", "onbrd02", "onbrd03"]
    assert selector["selector"] == {"workspace_id": "wsclnt01", "title": "Client onboarding*"}
    assert selector["location"].endswith("onboarding.yaml:8:5")


def test_a_form_copied_from_the_template_gets_its_webhook_on_the_next_plan(
    cli: Reconcile,
) -> None:
    cli.write_set("onboarding", [ONBOARDING], secret=False)
    cli.apply_ok()
    assert cli("plan", "--detailed-exitcode").code == 0

    copy_template(cli, "onbrd04", "Client onboarding — new client ACME")

    doc = cli.plan_json()
    assert [(a["action"], a["form_id"]) for a in doc["actions"] if a["action"] != "noop"] == [
        ("create", "onbrd04")
    ]
    cli.apply_ok()
    assert cli.live()["onbrd04/onboarding"]["url"] == ONBOARDING["url"]


def test_an_explicit_entry_wins_over_a_selector_match(cli: Reconcile) -> None:
    explicit = {"form_id": "onbrd02", "tag": "onboarding", "url": "https://special.example.com/x"}
    cli.write_set("onboarding", [ONBOARDING, explicit], secret=False)

    doc = cli.plan_json()

    rows = {a["form_id"]: a for a in doc["actions"]}
    assert rows["onbrd02"]["after"]["url"] == "https://special.example.com/x"
    assert doc["selectors"][0]["matched"] == ["onbrd01", "onbrd03"]


def test_selectors_cost_one_paged_listing_per_account_and_workspace(cli: Reconcile) -> None:
    cli.write_set(
        "onboarding",
        [ONBOARDING, {**ONBOARDING, "tag": "audit", "url": "https://audit.example.com/a"}],
        secret=False,
    )
    cli.plan_json()
    assert cli.requests()["GET /forms"] == {"200": 1}


def test_expand_is_pure_and_first_selector_wins() -> None:
    template = DesiredWebhook(key=WebhookKey("default", "", "t"), url="https://a.example.com")
    first = SelectorEntry(FormSelector(title="A*"), template)
    second = SelectorEntry(
        FormSelector(title="*"), DesiredWebhook(WebhookKey("default", "", "t"), url="https://b")
    )
    desired = DesiredState(
        sets=(WebhookSet("s", "default", Ownership.DECLARED, (), selectors=(first, second)),)
    )
    assert listings_needed(desired) == [("default", None)]
    forms = [{"id": "f2", "title": "Beta"}, {"id": "f1", "title": "Alpha"}]

    expanded, matches = expand(desired, {("default", None): forms})

    assert [(str(w.key), w.url) for w in expanded.webhooks] == [
        ("f1/t", "https://a.example.com"),
        ("f2/t", "https://b"),
    ]
    assert [m.matched for m in matches] == [("f1",), ("f2",)]

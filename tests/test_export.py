"""``reconcile export`` end to end: live webhooks of the persisted emulator become manifests.

The promise under test is adoption: what export prints is accepted by ``reconcile validate``,
and planning it changes nothing but the secrets the user still has to supply; after ``apply``
(which adopts every exported webhook) a second plan is empty and ``--prune`` deletes nothing.
The output is always parsed back as YAML, and a secret that the API echoes in plain text is
set for real and searched for in everything printed.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import yaml
from cli_harness import Reconcile, Result

from reconciler.emulator import DEMO_SEED, Seed, configure, hash_secret
from reconciler.emulator.seed import SeedForm, SeedWebhook
from reconciler.events import Notice
from reconciler.export import export as run_export
from reconciler.manifests import check
from reconciler.models import Account, DesiredState
from reconciler.pipeline import Run
from reconciler.state import FileStateStore
from reconciler.transports import Endpoint

EU_TOKEN_ENV = "TYPEFORM_TOKEN_EU"
PLAIN_SECRET = "pl41n-SECRET-never-print-7731"
TOKEN = "tf_token_never_print_5517"


@pytest.fixture(autouse=True)
def _no_prompt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))


def export(cli: Reconcile, *args: str) -> Result:
    return cli.raw("export", "--api-url", cli.url, "--rate", "1000", *args)


def errors(result: Result) -> list[str]:
    """stderr without the warning that --rate 1000 (the emulator's test rate) always gets."""
    return [line for line in result.err.splitlines() if "above the 2/s" not in line]


def export_ok(cli: Reconcile, *args: str) -> tuple[str, list[dict[str, Any]]]:
    result = export(cli, *args)
    assert result.code == 0, result.err
    docs = [d for d in yaml.safe_load_all(result.out) if d is not None]
    return result.out, docs


def webhook_set(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (found,) = [d for d in docs if d["kind"] == "WebhookSet"]
    return found


def entries(docs: list[dict[str, Any]]) -> list[str]:
    return [f"{w['form_id']}/{w['tag']}" for w in webhook_set(docs)["spec"]["webhooks"]]


def write_export(cli: Reconcile, text: str, name: str = "exported.yaml") -> Path:
    cli.manifests.mkdir(parents=True, exist_ok=True)
    path = cli.manifests / name
    path.write_text(text, encoding="utf-8")
    return path


def validate(cli: Reconcile, *paths: Path) -> Result:
    return cli.raw("validate", *(str(p) for p in paths))


def seed_with(*webhooks: SeedWebhook, forms: tuple[SeedForm, ...] = DEMO_SEED.forms) -> Seed:
    return Seed(workspaces=DEMO_SEED.workspaces, forms=forms, webhooks=webhooks)


def hook(form_id: str, tag: str, *, secret: str | None = None, **fields: Any) -> SeedWebhook:
    if secret is not None:
        fields["secret_sha256"] = hash_secret(secret)
    return SeedWebhook(form_id=form_id, tag=tag, url=f"https://hooks.example.com/{tag}", **fields)


# --------------------------------------------------------------------------- what is exported


def test_form_exports_the_webhooks_of_exactly_those_forms_in_form_then_tag_order(
    cli: Reconcile,
) -> None:
    cli.put_live("onbrd01", "b-intake", {"url": "https://hooks.example.com/b"})
    cli.put_live("onbrd01", "a-intake", {"url": "https://hooks.example.com/a"})
    cli.put_live("fdbk001", "inbox", {"url": "https://hooks.example.com/inbox"})

    out, docs = export_ok(cli, "--form", "onbrd02", "--form", "onbrd01", "--form", "onbrd01")

    assert entries(docs) == [
        "onbrd01/a-intake",
        "onbrd01/b-intake",
        "onbrd01/legacy-zapier",
        "onbrd02/crm-sync",
    ]
    assert docs[0]["metadata"] == {"name": "exported-default"}
    assert "account" not in docs[0]["spec"]
    assert export_ok(cli, "--form", "onbrd01", "--form", "onbrd02")[0] == out
    reads = {route: n for route, n in cli.requests().items() if route.startswith("GET")}
    assert reads == {"GET /forms/{form_id}/webhooks": {"200": 4}}  # each form once per export


def test_every_field_is_written_with_the_manifest_names(cli: Reconcile) -> None:
    body = {
        "url": "http://receiver.example.com/partial?x=1",
        "enabled": False,
        "verify_ssl": False,
        "event_types": {"form_response": True, "form_response_partial": True},
    }
    cli.put_live("kyc0001", "partial", body)

    _, docs = export_ok(cli, "--form", "kyc0001")

    assert webhook_set(docs)["spec"]["webhooks"] == [
        {
            "form_id": "kyc0001",
            "tag": "partial",
            "url": "http://receiver.example.com/partial?x=1",
            "enabled": False,
            "verify_ssl": False,
            "event_types": ["form_response", "form_response_partial"],
        }
    ]


def test_workspace_exports_the_forms_of_that_workspace_only(cli: Reconcile) -> None:
    cli.put_live("fdbk001", "inbox", {"url": "https://hooks.example.com/inbox"})
    cli.put_live("kyc0001", "kyc", {"url": "https://hooks.example.com/kyc"})

    _, clients = export_ok(cli, "--workspace", "wsclnt01")
    _, marketing = export_ok(cli, "--workspace", "wsmrkt01")

    assert entries(clients) == ["kyc0001/kyc", "onbrd01/legacy-zapier", "onbrd02/crm-sync"]
    assert entries(marketing) == ["fdbk001/inbox"]


def test_all_pages_through_more_than_200_forms_and_exports_webhooks_beyond_the_first_page(
    cli: Reconcile,
) -> None:
    forms = tuple(SeedForm(f"bulk{n:04d}", f"Bulk form {n}") for n in range(250))
    seed = Seed(
        forms=forms,
        webhooks=(hook("bulk0000", "first"), hook("bulk0201", "late"), hook("bulk0249", "last")),
    )
    configure(cli.emulator_path, seed=seed)

    _, docs = export_ok(cli, "--all")

    assert entries(docs) == ["bulk0000/first", "bulk0201/late", "bulk0249/last"]
    routes = cli.requests()
    assert routes["GET /forms"] == {"200": 2}  # 200 per page: two pages, not 25
    assert routes["GET /forms/{form_id}/webhooks"] == {"200": 250}
    assert (
        "# Exported by `reconcile export` from account 'default': 3 webhooks on 250 forms."
        in (export_ok(cli, "--all")[0])
    )


def test_export_only_reads(cli: Reconcile) -> None:
    before = cli.live()

    export_ok(cli, "--all")

    assert cli.live() == before
    assert {route.split()[0] for route in cli.requests()} == {"GET"}
    assert not (cli.root / ".reconcile" / "state.json").exists()


# --------------------------------------------------------------------------- secrets


def test_a_masked_secret_becomes_a_placeholder_to_set_and_no_secret_a_commented_line(
    cli: Reconcile,
) -> None:
    configure(
        cli.emulator_path,
        secret_echo="masked",
        seed=seed_with(
            hook("onbrd01", "signed", secret="masked-SECRET-1"), hook("onbrd01", "bare")
        ),
    )

    out, docs = export_ok(cli, "--form", "onbrd01")

    lines = out.splitlines()
    assert (
        "    # secret: {env: WEBHOOK_SECRET_ONBRD01_BARE}  # uncomment if this webhook has a secret"
        in lines
    )
    signed = "    secret: {env: WEBHOOK_SECRET_ONBRD01_SIGNED}"
    assert f"{signed}  # set this: the API never returns secrets" in lines
    by_tag = {w["tag"]: w for w in webhook_set(docs)["spec"]["webhooks"]}
    assert by_tag["signed"]["secret"] == {"env": "WEBHOOK_SECRET_ONBRD01_SIGNED"}
    assert "secret" not in by_tag["bare"]
    assert "masked-SECRET-1" not in out


def test_a_secret_echoed_in_plain_text_is_never_printed(
    cli: Reconcile, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(cli.emulator_path, secret_echo="plain")
    cli.put_live("onbrd03", "signed", {"url": "https://h.example.com/s", "secret": PLAIN_SECRET})
    assert cli.live()["onbrd03/signed"]["secret"] == PLAIN_SECRET  # the API really echoes it

    for args in (("--form", "onbrd03"), ("--all",), ("--form", "onbrd03", "--log-level", "debug")):
        result = export(cli, *args)
        assert result.code == 0, result.err
        assert PLAIN_SECRET not in result.out + result.err
        assert "secret: {env: WEBHOOK_SECRET_ONBRD03_SIGNED}  # set this" in result.out
    # With the variable set to the secret it echoes, the API itself proves it in sync.
    write_export(cli, result.out)
    monkeypatch.setenv("WEBHOOK_SECRET_ONBRD03_SIGNED", PLAIN_SECRET)
    planned = cli("plan", "--detailed-exitcode")
    assert planned.code == 0, planned.out + planned.err
    assert PLAIN_SECRET not in planned.out + planned.err


def test_tags_that_differ_only_by_punctuation_or_case_get_distinct_secret_variables(
    cli: Reconcile,
) -> None:
    for tag in ("a-b", "a.b", "a_b", "A-B"):
        cli.put_live("nwsl001", tag, {"url": "https://hooks.example.com/x", "secret": "s"})
    configure(cli.emulator_path, secret_echo="masked")

    _, docs = export_ok(cli, "--form", "nwsl001")

    variables = [w["secret"]["env"] for w in webhook_set(docs)["spec"]["webhooks"]]
    assert len(set(variables)) == 4
    assert variables[0] == "WEBHOOK_SECRET_NWSL001_A_B"


# --------------------------------------------------------------------------- validity


def test_the_output_passes_validate_even_for_tags_and_ids_yaml_would_read_as_other_types(
    cli: Reconcile,
) -> None:
    forms = (*DEMO_SEED.forms, SeedForm("123", "Digits"), SeedForm("0777", "Octal"))
    tags = ("true", "null", "1.5", "0x1F", "yes", "on", "1e3", "007")
    configure(
        cli.emulator_path,
        secret_echo="masked",
        seed=seed_with(
            *(hook("123", t) for t in tags), hook("0777", "no", secret="x"), forms=forms
        ),
    )

    out, docs = export_ok(cli, "--all")

    assert sorted(entries(docs)) == entries(docs)
    assert set(entries(docs)) == {"0777/no", *(f"123/{t}" for t in tags)}
    for entry in webhook_set(docs)["spec"]["webhooks"]:
        assert isinstance(entry["form_id"], str)
        assert isinstance(entry["tag"], str)
    path = write_export(cli, out)
    checked = validate(cli, path)
    assert checked.code == 0, checked.out + checked.err


def test_a_webhook_whose_url_carries_credentials_is_left_out_with_a_note_never_the_url(
    cli: Reconcile,
) -> None:
    cli.put_live("evnt001", "basic", {"url": "https://user:hunter2pass@rx.example.com/h"})
    cli.put_live("evnt001", "fine", {"url": "https://rx.example.com/h"})

    result = export(cli, "--form", "evnt001")

    assert result.code == 0, result.err
    docs = list(yaml.safe_load_all(result.out))
    assert entries([d for d in docs if d]) == ["evnt001/fine"]
    assert "hunter2pass" not in result.out + result.err
    assert "left out evnt001/basic" in result.err
    assert "# left out evnt001/basic: its url carries credentials" in result.out
    assert validate(cli, write_export(cli, result.out)).code == 0


def test_a_webhook_with_no_event_type_on_is_left_out_because_the_schema_needs_one(
    cli: Reconcile,
) -> None:
    off = {"form_response": False, "form_response_partial": False}
    cli.put_live("onbrd03", "silent", {"url": "https://rx.example.com/s", "event_types": off})

    result = export(cli, "--form", "onbrd03")

    assert result.code == 0, result.err
    docs = [d for d in yaml.safe_load_all(result.out) if d]
    assert entries(docs) == []
    assert "# left out onbrd03/silent: its event_types cannot be written in a manifest" in (
        result.out
    )
    assert validate(cli, write_export(cli, result.out)).code == 0


def test_hostile_api_answers_stay_in_comments_and_a_plain_secret_never_reaches_the_yaml(
    tmp_path: Path,
) -> None:
    """A hand-written API (the emulator refuses such tags): line breaks in a tag or a URL must
    not escape their comment into YAML, and a plain secret must not survive the export."""
    injected = "x\nkind: Account\u2028apiVersion: evil"
    hooks = [
        {"id": "1", "form_id": "abc1", "tag": injected, "url": "https://a.example.com/",
         "enabled": True},
        {"id": "2", "form_id": "abc1", "tag": "ok", "url": "https://a.example.com/\n- tag: y",
         "enabled": True},
        {"id": "3", "form_id": "abc1", "tag": "kept", "url": "https://a.example.com/k",
         "enabled": True, "secret": PLAIN_SECRET},
    ]  # fmt: skip

    def api(request: httpx.Request) -> httpx.Response:
        assert request.method == "GET"
        return httpx.Response(200, json={"items": hooks})

    def resolve(account: Account, api_url: str) -> Endpoint:
        return Endpoint(
            account.name, api_url, "https://api.invalid", "tok", httpx.MockTransport(api)
        )

    notices: list[str] = []
    run = Run(
        store=FileStateStore(tmp_path / "state.json"),
        endpoints=resolve,
        events=lambda e: notices.append(e.message) if isinstance(e, Notice) else None,
    )
    result = anyio.run(lambda: run_export(run, DesiredState(), forms=["abc1"]))
    text = result.to_yaml()

    docs = [d for d in yaml.safe_load_all(text) if d is not None]
    assert [d["kind"] for d in docs] == ["WebhookSet"]
    assert entries(docs) == ["abc1/kept"]
    assert result.secrets_to_set == ("WEBHOOK_SECRET_ABC1_KEPT",)
    assert PLAIN_SECRET not in text + repr(result)
    assert len(notices) == 2
    assert all("\n" not in n and "\u2028" not in n for n in notices)
    (path := tmp_path / "m" / "x.yaml").parent.mkdir()
    path.write_text(text, encoding="utf-8")
    assert check([path]).valid


# --------------------------------------------------------------------------- adoption


def test_adopting_an_account_plans_only_the_secrets_then_converges_and_prune_deletes_nothing(
    cli: Reconcile, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(
        cli.emulator_path,
        secret_echo="masked",
        seed=seed_with(
            hook("onbrd01", "intake", secret="intake-S3CRET"),
            hook("onbrd01", "legacy", enabled=False),
            hook("fdbk001", "inbox", verify_ssl=False, secret="inbox-S3CRET"),
            hook(
                "kyc0001",
                "partial",
                event_types={"form_response": False, "form_response_partial": True},
            ),
        ),
    )
    out, _ = export_ok(cli, "--all")
    write_export(cli, out)
    monkeypatch.setenv("WEBHOOK_SECRET_ONBRD01_INTAKE", "intake-S3CRET")
    monkeypatch.setenv("WEBHOOK_SECRET_FDBK001_INBOX", "inbox-S3CRET")
    before = cli.live()

    first = cli.plan_json()

    updates = {
        f"{a['form_id']}/{a['tag']}": [c["field"] for c in a["changes"]]
        for a in first["actions"]
        if a["action"] != "noop"
    }
    assert updates == {"fdbk001/inbox": ["secret"], "onbrd01/intake": ["secret"]}
    assert {a["action"] for a in first["actions"]} == {"update", "noop"}
    assert first["unmanaged"] == []

    cli.apply_ok()
    after = cli.live()
    assert set(after) == set(before)
    for key in before:  # only the secrets were written: every other field as it was
        for field in ("url", "enabled", "verify_ssl", "event_types", "id"):
            assert after[key][field] == before[key][field]
    assert cli.state_keys() == set(before)

    second = cli("plan", "--prune", "--detailed-exitcode")
    assert second.code == 0, second.out + second.err
    pruned = cli("apply", "--auto-approve", "--prune")
    assert pruned.code == 0, pruned.err
    assert set(cli.live()) == set(before)


def test_adopting_without_secret_echo_plans_no_change_at_all(cli: Reconcile) -> None:
    out, _ = export_ok(cli, "--all")
    write_export(cli, out)

    planned = cli("plan", "--detailed-exitcode")

    assert planned.code == 0, planned.out + planned.err
    cli.apply_ok()
    assert cli.state_keys() == {"onbrd01/legacy-zapier", "onbrd02/crm-sync"}
    assert cli("plan", "--prune", "--detailed-exitcode").code == 0


# --------------------------------------------------------------------------- accounts


def test_a_non_default_account_gets_its_account_document_and_validates_alone(
    cli: Reconcile, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    eu_path = tmp_path / "eu" / "emulator.json"
    configure(eu_path, rate=1000.0, burst=1000, seed=seed_with(hook("evnt001", "eu-hook")))
    accounts = tmp_path / "accounts"
    accounts.mkdir()
    account_doc = {
        "apiVersion": "reconciler/v1",
        "kind": "Account",
        "metadata": {"name": "eu-clients"},
        "spec": {
            "api_url": f"emulator:{eu_path}",
            "token": {"env": EU_TOKEN_ENV},
            "rate_limit": 1000,
        },
    }
    (accounts / "eu.yaml").write_text(yaml.safe_dump(account_doc), encoding="utf-8")
    monkeypatch.setenv(EU_TOKEN_ENV, TOKEN)

    result = cli.raw("export", str(accounts), "--account", "eu-clients", "--all")

    assert result.code == 0, result.err
    assert TOKEN not in result.out + result.err
    account, webhooks = list(yaml.safe_load_all(result.out))
    assert account == account_doc
    assert webhooks["metadata"] == {"name": "exported-eu-clients"}
    assert webhooks["spec"]["account"] == "eu-clients"
    assert entries([webhooks]) == ["evnt001/eu-hook"]
    assert "WEBHOOK_SECRET_EU_CLIENTS_EVNT001_EU_HOOK" in result.out
    exported = tmp_path / "exported"
    exported.mkdir()
    (exported / "eu.yaml").write_text(result.out, encoding="utf-8")
    assert validate(cli, exported).code == 0
    assert cli.raw("plan", str(exported), "--detailed-exitcode", "--rate", "1000").code == 0


def test_an_account_name_too_long_for_a_set_name_is_cut_to_a_dns_label() -> None:
    from reconciler.export import set_name

    assert set_name("default") == "exported-default"
    long = "a" * 53 + "-" + "b" * 9
    assert len(set_name(long)) <= 63
    assert not set_name(long).endswith("-")


# --------------------------------------------------------------------------- mistakes


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ((), "give exactly one of --form ID (repeatable), --workspace ID, --all"),
        (("--all", "--form", "onbrd01"), "give exactly one of"),
        (("--workspace", "wsclnt01", "--all"), "give exactly one of"),
        (("--form", "nosuch1"), "--form nosuch1: no such form in account 'default'"),
        (("--form", "onbrd01", "--form", "../etc"), "--form '../etc': not an id"),
        (("--workspace", "wsnone01"), "no forms found in workspace 'wsnone01'"),
        (("--account", "eu", "--all"), "account 'eu' is not declared"),
    ],
)
def test_a_mistake_is_one_line_and_exit_1(cli: Reconcile, args: tuple[str, ...], says: str) -> None:
    result = export(cli, *args)

    assert result.code == 1
    assert result.out == ""
    (line,) = errors(result)
    assert line.startswith("Error: ")
    assert says in line
    assert "Traceback" not in result.err


def test_a_refused_token_is_one_line_exit_1_that_never_shows_the_token(
    cli: Reconcile, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(cli.emulator_path, tokens={"the-right-token": {"account": "acme", "scopes": []}})
    monkeypatch.setenv("TYPEFORM_TOKEN", TOKEN)

    result = export(cli, "--all")

    assert result.code == 1
    (line,) = errors(result)
    assert line.startswith("Error: Typeform refused the token of account 'default'")
    assert TOKEN not in result.out + result.err


def test_help_names_the_exit_codes_and_an_example(cli: Reconcile) -> None:
    result = cli.raw("export", "--help")

    assert result.code == 0
    assert "Exit codes: 0 exported, 1 error" in result.out
    assert "reconcile export --all > manifests/exported.yaml" in result.out

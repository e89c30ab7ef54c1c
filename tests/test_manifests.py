"""The manifest loader: discovery, YAML handling, merged values, cross-document rules."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from reconciler.errors import ManifestError
from reconciler.manifests import check, load_desired, load_schema
from reconciler.models import (
    Account,
    DesiredWebhook,
    EventTypes,
    Location,
    Ownership,
    Presence,
    SecretRef,
    SecretSource,
    Severity,
    WebhookKey,
)

REPO = Path(__file__).resolve().parent.parent
GOOD = REPO / "tests" / "manifests_good"
EXAMPLES = REPO / "manifests"


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _set(name: str, webhooks: str, *, extra: str = "") -> str:
    return (
        "apiVersion: reconciler/v1\nkind: WebhookSet\n"
        f"metadata: {{name: {name}}}\nspec:\n{extra}  webhooks:\n{webhooks}"
    )


def _hooks(*hooks: DesiredWebhook) -> dict[WebhookKey, DesiredWebhook]:
    return {h.key: h for h in hooks}


# --------------------------------------------------------------------------- schema


def test_schema_is_a_valid_draft_2020_12_schema_with_an_id() -> None:
    schema = load_schema()
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"]


def test_schema_loaded_by_the_loader_is_the_file_in_schemas() -> None:
    on_disk = json.loads((REPO / "schemas" / "reconciler-v1.schema.json").read_text())
    assert load_schema() == on_disk


def test_example_manifests_point_editors_at_the_schema_with_a_modeline() -> None:
    files = sorted(EXAMPLES.rglob("*.yaml"))
    assert files
    for file in files:
        first = file.read_text(encoding="utf-8").splitlines()[0]
        match = re.fullmatch(r"# yaml-language-server: \$schema=(\S+)", first)
        assert match, f"{file} has no modeline"
        assert (file.parent / match[1]).resolve() == (
            REPO / "schemas" / "reconciler-v1.schema.json"
        )


# --------------------------------------------------------------------------- the examples


def test_example_manifests_load_with_the_demo_forms_and_merged_defaults() -> None:
    desired = load_desired([EXAMPLES])

    hooks = _hooks(*desired.webhooks)
    assert {k.form_id for k in hooks} == {"onbrd01", "onbrd02", "onbrd03", "kyc0001", "fdbk001"}
    details = hooks[WebhookKey("default", "onbrd03", "onboarding-details")]
    assert details.event_types == EventTypes(form_response=True, form_response_partial=True)
    assert details.secret == SecretRef(
        SecretSource.ENV, "ONBOARDING_WEBHOOK_SECRET", str(EXAMPLES), root=str(EXAMPLES)
    )
    legacy = hooks[WebhookKey("default", "onbrd01", "legacy-zapier")]
    assert legacy.state is Presence.ABSENT
    assert legacy.url is None
    feedback = hooks[WebhookKey("default", "fdbk001", "support-inbox")]
    assert feedback.secret is None
    assert feedback.event_types == EventTypes(form_response=True, form_response_partial=False)
    assert desired.warnings == ()


# --------------------------------------------------------------------------- good manifests


def test_good_manifests_merge_defaults_under_entries_and_entries_win() -> None:
    desired = load_desired([GOOD])
    hooks = _hooks(*desired.webhooks)
    secrets_dir = str(GOOD)

    intake = hooks[WebhookKey("eu-clients", "euform1", "intake")]
    assert intake.url == "https://hooks.example.eu/intake"
    assert intake.enabled is False
    assert intake.verify_ssl is False
    assert intake.event_types == EventTypes(form_response=False, form_response_partial=True)
    assert intake.secret == SecretRef(
        SecretSource.FILE, "secrets/eu-webhook-secret.txt", secrets_dir, root=str(GOOD)
    )
    assert intake.ownership is Ownership.EXCLUSIVE
    assert intake.set_name == "eu-onboarding"

    partials = hooks[WebhookKey("eu-clients", "euform1", "partials")]
    assert partials.enabled is True
    assert partials.verify_ssl is False
    assert partials.event_types == EventTypes(form_response=True, form_response_partial=True)
    assert partials.secret == SecretRef(
        SecretSource.ENV, "EU_PARTIALS_SECRET", secrets_dir, root=str(GOOD)
    )

    old = hooks[WebhookKey("eu-clients", "euform2", "old-hook")]
    assert old.state is Presence.ABSENT


def test_the_same_form_and_tag_in_two_accounts_are_two_webhooks() -> None:
    desired = load_desired([GOOD])
    keys = {h.key for h in desired.webhooks}
    assert WebhookKey("eu-clients", "euform1", "intake") in keys
    assert WebhookKey("default", "euform1", "intake") in keys
    assert {(s.account, s.name) for s in desired.sets} >= {
        ("eu-clients", "eu-onboarding"),
        ("default", "eu-onboarding"),
    }


def test_declared_accounts_keep_their_url_token_reference_rate_and_location() -> None:
    desired = load_desired([GOOD])
    account = desired.account("eu-clients")
    assert account == Account(
        name="eu-clients",
        api_url="https://api.eu.typeform.com",
        token=SecretRef(SecretSource.ENV, "TYPEFORM_TOKEN_EU", str(GOOD), root=str(GOOD)),
        rate_limit=0.5,
        location=Location(str(GOOD / "accounts.yaml"), 2, 1),
    )
    assert desired.exclusive_forms() == frozenset(
        {("eu-clients", "euform1"), ("eu-clients", "euform2")}
    )


def test_yaml_anchors_and_merge_keys_are_expanded_and_keys_stay_strings() -> None:
    desired = load_desired([GOOD / "anchors.yml"])
    hooks = _hooks(*desired.webhooks)
    assert set(hooks) == {
        WebhookKey("default", "anch001", tag) for tag in ("first", "second", "on")
    }
    assert hooks[WebhookKey("default", "anch001", "second")].verify_ssl is False
    assert hooks[WebhookKey("default", "anch001", "on")].verify_ssl is True
    assert hooks[WebhookKey("default", "anch001", "second")].url == (
        "https://hooks.example.com/anchored"
    )


def test_each_webhook_points_at_its_entry_in_the_manifest(tmp_path: Path) -> None:
    file = _write(
        tmp_path / "a.yaml",
        "---\n"
        + _set(
            "one",
            "    - form_id: f1\n      tag: t1\n      url: https://x.example/1\n"
            "    - {form_id: f1, tag: t2, url: 'https://x.example/2'}\n",
        ),
    )
    hooks = _hooks(*load_desired([file]).webhooks)
    assert hooks[WebhookKey("default", "f1", "t1")].location == Location(str(file), 7, 7)
    assert hooks[WebhookKey("default", "f1", "t2")].location == Location(str(file), 10, 7)


def test_directories_are_searched_recursively_in_sorted_order_for_yaml_and_yml(
    tmp_path: Path,
) -> None:
    hook = "    - {form_id: f1, tag: t%s, url: 'https://x.example/'}\n"
    _write(tmp_path / "b" / "z.yml", _set("z", hook % 1))
    _write(tmp_path / "a.yaml", _set("a", hook % 2))
    _write(tmp_path / "b" / "notes.txt", "not a manifest")
    _write(tmp_path / ".hidden" / "c.yaml", "this: is: not read")
    result = check([tmp_path])
    assert result.valid, result.diagnostics
    assert result.files == 2
    assert [s.name for s in result.desired.sets] == ["a", "z"]  # type: ignore[union-attr]


def test_a_file_named_twice_is_read_once(tmp_path: Path) -> None:
    file = _write(
        tmp_path / "a.yaml", _set("a", "    - {form_id: f, tag: t, url: 'https://x.example/'}\n")
    )
    result = check([tmp_path, file])
    assert result.valid, result.diagnostics
    assert result.files == 1


def test_a_missing_path_is_an_error_not_an_empty_desired_state(tmp_path: Path) -> None:
    with pytest.raises(ManifestError) as info:
        load_desired([tmp_path / "nope"])
    assert [d.message for d in info.value.diagnostics] == [
        f"{tmp_path / 'nope'}: no such file or directory"
    ]


def test_a_directory_without_manifests_is_an_error(tmp_path: Path) -> None:
    _write(tmp_path / "README.md", "# nothing here")
    result = check([tmp_path])
    assert not result.valid
    assert "no manifests (*.yaml, *.yml) found" in result.errors[0].message


def test_an_empty_file_is_a_warning_and_empty_documents_are_skipped(tmp_path: Path) -> None:
    empty = _write(tmp_path / "empty.yaml", "# only a comment\n---\n")
    _write(
        tmp_path / "a.yaml",
        "---\n---\n" + _set("a", "    - {form_id: f, tag: t, url: 'https://x.example/'}\n"),
    )
    desired = load_desired([tmp_path])
    assert len(desired.webhooks) == 1
    assert [(w.location, w.message) for w in desired.warnings] == [
        (Location(str(empty), 1, 1), "file holds no manifest document")
    ]


def test_http_urls_are_warnings_that_do_not_fail_the_load(tmp_path: Path) -> None:
    file = _write(
        tmp_path / "a.yaml",
        _set("a", "    - form_id: f\n      tag: t\n      url: http://x.example/\n"),
    )
    desired = load_desired([file])
    [warning] = desired.warnings
    assert warning.severity is Severity.WARNING
    assert warning.location == Location(str(file), 8, 12)
    assert "http://" in warning.message


def test_an_account_api_url_on_loopback_may_use_http_without_warning(tmp_path: Path) -> None:
    file = _write(
        tmp_path / "acc.yaml",
        "apiVersion: reconciler/v1\nkind: Account\nmetadata: {name: local}\nspec:\n"
        "  api_url: http://127.0.0.1:8787\n  token: {env: LOCAL_TOKEN}\n---\n"
        "apiVersion: reconciler/v1\nkind: Account\nmetadata: {name: emu}\nspec:\n"
        "  api_url: 'emulator:.reconcile/emu.json'\n  token: {env: EMU_TOKEN}\n",
    )
    desired = load_desired([file])
    assert desired.warnings == ()
    assert desired.account("emu").api_url == "emulator:.reconcile/emu.json"
    assert desired.account("emu").rate_limit == 2.0


def test_load_desired_raises_with_every_error_of_every_file(tmp_path: Path) -> None:
    _write(
        tmp_path / "a.yaml", _set("a", "    - {form_id: f, tag: '-x', url: 'https://x.example/'}\n")
    )
    _write(tmp_path / "b.yaml", "key: [unclosed\n")
    _write(tmp_path / "c.yaml", _set("c", "    - {form_id: f, tag: t}\n"))
    with pytest.raises(ManifestError) as info:
        load_desired([tmp_path])
    files = [Path(d.location.file).name for d in info.value.diagnostics if d.location]
    assert files == ["a.yaml", "b.yaml", "c.yaml"]
    assert "does not match" in str(info.value)


def test_a_duplicate_across_files_names_both_locations(tmp_path: Path) -> None:
    hook = "    - form_id: f1\n      tag: t1\n      url: https://x.example/\n"
    first = _write(tmp_path / "1.yaml", _set("one", hook))
    second = _write(tmp_path / "2.yaml", _set("two", hook))
    result = check([tmp_path])
    [error] = result.errors
    assert error.location == Location(str(second), 6, 7)
    assert f"already declared at {first}:6:7" in error.message


def test_an_invalid_entry_does_not_hide_a_duplicate_of_a_valid_one(tmp_path: Path) -> None:
    _write(
        tmp_path / "a.yaml",
        _set(
            "a",
            "    - {form_id: f1, tag: t1, url: 'https://x.example/'}\n"
            "    - {form_id: f1, tag: 'bad tag', url: 'https://x.example/'}\n"
            "    - {form_id: f1, tag: t1, url: 'https://x.example/'}\n",
        ),
    )
    messages = [d.message for d in check([tmp_path]).errors]
    assert len(messages) == 2
    assert "does not match" in messages[0]
    assert messages[1].startswith("duplicate webhook f1/t1")


def test_an_invalid_account_document_does_not_also_make_its_users_unknown(tmp_path: Path) -> None:
    _write(
        tmp_path / "a.yaml",
        "apiVersion: reconciler/v1\nkind: Account\nmetadata: {name: eu}\nspec:\n"
        "  api_url: https://api.eu.typeform.com\n  token: plain\n---\n"
        + _set(
            "a", "    - {form_id: f, tag: t, url: 'https://x.example/'}\n", extra="  account: eu\n"
        ),
    )
    errors = check([tmp_path]).errors
    assert len(errors) == 1
    assert "plaintext secrets are rejected" in errors[0].message


def test_recursive_aliases_are_an_error_not_a_hang(tmp_path: Path) -> None:
    file = _write(tmp_path / "a.yaml", "apiVersion: &x [*x]\n")
    errors = check([file]).errors
    assert any("recursive YAML alias" in e.message for e in errors)


def test_alias_bombs_are_cut_off(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 8):
        prev = f"*a{i - 1}"
        lines.append(f"a{i}: &a{i} [{', '.join([prev] * 10)}]")
    file = _write(tmp_path / "bomb.yaml", "\n".join(lines) + "\n")
    errors = check([file]).errors
    assert any("too large" in e.message for e in errors)


def test_a_secret_ref_is_kept_as_a_reference_and_never_resolved_by_loading(tmp_path: Path) -> None:
    file = _write(
        tmp_path / "a.yaml",
        _set(
            "a",
            "    - {form_id: f, tag: t, url: 'https://x.example/', secret: {env: UNSET_VAR_X}}\n",
        ),
    )
    [hook] = load_desired([file], environ={}).webhooks
    assert hook.secret == SecretRef(
        SecretSource.ENV, "UNSET_VAR_X", str(tmp_path), root=str(tmp_path)
    )


def test_check_env_reports_each_unresolved_reference_once_where_it_is_written(
    tmp_path: Path,
) -> None:
    file = _write(
        tmp_path / "a.yaml",
        _set(
            "a",
            "    - {form_id: f, tag: t1, url: 'https://x.example/'}\n"
            "    - {form_id: f, tag: t2, url: 'https://x.example/'}\n"
            "    - {form_id: f, tag: t3, url: 'https://x.example/', secret: {file: missing.txt}}\n"
            "    - {form_id: f, tag: t4, state: absent, secret: {env: ONLY_FOR_ABSENT}}\n",
            extra="  defaults:\n    secret: {env: SHARED_SECRET}\n",
        ),
    )
    errors = check([file], check_env=True, environ={}).errors
    assert [(e.location, e.message) for e in errors] == [
        (
            Location(str(file), 6, 13),
            "secret does not resolve: environment variable SHARED_SECRET is not set",
        ),
        (
            Location(str(file), 10, 64),
            f"secret does not resolve: secret file {tmp_path.resolve() / 'missing.txt'} "
            "does not exist",
        ),
    ]
    assert check([file], check_env=True, environ={"SHARED_SECRET": "s"}).errors[0].location == (
        Location(str(file), 10, 64)
    )


def test_check_env_reports_an_account_token_that_does_not_resolve(tmp_path: Path) -> None:
    errors = check([GOOD], check_env=True, environ={"EU_PARTIALS_SECRET": "x"}).errors
    assert [
        (Path(e.location.file).name, e.location.line, e.message) for e in errors if e.location
    ] == [
        (
            "accounts.yaml",
            8,
            "token of account 'eu-clients' does not resolve: "
            "environment variable TYPEFORM_TOKEN_EU is not set",
        )
    ]
    environ = {"EU_PARTIALS_SECRET": "x", "TYPEFORM_TOKEN_EU": "tok"}
    assert check([GOOD], check_env=True, environ=environ).valid


def test_a_rule_broken_twice_by_one_node_is_reported_once(tmp_path: Path) -> None:
    file = _write(
        tmp_path / "a.yaml",
        "apiVersion: reconciler/v1\nkind: WebhookSet\nmetadata: {name: a}\nspec:\n",
    )
    assert [(e.location, e.message) for e in check([file]).errors] == [
        (Location(str(file), 4, 6), "spec: expected a mapping, got an empty value")
    ]


def test_a_rate_limit_that_is_not_a_finite_number_is_an_error(tmp_path: Path) -> None:
    file = _write(
        tmp_path / "a.yaml",
        "apiVersion: reconciler/v1\nkind: Account\nmetadata: {name: a}\nspec:\n"
        "  api_url: https://api.typeform.com\n  token: {env: T}\n  rate_limit: .inf\n",
    )
    assert [(e.location, e.message) for e in check([file]).errors] == [
        (Location(str(file), 7, 15), "spec.rate_limit: must be a finite number")
    ]


# --------------------------------------------------------------------------- limits, secrets


@pytest.mark.parametrize("levels", [65, 900, 5000])
def test_nesting_past_64_levels_is_one_located_error_never_a_recursion_error(
    tmp_path: Path, levels: int
) -> None:
    file = _write(tmp_path / "deep.yaml", "[" * levels + "]" * levels + "\n")
    assert [(e.location, e.message) for e in check([file]).errors] == [
        (Location(str(file), 1, 65), "nested deeper than 64 levels, the limit for a manifest")
    ]


def test_64_levels_of_nesting_are_still_read(tmp_path: Path) -> None:
    file = _write(tmp_path / "deep.yaml", "[" * 64 + "]" * 64 + "\n")
    messages = [e.message for e in check([file]).errors]
    assert not any("nested deeper" in m for m in messages)


def test_text_beyond_ascii_is_judged_by_the_python_regex_dialect(tmp_path: Path) -> None:
    # U+001C is whitespace to Python's \s, not to the compiled validator's: the URL pattern
    # must reject it exactly as without the fast path.
    file = _write(
        tmp_path / "a.yaml",
        _set("a", '    - {form_id: f, tag: t, url: "https://a\\x1cb.example/"}\n'),
    )
    [error] = check([file]).errors
    assert error.message.startswith("spec.webhooks[0].url: ")
    assert "does not match" in error.message


def test_a_webhook_secret_may_not_name_any_account_token_variable(tmp_path: Path) -> None:
    _write(
        tmp_path / "acc.yaml",
        "apiVersion: reconciler/v1\nkind: Account\nmetadata: {name: eu}\nspec:\n"
        "  api_url: https://api.eu.typeform.com\n  token: {env: EU_TOKEN}\n",
    )
    file = _write(
        tmp_path / "a.yaml",
        _set(
            "a",
            "    - {form_id: f, tag: t1, url: 'https://x.example/', secret: {env: EU_TOKEN}}\n"
            "    - {form_id: f, tag: t2, state: absent, secret: {env: TYPEFORM_TOKEN}}\n"
            "    - {form_id: f, tag: t3, url: 'https://x.example/', secret: {env: HOOK}}\n",
        ),
    )
    errors = check([tmp_path]).errors
    assert [(e.location, e.message.split(";")[0]) for e in errors] == [
        (
            Location(str(file), 6, 64),
            "spec.webhooks[0].secret: {env: EU_TOKEN} is the API token variable of account 'eu'",
        ),
        (
            Location(str(file), 7, 52),
            "spec.webhooks[1].secret: {env: TYPEFORM_TOKEN} is the API token variable of "
            "account 'default'",
        ),
    ]


def test_a_secret_file_escaping_the_tree_is_allowed_only_under_a_secret_dir(
    tmp_path: Path,
) -> None:
    tree = tmp_path / "manifests"
    file = _write(
        tree / "a.yaml",
        _set(
            "a",
            "    - {form_id: f, tag: t, url: 'https://x.example/', secret: {file: ../s/hook}}\n",
        ),
    )
    [error] = check([tree], environ={}).errors
    assert error.location == Location(str(file), 6, 63)
    assert error.message.startswith(
        f"spec.webhooks[0].secret: {{file: ../s/hook}} is outside the manifest tree ({tree})"
    )
    assert check([tree], secret_dirs=[tmp_path / "s"]).valid
    assert check([tree], environ={"RECONCILE_SECRET_DIRS": str(tmp_path / "s")}).valid

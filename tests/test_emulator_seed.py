"""Seeds: the built-in demo account and seed files in YAML or JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconciler.emulator import DEMO_SEED, EmulatorStore, hash_secret, load_seed
from reconciler.errors import ConfigError

SEED_YAML = """\
workspaces:
  - {id: ws1, name: Sales}
forms:
  - {id: lead01, title: Lead capture, workspace_id: ws1}
  - {id: lead02, title: Demo request, workspace_id: ws1}
webhooks:
  - form_id: lead01
    tag: crm
    url: https://crm.example.com/in
    secret: yaml-seed-secret
  - form_id: lead02
    tag: partials
    url: https://crm.example.com/partial
    enabled: false
    verify_ssl: false
    event_types: [form_response, form_response_partial]
"""


def test_the_demo_seed_has_the_forms_the_example_manifests_use() -> None:
    form_ids = {f.id for f in DEMO_SEED.forms}
    assert {"onbrd01", "onbrd02", "onbrd03", "kyc0001", "fdbk001"} <= form_ids
    assert len(form_ids) > 5  # and forms no manifest uses
    assert len(DEMO_SEED.workspaces) == 2
    hooks = {(w.form_id, w.tag): w.url for w in DEMO_SEED.webhooks}
    assert hooks[("onbrd02", "crm-sync")] == "https://crm.example.com/hooks/typeform"
    assert ("onbrd01", "legacy-zapier") in hooks


def test_a_yaml_seed_loads_with_defaults_for_optional_fields(tmp_path: Path) -> None:
    path = tmp_path / "seed.yaml"
    path.write_text(SEED_YAML)
    store = EmulatorStore(load_seed(path))
    crm = store.webhooks[("lead01", "crm")]
    partials = store.webhooks[("lead02", "partials")]
    assert (crm.enabled, crm.verify_ssl) == (True, True)
    assert crm.event_types == {"form_response": True, "form_response_partial": False}
    assert crm.secret_sha256 == hash_secret("yaml-seed-secret")
    assert (partials.enabled, partials.verify_ssl) == (False, False)
    assert partials.event_types == {"form_response": True, "form_response_partial": True}


def test_a_json_seed_loads_the_same(tmp_path: Path) -> None:
    import yaml

    path = tmp_path / "seed.json"
    path.write_text(json.dumps(yaml.safe_load(SEED_YAML)))
    seed = load_seed(path)
    assert [f.id for f in seed.forms] == ["lead01", "lead02"]


def test_a_parsed_seed_holds_no_secret(tmp_path: Path) -> None:
    path = tmp_path / "seed.yaml"
    path.write_text(SEED_YAML)
    seed = load_seed(path)
    assert "yaml-seed-secret" not in repr(seed)
    assert "yaml-seed-secret" not in json.dumps(seed.to_json())


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("forms: [", "not valid YAML/JSON"),
        ("- just a list", "a seed is an object"),
        ("forms: [{id: f1}]", "forms[0].title"),
        ("forms: [{id: 'bad id', title: x}]", "forms[0].id"),
        ("forms: [{id: f1, title: x, colour: red}]", "unknown key(s) colour"),
        ("forms: [{id: f1, title: x, workspace_id: nope}]", "no workspace 'nope'"),
        ("forms: [{id: f1, title: a}, {id: f1, title: b}]", "duplicate form id 'f1'"),
        ("webhooks: [{form_id: f9, tag: t, url: 'https://x.example'}]", "no form 'f9'"),
        (
            "forms: [{id: f1, title: x}]\nwebhooks: [{form_id: f1, tag: t, url: 'ftp://x'}]",
            "webhooks[0].url",
        ),
        (
            "forms: [{id: f1, title: x}]\n"
            "webhooks: [{form_id: f1, tag: t, url: 'https://x.example', enabled: 'yes'}]",
            "webhooks[0].enabled",
        ),
        (
            "forms: [{id: f1, title: x}]\n"
            "webhooks: [{form_id: f1, tag: t, url: 'https://x.example', event_types: [opened]}]",
            "webhooks[0].event_types",
        ),
    ],
)
def test_a_bad_seed_is_a_config_error_naming_the_file(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "bad-seed.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError) as err:
        load_seed(path)
    assert str(path) in str(err.value)
    assert message in str(err.value)


def test_a_missing_seed_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read seed file"):
        load_seed(tmp_path / "missing.yaml")

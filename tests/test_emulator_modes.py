"""The emulator's modes for what Typeform's docs leave open (SPEC 9), served and in-process.

Secret echo (none, plain, masked), event_types echo (always, omit-default), tokens with scopes
and accounts (403 without the scope, 401 for an unknown token, one bucket per account), and
``GET /forms`` sorting.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import MakeEmulator

from reconciler.emulator import (
    EmulatorStore,
    SecretEcho,
    configure,
    hash_secret,
    hash_token,
    open_emulator,
    parse_seed,
)
from reconciler.errors import ConfigError

pytestmark = pytest.mark.anyio

SECRET = "whsec-modes-test-secret-value"
HOOK = "/forms/kyc0001/webhooks/t"
BODY = {"url": "https://hooks.example.com/t", "enabled": True, "secret": SECRET}

READER = "tok-reader-aaaaaaaaaaaa"
WRITER = "tok-writer-bbbbbbbbbbbb"
OTHER = "tok-other-account-cccccc"
FORMS_ONLY = "tok-forms-only-dddddddd"
GRANTS: dict[str, Any] = {
    READER: {"account": "acme", "scopes": ["webhooks:read"]},
    WRITER: {"account": "acme", "scopes": ["webhooks:read", "webhooks:write", "forms:read"]},
    OTHER: {"account": "globex"},
    FORMS_ONLY: {"account": "acme", "scopes": ["forms:read"]},
}


# --------------------------------------------------------------------------- secret echo


async def test_by_default_no_response_carries_the_secret(
    make_emulator: MakeEmulator, emulator_mode: str
) -> None:
    emu = make_emulator(mode=emulator_mode)
    async with emu.client() as client:
        put = await client.put(HOOK, json=BODY)
        got = await client.get(HOOK)
    assert "secret" not in put.json()
    assert "secret" not in got.json()
    assert SECRET not in put.text + got.text
    assert emu.store.webhooks[("kyc0001", "t")].secret is None  # not even kept


async def test_plain_mode_echoes_the_secret_as_set_in_every_webhook_response(
    make_emulator: MakeEmulator, emulator_mode: str
) -> None:
    emu = make_emulator(mode=emulator_mode, secret_echo="plain")
    async with emu.client() as client:
        put = await client.put(HOOK, json=BODY)
        got = await client.get(HOOK)
        listed = await client.get("/forms/kyc0001/webhooks")
        rotated = await client.put(HOOK, json={"secret": "rotated-secret-value"})
        cleared = await client.put(HOOK, json={"secret": ""})
        state = await client.get("/_emulator/state")
        unset = await client.get("/forms/onbrd02/webhooks/crm-sync")
    assert put.json()["secret"] == SECRET
    assert got.json()["secret"] == SECRET
    assert listed.json()["items"][0]["secret"] == SECRET
    assert rotated.json()["secret"] == "rotated-secret-value"
    assert "secret" not in cleared.json()
    assert "secret" not in unset.json()  # a webhook without a secret has none to echo
    assert SECRET not in state.text  # the control API still shows digests only


async def test_masked_mode_answers_a_value_that_is_never_the_secret(
    make_emulator: MakeEmulator, emulator_mode: str
) -> None:
    emu = make_emulator(mode=emulator_mode, secret_echo="masked")
    async with emu.client() as client:
        put = await client.put(HOOK, json=BODY)
        short = await client.put(
            "/forms/kyc0001/webhooks/s", json={"url": "https://h/", "secret": "ab"}
        )
        sly = await client.put(
            "/forms/kyc0001/webhooks/m", json={"url": "https://h/", "secret": "********"}
        )
        unset = await client.get("/forms/onbrd02/webhooks/crm-sync")
    masked = put.json()["secret"]
    assert masked
    assert masked != SECRET
    assert SECRET not in put.text
    assert short.json()["secret"] == masked  # the mask tells nothing, not even the length
    assert sly.json()["secret"] not in ("********", "")
    assert "secret" not in unset.json()
    assert emu.store.webhooks[("kyc0001", "t")].secret is None  # masked mode keeps no plaintext


async def test_plain_secrets_are_persisted_only_while_plain_mode_lasts(tmp_path: Path) -> None:
    path = tmp_path / "emulator.json"
    configure(path, rate=1000, secret_echo="plain")
    emulated = open_emulator(f"emulator:{path}")
    async with emulated.client() as client:
        await client.put(HOOK, json=BODY)
    on_disk = path.read_text() + _journal_text(path)
    assert SECRET in on_disk  # a test double asked to echo secrets must keep them
    async with open_emulator(f"emulator:{path}").client() as client:
        echoed = (await client.get(HOOK)).json()
    assert echoed["secret"] == SECRET

    configure(path, secret_echo="none")
    assert SECRET not in path.read_text() + _journal_text(path)
    store = EmulatorStore.load(path)
    assert store.webhooks[("kyc0001", "t")].secret is None
    assert store.webhooks[("kyc0001", "t")].secret_sha256 == hash_secret(SECRET)


async def test_leaving_plain_mode_through_the_control_api_forgets_the_secrets(
    make_emulator: MakeEmulator, emulator_mode: str
) -> None:
    emu = make_emulator(mode=emulator_mode, secret_echo="plain")
    async with emu.client() as client:
        await client.put(HOOK, json=BODY)
        changed = await client.post("/_emulator/settings", json={"secret_echo": "masked"})
        back = await client.post("/_emulator/settings", json={"secret_echo": "plain"})
        got = await client.get(HOOK)
    assert changed.json()["secret_echo"] == "masked"
    assert back.status_code == 200
    assert "secret" not in got.json()  # forgotten when plain mode ended; set it again to echo
    assert SECRET not in repr(emu.store.to_json())


# --------------------------------------------------------------------------- event_types echo


async def test_omit_default_drops_only_the_default_event_types(
    make_emulator: MakeEmulator, emulator_mode: str
) -> None:
    emu = make_emulator(mode=emulator_mode, event_types_echo="omit-default")
    partial = {"form_response": True, "form_response_partial": True}
    async with emu.client() as client:
        default = await client.put(HOOK, json={"url": "https://h.example/d"})
        both = await client.put(
            "/forms/kyc0001/webhooks/p", json={"url": "https://h.example/p", "event_types": partial}
        )
        listed = (await client.get("/forms/kyc0001/webhooks")).json()["items"]
    assert "event_types" not in default.json()
    assert both.json()["event_types"] == partial
    assert {h["tag"]: "event_types" in h for h in listed} == {"t": False, "p": True}


async def test_by_default_event_types_are_always_returned(
    make_emulator: MakeEmulator, emulator_mode: str
) -> None:
    emu = make_emulator(mode=emulator_mode)
    async with emu.client() as client:
        hook = (await client.put(HOOK, json={"url": "https://h.example/d"})).json()
    assert hook["event_types"] == {"form_response": True, "form_response_partial": False}


# --------------------------------------------------------------------------- tokens and scopes


async def test_a_token_without_webhooks_write_is_refused_writes_in_typeform_shape(
    make_emulator: MakeEmulator, emulator_mode: str
) -> None:
    emu = make_emulator(mode=emulator_mode, tokens=GRANTS)
    async with emu.client(token=READER) as reader:
        read = await reader.get("/forms/onbrd01/webhooks")
        put = await reader.put(HOOK, json=BODY)
        delete = await reader.delete("/forms/onbrd01/webhooks/legacy-zapier")
        forms = await reader.get("/forms")
    async with emu.client(token=WRITER) as writer:
        written = await writer.put(HOOK, json=BODY)
    for refused, scope in (
        (put, "webhooks:write"),
        (delete, "webhooks:write"),
        (forms, "forms:read"),
    ):
        assert refused.status_code == 403
        assert refused.json()["code"] == "FORBIDDEN"
        assert scope in refused.json()["description"]
        assert READER not in refused.text
    assert read.status_code == 200
    assert written.status_code == 200
    assert ("onbrd01", "legacy-zapier") in emu.store.webhooks  # the refused DELETE did nothing


async def test_a_token_without_webhooks_read_cannot_read_webhooks(
    make_emulator: MakeEmulator, emulator_mode: str
) -> None:
    emu = make_emulator(mode=emulator_mode, tokens=GRANTS)
    async with emu.client(token=FORMS_ONLY) as client:
        listed = await client.get("/forms/onbrd01/webhooks")
        single = await client.get("/forms/onbrd01/webhooks/legacy-zapier")
        forms = await client.get("/forms")
        form = await client.get("/forms/onbrd01")
        spaces = await client.get("/workspaces")
    assert (listed.status_code, single.status_code) == (403, 403)
    assert (forms.status_code, form.status_code, spaces.status_code) == (200, 200, 200)


async def test_with_token_grants_an_unknown_token_or_none_is_401(
    make_emulator: MakeEmulator, emulator_mode: str
) -> None:
    emu = make_emulator(mode=emulator_mode, tokens=GRANTS, require_auth=False)
    async with emu.client(token="tok-nobody-knows-this-one") as stranger:
        unknown = await stranger.get("/forms")
    async with emu.client(token=None) as anonymous:
        missing = await anonymous.get("/forms")
    for response in (unknown, missing):
        assert response.status_code == 401
        assert response.json()["code"] == "AUTHENTICATION_FAILED"
    assert "tok-nobody-knows-this-one" not in unknown.text


async def test_tokens_of_one_account_share_its_rate_limit(
    make_emulator: MakeEmulator, emulator_mode: str
) -> None:
    emu = make_emulator(mode=emulator_mode, tokens=GRANTS, rate=2.0, burst=2)
    async with (
        emu.client(token=READER) as reader,
        emu.client(token=WRITER) as writer,
        emu.client(token=OTHER) as other,
    ):
        first = await reader.get("/forms/onbrd01/webhooks")
        second = await writer.get("/forms/onbrd01/webhooks")
        third = await reader.get("/forms/onbrd01/webhooks")  # acme's bucket is empty now
        fourth = await writer.get("/forms/onbrd01/webhooks")
        elsewhere = await other.get("/forms/onbrd01/webhooks")  # globex has its own
    assert [r.status_code for r in (first, second, third, fourth)] == [200, 200, 429, 429]
    assert elsewhere.status_code == 200


async def test_without_grants_each_token_has_its_own_bucket(
    make_emulator: MakeEmulator, emulator_mode: str
) -> None:
    emu = make_emulator(mode=emulator_mode, rate=1.0, burst=1)
    async with emu.client(token="tok-one-xxxx") as one, emu.client(token="tok-two-yyyy") as two:
        statuses = [
            (await one.get("/forms")).status_code,
            (await two.get("/forms")).status_code,
            (await one.get("/forms")).status_code,
        ]
    assert statuses == [200, 200, 429]


async def test_token_grants_are_kept_as_digests_only(
    make_emulator: MakeEmulator, emulator_mode: str
) -> None:
    emu = make_emulator(mode=emulator_mode, tokens=GRANTS)
    async with emu.client(token=WRITER) as client:
        state = await client.get("/_emulator/state")
        settings = await client.get("/_emulator/settings")
    persisted = repr(emu.store.to_json())
    for token in GRANTS:
        assert token not in state.text + settings.text + persisted
    grants = {g["token_sha256"]: g for g in settings.json()["tokens"]}
    assert grants[hash_token(READER)] == {
        "token_sha256": hash_token(READER),
        "account": "acme",
        "scopes": ["webhooks:read"],
    }


async def test_grants_set_through_the_control_api_apply_at_once(
    make_emulator: MakeEmulator, emulator_mode: str
) -> None:
    emu = make_emulator(mode=emulator_mode)
    async with emu.client(token=READER) as client:
        before = await client.put(HOOK, json=BODY)
        posted = await client.post("/_emulator/settings", json={"tokens": GRANTS})
        after = await client.put(HOOK, json=BODY)
    assert before.status_code == 200
    assert posted.status_code == 200
    assert after.status_code == 403


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"tokens": {READER: {"scopes": ["webhooks:wrte"]}}}, "webhooks:wrte"),
        ({"tokens": {READER: {"account": ""}}}, "account"),
        ({"tokens": {READER: {"colour": "red"}}}, "colour"),
        ({"secret_echo": "loud"}, "none|plain|masked"),
        ({"event_types_echo": "never"}, "always|omit-default"),
        ({"rate": 5}, "unknown key"),
        (["not", "an", "object"], "JSON object"),
    ],
)
async def test_bad_settings_are_refused_without_echoing_a_token(
    make_emulator: MakeEmulator, body: Any, message: str
) -> None:
    emu = make_emulator()
    async with emu.client() as client:
        response = await client.post("/_emulator/settings", json=body)
    assert response.status_code == 400
    assert message in response.json()["description"]
    assert READER not in response.text
    assert emu.store.settings.tokens == {}
    assert emu.store.settings.secret_echo is SecretEcho.NONE


def test_configure_refuses_a_bad_mode_with_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="secret_echo"):
        configure(tmp_path / "e.json", secret_echo="loud")
    with pytest.raises(ConfigError) as err:
        configure(tmp_path / "e.json", tokens={READER: {"scopes": ["nope"]}})
    assert READER not in str(err.value)


async def test_configured_grants_hold_for_the_in_process_emulator(tmp_path: Path) -> None:
    path = tmp_path / "emulator.json"
    configure(path, rate=1000, tokens=GRANTS)
    assert READER not in path.read_text()
    emulated = open_emulator(f"emulator:{path}")
    async with emulated.client(headers={"Authorization": f"Bearer {READER}"}) as client:
        read = await client.get("/forms/onbrd01/webhooks")
        write = await client.put(HOOK, json=BODY)
    async with emulated.client() as anonymous:
        missing = await anonymous.get("/forms")
    assert (read.status_code, write.status_code, missing.status_code) == (200, 403, 401)


# --------------------------------------------------------------------------- GET /forms sorting


def _dated_seed() -> Any:
    return parse_seed(
        {
            "workspaces": [{"id": "w", "name": "W"}],
            "forms": [
                {
                    "id": "b2",
                    "title": "Beta",
                    "workspace_id": "w",
                    "created_at": "2024-02-01T00:00:00Z",
                },
                {
                    "id": "a1",
                    "title": "Alpha",
                    "workspace_id": "w",
                    "created_at": "2024-03-01T00:00:00Z",
                },
                {
                    "id": "c3",
                    "title": "Gamma",
                    "workspace_id": "w",
                    "created_at": "2024-01-01T00:00:00Z",
                },
            ],
        }
    )


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, ["b2", "a1", "c3"]),
        ({"order_by": "desc"}, ["c3", "a1", "b2"]),
        ({"sort_by": "created_at"}, ["c3", "b2", "a1"]),
        ({"sort_by": "created_at", "order_by": "asc"}, ["c3", "b2", "a1"]),
        ({"sort_by": "created_at", "order_by": "desc"}, ["a1", "b2", "c3"]),
        ({"sort_by": "last_updated_at", "order_by": "desc"}, ["a1", "b2", "c3"]),
        ({"sort_by": "created_at", "page_size": 1, "page": 2}, ["b2"]),
    ],
)
async def test_forms_sort_by_a_date_in_either_order(
    make_emulator: MakeEmulator, params: dict[str, Any], expected: list[str]
) -> None:
    emu = make_emulator(seed=_dated_seed())
    async with emu.client() as client:
        body = (await client.get("/forms", params=params)).json()
    assert [f["id"] for f in body["items"]] == expected
    assert body["total_items"] == 3


async def test_an_unknown_sort_or_order_is_a_validation_error(make_emulator: MakeEmulator) -> None:
    emu = make_emulator(seed=_dated_seed())
    async with emu.client() as client:
        bad = await client.get("/forms", params={"sort_by": "title", "order_by": "up"})
    assert bad.status_code == 400
    assert [d["field"] for d in bad.json()["details"]] == ["sort_by", "order_by"]


def _journal_text(path: Path) -> str:
    journal = path.with_name(path.name + ".journal")
    return journal.read_text() if journal.exists() else ""

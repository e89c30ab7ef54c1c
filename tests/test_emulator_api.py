"""The emulated Typeform API, endpoint by endpoint: every case runs served and in-process."""

from __future__ import annotations

import re
from typing import Any

import pytest
from conftest import TEST_TOKEN, MakeEmulator, RunningEmulator

from reconciler.emulator import Seed, hash_secret, parse_seed

pytestmark = pytest.mark.anyio

TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{3})?Z$")


def _many_forms_seed(count: int = 25) -> Seed:
    return parse_seed(
        {
            "workspaces": [{"id": "wsA", "name": "Alpha"}, {"id": "wsB", "name": "Beta"}],
            "forms": [
                {
                    "id": f"form{i:03d}",
                    "title": f"{'Onboarding' if i % 5 == 0 else 'Survey'} number {i}",
                    "workspace_id": "wsA" if i % 2 == 0 else "wsB",
                }
                for i in range(count)
            ],
        }
    )


# --------------------------------------------------------------------------- forms


async def test_forms_are_paginated_ten_per_page_by_default(
    make_emulator: MakeEmulator, emulator_mode: str
) -> None:
    emu = make_emulator(mode=emulator_mode, seed=_many_forms_seed(25))
    async with emu.client() as client:
        first = (await client.get("/forms")).json()
        last = (await client.get("/forms", params={"page": 3})).json()
        beyond = (await client.get("/forms", params={"page": 4})).json()
    assert (first["total_items"], first["page_count"], len(first["items"])) == (25, 3, 10)
    assert [f["id"] for f in first["items"]][:2] == ["form000", "form001"]
    assert [f["id"] for f in last["items"]] == [f"form{i:03d}" for i in range(20, 25)]
    assert beyond["items"] == []
    assert beyond["total_items"] == 25


async def test_forms_page_size_goes_up_to_200_and_no_further(
    make_emulator: MakeEmulator, emulator_mode: str
) -> None:
    emu = make_emulator(mode=emulator_mode, seed=_many_forms_seed(205))
    async with emu.client() as client:
        full = await client.get("/forms", params={"page_size": 200})
        too_big = await client.get("/forms", params={"page_size": 201})
        not_a_number = await client.get("/forms", params={"page_size": "ten"})
        page_zero = await client.get("/forms", params={"page": 0})
    assert full.status_code == 200
    assert (len(full.json()["items"]), full.json()["page_count"]) == (200, 2)
    for bad, field in ((too_big, "page_size"), (not_a_number, "page_size"), (page_zero, "page")):
        assert bad.status_code == 400
        body = bad.json()
        assert body["code"] == "VALIDATION_ERROR"
        assert [d["field"] for d in body["details"]] == [field]


async def test_forms_search_matches_titles_case_insensitively(
    make_emulator: MakeEmulator, emulator_mode: str
) -> None:
    emu = make_emulator(mode=emulator_mode, seed=_many_forms_seed(25))
    async with emu.client() as client:
        body = (await client.get("/forms", params={"search": "onboarding"})).json()
    assert body["total_items"] == 5
    assert all("Onboarding" in f["title"] for f in body["items"])


async def test_forms_filter_by_workspace(make_emulator: MakeEmulator, emulator_mode: str) -> None:
    emu = make_emulator(mode=emulator_mode, seed=_many_forms_seed(25))
    async with emu.client() as client:
        a = (await client.get("/forms", params={"workspace_id": "wsA", "page_size": 50})).json()
        none = (await client.get("/forms", params={"workspace_id": "nope"})).json()
    assert a["total_items"] == 13
    assert {f["id"] for f in a["items"]} == {f"form{i:03d}" for i in range(0, 25, 2)}
    assert none == {"total_items": 0, "page_count": 1, "items": []}


async def test_form_items_carry_typeform_fields(emulator: RunningEmulator) -> None:
    async with emulator.client() as client:
        item = (await client.get("/forms")).json()["items"][0]
        single = await client.get("/forms/onbrd01")
    assert item["id"] == "onbrd01"
    assert item["title"].startswith("Client onboarding")
    assert TIMESTAMP.match(item["last_updated_at"])
    assert item["self"]["href"].endswith("/forms/onbrd01")
    assert single.status_code == 200
    assert single.json()["id"] == "onbrd01"
    assert single.json()["workspace"]["href"].endswith("/workspaces/wsclnt01")


async def test_unknown_form_is_form_not_found(emulator: RunningEmulator) -> None:
    async with emulator.client() as client:
        responses = [
            await client.get("/forms/nosuch1"),
            await client.get("/forms/nosuch1/webhooks"),
            await client.get("/forms/nosuch1/webhooks/t"),
            await client.put("/forms/nosuch1/webhooks/t", json={"url": "https://x.example"}),
            await client.delete("/forms/nosuch1/webhooks/t"),
        ]
    for response in responses:
        assert response.status_code == 404
        assert response.json() == {
            "code": "FORM_NOT_FOUND",
            "description": "Non existing form with uid nosuch1",
        }


async def test_workspaces_list_counts_their_forms(emulator: RunningEmulator) -> None:
    async with emulator.client() as client:
        body = (await client.get("/workspaces")).json()
    assert body["total_items"] == 2
    counts = {w["id"]: w["forms"]["count"] for w in body["items"]}
    assert counts == {"wsclnt01": 4, "wsmrkt01": 3}


# --------------------------------------------------------------------------- webhooks: reads


async def test_demo_account_has_the_unmanaged_and_the_legacy_webhook(
    emulator: RunningEmulator,
) -> None:
    async with emulator.client() as client:
        crm = (await client.get("/forms/onbrd02/webhooks")).json()
        legacy = (await client.get("/forms/onbrd01/webhooks/legacy-zapier")).json()
        empty = (await client.get("/forms/kyc0001/webhooks")).json()
    assert [(w["tag"], w["url"]) for w in crm["items"]] == [
        ("crm-sync", "https://crm.example.com/hooks/typeform")
    ]
    assert legacy["form_id"] == "onbrd01"
    assert legacy["enabled"] is True
    assert empty == {"items": []}


async def test_unknown_tag_is_webhook_not_found(emulator: RunningEmulator) -> None:
    async with emulator.client() as client:
        get = await client.get("/forms/onbrd01/webhooks/nope")
        delete = await client.delete("/forms/onbrd01/webhooks/nope")
    for response in (get, delete):
        assert response.status_code == 404
        assert response.json()["code"] == "WEBHOOK_NOT_FOUND"


# --------------------------------------------------------------------------- webhooks: writes


async def test_put_creates_a_webhook_with_typeform_bookkeeping(emulator: RunningEmulator) -> None:
    async with emulator.client() as client:
        response = await client.put(
            "/forms/kyc0001/webhooks/kyc-intake",
            json={"url": "https://hooks.example.com/kyc", "enabled": True},
        )
        listed = (await client.get("/forms/kyc0001/webhooks")).json()["items"]
    assert response.status_code == 200
    hook = response.json()
    assert re.fullmatch(r"[A-Za-z0-9]{10}", hook["id"])
    assert TIMESTAMP.match(hook["created_at"])
    assert hook["created_at"] == hook["updated_at"] == "2025-03-01T12:00:00.000Z"
    assert hook["event_types"] == {"form_response": True, "form_response_partial": False}
    assert hook["verify_ssl"] is True
    assert listed == [hook]


async def test_put_create_without_enabled_creates_it_disabled(emulator: RunningEmulator) -> None:
    async with emulator.client() as client:
        hook = (
            await client.put("/forms/kyc0001/webhooks/t", json={"url": "https://h.example/x"})
        ).json()
    assert hook["enabled"] is False


async def test_put_update_keeps_fields_left_out(emulator: RunningEmulator) -> None:
    async with emulator.client() as client:
        before = (await client.get("/forms/onbrd02/webhooks/crm-sync")).json()
        emulator.clock.advance(60)
        after = (
            await client.put("/forms/onbrd02/webhooks/crm-sync", json={"enabled": False})
        ).json()
    assert after["enabled"] is False
    assert {k: v for k, v in after.items() if k not in ("enabled", "updated_at")} == {
        k: v for k, v in before.items() if k not in ("enabled", "updated_at")
    }
    assert after["updated_at"] == "2025-03-01T12:01:00.000Z"
    assert after["created_at"] == before["created_at"]


async def test_put_that_changes_nothing_keeps_updated_at(emulator: RunningEmulator) -> None:
    body = {"url": "https://h.example/x", "enabled": True, "secret": "s3cret-value"}
    async with emulator.client() as client:
        first = (await client.put("/forms/kyc0001/webhooks/t", json=body)).json()
        emulator.clock.advance(3600)
        second = (await client.put("/forms/kyc0001/webhooks/t", json=body)).json()
    assert second == first


async def test_a_secret_change_alone_moves_updated_at(emulator: RunningEmulator) -> None:
    async with emulator.client() as client:
        first = (
            await client.put(
                "/forms/kyc0001/webhooks/t", json={"url": "https://h.example/x", "secret": "one"}
            )
        ).json()
        emulator.clock.advance(5)
        second = (await client.put("/forms/kyc0001/webhooks/t", json={"secret": "two"})).json()
    assert second["updated_at"] != first["updated_at"]
    assert emulator.store.webhooks[("kyc0001", "t")].secret_sha256 == hash_secret("two")


async def test_secrets_are_write_only(emulator: RunningEmulator) -> None:
    secret = "whsec-this-must-never-come-back"
    async with emulator.client() as client:
        responses = [
            await client.put(
                "/forms/kyc0001/webhooks/t", json={"url": "https://h.example/x", "secret": secret}
            ),
            await client.get("/forms/kyc0001/webhooks/t"),
            await client.get("/forms/kyc0001/webhooks"),
            await client.get("/_emulator/state"),
            await client.put("/forms/kyc0001/webhooks/t", json={"secret": 42}),
        ]
    for response in responses:
        assert secret not in response.text
    webhooks = [responses[0].json(), responses[1].json(), *responses[2].json()["items"]]
    assert all("secret" not in hook for hook in webhooks)
    assert responses[4].status_code == 400
    state = responses[3].json()
    mine = next(w for w in state["webhooks"] if w["tag"] == "t")
    assert mine["has_secret"] is True
    assert mine["secret_sha256"] == hash_secret(secret)


async def test_event_types_can_subscribe_to_partial_responses(emulator: RunningEmulator) -> None:
    async with emulator.client() as client:
        hook = (
            await client.put(
                "/forms/kyc0001/webhooks/t",
                json={
                    "url": "https://h.example/x",
                    "event_types": {"form_response": True, "form_response_partial": True},
                },
            )
        ).json()
    assert hook["event_types"] == {"form_response": True, "form_response_partial": True}


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        pytest.param({"enabled": True}, ["url"], id="url-missing-on-create"),
        pytest.param({"url": 12}, ["url"], id="url-not-a-string"),
        pytest.param({"url": "ftp://h.example/x"}, ["url"], id="url-not-http"),
        pytest.param({"url": "/relative"}, ["url"], id="url-relative"),
        pytest.param({"url": "https://h.example", "enabled": "yes"}, ["enabled"], id="enabled"),
        pytest.param({"url": "https://h.example", "verify_ssl": 1}, ["verify_ssl"], id="verify"),
        pytest.param(
            {"url": "https://h.example", "event_types": ["form_response"]},
            ["event_types"],
            id="event-types-list",
        ),
        pytest.param(
            {"url": "https://h.example", "event_types": {"form_opened": True}},
            ["event_types.form_opened"],
            id="unknown-event-type",
        ),
        pytest.param(
            {"url": "https://h.example", "event_types": {"form_response": "true"}},
            ["event_types.form_response"],
            id="event-type-not-bool",
        ),
        pytest.param({"url": "https://h.example", "colour": "red"}, ["colour"], id="unknown-key"),
        pytest.param(
            {"url": 1, "enabled": "no", "extra": 1},
            ["extra", "url", "enabled"],
            id="every-problem-at-once",
        ),
        pytest.param(["https://h.example"], ["(body)"], id="body-not-an-object"),
    ],
)
async def test_bad_put_bodies_are_validation_errors(
    emulator: RunningEmulator, body: Any, fields: list[str]
) -> None:
    async with emulator.client() as client:
        response = await client.put("/forms/kyc0001/webhooks/new-tag", json=body)
        listed = (await client.get("/forms/kyc0001/webhooks")).json()
    assert response.status_code == 400
    error = response.json()
    assert error["code"] == "VALIDATION_ERROR"
    assert error["description"]
    assert [d["field"] for d in error["details"]] == fields
    assert listed == {"items": []}


async def test_a_body_that_is_not_json_is_a_validation_error(emulator: RunningEmulator) -> None:
    async with emulator.client() as client:
        response = await client.put(
            "/forms/kyc0001/webhooks/t",
            content=b"{not json",
            headers={"Content-Type": "application/json"},
        )
    assert response.status_code == 400
    assert response.json()["code"] == "VALIDATION_ERROR"


async def test_delete_removes_the_webhook(emulator: RunningEmulator) -> None:
    async with emulator.client() as client:
        deleted = await client.delete("/forms/onbrd01/webhooks/legacy-zapier")
        gone = await client.get("/forms/onbrd01/webhooks/legacy-zapier")
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert gone.status_code == 404


# --------------------------------------------------------------------------- auth and routing


async def test_a_request_without_a_token_is_401(emulator: RunningEmulator) -> None:
    async with emulator.client(token=None) as client:
        response = await client.get("/forms")
    assert response.status_code == 401
    assert response.json()["code"] == "AUTHENTICATION_FAILED"


async def test_a_non_bearer_authorization_is_401(emulator: RunningEmulator) -> None:
    async with emulator.client(token=None, headers={"Authorization": "Basic dXNlcjpwYXNz"}) as c:
        response = await c.get("/forms")
    assert response.status_code == 401


async def test_any_non_empty_token_is_accepted_when_none_is_configured(
    emulator: RunningEmulator,
) -> None:
    async with emulator.client(token="whatever") as client:
        assert (await client.get("/forms")).status_code == 200


async def test_with_a_configured_token_only_that_token_is_accepted(
    make_emulator: MakeEmulator, emulator_mode: str
) -> None:
    emu = make_emulator(mode=emulator_mode, token=TEST_TOKEN)
    async with emu.client(token="wrong-token-value") as wrong:
        refused = await wrong.get("/forms/onbrd01/webhooks")
    async with emu.client(token=TEST_TOKEN) as right:
        accepted = await right.get("/forms/onbrd01/webhooks")
    assert refused.status_code == 401  # SPEC 9: 401 without a valid token
    assert refused.json()["code"] == "AUTHENTICATION_FAILED"
    assert "wrong-token-value" not in refused.text
    assert TEST_TOKEN not in refused.text
    assert accepted.status_code == 200


async def test_without_require_auth_no_token_is_needed(
    make_emulator: MakeEmulator, emulator_mode: str
) -> None:
    emu = make_emulator(mode=emulator_mode, require_auth=False)
    async with emu.client(token=None) as client:
        assert (await client.get("/forms")).status_code == 200


async def test_unknown_routes_and_methods_answer_in_typeform_shape(
    emulator: RunningEmulator,
) -> None:
    async with emulator.client() as client:
        missing = await client.get("/responses")
        wrong_method = await client.post("/forms/onbrd01/webhooks/x", json={})
    assert missing.status_code == 404
    assert missing.json()["code"] == "NOT_FOUND"
    assert wrong_method.status_code == 405
    assert wrong_method.json()["code"] == "METHOD_NOT_ALLOWED"


async def test_listing_a_forms_webhooks_follows_creates_deletes_and_resets(
    emulator: RunningEmulator,
) -> None:
    async with emulator.client() as client:
        for form, tag in (("kyc0001", "a"), ("kyc0001", "b"), ("fdbk001", "a")):
            await client.put(f"/forms/{form}/webhooks/{tag}", json={"url": "https://h.example/"})
        await client.delete("/forms/kyc0001/webhooks/a")
        await client.put("/forms/kyc0001/webhooks/a", json={"url": "https://h.example/again"})
        kyc = (await client.get("/forms/kyc0001/webhooks")).json()["items"]
        feedback = (await client.get("/forms/fdbk001/webhooks")).json()["items"]
        await client.post("/_emulator/reset")
        after_reset = (await client.get("/forms/kyc0001/webhooks")).json()["items"]
        seeded = (await client.get("/forms/onbrd02/webhooks")).json()["items"]
    assert [(h["tag"], h["url"]) for h in kyc] == [
        ("b", "https://h.example/"),
        ("a", "https://h.example/again"),
    ]
    assert [h["tag"] for h in feedback] == ["a"]
    assert after_reset == []
    assert [h["tag"] for h in seeded] == ["crm-sync"]

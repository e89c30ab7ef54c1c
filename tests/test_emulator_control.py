"""The control API under /_emulator/: stats, reset, seed, state."""

from __future__ import annotations

import pytest
from conftest import RunningEmulator

pytestmark = pytest.mark.anyio

NEW = "/forms/kyc0001/webhooks/t"
BODY = {"url": "https://hooks.example.com/t", "secret": "control-test-secret"}


async def test_stats_count_requests_by_route_template_and_status(
    emulator: RunningEmulator,
) -> None:
    async with emulator.client() as client:
        await client.get("/forms/onbrd01/webhooks")
        await client.get("/forms/onbrd02/webhooks")
        await client.get("/forms/nosuch/webhooks")
        await client.put(NEW, json=BODY)
        await client.get("/nowhere")
        await client.get("/_emulator/state")  # control routes are not counted
        stats = (await client.get("/_emulator/stats")).json()
    assert stats == {
        "total": 5,
        "throttled": 0,
        "routes": {
            "GET (unmatched)": {"404": 1},
            "GET /forms/{form_id}/webhooks": {"200": 2, "404": 1},
            "PUT /forms/{form_id}/webhooks/{tag}": {"200": 1},
        },
    }


async def test_reset_returns_to_the_seed_and_clears_stats(emulator: RunningEmulator) -> None:
    async with emulator.client() as client:
        await client.put(NEW, json=BODY)
        await client.delete("/forms/onbrd01/webhooks/legacy-zapier")
        reset = await client.post("/_emulator/reset")
        state = (await client.get("/_emulator/state")).json()
        stats = (await client.get("/_emulator/stats")).json()
    assert reset.json() == {"reset": True, "webhooks": 2}
    assert sorted((w["form_id"], w["tag"]) for w in state["webhooks"]) == [
        ("onbrd01", "legacy-zapier"),
        ("onbrd02", "crm-sync"),
    ]
    assert stats == {"total": 0, "throttled": 0, "routes": {}}


async def test_reset_can_empty_every_webhook(emulator: RunningEmulator) -> None:
    async with emulator.client() as client:
        reset = await client.post("/_emulator/reset", params={"empty": "1"})
        forms = (await client.get("/forms")).json()
    assert reset.json()["webhooks"] == 0
    assert emulator.store.webhooks == {}
    assert forms["total_items"] == 7


async def test_posting_a_seed_replaces_the_account(emulator: RunningEmulator) -> None:
    seed = {
        "workspaces": [{"id": "w1", "name": "Solo"}],
        "forms": [{"id": "only1", "title": "The only form", "workspace_id": "w1"}],
        "webhooks": [
            {"form_id": "only1", "tag": "a", "url": "https://a.example/h", "secret": "seeded"}
        ],
    }
    async with emulator.client() as client:
        posted = await client.post("/_emulator/seed", json=seed)
        forms = (await client.get("/forms")).json()
        hooks = (await client.get("/forms/only1/webhooks")).json()
        reset = await client.post("/_emulator/reset")
    assert posted.status_code == 200
    assert "seeded" not in posted.text
    assert [f["id"] for f in forms["items"]] == ["only1"]
    assert [h["tag"] for h in hooks["items"]] == ["a"]
    assert hooks["items"][0]["enabled"] is True
    assert reset.json()["webhooks"] == 1  # the posted seed is what reset returns to


async def test_a_bad_seed_is_refused_and_changes_nothing(emulator: RunningEmulator) -> None:
    async with emulator.client() as client:
        bad = await client.post(
            "/_emulator/seed", json={"forms": [{"id": "f1", "title": "x", "workspace_id": "nope"}]}
        )
        not_json = await client.post(
            "/_emulator/seed", content=b"forms: [", headers={"Content-Type": "application/json"}
        )
        forms = (await client.get("/forms")).json()
    assert bad.status_code == 400
    assert "workspace_id" in bad.json()["description"]
    assert not_json.status_code == 400
    assert forms["total_items"] == 7


async def test_state_lists_forms_and_webhooks_with_secrets_redacted(
    emulator: RunningEmulator,
) -> None:
    async with emulator.client() as client:
        await client.put(NEW, json=BODY)
        state = (await client.get("/_emulator/state")).json()
    assert [f["id"] for f in state["forms"]][:5] == [
        "onbrd01",
        "onbrd02",
        "onbrd03",
        "kyc0001",
        "fdbk001",
    ]
    hooks = {w["tag"]: w for w in state["webhooks"]}
    assert hooks["t"]["has_secret"] is True
    assert hooks["crm-sync"]["has_secret"] is False
    assert "secret" not in hooks["t"]
    assert BODY["secret"] not in str(state)
    assert state["settings"]["rate"] == 2.0  # the store's settings, not the app's test rate

"""The control API under /_emulator/: stats, reset, seed, state."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import MakeEmulator, RunningEmulator

from reconciler.emulator import EMULATOR_BASE_URL, Faults

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


# --------------------------------------------------------------------------- only local callers


async def _webhook_count_after(emulator: RunningEmulator, **request: Any) -> tuple[int, Any]:
    """POST /_emulator/reset?empty=1 with ``request``'s extras; the webhooks left, the answer."""
    async with emulator.client() as client:
        response = await client.post("/_emulator/reset", params={"empty": "1"}, **request)
    return len(emulator.store.webhooks), response


@pytest.mark.parametrize(
    "host",
    [
        "evil.example",
        "evil.example:8787",
        "127.0.0.1.nip.io",
        "localhost.evil.example",
        "localhost:notaport",
        "[::1",
        "0.0.0.0:8787",
    ],
)
async def test_the_control_api_refuses_a_request_addressed_to_another_host(
    emulator: RunningEmulator, host: str
) -> None:
    left, response = await _webhook_count_after(emulator, headers={"Host": host})
    assert response.status_code == 403
    assert response.json()["code"] == "FORBIDDEN_HOST"
    assert left == 2  # the reset did not happen


@pytest.mark.parametrize(
    "host", ["localhost", "LOCALHOST:8787", "127.0.0.1:1", "127.3.2.1", "[::1]:8787", "[::1]"]
)
async def test_the_control_api_answers_loopback_hosts_on_any_port(
    emulator: RunningEmulator, host: str
) -> None:
    left, response = await _webhook_count_after(emulator, headers={"Host": host})
    assert response.status_code == 200
    assert left == 0


async def test_the_in_process_transports_host_is_the_only_other_one_allowed(
    make_emulator: MakeEmulator,
) -> None:
    emu = make_emulator(mode="inprocess")
    assert emu.base_url == EMULATOR_BASE_URL
    async with emu.client() as client:
        own = await client.get("/_emulator/stats")
        other = await client.get("/_emulator/stats", headers={"Host": "emulator.example"})
    assert own.status_code == 200
    assert other.status_code == 403


async def test_the_api_itself_still_answers_any_host(emulator: RunningEmulator) -> None:
    async with emulator.client(headers={"Host": "api.typeform.test"}) as client:
        assert (await client.get("/forms")).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "http://localhost.evil.example:8787"},
        {"Origin": "null"},
        {"Origin": "http://127.0.0.1:notaport"},
        {"Sec-Fetch-Site": "cross-site"},
    ],
    ids=["other-site", "lookalike", "null", "bad-port", "fetch-metadata"],
)
async def test_the_control_api_refuses_cross_origin_requests(
    emulator: RunningEmulator, headers: dict[str, str]
) -> None:
    left, response = await _webhook_count_after(emulator, headers=headers)
    async with emulator.client() as client:
        read = await client.get("/_emulator/state", headers=headers)
    assert response.status_code == 403
    assert response.json()["code"] == "FORBIDDEN_ORIGIN"
    assert read.status_code == 403
    assert left == 2


async def test_a_page_served_from_loopback_may_use_the_control_api(
    emulator: RunningEmulator,
) -> None:
    left, response = await _webhook_count_after(
        emulator, headers={"Origin": "http://localhost:3000", "Sec-Fetch-Site": "same-site"}
    )
    assert response.status_code == 200
    assert left == 0


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b'{"webhooks": "empty"}', "text/plain"),
        (b'{"webhooks": "empty"}', "text/plain;charset=UTF-8"),
        (b"webhooks=empty", "application/x-www-form-urlencoded"),
        (b"--x--", "multipart/form-data; boundary=x"),
        (b'{"webhooks": "empty"}', None),
    ],
    ids=["text", "text-charset", "form", "multipart", "no-content-type"],
)
async def test_a_state_changing_control_request_must_be_json(
    emulator: RunningEmulator, content: bytes, content_type: str | None
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    emulator.store.settings.faults = Faults(error_status=502)
    async with emulator.client() as client:
        reset = await client.post("/_emulator/reset", content=content, headers=headers)
        faults = await client.post(
            "/_emulator/faults", content=b'{"error_rate": 1}', headers=headers
        )
        cleared = await client.request(
            "DELETE", "/_emulator/faults", content=b"{}", headers={"Content-Type": "text/plain"}
        )
    for response in (reset, faults, cleared):
        assert response.status_code == 415
        assert response.json()["code"] == "UNSUPPORTED_MEDIA_TYPE"
    assert len(emulator.store.webhooks) == 2
    assert emulator.store.settings.faults == Faults(error_status=502)


async def test_a_json_control_request_with_a_charset_is_fine(emulator: RunningEmulator) -> None:
    left, response = await _webhook_count_after(
        emulator,
        content=b'{"webhooks": "empty"}',
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    assert response.status_code == 200
    assert left == 0


async def test_an_outside_change_edits_a_webhook_without_a_token_and_keeps_its_id(
    emulator: RunningEmulator,
) -> None:
    path = "/_emulator/webhooks/onbrd01/legacy-zapier"
    async with emulator.client(token=None) as client:
        before = (await client.get("/_emulator/state")).json()
        changed = await client.post(path, json={"enabled": False})
        unknown = await client.post("/_emulator/webhooks/onbrd01/nope", json={"enabled": False})
        secret = await client.post(path, json={"secret": "not-here"})
        wrong = await client.post(path, json={"enabled": "no"})
        cross = await client.post(
            path, json={"enabled": True}, headers={"Origin": "https://evil.example"}
        )
        stats = (await client.get("/_emulator/stats")).json()

    assert changed.status_code == 200
    assert changed.json()["enabled"] is False
    old = next(w for w in before["webhooks"] if w["tag"] == "legacy-zapier")
    assert changed.json()["id"] == old["id"]
    assert (unknown.status_code, secret.status_code, wrong.status_code) == (404, 400, 400)
    assert cross.status_code == 403
    assert stats["total"] == 0  # control routes are not counted as API traffic
    hook = emulator.store.get_webhook("onbrd01", "legacy-zapier")
    assert hook is not None
    assert hook.enabled is False

"""Rate limiting and fault injection: what the real API and the network do to a client."""

from __future__ import annotations

import random

import httpx
import pytest
from conftest import FakeClock, MakeEmulator, RunningEmulator

from reconciler.emulator import Faults, ScriptedFault, TokenBucketLimiter
from reconciler.emulator.faults import FaultAction

pytestmark = pytest.mark.anyio

WEBHOOK = "/forms/kyc0001/webhooks/t"
BODY = {"url": "https://hooks.example.com/t", "enabled": True}


# --------------------------------------------------------------------------- rate limiting


async def test_requests_beyond_the_rate_get_429_with_retry_after(
    make_emulator: MakeEmulator, emulator_mode: str
) -> None:
    emu = make_emulator(mode=emulator_mode, rate=2.0, burst=2)
    async with emu.client() as client:
        statuses = [(await client.get("/forms")).status_code for _ in range(2)]
        refused = await client.get("/forms")
        emu.clock.advance(0.5)  # one token back at 2 per second
        after_wait = await client.get("/forms")
        stats = (await client.get("/_emulator/stats")).json()
    assert statuses == [200, 200]
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "1"
    assert refused.json()["code"] == "RATE_LIMIT_EXCEEDED"
    assert after_wait.status_code == 200
    assert stats["throttled"] == 1
    assert stats["total"] == 4
    assert stats["routes"]["GET /forms"] == {"200": 3, "429": 1}


async def test_each_token_has_its_own_bucket(
    make_emulator: MakeEmulator, emulator_mode: str
) -> None:
    emu = make_emulator(mode=emulator_mode, rate=1.0, burst=1)
    async with emu.client(token="alice") as alice, emu.client(token="bob") as bob:
        assert (await alice.get("/forms")).status_code == 200
        assert (await alice.get("/forms")).status_code == 429
        assert (await bob.get("/forms")).status_code == 200


async def test_control_routes_are_not_rate_limited(make_emulator: MakeEmulator) -> None:
    emu = make_emulator(rate=1.0, burst=1)
    async with emu.client() as client:
        for _ in range(5):
            assert (await client.get("/_emulator/stats")).status_code == 200
        assert (await client.get("/forms")).status_code == 200


def test_retry_after_is_whole_seconds_and_never_zero() -> None:
    clock = FakeClock()
    slow = TokenBucketLimiter(rate=0.25, burst=1, clock=clock)
    assert slow.acquire("t") is None
    assert slow.acquire("t") == 4
    fast = TokenBucketLimiter(rate=100.0, burst=1, clock=clock)
    assert fast.acquire("t") is None
    assert fast.acquire("t") == 1


def test_the_bucket_refills_at_the_rate_up_to_the_burst() -> None:
    clock = FakeClock()
    limiter = TokenBucketLimiter(rate=2.0, burst=2, clock=clock)
    assert [limiter.acquire("t") for _ in range(3)] == [None, None, 1]
    clock.advance(60)  # a long pause refills only up to the burst
    assert [limiter.acquire("t") for _ in range(3)] == [None, None, 1]


# --------------------------------------------------------------------------- random faults


async def test_error_rate_one_answers_every_request_with_503(
    make_emulator: MakeEmulator, emulator_mode: str
) -> None:
    emu = make_emulator(mode=emulator_mode, faults={"error_rate": 1.0})
    async with emu.client() as client:
        response = await client.put(WEBHOOK, json=BODY)
    assert response.status_code == 503
    assert response.json()["code"] == "SERVICE_UNAVAILABLE"
    assert ("kyc0001", "t") not in emu.store.webhooks


async def test_throttle_rate_one_answers_429_and_counts_as_throttled(
    make_emulator: MakeEmulator, emulator_mode: str
) -> None:
    emu = make_emulator(mode=emulator_mode, faults={"throttle_rate": 1.0})
    async with emu.client() as client:
        response = await client.get("/forms")
        stats = (await client.get("/_emulator/stats")).json()
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) >= 1
    assert stats["throttled"] == 1


def test_random_faults_follow_the_injected_random_source() -> None:
    faults = Faults(error_rate=0.5)

    def fates(seed: int) -> list[int]:
        rng = random.Random(seed)
        return [faults.decide("GET", "/forms", rng).status for _ in range(40)]

    assert fates(7) == fates(7)
    assert set(fates(7)) == {0, 503}


async def test_fixed_latency_is_waited_out_before_answering(
    make_emulator: MakeEmulator, emulator_mode: str
) -> None:
    emu = make_emulator(mode=emulator_mode, faults={"latency_ms": 250})
    async with emu.client() as client:
        assert (await client.get("/forms")).status_code == 200
    assert emu.clock.sleeps == [0.25]


async def test_random_latency_stays_within_its_range(make_emulator: MakeEmulator) -> None:
    emu = make_emulator(faults={"latency_ms": [20, 80]}, rng=random.Random(3))
    async with emu.client() as client:
        for _ in range(20):
            await client.get("/forms")
    assert len(emu.clock.sleeps) == 20
    assert all(0.02 <= s <= 0.08 for s in emu.clock.sleeps)
    assert len(set(emu.clock.sleeps)) > 1


# --------------------------------------------------------------------------- scripted faults


async def test_the_next_three_puts_get_503_then_the_fourth_succeeds(
    make_emulator: MakeEmulator, emulator_mode: str
) -> None:
    emu = make_emulator(
        mode=emulator_mode, faults={"script": [{"method": "PUT", "count": 3, "status": 503}]}
    )
    async with emu.client() as client:
        reads = [(await client.get("/forms")).status_code for _ in range(2)]
        puts = [(await client.put(WEBHOOK, json=BODY)).status_code for _ in range(4)]
        remaining = (await client.get("/_emulator/faults")).json()["script"]
    assert reads == [200, 200]
    assert puts == [503, 503, 503, 200]
    assert remaining == []


async def test_a_scripted_rule_can_target_one_path(make_emulator: MakeEmulator) -> None:
    emu = make_emulator(
        faults={"script": [{"method": "GET", "path": "/forms/onbrd02/*", "status": 500}]}
    )
    async with emu.client() as client:
        other = await client.get("/forms/onbrd01/webhooks")
        hit = await client.get("/forms/onbrd02/webhooks")
        again = await client.get("/forms/onbrd02/webhooks")
    assert (other.status_code, hit.status_code, again.status_code) == (200, 500, 200)
    assert hit.json()["code"] == "INTERNAL_SERVER_ERROR"


async def test_a_scripted_429_carries_its_retry_after(make_emulator: MakeEmulator) -> None:
    emu = make_emulator(faults={"script": [{"status": 429, "retry_after": 7}]})
    async with emu.client() as client:
        response = await client.get("/forms")
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "7"


async def test_dropping_the_connection_on_delete_is_a_transport_error(
    make_emulator: MakeEmulator, emulator_mode: str
) -> None:
    emu = make_emulator(
        mode=emulator_mode, faults={"script": [{"method": "DELETE", "action": "drop"}]}
    )
    async with emu.client() as client:
        with pytest.raises(httpx.TransportError):
            await client.delete("/forms/onbrd01/webhooks/legacy-zapier")
        still_there = await client.get("/forms/onbrd01/webhooks/legacy-zapier")
        retried = await client.delete("/forms/onbrd01/webhooks/legacy-zapier")
        stats = (await client.get("/_emulator/stats")).json()
    assert still_there.status_code == 200
    assert retried.status_code == 204
    assert stats["routes"]["DELETE /forms/{form_id}/webhooks/{tag}"] == {"204": 1, "dropped": 1}


async def test_drop_after_performs_the_write_but_loses_the_answer(
    make_emulator: MakeEmulator, emulator_mode: str
) -> None:
    emu = make_emulator(
        mode=emulator_mode, faults={"script": [{"method": "PUT", "action": "drop_after"}]}
    )
    async with emu.client() as client:
        with pytest.raises(httpx.TransportError):
            await client.put(WEBHOOK, json=BODY)
        created = await client.get(WEBHOOK)
    assert created.status_code == 200
    assert created.json()["url"] == BODY["url"]


# --------------------------------------------------------------------------- control of faults


async def test_faults_are_set_read_and_cleared_at_run_time(emulator: RunningEmulator) -> None:
    async with emulator.client() as client:
        empty = (await client.get("/_emulator/faults")).json()
        set_ = await client.post(
            "/_emulator/faults",
            json={"latency_ms": [1, 2], "script": [{"method": "put", "count": 2}]},
        )
        failing = await client.put(WEBHOOK, json=BODY)
        cleared = await client.delete("/_emulator/faults")
        working = await client.put(WEBHOOK, json=BODY)
    assert empty["script"] == []
    assert empty["error_rate"] == 0.0
    assert set_.status_code == 200
    assert set_.json()["latency_ms"] == [1.0, 2.0]
    assert set_.json()["script"] == [
        {"method": "PUT", "path": "*", "count": 2, "action": "respond", "status": 503}
    ]
    assert failing.status_code == 503
    assert cleared.json()["script"] == []
    assert working.status_code == 200


@pytest.mark.parametrize(
    "faults",
    [
        {"error_rate": 2},
        {"throttle_rate": "often"},
        {"latency_ms": -5},
        {"script": [{"method": "BREW"}]},
        {"script": [{"action": "explode"}]},
        {"script": [{"count": 0}]},
        {"script": [{"status": 200}]},
        {"chaos": True},
    ],
)
async def test_invalid_faults_are_refused_with_400(
    make_emulator: MakeEmulator, faults: dict[str, object]
) -> None:
    emu = make_emulator()
    async with emu.client() as client:
        response = await client.post("/_emulator/faults", json=faults)
    assert response.status_code == 400
    assert response.json()["code"] == "VALIDATION_ERROR"
    assert not emu.store.settings.faults.active


def test_a_consumed_rule_leaves_the_script() -> None:
    faults = Faults(script=[ScriptedFault(method="PUT", count=2, status=502)])
    rng = random.Random(0)
    decisions = [faults.decide("PUT", "/forms/a/webhooks/b", rng) for _ in range(3)]
    assert [d.status for d in decisions] == [502, 502, 0]
    assert [d.scripted for d in decisions] == [True, True, False]
    assert decisions[0].action is FaultAction.RESPOND
    assert faults.script == []

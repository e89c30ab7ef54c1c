"""The pacer, on virtual time: every test runs instantly, and every time is exact."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager

import anyio
import anyio.lowlevel
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.pacer import Pacer

pytestmark = pytest.mark.anyio


class VirtualClock:
    """A clock and a sleep that jump time forward whenever every task is blocked.

    ``oversleep`` makes the n-th sleep wake that much late, as a busy event loop does.
    """

    def __init__(self, oversleep: Sequence[float] = ()) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self._oversleep = list(oversleep)
        self._sleepers: list[tuple[float, int, anyio.Event]] = []
        self._seq = 0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        extra = self._oversleep.pop(0) if self._oversleep else 0.0
        event = anyio.Event()
        heapq.heappush(self._sleepers, (self.now + max(0.0, seconds) + extra, self._seq, event))
        self._seq += 1
        await event.wait()

    async def _autojump(self) -> None:
        while True:
            await _all_other_tasks_blocked()
            if self._sleepers:
                wake, _, event = heapq.heappop(self._sleepers)
                self.now = max(self.now, wake)
                event.set()
            else:
                await anyio.sleep(0.001)  # nothing sleeps: let the test finish

    @asynccontextmanager
    async def running(self) -> AsyncIterator[VirtualClock]:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._autojump)
            yield self
            tg.cancel_scope.cancel()


async def _all_other_tasks_blocked() -> None:
    """``anyio.wait_all_tasks_blocked`` without its 0.1 s polling sleep (asyncio backend).

    A task is blocked when it awaits a future that is not done yet; until every other task is,
    keep yielding so they run up to their next await.
    """
    this = asyncio.current_task()
    while True:
        await anyio.lowlevel.checkpoint()
        others = [t for t in asyncio.all_tasks() if t is not this]
        if all(_waiting(t) for t in others):
            return


def _waiting(task: asyncio.Task[object]) -> bool:
    waiter = getattr(task, "_fut_waiter", None)
    return waiter is not None and not waiter.done()


def make_pacer(clock: VirtualClock, *, rate: float = 2.0, concurrency: int = 4) -> Pacer:
    return Pacer(rate=rate, concurrency=concurrency, clock=clock, sleep=clock.sleep)


async def run_requests(
    pacer: Pacer,
    clock: VirtualClock,
    count: int,
    *,
    latency: float = 0.0,
    during: Callable[[int], Awaitable[None]] | None = None,
) -> list[float]:
    """Run ``count`` concurrent "requests" through ``pacer``; return their start times, sorted."""
    starts: list[float] = []

    async def one(i: int) -> None:
        async with pacer.slot():
            starts.append(clock())
            if during is not None:
                await during(i)
            if latency:
                await clock.sleep(latency)

    async with anyio.create_task_group() as tg:
        for i in range(count):
            tg.start_soon(one, i)
    return sorted(starts)


def gaps(starts: Sequence[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(starts)]


async def test_the_first_request_starts_immediately() -> None:
    clock = VirtualClock()
    pacer = make_pacer(clock)
    async with clock.running():
        waited = await pacer.wait_for_start()
    assert waited == 0.0
    assert clock.sleeps == []


async def test_sequential_starts_are_spaced_exactly_one_interval_apart() -> None:
    clock = VirtualClock()
    pacer = make_pacer(clock, rate=2.0)
    starts = []
    async with clock.running():
        for _ in range(5):
            await pacer.wait_for_start()
            starts.append(clock())
    assert starts == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0])


async def test_an_idle_pacer_does_not_bank_starts_for_a_burst() -> None:
    clock = VirtualClock()
    pacer = make_pacer(clock, rate=2.0)
    async with clock.running():
        await pacer.wait_for_start()
        await clock.sleep(10.0)  # idle for a long time
        starts = await run_requests(pacer, clock, 3)
    assert starts == pytest.approx([10.0, 10.5, 11.0])


async def test_latency_overlaps_pacing_so_40_requests_at_rate_2_take_about_20_seconds() -> None:
    clock = VirtualClock()
    pacer = make_pacer(clock, rate=2.0, concurrency=4)
    async with clock.running():
        starts = await run_requests(pacer, clock, 40, latency=0.3)
        finished = clock()
    assert gaps(starts) == pytest.approx([0.5] * 39)
    assert finished == pytest.approx(39 * 0.5 + 0.3)


async def test_the_concurrency_cap_bounds_requests_in_flight() -> None:
    clock = VirtualClock()
    pacer = make_pacer(clock, rate=1000.0, concurrency=3)
    in_flight = 0
    peak = 0

    async def track(_: int) -> None:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await clock.sleep(1.0)
        in_flight -= 1

    async with clock.running():
        starts = await run_requests(pacer, clock, 9, during=track)
    assert peak == 3
    # Three waves: the cap, not the rate, is what spaces them.
    assert starts[3] >= 1.0
    assert starts[6] >= 2.0


async def test_hold_pushes_the_next_start_of_the_account_out() -> None:
    clock = VirtualClock()
    pacer = make_pacer(clock, rate=2.0)
    async with clock.running():
        await pacer.wait_for_start()
        pacer.hold(3.0)
        waited = await pacer.wait_for_start()
    assert clock() == pytest.approx(3.0)
    assert waited == pytest.approx(3.0)


async def test_hold_also_delays_tasks_already_waiting_for_their_slot() -> None:
    clock = VirtualClock()
    pacer = make_pacer(clock, rate=2.0, concurrency=10)

    async def first_one_holds(i: int) -> None:
        if i == 0:
            # The response arrives after the other tasks reserved their slots (0.5, 1, 1.5):
            # a 429 with Retry-After: 5.
            await clock.sleep(0.2)
            pacer.hold(5.0)

    async with clock.running():
        starts = await run_requests(pacer, clock, 4, during=first_one_holds)
    assert starts == pytest.approx([0.0, 5.2, 5.7, 6.2])


async def test_a_start_that_wakes_late_still_keeps_the_next_one_an_interval_away() -> None:
    # The second task's sleep overshoots by 0.3 s; the third must not start 0.2 s after it.
    clock = VirtualClock(oversleep=[0.3])
    pacer = make_pacer(clock, rate=2.0)
    async with clock.running():
        starts = await run_requests(pacer, clock, 3)
    assert starts == pytest.approx([0.0, 0.8, 1.3])


async def test_late_wake_ups_do_not_accumulate_over_a_run() -> None:
    # Every sleep wakes 10 ms late. The schedule stays anchored to the slots reserved, so the
    # run ends 10 ms late, not 10 ms per request late.
    clock = VirtualClock(oversleep=[0.01] * 20)
    pacer = make_pacer(clock, rate=2.0)
    async with clock.running():
        starts = await run_requests(pacer, clock, 6)
    assert starts[-1] == pytest.approx(2.5 + 0.01)
    assert min(gaps(starts)) >= 0.5 - 1e-6


async def test_wait_seconds_sums_the_time_each_request_waited_for_its_slot() -> None:
    clock = VirtualClock()
    pacer = make_pacer(clock, rate=2.0)
    async with clock.running():
        await run_requests(pacer, clock, 3)
    assert pacer.wait_seconds == pytest.approx(0.0 + 0.5 + 1.0)


def test_a_hold_of_zero_or_less_changes_nothing() -> None:
    clock = VirtualClock()
    pacer = make_pacer(clock)
    pacer.hold(0.0)
    pacer.hold(-3.0)

    async def main() -> float:
        async with clock.running():
            return await pacer.wait_for_start()

    assert anyio.run(main) == 0.0


@pytest.mark.parametrize("rate", [0.0, -1.0, math.inf, math.nan])
def test_a_rate_that_is_not_a_positive_number_is_rejected(rate: float) -> None:
    with pytest.raises(ValueError, match="rate"):
        Pacer(rate=rate)


def test_a_concurrency_below_one_is_rejected() -> None:
    with pytest.raises(ValueError, match="concurrency"):
        Pacer(rate=2.0, concurrency=0)


@settings(max_examples=40, deadline=None)
@given(
    rate=st.sampled_from([0.5, 2.0, 20.0]),
    count=st.integers(min_value=2, max_value=12),
    concurrency=st.integers(min_value=1, max_value=6),
    latency=st.floats(min_value=0.0, max_value=2.0),
    oversleep=st.lists(st.floats(min_value=0.0, max_value=1.0), max_size=12),
    hold_at=st.one_of(st.none(), st.integers(min_value=0, max_value=11)),
)
def test_no_two_starts_are_ever_closer_than_one_interval(
    rate: float,
    count: int,
    concurrency: int,
    latency: float,
    oversleep: list[float],
    hold_at: int | None,
) -> None:
    clock = VirtualClock(oversleep=oversleep)
    pacer = make_pacer(clock, rate=rate, concurrency=concurrency)

    async def maybe_hold(i: int) -> None:
        if i == hold_at:
            pacer.hold(1.5)

    async def main() -> list[float]:
        async with clock.running():
            return await run_requests(pacer, clock, count, latency=latency, during=maybe_hold)

    starts = anyio.run(main)
    assert len(starts) == count
    assert min(gaps(starts)) >= 1 / rate - 1e-6  # the pacer may start 1 ns early (float noise)


class LateTimers:
    """A clock that ticks 1 µs per reading and a sleep that always wakes 1 ms late."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 0.000001
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds + 0.001
        await anyio.lowlevel.checkpoint()


@pytest.mark.parametrize(
    ("slack", "lateness_at_least", "lateness_at_most"),
    [(0.002, 0.0, 0.0001), (0.0, 0.001, 0.0012)],
)
async def test_timer_slack_absorbs_late_timers_by_yielding_near_the_slot(
    slack: float, lateness_at_least: float, lateness_at_most: float
) -> None:
    clock = LateTimers()
    pacer = Pacer(rate=2.0, clock=clock, sleep=clock.sleep, timer_slack=slack)
    first = None
    lateness = []
    for n in range(10):
        await pacer.wait_for_start()
        start = clock.now
        first = start if first is None else first
        lateness.append(start - (first + n * 0.5))
    # Without slack every start inherits the 1 ms timer lateness; with it, a few clock ticks.
    assert lateness_at_least <= max(lateness) <= lateness_at_most


def test_timer_slack_defaults_to_2_ms_with_the_real_clock_and_0_with_injected_ones() -> None:
    clock = VirtualClock()
    assert Pacer(rate=2.0).timer_slack == 0.002
    assert Pacer(rate=2.0, clock=clock, sleep=clock.sleep).timer_slack == 0.0

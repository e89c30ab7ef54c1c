"""Evenly spaced request starts for one Typeform account.

Typeform allows 2 requests per second per account and answers anything faster with 429. A
reconciler that refreshes hundreds of forms is bound by that limit, so it must run *at* it: every
request start is spaced exactly ``1/rate`` after the previous one, whichever concurrent task sends
it, while the requests themselves overlap (a request's latency is not added to the spacing).

How: a task first takes a concurrency token (``anyio.CapacityLimiter``, which bounds in-flight
requests), then reserves the next free start slot, then sleeps until that slot *outside* any lock,
so many tasks wait for their slots at once and each starts the moment its slot comes (the last
couple of milliseconds are spent yielding rather than sleeping, because timers fire late). Before
starting, a task checks that no start happened less than ``1/rate`` ago (a predecessor may have
woken late) and that no ``hold`` was placed meanwhile; if either is not so, it waits again.
``hold(seconds)`` pushes every future start of the account out (a 429's ``Retry-After``).

This module never sends anything and never reads a real clock directly: clock and sleep are
injected, so its tests run instantly with a fake clock.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio
import anyio.lowlevel

__all__ = ["Pacer"]

# Float rounding of slot arithmetic can leave a start a few nanoseconds "early"; waiting that long
# again would only cost another timer wake-up.
_EPSILON = 1e-9
TIMER_SLACK = 0.002
"""Default ``timer_slack`` with the real clock: a little more than an event loop's lateness."""


class Pacer:
    """Spaces request starts ``1/rate`` apart and bounds in-flight requests, for one account.

    Share one instance between every client and task that uses the same account (token): the
    limit is per account, not per client.
    """

    def __init__(
        self,
        *,
        rate: float,
        concurrency: int = 4,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        timer_slack: float | None = None,
    ) -> None:
        """``timer_slack``: how long before a slot to stop sleeping and instead yield to the
        event loop until the slot comes. An event loop's timers fire late (about 1 ms on
        Linux, where epoll rounds up to milliseconds); without slack that lateness would be
        passed on from each request to the next. ``None`` means 2 ms with the real clock and
        sleep, and 0 with injected ones (a fake clock does not move while a task yields).
        """
        if not rate > 0 or math.isinf(rate):
            raise ValueError(f"rate must be a positive number of requests per second, got {rate}")
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self.rate = float(rate)
        self.concurrency = concurrency
        self.interval = 1.0 / self.rate
        self._clock = clock
        self._sleep = sleep
        if timer_slack is None:
            real = clock is time.monotonic and sleep is anyio.sleep
            timer_slack = TIMER_SLACK if real else 0.0
        self.timer_slack = timer_slack
        self._limiter = anyio.CapacityLimiter(concurrency)
        # Reservation and start are synchronous (no await inside), so they are already atomic
        # for tasks of one event loop; the lock also keeps them atomic if a pacer is ever shared
        # across threads. It is never held across an await.
        self._lock = threading.Lock()
        self._next_slot = -math.inf  # earliest start the next reservation may get
        self._last_start = -math.inf  # when the most recent request actually started
        self._hold_until = -math.inf  # no start before this (Retry-After)
        self.wait_seconds = 0.0
        """Total time tasks spent waiting for a start slot (pacing and holds)."""

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[float]:
        """Wait for a concurrency token and a start slot; the request runs inside the block.

        Yields how long this task waited for its start slot (not counting the concurrency wait).
        """
        async with self._limiter:
            waited = await self.wait_for_start()
            yield waited

    async def wait_for_start(self) -> float:
        """Wait until this task may start a request, record the start, return the time waited.

        Use ``slot()`` instead unless you bound concurrency yourself.
        """
        began = self._clock()
        target = self._reserve()
        while True:
            await self._wait_until(target)
            verdict = self._try_start()
            if verdict is None:
                waited = self._clock() - began
                self.wait_seconds += waited
                return waited
            target = verdict

    async def _wait_until(self, target: float) -> None:
        while True:
            remaining = target - self._clock()
            if remaining <= _EPSILON:
                return
            if remaining > self.timer_slack:
                await self._sleep(remaining - self.timer_slack)
            else:
                # Within the slack of the slot: a timer would fire late, so yield instead.
                await anyio.lowlevel.checkpoint()

    @property
    def held_until(self) -> float:
        """The clock reading before which no request starts (``-inf`` when never held)."""
        return self._hold_until

    def hold(self, seconds: float) -> None:
        """No request of this account starts within ``seconds`` from now (e.g. ``Retry-After``).

        Tasks already waiting for a slot inside the hold notice it when they wake and take a new
        slot after it, in the order they wake.
        """
        if seconds <= 0:
            return
        with self._lock:
            until = self._clock() + seconds
            self._hold_until = max(self._hold_until, until)
            self._next_slot = max(self._next_slot, self._hold_until)

    def _reserve(self) -> float:
        with self._lock:
            start = max(self._clock(), self._next_slot, self._hold_until)
            self._next_slot = start + self.interval
            return start

    def _try_start(self) -> float | None:
        """Start now (return None) or say until when to wait before checking again."""
        with self._lock:
            now = self._clock()
            if now < self._hold_until - _EPSILON:
                # A hold came in while this task slept: its old slot is void; queue after it.
                start = max(now, self._next_slot, self._hold_until)
                self._next_slot = start + self.interval
                return start
            earliest = self._last_start + self.interval
            if now < earliest - _EPSILON:
                # The previous start happened late (its sleep overshot): keep the spacing.
                return earliest
            self._last_start = now
            return None

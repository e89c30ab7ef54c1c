"""The watch loop and its parts, driven by a fake clock and sleep; reports on a real disk."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest

from reconciler.drift_report import DriftReport, DriftStatus, WebhookDrift
from reconciler.errors import (
    AuthenticationError,
    ConfigError,
    ManifestError,
    RateLimitedError,
    ReconcileError,
    ServerError,
    TransportError,
)
from reconciler.models import WebhookKey
from reconciler.watch import Backoff, HealLimiter, ReportDir, jittered, watch_loop

pytestmark = pytest.mark.anyio

T0 = "2026-03-01T12:00:00Z"
KEY = WebhookKey("default", "F1", "hook")
OTHER = WebhookKey("default", "F1", "other")


def report(checked_at: str = T0, status: DriftStatus = DriftStatus.IN_SYNC) -> DriftReport:
    return DriftReport(
        checked_at, (WebhookDrift(KEY, status, None, (), (), "https://x.example", checked_at),)
    )


@dataclass
class FakeTime:
    """A monotonic clock that only ``sleep`` moves; every sleep is recorded."""

    now: float = 0.0
    sleeps: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await anyio.lowlevel.checkpoint()


class Fixed:
    """An rng whose ``uniform`` always returns one end (or the middle) of its range."""

    def __init__(self, where: float) -> None:
        self.where = where

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * self.where


@dataclass
class Recorder:
    reports: list[DriftReport] = field(default_factory=list)
    errors: list[tuple[str, float]] = field(default_factory=list)
    cycles: list[tuple[float, bool]] = field(default_factory=list)

    def on_report(self, r: DriftReport) -> None:
        self.reports.append(r)

    def on_error(self, exc: ReconcileError, delay: float) -> None:
        self.errors.append((type(exc).__name__, delay))

    def on_cycle(self, duration: float, success: bool) -> None:
        self.cycles.append((duration, success))


def scripted(
    outcomes: list[DriftReport | ReconcileError],
    stop: anyio.Event,
    clock: FakeTime | None = None,
    cycle_seconds: float = 0.0,
) -> Callable[[], Any]:
    """A cycle that plays ``outcomes`` in order and sets ``stop`` after the last one."""
    remaining = list(outcomes)

    async def cycle() -> DriftReport:
        if clock is not None:
            clock.now += cycle_seconds
        outcome = remaining.pop(0)
        if not remaining:
            stop.set()
        if isinstance(outcome, ReconcileError):
            raise outcome
        return outcome

    return cycle


async def run(
    outcomes: list[DriftReport | ReconcileError],
    *,
    interval: float = 60.0,
    once: bool = False,
    backoff: Backoff | None = None,
    rng: Any = None,
    cycle_seconds: float = 0.0,
) -> tuple[Recorder, FakeTime]:
    fake, rec, stop = FakeTime(), Recorder(), anyio.Event()
    await watch_loop(
        scripted(outcomes, stop, fake, cycle_seconds),
        interval=interval,
        once=once,
        stop=stop,
        sleep=fake.sleep,
        clock=fake,
        rng=rng or Fixed(0.5),
        on_report=rec.on_report,
        on_error=rec.on_error,
        backoff=backoff or Backoff(initial=1, cap=8, factor=2),
        on_cycle=rec.on_cycle,
    )
    return rec, fake


# --------------------------------------------------------------------------- jitter and back-off


def test_jitter_stays_within_ten_percent_and_actually_varies() -> None:
    rng = random.Random(7)
    waits = [jittered(300.0, rng) for _ in range(2000)]
    assert all(270.0 <= w <= 330.0 for w in waits)
    assert min(waits) < 280.0
    assert max(waits) > 320.0
    assert jittered(300.0, Fixed(0.0)) == pytest.approx(270.0)
    assert jittered(300.0, Fixed(1.0)) == pytest.approx(330.0)


def test_backoff_doubles_up_to_its_cap_and_starts_over_after_reset() -> None:
    backoff = Backoff(initial=1, cap=10, factor=2)
    assert [backoff.next_delay() for _ in range(6)] == [1, 2, 4, 8, 10, 10]
    backoff.reset()
    assert backoff.next_delay() == 1


def test_backoff_survives_thousands_of_failures_without_overflow() -> None:
    backoff = Backoff(initial=1, cap=300, factor=10)
    for _ in range(5000):
        delay = backoff.next_delay()
    assert delay == 300


def test_a_retry_after_lengthens_a_delay_but_never_past_the_cap() -> None:
    backoff = Backoff(initial=1, cap=60, factor=2)
    assert backoff.next_delay(retry_after=30) == 30
    assert backoff.next_delay(retry_after=86_400) == 60
    assert backoff.next_delay(retry_after=0.5) == 4


@pytest.mark.parametrize(
    ("initial", "cap", "factor"), [(0, 10, 2), (5, 1, 2), (1, 10, 0.5), (-1, 10, 2)]
)
def test_a_nonsensical_backoff_is_refused(initial: float, cap: float, factor: float) -> None:
    with pytest.raises(ValueError, match="back-off needs"):
        Backoff(initial=initial, cap=cap, factor=factor)


# --------------------------------------------------------------------------- heal limit


def test_a_webhook_corrected_limit_times_in_the_window_is_suspended_until_it_slides() -> None:
    clock = FakeTime()
    limiter = HealLimiter(limit=3, window=3600, clock=clock)
    for minute in (0, 10, 20):
        clock.now = minute * 60
        assert limiter.allow(KEY)
        limiter.record(KEY)
    assert limiter.suspended() == frozenset()  # used its budget, but nothing refused yet
    clock.now = 30 * 60
    assert not limiter.allow(KEY)
    assert limiter.allow(OTHER)  # one webhook's budget is not another's
    assert limiter.suspended() == {KEY}
    assert limiter.corrections(KEY) == 3
    clock.now = 3600 + 1  # the first correction left the window
    assert limiter.suspended() == frozenset()
    assert limiter.allow(KEY)


def test_a_heal_limit_of_zero_never_heals() -> None:
    limiter = HealLimiter(limit=0, window=3600, clock=FakeTime())
    assert not limiter.allow(KEY)
    assert limiter.suspended() == {KEY}


def test_a_suspended_webhook_stays_suspended_while_the_window_is_full() -> None:
    clock = FakeTime()
    limiter = HealLimiter(limit=1, window=100, clock=clock)
    limiter.record(KEY)
    assert not limiter.allow(KEY)
    clock.now = 99
    assert limiter.suspended() == {KEY}
    clock.now = 100
    assert limiter.suspended() == frozenset()


# --------------------------------------------------------------------------- report directory


def read(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return doc


def at(second: int) -> str:
    return f"2026-03-01T12:00:{second:02d}Z"


def test_each_report_lands_in_history_and_latest_with_the_same_content(tmp_path: Path) -> None:
    reports = ReportDir(tmp_path / "reports", keep=10)
    entry = reports.write(report(at(5)).to_json(), at(5))
    assert entry.name == "20260301T120005Z.json"
    assert read(entry) == read(reports.latest) == report(at(5)).to_json()


def test_history_keeps_only_the_newest_n_and_nothing_else_is_touched(tmp_path: Path) -> None:
    reports = ReportDir(tmp_path, keep=3)
    (tmp_path / "notes.json").write_text("{}")
    (tmp_path / "2026.json").write_text("{}")
    for second in range(6):
        reports.write(report(at(second)).to_json(), at(second))
    assert [p.name for p in reports.history()] == [
        "20260301T120003Z.json",
        "20260301T120004Z.json",
        "20260301T120005Z.json",
    ]
    assert read(reports.latest)["checked_at"] == at(5)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "2026.json",
        "20260301T120003Z.json",
        "20260301T120004Z.json",
        "20260301T120005Z.json",
        "latest.json",
        "notes.json",
    ]


def test_two_reports_in_one_second_both_survive_in_order(tmp_path: Path) -> None:
    reports = ReportDir(tmp_path, keep=10)
    for n in range(12):
        doc = report(at(1)).to_json() | {"n": n}
        reports.write(doc, at(1))
    history = reports.history()
    assert [read(p)["n"] for p in history] == list(range(2, 12))
    assert history[-1].name == "20260301T120001Z-11.json"


def test_a_stale_report_keeps_the_last_good_webhooks_and_says_what_failed(tmp_path: Path) -> None:
    reports = ReportDir(tmp_path, keep=10)
    good = report(at(0), DriftStatus.DRIFTED).to_json()
    reports.write(good, at(0))
    reports.write_stale("the API answered 503", at(30))
    reports.write_stale("connection refused", at(59))
    latest = read(reports.latest)
    assert latest["stale"] is True
    assert latest["error"] == "connection refused"
    assert latest["checked_at"] == at(59)
    assert latest["webhooks"] == good["webhooks"]
    assert latest["webhooks"][0]["last_checked"] == at(0)
    assert len(reports.history()) == 3


def test_a_restarted_watcher_builds_its_stale_report_from_the_latest_on_disk(
    tmp_path: Path,
) -> None:
    ReportDir(tmp_path).write(report(at(0), DriftStatus.MISSING).to_json(), at(0))
    doc = ReportDir(tmp_path).write_stale("connection refused", at(9))
    assert doc["webhooks"][0]["status"] == "missing"
    assert read(tmp_path / "latest.json") == doc


def test_a_stale_document_written_directly_never_becomes_the_last_good_one(
    tmp_path: Path,
) -> None:
    reports = ReportDir(tmp_path)
    good = report(at(0), DriftStatus.DRIFTED).to_json()
    reports.write(good, at(0))
    reports.write(DriftReport(at(5), ()).as_stale("refused", at(5)).to_json(), at(5))
    assert reports.write_stale("refused again", at(9))["webhooks"] == good["webhooks"]


def test_a_latest_file_of_another_format_is_not_taken_as_the_last_good_report(
    tmp_path: Path,
) -> None:
    foreign = {"format_version": "2", "webhooks": [{"anything": True}]}
    (tmp_path / "latest.json").write_text(json.dumps(foreign))
    assert ReportDir(tmp_path).write_stale("refused", at(9))["webhooks"] == []


def test_a_first_cycle_that_fails_writes_an_empty_stale_report(tmp_path: Path) -> None:
    (tmp_path / "latest.json").write_text("{not json")
    doc = ReportDir(tmp_path).write_stale("connection refused", at(9))
    assert (doc["stale"], doc["webhooks"], doc["format_version"]) == (True, [], "1")


def test_writing_leaves_no_temporary_files(tmp_path: Path) -> None:
    reports = ReportDir(tmp_path, keep=2)
    for second in range(5):
        reports.write(report(at(second)).to_json(), at(second))
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_report_dir_under_a_file_is_a_one_line_error_naming_it(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ReconcileError, match=r"cannot write drift report .*file") as caught:
        ReportDir(blocker / "reports").write(report().to_json(), T0)
    assert "\n" not in str(caught.value)


def test_keep_must_be_at_least_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--keep must be at least 1"):
        ReportDir(tmp_path, keep=0)


# --------------------------------------------------------------------------- the loop


async def test_successful_cycles_report_and_wait_the_jittered_interval_between() -> None:
    rec, fake = await run([report(), report(), report()], interval=100.0, rng=Fixed(1.0))
    assert len(rec.reports) == 3
    assert fake.sleeps == [pytest.approx(110.0)] * 2  # none after the last: stop was set
    assert rec.errors == []
    assert [ok for _, ok in rec.cycles] == [True, True, True]


async def test_the_wait_starts_when_a_slow_cycle_ends() -> None:
    rec, fake = await run([report(), report()], interval=10.0, cycle_seconds=25.0)
    assert fake.sleeps == [pytest.approx(10.0)]
    assert rec.cycles == [(25.0, True), (25.0, True)]


async def test_once_runs_a_single_cycle_and_never_sleeps() -> None:
    fake, rec, stop = FakeTime(), Recorder(), anyio.Event()
    calls = 0

    async def cycle() -> DriftReport:
        nonlocal calls
        calls += 1
        return report()

    await watch_loop(
        cycle,
        interval=60,
        once=True,
        stop=stop,
        sleep=fake.sleep,
        clock=fake,
        rng=Fixed(0.5),
        on_report=rec.on_report,
        on_error=rec.on_error,
        backoff=Backoff(),
    )
    assert (calls, len(rec.reports), fake.sleeps) == (1, 1, [])


async def test_transient_failures_back_off_and_a_success_resets_the_back_off() -> None:
    outage = [ServerError("503"), RateLimitedError("429"), TransportError("refused")]
    rec, fake = await run([*outage, report(), ServerError("503"), report()], interval=60.0)
    assert rec.errors == [
        ("ServerError", 1),
        ("RateLimitedError", 2),
        ("TransportError", 4),
        ("ServerError", 1),
    ]
    assert fake.sleeps == [1, 2, 4, 60.0, 1]
    assert len(rec.reports) == 2
    assert [ok for _, ok in rec.cycles] == [False, False, False, True, False, True]


async def test_a_long_outage_waits_at_most_the_cap() -> None:
    rec, _ = await run([ServerError("503")] * 8 + [report()])
    assert [delay for _, delay in rec.errors] == [1, 2, 4, 8, 8, 8, 8, 8]


async def test_a_servers_retry_after_is_honoured_up_to_the_cap() -> None:
    throttled = RateLimitedError("429")
    throttled.retry_after = 5  # type: ignore[attr-defined]
    rec, _ = await run([throttled, report()])
    assert rec.errors == [("RateLimitedError", 5)]


@pytest.mark.parametrize(
    "terminal",
    [AuthenticationError("401: the token is invalid"), ManifestError(())],
    ids=["authentication", "manifest"],
)
async def test_a_terminal_error_stops_the_loop_and_is_raised(terminal: ReconcileError) -> None:
    with pytest.raises(type(terminal)):
        await run([report(), terminal, report()])


async def test_once_raises_even_a_transient_error_for_crons_exit_code() -> None:
    with pytest.raises(ServerError):
        await run([ServerError("503"), report()], once=True)


async def test_stop_ends_a_long_wait_at_once() -> None:
    stop = anyio.Event()
    rec = Recorder()

    async def cycle() -> DriftReport:
        return report()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            group.start_soon(
                lambda: watch_loop(
                    cycle,
                    interval=3600,
                    stop=stop,
                    on_report=rec.on_report,
                    on_error=rec.on_error,
                )
            )
            await anyio.wait_all_tasks_blocked()
            stop.set()
    assert len(rec.reports) == 1


async def test_stop_ends_a_back_off_wait_at_once() -> None:
    stop = anyio.Event()
    rec = Recorder()

    async def cycle() -> DriftReport:
        raise ServerError("503")

    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            group.start_soon(
                lambda: watch_loop(
                    cycle,
                    interval=60,
                    stop=stop,
                    on_report=rec.on_report,
                    on_error=rec.on_error,
                    backoff=Backoff(initial=3600, cap=3600),
                )
            )
            await anyio.wait_all_tasks_blocked()
            stop.set()
    assert rec.errors == [("ServerError", 3600)]


async def test_a_loop_asked_to_stop_before_it_starts_runs_no_cycle() -> None:
    stop = anyio.Event()
    stop.set()
    rec = Recorder()

    async def cycle() -> DriftReport:
        raise AssertionError("no cycle may run")

    await watch_loop(cycle, interval=60, stop=stop, on_report=rec.on_report, on_error=rec.on_error)
    assert rec.reports == []


async def test_a_non_positive_interval_is_refused() -> None:
    rec = Recorder()

    async def cycle() -> DriftReport:
        return report()

    with pytest.raises(ConfigError, match="interval must be positive"):
        await watch_loop(
            cycle, interval=0, stop=anyio.Event(), on_report=rec.on_report, on_error=rec.on_error
        )

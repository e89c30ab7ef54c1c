"""The machinery of ``reconcile watch`` (SPEC section 11), with every effect injected.

``watch`` is level-based, like a Kubernetes controller: each cycle re-reads manifests, state and
live webhooks, so the loop itself remembers nothing but how long to wait. Success waits the
interval with ±10 % jitter (many watchers started together drift apart instead of hitting the
API in step); a transient failure (``ReconcileError.transient``: 429 storms, 5xx, a dropped
connection) backs off exponentially up to a cap and goes on; a terminal one (a 401, a broken
manifest) is raised, because retrying cannot fix it.

The pieces here never read the real clock, sleep for real, or print: the caller passes
``clock``, ``sleep``, ``rng`` and callbacks, so tests drive hours of watching in milliseconds.
``ReportDir`` is the one piece that touches files, and it must never leave a half-written
report or delete a file it did not name itself.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import anyio

from reconciler.drift_report import DRIFT_FORMAT_VERSION, DriftReport
from reconciler.errors import ConfigError, ReconcileError
from reconciler.fileio import write_json_atomic
from reconciler.models import WebhookKey

__all__ = [
    "JITTER",
    "Backoff",
    "HealLimiter",
    "RandomSource",
    "ReportDir",
    "jittered",
    "watch_loop",
]

JITTER = 0.10
"""Each wait is the interval times a factor drawn from [1 - JITTER, 1 + JITTER]."""

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class RandomSource(Protocol):
    def uniform(self, a: float, b: float) -> float: ...


def jittered(interval: float, rng: RandomSource) -> float:
    """``interval`` ±10 %, drawn from ``rng``."""
    return interval * (1.0 + rng.uniform(-JITTER, JITTER))


# --------------------------------------------------------------------------- back-off


@dataclass
class Backoff:
    """Exponential back-off for outages: ``initial``, times ``factor`` per failure, at most ``cap``.

    ``reset()`` after a success. A server's ``Retry-After`` lengthens a delay (never beyond the
    cap: a hostile or broken header must not park the watcher for a day).
    """

    initial: float = 5.0
    cap: float = 300.0
    factor: float = 2.0
    failures: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if not (self.initial > 0 and self.cap >= self.initial and self.factor >= 1):
            raise ValueError(
                f"back-off needs 0 < initial <= cap and factor >= 1, got initial={self.initial}, "
                f"cap={self.cap}, factor={self.factor}"
            )

    def next_delay(self, retry_after: float | None = None) -> float:
        """The wait before the next attempt, counting this failure."""
        delay = self.initial
        for _ in range(self.failures):  # multiply step by step: no overflow however long
            delay = min(self.cap, delay * self.factor)
            if delay >= self.cap:
                break
        self.failures += 1
        if retry_after is not None and retry_after > delay:
            delay = min(self.cap, retry_after)
        return delay

    def reset(self) -> None:
        self.failures = 0


# --------------------------------------------------------------------------- heal limit


class HealLimiter:
    """At most ``limit`` corrections of one webhook per sliding ``window`` seconds.

    A receiver that answers 404 makes Typeform disable its webhook; healing re-enables it;
    Typeform disables it again. ``allow(key)`` says whether another correction fits in the
    window; a webhook refused once is *suspended* (reported ``heal_suspended``) until its oldest
    correction leaves the window. A webhook that used its budget but needs nothing more is not
    suspended: it is simply in sync.
    """

    def __init__(self, limit: int = 3, window: float = 3600.0, *, clock: Clock = time.monotonic):
        if limit < 0 or window <= 0:
            raise ValueError(f"heal limit needs limit >= 0 and window > 0, got {limit}, {window}")
        self.limit = limit
        self.window = window
        self._clock = clock
        self._corrections: dict[WebhookKey, deque[float]] = {}
        self._refused: set[WebhookKey] = set()

    def _recent(self, key: WebhookKey) -> int:
        times = self._corrections.get(key)
        if times is None:
            return 0
        horizon = self._clock() - self.window
        while times and times[0] <= horizon:
            times.popleft()
        if not times:
            del self._corrections[key]
            return 0
        return len(times)

    def allow(self, key: WebhookKey) -> bool:
        """Whether ``key`` may be corrected now; a refusal suspends it until the window slides."""
        if self._recent(key) < self.limit:
            self._refused.discard(key)
            return True
        self._refused.add(key)
        return False

    def record(self, key: WebhookKey) -> None:
        """Count one correction of ``key`` (a heal write that was attempted)."""
        self._corrections.setdefault(key, deque()).append(self._clock())

    def corrections(self, key: WebhookKey) -> int:
        """How many corrections of ``key`` are still inside the window."""
        return self._recent(key)

    def suspended(self) -> frozenset[WebhookKey]:
        """Webhooks refused a correction whose window has not slid yet."""
        self._refused = {k for k in self._refused if self._recent(k) >= self.limit}
        return frozenset(self._refused)


# --------------------------------------------------------------------------- reports on disk

_HISTORY = re.compile(r"^(?P<stamp>\d{8}T\d{6}Z)(?:-(?P<seq>\d+))?\.json$")
LATEST = "latest.json"


def _stamp(checked_at: str) -> str:
    """``2026-03-01T12:00:00Z`` -> ``20260301T120000Z`` (sortable, and legal on every OS)."""
    try:
        moment = datetime.fromisoformat(checked_at)
    except ValueError as exc:
        raise ValueError(f"checked_at {checked_at!r} is not an ISO-8601 time") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _history_key(path: Path) -> tuple[str, int]:
    match = _HISTORY.match(path.name)
    assert match is not None
    return match["stamp"], int(match["seq"] or 0)


class ReportDir:
    """``--report-dir``: ``latest.json`` plus a timestamped history of the newest ``keep``.

    Every file is written whole (temp file, fsync, rename), the history entry first, so
    ``latest.json`` never names a cycle whose history entry is missing. Pruning deletes only
    files whose names this class gives (``YYYYMMDDTHHMMSSZ[-N].json``), never anything else a
    user keeps there.
    """

    def __init__(self, path: Path, *, keep: int = 100) -> None:
        if keep < 1:
            raise ConfigError(f"--keep must be at least 1, got {keep}")
        self.path = path
        self.keep = keep
        self._last_good: dict[str, Any] | None = None

    @property
    def latest(self) -> Path:
        return self.path / LATEST

    def history(self) -> list[Path]:
        """The history files, oldest first."""
        try:
            entries = [p for p in self.path.iterdir() if _HISTORY.match(p.name)]
        except (FileNotFoundError, NotADirectoryError):
            return []  # nothing written yet; writing says what is wrong with the path
        return sorted(entries, key=_history_key)

    def write(self, doc: Mapping[str, Any], checked_at: str) -> Path:
        """Write ``doc`` as the history entry of ``checked_at`` and as ``latest.json``.

        Returns the history entry's path. Raises ``ReconcileError`` naming the path when the
        directory cannot be written (the previous files stay as they were).
        """
        body = dict(doc)
        entry = self._free_name(_stamp(checked_at))
        self._write(entry, body)
        self._write(self.latest, body)
        if not body.get("stale"):
            self._last_good = body
        self._prune()
        return entry

    def write_stale(self, error: str, checked_at: str) -> dict[str, Any]:
        """Record a failed cycle: the last good verdicts, marked ``stale`` with ``error``.

        The last good report is the one this object wrote, or else ``latest.json`` left by a
        previous run; with neither, an empty report. Returns the document written.
        """
        base = self._last_good or self._read_latest() or _empty_doc(checked_at)
        doc = {**base, "checked_at": checked_at, "stale": True, "error": error}
        self.write(doc, checked_at)
        return doc

    def _read_latest(self) -> dict[str, Any] | None:
        try:
            doc = json.loads(self.latest.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(doc, dict) or doc.get("format_version") != DRIFT_FORMAT_VERSION:
            return None
        return doc

    def _free_name(self, stamp: str) -> Path:
        """A name after every kept history entry of the same second (the newest is always kept)."""
        taken = [seq for s, seq in map(_history_key, self.history()) if s == stamp]
        if not taken:
            return self.path / f"{stamp}.json"
        return self.path / f"{stamp}-{max(taken) + 1}.json"

    def _write(self, path: Path, doc: Mapping[str, Any]) -> None:
        try:
            write_json_atomic(path, doc)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise ReconcileError(f"cannot write drift report {path}: {reason}") from exc

    def _prune(self) -> None:
        for old in self.history()[: -self.keep]:
            with contextlib.suppress(FileNotFoundError):
                old.unlink()


def _empty_doc(checked_at: str) -> dict[str, Any]:
    return DriftReport(checked_at=checked_at, webhooks=()).to_json()


# --------------------------------------------------------------------------- the loop


async def _wait(delay: float, stop: anyio.Event, sleep: Sleep) -> None:
    """Sleep ``delay`` through the injected ``sleep``, or less if ``stop`` is set meanwhile."""
    if delay <= 0 or stop.is_set():
        return
    async with anyio.create_task_group() as group:

        async def sleeper() -> None:
            await sleep(delay)
            group.cancel_scope.cancel()

        async def stopper() -> None:
            await stop.wait()
            group.cancel_scope.cancel()

        group.start_soon(sleeper)
        group.start_soon(stopper)


async def watch_loop(
    cycle: Callable[[], Awaitable[DriftReport]],
    *,
    interval: float,
    once: bool = False,
    stop: anyio.Event,
    sleep: Sleep = anyio.sleep,
    clock: Clock = time.monotonic,
    rng: RandomSource | None = None,
    on_report: Callable[[DriftReport], None],
    on_error: Callable[[ReconcileError, float], None],
    backoff: Backoff | None = None,
    on_cycle: Callable[[float, bool], None] | None = None,
) -> None:
    """Run ``cycle`` until ``stop`` is set (or once), waiting between cycles.

    * success: ``on_report(report)``, then wait ``interval`` ±10 % (measured from the end of
      the cycle, so a slow cycle never makes the next one start at once);
    * transient ``ReconcileError``: ``on_error(exc, delay)``, wait ``delay`` from ``backoff``
      (lengthened by the error's ``retry_after`` when it has one), try again;
    * terminal ``ReconcileError``: raised. With ``once``, every error is raised (cron needs
      the exit code);
    * ``stop`` set: return before the next cycle; a wait in progress ends at once. A cycle in
      progress is not interrupted here (the caller cancels it if it must).

    ``on_cycle(duration_s, success)`` is called after every cycle (for metrics), before
    ``on_report`` / ``on_error``; ``clock`` measures the duration.
    """
    if interval <= 0:
        raise ConfigError(f"the watch interval must be positive, got {interval}")
    rng = rng or random.Random()
    backoff = backoff or Backoff()
    while not stop.is_set():
        started = clock()
        try:
            report = await cycle()
        except ReconcileError as exc:
            if on_cycle is not None:
                on_cycle(clock() - started, False)
            if once or not exc.transient:
                raise
            delay = backoff.next_delay(_retry_after(exc))
            on_error(exc, delay)
            await _wait(delay, stop, sleep)
            continue
        backoff.reset()
        if on_cycle is not None:
            on_cycle(clock() - started, True)
        on_report(report)
        if once:
            return
        await _wait(jittered(interval, rng), stop, sleep)


def _retry_after(exc: ReconcileError) -> float | None:
    value = getattr(exc, "retry_after", None)
    return float(value) if isinstance(value, int | float) and value > 0 else None

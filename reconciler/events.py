"""What a run tells the outside while it works: typed events to one sink, never prints.

The library does no output of its own. ``plan``, ``apply`` and ``drift`` send these events to
``Run.events``; the CLI renders them on stderr (progress bar, warnings, one line per write), a
test collects them in a list, a Python user may ignore them. An event never holds a secret.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from reconciler.applier import Outcome
from reconciler.models import Plan
from reconciler.refresh import AccountFailure

__all__ = [
    "AccountFailed",
    "Event",
    "EventSink",
    "LockTakenOver",
    "Notice",
    "PlanReady",
    "Progress",
    "WriteDone",
    "ignore",
]


@dataclass(frozen=True, slots=True)
class Notice:
    """Something a person should read (a manifest warning, a deprecation); not an error."""

    message: str


@dataclass(frozen=True, slots=True)
class Progress:
    """``done`` of ``total`` forms refreshed."""

    done: int
    total: int


@dataclass(frozen=True, slots=True)
class LockTakenOver:
    """The lock was left behind by a run that ended without releasing it; this run took it."""

    holder: str


@dataclass(frozen=True, slots=True)
class AccountFailed:
    """An account's refresh failed; the other accounts went on."""

    failure: AccountFailure


@dataclass(frozen=True, slots=True)
class PlanReady:
    """``apply`` made (or re-derived) its plan and is about to ask for approval."""

    plan: Plan


@dataclass(frozen=True, slots=True)
class WriteDone:
    """One write finished (landed or failed)."""

    outcome: Outcome


Event = Notice | Progress | LockTakenOver | AccountFailed | PlanReady | WriteDone
EventSink = Callable[[Event], None]


def ignore(_event: Event) -> None:
    """The default sink: a library call is silent unless someone listens."""

"""``reconciler.sync``: the public API as plain functions, for scripts without an event loop.

Each runs its coroutine twin from ``reconciler.api`` in a new event loop (``anyio.run``), so it
cannot be called from inside a running loop: there, await ``reconciler.plan`` and friends.
"""

from __future__ import annotations

import functools
from typing import Any

import anyio

from reconciler import api
from reconciler.drift_report import DriftReport
from reconciler.models import DesiredState
from reconciler.pipeline import ApplyResult, PlanResult

__all__ = ["apply", "drift", "load", "plan"]


def load(*args: Any, **kwargs: Any) -> DesiredState:
    """``reconciler.load`` without ``await``."""
    return anyio.run(functools.partial(api.load, *args, **kwargs))


def plan(*args: Any, **kwargs: Any) -> PlanResult:
    """``reconciler.plan`` without ``await``."""
    return anyio.run(functools.partial(api.plan, *args, **kwargs))


def apply(*args: Any, **kwargs: Any) -> ApplyResult:
    """``reconciler.apply`` without ``await``."""
    return anyio.run(functools.partial(api.apply, *args, **kwargs))


def drift(*args: Any, **kwargs: Any) -> DriftReport:
    """``reconciler.drift`` without ``await``."""
    return anyio.run(functools.partial(api.drift, *args, **kwargs))

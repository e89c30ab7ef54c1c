"""The one clock helper: what time it is, and how every output writes a moment.

Timestamps in plans, records, reports, lock holders and state entries are ISO-8601 UTC to the
second with a ``Z`` (``2026-11-29T03:24:42Z``), sortable as text. Code that needs the time takes
a clock as a parameter (default ``utc_now``), so tests can fix it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

__all__ = ["Clock", "timestamp", "utc_now"]

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def timestamp(moment: datetime) -> str:
    """``moment`` as every output writes it: ``YYYY-MM-DDTHH:MM:SSZ`` in UTC."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

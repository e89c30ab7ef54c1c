"""Per-account rate limiting for the emulator: Typeform's 2 requests per second, a token bucket.

Each key gets a bucket of ``burst`` tokens refilled at ``rate`` per second; the app keys buckets
by account (tokens granted to one account share its bucket) or, when no token is configured, by
bearer token (each token its own account). A request that finds the bucket empty is refused
with the number of whole seconds to wait (``Retry-After`` is an integer, and never 0: "retry
after 0 seconds" invites a hot loop). The clock is injected so tests step time instead of
sleeping.

Buckets are keyed by a digest of the key, never a token itself, so nothing here can leak one.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["TokenBucketLimiter"]


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class TokenBucketLimiter:
    """Token buckets by key. ``acquire`` returns ``None`` or seconds to wait."""

    def __init__(self, *, rate: float, burst: int, clock: Callable[[], float]) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        if burst < 1:
            raise ValueError("burst must be at least 1")
        self.rate = float(rate)
        self.burst = int(burst)
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def acquire(self, bucket_key: str) -> int | None:
        """Take one token from ``bucket_key``'s bucket; on refusal, ``Retry-After`` in seconds."""
        key = hashlib.sha256(bucket_key.encode("utf-8")).hexdigest()
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(tokens=float(self.burst), updated=now)
        else:
            elapsed = max(0.0, now - bucket.updated)
            bucket.tokens = min(float(self.burst), bucket.tokens + elapsed * self.rate)
            bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        wait = (1.0 - bucket.tokens) / self.rate
        return max(1, math.ceil(wait))

    def reset(self) -> None:
        self._buckets.clear()

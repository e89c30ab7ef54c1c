"""Fault injection for the emulator: the failures the real API and the network produce.

A ``Faults`` value says what to inject: latency (fixed or uniform in a range), a rate of 5xx
answers, a rate of 429 answers, and a queue of scripted rules ("the next 3 PUTs get 503", "drop
the connection on the next DELETE"). ``Faults.decide`` picks the fate of one request; scripted
rules are consumed in order, so a test reads like a script. Randomness comes from the ``Random``
the caller passes in, so tests are deterministic.

This module only decides; it never sleeps, answers or touches a connection (``app.py`` does).
It must never hold anything sensitive: faults are persisted and shown by the control API.
"""

from __future__ import annotations

import fnmatch
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = [
    "FaultAction",
    "FaultDecision",
    "Faults",
    "ScriptedFault",
]


class FaultAction(StrEnum):
    """What a fault does to a request."""

    RESPOND = "respond"
    """Answer with ``status`` (and a Typeform-style error body) instead of handling it."""
    DROP = "drop"
    """Close the connection without an answer; the request is never handled."""
    DROP_AFTER = "drop_after"
    """Handle the request (the write happens), then close the connection without an answer."""


_METHODS = frozenset({"*", "GET", "PUT", "DELETE", "POST", "PATCH", "HEAD"})


@dataclass(slots=True)
class ScriptedFault:
    """One scripted rule: the next ``count`` requests matching ``method`` and ``path`` fail.

    ``path`` is a shell-style glob matched against the request path (``/forms/*/webhooks/*``).
    """

    method: str = "*"
    path: str = "*"
    count: int = 1
    status: int = 503
    action: FaultAction = FaultAction.RESPOND
    retry_after: int | None = None

    def matches(self, method: str, path: str) -> bool:
        return (self.method in ("*", method.upper())) and fnmatch.fnmatchcase(path, self.path)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "method": self.method,
            "path": self.path,
            "count": self.count,
            "action": self.action.value,
        }
        if self.action is FaultAction.RESPOND:
            out["status"] = self.status
        if self.retry_after is not None:
            out["retry_after"] = self.retry_after
        return out

    @classmethod
    def from_json(cls, obj: Any, *, where: str = "script[]") -> ScriptedFault:
        if not isinstance(obj, Mapping):
            raise ValueError(f"{where}: a scripted fault must be an object")
        unknown = set(obj) - {"method", "path", "count", "status", "action", "retry_after"}
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
        method = obj.get("method", "*")
        if not isinstance(method, str) or method.upper() not in _METHODS:
            raise ValueError(f"{where}.method: one of {', '.join(sorted(_METHODS))}")
        path = obj.get("path", "*")
        if not isinstance(path, str) or not path:
            raise ValueError(f"{where}.path: a non-empty glob such as /forms/*/webhooks/*")
        count = _int(obj.get("count", 1), f"{where}.count", minimum=1)
        try:
            action = FaultAction(obj.get("action", FaultAction.RESPOND.value))
        except ValueError:
            choices = ", ".join(a.value for a in FaultAction)
            raise ValueError(f"{where}.action: one of {choices}") from None
        status = _int(obj.get("status", 503), f"{where}.status", minimum=100, maximum=599)
        if action is FaultAction.RESPOND and status < 400:
            raise ValueError(f"{where}.status: a fault answers with an error status (400-599)")
        retry_after = obj.get("retry_after")
        if retry_after is not None:
            retry_after = _int(retry_after, f"{where}.retry_after", minimum=0)
        return cls(
            method=method.upper(),
            path=path,
            count=count,
            status=status,
            action=action,
            retry_after=retry_after,
        )


@dataclass(frozen=True, slots=True)
class FaultDecision:
    """The fate of one request. ``action`` is ``None`` when the request is handled normally."""

    latency: float = 0.0
    action: FaultAction | None = None
    status: int = 0
    retry_after: int | None = None
    scripted: bool = False
    """True when a scripted rule was consumed (the faults changed and may need persisting)."""


@dataclass(slots=True)
class Faults:
    """What the emulator injects. The zero value injects nothing."""

    latency_ms: float = 0.0
    latency_max_ms: float | None = None
    """With a value, latency is uniform in ``[latency_ms, latency_max_ms]``."""
    error_rate: float = 0.0
    error_status: int = 503
    throttle_rate: float = 0.0
    script: list[ScriptedFault] = field(default_factory=list)

    @property
    def active(self) -> bool:
        return bool(
            self.latency_ms or self.latency_max_ms or self.error_rate or self.throttle_rate
        ) or bool(self.script)

    def decide(self, method: str, path: str, rng: random.Random) -> FaultDecision:
        """Pick the fate of one request, consuming the first matching scripted rule."""
        latency = self._latency(rng)
        for i, rule in enumerate(self.script):
            if rule.matches(method, path):
                rule.count -= 1
                if rule.count <= 0:
                    del self.script[i]
                return FaultDecision(
                    latency=latency,
                    action=rule.action,
                    status=rule.status,
                    retry_after=rule.retry_after,
                    scripted=True,
                )
        # Draw both numbers every time so that one rate does not shift the other's sequence.
        throttle_draw, error_draw = rng.random(), rng.random()
        if throttle_draw < self.throttle_rate:
            return FaultDecision(latency=latency, action=FaultAction.RESPOND, status=429)
        if error_draw < self.error_rate:
            return FaultDecision(
                latency=latency, action=FaultAction.RESPOND, status=self.error_status
            )
        return FaultDecision(latency=latency)

    def _latency(self, rng: random.Random) -> float:
        low = self.latency_ms
        if self.latency_max_ms is None:
            return low / 1000.0
        return rng.uniform(low, self.latency_max_ms) / 1000.0

    def to_json(self) -> dict[str, Any]:
        latency: float | list[float] = self.latency_ms
        if self.latency_max_ms is not None:
            latency = [self.latency_ms, self.latency_max_ms]
        return {
            "latency_ms": latency,
            "error_rate": self.error_rate,
            "error_status": self.error_status,
            "throttle_rate": self.throttle_rate,
            "script": [rule.to_json() for rule in self.script],
        }

    @classmethod
    def from_json(cls, obj: Any) -> Faults:
        """Parse the JSON form (as the control API and ``--faults FILE`` take it).

        Raises ``ValueError`` with a message naming the offending key.
        """
        if obj is None:
            return cls()
        if not isinstance(obj, Mapping):
            raise ValueError("faults must be an object")
        unknown = set(obj) - {
            "latency_ms",
            "error_rate",
            "error_status",
            "throttle_rate",
            "script",
        }
        if unknown:
            raise ValueError(f"faults: unknown key(s) {', '.join(sorted(unknown))}")
        low, high = parse_latency(obj.get("latency_ms", 0))
        script_raw = obj.get("script", [])
        if not isinstance(script_raw, list):
            raise ValueError("faults.script must be a list of rules")
        return cls(
            latency_ms=low,
            latency_max_ms=high,
            error_rate=_rate(obj.get("error_rate", 0.0), "faults.error_rate"),
            error_status=_int(
                obj.get("error_status", 503), "faults.error_status", minimum=500, maximum=599
            ),
            throttle_rate=_rate(obj.get("throttle_rate", 0.0), "faults.throttle_rate"),
            script=[
                ScriptedFault.from_json(rule, where=f"faults.script[{i}]")
                for i, rule in enumerate(script_raw)
            ],
        )


def parse_latency(value: Any) -> tuple[float, float | None]:
    """``50`` -> fixed 50 ms; ``[20, 80]`` or ``"20-80"`` -> uniform between 20 and 80 ms."""
    if isinstance(value, str) and "-" in value.strip("-"):
        low_s, _, high_s = value.partition("-")
        value = [low_s, high_s]
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise ValueError("faults.latency_ms: a number, or [min, max] in milliseconds")
        low, high = (_number(v, "faults.latency_ms") for v in value)
        if high < low:
            raise ValueError("faults.latency_ms: max is below min")
        return low, high
    return _number(value, "faults.latency_ms"), None


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{where}: a number of milliseconds, not a boolean")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: a number of milliseconds") from None
    if number < 0:
        raise ValueError(f"{where}: must not be negative")
    return number


def _rate(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError(f"{where}: a probability between 0 and 1")
    return float(value)


def _int(value: Any, where: str, *, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{where}: an integer")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise ValueError(f"{where}: must be {bound}")
    return value

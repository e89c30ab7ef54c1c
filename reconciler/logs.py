"""Logging set-up for the CLI: level, text or JSON lines on stderr, and a last line of defence.

Modules log through ``logging.getLogger(__name__)`` and never format a secret into a message in
the first place. As a second guard, every value resolved as a secret or token during a run is
registered with that run's ``Redactor``, and the handler's filter replaces it wherever it would
appear in a log line emitted inside the run.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import TextIO

from reconciler.models import SENSITIVE

__all__ = ["Redactor", "configure_logging", "redact", "redacting", "register_sensitive"]

_MIN_LENGTH = 4  # redacting "a" or "1" everywhere would garble logs and reveal nothing


class Redactor:
    """The secrets and tokens of one run, replaced by ``(sensitive)`` wherever they would appear.

    One per run (``Run.redactor``), not one per process: a long-lived ``watch`` or a Python user
    running many plans must not accumulate every value it ever saw.
    """

    def __init__(self) -> None:
        self._values: set[str] = set()

    def __repr__(self) -> str:
        return f"Redactor({len(self._values)} values)"

    def add(self, value: str | None) -> None:
        if value and len(value) >= _MIN_LENGTH:
            self._values.add(value)

    def redact(self, text: str) -> str:
        for value in sorted(self._values, key=len, reverse=True):
            if value in text:
                text = text.replace(value, SENSITIVE)
        return text


_CURRENT: ContextVar[Redactor | None] = ContextVar("reconciler_redactor", default=None)


@contextmanager
def redacting(redactor: Redactor) -> Iterator[Redactor]:
    """Make ``redactor`` the one that log lines of this context (and its tasks) go through."""
    token = _CURRENT.set(redactor)
    try:
        yield redactor
    finally:
        _CURRENT.reset(token)


def register_sensitive(value: str | None) -> None:
    """Never let ``value`` reach a log line of the current run (secrets, tokens)."""
    current = _CURRENT.get()
    if current is not None:
        current.add(value)


def redact(text: str) -> str:
    current = _CURRENT.get()
    return current.redact(text) if current is not None else text


class _RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg = redact(message)
        record.args = None
        return True


class _JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat().replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and record.exc_info[1] is not None:
            payload["error"] = redact(repr(record.exc_info[1]))
        return json.dumps(payload)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at each record, not the one at set-up time."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


def configure_logging(
    *, level: str = "warning", fmt: str = "text", stream: TextIO | None = None
) -> None:
    """Route the ``reconciler`` loggers to stderr (or ``stream``) at ``level``."""
    handler = logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    handler.addFilter(_RedactingFilter())
    if fmt == "json":
        handler.setFormatter(_JSONFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("reconciler")
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    root.propagate = False

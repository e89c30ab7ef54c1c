"""Logging set-up for the CLI: level, text or JSON lines on stderr, and a last line of defence.

Modules log through ``logging.getLogger(__name__)`` and never format a secret into a message in
the first place. As a second guard, every value resolved as a secret or token is registered here,
and the handler's filter replaces it wherever it would appear in a log line.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import TextIO

from reconciler.models import SENSITIVE

__all__ = ["configure_logging", "redact", "register_sensitive"]

_SENSITIVE_VALUES: set[str] = set()
_MIN_LENGTH = 4  # redacting "a" or "1" everywhere would garble logs and reveal nothing


def register_sensitive(value: str | None) -> None:
    """Never let ``value`` reach a log line (secrets, tokens)."""
    if value and len(value) >= _MIN_LENGTH:
        _SENSITIVE_VALUES.add(value)


def redact(text: str) -> str:
    for value in sorted(_SENSITIVE_VALUES, key=len, reverse=True):
        if value in text:
            text = text.replace(value, SENSITIVE)
    return text


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


def configure_logging(
    *, level: str = "warning", fmt: str = "text", stream: TextIO | None = None
) -> None:
    """Route the ``reconciler`` loggers to stderr (or ``stream``) at ``level``."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
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

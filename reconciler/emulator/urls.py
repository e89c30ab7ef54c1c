"""What an ``emulator:[PATH]`` API URL means; importable without loading the emulator itself.

The CLI and the client check every ``--api-url`` with ``is_emulator_url``; keeping this module
free of starlette and uvicorn keeps that check (and every CLI start-up) cheap.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "DEFAULT_EMULATOR_PATH",
    "EMULATOR_BASE_URL",
    "EMULATOR_SCHEME",
    "emulator_path",
    "is_emulator_url",
]

EMULATOR_SCHEME = "emulator:"
DEFAULT_EMULATOR_PATH = ".reconcile/emulator.json"
EMULATOR_BASE_URL = "http://emulator.invalid"
"""The base URL to give httpx; ``.invalid`` can never resolve, so nothing leaves the process."""


def is_emulator_url(url: str) -> bool:
    """True for ``emulator:`` and ``emulator:PATH``."""
    return url.startswith(EMULATOR_SCHEME)


def emulator_path(url: str) -> Path:
    """The state file of an ``emulator:[PATH]`` URL (relative to the working directory)."""
    if not is_emulator_url(url):
        raise ValueError(f"not an emulator URL: {url!r}")
    return Path(url[len(EMULATOR_SCHEME) :] or DEFAULT_EMULATOR_PATH)

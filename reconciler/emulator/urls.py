"""What an ``emulator:[PATH]`` API URL means; importable without loading the emulator itself.

The CLI and the client check every ``--api-url`` with ``is_emulator_url``; keeping this module
free of starlette and uvicorn keeps that check (and every CLI start-up) cheap.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from reconciler.hosts import is_loopback_host as is_loopback

__all__ = [
    "DEFAULT_EMULATOR_PATH",
    "EMULATOR_BASE_URL",
    "EMULATOR_SCHEME",
    "emulator_path",
    "is_emulator_url",
    "is_local_host_header",
    "is_loopback",
    "is_loopback_origin",
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


def _host_of(value: str) -> str | None:
    """The host of a ``Host`` header value (``name``, ``name:port``, ``[v6]:port``), or None
    when it is not one."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        host, rest = value[1:end], value[end + 1 :]
    else:
        host, sep, port = value.partition(":")
        rest = f":{port}" if sep else ""
    if rest and not (rest.startswith(":") and rest[1:].isdigit()):
        return None
    return host or None


_IN_PROCESS_HOST = urlsplit(EMULATOR_BASE_URL).hostname


def is_local_host_header(value: str | None) -> bool:
    """Whether a request's ``Host`` names this machine's loopback (any port) or the in-process
    transport's ``emulator.invalid``: the only hosts the control API answers (a DNS-rebinding
    page reaches a loopback server under its own domain name, which this refuses)."""
    if not value:
        return False
    host = _host_of(value)
    return host is not None and (host == _IN_PROCESS_HOST or is_loopback(host))


def is_loopback_origin(value: str) -> bool:
    """Whether an ``Origin`` header is a page served from loopback (``http://localhost:3000``)."""
    try:
        parts = urlsplit(value.strip())
        host = parts.hostname
        _ = parts.port  # raises ValueError for a port that is not a number
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and host is not None and is_loopback(host)

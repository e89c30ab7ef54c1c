"""``--api-url emulator:[PATH]``: the emulator in-process, behind an httpx transport.

``open_emulator("emulator:PATH")`` loads the account persisted at PATH (default
``.reconcile/emulator.json``; created from the demo seed on first use) and returns an
``InProcessEmulator`` whose ``transport`` plugs into ``httpx.AsyncClient(transport=...,
base_url=...)``. Every request that changes the account is persisted before its response is
returned (a fsynced journal line, ``persist.py``), so ``plan``, ``apply`` and ``drift`` run as
separate CLI invocations see one account. Before each request the handle catches up with what
another handle or process wrote since. No token is needed unless the file's settings grant
tokens; the rate, faults and echo modes come from the file's settings too.

A "drop" fault surfaces as ``httpx.RemoteProtocolError``, exactly what a client sees when a
server hangs up. This module never writes a secret itself: ``persist.py`` writes what the
store keeps (digests, or plaintext secrets in ``secret_echo: plain`` mode only).
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx
from starlette.types import ASGIApp, Receive, Scope, Send

from reconciler.emulator.app import DROP_EXTENSION, create_app
from reconciler.emulator.persist import StoreFile
from reconciler.emulator.store import EmulatorStore
from reconciler.emulator.urls import (
    DEFAULT_EMULATOR_PATH,
    EMULATOR_BASE_URL,
    EMULATOR_SCHEME,
    emulator_path,
    is_emulator_url,
)

__all__ = [
    "DEFAULT_EMULATOR_PATH",
    "EMULATOR_BASE_URL",
    "EMULATOR_SCHEME",
    "EmulatorTransport",
    "InProcessEmulator",
    "emulator_path",
    "is_emulator_url",
    "open_emulator",
]


class _Dropped(Exception):
    """Raised past the ASGI app so the transport can turn it into a transport error."""


def _with_drop(app: ASGIApp) -> ASGIApp:
    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        dropped = False

        async def drop(_receive: Receive) -> None:
            nonlocal dropped
            dropped = True

        scope = {**scope, "extensions": {**scope.get("extensions", {}), DROP_EXTENSION: drop}}
        await app(scope, receive, send)
        if dropped:
            raise _Dropped

    return wrapped


class EmulatorTransport(httpx.AsyncBaseTransport):
    """An ``httpx.ASGITransport`` that can also hang up, with hooks around each request."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        before_request: Callable[[], None] | None = None,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self._inner = httpx.ASGITransport(app=_with_drop(app))
        self._before = before_request
        self._on_close = on_close

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._before is not None:
            self._before()
        try:
            return await self._inner.handle_async_request(request)
        except _Dropped:
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a response.", request=request
            ) from None

    async def aclose(self) -> None:
        await self._inner.aclose()
        if self._on_close is not None:
            self._on_close()


@dataclass
class InProcessEmulator:
    """A persisted emulator and the transport that reaches it."""

    path: Path
    store: EmulatorStore
    transport: EmulatorTransport
    base_url: str = EMULATOR_BASE_URL

    def client(self, **kwargs: object) -> httpx.AsyncClient:
        """An ``AsyncClient`` wired to this emulator (extra kwargs go to ``AsyncClient``)."""
        return httpx.AsyncClient(
            transport=self.transport,
            base_url=self.base_url,
            **kwargs,  # type: ignore[arg-type]
        )


def open_emulator(
    url: str = EMULATOR_SCHEME,
    *,
    clock: Callable[[], float] = time.monotonic,
    rng: random.Random | None = None,
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
) -> InProcessEmulator:
    """The in-process emulator of ``emulator:[PATH]``; creates and seeds PATH on first use.

    Raises ``ConfigError`` when PATH exists but is not an emulator state file.
    """
    path = emulator_path(url)
    handle = StoreFile.open(path)
    store = handle.store
    app = create_app(
        store,
        require_auth=False,
        rate=store.settings.rate,
        burst=store.settings.burst,
        clock=clock,
        on_change=handle.flush,
        rng=rng,
        sleep=sleep,
    )
    transport = EmulatorTransport(app, before_request=handle.refresh, on_close=handle.close)
    return InProcessEmulator(path=path, store=store, transport=transport)

"""``--api-url emulator:[PATH]``: the emulator in-process, behind an httpx transport.

``open_emulator("emulator:PATH")`` loads the account persisted at PATH (default
``.reconcile/emulator.json``; created from the demo seed on first use) and returns an
``InProcessEmulator`` whose ``transport`` plugs into ``httpx.AsyncClient(transport=...,
base_url=...)``. Every request that changes the account is persisted before its response is
returned (atomic write), so ``plan``, ``apply`` and ``drift`` run as separate CLI invocations
see one account. Before each request the file is re-read if another handle or process changed
it since. No token is needed; the rate and faults come from the file's settings.

A "drop" fault surfaces as ``httpx.RemoteProtocolError``, exactly what a client sees when a
server hangs up. This module never writes a secret: the store keeps only digests.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx
from starlette.types import ASGIApp, Receive, Scope, Send

from reconciler.emulator.app import DROP_EXTENSION, create_app
from reconciler.emulator.store import EmulatorStore, load_or_seed
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


class _FileSync:
    """Keeps one store and one file in step: reload when the file moved on, save on change."""

    def __init__(self, path: Path, store: EmulatorStore) -> None:
        self.path = path
        self.store = store
        self._seen = self._stamp()

    def _stamp(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def refresh(self) -> None:
        stamp = self._stamp()
        if stamp is not None and stamp != self._seen:
            fresh = EmulatorStore.load(self.path)
            # In place: the app holds this object.
            self.store.load_json(fresh.to_json())
            self._seen = stamp

    def save(self, _store: EmulatorStore | None = None) -> None:
        self.store.save(self.path)
        self._seen = self._stamp()


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
    store = load_or_seed(path)
    sync = _FileSync(path, store)
    app = create_app(
        store,
        require_auth=False,
        rate=store.settings.rate,
        burst=store.settings.burst,
        clock=clock,
        on_change=sync.save,
        rng=rng,
        sleep=sleep,
    )
    transport = EmulatorTransport(app, before_request=sync.refresh, on_close=sync.save)
    return InProcessEmulator(path=path, store=store, transport=transport)

"""Serving the emulator over real HTTP with uvicorn: from the CLI, or in a test's thread.

Two things uvicorn does not do on its own, done here:

* **Hanging up.** A "drop" fault must close the TCP connection without a byte of answer. ASGI
  cannot say that, so the server's protocol records each connection's transport by client
  address and the app gets a ``DROP_EXTENSION`` callable that aborts it.
* **Stopping quietly.** Ctrl-C and SIGTERM stop the server gracefully and ``serve`` returns;
  the signal is not re-raised afterwards (uvicorn's default), so the command exits 0.

The socket is bound before the server starts, so the caller knows the real port (``port=0``)
before printing where it listens. Loopback is the default; ``is_loopback`` is what the CLI
checks before binding anything else. Nothing here logs request headers.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from reconciler.emulator.app import DROP_EXTENSION
from reconciler.emulator.urls import is_loopback

__all__ = ["EmulatorServer", "base_url", "bind_socket", "is_loopback", "serve", "serve_in_thread"]

_Registry = dict[tuple[str, int], asyncio.Transport]


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (``port`` 0 picks a free one)."""
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, reuse_port=False)


def base_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def _protocol_class(registry: _Registry) -> type[H11Protocol]:
    class _TrackingProtocol(H11Protocol):
        """uvicorn's h11 protocol, remembering each connection's transport by client address."""

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            sock = transport.get_extra_info("socket")
            if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
                # h11 writes headers and body separately; without this, Nagle's algorithm and
                # the client's delayed ACK add ~40 ms to every keep-alive request.
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.client:
                registry[self.client] = transport

        def connection_lost(self, exc: Exception | None) -> None:
            if self.client:
                registry.pop(self.client, None)
            super().connection_lost(exc)

    return _TrackingProtocol


def _with_drop(app: ASGIApp, registry: _Registry) -> ASGIApp:
    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope.get("client"):
            await app(scope, receive, send)
            return
        client = (str(scope["client"][0]), int(scope["client"][1]))

        async def drop(receive: Receive) -> None:
            transport = registry.get(client)
            if transport is not None:
                transport.abort()
            # Wait until uvicorn has seen the hang-up, so it does not answer 500 for us.
            while (await receive())["type"] != "http.disconnect":
                pass

        extensions = {**scope.get("extensions", {}), DROP_EXTENSION: drop}
        await app({**scope, "extensions": extensions}, receive, send)

    return wrapped


class EmulatorServer(uvicorn.Server):
    """A uvicorn server that stops on SIGINT/SIGTERM without re-raising the signal."""

    stop_signal: int | None = None
    on_started: Callable[[], None] | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and self.on_started is not None:
            self.on_started()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self._stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _stop(self, sig: int, frame: FrameType | None) -> None:
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True  # a second Ctrl-C stops waiting for open connections
        self.should_exit = True
        self.stop_signal = sig


def _build(app: ASGIApp, *, log_level: str, access_log: bool) -> EmulatorServer:
    registry: _Registry = {}
    config = uvicorn.Config(
        _with_drop(app, registry),
        http=_protocol_class(registry),
        ws="none",
        lifespan="off",
        loop="asyncio",
        log_config=None,
        log_level=log_level,
        access_log=access_log,
        timeout_graceful_shutdown=2,
    )
    return EmulatorServer(config)


def serve(
    app: ASGIApp,
    sock: socket.socket,
    *,
    log_level: str = "warning",
    access_log: bool = False,
    on_started: Callable[[], None] | None = None,
) -> int | None:
    """Serve ``app`` on ``sock`` until SIGINT/SIGTERM; returns the signal that stopped it."""
    server = _build(app, log_level=log_level, access_log=access_log)
    server.on_started = on_started
    server.run(sockets=[sock])
    return server.stop_signal


@contextlib.contextmanager
def serve_in_thread(
    app: ASGIApp, *, host: str = "127.0.0.1", port: int = 0, startup_timeout: float = 10.0
) -> Iterator[str]:
    """Serve ``app`` from a background thread; yields the base URL; stops it on exit."""
    sock = bind_socket(host, port)
    url = base_url(sock)
    server = _build(app, log_level="warning", access_log=False)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"emulator {url}", daemon=True
    )
    thread.start()
    try:
        deadline = time.monotonic() + startup_timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the emulator did not start on {url}")
            time.sleep(0.005)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=startup_timeout)
        sock.close()

"""The Typeform API emulator: one implementation, three ways to run it.

* served over HTTP by uvicorn (``reconcile emulator``; ``server.serve`` / ``serve_in_thread``),
* in-process behind an httpx transport for ``--api-url emulator:[PATH]`` (``open_emulator``),
* as pytest fixtures (``tests/conftest.py``), built from ``create_app``.

It implements SPEC section 8 with Typeform's shapes, per-account rate limiting, tokens with
scopes, fault injection, the echo modes SPEC 9 asks for (``secret_echo``, ``event_types_echo``)
and a control API under ``/_emulator/`` that answers only local requests. It never logs a
webhook secret or a bearer token, and never returns or persists a secret (kept as a SHA-256
digest) except in ``secret_echo: plain`` mode, which exists to test clients against an API that
echoes secrets; tokens are kept as SHA-256 digests only.

Names are imported lazily: ``from reconciler.emulator import is_emulator_url`` must stay cheap
for every CLI command, so starlette and uvicorn load only when the emulator is really used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reconciler.emulator.app import DROP_EXTENSION, ConnectionDropUnsupported, create_app
    from reconciler.emulator.faults import FaultAction, FaultDecision, Faults, ScriptedFault
    from reconciler.emulator.persist import StoreFile
    from reconciler.emulator.ratelimit import TokenBucketLimiter
    from reconciler.emulator.seed import DEMO_SEED, Seed, hash_secret, load_seed, parse_seed
    from reconciler.emulator.server import bind_socket, serve, serve_in_thread
    from reconciler.emulator.store import (
        EmulatorSettings,
        EmulatorStore,
        EventTypesEcho,
        SecretEcho,
        TokenGrant,
        Webhook,
        configure,
        hash_token,
        load_or_seed,
    )
    from reconciler.emulator.transport import EmulatorTransport, InProcessEmulator, open_emulator
    from reconciler.emulator.urls import (
        DEFAULT_EMULATOR_PATH,
        EMULATOR_BASE_URL,
        emulator_path,
        is_emulator_url,
        is_loopback,
    )

_WHERE = {
    "DROP_EXTENSION": "app",
    "ConnectionDropUnsupported": "app",
    "create_app": "app",
    "FaultAction": "faults",
    "FaultDecision": "faults",
    "Faults": "faults",
    "ScriptedFault": "faults",
    "TokenBucketLimiter": "ratelimit",
    "DEMO_SEED": "seed",
    "Seed": "seed",
    "hash_secret": "seed",
    "load_seed": "seed",
    "parse_seed": "seed",
    "StoreFile": "persist",
    "bind_socket": "server",
    "is_loopback": "urls",
    "serve": "server",
    "serve_in_thread": "server",
    "EmulatorSettings": "store",
    "EmulatorStore": "store",
    "EventTypesEcho": "store",
    "SecretEcho": "store",
    "TokenGrant": "store",
    "Webhook": "store",
    "configure": "store",
    "hash_token": "store",
    "load_or_seed": "store",
    "EmulatorTransport": "transport",
    "InProcessEmulator": "transport",
    "open_emulator": "transport",
    "DEFAULT_EMULATOR_PATH": "urls",
    "EMULATOR_BASE_URL": "urls",
    "emulator_path": "urls",
    "is_emulator_url": "urls",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "DEFAULT_EMULATOR_PATH",
    "DEMO_SEED",
    "DROP_EXTENSION",
    "EMULATOR_BASE_URL",
    "ConnectionDropUnsupported",
    "EmulatorSettings",
    "EmulatorStore",
    "EmulatorTransport",
    "EventTypesEcho",
    "FaultAction",
    "FaultDecision",
    "Faults",
    "InProcessEmulator",
    "ScriptedFault",
    "SecretEcho",
    "Seed",
    "StoreFile",
    "TokenBucketLimiter",
    "TokenGrant",
    "Webhook",
    "bind_socket",
    "configure",
    "create_app",
    "emulator_path",
    "hash_secret",
    "hash_token",
    "is_emulator_url",
    "is_loopback",
    "load_or_seed",
    "load_seed",
    "open_emulator",
    "parse_seed",
    "serve",
    "serve_in_thread",
]

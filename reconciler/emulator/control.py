"""The emulator's control API under ``/_emulator/``: what a test or a demo steers it with.

``GET stats``, ``POST reset``, ``POST seed``, ``GET state``, ``GET|POST|DELETE faults``. These
routes are neither authenticated nor rate limited and are not counted in the stats: they are a
local test tool, which is why the served emulator binds loopback unless told otherwise.

``state`` shows each webhook's secret only as ``has_secret`` and its SHA-256; never the value.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from reconciler.emulator.faults import Faults
from reconciler.emulator.ratelimit import TokenBucketLimiter
from reconciler.emulator.seed import parse_seed
from reconciler.emulator.store import EmulatorStore, Stats

__all__ = ["CONTROL_PREFIX", "control_routes", "state_json"]

CONTROL_PREFIX = "/_emulator"


def state_json(store: EmulatorStore) -> dict[str, Any]:
    """Everything in the account, secrets redacted to a flag and a digest."""
    return {
        "workspaces": [{"id": w.id, "name": w.name} for w in store.workspaces.values()],
        "forms": [
            {"id": f.id, "title": f.title, "workspace_id": f.workspace_id}
            for f in store.forms.values()
        ],
        "webhooks": [
            {
                **w.to_api(),
                "has_secret": w.secret_sha256 is not None,
                "secret_sha256": w.secret_sha256,
            }
            for w in store.webhooks.values()
        ],
        "settings": store.settings.to_json(),
    }


def control_routes(
    store: EmulatorStore,
    *,
    limiter: TokenBucketLimiter,
    on_change: Callable[[EmulatorStore], None] | None,
) -> list[Route]:
    def changed() -> None:
        store.touch()
        if on_change is not None:
            on_change(store)

    async def stats(request: Request) -> Response:
        return JSONResponse(store.stats.to_json())

    async def reset(request: Request) -> Response:
        body = await _json_body(request)
        empty = request.query_params.get("empty", "").lower() in ("1", "true", "yes")
        if isinstance(body, dict) and body.get("webhooks") == "empty":
            empty = True
        store.reset(empty=empty)
        limiter.reset()
        changed()
        return JSONResponse({"reset": True, "webhooks": len(store.webhooks)})

    async def seed(request: Request) -> Response:
        body = await _json_body(request)
        if body is _INVALID:
            return _bad_request("The seed must be a JSON document")
        try:
            parsed = parse_seed(body)
        except ValueError as exc:
            return _bad_request(f"Invalid seed: {exc}")
        store.apply_seed(parsed)
        store.stats = Stats()
        limiter.reset()
        changed()
        return JSONResponse(state_json(store))

    async def state(request: Request) -> Response:
        return JSONResponse(state_json(store))

    async def faults(request: Request) -> Response:
        if request.method == "POST":
            body = await _json_body(request)
            if body is _INVALID:
                return _bad_request("The faults must be a JSON object")
            try:
                store.settings.faults = Faults.from_json(body)
            except ValueError as exc:
                return _bad_request(str(exc))
            changed()
        elif request.method == "DELETE":
            store.settings.faults = Faults()
            changed()
        return JSONResponse(store.settings.faults.to_json())

    return [
        Route(f"{CONTROL_PREFIX}/stats", stats, methods=["GET"]),
        Route(f"{CONTROL_PREFIX}/reset", reset, methods=["POST"]),
        Route(f"{CONTROL_PREFIX}/seed", seed, methods=["POST"]),
        Route(f"{CONTROL_PREFIX}/state", state, methods=["GET"]),
        Route(f"{CONTROL_PREFIX}/faults", faults, methods=["GET", "POST", "DELETE"]),
    ]


_INVALID = object()


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return _INVALID


def _bad_request(description: str) -> JSONResponse:
    return JSONResponse({"code": "VALIDATION_ERROR", "description": description}, status_code=400)

"""The emulator's control API under ``/_emulator/``: what a test or a demo steers it with.

``GET stats``, ``POST reset``, ``POST seed``, ``GET state``, ``GET|POST|DELETE faults``,
``GET|POST settings`` (echo modes and token grants), and ``POST webhooks/{form_id}/{tag}`` (a
change made outside the tool, for drift demos and tests). These routes are neither authenticated nor
rate limited and are not counted in the stats: they are a local test tool, which is why the
served emulator binds loopback unless told otherwise.

Binding loopback is not enough on a developer's machine: a web page can reach a loopback server
through DNS rebinding (its own domain name resolving to 127.0.0.1) or by cross-site requests.
So every control route first checks the request: the ``Host`` must be a loopback name or the
in-process transport's host (else 403), an ``Origin``, if any, must be a loopback page (else
403), and a state-changing request with a body must say ``Content-Type: application/json``
(else 415) -- which a browser cannot send cross-origin without a CORS preflight, which this
server never answers.

``state`` and ``settings`` show each webhook's secret only as ``has_secret`` and its SHA-256,
and each granted token only as its SHA-256; never a value.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from reconciler.emulator.faults import Faults
from reconciler.emulator.ratelimit import TokenBucketLimiter
from reconciler.emulator.seed import parse_seed
from reconciler.emulator.store import EmulatorStore, Stats, WebhookChange
from reconciler.emulator.urls import is_local_host_header, is_loopback_origin

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

    async def settings(request: Request) -> Response:
        if request.method == "POST":
            body = await _json_body(request)
            if not isinstance(body, dict):
                return _bad_request("The settings must be a JSON object")
            unknown = set(body) - _MODE_KEYS
            if unknown:
                return _bad_request(
                    f"settings: unknown key(s) {', '.join(sorted(map(str, unknown)))}; "
                    f"this route sets {', '.join(sorted(_MODE_KEYS))}"
                )
            try:
                store.settings.set_modes(
                    secret_echo=body.get("secret_echo"),
                    event_types_echo=body.get("event_types_echo"),
                    tokens=body.get("tokens"),
                )
            except ValueError as exc:
                return _bad_request(str(exc))
            store.settings_changed()
            if on_change is not None:
                on_change(store)
        return JSONResponse(store.settings.to_json())

    async def outside(request: Request) -> Response:
        """Change a webhook as someone outside the tool would (Typeform's UI, its disabling a
        webhook whose receiver answered 404/410): no token, no rate limit, not in the stats."""
        form_id, tag = request.path_params["form_id"], request.path_params["tag"]
        body = await _json_body(request)
        if not isinstance(body, dict):
            return _bad_request("The change must be a JSON object of webhook fields")
        unknown = set(body) - _OUTSIDE_FIELDS
        kinds = {"enabled": bool, "verify_ssl": bool, "url": str, "event_types": dict}
        wrong = [k for k in set(body) & _OUTSIDE_FIELDS if not isinstance(body[k], kinds[k])]
        if unknown or wrong or not body:
            return _bad_request(
                f"change one or more of {', '.join(sorted(_OUTSIDE_FIELDS))}, with their API "
                "types (the secret cannot be changed here)"
            )
        if store.get_webhook(form_id, tag) is None:
            return JSONResponse(
                {"code": "NOT_FOUND", "description": f"no webhook {form_id}/{tag}"},
                status_code=404,
            )
        hook, _ = store.put_webhook(form_id, tag, WebhookChange(**body))
        changed()
        return JSONResponse(hook.to_api())

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
        Route(f"{CONTROL_PREFIX}/stats", _guarded(stats), methods=["GET"]),
        Route(f"{CONTROL_PREFIX}/reset", _guarded(reset), methods=["POST"]),
        Route(f"{CONTROL_PREFIX}/seed", _guarded(seed), methods=["POST"]),
        Route(f"{CONTROL_PREFIX}/state", _guarded(state), methods=["GET"]),
        Route(f"{CONTROL_PREFIX}/faults", _guarded(faults), methods=["GET", "POST", "DELETE"]),
        Route(f"{CONTROL_PREFIX}/settings", _guarded(settings), methods=["GET", "POST"]),
        Route(
            f"{CONTROL_PREFIX}/webhooks/{{form_id}}/{{tag}}", _guarded(outside), methods=["POST"]
        ),
    ]


_OUTSIDE_FIELDS = frozenset({"enabled", "url", "verify_ssl", "event_types"})


_MODE_KEYS = frozenset({"secret_echo", "event_types_echo", "tokens"})
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

ControlHandler = Callable[[Request], Awaitable[Response]]


def _guarded(handler: ControlHandler) -> ControlHandler:
    """``handler``, answering only local, same-origin, JSON requests (see the module doc)."""

    async def guarded(request: Request) -> Response:
        refusal = await _refusal(request)
        return refusal if refusal is not None else await handler(request)

    return guarded


async def _refusal(request: Request) -> Response | None:
    headers = request.headers
    if not is_local_host_header(headers.get("host")):
        return _error(
            403,
            "FORBIDDEN_HOST",
            "The control API answers only requests addressed to a loopback host "
            "(localhost, 127.0.0.1, [::1])",
        )
    origin = headers.get("origin")
    if origin is not None and not is_loopback_origin(origin):
        return _error(
            403, "FORBIDDEN_ORIGIN", "The control API refuses requests from other origins"
        )
    if headers.get("sec-fetch-site", "").lower() == "cross-site":
        return _error(403, "FORBIDDEN_ORIGIN", "The control API refuses cross-site requests")
    if request.method in _SAFE_METHODS:
        return None
    content_type = headers.get("content-type")
    media = (content_type or "").split(";", 1)[0].strip().lower()
    is_json = media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )
    if content_type is not None and not is_json:
        return _error(415, "UNSUPPORTED_MEDIA_TYPE", "Send the control API application/json")
    if content_type is None and (await request.body()).strip():
        return _error(415, "UNSUPPORTED_MEDIA_TYPE", "Send the control API application/json")
    return None


def _error(status: int, code: str, description: str) -> JSONResponse:
    return JSONResponse({"code": code, "description": description}, status_code=status)


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
    return _error(400, "VALIDATION_ERROR", description)

"""The Typeform API as a starlette ASGI application (SPEC section 8), served or in-process.

Every API request goes through one pipeline, in the order the real service applies it:
authentication (401 / 403), the per-token rate limit (429 + ``Retry-After``), injected faults
(latency, 5xx, 429, scripted answers, dropped connections), then the handler. Responses use
Typeform's field names and its error shape ``{"code", "description", "details"}``, so Typeform's
own SDKs and our client work against it unchanged.

Control routes under ``/_emulator/`` (``control.py``) skip the pipeline: they are a local test
tool. What this module must never do: return, log or echo a webhook secret or a bearer token.
"""

from __future__ import annotations

import hmac
import json
import random
import time
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from reconciler.emulator.control import control_routes
from reconciler.emulator.faults import FaultAction
from reconciler.emulator.ratelimit import TokenBucketLimiter
from reconciler.emulator.store import EmulatorStore, Form, WebhookChange
from reconciler.emulator.validation import WebhookValidationError, parse_webhook_body

__all__ = ["DROP_EXTENSION", "ConnectionDropUnsupported", "create_app", "error_response"]

DROP_EXTENSION = "reconciler.emulator.drop"
"""ASGI scope extension: ``async drop(receive)`` closes the connection without an answer.

The server (``server.py``) and the in-process transport (``transport.py``) provide it; ASGI
itself has no way to say "hang up", so each host does it its own way.
"""

MAX_PAGE_SIZE = 200
DEFAULT_PAGE_SIZE = 10

Handler = Callable[[Request], Awaitable[Response]]
OnChange = Callable[[EmulatorStore], None]


class ConnectionDropUnsupported(RuntimeError):
    """A drop fault fired in a host that cannot drop connections (no ``DROP_EXTENSION``)."""


def error_response(
    status: int,
    code: str,
    description: str,
    *,
    details: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """Typeform's error body."""
    body: dict[str, Any] = {"code": code, "description": description}
    if details:
        body["details"] = details
    return JSONResponse(body, status_code=status, headers=headers)


class _DropResponse(Response):
    """Sends nothing: asks the host to close the connection instead."""

    def __init__(self) -> None:
        super().__init__(status_code=599)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        drop = scope.get("extensions", {}).get(DROP_EXTENSION)
        if drop is None:
            raise ConnectionDropUnsupported(
                "a 'drop' fault needs the emulator's server or in-process transport"
            )
        await drop(receive)


def create_app(
    store: EmulatorStore,
    *,
    token: str | None = None,
    require_auth: bool = True,
    rate: float = 2.0,
    burst: int = 2,
    clock: Callable[[], float] = time.monotonic,
    on_change: OnChange | None = None,
    rng: random.Random | None = None,
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
) -> Starlette:
    """Build the emulator for ``store``.

    ``token``: the only bearer token accepted; ``None`` accepts any non-empty one.
    ``require_auth=False`` also accepts requests without a token (the in-process ``emulator:``
    needs none). ``rate``/``burst``: the per-token bucket; ``clock`` drives it. ``on_change`` is
    called after any request that changed the store (to persist it). ``rng`` drives random
    faults and latency; ``sleep`` waits out injected latency.
    """
    limiter = TokenBucketLimiter(rate=rate, burst=burst, clock=clock)
    api = _Api(
        store,
        token=token,
        require_auth=require_auth,
        limiter=limiter,
        on_change=on_change,
        rng=rng or random.Random(),
        sleep=sleep,
    )
    routes = [
        Route("/forms", api.endpoint("/forms", api.list_forms), methods=["GET"]),
        Route("/forms/{form_id}", api.endpoint("/forms/{form_id}", api.get_form), methods=["GET"]),
        Route("/workspaces", api.endpoint("/workspaces", api.list_workspaces), methods=["GET"]),
        Route(
            "/forms/{form_id}/webhooks",
            api.endpoint("/forms/{form_id}/webhooks", api.list_webhooks),
            methods=["GET"],
        ),
        Route(
            "/forms/{form_id}/webhooks/{tag}",
            api.endpoint("/forms/{form_id}/webhooks/{tag}", api.webhook),
            methods=["GET", "PUT", "DELETE"],
        ),
        *control_routes(store, limiter=limiter, on_change=on_change),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: api.http_exception})
    app.state.store = store
    return app


class _Api:
    """The pipeline and the handlers; one instance per app."""

    def __init__(
        self,
        store: EmulatorStore,
        *,
        token: str | None,
        require_auth: bool,
        limiter: TokenBucketLimiter,
        on_change: OnChange | None,
        rng: random.Random,
        sleep: Callable[[float], Awaitable[None]],
    ) -> None:
        self.store = store
        self._token = token
        self._require_auth = require_auth
        self._limiter = limiter
        self._on_change = on_change
        self._rng = rng
        self._sleep = sleep

    # ----------------------------------------------------------------- pipeline

    def endpoint(self, template: str, handler: Handler) -> Handler:
        async def run(request: Request) -> Response:
            route = f"{request.method} {template}"
            version = self.store.version
            response = await self._pipeline(request, handler)
            self.store.stats.count(
                route, "dropped" if isinstance(response, _DropResponse) else response.status_code
            )
            if self.store.version != version and self._on_change is not None:
                self._on_change(self.store)
            return response

        return run

    async def _pipeline(self, request: Request, handler: Handler) -> Response:
        token, refusal = self._authenticate(request)
        if refusal is not None:
            return refusal
        retry_after = self._limiter.acquire(token)
        if retry_after is not None:
            return _too_many_requests(retry_after, self._limiter.rate)
        faults = self.store.settings.faults
        if not faults.active:
            return await handler(request)
        decision = faults.decide(request.method, request.url.path, self._rng)
        if decision.scripted:
            self.store.touch()
        if decision.latency > 0:
            await self._sleep(decision.latency)
        if decision.action is FaultAction.DROP:
            return _DropResponse()
        if decision.action is FaultAction.DROP_AFTER:
            await handler(request)
            return _DropResponse()
        if decision.action is FaultAction.RESPOND:
            if decision.status == 429:
                return _too_many_requests(decision.retry_after or 1, self._limiter.rate)
            headers = {"Retry-After": str(decision.retry_after)} if decision.retry_after else None
            return error_response(
                decision.status,
                HTTPStatus(decision.status).phrase.upper().replace(" ", "_").replace("-", "_"),
                "injected fault: the emulator was told to fail this request",
                headers=headers,
            )
        return await handler(request)

    def _authenticate(self, request: Request) -> tuple[str, Response | None]:
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        value = value.strip()
        if not header:
            if not self._require_auth:
                return "", None
            return "", error_response(
                401,
                "AUTHENTICATION_FAILED",
                "Authentication credentials not found on the Request Headers",
            )
        if scheme.lower() != "bearer" or not value:
            return "", error_response(
                401,
                "AUTHENTICATION_FAILED",
                "The Authorization header must be 'Bearer <personal access token>'",
            )
        if self._token is not None and not hmac.compare_digest(
            value.encode("utf-8"), self._token.encode("utf-8")
        ):
            return "", error_response(
                403, "AUTHENTICATION_ERROR", "The access token is incorrect for this account"
            )
        return value, None

    async def http_exception(self, request: Request, exc: Exception) -> Response:
        """Unknown paths and methods answer in Typeform's error shape too."""
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        self.store.stats.count(f"{request.method} (unmatched)", status)
        if status == 405:
            headers = getattr(exc, "headers", None)
            return error_response(
                405, "METHOD_NOT_ALLOWED", f"{request.method} is not allowed here", headers=headers
            )
        return error_response(status, "NOT_FOUND", f"no route for {request.url.path}")

    # ----------------------------------------------------------------- forms

    async def list_forms(self, request: Request) -> Response:
        page_or_error = _paging(request)
        if isinstance(page_or_error, Response):
            return page_or_error
        page, page_size = page_or_error
        total, page_count, forms = self.store.list_forms(
            page=page,
            page_size=page_size,
            search=request.query_params.get("search") or None,
            workspace_id=request.query_params.get("workspace_id") or None,
        )
        base = _base(request)
        return JSONResponse(
            {
                "total_items": total,
                "page_count": page_count,
                "items": [_form_summary(form, base) for form in forms],
            }
        )

    async def get_form(self, request: Request) -> Response:
        form_id = request.path_params["form_id"]
        form = self.store.forms.get(form_id)
        if form is None:
            return _form_not_found(form_id)
        base = _base(request)
        body = _form_summary(form, base)
        body.update(
            {
                "type": "form",
                "workspace": {"href": f"{base}/workspaces/{form.workspace_id}"},
                "fields": [],
            }
        )
        return JSONResponse(body)

    async def list_workspaces(self, request: Request) -> Response:
        page_or_error = _paging(request)
        if isinstance(page_or_error, Response):
            return page_or_error
        page, page_size = page_or_error
        total, page_count, spaces = self.store.list_workspaces(
            page=page, page_size=page_size, search=request.query_params.get("search") or None
        )
        base = _base(request)
        return JSONResponse(
            {
                "total_items": total,
                "page_count": page_count,
                "items": [
                    {
                        "id": w.id,
                        "name": w.name,
                        "default": False,
                        "shared": False,
                        "forms": {
                            "count": self.store.form_count(w.id),
                            "href": f"{base}/forms?workspace_id={w.id}",
                        },
                        "self": {"href": f"{base}/workspaces/{w.id}"},
                    }
                    for w in spaces
                ],
            }
        )

    # ----------------------------------------------------------------- webhooks

    async def list_webhooks(self, request: Request) -> Response:
        form_id = request.path_params["form_id"]
        if form_id not in self.store.forms:
            return _form_not_found(form_id)
        return JSONResponse({"items": [w.to_api() for w in self.store.list_webhooks(form_id)]})

    async def webhook(self, request: Request) -> Response:
        form_id = request.path_params["form_id"]
        tag = request.path_params["tag"]
        if form_id not in self.store.forms:
            return _form_not_found(form_id)
        if request.method == "PUT":
            return await self._put_webhook(request, form_id, tag)
        hook = self.store.get_webhook(form_id, tag)
        if hook is None:
            return error_response(
                404, "WEBHOOK_NOT_FOUND", f"Non existing webhook with tag {tag} on form {form_id}"
            )
        if request.method == "DELETE":
            self.store.delete_webhook(form_id, tag)
            return Response(status_code=204)
        return JSONResponse(hook.to_api())

    async def _put_webhook(self, request: Request, form_id: str, tag: str) -> Response:
        raw = await request.body()
        try:
            body = json.loads(raw) if raw.strip() else {}
        except (json.JSONDecodeError, UnicodeDecodeError):
            return error_response(400, "VALIDATION_ERROR", "The request body is not valid JSON")
        creating = self.store.get_webhook(form_id, tag) is None
        try:
            change: WebhookChange = parse_webhook_body(body, creating=creating)
        except WebhookValidationError as exc:
            return error_response(
                400, "VALIDATION_ERROR", "The webhook is not valid", details=exc.details
            )
        hook, _created = self.store.put_webhook(form_id, tag, change)
        return JSONResponse(hook.to_api())


# --------------------------------------------------------------------------- helpers


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _form_summary(form: Form, base: str) -> dict[str, Any]:
    return {
        "id": form.id,
        "title": form.title,
        "created_at": form.created_at,
        "last_updated_at": form.last_updated_at,
        "settings": {"is_public": True},
        "self": {"href": f"{base}/forms/{form.id}"},
        "theme": {"href": f"{base}/themes/default"},
        "_links": {"display": f"https://emulator.typeform.invalid/to/{form.id}"},
    }


def _form_not_found(form_id: str) -> JSONResponse:
    return error_response(404, "FORM_NOT_FOUND", f"Non existing form with uid {form_id}")


def _too_many_requests(retry_after: int, rate: float) -> JSONResponse:
    return error_response(
        429,
        "RATE_LIMIT_EXCEEDED",
        f"Too many requests: the limit is {rate:g} per second; retry after {retry_after} s",
        headers={"Retry-After": str(retry_after)},
    )


def _paging(request: Request) -> tuple[int, int] | Response:
    details = []
    values = {}
    for name, default, maximum in (
        ("page", 1, None),
        ("page_size", DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE),
    ):
        raw = request.query_params.get(name)
        try:
            value = default if raw in (None, "") else int(raw)
        except ValueError:
            value = 0
        if value < 1 or (maximum is not None and value > maximum):
            bound = f"between 1 and {maximum}" if maximum else "at least 1"
            details.append(
                {
                    "code": "INVALID_VALUE",
                    "description": f"{name} must be an integer {bound}",
                    "field": name,
                    "in": "query",
                }
            )
        values[name] = value
    if details:
        return error_response(400, "VALIDATION_ERROR", "Invalid query parameters", details=details)
    return values["page"], values["page_size"]

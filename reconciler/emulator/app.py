"""The Typeform API as a starlette ASGI application (SPEC section 8), served or in-process.

Every API request goes through one pipeline, in the order the real service applies it:
authentication (401 for a missing or unknown token), the token's scopes (403), the rate limit
of the token's account (429 + ``Retry-After``), injected faults (latency, 5xx, 429, scripted
answers, dropped connections), then the handler. Responses use Typeform's field names and its
error shape ``{"code", "description", "details"}``, so Typeform's own SDKs and our client work
against it unchanged.

Who may call: with no token configured, any non-empty bearer token, each its own account (its
own bucket). With the app's single ``token`` and/or the settings' token grants, only those;
tokens granted to one account share its bucket. Every account sees the same forms and webhooks
(one data set): the emulator tests rate limits and scopes per account, not tenancy.

What responses carry of a secret and of default ``event_types`` follows the settings' echo
modes (``secret_echo``, ``event_types_echo``), read on every request, so the control API can
switch them mid-test.

Control routes under ``/_emulator/`` (``control.py``) skip the pipeline: they are a local test
tool. What this module must never do: log or echo a bearer token, or return a webhook secret
outside ``secret_echo: plain`` mode.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Awaitable, Callable, Mapping
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
from reconciler.emulator.seed import hash_secret
from reconciler.emulator.store import (
    ALL_SCOPES,
    DEFAULT_EVENT_TYPES,
    FORM_SORT_KEYS,
    EmulatorStore,
    EventTypesEcho,
    Form,
    SecretEcho,
    TokenGrant,
    Webhook,
    WebhookChange,
    hash_token,
)
from reconciler.emulator.validation import WebhookValidationError, parse_webhook_body

__all__ = ["DROP_EXTENSION", "ConnectionDropUnsupported", "create_app", "error_response"]

DROP_EXTENSION = "reconciler.emulator.drop"
"""ASGI scope extension: ``async drop(receive)`` closes the connection without an answer.

The server (``server.py``) and the in-process transport (``transport.py``) provide it; ASGI
itself has no way to say "hang up", so each host does it its own way.
"""

MAX_PAGE_SIZE = 200
DEFAULT_PAGE_SIZE = 10
SECRET_MASK = "********"
"""What ``secret_echo: masked`` returns: fixed, so it tells nothing about the secret."""
SINGLE_TOKEN_ACCOUNT = "default"

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
    secret_echo: SecretEcho | str | None = None,
    event_types_echo: EventTypesEcho | str | None = None,
    tokens: Mapping[str, Any] | None = None,
) -> Starlette:
    """Build the emulator for ``store``.

    ``token``: a bearer token accepted with every scope (account ``"default"``); with neither
    it nor token grants in the settings, any non-empty token is accepted. ``require_auth=False``
    also accepts requests without a token when no token is configured (the in-process
    ``emulator:`` needs none). ``rate``/``burst``: the per-account bucket; ``clock`` drives it.
    ``on_change`` is called after any request that changed the store (to persist it). ``rng``
    drives random faults and latency; ``sleep`` waits out injected latency.

    ``secret_echo``, ``event_types_echo`` and ``tokens`` (``{TOKEN: {account, scopes}}``), when
    given, are written into ``store.settings`` (``None`` keeps what the store has); raises
    ``ValueError`` for a bad one.
    """
    if secret_echo is not None or event_types_echo is not None or tokens is not None:
        store.settings.set_modes(
            secret_echo=secret_echo, event_types_echo=event_types_echo, tokens=tokens
        )
        store.settings_changed()
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
    forms_read = {"GET": "forms:read"}
    webhooks_rw = {"GET": "webhooks:read", "PUT": "webhooks:write", "DELETE": "webhooks:write"}
    routes = [
        Route("/forms", api.endpoint("/forms", api.list_forms, forms_read), methods=["GET"]),
        Route(
            "/forms/{form_id}",
            api.endpoint("/forms/{form_id}", api.get_form, forms_read),
            methods=["GET"],
        ),
        Route(
            "/workspaces",
            api.endpoint("/workspaces", api.list_workspaces, forms_read),
            methods=["GET"],
        ),
        Route(
            "/forms/{form_id}/webhooks",
            api.endpoint("/forms/{form_id}/webhooks", api.list_webhooks, webhooks_rw),
            methods=["GET"],
        ),
        Route(
            "/forms/{form_id}/webhooks/{tag}",
            api.endpoint("/forms/{form_id}/webhooks/{tag}", api.webhook, webhooks_rw),
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
        self._single: dict[str, TokenGrant] = (
            {hash_token(token): TokenGrant(SINGLE_TOKEN_ACCOUNT, frozenset(ALL_SCOPES))}
            if token
            else {}
        )
        self._require_auth = require_auth
        self._limiter = limiter
        self._on_change = on_change
        self._rng = rng
        self._sleep = sleep

    # ----------------------------------------------------------------- pipeline

    def endpoint(self, template: str, handler: Handler, scopes: Mapping[str, str]) -> Handler:
        """``handler`` behind the pipeline; ``scopes``: the scope each method needs."""

        async def run(request: Request) -> Response:
            route = f"{request.method} {template}"
            version = self.store.version
            response = await self._pipeline(request, handler, scopes.get(request.method, ""))
            self.store.stats.count(
                route, "dropped" if isinstance(response, _DropResponse) else response.status_code
            )
            if self.store.version != version and self._on_change is not None:
                self._on_change(self.store)
            return response

        return run

    async def _pipeline(self, request: Request, handler: Handler, scope: str) -> Response:
        bucket, refusal = self._authenticate(request, scope)
        if refusal is not None:
            return refusal
        retry_after = self._limiter.acquire(bucket)
        if retry_after is not None:
            return _too_many_requests(retry_after, self._limiter.rate)
        faults = self.store.settings.faults
        if not faults.active:
            return await handler(request)
        decision = faults.decide(request.method, request.url.path, self._rng)
        if decision.scripted:
            self.store.settings_changed()
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

    def _authenticate(self, request: Request, scope: str) -> tuple[str, Response | None]:
        """The rate-limit bucket of the caller, or the refusal (401 unknown, 403 scope)."""
        granted = self.store.settings.tokens
        configured = bool(self._single or granted)
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        value = value.strip()
        if not header:
            if not self._require_auth and not configured:
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
        if not configured:
            return value, None  # any token: each is its own account
        digest = hash_token(value)
        grant = self._single.get(digest) or granted.get(digest)
        if grant is None:
            return "", error_response(
                401, "AUTHENTICATION_FAILED", "The access token is not valid for this API"
            )
        if scope and scope not in grant.scopes:
            return "", error_response(
                403,
                "FORBIDDEN",
                f"The access token lacks the scope {scope} that {request.method} "
                f"{request.url.path} needs",
            )
        return f"account\0{grant.account}", None

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
        sort_by = request.query_params.get("sort_by") or None
        order_by = request.query_params.get("order_by") or None
        details = []
        if sort_by is not None and sort_by not in FORM_SORT_KEYS:
            details.append(_query_detail("sort_by", f"one of {', '.join(FORM_SORT_KEYS)}"))
        if order_by is not None and order_by not in ("asc", "desc"):
            details.append(_query_detail("order_by", "asc or desc"))
        if details:
            return error_response(
                400, "VALIDATION_ERROR", "Invalid query parameters", details=details
            )
        total, page_count, forms = self.store.list_forms(
            page=page,
            page_size=page_size,
            search=request.query_params.get("search") or None,
            workspace_id=request.query_params.get("workspace_id") or None,
            sort_by=sort_by,
            order_by=order_by,
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
        return JSONResponse({"items": [self._render(w) for w in self.store.list_webhooks(form_id)]})

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
        return JSONResponse(self._render(hook))

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
        return JSONResponse(self._render(hook))

    def _render(self, hook: Webhook) -> dict[str, Any]:
        """A webhook as the API returns it, in the settings' echo modes."""
        settings = self.store.settings
        body = hook.to_api()
        if (
            settings.event_types_echo is EventTypesEcho.OMIT_DEFAULT
            and hook.event_types == DEFAULT_EVENT_TYPES
        ):
            del body["event_types"]
        if settings.secret_echo is SecretEcho.PLAIN and hook.secret is not None:
            body["secret"] = hook.secret
        elif settings.secret_echo is SecretEcho.MASKED and hook.secret_sha256 is not None:
            # Never the secret itself, even for a secret that happens to be the mask.
            mask = SECRET_MASK
            if hook.secret_sha256 == hash_secret(mask):
                mask += "*"
            body["secret"] = mask
        return body


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


def _query_detail(name: str, expected: str) -> dict[str, str]:
    return {
        "code": "INVALID_VALUE",
        "description": f"{name} must be {expected}",
        "field": name,
        "in": "query",
    }


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

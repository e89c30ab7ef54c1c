"""The Typeform API client: the only code that speaks HTTP (and the only user of httpx).

It turns SPEC section 8 into typed calls, paces every request through the account's ``Pacer``,
retries what a real network does to requests (in exactly one place, ``_request``), validates
response shapes with pydantic, and translates every failure into the ``errors.APIError`` tree at
this edge, so no httpx type leaks out.

What it must never do: put the token, a secret or request headers into an exception, a log line
or metrics (text the server sends back is scrubbed of them too); disable TLS verification; send a
non-GET request when built ``read_only`` (drift); send requests faster than the pacer allows.
"""

from __future__ import annotations

import email.utils
import functools
import logging
import math
import random
import re
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC
from enum import Enum, StrEnum
from types import TracebackType
from typing import Any, NoReturn, TypeVar
from urllib.parse import quote

import anyio
import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from reconciler import __version__
from reconciler.errors import (
    APIError,
    AuthenticationError,
    ConfigError,
    FormNotFoundError,
    RateLimitedError,
    ReconcileError,
    ServerError,
    TransportError,
    UnexpectedAPIError,
    ValidationAPIError,
    WebhookNotFoundError,
)
from reconciler.logs import register_sensitive
from reconciler.models import DEFAULT_ACCOUNT, DEFAULT_RATE, LiveWebhook
from reconciler.pacer import Pacer

__all__ = [
    "USER_AGENT",
    "ClientMetrics",
    "Jitter",
    "RetryPolicy",
    "TypeformClient",
    "Written",
    "parse_retry_after",
]

log = logging.getLogger(__name__)

USER_AGENT = f"typeform-reconciler/{__version__}"
MAX_PAGE_SIZE = 200
"""Typeform serves at most 200 items per page (default 10): we always ask for the maximum."""

# Retrying is safe only where repeating a request cannot do something twice.
_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
_RETRYABLE_EXCEPTIONS: tuple[type[httpx.HTTPError], ...] = (
    httpx.TimeoutException,  # connect / read / write / pool
    httpx.NetworkError,  # connection refused or reset, read / write / close errors
    httpx.RemoteProtocolError,  # server closed the connection mid-response
)
_REDACTED = "***"
_MAX_SERVER_TEXT = 300


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """httpx's default verifying context, built once: building one loads the CA bundle (tens
    of milliseconds per client otherwise). Same trust as ``verify=True``, never weaker."""
    return httpx.create_ssl_context()


def _is_retryable_status(status: int) -> bool:
    return status in (408, 429) or 500 <= status <= 599


# --------------------------------------------------------------------------- policy and results


class Jitter(StrEnum):
    FULL = "full"
    """Sleep a uniform random time in ``[0, backoff]``: concurrent clients spread out."""
    NONE = "none"
    """Sleep exactly the backoff (predictable; for tests and debugging)."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how long to retry one request.

    ``max_attempts`` counts the first attempt; ``deadline`` (seconds) bounds the whole request
    from its first attempt, waits included: no retry starts that could not begin before it.
    Retry ``n`` (0-based) waits ``uniform(0, min(max_delay, base_delay * 2**n))`` unless the
    server said how long (``Retry-After``).
    """

    max_attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0
    deadline: float = 120.0
    jitter: Jitter = Jitter.FULL

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.base_delay < 0 or self.max_delay < 0 or self.deadline <= 0:
            raise ValueError("delays must be >= 0 and the deadline > 0")

    def backoff(self, retry: int, rng: random.Random) -> float:
        """Seconds to wait before retry number ``retry`` (0 for the first retry)."""
        cap = min(self.max_delay, self.base_delay * 2.0**retry)
        return rng.uniform(0.0, cap) if self.jitter is Jitter.FULL else cap


@dataclass(slots=True)
class ClientMetrics:
    """What one client did, for the CLI's summary, `watch --metrics-port` and the benchmark.

    Times are readings of the client's injected clock. ``wait_seconds`` sums, over requests, the
    time each spent waiting for its start slot (pacing and 429 holds: waits of concurrent
    requests overlap, so it can exceed wall time); ``backoff_seconds`` sums retry back-offs.
    """

    requests_sent: int = 0
    retries: int = 0
    throttled: int = 0
    """429 responses received."""
    wait_seconds: float = 0.0
    backoff_seconds: float = 0.0
    started: float | None = None
    """Start of the first request."""
    last_start: float | None = None
    last_end: float | None = None

    @property
    def elapsed(self) -> float:
        """From the first request's start to the last response."""
        if self.started is None:
            return 0.0
        end = max(self.last_end or self.started, self.last_start or self.started)
        return end - self.started

    @property
    def achieved_rate(self) -> float:
        """Request starts per second, comparable to the configured rate (0 below 2 requests)."""
        if self.started is None or self.last_start is None or self.requests_sent < 2:
            return 0.0
        span = self.last_start - self.started
        return (self.requests_sent - 1) / span if span > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "requests_sent": self.requests_sent,
            "retries": self.retries,
            "throttled": self.throttled,
            "wait_seconds": round(self.wait_seconds, 6),
            "backoff_seconds": round(self.backoff_seconds, 6),
            "elapsed_seconds": round(self.elapsed, 6),
            "achieved_rate": round(self.achieved_rate, 6),
        }


@dataclass(frozen=True, slots=True)
class Written:
    """The result of a write: the webhook as the API returned it (None for a delete, or an
    empty response) and how many attempts it took (for the operation record)."""

    webhook: LiveWebhook | None
    attempts: int


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date), or None.

    ``now`` is the current wall-clock time (epoch seconds), needed for the date form. A date in
    the past means 0; an unparseable value means None (fall back to back-off).
    """
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


# --------------------------------------------------------------------------- response shapes
# Only what we rely on is declared; unknown fields are ignored, so Typeform may add fields freely.


class _Shape(BaseModel):
    model_config = ConfigDict(extra="ignore", coerce_numbers_to_str=True, frozen=True)


class _Page(_Shape):
    total_items: int | None = None
    page_count: int = Field(default=1, ge=0)
    items: list[dict[str, Any]]


class _Identified(_Shape):
    """A form or workspace: we need its id; the rest is returned to the caller as sent."""

    id: str


class _Webhook(_Shape):
    id: str
    form_id: str
    tag: str
    url: str
    enabled: bool
    verify_ssl: bool = True
    event_types: dict[str, bool] | None = None
    secret: str | None = None
    created_at: str | None = None
    updated_at: str | None = None


class _WebhookList(_Shape):
    items: list[_Webhook]


class _ErrorBody(_Shape):
    code: str | None = None
    description: str | None = None
    details: list[Any] = Field(default_factory=list)


_S = TypeVar("_S", bound=_Shape)


# --------------------------------------------------------------------------- routes


class _Scope(Enum):
    """What a route is about; decides what a 404 means."""

    COLLECTION = "collection"  # /forms, /workspaces
    FORM = "form"  # /forms/{id}, /forms/{id}/webhooks
    WEBHOOK = "webhook"  # /forms/{id}/webhooks/{tag}


@dataclass(frozen=True, slots=True)
class _Route:
    method: str
    path: str
    scope: _Scope
    form_id: str | None = None
    tag: str | None = None
    params: Mapping[str, str | int] | None = None

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def _form_path(form_id: str) -> str:
    return f"/forms/{quote(form_id, safe='')}"


def _webhook_path(form_id: str, tag: str) -> str:
    return f"{_form_path(form_id)}/webhooks/{quote(tag, safe='')}"


# --------------------------------------------------------------------------- the client


class TypeformClient:
    """Async client for one Typeform account. Use as ``async with TypeformClient(...) as c:``.

    ``transport`` is the seam for tests and the emulator (``httpx.ASGITransport``); ``pacer``
    lets several clients of the same account share one rate limit (then ``rate``,
    ``concurrency``, ``clock`` and ``sleep`` of the pacer are the pacer's own).
    ``read_only=True`` refuses every non-GET request before anything is sent.
    """

    def __init__(
        self,
        *,
        base_url: str,
        token: str,
        account: str = DEFAULT_ACCOUNT,
        rate: float = DEFAULT_RATE,
        concurrency: int = 4,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy = RetryPolicy(),  # frozen, so a shared default is safe
        read_only: bool = False,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        pacer: Pacer | None = None,
        wall_clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        on_response: Callable[[str, int | str], None] | None = None,
    ) -> None:
        if not token or not token.strip():
            raise ConfigError(
                f"no API token for account '{account}': set TYPEFORM_TOKEN "
                "(or the token of the Account document)"
            )
        url = httpx.URL(base_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ConfigError(
                f"the API URL of account '{account}' must be an absolute http(s) URL, "
                f"got {base_url!r}"
            )
        token = token.strip()  # a token read from a file often ends with a newline
        self.account = account
        self.read_only = read_only
        self.metrics = ClientMetrics()
        self._token = token
        self._retry = retry
        self._clock = clock
        self._sleep = sleep
        self._wall_clock = wall_clock
        self._rng = rng or random.Random()  # jitter, not cryptography
        self._on_response = on_response
        self._pacer = pacer or Pacer(rate=rate, concurrency=concurrency, clock=clock, sleep=sleep)
        if self._pacer.rate > DEFAULT_RATE:
            log.warning(
                "account %r: rate %g requests/s is above the %g/s Typeform documents; "
                "expect 429 responses (they are retried, but slow everything down)",
                account,
                self._pacer.rate,
                DEFAULT_RATE,
            )
        pool = self._pacer.concurrency
        self._http = httpx.AsyncClient(
            base_url=url,
            headers={
                "Authorization": f"Bearer {token}",
                "User-Agent": USER_AGENT,
                "Accept": "application/json",
            },
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=pool, max_keepalive_connections=pool),
            transport=transport,
            verify=_tls_context(),  # always verifying; never configurable (SPEC section 10)
            follow_redirects=False,  # a redirect is unexpected; never carry the token elsewhere
        )

        # Absolute request URLs: httpx then parses each once instead of merging it with the
        # base URL (two parses). Paths start with "/", which httpx would strip before merging.
        self._base = str(self._http.base_url).rstrip("/")

    def __repr__(self) -> str:
        return f"TypeformClient(account={self.account!r}, base_url={str(self._http.base_url)!r})"

    @property
    def pacer(self) -> Pacer:
        return self._pacer

    async def __aenter__(self) -> TypeformClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # ------------------------------------------------------------------ endpoints

    async def list_forms(
        self,
        *,
        search: str | None = None,
        workspace_id: str | None = None,
        page_size: int = MAX_PAGE_SIZE,
    ) -> list[dict[str, Any]]:
        """Every form the token can see (all pages), optionally filtered as Typeform filters."""
        params: dict[str, str | int] = {}
        if search is not None:
            params["search"] = search
        if workspace_id is not None:
            params["workspace_id"] = workspace_id
        return await self._all_pages("/forms", params, page_size=page_size)

    async def list_workspaces(self) -> list[dict[str, Any]]:
        return await self._all_pages("/workspaces", {}, page_size=MAX_PAGE_SIZE)

    async def get_form(self, form_id: str) -> dict[str, Any]:
        route = _Route("GET", _form_path(form_id), _Scope.FORM, form_id=form_id)
        response, _ = await self._request(route)
        data = self._json(route, response)
        self._parse(_Identified, data, route)
        form: dict[str, Any] = data  # validated to be an object with an id just above
        return form

    async def list_webhooks(self, form_id: str) -> list[LiveWebhook]:
        """Every webhook of the form (the endpoint is not paginated)."""
        route = _Route("GET", f"{_form_path(form_id)}/webhooks", _Scope.FORM, form_id=form_id)
        response, _ = await self._request(route)
        shape = self._parse_body(_WebhookList, route, response)
        return [self._live(w) for w in shape.items]

    async def get_webhook(self, form_id: str, tag: str) -> LiveWebhook:
        route = _Route("GET", _webhook_path(form_id, tag), _Scope.WEBHOOK, form_id, tag)
        response, _ = await self._request(route)
        return self._live(self._parse_body(_Webhook, route, response))

    async def put_webhook(self, form_id: str, tag: str, body: Mapping[str, Any]) -> Written:
        """Create or update the webhook with the full desired ``body`` (secret included if
        given: fields left out keep their live values, so we never leave anything out)."""
        route = _Route("PUT", _webhook_path(form_id, tag), _Scope.WEBHOOK, form_id, tag)
        secret = body.get("secret")
        sensitive = (secret,) if isinstance(secret, str) and secret else ()
        response, attempts = await self._request(route, json=dict(body), sensitive=sensitive)
        if not response.content.strip():
            return Written(webhook=None, attempts=attempts)
        webhook = self._parse_body(_Webhook, route, response)
        return Written(webhook=self._live(webhook), attempts=attempts)

    async def delete_webhook(self, form_id: str, tag: str) -> Written:
        route = _Route("DELETE", _webhook_path(form_id, tag), _Scope.WEBHOOK, form_id, tag)
        _, attempts = await self._request(route)
        return Written(webhook=None, attempts=attempts)

    async def _all_pages(
        self, path: str, params: Mapping[str, str | int], *, page_size: int
    ) -> list[dict[str, Any]]:
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be between 1 and {MAX_PAGE_SIZE}, got {page_size}")
        items: list[dict[str, Any]] = []
        page = 1
        while True:
            route = _Route(
                "GET",
                path,
                _Scope.COLLECTION,
                params={**params, "page": page, "page_size": page_size},
            )
            response, _ = await self._request(route)
            shape = self._parse(_Page, self._json(route, response), route)
            for item in shape.items:
                self._parse(_Identified, item, route)
            items.extend(shape.items)
            # page_count comes from the server; an empty page also ends the walk, so a server
            # that miscounts cannot keep us paging forever.
            if page >= shape.page_count or not shape.items:
                return items
            page += 1

    def _live(self, webhook: _Webhook) -> LiveWebhook:
        live = LiveWebhook.from_api(self.account, webhook.model_dump())
        # Where the API echoes secrets, every one it shows is sensitive, ours or not.
        register_sensitive(live.secret)
        return live

    # ------------------------------------------------------------------ the one retry loop

    async def _request(
        self,
        route: _Route,
        *,
        json: Mapping[str, Any] | None = None,
        sensitive: Iterable[str] = (),
    ) -> tuple[httpx.Response, int]:
        """Send ``route`` through the pacer, retrying what may succeed on a second try.

        Returns the 2xx response and the number of attempts; raises an ``APIError`` otherwise.
        ``sensitive`` are extra strings (a secret in the body) scrubbed from server text.
        """
        if self.read_only and route.method != "GET":
            raise ConfigError(
                f"refusing {route} for account '{self.account}': this client is read-only "
                "(drift and other read-only commands never write)"
            )
        secrets = (self._token, *sensitive)
        policy = self._retry
        max_attempts = policy.max_attempts if route.method in _IDEMPOTENT else 1
        deadline: float | None = None
        attempt = 0
        while True:
            attempt += 1
            response: httpx.Response | None = None
            failure: httpx.HTTPError | None = None
            async with self._pacer.slot() as waited:
                now = self._clock()
                if deadline is None:
                    deadline = now + policy.deadline
                self._note_start(now, waited)
                try:
                    response = await self._http.request(
                        route.method, self._base + route.path, params=route.params, json=json
                    )
                except httpx.HTTPError as exc:
                    failure = exc
                finally:
                    self.metrics.last_end = self._clock()

            outcome = str(response.status_code) if response is not None else _name(failure)
            if self._on_response is not None:
                # Every attempt, for metrics: its HTTP status, or "error" when none came back.
                self._on_response(
                    self.account, response.status_code if response is not None else "error"
                )
            if response is not None and 200 <= response.status_code < 300:
                log.debug("%s attempt %d/%d: %s", route, attempt, max_attempts, outcome)
                return response, attempt

            if response is not None and response.status_code == 429:
                self.metrics.throttled += 1
            retryable = (
                _is_retryable_status(response.status_code)
                if response is not None
                else isinstance(failure, _RETRYABLE_EXCEPTIONS)
            )
            if not retryable or attempt >= max_attempts:
                log.debug("%s attempt %d/%d: %s, giving up", route, attempt, max_attempts, outcome)
                self._fail(route, response, failure, attempt, secrets)

            delay = policy.backoff(attempt - 1, self._rng)
            if response is not None and response.status_code == 429:
                told = parse_retry_after(
                    response.headers.get("Retry-After"), now=self._wall_clock()
                )
                delay = told if told is not None else delay
                # The limit is per account: every request of it waits, not only this one.
                self._pacer.hold(delay)
            if self._clock() + delay > deadline:
                log.debug(
                    "%s attempt %d/%d: %s, next try would pass the %gs deadline, giving up",
                    route,
                    attempt,
                    max_attempts,
                    outcome,
                    policy.deadline,
                )
                self._fail(route, response, failure, attempt, secrets)

            log.debug(
                "%s attempt %d/%d: %s, retrying in %.2fs",
                route,
                attempt,
                max_attempts,
                outcome,
                delay,
            )
            self.metrics.retries += 1
            if response is not None and response.status_code == 429:
                continue  # the pacer hold does the waiting (and counts it)
            if delay > 0:
                self.metrics.backoff_seconds += delay
                await self._sleep(delay)

    def _note_start(self, now: float, waited: float) -> None:
        m = self.metrics
        m.requests_sent += 1
        m.wait_seconds += waited
        if m.started is None:
            m.started = now
        m.last_start = now

    # ------------------------------------------------------------------ error translation

    def _fail(
        self,
        route: _Route,
        response: httpx.Response | None,
        failure: httpx.HTTPError | None,
        attempts: int,
        secrets: tuple[str, ...],
    ) -> NoReturn:
        error: ReconcileError
        if response is not None:
            error = self._status_error(route, response, attempts, secrets)
        else:
            assert failure is not None
            error = self._transport_error(route, failure, attempts, secrets)
        if isinstance(error, APIError):
            error.attempts = attempts
            if response is not None and response.status_code == 429:
                error.retry_after = parse_retry_after(
                    response.headers.get("Retry-After"), now=self._wall_clock()
                )
        raise error from failure

    def _transport_error(
        self, route: _Route, exc: httpx.HTTPError, attempts: int, secrets: tuple[str, ...]
    ) -> ReconcileError:
        reason = _scrub(f"{_name(exc)}: {exc}" if str(exc) else _name(exc), secrets)
        host = self._http.base_url.host
        if isinstance(exc, httpx.UnsupportedProtocol):
            return ConfigError(
                f"cannot send {route} for account '{self.account}' ({reason}): check its API URL"
            )
        return TransportError(
            f"could not get an answer from {host} for {route}{self._about(route)} after "
            f"{_times(attempts)} ({reason}). Check the network and the API URL of account "
            f"'{self.account}'; the request is safe to retry.",
            unreachable=isinstance(exc, httpx.ConnectError),
            form_id=route.form_id,
            tag=route.tag,
        )

    def _status_error(
        self, route: _Route, response: httpx.Response, attempts: int, secrets: tuple[str, ...]
    ) -> APIError:
        status = response.status_code
        body = self._error_body(response, secrets)
        said = f"HTTP {status}"
        if body.code:
            said += f" {body.code}"
        if body.description:
            said += f": {body.description}"
        fields: dict[str, Any] = {
            "status": status,
            "code": body.code,
            "description": body.description,
            "details": body.details,
            "form_id": route.form_id,
            "tag": route.tag,
        }
        about = self._about(route)
        if status in (401, 403):
            return AuthenticationError(
                f"Typeform refused the token of account '{self.account}' ({said}) on {route}. "
                "Check TYPEFORM_TOKEN / the account's token and its webhooks:read/write scopes.",
                **fields,
            )
        if status == 404 and route.form_id is not None:
            if route.scope is _Scope.FORM or body.code == "FORM_NOT_FOUND":
                return FormNotFoundError(
                    f"form '{route.form_id}' was not found or is not readable with the token of "
                    f"account '{self.account}' ({said}). Check the form_id in the manifest and "
                    "that the form belongs to this account.",
                    **fields,
                )
            return WebhookNotFoundError(
                f"form '{route.form_id}' has no webhook tagged '{route.tag}' ({said}).",
                **fields,
            )
        if status == 400:
            return ValidationAPIError(
                f"Typeform rejected {route}{about} ({said}){_details(body.details)}. "
                "Check the manifest entry (url, event_types, secret).",
                **fields,
            )
        if status == 429:
            return RateLimitedError(
                f"still rate limited after {_times(attempts)} on {route}{about} ({said}). "
                f"Lower --rate or the rate_limit of account '{self.account}' (Typeform allows "
                "2 requests/s) and check that nothing else uses the same token right now.",
                **fields,
            )
        if status == 408 or status >= 500:
            return ServerError(
                f"Typeform failed {route}{about} after {_times(attempts)} ({said}). "
                "This is on Typeform's side; try again later.",
                **fields,
            )
        hint = " Check the API URL of the account." if status == 404 else ""
        return UnexpectedAPIError(
            f"unexpected answer to {route}{about} for account '{self.account}' ({said}).{hint}",
            **fields,
        )

    def _about(self, route: _Route) -> str:
        if route.tag is not None:
            return f" (webhook {route.form_id}/{route.tag})"
        if route.form_id is not None:
            return f" (form {route.form_id})"
        return ""

    @staticmethod
    def _error_body(response: httpx.Response, secrets: tuple[str, ...]) -> _ErrorBody:
        try:
            body = _ErrorBody.model_validate(response.json())
        except (ValueError, ValidationError):
            # Not Typeform's JSON (a proxy's HTML page, say): one line, never markup.
            text = _plain_text(response)[:_MAX_SERVER_TEXT]
            return _ErrorBody(description=_scrub(text, secrets) or None)
        return _ErrorBody(
            code=_scrub(body.code, secrets) if body.code else None,
            description=_scrub(body.description, secrets) if body.description else None,
            details=[_scrub_any(d, secrets) for d in body.details],
        )

    # ------------------------------------------------------------------ response parsing

    def _json(self, route: _Route, response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            self._malformed(route, "the body is not JSON")

    def _parse(self, shape: type[_S], data: Any, route: _Route) -> _S:
        try:
            return shape.model_validate(data)
        except ValidationError as exc:
            self._malformed(route, _problems(exc))

    def _parse_body(self, shape: type[_S], route: _Route, response: httpx.Response) -> _S:
        """``_parse(shape, _json(...))`` in one step: pydantic reads the bytes itself, without
        building Python objects first (the refresh of 2,000 forms parses 2,000 bodies)."""
        try:
            return shape.model_validate_json(response.content)
        except ValidationError as exc:
            if any(e["type"] == "json_invalid" for e in exc.errors(include_url=False)):
                self._malformed(route, "the body is not JSON")
            self._malformed(route, _problems(exc))

    def _malformed(self, route: _Route, problems: str) -> NoReturn:
        # `from None`: the chained exception would hold the raw response (maybe a secret).
        raise UnexpectedAPIError(
            f"the answer to {route}{self._about(route)} for account '{self.account}' does not "
            f"have the shape Typeform documents ({problems}). Check the API URL; if it is right, "
            "the API changed and this tool needs an update.",
            form_id=route.form_id,
            tag=route.tag,
        ) from None


# --------------------------------------------------------------------------- helpers


def _problems(exc: ValidationError) -> str:
    """Only locations and messages: pydantic's str() would quote the response, which may carry
    a webhook secret."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or '(body)'}: {e['msg']}"
        for e in exc.errors(include_url=False, include_input=False)[:3]
    )


_TITLE = re.compile(r"<(title|h1)[^>]*>(.*?)</\1\s*>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]*>")


def _plain_text(response: httpx.Response) -> str:
    """A non-JSON error body as one line: an HTML page by its title, other text as it is."""
    text = response.text
    if "html" in response.headers.get("content-type", "").lower() or "<html" in text[:512].lower():
        found = _TITLE.search(text)
        title = " ".join(_TAG.sub(" ", found.group(2)).split()) if found else ""
        return f"an HTML page ({title})" if title else "an HTML page"
    return " ".join(text.split())


def _name(exc: BaseException | None) -> str:
    return type(exc).__name__ if exc is not None else "no response"


def _times(attempts: int) -> str:
    return "1 attempt" if attempts == 1 else f"{attempts} attempts"


def _scrub(text: str, secrets: tuple[str, ...]) -> str:
    """Remove the token and secrets from text we did not write (a server may echo them)."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, _REDACTED)
    return text


def _scrub_any(value: Any, secrets: tuple[str, ...]) -> Any:
    if isinstance(value, str):
        return _scrub(value, secrets)
    if isinstance(value, Mapping):
        return {str(k): _scrub_any(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub_any(v, secrets) for v in value]
    return value


def _details(details: Iterable[Any]) -> str:
    """Typeform's ``details`` (``[{code, description, field, in}]``) as one readable clause."""
    parts: list[str] = []
    for d in details:
        if isinstance(d, Mapping):
            what = d.get("description") or d.get("code") or ""
            where = d.get("field")
            parts.append(f"{where}: {what}" if where else str(what))
        else:
            parts.append(str(d))
    parts = [p for p in parts if p]
    return f"; details: {'; '.join(parts)}" if parts else ""

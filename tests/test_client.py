"""The Typeform client over real HTTP on loopback (pytest-httpserver, plus two raw sockets).

Most tests inject a clock and sleep that jump instantly, so back-offs and ``Retry-After`` waits
are recorded exactly and cost no real time while requests still cross a real socket. The tests
that need real time (request spacing seen by the server, a read timeout) keep it under a second.
"""

from __future__ import annotations

import email.utils
import itertools
import logging
import random
import socket
import struct
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from reconciler.client import (
    USER_AGENT,
    ClientMetrics,
    Jitter,
    RetryPolicy,
    TypeformClient,
    Written,
    parse_retry_after,
)
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
from reconciler.models import EventTypes, LiveWebhook, WebhookKey

pytestmark = pytest.mark.anyio

TOKEN = "tfp_ZZtopSECRETtoken7Qz9xK"
SECRET = "whsec_NeverPrintMe_41b7"
FAST = RetryPolicy(max_attempts=3, base_delay=0.5, max_delay=4.0, deadline=60.0)

WEBHOOK = {
    "id": "01HW",
    "form_id": "abc123",
    "tag": "intake",
    "url": "https://hooks.example.com/in",
    "enabled": True,
    "verify_ssl": True,
    "event_types": {"form_response": True, "form_response_partial": True},
    "created_at": "2024-01-01T00:00:00Z",
    "updated_at": "2024-01-02T00:00:00Z",
}


class InstantClock:
    """Clock + sleep for one task at a time: sleeping moves time forward at once."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await anyio.lowlevel.checkpoint()


@pytest.fixture
def clock() -> InstantClock:
    return InstantClock()


@pytest.fixture
def make_client(httpserver: HTTPServer, clock: InstantClock) -> Callable[..., TypeformClient]:
    def make(**overrides: Any) -> TypeformClient:
        options: dict[str, Any] = {
            "base_url": httpserver.url_for("/"),
            "token": TOKEN,
            "retry": FAST,
            "clock": clock,
            "sleep": clock.sleep,
            "rng": random.Random(7),
        }
        options.update(overrides)
        return TypeformClient(**options)

    return make


def error_body(code: str, description: str, details: list[Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "description": description}
    if details is not None:
        body["details"] = details
    return body


# --------------------------------------------------------------------------- endpoints


async def test_every_request_carries_the_bearer_token_and_the_user_agent(
    httpserver: HTTPServer, make_client: Callable[..., TypeformClient]
) -> None:
    httpserver.expect_request(
        "/forms/abc123",
        method="GET",
        headers={"Authorization": f"Bearer {TOKEN}", "User-Agent": USER_AGENT},
    ).respond_with_json({"id": "abc123", "title": "Onboarding"})
    async with make_client() as client:
        form = await client.get_form("abc123")
    assert form == {"id": "abc123", "title": "Onboarding"}
    assert USER_AGENT.startswith("typeform-reconciler/")


async def test_list_forms_follows_every_page(
    httpserver: HTTPServer, make_client: Callable[..., TypeformClient]
) -> None:
    forms = [{"id": f"f{i}", "title": f"Form {i}"} for i in range(5)]
    asked: list[tuple[str, str]] = []

    def pages(request: Request) -> Response:
        page, size = int(request.args["page"]), int(request.args["page_size"])
        asked.append((request.args["page"], request.args["page_size"]))
        chunk = forms[(page - 1) * size : page * size]
        return Response(
            httpx.Response(200, json={"total_items": 5, "page_count": 3, "items": chunk}).content,
            content_type="application/json",
        )

    httpserver.expect_request("/forms").respond_with_handler(pages)
    async with make_client() as client:
        result = await client.list_forms(page_size=2)
    assert [f["id"] for f in result] == ["f0", "f1", "f2", "f3", "f4"]
    assert asked == [("1", "2"), ("2", "2"), ("3", "2")]


async def test_list_forms_asks_for_200_per_page_and_passes_search_and_workspace(
    httpserver: HTTPServer, make_client: Callable[..., TypeformClient]
) -> None:
    httpserver.expect_request(
        "/forms",
        query_string={"page": "1", "page_size": "200", "search": "onboard", "workspace_id": "ws1"},
    ).respond_with_json({"total_items": 1, "page_count": 1, "items": [{"id": "f1"}]})
    async with make_client() as client:
        result = await client.list_forms(search="onboard", workspace_id="ws1")
    assert result == [{"id": "f1"}]
    httpserver.check_assertions()


async def test_a_page_size_above_typeforms_maximum_is_refused(
    make_client: Callable[..., TypeformClient],
) -> None:
    async with make_client() as client:
        with pytest.raises(ValueError, match="page_size"):
            await client.list_forms(page_size=201)


async def test_list_workspaces_returns_every_workspace(
    httpserver: HTTPServer, make_client: Callable[..., TypeformClient]
) -> None:
    httpserver.expect_request("/workspaces").respond_with_json(
        {"total_items": 2, "page_count": 1, "items": [{"id": "w1", "name": "A"}, {"id": "w2"}]}
    )
    async with make_client() as client:
        workspaces = await client.list_workspaces()
    assert [w["id"] for w in workspaces] == ["w1", "w2"]


async def test_list_webhooks_returns_live_webhooks_of_the_clients_account(
    httpserver: HTTPServer, make_client: Callable[..., TypeformClient]
) -> None:
    bare = {
        "id": "2",
        "form_id": "abc123",
        "tag": "bare",
        "url": "https://x.test/",
        "enabled": False,
    }
    httpserver.expect_request("/forms/abc123/webhooks").respond_with_json(
        {"items": [WEBHOOK, bare]}
    )
    async with make_client(account="eu") as client:
        hooks = await client.list_webhooks("abc123")
    assert hooks[0] == LiveWebhook.from_api("eu", WEBHOOK)
    assert hooks[0].event_types == EventTypes(form_response=True, form_response_partial=True)
    # event_types absent means {form_response: true}; secret absent means unknown.
    assert hooks[1].key == WebhookKey("eu", "abc123", "bare")
    assert hooks[1].event_types == EventTypes()
    assert hooks[1].secret is None
    assert hooks[1].verify_ssl is True


async def test_get_webhook_addresses_the_webhook_by_form_and_tag(
    httpserver: HTTPServer, make_client: Callable[..., TypeformClient]
) -> None:
    httpserver.expect_request("/forms/abc123/webhooks/intake", method="GET").respond_with_json(
        WEBHOOK
    )
    async with make_client() as client:
        hook = await client.get_webhook("abc123", "intake")
    assert hook.key == WebhookKey("default", "abc123", "intake")
    assert hook.url == "https://hooks.example.com/in"


async def test_put_webhook_sends_the_full_desired_body_secret_included(
    httpserver: HTTPServer, make_client: Callable[..., TypeformClient]
) -> None:
    body = {
        "url": "https://hooks.example.com/in",
        "enabled": True,
        "verify_ssl": True,
        "event_types": {"form_response": True, "form_response_partial": False},
        "secret": SECRET,
    }
    received: list[Any] = []

    def echo(request: Request) -> Response:
        received.append(request.get_json())
        return Response(
            httpx.Response(200, json={**WEBHOOK, **body}).content, content_type="application/json"
        )

    httpserver.expect_request("/forms/abc123/webhooks/intake", method="PUT").respond_with_handler(
        echo
    )
    async with make_client() as client:
        written = await client.put_webhook("abc123", "intake", body)
    assert received == [body]
    assert isinstance(written, Written)
    assert written.attempts == 1
    assert written.webhook is not None
    assert written.webhook.url == body["url"]


async def test_delete_webhook_reports_no_webhook_and_its_attempts(
    httpserver: HTTPServer, make_client: Callable[..., TypeformClient]
) -> None:
    httpserver.expect_request("/forms/abc123/webhooks/intake", method="DELETE").respond_with_data(
        "", status=204
    )
    async with make_client() as client:
        written = await client.delete_webhook("abc123", "intake")
    assert written == Written(webhook=None, attempts=1)
    assert len(httpserver.log) == 1


async def test_form_id_and_tag_are_escaped_as_single_path_segments(
    httpserver: HTTPServer, make_client: Callable[..., TypeformClient]
) -> None:
    # werkzeug decodes %2F before matching, so match on the decoded path and check the raw one.
    httpserver.expect_request("/forms/abc123/webhooks/a/b", method="GET").respond_with_json(
        {**WEBHOOK, "tag": "a/b"}
    )
    async with make_client() as client:
        hook = await client.get_webhook("abc123", "a/b")
    assert hook.key.tag == "a/b"
    assert httpserver.log[0][0].environ["REQUEST_URI"] == "/forms/abc123/webhooks/a%2Fb"


# --------------------------------------------------------------------------- error mapping


async def test_401_is_an_authentication_error_that_says_what_to_check(
    httpserver: HTTPServer, make_client: Callable[..., TypeformClient]
) -> None:
    httpserver.expect_request("/forms/abc123/webhooks").respond_with_json(
        error_body("AUTHENTICATION_FAILED", "Authentication credentials not found"), status=401
    )
    async with make_client() as client:
        with pytest.raises(AuthenticationError) as info:
            await client.list_webhooks("abc123")
    message = str(info.value)
    assert "HTTP 401 AUTHENTICATION_FAILED" in message
    assert "TYPEFORM_TOKEN" in message
    assert "webhooks:read/write" in message
    assert info.value.status == 401
    assert info.value.code == "AUTHENTICATION_FAILED"


async def test_403_is_an_authentication_error_too(
    httpserver: HTTPServer, make_client: Callable[..., TypeformClient]
) -> None:
    httpserver.expect_request("/forms/abc123/webhooks").respond_with_json(
        error_body("FORBIDDEN", "Missing scope webhooks:read"), status=403
    )
    async with make_client() as client:
        with pytest.raises(AuthenticationError, match="Missing scope webhooks:read"):
            await client.list_webhooks("abc123")


async def test_404_on_a_form_route_is_form_not_found_naming_the_form(
    httpserver: HTTPServer, make_client: Callable[..., TypeformClient]
) -> None:
    httpserver.expect_request("/forms/nope42/webhooks").respond_with_json(
        error_body("FORM_NOT_FOUND", "Non existing form with uid nope42"), status=404
    )
    async with make_client() as client:
        with pytest.raises(FormNotFoundError) as info:
            await client.list_webhooks("nope42")
    assert "form 'nope42'" in str(info.value)
    assert info.value.form_id == "nope42"


async def test_404_form_not_found_on_a_webhook_route_is_form_not_found(
    httpserver: HTTPServer, make_client: Callable[..., TypeformClient]
) -> None:
    httpserver.expect_request("/forms/nope42/webhooks/intake").respond_with_json(
        error_body("FORM_NOT_FOUND", "Non existing form"), status=404
    )
    async with make_client() as client:
        with pytest.raises(FormNotFoundError, match="nope42"):
            await client.get_webhook("nope42", "intake")


async def test_404_on_a_webhook_route_is_webhook_not_found_naming_form_and_tag(
    httpserver: HTTPServer, make_client: Callable[..., TypeformClient]
) -> None:
    httpserver.expect_request("/forms/abc123/webhooks/gone").respond_with_json(
        error_body("NOT_FOUND", "Webhook not found"), status=404
    )
    async with make_client() as client:
        with pytest.raises(WebhookNotFoundError) as info:
            await client.delete_webhook("abc123", "gone")
    assert "form 'abc123' has no webhook tagged 'gone'" in str(info.value)
    assert (info.value.form_id, info.value.tag) == ("abc123", "gone")


async def test_400_is_a_validation_error_with_typeforms_code_description_and_details(
    httpserver: HTTPServer, make_client: Callable[..., TypeformClient]
) -> None:
    details = [{"code": "INVALID_URL", "description": "must be https", "field": "url"}]
    httpserver.expect_request("/forms/abc123/webhooks/intake", method="PUT").respond_with_json(
        error_body("VALIDATION_ERROR", "Bad request", details), status=400
    )
    async with make_client() as client:
        with pytest.raises(ValidationAPIError) as info:
            await client.put_webhook("abc123", "intake", {"url": "http://x.test"})
    err = info.value
    assert (err.status, err.code, err.description) == (400, "VALIDATION_ERROR", "Bad request")
    assert err.details == tuple(details)
    assert "url: must be https" in str(err)
    assert "abc123/intake" in str(err)


async def test_an_unknown_status_is_an_unexpected_api_error(
    httpserver: HTTPServer, make_client: Callable[..., TypeformClient]
) -> None:
    httpserver.expect_request("/forms/abc123").respond_with_data("I'm a teapot", status=418)
    async with make_client() as client:
        with pytest.raises(UnexpectedAPIError, match="HTTP 418: I'm a teapot"):
            await client.get_form("abc123")


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        ({"items": "not a list"}, "items"),
        ({"items": [{"id": "1", "form_id": "abc123", "tag": "t"}]}, "url"),
        ([1, 2, 3], "(body)"),
    ],
)
async def test_a_malformed_response_is_an_unexpected_api_error_not_a_key_error(
    httpserver: HTTPServer,
    make_client: Callable[..., TypeformClient],
    payload: Any,
    problem: str,
) -> None:
    httpserver.expect_request("/forms/abc123/webhooks").respond_with_json(payload)
    async with make_client() as client:
        with pytest.raises(UnexpectedAPIError, match="does not have the shape") as info:
            await client.list_webhooks("abc123")
    assert problem in str(info.value)


async def test_a_response_that_is_not_json_is_an_unexpected_api_error(
    httpserver: HTTPServer, make_client: Callable[..., TypeformClient]
) -> None:
    httpserver.expect_request("/forms/abc123").respond_with_data("<html>proxy</html>")
    async with make_client() as client:
        with pytest.raises(UnexpectedAPIError, match="not JSON"):
            await client.get_form("abc123")


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409])
async def test_client_errors_are_not_retried(
    httpserver: HTTPServer, make_client: Callable[..., TypeformClient], status: int
) -> None:
    httpserver.expect_request("/forms/abc123/webhooks/intake").respond_with_json(
        error_body("NO", "no"), status=status
    )
    async with make_client() as client:
        with pytest.raises(APIError):
            await client.get_webhook("abc123", "intake")
        assert client.metrics.retries == 0
    assert len(httpserver.log) == 1


# --------------------------------------------------------------------------- retries


async def test_a_5xx_is_retried_after_a_jittered_backoff_and_the_write_reports_two_attempts(
    httpserver: HTTPServer, make_client: Callable[..., TypeformClient], clock: InstantClock
) -> None:
    route = "/forms/abc123/webhooks/intake"
    httpserver.expect_oneshot_request(route, method="PUT").respond_with_json(
        error_body("INTERNAL", "oops"), status=503
    )
    httpserver.expect_request(route, method="PUT").respond_with_json(WEBHOOK)
    async with make_client() as client:
        written = await client.put_webhook("abc123", "intake", {"url": WEBHOOK["url"]})
        metrics = client.metrics
    assert written.attempts == 2
    assert (metrics.requests_sent, metrics.retries, metrics.throttled) == (2, 1, 0)
    # First the jittered back-off, then whatever the pacer still needs for its 0.5 s spacing.
    assert 0.0 <= clock.sleeps[0] <= FAST.base_delay
    assert metrics.backoff_seconds == clock.sleeps[0]
    assert sum(clock.sleeps) == pytest.approx(max(clock.sleeps[0], 0.5))


async def test_a_write_that_fails_on_every_attempt_says_how_many_attempts_it_made(
    httpserver: HTTPServer, make_client: Callable[..., TypeformClient]
) -> None:
    httpserver.expect_request("/forms/abc123/webhooks/intake", method="PUT").respond_with_json(
        error_body("DOWN", "maintenance"), status=503
    )
    async with make_client() as client:
        with pytest.raises(ServerError) as caught:
            await client.put_webhook("abc123", "intake", {"url": WEBHOOK["url"]})
    assert caught.value.attempts == FAST.max_attempts


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408])
async def test_a_server_error_on_every_attempt_becomes_server_error(
    httpserver: HTTPServer, make_client: Callable[..., TypeformClient], status: int
) -> None:
    httpserver.expect_request("/forms/abc123/webhooks").respond_with_json(
        error_body("DOWN", "maintenance"), status=status
    )
    async with make_client() as client:
        with pytest.raises(ServerError) as info:
            await client.list_webhooks("abc123")
    assert len(httpserver.log) == FAST.max_attempts
    assert f"after {FAST.max_attempts} attempts" in str(info.value)
    assert info.value.transient


async def test_a_429_with_retry_after_in_seconds_holds_the_accounts_pacer_that_long(
    httpserver: HTTPServer, make_client: Callable[..., TypeformClient], clock: InstantClock
) -> None:
    route = "/forms/abc123/webhooks"
    httpserver.expect_oneshot_request(route).respond_with_json(
        error_body("RATE_LIMITED", "slow down"), status=429, headers={"Retry-After": "2"}
    )
    httpserver.expect_request(route).respond_with_json({"items": []})
    started = clock()
    async with make_client() as client:
        assert await client.list_webhooks("abc123") == []
        # The hold is the account's: the next request of any task waits for it too.
        assert client.pacer.held_until == pytest.approx(started + 2.0)
        metrics = client.metrics
    assert clock() - started == pytest.approx(2.0)
    assert metrics.throttled == 1
    assert metrics.retries == 1
    assert metrics.wait_seconds == pytest.approx(2.0)


async def test_a_429_with_retry_after_as_an_http_date_waits_until_that_date(
    httpserver: HTTPServer, make_client: Callable[..., TypeformClient], clock: InstantClock
) -> None:
    wall = 1_700_000_000.0
    route = "/forms/abc123/webhooks"
    httpserver.expect_oneshot_request(route).respond_with_json(
        error_body("RATE_LIMITED", "slow down"),
        status=429,
        headers={"Retry-After": email.utils.formatdate(wall + 3, usegmt=True)},
    )
    httpserver.expect_request(route).respond_with_json({"items": []})
    started = clock()
    async with make_client(wall_clock=lambda: wall) as client:
        await client.list_webhooks("abc123")
    assert clock() - started == pytest.approx(3.0)


async def test_a_429_without_retry_after_backs_off_and_holds_the_account(
    httpserver: HTTPServer, make_client: Callable[..., TypeformClient], clock: InstantClock
) -> None:
    route = "/forms/abc123/webhooks"
    httpserver.expect_oneshot_request(route).respond_with_data("", status=429)
    httpserver.expect_request(route).respond_with_json({"items": []})
    policy = RetryPolicy(max_attempts=3, base_delay=1.0, jitter=Jitter.NONE)
    started = clock()
    async with make_client(retry=policy) as client:
        await client.list_webhooks("abc123")
    assert clock() - started == pytest.approx(1.0)


async def test_a_429_on_every_attempt_becomes_rate_limited_error(
    httpserver: HTTPServer, make_client: Callable[..., TypeformClient]
) -> None:
    httpserver.expect_request("/forms/abc123/webhooks").respond_with_json(
        error_body("RATE_LIMITED", "slow down"), status=429, headers={"Retry-After": "1"}
    )
    async with make_client() as client:
        with pytest.raises(RateLimitedError, match="Lower --rate") as info:
            await client.list_webhooks("abc123")
        assert client.metrics.throttled == FAST.max_attempts
    assert info.value.transient


async def test_a_retry_after_beyond_the_deadline_gives_up_at_once(
    httpserver: HTTPServer, make_client: Callable[..., TypeformClient]
) -> None:
    httpserver.expect_request("/forms/abc123/webhooks").respond_with_json(
        error_body("RATE_LIMITED", "come back tomorrow"),
        status=429,
        headers={"Retry-After": "86400"},
    )
    async with make_client() as client:
        with pytest.raises(RateLimitedError, match="1 attempt"):
            await client.list_webhooks("abc123")
    assert len(httpserver.log) == 1


async def test_attempts_are_logged_at_debug_with_method_path_and_status(
    httpserver: HTTPServer,
    make_client: Callable[..., TypeformClient],
    caplog: pytest.LogCaptureFixture,
) -> None:
    route = "/forms/abc123/webhooks"
    httpserver.expect_oneshot_request(route).respond_with_data("", status=502)
    httpserver.expect_request(route).respond_with_json({"items": []})
    caplog.set_level(logging.DEBUG, logger="reconciler.client")
    async with make_client() as client:
        await client.list_webhooks("abc123")
    lines = [r.getMessage() for r in caplog.records if r.name == "reconciler.client"]
    assert any(f"GET {route} attempt 1/3: 502, retrying in" in line for line in lines)
    assert any(f"GET {route} attempt 2/3: 200" in line for line in lines)


@pytest.fixture(scope="module")
def threaded_server() -> Iterator[HTTPServer]:
    """A server that answers while another of its handlers is still sleeping."""
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.start()
    yield server
    server.clear()
    server.stop()


async def test_a_read_timeout_is_retried_and_then_succeeds(
    threaded_server: HTTPServer, clock: InstantClock
) -> None:
    threaded_server.clear()
    calls = 0

    def slow_then_fast(_: Request) -> Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            time.sleep(0.4)
        return Response(b'{"items": []}', content_type="application/json")

    threaded_server.expect_request("/forms/abc123/webhooks").respond_with_handler(slow_then_fast)
    client = TypeformClient(
        base_url=threaded_server.url_for("/"),
        token=TOKEN,
        timeout=0.15,
        retry=FAST,
        clock=clock,
        sleep=clock.sleep,
    )
    async with client:
        assert await client.list_webhooks("abc123") == []
        assert client.metrics.retries == 1
    assert calls == 2


class ResetFirstConnection:
    """A loopback TCP server that resets its first connection after reading the request and
    answers every later one with ``body``: what a crashing proxy or load balancer does."""

    def __init__(self, body: bytes) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port = self._listener.getsockname()[1]
        self.connections = 0
        self._response = (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            with conn:
                self.connections += 1
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                if self.connections == 1:
                    # Linger 0: close() sends RST instead of FIN, a "connection reset by peer".
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    continue
                conn.sendall(self._response)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._listener.close()


async def test_a_reset_connection_is_retried_and_then_succeeds(clock: InstantClock) -> None:
    server = ResetFirstConnection(b'{"items": []}')
    try:
        async with TypeformClient(
            base_url=f"http://127.0.0.1:{server.port}",
            token=TOKEN,
            retry=FAST,
            clock=clock,
            sleep=clock.sleep,
        ) as client:
            assert await client.list_webhooks("abc123") == []
            assert client.metrics.retries == 1
    finally:
        server.close()
    assert server.connections == 2


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def test_a_refused_connection_becomes_transport_error_after_every_attempt(
    clock: InstantClock,
) -> None:
    async with TypeformClient(
        base_url=f"http://127.0.0.1:{unused_port()}",
        token=TOKEN,
        retry=FAST,
        clock=clock,
        sleep=clock.sleep,
    ) as client:
        with pytest.raises(TransportError, match="ConnectError") as info:
            await client.get_webhook("abc123", "intake")
        assert client.metrics.requests_sent == FAST.max_attempts
    assert isinstance(info.value.__cause__, httpx.ConnectError)
    assert "abc123/intake" in str(info.value)


# --------------------------------------------------------------------------- read-only, config


@pytest.mark.parametrize("write", ["put", "delete"])
async def test_a_read_only_client_refuses_every_write_before_sending(
    httpserver: HTTPServer, make_client: Callable[..., TypeformClient], write: str
) -> None:
    async with make_client(read_only=True) as client:
        call: Awaitable[Written] = (
            client.put_webhook("abc123", "intake", {"url": "https://x.test"})
            if write == "put"
            else client.delete_webhook("abc123", "intake")
        )
        with pytest.raises(ConfigError, match="read-only"):
            await call
        assert client.metrics.requests_sent == 0
    assert httpserver.log == []


async def test_a_read_only_client_still_reads(
    httpserver: HTTPServer, make_client: Callable[..., TypeformClient]
) -> None:
    httpserver.expect_request("/forms/abc123/webhooks").respond_with_json({"items": [WEBHOOK]})
    async with make_client(read_only=True) as client:
        assert len(await client.list_webhooks("abc123")) == 1


@pytest.mark.parametrize("token", ["", "   "])
def test_a_missing_token_is_a_config_error(token: str) -> None:
    with pytest.raises(ConfigError, match="TYPEFORM_TOKEN"):
        TypeformClient(base_url="https://api.typeform.com", token=token)


@pytest.mark.parametrize("url", ["ftp://api.typeform.com", "api.typeform.com", "https://"])
def test_an_api_url_that_is_not_absolute_http_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError, match="absolute http"):
        TypeformClient(base_url=url, token=TOKEN)


def test_a_rate_above_two_logs_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="reconciler.client")
    TypeformClient(base_url="https://api.typeform.com", token=TOKEN, rate=2.0)
    assert caplog.records == []
    TypeformClient(base_url="https://api.typeform.com", token=TOKEN, rate=5.0)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "2/s Typeform documents" in warnings[0].getMessage()


# --------------------------------------------------------------------------- pacing over HTTP


async def test_request_starts_seen_by_the_server_are_spaced_one_interval_apart_under_concurrency(
    httpserver: HTTPServer,
) -> None:
    rate, count = 20.0, 10
    arrivals: list[float] = []

    def record(_: Request) -> Response:
        arrivals.append(time.monotonic())
        return Response(b'{"items": []}', content_type="application/json")

    httpserver.expect_request("/forms/abc123/webhooks").respond_with_handler(record)
    async with TypeformClient(
        base_url=httpserver.url_for("/"), token=TOKEN, rate=rate, concurrency=4
    ) as client:
        async with anyio.create_task_group() as tg:
            for _ in range(count):
                tg.start_soon(client.list_webhooks, "abc123")
        assert client.metrics.requests_sent == count
    arrivals.sort()
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert len(gaps) == count - 1
    # Loopback adds a little jitter between the client's start and the server's handler.
    assert min(gaps) >= 1 / rate - 0.01


# --------------------------------------------------------------------------- secrets


def _echoing() -> dict[str, Any]:
    """An error body that (badly) echoes the token back."""
    return error_body("ECHO", f"token {TOKEN} is not allowed", [{"token": TOKEN}])


def _echoing_the_secret() -> dict[str, Any]:
    """A 400 for a PUT that (badly) echoes the secret the request carried."""
    return error_body(
        "VALIDATION",
        f"secret {SECRET} too short (token {TOKEN})",
        [{"field": "secret", "description": f"bad secret {SECRET}"}],
    )


async def _force_each_error(
    httpserver: HTTPServer, make: Callable[..., TypeformClient]
) -> list[tuple[str, BaseException]]:
    """Return (name, exception) for one forced instance of every error type."""
    hook = "/forms/abc123/webhooks/intake"
    scenarios: list[tuple[str, int, Any, Callable[[TypeformClient], Awaitable[object]]]] = [
        ("auth", 401, _echoing(), lambda c: c.get_webhook("abc123", "intake")),
        ("forbidden", 403, _echoing(), lambda c: c.get_webhook("abc123", "intake")),
        ("form", 404, _echoing(), lambda c: c.list_webhooks("abc123")),
        ("webhook", 404, _echoing(), lambda c: c.get_webhook("abc123", "intake")),
        (
            "validation",
            400,
            _echoing_the_secret(),
            lambda c: c.put_webhook("abc123", "intake", {"url": "x", "secret": SECRET}),
        ),
        ("rate", 429, _echoing(), lambda c: c.get_webhook("abc123", "intake")),
        ("server", 500, _echoing(), lambda c: c.get_webhook("abc123", "intake")),
        ("unexpected", 418, _echoing(), lambda c: c.get_webhook("abc123", "intake")),
        ("text", 502, f"upstream said Bearer {TOKEN}", lambda c: c.get_webhook("abc123", "intake")),
        (
            "malformed",
            200,
            {"token": TOKEN, "secret": SECRET},
            lambda c: c.get_webhook("abc123", "intake"),
        ),
    ]
    results: list[tuple[str, BaseException]] = []
    for name, status, body, call in scenarios:
        httpserver.clear()
        for path in (hook, "/forms/abc123/webhooks"):
            handler = httpserver.expect_request(path)
            if isinstance(body, str):
                handler.respond_with_data(body, status=status)
            else:
                handler.respond_with_json(body, status=status, headers={"Retry-After": "1"})
        async with make() as client:
            with pytest.raises(ReconcileError) as info:
                await call(client)
        results.append((name, info.value))

    async with make(read_only=True) as client:
        with pytest.raises(ConfigError) as refused:
            await client.delete_webhook("abc123", "intake")
    results.append(("read-only", refused.value))

    async with make(base_url=f"http://127.0.0.1:{unused_port()}") as client:
        with pytest.raises(TransportError) as unreachable:
            await client.get_webhook("abc123", "intake")
    results.append(("transport", unreachable.value))
    return results


async def test_the_token_and_secrets_never_appear_in_errors_or_logs(
    httpserver: HTTPServer,
    make_client: Callable[..., TypeformClient],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, httpx and httpcore included
    results = await _force_each_error(httpserver, make_client)
    kinds = {type(exc) for _, exc in results}
    assert kinds >= {
        AuthenticationError,
        FormNotFoundError,
        WebhookNotFoundError,
        ValidationAPIError,
        RateLimitedError,
        ServerError,
        UnexpectedAPIError,
        ConfigError,
        TransportError,
    }
    for name, exc in results:
        for text in (str(exc), repr(exc), repr(vars(exc))):
            assert TOKEN not in text, name
            assert SECRET not in text, name
    assert caplog.records, "the scenarios should have logged something"
    for record in caplog.records:
        assert TOKEN not in record.getMessage()
        assert SECRET not in record.getMessage()
    assert TOKEN not in caplog.text
    assert SECRET not in caplog.text


async def test_text_the_server_echoes_keeps_its_meaning_with_the_token_scrubbed(
    httpserver: HTTPServer, make_client: Callable[..., TypeformClient]
) -> None:
    httpserver.expect_request("/forms/abc123/webhooks/intake", method="PUT").respond_with_json(
        _echoing_the_secret(), status=400
    )
    async with make_client() as client:
        with pytest.raises(ValidationAPIError) as info:
            await client.put_webhook(
                "abc123", "intake", {"url": "https://x.test", "secret": SECRET}
            )
    assert info.value.description == "secret *** too short (token ***)"
    assert info.value.details == ({"field": "secret", "description": "bad secret ***"},)
    assert "secret: bad secret ***" in str(info.value)


# --------------------------------------------------------------------------- small parts


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("3", 3.0),
        (" 1.5 ", 1.5),
        ("0", 0.0),
        ("-4", 0.0),
        ("Tue, 14 Nov 2023 22:13:23 GMT", 3.0),
        ("Tue, 14 Nov 2023 22:13:00 GMT", 0.0),
        ("soon", None),
        ("inf", None),
        (None, None),
    ],
)
def test_retry_after_is_read_as_seconds_or_as_an_http_date(
    header: str | None, expected: float | None
) -> None:
    now = 1_700_000_000.0  # Tue, 14 Nov 2023 22:13:20 GMT
    assert parse_retry_after(header, now=now) == expected


def test_full_jitter_stays_within_the_capped_exponential_backoff() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=3.0)
    rng = random.Random(1)
    for retry, cap in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 3.0), (10, 3.0)]:
        delays = [policy.backoff(retry, rng) for _ in range(200)]
        assert all(0.0 <= d <= cap for d in delays)
        assert max(delays) > cap * 0.8  # the jitter uses the whole range, not a slice


def test_without_jitter_the_backoff_is_the_capped_exponential() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=3.0, jitter=Jitter.NONE)
    assert [policy.backoff(n, random.Random()) for n in range(4)] == [0.5, 1.0, 2.0, 3.0]


def test_a_retry_policy_without_attempts_is_rejected() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)


def test_metrics_report_the_achieved_rate_of_request_starts() -> None:
    metrics = ClientMetrics(requests_sent=5, started=10.0, last_start=12.0, last_end=12.2)
    assert metrics.achieved_rate == pytest.approx(2.0)
    assert metrics.elapsed == pytest.approx(2.2)
    assert metrics.to_json()["achieved_rate"] == pytest.approx(2.0)
    assert ClientMetrics().achieved_rate == 0.0
    assert ClientMetrics().elapsed == 0.0


async def test_clients_of_one_account_can_share_a_pacer(
    httpserver: HTTPServer, clock: InstantClock
) -> None:
    from reconciler.pacer import Pacer

    httpserver.expect_request("/forms/abc123/webhooks").respond_with_json({"items": []})
    pacer = Pacer(rate=2.0, clock=clock, sleep=clock.sleep)
    started = clock()
    for _ in range(2):
        async with TypeformClient(
            base_url=httpserver.url_for("/"), token=TOKEN, pacer=pacer, clock=clock
        ) as client:
            await client.list_webhooks("abc123")
    assert clock() - started == pytest.approx(0.5)
    assert pacer.wait_seconds == pytest.approx(0.5)


# --------------------------------------------------------------------------- the emulator


async def test_the_client_and_the_emulator_agree_on_every_shape(
    inprocess_client_transport: httpx.AsyncBaseTransport, clock: InstantClock
) -> None:
    body = {
        "url": "https://hooks.example.com/agree",
        "enabled": False,
        "verify_ssl": True,
        "event_types": {"form_response": True, "form_response_partial": True},
        "secret": SECRET,
    }
    async with TypeformClient(
        base_url="http://emulator.invalid",
        token=TOKEN,
        transport=inprocess_client_transport,
        clock=clock,
        sleep=clock.sleep,
    ) as client:
        forms = await client.list_forms()
        assert forms
        form_id = forms[0]["id"]
        assert (await client.get_form(form_id))["id"] == form_id
        assert await client.list_workspaces()
        written = await client.put_webhook(form_id, "agree", body)
        assert written.webhook is not None
        assert written.webhook.url == body["url"]
        assert written.webhook.enabled is False
        assert written.webhook.event_types == EventTypes(True, True)
        live = await client.get_webhook(form_id, "agree")
        assert live.id == written.webhook.id
        assert "agree" in [w.key.tag for w in await client.list_webhooks(form_id)]
        assert await client.delete_webhook(form_id, "agree") == Written(None, 1)
        with pytest.raises(WebhookNotFoundError):
            await client.get_webhook(form_id, "agree")
        with pytest.raises(FormNotFoundError):
            await client.list_webhooks("nosuchform")

"""``reconcile ping`` and ``reconciler.delivery.ping`` against real local receivers.

The receiver (pytest-httpserver on loopback) checks the signature with its own HMAC, as a
Typeform receiver would, and answers 401 when it does not match: a wrongly signed ping cannot
pass a test that expects 2xx. Refused URLs are checked to be refused before any connection.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import json
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import anyio
import httpx
import pytest
from click.testing import CliRunner, Result
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from reconciler.commands.signature import ping as ping_command
from reconciler.delivery import check_receiver_url, is_loopback_host, ping
from reconciler.errors import ConfigError

SECRET = "ping-secret-never-printed-7f3a"
SECRET_ENV = "PING_TEST_SECRET"

MANIFEST = """\
apiVersion: reconciler/v1
kind: WebhookSet
metadata: {{name: pings}}
spec:
  webhooks:
    - form_id: f1
      tag: signed
      url: {url}
      secret: {{env: {env}}}
    - form_id: f1
      tag: unsigned
      url: {url}
    - form_id: f1
      tag: gone
      state: absent
---
apiVersion: reconciler/v1
kind: Account
metadata: {{name: eu}}
spec:
  api_url: https://api.eu.typeform.com
  token: {{env: PING_TEST_EU_TOKEN}}
---
apiVersion: reconciler/v1
kind: WebhookSet
metadata: {{name: eu-pings}}
spec:
  account: eu
  webhooks:
    - form_id: f2
      tag: eu-hook
      url: {url}
      secret: {{env: {env}}}
"""


def write_manifests(directory: Path, url: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "pings.yaml").write_text(MANIFEST.format(url=url, env=SECRET_ENV))
    return directory


def invoke(*args: str, secret: str | None = SECRET) -> Result:
    # standalone_mode=False hands back the command's return value, which reconciler.cli.main
    # turns into the exit code.
    return CliRunner().invoke(
        ping_command, list(args), env={SECRET_ENV: secret}, standalone_mode=False
    )


def exit_code(result: Result) -> int:
    assert result.exception is None, result.exception
    assert isinstance(result.return_value, int)
    assert SECRET not in result.stdout + result.stderr
    return result.return_value


def expected_signature(body: bytes) -> str:
    """Computed here, independently of reconciler.signature."""
    digest = hmac.new(SECRET.encode(), body, hashlib.sha256).digest()
    return "sha256=" + base64.b64encode(digest).decode()


class Receiver:
    """Answers ``status`` to deliveries signed with SECRET (or unsigned ones, if told to accept
    them), 401 to the others; keeps every request."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.accept_unsigned = False
        self.requests: list[tuple[dict[str, str], bytes]] = []

    def __call__(self, request: Request) -> Response:
        body = request.get_data()
        self.requests.append((dict(request.headers), body))
        signature = request.headers.get("Typeform-Signature")
        if signature is None and self.accept_unsigned:
            return Response("", status=self.status)
        if signature is None or not hmac.compare_digest(signature, expected_signature(body)):
            return Response("bad signature", status=401)
        return Response("", status=self.status)


@pytest.fixture
def receiver(httpserver: HTTPServer) -> Receiver:
    handler = Receiver()
    httpserver.expect_request("/hook", method="POST").respond_with_handler(handler)
    return handler


@pytest.fixture
def manifests(tmp_path: Path, httpserver: HTTPServer) -> Path:
    return write_manifests(tmp_path / "manifests", httpserver.url_for("/hook"))


# --------------------------------------------------------------------------- the command


def test_ping_sends_a_signed_sample_and_exits_0_when_the_receiver_says_2xx(
    receiver: Receiver, manifests: Path, httpserver: HTTPServer
) -> None:
    result = invoke("f1/signed", str(manifests))
    assert exit_code(result) == 0
    url = httpserver.url_for("/hook")
    assert result.stdout.startswith(f"POST {url} (signed sample form_response): 200 OK in ")
    assert result.stdout.endswith(" ms\n")
    assert result.stderr == ""
    [(headers, body)] = receiver.requests
    assert headers["Typeform-Signature"] == expected_signature(body)
    assert headers["Content-Type"] == "application/json"
    delivery = json.loads(body)
    assert delivery["event_type"] == "form_response"
    assert delivery["form_response"]["form_id"] == "f1"
    assert SECRET.encode() not in body
    assert all(SECRET not in value for value in headers.values())


def test_ping_exits_1_when_the_receiver_answers_500(receiver: Receiver, manifests: Path) -> None:
    receiver.status = 500
    result = invoke("f1/signed", str(manifests))
    assert exit_code(result) == 1
    assert ": 500 Internal Server Error (not 2xx) in " in result.stdout
    assert len(receiver.requests) == 1  # one delivery, never retried


def test_a_receiver_that_rejects_the_signature_fails_the_ping(
    receiver: Receiver, manifests: Path
) -> None:
    result = invoke("f1/signed", str(manifests), secret="some-other-secret")
    assert exit_code(result) == 1
    assert ": 401 Unauthorized (not 2xx)" in result.stdout


def test_ping_of_a_webhook_of_another_account_uses_its_declaration(
    receiver: Receiver, manifests: Path
) -> None:
    result = invoke("eu:f2/eu-hook", str(manifests))
    assert exit_code(result) == 0
    [(_, body)] = receiver.requests
    assert json.loads(body)["form_response"]["form_id"] == "f2"


def test_ping_of_a_webhook_without_secret_sends_it_unsigned_and_says_so(
    receiver: Receiver, manifests: Path
) -> None:
    receiver.accept_unsigned = True
    result = invoke("f1/unsigned", str(manifests))
    assert exit_code(result) == 0
    assert "(unsigned sample form_response): 200 OK" in result.stdout
    assert result.stderr == "note: f1/unsigned declares no secret; sending the sample unsigned\n"
    [(headers, _)] = receiver.requests
    assert "Typeform-Signature" not in headers


def test_ping_with_an_unresolvable_secret_sends_nothing(
    receiver: Receiver, manifests: Path
) -> None:
    result = invoke("f1/signed", str(manifests), secret=None)
    assert exit_code(result) == 1
    assert result.stderr == f"Error: environment variable {SECRET_ENV} is not set\n"
    assert receiver.requests == []


def test_ping_of_an_undeclared_address_is_a_clear_error_naming_the_form_tags(
    receiver: Receiver, manifests: Path
) -> None:
    result = invoke("f1/nope", str(manifests))
    assert exit_code(result) == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"Error: no webhook f1/nope is declared in {manifests} "
        "(declared on that form: gone, signed, unsigned)\n"
    )
    result = invoke("eu:f1/signed", str(manifests))
    assert exit_code(result) == 1
    assert result.stderr == f"Error: no webhook eu:f1/signed is declared in {manifests}\n"
    assert receiver.requests == []


def test_ping_of_a_webhook_declared_absent_is_refused(receiver: Receiver, manifests: Path) -> None:
    result = invoke("f1/gone", str(manifests))
    assert exit_code(result) == 1
    assert result.stderr == (
        "Error: f1/gone is declared with state: absent; there is nothing to ping\n"
    )


@pytest.mark.parametrize("address", ["f1", "f1/", "/signed", "f1/signed/x", "EU:f1/signed", ""])
def test_a_malformed_address_is_a_one_line_error(manifests: Path, address: str) -> None:
    result = invoke(address, str(manifests))
    assert exit_code(result) == 1
    assert result.stderr.startswith(f"Error: {address!r} is not a webhook address: expected ")
    assert result.stderr.count("\n") == 1


def test_ping_with_invalid_manifests_reports_them_and_sends_nothing(tmp_path: Path) -> None:
    result = invoke("f1/signed", str(tmp_path / "missing"))
    assert exit_code(result) == 1
    assert result.stderr.startswith("Error: ")
    assert "missing" in result.stderr


def test_ping_refuses_plain_http_to_a_remote_host_before_connecting(tmp_path: Path) -> None:
    manifests = write_manifests(tmp_path / "m", "http://203.0.113.9:9/hook")  # TEST-NET-3
    started = time.monotonic()
    result = invoke("f1/signed", str(manifests), "--timeout", "30")
    assert exit_code(result) == 1
    assert result.stderr == (
        "Error: refusing to send a delivery over plain http to 203.0.113.9: use https "
        "(plain http is allowed only to a loopback address)\n"
    )
    assert time.monotonic() - started < 5  # no connection attempt was waited for


def test_ping_does_not_follow_a_redirect(httpserver: HTTPServer, manifests: Path) -> None:
    elsewhere = Receiver()
    httpserver.expect_request("/hook").respond_with_response(
        Response("", status=307, headers={"Location": httpserver.url_for("/elsewhere")})
    )
    httpserver.expect_request("/elsewhere").respond_with_handler(elsewhere)
    result = invoke("f1/signed", str(manifests))
    assert exit_code(result) == 1
    assert "307 Temporary Redirect (not 2xx)" in result.stdout
    assert result.stdout.rstrip().endswith(
        "; the receiver redirected (307); redirects are not followed"
    )
    assert elsewhere.requests == []


def test_ping_gives_up_after_the_timeout_when_the_receiver_never_answers(
    tmp_path: Path, silent_port: int
) -> None:
    manifests = write_manifests(tmp_path / "m", f"http://127.0.0.1:{silent_port}/hook")
    started = time.monotonic()
    result = invoke("f1/signed", str(manifests), "--timeout", "0.3")
    took = time.monotonic() - started
    assert exit_code(result) == 1
    assert "no answer after" in result.stdout
    assert result.stdout.endswith(": no answer within 0.3 s\n")
    assert took < 3


def test_ping_reports_a_refused_connection(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    manifests = write_manifests(tmp_path / "m", f"http://127.0.0.1:{port}/hook")
    result = invoke("f1/signed", str(manifests))
    assert exit_code(result) == 1
    assert ": no answer after " in result.stdout
    assert "could not connect to 127.0.0.1" in result.stdout


def test_ping_help_gives_exit_codes_and_an_example() -> None:
    result = CliRunner().invoke(ping_command, ["--help"])
    assert result.exit_code == 0
    assert "Exit codes: 0 the receiver answered 2xx, 1 any other answer" in result.stdout
    assert "reconcile ping u6nXL7/onboarding-intake" in result.stdout


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port whose listener accepts connections (backlog) but never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


# --------------------------------------------------------------------------- delivery.ping


class Recorder(httpx.AsyncBaseTransport):
    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(204)


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/hook",
        "http://10.0.0.1/hook",
        "http://0.0.0.0:8080/hook",
        "http://127.0.0.1.nip.io/hook",
        "http://localhost.example.com/hook",
        "http://[::2]/hook",
        "ftp://127.0.0.1/hook",
        "https://user:pass@hooks.example.com/hook",
        "http://user@127.0.0.1/hook",
        "/relative/hook",
        "https:///no-host",
        "not a url at all",
    ],
)
def test_a_receiver_url_that_could_leak_is_refused_without_any_request(url: str) -> None:
    recorder = Recorder()
    with pytest.raises(ConfigError):
        anyio.run(lambda: ping(url, b"{}", "sha256=x", transport=recorder))
    assert recorder.requests == []


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/hook",
        "http://127.0.0.1:9/hook",
        "http://127.8.9.10/hook",
        "http://localhost:8000/hook",
        "http://LOCALHOST./hook",
        "http://[::1]:8000/hook",
        "http://[::ffff:127.0.0.1]/hook",
    ],
)
def test_https_and_loopback_http_receivers_are_allowed(url: str) -> None:
    recorder = Recorder()
    result = anyio.run(lambda: ping(url, b'{"a":1}', "sha256=abc", transport=recorder))
    assert (result.status, result.ok, result.error) == (204, True, None)
    [request] = recorder.requests
    assert request.method == "POST"
    assert request.content == b'{"a":1}'
    assert request.headers["Typeform-Signature"] == "sha256=abc"
    assert request.headers["Content-Type"] == "application/json"


def test_loopback_means_literal_loopback_addresses_and_localhost_only() -> None:
    assert is_loopback_host("127.0.0.1")
    assert is_loopback_host("127.255.255.254")
    assert is_loopback_host("::1")
    assert is_loopback_host("[::1]")
    assert is_loopback_host("localhost")
    assert not is_loopback_host("128.0.0.1")
    assert not is_loopback_host("localhost.evil.example")
    assert not is_loopback_host("2130706433")  # 127.0.0.1 as a number: not resolved, refused
    assert not is_loopback_host("")


def test_check_receiver_url_never_repeats_user_info_in_its_error() -> None:
    with pytest.raises(ConfigError) as refused:
        check_receiver_url("https://alice:hunter2@hooks.example.com/x")
    assert "hunter2" not in str(refused.value)


def test_a_non_positive_timeout_is_refused() -> None:
    for timeout in (0.0, -1.0, float("nan")):
        with pytest.raises(ConfigError, match="timeout"):
            anyio.run(partial(ping, "https://h.example/x", b"", None, timeout=timeout))


# --------------------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed: it makes the self-signed certificate")
    where = tmp_path_factory.mktemp("tls")
    cert, key = where / "cert.pem", where / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture
def tls_receiver(self_signed: tuple[Path, Path]) -> Iterator[tuple[str, list[str]]]:
    """An https receiver on 127.0.0.1 with a certificate nobody trusts; yields (url, paths)."""
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            seen.append(self.path)
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*self_signed)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}/hook", seen
    finally:
        server.shutdown()
        server.server_close()


def test_a_receiver_whose_certificate_is_not_trusted_gets_nothing(
    tls_receiver: tuple[str, list[str]], tmp_path: Path
) -> None:
    url, seen = tls_receiver
    manifests = write_manifests(tmp_path / "m", url)
    result = invoke("f1/signed", str(manifests))
    assert exit_code(result) == 1
    assert "could not connect to 127.0.0.1" in result.stdout
    assert "CERTIFICATE_VERIFY_FAILED" in result.stdout
    assert seen == []


def test_ping_verifies_certificates_even_for_a_webhook_declared_verify_ssl_false(
    tls_receiver: tuple[str, list[str]], tmp_path: Path
) -> None:
    url, seen = tls_receiver
    manifests = write_manifests(tmp_path / "m", url)
    text = (manifests / "pings.yaml").read_text()
    (manifests / "pings.yaml").write_text(
        text.replace("      tag: signed\n", "      tag: signed\n      verify_ssl: false\n")
    )
    result = invoke("f1/signed", str(manifests))
    assert exit_code(result) == 1
    assert result.stderr == (
        "note: f1/signed declares verify_ssl: false; ping verifies the receiver's "
        "certificate anyway\n"
    )
    assert "CERTIFICATE_VERIFY_FAILED" in result.stdout
    assert seen == []


def test_the_same_receiver_answers_when_its_certificate_is_trusted(
    tls_receiver: tuple[str, list[str]], self_signed: tuple[Path, Path]
) -> None:
    # The control for the test above: the server works, so only verification refused it.
    url, seen = tls_receiver
    trusting = httpx.AsyncHTTPTransport(verify=ssl.create_default_context(cafile=self_signed[0]))
    result = anyio.run(lambda: ping(url, b"{}", None, transport=trusting))
    assert (result.status, result.ok) == (200, True)
    assert seen == ["/hook"]

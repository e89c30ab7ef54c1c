"""Deliver one webhook payload to a receiver, the way Typeform would: for ``reconcile ping``.

This is the only place the tool talks to a webhook *receiver* (everything else talks to the
Typeform API). A receiver URL comes from a manifest, so before any connection it is held to the
rules of SPEC section 10: ``https``, or plain ``http`` only to a loopback host (127.0.0.0/8,
``::1``, ``localhost``), and never a URL with a user-info part (httpx would send it as Basic
auth). TLS certificates are always verified and redirects are never followed: a signed body goes
to the declared URL or nowhere.

It must never send a secret (only the signature computed from it, which the caller passes in),
never retry (one delivery, one answer), and never raise for what the receiver or the network
does: that is a ``PingResult``. Only a refused URL raises (``ConfigError``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import anyio
import httpx

from reconciler import __version__
from reconciler.errors import ConfigError
from reconciler.hosts import is_loopback_host
from reconciler.signature import SIGNATURE_HEADER

__all__ = ["PingResult", "check_receiver_url", "is_loopback_host", "ping"]

USER_AGENT = f"typeform-reconciler/{__version__} (ping)"


@dataclass(frozen=True, slots=True)
class PingResult:
    """What the receiver answered. ``status`` is ``None`` when no HTTP answer came (``error``
    says why); ``ok`` is true for a 2xx; ``elapsed_ms`` is the time until the status line."""

    status: int | None
    ok: bool
    error: str | None
    elapsed_ms: int


def check_receiver_url(url: str) -> httpx.URL:
    """Refuse a receiver URL that could leak the delivery; return it parsed."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        raise ConfigError(f"the receiver URL {url!r} is not a valid URL") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ConfigError(f"the receiver URL {url!r} must be an absolute https URL")
    if parsed.userinfo:
        raise ConfigError(
            "the receiver URL carries a user name or password; refusing to send it anywhere"
        )
    if parsed.scheme == "http" and not is_loopback_host(parsed.host):
        raise ConfigError(
            f"refusing to send a delivery over plain http to {parsed.host}: use https "
            "(plain http is allowed only to a loopback address)"
        )
    return parsed


async def ping(
    url: str,
    body: bytes,
    signature: str | None,
    *,
    timeout: float = 10,  # noqa: ASYNC109 - bounds connect + answer as one, for the CLI
    transport: httpx.AsyncBaseTransport | None = None,
) -> PingResult:
    """POST ``body`` as JSON to ``url`` with ``Typeform-Signature: signature`` (none if ``None``).

    ``timeout`` bounds the whole exchange, connection included. Raises ``ConfigError`` for a URL
    ``check_receiver_url`` refuses, before any connection; every other failure is a result.
    """
    if not timeout > 0:  # also refuses NaN
        raise ConfigError("the timeout must be a positive number of seconds")
    target = check_receiver_url(url)
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
    if signature is not None:
        headers[SIGNATURE_HEADER] = signature
    started = time.monotonic()

    def elapsed() -> int:
        return round((time.monotonic() - started) * 1000)

    status: int | None = None
    error: str | None = None
    with anyio.move_on_after(timeout) as scope:
        try:
            client = httpx.AsyncClient(
                transport=transport,
                timeout=httpx.Timeout(timeout),
                verify=True,  # never configurable: a receiver's certificate is always checked
                follow_redirects=False,  # the signed body goes to the declared URL or nowhere
            )
            # The answer's body is never read: only its status matters.
            async with (
                client,
                client.stream("POST", target, content=body, headers=headers) as answer,
            ):
                status = answer.status_code
        except httpx.TimeoutException:
            error = f"no answer within {timeout:g} s"
        except httpx.ConnectError as exc:
            error = f"could not connect to {target.host}: {_describe(exc)}"
        except httpx.HTTPError as exc:
            error = f"the exchange with {target.host} failed: {_describe(exc)}"
    if scope.cancelled_caught:
        status, error = None, f"no answer within {timeout:g} s"
    took = elapsed()
    if status is None:
        return PingResult(status=None, ok=False, error=error or "no answer", elapsed_ms=took)
    if 300 <= status < 400:
        error = f"the receiver redirected ({status}); redirects are not followed"
    return PingResult(status=status, ok=200 <= status < 300, error=error, elapsed_ms=took)


def _describe(exc: httpx.HTTPError) -> str:
    text = str(exc).strip()
    return text or type(exc).__name__

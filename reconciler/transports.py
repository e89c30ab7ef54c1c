"""Where each account's API is and how to reach it: the one place an API URL becomes a connection.

An account's API URL (``--api-url``, ``TYPEFORM_API_URL``, an Account document, or the embedded
``emulator:[PATH]``) resolves here to an ``Endpoint``: the base URL the client talks to, the
httpx transport to use (``None`` for real HTTP), and the token. Tests and Python users hand the
pipeline their own resolver instead (for instance one that returns an in-process emulator
transport); nothing else in the package opens an emulator.

SPEC section 10 is enforced here, before any connection: an API URL with a user-info part is
refused wherever it comes from (httpx would send it as Basic auth instead of our token), and a
token is never sent over plain ``http://`` except to a loopback address.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from reconciler.credentials import resolve_token
from reconciler.errors import ConfigError
from reconciler.hosts import is_loopback_host
from reconciler.models import DEFAULT_ACCOUNT, Account

__all__ = [
    "DEFAULT_API_URL",
    "EMULATOR_TOKEN",
    "Endpoint",
    "EndpointResolver",
    "account_api_url",
    "check_api_url",
    "default_resolver",
    "is_loopback_host",
]

DEFAULT_API_URL = "https://api.typeform.com"
EMULATOR_TOKEN = "in-process-emulator-needs-no-token"
"""Sent to the in-process emulator when no token is set (it accepts any non-empty one)."""
_EMULATOR_SCHEME = "emulator:"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """How to reach one account's API. ``api_url`` is the URL as configured (what a saved plan
    binds to); ``base_url`` is what the client sends requests to."""

    account: str
    api_url: str
    base_url: str
    token: str = field(repr=False)
    transport: httpx.AsyncBaseTransport | None = None


EndpointResolver = Callable[[Account, str], Endpoint]
"""``(account, api_url) -> Endpoint``; the pipeline calls it once per account per run."""


def account_api_url(account: Account, *, override: str | None, environ: Mapping[str, str]) -> str:
    """The API URL of ``account``: ``--api-url`` and ``TYPEFORM_API_URL`` apply to ``default``."""
    if account.name == DEFAULT_ACCOUNT:
        return override or account.api_url or environ.get("TYPEFORM_API_URL") or DEFAULT_API_URL
    if account.api_url is None:
        raise ConfigError(f"account {account.name!r} declares no api_url")
    return account.api_url


def check_api_url(account: str, url: str) -> httpx.URL:
    """Refuse what would leak the token or bypass it; return the parsed URL."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        raise ConfigError(f"the API URL of account '{account}' is not a valid URL") from None
    if parsed.userinfo:
        raise ConfigError(
            f"the API URL of account '{account}' carries a user name or password; remove it "
            "(the token comes from TYPEFORM_TOKEN or the Account document, never from a URL)"
        )
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ConfigError(
            f"the API URL of account '{account}' must be an absolute https URL "
            f"(or emulator:[PATH]), got {url!r}"
        )
    if parsed.scheme == "http" and not is_loopback_host(parsed.host):
        raise ConfigError(
            f"refusing to send the API token of account '{account}' over plain http to "
            f"{parsed.host}: use https (plain http is allowed only to a loopback address)"
        )
    return parsed


def _open_emulator(account: Account, api_url: str) -> tuple[str, httpx.AsyncBaseTransport]:
    from reconciler.emulator import open_emulator  # starlette only when the emulator is used

    try:
        emulated = open_emulator(api_url)
    except ConfigError:
        raise
    except OSError as exc:
        path = api_url[len(_EMULATOR_SCHEME) :] or "the default path"
        raise ConfigError(
            f"cannot open the emulator state {path} of account '{account.name}': "
            f"{exc.strerror or type(exc).__name__}"
        ) from None
    return emulated.base_url, emulated.transport


def default_resolver(
    environ: Mapping[str, str], secret_dirs: Sequence[Path] = ()
) -> EndpointResolver:
    """Real HTTP for https URLs (and loopback http), the in-process emulator for ``emulator:``."""

    def resolve(account: Account, api_url: str) -> Endpoint:
        token = resolve_token(account, environ=environ, secret_dirs=secret_dirs)
        if api_url.startswith(_EMULATOR_SCHEME):
            base_url, transport = _open_emulator(account, api_url)
            return Endpoint(account.name, api_url, base_url, token or EMULATOR_TOKEN, transport)
        check_api_url(account.name, api_url)
        if token is None:
            where = f" (declared at {account.location})" if account.location else ""
            variable = "TYPEFORM_TOKEN" if account.name == DEFAULT_ACCOUNT else "its token"
            raise ConfigError(
                f"no API token for account {account.name!r}{where}: set {variable}, "
                "or use --api-url emulator: to try the tool without one"
            )
        return Endpoint(account.name, api_url, api_url, token)

    return resolve

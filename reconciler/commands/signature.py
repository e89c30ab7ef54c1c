"""``reconcile verify-signature`` and ``reconcile ping``: the receiving side of a webhook.

``verify-signature`` checks one saved delivery body (stdin) against the ``Typeform-Signature``
value it came with, using the secret named by an environment variable. ``ping`` sends a signed
sample ``form_response`` to the URL a manifest declares for a webhook, so a receiver can be tested
before Typeform sends it anything real.

Both are thin shells over ``reconciler.signature`` and ``reconciler.delivery``. They must never
print a secret: only its variable's name or file reference, and verdicts computed from it.
Every user mistake (unset variable, unknown address, refused URL) is one ``Error:`` line on stderr
and exit 1.
"""

from __future__ import annotations

import json
import os
import re
import sys
from datetime import UTC, datetime
from functools import partial
from http import HTTPStatus

import anyio
import click

from reconciler.commands._options import paths_argument, resolve_paths
from reconciler.credentials import resolve_secret
from reconciler.delivery import PingResult
from reconciler.delivery import ping as deliver
from reconciler.errors import ConfigError, ReconcileError
from reconciler.manifests import load_desired
from reconciler.models import (
    DEFAULT_ACCOUNT,
    DesiredState,
    DesiredWebhook,
    Presence,
    SecretRef,
    SecretSource,
    WebhookKey,
)
from reconciler.signature import Verdict, diagnose, sample_form_response, sign

__all__ = ["MAX_BODY_BYTES", "find_webhook", "parse_address", "ping", "verify_signature"]

EXIT_OK = 0
EXIT_FAILED = 1
MAX_BODY_BYTES = 10 * 1024 * 1024
"""Typeform deliveries are small; a body larger than this on stdin is a mistake, not a payload."""

_ADDRESS = re.compile(
    r"^(?:(?P<account>[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?):)?"
    r"(?P<form_id>[A-Za-z0-9]{1,64})/(?P<tag>[A-Za-z0-9][A-Za-z0-9._-]{0,63})$"
)


def _fail(message: str) -> int:
    click.echo(f"Error: {message}", err=True)
    return EXIT_FAILED


@click.command("verify-signature")
@click.option(
    "--secret-env",
    metavar="NAME",
    required=True,
    help="Environment variable holding the webhook's secret (never a value on the command line).",
)
@click.option(
    "--signature",
    metavar="VALUE",
    required=True,
    help="The delivery's Typeform-Signature header value, sha256=<base64>.",
)
def verify_signature(secret_env: str, signature: str) -> int:
    """Check a delivery body on stdin against its Typeform-Signature value.

    The body must be the raw bytes as received (at most 10 MB). Prints "valid", or "invalid:"
    and why. The secret is read from the variable named by --secret-env and never printed.

    \b
    Exit codes: 0 valid, 1 invalid or an error (variable unset, body too large).

    \b
    Example:
      reconcile verify-signature --secret-env ONBOARDING_WEBHOOK_SECRET \\
          --signature 'sha256=igamQiTYPRvwohQPq31bRizz9FBZLHljkQ7TMekDEFY=' < delivery.json
    """
    try:
        secret = resolve_secret(SecretRef(SecretSource.ENV, secret_env), environ=os.environ)
    except ReconcileError as exc:
        return _fail(str(exc))
    stdin = sys.stdin.buffer
    if stdin.isatty():
        return _fail("give the delivery body on stdin, e.g. `... < delivery.json`")
    body = stdin.read(MAX_BODY_BYTES + 1)
    if len(body) > MAX_BODY_BYTES:
        return _fail(f"the body on stdin is larger than {MAX_BODY_BYTES // (1024 * 1024)} MB")
    verdict = diagnose(body, secret, signature)
    if verdict is Verdict.VALID:
        click.echo("valid")
        return EXIT_OK
    reason = verdict.reason
    if verdict is Verdict.MISMATCH and body.endswith(b"\n"):
        stripped = body.rstrip(b"\r\n")
        if diagnose(stripped, secret, signature) is Verdict.VALID:
            reason += (
                " (it would match without the body's final line break: "
                "was one added when the body was saved?)"
            )
    click.echo(f"invalid: {reason}")
    return EXIT_FAILED


def parse_address(text: str) -> WebhookKey:
    """``[ACCOUNT:]FORM_ID/TAG`` -> ``WebhookKey``; ``ConfigError`` for anything else."""
    found = _ADDRESS.match(text.strip())
    if found is None:
        raise ConfigError(
            f"{text!r} is not a webhook address: expected [ACCOUNT:]FORM_ID/TAG, e.g. u6nXL7/intake"
        )
    return WebhookKey(found["account"] or DEFAULT_ACCOUNT, found["form_id"], found["tag"])


def find_webhook(desired: DesiredState, key: WebhookKey, where: str) -> tuple[DesiredWebhook, str]:
    """The declared, present webhook at ``key`` and its URL; ``ConfigError`` saying why not."""
    for webhook in desired.webhooks:
        if webhook.key == key:
            if webhook.state is Presence.ABSENT or webhook.url is None:
                raise ConfigError(f"{key} is declared with state: absent; there is nothing to ping")
            return webhook, webhook.url
    same_form = sorted(
        w.key.tag
        for w in desired.webhooks
        if (w.key.account, w.key.form_id) == (key.account, key.form_id)
    )
    hint = f" (declared on that form: {', '.join(same_form)})" if same_form else ""
    raise ConfigError(f"no webhook {key} is declared in {where}{hint}")


@click.command("ping")
@click.argument("address", metavar="ADDRESS")
@paths_argument
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True, max=300),
    default=10.0,
    show_default=True,
    help="Seconds to wait for the receiver's answer, connection included.",
)
def ping(address: str, paths: tuple[str, ...], timeout: float) -> int:
    """Send a signed sample form_response to the URL declared for ADDRESS.

    ADDRESS is [ACCOUNT:]FORM_ID/TAG, as plans print it; PATH is where the manifests are
    (default: manifests/). The sample is signed with the webhook's secret as Typeform signs
    deliveries (Typeform-Signature: sha256=<base64 HMAC-SHA256>), or sent unsigned when the
    webhook declares no secret. Only https URLs are used, or http to a loopback address;
    certificates are verified and redirects are not followed.

    \b
    Exit codes: 0 the receiver answered 2xx, 1 any other answer, no answer, or an error.

    \b
    Example:
      reconcile ping u6nXL7/onboarding-intake manifests/ --timeout 5
    """
    targets = resolve_paths(paths)
    try:
        key = parse_address(address)
        webhook, url = find_webhook(load_desired(targets), key, ", ".join(targets))
        secret = None
        if webhook.secret is not None:
            secret = resolve_secret(webhook.secret, environ=os.environ)
        payload = sample_form_response(key.form_id, key.tag, now=datetime.now(UTC))
        body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
        signature = sign(body, secret) if secret is not None else None
        if signature is None:
            click.echo(f"note: {key} declares no secret; sending the sample unsigned", err=True)
        if not webhook.verify_ssl:
            click.echo(
                f"note: {key} declares verify_ssl: false; ping verifies the receiver's "
                "certificate anyway",
                err=True,
            )
        result = anyio.run(partial(deliver, url, body, signature, timeout=timeout))
    except ReconcileError as exc:
        return _fail(str(exc))
    click.echo(_describe(url, signature is not None, result))
    return EXIT_OK if result.ok else EXIT_FAILED


def _describe(url: str, signed: bool, result: PingResult) -> str:
    what = "signed" if signed else "unsigned"
    sent = f"POST {url} ({what} sample form_response)"
    if result.status is None:
        return f"{sent}: no answer after {result.elapsed_ms} ms: {result.error}"
    try:
        status = f"{result.status} {HTTPStatus(result.status).phrase}"
    except ValueError:
        status = str(result.status)
    verdict = "" if result.ok else " (not 2xx)"
    tail = f"; {result.error}" if result.error else ""
    return f"{sent}: {status}{verdict} in {result.elapsed_ms} ms{tail}"

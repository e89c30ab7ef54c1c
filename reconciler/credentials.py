"""Turn secret *references* into values, at the last moment and in one place.

Manifests and models only ever hold ``SecretRef``s (``{env: NAME}`` / ``{file: PATH}``); this
module is the edge where a value is read, so that a write (or ``validate --check-env``) can use it.

It must never put a value into an exception message, a log line or any other output: errors name
the reference (the variable name, the file path) and what went wrong, nothing else, and they are
raised without chaining anything that could carry the value's bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from reconciler.errors import SecretResolutionError
from reconciler.models import DEFAULT_ACCOUNT, Account, SecretRef, SecretSource

__all__ = ["DEFAULT_TOKEN_ENV", "resolve_secret", "resolve_token"]

DEFAULT_TOKEN_ENV = "TYPEFORM_TOKEN"
"""Where the implicit ``default`` account's token comes from (SPEC section 3)."""


def resolve_secret(ref: SecretRef, *, environ: Mapping[str, str]) -> str:
    """Return the value ``ref`` points at; raise ``SecretResolutionError`` naming ``ref`` if none.

    ``{file: PATH}`` is read relative to ``ref.base_dir`` (the declaring manifest's directory),
    as UTF-8, with trailing line breaks removed (editors add one). An empty value is an error:
    an empty signing secret or token is never what anyone meant.
    """
    if ref.source is SecretSource.ENV:
        value = environ.get(ref.name)
        if value is None:
            raise SecretResolutionError(f"environment variable {ref.name} is not set")
        if not value:
            raise SecretResolutionError(f"environment variable {ref.name} is empty")
        return value
    path = Path(ref.base_dir) / ref.name
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise SecretResolutionError(f"secret file {path} does not exist") from None
    except IsADirectoryError:
        raise SecretResolutionError(f"secret file {path} is a directory") from None
    except OSError as exc:
        # strerror only ("Permission denied"): never the exception's repr, never file content.
        reason = exc.strerror or type(exc).__name__
        raise SecretResolutionError(f"secret file {path} cannot be read: {reason}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        # The decode error would quote the offending bytes of the secret: say only where.
        raise SecretResolutionError(f"secret file {path} is not UTF-8 text") from None
    value = text.rstrip("\r\n")
    if not value:
        raise SecretResolutionError(f"secret file {path} is empty")
    return value


def resolve_token(account: Account, *, environ: Mapping[str, str]) -> str | None:
    """The API token of ``account``, or ``None`` when the default account has none configured.

    The default account reads ``TYPEFORM_TOKEN`` (unset or empty gives ``None``: whether that is
    an error depends on the API URL, e.g. the embedded emulator needs no token, so the caller
    decides). A declared account's ``token`` reference must resolve, or this raises.
    """
    if account.token is None:
        if account.name == DEFAULT_ACCOUNT:
            return environ.get(DEFAULT_TOKEN_ENV) or None
        return None
    try:
        return resolve_secret(account.token, environ=environ)
    except SecretResolutionError as exc:
        raise SecretResolutionError(f"token of account '{account.name}': {exc}") from None

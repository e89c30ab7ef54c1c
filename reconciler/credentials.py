"""Turn secret *references* into values, at the last moment and in one place.

Manifests and models only ever hold ``SecretRef``s (``{env: NAME}`` / ``{file: PATH}``); this
module is the edge where a value is read, so that a write (or ``validate --check-env``) can use it.

It must never put a value into an exception message, a log line or any other output: errors name
the reference (the variable name, the file path) and what went wrong, nothing else, and they are
raised without chaining anything that could carry the value's bytes. It must never read a file
outside the manifest tree the reference was declared in or an allowed secret directory
(``--secret-dir``, ``RECONCILE_SECRET_DIRS``; e.g. ``/run/secrets`` in a container): a manifest
is not allowed to send ``/etc/passwd``, or anything else on the machine, to Typeform as a webhook
secret. Only regular files are read, and only the first ``MAX_SECRET_BYTES`` of them.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from reconciler.errors import SecretResolutionError
from reconciler.models import DEFAULT_ACCOUNT, Account, SecretRef, SecretSource

__all__ = [
    "DEFAULT_TOKEN_ENV",
    "MAX_SECRET_BYTES",
    "SECRET_DIRS_ENV",
    "resolve_secret",
    "resolve_token",
    "secret_dirs_from",
    "secret_file_allowed",
    "secret_file_path",
]

DEFAULT_TOKEN_ENV = "TYPEFORM_TOKEN"
"""Where the implicit ``default`` account's token comes from (SPEC section 3)."""
SECRET_DIRS_ENV = "RECONCILE_SECRET_DIRS"
"""Directories (``os.pathsep``-separated) that ``{file: PATH}`` secrets may also live in."""
MAX_SECRET_BYTES = 64 * 1024
"""A signing secret or a token is a short string; anything longer is not one."""


def secret_dirs_from(env: Mapping[str, str], flags: Iterable[str | Path] = ()) -> tuple[Path, ...]:
    """The allowed secret directories: ``--secret-dir`` flags, then ``RECONCILE_SECRET_DIRS``.

    Empty items (``a::b``, a trailing separator) are ignored; each directory is listed once.
    """
    dirs = [Path(f) for f in flags if str(f)]
    dirs += [Path(p) for p in env.get(SECRET_DIRS_ENV, "").split(os.pathsep) if p]
    return tuple(dict.fromkeys(dirs))


def secret_file_path(ref: SecretRef) -> Path:
    """Where a ``{file: PATH}`` reference points: PATH relative to its manifest's directory."""
    return Path(ref.base_dir) / ref.name


def secret_file_allowed(ref: SecretRef, secret_dirs: Sequence[Path] = ()) -> bool:
    """Whether ``ref``'s file lies, symlinks resolved, in its manifest tree or a secret dir.

    Reads no file: only the path and the symlinks on the way are looked at, so ``validate``
    can tell without touching the secret.
    """
    real = os.path.realpath(secret_file_path(ref))
    for root in (Path(ref.root), *secret_dirs):
        allowed = os.path.realpath(root)
        try:
            if os.path.commonpath([real, allowed]) == allowed:
                return True
        except ValueError:  # different drives (Windows): not inside
            continue
    return False


def resolve_secret(
    ref: SecretRef, *, environ: Mapping[str, str], secret_dirs: Sequence[Path] = ()
) -> str:
    """Return the value ``ref`` points at; raise ``SecretResolutionError`` naming ``ref`` if none.

    ``{file: PATH}`` is read relative to ``ref.base_dir`` (the declaring manifest's directory),
    as UTF-8, with trailing line breaks removed (editors add one). It must resolve (symlinks
    followed) inside ``ref.root``, the manifest tree, or one of ``secret_dirs``, and be a regular
    file of at most ``MAX_SECRET_BYTES``. An empty value is an error: an empty signing secret or
    token is never what anyone meant.
    """
    if ref.source is SecretSource.ENV:
        value = environ.get(ref.name)
        if value is None:
            raise SecretResolutionError(f"environment variable {ref.name} is not set")
        if not value:
            raise SecretResolutionError(f"environment variable {ref.name} is empty")
        return value
    path = secret_file_path(ref)
    if not secret_file_allowed(ref, secret_dirs):
        raise SecretResolutionError(
            f"secret file {path} is outside the manifest tree {ref.root} and every secret "
            f"directory (--secret-dir, {SECRET_DIRS_ENV})"
        )
    raw = _read_secret_file(path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        # The decode error would quote the offending bytes of the secret: say only where.
        raise SecretResolutionError(f"secret file {path} is not UTF-8 text") from None
    value = text.rstrip("\r\n")
    if not value:
        raise SecretResolutionError(f"secret file {path} is empty")
    return value


def _read_secret_file(path: Path) -> bytes:
    """The bytes of a regular file; never blocks on a FIFO, never reads a device without end."""
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        mode = os.stat(path).st_mode
        if stat.S_ISDIR(mode):
            raise SecretResolutionError(f"secret file {path} is a directory")
        if not stat.S_ISREG(mode):
            raise SecretResolutionError(f"secret file {path} is not a regular file")
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise SecretResolutionError(f"secret file {path} does not exist") from None
    except OSError as exc:
        # strerror only ("Permission denied"): never the exception's repr, never file content.
        reason = exc.strerror or type(exc).__name__
        if exc.errno == errno.ELOOP:
            reason = "symlink loop"
        raise SecretResolutionError(f"secret file {path} cannot be read: {reason}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise SecretResolutionError(f"secret file {path} is not a regular file")
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_SECRET_BYTES:
            chunk = os.read(fd, MAX_SECRET_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise SecretResolutionError(f"secret file {path} cannot be read: {reason}") from None
    finally:
        os.close(fd)
    if size > MAX_SECRET_BYTES:
        raise SecretResolutionError(
            f"secret file {path} is larger than {MAX_SECRET_BYTES} bytes: not a secret"
        )
    return b"".join(chunks)


def resolve_token(
    account: Account, *, environ: Mapping[str, str], secret_dirs: Sequence[Path] = ()
) -> str | None:
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
        return resolve_secret(account.token, environ=environ, secret_dirs=secret_dirs)
    except SecretResolutionError as exc:
        raise SecretResolutionError(f"token of account '{account.name}': {exc}") from None

"""The state file: which webhooks this tool applied, and the lock that serialises applies.

SPEC section 6 makes the state file the evidence of ownership: a live webhook recorded here as
applied by this tool may be pruned (with ``--prune``); anything else that is not declared is
unmanaged and never touched. So the file must never be half-written (writes go to a temp file in
the same directory, are fsynced, then renamed over the old one), and *losing* it must only ever
make the tool more careful: a missing file is an empty state, in which nothing is ours to prune.

Secrets are write-only in the Typeform API, so a secret change is detected by comparing the
declared value with a salted, slow fingerprint (scrypt) of the value last applied. This module
must never store, log or put into an exception message a secret value: the fingerprint is the
only trace of it that leaves the process.

Locking (SPEC section 4: one ``apply`` / ``watch --heal`` per state file at a time):

* ``<state>.lock`` carries the real mutual exclusion, an OS lock taken through ``filelock``
  (``flock`` on POSIX). The kernel releases it when its process dies, however it dies.
* ``<state>.lock.json`` says who holds it (pid, host, start time, command), so the second
  process can name the holder. It is written right after the OS lock is taken and removed just
  before it is released.

A lock is *stale* when its holder file remains but nobody holds the OS lock (the holder crashed;
the next apply simply takes the lock over), or when the OS lock is held but its recorded holder
ran on this host and that pid no longer exists (filelock's soft-lock fallback on filesystems
without ``flock``, which the kernel does not clean up). A holder on another host cannot be
checked: only ``reconcile unlock --force`` removes a lock that is held.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import re
import secrets
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import Any

import filelock

from reconciler.errors import LockHeldError, StateError
from reconciler.fileio import write_atomic
from reconciler.models import WebhookKey

__all__ = [
    "DEFAULT_STATE_PATH",
    "FINGERPRINT_COST",
    "STATE_VERSION",
    "ApplyLock",
    "FingerprintCache",
    "LockHolder",
    "LockInspection",
    "LockStatus",
    "ManagedWebhook",
    "ScryptCost",
    "State",
    "break_lock",
    "describe_holder",
    "fingerprint_secret",
    "holder_path",
    "inspect_lock",
    "load_state",
    "lock_path",
    "pid_alive",
    "read_holder",
    "save_state",
    "secret_matches",
]

STATE_VERSION = 1
DEFAULT_STATE_PATH = Path(".reconcile/state.json")

Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------- the managed set


@dataclass(frozen=True, slots=True)
class ManagedWebhook:
    """One webhook this tool applied: the evidence that it may later be pruned.

    ``applied_at`` is ISO-8601 UTC with a ``Z``; ``url`` is the last applied URL (for reports);
    ``secret_fingerprint`` is ``None`` when the webhook's secret is not managed.
    """

    key: WebhookKey
    webhook_id: str
    applied_at: str
    url: str | None = None
    secret_fingerprint: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            **self.key.to_json(),
            "webhook_id": self.webhook_id,
            "url": self.url,
            "applied_at": self.applied_at,
            "secret_fingerprint": self.secret_fingerprint,
        }


@dataclass(frozen=True, slots=True)
class State:
    """The managed set. Immutable: ``with_applied`` and ``without`` return new states."""

    webhooks: Mapping[WebhookKey, ManagedWebhook] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # A read-only copy: a State handed to the planner cannot change under it.
        object.__setattr__(self, "webhooks", MappingProxyType(dict(self.webhooks)))

    def get(self, key: WebhookKey) -> ManagedWebhook | None:
        return self.webhooks.get(key)

    def is_managed(self, key: WebhookKey) -> bool:
        return key in self.webhooks

    def with_applied(self, entry: ManagedWebhook) -> State:
        return State({**self.webhooks, entry.key: entry})

    def without(self, key: WebhookKey) -> State:
        if key not in self.webhooks:
            return self
        return State({k: v for k, v in self.webhooks.items() if k != key})

    def managed_keys(self, account: str | None = None) -> frozenset[WebhookKey]:
        return frozenset(k for k in self.webhooks if account is None or k.account == account)

    def to_json(self) -> dict[str, Any]:
        """The file's content: sorted by (account, form_id, tag) so it diffs well in git."""
        return {
            "version": STATE_VERSION,
            "webhooks": [self.webhooks[k].to_json() for k in sorted(self.webhooks)],
        }


def load_state(path: Path) -> State:
    """Read the state file; a missing file is an empty state (nothing is ours to prune)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return State()
    except OSError as exc:
        raise StateError(
            f"cannot read state file {path}: {exc.strerror or exc}; "
            "check its permissions, or pass another one with --state"
        ) from exc
    try:
        doc = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise _invalid(path, "it is not UTF-8 text") from exc
    except json.JSONDecodeError as exc:
        raise _invalid(path, f"invalid JSON at line {exc.lineno}, column {exc.colno}") from exc
    return _parse_state(path, doc)


def _invalid(path: Path, what: str) -> StateError:
    return StateError(
        f"state file {path} is invalid ({what}); restore it from git or your CI artifact, "
        "or move it aside: without a state file nothing is pruned and declared secrets are "
        "set again on the next apply"
    )


def _parse_state(path: Path, doc: Any) -> State:
    if not isinstance(doc, dict):
        raise _invalid(path, "expected a JSON object")
    version = doc.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise _invalid(path, f'"version" must be a positive integer, got {version!r}')
    if version > STATE_VERSION:
        raise StateError(
            f"state file {path} was written by a newer typeform-reconciler (state version "
            f"{version}; this one reads version {STATE_VERSION}): upgrade typeform-reconciler "
            "before running it against this state file"
        )
    items = doc.get("webhooks", [])
    if not isinstance(items, list):
        raise _invalid(path, '"webhooks" must be a list')
    entries: dict[WebhookKey, ManagedWebhook] = {}
    for index, item in enumerate(items):
        entry = _parse_entry(path, index, item)
        if entry.key in entries:
            raise _invalid(path, f"webhooks[{index}]: {entry.key} is listed twice")
        entries[entry.key] = entry
    return State(entries)


def _parse_entry(path: Path, index: int, item: Any) -> ManagedWebhook:
    where = f"webhooks[{index}]"
    if not isinstance(item, dict):
        raise _invalid(path, f"{where} must be an object")
    required = ("account", "form_id", "tag", "webhook_id", "applied_at")
    for name in required:
        if not isinstance(item.get(name), str) or not item[name]:
            raise _invalid(path, f"{where}.{name} must be a non-empty string")
    for name in ("url", "secret_fingerprint"):
        if item.get(name) is not None and not isinstance(item[name], str):
            raise _invalid(path, f"{where}.{name} must be a string or null")
    return ManagedWebhook(
        key=WebhookKey(item["account"], item["form_id"], item["tag"]),
        webhook_id=item["webhook_id"],
        applied_at=item["applied_at"],
        url=item.get("url"),
        secret_fingerprint=item.get("secret_fingerprint"),
    )


def save_state(path: Path, state: State) -> None:
    """Write the state file atomically: readers see the old file or the new one, never half."""
    data = (json.dumps(state.to_json(), indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    try:
        write_atomic(path, data)
    except OSError as exc:
        raise StateError(
            f"cannot write state file {path}: {exc.strerror or exc}; "
            "the previous state file, if any, is unchanged"
        ) from exc


# --------------------------------------------------------------------------- secret fingerprints


@dataclass(frozen=True, slots=True)
class ScryptCost:
    """scrypt's work factors. Verification reads them from the fingerprint, so raising the
    default later keeps every fingerprint already written verifiable."""

    n: int = 2**14
    r: int = 8
    p: int = 1

    def maxmem(self) -> int:
        # What OpenSSL needs (128 * r * (n + p + 2) bytes), plus slack for its bookkeeping.
        return 128 * self.r * (self.n + self.p + 2) + 1024 * 1024


FINGERPRINT_COST = ScryptCost()
"""The cost of new fingerprints: about 50 ms and 16 MiB each on a laptop core."""

_MAX_SCRYPT_MEMORY = 64 * 1024 * 1024
_SALT_BYTES = 16
_HASH_BYTES = 32
_FINGERPRINT_RE = re.compile(
    r"scrypt\$n=(?P<n>[0-9]{1,8}),r=(?P<r>[0-9]{1,3}),p=(?P<p>[0-9]{1,3})"
    r"\$(?P<salt>[A-Za-z0-9+/]{11,88})\$(?P<hash>[A-Za-z0-9+/]{22,88})"
)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def _scrypt(secret: str, salt: bytes, cost: ScryptCost, length: int) -> bytes:
    return hashlib.scrypt(
        secret.encode("utf-8"),
        salt=salt,
        n=cost.n,
        r=cost.r,
        p=cost.p,
        maxmem=cost.maxmem(),
        dklen=length,
    )


def fingerprint_secret(
    secret: str, *, salt: bytes | None = None, cost: ScryptCost = FINGERPRINT_COST
) -> str:
    """A salted, slow hash of ``secret``: ``scrypt$n=16384,r=8,p=1$<salt b64>$<hash b64>``.

    It lets a later plan tell whether the declared secret changed without storing it; the slow
    hash makes guessing a weak secret from a committed state file expensive.
    """
    salt = secrets.token_bytes(_SALT_BYTES) if salt is None else salt
    digest = _scrypt(secret, salt, cost, _HASH_BYTES)
    return f"scrypt$n={cost.n},r={cost.r},p={cost.p}${_b64(salt)}${_b64(digest)}"


def secret_matches(secret: str, fingerprint: str) -> bool:
    """Whether ``fingerprint`` was made from ``secret``; ``False`` for a malformed fingerprint.

    The work factors come from the fingerprint but are bounded, so a tampered state file cannot
    make a plan allocate gigabytes.
    """
    match = _FINGERPRINT_RE.fullmatch(fingerprint)
    if match is None:
        return False
    cost = ScryptCost(n=int(match["n"]), r=int(match["r"]), p=int(match["p"]))
    if not (
        cost.n >= 2
        and cost.n & (cost.n - 1) == 0
        and cost.r >= 1
        and 1 <= cost.p <= 16
        and 128 * cost.r * cost.n <= _MAX_SCRYPT_MEMORY
    ):
        return False
    try:
        salt = _unb64(match["salt"])
        expected = _unb64(match["hash"])
    except ValueError:
        return False
    if len(salt) < 8 or len(expected) < 16:
        return False
    return hmac.compare_digest(_scrypt(secret, salt, cost, len(expected)), expected)


class FingerprintCache:
    """Fingerprints and comparisons of one run, memoised per secret value.

    A slow hash per webhook would make a plan of thousands of webhooks that share one secret
    take minutes. Within a run, ``fingerprint`` returns one fingerprint per secret value (the one
    a ``matches`` call already confirmed, if any, so re-applying an unchanged secret does not
    churn the state file), and ``matches`` computes each (secret, fingerprint) pair once.
    Entries are keyed by an HMAC of the secret under a per-instance random key: the cache never
    holds the secret itself, and its keys are useless outside this process.
    """

    def __init__(self, *, cost: ScryptCost = FINGERPRINT_COST) -> None:
        self._cost = cost
        self._key = secrets.token_bytes(32)
        self._fingerprints: dict[bytes, str] = {}
        self._matches: dict[tuple[bytes, str], bool] = {}

    def __repr__(self) -> str:
        return f"FingerprintCache({len(self._fingerprints)} secrets)"

    def _id(self, secret: str) -> bytes:
        return hmac.new(self._key, secret.encode("utf-8"), hashlib.sha256).digest()

    def fingerprint(self, secret: str) -> str:
        ident = self._id(secret)
        found = self._fingerprints.get(ident)
        if found is None:
            found = self._fingerprints[ident] = fingerprint_secret(secret, cost=self._cost)
        return found

    def matches(self, secret: str, fingerprint: str) -> bool:
        ident = self._id(secret)
        memo = self._matches.get((ident, fingerprint))
        if memo is None:
            memo = self._matches[(ident, fingerprint)] = secret_matches(secret, fingerprint)
            if memo:
                self._fingerprints.setdefault(ident, fingerprint)
        return memo


# --------------------------------------------------------------------------- the apply lock


@dataclass(frozen=True, slots=True)
class LockHolder:
    """Who holds (or held) the apply lock of a state file."""

    pid: int
    host: str
    started_at: str
    command: str

    def to_json(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "host": self.host,
            "started_at": self.started_at,
            "command": self.command,
        }


def lock_path(state_path: Path) -> Path:
    """The file whose OS lock is the real mutual exclusion."""
    return Path(f"{state_path}.lock")


def holder_path(state_path: Path) -> Path:
    """The file naming the lock's holder."""
    return Path(f"{state_path}.lock.json")


def describe_holder(holder: LockHolder) -> str:
    """``pid 123 on host h since T (reconcile apply)``: how every message names a holder."""
    return (
        f"pid {holder.pid} on host {holder.host} since {holder.started_at} "
        f"(reconcile {holder.command})"
    )


def read_holder(state_path: Path) -> LockHolder | None:
    """The recorded holder, or ``None`` when there is none (or the record is unreadable)."""
    try:
        doc = json.loads(holder_path(state_path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict):
        return None
    pid, host = doc.get("pid"), doc.get("host")
    started_at, command = doc.get("started_at"), doc.get("command")
    if not (
        isinstance(pid, int)
        and not isinstance(pid, bool)
        and isinstance(host, str)
        and isinstance(started_at, str)
        and isinstance(command, str)
    ):
        return None
    return LockHolder(pid=pid, host=host, started_at=started_at, command=command)


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host (conservatively ``True`` if unsure)."""
    if pid <= 0:
        # kill(0) and kill(-n) address process groups, not a process.
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, it just belongs to someone else
    except OSError:
        return True
    return True


class LockStatus(StrEnum):
    FREE = "free"
    """Nobody holds the lock and nothing was left behind."""
    HELD = "held"
    """A process holds the OS lock, and its recorded holder is alive or cannot be checked."""
    STALE = "stale"
    """Left behind by a process that is gone: safe to remove."""


@dataclass(frozen=True, slots=True)
class LockInspection:
    status: LockStatus
    holder: LockHolder | None
    os_lock_held: bool
    holder_alive: bool | None
    """``True``/``False`` for a holder on this host; ``None`` when it cannot be checked."""


def _new_file_lock(path: Path) -> filelock.BaseFileLock:
    # thread_local=False: the lock belongs to the ApplyLock object, whichever thread of an async
    # apply happens to release it.
    return filelock.FileLock(str(path), thread_local=False)


def _os_lock_held(state_path: Path) -> bool:
    path = lock_path(state_path)
    if not path.exists():
        return False
    probe = _new_file_lock(path)
    try:
        probe.acquire(timeout=0)
    except filelock.Timeout:
        return True
    probe.release()
    return False


def inspect_lock(
    state_path: Path,
    *,
    hostname: str | None = None,
    is_alive: Callable[[int], bool] = pid_alive,
) -> LockInspection:
    """Tell a held lock from a stale one (see the module docstring for the rules).

    Probing takes the OS lock for an instant when it is free, so an apply starting at exactly
    that moment would find the lock busy; it never blocks a running holder.
    """
    host = socket.gethostname() if hostname is None else hostname
    holder = read_holder(state_path)
    held = _os_lock_held(state_path)
    alive = is_alive(holder.pid) if holder is not None and holder.host == host else None
    if held:
        status = LockStatus.STALE if alive is False else LockStatus.HELD
    elif holder is not None or holder_path(state_path).exists():
        status = LockStatus.STALE
    else:
        status = LockStatus.FREE
    return LockInspection(status=status, holder=holder, os_lock_held=held, holder_alive=alive)


def break_lock(state_path: Path) -> LockHolder | None:
    """Remove the lock and its holder record unconditionally; returns the holder it named.

    If the holder is in fact still running it keeps its OS lock on the removed file, and a new
    apply would lock a new file: two applies could then run at once. Callers check first
    (``inspect_lock``) unless the user said ``--force``.
    """
    holder = read_holder(state_path)
    for path in (holder_path(state_path), lock_path(state_path)):
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise StateError(f"cannot remove {path}: {exc.strerror or exc}") from exc
    return holder


class ApplyLock:
    """Exclusive right to apply against one state file, for the duration of a ``with`` block.

    ``timeout`` is how long to wait for a busy lock (0: fail at once). A busy lock raises
    ``LockHeldError`` naming its holder. ``previous_holder`` is set when the lock was taken over
    from a holder that had crashed without releasing it, so the caller can mention it.
    """

    def __init__(
        self,
        state_path: Path,
        *,
        command: str = "apply",
        timeout: float = 0,
        clock: Clock = _utc_now,
    ) -> None:
        self.state_path = state_path
        self.command = command
        self.timeout = timeout
        self._clock = clock
        self._lock = _new_file_lock(lock_path(state_path))
        self.holder: LockHolder | None = None
        self.previous_holder: LockHolder | None = None

    def __enter__(self) -> ApplyLock:
        path = lock_path(self.state_path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._lock.acquire(timeout=self.timeout)
        except filelock.Timeout:
            raise LockHeldError(self._held_message()) from None
        except OSError as exc:
            raise StateError(f"cannot lock {path}: {exc.strerror or exc}") from exc
        try:
            self.previous_holder = read_holder(self.state_path)
            holder = LockHolder(
                pid=os.getpid(),
                host=socket.gethostname(),
                started_at=_timestamp(self._clock()),
                command=self.command,
            )
            data = (json.dumps(holder.to_json(), indent=2) + "\n").encode("utf-8")
            write_atomic(holder_path(self.state_path), data)
            self.holder = holder
        except BaseException as exc:
            self._lock.release()
            if isinstance(exc, OSError):
                raise StateError(
                    f"cannot record the lock holder in {holder_path(self.state_path)}: "
                    f"{exc.strerror or exc}"
                ) from exc
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            # Remove the record only if it is still ours: after `unlock --force` another
            # process may have taken the lock and written its own.
            if self.holder is not None and read_holder(self.state_path) == self.holder:
                with contextlib.suppress(OSError):
                    holder_path(self.state_path).unlink()
        finally:
            self.holder = None
            self._lock.release()

    def _held_message(self) -> str:
        holder = read_holder(self.state_path)
        who = describe_holder(holder) if holder else "another process (it has not said which)"
        return (
            f"state file {self.state_path} is locked by {who}; "
            "if that process is gone, run `reconcile unlock`"
        )

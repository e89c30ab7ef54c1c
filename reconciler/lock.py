"""The apply lock of a file state store: one ``apply`` / ``watch --heal`` per state file at a time.

SPEC section 4: a second apply against the same state file exits 1 naming the holder (or waits up
to ``--lock-timeout``), and a crashed holder must never leave a lock that blocks everyone forever
without saying whose it was.

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

This module never reads or writes the state file itself, and never removes a lock it was not
asked to (``break_lock`` is the one function that does, for ``reconcile unlock``).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Any, TypeGuard

import filelock

from reconciler.clock import Clock, timestamp, utc_now
from reconciler.errors import LockHeldError, StateError
from reconciler.fileio import write_atomic

__all__ = [
    "ApplyLock",
    "LockHolder",
    "LockInfo",
    "LockInspection",
    "LockStatus",
    "break_lock",
    "describe_holder",
    "holder_path",
    "inspect_lock",
    "lock_path",
    "pid_alive",
    "read_holder",
]


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


@dataclass(frozen=True, slots=True)
class LockInfo:
    """What a state store's ``lock()`` yields: who holds the lock now (this process), and the
    holder it was taken over from when that one had crashed without releasing it (the caller
    mentions it). Stores whose locks cannot go stale (PostgreSQL advisory locks) never set
    ``previous_holder``."""

    holder: LockHolder
    previous_holder: LockHolder | None = None


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
    """The recorded holder, or ``None`` when there is none (or the record is unreadable).

    The record is printed in messages, so one that is oversized, nested without end, or carries
    control characters (a terminal escape sequence) counts as unreadable rather than shown.
    """
    try:
        with holder_path(state_path).open("rb") as stream:
            raw = stream.read(_MAX_HOLDER_BYTES + 1)
        if len(raw) > _MAX_HOLDER_BYTES:
            return None
        doc = json.loads(raw.decode("utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(doc, dict):
        return None
    pid, host = doc.get("pid"), doc.get("host")
    started_at, command = doc.get("started_at"), doc.get("command")
    if not (
        isinstance(pid, int)
        and not isinstance(pid, bool)
        and _printable(host)
        and _printable(started_at)
        and _printable(command)
    ):
        return None
    return LockHolder(pid=pid, host=host, started_at=started_at, command=command)


_MAX_HOLDER_BYTES = 64 * 1024
_MAX_HOLDER_FIELD = 255


def _printable(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and len(value) <= _MAX_HOLDER_FIELD and value.isprintable()


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
        clock: Clock = utc_now,
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
                started_at=timestamp(self._clock()),
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

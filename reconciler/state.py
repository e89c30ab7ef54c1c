"""The managed set, and the stores that keep it: which webhooks this tool applied.

SPEC section 6 makes the state the evidence of ownership: a live webhook recorded here as applied
by this tool may be pruned (with ``--prune``); anything else that is not declared is unmanaged and
never touched. So a state must never be half-written, and *losing* it must only ever make the tool
more careful: a missing state file is an empty state, in which nothing is ours to prune.

A run talks to a ``StateStore`` (ARCHITECTURE.md: "a state store is an interface, not a path; the
lock belongs to it"): ``FileStateStore`` is the JSON file of SPEC section 7, and
``reconciler.state_postgres`` (the ``[postgres]`` extra) keeps the same data in PostgreSQL behind
the same methods. Every save increments the state's ``serial``, and a store refuses to save over
a state that another process wrote since this one read it.

The state file (version 2), sorted by (account, form_id, tag) so that it diffs well in git::

    {"version": 2, "serial": 7, "fingerprint_salt": "<base64>",
     "webhooks": [{"account": "default", "form_id": "u6nXL7", "tag": "crm",
                   "webhook_id": "...", "applied_at": "2026-01-02T03:04:05Z",
                   "applied": {"url": "...", "enabled": true, "verify_ssl": true,
                               "event_types": {"form_response": true}},
                   "source": "manifests/crm.yaml", "secret_fingerprint": "v2$...$..."}]}

``applied`` is the last-applied body in the API's field names, without the secret; a field it
lacks is unknown. Version 1 files (``url`` instead of ``applied``, no serial, no salt) still load:
their ``url`` becomes ``applied = {"url": url}`` and their ``scrypt$...`` fingerprints still
verify (``reconciler.fingerprints``); the next save writes version 2.

This module must never store, log or put into an exception message a secret value: ``applied``
refuses a ``secret`` field, and the fingerprint is the only trace of a secret that is saved.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets as _random
import stat
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol, TypeGuard, runtime_checkable

from reconciler.errors import ConfigError, StateError
from reconciler.fileio import resolve_symlinks, write_atomic
from reconciler.fingerprints import valid_salt
from reconciler.lock import ApplyLock, LockInfo
from reconciler.models import OperationRecord, WebhookKey

__all__ = [
    "DEFAULT_STATE_PATH",
    "MAX_STATE_BYTES",
    "STATE_VERSION",
    "FileStateStore",
    "ManagedWebhook",
    "State",
    "StateStore",
    "load_state",
    "open_state_store",
    "save_state",
]
STATE_VERSION = 2
DEFAULT_STATE_PATH = Path(".reconcile/state.json")
MAX_STATE_BYTES = 256 * 1024 * 1024
"""A state file larger than this is refused unread: 1,000 webhooks take about 500 KB."""


# --------------------------------------------------------------------------- the managed set


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


@dataclass(frozen=True, slots=True)
class ManagedWebhook:
    """One webhook this tool applied: the evidence that it may later be pruned.

    ``applied_at`` is ISO-8601 UTC with a ``Z``. ``applied`` is the last-applied body (``url``,
    ``enabled``, ``verify_ssl``, ``event_types``; never ``secret``), read-only, for drift causes;
    ``None`` when unknown. ``source`` is the manifest file it came from, as given on the command
    line. ``secret_fingerprint`` is ``None`` when the webhook's secret is not managed.
    """

    key: WebhookKey
    webhook_id: str
    applied_at: str
    applied: Mapping[str, Any] | None = None
    source: str | None = None
    secret_fingerprint: str | None = None

    def __post_init__(self) -> None:
        if self.applied is not None:
            if not isinstance(self.applied, Mapping):
                raise TypeError(f"ManagedWebhook.applied must be a mapping or None ({self.key})")
            if "secret" in self.applied:
                # The one place a secret could slip into the state file: refuse it outright.
                raise ValueError(f"ManagedWebhook.applied must not hold a secret ({self.key})")
            object.__setattr__(self, "applied", _freeze(self.applied))

    @property
    def url(self) -> str | None:
        """The last applied URL, when known."""
        url = self.applied.get("url") if self.applied is not None else None
        return url if isinstance(url, str) else None

    def to_json(self) -> dict[str, Any]:
        return {
            **self.key.to_json(),
            "webhook_id": self.webhook_id,
            "applied_at": self.applied_at,
            "applied": _thaw(self.applied),
            "source": self.source,
            "secret_fingerprint": self.secret_fingerprint,
        }


@dataclass(frozen=True, slots=True)
class State:
    """The managed set. Immutable: ``with_applied`` and ``without`` return new states, which keep
    the ``serial`` this state was loaded with (the store's conflict check reads it) and the
    ``fingerprint_salt`` (``reconciler.fingerprints``; ``None`` until a run creates one)."""

    webhooks: Mapping[WebhookKey, ManagedWebhook] = field(default_factory=dict)
    serial: int = 0
    fingerprint_salt: str | None = None

    def __post_init__(self) -> None:
        # A read-only copy: a State handed to the planner cannot change under it.
        object.__setattr__(self, "webhooks", MappingProxyType(dict(self.webhooks)))

    def get(self, key: WebhookKey) -> ManagedWebhook | None:
        return self.webhooks.get(key)

    def is_managed(self, key: WebhookKey) -> bool:
        return key in self.webhooks

    def with_applied(self, entry: ManagedWebhook) -> State:
        return replace(self, webhooks={**self.webhooks, entry.key: entry})

    def without(self, key: WebhookKey) -> State:
        if key not in self.webhooks:
            return self
        return replace(self, webhooks={k: v for k, v in self.webhooks.items() if k != key})

    def managed_keys(self, account: str | None = None) -> frozenset[WebhookKey]:
        return frozenset(k for k in self.webhooks if account is None or k.account == account)

    def to_json(self) -> dict[str, Any]:
        """The file's content (version 2), sorted by (account, form_id, tag)."""
        return {
            "version": STATE_VERSION,
            "serial": self.serial,
            "fingerprint_salt": self.fingerprint_salt,
            "webhooks": [self.webhooks[k].to_json() for k in sorted(self.webhooks)],
        }


# --------------------------------------------------------------------------- the store interface


@runtime_checkable
class StateStore(Protocol):
    """Where a run loads and saves its state, and the apply lock that guards it.

    ``location`` names the store in messages (a file store: its path). ``save`` writes ``state``
    with the next serial and returns what it wrote; it raises ``StateError`` on failure, leaving
    the stored state as it was, and when another process saved since this store last loaded or
    saved. ``lock`` is the exclusive apply lock (``LockHeldError`` naming the holder when busy
    after ``timeout`` seconds). ``check_writable`` raises ``StateError`` when a save would
    certainly fail; apply calls it before its first API write.

    ``write_record`` keeps a copy of one operation record and ``save_drift`` the latest status
    of each webhook of a drift report (``DriftReport.to_json()``), where the store has a place
    for them (PostgreSQL tables); the file store has none (the JSONL records file and the
    report files are the record), so for it both do nothing. Both raise ``StateError``.
    """

    @property
    def location(self) -> str: ...

    def load(self) -> State: ...

    def save(self, state: State) -> State: ...

    def lock(self, *, command: str, timeout: float = 0) -> AbstractContextManager[LockInfo]: ...

    def check_writable(self) -> None: ...

    def write_record(self, record: OperationRecord) -> None: ...

    def save_drift(self, report_json: Mapping[str, Any]) -> None: ...


_SCHEME = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://")


def open_state_store(spec: str | Path) -> StateStore:
    """The store named by ``--state``: a path is a file store; a URL names another backend."""
    if isinstance(spec, Path):
        return FileStateStore(spec)
    if not spec.strip():
        raise ConfigError("--state: expected a file path, got an empty value")
    scheme = _SCHEME.match(spec)
    if scheme is None:
        return FileStateStore(Path(spec))
    # Never echo the URL itself: it may carry a database password.
    name = scheme["scheme"].lower()
    if name in ("postgresql", "postgres"):
        try:
            from reconciler.state_postgres import PostgresStateStore
        except ImportError as exc:
            if exc.name is None or exc.name.split(".")[0] != "psycopg":
                raise
            raise ConfigError(
                "--state postgresql://…: install the [postgres] extra: "
                "pip install 'typeform-reconciler[postgres]'"
            ) from None
        return PostgresStateStore(spec)
    raise ConfigError(
        f"--state {name}://…: unknown state backend {name!r}; give a file path or postgresql://…"
    )


# --------------------------------------------------------------------------- the file store


class FileStateStore:
    """The state as a JSON file, written atomically (through a symlink to its target), and its
    lock as ``<path>.lock`` + ``<path>.lock.json`` (``reconciler.lock``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # The serial and file identity last seen by this store (load or save): a save checks
        # the file still is what this store last saw, which costs a stat, not a parse.
        self._known_serial: int | None = None
        self._known_identity: tuple[int, ...] | None = None

    def __repr__(self) -> str:
        return f"FileStateStore({str(self.path)!r})"

    @property
    def location(self) -> str:
        return str(self.path)

    def load(self) -> State:
        """Read the state file; a missing file is an empty state (nothing is ours to prune)."""
        identity = _identity(self.path)
        state = _read(self.path)
        self._known_serial, self._known_identity = state.serial, identity
        return state

    def save(self, state: State) -> State:
        """Write ``state`` as the file's next serial; returns what was written.

        The file must still hold the serial this store last loaded or saved (or, for a store
        that has done neither, ``state.serial``): otherwise another process wrote it, and this
        run must not overwrite what that one recorded.
        """
        if self._known_serial is not None and _identity(self.path) == self._known_identity:
            on_disk = self._known_serial
        else:
            on_disk = _read(self.path).serial
        expected = self._known_serial if self._known_serial is not None else state.serial
        if on_disk != expected:
            raise StateError(
                f"state file {self.path} changed under this run (serial {on_disk}, this run "
                f"read serial {expected}): another process wrote it. Nothing more was saved; "
                "run again to start from what it holds now"
            )
        written = replace(state, serial=on_disk + 1)
        _write(self.path, written)
        self._known_serial, self._known_identity = written.serial, _identity(self.path)
        return written

    def lock(self, *, command: str, timeout: float = 0) -> AbstractContextManager[LockInfo]:
        return self._locked(command=command, timeout=timeout)

    @contextlib.contextmanager
    def _locked(self, *, command: str, timeout: float) -> Iterator[LockInfo]:
        with ApplyLock(self.path, command=command, timeout=timeout) as held:
            assert held.holder is not None
            yield LockInfo(holder=held.holder, previous_holder=held.previous_holder)

    def check_writable(self) -> None:
        """Fail now, before any API write, when saving would certainly fail later."""
        try:
            target = resolve_symlinks(self.path)
        except OSError as exc:
            raise self._unwritable(exc.strerror or str(exc)) from exc
        if target.is_dir():
            raise self._unwritable(f"{target} is a directory")
        directory = target.parent
        while not directory.exists() and directory != directory.parent:
            directory = directory.parent  # created on the first save
        if not directory.is_dir():
            raise self._unwritable(f"{directory} is not a directory")
        if directory != target.parent:
            if not os.access(directory, os.W_OK | os.X_OK):
                raise self._unwritable(f"cannot create directories in {directory}")
            return
        probe = directory / f".{target.name}.{_random.token_hex(6)}.probe"
        try:
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            raise self._unwritable(f"cannot create files in {directory}: {exc.strerror}") from exc
        os.close(fd)
        with contextlib.suppress(OSError):
            probe.unlink()
        with contextlib.suppress(OSError):
            fs = os.statvfs(directory)
            if fs.f_bavail == 0:
                raise self._unwritable(f"no space left on the device of {directory}")

    def write_record(self, record: OperationRecord) -> None:
        """Nothing: for a file state, the JSONL records file is the record."""

    def save_drift(self, report_json: Mapping[str, Any]) -> None:
        """Nothing: for a file state, the report files are the record."""

    def _unwritable(self, why: str) -> StateError:
        return StateError(
            f"cannot write state file {self.path}: {why}; nothing was applied. "
            "Fix it, or pass another one with --state"
        )


def _identity(path: Path) -> tuple[int, ...] | None:
    try:
        st = path.stat()  # through a symlink: the target is what gets replaced
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def load_state(path: Path) -> State:
    """Read a state file (a missing one is an empty state). Runs use a ``StateStore``."""
    return _read(path)


def save_state(path: Path, state: State) -> None:
    """Write ``state`` as it is (its serial unchanged, no conflict check) atomically.

    For tests and tools; runs save through a ``StateStore``, which counts serials."""
    _write(path, state)


# --------------------------------------------------------------------------- encoding


def _write(path: Path, state: State) -> None:
    data = (json.dumps(state.to_json(), indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    try:
        write_atomic(path, data)
    except OSError as exc:
        raise StateError(
            f"cannot write state file {path}: {exc.strerror or exc}; "
            "the previous state file, if any, is unchanged"
        ) from exc


def _read(path: Path) -> State:
    try:
        # O_NONBLOCK: a FIFO given as --state must not hang the run before we can refuse it.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return State()
    except OSError as exc:
        raise _unreadable(path, exc) from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            what = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
            raise StateError(
                f"cannot read state file {path}: it is {what}; pass a file with --state"
            )
        if info.st_size > MAX_STATE_BYTES:
            raise _invalid(path, f"it is larger than {MAX_STATE_BYTES // 2**20} MiB")
        with os.fdopen(fd, "rb") as stream:
            fd = -1  # the stream owns it now
            raw = stream.read(MAX_STATE_BYTES + 1)
    except OSError as exc:
        raise _unreadable(path, exc) from exc
    finally:
        if fd >= 0:
            os.close(fd)
    if len(raw) > MAX_STATE_BYTES:  # it grew while we read it
        raise _invalid(path, f"it is larger than {MAX_STATE_BYTES // 2**20} MiB")
    try:
        doc = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise _invalid(path, "it is not UTF-8 text") from exc
    except json.JSONDecodeError as exc:
        raise _invalid(path, f"invalid JSON at line {exc.lineno}, column {exc.colno}") from exc
    except RecursionError as exc:
        raise _invalid(path, "its JSON is nested too deeply") from exc
    except ValueError as exc:  # e.g. an integer of more than 4,300 digits
        raise _invalid(path, "it holds a number too large to read") from exc
    return _parse_state(path, doc)


def _unreadable(path: Path, exc: OSError) -> StateError:
    return StateError(
        f"cannot read state file {path}: {exc.strerror or exc}; "
        "check its permissions, or pass another one with --state"
    )


def _invalid(path: Path, what: str) -> StateError:
    return StateError(
        f"state file {path} is invalid ({what}); restore it from git or your CI artifact, "
        "or move it aside: without a state file nothing is pruned and declared secrets are "
        "set again on the next apply"
    )


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_state(path: Path, doc: Any) -> State:
    if not isinstance(doc, dict):
        raise _invalid(path, "expected a JSON object")
    version = doc.get("version")
    if not _is_int(version) or version < 1:
        raise _invalid(path, f'"version" must be a positive integer, got {_show(version)}')
    if version > STATE_VERSION:
        raise StateError(
            f"state file {path} was written by a newer typeform-reconciler (state version "
            f"{version}; this one reads versions up to {STATE_VERSION}): upgrade "
            "typeform-reconciler before running it against this state file"
        )
    serial, salt = 0, None
    if version >= 2:
        given = doc.get("serial")
        if not _is_int(given) or given < 0:
            raise _invalid(path, f'"serial" must be a non-negative integer, got {_show(given)}')
        serial = given
        salt = doc.get("fingerprint_salt")
        if salt is not None and not (isinstance(salt, str) and valid_salt(salt)):
            raise _invalid(path, '"fingerprint_salt" must be base64 of 16 to 64 bytes, or null')
    items = doc.get("webhooks", [])
    if not isinstance(items, list):
        raise _invalid(path, '"webhooks" must be a list')
    entries: dict[WebhookKey, ManagedWebhook] = {}
    for index, item in enumerate(items):
        entry = _parse_entry(path, version, index, item)
        if entry.key in entries:
            raise _invalid(path, f"webhooks[{index}]: {entry.key} is listed twice")
        entries[entry.key] = entry
    return State(entries, serial=serial, fingerprint_salt=salt)


def _show(value: Any) -> str:
    """A value for a message, cut short: a hostile file must not make a huge error line."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _parse_entry(path: Path, version: int, index: int, item: Any) -> ManagedWebhook:
    where = f"webhooks[{index}]"
    if not isinstance(item, dict):
        raise _invalid(path, f"{where} must be an object")
    for name in ("account", "form_id", "tag", "webhook_id", "applied_at"):
        if not isinstance(item.get(name), str) or not item[name]:
            raise _invalid(path, f"{where}.{name} must be a non-empty string")
    optional = ("url", "secret_fingerprint") if version == 1 else ("source", "secret_fingerprint")
    for name in optional:
        if item.get(name) is not None and not isinstance(item[name], str):
            raise _invalid(path, f"{where}.{name} must be a string or null")
    if version == 1:
        applied = {"url": item["url"]} if item.get("url") is not None else None
    else:
        applied = _parse_applied(path, where, item.get("applied"))
    return ManagedWebhook(
        key=WebhookKey(item["account"], item["form_id"], item["tag"]),
        webhook_id=item["webhook_id"],
        applied_at=item["applied_at"],
        applied=applied,
        source=item.get("source"),
        secret_fingerprint=item.get("secret_fingerprint"),
    )


def _parse_applied(path: Path, where: str, applied: Any) -> dict[str, Any] | None:
    if applied is None:
        return None
    where = f"{where}.applied"
    if not isinstance(applied, dict):
        raise _invalid(path, f"{where} must be an object or null")
    if "secret" in applied:
        raise _invalid(path, f"{where} must not hold a secret")
    if "url" in applied and not isinstance(applied["url"], str):
        raise _invalid(path, f"{where}.url must be a string")
    for name in ("enabled", "verify_ssl"):
        if name in applied and not isinstance(applied[name], bool):
            raise _invalid(path, f"{where}.{name} must be true or false")
    if "event_types" in applied:
        events = applied["event_types"]
        if not isinstance(events, dict):
            raise _invalid(path, f"{where}.event_types must be an object")
        for name, value in events.items():
            if not isinstance(value, bool):
                raise _invalid(path, f"{where}.event_types.{_show(name)} must be true or false")
    return applied

"""The state in PostgreSQL: one database shared by every checkout, CI runner and ``watch``.

SPEC section 7: ``--state postgresql://…`` keeps the same data as the state file, in tables, one
namespace per ``?namespace=`` (default ``default``), so runs that start from a clean checkout
(CI, GitOps) share one state. The apply lock (SPEC section 4) is a session-level advisory lock
held on a connection of its own for as long as the lock is held: it dies with that connection,
so a killed holder never leaves a stale lock. Operation records and the latest drift status per
webhook are written to tables too, which users may query.

Tables (created and migrated by this module; ``schema_version`` holds the version)::

    state_meta(namespace PK, serial, fingerprint_salt, updated_at)
    managed_webhooks(namespace, account, form_id, tag, webhook_id, applied_at, applied jsonb,
                     source, secret_fingerprint; PK (namespace, account, form_id, tag))
    operation_records(id, namespace, run_id, timestamp, operation, account, form_id, tag,
                      webhook_id, url, success, error, attempts, duration_ms, note)
    drift_status(namespace, account, form_id, tag, status, cause, issues jsonb, changes jsonb,
                 url, heal_suspended, checked_at; PK (namespace, account, form_id, tag))
    lock_holders(namespace PK, backend_pid, pid, host, started_at, command)

A save is one transaction that first bumps the serial only if it is still the one this store
last loaded or saved (``UPDATE … WHERE serial = %s``): a run never overwrites what another run
recorded since it read the state.

This module must never show the DSN's password: not in a message, a ``repr``, a log line or an
exception (``location`` is the DSN with the password replaced by ``***``, and every database
error is scrubbed of it). Like the file store, it never stores a secret: only fingerprints.
psycopg is imported here and nowhere else.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

import psycopg
from psycopg.types.json import Jsonb

from reconciler.errors import ConfigError, LockHeldError, StateError
from reconciler.fingerprints import valid_salt
from reconciler.lock import LockHolder, LockInfo, describe_holder
from reconciler.models import OperationRecord, WebhookKey
from reconciler.state import ManagedWebhook, State

__all__ = ["SCHEMA_VERSION", "PostgresDsn", "PostgresStateStore", "parse_dsn"]

SCHEMA_VERSION = 1
"""The schema this version of the tool writes; a database at a newer version is refused."""

DEFAULT_NAMESPACE = "default"
_NAMESPACE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
_APPLICATION_NAME = "typeform-reconciler"
_CONNECT_TIMEOUT = 10
_POLL_SECONDS = 0.1
_MAX_POLL_SECONDS = 0.5
_MIGRATION_LOCK_KEY = -0x7466_7265_636F_6E63  # any fixed bigint; 'tfreconc'

_MIGRATIONS: tuple[tuple[int, str], ...] = (
    (
        1,
        """
        CREATE TABLE IF NOT EXISTS state_meta (
            namespace text PRIMARY KEY,
            serial bigint NOT NULL CHECK (serial >= 0),
            fingerprint_salt text,
            updated_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE TABLE IF NOT EXISTS managed_webhooks (
            namespace text NOT NULL,
            account text NOT NULL,
            form_id text NOT NULL,
            tag text NOT NULL,
            webhook_id text NOT NULL,
            applied_at timestamptz NOT NULL,
            applied jsonb,
            source text,
            secret_fingerprint text,
            PRIMARY KEY (namespace, account, form_id, tag)
        );
        CREATE TABLE IF NOT EXISTS operation_records (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            namespace text NOT NULL,
            run_id text NOT NULL,
            "timestamp" timestamptz NOT NULL,
            operation text NOT NULL,
            account text NOT NULL,
            form_id text NOT NULL,
            tag text NOT NULL,
            webhook_id text,
            url text,
            success boolean NOT NULL,
            error text,
            attempts integer NOT NULL,
            duration_ms integer NOT NULL,
            note text
        );
        CREATE INDEX IF NOT EXISTS operation_records_by_time
            ON operation_records (namespace, "timestamp");
        CREATE TABLE IF NOT EXISTS drift_status (
            namespace text NOT NULL,
            account text NOT NULL,
            form_id text NOT NULL,
            tag text NOT NULL,
            status text NOT NULL,
            cause text,
            issues jsonb NOT NULL DEFAULT '[]',
            changes jsonb NOT NULL DEFAULT '[]',
            url text,
            heal_suspended boolean NOT NULL DEFAULT false,
            checked_at timestamptz NOT NULL,
            PRIMARY KEY (namespace, account, form_id, tag)
        );
        CREATE TABLE IF NOT EXISTS lock_holders (
            namespace text PRIMARY KEY,
            backend_pid integer NOT NULL,
            pid integer NOT NULL,
            host text NOT NULL,
            started_at timestamptz NOT NULL,
            command text NOT NULL
        );
        """,
    ),
)
assert _MIGRATIONS[-1][0] == SCHEMA_VERSION

# The privileges a run needs, per table (check_writable).
_PRIVILEGES: tuple[tuple[str, str], ...] = (
    ("state_meta", "SELECT, INSERT, UPDATE"),
    ("managed_webhooks", "SELECT, INSERT, UPDATE, DELETE"),
    ("operation_records", "INSERT"),
    ("drift_status", "SELECT, INSERT, UPDATE"),
    ("lock_holders", "SELECT, INSERT, UPDATE, DELETE"),
)


# --------------------------------------------------------------------------- the DSN


@dataclass(frozen=True, slots=True)
class PostgresDsn:
    """A ``postgresql://`` DSN taken apart: what to connect with, and what may be shown.

    ``conninfo`` (without ``namespace``) holds the password and is only ever given to libpq;
    ``display`` is the DSN with the password replaced by ``***``; ``host`` and ``dbname`` name
    the database in messages."""

    conninfo: str
    namespace: str
    display: str
    host: str
    dbname: str
    _secrets: tuple[str, ...]

    def __repr__(self) -> str:
        return f"PostgresDsn({self.display!r})"

    def redact(self, text: str) -> str:
        """``text`` with every form of the password replaced by ``***``."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


def parse_dsn(dsn: str) -> PostgresDsn:
    """Split ``postgresql://[user[:password]@][host][:port][/dbname][?param=value&…]``.

    ``namespace`` is ours and is removed before connecting; every other parameter goes to libpq.
    Raises ``ConfigError`` (without the password) for a DSN that cannot be used.
    """
    parts = urlsplit(dsn)
    if parts.scheme.lower() not in ("postgresql", "postgres"):
        raise ConfigError("--state: a PostgreSQL state is given as postgresql://…")
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, colon, password = userinfo.partition(":")
    params = parse_qsl(parts.query, keep_blank_values=True)
    secrets = {password, unquote(password)} if colon else set()
    secrets |= {v for k, v in params if k == "password"}
    secrets |= {unquote(v) for v in secrets}
    ordered = tuple(sorted((s for s in secrets if s), key=len, reverse=True))
    shown_netloc = f"{user}:***@{hostport}" if colon else parts.netloc
    shown_params = [(k, "***" if k == "password" else v) for k, v in params]
    display = f"{parts.scheme}://{shown_netloc}{parts.path}"
    if shown_params:
        display += "?" + urlencode(shown_params, safe="*/:,")

    names = [v for k, v in params if k == "namespace"]
    if len(names) > 1:
        raise ConfigError(f"--state {display}: give ?namespace= once")
    namespace = names[0] if names else DEFAULT_NAMESPACE
    if not _NAMESPACE.fullmatch(namespace):
        raise ConfigError(
            f"--state {display}: namespace {namespace[:70]!r} must be 1 to 63 letters, digits, "
            "'.', '_' or '-', starting with a letter or digit"
        )
    kept = [(k, v) for k, v in params if k != "namespace"]
    conninfo = f"{parts.scheme}://{parts.netloc}{parts.path}"
    if kept:
        conninfo += "?" + urlencode(kept)
    redactor = PostgresDsn(conninfo, namespace, display, "", "", ordered)
    try:
        info = psycopg.conninfo.conninfo_to_dict(conninfo)
    except psycopg.Error as exc:
        raise ConfigError(
            f"--state {display}: not a usable PostgreSQL DSN ({_first_line(exc, redactor)})"
        ) from None
    host = str(info.get("host") or info.get("hostaddr") or os.environ.get("PGHOST") or "localhost")
    dbname = str(info.get("dbname") or os.environ.get("PGDATABASE") or info.get("user") or user)
    return PostgresDsn(conninfo, namespace, display, host, dbname or "(default)", ordered)


def _first_line(exc: BaseException, dsn: PostgresDsn) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = " ".join(lines[:2]) if lines else type(exc).__name__
    return dsn.redact(text)[:300]


# --------------------------------------------------------------------------- the store

_T = TypeVar("_T")


class PostgresStateStore:
    """The state of one namespace in a PostgreSQL database (see the module docstring).

    While ``lock()`` is held, every load, save and record goes through the lock's connection,
    so a save can only happen while this process still holds the lock. Otherwise each call opens
    a short-lived connection. The schema is migrated on first use.
    """

    def __init__(self, dsn: str, *, namespace: str | None = None) -> None:
        self.dsn = parse_dsn(dsn)
        if namespace is not None:
            if not _NAMESPACE.fullmatch(namespace):
                raise ConfigError(f"namespace {namespace[:70]!r} is not a valid namespace")
            self.dsn = replace(self.dsn, namespace=namespace)
        self.namespace = self.dsn.namespace
        self.advisory_lock_key = _lock_key(self.namespace)
        """The namespace's advisory lock key (``pg_locks``: ``classid``/``objid`` are its high
        and low 32 bits, ``objsubid`` 1): the same on every host and version."""
        self._lock_conn: psycopg.Connection[Any] | None = None
        self._mutex = threading.RLock()
        self._schema_checked = False
        # What this store last loaded or saved: the save's serial check and its row diff.
        self._known_serial: int | None = None
        self._known_rows: dict[WebhookKey, ManagedWebhook] | None = None

    def __repr__(self) -> str:
        return f"PostgresStateStore({self.location!r})"

    @property
    def location(self) -> str:
        """The DSN without its password, and the namespace."""
        if "namespace=" in self.dsn.display:
            return self.dsn.display
        joiner = "&" if "?" in self.dsn.display else "?"
        return f"{self.dsn.display}{joiner}namespace={self.namespace}"

    # ----------------------------------------------------------------- connections

    def _connect(self) -> psycopg.Connection[Any]:
        extra: dict[str, Any] = {}
        given = psycopg.conninfo.conninfo_to_dict(self.dsn.conninfo)
        if "connect_timeout" not in given:
            extra["connect_timeout"] = _CONNECT_TIMEOUT
        if "application_name" not in given:
            extra["application_name"] = _APPLICATION_NAME
        try:
            return psycopg.connect(self.dsn.conninfo, autocommit=True, **extra)
        except psycopg.Error as exc:
            raise StateError(
                f"cannot connect to the PostgreSQL state at host {self.dsn.host}, database "
                f"{self.dsn.dbname} ({self.location}): {_first_line(exc, self.dsn)}"
            ) from None

    def _run(self, what: str, work: Callable[[psycopg.Connection[Any]], _T]) -> _T:
        """``work`` on the lock's connection when held, else on a connection of its own;
        database errors become ``StateError``s saying ``what`` failed (without the password)."""
        with self._mutex:
            held = self._lock_conn
            try:
                if held is not None:
                    return work(held)
                with self._connect() as conn:
                    self._ensure_schema(conn)
                    return work(conn)
            except psycopg.Error as exc:
                raise StateError(
                    f"cannot {what} the PostgreSQL state {self.location}: "
                    f"{_first_line(exc, self.dsn)}"
                ) from None

    # ----------------------------------------------------------------- schema

    def migrate(self) -> tuple[int, int]:
        """Create or upgrade the tables; idempotent. Returns (version before, version now)."""

        def work(conn: psycopg.Connection[Any]) -> tuple[int, int]:
            return self._migrate(conn)

        with self._mutex:
            if self._lock_conn is not None:
                return self._run("migrate", work)
            try:
                with self._connect() as conn:
                    return work(conn)
            except psycopg.Error as exc:
                raise StateError(
                    f"cannot migrate the PostgreSQL state {self.location}: "
                    f"{_first_line(exc, self.dsn)}"
                ) from None

    def schema_version(self) -> int:
        """The database's schema version (0: no tables yet). Never migrates."""

        def work(conn: psycopg.Connection[Any]) -> int:
            return _current_version(conn)

        with self._mutex:
            try:
                with self._connect() as conn:
                    return work(conn)
            except psycopg.Error as exc:
                raise StateError(
                    f"cannot read the PostgreSQL state {self.location}: "
                    f"{_first_line(exc, self.dsn)}"
                ) from None

    def _ensure_schema(self, conn: psycopg.Connection[Any]) -> None:
        if self._schema_checked:
            return
        if _current_version(conn) != SCHEMA_VERSION:
            self._migrate(conn)
        self._schema_checked = True

    def _migrate(self, conn: psycopg.Connection[Any]) -> tuple[int, int]:
        try:
            with conn.transaction():
                # Two first runs at once: one creates, the other waits and finds it done.
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK_KEY,))
                before = _current_version(conn)
                if before > SCHEMA_VERSION:
                    raise StateError(
                        f"the PostgreSQL state {self.location} has schema version {before}, "
                        f"written by a newer typeform-reconciler (this one knows up to "
                        f"{SCHEMA_VERSION}): upgrade typeform-reconciler"
                    )
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_version ("
                    " version integer NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
                )
                for version, ddl in _MIGRATIONS:
                    if version > before:
                        conn.execute(ddl)
                        conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))
        except psycopg.errors.InsufficientPrivilege as exc:
            raise StateError(
                f"cannot create the tables of the PostgreSQL state {self.location}: "
                f"{_first_line(exc, self.dsn)}; run `reconcile state migrate` as a user who may"
            ) from None
        self._schema_checked = True
        return before, SCHEMA_VERSION

    # ----------------------------------------------------------------- load / save

    def load(self) -> State:
        """The namespace's state; a namespace never saved is an empty state."""

        def work(conn: psycopg.Connection[Any]) -> State:
            with conn.transaction():
                # One snapshot for the serial and the rows.
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                meta = conn.execute(
                    "SELECT serial, fingerprint_salt FROM state_meta WHERE namespace = %s",
                    (self.namespace,),
                ).fetchone()
                rows = conn.execute(
                    "SELECT account, form_id, tag, webhook_id, applied_at, applied, source,"
                    " secret_fingerprint FROM managed_webhooks WHERE namespace = %s",
                    (self.namespace,),
                ).fetchall()
            return self._decode(meta, rows)

        state = self._run("read", work)
        self._known_serial = state.serial
        self._known_rows = dict(state.webhooks)
        return state

    def _decode(self, meta: Any, rows: list[Any]) -> State:
        if meta is None:
            if rows:
                raise self._invalid("webhooks are recorded but the namespace has no serial")
            return State()
        serial, salt = meta
        if salt is not None and not (isinstance(salt, str) and valid_salt(salt)):
            raise self._invalid("fingerprint_salt must be base64 of 16 to 64 bytes, or null")
        entries: dict[WebhookKey, ManagedWebhook] = {}
        for account, form_id, tag, webhook_id, applied_at, applied, source, fingerprint in rows:
            key = WebhookKey(account, form_id, tag)
            problem = _applied_problem(applied)
            if problem is not None:
                raise self._invalid(f"{key}: applied {problem}")
            if not (account and form_id and tag and webhook_id):
                raise self._invalid(f"{key}: account, form_id, tag and webhook_id must be set")
            entries[key] = ManagedWebhook(
                key=key,
                webhook_id=webhook_id,
                applied_at=_format_time(applied_at),
                applied=applied,
                source=source,
                secret_fingerprint=fingerprint,
            )
        return State(entries, serial=int(serial), fingerprint_salt=salt)

    def _invalid(self, what: str) -> StateError:
        return StateError(
            f"the PostgreSQL state {self.location} is invalid ({what}); it was changed outside "
            "typeform-reconciler: restore it, or `reconcile state push --force` a good state file"
        )

    def save(self, state: State) -> State:
        """Write ``state`` as the namespace's next serial, in one transaction; returns it.

        The stored serial must still be the one this store last loaded or saved (or, for a
        store that has done neither, ``state.serial``): otherwise another run saved since, and
        nothing is written.
        """
        expected = self._known_serial if self._known_serial is not None else state.serial
        rows = [_encode(entry) for entry in state.webhooks.values()]

        def work(conn: psycopg.Connection[Any]) -> int:
            with conn.transaction():
                bumped = conn.execute(
                    "UPDATE state_meta SET serial = serial + 1, fingerprint_salt = %s,"
                    " updated_at = now() WHERE namespace = %s AND serial = %s RETURNING serial",
                    (state.fingerprint_salt, self.namespace, expected),
                ).fetchone()
                if bumped is None and expected == 0:
                    bumped = conn.execute(
                        "INSERT INTO state_meta (namespace, serial, fingerprint_salt)"
                        " VALUES (%s, 1, %s) ON CONFLICT (namespace) DO NOTHING RETURNING serial",
                        (self.namespace, state.fingerprint_salt),
                    ).fetchone()
                if bumped is None:
                    row = conn.execute(
                        "SELECT serial FROM state_meta WHERE namespace = %s", (self.namespace,)
                    ).fetchone()
                    stored = row[0] if row is not None else 0
                    raise StateError(
                        f"the PostgreSQL state {self.location} changed under this run (serial "
                        f"{stored}, this run read serial {expected}): another process wrote it. "
                        "Nothing more was saved; run again to start from what it holds now"
                    )
                self._write_rows(conn, state, rows, self._known_rows)
                return int(bumped[0])

        serial = self._run("save", work)
        self._known_serial = serial
        self._known_rows = dict(state.webhooks)
        return replace(state, serial=serial)

    def _write_rows(
        self,
        conn: psycopg.Connection[Any],
        state: State,
        rows: list[tuple[Any, ...]],
        known: Mapping[WebhookKey, ManagedWebhook] | None,
    ) -> None:
        if known is None:
            # Nothing known of what is stored: replace it all (still one transaction).
            conn.execute("DELETE FROM managed_webhooks WHERE namespace = %s", (self.namespace,))
            changed = rows
        else:
            gone = [k for k in known if k not in state.webhooks]
            if gone:
                with conn.cursor() as cur:
                    cur.executemany(
                        "DELETE FROM managed_webhooks WHERE namespace = %s AND account = %s"
                        " AND form_id = %s AND tag = %s",
                        [(self.namespace, k.account, k.form_id, k.tag) for k in gone],
                    )
            changed = [
                row
                for row, entry in zip(rows, state.webhooks.values(), strict=True)
                if known.get(entry.key) != entry
            ]
        if changed:
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO managed_webhooks (namespace, account, form_id, tag, webhook_id,"
                    " applied_at, applied, source, secret_fingerprint)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
                    " ON CONFLICT (namespace, account, form_id, tag) DO UPDATE SET"
                    " webhook_id = EXCLUDED.webhook_id, applied_at = EXCLUDED.applied_at,"
                    " applied = EXCLUDED.applied, source = EXCLUDED.source,"
                    " secret_fingerprint = EXCLUDED.secret_fingerprint",
                    [(self.namespace, *row) for row in changed],
                )

    # ----------------------------------------------------------------- records and drift

    def write_record(self, record: OperationRecord) -> None:
        """Insert one operation record (the JSONL records file stays the main record)."""
        doc = record.to_json()
        values = (
            self.namespace,
            doc["run_id"],
            _parse_time(doc["timestamp"], "record timestamp"),
            doc["operation"],
            doc["account"],
            doc["form_id"],
            doc["tag"],
            doc["webhook_id"],
            doc["url"],
            doc["success"],
            doc["error"],
            doc["attempts"],
            doc["duration_ms"],
            doc["note"],
        )

        def work(conn: psycopg.Connection[Any]) -> None:
            conn.execute(
                'INSERT INTO operation_records (namespace, run_id, "timestamp", operation,'
                " account, form_id, tag, webhook_id, url, success, error, attempts, duration_ms,"
                " note) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                values,
            )

        self._run("write an operation record to", work)

    def save_drift(self, report_json: Mapping[str, Any]) -> None:
        """Upsert the latest status of each webhook of a drift report (``DriftReport.to_json``).

        A verdict older than the stored one (a stale report repeating old verdicts) does not
        replace it. Webhooks the report does not mention keep their last row and its
        ``checked_at``."""
        fallback = report_json.get("checked_at")
        rows = []
        for item in report_json.get("webhooks", ()):
            checked = item.get("last_checked") or fallback
            rows.append(
                (
                    self.namespace,
                    item["account"],
                    item["form_id"],
                    item["tag"],
                    item["status"],
                    item.get("cause"),
                    Jsonb(list(item.get("issues", ()))),
                    Jsonb(list(item.get("changes", ()))),
                    item.get("url"),
                    bool(item.get("heal_suspended", False)),
                    _parse_time(str(checked), "drift checked_at"),
                )
            )
        if not rows:
            return

        def work(conn: psycopg.Connection[Any]) -> None:
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO drift_status (namespace, account, form_id, tag, status, cause,"
                    " issues, changes, url, heal_suspended, checked_at)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                    " ON CONFLICT (namespace, account, form_id, tag) DO UPDATE SET"
                    " status = EXCLUDED.status, cause = EXCLUDED.cause,"
                    " issues = EXCLUDED.issues, changes = EXCLUDED.changes, url = EXCLUDED.url,"
                    " heal_suspended = EXCLUDED.heal_suspended, checked_at = EXCLUDED.checked_at"
                    " WHERE drift_status.checked_at <= EXCLUDED.checked_at",
                    rows,
                )

        self._run("write the drift status to", work)

    # ----------------------------------------------------------------- lock

    def lock(self, *, command: str, timeout: float = 0) -> AbstractContextManager[LockInfo]:
        return self._locked(command=command, timeout=timeout)

    @contextlib.contextmanager
    def _locked(self, *, command: str, timeout: float) -> Iterator[LockInfo]:
        conn = self._connect()
        try:
            holder = self._acquire(conn, command=command, timeout=timeout)
            with self._mutex:
                self._lock_conn = conn
            try:
                yield LockInfo(holder=holder)
            finally:
                with self._mutex:
                    self._lock_conn = None
                    with contextlib.suppress(psycopg.Error):
                        conn.execute(
                            "DELETE FROM lock_holders WHERE namespace = %s"
                            " AND backend_pid = pg_backend_pid()",
                            (self.namespace,),
                        )
                        conn.execute("SELECT pg_advisory_unlock(%s)", (self.advisory_lock_key,))
        finally:
            # Closing the session releases the advisory lock whatever happened above.
            conn.close()

    def _acquire(
        self, conn: psycopg.Connection[Any], *, command: str, timeout: float
    ) -> LockHolder:
        try:
            self._ensure_schema(conn)
            deadline = time.monotonic() + timeout
            pause = _POLL_SECONDS
            while True:
                row = conn.execute(
                    "SELECT pg_try_advisory_lock(%s)", (self.advisory_lock_key,)
                ).fetchone()
                if row is not None and row[0]:
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    raise LockHeldError(self._held_message(conn))
                time.sleep(min(pause, left))
                pause = min(pause * 1.5, _MAX_POLL_SECONDS)
            started = datetime.now(UTC).replace(microsecond=0)
            holder = LockHolder(
                pid=os.getpid(),
                host=socket.gethostname(),
                started_at=_format_time(started),
                command=command,
            )
            conn.execute(
                "INSERT INTO lock_holders (namespace, backend_pid, pid, host, started_at, command)"
                " VALUES (%s, pg_backend_pid(), %s, %s, %s, %s) ON CONFLICT (namespace) DO UPDATE"
                " SET backend_pid = EXCLUDED.backend_pid, pid = EXCLUDED.pid,"
                " host = EXCLUDED.host, started_at = EXCLUDED.started_at,"
                " command = EXCLUDED.command",
                (self.namespace, holder.pid, holder.host, started, holder.command),
            )
            return holder
        except psycopg.Error as exc:
            raise StateError(
                f"cannot lock the PostgreSQL state {self.location}: {_first_line(exc, self.dsn)}"
            ) from None

    def holder(self) -> tuple[LockHolder, int] | None:
        """Who holds this namespace's lock now, and the backend pid of its session (which
        ``pg_terminate_backend`` ends); ``None`` when nobody does or the holder has not said."""
        return self._run("read the lock holder of", self._current_holder)

    def _held_message(self, conn: psycopg.Connection[Any]) -> str:
        found = self._current_holder(conn)
        if found is None:
            who = "another process (it has not said which)"
            how = "it is released when that process ends"
        else:
            holder, backend_pid = found
            who = describe_holder(holder)
            how = (
                "it is released when that process ends or its database session (backend pid "
                f"{backend_pid}) closes"
            )
        return f"the PostgreSQL state {self.location} is locked by {who}; {how}"

    def _current_holder(self, conn: psycopg.Connection[Any]) -> tuple[LockHolder, int] | None:
        """The recorded holder, only if its session is the one holding the advisory lock now
        (a row left by a killed holder names nobody)."""
        row = conn.execute(
            "SELECT h.pid, h.host, h.started_at, h.command, h.backend_pid FROM lock_holders h"
            " WHERE h.namespace = %s AND EXISTS (SELECT 1 FROM pg_locks l"
            " WHERE l.locktype = 'advisory' AND l.granted AND l.pid = h.backend_pid"
            " AND l.classid::bigint = %s AND l.objid::bigint = %s AND l.objsubid = 1)",
            (
                self.namespace,
                (self.advisory_lock_key >> 32) & 0xFFFFFFFF,
                self.advisory_lock_key & 0xFFFFFFFF,
            ),
        ).fetchone()
        if row is None:
            return None
        pid, host, started_at, command, backend_pid = row
        if not all(_printable(v) for v in (host, command)):
            return None
        holder = LockHolder(
            pid=int(pid), host=host, started_at=_format_time(started_at), command=command
        )
        return holder, int(backend_pid)

    # ----------------------------------------------------------------- writable

    def check_writable(self) -> None:
        """Fail now, before any API write, when saving would certainly fail later: no
        connection, a read-only server, or a missing privilege on one of the tables."""

        def work(conn: psycopg.Connection[Any]) -> list[str]:
            problems: list[str] = []
            read_only = conn.execute("SELECT current_setting('transaction_read_only')").fetchone()
            if read_only is not None and read_only[0] == "on":
                problems.append("the server only accepts reads (a standby?)")
            for table, privileges in _PRIVILEGES:
                for privilege in privileges.split(", "):
                    allowed = conn.execute(
                        "SELECT has_table_privilege(%s, %s)", (table, privilege)
                    ).fetchone()
                    if allowed is None or not allowed[0]:
                        problems.append(f"no {privilege} privilege on table {table}")
            return problems

        problems = self._run("check", work)
        if problems:
            raise StateError(
                f"cannot write the PostgreSQL state {self.location}: {'; '.join(problems)}; "
                "nothing was applied. Grant them, or pass another --state"
            )


# --------------------------------------------------------------------------- helpers


def _lock_key(namespace: str) -> int:
    """A signed 64-bit advisory lock key for a namespace (stable across versions and hosts)."""
    digest = hashlib.blake2b(f"typeform-reconciler:{namespace}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _current_version(conn: psycopg.Connection[Any]) -> int:
    exists = conn.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()
    if exists is None or not exists[0]:
        return 0
    row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()
    return int(row[0]) if row is not None else 0


def _encode(entry: ManagedWebhook) -> tuple[Any, ...]:
    doc = entry.to_json()
    applied = doc["applied"]
    return (
        entry.key.account,
        entry.key.form_id,
        entry.key.tag,
        entry.webhook_id,
        _parse_time(entry.applied_at, f"{entry.key}: applied_at"),
        Jsonb(applied) if applied is not None else None,
        entry.source,
        entry.secret_fingerprint,
    )


def _parse_time(text: str, what: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        raise StateError(f"{what} {text[:40]!r} is not an ISO-8601 time") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _format_time(moment: datetime) -> str:
    """ISO-8601 UTC with a ``Z``, as the file store writes; sub-seconds only when present."""
    moment = moment.astimezone(UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    return text + "Z"


def _applied_problem(applied: Any) -> str | None:
    """Why a stored last-applied body cannot be used, or ``None`` (the file store's rules)."""
    if applied is None:
        return None
    if not isinstance(applied, dict):
        return "must be an object or null"
    if "secret" in applied:
        return "must not hold a secret"
    if "url" in applied and not isinstance(applied["url"], str):
        return "url must be a string"
    for name in ("enabled", "verify_ssl"):
        if name in applied and not isinstance(applied[name], bool):
            return f"{name} must be true or false"
    events = applied.get("event_types", {})
    if not isinstance(events, dict) or not all(isinstance(v, bool) for v in events.values()):
        return "event_types must be an object of true/false"
    return None


def _printable(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 255 and value.isprintable()

"""The StateStore contract, run against every backend: the state file and PostgreSQL.

Whatever ``--state`` names, a run must see the same behaviour (SPEC sections 4 and 7): an empty
state before the first save, every field back as saved, a serial that counts saves, a save
refused when another process saved since this one read, one lock holder at a time (named to the
second, or waited for), and a lock that a killed holder does not keep. Each test goes through
``open_state_store`` exactly as the CLI does; a lock is held by a real second process.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from reconciler.errors import LockHeldError, StateError
from reconciler.models import Operation, OperationRecord, WebhookKey
from reconciler.state import ManagedWebhook, State, StateStore, open_state_store

REPO = Path(__file__).resolve().parents[1]
SALT = "c2FsdC1mb3ItdGhlLWNvbnRyYWN0LXRlc3Q="  # base64 of 26 bytes

FULL = ManagedWebhook(
    key=WebhookKey("eu-clients", "onbrd01", "intake"),
    webhook_id="01HXYZWEBHOOK",
    applied_at="2026-01-02T03:04:05Z",
    applied={
        "url": "https://hooks.example.com/intake?team=é&x=1",
        "enabled": False,
        "verify_ssl": True,
        "event_types": {"form_response": True, "form_response_partial": False},
    },
    source="manifests/équipe/intake.yaml",
    secret_fingerprint="v2$AAAA$BBBB",
)
BARE = ManagedWebhook(
    key=WebhookKey("default", "fdbk001", "inbox"),
    webhook_id="01HXYZOTHER",
    applied_at="2025-12-31T23:59:59Z",
)


@dataclass
class Backend:
    name: str
    spec: str
    """What ``--state`` is given."""
    make_unwritable: Callable[[], str]
    """Another ``--state`` value for the same kind of store, on which saving must fail."""

    def store(self) -> StateStore:
        return open_state_store(self.spec)


@pytest.fixture(params=["file", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "file":

        def file_under_a_file() -> str:
            blocker = tmp_path / "not-a-directory"
            blocker.write_text("")
            return str(blocker / "state.json")

        return Backend("file", str(tmp_path / "state.json"), file_under_a_file)

    server = request.getfixturevalue("postgres_server")
    db = request.getfixturevalue("postgres_db")

    def read_only_role() -> str:
        from conftest import PG_READER, PG_READER_PASSWORD

        open_state_store(server.dsn(db)).load()  # creates the tables, as their owner
        with server.admin(db) as conn:
            conn.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {PG_READER}")
        return str(server.dsn(db, user=PG_READER, password=PG_READER_PASSWORD))

    return Backend("postgres", server.dsn(db), read_only_role)


_HOLD_LOCK = """
import sys
from reconciler.state import open_state_store

with open_state_store(sys.argv[1]).lock(command="watch --heal"):
    print("locked", flush=True)
    sys.stdin.read()
"""


@contextmanager
def lock_held_elsewhere(spec: str) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the store's lock until its stdin closes (or it is killed)."""
    with subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, spec],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    ) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "locked\n"
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()


# --------------------------------------------------------------------------- load and save


def test_a_store_never_saved_loads_as_an_empty_state(backend: Backend) -> None:
    state = backend.store().load()

    assert dict(state.webhooks) == {}
    assert state.serial == 0
    assert state.fingerprint_salt is None


def test_every_field_comes_back_as_saved_through_another_store(backend: Backend) -> None:
    writer = backend.store()
    writer.load()

    written = writer.save(State({FULL.key: FULL, BARE.key: BARE}, fingerprint_salt=SALT))
    loaded = backend.store().load()

    assert loaded == written
    assert dict(loaded.webhooks) == {FULL.key: FULL, BARE.key: BARE}
    assert loaded.to_json()["webhooks"] == [BARE.to_json(), FULL.to_json()]
    assert loaded.fingerprint_salt == SALT
    assert loaded.serial == 1


def test_each_save_increments_the_serial_and_keeps_exactly_the_entries_saved(
    backend: Backend,
) -> None:
    store = backend.store()
    state = store.load()

    first = store.save(state.with_applied(FULL).with_applied(BARE))
    changed = ManagedWebhook(FULL.key, "01HXYZNEWID", "2026-02-03T04:05:06Z", {"url": "https://x"})
    second = store.save(first.without(BARE.key).with_applied(changed))
    third = store.save(second)

    assert [first.serial, second.serial, third.serial] == [1, 2, 3]
    reloaded = backend.store().load()
    assert dict(reloaded.webhooks) == {FULL.key: changed}
    assert reloaded.serial == 3


def test_a_save_is_refused_when_another_store_saved_since_this_one_loaded(
    backend: Backend,
) -> None:
    ours, theirs = backend.store(), backend.store()
    ours.load()
    theirs.load()
    theirs.save(State({BARE.key: BARE}))

    with pytest.raises(StateError, match="changed under this run") as refused:
        ours.save(State({FULL.key: FULL}))

    assert "serial 1" in str(refused.value)
    after = backend.store().load()
    assert dict(after.webhooks) == {BARE.key: BARE}
    assert after.serial == 1


def test_a_store_that_never_loaded_saves_only_over_the_serial_its_state_was_read_at(
    backend: Backend,
) -> None:
    backend.store().save(State({BARE.key: BARE}))  # serial 1 now

    with pytest.raises(StateError, match="changed under this run"):
        backend.store().save(State({FULL.key: FULL}, serial=0))
    saved = backend.store().save(State({FULL.key: FULL}, serial=1))

    assert saved.serial == 2
    assert dict(backend.store().load().webhooks) == {FULL.key: FULL}


def test_records_and_drift_reports_are_accepted_by_every_store(backend: Backend) -> None:
    store = backend.store()
    record = OperationRecord(
        timestamp="2026-01-02T03:04:05Z",
        run_id="01JRUNID0000000000000000000",
        operation=Operation.CREATE,
        account="default",
        form_id="onbrd01",
        tag="intake",
        webhook_id="01HXYZ",
        url="https://hooks.example.com/intake",
        success=True,
        error=None,
        attempts=1,
        duration_ms=12,
    )
    report = {
        "checked_at": "2026-01-02T03:04:05Z",
        "webhooks": [
            {
                "account": "default",
                "form_id": "onbrd01",
                "tag": "intake",
                "status": "in_sync",
                "cause": None,
                "issues": [],
                "changes": [],
                "url": "https://hooks.example.com/intake",
                "last_checked": "2026-01-02T03:04:05Z",
                "heal_suspended": False,
            }
        ],
    }

    store.write_record(record)
    store.save_drift(report)

    # Neither changes the state itself.
    assert backend.store().load() == State()


# --------------------------------------------------------------------------- the lock


def test_a_second_lock_raises_lock_held_naming_the_holder(backend: Backend) -> None:
    with lock_held_elsewhere(backend.spec) as holder:
        started = time.monotonic()
        with pytest.raises(LockHeldError) as held:
            backend.store().lock(command="apply").__enter__()
        took = time.monotonic() - started

    message = str(held.value)
    assert f"is locked by pid {holder.pid} on host {socket.gethostname()} since " in message
    assert "(reconcile watch --heal)" in message
    assert took < 2, "a lock with no timeout must fail at once"


def test_a_lock_with_a_timeout_waits_for_the_holder_and_then_gets_it(backend: Backend) -> None:
    with lock_held_elsewhere(backend.spec) as holder:
        assert holder.stdin is not None
        release = threading.Timer(0.6, holder.stdin.close)
        release.start()
        started = time.monotonic()
        try:
            with backend.store().lock(command="apply", timeout=20) as info:
                waited = time.monotonic() - started
                assert info.holder.pid == os.getpid()
                assert info.holder.command == "apply"
        finally:
            release.cancel()
        assert holder.wait(timeout=10) == 0

    assert 0.5 <= waited < 10


def test_a_lock_with_a_timeout_still_fails_when_the_holder_outlasts_it(backend: Backend) -> None:
    with lock_held_elsewhere(backend.spec) as holder:
        started = time.monotonic()
        with pytest.raises(LockHeldError, match=f"pid {holder.pid}"):
            backend.store().lock(command="apply", timeout=0.5).__enter__()
        took = time.monotonic() - started

    assert 0.45 <= took < 5


def test_a_killed_holder_releases_the_lock_at_once(backend: Backend) -> None:
    with lock_held_elsewhere(backend.spec) as holder:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
        started = time.monotonic()
        with backend.store().lock(command="apply", timeout=5) as info:
            took = time.monotonic() - started

    assert info.holder.pid == os.getpid()
    assert took < 1


def test_while_one_store_holds_the_lock_another_store_of_the_same_state_cannot(
    backend: Backend,
) -> None:
    first, second = backend.store(), backend.store()
    with first.lock(command="apply"), pytest.raises(LockHeldError, match=f"pid {os.getpid()}"):
        second.lock(command="state rm").__enter__()

    with second.lock(command="state rm") as info:  # released on leaving the block
        assert info.holder.command == "state rm"


def test_a_store_saves_while_it_holds_its_lock(backend: Backend) -> None:
    store = backend.store()
    with store.lock(command="apply"):
        state = store.load()
        saved = store.save(state.with_applied(FULL))

    assert saved.serial == 1
    assert dict(backend.store().load().webhooks) == {FULL.key: FULL}


# --------------------------------------------------------------------------- check_writable


def test_check_writable_passes_on_a_store_that_can_be_saved(backend: Backend) -> None:
    backend.store().check_writable()


def test_check_writable_raises_a_state_error_when_a_save_would_fail(backend: Backend) -> None:
    unwritable = open_state_store(backend.make_unwritable())

    with pytest.raises(StateError, match="cannot write"):
        unwritable.check_writable()
    with pytest.raises(StateError):
        unwritable.save(State({FULL.key: FULL}))

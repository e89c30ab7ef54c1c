"""The PostgreSQL state end to end: the CLI with ``--state postgresql://…`` on a real server.

What a shared database is for (SPEC section 7): several checkouts (CI runners, a laptop, a
``watch``) apply against one state, one at a time, and a fresh checkout with no local file sees
what the others applied. Around it: the schema's migrations, namespaces, ``state push/pull``,
the records and drift tables, and the DSN's password, which must never show anywhere.

The server is the session's throwaway cluster (``postgres_server`` in conftest.py); each test
gets a fresh database. The emulator is shared between checkouts through ``emulator:PATH``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import _CI, PG_PASSWORD, PG_USER, PostgresServer

try:
    import psycopg
except ImportError:
    if _CI:
        raise
    pytest.skip(
        "psycopg is not installed (pip install -e '.[dev]'): PostgreSQL state tests skipped",
        allow_module_level=True,
    )

from reconciler.cli import main
from reconciler.errors import ConfigError, LockHeldError, StateError
from reconciler.models import WebhookKey
from reconciler.records import read_records
from reconciler.state import ManagedWebhook, State, load_state, open_state_store, save_state
from reconciler.state_postgres import SCHEMA_VERSION, PostgresStateStore, parse_dsn

REPO = Path(__file__).resolve().parents[1]
SECRET_ENV = "ONBOARDING_WEBHOOK_SECRET"
WEBHOOKS = [
    {"form_id": "onbrd01", "tag": "intake", "url": "https://hooks.example.com/intake"},
    {"form_id": "onbrd02", "tag": "company", "url": "https://hooks.example.com/company"},
]
ENTRY = ManagedWebhook(
    key=WebhookKey("default", "onbrd01", "intake"),
    webhook_id="01HXYZ",
    applied_at="2026-01-02T03:04:05Z",
    applied={"url": "https://hooks.example.com/intake", "enabled": True},
    source="manifests/onboarding.yaml",
)


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    @property
    def both(self) -> str:
        return self.out + self.err


class Checkout:
    """One working copy of the same manifests (a CI runner): ``reconcile`` runs in its directory,
    with no state file of its own, against the shared emulator and ``--state``."""

    def __init__(self, root: Path, api_url: str, capsys: Any, monkeypatch: Any) -> None:
        self.root = root
        self.api_url = api_url
        self._capsys = capsys
        self._monkeypatch = monkeypatch
        manifests = root / "manifests"
        manifests.mkdir(parents=True)
        doc = {
            "apiVersion": "reconciler/v1",
            "kind": "WebhookSet",
            "metadata": {"name": "onboarding"},
            "spec": {
                "ownership": "declared",
                "defaults": {"secret": {"env": SECRET_ENV}},
                "webhooks": WEBHOOKS,
            },
        }
        (manifests / "onboarding.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")

    def raw(self, *argv: str) -> Result:
        self._monkeypatch.chdir(self.root)
        self._capsys.readouterr()
        with pytest.raises(SystemExit) as exited:
            main(list(argv))
        out, err = self._capsys.readouterr()
        assert isinstance(exited.value.code, int)
        return Result(exited.value.code, out, err)

    def __call__(self, command: str, state: str, *args: str) -> Result:
        return self.raw(
            command,
            "manifests",
            "--api-url",
            self.api_url,
            "--state",
            state,
            "--rate",
            "1000",
            *args,
        )


@pytest.fixture
def checkouts(
    tmp_path: Path, emulator_url: str, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> tuple[Checkout, Checkout]:
    monkeypatch.setenv(SECRET_ENV, "s3cr3t-shared-by-both-checkouts")
    monkeypatch.delenv("RECONCILE_STATE", raising=False)
    return (
        Checkout(tmp_path / "runner-a", emulator_url, capsys, monkeypatch),
        Checkout(tmp_path / "runner-b", emulator_url, capsys, monkeypatch),
    )


_HOLD_LOCK = """
import sys
from reconciler.state import open_state_store

with open_state_store(sys.argv[1]).lock(command="watch --heal"):
    print("locked", flush=True)
    sys.stdin.read()
"""


@pytest.fixture
def lock_holder(postgres_dsn: str) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the database state's lock until its stdin closes."""
    with subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, postgres_dsn],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    ) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "locked\n"
        yield proc
        if proc.poll() is None:
            proc.kill()


def query(server: PostgresServer, db: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with server.admin(db) as conn:
        return list(conn.execute(sql, params).fetchall())


# --------------------------------------------------------------------------- several checkouts


def test_a_fresh_checkout_plans_nothing_after_an_apply_from_another_one(
    checkouts: tuple[Checkout, Checkout], postgres_dsn: str
) -> None:
    first, fresh = checkouts

    assert first("apply", postgres_dsn, "--auto-approve").code == 0
    plan = fresh("plan", postgres_dsn, "--detailed-exitcode")

    assert plan.code == 0, plan.both
    assert not (fresh.root / ".reconcile" / "state.json").exists()
    # The same fresh checkout with a state file of its own would create both again.
    assert fresh("plan", "local-state.json", "--detailed-exitcode").code == 2


def test_a_second_apply_exits_1_naming_the_holder_while_another_process_holds_the_lock(
    checkouts: tuple[Checkout, Checkout],
    postgres_dsn: str,
    lock_holder: subprocess.Popen[str],
) -> None:
    _, second = checkouts

    blocked = second("apply", postgres_dsn, "--auto-approve")

    assert blocked.code == 1
    assert f"is locked by pid {lock_holder.pid} on host" in blocked.err
    assert "(reconcile watch --heal)" in blocked.err
    assert "Traceback" not in blocked.err
    assert second("plan", postgres_dsn, "--detailed-exitcode").code == 2  # nothing applied

    assert lock_holder.stdin is not None
    lock_holder.stdin.close()
    assert lock_holder.wait(timeout=10) == 0
    assert second("apply", postgres_dsn, "--auto-approve").code == 0


@pytest.fixture
def cli(tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch) -> Checkout:
    """A checkout for commands that do not call the API (state migrate/push/pull/list)."""
    monkeypatch.delenv("RECONCILE_STATE", raising=False)
    return Checkout(tmp_path / "c", "emulator:unused", capsys, monkeypatch)


def test_a_killed_lock_holder_releases_the_lock_at_once_and_the_next_apply_runs(
    checkouts: tuple[Checkout, Checkout],
    postgres_dsn: str,
    lock_holder: subprocess.Popen[str],
) -> None:
    first, _ = checkouts
    lock_holder.send_signal(signal.SIGKILL)
    lock_holder.wait(timeout=10)

    started = time.monotonic()
    applied = first("apply", postgres_dsn, "--auto-approve")

    assert applied.code == 0, applied.err
    assert time.monotonic() - started < 5
    assert "locked" not in applied.err


def test_namespaces_of_one_database_keep_separate_states_and_locks(
    checkouts: tuple[Checkout, Checkout],
    postgres_server: PostgresServer,
    postgres_db: str,
    lock_holder: subprocess.Popen[str],
) -> None:
    first, _ = checkouts
    staging = postgres_server.dsn(postgres_db, namespace="staging")

    # The default namespace is locked by lock_holder; staging is not.
    assert first("apply", staging, "--auto-approve").code == 0

    assert first("plan", staging, "--detailed-exitcode").code == 0
    assert open_state_store(postgres_server.dsn(postgres_db)).load() == State()
    assert len(open_state_store(staging).load().webhooks) == 2
    namespaces = query(postgres_server, postgres_db, "SELECT namespace FROM managed_webhooks")
    assert {n for (n,) in namespaces} == {"staging"}


# --------------------------------------------------------------------------- records and drift


def test_records_and_drift_statuses_land_in_their_tables(
    checkouts: tuple[Checkout, Checkout], postgres_server: PostgresServer, postgres_db: str
) -> None:
    first, _ = checkouts
    dsn = postgres_server.dsn(postgres_db)
    assert first("apply", dsn, "--auto-approve").code == 0
    written = read_records(first.root / ".reconcile" / "records.jsonl")
    drift = first("drift", dsn, "--format", "json")
    assert drift.code == 0, drift.err  # apply and drift wrote to the tables themselves

    rows = query(
        postgres_server,
        postgres_db,
        "SELECT operation, form_id, tag, success, attempts FROM operation_records ORDER BY id",
    )
    assert rows == [
        (d["operation"], d["form_id"], d["tag"], d["success"], d["attempts"]) for d in written
    ]
    statuses = query(
        postgres_server,
        postgres_db,
        "SELECT form_id, tag, status, cause, issues FROM drift_status"
        " WHERE namespace = 'default' ORDER BY form_id, tag",
    )
    assert ("onbrd01", "intake", "in_sync", None, []) in statuses
    assert ("onbrd02", "company", "in_sync", None, []) in statuses


def test_apply_and_drift_through_the_cli_fill_the_records_and_drift_tables(
    checkouts: tuple[Checkout, Checkout], postgres_server: PostgresServer, postgres_db: str
) -> None:
    first, _ = checkouts
    dsn = postgres_server.dsn(postgres_db)

    assert first("apply", dsn, "--auto-approve").code == 0
    assert first("drift", dsn).code == 0

    records = query(postgres_server, postgres_db, "SELECT count(*) FROM operation_records")
    statuses = query(postgres_server, postgres_db, "SELECT count(*) FROM drift_status")
    assert records[0][0] >= 2
    assert statuses[0][0] >= 2


def test_a_newer_drift_status_replaces_an_older_one_but_not_the_reverse(postgres_dsn: str) -> None:
    store = PostgresStateStore(postgres_dsn)

    def report(status: str, checked: str) -> dict[str, Any]:
        row = {"account": "default", "form_id": "f", "tag": "t", "status": status}
        return {"checked_at": checked, "webhooks": [{**row, "cause": None, "issues": ["why"]}]}

    store.save_drift(report("drifted", "2026-01-02T10:00:00Z"))
    store.save_drift(report("in_sync", "2026-01-02T09:00:00Z"))  # a stale report's old verdict
    assert _drift_status(postgres_dsn) == "drifted"
    store.save_drift(report("missing", "2026-01-02T11:00:00Z"))
    assert _drift_status(postgres_dsn) == "missing"


def _drift_status(dsn: str) -> str:
    with psycopg.connect(parse_dsn(dsn).conninfo) as conn:
        row = conn.execute("SELECT status FROM drift_status").fetchone()
    assert row is not None
    return str(row[0])


# --------------------------------------------------------------------------- schema


def test_migrate_creates_the_schema_once_and_is_idempotent(
    postgres_server: PostgresServer, postgres_db: str, cli: Checkout
) -> None:
    dsn = postgres_server.dsn(postgres_db)
    store = PostgresStateStore(dsn)
    assert store.schema_version() == 0

    assert store.migrate() == (0, SCHEMA_VERSION)
    assert store.migrate() == (SCHEMA_VERSION, SCHEMA_VERSION)
    shown = cli.raw("state", "migrate", "--state", dsn)

    assert shown.code == 0
    assert f"Schema version {SCHEMA_VERSION} (already current)" in shown.out
    versions = query(postgres_server, postgres_db, "SELECT version FROM schema_version")
    assert versions == [(SCHEMA_VERSION,)]
    tables = query(
        postgres_server,
        postgres_db,
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename",
    )
    assert [t for (t,) in tables] == [
        "drift_status",
        "lock_holders",
        "managed_webhooks",
        "operation_records",
        "schema_version",
        "state_meta",
    ]


def test_the_first_use_of_an_empty_database_creates_the_schema(postgres_dsn: str) -> None:
    PostgresStateStore(postgres_dsn).save(State({ENTRY.key: ENTRY}))

    assert PostgresStateStore(postgres_dsn).schema_version() == SCHEMA_VERSION


def test_a_database_migrated_by_a_newer_version_is_refused_with_a_clear_error(
    postgres_server: PostgresServer, postgres_db: str
) -> None:
    dsn = postgres_server.dsn(postgres_db)
    PostgresStateStore(dsn).migrate()
    query_ = "INSERT INTO schema_version (version) VALUES (%s) RETURNING version"
    query(postgres_server, postgres_db, query_, SCHEMA_VERSION + 1)

    with pytest.raises(StateError, match="newer typeform-reconciler"):
        PostgresStateStore(dsn).load()


def test_state_migrate_on_a_state_file_is_a_clear_error(cli: Checkout) -> None:

    result = cli.raw("state", "migrate", "--state", "state.json")

    assert result.code == 1
    assert "state migrate is for --state postgresql://" in result.err


# --------------------------------------------------------------------------- push and pull


def test_push_then_pull_moves_the_whole_state_and_refuses_to_overwrite_without_force(
    postgres_dsn: str, cli: Checkout
) -> None:
    salt = "c2FsdC1mb3ItdGhlLXB1c2gtdGVzdA=="
    other = ManagedWebhook(WebhookKey("eu", "fdbk001", "inbox"), "01HOTHER", "2026-01-03T00:00:00Z")
    save_state(cli.root / "local.json", State({ENTRY.key: ENTRY}, serial=7, fingerprint_salt=salt))
    save_state(cli.root / "other.json", State({other.key: other}, serial=2))

    pushed = cli.raw("state", "push", "--from", "local.json", "--state", postgres_dsn)
    refused = cli.raw("state", "push", "--from", "other.json", "--state", postgres_dsn)
    kept = PostgresStateStore(postgres_dsn).load()
    pulled = cli.raw("state", "pull", "--to", "back.json", "--state", postgres_dsn)
    not_over = cli.raw("state", "pull", "--to", "other.json", "--state", postgres_dsn)
    untouched = load_state(cli.root / "other.json")
    forced = cli.raw("state", "pull", "--to", "other.json", "--state", postgres_dsn, "--force")

    assert pushed.code == 0, pushed.err
    assert "Copied 1 managed webhook(s)" in pushed.out
    assert refused.code == 1
    assert "already holds 1 managed webhook(s)" in refused.err
    assert "--force" in refused.err
    assert dict(kept.webhooks) == {ENTRY.key: ENTRY}
    assert kept.fingerprint_salt == salt
    assert pulled.code == 0, pulled.err
    back = load_state(cli.root / "back.json")
    assert dict(back.webhooks) == {ENTRY.key: ENTRY}
    assert back.fingerprint_salt == salt
    assert not_over.code == 1
    assert dict(untouched.webhooks) == {other.key: other}
    assert untouched.serial == 2
    assert forced.code == 0
    assert dict(load_state(cli.root / "other.json").webhooks) == {ENTRY.key: ENTRY}


def test_push_from_a_missing_file_is_refused_and_leaves_the_database_alone(
    postgres_dsn: str, cli: Checkout
) -> None:
    PostgresStateStore(postgres_dsn).save(State({ENTRY.key: ENTRY}))

    result = cli.raw("state", "push", "--from", "typo.json", "--state", postgres_dsn, "--force")

    assert result.code == 1
    assert "typo.json" in result.err
    assert dict(PostgresStateStore(postgres_dsn).load().webhooks) == {ENTRY.key: ENTRY}


def test_push_waits_for_no_one_it_refuses_while_an_apply_holds_the_database_lock(
    postgres_dsn: str, cli: Checkout, lock_holder: subprocess.Popen[str]
) -> None:
    save_state(cli.root / "local.json", State({ENTRY.key: ENTRY}))

    result = cli.raw("state", "push", "--from", "local.json", "--state", postgres_dsn)

    assert result.code == 1
    assert f"locked by pid {lock_holder.pid}" in result.err
    assert PostgresStateStore(postgres_dsn).load() == State()


# --------------------------------------------------------------------------- the DSN


def test_the_namespace_comes_from_the_dsn_and_is_not_sent_to_the_server() -> None:
    dsn = parse_dsn("postgresql://u:pw@db.example.com:6543/app?sslmode=require&namespace=ci-eu")

    assert dsn.namespace == "ci-eu"
    assert "namespace" not in dsn.conninfo
    assert "sslmode=require" in dsn.conninfo
    assert (dsn.host, dsn.dbname) == ("db.example.com", "app")
    assert parse_dsn("postgres://h/db").namespace == "default"


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://h/db?namespace=",
        "postgresql://h/db?namespace=a%27%3B%20DROP%20TABLE%20state_meta%3B--",
        "postgresql://h/db?namespace=a&namespace=b",
        "postgresql://h/db?namespace=" + "x" * 64,
        "postgresql://h/db?nosuchoption=1",
    ],
)
def test_a_dsn_that_cannot_be_used_is_a_config_error(dsn: str) -> None:
    with pytest.raises(ConfigError, match="--state postgresql://"):
        parse_dsn(dsn)


def test_postgres_state_without_psycopg_asks_for_the_extra(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['psycopg'] = None\n"
        "from reconciler.cli import main\n"
        "main(['state', 'list', '--state', 'postgresql://u:hunter2@h/db'])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False,
    )

    assert done.returncode == 1
    assert "pip install 'typeform-reconciler[postgres]'" in done.stderr
    assert "hunter2" not in done.stderr + done.stdout


# --------------------------------------------------------------------------- secret hygiene


def _everywhere(password: str, *texts: str) -> list[str]:
    return [t for t in texts if password in t]


def test_a_wrong_password_is_one_line_naming_host_and_database_never_the_password(
    checkouts: tuple[Checkout, Checkout], postgres_server: PostgresServer, postgres_db: str
) -> None:
    first, _ = checkouts
    wrong = "Wr0ng-pa55word-" + "q7z"
    dsn = postgres_server.dsn(postgres_db, password=wrong)

    results = [
        first("plan", dsn),
        first("apply", dsn, "--auto-approve"),
        first("drift", dsn),
        first.raw("state", "list", "--state", dsn),
        first.raw("state", "migrate", "--state", dsn),
    ]
    with pytest.raises(StateError) as raised:
        PostgresStateStore(dsn).load()
    store = PostgresStateStore(dsn)

    for result in results:
        assert result.code == 1, result.both
        assert "127.0.0.1" in result.err
        assert postgres_db in result.err
        assert "Traceback" not in result.both
        assert len(result.err.strip().splitlines()) <= 3, result.err
    texts = [r.both for r in results] + [str(raised.value), repr(store), store.location]
    assert _everywhere(wrong, *texts) == []
    assert "password authentication failed" in results[0].err
    assert f"{PG_USER}:***@" in store.location


def test_the_password_never_shows_in_the_output_of_a_working_run(
    checkouts: tuple[Checkout, Checkout],
    postgres_dsn: str,
    lock_holder: subprocess.Popen[str],
) -> None:
    first, _ = checkouts
    texts = [
        first("plan", postgres_dsn, "--log-level", "debug").both,
        first("apply", postgres_dsn, "--auto-approve", "--log-level", "debug").both,  # locked
        first.raw("state", "list", "--state", postgres_dsn).both,
        first.raw("state", "migrate", "--state", postgres_dsn).both,
    ]
    assert lock_holder.stdin is not None
    lock_holder.stdin.close()
    lock_holder.wait(timeout=10)
    texts.append(first("apply", postgres_dsn, "--auto-approve", "--log-level", "debug").both)
    texts.append(first("drift", postgres_dsn, "--format", "json").both)
    texts.append((first.root / ".reconcile" / "records.jsonl").read_text())

    assert "is locked by pid" in texts[1]
    assert "***" in texts[3]
    assert _everywhere(PG_PASSWORD, *texts) == []


@pytest.mark.parametrize("password", ["p@ss:w/rd%41?#&=x", "ünï-cødé pass"])
def test_a_password_with_reserved_characters_connects_when_percent_encoded_and_never_shows(
    postgres_server: PostgresServer, postgres_db: str, password: str
) -> None:
    from urllib.parse import quote

    role = "odd_" + str(abs(hash(password)) % 10_000)
    with postgres_server.admin() as conn:
        conn.execute(
            psycopg.sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                psycopg.sql.Identifier(role), psycopg.sql.Literal(password)
            )
        )
    with postgres_server.admin(postgres_db) as conn:
        conn.execute(f"GRANT ALL ON SCHEMA public TO {role}")
    encoded = quote(password, safe="")
    dsn = postgres_server.dsn(postgres_db, user=role, password=encoded)
    wrong = postgres_server.dsn(postgres_db, user=role, password=encoded + "x")

    store = PostgresStateStore(dsn)
    store.save(State({ENTRY.key: ENTRY}))
    with pytest.raises(StateError) as refused:
        PostgresStateStore(wrong).load()

    assert dict(PostgresStateStore(dsn).load().webhooks) == {ENTRY.key: ENTRY}
    for text in (repr(store), store.location, str(refused.value)):
        assert password not in text
        assert encoded not in text


def test_rows_changed_by_hand_into_something_unusable_are_a_clear_error_not_a_traceback(
    checkouts: tuple[Checkout, Checkout], postgres_server: PostgresServer, postgres_db: str
) -> None:
    first, _ = checkouts
    dsn = postgres_server.dsn(postgres_db)
    assert first("apply", dsn, "--auto-approve").code == 0
    query(
        postgres_server,
        postgres_db,
        'UPDATE managed_webhooks SET applied = applied || \'{"secret": "leaked"}\''
        " WHERE tag = 'intake' RETURNING tag",
    )

    listed = first.raw("state", "list", "--state", dsn)

    assert listed.code == 1
    assert "onbrd01/intake: applied must not hold a secret" in listed.err
    assert "leaked" not in listed.both
    assert "Traceback" not in listed.both


def test_a_read_only_role_is_refused_before_any_api_write(
    checkouts: tuple[Checkout, Checkout], postgres_server: PostgresServer, postgres_db: str
) -> None:
    from conftest import PG_READER, PG_READER_PASSWORD

    first, _ = checkouts
    owner = postgres_server.dsn(postgres_db)
    PostgresStateStore(owner).migrate()
    with postgres_server.admin(postgres_db) as conn:
        conn.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {PG_READER}")
    reader = postgres_server.dsn(postgres_db, user=PG_READER, password=PG_READER_PASSWORD)

    refused = first("apply", reader, "--auto-approve")

    assert refused.code == 1
    assert "no INSERT privilege on table managed_webhooks" in refused.err
    assert first("plan", owner, "--detailed-exitcode").code == 2  # nothing was written
    assert first("plan", reader, "--detailed-exitcode").code == 2  # reading is allowed


def test_save_sends_only_the_rows_that_changed(
    postgres_server: PostgresServer, postgres_db: str
) -> None:
    dsn = postgres_server.dsn(postgres_db)
    store = PostgresStateStore(dsn)
    many = {
        WebhookKey("default", f"form{i:04d}", "t"): ManagedWebhook(
            WebhookKey("default", f"form{i:04d}", "t"), f"id{i}", "2026-01-02T03:04:05Z"
        )
        for i in range(200)
    }
    state = store.save(State(many))
    xmin_before = dict(
        query(postgres_server, postgres_db, "SELECT form_id, xmin::text FROM managed_webhooks")
    )
    changed = ManagedWebhook(WebhookKey("default", "form0007", "t"), "new", "2026-02-02T00:00:00Z")

    store.save(state.with_applied(changed).without(WebhookKey("default", "form0009", "t")))

    xmin_after = dict(
        query(postgres_server, postgres_db, "SELECT form_id, xmin::text FROM managed_webhooks")
    )
    rewritten = {f for f, x in xmin_after.items() if xmin_before.get(f) != x}
    assert rewritten == {"form0007"}
    assert "form0009" not in xmin_after
    assert len(xmin_after) == 199


def test_the_store_repr_and_location_name_the_namespace_without_the_password(
    postgres_server: PostgresServer, postgres_db: str
) -> None:
    store = open_state_store(postgres_server.dsn(postgres_db, namespace="prod"))

    assert isinstance(store, PostgresStateStore)
    assert store.namespace == "prod"
    assert PG_PASSWORD not in repr(store)
    assert store.location.endswith("?namespace=prod")
    assert store.location.startswith(f"postgresql://{PG_USER}:***@127.0.0.1:")


def test_a_save_that_fails_midway_changes_nothing_not_even_the_serial(postgres_dsn: str) -> None:
    store = PostgresStateStore(postgres_dsn)
    before = store.save(State({ENTRY.key: ENTRY}))
    # PostgreSQL text cannot hold NUL: the row insert fails after the serial was bumped.
    bad = ManagedWebhook(
        WebhookKey("default", "fdbk001", "inbox"), "01H", ENTRY.applied_at, None, "a\x00b"
    )

    with pytest.raises(StateError, match="cannot save the PostgreSQL state") as refused:
        store.save(before.without(ENTRY.key).with_applied(bad))

    after = PostgresStateStore(postgres_dsn).load()
    assert after == before
    assert PG_PASSWORD not in str(refused.value)
    assert store.save(before).serial == 2  # the store itself is still usable


def test_a_row_left_by_a_killed_holder_never_names_it_as_the_holder(
    postgres_server: PostgresServer, postgres_db: str, lock_holder: subprocess.Popen[str]
) -> None:
    dsn = postgres_server.dsn(postgres_db)
    lock_holder.send_signal(signal.SIGKILL)
    lock_holder.wait(timeout=10)
    store = PostgresStateStore(dsn)
    with postgres_server.admin(postgres_db) as squatter:
        # Someone takes the advisory lock without saying who (the instant before a holder
        # records itself looks the same).
        squatter.execute("SELECT pg_advisory_lock(%s)", (store.advisory_lock_key,))
        with pytest.raises(LockHeldError) as held:
            store.lock(command="apply").__enter__()

    assert "another process (it has not said which)" in str(held.value)
    assert f"pid {lock_holder.pid}" not in str(held.value)
    with store.lock(command="apply") as info:  # the squatter's session closed: free again
        assert info.holder.pid == os.getpid()


def test_a_run_whose_lock_session_died_cannot_save_anymore(
    postgres_server: PostgresServer, postgres_db: str
) -> None:
    dsn = postgres_server.dsn(postgres_db)
    store = PostgresStateStore(dsn)
    with store.lock(command="apply"):
        state = store.load()
        with postgres_server.admin(postgres_db) as admin:
            # The server restarts, or an operator ends the session: the lock is gone with it.
            admin.execute("SELECT pg_terminate_backend(backend_pid) FROM lock_holders")
        with pytest.raises(StateError, match="cannot save the PostgreSQL state"):
            store.save(state.with_applied(ENTRY))

    assert PostgresStateStore(dsn).load() == State()


def test_the_current_holder_and_its_session_can_be_asked_for(
    postgres_dsn: str, lock_holder: subprocess.Popen[str]
) -> None:
    store = PostgresStateStore(postgres_dsn)

    found = store.holder()

    assert found is not None
    holder, backend_pid = found
    assert (holder.pid, holder.command) == (lock_holder.pid, "watch --heal")
    assert backend_pid > 0
    assert lock_holder.stdin is not None
    lock_holder.stdin.close()
    lock_holder.wait(timeout=10)
    assert store.holder() is None

"""Shared fixtures: the Typeform API emulator, in-process and served, for every test module.

* ``emulator_store``, ``emulator_app``, ``inprocess_client_transport``: the pieces, fresh per test.
* ``served_emulator``: ``emulator_app`` over real HTTP on 127.0.0.1 (one uvicorn per session,
  whose app is swapped per test, so serving costs one start-up, not one per test).
* ``make_emulator(mode=..., rate=..., seed=..., token=..., faults=...)``: a factory for both modes,
  and ``emulator_mode`` to parametrize a test body over ``served`` and ``inprocess``.
* ``emulator_path`` / ``emulator_url``: a persisted ``emulator:PATH`` with a fast rate, for CLI
  tests.
* the leak scan (end of file): every secret and token the suite uses (``LEAK_NEEDLES`` and module
  constants named like ``*SECRET*`` / ``*TOKEN*`` / ``*PASSWORD*``) is searched for in everything
  each test printed and every file the tool wrote under pytest's temporary directory; a hit fails
  the session, naming the test and the constant, never the value.
* ``postgres_server`` (one throwaway PostgreSQL cluster per session, skipped without the server
  binaries unless ``CI=true``), ``postgres_db`` / ``postgres_dsn``: a fresh database per test.

Clocks are fake (``emulator_clock``): rate limits and timestamps move only when a test says so.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import types
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cli_harness import ROTATED as CLI_ROTATED
from cli_harness import SECRET as CLI_SECRET
from cli_harness import SECRET_ENV as CLI_SECRET_ENV
from cli_harness import Reconcile
from starlette.applications import Starlette
from starlette.types import ASGIApp, Receive, Scope, Send

from reconciler.emulator import (
    DEMO_SEED,
    EmulatorStore,
    EmulatorTransport,
    Faults,
    Seed,
    configure,
    create_app,
    serve_in_thread,
)

TEST_TOKEN = "tf_test_token_not_a_real_one"
_TLS = ssl.create_default_context()


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


# --------------------------------------------------------------------------- clocks


@dataclass
class FakeClock:
    """Monotonic seconds for rate limits and a UTC wall clock for timestamps, moved together."""

    monotonic_now: float = 1000.0
    wall: datetime = field(default_factory=lambda: datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC))
    sleeps: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.monotonic_now

    def utcnow(self) -> datetime:
        return self.wall

    def advance(self, seconds: float) -> None:
        self.monotonic_now += seconds
        self.wall += timedelta(seconds=seconds)

    async def sleep(self, seconds: float) -> None:
        """An injected sleep: records and advances instead of waiting."""
        self.sleeps.append(seconds)
        self.advance(seconds)


@pytest.fixture
def emulator_clock() -> FakeClock:
    return FakeClock()


# --------------------------------------------------------------------------- pieces


@pytest.fixture
def emulator_store(emulator_clock: FakeClock) -> EmulatorStore:
    """A fresh account from the demo seed, timestamps from the fake clock."""
    return EmulatorStore(DEMO_SEED, now=emulator_clock.utcnow)


@pytest.fixture
def emulator_app(emulator_store: EmulatorStore, emulator_clock: FakeClock) -> Starlette:
    """The app over ``emulator_store``: any bearer token, effectively unthrottled."""
    return create_app(
        emulator_store, rate=1000.0, burst=1000, clock=emulator_clock, sleep=emulator_clock.sleep
    )


@pytest.fixture
def inprocess_client_transport(emulator_app: Starlette) -> EmulatorTransport:
    """``httpx.ASGITransport`` over ``emulator_app`` (that can also hang up for drop faults)."""
    return EmulatorTransport(emulator_app)


class _SwappableApp:
    """One long-lived server, a different app per test."""

    def __init__(self) -> None:
        self.app: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.app is None:
            raise RuntimeError("no emulator app installed for this test")
        await self.app(scope, receive, send)


@pytest.fixture(scope="session")
def _emulator_server() -> Iterator[tuple[str, _SwappableApp]]:
    holder = _SwappableApp()
    with serve_in_thread(holder) as url:
        yield url, holder


@pytest.fixture
def served_emulator(
    emulator_app: Starlette, _emulator_server: tuple[str, _SwappableApp]
) -> Iterator[str]:
    """``emulator_app`` over real HTTP on 127.0.0.1; yields the base URL."""
    url, holder = _emulator_server
    holder.app = emulator_app
    yield url
    holder.app = None


# --------------------------------------------------------------------------- factory


@dataclass
class RunningEmulator:
    """An emulator under test, whichever way it runs."""

    mode: str
    store: EmulatorStore
    app: Starlette
    base_url: str
    clock: FakeClock
    transport: httpx.AsyncBaseTransport | None = None

    def client(self, token: str | None = TEST_TOKEN, **kwargs: Any) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        headers.update(kwargs.pop("headers", {}))
        if self.transport is not None:
            # Each client gets its own transport: closing one must not close the next.
            return httpx.AsyncClient(
                transport=EmulatorTransport(self.app),
                base_url=self.base_url,
                headers=headers,
                **kwargs,
            )
        # One TLS context for every served client: building one per client costs ~50 ms.
        kwargs.setdefault("verify", _TLS)
        return httpx.AsyncClient(base_url=self.base_url, headers=headers, **kwargs)


MakeEmulator = Callable[..., RunningEmulator]


@pytest.fixture
def make_emulator(
    emulator_clock: FakeClock, _emulator_server: tuple[str, _SwappableApp]
) -> Iterator[MakeEmulator]:
    """``make_emulator(mode="inprocess"|"served", rate=1000, burst=None, seed=DEMO_SEED,
    token=None, require_auth=True, faults=None, rng=None, sleep=None, secret_echo=None,
    event_types_echo=None, tokens=None)``; the last three are the settings' modes (``tokens``:
    ``{TOKEN: {account, scopes}}``), ``None`` for the defaults."""
    url, holder = _emulator_server

    def make(
        *,
        mode: str = "inprocess",
        rate: float = 1000.0,
        burst: int | None = None,
        seed: Seed = DEMO_SEED,
        token: str | None = None,
        require_auth: bool = True,
        faults: Faults | dict[str, Any] | None = None,
        rng: Any = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        secret_echo: str | None = None,
        event_types_echo: str | None = None,
        tokens: dict[str, Any] | None = None,
    ) -> RunningEmulator:
        store = EmulatorStore(seed, now=emulator_clock.utcnow)
        if faults is not None:
            store.settings.faults = (
                faults if isinstance(faults, Faults) else Faults.from_json(faults)
            )
        app = create_app(
            store,
            token=token,
            require_auth=require_auth,
            rate=rate,
            burst=burst if burst is not None else max(1, int(rate)),
            clock=emulator_clock,
            rng=rng,
            sleep=sleep or emulator_clock.sleep,
            secret_echo=secret_echo,
            event_types_echo=event_types_echo,
            tokens=tokens,
        )
        if mode == "served":
            holder.app = app
            return RunningEmulator(mode, store, app, url, emulator_clock)
        if mode == "inprocess":
            return RunningEmulator(
                mode, store, app, "http://emulator.invalid", emulator_clock, EmulatorTransport(app)
            )
        raise ValueError(f"unknown emulator mode {mode!r}")

    yield make
    holder.app = None


@pytest.fixture(params=["served", "inprocess"])
def emulator_mode(request: pytest.FixtureRequest) -> str:
    """Parametrizes a test over real HTTP and the in-process transport."""
    return str(request.param)


@pytest.fixture
def emulator(make_emulator: MakeEmulator, emulator_mode: str) -> RunningEmulator:
    """The demo account, unthrottled, any token: once served, once in-process."""
    return make_emulator(mode=emulator_mode)


# --------------------------------------------------------------------------- persisted (CLI)


@pytest.fixture
def emulator_path(tmp_path: Path) -> Path:
    """A persisted demo account for ``--api-url emulator:PATH``, with a rate tests never hit."""
    path = tmp_path / ".reconcile" / "emulator.json"
    configure(path, rate=1000.0, burst=1000)
    return path


@pytest.fixture
def emulator_url(emulator_path: Path) -> str:
    return f"emulator:{emulator_path}"


# --------------------------------------------------------------------------- PostgreSQL

PG_USER = "reconciler"
PG_PASSWORD = "pg-Pa55-w0rd-never-shown-4417"
"""The test role's password: tests check it never appears in any output."""
PG_READER = "reader"
PG_READER_PASSWORD = "pg-reader-Pa55-8120"

_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def _postgres_bindir() -> Path | None:
    """The newest PostgreSQL server's binaries (Debian's layout), or ``initdb`` on the PATH."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if found:
        return found[-1].parent
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class PostgresServer:
    """A throwaway PostgreSQL cluster on 127.0.0.1 (trust for the superuser, passwords for the
    test roles) and a fresh database per test."""

    host: str
    port: int
    databases: int = 0

    def dsn(
        self,
        dbname: str,
        *,
        user: str = PG_USER,
        password: str = PG_PASSWORD,
        namespace: str | None = None,
    ) -> str:
        dsn = f"postgresql://{user}:{password}@{self.host}:{self.port}/{dbname}"
        return f"{dsn}?namespace={namespace}" if namespace is not None else dsn

    def admin(self, dbname: str = "postgres") -> Any:
        """A superuser connection (autocommit): for tests that look behind the store."""
        import psycopg

        return psycopg.connect(
            host=self.host, port=self.port, user="postgres", dbname=dbname, autocommit=True
        )

    def new_database(self) -> str:
        """A fresh, empty database owned by the test role; returns its name."""
        self.databases += 1
        name = f"test_{self.databases}"
        with self.admin() as conn:
            conn.execute(f"CREATE DATABASE {name} OWNER {PG_USER}")
        return name


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL cluster for the session, started from the server binaries, stopped at the
    end. Skipped when the binaries (or psycopg) are missing, except under CI=true: there it is
    a failure, so the PostgreSQL tests can never be silently skipped in CI."""
    bindir = _postgres_bindir()
    try:
        import psycopg  # noqa: F401
    except ImportError:
        missing: str | None = "psycopg is not installed (pip install -e '.[dev]')"
    else:
        missing = None
    if bindir is None:
        missing = (
            "PostgreSQL server binaries not found (no /usr/lib/postgresql/*/bin/initdb nor "
            "initdb on the PATH): apt-get install postgresql to run the PostgreSQL tests"
        )
    if missing is not None:
        if _CI:
            pytest.fail(f"CI=true but {missing}")
        pytest.skip(missing)
    assert bindir is not None
    as_postgres: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="reconcile-pg-"))
    if os.geteuid() == 0:
        # initdb refuses to run as root: the cluster belongs to the postgres system user.
        entry = pwd.getpwnam("postgres")
        os.chown(root, entry.pw_uid, entry.pw_gid)
        as_postgres = ["runuser", "-u", "postgres", "--"]
    data, log = root / "data", root / "server.log"

    def run(*argv: str) -> None:
        done = subprocess.run([*as_postgres, *argv], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            logged = log.read_text(errors="replace") if log.exists() else ""
            pytest.fail(f"{argv[0]} failed: {done.stderr or done.stdout}\n{logged[-2000:]}")

    run(
        str(bindir / "initdb"),
        "-D",
        str(data),
        "-U",
        "postgres",
        "-E",
        "UTF8",
        "--no-sync",
        "--auth-local=trust",
        "--auth-host=scram-sha-256",
    )
    (data / "pg_hba.conf").write_text(
        "local all all trust\n"
        "host all postgres 127.0.0.1/32 trust\n"
        "host all all 127.0.0.1/32 scram-sha-256\n"
    )
    port = _free_port()
    options = (
        f"-h 127.0.0.1 -p {port} -k {root} -c fsync=off -c synchronous_commit=off "
        "-c full_page_writes=off -c max_connections=200"
    )
    run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "start")
    server = PostgresServer("127.0.0.1", port)
    try:
        with server.admin() as conn:
            conn.execute(f"CREATE ROLE {PG_USER} LOGIN PASSWORD '{PG_PASSWORD}'")
            conn.execute(f"CREATE ROLE {PG_READER} LOGIN PASSWORD '{PG_READER_PASSWORD}'")
        yield server
    finally:
        subprocess.run(
            [*as_postgres, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
            check=False,
        )
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_db(postgres_server: PostgresServer) -> str:
    """The name of a fresh, empty database on the session's server."""
    return postgres_server.new_database()


@pytest.fixture
def postgres_dsn(postgres_server: PostgresServer, postgres_db: str) -> str:
    """``postgresql://reconciler:PASSWORD@127.0.0.1:PORT/DB`` of a fresh database."""
    return postgres_server.dsn(postgres_db)


# --------------------------------------------------------------------------- leak scan
#
# SPEC section 10: secrets and tokens never reach stdout, stderr, logs, records, plan files or
# reports. Tests check it where they look; this scan checks it everywhere, for the whole session.
# What is searched: pytest's captured output of each test (stdout, stderr, log records), what
# tests read through capsys/capfd (which pytest would otherwise no longer hold), what
# subprocesses answered through ``communicate`` (``subprocess.run`` included), and at the end of
# the session the files under pytest's base temporary directory that the tool writes (state,
# plans, records, reports: ``*.json``, ``*.jsonl``, ``*.md``, ``*.txt``, ``*.log``), except inputs
# tests create on purpose (a path naming ``secret`` or ``vault``) and an emulator's own persisted
# account in ``secret_echo: plain`` mode, whose job is to echo secrets.

LEAK_NEEDLES: set[str] = set()
"""Secrets and tokens the suite uses: test modules add theirs at import (``LEAK_NEEDLES.add``)."""
LEAK_NEEDLES.update({CLI_SECRET, CLI_ROTATED})  # the CLI harness's secret and rotated secret

_TESTS_DIR = Path(__file__).resolve().parent
_NEEDLE_NAME = re.compile(r"SECRET|TOKEN|PASSWORD")
_NOT_A_VALUE = re.compile(r"_(ENV|VAR|NAME|NAMES|FILE|PATH|DIR|SCOPES?|HEADER)$")
_ENV_NAME = re.compile(r"[A-Z][A-Z0-9_]*")
_SCANNED_SUFFIXES = frozenset({".json", ".jsonl", ".md", ".txt", ".log"})
_INPUT_MARKS = ("secret", "vault")
_MAX_SCANNED_BYTES = 64 << 20


def _constant_needles(module: types.ModuleType) -> Iterator[tuple[str, str]]:
    for name, value in vars(module).items():
        if not name.isupper() or not _NEEDLE_NAME.search(name) or _NOT_A_VALUE.search(name):
            continue
        several = isinstance(value, list | tuple | set | frozenset)
        values: Iterable[Any] = value if several else [value]
        for item in values:
            if isinstance(item, str) and len(item) >= 8 and not _ENV_NAME.fullmatch(item):
                yield f"{module.__name__}.{name}", item


_needles_cache: dict[tuple[int, int, int], dict[str, str]] = {}
_test_modules: dict[str, types.ModuleType] = {}
"""Every module pytest collected tests from (wherever it lives), by name."""


def leak_needles() -> dict[str, str]:
    """``value -> where it comes from`` for every needle known now (recomputed only when a
    module was imported or a needle added since)."""
    stamp = (len(sys.modules), len(LEAK_NEEDLES), len(_test_modules))
    cached = _needles_cache.get(stamp)
    if cached is not None:
        return cached
    found: dict[str, str] = {value: "LEAK_NEEDLES" for value in LEAK_NEEDLES if len(value) >= 8}
    prefix = f"{_TESTS_DIR}{os.sep}"
    ours = [
        module
        for module in list(sys.modules.values())
        if isinstance(getattr(module, "__file__", None), str) and module.__file__.startswith(prefix)
    ]
    for module in [*ours, *_test_modules.values()]:
        for where, value in _constant_needles(module):
            found.setdefault(value, where)
    _needles_cache.clear()
    _needles_cache[stamp] = found
    return found


def _masked(value: str) -> str:
    return f"{value[:2]}…({len(value)} chars)"


@dataclass
class _LeakScan:
    hits: list[str] = field(default_factory=list)
    current: str = "(outside any test)"
    seen: set[tuple[str, str, str]] = field(default_factory=set)

    def check(self, where: str, text: str | bytes | None) -> None:
        if not text:
            return
        raw = text if isinstance(text, bytes) else text.encode("utf-8", "surrogateescape")
        for value, name in leak_needles().items():
            if value.encode() in raw and (where, name, value) not in self.seen:
                self.seen.add((where, name, value))
                self.hits.append(f"{where}: {name} = {_masked(value)}")


_leaks = _LeakScan()


def _scanning_readouterr(original: Callable[..., Any]) -> Callable[..., Any]:
    def readouterr(self: Any) -> Any:
        result = original(self)
        _leaks.check(f"{_leaks.current} (read through capsys/capfd)", result.out)
        _leaks.check(f"{_leaks.current} (read through capsys/capfd)", result.err)
        return result

    return readouterr


def _scanning_communicate(original: Callable[..., Any]) -> Callable[..., Any]:
    def communicate(self: Any, *args: Any, **kwargs: Any) -> Any:
        out, err = original(self, *args, **kwargs)
        _leaks.check(f"{_leaks.current} (a subprocess's output)", out)
        _leaks.check(f"{_leaks.current} (a subprocess's output)", err)
        return out, err

    return communicate


_unpatched: dict[str, Any] = {}


def pytest_configure(config: pytest.Config) -> None:
    _unpatched["readouterr"] = pytest.CaptureFixture.readouterr
    _unpatched["communicate"] = subprocess.Popen.communicate
    pytest.CaptureFixture.readouterr = _scanning_readouterr(  # type: ignore[method-assign]
        _unpatched["readouterr"]
    )
    subprocess.Popen.communicate = _scanning_communicate(  # type: ignore[method-assign]
        _unpatched["communicate"]
    )


def pytest_unconfigure(config: pytest.Config) -> None:
    if _unpatched:
        pytest.CaptureFixture.readouterr = _unpatched.pop("readouterr")  # type: ignore[method-assign]
        subprocess.Popen.communicate = _unpatched.pop("communicate")  # type: ignore[method-assign]


def pytest_itemcollected(item: pytest.Item) -> None:
    module = getattr(item, "module", None)
    if isinstance(module, types.ModuleType):
        _test_modules.setdefault(module.__name__, module)


def pytest_runtest_logstart(nodeid: str, location: tuple[str, int | None, str]) -> None:
    _leaks.current = nodeid


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    for section, content in report.sections:
        _leaks.check(f"{report.nodeid} ({section})", content)


def _tool_output(path: Path, base: Path) -> bool:
    """A file the tool may have written: by suffix, and not an input a test named on purpose
    (the test's own directory, named after the test, does not count: a test about secrets
    is scanned like any other)."""
    if path.suffix not in _SCANNED_SUFFIXES or path.is_symlink() or not path.is_file():
        return False
    inside_test = path.relative_to(base).parts[1:]
    lowered = "/".join(inside_test).lower()
    return not any(mark in lowered for mark in _INPUT_MARKS)


def _plain_echo_emulator(data: bytes) -> bool:
    return b'"secret_echo": "plain"' in data or b'"secret_echo":"plain"' in data


def scan_tree(base: Path) -> None:
    """Search the tool's output files under ``base`` (named by their test's directory)."""
    for path in sorted(base.rglob("*")):
        try:
            if not _tool_output(path, base) or path.stat().st_size > _MAX_SCANNED_BYTES:
                continue
            data = path.read_bytes()
        except OSError:
            continue
        if _plain_echo_emulator(data):
            continue
        _leaks.check(f"file {path.relative_to(base)}", data)


@pytest.fixture(scope="session", autouse=True)
def _leak_scan_of_written_files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    yield
    scan_tree(tmp_path_factory.getbasetemp())


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _leaks.hits and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _leaks.hits:
        return
    terminalreporter.section("LEAK SCAN: a secret or token appeared in output", sep="=", red=True)
    for hit in _leaks.hits:
        terminalreporter.line(f"LEAK {hit}", red=True)
    terminalreporter.line(f"{len(_leaks.hits)} leak(s): the session fails", red=True)


# --------------------------------------------------------------------------- the CLI harness


@pytest.fixture
def cli(
    tmp_path: Path,
    emulator_path: Path,
    emulator_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Reconcile:
    """``reconcile ARGV`` in-process in ``tmp_path`` against ``emulator:PATH`` (cli_harness)."""
    monkeypatch.chdir(tmp_path)
    for name in ("TYPEFORM_TOKEN", "TYPEFORM_API_URL", "RECONCILE_STATE", "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(CLI_SECRET_ENV, CLI_SECRET)
    return Reconcile(tmp_path, emulator_url, emulator_path, capsys)

"""The pipeline as a library: ``reconciler.pipeline`` and ``reconciler.api`` called from Python.

No CLI here except where a test compares the two: every call goes through a ``Run`` whose state
store is a real file and whose endpoints are in-process emulators, and what happened is read
back from the emulator, the state file and the records, never from the call's own claims.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from conftest import MakeEmulator, RunningEmulator

import reconciler
from reconciler.cli import main
from reconciler.emulator import EmulatorTransport, configure, hash_secret
from reconciler.emulator.store import WebhookChange
from reconciler.errors import ConfigError, PlanError, StalePlanError, StateError
from reconciler.events import AccountFailed, Event, Notice, PlanReady, Progress, WriteDone
from reconciler.manifests import load_desired
from reconciler.models import Account, Operation, Plan
from reconciler.pipeline import ApplyOptions, Run, Settings, apply, plan
from reconciler.planner import PlanOptions
from reconciler.records import read_records
from reconciler.state import FileStateStore
from reconciler.transports import Endpoint, check_api_url, default_resolver

pytestmark = pytest.mark.anyio

INTAKE = {"form_id": "onbrd01", "tag": "intake", "url": "https://hooks.example.com/intake"}
COMPANY = {"form_id": "onbrd02", "tag": "company", "url": "https://hooks.example.com/company"}
SECRET = "pipeline-Secret-77d1"
TOKEN_EU = "tf_eu_token_for_tests_only"


def write_set(root: Path, name: str, hooks: list[dict[str, Any]], **spec: Any) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    doc = {
        "apiVersion": "reconciler/v1",
        "kind": "WebhookSet",
        "metadata": {"name": name},
        "spec": {**spec, "webhooks": hooks},
    }
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def write_account(root: Path, name: str, env: str) -> None:
    doc = {
        "apiVersion": "reconciler/v1",
        "kind": "Account",
        "metadata": {"name": name},
        "spec": {"api_url": f"https://{name}.example.com", "token": {"env": env}},
    }
    (root / f"account-{name}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))


def resolver(emulators: dict[str, RunningEmulator]) -> Callable[[Account, str], Endpoint]:
    """Each account to its own in-process emulator, with a fresh transport per client."""

    def resolve(account: Account, api_url: str) -> Endpoint:
        emu = emulators[account.name]
        return Endpoint(account.name, api_url, emu.base_url, "tok", EmulatorTransport(emu.app))

    return resolve


class Harness:
    def __init__(self, tmp_path: Path, emulators: dict[str, RunningEmulator]) -> None:
        self.root = tmp_path
        self.manifests = tmp_path / "manifests"
        self.state_path = tmp_path / "state.json"
        self.records = tmp_path / "records.jsonl"
        self.emulators = emulators
        self.events: list[Event] = []

    def run(self, **kwargs: Any) -> Run:
        self.events = []
        return Run(
            store=FileStateStore(self.state_path),
            environ={"HOOK_SECRET": SECRET, "TYPEFORM_TOKEN_EU": TOKEN_EU},
            endpoints=resolver(self.emulators),
            events=self.events.append,
            settings=Settings(rate=1000.0),
            **kwargs,
        )

    def desired(self) -> Any:
        return load_desired([str(self.manifests)], environ={"HOOK_SECRET": SECRET})

    def options(self, **kwargs: Any) -> ApplyOptions:
        return ApplyOptions(**{"auto_approve": True, "records": self.records, **kwargs})

    def state(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(self.state_path.read_text())
        return doc

    def live(self, account: str = "default") -> dict[str, Any]:
        store = self.emulators[account].store
        return {f"{w['form_id']}/{w['tag']}": w for w in store.to_json()["webhooks"]}


@pytest.fixture(autouse=True)
def _library_logging() -> Iterator[None]:
    """As in a fresh process: no handler but the library's own NullHandler (a CLI test in this
    process may have configured the ``reconciler`` logger)."""
    logger = logging.getLogger("reconciler")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    logger.handlers = [h for h in logger.handlers if isinstance(h, logging.NullHandler)]
    logger.propagate = True
    logger.setLevel(logging.NOTSET)
    yield
    logger.handlers, level, logger.propagate = saved[0], saved[1], saved[2]
    logger.setLevel(level)


@pytest.fixture
def h(tmp_path: Path, make_emulator: MakeEmulator) -> Harness:
    return Harness(tmp_path, {"default": make_emulator()})


async def test_plan_returns_a_typed_plan_and_prints_nothing(
    h: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    write_set(h.manifests, "base", [INTAKE, COMPANY])

    result = await plan(h.run(), h.desired())

    assert result.ok
    assert [(c.action.value, str(c.key)) for c in result.plan.writes] == [
        ("create", "onbrd01/intake"),
        ("create", "onbrd02/company"),
    ]
    assert result.to_json()["summary"]["create"] == 2
    assert any(isinstance(e, Progress) for e in h.events)
    assert capsys.readouterr() == ("", "")
    assert not h.state_path.exists()


async def test_apply_returns_one_row_per_write_the_serial_and_writes_state_and_records(
    h: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    write_set(h.manifests, "base", [INTAKE, COMPANY], defaults={"secret": {"env": "HOOK_SECRET"}})

    result = await apply(h.run(), h.desired(), h.options())

    assert result.ok
    assert sorted((r.operation, str(r.key), r.success) for r in result.rows) == [
        (Operation.CREATE, "onbrd01/intake", True),
        (Operation.CREATE, "onbrd02/company", True),
    ]
    state = h.state()
    assert result.serial == state["serial"] == 2  # one save per landed write
    live = h.live()
    assert {w["tag"]: w["webhook_id"] for w in state["webhooks"]} == {
        "intake": live["onbrd01/intake"]["id"],
        "company": live["onbrd02/company"]["id"],
    }
    records = read_records(h.records)
    assert sorted(r["tag"] for r in records) == ["company", "intake"]
    assert {r["run_id"] for r in records} == {result.run_id}
    kinds = [type(e) for e in h.events]
    assert kinds.index(PlanReady) < kinds.index(WriteDone)
    assert result.to_json()["outcomes"][0]["operation"] == "create"
    assert capsys.readouterr() == ("", "")
    # The secret went into every PUT body (the emulator holds its digest), and nowhere else.
    ours = [w for w in h.live().values() if w["tag"] in ("intake", "company")]
    assert [w["secret_sha256"] for w in ours] == [hash_secret(SECRET)] * 2
    written = json.dumps(result.to_json()) + h.state_path.read_text() + h.records.read_text()
    assert SECRET not in written


async def test_a_declared_webhook_already_right_is_adopted_with_its_live_id(h: Harness) -> None:
    h.emulators["default"].store.put_webhook(
        "onbrd01",
        "intake",
        WebhookChange(
            url=INTAKE["url"],
            enabled=True,
            verify_ssl=True,
            event_types={"form_response": True, "form_response_partial": False},
        ),
    )
    write_set(h.manifests, "base", [INTAKE])

    result = await apply(h.run(), h.desired(), h.options())

    assert result.rows == ()
    assert [str(k) for k in result.adopted] == ["onbrd01/intake"]
    (entry,) = h.state()["webhooks"]
    assert entry["webhook_id"] == h.live()["onbrd01/intake"]["id"]
    assert entry["applied"]["url"] == INTAKE["url"]
    again = await apply(h.run(), h.desired(), h.options())
    assert again.adopted == ()  # recorded under the same id: nothing to adopt twice


async def test_declining_approval_writes_nothing(h: Harness) -> None:
    write_set(h.manifests, "base", [INTAKE])
    asked: list[Plan] = []

    async def no(p: Plan) -> bool:
        asked.append(p)
        return False

    before = h.live()
    with pytest.raises(PlanError, match="apply cancelled"):
        await apply(h.run(approve=no), h.desired(), ApplyOptions(records=h.records))

    assert len(asked) == 1
    assert asked[0].has_changes
    assert h.live() == before
    assert not h.state_path.exists()
    assert not h.records.exists()


async def test_without_auto_approve_and_nobody_to_ask_apply_refuses(h: Harness) -> None:
    write_set(h.manifests, "base", [INTAKE])
    with pytest.raises(PlanError, match="without approval"):
        await apply(h.run(), h.desired(), ApplyOptions(records=h.records))
    assert "onbrd01/intake" not in h.live()


async def test_a_state_path_under_a_regular_file_fails_before_any_api_write(h: Harness) -> None:
    write_set(h.manifests, "base", [INTAKE])
    blocker = h.root / "blocker"
    blocker.write_text("not a directory")
    run = h.run()
    run.store = FileStateStore(blocker / "state.json")

    with pytest.raises(StateError):
        await apply(run, h.desired(), h.options())

    assert "onbrd01/intake" not in h.live()


async def test_a_records_path_under_a_regular_file_fails_before_any_api_write(h: Harness) -> None:
    write_set(h.manifests, "base", [INTAKE])
    blocker = h.root / "blocker"
    blocker.write_text("not a directory")

    with pytest.raises(StateError, match="records"):
        await apply(h.run(), h.desired(), h.options(records=blocker / "records.jsonl"))

    assert "onbrd01/intake" not in h.live()
    assert not h.state_path.exists()


async def test_a_systemic_failure_stops_its_account_and_the_other_account_goes_on(
    tmp_path: Path, make_emulator: MakeEmulator
) -> None:
    eu = make_emulator(token="the-right-token")  # our "tok" is refused: 401 on every request
    h = Harness(tmp_path, {"default": make_emulator(), "eu": eu})
    write_set(h.manifests, "base", [INTAKE, COMPANY])
    write_account(h.manifests, "eu", "TYPEFORM_TOKEN_EU")
    write_set(
        h.manifests,
        "eu-set",
        [{**INTAKE, "tag": "eu-intake"}, {**COMPANY, "tag": "eu-company"}],
        account="eu",
    )

    result = await plan(h.run(), h.desired())

    assert not result.ok
    (failure,) = result.failures
    assert failure.account == "eu"
    assert failure.systemic
    assert not failure.transient
    assert "account 'eu' stopped at its first request" in failure.message()
    assert [str(c.key) for c in result.plan.writes] == ["onbrd01/intake", "onbrd02/company"]
    assert [type(e) for e in h.events].count(AccountFailed) == 1
    assert eu.store.stats.total == 1  # only the first request was sent, then it stopped


async def test_a_saved_plan_for_an_account_the_manifests_dropped_is_refused(
    tmp_path: Path, make_emulator: MakeEmulator
) -> None:
    h = Harness(tmp_path, {"default": make_emulator(), "eu": make_emulator()})
    write_set(h.manifests, "base", [INTAKE])
    write_account(h.manifests, "eu", "TYPEFORM_TOKEN_EU")
    eu_set = write_set(h.manifests, "eu-set", [{**INTAKE, "tag": "eu-intake"}], account="eu")
    saved = (await plan(h.run(), h.desired(), with_fingerprints=True)).plan
    assert {c.key.account for c in saved.writes} == {"default", "eu"}

    eu_set.unlink()
    with pytest.raises(StalePlanError, match="eu"):
        await apply(h.run(), h.desired(), h.options(), saved=saved)

    assert "onbrd01/eu-intake" not in h.live("eu")
    assert "onbrd01/intake" not in h.live()
    assert not h.state_path.exists()


async def test_a_saved_plan_whose_actions_were_edited_is_refused_whole(h: Harness) -> None:
    write_set(h.manifests, "base", [INTAKE, COMPANY])
    saved = (await plan(h.run(), h.desired(), with_fingerprints=True)).plan
    first, second = saved.actions
    evil = {**dict(first.after or {}), "url": "https://attacker.example.net/steal"}
    from dataclasses import replace

    tampered = replace(saved, actions=(replace(first, after=evil), second))

    with pytest.raises(StalePlanError, match="onbrd01/intake"):
        await apply(h.run(), h.desired(), h.options(), saved=tampered)

    assert "onbrd01/intake" not in h.live()
    assert "onbrd02/company" not in h.live()


async def test_a_saved_plan_applies_when_nothing_changed_and_then_nothing_is_left(
    h: Harness,
) -> None:
    write_set(h.manifests, "base", [INTAKE], defaults={"secret": {"env": "HOOK_SECRET"}})
    saved = (await plan(h.run(), h.desired(), with_fingerprints=True)).plan

    result = await apply(h.run(), h.desired(), h.options(), saved=saved)

    assert [str(r.key) for r in result.rows] == ["onbrd01/intake"]
    after = await plan(h.run(), h.desired())
    assert not after.has_changes


def test_the_library_result_is_the_document_the_cli_prints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    configure(tmp_path / "emu.json", rate=1000.0, burst=1000)
    write_set(tmp_path / "manifests", "base", [INTAKE, COMPANY])
    url = f"emulator:{tmp_path / 'emu.json'}"

    result = reconciler.sync.plan(["manifests"], api_url=url, state="state.json")
    with pytest.raises(SystemExit) as exited:
        main(["plan", "manifests", "--api-url", url, "--state", "state.json", "--format", "json"])
    assert exited.value.code == 0
    printed = json.loads(capsys.readouterr().out)

    ours = result.to_json()
    assert {**ours, "created_at": None} == {**printed, "created_at": None}


def test_the_python_api_applies_against_the_embedded_emulator_without_a_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TYPEFORM_TOKEN", raising=False)
    configure(tmp_path / "emu.json", rate=1000.0, burst=1000)
    write_set(tmp_path / "manifests", "base", [INTAKE])

    done = reconciler.sync.apply(
        "manifests", api_url=f"emulator:{tmp_path / 'emu.json'}", auto_approve=True
    )

    assert done.ok
    assert [r.operation for r in done.rows] == [Operation.CREATE]
    assert (tmp_path / ".reconcile" / "state.json").exists()
    again = reconciler.sync.plan("manifests", api_url=f"emulator:{tmp_path / 'emu.json'}")
    assert not again.has_changes


def test_the_public_names_are_documented_and_typed() -> None:
    for name in ("load", "plan", "apply"):
        for module in (reconciler, reconciler.sync):
            fn = getattr(module, name)
            assert fn.__doc__, f"{module.__name__}.{name} has no docstring"
    assert reconciler.Operation.ADOPT.past == "adopted"


async def test_manifest_warnings_reach_the_event_sink_not_stdout(
    h: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    write_set(h.manifests, "base", [{**INTAKE, "url": "http://hooks.example.com/plain"}])
    await plan(h.run(), h.desired(), PlanOptions())
    assert any(isinstance(e, Notice) and "http://" in e.message for e in h.events)
    assert capsys.readouterr() == ("", "")


# --------------------------------------------------------------------------- transports


@pytest.mark.parametrize(
    "url",
    [
        "http://198.51.100.7",  # TEST-NET-2: any non-loopback host
        "http://api.typeform.com",
        "HTTP://api.typeform.com/",
    ],
)
def test_a_token_is_never_sent_over_plain_http_to_a_non_loopback_host(url: str) -> None:
    started = time.monotonic()
    with pytest.raises(ConfigError, match="plain http"):
        default_resolver({"TYPEFORM_TOKEN": "t0ken-never-sent"})(Account("default"), url)
    assert time.monotonic() - started < 1.0  # refused before any connection attempt


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8787", "http://localhost:9", "http://[::1]:8787", "https://x.io"]
)
def test_loopback_http_and_any_https_are_allowed(url: str) -> None:
    assert isinstance(check_api_url("default", url), httpx.URL)


@pytest.mark.parametrize(
    "url", ["https://user:pw-secret@api.typeform.com", "http://u:p@127.0.0.1:8787"]
)
def test_an_api_url_with_user_info_is_refused_without_echoing_it(url: str) -> None:
    with pytest.raises(ConfigError, match="user name or password") as refused:
        default_resolver({"TYPEFORM_TOKEN": "t"})(Account("default"), url)
    assert "pw-secret" not in str(refused.value)
    assert ":p@" not in str(refused.value)


def test_plan_over_plain_http_is_refused_by_the_cli_with_exit_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TYPEFORM_TOKEN", "tf-plain-http-token")
    write_set(tmp_path / "manifests", "base", [INTAKE])
    with pytest.raises(SystemExit) as exited:
        main(["plan", "manifests", "--api-url", "http://198.51.100.7"])
    out, err = capsys.readouterr()
    assert exited.value.code == 1
    assert "plain http" in err
    assert "tf-plain-http-token" not in out + err


def test_an_emulator_path_under_a_regular_file_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "file").write_text("x")
    write_set(tmp_path / "manifests", "base", [INTAKE])
    with pytest.raises(SystemExit) as exited:
        main(["plan", "manifests", "--api-url", "emulator:file/emu.json"])
    err = capsys.readouterr().err
    assert exited.value.code == 1, err
    assert "emulator" in err
    assert "Internal error" not in err

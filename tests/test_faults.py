"""The fault suite: ``reconcile apply`` through everything a network and a real API do to it.

Each test serves the emulator over real HTTP on 127.0.0.1 (so timeouts and hang-ups are real
sockets, and the random faults come from a seeded ``Random``), runs ``reconcile`` in-process
against it with ``--api-url http://127.0.0.1:PORT``, injects one kind of failure, and then
checks the same four promises whatever the outcome:

1. the run converged (exit 0) or failed with a clear error (exit 1, never 3, no traceback, every
   error one line);
2. a rerun with the faults gone converges, and the next ``plan --detailed-exitcode`` exits 0;
3. the unmanaged ``onbrd02/crm-sync`` of the demo seed keeps its id and URL;
4. the records tell the truth: no success record for a write that did not land, and a write that
   landed without one is adopted by the rerun (same id, never re-created).

Bodies the emulator cannot produce (malformed JSON, HTML error pages, multi-megabyte answers)
come from a thin ASGI layer in front of the served emulator that replaces the answers of
chosen requests, so the account behind it stays real and the rerun can converge.
"""

from __future__ import annotations

import io
import json
import random
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml
from conftest import LEAK_NEEDLES, MakeEmulator, RunningEmulator, _SwappableApp
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reconciler.cli import main
from reconciler.emulator import Faults
from reconciler.records import read_records

TOKEN = "tf-faults-token-Q7ve91XbzK"
SECRET = "faults-s3cret-VALUE-6620"
SECRET_ENV = "FAULTS_WEBHOOK_SECRET"
LEAK_NEEDLES.update({TOKEN, SECRET})

INTAKE = {"form_id": "onbrd01", "tag": "intake", "url": "https://hooks.example.com/intake"}
COMPANY = {"form_id": "onbrd02", "tag": "company", "url": "https://hooks.example.com/company"}
LEGACY_ABSENT = {"form_id": "onbrd01", "tag": "legacy-zapier", "state": "absent"}
UNMANAGED = ("onbrd02", "crm-sync")
INTAKE_KEY = ("onbrd01", "intake")
WEBHOOK_PATH = "/forms/*/webhooks/*"


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


class Faulted:
    """``reconcile`` in-process in ``root`` against a served emulator whose faults we set."""

    def __init__(
        self, root: Path, emu: RunningEmulator, capsys: pytest.CaptureFixture[str]
    ) -> None:
        self.root = root
        self.emu = emu
        self.url = emu.base_url
        self.manifests = root / "manifests"
        self.state = root / "state.json"
        self.records = root / ".reconcile" / "records.jsonl"
        self._capsys = capsys
        self.unmanaged_before = self.live()[UNMANAGED]
        self.run: list[dict[str, Any]] = []
        self.on_clear: list[Callable[[], None]] = []

    def __call__(self, command: str, *args: str) -> Result:
        self._capsys.readouterr()
        argv = [command, str(self.manifests), "--api-url", self.url, "--state", str(self.state)]
        with pytest.raises(SystemExit) as exited:
            main([*argv, "--rate", "1000", *args])
        out, err = self._capsys.readouterr()
        code = exited.value.code
        assert isinstance(code, int), code
        return Result(code, out, err)

    def write(self, webhooks: Sequence[dict[str, Any]]) -> None:
        doc = {
            "apiVersion": "reconciler/v1",
            "kind": "WebhookSet",
            "metadata": {"name": "faults"},
            "spec": {"defaults": {"secret": {"env": SECRET_ENV}}, "webhooks": list(webhooks)},
        }
        self.manifests.mkdir(exist_ok=True)
        (self.manifests / "faults.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")

    def faults(self, **faults: Any) -> None:
        self.emu.store.settings.faults = Faults.from_json(faults)

    def live(self) -> dict[tuple[str, str], tuple[str, str]]:
        """``(form, tag) -> (id, url)`` of every live webhook, read from the emulator's store."""
        return {key: (hook.id, hook.url) for key, hook in self.emu.store.webhooks.items()}

    def record_lines(self) -> list[dict[str, Any]]:
        return read_records(self.records) if self.records.exists() else []

    def state_ids(self) -> dict[tuple[str, str], str]:
        if not self.state.exists():
            return {}
        doc = json.loads(self.state.read_text(encoding="utf-8"))
        return {(w["form_id"], w["tag"]): w["webhook_id"] for w in doc["webhooks"]}

    # ----------------------------------------------------------------- the four promises

    def faulted_apply(self, *args: str) -> Result:
        """``apply --auto-approve`` under the faults set, then every promise checked."""
        result = self.apply_under_faults(*args)
        self.converge_without_faults()
        return result

    def apply_under_faults(self, *args: str) -> Result:
        """``apply --auto-approve`` under the faults set; its records kept in ``self.run``."""
        before = len(self.record_lines())
        result = self("apply", "--auto-approve", *args)
        self.run = self.record_lines()[before:]
        assert_clear_outcome(result)
        self.assert_records_tell_the_truth()
        self.assert_unmanaged_untouched()
        return result

    def assert_records_tell_the_truth(self) -> None:
        """Every success record of the faulted run names a write that is live as recorded."""
        live = self.live()
        for record in self.run:
            if not record["success"]:
                continue
            key = (record["form_id"], record["tag"])
            if record["operation"] == "delete":
                assert key not in live, f"a success record for a delete that did not land: {key}"
            else:
                assert key in live, f"a success record for a write that did not land: {key}"
                assert live[key] == (record["webhook_id"], record["url"]), record

    def assert_unmanaged_untouched(self) -> None:
        assert self.live().get(UNMANAGED) == self.unmanaged_before

    def converge_without_faults(self) -> None:
        landed = self.live()
        self.emu.store.settings.faults = Faults()
        for lift in self.on_clear:
            lift()
        rerun = self("apply", "--auto-approve")
        assert rerun.code == 0, rerun.err
        planned = self("plan", "--detailed-exitcode")
        assert planned.code == 0, planned.out + planned.err
        ids = self.state_ids()
        now = self.live()
        for key, (hook_id, _url) in landed.items():
            if key in ids:
                # What landed under the faults is owned now (recorded or adopted), not re-made.
                assert ids[key] == hook_id == now[key][0], key
        self.assert_unmanaged_untouched()


def assert_clear_outcome(result: Result) -> None:
    """Converged, or failed with exit 1 and errors of one line each; never a crash."""
    assert result.code in (0, 1), (result.code, result.err)
    assert "Traceback" not in result.out + result.err
    if result.code == 1:
        errors = [line for line in result.err.splitlines() if line.startswith("Error:")]
        assert errors, result.err
        for line in result.err.splitlines():
            # Every line of stderr is a log line or an error of its own, never a dump.
            assert len(line) < 1000, line[:200]
            assert not line.lstrip().startswith(("<", "{", "File ")), result.err[-1500:]


@pytest.fixture
def faulted(
    tmp_path: Path,
    make_emulator: MakeEmulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Faulted:
    monkeypatch.chdir(tmp_path)
    for name in ("TYPEFORM_API_URL", "RECONCILE_STATE", "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TYPEFORM_TOKEN", TOKEN)
    monkeypatch.setenv(SECRET_ENV, SECRET)
    monkeypatch.setattr(sys, "stdin", io.StringIO("yes\n"))
    # Latency is waited out for real, so a short --request-timeout really fires.
    emu = make_emulator(mode="served", rng=random.Random(20250301), sleep=anyio.sleep)
    cli = Faulted(tmp_path, emu, capsys)
    cli.write([INTAKE, COMPANY, LEGACY_ABSENT])
    return cli


# --------------------------------------------------------------------------- 429 and 5xx


def test_a_429_storm_at_half_the_requests_converges_or_fails_clearly(faulted: Faulted) -> None:
    faulted.write([INTAKE])
    faulted.faults(throttle_rate=0.5)

    faulted.faulted_apply()

    assert faulted.emu.store.stats.throttled >= 1


def test_scripted_429s_with_retry_after_are_waited_out_and_the_apply_converges(
    faulted: Faulted,
) -> None:
    faulted.faults(
        script=[
            {"method": "PUT", "path": WEBHOOK_PATH, "count": 2, "status": 429, "retry_after": 1}
        ]
    )

    started = time.monotonic()
    result = faulted.apply_under_faults()
    waited = time.monotonic() - started

    assert result.code == 0, result.err
    puts = [r for r in faulted.run if r["operation"] in ("create", "update")]
    assert all(r["success"] for r in puts)
    assert sum(r["attempts"] for r in puts) == len(puts) + 2  # each 429 retried once
    assert waited >= 1.0  # Retry-After: 1 was honoured, not hammered through
    faulted.converge_without_faults()


def test_random_5xx_on_a_third_of_the_requests_converge_or_fail_clearly(
    faulted: Faulted,
) -> None:
    faulted.faults(error_rate=0.3)

    faulted.faulted_apply()


# --------------------------------------------------------------------------- the network


def test_requests_slower_than_the_request_timeout_are_retried_or_fail_clearly(
    faulted: Faulted,
) -> None:
    faulted.write([INTAKE])
    # About half the requests hear nothing within 0.3 s; a PUT that timed out may land later.
    faulted.faults(latency_ms=[50, 600])

    faulted.faulted_apply("--request-timeout", "0.3")


def test_a_request_that_never_answers_in_time_fails_with_one_timeout_error(
    faulted: Faulted,
) -> None:
    faulted.write([INTAKE])
    faulted.faults(latency_ms=800)

    result = faulted("apply", "--auto-approve", "--request-timeout", "0.1")

    assert_clear_outcome(result)
    assert result.code == 1
    assert "ReadTimeout" in result.err or "timed out" in result.err.lower()
    faulted.converge_without_faults()


def test_connections_reset_mid_apply_are_retried_and_the_apply_converges(
    faulted: Faulted,
) -> None:
    faulted.faults(script=[{"method": "PUT", "path": WEBHOOK_PATH, "action": "drop", "count": 2}])

    result = faulted.faulted_apply()

    assert result.code == 0, result.err


def test_a_write_whose_connection_always_resets_fails_and_nothing_is_recorded_as_done(
    faulted: Faulted,
) -> None:
    faulted.faults(script=[{"method": "PUT", "path": WEBHOOK_PATH, "action": "drop", "count": 50}])

    result = faulted.apply_under_faults()

    assert result.code == 1
    assert ("onbrd01", "intake") not in faulted.live()
    puts = [r for r in faulted.run if r["operation"] in ("create", "update")]
    assert puts
    assert not any(r["success"] for r in puts)
    faulted.converge_without_faults()


# --------------------------------------------------------------------------- lost answers


def _converged_then(faulted: Faulted, webhooks: Sequence[dict[str, Any]]) -> None:
    assert faulted("apply", "--auto-approve").code == 0
    faulted.write(webhooks)


LOST = {
    "create": ("PUT", None),
    "update": ("PUT", [{**INTAKE, "url": "https://hooks.example.com/moved"}, COMPANY]),
    "delete": ("DELETE", [{**INTAKE, "state": "absent"}, COMPANY]),
}


@pytest.mark.parametrize("operation", sorted(LOST))
def test_a_write_that_landed_but_whose_answer_was_lost_is_retried_and_recorded_once(
    faulted: Faulted, operation: str
) -> None:
    method, then = LOST[operation]
    if then is not None:
        _converged_then(faulted, then)
    before = faulted.live()
    path = "/forms/onbrd01/webhooks/intake"
    faulted.faults(script=[{"method": method, "path": path, "action": "drop_after"}])

    result = faulted.apply_under_faults()

    assert result.code == 0, result.err
    (record,) = [r for r in faulted.run if (r["form_id"], r["tag"]) == INTAKE_KEY]
    assert (record["operation"], record["success"], record["attempts"]) == (operation, True, 2)
    if operation == "delete":
        assert INTAKE_KEY not in faulted.live()
    elif operation == "update":
        assert faulted.live()[INTAKE_KEY][0] == before[INTAKE_KEY][0]  # updated in place
    faulted.converge_without_faults()


def test_a_create_that_landed_on_every_attempt_without_an_answer_is_adopted_by_the_rerun(
    faulted: Faulted,
) -> None:
    path = "/forms/onbrd01/webhooks/intake"
    faulted.faults(script=[{"method": "PUT", "path": path, "action": "drop_after", "count": 50}])

    result = faulted.apply_under_faults()

    assert result.code == 1
    (record,) = [r for r in faulted.run if (r["form_id"], r["tag"]) == INTAKE_KEY]
    assert record["success"] is False
    landed = faulted.live()[INTAKE_KEY]  # it landed all the same
    faulted.converge_without_faults()
    assert faulted.state_ids()[INTAKE_KEY] == landed[0]
    assert faulted.live()[INTAKE_KEY][0] == landed[0]  # adopted, never re-created


# --------------------------------------------------------------------------- strange bodies

Answer = tuple[int, str, bytes]
"""A crafted answer: status, content type, body."""


def _answering(app: ASGIApp, method: str, path: str, answer: Answer, times: int) -> ASGIApp:
    """``app``, except that the next ``times`` ``method path`` requests get ``answer`` instead
    of their own, after ``app`` handled them (a write still lands, as behind a failing proxy)."""
    status, content_type, body = answer
    left = [times]

    async def answering(scope: Scope, receive: Receive, send: Send) -> None:
        request = (scope.get("method"), scope.get("path"))
        if scope["type"] != "http" or request != (method, path) or left[0] <= 0:
            await app(scope, receive, send)
            return
        left[0] -= 1

        async def swallow(message: Message) -> None:
            return None

        await app(scope, receive, swallow)
        headers = [(b"content-type", content_type.encode()), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return answering


Craft = Callable[[str, str, Answer, int], None]


@pytest.fixture
def craft(faulted: Faulted, _emulator_server: tuple[str, _SwappableApp]) -> Iterator[Craft]:
    """``craft(method, path, answer, times)``: the served emulator answers the next ``times``
    such requests with ``answer`` (until the faults are cleared: ``converge_without_faults``)."""
    holder = _emulator_server[1]
    plain = holder.app
    assert plain is not None

    def install(method: str, path: str, answer: Answer, times: int = 1000) -> None:
        holder.app = _answering(plain, method, path, answer, times)

    def lift() -> None:
        holder.app = plain

    faulted.on_clear.append(lift)
    yield install
    lift()


HTML_PAGE = (
    b"<!DOCTYPE html>\n<html>\n<head><title>502 Bad Gateway</title></head>\n<body>\n"
    b"<center><h1>502 Bad Gateway</h1></center>\n<hr><center>nginx</center>\n</body>\n</html>\n"
)
INTAKE_PATH = "/forms/onbrd01/webhooks/intake"


def test_a_malformed_json_listing_fails_the_refresh_with_one_clear_line_and_writes_nothing(
    faulted: Faulted, craft: Craft
) -> None:
    craft("GET", "/forms/onbrd01/webhooks", (200, "application/json", b'{"items": [{"id": "x", '))

    result = faulted.apply_under_faults()

    assert result.code == 1
    assert "onbrd01" in result.err
    assert "not JSON" in result.err
    assert not faulted.run  # no write started on an account that could not be read
    faulted.converge_without_faults()


def test_a_malformed_json_answer_to_a_write_that_landed_is_a_failure_adopted_next_run(
    faulted: Faulted, craft: Craft
) -> None:
    craft("PUT", INTAKE_PATH, (200, "application/json", b"{not json"))

    result = faulted.apply_under_faults()

    assert result.code == 1
    (record,) = [r for r in faulted.run if (r["form_id"], r["tag"]) == INTAKE_KEY]
    assert record["success"] is False
    landed = faulted.live()[INTAKE_KEY]
    faulted.converge_without_faults()
    assert faulted.state_ids()[INTAKE_KEY] == landed[0]


def test_an_html_502_page_after_a_write_landed_is_retried_and_never_printed(
    faulted: Faulted, craft: Craft
) -> None:
    craft("PUT", INTAKE_PATH, (502, "text/html", HTML_PAGE), 1)

    result = faulted.apply_under_faults()

    assert result.code == 0, result.err
    assert "<center>" not in result.out + result.err
    (record,) = [r for r in faulted.run if (r["form_id"], r["tag"]) == INTAKE_KEY]
    assert (record["success"], record["attempts"]) == (True, 2)
    faulted.converge_without_faults()


@pytest.mark.parametrize("status", [404, 400])
def test_an_html_error_page_becomes_one_clear_line_never_the_page(
    faulted: Faulted, craft: Craft, status: int
) -> None:
    craft("PUT", INTAKE_PATH, (status, "text/html", HTML_PAGE))

    result = faulted.apply_under_faults()

    assert result.code == 1
    assert "<center>" not in result.err
    faulted.converge_without_faults()


def test_an_html_page_instead_of_a_listing_fails_the_refresh_clearly(
    faulted: Faulted, craft: Craft
) -> None:
    craft("GET", "/forms/onbrd02/webhooks", (200, "text/html", HTML_PAGE))

    result = faulted.apply_under_faults()

    assert result.code == 1
    assert "onbrd02" in result.err
    assert "<html>" not in result.err
    assert not faulted.run
    faulted.converge_without_faults()


def test_a_multi_megabyte_listing_with_unknown_fields_is_read_and_converges(
    faulted: Faulted, craft: Craft
) -> None:
    faulted.write([{**INTAKE, "form_id": "fdbk001"}])  # a form with no webhook live
    padding = "x" * (8 << 20)
    body = json.dumps({"items": [], "notes": padding}).encode()
    craft("GET", "/forms/fdbk001/webhooks", (200, "application/json", body))

    result = faulted.faulted_apply()

    assert result.code == 0, result.err
    assert len(result.out) + len(result.err) < 20_000  # the padding is never echoed


def test_a_multi_megabyte_error_page_is_cut_short_in_the_error(
    faulted: Faulted, craft: Craft
) -> None:
    page = b"<html><body>" + b"<p>Not Found</p>" * 400_000 + b"</body></html>"
    craft("GET", "/forms/onbrd02/webhooks", (404, "text/html", page))

    result = faulted("apply", "--auto-approve")

    assert result.code == 1
    assert "Traceback" not in result.err
    assert len(result.out) + len(result.err) < 20_000
    faulted.converge_without_faults()


@pytest.mark.parametrize("command", ["plan", "apply"])
def test_a_refresh_that_failed_never_claims_live_matches_the_manifests(
    faulted: Faulted, craft: Craft, command: str
) -> None:
    craft("GET", "/forms/onbrd01/webhooks", (200, "application/json", b"{"))

    result = faulted(command, *(["--auto-approve"] if command == "apply" else []))

    assert result.code == 1
    assert "match the manifests" not in result.out

"""``reconcile emulator``: served by uvicorn, loopback only, token from the environment."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from reconciler.cli import main

TOKEN = "served-emulator-token-value"
SECRET = "served-secret-never-on-disk"


@contextmanager
def running_emulator(
    *args: str, env: dict[str, str] | None = None
) -> Iterator[tuple[subprocess.Popen[str], str, str]]:
    """Start ``reconcile emulator --port 0 ARGS``; yields (process, base URL, start-up line)."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from reconciler.cli import main; main()",
            "emulator",
            "--port",
            "0",
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 20)
        assert ready, "the emulator printed nothing within 20 s"
        line = proc.stdout.readline()
        match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
        assert match, f"unexpected start-up line: {line!r}"
        yield proc, match.group(1), line
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def stop(proc: subprocess.Popen[str], sig: signal.Signals) -> tuple[int, str]:
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=20)
    return proc.returncode, stderr


def test_the_served_emulator_answers_rate_limits_persists_and_stops_cleanly(
    tmp_path: Path,
) -> None:
    state = tmp_path / "served.json"
    env = {"TYPEFORM_TOKEN": TOKEN}
    with running_emulator("--rate", "1", "--burst", "3", "--state", str(state), env=env) as (
        proc,
        url,
        line,
    ):
        assert f"TYPEFORM_API_URL={url}" in line
        assert "TYPEFORM_TOKEN=$TYPEFORM_TOKEN" in line
        assert TOKEN not in line
        good = {"Authorization": f"Bearer {TOKEN}"}
        with httpx.Client(base_url=url) as client:
            wrong = client.get("/forms", headers={"Authorization": "Bearer nope"})
            forms = client.get("/forms", headers=good)
            put = client.put(
                "/forms/onbrd03/webhooks/kickoff",
                json={"url": "https://h.example/k", "enabled": True, "secret": SECRET},
                headers=good,
            )
            statuses = [client.get("/workspaces", headers=good).status_code for _ in range(3)]
            stats = client.get("/_emulator/stats").json()
        code, stderr = stop(proc, signal.SIGTERM)
    assert wrong.status_code == 401
    assert forms.status_code == 200
    assert forms.json()["total_items"] == 7
    assert put.status_code == 200
    assert 429 in statuses
    assert stats["throttled"] >= 1
    assert code == 0
    assert "stopped" in stderr.lower()
    assert TOKEN not in stderr
    assert SECRET not in stderr
    assert SECRET not in state.read_text()

    # A second process resumes the persisted account; fault flags apply on top of it.
    with running_emulator("--state", str(state), "--latency", "1-3", "--error-rate", "0") as (
        proc,
        url,
        line,
    ):
        assert "TYPEFORM_TOKEN=anything" in line
        with httpx.Client(base_url=url, headers={"Authorization": "Bearer x"}) as client:
            resumed = client.get("/forms/onbrd03/webhooks/kickoff")
            faults = client.get("/_emulator/faults").json()
        code, _ = stop(proc, signal.SIGINT)
    assert resumed.status_code == 200
    assert resumed.json()["url"] == "https://h.example/k"
    assert faults["latency_ms"] == [1.0, 3.0]
    assert code == 0


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.10", "example.com"])
def test_a_non_loopback_host_is_refused_without_allow_remote(
    host: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["emulator", "--host", host, "--port", "0"])
    assert exited.value.code == 1
    assert "--allow-remote" in capsys.readouterr().err


def test_a_bad_seed_file_exits_1_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed = tmp_path / "broken-seed.yaml"
    seed.write_text("forms: [{id: f1}]")
    with pytest.raises(SystemExit) as exited:
        main(["emulator", "--port", "0", "--seed", str(seed)])
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert str(seed) in err
    assert "forms[0].title" in err


def test_a_bad_latency_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["emulator", "--port", "0", "--latency", "soon"])
    assert exited.value.code == 1
    assert "--latency" in capsys.readouterr().err


def test_json_logs_put_uvicorns_access_lines_and_ours_on_one_json_line_each(
    tmp_path: Path,
) -> None:
    env = {"TYPEFORM_TOKEN": TOKEN}
    args = ("--log-format", "json", "--log-level", "info")
    with running_emulator(*args, env=env) as (proc, url, _line):
        with httpx.Client(base_url=url) as client:
            ok = client.get("/forms", headers={"Authorization": f"Bearer {TOKEN}"})
            put = client.put(
                "/forms/onbrd03/webhooks/kickoff",
                json={"url": "https://h.example/k", "secret": SECRET},
                headers={"Authorization": f"Bearer {TOKEN}"},
            )
        code, stderr = stop(proc, signal.SIGTERM)
    assert (ok.status_code, put.status_code, code) == (200, 200, 0)
    lines = [json.loads(line) for line in stderr.splitlines() if line.strip()]
    loggers = {line["logger"] for line in lines}
    assert {"uvicorn.access", "uvicorn.error", "reconciler.emulator"} <= loggers
    access = [line["message"] for line in lines if line["logger"] == "uvicorn.access"]
    assert any("GET /forms" in m and "200" in m for m in access)
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    assert any("stopped" in line["message"] for line in lines)
    assert TOKEN not in stderr
    assert SECRET not in stderr


def test_modes_and_token_grants_from_flags_and_a_tokens_file(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text(
        "$READ_TOKEN: {account: acme, scopes: [webhooks:read]}\n"
        "literal-writer-token: {account: acme}\n"
    )
    state = tmp_path / "state.json"
    env = {"READ_TOKEN": "env-reader-token-value", "TYPEFORM_TOKEN": ""}
    args = ("--tokens", str(tokens), "--secret-echo", "masked", "--state", str(state))
    with running_emulator(*args, "--event-types-echo", "omit-default", env=env) as (proc, url, _):
        with httpx.Client(base_url=url) as client:
            reader = {"Authorization": "Bearer env-reader-token-value"}
            writer = {"Authorization": "Bearer literal-writer-token"}
            body = {"url": "https://h.example/k", "secret": SECRET}
            refused = client.put("/forms/onbrd03/webhooks/k", json=body, headers=reader)
            written = client.put("/forms/onbrd03/webhooks/k", json=body, headers=writer)
            stranger = client.get("/forms", headers={"Authorization": "Bearer nobody"})
        code, stderr = stop(proc, signal.SIGTERM)
    assert (refused.status_code, written.status_code, stranger.status_code) == (403, 200, 401)
    assert written.json()["secret"] not in ("", SECRET)
    assert "event_types" not in written.json()
    persisted = state.read_text()
    assert json.loads(persisted)["settings"]["secret_echo"] == "masked"
    for value in ("env-reader-token-value", "literal-writer-token", SECRET):
        assert value not in persisted
        assert value not in stderr
    assert code == 0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("$UNSET_TOKEN_VARIABLE_X: {account: a}", "UNSET_TOKEN_VARIABLE_X is not set"),
        ("tok-secretish-value: {scopes: [webhooks:wirte]}", "webhooks:wirte"),
        ("tok-secretish-value: [unclosed", "not valid YAML/JSON"),
        ("- just\n- a list", "expected"),
    ],
)
def test_a_bad_tokens_file_exits_1_without_quoting_a_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text(content)
    with pytest.raises(SystemExit) as exited:
        main(["emulator", "--port", "0", "--tokens", str(tokens)])
    err = capsys.readouterr().err
    assert exited.value.code == 1
    assert message in err
    assert str(tokens) in err
    assert "tok-secretish-value" not in err
    assert "Traceback" not in err

"""Stopping a run: SIGTERM and SIGINT mid-apply, and end of input at the confirmation prompt.

Each test runs ``python -m reconciler`` in a subprocess against a persisted emulator slowed by
injected latency, so there is time to interrupt it between writes. What happened is read back
from the state file, the records and the emulator, and the next plan must be exactly the work
that did not land.
"""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from reconciler.emulator import configure
from reconciler.records import read_records

FORMS = ["onbrd01", "onbrd02", "onbrd03", "kyc0001", "fdbk001", "nwsl001", "evnt001"]


def write_manifests(root: Path) -> None:
    (root / "manifests").mkdir()
    hooks = [
        {"form_id": form, "tag": "intake", "url": f"https://hooks.example.com/{form}"}
        for form in FORMS
    ]
    doc = {
        "apiVersion": "reconciler/v1",
        "kind": "WebhookSet",
        "metadata": {"name": "signals"},
        "spec": {"webhooks": hooks},
    }
    (root / "manifests" / "set.yaml").write_text(yaml.safe_dump(doc))


def reconcile(*args: str) -> list[str]:
    return [sys.executable, "-m", "reconciler", *args]


def common(root: Path) -> list[str]:
    return ["manifests", "--api-url", f"emulator:{root / 'emu.json'}", "--state", "state.json"]


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_mid_apply_saves_what_landed_releases_the_lock_and_the_next_plan_is_the_rest(
    tmp_path: Path, sig: signal.Signals, code: int
) -> None:
    write_manifests(tmp_path)
    # One write at a time, 300 ms each: a signal lands between writes.
    configure(tmp_path / "emu.json", rate=1000.0, burst=1000, faults={"latency_ms": 300})
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        reconcile("apply", "--auto-approve", *common(tmp_path), "--rate", "3"),
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    records = tmp_path / ".reconcile" / "records.jsonl"
    deadline = time.monotonic() + 30
    while not (records.exists() and records.read_text().count("\n") >= 1):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no write landed in 30 s"
        time.sleep(0.05)
    proc.send_signal(sig)
    _out, err = proc.communicate(timeout=30)

    assert proc.returncode == code, err
    assert f"Stopped by {sig.name}" in err
    assert "Traceback" not in err
    assert not (tmp_path / "state.json.lock.json").exists()  # the lock was released
    landed = {r["form_id"] for r in read_records(records) if r["success"]}
    state = json.loads((tmp_path / "state.json").read_text())
    assert {w["form_id"] for w in state["webhooks"]} == landed
    assert 1 <= len(landed) < len(FORMS)

    configure(tmp_path / "emu.json", faults={})
    plan = subprocess.run(
        reconcile("plan", *common(tmp_path), "--format", "json", "--rate", "1000"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    doc = json.loads(plan.stdout)
    remaining = {a["form_id"] for a in doc["actions"] if a["action"] == "create"}
    assert remaining == set(FORMS) - landed


def _read_until(fd: int, marker: bytes, timeout: float = 20) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while marker not in seen:
        assert time.monotonic() < deadline, seen.decode(errors="replace")
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    return seen


def test_end_of_input_at_the_prompt_cancels_the_apply_with_exit_1(tmp_path: Path) -> None:
    write_manifests(tmp_path)
    configure(tmp_path / "emu.json", rate=1000.0, burst=1000)
    pid, fd = pty.fork()
    if pid == 0:  # the child: apply on a terminal, asking for confirmation
        os.chdir(tmp_path)
        os.execv(sys.executable, reconcile("apply", *common(tmp_path), "--rate", "1000"))
    try:
        _read_until(fd, b"Only 'yes' is accepted")
        os.write(fd, b"\x04")  # Ctrl-D: end of input
        rest = _read_until(fd, b"apply cancelled")
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    assert b"apply cancelled" in rest
    assert os.waitstatus_to_exitcode(status) == 1
    assert not (tmp_path / "state.json").exists()

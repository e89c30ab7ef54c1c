"""``reconcile unlock [--force]``: its output and exit codes."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from reconciler.commands.unlock import run_unlock, unlock
from reconciler.lock import (
    ApplyLock,
    LockHolder,
    LockStatus,
    holder_path,
    inspect_lock,
    lock_path,
    read_holder,
)


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    # standalone_mode=False hands back the command's return value, which reconciler.cli.main
    # turns into the exit code.
    return CliRunner().invoke(unlock, list(args), env=env, standalone_mode=False)


def exit_code(result: Result) -> int:
    assert result.exception is None, result.exception
    assert isinstance(result.return_value, int)
    return result.return_value


def leave_stale_lock(state_path: Path, pid: int = 4_000_000) -> LockHolder:
    """What a crashed apply leaves: a holder record (and lock file) but no OS lock."""
    holder = LockHolder(pid, "ci-runner-7", "2026-01-02T03:04:05Z", "apply")
    state_path.parent.mkdir(parents=True, exist_ok=True)
    holder_path(state_path).write_text(json.dumps(holder.to_json()))
    lock_path(state_path).touch()
    return holder


def test_unlock_without_a_lock_says_so_and_succeeds(tmp_path: Path) -> None:
    state_path = tmp_path / "state.json"
    result = invoke("--state", str(state_path))
    assert exit_code(result) == 0
    assert result.stdout == f"No lock on {state_path}: nothing to unlock.\n"
    assert result.stderr == ""


def test_unlock_names_the_holder_of_a_stale_lock_and_removes_it(tmp_path: Path) -> None:
    state_path = tmp_path / "state.json"
    leave_stale_lock(state_path)
    result = invoke("--state", str(state_path))
    assert exit_code(result) == 0
    assert result.stdout.splitlines() == [
        f"Lock on {state_path} is recorded for pid 4000000 on host ci-runner-7 "
        "since 2026-01-02T03:04:05Z (reconcile apply).",
        "Nobody holds it: its holder stopped without releasing it.",
        "Removed the stale lock.",
    ]
    assert not holder_path(state_path).exists()
    assert not lock_path(state_path).exists()
    assert inspect_lock(state_path).status is LockStatus.FREE


def test_unlock_refuses_a_lock_whose_holder_is_running(tmp_path: Path) -> None:
    state_path = tmp_path / "state.json"
    with ApplyLock(state_path, command="watch --heal") as held:
        result = invoke("--state", str(state_path))
        assert exit_code(result) == 1
        assert f"is recorded for pid {os.getpid()} on host {socket.gethostname()}" in (
            result.stdout
        )
        assert "(reconcile watch --heal)" in result.stdout
        assert result.stderr.startswith("Error: not removing it: ")
        assert f"pid {os.getpid()} is still running on this host" in result.stderr
        assert "--force" in result.stderr
        # Nothing was touched: the holder keeps its lock and its record.
        assert read_holder(state_path) == held.holder
        assert inspect_lock(state_path).status is LockStatus.HELD


def test_unlock_force_removes_a_lock_whose_holder_is_running_and_says_so(
    tmp_path: Path,
) -> None:
    state_path = tmp_path / "state.json"
    with ApplyLock(state_path):
        result = invoke("--state", str(state_path), "--force")
        assert exit_code(result) == 0
        assert f"is recorded for pid {os.getpid()}" in result.stdout
        assert "Removed the lock anyway (--force)" in result.stdout
        assert not holder_path(state_path).exists()
        assert not lock_path(state_path).exists()
        # A new apply can now lock the state file, which is exactly what --force risks.
        with ApplyLock(state_path):
            pass


def test_unlock_force_on_a_stale_lock_just_removes_it(tmp_path: Path) -> None:
    state_path = tmp_path / "state.json"
    leave_stale_lock(state_path)
    result = invoke("--state", str(state_path), "--force")
    assert exit_code(result) == 0
    assert "Removed the stale lock." in result.stdout
    assert not holder_path(state_path).exists()


def test_unlock_reads_the_state_path_from_reconcile_state(tmp_path: Path) -> None:
    state_path = tmp_path / "ci" / "state.json"
    leave_stale_lock(state_path)
    result = invoke(env={"RECONCILE_STATE": str(state_path)})
    assert exit_code(result) == 0
    assert f"Lock on {state_path} is recorded for" in result.stdout
    assert not holder_path(state_path).exists()


def test_unlock_defaults_to_the_state_file_under_dot_reconcile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RECONCILE_STATE", raising=False)
    leave_stale_lock(Path(".reconcile/state.json"))
    result = invoke()
    assert exit_code(result) == 0
    assert "Lock on .reconcile/state.json is recorded for" in result.stdout
    assert not (tmp_path / ".reconcile" / "state.json.lock.json").exists()


def test_unlock_refuses_a_held_lock_taken_on_another_host(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state_path = tmp_path / "state.json"
    with ApplyLock(state_path):
        code = run_unlock(state_path, force=False, hostname="another-machine")
        assert code == 1
        err = capsys.readouterr().err
        assert f"taken on host {socket.gethostname()}" in err
        assert "cannot be checked from here" in err
        assert inspect_lock(state_path).os_lock_held


def test_unlock_removes_a_held_lock_whose_holder_on_this_host_is_gone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state_path = tmp_path / "state.json"
    with ApplyLock(state_path):
        code = run_unlock(state_path, force=False, is_alive=lambda pid: False)
        assert code == 0
        out = capsys.readouterr().out
        assert f"Its holder, pid {os.getpid()} on this host, is no longer running." in out
        assert "Removed the stale lock." in out
        assert not holder_path(state_path).exists()


def test_unlock_refuses_a_held_lock_that_names_no_holder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state_path = tmp_path / "state.json"
    with ApplyLock(state_path):
        holder_path(state_path).unlink()
        code = run_unlock(state_path, force=False)
        assert code == 1
        captured = capsys.readouterr()
        assert f"Lock on {state_path} does not say who holds it." in captured.out
        assert "another process holds it" in captured.err

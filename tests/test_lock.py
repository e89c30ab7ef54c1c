"""The apply lock of a state file (reconciler.lock): holders, stale locks, break_lock."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest

from reconciler.errors import LockHeldError
from reconciler.lock import (
    ApplyLock,
    LockHolder,
    LockStatus,
    break_lock,
    describe_holder,
    holder_path,
    inspect_lock,
    lock_path,
    pid_alive,
    read_holder,
)


def fixed_clock() -> datetime:
    return datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)


def write_holder(state_path: Path, holder: LockHolder) -> None:
    holder_path(state_path).parent.mkdir(parents=True, exist_ok=True)
    holder_path(state_path).write_text(json.dumps(holder.to_json()))


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


CHILD_HOLDS_LOCK = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from reconciler.lock import ApplyLock

    with ApplyLock(Path(sys.argv[1]), command="watch --heal"):
        print("locked", flush=True)
        sys.stdin.readline()
    """
)


@contextmanager
def lock_held_by_child(state_path: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process that holds the apply lock until the block ends (or it is killed)."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD_HOLDS_LOCK, str(state_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdin is not None
    try:
        assert child.stdout.readline().strip() == "locked"
        yield child
    finally:
        if child.poll() is None:
            child.stdin.write("\n")
            child.stdin.flush()
        child.stdin.close()
        child.stdout.close()
        child.wait(timeout=10)


def test_the_lock_records_its_holder_while_held_and_forgets_it_after(tmp_path: Path) -> None:
    state_path = tmp_path / ".reconcile" / "state.json"
    with ApplyLock(state_path, command="apply", clock=fixed_clock) as lock:
        holder = read_holder(state_path)
        assert holder == LockHolder(
            pid=os.getpid(),
            host=socket.gethostname(),
            started_at="2026-03-04T05:06:07Z",
            command="apply",
        )
        assert lock.holder == holder
        assert inspect_lock(state_path).status is LockStatus.HELD
    assert read_holder(state_path) is None
    assert not holder_path(state_path).exists()
    assert inspect_lock(state_path).status is LockStatus.FREE


def test_a_second_lock_in_the_same_process_is_refused_naming_the_holder(tmp_path: Path) -> None:
    state_path = tmp_path / "state.json"
    with ApplyLock(state_path, clock=fixed_clock):
        with pytest.raises(LockHeldError) as caught:
            ApplyLock(state_path).__enter__()
        message = str(caught.value)
        assert f"state file {state_path} is locked by pid {os.getpid()}" in message
        assert f"on host {socket.gethostname()}" in message
        assert "since 2026-03-04T05:06:07Z (reconcile apply)" in message
        assert "run `reconcile unlock`" in message
    with ApplyLock(state_path):
        pass  # free again once the first one is released


def test_a_lock_held_by_another_process_is_refused_naming_that_process(tmp_path: Path) -> None:
    state_path = tmp_path / "state.json"
    with lock_held_by_child(state_path) as child:
        with (
            pytest.raises(LockHeldError, match=rf"locked by pid {child.pid} on host "),
            ApplyLock(state_path),
        ):
            pass
        assert read_holder(state_path) is not None
        assert read_holder(state_path).command == "watch --heal"  # type: ignore[union-attr]
    with ApplyLock(state_path):
        assert read_holder(state_path).pid == os.getpid()  # type: ignore[union-attr]


def test_a_crashed_holder_leaves_a_stale_lock_that_the_next_apply_takes_over(
    tmp_path: Path,
) -> None:
    state_path = tmp_path / "state.json"
    with lock_held_by_child(state_path) as child:
        child.kill()
        child.wait(timeout=10)
    # The kernel released the OS lock with the process; only its holder record remains.
    found = inspect_lock(state_path)
    assert found.status is LockStatus.STALE
    assert not found.os_lock_held
    assert found.holder is not None
    assert found.holder.pid == child.pid
    with ApplyLock(state_path) as lock:
        assert lock.previous_holder is not None
        assert lock.previous_holder.pid == child.pid
        assert read_holder(state_path).pid == os.getpid()  # type: ignore[union-attr]


def test_the_lock_is_released_when_the_block_raises(tmp_path: Path) -> None:
    state_path = tmp_path / "state.json"
    with pytest.raises(RuntimeError, match="boom"), ApplyLock(state_path):
        raise RuntimeError("boom")
    assert inspect_lock(state_path).status is LockStatus.FREE
    with ApplyLock(state_path):
        pass


def test_a_held_lock_whose_recorded_holder_on_this_host_is_dead_is_stale(
    tmp_path: Path,
) -> None:
    state_path = tmp_path / "state.json"
    with ApplyLock(state_path):
        found = inspect_lock(state_path, is_alive=lambda pid: False)
        assert found.status is LockStatus.STALE
        assert found.os_lock_held
        assert found.holder_alive is False


def test_a_held_lock_taken_on_another_host_is_held_because_it_cannot_be_checked(
    tmp_path: Path,
) -> None:
    state_path = tmp_path / "state.json"
    with ApplyLock(state_path):
        found = inspect_lock(
            state_path, hostname="somewhere-else.example", is_alive=lambda pid: False
        )
        assert found.status is LockStatus.HELD
        assert found.holder_alive is None


def test_a_holder_record_without_an_os_lock_is_stale_whoever_it_names(tmp_path: Path) -> None:
    state_path = tmp_path / "state.json"
    write_holder(state_path, LockHolder(os.getpid(), "elsewhere", "2026-01-01T00:00:00Z", "apply"))
    found = inspect_lock(state_path)
    assert found.status is LockStatus.STALE
    assert found.holder is not None
    assert found.holder.host == "elsewhere"


def test_an_unreadable_holder_record_still_counts_as_a_leftover(tmp_path: Path) -> None:
    state_path = tmp_path / "state.json"
    holder_path(state_path).write_text("{not json")
    found = inspect_lock(state_path)
    assert found.status is LockStatus.STALE
    assert found.holder is None


def test_break_lock_removes_the_lock_and_returns_the_holder_it_named(tmp_path: Path) -> None:
    state_path = tmp_path / "state.json"
    holder = LockHolder(dead_pid(), socket.gethostname(), "2026-01-01T00:00:00Z", "apply")
    write_holder(state_path, holder)
    lock_path(state_path).touch()
    assert break_lock(state_path) == holder
    assert not holder_path(state_path).exists()
    assert not lock_path(state_path).exists()
    assert break_lock(state_path) is None


def test_the_first_holder_does_not_remove_a_record_it_does_not_own(tmp_path: Path) -> None:
    state_path = tmp_path / "state.json"
    first = ApplyLock(state_path, command="apply")
    first.__enter__()
    break_lock(state_path)
    second = ApplyLock(state_path, command="watch --heal")
    second.__enter__()
    first.__exit__(None, None, None)
    assert read_holder(state_path) == second.holder
    second.__exit__(None, None, None)
    assert read_holder(state_path) is None


def test_pid_alive_knows_this_process_from_a_finished_one() -> None:
    assert pid_alive(os.getpid())
    assert not pid_alive(dead_pid())
    assert not pid_alive(0)
    assert not pid_alive(-1)


# --------------------------------------------------------------------------- hostile holder records


@pytest.mark.parametrize(
    "content",
    [
        "[" * 100_000,
        json.dumps({"pid": 1, "host": "h" * 100_000, "started_at": "t", "command": "apply"}),
        json.dumps({"pid": 1, "host": "evil\x1b]0;owned\x07", "started_at": "t", "command": "a"}),
        json.dumps({"pid": True, "host": "h", "started_at": "t", "command": "apply"}),
        json.dumps({"pid": 1, "host": "h", "started_at": 3, "command": "apply"}),
        '{"pid": 1, "host": "h", "started_at": "t", "command": "apply"' + " " * 70_000 + "}",
        "\udcff not utf-8",
    ],
)
def test_a_hostile_holder_record_is_unreadable_and_never_shown(
    tmp_path: Path, content: str
) -> None:
    state_path = tmp_path / "state.json"
    holder_path(state_path).write_bytes(content.encode("utf-8", "surrogateescape"))
    assert read_holder(state_path) is None
    found = inspect_lock(state_path)
    assert found.status is LockStatus.STALE
    assert found.holder is None


def test_a_lock_whose_record_is_hostile_says_it_does_not_know_the_holder(tmp_path: Path) -> None:
    state_path = tmp_path / "state.json"
    with lock_held_by_child(state_path):
        holder_path(state_path).write_text(
            json.dumps({"pid": 1, "host": "\x1b[2J", "started_at": "t", "command": "apply"})
        )
        with pytest.raises(LockHeldError) as caught, ApplyLock(state_path):
            pass
    assert "another process (it has not said which)" in str(caught.value)
    assert "\x1b" not in str(caught.value)


def test_describe_holder_names_pid_host_time_and_command() -> None:
    holder = LockHolder(42, "ci-7", "2026-01-02T03:04:05Z", "watch --heal")
    assert describe_holder(holder) == (
        "pid 42 on host ci-7 since 2026-01-02T03:04:05Z (reconcile watch --heal)"
    )


def test_the_lock_waits_up_to_its_timeout_for_a_busy_lock(tmp_path: Path) -> None:
    state_path = tmp_path / "state.json"
    with lock_held_by_child(state_path):
        started = time.monotonic()
        with pytest.raises(LockHeldError), ApplyLock(state_path, timeout=0.3):
            pass
        waited = time.monotonic() - started
    assert 0.25 <= waited < 5

"""The state file, secret fingerprints and the apply lock (reconciler.state)."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest

from reconciler.errors import LockHeldError, StateError
from reconciler.models import WebhookKey
from reconciler.state import (
    FINGERPRINT_COST,
    STATE_VERSION,
    ApplyLock,
    FingerprintCache,
    LockHolder,
    LockStatus,
    ManagedWebhook,
    ScryptCost,
    State,
    break_lock,
    fingerprint_secret,
    holder_path,
    inspect_lock,
    load_state,
    lock_path,
    pid_alive,
    read_holder,
    save_state,
    secret_matches,
)

# Cheap work factors: these tests are about behaviour, not about scrypt's cost.
CHEAP = ScryptCost(n=2**10, r=8, p=1)
SECRET = "whsec-Distinctive-7f3a9c-VALUE"

ONBOARDING = WebhookKey("default", "u6nXL7", "onboarding-intake")
LEGACY = WebhookKey("default", "u6nXL7", "legacy-zapier")
EU = WebhookKey("eu-clients", "Ab12", "crm")


def entry(key: WebhookKey, *, fingerprint: str | None = None) -> ManagedWebhook:
    return ManagedWebhook(
        key=key,
        webhook_id=f"id-{key.tag}",
        applied_at="2026-01-02T03:04:05Z",
        url=f"https://hooks.example.com/{key.tag}",
        secret_fingerprint=fingerprint,
    )


def sample_state() -> State:
    return (
        State()
        .with_applied(entry(EU))
        .with_applied(entry(ONBOARDING, fingerprint=fingerprint_secret(SECRET, cost=CHEAP)))
        .with_applied(entry(LEGACY))
    )


# --------------------------------------------------------------------------- State values


def test_with_applied_returns_a_new_state_and_leaves_the_old_one_unchanged() -> None:
    empty = State()
    one = empty.with_applied(entry(ONBOARDING))
    assert not empty.is_managed(ONBOARDING)
    assert one.is_managed(ONBOARDING)
    assert one.get(ONBOARDING) == entry(ONBOARDING)
    assert one.get(LEGACY) is None


def test_with_applied_replaces_the_entry_of_the_same_key() -> None:
    newer = ManagedWebhook(ONBOARDING, "id-2", "2026-02-01T00:00:00Z", url="https://b.example")
    state = State().with_applied(entry(ONBOARDING)).with_applied(newer)
    assert state.get(ONBOARDING) == newer
    assert len(state.webhooks) == 1


def test_without_forgets_a_key_and_ignores_an_unknown_one() -> None:
    state = sample_state()
    assert not state.without(LEGACY).is_managed(LEGACY)
    assert state.is_managed(LEGACY)
    assert state.without(WebhookKey("default", "nope", "nope")) == state


def test_managed_keys_can_be_limited_to_one_account() -> None:
    state = sample_state()
    assert state.managed_keys() == {ONBOARDING, LEGACY, EU}
    assert state.managed_keys("default") == {ONBOARDING, LEGACY}
    assert state.managed_keys("eu-clients") == {EU}
    assert state.managed_keys("unknown") == frozenset()


def test_a_state_cannot_be_changed_through_its_mapping() -> None:
    source = {ONBOARDING: entry(ONBOARDING)}
    state = State(source)
    source[LEGACY] = entry(LEGACY)
    assert not state.is_managed(LEGACY)
    with pytest.raises(TypeError):
        state.webhooks[LEGACY] = entry(LEGACY)  # type: ignore[index]


# --------------------------------------------------------------------------- file format


def test_state_survives_a_round_trip_through_the_file(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    state = sample_state()
    save_state(path, state)
    assert load_state(path) == state


def test_state_file_is_versioned_and_sorted_by_account_form_and_tag(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    save_state(path, sample_state())
    doc = json.loads(path.read_text())
    assert doc["version"] == STATE_VERSION == 1
    keys = [(w["account"], w["form_id"], w["tag"]) for w in doc["webhooks"]]
    assert keys == [
        ("default", "u6nXL7", "legacy-zapier"),
        ("default", "u6nXL7", "onboarding-intake"),
        ("eu-clients", "Ab12", "crm"),
    ]
    assert doc["webhooks"][0] == {
        "account": "default",
        "form_id": "u6nXL7",
        "tag": "legacy-zapier",
        "webhook_id": "id-legacy-zapier",
        "url": "https://hooks.example.com/legacy-zapier",
        "applied_at": "2026-01-02T03:04:05Z",
        "secret_fingerprint": None,
    }


def test_saving_the_same_state_twice_writes_identical_bytes(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    state = sample_state()
    save_state(path, state)
    first = path.read_bytes()
    save_state(path, load_state(path))
    assert path.read_bytes() == first
    assert first.endswith(b"}\n")


def test_state_file_holds_the_fingerprint_but_never_the_secret(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    save_state(path, sample_state())
    raw = path.read_bytes()
    assert b"scrypt$" in raw
    assert SECRET.encode() not in raw
    assert base64.b64encode(SECRET.encode()).rstrip(b"=") not in raw


def test_a_missing_state_file_is_an_empty_state(tmp_path: Path) -> None:
    assert load_state(tmp_path / "state.json") == State()
    assert load_state(tmp_path / "no" / "such" / "dir" / "state.json").managed_keys() == set()


def test_save_creates_the_parent_directories(tmp_path: Path) -> None:
    path = tmp_path / ".reconcile" / "nested" / "state.json"
    state = sample_state()
    save_state(path, state)
    assert load_state(path) == state


def test_save_leaves_no_temporary_file_behind(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    save_state(path, sample_state())
    save_state(path, State())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_save_replaces_the_file_instead_of_rewriting_it_in_place(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    save_state(path, sample_state())
    old_bytes = path.read_bytes()
    old_inode = path.stat().st_ino
    with path.open("rb") as reader_of_the_old_file:
        save_state(path, State())
        # A reader that opened the file before the save still reads the complete old content:
        # the new content went to another file that was renamed over this one.
        assert reader_of_the_old_file.read() == old_bytes
    assert path.stat().st_ino != old_inode
    assert load_state(path) == State()


def test_a_save_that_fails_leaves_the_previous_state_file_intact(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    save_state(path, sample_state())
    before = path.read_bytes()
    unserialisable = ManagedWebhook(ONBOARDING, "id", "2026-01-01T00:00:00Z", url=object())  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        save_state(path, State({ONBOARDING: unserialisable}))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_a_save_that_cannot_rename_cleans_up_and_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.mkdir()  # os.replace cannot put a file over a directory
    with pytest.raises(StateError, match=r"cannot write state file .*state\.json"):
        save_state(path, sample_state())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_save_keeps_the_permissions_of_an_existing_state_file(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    save_state(path, State())
    path.chmod(0o600)
    save_state(path, sample_state())
    assert path.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ('{"version": 1, "webhooks": [', "invalid JSON at line 1"),
        ("[]", "expected a JSON object"),
        ('{"webhooks": []}', '"version" must be a positive integer'),
        ('{"version": "1", "webhooks": []}', '"version" must be a positive integer'),
        ('{"version": 1, "webhooks": {}}', '"webhooks" must be a list'),
        ('{"version": 1, "webhooks": [{"account": "default"}]}', r"webhooks\[0\]\.form_id"),
        (
            '{"version": 1, "webhooks": [{"account": "a", "form_id": "f", "tag": "t", '
            '"webhook_id": "i", "applied_at": "x", "url": 3}]}',
            r"webhooks\[0\]\.url must be a string or null",
        ),
    ],
)
def test_a_corrupt_state_file_is_refused_naming_the_file_and_the_problem(
    tmp_path: Path, content: str, problem: str
) -> None:
    path = tmp_path / "state.json"
    path.write_text(content)
    with pytest.raises(StateError, match=problem) as caught:
        load_state(path)
    assert str(path) in str(caught.value)
    assert "restore it from git" in str(caught.value)


def test_a_state_file_that_lists_a_webhook_twice_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    one = entry(ONBOARDING).to_json()
    path.write_text(json.dumps({"version": 1, "webhooks": [one, one]}))
    with pytest.raises(StateError, match="listed twice"):
        load_state(path)


def test_a_state_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(b'{"version": 1, "webhooks": ["\xff"]}')
    with pytest.raises(StateError, match="not UTF-8"):
        load_state(path)


def test_an_unreadable_state_file_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.mkdir()
    with pytest.raises(StateError, match=r"cannot read state file .*state\.json"):
        load_state(path)


def test_a_state_file_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"version": STATE_VERSION + 1, "webhooks": []}))
    with pytest.raises(StateError, match="newer typeform-reconciler") as caught:
        load_state(path)
    assert str(path) in str(caught.value)
    assert "upgrade" in str(caught.value)


# --------------------------------------------------------------------------- fingerprints


def test_a_fingerprint_matches_the_secret_it_was_made_from() -> None:
    assert secret_matches(SECRET, fingerprint_secret(SECRET, cost=CHEAP))


def test_a_fingerprint_does_not_match_another_secret() -> None:
    fingerprint = fingerprint_secret(SECRET, cost=CHEAP)
    assert not secret_matches(SECRET + "x", fingerprint)
    assert not secret_matches("", fingerprint)


def test_two_fingerprints_of_one_secret_use_different_salts() -> None:
    first = fingerprint_secret(SECRET, cost=CHEAP)
    second = fingerprint_secret(SECRET, cost=CHEAP)
    assert first.split("$")[2] != second.split("$")[2]
    assert first != second
    assert secret_matches(SECRET, first)
    assert secret_matches(SECRET, second)


def test_a_given_salt_makes_the_fingerprint_reproducible() -> None:
    salt = bytes(range(16))
    assert fingerprint_secret(SECRET, salt=salt, cost=CHEAP) == fingerprint_secret(
        SECRET, salt=salt, cost=CHEAP
    )


def test_the_default_fingerprint_is_scrypt_with_its_parameters_spelled_out() -> None:
    fingerprint = fingerprint_secret(SECRET)
    assert ScryptCost(n=2**14, r=8, p=1) == FINGERPRINT_COST
    scheme, params, salt, digest = fingerprint.split("$")
    assert (scheme, params) == ("scrypt", "n=16384,r=8,p=1")
    assert len(base64.b64decode(salt + "==")) == 16
    assert len(base64.b64decode(digest + "=")) == 32
    assert secret_matches(SECRET, fingerprint)


def test_the_secret_appears_nowhere_in_its_fingerprint() -> None:
    fingerprint = fingerprint_secret(SECRET, cost=CHEAP)
    for form in (SECRET, SECRET.lower(), base64.b64encode(SECRET.encode()).decode().rstrip("=")):
        assert form not in fingerprint


@pytest.mark.parametrize(
    "fingerprint",
    [
        "",
        "scrypt$",
        "not a fingerprint",
        "bcrypt$n=1024,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        # n not a power of two
        "scrypt$n=1000,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        # a work factor that would need gigabytes of memory
        "scrypt$n=16777216,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        # r = 0 and p = 0
        "scrypt$n=1024,r=0,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "scrypt$n=1024,r=8,p=0$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        # not base64
        "scrypt$n=1024,r=8,p=1$A$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ],
)
def test_a_malformed_fingerprint_matches_nothing(fingerprint: str) -> None:
    assert not secret_matches(SECRET, fingerprint)


def test_a_tampered_fingerprint_no_longer_matches() -> None:
    fingerprint = fingerprint_secret(SECRET, cost=CHEAP)
    head, digest = fingerprint.rsplit("$", 1)
    flipped = ("B" if digest[0] == "A" else "A") + digest[1:]
    assert not secret_matches(SECRET, f"{head}${flipped}")


def test_fingerprints_keep_verifying_when_the_default_cost_changes() -> None:
    older = fingerprint_secret(SECRET, cost=ScryptCost(n=2**8, r=4, p=2))
    assert older.startswith("scrypt$n=256,r=4,p=2$")
    assert secret_matches(SECRET, older)


def test_the_cache_gives_one_fingerprint_per_secret_value() -> None:
    cache = FingerprintCache(cost=CHEAP)
    first = cache.fingerprint(SECRET)
    assert cache.fingerprint(SECRET) == first
    assert cache.fingerprint("another-secret") != first
    assert secret_matches(SECRET, first)


def test_the_cache_reuses_a_confirmed_fingerprint_so_the_state_file_does_not_churn() -> None:
    recorded = fingerprint_secret(SECRET, cost=CHEAP)
    cache = FingerprintCache(cost=CHEAP)
    assert cache.matches(SECRET, recorded)
    assert not cache.matches("changed-secret", recorded)
    assert cache.fingerprint(SECRET) == recorded
    assert cache.fingerprint("changed-secret") != recorded


def test_the_cache_never_shows_a_secret() -> None:
    cache = FingerprintCache(cost=CHEAP)
    cache.fingerprint(SECRET)
    assert SECRET not in repr(cache)
    assert all(SECRET not in repr(value) for value in vars(cache).values())


# --------------------------------------------------------------------------- the apply lock


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
    from reconciler.state import ApplyLock

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

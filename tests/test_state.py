"""The managed set and the file state store (reconciler.state)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from reconciler.errors import ConfigError, LockHeldError, StateError
from reconciler.fingerprints import Fingerprinter, ScryptCost, fingerprint_secret
from reconciler.lock import LockInfo, read_holder
from reconciler.models import WebhookKey
from reconciler.state import (
    MAX_STATE_BYTES,
    STATE_VERSION,
    FileStateStore,
    ManagedWebhook,
    State,
    StateStore,
    load_state,
    open_state_store,
    save_state,
)

# Cheap work factors: these tests are about behaviour, not about scrypt's cost.
CHEAP = ScryptCost(n=2**10, r=8, p=1)
SECRET = "whsec-Distinctive-7f3a9c-VALUE"
SALT = base64.b64encode(bytes(range(16))).decode().rstrip("=")

ONBOARDING = WebhookKey("default", "u6nXL7", "onboarding-intake")
LEGACY = WebhookKey("default", "u6nXL7", "legacy-zapier")
EU = WebhookKey("eu-clients", "Ab12", "crm")


def body(tag: str) -> dict[str, Any]:
    return {
        "url": f"https://hooks.example.com/{tag}",
        "enabled": True,
        "verify_ssl": True,
        "event_types": {"form_response": True, "form_response_partial": False},
    }


def entry(key: WebhookKey, *, fingerprint: str | None = None) -> ManagedWebhook:
    return ManagedWebhook(
        key=key,
        webhook_id=f"id-{key.tag}",
        applied_at="2026-01-02T03:04:05Z",
        applied=body(key.tag),
        source=f"manifests/{key.account}.yaml",
        secret_fingerprint=fingerprint,
    )


def sample_state() -> State:
    fingerprint = Fingerprinter(SALT, cost=CHEAP).fingerprint(SECRET)
    return (
        State(serial=4, fingerprint_salt=SALT)
        .with_applied(entry(EU))
        .with_applied(entry(ONBOARDING, fingerprint=fingerprint))
        .with_applied(entry(LEGACY))
    )


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


# --------------------------------------------------------------------------- State values


def test_with_applied_returns_a_new_state_and_leaves_the_old_one_unchanged() -> None:
    empty = State()
    one = empty.with_applied(entry(ONBOARDING))
    assert not empty.is_managed(ONBOARDING)
    assert one.is_managed(ONBOARDING)
    assert one.get(ONBOARDING) == entry(ONBOARDING)
    assert one.get(LEGACY) is None


def test_with_applied_replaces_the_entry_of_the_same_key() -> None:
    newer = ManagedWebhook(ONBOARDING, "id-2", "2026-02-01T00:00:00Z", {"url": "https://b.example"})
    state = State().with_applied(entry(ONBOARDING)).with_applied(newer)
    assert state.get(ONBOARDING) == newer
    assert len(state.webhooks) == 1


def test_new_states_keep_the_serial_and_the_fingerprint_salt() -> None:
    state = State(serial=7, fingerprint_salt=SALT)
    for changed in (state.with_applied(entry(EU)), state.with_applied(entry(EU)).without(EU)):
        assert (changed.serial, changed.fingerprint_salt) == (7, SALT)


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


def test_the_applied_body_is_a_read_only_copy() -> None:
    given = body("x")
    managed = ManagedWebhook(ONBOARDING, "id", "2026-01-01T00:00:00Z", given)
    given["url"] = "https://changed.example"
    given["event_types"]["form_response"] = False
    assert managed.url == "https://hooks.example.com/x"
    assert managed.applied is not None
    assert managed.applied["event_types"]["form_response"] is True
    with pytest.raises(TypeError):
        managed.applied["url"] = "https://evil.example"  # type: ignore[index]
    with pytest.raises(TypeError):
        managed.applied["event_types"]["form_response"] = False


def test_an_applied_body_with_a_secret_is_refused_without_showing_it() -> None:
    with pytest.raises(ValueError, match="must not hold a secret") as caught:
        ManagedWebhook(ONBOARDING, "id", "t", {"url": "https://a.example", "secret": SECRET})
    assert SECRET not in str(caught.value)


def test_url_reads_the_applied_body_and_is_none_when_unknown() -> None:
    assert entry(EU).url == "https://hooks.example.com/crm"
    assert ManagedWebhook(EU, "id", "t").url is None
    assert ManagedWebhook(EU, "id", "t", {"enabled": False}).url is None


# --------------------------------------------------------------------------- file format


def test_state_survives_a_round_trip_through_the_file(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    state = sample_state()
    save_state(path, state)
    assert load_state(path) == state


def test_state_file_is_version_2_with_serial_salt_and_entries_sorted(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    save_state(path, sample_state())
    doc = json.loads(path.read_text())
    assert STATE_VERSION == 2
    assert list(doc) == ["version", "serial", "fingerprint_salt", "webhooks"]
    assert (doc["version"], doc["serial"], doc["fingerprint_salt"]) == (2, 4, SALT)
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
        "applied_at": "2026-01-02T03:04:05Z",
        "applied": {
            "url": "https://hooks.example.com/legacy-zapier",
            "enabled": True,
            "verify_ssl": True,
            "event_types": {"form_response": True, "form_response_partial": False},
        },
        "source": "manifests/default.yaml",
        "secret_fingerprint": None,
    }
    assert doc["webhooks"][1]["secret_fingerprint"].startswith("v2$")


VERSION_1_FILE = """{
  "version": 1,
  "webhooks": [
    {
      "account": "default",
      "form_id": "u6nXL7",
      "tag": "onboarding-intake",
      "webhook_id": "01HZX3",
      "url": "https://hooks.example.com/onboarding",
      "applied_at": "2025-11-02T10:00:00Z",
      "secret_fingerprint": "%s"
    },
    {
      "account": "default",
      "form_id": "u6nXL7",
      "tag": "no-url",
      "webhook_id": "01HZX4",
      "url": null,
      "applied_at": "2025-11-02T10:00:00Z",
      "secret_fingerprint": null
    }
  ]
}
"""


def test_a_version_1_state_file_still_loads_and_its_fingerprints_still_verify(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.json"
    legacy_fingerprint = fingerprint_secret(SECRET, cost=CHEAP)
    path.write_text(VERSION_1_FILE % legacy_fingerprint)

    state = load_state(path)

    assert (state.serial, state.fingerprint_salt) == (0, None)
    onboarding = state.get(ONBOARDING)
    assert onboarding is not None
    assert onboarding.webhook_id == "01HZX3"
    assert onboarding.applied == {"url": "https://hooks.example.com/onboarding"}
    assert onboarding.url == "https://hooks.example.com/onboarding"
    assert onboarding.source is None
    no_url = state.get(WebhookKey("default", "u6nXL7", "no-url"))
    assert no_url is not None
    assert no_url.applied is None
    fingerprinter = Fingerprinter(state.fingerprint_salt, cost=CHEAP)
    assert onboarding.secret_fingerprint is not None
    assert fingerprinter.matches(SECRET, onboarding.secret_fingerprint)
    assert not fingerprinter.matches("other", onboarding.secret_fingerprint)


def test_a_version_1_state_file_is_saved_back_as_version_2(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text(VERSION_1_FILE % fingerprint_secret(SECRET, cost=CHEAP))
    store = FileStateStore(path)
    written = store.save(store.load())
    doc = json.loads(path.read_text())
    assert (doc["version"], doc["serial"], written.serial) == (2, 1, 1)
    by_tag = {w["tag"]: w for w in doc["webhooks"]}
    assert by_tag["onboarding-intake"]["applied"] == {"url": "https://hooks.example.com/onboarding"}
    assert by_tag["no-url"]["applied"] is None
    assert all("url" not in w for w in doc["webhooks"])
    assert load_state(path) == written


def test_saving_the_same_state_twice_writes_identical_bytes(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    save_state(path, sample_state())
    first = path.read_bytes()
    save_state(path, load_state(path))
    assert path.read_bytes() == first
    assert first.endswith(b"}\n")


def test_state_file_holds_the_fingerprint_but_never_the_secret(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    save_state(path, sample_state())
    raw = path.read_bytes()
    assert b"v2$" in raw
    assert SECRET.encode() not in raw
    assert base64.b64encode(SECRET.encode()).rstrip(b"=") not in raw


def test_the_saved_salt_lets_a_later_run_verify_the_saved_fingerprints(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    first_run = Fingerprinter(None, cost=CHEAP)
    state = State(fingerprint_salt=first_run.salt).with_applied(
        entry(ONBOARDING, fingerprint=first_run.fingerprint(SECRET))
    )
    FileStateStore(path).save(state)

    loaded = FileStateStore(path).load()
    later_run = Fingerprinter(loaded.fingerprint_salt, cost=CHEAP)
    saved = loaded.get(ONBOARDING)
    assert saved is not None
    assert saved.secret_fingerprint is not None
    assert later_run.matches(SECRET, saved.secret_fingerprint)
    assert not later_run.matches(SECRET + "!", saved.secret_fingerprint)


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
    assert names(tmp_path) == ["state.json"]


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
    unserialisable = ManagedWebhook(ONBOARDING, "id", "2026-01-01T00:00:00Z", {"url": object()})
    with pytest.raises(TypeError):
        save_state(path, State({ONBOARDING: unserialisable}))
    assert path.read_bytes() == before
    assert names(tmp_path) == ["state.json"]


def test_a_save_that_cannot_rename_cleans_up_and_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.mkdir()  # os.replace cannot put a file over a directory
    with pytest.raises(StateError, match=r"cannot write state file .*state\.json"):
        save_state(path, sample_state())
    assert names(tmp_path) == ["state.json"]


def test_save_keeps_the_permissions_of_an_existing_state_file(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    save_state(path, State())
    path.chmod(0o600)
    save_state(path, sample_state())
    assert path.stat().st_mode & 0o777 == 0o600


def test_a_state_file_that_is_a_symlink_stays_one_and_its_target_is_updated(
    tmp_path: Path,
) -> None:
    (tmp_path / "volume").mkdir()
    target = tmp_path / "volume" / "state.json"
    link = tmp_path / "state.json"
    link.symlink_to(target)
    store = FileStateStore(link)
    store.save(store.load().with_applied(entry(EU)))
    store.save(store.load().with_applied(entry(LEGACY)))
    assert link.is_symlink()
    assert load_state(target).managed_keys() == {EU, LEGACY}
    assert load_state(target).serial == 2
    assert names(tmp_path / "volume") == ["state.json"]


# --------------------------------------------------------------------------- hostile files

V2_ENTRY = '{"account": "a", "form_id": "f", "tag": "t", "webhook_id": "i", "applied_at": "x"%s}'


def v2(*, entry_extra: str = "", top: str = '"serial": 0, ') -> str:
    return '{"version": 2, ' + top + '"webhooks": [' + (V2_ENTRY % entry_extra) + "]}"


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ('{"version": 1, "webhooks": [', "invalid JSON at line 1"),
        ("[]", "expected a JSON object"),
        ('{"webhooks": []}', '"version" must be a positive integer'),
        ('{"version": "1", "webhooks": []}', '"version" must be a positive integer'),
        ('{"version": true, "webhooks": []}', '"version" must be a positive integer'),
        ('{"version": 1, "webhooks": {}}', '"webhooks" must be a list'),
        ('{"version": 1, "webhooks": [3]}', r"webhooks\[0\] must be an object"),
        ('{"version": 1, "webhooks": [{"account": "default"}]}', r"webhooks\[0\]\.form_id"),
        (
            '{"version": 1, "webhooks": [{"account": "a", "form_id": "f", "tag": "t", '
            '"webhook_id": "i", "applied_at": "x", "url": 3}]}',
            r"webhooks\[0\]\.url must be a string or null",
        ),
        ('{"version": 2, "webhooks": []}', '"serial" must be a non-negative integer'),
        ('{"version": 2, "serial": -1, "webhooks": []}', '"serial" must be a non-negative'),
        ('{"version": 2, "serial": 1.5, "webhooks": []}', '"serial" must be a non-negative'),
        ('{"version": 2, "serial": "3", "webhooks": []}', '"serial" must be a non-negative'),
        (v2(top='"serial": 0, "fingerprint_salt": 5, '), '"fingerprint_salt" must be base64'),
        (v2(top='"serial": 0, "fingerprint_salt": "short", '), '"fingerprint_salt" must be'),
        (v2(entry_extra=', "applied": []'), r"webhooks\[0\]\.applied must be an object or null"),
        (v2(entry_extra=', "applied": {"url": 3}'), r"webhooks\[0\]\.applied\.url must be"),
        (v2(entry_extra=', "applied": {"enabled": "yes"}'), r"applied\.enabled must be true"),
        (v2(entry_extra=', "applied": {"verify_ssl": 1}'), r"applied\.verify_ssl must be true"),
        (v2(entry_extra=', "applied": {"event_types": []}'), r"applied\.event_types must be an"),
        (
            v2(entry_extra=', "applied": {"event_types": {"form_response": 1}}'),
            r"applied\.event_types\.'form_response' must be true or false",
        ),
        (v2(entry_extra=', "applied": {"secret": "x"}'), r"applied must not hold a secret"),
        (v2(entry_extra=', "source": ["a"]'), r"webhooks\[0\]\.source must be a string or null"),
        (v2(entry_extra=', "secret_fingerprint": {}'), r"secret_fingerprint must be a string"),
        ("[" * 100_000, "nested too deeply"),
        ('{"version": 2, "serial": ' + "9" * 5000 + "}", "number too large"),
        ('{"version": 1, "webhooks": ["\\ud800"]}', r"webhooks\[0\] must be an object"),
    ],
)
def test_a_corrupt_state_file_is_refused_naming_the_file_and_the_problem(
    tmp_path: Path, content: str, problem: str
) -> None:
    path = tmp_path / "state.json"
    path.write_text(content)
    with pytest.raises(StateError, match=problem) as caught:
        load_state(path)
    message = str(caught.value)
    assert str(path) in message
    assert "restore it from git" in message
    assert len(message) < 400
    assert "\n" not in message


def test_a_corrupt_file_never_echoes_a_value_it_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text('{"version": "' + "x" * 10_000 + '", "webhooks": []}')
    with pytest.raises(StateError) as caught:
        load_state(path)
    assert len(str(caught.value)) < 400


def test_a_state_file_that_lists_a_webhook_twice_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    one = entry(ONBOARDING).to_json()
    path.write_text(json.dumps({"version": 2, "serial": 0, "webhooks": [one, one]}))
    with pytest.raises(StateError, match="listed twice"):
        load_state(path)


def test_a_state_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(b'{"version": 1, "webhooks": ["\xff"]}')
    with pytest.raises(StateError, match="not UTF-8"):
        load_state(path)


def test_a_state_file_larger_than_the_limit_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    with path.open("wb") as sparse:
        sparse.truncate(MAX_STATE_BYTES + 1)  # a sparse file: no disk space, no memory
    with pytest.raises(StateError, match="larger than 256 MiB"):
        load_state(path)


def test_a_directory_given_as_the_state_file_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.mkdir()
    with pytest.raises(StateError, match=r"cannot read state file .*state\.json: it is a dir"):
        load_state(path)


def test_a_fifo_given_as_the_state_file_is_refused_without_hanging(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    os.mkfifo(path)
    with pytest.raises(StateError, match="not a regular file"):
        load_state(path)


def test_a_state_file_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"version": STATE_VERSION + 1, "webhooks": []}))
    with pytest.raises(StateError, match="newer typeform-reconciler") as caught:
        load_state(path)
    assert str(path) in str(caught.value)
    assert "upgrade" in str(caught.value)


CORRUPT_STATE_CLI = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from reconciler.errors import ReconcileError
    from reconciler.state import FileStateStore

    try:
        FileStateStore(Path(sys.argv[1])).load()
    except ReconcileError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        sys.exit(1)
    """
)


def test_a_deeply_nested_state_file_is_a_clean_error_in_a_fresh_process(tmp_path: Path) -> None:
    # In a fresh interpreter the recursion limit is the default one, as in the real CLI.
    path = tmp_path / "state.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    done = subprocess.run(
        [sys.executable, "-c", CORRUPT_STATE_CLI, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "nested too deeply" in done.stderr


# --------------------------------------------------------------------------- the file store


def test_a_file_store_is_a_state_store_named_by_its_path(tmp_path: Path) -> None:
    store = FileStateStore(tmp_path / "state.json")
    assert isinstance(store, StateStore)
    assert store.location == str(tmp_path / "state.json")


def test_each_save_increments_the_serial_and_returns_what_it_wrote(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    store = FileStateStore(path)
    loaded = store.load()
    assert loaded.serial == 0
    first = store.save(loaded.with_applied(entry(EU)))
    assert first.serial == 1
    assert load_state(path) == first
    # The applier keeps building on the state it started from: its serial is the loaded one.
    second = store.save(loaded.with_applied(entry(EU)).with_applied(entry(LEGACY)))
    assert second.serial == 2
    third = store.save(second.without(EU))
    assert third.serial == 3
    assert load_state(path) == third
    assert FileStateStore(path).load().serial == 3


def test_a_save_after_another_process_wrote_the_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    mine, theirs = FileStateStore(path), FileStateStore(path)
    state = mine.load()
    theirs.save(theirs.load().with_applied(entry(LEGACY)))
    with pytest.raises(StateError, match="changed under this run") as caught:
        mine.save(state.with_applied(entry(EU)))
    assert str(path) in str(caught.value)
    assert load_state(path).managed_keys() == {LEGACY}


def test_a_save_is_refused_when_the_file_was_replaced_by_hand(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.json"
    store = FileStateStore(path)
    store.save(store.load())
    save_state(path, State(serial=5))  # someone restored an older or foreign file
    with pytest.raises(
        StateError, match=r"changed under this run \(serial 5, this run read serial 1\)"
    ):
        store.save(State(serial=1))


def test_a_store_that_did_not_load_checks_the_serial_of_the_state_it_saves(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.json"
    save_state(path, State(serial=3))
    with pytest.raises(StateError, match="changed under this run"):
        FileStateStore(path).save(State(serial=2))
    assert FileStateStore(path).save(State(serial=3)).serial == 4


def test_a_state_file_deleted_during_the_run_is_not_silently_recreated(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    store = FileStateStore(path)
    store.save(store.load().with_applied(entry(EU)))
    path.unlink()
    with pytest.raises(StateError, match="changed under this run"):
        store.save(State().with_applied(entry(LEGACY)))


def test_a_failed_store_save_keeps_the_old_file_and_the_known_serial(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    store = FileStateStore(path)
    state = store.save(store.load().with_applied(entry(EU)))
    before = path.read_bytes()
    bad = ManagedWebhook(LEGACY, "id", "t", {"url": object()})
    with pytest.raises(TypeError):
        store.save(state.with_applied(bad))
    assert path.read_bytes() == before
    assert store.save(state).serial == 2


def test_the_store_lock_names_this_process_and_refuses_a_second_holder(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    store = FileStateStore(path)
    with store.lock(command="apply") as info:
        assert isinstance(info, LockInfo)
        assert info.holder.pid == os.getpid()
        assert info.holder.command == "apply"
        assert info.previous_holder is None
        assert read_holder(path) == info.holder
        with (
            pytest.raises(LockHeldError, match=rf"locked by pid {os.getpid()}"),
            FileStateStore(path).lock(command="watch --heal"),
        ):
            pass
    assert read_holder(path) is None
    with store.lock(command="apply", timeout=1):
        pass


def test_check_writable_accepts_a_new_file_in_new_directories_and_creates_nothing(
    tmp_path: Path,
) -> None:
    FileStateStore(tmp_path / "a" / "b" / "state.json").check_writable()
    FileStateStore(tmp_path / "state.json").check_writable()
    assert names(tmp_path) == []


def test_check_writable_refuses_a_path_under_a_regular_file(tmp_path: Path) -> None:
    (tmp_path / "ci").write_text("not a directory")
    store = FileStateStore(tmp_path / "ci" / "state.json")
    with pytest.raises(StateError, match=r"cannot write state file .*: .*ci is not a directory"):
        store.check_writable()
    with pytest.raises(StateError, match="nothing was applied"):
        FileStateStore(tmp_path / "ci" / "deeper" / "state.json").check_writable()


def test_check_writable_refuses_a_directory_and_a_symlink_loop(tmp_path: Path) -> None:
    (tmp_path / "state.json").mkdir()
    with pytest.raises(StateError, match="is a directory"):
        FileStateStore(tmp_path / "state.json").check_writable()
    (tmp_path / "a").symlink_to("b")
    (tmp_path / "b").symlink_to("a")
    with pytest.raises(StateError, match="Too many levels of symbolic links"):
        FileStateStore(tmp_path / "a").check_writable()


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into any directory")
def test_check_writable_refuses_a_directory_without_write_permission(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        with pytest.raises(StateError, match="cannot create files in"):
            FileStateStore(locked / "state.json").check_writable()
        with pytest.raises(StateError, match="cannot create directories in"):
            FileStateStore(locked / "sub" / "state.json").check_writable()
    finally:
        locked.chmod(0o755)


# --------------------------------------------------------------------------- open_state_store


def test_a_path_opens_a_file_store(tmp_path: Path) -> None:
    for spec in (tmp_path / "s.json", str(tmp_path / "s.json"), "relative/state.json"):
        store = open_state_store(spec)
        assert isinstance(store, FileStateStore)
        assert store.location == str(spec)


def test_a_postgresql_url_opens_a_postgres_store_that_never_shows_the_password() -> None:
    pytest.importorskip("psycopg")
    from reconciler.state_postgres import PostgresStateStore

    for spec in ("postgresql://ci:hunter2@db/reconcile", "postgres://ci:hunter2@db/x"):
        store = open_state_store(spec)  # does not connect
        assert isinstance(store, PostgresStateStore)
        assert "hunter2" not in repr(store) + store.location


def test_an_unknown_state_backend_or_an_empty_spec_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown state backend 's3'") as caught:
        open_state_store("s3://bucket:secretkey@x/state.json")
    assert "secretkey" not in str(caught.value)
    with pytest.raises(ConfigError, match="empty"):
        open_state_store("  ")


def test_replace_of_a_state_keeps_it_read_only() -> None:
    state = replace(State(), fingerprint_salt=SALT, webhooks={EU: entry(EU)})
    with pytest.raises(TypeError):
        state.webhooks[LEGACY] = entry(LEGACY)  # type: ignore[index]

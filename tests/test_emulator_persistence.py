"""``emulator:PATH``: the in-process emulator keeps one account across handles and processes."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import FakeClock

from reconciler.emulator import (
    EMULATOR_BASE_URL,
    EmulatorStore,
    StoreFile,
    configure,
    emulator_path,
    is_emulator_url,
    open_emulator,
)
from reconciler.emulator.store import WebhookChange
from reconciler.errors import ConfigError

pytestmark = pytest.mark.anyio

SECRET = "persisted-secret-must-not-be-on-disk"


def test_emulator_urls_are_recognised_and_default_to_the_reconcile_dir() -> None:
    assert is_emulator_url("emulator:")
    assert is_emulator_url("emulator:/tmp/x.json")
    assert not is_emulator_url("https://api.typeform.com")
    assert emulator_path("emulator:") == Path(".reconcile/emulator.json")
    assert emulator_path("emulator:state/e.json") == Path("state/e.json")


async def test_first_use_creates_and_seeds_the_file_with_its_directories(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "dir" / "emulator.json"
    emu = open_emulator(f"emulator:{path}")
    assert emu.base_url == EMULATOR_BASE_URL
    async with emu.client() as client:
        forms = (await client.get("/forms")).json()
    assert forms["total_items"] == 7
    assert path.exists()
    assert json.loads(path.read_text())["format_version"] == 1


async def test_no_token_is_needed_in_process(emulator_url: str) -> None:
    async with open_emulator(emulator_url).client() as client:
        assert (await client.get("/forms")).status_code == 200


async def test_a_write_is_on_disk_before_the_response_returns(emulator_url: str) -> None:
    emu = open_emulator(emulator_url)
    async with emu.client() as client:
        await client.put(
            "/forms/kyc0001/webhooks/t",
            json={"url": "https://h.example/t", "secret": SECRET},
        )
        on_disk = EmulatorStore.load(emu.path)
    assert ("kyc0001", "t") in on_disk.webhooks
    assert SECRET not in emu.path.read_text()
    leftovers = [p.name for p in emu.path.parent.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


async def test_two_handles_on_one_path_see_each_others_writes(emulator_url: str) -> None:
    first, second = open_emulator(emulator_url), open_emulator(emulator_url)
    async with first.client() as a, second.client() as b:
        await a.put("/forms/kyc0001/webhooks/t", json={"url": "https://h.example/t"})
        seen = await b.get("/forms/kyc0001/webhooks/t")
        await b.delete("/forms/kyc0001/webhooks/t")
        gone = await a.get("/forms/kyc0001/webhooks/t")
    assert seen.status_code == 200
    assert gone.status_code == 404


async def test_configured_rate_is_obeyed_in_process(tmp_path: Path) -> None:
    path = tmp_path / "emulator.json"
    configure(path, rate=1.0, burst=1)
    clock = FakeClock()
    async with open_emulator(f"emulator:{path}", clock=clock).client() as client:
        first = await client.get("/forms")
        second = await client.get("/forms")
    assert (first.status_code, second.status_code) == (200, 429)
    assert second.headers["Retry-After"] == "1"


async def test_a_consumed_scripted_fault_stays_consumed_in_the_next_run(tmp_path: Path) -> None:
    path = tmp_path / "emulator.json"
    configure(path, rate=1000, faults={"script": [{"method": "PUT", "count": 1}]})
    async with open_emulator(f"emulator:{path}").client() as client:
        failed = await client.put("/forms/kyc0001/webhooks/t", json={"url": "https://h.example"})
    async with open_emulator(f"emulator:{path}").client() as client:
        worked = await client.put("/forms/kyc0001/webhooks/t", json={"url": "https://h.example"})
    assert (failed.status_code, worked.status_code) == (503, 200)


async def test_a_drop_fault_in_process_raises_remote_protocol_error(tmp_path: Path) -> None:
    path = tmp_path / "emulator.json"
    configure(path, rate=1000, faults={"script": [{"method": "GET", "action": "drop"}]})
    async with open_emulator(f"emulator:{path}").client() as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get("/forms")


def test_a_settings_only_file_starts_from_the_demo_seed(tmp_path: Path) -> None:
    path = tmp_path / "emulator.json"
    path.write_text(json.dumps({"settings": {"rate": 50}}))
    store = EmulatorStore.load(path)
    assert store.settings.rate == 50.0
    assert store.settings.burst == 50
    assert "onbrd01" in store.forms


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"format_version": 99}', "format_version"),
        ('{"settings": {"rate": -1}}', "settings.rate"),
    ],
)
def test_an_unreadable_state_file_is_a_config_error_naming_it(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "broken.json"
    path.write_text(content)
    with pytest.raises(ConfigError) as err:
        open_emulator(f"emulator:{path}")
    assert str(path) in str(err.value)
    assert message in str(err.value)


_SCRIPT = textwrap.dedent(
    """
    import asyncio, json, sys
    from reconciler.emulator import open_emulator

    async def main(url, action):
        async with open_emulator(url).client() as client:
            if action == "write":
                body = {"url": "https://h.example/kickoff", "enabled": True, "secret": sys.argv[3]}
                r = await client.put("/forms/onbrd03/webhooks/kickoff", json=body)
            else:
                r = await client.get("/forms/onbrd03/webhooks/kickoff")
            print(json.dumps({"status": r.status_code, "body": r.json()}))

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


def test_state_survives_between_two_processes(emulator_url: str, emulator_path: Path) -> None:
    def run(action: str) -> dict[str, object]:
        done = subprocess.run(
            [sys.executable, "-c", _SCRIPT, emulator_url, action, SECRET],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert SECRET not in done.stdout + done.stderr
        result: dict[str, object] = json.loads(done.stdout)
        return result

    written = run("write")
    read = run("read")
    assert written["status"] == 200
    assert read == written
    assert SECRET not in emulator_path.read_text()


# --------------------------------------------------------------------------- the journal


def _journal(path: Path) -> Path:
    return path.with_name(path.name + ".journal")


def _put(handle: StoreFile, tag: str, url: str = "https://h.example/x", **extra: Any) -> None:
    handle.store.put_webhook("kyc0001", tag, WebhookChange(url=url, **extra))
    handle.flush()


def test_a_write_appends_one_line_and_leaves_the_snapshot_alone(tmp_path: Path) -> None:
    path = tmp_path / "emulator.json"
    handle = StoreFile.open(path)
    snapshot = path.read_bytes()
    _put(handle, "t", secret=SECRET)
    handle.store.delete_webhook("onbrd01", "legacy-zapier")
    handle.flush()
    lines = _journal(path).read_text().splitlines()
    assert path.read_bytes() == snapshot
    assert [json.loads(line)["op"] for line in lines] == ["put", "delete"]
    assert SECRET not in _journal(path).read_text()
    reread = EmulatorStore.load(path)
    assert ("kyc0001", "t") in reread.webhooks
    assert ("onbrd01", "legacy-zapier") not in reread.webhooks


def test_closing_compacts_the_journal_into_the_snapshot_with_the_stats(tmp_path: Path) -> None:
    path = tmp_path / "emulator.json"
    handle = StoreFile.open(path)
    _put(handle, "t")
    handle.store.stats.count("GET /forms", 200)
    handle.close()
    assert not _journal(path).exists()
    data = json.loads(path.read_text())
    assert "t" in {w["tag"] for w in data["webhooks"]}
    assert data["stats"]["total"] == 1


def test_a_half_written_last_line_is_ignored_and_never_merged_with_the_next(
    tmp_path: Path,
) -> None:
    path = tmp_path / "emulator.json"
    handle = StoreFile.open(path)
    _put(handle, "first")
    with _journal(path).open("ab") as journal:
        journal.write(b'{"g":"x","op":"put","webhook":{"id":"cut-sh')  # a crash mid-write
    assert ("kyc0001", "first") in EmulatorStore.load(path).webhooks
    _put(handle, "second")  # appended after the torn line, on a line of its own
    reread = EmulatorStore.load(path)
    assert {("kyc0001", "first"), ("kyc0001", "second")} <= set(reread.webhooks)


def test_a_leftover_journal_is_compacted_when_the_file_is_next_opened(tmp_path: Path) -> None:
    path = tmp_path / "emulator.json"
    crashed = StoreFile.open(path)
    _put(crashed, "t")  # and never closed
    assert _journal(path).exists()
    reopened = open_emulator(f"emulator:{path}")
    assert ("kyc0001", "t") in reopened.store.webhooks
    assert not _journal(path).exists()
    assert "kyc0001" in path.read_text()


def test_journal_lines_from_before_the_last_snapshot_are_never_replayed(tmp_path: Path) -> None:
    path = tmp_path / "emulator.json"
    handle = StoreFile.open(path)
    _put(handle, "t", url="https://h.example/old")
    stale = _journal(path).read_bytes()
    _put(handle, "t", url="https://h.example/new")
    handle.close()
    # A compaction that crashed after writing the snapshot, before removing the journal.
    _journal(path).write_bytes(stale)
    assert EmulatorStore.load(path).webhooks[("kyc0001", "t")].url == "https://h.example/new"


def test_the_journal_is_compacted_once_it_outgrows_the_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "emulator.json"
    handle = StoreFile.open(path, compact_at=0)
    compactions = 0
    for i in range(60):
        before = path.stat().st_ino
        _put(handle, f"t{i}", url=f"https://h.example/{'x' * 200}/{i}")
        compactions += path.stat().st_ino != before
        journal = _journal(path).stat().st_size if _journal(path).exists() else 0
        assert journal <= path.stat().st_size
    assert 1 <= compactions < 10  # the snapshot grows, so compactions get rarer
    assert len(EmulatorStore.load(path).list_webhooks("kyc0001")) == 60


def test_a_malformed_journal_entry_is_a_config_error_naming_the_journal(tmp_path: Path) -> None:
    path = tmp_path / "emulator.json"
    handle = StoreFile.open(path)
    _put(handle, "t")
    generation = json.loads(path.read_text())["generation"]
    with _journal(path).open("a") as journal:
        journal.write(json.dumps({"g": generation, "op": "explode"}) + "\n")
    with pytest.raises(ConfigError) as err:
        open_emulator(f"emulator:{path}")
    assert str(_journal(path)) in str(err.value)
    assert "explode" in str(err.value)


async def test_another_handles_compaction_is_picked_up_before_the_next_request(
    emulator_url: str,
) -> None:
    first = open_emulator(emulator_url)
    async with first.client() as a:
        await a.put("/forms/kyc0001/webhooks/t", json={"url": "https://h.example/t"})
        second = open_emulator(emulator_url)  # compacts the journal the first one wrote
        async with second.client() as b:
            await b.put("/forms/kyc0001/webhooks/u", json={"url": "https://h.example/u"})
        both = (await a.get("/forms/kyc0001/webhooks")).json()["items"]
        await a.delete("/forms/kyc0001/webhooks/t")
    assert [h["tag"] for h in both] == ["t", "u"]
    assert [h.tag for h in open_emulator(emulator_url).store.list_webhooks("kyc0001")] == ["u"]


async def test_requests_counted_by_a_read_only_session_are_kept_for_the_next(
    emulator_url: str,
) -> None:
    async with open_emulator(emulator_url).client() as client:
        await client.get("/forms")
        await client.get("/forms/onbrd01/webhooks")
    stats = open_emulator(emulator_url).store.stats.to_json()
    assert stats["total"] == 2
    assert stats["routes"]["GET /forms"] == {"200": 1}

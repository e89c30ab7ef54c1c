"""Crash safety: ``reconcile apply`` SIGKILLed at random points leaves nothing broken behind.

SIGKILL cannot be handled: no ``finally`` runs, no lock is released by our code, the state and
records are whatever was on disk at that instant. Each trial runs ``python -m reconciler apply
--auto-approve`` in a subprocess against a persisted emulator slowed by 150 ms per request (the
emulator runs inside the killed process, so a write "landed" exactly when the emulator's journal
has it), kills it after a seeded random delay, and then checks:

* the state file, if any, is valid JSON that ``FileStateStore.load()`` accepts;
* the records file parses (a torn last line, the one write a kill can cut, is tolerated);
* the lock is not held: a stale holder file may remain, and the next apply takes it over;
* the next ``plan --format json`` is exactly the remaining work: a create for each webhook that
  did not land, the delete if it did not land, and nothing for what landed, recorded or not
  (landed-but-unrecorded webhooks are adopted);
* that apply converges, and ``plan --detailed-exitcode`` exits 0 after it.

Kill points are seeded: a third fall anywhere in start-up and refresh, the rest a random moment
after the Nth record (between a write landing and its record, or mid state save).
``CRASH_TRIALS`` (default 3) sets the number of trials; ``tests/benchmarks/bench_crash.py`` runs
50 with the same ``crash_trial``.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.emulator import configure, open_emulator
from reconciler.lock import LockStatus, inspect_lock
from reconciler.records import read_records
from reconciler.state import FileStateStore

FORMS = ("onbrd01", "onbrd02", "onbrd03", "kyc0001", "fdbk001", "nwsl001", "evnt001")
DELETED = ("onbrd01", "legacy-zapier")
TAG = "intake"
LATENCY_MS = 150
SEED = 20250301


@dataclass(frozen=True)
class KillPoint:
    """Kill once the records file holds ``after_records`` lines, ``delay`` seconds later: with
    0 lines, anywhere in start-up and refresh; later, between a write and its record too."""

    after_records: int
    delay: float

    def __str__(self) -> str:
        return f"{self.after_records}rec+{self.delay:.3f}s"


@dataclass(frozen=True)
class Trial:
    """What one trial saw: when it killed, and how much had landed by then."""

    kill_after: float
    """Seconds from the start of the apply to the kill."""
    finished_first: bool
    landed: int
    recorded: int
    adopted: int
    torn_records: bool


def write_manifests(root: Path) -> None:
    hooks: list[dict[str, Any]] = [
        {"form_id": form, "tag": TAG, "url": f"https://hooks.example.com/{form}"} for form in FORMS
    ]
    hooks.append({"form_id": DELETED[0], "tag": DELETED[1], "state": "absent"})
    doc = {
        "apiVersion": "reconciler/v1",
        "kind": "WebhookSet",
        "metadata": {"name": "crash"},
        "spec": {"webhooks": hooks},
    }
    (root / "manifests").mkdir(exist_ok=True)
    (root / "manifests" / "crash.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")


def _reconcile(root: Path, *args: str) -> list[str]:
    api = ["--api-url", f"emulator:{root / 'emu.json'}", "--state", str(root / "state.json")]
    return [sys.executable, "-m", "reconciler", *args, "manifests", *api, "--rate", "1000"]


def _run(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("TYPEFORM_TOKEN", "RECONCILE_STATE")}
    return subprocess.run(
        _reconcile(root, *args), cwd=root, env=env, capture_output=True, text=True, timeout=60
    )


def read_records_tolerantly(path: Path) -> tuple[list[dict[str, Any]], bool]:
    """The records, and whether the last line was torn (cut by the kill: tolerated)."""
    if not path.exists():
        return [], False
    raw = path.read_bytes()
    if raw and not raw.endswith(b"\n"):
        whole = raw[: raw.rfind(b"\n") + 1]
        torn = path.with_name(path.name + ".whole")
        torn.write_bytes(whole)
        try:
            return read_records(torn), True
        finally:
            torn.unlink()
    return read_records(path), False


def _live_keys(root: Path) -> set[tuple[str, str]]:
    """What landed: the emulator's account as its snapshot and journal hold it."""
    return set(open_emulator(f"emulator:{root / 'emu.json'}").store.webhooks)


def _record_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def crash_trial(root: Path, point: KillPoint) -> Trial:
    """One apply SIGKILLed at ``point``, and every check after it.

    Raises ``AssertionError`` naming what broke.
    """
    write_manifests(root)
    configure(root / "emu.json", rate=1000.0, burst=1000, faults={"latency_ms": LATENCY_MS})
    records_path = root / ".reconcile" / "records.jsonl"
    started = time.monotonic()
    proc = subprocess.Popen(
        _reconcile(root, "apply", "--auto-approve"),
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = started + 30
    while _record_lines(records_path) < point.after_records and proc.poll() is None:
        assert time.monotonic() < deadline, "the apply made no progress in 30 s"
        time.sleep(0.002)
    time.sleep(point.delay)
    finished_first = proc.poll() is not None
    if not finished_first:
        proc.send_signal(signal.SIGKILL)
    kill_after = time.monotonic() - started
    proc.wait(timeout=30)

    state_path = root / "state.json"
    owned: dict[tuple[str, str], str] = {}
    if state_path.exists():
        json.loads(state_path.read_text(encoding="utf-8"))  # valid JSON, whole
        state = FileStateStore(state_path).load()
        owned = {(k.form_id, k.tag): m.webhook_id for k, m in state.webhooks.items()}
    records, torn = read_records_tolerantly(records_path)
    lock = inspect_lock(state_path)
    assert lock.status is not LockStatus.HELD, f"the lock is still held after the kill: {lock}"

    configure(root / "emu.json", faults={})
    live = _live_keys(root)
    declared = {(form, TAG) for form in FORMS}
    for record in records:
        key = (record["form_id"], record["tag"])
        if record["success"] and record["operation"] == "create":
            assert key in live, f"a success record for a create that did not land: {key}"
        if record["success"] and record["operation"] == "delete":
            assert key not in live, f"a success record for a delete that did not land: {key}"
    assert set(owned) <= live, f"the state owns webhooks that are not live: {set(owned) - live}"

    planned = _run(root, "plan", "--format", "json")
    assert planned.returncode == 0, planned.stderr
    doc = json.loads(planned.stdout)
    work = {(a["action"], a["form_id"], a["tag"]) for a in doc["actions"] if a["action"] != "noop"}
    expected = {("create", f, t) for f, t in declared - live}
    if DELETED in live:
        expected.add(("delete", *DELETED))
    assert work == expected, f"the plan after the kill is not the remaining work: {work ^ expected}"

    applied = _run(root, "apply", "--auto-approve")
    assert applied.returncode == 0, f"the apply after the kill failed: {applied.stderr[-800:]}"
    assert "Traceback" not in applied.stderr
    final = FileStateStore(state_path).load()
    final_keys = {(k.form_id, k.tag) for k in final.webhooks}
    assert final_keys == declared
    again = _run(root, "plan", "--detailed-exitcode")
    assert again.returncode == 0, again.stdout + again.stderr
    assert inspect_lock(state_path).status is LockStatus.FREE

    landed = len(live & declared) + (DELETED not in live)
    return Trial(
        kill_after=kill_after,
        finished_first=finished_first,
        landed=landed,
        recorded=sum(1 for r in records if r["success"]),
        adopted=len((live & declared) - set(owned)),
        torn_records=torn,
    )


def kill_points(trials: int, seed: int = SEED) -> list[KillPoint]:
    """Seeded kill points: a third in start-up and refresh, the rest among the writes."""
    rng = random.Random(seed)
    points: list[KillPoint] = []
    for _ in range(trials):
        after = rng.choice([0, *range(1, len(FORMS) + 1)]) if rng.random() > 1 / 3 else 0
        delay = rng.uniform(0.0, 1.0) if after == 0 else rng.uniform(0.0, LATENCY_MS / 1000)
        points.append(KillPoint(after, round(delay, 3)))
    return points


TRIALS = int(os.environ.get("CRASH_TRIALS", "3"))


@pytest.mark.parametrize("point", kill_points(TRIALS), ids=str)
def test_an_apply_killed_at_a_random_point_leaves_valid_files_a_free_lock_and_the_rest_to_do(
    tmp_path: Path, point: KillPoint
) -> None:
    crash_trial(tmp_path, point)


def test_an_apply_killed_before_its_first_write_leaves_all_the_work_for_the_next_plan(
    tmp_path: Path,
) -> None:
    trial = crash_trial(tmp_path, KillPoint(0, 0.05))

    assert not trial.finished_first
    assert trial.landed == 0

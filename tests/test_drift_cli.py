"""``reconcile drift`` and ``reconcile watch`` end to end against the emulator.

Statuses and causes are provoked the way they happen: someone changes a webhook in Typeform
(``put_live`` / ``delete_live``, another token), or the manifests change and are not applied.
What ``drift`` says is checked against that, and the emulator's statistics prove it only read.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from typing import Any

import anyio
import pytest
from cli_harness import COMPANY, INTAKE, SECRET, SECRET_ENV, Reconcile

from reconciler.emulator import configure, open_emulator
from reconciler.manifests import load_desired
from reconciler.pipeline import ApplyOptions, CycleOptions, Run, Settings, cycle
from reconciler.state import FileStateStore
from reconciler.transports import default_resolver
from reconciler.watch import HealLimiter


def delete_live(cli: Reconcile, form_id: str, tag: str) -> None:
    async def delete() -> None:
        async with open_emulator(cli.url).client(headers={"Authorization": "Bearer x"}) as c:
            assert (await c.delete(f"/forms/{form_id}/webhooks/{tag}")).status_code in (200, 204)

    anyio.run(delete)


def drift(cli: Reconcile, *args: str) -> tuple[int, dict[str, Any]]:
    result = cli("drift", "--format", "json", *args)
    assert result.code in (0, 2), result.err
    doc: dict[str, Any] = result.json()
    return result.code, doc


def rows(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f"{w['form_id']}/{w['tag']}": w for w in doc["webhooks"]}


@pytest.fixture
def applied(cli: Reconcile) -> Reconcile:
    cli.write_set("onboarding", [INTAKE, COMPANY], secret=False)
    cli.apply_ok()
    return cli


def test_in_sync_after_apply_exits_0_and_lists_unmanaged_without_failing(
    applied: Reconcile,
) -> None:
    code, doc = drift(applied)
    assert code == 0
    assert doc["in_sync"] is True
    assert doc["summary"] == {
        "in_sync": 2,
        "drifted": 0,
        "missing": 0,
        "unmanaged": 2,
        "heal_suspended": 0,
    }
    assert all(w["last_checked"] == doc["checked_at"] for w in doc["webhooks"])
    assert applied("drift", "--fail-on-unmanaged").code == 2


def test_a_webhook_disabled_in_typeform_is_drift_changed_outside_naming_the_receiver(
    applied: Reconcile,
) -> None:
    applied.put_live("onbrd01", "intake", {"enabled": False})

    code, doc = drift(applied)

    assert code == 2
    row = rows(doc)["onbrd01/intake"]
    assert (row["status"], row["cause"]) == ("drifted", "changed_outside")
    assert [c["field"] for c in row["changes"]] == ["enabled"]
    assert any("404 or 410" in i and INTAKE["url"] in i for i in row["issues"])
    text = applied("drift")
    assert text.code == 2
    assert text.out.splitlines()[0].startswith("Drift: 1 drifted")


def test_a_manifest_change_not_applied_yet_is_cause_not_applied(applied: Reconcile) -> None:
    applied.write_set(
        "onboarding", [{**INTAKE, "url": "https://hooks.example.com/v2"}, COMPANY], secret=False
    )
    code, doc = drift(applied)
    assert code == 2
    assert rows(doc)["onbrd01/intake"]["cause"] == "not_applied"


def test_both_sides_changed_is_cause_both(applied: Reconcile) -> None:
    applied.write_set(
        "onboarding", [{**INTAKE, "url": "https://hooks.example.com/v2"}, COMPANY], secret=False
    )
    applied.put_live("onbrd01", "intake", {"url": "https://elsewhere.example.net/x"})
    _, doc = drift(applied)
    assert rows(doc)["onbrd01/intake"]["cause"] == "both"


def test_a_webhook_deleted_outside_is_missing_changed_outside(applied: Reconcile) -> None:
    delete_live(applied, "onbrd02", "company")
    code, doc = drift(applied)
    assert code == 2
    row = rows(doc)["onbrd02/company"]
    assert (row["status"], row["cause"]) == ("missing", "changed_outside")


def test_a_webhook_never_applied_is_missing_with_cause_unknown(cli: Reconcile) -> None:
    cli.write_set("onboarding", [INTAKE], secret=False)
    code, doc = drift(cli)
    assert code == 2
    row = rows(doc)["onbrd01/intake"]
    assert (row["status"], row["cause"]) == ("missing", "unknown")


def test_drift_only_reads_and_a_read_only_token_is_enough(
    cli: Reconcile, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli.write_set("onboarding", [INTAKE, COMPANY], secret=False)
    cli.apply_ok()
    cli.put_live("onbrd01", "intake", {"enabled": False})
    configure(
        cli.emulator_path,
        tokens={"tf-read-only-token": {"account": "default", "scopes": ["webhooks:read"]}},
    )
    monkeypatch.setenv("TYPEFORM_TOKEN", "tf-read-only-token")
    before = cli.requests()

    result = cli("drift", "--report", str(cli.root / "report.json"))

    assert result.code == 2, result.err
    after = cli.requests()
    new = {
        route: {code: n - before.get(route, {}).get(code, 0) for code, n in codes.items()}
        for route, codes in after.items()
    }
    sent = {route for route, codes in new.items() if any(codes.values())}
    assert sent == {"GET /forms/{form_id}/webhooks"}
    report = json.loads((cli.root / "report.json").read_text())
    assert report["summary"]["drifted"] == 1
    assert "tf-read-only-token" not in result.out + result.err
    assert cli("apply", "--auto-approve").code == 1  # the same token cannot write


def test_watch_once_heal_corrects_drift_and_then_drift_is_0(applied: Reconcile) -> None:
    applied.put_live("onbrd01", "intake", {"enabled": False})
    reports = applied.root / "reports"

    healed = applied("watch", "--once", "--heal", "--report-dir", str(reports))

    assert healed.code == 0, healed.err
    assert "Healed 1" in healed.err
    latest = json.loads((reports / "latest.json").read_text())
    assert latest["summary"]["drifted"] == 1  # what the cycle found, before healing it
    assert drift(applied)[0] == 0
    assert [r["operation"] for r in applied.records_lines()][-1] == "update"


def test_the_heal_limit_suspends_a_webhook_that_keeps_getting_disabled(
    applied: Reconcile, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TYPEFORM_API_URL", applied.url)
    limiter = HealLimiter(2, clock=lambda: 0.0)
    desired = load_desired([str(applied.manifests)], environ={})
    writes: list[str] = []

    def one_cycle() -> Any:
        run = Run(
            store=FileStateStore(applied.state),
            settings=Settings(api_url=applied.url, rate=1000.0),
            endpoints=default_resolver({}),
        )
        apply = ApplyOptions(auto_approve=True, records=applied.records)
        options = CycleOptions(heal=True, limiter=limiter, apply=apply)
        return anyio.run(cycle, run, desired, options)

    for _ in range(4):  # the receiver answers 404 each time: Typeform disables it again
        applied.put_live("onbrd01", "intake", {"enabled": False})
        result = one_cycle()
        writes += [str(r.key) for r in (result.healed.rows if result.healed else ())]

    assert writes == ["onbrd01/intake", "onbrd01/intake"]  # healed twice, then left alone
    row = next(w for w in result.report.webhooks if str(w.key) == "onbrd01/intake")
    assert row.heal_suspended
    assert result.report.to_json()["summary"]["heal_suspended"] == 1
    assert applied.live()["onbrd01/intake"]["enabled"] is False


def _scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_watch_survives_an_outage_marks_the_report_stale_and_stops_cleanly_on_sigterm(
    applied: Reconcile,
) -> None:
    reports = applied.root / "reports"
    port = _free_port()
    env = {**os.environ, SECRET_ENV: SECRET}
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "reconciler", "watch", str(applied.manifests),
            "--api-url", applied.url, "--state", str(applied.state), "--rate", "1000",
            "--interval", "0.3s", "--report-dir", str(reports), "--metrics-port", str(port),
            "--log-format", "json",
        ],
        cwd=applied.root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        latest = reports / "latest.json"
        _wait_for(lambda: latest.exists() and not json.loads(latest.read_text())["stale"])
        fresh = _wait_for_metric(port, "reconcile_last_success_timestamp_seconds")

        configure(applied.emulator_path, faults={"error_rate": 1.0, "error_status": 503})
        _wait_for(lambda: json.loads(latest.read_text())["stale"] is True)
        stale_at = _scrape(port)["reconcile_last_success_timestamp_seconds"]
        time.sleep(1.0)
        assert _scrape(port)["reconcile_last_success_timestamp_seconds"] == stale_at
        assert stale_at >= fresh
        assert proc.poll() is None  # the outage did not stop it

        configure(applied.emulator_path, faults={})
        _wait_for(lambda: json.loads(latest.read_text())["stale"] is False, timeout=30)
        assert _scrape(port)["reconcile_last_success_timestamp_seconds"] > stale_at
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    # --log-format json: every line on stderr is one JSON object, for schedulers.
    events = [json.loads(line) for line in err.splitlines() if line.strip()]
    assert {"cycle", "cycle_failed"} <= {e.get("event") for e in events}
    assert not [p for p in reports.iterdir() if p.name.endswith(".tmp") or p.name.startswith(".")]
    for path in reports.iterdir():
        json.loads(path.read_text())  # every report is whole


def _wait_for(check: Any, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except (OSError, ValueError, KeyError):
            pass
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _wait_for_metric(port: int, name: str) -> float:
    found: list[float] = []

    def ready() -> bool:
        value = _scrape(port).get(name, 0.0)
        found[:] = [value]
        return value > 0

    _wait_for(ready)
    return found[0]

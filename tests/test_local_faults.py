"""Local write failures after API writes landed (SPEC section 4): exit 1, never 3, and say what.

The tool runs in a subprocess whose file size limit (RLIMIT_FSIZE, SIGXFSZ ignored) lets the
first writes of the state and records through and then fails them with EFBIG, as a full disk
would. The emulator is served over HTTP by the test process, so only the tool's own files hit
the limit.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import yaml
from conftest import RunningEmulator

FORMS = ["onbrd01", "onbrd02", "onbrd03", "kyc0001", "fdbk001", "nwsl001", "evnt001"]


def write_manifests(root: Path) -> None:
    hooks = [
        {"form_id": f, "tag": "intake", "url": f"https://hooks.example.com/{f}"} for f in FORMS
    ]
    doc = {
        "apiVersion": "reconciler/v1",
        "kind": "WebhookSet",
        "metadata": {"name": "local-faults"},
        "spec": {"webhooks": hooks},
    }
    (root / "manifests").mkdir()
    (root / "manifests" / "set.yaml").write_text(yaml.safe_dump(doc))


def run(
    root: Path, url: str, *args: str, limit: int | None = None
) -> subprocess.CompletedProcess[str]:
    def limited() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        if limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    env = {**os.environ, "TYPEFORM_TOKEN": "tf-local-faults-token", "TYPEFORM_API_URL": url}
    return subprocess.run(
        [sys.executable, "-m", "reconciler", *args, "manifests", "--state", "state.json"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        preexec_fn=limited,
        timeout=60,
        check=False,
    )


def test_a_full_disk_after_writes_landed_stops_further_writes_and_names_them(
    tmp_path: Path, make_emulator: object
) -> None:
    emu: RunningEmulator = make_emulator(mode="served")  # type: ignore[operator]
    write_manifests(tmp_path)

    # Room for the first records and state saves, not for all seven; writes spaced 0.5 s apart
    # (the state is saved at least every second).
    result = run(tmp_path, emu.base_url, "apply", "--auto-approve", "--rate", "2", limit=1800)

    assert result.returncode == 1, result.stderr
    assert "Internal error" not in result.stderr
    assert "Traceback" not in result.stderr
    assert "Writes that landed:" in result.stderr
    assert "Not recorded:" in result.stderr
    assert "tf-local-faults-token" not in result.stdout + result.stderr
    landed = {w.form_id for w in emu.store.webhooks.values() if w.tag == "intake"}
    assert 1 <= len(landed) < len(FORMS)  # it stopped starting writes
    state = json.loads((tmp_path / "state.json").read_text())  # never half-written
    assert {w["form_id"] for w in state["webhooks"]} <= landed

    again = run(tmp_path, emu.base_url, "apply", "--auto-approve", "--rate", "1000")
    assert again.returncode == 0, again.stderr
    state = json.loads((tmp_path / "state.json").read_text())
    assert {w["form_id"] for w in state["webhooks"]} == set(FORMS)  # what landed was adopted
    final = run(tmp_path, emu.base_url, "plan", "--detailed-exitcode", "--rate", "1000")
    assert final.returncode == 0, final.stdout + final.stderr

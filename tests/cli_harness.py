"""The CLI harness: ``reconcile ARGV`` in-process against a persisted emulator (``emulator:PATH``).

Shared by the end-to-end test modules: ``Reconcile`` runs the CLI exactly as a shell would (argv
in; exit code, stdout and stderr out) and reads back what happened from the emulator, the state
file and the records. The ``cli`` fixture in ``conftest.py`` builds one per test.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml

from reconciler.cli import main
from reconciler.emulator import configure, open_emulator
from reconciler.records import read_records

SECRET_ENV = "ONBOARDING_WEBHOOK_SECRET"
SECRET = "s3cr3t-VALUE-8472"
ROTATED = "r0tated-VALUE-5519"
SENSITIVE = "(sensitive)"

INTAKE = {"form_id": "onbrd01", "tag": "intake", "url": "https://hooks.example.com/intake"}
COMPANY = {"form_id": "onbrd02", "tag": "company", "url": "https://hooks.example.com/company"}
LEGACY_ABSENT = {"form_id": "onbrd01", "tag": "legacy-zapier", "state": "absent"}
FEEDBACK = {"form_id": "fdbk001", "tag": "inbox", "url": "https://hooks.example.com/feedback"}


# --------------------------------------------------------------------------- harness


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


class Reconcile:
    """``reconcile`` in-process, in ``root``, against one persisted emulator."""

    def __init__(self, root: Path, url: str, emulator_path: Path, capsys: Any) -> None:
        self.root = root
        self.url = url
        self.emulator_path = emulator_path
        self.manifests = root / "manifests"
        self.state = root / "state.json"
        self.records = root / ".reconcile" / "records.jsonl"  # the default, under the cwd
        self._capsys = capsys

    def raw(self, *argv: str) -> Result:
        """Run ``reconcile ARGV`` as given; returns the exit code and what was printed."""
        self._capsys.readouterr()  # drop anything printed before this run
        with pytest.raises(SystemExit) as exited:
            main(list(argv))
        out, err = self._capsys.readouterr()
        code = exited.value.code
        assert isinstance(code, int), code
        return Result(code, out, err)

    def __call__(self, command: str, *args: str, paths: Sequence[Path] | None = None) -> Result:
        """``reconcile COMMAND [PATH ...] --api-url emulator:... --state ... --rate 1000 ARGS``."""
        where = [str(p) for p in (paths if paths is not None else [self.manifests])]
        api = ["--api-url", self.url, "--state", str(self.state), "--rate", "1000"]
        return self.raw(command, *where, *api, *args)

    def plan_json(self, *args: str) -> dict[str, Any]:
        result = self("plan", "--format", "json", *args)
        assert result.code == 0, result.err
        doc: dict[str, Any] = result.json()
        return doc

    def apply_ok(self, *args: str) -> Result:
        result = self("apply", "--auto-approve", *args)
        assert result.code == 0, result.err
        return result

    # ----------------------------------------------------------------- manifests

    def write_set(
        self,
        name: str,
        webhooks: Sequence[dict[str, Any]],
        *,
        secret: bool = True,
        ownership: str = "declared",
    ) -> Path:
        spec: dict[str, Any] = {"ownership": ownership}
        if secret:
            spec["defaults"] = {"secret": {"env": SECRET_ENV}}
        spec["webhooks"] = [dict(w) for w in webhooks]
        doc = {
            "apiVersion": "reconciler/v1",
            "kind": "WebhookSet",
            "metadata": {"name": name},
            "spec": spec,
        }
        self.manifests.mkdir(parents=True, exist_ok=True)
        path = self.manifests / f"{name}.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
        return path

    def write_base(self, *, secret: bool = True) -> None:
        """Two webhooks (with a secret unless told), and the seeded Zapier hook declared absent.

        Tests about something else than secrets leave them out: each run with secrets computes
        a deliberately slow fingerprint.
        """
        self.write_set("onboarding", [INTAKE, COMPANY, LEGACY_ABSENT], secret=secret)

    # ----------------------------------------------------------------- the emulated account

    def live(self) -> dict[str, dict[str, Any]]:
        """Every live webhook as persisted (``secret_sha256`` included), by ``form/tag``."""
        store = open_emulator(self.url).store
        return {f"{f}/{t}": hook.to_json() for (f, t), hook in sorted(store.webhooks.items())}

    def put_live(self, form_id: str, tag: str, body: dict[str, Any]) -> None:
        """Someone else writes through the API (Typeform's UI, another tool)."""

        async def put() -> None:
            emulated = open_emulator(self.url)
            headers = {"Authorization": "Bearer someone-else"}
            async with emulated.client(headers=headers) as client:
                response = await client.put(f"/forms/{form_id}/webhooks/{tag}", json=body)
                assert response.status_code in (200, 201), response.text

        anyio.run(put)

    def requests(self) -> dict[str, dict[str, int]]:
        """What the emulator answered so far: by ``METHOD /route/{template}``, then status."""
        routes: dict[str, dict[str, int]] = open_emulator(self.url).store.stats.to_json()["routes"]
        return routes

    def script_faults(self, *rules: dict[str, Any]) -> None:
        configure(self.emulator_path, faults={"script": list(rules)})

    def records_lines(self) -> list[dict[str, Any]]:
        return read_records(self.records) if self.records.exists() else []

    def state_keys(self) -> set[str]:
        if not self.state.exists():
            return set()
        doc = json.loads(self.state.read_text(encoding="utf-8"))
        return {f"{w['form_id']}/{w['tag']}" for w in doc["webhooks"]}

"""Golden planner cases: each folder under tests/cases/ is one scenario, read like documentation.

A case holds ``manifests/`` (desired), ``live.json`` (what the API returns as
``{"webhooks": [...]}``) and an optional ``case.json``: ``managed`` (state-file keys as
``FORM/TAG``, owned under their live ids; or an object ``FORM/TAG -> recorded id``),
``prune``, ``targets`` and ``secrets`` (``FORM/TAG`` -> ``in_sync`` | ``changed``
| ``unknown``). The expected output is ``plan.json`` and ``plan.txt``. After an intended change,
regenerate with ``UPDATE_GOLDEN=1 make test`` and review the diff like code.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from reconciler.manifests import load_desired
from reconciler.models import DEFAULT_ACCOUNT, LiveWebhook, WebhookKey
from reconciler.normalize import SecretStatus
from reconciler.planner import PlanOptions, Target, build_plan
from reconciler.render import plan_to_json, render_plan_text

CASES = Path(__file__).parent / "cases"
CREATED_AT = "2026-01-01T00:00:00Z"


def _key(text: str) -> WebhookKey:
    form_id, tag = text.split("/")
    return WebhookKey(DEFAULT_ACCOUNT, form_id, tag)


def run_case(case: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[dict[str, Any], str]:
    monkeypatch.chdir(case)
    spec = json.loads((case / "case.json").read_text()) if (case / "case.json").exists() else {}
    desired = load_desired(["manifests"], environ={})
    live: dict[tuple[str, str], list[LiveWebhook]] = {
        (DEFAULT_ACCOUNT, form): [] for form in desired.forms(DEFAULT_ACCOUNT)
    }
    for obj in json.loads((case / "live.json").read_text())["webhooks"]:
        hook = LiveWebhook.from_api(DEFAULT_ACCOUNT, obj)
        live.setdefault((DEFAULT_ACCOUNT, hook.key.form_id), []).append(hook)
    # ``managed``: a list of FORM/TAG owned under their live ids, or FORM/TAG -> recorded id.
    ids = {w.key: w.id for hooks in live.values() for w in hooks}
    recorded = spec.get("managed", [])
    if isinstance(recorded, list):
        recorded = {k: ids.get(_key(k), "never-live") for k in recorded}
    plan = build_plan(
        desired,
        live,
        managed={_key(k): v for k, v in recorded.items()},
        secrets={_key(k): SecretStatus(v) for k, v in spec.get("secrets", {}).items()},
        created_at=CREATED_AT,
        options=PlanOptions(
            prune=spec.get("prune", False),
            targets=tuple(Target.parse(t) for t in spec.get("targets", [])),
        ),
    )
    doc = plan_to_json(plan)
    return doc, render_plan_text(doc).plain


@pytest.mark.parametrize("case", sorted(p.name for p in CASES.iterdir() if p.is_dir()))
def test_golden_plan_matches_the_recorded_plan(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = CASES / case
    doc, text = run_case(folder, monkeypatch)
    if os.environ.get("UPDATE_GOLDEN"):
        (folder / "plan.json").write_text(json.dumps(doc, indent=2) + "\n")
        (folder / "plan.txt").write_text(text)
    assert doc == json.loads((folder / "plan.json").read_text())
    assert text == (folder / "plan.txt").read_text()

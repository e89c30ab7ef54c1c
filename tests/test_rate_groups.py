"""Two tokens of one Typeform account share its 2 requests/second (SPEC section 8).

Against a served emulator where both tokens are granted to one account (one token bucket,
2/s, burst 2): two Account documents that say ``rate_group`` with one another are paced as one
and never hear 429; without it, each paces itself at 2/s and together they overrun the limit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import yaml
from test_emulator_cli import running_emulator

FORMS = ["onbrd01", "onbrd02", "onbrd03", "kyc0001", "fdbk001", "nwsl001"]


def manifests(root: Path, url: str, *, grouped: bool) -> Path:
    tree = root / "manifests"
    tree.mkdir()
    docs = []
    for name, forms in (("us-a", FORMS[:3]), ("us-b", FORMS[3:])):
        spec = {"api_url": url, "token": {"env": f"TOKEN_{name[-1].upper()}"}}
        if grouped:
            spec["rate_group"] = "acme"
        docs.append({"apiVersion": "reconciler/v1", "kind": "Account",
                     "metadata": {"name": name}, "spec": spec})  # fmt: skip
        docs.append(
            {
                "apiVersion": "reconciler/v1",
                "kind": "WebhookSet",
                "metadata": {"name": f"set-{name}"},
                "spec": {
                    "account": name,
                    "webhooks": [
                        {"form_id": f, "tag": name, "url": f"https://h.example.com/{f}"}
                        for f in forms
                    ],
                },
            }
        )
    (tree / "all.yaml").write_text(yaml.safe_dump_all(docs))
    return tree


def plan_and_count_429(tmp_path: Path, *, grouped: bool) -> int:
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text("token-a-value-xyz: {account: acme}\ntoken-b-value-xyz: {account: acme}\n")
    env = {"TYPEFORM_TOKEN": ""}
    with running_emulator("--tokens", str(tokens), "--rate", "2", "--burst", "2", env=env) as (
        proc,
        url,
        _,
    ):
        tree = manifests(tmp_path, url, grouped=grouped)
        run_env = {**os.environ, "TOKEN_A": "token-a-value-xyz", "TOKEN_B": "token-b-value-xyz"}
        done = subprocess.run(
            [sys.executable, "-m", "reconciler", "plan", str(tree), "--format", "json",
             "--state", str(tmp_path / "state.json")],
            env=run_env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert len(json.loads(done.stdout)["actions"]) == len(FORMS)
        stats = httpx.get(f"{url}/_emulator/stats").json()
        proc.terminate()
    return int(stats["throttled"])


def test_accounts_in_one_rate_group_share_one_pacer_and_are_never_throttled(
    tmp_path: Path,
) -> None:
    assert plan_and_count_429(tmp_path, grouped=True) == 0


def test_without_a_rate_group_two_tokens_of_one_account_overrun_its_limit(
    tmp_path: Path,
) -> None:
    # The contrast that makes the first test mean something: each paces at 2/s on its own.
    assert plan_and_count_429(tmp_path, grouped=False) > 0

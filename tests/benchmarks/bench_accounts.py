"""Benchmark: do K accounts take as long as one, not K times as long? (SPEC 12, Accounts)

Each account is refreshed through its own paced client at its own 2 requests/s, so a plan over
K accounts should take about as long as the slowest one, where running them one after another
(``--account NAME`` each, as a sharded CI would without parallelism) takes K times as long.

Serves the emulator with a tokens file that maps each of 8 tokens (``$BENCH_TOKEN_k`` names: the
file holds no token value) to its own emulator account, each with its own bucket of 2
requests/s (burst 2) and 300 ms latency. Each account is an Account document
(``api_url``, ``token: {env: BENCH_TOKEN_k}``, ``rate_limit: 2``) with one WebhookSet of
FORMS_PER_ACCOUNT forms of its own. For K = 1, 4, 8 it runs the real command line::

    python -m reconciler plan manifests                           # all K at once
    python -m reconciler plan --account acct-k manifests         # each in turn (K runs)

and reports both wall times (start-up of each process included) and the speed-up.

Targets: speed-up >= 0.75 K, and 0 requests throttled (429). Exit code 1 when one is missed.

Run: ``python tests/benchmarks/bench_accounts.py [--forms N] [--json FILE]``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from benchlib import (
    clean_env,
    form_ids,
    print_table,
    reconcile,
    served_emulator,
    workdir,
    write_json,
    write_manifests,
    write_seed,
)

KS = (1, 4, 8)
FORMS_PER_ACCOUNT = 10
RATE = 2.0
LATENCY_MS = 300.0
TARGET_SPEEDUP_SHARE = 0.75
SCOPES = ["webhooks:read", "webhooks:write", "forms:read"]


def account_name(k: int) -> str:
    return f"acct-{k}"


def token_var(k: int) -> str:
    return f"BENCH_TOKEN_{k}"


def write_accounts(root: Path, url: str, ks: range) -> None:
    docs = [
        "apiVersion: reconciler/v1\nkind: Account\n"
        f"metadata: {{name: {account_name(k)}}}\n"
        f"spec:\n  api_url: {url}\n  token: {{env: {token_var(k)}}}\n  rate_limit: {RATE:g}\n"
        for k in ks
    ]
    (root / "accounts.yaml").write_text("---\n".join(docs), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--forms", type=int, default=FORMS_PER_ACCOUNT)
    parser.add_argument("--json", help="write the results here (for bench_report.py)")
    args = parser.parse_args(argv)

    most = max(KS)
    forms = {k: form_ids(f"a{k}f", args.forms) for k in range(1, most + 1)}
    # Benchmark tokens, one per account, only ever in the children's environments.
    tokens = {token_var(k): f"bench-account-{k}-token" for k in range(1, most + 1)}
    env = clean_env(**tokens)
    rows: list[dict[str, Any]] = []
    with workdir("bench-accounts-") as tmp:
        seed = write_seed(tmp / "seed.json", {f"ws{k}": forms[k] for k in forms})
        grants = {f"${token_var(k)}": {"account": account_name(k), "scopes": SCOPES} for k in forms}
        tokens_file = tmp / "tokens.json"
        tokens_file.write_text(json.dumps(grants), encoding="utf-8")
        with served_emulator(
            tmp,
            seed=seed,
            rate=RATE,
            burst=2,
            latency_ms=LATENCY_MS,
            tokens_file=tokens_file,
            env=env,
        ) as emulator:
            for k_count in KS:
                case = tmp / f"k{k_count}"
                manifests = case / "manifests"
                for k in range(1, k_count + 1):
                    write_manifests(
                        manifests, forms[k], account=account_name(k), name=account_name(k)
                    )
                write_accounts(manifests, emulator.url, range(1, k_count + 1))
                state = ["--state", str(case / "state.json"), "--no-color"]
                before = emulator.stats()
                together = reconcile("plan", *state, str(manifests), env=env, cwd=case)
                middle = emulator.stats()
                if k_count == 1:
                    in_turn = [together.wall]  # the same run
                else:
                    in_turn = [
                        reconcile(
                            "plan",
                            *state,
                            "--account",
                            account_name(k),
                            str(manifests),
                            env=env,
                            cwd=case,
                        ).wall
                        for k in range(1, k_count + 1)
                    ]
                after = emulator.stats()
                sequential = sum(in_turn)
                speedup = sequential / together.wall
                throttled = after["throttled"] - before["throttled"]
                rows.append(
                    {
                        "accounts": k_count,
                        "forms_per_account": args.forms,
                        "requests": middle["total"] - before["total"],
                        "together": together.wall,
                        "in_turn": sequential,
                        "speedup": speedup,
                        "throttled": throttled,
                        "ok": speedup >= TARGET_SPEEDUP_SHARE * k_count and throttled == 0,
                    }
                )

    print(
        f"K accounts, each its own Account document, token and emulator bucket ({RATE:g}/s, "
        f"burst 2, {LATENCY_MS:g} ms latency), {args.forms} forms each"
    )
    print_table(
        ["K", "requests", "all at once s", "one after another s", "speed-up", "target", "429s"],
        [
            [
                str(r["accounts"]),
                str(r["requests"]),
                f"{r['together']:.2f}",
                f"{r['in_turn']:.2f}",
                f"{r['speedup']:.2f}x",
                f">= {TARGET_SPEEDUP_SHARE * r['accounts']:g}x, 0 429s",
                f"{r['throttled']}{'' if r['ok'] else '  MISSED'}",
            ]
            for r in rows
        ],
    )
    ok = all(r["ok"] for r in rows)
    write_json(args.json, {"rows": rows, "target_share": TARGET_SPEEDUP_SHARE, "ok": ok})
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

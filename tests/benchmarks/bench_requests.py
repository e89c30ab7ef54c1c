"""Benchmark: how many API requests does a plan cost, against the number of forms in scope?

SPEC 8 and 12: the refresh is one ``GET /forms/{id}/webhooks`` per form in scope (the list is
not paginated), and a form selector adds the paged forms listing of its workspace (200 forms a
page). So a plan over N forms should cost exactly N requests, and N + ceil(N/200) when the forms
come from a selector. Anything more (a GET per webhook, a workspaces call, a listing for explicit
forms) shows up here.

Serves the emulator with the limit out of the way (100,000 requests/s), seeded with workspaces of
10, 100 and 1,000 forms, and runs the real command line (``python -m reconciler plan``) over
each, first with one explicit ``form_id`` entry per form, then with one selector
``forms: {workspace_id: ...}``; counts requests through ``GET /_emulator/stats``.

Targets: exactly N, and exactly N + ceil(N/200). Exit code 1 when one is missed.

Run: ``python tests/benchmarks/bench_requests.py [--json FILE]``.
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

from benchlib import (
    BENCH_TOKEN,
    clean_env,
    form_ids,
    print_table,
    reconcile,
    served_emulator,
    workdir,
    write_json,
    write_manifests,
    write_seed,
    write_selector_manifest,
)

SIZES = (10, 100, 1_000)
RATE = 100_000.0
PAGE = 200


def counts(stats: dict[str, Any]) -> dict[str, int]:
    return {route: sum(by_status.values()) for route, by_status in stats["routes"].items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--json", help="write the results here (for bench_report.py)")
    args = parser.parse_args(argv)

    workspaces = {f"ws{n}": form_ids(f"w{n}f", n) for n in SIZES}
    rows: list[dict[str, Any]] = []
    with workdir("bench-requests-") as tmp:
        seed = write_seed(tmp / "seed.json", workspaces)
        with served_emulator(tmp, seed=seed, rate=RATE, burst=int(RATE)) as emulator:
            env = clean_env(TYPEFORM_TOKEN=BENCH_TOKEN)
            for n in SIZES:
                for kind in ("explicit", "selector"):
                    case = tmp / f"{kind}-{n}"
                    if kind == "explicit":
                        manifests = write_manifests(case / "manifests", workspaces[f"ws{n}"])
                        expected = n
                    else:
                        manifests = write_selector_manifest(case / "manifests", f"ws{n}")
                        expected = n + math.ceil(n / PAGE)
                    before = counts(emulator.stats())
                    ran = reconcile(
                        "plan",
                        "--api-url",
                        emulator.url,
                        "--rate",
                        str(int(RATE)),
                        "--state",
                        str(case / "state.json"),
                        "--no-color",
                        "--detailed-exitcode",
                        str(manifests),
                        env=env,
                        cwd=tmp,
                        ok=(2,),  # every form gets a create: proves the forms were in scope
                    )
                    after = counts(emulator.stats())
                    delta = {r: after[r] - before.get(r, 0) for r in after}
                    delta = {r: c for r, c in delta.items() if c}
                    rows.append(
                        {
                            "forms": n,
                            "kind": kind,
                            "requests": sum(delta.values()),
                            "expected": expected,
                            "routes": delta,
                            "wall": ran.wall,
                            "ok": sum(delta.values()) == expected,
                        }
                    )

    print(f"requests per plan (served emulator at {RATE:,.0f}/s, so only the count matters)")
    print_table(
        ["forms", "entries", "requests", "target", "by route", "wall s", "result"],
        [
            [
                f"{r['forms']:,}",
                "one per form" if r["kind"] == "explicit" else "one selector",
                str(r["requests"]),
                str(r["expected"]),
                ", ".join(f"{route} x{c}" for route, c in sorted(r["routes"].items())),
                f"{r['wall']:.2f}",
                "ok" if r["ok"] else "MISSED",
            ]
            for r in rows
        ],
    )
    ok = all(r["ok"] for r in rows)
    write_json(args.json, {"rows": rows, "ok": ok})
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

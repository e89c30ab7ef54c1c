"""Benchmark: what does ``--changed-since`` save on a pull request touching 3 forms of 1,000?

SPEC 12: an incremental plan refreshes only the forms whose desired webhooks differ between
GIT_REF and the working tree, so a change to 3 forms of 1,000 costs 3 requests, where a full
plan costs 1,000 (about 500 s at Typeform's 2 requests/s).

Serves the emulator at 2 requests/s (burst 2), seeded with FORMS forms that each hold the
declared webhook; commits manifests for all of them in a fresh git repository, changes the url
of 3 entries in the working tree and runs the real command line::

    python -m reconciler plan --changed-since HEAD --format json manifests   # incremental
    python -m reconciler plan manifests-full                                 # full

Requests are counted through ``GET /_emulator/stats``. A full plan of 1,000 forms at 2/s takes
over 8 minutes, more than the whole report's budget, so the full plan is measured over
FULL_FORMS forms (200 by default) and extrapolated linearly to FORMS (requests = forms; time =
measured time x FORMS / FULL_FORMS); ``--full-forms 1000`` measures it for real.

Targets: the incremental plan costs exactly 3 requests, takes under 5 s wall (start-up
included) and is marked partial with the 3 updates; the full plan costs one request per form.
Exit code 1 when one is missed.

Run: ``python tests/benchmarks/bench_incremental.py [--forms N] [--full-forms N] [--json F]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchlib import (
    BENCH_TOKEN,
    clean_env,
    form_ids,
    hook_url,
    print_table,
    reconcile,
    served_emulator,
    workdir,
    write_json,
    write_manifests,
    write_seed,
)

FORMS = 1_000
FULL_FORMS = 200
CHANGED = 3
RATE = 2.0
TARGET_INCREMENTAL_S = 5.0


def git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.invalid", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        env=clean_env(GIT_CONFIG_GLOBAL="/dev/null", GIT_CONFIG_NOSYSTEM="1"),
    )


def total(stats: dict[str, Any]) -> int:
    return int(stats["total"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--forms", type=int, default=FORMS)
    parser.add_argument("--full-forms", type=int, default=FULL_FORMS)
    parser.add_argument("--json", help="write the results here (for bench_report.py)")
    args = parser.parse_args(argv)
    full_forms = min(args.full_forms, args.forms)

    forms = form_ids("inc", args.forms)
    with workdir("bench-incremental-") as tmp:
        seed = write_seed(
            tmp / "seed.json", {"wsinc": forms}, [(f, "bench", hook_url(f)) for f in forms]
        )
        repo = tmp / "repo"
        write_manifests(repo / "manifests", forms)
        write_manifests(repo / "manifests-full", forms[:full_forms])
        git(repo, "init", "-q")
        git(repo, "add", ".")
        git(repo, "commit", "-q", "-m", "1,000 forms")
        # The pull request: 3 forms, spread over the files, get a new url.
        changed = [forms[i * (args.forms // CHANGED)] for i in range(CHANGED)]
        for form in changed:
            for path in (repo / "manifests").glob("*.yaml"):
                text = path.read_text(encoding="utf-8")
                if hook_url(form) in text:
                    path.write_text(text.replace(hook_url(form), hook_url(form, "v2")), "utf-8")

        env = clean_env(TYPEFORM_TOKEN=BENCH_TOKEN)
        with served_emulator(tmp, seed=seed, rate=RATE, burst=2) as emulator:
            common = ["--api-url", emulator.url, "--state", str(tmp / "state.json"), "--no-color"]
            before = total(emulator.stats())
            inc = reconcile(
                "plan",
                *common,
                "--changed-since",
                "HEAD",
                "--format",
                "json",
                "manifests",
                env=env,
                cwd=repo,
            )
            middle = total(emulator.stats())
            full = reconcile("plan", *common, "manifests-full", env=env, cwd=repo, timeout=3600)
            after = total(emulator.stats())

    doc = json.loads(inc.stdout)
    summary = doc.get("summary", {})
    inc_requests = middle - before
    full_requests = after - middle
    scale = args.forms / full_forms
    measured_full = full_forms == args.forms
    inc_ok = (
        inc_requests == CHANGED
        and inc.wall <= TARGET_INCREMENTAL_S
        and doc.get("partial") is True
        and summary.get("update") == CHANGED
    )
    full_ok = full_requests == full_forms
    how = "measured" if measured_full else f"extrapolated x{scale:g} from {full_forms} forms"
    print(
        f"full vs incremental plan over {args.forms:,} forms, {CHANGED} changed, served emulator "
        f"at {RATE:g}/s (burst 2)"
    )
    print_table(
        ["plan", "webhooks planned", "requests", "wall s", "target", "result"],
        [
            [
                f"--changed-since HEAD ({CHANGED} forms changed)",
                str(sum(v for k, v in summary.items() if k != "unmanaged")),
                str(inc_requests),
                f"{inc.wall:.2f}",
                f"{CHANGED} requests, <= {TARGET_INCREMENTAL_S:g} s, partial, {CHANGED} updates",
                "ok" if inc_ok else "MISSED",
            ],
            [
                f"full, {full_forms:,} forms (measured)",
                f"{full_forms:,}",
                str(full_requests),
                f"{full.wall:.2f}",
                "one request per form",
                "ok" if full_ok else "MISSED",
            ],
            [
                f"full, {args.forms:,} forms ({how})",
                f"{args.forms:,}",
                str(round(full_requests * scale)),
                f"{full.wall * scale:.0f}",
                f"~{args.forms / RATE:.0f} s at {RATE:g}/s",
                "info",
            ],
        ],
    )
    print(
        f"incremental: partial={doc.get('partial')}, summary {summary}; "
        f"speed-up over full ({how}): {full.wall * scale / inc.wall:.0f}x"
    )
    ok = inc_ok and full_ok
    write_json(
        args.json,
        {
            "forms": args.forms,
            "changed": CHANGED,
            "rate": RATE,
            "incremental": {
                "requests": inc_requests,
                "wall": inc.wall,
                "partial": doc.get("partial"),
                "summary": summary,
                "ok": inc_ok,
            },
            "full_measured": {"forms": full_forms, "requests": full_requests, "wall": full.wall},
            "full_extrapolated": {
                "forms": args.forms,
                "requests": round(full_requests * scale),
                "wall": full.wall * scale,
                "measured": measured_full,
            },
            "target_incremental_s": TARGET_INCREMENTAL_S,
            "ok": ok,
        },
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

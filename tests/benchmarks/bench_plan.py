"""Benchmark: what does ``reconcile plan`` cost at 10,000 webhooks? (issue "Fast at 10k")

Generates 10,000 webhooks on 2,000 forms (100 manifest files of 100 entries, no secrets: a
secret's fingerprint is deliberately slow and measured by bench_fingerprints.py) and a persisted
emulator holding the live webhooks, with the API out of the way (emulator rate 100,000/s, no
latency), then runs the real command line in a subprocess::

    python -m reconciler plan --api-url emulator:PATH --state STATE --rate 100000 --no-color \
        MANIFESTS > /dev/null

and reads the child's CPU time (user + sys) and peak RSS from ``os.wait4``. Each case is the
median of a few runs:

* no change: live is identical to the manifests;
* all update: every live url differs, so each of the 10,000 webhooks is an update;
* ``reconcile --help``: wall time of starting the CLI (imports), median of 5;
* apply of 1,000 creates on 200 forms (for information: its cost is dominated by saving the
  state file after each write, see the issue).

Targets: plan no change <= 2 s CPU and <= 150 MB, plan all update <= 3 s CPU, ``--help``
<= 0.15 s. Exit code 1 when a target is missed.

Run: ``python tests/benchmarks/bench_plan.py`` (``make bench`` runs every bench_*.py).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from reconciler.emulator import configure
from reconciler.emulator.seed import Seed, SeedForm, SeedWebhook, SeedWorkspace

WEBHOOKS = 10_000
FORMS = 2_000
PER_FORM = WEBHOOKS // FORMS
PER_FILE = 100
ROUNDS = 3
HELP_ROUNDS = 5
APPLY_CREATES = 1_000
APPLY_FORMS = 200
RATE = 100_000.0

TARGET_PLAN_CPU = 2.0
TARGET_PLAN_MB = 150.0
TARGET_UPDATE_CPU = 3.0
TARGET_HELP_S = 0.15

HEADER = "apiVersion: reconciler/v1\nkind: WebhookSet\nmetadata: {name: %s}\nspec:\n"


@dataclass(frozen=True)
class Hook:
    form_id: str
    tag: str
    url: str
    partial: bool
    enabled: bool


def hooks(count: int, forms: int) -> list[Hook]:
    per_form = count // forms
    return [
        Hook(
            form_id=f"form{i // per_form:05d}",
            tag=f"hook-{i % per_form}",
            url=f"https://hooks.example.com/typeform/{i // per_form:05d}/{i % per_form}",
            partial=i % 7 == 0,
            enabled=i % 13 != 0,
        )
        for i in range(count)
    ]


def write_manifests(root: Path, declared: list[Hook]) -> None:
    root.mkdir(parents=True)
    for f in range(0, len(declared), PER_FILE):
        lines = [HEADER % f"set-{f // PER_FILE}", "  defaults:\n    event_types: [form_response]\n"]
        lines.append("  webhooks:\n")
        for h in declared[f : f + PER_FILE]:
            lines.append(f"    - form_id: {h.form_id}\n      tag: {h.tag}\n      url: {h.url}\n")
            if h.partial:
                lines.append("      event_types: [form_response, form_response_partial]\n")
            if not h.enabled:
                lines.append("      enabled: false\n")
        (root / f"team-{f // PER_FILE:03d}.yaml").write_text("".join(lines), encoding="utf-8")


def seed_emulator(path: Path, forms: int, live: list[Hook]) -> None:
    seed = Seed(
        workspaces=(SeedWorkspace("ws1", "Bench"),),
        forms=tuple(SeedForm(f"form{i:05d}", f"Form {i}", "ws1") for i in range(forms)),
        webhooks=tuple(
            SeedWebhook(
                form_id=h.form_id,
                tag=h.tag,
                url=h.url,
                enabled=h.enabled,
                event_types={"form_response": True, "form_response_partial": h.partial},
                id=f"W{n:06d}",
                created_at="2024-01-15T09:00:00.000Z",
            )
            for n, h in enumerate(live)
        ),
    )
    configure(path, seed=seed, rate=RATE, burst=int(RATE))


@dataclass(frozen=True)
class Measured:
    cpu: float
    wall: float
    rss_mb: float


def run_child(argv: list[str], *, env: dict[str, str], cwd: Path, ok: tuple[int, ...]) -> Measured:
    """Run ``argv``, stdout to /dev/null; CPU and peak RSS of that child alone (``wait4``)."""
    with tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, env=env, cwd=cwd)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode not in ok:
            err.seek(0)
            raise SystemExit(
                f"{' '.join(argv[2:5])}... exited {proc.returncode}:\n{err.read().decode()[-2000:]}"
            )
    return Measured(usage.ru_utime + usage.ru_stime, wall, usage.ru_maxrss / 1024)


def median(runs: list[Measured]) -> Measured:
    return Measured(
        statistics.median(r.cpu for r in runs),
        statistics.median(r.wall for r in runs),
        statistics.median(r.rss_mb for r in runs),
    )


def reconcile(*args: str) -> list[str]:
    return [sys.executable, "-m", "reconciler", *args]


def bench_plan(tmp: Path, env: dict[str, str], *, all_update: bool, rounds: int) -> Measured:
    case = tmp / ("update" if all_update else "nochange")
    declared = hooks(WEBHOOKS, FORMS)
    live = [
        Hook(h.form_id, h.tag, h.url + "/old", h.partial, h.enabled) if all_update else h
        for h in declared
    ]
    write_manifests(case / "manifests", declared)
    emulator = case / "emulator.json"
    seed_emulator(emulator, FORMS, live)
    argv = reconcile(
        "plan",
        "--api-url",
        f"emulator:{emulator}",
        "--state",
        str(case / "state.json"),
        "--rate",
        str(int(RATE)),
        "--no-color",
        "--detailed-exitcode",
        str(case / "manifests"),
    )
    expected = 2 if all_update else 0  # --detailed-exitcode: proves the case is what it says
    return median([run_child(argv, env=env, cwd=case, ok=(expected,)) for _ in range(rounds)])


def bench_help(tmp: Path, env: dict[str, str]) -> Measured:
    runs = [run_child(reconcile("--help"), env=env, cwd=tmp, ok=(0,)) for _ in range(HELP_ROUNDS)]
    return median(runs)


def bench_apply(tmp: Path, env: dict[str, str]) -> Measured:
    runs = []
    for r in range(ROUNDS):
        case = tmp / f"apply-{r}"
        write_manifests(case / "manifests", hooks(APPLY_CREATES, APPLY_FORMS))
        emulator = case / "emulator.json"
        seed_emulator(emulator, APPLY_FORMS, [])
        argv = reconcile(
            "apply",
            "--auto-approve",
            "--api-url",
            f"emulator:{emulator}",
            "--state",
            str(case / "state.json"),
            "--rate",
            str(int(RATE)),
            "--no-color",
            str(case / "manifests"),
        )
        runs.append(run_child(argv, env=env, cwd=case, ok=(0,)))
        shutil.rmtree(case)
    return median(runs)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--skip-apply", action="store_true", help="leave out the apply row")
    args = parser.parse_args()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("TYPEFORM_TOKEN", "TYPEFORM_API_URL", "RECONCILE_STATE")
    }
    rows: list[tuple[str, Measured, str, bool | None]] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        nochange = bench_plan(tmp, env, all_update=False, rounds=args.rounds)
        ok = nochange.cpu <= TARGET_PLAN_CPU and nochange.rss_mb <= TARGET_PLAN_MB
        target = f"<= {TARGET_PLAN_CPU:g} s, <= {TARGET_PLAN_MB:g} MB"
        rows.append(("plan, 10,000 webhooks, no change", nochange, target, ok))
        update = bench_plan(tmp, env, all_update=True, rounds=args.rounds)
        ok = update.cpu <= TARGET_UPDATE_CPU
        target = f"<= {TARGET_UPDATE_CPU:g} s"
        rows.append(("plan, 10,000 webhooks, all update", update, target, ok))
        helped = bench_help(tmp, env)
        ok = helped.wall <= TARGET_HELP_S
        rows.append(("reconcile --help (wall)", helped, f"<= {TARGET_HELP_S:g} s wall", ok))
        if not args.skip_apply:
            rows.append((f"apply, {APPLY_CREATES:,} creates", bench_apply(tmp, env), "info", None))

    print(f"reconcile at {WEBHOOKS:,} webhooks on {FORMS:,} forms, emulator rate {RATE:,.0f}/s")
    python = sys.version.split()[0]
    print(f"median of {args.rounds} runs ({HELP_ROUNDS} for --help), python {python}")
    print()
    print(f"{'case':<36} {'CPU s':>7} {'wall s':>7} {'RSS MB':>7}  {'target':<24} result")
    missed = False
    for label, m, target, verdict in rows:
        result = "info" if verdict is None else ("ok" if verdict else "MISSED")
        missed |= verdict is False
        print(f"{label:<36} {m.cpu:>7.2f} {m.wall:>7.2f} {m.rss_mb:>7.0f}  {target:<24} {result}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())

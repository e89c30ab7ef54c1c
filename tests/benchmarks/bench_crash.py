"""Benchmark: does ``reconcile apply`` survive SIGKILL at any point? (crash safety, 50 trials)

Runs ``crash_trial`` of ``tests/test_crash.py`` 50 times (seeded kill points spread over the
whole apply: start-up, refresh, writes, state saves), each in a fresh temporary directory, and
prints a table: trials, survived (every check after the kill passed), mean kill point, how many
kills fell before the first write, mid-writes, or after the run ended, and how many writes had
landed but were not yet in the state (adopted by the next apply). Exit code 1 when any trial failed.

Run: ``python tests/benchmarks/bench_crash.py [--trials N] [--seed S]`` (``make bench`` runs
every bench_*.py).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from test_crash import FORMS, SEED, Trial, crash_trial, kill_points


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)

    survived: list[Trial] = []
    failures: list[str] = []
    started = time.monotonic()
    for number, point in enumerate(kill_points(args.trials, args.seed), start=1):
        with tempfile.TemporaryDirectory(prefix="bench-crash-") as tmp:
            try:
                survived.append(crash_trial(Path(tmp), point))
            except AssertionError as exc:
                failures.append(f"trial {number} (kill at {point}): {exc}")
    elapsed = time.monotonic() - started

    total = len(FORMS) + 1
    before = sum(1 for t in survived if not t.finished_first and t.landed == 0)
    during = sum(1 for t in survived if not t.finished_first and t.landed > 0)
    after = sum(1 for t in survived if t.finished_first)
    points = [t.kill_after for t in survived] or [0.0]
    landed = statistics.fmean(t.landed for t in survived) if survived else 0.0
    rows = [
        ("trials", str(args.trials)),
        ("survived", str(len(survived))),
        ("mean kill point", f"{statistics.fmean(points):.3f} s"),
        ("killed before any write", str(before)),
        ("killed mid-apply (some writes landed)", str(during)),
        ("run had finished before the kill", str(after)),
        ("writes landed at the kill (mean)", f"{landed:.2f} of {total}"),
        ("landed, not yet in the state: adopted next run", str(sum(t.adopted for t in survived))),
        ("records with a torn last line", str(sum(t.torn_records for t in survived))),
        ("wall time", f"{elapsed:.1f} s"),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"crash safety: apply of {total} writes SIGKILLed at a random point")
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    for failure in failures:
        print(f"FAILED {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

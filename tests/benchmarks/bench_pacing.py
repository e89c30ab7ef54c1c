"""Benchmark: does a real refresh run at Typeform's 2 requests/s, and never above it?

Serves the emulator (``reconcile emulator``) at Typeform's limit, 2 requests/s with burst 2 per
account, answering every request after 300 ms, then runs the real command line over FORMS forms
(one webhook each, so the refresh is one ``GET /forms/{id}/webhooks`` per form)::

    python -m reconciler plan --api-url URL --state STATE MANIFESTS

Request arrivals come from the emulator's access log (its time minus the 300 ms latency).

    pacing efficiency = achieved rate / 2,  achieved rate = (n - 1) / (last arrival - first)

Targets: efficiency >= 0.95 and 0 requests throttled (429). Exit code 1 when one is missed.
``--json FILE`` writes the figures and every arrival (bench_report.py plots them).

Run: ``python tests/benchmarks/bench_pacing.py [--forms N]``.
"""

from __future__ import annotations

import argparse
import sys

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
)

FORMS = 40
RATE = 2.0
LATENCY_MS = 300.0
TARGET_EFFICIENCY = 0.95


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--forms", type=int, default=FORMS)
    parser.add_argument("--json", help="write the results here (for bench_report.py)")
    args = parser.parse_args(argv)

    forms = form_ids("pace", args.forms)
    with workdir("bench-pacing-") as tmp:
        seed = write_seed(tmp / "seed.json", {"wspace": forms})
        manifests = write_manifests(tmp / "manifests", forms)
        with served_emulator(
            tmp, seed=seed, rate=RATE, burst=2, latency_ms=LATENCY_MS, access_log=True
        ) as emulator:
            env = clean_env(TYPEFORM_TOKEN=BENCH_TOKEN)
            ran = reconcile(
                "plan",
                "--api-url",
                emulator.url,
                "--state",
                str(tmp / "state.json"),
                "--no-color",
                str(manifests),
                env=env,
                cwd=tmp,
            )
            stats = emulator.stats()
            arrivals = emulator.arrivals()

    first = arrivals[0].at
    span = arrivals[-1].at - first
    achieved = (len(arrivals) - 1) / span if span > 0 else 0.0
    efficiency = achieved / RATE
    throttled = sum(a.status == 429 for a in arrivals)
    ideal = (len(arrivals) - 1) / RATE + LATENCY_MS / 1000
    ok = efficiency >= TARGET_EFFICIENCY and throttled == 0 and stats["throttled"] == 0
    print(
        f"refresh of {args.forms} forms through `reconcile plan`, served emulator at "
        f"{RATE:g}/s (burst 2), {LATENCY_MS:g} ms latency"
    )
    print_table(
        ["measure", "value", "target"],
        [
            ["requests", str(len(arrivals)), f"{args.forms} (one GET per form)"],
            ["achieved rate (arrivals)", f"{achieved:.3f}/s", f"<= {RATE:g}/s"],
            ["pacing efficiency", f"{efficiency:.3f}", f">= {TARGET_EFFICIENCY}"],
            ["429s received", str(throttled), "0"],
            ["plan wall time (incl. start-up)", f"{ran.wall:.2f} s", f"ideal {ideal:.2f} s"],
        ],
    )
    print(f"result: {'PASS' if ok else 'FAIL'}")
    write_json(
        args.json,
        {
            "forms": args.forms,
            "rate": RATE,
            "latency_ms": LATENCY_MS,
            "requests": len(arrivals),
            "achieved_rate": achieved,
            "efficiency": efficiency,
            "target_efficiency": TARGET_EFFICIENCY,
            "throttled": throttled,
            "wall": ran.wall,
            "ideal": ideal,
            "arrivals": [[a.at - first, a.status] for a in arrivals],
            "ok": ok,
        },
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

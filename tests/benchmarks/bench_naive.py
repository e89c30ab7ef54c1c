"""Benchmark: our paced client against the clients users write by hand, on the same work.

The work: FORMS forms each hold a webhook whose url must change. For each form, list its
webhooks (``GET /forms/{id}/webhooks``) and write the new one (``PUT .../webhooks/{tag}``), i.e.
2 x FORMS requests, against a served emulator at Typeform's limit (2 requests/s, burst 2) that
answers every request after 300 ms. Three clients, each against a fresh emulator:

* ours: ``python -m reconciler apply --auto-approve`` (refresh, then the PUTs);
* naive (a), "be polite": httpx, sequential, ``time.sleep(0.5)`` after every request;
* naive (b), "go fast": httpx async, every form at once (``asyncio.gather``), no pacing.

A hand-written client must still finish the work, so both naive clients retry a 429 after its
``Retry-After`` (as the ``tenacity``-style loop a user would add), up to 20 attempts. Each run is
checked to have left every webhook at its new url. Arrivals come from the emulator's access log.

Targets (ours): 0 requests throttled (429), and faster than naive (a). Exit code 1 when one is
missed. ``--json FILE`` writes the figures and every arrival (bench_report.py plots them).

Run: ``python tests/benchmarks/bench_naive.py [--forms N] [--json FILE]``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from benchlib import (
    BENCH_TOKEN,
    Served,
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

FORMS = 20
RATE = 2.0
LATENCY_MS = 300.0
TAG = "bench"
POLITE_SLEEP = 0.5
MAX_ATTEMPTS = 20
HEADERS = {"Authorization": f"Bearer {BENCH_TOKEN}"}


def body(form: str) -> dict[str, Any]:
    return {"url": hook_url(form, "v2"), "enabled": True, "event_types": {"form_response": True}}


def retry_after(response: httpx.Response) -> float:
    try:
        return float(response.headers.get("Retry-After", "1"))
    except ValueError:
        return 1.0


def naive_polite(url: str, forms: list[str]) -> None:
    """What a careful user writes: one request at a time, half a second apart."""
    with httpx.Client(base_url=url, headers=HEADERS, timeout=30) as client:

        def send(method: str, path: str, json: dict[str, Any] | None = None) -> None:
            for _ in range(MAX_ATTEMPTS):
                response = client.request(method, path, json=json)
                time.sleep(POLITE_SLEEP)
                if response.status_code != 429:
                    response.raise_for_status()
                    return
                time.sleep(retry_after(response))
            raise RuntimeError(f"{method} {path}: still 429 after {MAX_ATTEMPTS} attempts")

        for form in forms:
            send("GET", f"/forms/{form}/webhooks")
            send("PUT", f"/forms/{form}/webhooks/{TAG}", body(form))


def naive_fast(url: str, forms: list[str]) -> None:
    """What an impatient user writes: every form at once, no pacing."""

    async def run() -> None:
        async with httpx.AsyncClient(base_url=url, headers=HEADERS, timeout=30) as client:

            async def send(method: str, path: str, json: dict[str, Any] | None = None) -> None:
                for _ in range(MAX_ATTEMPTS):
                    response = await client.request(method, path, json=json)
                    if response.status_code != 429:
                        response.raise_for_status()
                        return
                    await asyncio.sleep(retry_after(response))
                raise RuntimeError(f"{method} {path}: still 429 after {MAX_ATTEMPTS} attempts")

            async def one(form: str) -> None:
                await send("GET", f"/forms/{form}/webhooks")
                await send("PUT", f"/forms/{form}/webhooks/{TAG}", body(form))

            await asyncio.gather(*(one(form) for form in forms))

    asyncio.run(run())


def all_done(emulator: Served, forms: list[str]) -> bool:
    with httpx.Client(base_url=emulator.url, timeout=30) as client:
        state = client.get("/_emulator/state").json()
    urls = {(w["form_id"], w["tag"]): w["url"] for w in state["webhooks"]}
    return all(urls.get((form, TAG)) == hook_url(form, "v2") for form in forms)


def measure(
    tmp: Path, name: str, forms: list[str], work: Callable[[Served, Path], None]
) -> dict[str, Any]:
    case = tmp / name
    case.mkdir()
    seed = write_seed(
        case / "seed.json", {"wsnaive": forms}, [(f, TAG, hook_url(f)) for f in forms]
    )
    with served_emulator(
        case, seed=seed, rate=RATE, burst=2, latency_ms=LATENCY_MS, access_log=True
    ) as emulator:
        started = time.perf_counter()
        work(emulator, case)
        wall = time.perf_counter() - started
        stats = emulator.stats()
        done = all_done(emulator, forms)
        arrivals = emulator.arrivals()
    first = arrivals[0].at if arrivals else 0.0
    return {
        "client": name,
        "wall": wall,
        "requests": stats["total"],
        "throttled": stats["throttled"],
        "done": done,
        "span": (arrivals[-1].at - first) if arrivals else 0.0,
        "arrivals": [[a.at - first, a.status] for a in arrivals],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--forms", type=int, default=FORMS)
    parser.add_argument("--json", help="write the results here (for bench_report.py)")
    args = parser.parse_args(argv)
    forms = form_ids("naive", args.forms)

    def ours(emulator: Served, case: Path) -> None:
        manifests = write_manifests(case / "manifests", forms, tag=TAG, version="v2")
        reconcile(
            "apply",
            "--auto-approve",
            "--api-url",
            emulator.url,
            "--state",
            str(case / "state.json"),
            "--no-color",
            str(manifests),
            env=clean_env(TYPEFORM_TOKEN=BENCH_TOKEN),
            cwd=case,
        )

    with workdir("bench-naive-") as tmp:
        runs = [
            measure(tmp, "ours", forms, ours),
            measure(tmp, "naive (a) sleep 0.5 s", forms, lambda e, _c: naive_polite(e.url, forms)),
            measure(tmp, "naive (b) concurrent", forms, lambda e, _c: naive_fast(e.url, forms)),
        ]

    base = runs[0]
    for run in runs:
        run["vs_ours"] = run["wall"] / base["wall"]
    ok = (
        base["throttled"] == 0
        and base["done"]
        and base["wall"] < runs[1]["wall"]
        and all(r["done"] for r in runs)
    )
    print(
        f"the same work ({args.forms} forms: list + PUT each) against a served emulator at "
        f"{RATE:g}/s (burst 2), {LATENCY_MS:g} ms latency; wall time includes process start-up"
    )
    print_table(
        ["client", "requests", "429s", "wall s", "first to last request s", "vs ours", "work done"],
        [
            [
                r["client"],
                str(r["requests"]),
                str(r["throttled"]),
                f"{r['wall']:.2f}",
                f"{r['span']:.2f}",
                f"{r['vs_ours']:.2f}x",
                "yes" if r["done"] else "NO",
            ]
            for r in runs
        ],
    )
    print(
        f"target: ours gets 0 429s and beats naive (a): {'PASS' if ok else 'FAIL'}"
        f" (ideal at {RATE:g}/s: {(2 * args.forms - 1) / RATE + LATENCY_MS / 1000:.1f} s)"
    )
    write_json(
        args.json,
        {"forms": args.forms, "rate": RATE, "latency_ms": LATENCY_MS, "runs": runs, "ok": ok},
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

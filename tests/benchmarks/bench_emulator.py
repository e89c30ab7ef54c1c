"""Benchmark: does the emulator's cost follow the work asked of it, not the size of the account?

Three measurements through the in-process transport (``emulator:PATH``, as the CLI uses it):

* 1,000 PUTs on the small demo account, each persisted before its response returns;
* 100 PUTs on a persisted account of 50,000 webhooks on 10,000 forms (a full rewrite of the
  file per write makes this one grow with the account; a journal keeps it flat);
* ``GET /forms/{id}/webhooks`` on an account of 50,000 webhooks on 10,000 forms (a scan of every
  webhook per read makes this grow with the account; an index by form keeps it flat).

Prints a table (milliseconds). Targets: a PUT on the big account costs at most
``MAX_SIZE_FACTOR`` times one on the demo account, and a read of one form's webhooks at most
``MAX_GET_MS``; exit code 1 when either is missed (before the journal and the index: ~190x and
~3 ms on the machine that set them). Uses only the emulator's public API, so the same script
measures an older checkout:
``PYTHONPATH=/path/to/old/checkout python tests/benchmarks/bench_emulator.py``.

Run: ``python tests/benchmarks/bench_emulator.py [--puts N] [--big-puts N] [--gets N]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import anyio

from reconciler.emulator import (
    EmulatorStore,
    EmulatorTransport,
    Seed,
    configure,
    create_app,
    open_emulator,
)
from reconciler.emulator.seed import SeedForm, SeedWebhook, SeedWorkspace

FORMS = 10_000
WEBHOOKS = 50_000
UNTHROTTLED = 1e9
MAX_SIZE_FACTOR = 5.0
MAX_GET_MS = 1.0


def big_seed(forms: int = FORMS, webhooks: int = WEBHOOKS) -> Seed:
    per_form = webhooks // forms
    return Seed(
        workspaces=(SeedWorkspace("ws1", "Bench"),),
        forms=tuple(SeedForm(f"f{i:06d}", f"Form {i}", "ws1") for i in range(forms)),
        webhooks=tuple(
            SeedWebhook(
                form_id=f"f{i:06d}",
                tag=f"hook-{j}",
                url=f"https://hooks.example.com/{i}/{j}",
                id=f"W{i:06d}x{j:02d}",
                created_at="2024-01-15T09:00:00.000Z",
            )
            for i in range(forms)
            for j in range(per_form)
        ),
    )


async def puts_in_process(path: Path, count: int, form_id: str) -> tuple[float, float]:
    """Seconds for ``count`` PUTs (creates) through one in-process handle, and for closing it
    (which may write a last snapshot)."""
    emulated = open_emulator(f"emulator:{path}")
    client = emulated.client()
    started = time.perf_counter()
    for i in range(count):
        response = await client.put(
            f"/forms/{form_id}/webhooks/bench-{i}",
            json={"url": f"https://hooks.example.com/bench/{i}", "enabled": True},
        )
        assert response.status_code == 200, response.text
    puts = time.perf_counter() - started
    started = time.perf_counter()
    await client.aclose()
    return puts, time.perf_counter() - started


async def gets_big(store: EmulatorStore, count: int) -> float:
    """Seconds for ``count`` GET /forms/{id}/webhooks on ``store``, not persisted."""
    app = create_app(store, rate=UNTHROTTLED, burst=int(UNTHROTTLED))
    transport = EmulatorTransport(app)
    import httpx

    async with httpx.AsyncClient(
        transport=transport,
        base_url="http://emulator.invalid",
        headers={"Authorization": "Bearer bench"},
    ) as client:
        started = time.perf_counter()
        for i in range(count):
            response = await client.get(f"/forms/f{(i * 7919) % FORMS:06d}/webhooks")
            assert response.status_code == 200
            assert len(response.json()["items"]) == WEBHOOKS // FORMS
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--puts", type=int, default=1000)
    parser.add_argument("--big-puts", type=int, default=100)
    parser.add_argument("--gets", type=int, default=200)
    args = parser.parse_args()

    rows: list[tuple[str, int, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        small = Path(tmp) / "small" / "emulator.json"
        configure(small, rate=UNTHROTTLED)
        seconds, closing = anyio.run(puts_in_process, small, args.puts, "kyc0001")
        small_put = seconds / args.puts
        rows.append(("PUT, demo account, persisted", args.puts, seconds))
        rows.append(("  then close the handle", 1, closing))

        started = time.perf_counter()
        seed = big_seed()
        store = EmulatorStore(seed)
        store.settings.rate, store.settings.burst = UNTHROTTLED, int(UNTHROTTLED)
        build = time.perf_counter() - started
        big = Path(tmp) / "big" / "emulator.json"
        started = time.perf_counter()
        store.save(big)
        save = time.perf_counter() - started
        rows.append(("build 50k-webhook account (in memory)", 1, build))
        rows.append(("save 50k-webhook account (snapshot)", 1, save))

        started = time.perf_counter()
        open_emulator(f"emulator:{big}")
        rows.append(("open 50k-webhook account", 1, time.perf_counter() - started))

        seconds, closing = anyio.run(puts_in_process, big, args.big_puts, "f000000")
        big_put = seconds / args.big_puts
        rows.append(("PUT, 50k-webhook account, persisted", args.big_puts, seconds))
        rows.append(("  then close the handle", 1, closing))

        seconds = anyio.run(gets_big, store, args.gets)
        get_ms = 1000 * seconds / args.gets
        rows.append(("GET /forms/{id}/webhooks, 50k webhooks", args.gets, seconds))

    print(f"{'measurement':<42} {'n':>6} {'total s':>9} {'per op ms':>10}")
    for name, n, total in rows:
        print(f"{name:<42} {n:>6} {total:>9.3f} {1000 * total / n:>10.3f}")
    factor = big_put / small_put
    print(
        f"PUT cost, 50k-webhook account / demo account: {factor:.1f}x "
        f"(target <= {MAX_SIZE_FACTOR:g}x)"
    )
    print(
        f"GET /forms/{{id}}/webhooks on 50k webhooks: {get_ms:.3f} ms (target <= {MAX_GET_MS:g} ms)"
    )
    if factor > MAX_SIZE_FACTOR or get_ms > MAX_GET_MS:
        sys.exit(1)


if __name__ == "__main__":
    main()

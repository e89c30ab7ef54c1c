"""Benchmark: what secret fingerprints add to a no-change plan of 1,000 webhooks.

A no-change plan verifies the declared secret of every managed webhook against the fingerprint
in the state file (Typeform never returns secrets). This measures that phase alone, the way the
pipeline runs it: a fresh ``Fingerprinter`` under the state's salt (a new run knows no slow
hash), ``prepare_matches`` of every (secret, fingerprint) pair on worker threads, then one
``matches`` per entry. Scenarios, 1,000 entries each:

* no secrets                         the baseline: nothing to verify
* 1,000 distinct secrets             v2 fingerprints: one scrypt per distinct secret
* 20 secrets shared by 1,000 entries v2 fingerprints: 20 scrypts, then HMACs
* legacy fingerprints (any secrets)  the first format: one scrypt per entry, whatever the
                                     secrets; measured on 100 entries, extrapolated to 1,000

Target (issue: "a no-change plan of 1,000 webhooks takes 38 s"): verification within 3 s of the
no-secret baseline, for 1,000 distinct secrets. The slow hash is kept at FINGERPRINT_COST, so
distinct secrets cost (distinct secrets x one scrypt / parallel speed-up) at best; the table
prints that floor next to the measured figure. Exit code 1 when the target is missed.

Run: ``python tests/benchmarks/bench_fingerprints.py [ENTRIES]`` (``make bench`` runs every
bench_*.py). Setting up the distinct-secret state costs as much again as measuring it.
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import anyio

from reconciler.fingerprints import (
    FINGERPRINT_COST,
    Fingerprinter,
    _worker_count,
    fingerprint_secret,
    new_salt,
)

TARGET_SECONDS = 3.0
SHARED_SECRETS = 20
LEGACY_SAMPLE = 100


@dataclass(frozen=True)
class Row:
    scenario: str
    entries: int
    distinct: int
    slow_hashes: int
    seconds: float
    note: str = ""


def verify(salt: str, pairs: list[tuple[str, str]]) -> tuple[float, int]:
    """What a no-change plan does: fresh fingerprinter, prepare on threads, match every entry."""
    started = time.perf_counter()
    fp = Fingerprinter(salt)
    anyio.run(fp.prepare_matches, pairs)
    ok = all(fp.matches(secret, fingerprint) for secret, fingerprint in pairs)
    elapsed = time.perf_counter() - started
    assert ok, "every declared secret should match its own fingerprint"
    return elapsed, fp.slow_hash_count


def v2_pairs(salt: str, secrets: list[str]) -> list[tuple[str, str]]:
    maker = Fingerprinter(salt)
    anyio.run(maker.prepare, secrets)
    return [(s, maker.fingerprint(s)) for s in secrets]


def one_scrypt_seconds() -> float:
    timings = []
    for i in range(5):
        started = time.perf_counter()
        hashlib.scrypt(
            f"probe-{i}".encode(),
            salt=b"s" * 16,
            n=FINGERPRINT_COST.n,
            r=FINGERPRINT_COST.r,
            p=FINGERPRINT_COST.p,
            maxmem=FINGERPRINT_COST.maxmem(),
            dklen=32,
        )
        timings.append(time.perf_counter() - started)
    return sorted(timings)[len(timings) // 2]


def timed(label: str, action: Callable[[], Row]) -> Row:
    print(f"  running: {label} ...", file=sys.stderr, flush=True)
    return action()


def main(entries: int) -> int:
    salt = new_salt()
    scrypt = one_scrypt_seconds()
    workers = _worker_count()
    rows: list[Row] = []

    def baseline() -> Row:
        seconds, slow = verify(salt, [])
        return Row("no secrets", entries, 0, slow, seconds)

    def distinct() -> Row:
        secrets = [f"whsec-distinct-{i:05d}" for i in range(entries)]
        seconds, slow = verify(salt, v2_pairs(salt, secrets))
        floor = entries * scrypt / workers
        return Row("v2, distinct secrets", entries, entries, slow, seconds, f"floor {floor:.1f} s")

    def shared() -> Row:
        secrets = [f"whsec-shared-{i % SHARED_SECRETS:02d}" for i in range(entries)]
        seconds, slow = verify(salt, v2_pairs(salt, secrets))
        return Row("v2, shared secrets", entries, SHARED_SECRETS, slow, seconds)

    def legacy() -> Row:
        sample = min(LEGACY_SAMPLE, entries)
        pairs = [
            (s, fingerprint_secret(s))
            for s in (f"whsec-shared-{i % SHARED_SECRETS:02d}" for i in range(sample))
        ]
        seconds, slow = verify(salt, pairs)
        scale = entries / sample
        return Row(
            "legacy (one scrypt per entry)",
            entries,
            SHARED_SECRETS,
            round(slow * scale),
            seconds * scale,
            f"extrapolated from {sample}",
        )

    rows.append(timed("no secrets", baseline))
    rows.append(timed("shared secrets", shared))
    rows.append(timed("legacy", legacy))
    rows.append(timed("distinct secrets (the long one)", distinct))

    base = rows[0].seconds
    print()
    print(
        f"one scrypt at n={FINGERPRINT_COST.n},r={FINGERPRINT_COST.r},p={FINGERPRINT_COST.p}: "
        f"{scrypt * 1000:.0f} ms; worker threads: {workers}"
    )
    print()
    header = f"{'scenario':<31} {'entries':>7} {'secrets':>7} {'scrypts':>7} {'seconds':>8}  "
    print(header + "vs no secrets")
    print("-" * (len(header) + 20))
    for row in rows:
        print(
            f"{row.scenario:<31} {row.entries:>7} {row.distinct:>7} {row.slow_hashes:>7} "
            f"{row.seconds:>8.2f}  {row.seconds - base:+.2f} s  {row.note}"
        )
    print()
    verdicts = []
    for row in rows[1:]:
        if row.scenario.startswith("legacy"):
            continue
        met = row.seconds - base <= TARGET_SECONDS
        verdicts.append(met)
        print(
            f"target ({row.scenario}: within {TARGET_SECONDS:.0f} s of no secrets): "
            + ("met" if met else "MISSED")
        )
    return 0 if all(verdicts) else 1


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000))

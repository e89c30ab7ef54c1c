"""Benchmark: how much CPU does validating 10,000 webhook entries cost? (SPEC section 12)

Generates 10,000 entries over 2,000 forms (5 tags per form) in a temporary directory, laid out
two ways: a tree of 100 files of 100 entries (several documents per file, with defaults, file
and env secrets, an Account) and one file holding all 10,000 entries. It then runs
``reconciler.manifests.check`` on each, in this process, a few rounds, and prints a table of the
median CPU time (``time.process_time``) and wall time.

Target (issue "Fast at 10,000 webhooks"): ``check`` of 10,000 entries <= 0.4 s CPU. Interpreter
start-up and imports are not included (they are the same for every command); the subprocess row
shows what ``reconcile validate`` costs end to end, for information.
Exit code 1 when the target is missed.

Run: ``python tests/benchmarks/bench_manifests.py`` (``make bench`` runs every bench_*.py).
"""

from __future__ import annotations

import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from reconciler.manifests import check

ENTRIES = 10_000
FORMS = 2_000
TAGS_PER_FORM = ENTRIES // FORMS
PER_FILE = 100
PER_DOC = 25
ROUNDS = 5
TARGET_CPU = 0.4

HEADER = "apiVersion: reconciler/v1\nkind: WebhookSet\nmetadata: {name: %s}\nspec:\n"


def _entry(i: int) -> str:
    form = f"form{i // TAGS_PER_FORM:05d}"
    tag = f"hook-{i % TAGS_PER_FORM}"
    lines = [
        f"    - form_id: {form}",
        f"      tag: {tag}",
        f"      url: https://hooks.example.com/typeform/{form}/{tag}",
    ]
    if i % 7 == 0:
        lines.append("      event_types: [form_response, form_response_partial]")
    if i % 11 == 0:
        lines.append("      secret: {env: OTHER_SECRET}")
    if i % 13 == 0:
        lines.append("      enabled: false")
    return "\n".join(lines) + "\n"


def _document(name: str, entries: range, *, account: str) -> str:
    spec = (
        f"  account: {account}\n"
        "  defaults:\n"
        "    event_types: [form_response]\n"
        "    secret: {file: secrets/hook.txt}\n"
        "  webhooks:\n"
    )
    return HEADER % name + spec + "".join(_entry(i) for i in entries)


ACCOUNT = (
    "apiVersion: reconciler/v1\nkind: Account\nmetadata: {name: eu}\n"
    "spec:\n  api_url: https://api.eu.typeform.com\n  token: {env: TYPEFORM_TOKEN_EU}\n"
)


def generate_tree(root: Path) -> None:
    """100 files of 100 entries, 4 documents each, half of them in a declared account."""
    (root / "secrets").mkdir(parents=True)
    (root / "secrets" / "hook.txt").write_text("bench-secret\n")
    (root / "accounts.yaml").write_text(ACCOUNT)
    for f in range(ENTRIES // PER_FILE):
        docs = []
        for d in range(PER_FILE // PER_DOC):
            start = f * PER_FILE + d * PER_DOC
            account = "eu" if f % 2 else "default"
            docs.append(_document(f"set-{f}-{d}", range(start, start + PER_DOC), account=account))
        (root / f"team-{f:03d}.yaml").write_text("---\n".join(docs))


def generate_single(root: Path) -> None:
    """One file, one document, 10,000 entries."""
    (root / "secrets").mkdir(parents=True)
    (root / "secrets" / "hook.txt").write_text("bench-secret\n")
    (root / "all.yaml").write_text(_document("everything", range(ENTRIES), account="default"))


def _measure(fn: Callable[[], object]) -> tuple[float, float]:
    cpu, wall = [], []
    for _ in range(ROUNDS):
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return statistics.median(cpu), statistics.median(wall)


def _subprocess_cpu(path: Path) -> tuple[float, float, int] | None:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    w0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", "from reconciler.cli import main; main()", "validate", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - w0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        print(f"reconcile validate failed (row left out):\n{proc.stdout}{proc.stderr}")
        return None
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall, after.ru_maxrss


def main() -> int:
    rows: list[tuple[str, float, float, str]] = []
    missed = False
    with tempfile.TemporaryDirectory() as tmp:
        for label, generate in (
            ("100 files x 100 entries", generate_tree),
            ("1 file x 10,000 entries", generate_single),
        ):
            root = Path(tmp) / label.split()[0]
            generate(root)
            result = check([root])
            if not result.valid or result.webhooks != ENTRIES:
                for d in result.diagnostics[:5]:
                    print(d.render(), file=sys.stderr)
                raise SystemExit(f"{label}: generated manifests are not valid")
            cpu, wall = _measure(lambda root=root: check([root]))
            ok = cpu <= TARGET_CPU
            missed |= not ok
            rows.append((f"check(), {label}", cpu, wall, "ok" if ok else "MISSED"))
        tree = Path(tmp) / "100"
        measured = _subprocess_cpu(tree)
        if measured is not None:
            cpu, wall, rss = measured
            label = f"reconcile validate, 100 files (subprocess, max RSS {rss // 1024} MB)"
            rows.append((label, cpu, wall, "info"))
    print(f"Validating {ENTRIES:,} entries over {FORMS:,} forms, median of {ROUNDS} rounds")
    print(f"Target: check() <= {TARGET_CPU} s CPU (python {sys.version.split()[0]})")
    print()
    print(f"{'case':<58} {'CPU s':>7} {'wall s':>7}  result")
    for label, cpu, wall, verdict in rows:
        print(f"{label:<58} {cpu:>7.3f} {wall:>7.3f}  {verdict}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())

"""Shared pieces of the benchmarks that run the real CLI against a *served* emulator.

Why it exists: bench_pacing, bench_requests, bench_accounts, bench_incremental and bench_naive
all need the same things: a seed and manifests of N generated forms, ``reconcile emulator`` in a
subprocess (its stats read through the control API, its access log parsed for request arrival
times), and ``python -m reconciler ...`` run with a clean environment. Keeping them here keeps
each benchmark about what it measures.

What it must never do: print or write a token. The tokens used here are benchmark constants, but
they are passed only through the environment of the child processes, and the tokens file names
environment variables (``$NAME``), never values.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

BENCH_TOKEN = "bench-token-not-a-real-one"  # the served emulator's only token
SCRUBBED = ("TYPEFORM_TOKEN", "TYPEFORM_API_URL", "RECONCILE_STATE")
HEADER = "apiVersion: reconciler/v1\nkind: WebhookSet\nmetadata: {name: %s}\nspec:\n"
PER_FILE = 100


def clean_env(**extra: str) -> dict[str, str]:
    """The parent's environment without any token, API URL or state path, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED and not k.startswith("BENCH_")}
    env.update(extra)
    return env


def form_ids(prefix: str, count: int) -> list[str]:
    return [f"{prefix}{i:05d}" for i in range(count)]


def write_seed(
    path: Path,
    workspaces: dict[str, Sequence[str]],
    webhooks: Sequence[tuple[str, str, str]] = (),
) -> Path:
    """A seed file: ``workspaces`` maps a workspace id to its form ids; webhooks are
    ``(form_id, tag, url)``."""
    seed = {
        "workspaces": [{"id": ws, "name": f"Bench {ws}"} for ws in workspaces],
        "forms": [
            {"id": form, "title": f"Form {form}", "workspace_id": ws}
            for ws, forms in workspaces.items()
            for form in forms
        ],
        "webhooks": [
            {"form_id": form, "tag": tag, "url": url, "event_types": ["form_response"]}
            for form, tag, url in webhooks
        ],
    }
    path.write_text(json.dumps(seed), encoding="utf-8")
    return path


def hook_url(form: str, version: str = "v1") -> str:
    return f"https://hooks.example.com/bench/{form}/{version}"


def write_manifests(
    root: Path,
    forms: Sequence[str],
    *,
    tag: str = "bench",
    version: str = "v1",
    account: str | None = None,
    name: str = "bench",
) -> Path:
    """One webhook per form in files of ``PER_FILE`` entries (no secrets: bench_fingerprints
    measures those)."""
    root.mkdir(parents=True, exist_ok=True)
    for start in range(0, len(forms), PER_FILE):
        set_name = f"{name}-{start // PER_FILE:03d}"
        lines = [HEADER % set_name]
        if account is not None:
            lines.append(f"  account: {account}\n")
        lines.append("  defaults:\n    event_types: [form_response]\n  webhooks:\n")
        for form in forms[start : start + PER_FILE]:
            lines.append(f"    - form_id: {form}\n      tag: {tag}\n")
            lines.append(f"      url: {hook_url(form, version)}\n")
        (root / f"{set_name}.yaml").write_text("".join(lines), encoding="utf-8")
    return root


def write_selector_manifest(root: Path, workspace: str, *, tag: str = "bench") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    text = (
        HEADER % f"selector-{workspace}"
        + f"  webhooks:\n    - forms: {{workspace_id: {workspace}}}\n      tag: {tag}\n"
        + "      url: https://hooks.example.com/bench/selected\n"
    )
    (root / f"selector-{workspace}.yaml").write_text(text, encoding="utf-8")
    return root


@dataclass
class Arrival:
    """One API request as the emulator's access log saw it."""

    at: float
    """Arrival, seconds since the epoch: log time minus the injected latency for answered
    requests (a 429 is answered at once, before any latency)."""
    method: str
    path: str
    status: int


_ACCESS = re.compile(r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[\d.]+" (?P<status>\d{3})')


def parse_access_log(text: str, latency: float) -> list[Arrival]:
    """API requests (not the control API) from a JSON access log, in arrival order."""
    arrivals: list[Arrival] = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(record, dict) or record.get("logger") != "uvicorn.access":
            continue
        match = _ACCESS.search(str(record.get("message", "")))
        if match is None or match["path"].startswith("/_emulator"):
            continue
        status = int(match["status"])
        logged = datetime.fromisoformat(str(record["time"]).replace("Z", "+00:00")).timestamp()
        at = logged - (0.0 if status == 429 else latency)
        arrivals.append(Arrival(at, match["method"], match["path"], status))
    arrivals.sort(key=lambda a: a.at)
    return arrivals


@dataclass
class Served:
    """A running ``reconcile emulator``: its URL and where its access log goes."""

    url: str
    log_path: Path
    latency: float
    process: subprocess.Popen[str] = field(repr=False)

    def stats(self) -> dict[str, Any]:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            answer: dict[str, Any] = client.get("/_emulator/stats").json()
        return answer

    def arrivals(self) -> list[Arrival]:
        return parse_access_log(self.log_path.read_text(encoding="utf-8"), self.latency)


@contextlib.contextmanager
def served_emulator(
    workdir: Path,
    *,
    seed: Path,
    rate: float,
    burst: int | None = None,
    latency_ms: float = 0.0,
    tokens_file: Path | None = None,
    env: dict[str, str] | None = None,
    access_log: bool = False,
) -> Iterator[Served]:
    """``reconcile emulator --port 0`` in a subprocess; killed on exit."""
    log_path = workdir / f"emulator-{time.monotonic_ns()}.log"
    argv = [
        sys.executable,
        "-m",
        "reconciler",
        "emulator",
        "--port",
        "0",
        "--seed",
        str(seed),
        "--rate",
        f"{rate:g}",
        "--burst",
        str(burst if burst is not None else max(2, int(rate))),
        "--log-format",
        "json",
        "--log-level",
        "info" if access_log else "warning",
    ]
    if latency_ms:
        argv += ["--latency", f"{latency_ms:g}"]
    if tokens_file is not None:
        argv += ["--tokens", str(tokens_file)]
    child_env = env if env is not None else clean_env(TYPEFORM_TOKEN=BENCH_TOKEN)
    with log_path.open("w", encoding="utf-8") as log:
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=log, text=True, env=child_env, cwd=workdir
        )
        try:
            assert proc.stdout is not None
            ready, _, _ = select.select([proc.stdout], [], [], 30)
            line = proc.stdout.readline() if ready else ""
            match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
            if match is None:
                raise RuntimeError(
                    "the emulator did not start: " + log_path.read_text(encoding="utf-8")[-500:]
                )
            yield Served(match.group(1), log_path, latency_ms / 1000, proc)
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)


@dataclass
class Ran:
    code: int
    wall: float
    stdout: str
    stderr: str


def reconcile(
    *args: str,
    env: dict[str, str],
    cwd: Path,
    ok: Sequence[int] = (0,),
    timeout: float = 600,
) -> Ran:
    """``python -m reconciler ARGS``; a code outside ``ok`` stops the benchmark with its stderr."""
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "reconciler", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    wall = time.perf_counter() - started
    if proc.returncode not in ok:
        raise SystemExit(
            f"reconcile {args[0]} exited {proc.returncode} (expected {list(ok)}):\n"
            f"{proc.stderr[-2000:]}"
        )
    return Ran(proc.returncode, wall, proc.stdout, proc.stderr)


def write_json(path: str | None, doc: dict[str, Any]) -> None:
    """The benchmark's results for bench_report.py (``--json PATH``)."""
    if path:
        Path(path).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")


@contextlib.contextmanager
def workdir(prefix: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix=prefix) as name:
        yield Path(name)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))

"""``make bench``: run every benchmark, then publish BENCHMARKS.md and benchmarks/pacing.png.

Why it exists: the benchmarks each print a table and exit 1 when they miss a target; the
published results need them all in one place, with the machine they ran on, the targets next to
the figures, and a picture of the pacing. This script is the driver: it runs every
``tests/benchmarks/bench_*.py`` (but itself) in its own subprocess, one after another (they
measure time: never two at once), each bounded by a timeout; reads the structured results of the
ones that write ``--json`` and parses the tables of the others (bench_plan's CPU/RSS rows,
bench_crash's trials line); and writes the report. Exit code 1 when any benchmark missed a
target, failed or timed out, so ``make bench`` fails.

What it must never do: publish a token. The benchmarks' tokens are constants known here; the
report is checked for them before it is written and refused (exit 1) if one appears.

Run: ``python tests/benchmarks/bench_report.py [--only NAME ...] [--out FILE] [--plot FILE]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchlib import BENCH_TOKEN

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SELF = Path(__file__).name
WRITES_JSON = {
    "bench_pacing.py",
    "bench_requests.py",
    "bench_incremental.py",
    "bench_accounts.py",
    "bench_naive.py",
}
TIMEOUT_S = 480.0
BUDGET_S = 600.0
TOKENS = (BENCH_TOKEN, "bench-account-", "bench-token")


@dataclass
class Result:
    """One benchmark script's run."""

    script: str
    code: int | None
    """Exit code; None when it timed out (and was killed)."""
    wall: float
    output: str
    data: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return self.code == 0

    @property
    def status(self) -> str:
        if self.code is None:
            return f"TIMED OUT after {TIMEOUT_S:.0f} s"
        return "pass" if self.code == 0 else f"MISSED (exit {self.code})"


@dataclass
class Row:
    """A line of the summary table."""

    area: str
    measure: str
    value: str
    target: str
    verdict: bool | None
    """None: for information, no target."""


@dataclass
class Report:
    results: dict[str, Result] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    plot_link: str = "benchmarks/pacing.png"
    """Where BENCHMARKS.md links the plot, relative to it."""


def run_script(path: Path, tmp: Path) -> Result:
    """Run one benchmark in its own interpreter, stdout and stderr together, bounded in time."""
    argv = [sys.executable, str(path)]
    json_path = tmp / f"{path.stem}.json"
    if path.name in WRITES_JSON:
        argv += ["--json", str(json_path)]
    print(f"==> {path.name}", flush=True)
    started = time.perf_counter()
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        start_new_session=True,
    )
    lines: list[str] = []

    def pump() -> None:  # shows progress as it comes, and keeps it for the report
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            print(line, end="", flush=True)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        code: int | None = proc.wait(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # its emulator children too: same session
        proc.wait()
        code = None
    reader.join(timeout=10)
    wall = time.perf_counter() - started
    output = "".join(lines)
    data = None
    if code is not None and json_path.exists():
        data = json.loads(json_path.read_text(encoding="utf-8"))
    return Result(path.name, code, wall, output, data)


# --------------------------------------------------------------------------- parsing tables

_PLAN_ROW = re.compile(
    r"^(?P<case>plan, [^\n]*?)\s+(?P<cpu>[\d.]+)\s+(?P<wall>[\d.]+)\s+(?P<rss>[\d.]+)\s+"
    r"(?P<target>.*?)\s+(?P<result>ok|MISSED|info)\s*$",
    re.MULTILINE,
)


def plan_rows(output: str) -> list[dict[str, str]]:
    """bench_plan.py's ``plan, ...`` rows: case, CPU s, wall s, RSS MB, target, result."""
    return [m.groupdict() for m in _PLAN_ROW.finditer(output)]


def crash_counts(output: str) -> tuple[int, int] | None:
    """bench_crash.py's (trials, survived), or None when its table is not there."""
    trials = re.search(r"^\s*trials\s+(\d+)\s*$", output, re.MULTILINE)
    survived = re.search(r"^\s*survived\s+(\d+)\s*$", output, re.MULTILINE)
    if trials is None or survived is None:
        return None
    return int(trials[1]), int(survived[1])


# --------------------------------------------------------------------------- markdown


def table(headers: list[str], rows: list[list[str]]) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def verdict(ok: bool | None) -> str:
    return "info" if ok is None else ("met" if ok else "**MISSED**")


def machine() -> list[list[str]]:
    model = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.lower().startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    return [
        ["CPU", model],
        ["cores", f"{os.cpu_count()} ({usable} usable by this process)"],
        ["Python", f"{platform.python_implementation()} {platform.python_version()}"],
        ["OS", f"{platform.system()} {platform.release()} ({platform.machine()})"],
        ["date", datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")],
        ["commit", commit or "unknown"],
    ]


def not_run(report: Report, script: str) -> str | None:
    result = report.results.get(script)
    if result is None:
        return f"_Not run ({script} was left out of this run or is not present)._\n"
    if result.data is None and script in WRITES_JSON:
        return f"_{script}: {result.status}; its output is in the appendix._\n"
    return None


def section_pacing(report: Report) -> str:
    head = "## Refresh pacing at 2 requests/s with 300 ms latency\n\n"
    missing = not_run(report, "bench_pacing.py")
    if missing:
        return head + missing
    d = report.results["bench_pacing.py"].data or {}
    ok_eff = d["efficiency"] >= d["target_efficiency"]
    report.rows += [
        Row(
            "pacing",
            "efficiency (achieved rate / 2)",
            f"{d['efficiency']:.3f}",
            f">= {d['target_efficiency']}",
            ok_eff,
        ),
        Row("pacing", "429s during the refresh", str(d["throttled"]), "0", d["throttled"] == 0),
    ]
    return head + (
        f"`reconcile plan` over {d['forms']} forms (one `GET /forms/{{id}}/webhooks` each) "
        f"against a served emulator (`reconcile emulator --rate 2 --burst 2 --latency 300`). "
        "Arrival times are the emulator's access-log times minus the injected latency; "
        "efficiency = (n - 1) / (last arrival - first arrival) / 2. An efficiency a hair "
        "above 1 is the jitter of those timestamps, not a burst (the bucket would have "
        "answered 429).\n"
        "\n"
        + table(
            ["measure", "value", "target"],
            [
                ["requests", str(d["requests"]), f"{d['forms']} (one GET per form)"],
                ["achieved rate", f"{d['achieved_rate']:.3f}/s", "2/s (Typeform's limit)"],
                ["pacing efficiency", f"{d['efficiency']:.3f}", f">= {d['target_efficiency']}"],
                ["429s received", str(d["throttled"]), "0"],
                [
                    "wall time, process start-up included",
                    f"{d['wall']:.2f} s",
                    f"ideal (n - 1) / 2 + 0.3 = {d['ideal']:.2f} s",
                ],
            ],
        )
        + "\nThe request start times are plotted in "
        f"[{report.plot_link}]({report.plot_link}) (left).\n"
    )


def section_requests(report: Report) -> str:
    head = "## Requests per plan against forms in scope\n\n"
    missing = not_run(report, "bench_requests.py")
    if missing:
        return head + missing
    d = report.results["bench_requests.py"].data or {}
    rows = []
    for r in d["rows"]:
        entries = "one `form_id` entry per form" if r["kind"] == "explicit" else "one selector"
        target = (
            f"N = {r['expected']}"
            if r["kind"] == "explicit"
            else f"N + ceil(N/200) = {r['expected']}"
        )
        report.rows.append(
            Row(
                "requests",
                f"plan, {r['forms']:,} forms, {entries}",
                str(r["requests"]),
                target,
                r["ok"],
            )
        )
        routes = ", ".join(f"`{route}` x{c}" for route, c in sorted(r["routes"].items()))
        rows.append(
            [f"{r['forms']:,}", entries, str(r["requests"]), target, routes, verdict(r["ok"])]
        )
    return head + (
        "`reconcile plan` against a served emulator with the limit out of the way (100,000/s), "
        "requests counted by `GET /_emulator/stats`. The selector is "
        "`forms: {workspace_id: ...}` over a workspace holding exactly N forms.\n\n"
        + table(["forms (N)", "entries", "requests", "target", "by route", "result"], rows)
    )


def section_cpu(report: Report) -> str:
    head = "## CPU and peak RSS of a plan over 10,000 webhooks on 2,000 forms\n\n"
    result = report.results.get("bench_plan.py")
    if result is None:
        return head + "_Not available (bench_plan.py was not run)._\n"
    rows = plan_rows(result.output)
    if not rows:
        return head + f"_bench_plan.py: {result.status}; no table to read, see the appendix._\n"
    targets = {"no change": "<= 2 s CPU, <= 150 MB", "all update": "<= 3 s CPU"}
    out = []
    for r in rows:
        ok = None if r["result"] == "info" else r["result"] == "ok"
        kind = next((t for t in targets if t in r["case"]), "")
        target = targets.get(kind, r["target"])
        report.rows.append(
            Row("10k plan", r["case"], f"{r['cpu']} s CPU, {r['rss']} MB", target, ok)
        )
        out.append([r["case"], r["cpu"], r["wall"], r["rss"], target, verdict(ok)])
    return head + (
        "From bench_plan.py: the real command line in a subprocess against an in-process "
        "emulator at 100,000/s (so only our own cost is measured), CPU (user + sys) and peak "
        "RSS of the child from `wait4`, median of its rounds. Its full table (with `--help` "
        "and a 1,000-create apply) is in the appendix.\n\n"
        + table(["case", "CPU s", "wall s", "peak RSS MB", "target", "result"], out)
    )


def section_incremental(report: Report) -> str:
    head = "## Full versus incremental (`--changed-since`) plan over 1,000 forms\n\n"
    missing = not_run(report, "bench_incremental.py")
    if missing:
        return head + missing
    d = report.results["bench_incremental.py"].data or {}
    inc, full, extra = d["incremental"], d["full_measured"], d["full_extrapolated"]
    how = "measured" if extra["measured"] else f"extrapolated from {full['forms']:,} forms"
    report.rows += [
        Row(
            "incremental",
            f"--changed-since, {d['changed']} of {d['forms']:,} forms changed",
            f"{inc['requests']} requests, {inc['wall']:.2f} s",
            f"{d['changed']} requests, <= {d['target_incremental_s']:g} s",
            inc["ok"],
        ),
        Row(
            "incremental",
            f"full plan, {full['forms']:,} forms (measured)",
            f"{full['requests']} requests, {full['wall']:.1f} s",
            "one request per form",
            full["requests"] == full["forms"],
        ),
        Row(
            "incremental",
            f"full plan, {extra['forms']:,} forms ({how})",
            f"{extra['requests']} requests, ~{extra['wall']:.0f} s",
            "~500 s at 2/s",
            None,
        ),
    ]
    note = (
        ""
        if extra["measured"]
        else (
            f"A full plan of {d['forms']:,} forms at 2/s takes over 8 minutes, more than this "
            f"report's 10-minute budget with everything else, so it was measured over "
            f"{full['forms']:,} forms and **extrapolated linearly** (requests = forms, time = "
            f"measured time x {d['forms'] / full['forms']:g}). "
            "`python tests/benchmarks/bench_incremental.py --full-forms 1000` measures it.\n\n"
        )
    )
    return head + (
        f"A served emulator at 2/s (burst 2) holds {d['forms']:,} forms with their webhooks; a "
        "git repository holds manifests for all of them; the working tree changes the url of "
        f"{d['changed']} entries (a pull request). `reconcile plan --changed-since HEAD` against "
        "a full `reconcile plan`, requests counted by the emulator, wall time including process "
        "start-up.\n\n"
        + note
        + table(
            ["plan", "requests", "wall s", "target", "result"],
            [
                [
                    f"`--changed-since HEAD` ({d['changed']} forms changed; partial: "
                    f"{inc['partial']}, updates: {inc['summary'].get('update')})",
                    str(inc["requests"]),
                    f"{inc['wall']:.2f}",
                    f"{d['changed']} requests, <= {d['target_incremental_s']:g} s",
                    verdict(inc["ok"]),
                ],
                [
                    f"full, {full['forms']:,} forms (measured)",
                    str(full["requests"]),
                    f"{full['wall']:.1f}",
                    "one request per form",
                    verdict(full["requests"] == full["forms"]),
                ],
                [
                    f"full, {extra['forms']:,} forms ({how})",
                    str(extra["requests"]),
                    f"~{extra['wall']:.0f}",
                    f"~{d['forms'] / d['rate']:.0f} s at 2/s",
                    "info",
                ],
            ],
        )
        + f"\nSpeed-up of the incremental plan: about {extra['wall'] / inc['wall']:.0f}x.\n"
    )


def section_accounts(report: Report) -> str:
    head = "## K accounts: concurrently against one after another\n\n"
    missing = not_run(report, "bench_accounts.py")
    if missing:
        return head + missing
    d = report.results["bench_accounts.py"].data or {}
    rows = []
    for r in d["rows"]:
        target = f">= {d['target_share'] * r['accounts']:g}x, 0 429s"
        report.rows.append(
            Row(
                "accounts",
                f"K = {r['accounts']}: speed-up over one after another",
                f"{r['speedup']:.2f}x ({r['throttled']} 429s)",
                target,
                r["ok"],
            )
        )
        rows.append(
            [
                str(r["accounts"]),
                str(r["requests"]),
                f"{r['together']:.2f}",
                f"{r['in_turn']:.2f}",
                f"{r['speedup']:.2f}x",
                str(r["throttled"]),
                target,
                verdict(r["ok"]),
            ]
        )
    forms = d["rows"][0]["forms_per_account"] if d["rows"] else 0
    return head + (
        "A served emulator with a tokens file mapping each token (`$BENCH_TOKEN_k`) to its own "
        "emulator account, so each has its own bucket: 2/s, burst 2, 300 ms latency. Each "
        "account is an Account document (`api_url`, `token: {env: BENCH_TOKEN_k}`, "
        f"`rate_limit: 2`) with {forms} forms of its own. *All at once*: one `reconcile plan`; "
        "*one after another*: K runs of `reconcile plan --account acct-k`, their wall times "
        "summed (process start-up included in both). Forms per account are kept small so the "
        "sequential runs fit in the time budget (at 2/s each account's refresh takes about "
        f"{(forms - 1) / 2 + 0.3:.1f} s).\n\n"
        + table(
            [
                "K",
                "requests",
                "all at once s",
                "one after another s",
                "speed-up",
                "429s",
                "target",
                "result",
            ],
            rows,
        )
    )


def section_crash(report: Report) -> str:
    head = "## Crash trials (apply SIGKILLed at a random point)\n\n"
    result = report.results.get("bench_crash.py")
    counts = crash_counts(result.output) if result is not None else None
    if result is None or counts is None:
        report.rows.append(Row("crash", "trials survived", "not available", "all", None))
        why = "bench_crash.py is not present" if result is None else result.status
        return head + f"_Not available ({why})._\n"
    trials, survived = counts
    ok = trials == survived and result.ok
    report.rows.append(Row("crash", "trials survived", f"{survived} of {trials}", "all", ok))
    return head + (
        f"From bench_crash.py: **{survived} of {trials}** trials survived (a loadable state, "
        "parseable records, a lock the next apply takes, and a plan that is exactly the "
        "remaining work). Its full table is in the appendix.\n"
    )


def section_naive(report: Report) -> str:
    head = "## Our client against naive hand-written clients\n\n"
    missing = not_run(report, "bench_naive.py")
    if missing:
        return head + missing
    d = report.results["bench_naive.py"].data or {}
    runs = d["runs"]
    ours = runs[0]
    report.rows += [
        Row(
            "naive",
            "ours: 429s on the same work",
            str(ours["throttled"]),
            "0",
            ours["throttled"] == 0,
        ),
        Row(
            "naive",
            "naive (a) sleep 0.5 s: wall time against ours",
            f"{runs[1]['vs_ours']:.2f}x",
            "> 1x (ours faster)",
            runs[1]["wall"] > ours["wall"],
        ),
        Row(
            "naive",
            "naive (b) concurrent: 429s, wall time against ours",
            f"{runs[2]['throttled']} 429s, {runs[2]['vs_ours']:.2f}x",
            "info",
            None,
        ),
    ]
    rows = [
        [
            r["client"],
            str(r["requests"]),
            str(r["throttled"]),
            f"{r['wall']:.2f}",
            f"{r['span']:.2f}",
            f"{r['vs_ours']:.2f}x",
            "yes" if r["done"] else "**no**",
        ]
        for r in runs
    ]
    ideal = (2 * d["forms"] - 1) / d["rate"] + d["latency_ms"] / 1000
    return head + (
        f"The same work, {d['forms']} forms: list each form's webhooks, PUT the changed one "
        f"({2 * d['forms']} requests), each client against a fresh served emulator at 2/s "
        "(burst 2) with 300 ms latency. *Ours*: `reconcile apply --auto-approve` (wall time "
        "includes starting Python and writing the state). *Naive (a)*: httpx, sequential, "
        "`time.sleep(0.5)` after every request. *Naive (b)*: httpx async, every form at once "
        "(`asyncio.gather`), no pacing. Both naive clients retry a 429 after its `Retry-After` "
        "(up to 20 attempts) so that they finish the work; each run is checked to have left "
        f"every webhook at its new url. Ideal at 2/s: {ideal:.1f} s.\n\n"
        + table(
            [
                "client",
                "requests",
                "429s",
                "wall s",
                "first to last request s",
                "vs ours",
                "work done",
            ],
            rows,
        )
        + f"\nNaive (b) finishes about as fast as ours, but with {runs[2]['requests']} "
        f"requests for {2 * d['forms']} useful ones: its waiting requests all retry together "
        "when `Retry-After` ends and the bucket (burst 2) lets two through, so the 429s grow "
        "faster than the work. Naive (a) never hits the limit but adds the 300 ms latency "
        "to its half-second sleep on every request (see the right panel of "
        f"[{report.plot_link}]({report.plot_link})).\n"
    )


def section_others(report: Report) -> str:
    rows = []
    for name in (
        "bench_client.py",
        "bench_manifests.py",
        "bench_fingerprints.py",
        "bench_emulator.py",
    ):
        result = report.results.get(name)
        if result is None:
            continue
        report.rows.append(
            Row(
                "other",
                f"{name}: its own targets (table in the appendix)",
                result.status,
                "exit 0",
                result.ok,
            )
        )
        rows.append([name, f"{result.wall:.1f}", result.status])
    if not rows:
        return ""
    return (
        "## Other benchmarks\n\nTheir tables (targets included) are in the appendix.\n\n"
        + table(["benchmark", "wall s", "result"], rows)
    )


def appendix(report: Report) -> str:
    parts = ["## Appendix: every benchmark's output\n"]
    for name, result in report.results.items():
        parts.append(f"\n### {name} ({result.status}, {result.wall:.1f} s)\n\n```text\n")
        parts.append(result.output.rstrip("\n").replace("```", "'''") + "\n```\n")
    return "".join(parts)


def render(report: Report, total: float, plot: Path | None, out: Path) -> str:
    if plot is not None:
        report.plot_link = Path(os.path.relpath(plot.resolve(), out.resolve().parent)).as_posix()
    sections = [
        section_pacing(report),
        section_requests(report),
        section_cpu(report),
        section_incremental(report),
        section_accounts(report),
        section_crash(report),
        section_naive(report),
        section_others(report),
    ]
    missed = [r for r in report.rows if r.verdict is False]
    failed = [r for r in report.results.values() if not r.ok]
    headline = (
        "every target met"
        if not missed and not failed
        else f"{len(missed)} target(s) missed, {len(failed)} benchmark(s) failed"
    )
    summary = table(
        ["area", "measure", "value", "target", "result"],
        [[r.area, r.measure, r.value, r.target, verdict(r.verdict)] for r in report.rows],
    )
    picture = f"![request start times]({report.plot_link})\n\n" if plot is not None else ""
    return (
        "# Benchmarks\n\n"
        "Written by `make bench` (`tests/benchmarks/bench_report.py`), which runs every "
        "`tests/benchmarks/bench_*.py` in its own process, one after another, and fails when "
        "any target is missed. Figures are from one run on the machine below; they move by a "
        "few percent between runs, and every time involving the rate limit is dominated by "
        "the 2 requests/s Typeform allows, not by this machine.\n\n"
        + table(["machine", ""], machine())
        + f"\nWhole run: {total:.0f} s. Result: **{headline}**.\n\n"
        + picture
        + "## Summary\n\n"
        + summary
        + "\n"
        + "\n".join(s for s in sections if s)
        + "\n"
        + appendix(report)
    )


def leaks_a_token(text: str) -> bool:
    """Whether ``text`` holds one of the benchmarks' tokens (then it is never written)."""
    return any(token in text for token in TOKENS)


# --------------------------------------------------------------------------- plot


def plot_pacing(report: Report, path: Path) -> bool:
    """benchmarks/pacing.png; False when neither pacing nor naive results are there."""
    pacing = report.results.get("bench_pacing.py")
    naive = report.results.get("bench_naive.py")
    if (pacing is None or pacing.data is None) and (naive is None or naive.data is None):
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.2))
    if pacing is not None and pacing.data is not None:
        d = pacing.data
        xs = [a[0] for a in d["arrivals"]]
        ys = list(range(1, len(xs) + 1))
        left.plot(xs, ys, "o", ms=4, label="request starts (arrival at the emulator)")
        bad = [(x, y) for (x, s), y in zip(d["arrivals"], ys, strict=True) if s == 429]
        if bad:
            left.plot(*zip(*bad, strict=True), "x", color="red", ms=8, label="429")
        end = max(xs) if xs else 1.0
        left.plot(
            [0, end],
            [1, 1 + d["rate"] * end],
            "--",
            color="gray",
            label=f"{d['rate']:g} requests/s limit",
        )
        left.set_title(
            f"reconcile plan, {d['forms']} forms, 2/s, {d['latency_ms']:g} ms latency\n"
            f"efficiency {d['efficiency']:.3f}, {d['throttled']} 429s"
        )
        left.set_xlabel("seconds since the first request")
        left.set_ylabel("request index")
        left.legend(loc="upper left")
        left.grid(alpha=0.3)
    if naive is not None and naive.data is not None:
        d = naive.data
        end = 0.0
        for run, color in zip(d["runs"], ("C0", "C1", "C2"), strict=False):
            xs = [a[0] for a in run["arrivals"]]
            ys = list(range(1, len(xs) + 1))
            end = max(end, *xs) if xs else end
            label = f"{run['client']}: {run['span']:.1f} s, {run['throttled']} 429s"
            right.plot(xs, ys, ".", color=color, ms=5, label=label)
            bad = [(x, y) for (x, s), y in zip(run["arrivals"], ys, strict=True) if s == 429]
            if bad:
                right.plot(*zip(*bad, strict=True), "x", color=color, ms=6)
        right.plot(
            [0, end],
            [1, 1 + d["rate"] * end],
            "--",
            color="gray",
            label=f"{d['rate']:g} requests/s limit",
        )
        right.set_title(
            f"the same work ({d['forms']} forms: list + PUT each) by three clients\nx: answered 429"
        )
        right.set_xlabel("seconds since the client's first request")
        right.set_ylabel("request index (429s included)")
        right.legend(loc="upper left", fontsize=8)
        right.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these (bench_x)")
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument("--plot", type=Path, default=ROOT / "benchmarks" / "pacing.png")
    args = parser.parse_args(argv)

    scripts = sorted(p for p in HERE.glob("bench_*.py") if p.name != SELF)
    if args.only:
        wanted = {n.removesuffix(".py") for n in args.only}
        unknown = wanted - {p.stem for p in scripts}
        if unknown:
            parser.error(f"no such benchmark: {', '.join(sorted(unknown))}")
        scripts = [p for p in scripts if p.stem in wanted]

    report = Report()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
        for script in scripts:
            report.results[script.name] = run_script(script, Path(tmp))
    total = time.perf_counter() - started

    plotted = plot_pacing(report, args.plot)
    text = render(report, total, args.plot if plotted else None, args.out)
    if leaks_a_token(text):
        print("refusing to write the report: a benchmark token appears in it", file=sys.stderr)
        return 1
    args.out.write_text(text, encoding="utf-8")

    missed = [r for r in report.rows if r.verdict is False]
    failed = [r for r in report.results.values() if not r.ok]
    print(f"\nwrote {args.out}" + (f" and {args.plot}" if plotted else "") + f" ({total:.0f} s)")
    for row in missed:
        print(f"MISSED: {row.area}: {row.measure}: {row.value} (target {row.target})")
    for result in failed:
        print(f"FAILED: {result.script}: {result.status}")
    if total > BUDGET_S:
        print(f"note: the run took {total:.0f} s, over the {BUDGET_S:.0f} s budget")
    return 1 if missed or failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""bench_report.py reads other benchmarks' tables and the emulator's access log: those readings
decide whether ``make bench`` fails, so they are tested on real output shapes here (the
benchmarks themselves take minutes and run only under ``make bench``)."""

from __future__ import annotations

import json
from pathlib import Path

from bench_report import (
    Report,
    Result,
    crash_counts,
    leaks_a_token,
    plan_rows,
    render,
    table,
)
from benchlib import BENCH_TOKEN, parse_access_log

BENCH_PLAN_OUTPUT = """\
reconcile at 10,000 webhooks on 2,000 forms, emulator rate 100,000/s
median of 3 runs (5 for --help), python 3.11.7

case                                   CPU s  wall s  RSS MB  target                   result
plan, 10,000 webhooks, no change        1.64    1.65     157  <= 2 s, <= 150 MB        MISSED
plan, 10,000 webhooks, all update       2.49    2.50     180  <= 3 s                   ok
reconcile --help (wall)                 0.04    0.04      97  <= 0.15 s wall           ok
apply, 1,000 creates                    7.32    7.87      97  info                     info
"""

BENCH_CRASH_OUTPUT = """\
crash safety: apply of 8 writes SIGKILLed at a random point
  trials                                          50
  survived                                        49
  mean kill point                                 0.857 s
  wall time                                       95.9 s
"""


def log_line(time: str, message: str, logger: str = "uvicorn.access") -> str:
    return json.dumps({"time": time, "level": "info", "logger": logger, "message": message})


def pacing_data(throttled: int) -> dict[str, object]:
    return {
        "forms": 3,
        "rate": 2.0,
        "latency_ms": 300.0,
        "requests": 3,
        "achieved_rate": 2.0,
        "efficiency": 1.0,
        "target_efficiency": 0.95,
        "throttled": throttled,
        "wall": 1.8,
        "ideal": 1.3,
        "arrivals": [[0.0, 200], [0.5, 200], [1.0, 200]],
        "ok": throttled == 0,
    }


def test_the_10k_plan_rows_are_read_from_bench_plans_table_with_their_verdicts() -> None:
    rows = plan_rows(BENCH_PLAN_OUTPUT)

    assert [(r["case"], r["cpu"], r["rss"], r["result"]) for r in rows] == [
        ("plan, 10,000 webhooks, no change", "1.64", "157", "MISSED"),
        ("plan, 10,000 webhooks, all update", "2.49", "180", "ok"),
    ]


def test_a_missed_10k_plan_target_makes_the_report_say_missed() -> None:
    report = Report()
    report.results["bench_plan.py"] = Result("bench_plan.py", 1, 30.0, BENCH_PLAN_OUTPUT)

    text = render(report, 30.0, None, Path("BENCHMARKS.md"))

    missed = [r for r in report.rows if r.verdict is False]
    assert [r.measure for r in missed] == ["plan, 10,000 webhooks, no change"]
    assert "1 target(s) missed, 1 benchmark(s) failed" in text


def test_crash_trials_are_read_and_a_missing_table_is_not_available() -> None:
    assert crash_counts(BENCH_CRASH_OUTPUT) == (50, 49)
    assert crash_counts("Traceback (most recent call last):\n  ...\n") is None

    report = Report()
    report.results["bench_crash.py"] = Result("bench_crash.py", 1, 90.0, BENCH_CRASH_OUTPUT)
    render(report, 90.0, None, Path("BENCHMARKS.md"))
    crash = next(r for r in report.rows if r.area == "crash")
    assert (crash.value, crash.verdict) == ("49 of 50", False)

    absent = Report()
    text = render(absent, 1.0, None, Path("BENCHMARKS.md"))
    assert "not available" in text


def test_arrivals_are_log_time_minus_latency_except_429s_and_the_control_api_is_left_out() -> None:
    text = "\n".join(
        [
            log_line("2026-01-01T00:00:00.300000Z", 'x - "GET /forms/f1/webhooks HTTP/1.1" 200'),
            log_line("2026-01-01T00:00:00.100000Z", 'x - "GET /forms/f2/webhooks HTTP/1.1" 429'),
            log_line("2026-01-01T00:00:00.900000Z", 'x - "PUT /forms/f1/webhooks/t HTTP/1.1" 200'),
            log_line("2026-01-01T00:00:01.000000Z", 'x - "GET /_emulator/stats HTTP/1.1" 200'),
            log_line("2026-01-01T00:00:01.000000Z", "Started server process", "uvicorn.error"),
            "not json at all",
        ]
    )

    arrivals = parse_access_log(text, latency=0.3)

    assert [(a.method, a.path, a.status) for a in arrivals] == [
        ("GET", "/forms/f1/webhooks", 200),
        ("GET", "/forms/f2/webhooks", 429),
        ("PUT", "/forms/f1/webhooks/t", 200),
    ]
    first = arrivals[0].at
    assert [round(a.at - first, 3) for a in arrivals] == [0.0, 0.1, 0.6]


def test_a_pacing_run_with_a_429_misses_its_target_and_one_without_meets_it() -> None:
    for throttled, expected in ((0, True), (1, False)):
        report = Report()
        result = Result("bench_pacing.py", 0 if expected else 1, 2.0, "", pacing_data(throttled))
        report.results["bench_pacing.py"] = result
        render(report, 2.0, None, Path("BENCHMARKS.md"))
        row = next(r for r in report.rows if r.measure == "429s during the refresh")
        assert row.verdict is expected


def test_a_report_holding_a_benchmark_token_is_caught_before_it_is_written() -> None:
    report = Report()
    output = f"oops: Authorization: Bearer {BENCH_TOKEN}\n"
    report.results["bench_client.py"] = Result("bench_client.py", 0, 1.0, output)

    assert leaks_a_token(render(report, 1.0, None, Path("BENCHMARKS.md")))
    assert not leaks_a_token(render(Report(), 1.0, None, Path("BENCHMARKS.md")))


def test_a_markdown_cell_with_a_pipe_or_a_newline_stays_in_its_cell() -> None:
    text = table(["a", "b"], [["x | y", "one\ntwo"]])

    assert text.splitlines()[2] == "| x \\| y | one two |"

"""``reconcile watch``: drift on a loop (and heal with ``--heal``), with reports and metrics.

Parse flags, then loop ``reconciler.pipeline.cycle`` through ``reconciler.watch.watch_loop``;
each cycle re-reads the manifests and the live webhooks (level-based). SIGTERM and SIGINT stop
it between requests, with reports written atomically, and exit 0.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from reconciler.applier import Outcome
from reconciler.clock import timestamp, utc_now
from reconciler.commands._options import (
    Duration,
    api_options,
    logging_options,
    paths_argument,
    resolve_paths,
    write_options,
)
from reconciler.commands._runtime import environ, run_async, setup_logging
from reconciler.credentials import secret_dirs_from
from reconciler.drift_report import DriftReport
from reconciler.errors import Interrupted, ReconcileError
from reconciler.events import Event, LockTakenOver, Notice, WriteDone
from reconciler.manifests import load_desired
from reconciler.metrics import Metrics, MetricsServer
from reconciler.pipeline import ApplyOptions, CycleOptions, DriftOptions, Run, Settings, cycle
from reconciler.render_drift import drift_summary_line
from reconciler.state import open_state_store
from reconciler.watch import Backoff, HealLimiter, ReportDir, watch_loop


@click.command(
    epilog="""\b
Exit codes: runs until SIGTERM/SIGINT, then 0. With --once: 0 in sync (or all drift healed),
2 drift left, 1 error.
\b
Example:
  reconcile watch --interval 5m --heal --report-dir reports/ --metrics-port 9108 manifests/"""
)
@paths_argument
@api_options
@click.option("--interval", type=Duration(), default="5m", show_default=True,
              help="Time between cycles (±10 % jitter): 30s, 5m, 1h...")  # fmt: skip
@click.option("--once", is_flag=True, help="Run one cycle and exit (for cron).")
@click.option("--heal", is_flag=True, help="Apply each cycle's plan, under every apply guard.")
@click.option("--heal-limit", type=click.IntRange(min=1), default=3, show_default=True,
              help="Corrections per webhook per hour before it is heal_suspended.")  # fmt: skip
@click.option("--report-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write latest.json and a timestamped history here.")  # fmt: skip
@click.option("--keep", type=click.IntRange(min=1), default=100, show_default=True,
              help="Reports of history to keep in --report-dir.")  # fmt: skip
@click.option("--metrics-port", type=click.IntRange(0, 65535),
              help="Serve Prometheus metrics on this port.")  # fmt: skip
@click.option("--metrics-host", help="Serve metrics on this host (default 127.0.0.1 only).")
@write_options
@logging_options
def watch(
    paths: tuple[str, ...],
    api_url: str | None,
    rate: float | None,
    state_spec: str,
    targets: tuple[str, ...],
    accounts: tuple[str, ...],
    secret_dirs: tuple[Path, ...],
    request_timeout: float,
    interval: float,
    once: bool,
    heal: bool,
    heal_limit: int,
    report_dir: Path | None,
    keep: int,
    metrics_port: int | None,
    metrics_host: str | None,
    prune: bool,
    max_deletes: int,
    allow_empty: bool,
    atomic: bool,
    records_path: Path,
    lock_timeout: float,
    log_level: str,
    log_format: str,
) -> int:
    """Detect drift periodically; with --heal, correct it (at most --heal-limit times an hour)."""
    from reconciler.api import parse_targets

    setup_logging(log_level, log_format)
    env = environ()
    metrics = Metrics()
    reports = ReportDir(report_dir, keep=keep) if report_dir is not None else None
    limiter = HealLimiter(heal_limit) if heal else None
    say = _Announcer(json_lines=log_format == "json")
    settings = Settings(
        api_url=api_url,
        rate=rate,
        request_timeout=request_timeout,
        lock_timeout=lock_timeout,
        secret_dirs=secret_dirs_from(env, secret_dirs),
    )
    options = CycleOptions(
        drift=DriftOptions(prune=prune, targets=parse_targets(targets), accounts=accounts),
        heal=heal,
        apply=ApplyOptions(
            prune=prune,
            targets=parse_targets(targets),
            accounts=accounts,
            max_deletes=max_deletes,
            allow_empty=allow_empty,
            atomic=atomic,
            auto_approve=True,
            records=records_path,
        ),
        limiter=limiter,
    )
    left: list[int] = []  # the last cycle's unhealed drift, for --once's exit code

    def events(event: Event) -> None:
        # A failed account is reported once, as the cycle's failure; progress is not shown.
        if isinstance(event, WriteDone):
            result = "success" if event.outcome.success else "failure"
            metrics.count_heal(event.outcome.operation.value, result)
            say.write(event.outcome)
        elif isinstance(event, Notice):
            say.note(event.message)
        elif isinstance(event, LockTakenOver):
            say.note(f"took over the lock left by {event.holder}")

    def count(account: str, code: int | str) -> None:
        metrics.count_request(account, code)
        if code == 429:
            metrics.count_throttled(account)

    async def one() -> DriftReport:
        desired = load_desired(resolve_paths(paths), environ=env)  # level-based: every cycle
        run = Run(
            store=open_state_store(state_spec),
            settings=settings,
            environ=env,
            events=events,
            on_response=count,
        )
        result = await cycle(run, desired, options)
        healed = {r.key for r in result.healed.rows if r.success} if result.healed else set()
        drifted = [w for w in result.report.webhooks if w.is_drift and w.key not in healed]
        left[:] = [len(drifted)]
        say.cycle(result.report, healed=len(healed), left=len(drifted))
        return result.report

    def on_report(report: DriftReport) -> None:
        metrics.observe_report(report)
        if reports is not None:
            reports.write(report.to_json(), report.checked_at)

    def on_error(exc: ReconcileError, delay: float) -> None:
        say.error(exc, delay)
        if reports is not None:
            reports.write_stale(str(exc), timestamp(utc_now()))

    def on_cycle(duration: float, success: bool) -> None:
        metrics.observe_cycle(duration, success=success, now=time.time())

    async def go() -> None:
        import anyio

        await watch_loop(
            one,
            interval=interval,
            once=once,
            stop=anyio.Event(),
            on_report=on_report,
            on_error=on_error,
            on_cycle=on_cycle,
            # An outage is retried sooner than 5 s only when the interval itself is shorter.
            backoff=Backoff(initial=min(interval, 5.0), cap=max(300.0, interval)),
        )

    server: MetricsServer | None = None
    if metrics_port is not None:
        host = metrics_host or "127.0.0.1"
        server = metrics.serve(host=host, port=metrics_port, allow_remote=metrics_host is not None)
        say.note(f"serving metrics on {server.url}")
    try:
        run_async(go)
    except Interrupted as stopped:
        say.note(f"stopped by signal {stopped.signum}; reports are complete")
        return 0
    finally:
        if server is not None:
            server.close()
    return (2 if left and left[0] else 0) if once else 0


class _Announcer:
    """One line per cycle event on stderr: text for people, JSON objects for schedulers."""

    def __init__(self, *, json_lines: bool) -> None:
        self._json = json_lines

    def _emit(self, text: str, payload: dict[str, Any]) -> None:
        line = json.dumps(payload) if self._json else text
        print(line, file=sys.stderr, flush=True)

    def cycle(self, report: DriftReport, *, healed: int, left: int) -> None:
        doc = report.to_json()
        text = drift_summary_line(doc) + (f" Healed {healed}." if healed else "")
        self._emit(
            f"{report.checked_at} {text}",
            {
                "event": "cycle",
                "checked_at": report.checked_at,
                "in_sync": doc["in_sync"],
                "summary": doc["summary"],
                "healed": healed,
                "drift_left": left,
            },
        )

    def error(self, exc: ReconcileError, delay: float) -> None:
        self._emit(
            f"cycle failed: {exc} (retrying in {delay:.0f}s; the report is marked stale)",
            {"event": "cycle_failed", "error": str(exc), "retry_in_s": round(delay, 1)},
        )

    def write(self, row: Outcome) -> None:
        verb = row.operation.past if row.success else f"{row.operation.value} FAILED"
        self._emit(
            f"heal: {row.key}: {verb}" + (f": {row.error}" if row.error else ""),
            {
                "event": "heal",
                "address": str(row.key),
                "operation": row.operation.value,
                "success": row.success,
                "error": row.error,
            },
        )

    def note(self, text: str) -> None:
        self._emit(text, {"event": "note", "message": text})

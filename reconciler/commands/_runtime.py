"""What the commands share at run time: options, the Run they build, how events and prompts look,
and how a run is stopped by a signal.

The library never prints; this module is where its events become lines on stderr. Nothing here
holds a secret: tokens and secrets are resolved inside the pipeline.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO, TypeVar

import anyio
import click
from rich.console import Console

from reconciler.changes import ChangedScope, changed_scope
from reconciler.commands._options import OutputFormat, resolve_paths
from reconciler.credentials import secret_dirs_from
from reconciler.errors import Interrupted
from reconciler.events import (
    AccountFailed,
    Event,
    EventSink,
    LockTakenOver,
    Notice,
    PlanReady,
    Progress,
    WriteDone,
)
from reconciler.logs import configure_logging
from reconciler.manifests import load_desired
from reconciler.models import DesiredState, Operation, Plan
from reconciler.pipeline import Approve, Run, Settings
from reconciler.render import (
    plan_to_json,
    render_plan_markdown,
    render_plan_plain,
    render_plan_text,
)
from reconciler.state import open_state_store

T = TypeVar("T")

PROGRESS_AFTER = 2.0
"""A refresh still running after this many seconds shows a progress bar (on a terminal)."""


def setup_logging(log_level: str, log_format: str) -> None:
    configure_logging(level=log_level, fmt=log_format)


def make_console(*, no_color: bool, stream: TextIO | None = None) -> Console:
    """Colour only on a terminal, never with --no-color or NO_COLOR (rich reads NO_COLOR)."""
    return Console(
        file=stream if stream is not None else sys.stdout,
        no_color=no_color or None,  # None lets rich honour NO_COLOR
        highlight=False,
        soft_wrap=True,
        emoji=False,
    )


def environ() -> dict[str, str]:
    return dict(os.environ)


def print_plan(plan: Plan, *, output_format: str, no_color: bool, to_stderr: bool = False) -> None:
    doc = plan_to_json(plan)
    if output_format == OutputFormat.JSON:
        click.echo(json.dumps(doc, indent=2))
    elif output_format == OutputFormat.MARKDOWN:
        click.echo(render_plan_markdown(doc), err=to_stderr)
    else:
        stream = sys.stderr if to_stderr else None
        # NO_COLOR as no-color.org says (set and not empty); rich would ignore it here, since
        # make_console hands it an explicit no_color=False.
        no_color = no_color or os.environ.get("NO_COLOR", "") != ""
        console = make_console(no_color=no_color, stream=stream)
        if console.no_color or console.color_system is None:
            # No colour (--no-color, NO_COLOR, not a terminal): the same characters without
            # rich's rendering, which costs seconds for a plan of thousands of changes.
            console.file.write(render_plan_plain(doc))
            console.file.flush()
        else:
            console.print(render_plan_text(doc), end="")


# --------------------------------------------------------------------------- invocation


@dataclass(frozen=True, slots=True)
class Invocation:
    """What every command that reads the API starts from: environment, manifests, settings."""

    env: dict[str, str]
    desired: DesiredState
    settings: Settings
    changed: ChangedScope | None
    state_spec: str

    def run(self, *, events: EventSink, approve: Approve | None = None) -> Run:
        """The pipeline's ``Run`` for this command: its state store, settings and environment."""
        return Run(
            store=open_state_store(self.state_spec),
            settings=self.settings,
            environ=self.env,
            events=events,
            approve=approve,
        )


def invocation(
    paths: tuple[str, ...],
    *,
    state_spec: str,
    api_url: str | None,
    rate: float | None,
    request_timeout: float,
    secret_dirs: tuple[Path, ...],
    lock_timeout: float = 0.0,
    changed_since: str | None = None,
) -> Invocation:
    env = environ()
    roots = resolve_paths(paths)
    desired = load_desired(roots, environ=env)
    settings = Settings(
        api_url=api_url,
        rate=rate,
        request_timeout=request_timeout,
        lock_timeout=lock_timeout,
        secret_dirs=secret_dirs_from(env, secret_dirs),
    )
    changed = changed_scope(roots, changed_since, desired) if changed_since is not None else None
    return Invocation(env, desired, settings, changed, state_spec)


# --------------------------------------------------------------------------- events


class CliEvents:
    """Renders the pipeline's events on stderr; the plan itself through ``show_plan``."""

    def __init__(
        self, *, show_plan: Callable[[Plan], None] | None = None, writes_to_stderr: bool = False
    ) -> None:
        self._show_plan = show_plan
        self._writes_to_stderr = writes_to_stderr
        self._err = Console(file=sys.stderr, highlight=False, soft_wrap=True)
        self._bar: _DelayedBar | None = None

    def __call__(self, event: Event) -> None:
        if isinstance(event, Progress):
            self._progress(event)
        elif isinstance(event, Notice):
            click.echo(event.message, err=True)
        elif isinstance(event, LockTakenOver):
            click.echo(
                f"Note: took over the lock left by {event.holder}, "
                "which ended without releasing it.",
                err=True,
            )
        elif isinstance(event, AccountFailed):
            click.echo(f"Error: {event.failure.message()}", err=True)
        elif isinstance(event, PlanReady):
            self.close()
            if self._show_plan is not None:
                self._show_plan(event.plan)
        elif isinstance(event, WriteDone):
            row = event.outcome
            glyph = "↺" if row.operation is Operation.REVERT else row.change.action.glyph
            verb = row.operation.past if row.success else f"{row.operation.value} FAILED"
            line = f"{glyph} {row.key}: {verb}"
            if row.attempts > 1:
                line += f" after {row.attempts} attempts"
            if row.note:
                line += f" ({row.note})"
            if row.error:
                line += f": {row.error}"
            click.echo(line, err=self._writes_to_stderr or not row.success)

    def _progress(self, event: Progress) -> None:
        if not self._err.is_terminal:
            return
        if self._bar is None and event.done < event.total:
            self._bar = _DelayedBar(self._err, event.total)
        if self._bar is not None:
            self._bar.update(event.done)
            if event.done >= event.total:
                self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


class _DelayedBar:
    """A refresh progress bar that appears only if the refresh is still running after 2 s."""

    def __init__(self, console: Console, total: int) -> None:
        from rich.progress import BarColumn, TextColumn, TimeRemainingColumn
        from rich.progress import Progress as Bar

        self._bar = Bar(
            TextColumn("Refreshing forms"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        self._task = self._bar.add_task("refresh", total=total)
        self._timer = threading.Timer(PROGRESS_AFTER, self._bar.start)
        self._timer.daemon = True
        self._timer.start()

    def update(self, done: int) -> None:
        self._bar.update(self._task, completed=done)

    def stop(self) -> None:
        self._timer.cancel()
        self._bar.stop()


# --------------------------------------------------------------------------- approval


async def ask_approval(plan: Plan, *, to_stderr: bool) -> bool:
    """Ask on a terminal; refuse outright when nobody can answer (CI, pipes).

    Only ``yes`` approves; anything else, an empty line or end of input (Ctrl-D) declines.
    """
    if not sys.stdin.isatty():
        return _no_terminal()

    def ask() -> bool:
        click.echo("Apply these changes? Only 'yes' is accepted: ", nl=False, err=to_stderr)
        line = sys.stdin.readline()
        if not line:
            click.echo("", err=to_stderr)
        return line.strip() == "yes"

    return await anyio.to_thread.run_sync(ask, abandon_on_cancel=True)


def _no_terminal() -> bool:
    from reconciler.errors import PlanError

    raise PlanError(
        "refusing to apply without confirmation: stdin is not a terminal. "
        "Review the plan, then pass --auto-approve (or apply a saved plan with --plan)."
    )


# --------------------------------------------------------------------------- signals


def run_async(fn: Callable[[], Awaitable[T]]) -> T:
    """Run ``fn`` in an event loop that SIGINT and SIGTERM stop cleanly.

    A signal cancels the run (the write in flight is abandoned, what landed is already in the
    state and records, context managers release the lock) and raises ``Interrupted``; the CLI
    exits 130 for SIGINT and 143 for SIGTERM.
    """
    received: list[int] = []
    result: list[T] = []
    failure: list[Exception] = []

    async def main() -> None:
        async with anyio.create_task_group() as tg:

            async def watch() -> None:
                with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    async for signum in signals:
                        received.append(signum)
                        tg.cancel_scope.cancel()
                        return

            tg.start_soon(watch)
            try:
                result.append(await fn())
            except Exception as exc:  # re-raised as itself below, not wrapped in a group
                failure.append(exc)
            finally:
                tg.cancel_scope.cancel()

    anyio.run(main)
    if received:
        raise Interrupted(received[0])
    if failure:
        raise failure[0]
    return result[0]


def state_spec(value: str | Path) -> str:
    return os.fspath(value)

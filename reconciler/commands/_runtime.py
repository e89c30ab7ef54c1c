"""What plan, apply and friends share at run time: options, consoles, loading, progress.

Commands stay short by building on these; none of them prints a secret, because nothing here
ever holds one (tokens and secrets are resolved inside the controller).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO, TypeVar

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from reconciler.client import TypeformClient
from reconciler.commands._options import resolve_paths
from reconciler.controller import Planned, Settings
from reconciler.controller import plan as make_plan
from reconciler.errors import ConfigError
from reconciler.logs import configure_logging
from reconciler.manifests import load_desired
from reconciler.models import DesiredState
from reconciler.planner import PlanOptions, Target
from reconciler.state import DEFAULT_STATE_PATH, FingerprintCache, State

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_STATE = str(DEFAULT_STATE_PATH)
PROGRESS_THRESHOLD = 5
"""Refreshing more forms than this shows a progress bar (on a terminal only)."""


def api_options(f: F) -> F:
    """--api-url, --rate, --state, --target: where to reconcile and what."""
    f = click.option(
        "--target",
        "targets",
        multiple=True,
        metavar="FORM_ID[/TAG]",
        help="Limit the run to a form, or one webhook of it (repeatable).",
    )(f)
    f = click.option(
        "--state",
        "state_path",
        envvar="RECONCILE_STATE",
        default=DEFAULT_STATE,
        show_default=True,
        type=click.Path(dir_okay=False, path_type=Path),
        help="State file (env RECONCILE_STATE).",
    )(f)
    f = click.option(
        "--rate",
        type=click.FloatRange(min=0, min_open=True),
        default=None,
        help="Requests per second per account (overrides every account; Typeform allows 2).",
    )(f)
    return click.option(
        "--api-url",
        default=None,
        metavar="URL",
        help="API base URL of the default account; 'emulator:[PATH]' runs the built-in emulator.",
    )(f)


def setup_logging(log_level: str, log_format: str) -> None:
    configure_logging(level=log_level, fmt=log_format)


def make_console(*, no_color: bool, stream: TextIO | None = None) -> Console:
    """Colour only on a terminal, never with --no-color or NO_COLOR (rich reads NO_COLOR)."""
    return Console(
        file=stream if stream is not None else sys.stdout,
        no_color=no_color,
        highlight=False,
        soft_wrap=True,
        emoji=False,
    )


def make_settings(api_url: str | None, rate: float | None) -> Settings:
    return Settings(environ=dict(os.environ), api_url=api_url, rate=rate)


def parse_targets(raw: tuple[str, ...]) -> tuple[Target, ...]:
    targets = tuple(Target.parse(t) for t in raw)
    for target, text in zip(targets, raw, strict=True):
        if not target.form_id:
            raise ConfigError(f"--target {text!r}: expected FORM_ID or FORM_ID/TAG")
    return targets


def load(paths: tuple[str, ...], *, environ: Mapping[str, str] | None = None) -> DesiredState:
    """Load and validate manifests; warnings go to stderr, errors raise ManifestError."""
    desired = load_desired(resolve_paths(paths), environ=environ)
    for warning in desired.warnings:
        click.echo(warning.render(), err=True)
    return desired


@contextmanager
def progress_bar(*, enabled: bool = True) -> Iterator[Callable[[int, int], None]]:
    """A refresh progress callback: a bar with ETA on stderr, only on a terminal."""
    err = Console(file=sys.stderr)
    if not enabled or not err.is_terminal:
        yield lambda done, total: None
        return
    with Progress(
        TextColumn("Refreshing forms"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    ) as bar:
        task = None

        def update(done: int, total: int) -> None:
            nonlocal task
            if total <= PROGRESS_THRESHOLD:
                return
            if task is None:
                task = bar.add_task("refresh", total=total)
            bar.update(task, completed=done)

        yield update


async def plan_with_progress(
    desired: DesiredState,
    clients: Mapping[str, TypeformClient],
    state: State,
    settings: Settings,
    options: PlanOptions,
    *,
    hashes: FingerprintCache | None = None,
) -> Planned:
    """Refresh and plan, with the progress bar that plan and apply both show."""
    with progress_bar() as progress:
        return await make_plan(
            desired,
            clients,
            state,
            environ=settings.environ,
            options=options,
            on_progress=progress,
            hashes=hashes,
        )

"""``reconcile plan``: refresh, diff, print the plan; optionally save it for ``apply --plan``."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import click

from reconciler.commands._options import (
    OutputFormat,
    color_option,
    format_option,
    logging_options,
    paths_argument,
)
from reconciler.commands._runtime import (
    api_options,
    load,
    make_console,
    make_settings,
    parse_targets,
    plan_with_progress,
    setup_logging,
)
from reconciler.controller import Planned, open_clients
from reconciler.errors import PlanError
from reconciler.fileio import write_json_atomic
from reconciler.planner import PlanOptions
from reconciler.render import plan_to_json, render_plan_markdown, render_plan_text
from reconciler.state import load_state

EXIT_CHANGES = 2


def save_plan(path: Path, doc: dict[str, object]) -> None:
    try:
        write_json_atomic(path, doc)
    except OSError as exc:
        raise PlanError(f"cannot write the plan to {path}: {exc.strerror or exc}") from exc


def print_plan(doc: dict[str, object], *, output_format: str, no_color: bool) -> None:
    if output_format == OutputFormat.JSON:
        click.echo(json.dumps(doc, indent=2))
    elif output_format == OutputFormat.MARKDOWN:
        click.echo(render_plan_markdown(doc))
    else:
        make_console(no_color=no_color).print(render_plan_text(doc), end="")


@click.command()
@paths_argument
@api_options
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Save the plan.")
@click.option(
    "--prune",
    is_flag=True,
    help="Plan deletion of webhooks the tool owns but no manifest declares.",
)
@click.option(
    "--detailed-exitcode", is_flag=True, help="Exit 2 when the plan has changes, 0 when none."
)
@format_option
@color_option
@logging_options
def plan(
    paths: tuple[str, ...],
    api_url: str | None,
    rate: float | None,
    state_path: Path,
    targets: tuple[str, ...],
    out: Path | None,
    prune: bool,
    detailed_exitcode: bool,
    output_format: str,
    no_color: bool,
    log_level: str,
    log_format: str,
) -> int:
    """Show what apply would change, without changing anything."""
    setup_logging(log_level, log_format)
    settings = make_settings(api_url, rate)
    desired = load(paths)
    state = load_state(state_path)
    options = PlanOptions(prune=prune, targets=parse_targets(targets))

    async def run() -> Planned:
        async with open_clients(desired, settings, read_only=True) as clients:
            return await plan_with_progress(desired, clients, state, settings, options)

    planned = anyio.run(run)
    doc = plan_to_json(planned.plan)
    if out is not None:
        save_plan(out, doc)
    print_plan(doc, output_format=output_format, no_color=no_color)
    if out is not None and output_format == OutputFormat.TEXT:
        click.echo(f"\nSaved the plan to {out}; run `reconcile apply --plan {out}` to execute it.")
    if detailed_exitcode and planned.plan.has_changes:
        return EXIT_CHANGES
    return 0

"""``reconcile plan``: parse flags, call ``reconciler.pipeline.plan``, render the plan."""

from __future__ import annotations

from pathlib import Path

import click

from reconciler.commands._options import (
    OutputFormat,
    api_options,
    changed_since_option,
    color_option,
    format_option,
    logging_options,
    paths_argument,
)
from reconciler.commands._runtime import CliEvents, invocation, print_plan, run_async, setup_logging
from reconciler.errors import ReconcileError
from reconciler.pipeline import PlanResult
from reconciler.pipeline import plan as make_plan
from reconciler.planfile import write_plan
from reconciler.planner import PlanOptions

EXIT_CHANGES = 2


@click.command(
    epilog="""\b
Exit codes: 0 success (with --detailed-exitcode: 0 no changes, 2 changes), 1 error.
\b
Example:
  reconcile plan --api-url emulator: --out plan.json manifests/
  reconcile apply --plan plan.json manifests/"""
)
@paths_argument
@api_options
@changed_since_option
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
    state_spec: str,
    targets: tuple[str, ...],
    accounts: tuple[str, ...],
    secret_dirs: tuple[Path, ...],
    request_timeout: float,
    changed_since: str | None,
    out: Path | None,
    prune: bool,
    detailed_exitcode: bool,
    output_format: str,
    no_color: bool,
    log_level: str,
    log_format: str,
) -> int:
    """Show what apply would change, without changing anything.

    PATH is a manifest file or a directory searched recursively (default: manifests/).
    """
    from reconciler.api import parse_targets

    setup_logging(log_level, log_format)
    cmd = invocation(
        paths,
        state_spec=state_spec,
        api_url=api_url,
        rate=rate,
        request_timeout=request_timeout,
        secret_dirs=secret_dirs,
        changed_since=changed_since,
    )
    run = cmd.run(events=CliEvents())
    options = PlanOptions(prune=prune, targets=parse_targets(targets))

    async def go() -> PlanResult:
        return await make_plan(
            run,
            cmd.desired,
            options,
            accounts=accounts,
            with_fingerprints=out is not None,
            changed=cmd.changed,
        )

    result = run_async(go)
    if out is not None and result.ok:
        write_plan(out, result.plan)
    print_plan(result.plan, output_format=output_format, no_color=no_color)
    if not result.ok:
        raise ReconcileError(
            f"{len(result.failures)} account(s) could not be refreshed and are not in this plan"
            + ("; the plan was not saved" if out is not None else "")
        )
    if out is not None and output_format == OutputFormat.TEXT:
        click.echo(f"\nSaved the plan to {out}; run `reconcile apply --plan {out}` to execute it.")
    if detailed_exitcode and result.has_changes:
        return EXIT_CHANGES
    return 0

"""``reconcile apply``: parse flags, call ``reconciler.pipeline.apply``, render what happened."""

from __future__ import annotations

from functools import partial
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
    write_options,
)
from reconciler.commands._runtime import (
    CliEvents,
    ask_approval,
    invocation,
    print_plan,
    run_async,
    setup_logging,
)
from reconciler.errors import ApplyError
from reconciler.pipeline import ApplyOptions, ApplyResult
from reconciler.pipeline import apply as run_apply
from reconciler.planfile import read_plan
from reconciler.render import apply_summary_line


@click.command(
    epilog="""\b
Exit codes: 0 every write succeeded (or nothing to do), 1 any error or refusal.
\b
Example:
  reconcile apply --api-url emulator: --auto-approve manifests/
  reconcile apply --plan plan.json manifests/"""
)
@paths_argument
@api_options
@click.option(
    "--plan",
    "plan_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Execute a plan saved by `plan --out` (refused if it no longer matches).",
)
@click.option("--auto-approve", is_flag=True, help="Do not ask for confirmation.")
@write_options
@changed_since_option
@format_option
@color_option
@logging_options
def apply(
    paths: tuple[str, ...],
    api_url: str | None,
    rate: float | None,
    state_spec: str,
    targets: tuple[str, ...],
    accounts: tuple[str, ...],
    secret_dirs: tuple[Path, ...],
    request_timeout: float,
    plan_file: Path | None,
    auto_approve: bool,
    prune: bool,
    max_deletes: int,
    allow_empty: bool,
    atomic: bool,
    records_path: Path,
    lock_timeout: float,
    changed_since: str | None,
    output_format: str,
    no_color: bool,
    log_level: str,
    log_format: str,
) -> int:
    """Make the live webhooks match the manifests (or execute a saved plan).

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
        lock_timeout=lock_timeout,
        changed_since=changed_since,
    )
    saved = read_plan(plan_file) if plan_file is not None else None
    # With --format json, stdout carries the plan document alone (it must parse); what a person
    # reads while apply runs goes to stderr.
    human_err = output_format == OutputFormat.JSON
    run = cmd.run(
        events=CliEvents(
            show_plan=partial(print_plan, output_format=output_format, no_color=no_color),
            writes_to_stderr=human_err,
        ),
        approve=partial(ask_approval, to_stderr=human_err),
    )
    options = ApplyOptions(
        prune=prune,
        targets=parse_targets(targets),
        accounts=accounts,
        max_deletes=max_deletes,
        allow_empty=allow_empty,
        atomic=atomic,
        auto_approve=auto_approve,
        records=records_path,
        changed=cmd.changed,
    )

    async def go() -> ApplyResult:
        return await run_apply(run, cmd.desired, options, saved=saved)

    result = run_async(go)
    if not result.rows:
        extra = f" {len(result.adopted)} adopted." if result.adopted else ""
        click.echo(f"\nNothing to apply.{extra}", err=human_err)
    else:
        line = apply_summary_line(result.to_json())
        click.echo(f"\n{line} Records: {records_path} (run {result.run_id}).", err=human_err)
    if result.failed:
        raise ApplyError(
            f"{len(result.failed)} write(s) failed; the others were applied"
            + (" and then reverted (--atomic)" if atomic else "")
            + ". Fix the cause and run apply again: it converges.",
            result.failed,
        )
    if result.failures:
        raise ApplyError(f"{len(result.failures)} account(s) could not be refreshed")
    return 0

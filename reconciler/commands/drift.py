"""``reconcile drift``: parse flags, call ``reconciler.pipeline.drift``, render the report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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
from reconciler.commands._runtime import (
    CliEvents,
    invocation,
    make_console,
    run_async,
    setup_logging,
)
from reconciler.drift_report import DriftReport
from reconciler.errors import ReconcileError
from reconciler.fileio import write_json_atomic
from reconciler.pipeline import DriftOptions
from reconciler.pipeline import drift as run_drift
from reconciler.render_drift import render_drift_markdown, render_drift_text


def write_report(path: Path, doc: dict[str, Any]) -> None:
    try:
        write_json_atomic(path, doc)
    except OSError as exc:
        raise ReconcileError(f"cannot write the drift report {path}: {exc.strerror}") from exc


def print_report(doc: dict[str, Any], *, output_format: str, no_color: bool) -> None:
    if output_format == OutputFormat.JSON:
        click.echo(json.dumps(doc, indent=2))
    elif output_format == OutputFormat.MARKDOWN:
        click.echo(render_drift_markdown(doc))
    else:
        make_console(no_color=no_color).print(render_drift_text(doc), end="")


@click.command(
    epilog="""\b
Exit codes: 0 in sync, 2 drift (drifted or missing webhooks; with --fail-on-unmanaged,
unmanaged ones too), 1 error. Never writes to the API: its client can only send GET, so a
token with only webhooks:read is enough.
\b
Example:
  reconcile drift --api-url emulator: --report drift.json manifests/"""
)
@paths_argument
@api_options
@changed_since_option
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the JSON report to FILE (atomically).")  # fmt: skip
@click.option("--prune", is_flag=True,
              help="Count webhooks the tool owns but no manifest declares as drift.")  # fmt: skip
@click.option("--fail-on-unmanaged", is_flag=True,
              help="Exit 2 when any unmanaged webhook is found, too.")  # fmt: skip
@format_option
@color_option
@logging_options
def drift(
    paths: tuple[str, ...],
    api_url: str | None,
    rate: float | None,
    state_spec: str,
    targets: tuple[str, ...],
    accounts: tuple[str, ...],
    secret_dirs: tuple[Path, ...],
    request_timeout: float,
    changed_since: str | None,
    report_path: Path | None,
    prune: bool,
    fail_on_unmanaged: bool,
    output_format: str,
    no_color: bool,
    log_level: str,
    log_format: str,
) -> int:
    """Report how the live webhooks differ from the manifests, and why. Read-only.

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
    options = DriftOptions(
        prune=prune, targets=parse_targets(targets), accounts=accounts, changed=cmd.changed
    )

    async def go() -> DriftReport:
        return await run_drift(run, cmd.desired, options)

    report = run_async(go)
    doc = report.to_json()
    if report_path is not None:
        write_report(report_path, doc)
    print_report(doc, output_format=output_format, no_color=no_color)
    return report.exits(fail_on_unmanaged=fail_on_unmanaged)

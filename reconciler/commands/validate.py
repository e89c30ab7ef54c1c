"""``reconcile validate``: every problem in the manifests, at once, as ``FILE:LINE:COL: message``.

A thin shell over ``reconciler.manifests.check``: it chooses the rendering and the exit code
(0 valid, 1 invalid; warnings alone do not fail). Diagnostics and the summary are the command's
output, so they go to stdout in every format. It never touches the network, and with
``--check-env`` it resolves secret references only to report the ones that do not resolve: no
value is ever printed. ``{file: PATH}`` secrets must lie in the manifest tree or a directory
allowed with ``--secret-dir`` / ``RECONCILE_SECRET_DIRS`` (e.g. ``/run/secrets`` in a container).
Hostile input cannot flood the terminal: at most ``MAX_SHOWN_DIAGNOSTICS`` are printed, then a
count of the rest (the summary line still counts them all).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from reconciler.commands._options import (
    OutputFormat,
    color_option,
    format_option,
    paths_argument,
    resolve_paths,
)
from reconciler.credentials import SECRET_DIRS_ENV, secret_dirs_from
from reconciler.manifests import CheckResult, check
from reconciler.models import Diagnostic, Severity

__all__ = [
    "FORMAT_VERSION",
    "MAX_SHOWN_DIAGNOSTICS",
    "render_json",
    "render_markdown",
    "render_text",
    "validate",
]

FORMAT_VERSION = "1"
MAX_SHOWN_DIAGNOSTICS = 100
"""Diagnostics printed before "... and N more": enough to fix, too few to flood a CI log."""


@click.command()
@paths_argument
@click.option(
    "--check-env",
    is_flag=True,
    default=False,
    help="Also check that every secret and account token reference resolves "
    "(environment variable set, file readable). Values are never printed.",
)
@click.option(
    "--secret-dir",
    "secret_dirs",
    multiple=True,
    type=click.Path(path_type=str),
    metavar="DIR",
    help="A directory {file: PATH} secrets may live in besides the manifest tree, e.g. "
    f"/run/secrets in a container (repeatable; also {SECRET_DIRS_ENV}, "
    f"'{os.pathsep}'-separated).",
)
@format_option
@color_option
def validate(
    paths: tuple[str, ...],
    check_env: bool,
    secret_dirs: tuple[str, ...],
    output_format: str,
    no_color: bool,
) -> int:
    """Check manifests against the schema and the semantic rules. No network.

    PATH is a manifest file or a directory searched recursively for *.yaml / *.yml
    (default: manifests/). Exits 0 when valid (warnings allowed), 1 otherwise.
    """
    targets = resolve_paths(paths)
    dirs: tuple[Path, ...] = secret_dirs_from(os.environ, secret_dirs)
    result = check(targets, check_env=check_env, secret_dirs=dirs)
    fmt = OutputFormat(output_format)
    if fmt is OutputFormat.JSON:
        click.echo(json.dumps(render_json(result), indent=2))
    elif fmt is OutputFormat.MARKDOWN:
        click.echo(render_markdown(result, targets), nl=False)
    else:
        color = False if no_color or "NO_COLOR" in os.environ else None
        styled = color is not False
        click.echo(render_text(result, targets, styled=styled), nl=False, color=color)
    return 0 if result.valid else 1


def render_json(result: CheckResult) -> dict[str, Any]:
    """The versioned machine-readable report of one validation.

    At most ``MAX_SHOWN_DIAGNOSTICS`` diagnostics are listed; when there were more, the key
    ``diagnostics_omitted`` says how many were left out.
    """
    shown, omitted = _shown(result)
    report: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "valid": result.valid,
        "files": result.files,
        "webhook_sets": result.sets,
        "accounts": result.accounts,
        "webhooks": result.webhooks,
        "diagnostics": [d.to_json() for d in shown],
    }
    if omitted:
        report["diagnostics_omitted"] = len(omitted)
    return report


def render_text(result: CheckResult, targets: tuple[str, ...], *, styled: bool = False) -> str:
    """One line per diagnostic, then a summary line. ``styled`` adds ANSI colours."""
    shown, omitted = _shown(result)
    lines = [_styled(d) if styled else d.render() for d in shown]
    if omitted:
        lines.append(_more(omitted))
    summary = _summary(result, targets)
    if styled:
        summary = click.style(summary, fg="green" if result.valid else "red", bold=True)
    lines.append(summary)
    return "\n".join(lines) + "\n"


def render_markdown(result: CheckResult, targets: tuple[str, ...]) -> str:
    """For pull-request comments: a heading, one bullet per diagnostic, the summary."""
    title = "valid" if result.valid else "invalid"
    lines = [f"### reconcile validate: {title}", ""]
    shown, omitted = _shown(result)
    for d in shown:
        where = f"`{d.location}` " if d.location else ""
        level = "**warning** " if d.severity is Severity.WARNING else "**error** "
        lines.append(f"- {level}{where}{_md_escape(d.message)}")
    if omitted:
        lines.append(f"- {_more(omitted)}")
    if result.diagnostics:
        lines.append("")
    lines.append(_summary(result, targets))
    return "\n".join(lines) + "\n"


def _summary(result: CheckResult, targets: tuple[str, ...]) -> str:
    where = ", ".join(targets)
    warnings = len(result.warnings)
    tail = f", {_n(warnings, 'warning')}" if warnings else ""
    if result.valid:
        accounts = f", {_n(result.accounts, 'account')}" if result.accounts else ""
        return (
            f"{where}: valid ({_n(result.files, 'file')}, {_n(result.sets, 'webhook set')}, "
            f"{_n(result.webhooks, 'webhook')}{accounts}{tail})"
        )
    return (
        f"{where}: invalid ({_n(len(result.errors), 'error')}{tail} in {_n(result.files, 'file')})"
    )


def _shown(result: CheckResult) -> tuple[tuple[Diagnostic, ...], tuple[Diagnostic, ...]]:
    """The diagnostics to print and the ones left out."""
    cut = MAX_SHOWN_DIAGNOSTICS
    return result.diagnostics[:cut], result.diagnostics[cut:]


def _more(omitted: tuple[Diagnostic, ...]) -> str:
    errors = sum(1 for d in omitted if d.severity is Severity.ERROR)
    warnings = len(omitted) - errors
    if not warnings:
        return f"... and {_n(errors, 'more error')}"
    if not errors:
        return f"... and {_n(warnings, 'more warning')}"
    return f"... and {len(omitted)} more ({_n(errors, 'error')}, {_n(warnings, 'warning')})"


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _styled(d: Diagnostic) -> str:
    where = click.style(f"{d.location}:", bold=True) + " " if d.location else ""
    if d.severity is Severity.WARNING:
        return f"{where}{click.style('warning:', fg='yellow', bold=True)} {d.message}"
    # Same text as the plain rendering (errors carry no label there either), only coloured.
    return f"{where}{click.style(d.message, fg='red')}"


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;")

"""``reconcile show PLANFILE``: render a saved plan without touching the API."""

from __future__ import annotations

from pathlib import Path

import click

from reconciler.commands._options import color_option, format_option
from reconciler.commands._runtime import print_plan
from reconciler.planfile import read_plan


@click.command(
    epilog="""\b
Exit codes: 0 shown, 1 the file is missing or not a saved plan.
\b
Example:
  reconcile plan --out plan.json && reconcile show --format markdown plan.json"""
)
@click.argument("plan_file", metavar="PLANFILE", type=click.Path(dir_okay=False, path_type=Path))
@format_option
@color_option
def show(plan_file: Path, output_format: str, no_color: bool) -> int:
    """Show a plan saved by `reconcile plan --out` (text, JSON or Markdown). No network."""
    print_plan(read_plan(plan_file), output_format=output_format, no_color=no_color)
    return 0

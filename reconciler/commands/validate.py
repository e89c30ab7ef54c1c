"""``reconcile validate``: placeholder until the manifests loader lands."""

from __future__ import annotations

import click


@click.command()
def validate() -> int:
    """Check manifests against the schema and the semantic rules. No network."""
    raise click.ClickException("not implemented yet")

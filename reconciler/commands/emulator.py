"""``reconcile emulator``: placeholder until the emulator lands."""

from __future__ import annotations

import click


@click.command()
def emulator() -> int:
    """Serve the Typeform API emulator on loopback."""
    raise click.ClickException("not implemented yet")

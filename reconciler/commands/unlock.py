"""``reconcile unlock [--force]``: release an apply lock whose holder is gone.

It always names the holder before doing anything. A stale lock (see ``reconciler.lock``) is
removed; a lock whose holder may still be running is refused (exit 1) unless ``--force``, because
removing it would let a second apply run alongside the first. It never touches the state file
itself.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol, runtime_checkable

import click

from reconciler.errors import ConfigError, StateError
from reconciler.lock import (
    LockHolder,
    LockInspection,
    LockStatus,
    break_lock,
    describe_holder,
    inspect_lock,
    pid_alive,
)
from reconciler.state import DEFAULT_STATE_PATH, FileStateStore, open_state_store

__all__ = ["run_unlock", "unlock"]


@runtime_checkable
class PostgresLike(Protocol):
    """A store that can name who holds its lock (``state_postgres.PostgresStateStore``)."""

    def holder(self) -> tuple[LockHolder, int] | None: ...


EXIT_OK = 0
EXIT_REFUSED = 1


@click.command()
@click.option(
    "--state",
    "state_spec",
    envvar="RECONCILE_STATE",
    default=str(DEFAULT_STATE_PATH),
    show_default=True,
    metavar="PATH|DSN",
    help="State file whose lock to release (env RECONCILE_STATE).",
)
@click.option(
    "--force",
    is_flag=True,
    default=False,
    help="Remove the lock even if its holder may still be running.",
)
def unlock(state_spec: str, force: bool) -> int:
    """Release a stale apply lock, naming its holder first."""
    store = open_state_store(state_spec)
    if not isinstance(store, FileStateStore):
        # An advisory lock ends with its holder's session: there is nothing stale to remove.
        found = store.holder() if isinstance(store, PostgresLike) else None
        held = (
            f" (held by {describe_holder(found[0])}; SELECT pg_terminate_backend({found[1]}) "
            "ends it)"
            if found
            else " (nobody holds it now)"
        )
        raise ConfigError(
            f"{store.location}: a PostgreSQL lock never goes stale; it ends with its holder's "
            f"session{held}"
        )
    return run_unlock(store.path, force=force)


def run_unlock(
    state_path: Path,
    *,
    force: bool,
    hostname: str | None = None,
    is_alive: Callable[[int], bool] = pid_alive,
) -> int:
    """The command's logic; ``hostname`` and ``is_alive`` are injectable for tests."""
    found = inspect_lock(state_path, hostname=hostname, is_alive=is_alive)
    if found.status is LockStatus.FREE:
        click.echo(f"No lock on {state_path}: nothing to unlock.")
        return EXIT_OK

    if found.holder is not None:
        click.echo(f"Lock on {state_path} is recorded for {describe_holder(found.holder)}.")
    else:
        click.echo(f"Lock on {state_path} does not say who holds it.")

    if found.status is LockStatus.HELD and not force:
        click.echo(
            f"Error: not removing it: {_why_held(found)}. Let that process finish (or stop it); "
            "if you are sure it is gone, rerun with --force.",
            err=True,
        )
        return EXIT_REFUSED

    if found.status is LockStatus.STALE:
        click.echo(_why_stale(found))
    try:
        break_lock(state_path)
    except StateError as exc:
        click.echo(f"Error: {exc}", err=True)
        return EXIT_REFUSED
    if found.status is LockStatus.HELD:
        click.echo(
            "Removed the lock anyway (--force). If its holder is still running, another apply "
            "can now run alongside it."
        )
    else:
        click.echo("Removed the stale lock.")
    return EXIT_OK


def _why_held(found: LockInspection) -> str:
    holder = found.holder
    if holder is None:
        return "another process holds it"
    if found.holder_alive:
        return f"pid {holder.pid} is still running on this host and holds it"
    return f"it was taken on host {holder.host}, whose processes cannot be checked from here"


def _why_stale(found: LockInspection) -> str:
    if not found.os_lock_held:
        return "Nobody holds it: its holder stopped without releasing it."
    assert found.holder is not None  # a held lock is stale only because of its dead holder
    return f"Its holder, pid {found.holder.pid} on this host, is no longer running."

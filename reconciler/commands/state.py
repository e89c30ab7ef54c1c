"""``reconcile state list|rm|migrate|push|pull``: the managed set, and where it is kept, by hand.

None calls the API. ``rm`` stops managing webhooks (they stay live, and become unmanaged),
under the apply lock, and refuses as a whole when any address is not in the state. ``migrate``
creates or upgrades a PostgreSQL state's tables; ``push`` and ``pull`` move a whole state between
a state file and another store (a database), under both locks, and never overwrite a target that
holds webhooks unless told to. A ``--state`` DSN is only ever shown without its password.
"""

from __future__ import annotations

import json
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

import click

from reconciler.commands._options import DEFAULT_STATE, OutputFormat, format_option
from reconciler.errors import ConfigError
from reconciler.models import Target, WebhookKey
from reconciler.state import FileStateStore, State, StateStore, open_state_store

_STATE_OPTION = click.option(
    "--state",
    "state_spec",
    envvar="RECONCILE_STATE",
    default=DEFAULT_STATE,
    show_default=True,
    metavar="PATH",
    help="State file, or postgresql://… (env RECONCILE_STATE).",
)


@click.group()
def state() -> None:
    """Inspect or edit the managed set (the state) without calling the API."""


@state.command("list", epilog="Exit codes: 0 listed (even when empty), 1 unreadable state.")
@_STATE_OPTION
@format_option
def list_(state_spec: str, output_format: str) -> int:
    """List the webhooks this tool manages: address, id, when last applied, URL, source."""
    store = open_state_store(state_spec)
    current = store.load()
    rows = [
        {
            "address": str(key),
            **key.to_json(),
            "webhook_id": entry.webhook_id,
            "applied_at": entry.applied_at,
            "url": entry.url,
            "source": entry.source,
            "secret_managed": entry.secret_fingerprint is not None,
        }
        for key, entry in sorted(current.webhooks.items())
    ]
    if output_format == OutputFormat.JSON:
        click.echo(json.dumps({"serial": current.serial, "webhooks": rows}, indent=2))
        return 0
    if not rows:
        click.echo(f"No managed webhooks in {store.location}.")
        return 0
    if output_format == OutputFormat.MARKDOWN:
        click.echo("| address | webhook id | applied at | url |\n|---|---|---|---|")
        for r in rows:
            click.echo(f"| `{r['address']}` | {r['webhook_id']} | {r['applied_at']} | {r['url']} |")
        return 0
    width = max(len(str(r["address"])) for r in rows)
    for r in rows:
        click.echo(f"{r['address']:<{width}}  {r['webhook_id']}  {r['applied_at']}  {r['url']}")
    click.echo(f"\n{len(rows)} managed webhook(s), state serial {current.serial}.")
    return 0


@state.command(
    "rm",
    epilog="""\b
Exit codes: 0 removed, 1 an address is not in the state (nothing removed).
\b
Example:
  reconcile state rm onbrd01/legacy eu-clients:onbrd02/intake""",
)
@click.argument("addresses", nargs=-1, required=True, metavar="ADDRESS...")
@_STATE_OPTION
def rm(addresses: tuple[str, ...], state_spec: str) -> int:
    """Stop managing webhooks ([ACCOUNT:]FORM_ID/TAG): they stay live, and become unmanaged."""
    store = open_state_store(state_spec)
    with store.lock(command="state rm"):
        current = store.load()
        keys = [_key(text, current) for text in addresses]
        remaining = current
        for key in keys:
            remaining = remaining.without(key)
        store.save(remaining)
    for key in keys:
        click.echo(f"Removed {key} from the state (the webhook stays live, now unmanaged).")
    return 0


def _key(text: str, current: State) -> WebhookKey:
    try:
        target = Target.parse(text)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if target.tag is None:
        raise ConfigError(f"{text!r}: state rm takes webhook addresses, FORM_ID/TAG")
    matches = [k for k in current.webhooks if target.matches(k)]
    if not matches:
        raise ConfigError(f"{text} is not in the state; nothing was removed")
    if len(matches) > 1:
        found = ", ".join(str(k) for k in sorted(matches))
        raise ConfigError(f"{text} matches several accounts ({found}): add the account")
    return matches[0]


@state.command(
    "migrate",
    epilog="""\b
Exit codes: 0 the schema is current, 1 the database cannot be reached or changed.
\b
Example:
  reconcile state migrate --state 'postgresql://ci@db.example.com/reconcile'""",
)
@_STATE_OPTION
def migrate(state_spec: str) -> int:
    """Create or upgrade the tables of a PostgreSQL state (safe to run again)."""
    store = open_state_store(state_spec)
    migrate_schema = getattr(store, "migrate", None)
    if migrate_schema is None:
        raise ConfigError(
            f"--state {store.location}: a state file has no schema to migrate; "
            "state migrate is for --state postgresql://…"
        )
    before, now = migrate_schema()
    if before == now:
        click.echo(f"Schema version {now} (already current) at {store.location}.")
    else:
        click.echo(f"Schema version {now} (migrated from {before}) at {store.location}.")
    return 0


_FORCE = click.option(
    "--force", is_flag=True, help="Overwrite a target that already holds managed webhooks."
)


@state.command(
    "push",
    epilog="""\b
Exit codes: 0 copied, 1 the target holds webhooks (without --force), or a store failed.
\b
Example:
  reconcile state push --from .reconcile/state.json --state 'postgresql://ci@db/reconcile'""",
)
@click.option(
    "--from",
    "source",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The state file to copy from.",
)
@_STATE_OPTION
@_FORCE
def push(source: Path, state_spec: str, force: bool) -> int:
    """Copy a whole state file into --state (a database), replacing what it holds."""
    return _copy(FileStateStore(source), open_state_store(state_spec), force=force, command="push")


@state.command(
    "pull",
    epilog="""\b
Exit codes: 0 copied, 1 the target holds webhooks (without --force), or a store failed.
\b
Example:
  reconcile state pull --to state.json --state 'postgresql://ci@db/reconcile'""",
)
@click.option(
    "--to",
    "target",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The state file to copy to.",
)
@_STATE_OPTION
@_FORCE
def pull(target: Path, state_spec: str, force: bool) -> int:
    """Copy the whole state of --state (a database) into a state file."""
    return _copy(open_state_store(state_spec), FileStateStore(target), force=force, command="pull")


def _copy(source: StateStore, target: StateStore, *, force: bool, command: str) -> int:
    if source.location == target.location:
        raise ConfigError(f"{source.location} is both the source and the target; nothing to copy")
    target.check_writable()
    # Both locks, the file's first whichever way the copy goes: a push and a pull of the same
    # pair cannot each hold one and wait for the other.
    stores = (source, target) if isinstance(source, FileStateStore) else (target, source)
    with ExitStack() as locks:
        for store in stores:
            locks.enter_context(store.lock(command=f"state {command}"))
        moving = source.load()
        replaced = target.load()
        if replaced.webhooks and not force:
            raise ConfigError(
                f"{target.location} already holds {len(replaced.webhooks)} managed webhook(s) "
                f"(serial {replaced.serial}); nothing was copied. Pass --force to replace them "
                f"with the {len(moving.webhooks)} of {source.location}"
            )
        written = target.save(replace(moving, serial=replaced.serial))
    click.echo(
        f"Copied {len(moving.webhooks)} managed webhook(s) from {source.location} "
        f"(serial {moving.serial}) to {target.location} (now serial {written.serial})."
    )
    return 0

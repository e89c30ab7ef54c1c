"""``reconcile state list`` and ``reconcile state rm ADDRESS...``: the managed set, by hand.

Neither calls the API. ``rm`` stops managing webhooks (they stay live, and become unmanaged),
under the apply lock, and refuses as a whole when any address is not in the state.
"""

from __future__ import annotations

import json

import click

from reconciler.commands._options import DEFAULT_STATE, OutputFormat, format_option
from reconciler.errors import ConfigError
from reconciler.models import Target, WebhookKey
from reconciler.state import State, open_state_store

_STATE_OPTION = click.option(
    "--state",
    "state_spec",
    envvar="RECONCILE_STATE",
    default=DEFAULT_STATE,
    show_default=True,
    metavar="PATH",
    help="State file (env RECONCILE_STATE).",
)


@click.group()
def state() -> None:
    """Inspect or edit the managed set (the state) without calling the API."""


@state.command("list", epilog="Exit codes: 0 listed (even when empty), 1 unreadable state.")
@_STATE_OPTION
@format_option
def list_(state_spec: str, output_format: str) -> int:
    """List the webhooks this tool manages: address, id, when last applied, URL, source."""
    current = open_state_store(state_spec).load()
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
        click.echo(f"No managed webhooks in {state_spec}.")
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

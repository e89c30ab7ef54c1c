"""``reconcile export``: parse flags, call ``reconciler.export.export``, print the YAML.

Reads only: its client can only send GET. PATH is read for its Account documents (how a
non-default account is reached); the WebhookSets found there change nothing in the output.
"""

from __future__ import annotations

from pathlib import Path

import click

from reconciler.commands._options import DEFAULT_PATHS, logging_options, paths_argument
from reconciler.commands._runtime import CliEvents, environ, run_async, setup_logging
from reconciler.credentials import secret_dirs_from
from reconciler.export import Export
from reconciler.export import export as run_export
from reconciler.manifests import load_desired
from reconciler.models import DEFAULT_ACCOUNT, DesiredState
from reconciler.pipeline import Run, Settings
from reconciler.state import FileStateStore


def _desired(paths: tuple[str, ...]) -> DesiredState:
    """The manifests under PATH; without PATH, ``manifests/`` when it exists (the default
    account needs none)."""
    if not paths:
        paths = tuple(p for p in DEFAULT_PATHS if Path(p).exists())
    return load_desired(paths) if paths else DesiredState()


@click.command(
    epilog="""\b
Exit codes: 0 exported, 1 error (an unknown form, no forms found, none or several of
--form/--workspace/--all, a bad token). Never writes to the API: GET only, so a token with
forms:read and webhooks:read is enough.
\b
Secrets are write-only in the API: a webhook whose response says it has one gets
'secret: {env: WEBHOOK_SECRET_...}' (set that variable); the others get the same line commented
out (uncomment it where the webhook has a secret).
\b
Example (adopt an account):
  reconcile export --all > manifests/exported.yaml
  reconcile plan            # in sync, but for the secrets to set
  reconcile apply           # records every exported webhook as managed"""
)
@paths_argument
@click.option("--form", "forms", multiple=True, metavar="ID",
              help="Export the webhooks of this form (repeatable).")  # fmt: skip
@click.option("--workspace", metavar="ID",
              help="Export the webhooks of every form of this workspace.")  # fmt: skip
@click.option("--all", "all_forms", is_flag=True,
              help="Export the webhooks of every form of the account.")  # fmt: skip
@click.option("--account", default=DEFAULT_ACCOUNT, show_default=True, metavar="NAME",
              help="The account to export (non-default ones are declared under PATH).")  # fmt: skip
@click.option("--api-url", default=None, metavar="URL",
              help="API base URL of the default account; 'emulator:[PATH]' runs the "
                   "emulator.")  # fmt: skip
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Requests per second (overrides the account's; Typeform allows 2).")  # fmt: skip
@click.option("--request-timeout", type=click.FloatRange(min=0, min_open=True), default=30.0,
              show_default=True, metavar="SECONDS",
              help="Fail a request that hears nothing for this long.")  # fmt: skip
@logging_options
def export(
    paths: tuple[str, ...],
    forms: tuple[str, ...],
    workspace: str | None,
    all_forms: bool,
    account: str,
    api_url: str | None,
    rate: float | None,
    request_timeout: float,
    log_level: str,
    log_format: str,
) -> int:
    """Print the live webhooks as manifests (YAML on stdout), to adopt them.

    Give exactly one of --form ID (repeatable), --workspace ID or --all. PATH (default:
    manifests/, when it exists) is read only for Account documents.
    """
    setup_logging(log_level, log_format)
    env = environ()
    desired = _desired(paths)
    run = Run(
        store=FileStateStore(Path(".reconcile/state.json")),  # required by Run, never opened
        settings=Settings(
            api_url=api_url,
            rate=rate,
            request_timeout=request_timeout,
            secret_dirs=secret_dirs_from(env),
        ),
        environ=env,
        events=CliEvents(),
    )

    async def go() -> Export:
        return await run_export(
            run, desired, forms=forms, workspace=workspace, all_forms=all_forms, account=account
        )

    click.echo(run_async(go).to_yaml(), nl=False)
    return 0

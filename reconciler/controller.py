"""Wire the pipeline: manifests -> clients -> refresh -> plan -> apply -> state and records.

This is the one module that knows every stage; each stage knows only its inputs. It is
level-based like a Kubernetes controller: each run reads the whole desired state and the live
webhooks of every form in scope, so a run never depends on what a previous one remembered
(except ownership, which only the state file can prove).

Everything the outside world provides is a parameter (environment, clock, run id, transport
factory), so tests drive the whole pipeline against the in-process emulator without patching.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import anyio
import httpx

from reconciler.client import TypeformClient
from reconciler.credentials import resolve_secret, resolve_token
from reconciler.errors import (
    ConfigError,
    FormNotFoundError,
    ReconcileError,
    SecretResolutionError,
    StalePlanError,
)
from reconciler.logs import register_sensitive
from reconciler.models import (
    DEFAULT_ACCOUNT,
    Action,
    DesiredState,
    LiveWebhook,
    Location,
    Plan,
    Presence,
    WebhookKey,
)
from reconciler.normalize import SecretStatus, live_form_fingerprint
from reconciler.planner import LiveForms, PlanOptions, Target, build_plan, in_targets
from reconciler.state import FingerprintCache, State

__all__ = [
    "DEFAULT_API_URL",
    "Planned",
    "Settings",
    "check_saved_plan",
    "open_clients",
    "plan",
    "refresh",
    "utc_now",
]

log = logging.getLogger(__name__)

DEFAULT_API_URL = "https://api.typeform.com"
EMULATOR_TOKEN = "emulator"  # the in-process emulator accepts any non-empty bearer token


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Settings:
    """Run-wide settings from flags and environment (never a token value)."""

    environ: Mapping[str, str] = field(default_factory=dict)
    api_url: str | None = None
    """``--api-url``: overrides the default account's URL."""
    rate: float | None = None
    """``--rate``: overrides every account's rate."""
    concurrency: int = 4
    transport_factory: Callable[[str], httpx.AsyncBaseTransport | None] | None = None
    """Tests may hand in a transport per account name; ``None`` means real HTTP / emulator."""


def _api_url(desired: DesiredState, account: str, settings: Settings) -> str:
    declared = desired.account(account).api_url
    if account == DEFAULT_ACCOUNT:
        return (
            settings.api_url
            or declared
            or settings.environ.get("TYPEFORM_API_URL")
            or (DEFAULT_API_URL)
        )
    if declared is None:
        raise ConfigError(f"account {account!r} declares no api_url")
    return declared


def _is_emulator(url: str) -> bool:
    from reconciler.emulator import is_emulator_url

    return is_emulator_url(url)


@asynccontextmanager
async def open_clients(
    desired: DesiredState,
    settings: Settings,
    *,
    accounts: Sequence[str] | None = None,
    read_only: bool = False,
) -> AsyncIterator[dict[str, TypeformClient]]:
    """One paced client per account in use; closed on exit."""
    names = tuple(accounts) if accounts is not None else desired.account_names()
    async with AsyncExitStack() as stack:
        clients: dict[str, TypeformClient] = {}
        for name in names:
            account = desired.account(name)
            url = _api_url(desired, name, settings)
            transport = settings.transport_factory(name) if settings.transport_factory else None
            token = resolve_token(account, environ=settings.environ)
            if _is_emulator(url):
                from reconciler.emulator import open_emulator  # starlette only when used

                emulated = open_emulator(url)
                transport = transport or emulated.transport
                url = emulated.base_url
                token = token or EMULATOR_TOKEN
            elif token is None and transport is None:
                where = f" (declared at {account.location})" if account.location else ""
                variable = "TYPEFORM_TOKEN" if name == DEFAULT_ACCOUNT else "its token reference"
                raise ConfigError(
                    f"no API token for account {name!r}{where}: set {variable}, "
                    "or use --api-url emulator: to try the tool without one"
                )
            register_sensitive(token)
            client = TypeformClient(
                base_url=url,
                token=token or EMULATOR_TOKEN,
                account=name,
                rate=settings.rate or account.rate_limit,
                concurrency=settings.concurrency,
                transport=transport,
                read_only=read_only,
            )
            clients[name] = await stack.enter_async_context(client)
        yield clients


# --------------------------------------------------------------------------- refresh


def forms_in_scope(
    desired: DesiredState, state: State, targets: Sequence[Target]
) -> dict[str, list[str]]:
    """Per account, every form declared or holding a webhook the state file says is ours."""
    scope: dict[str, set[str]] = defaultdict(set)
    for hook in desired.webhooks:
        if in_targets(hook.key, targets):
            scope[hook.key.account].add(hook.key.form_id)
    accounts = set(desired.account_names())
    for key in state.managed_keys():
        if in_targets(key, targets) and key.account in accounts:
            scope[key.account].add(key.form_id)
    return {account: sorted(forms) for account, forms in sorted(scope.items())}


async def refresh(
    desired: DesiredState,
    clients: Mapping[str, TypeformClient],
    scope: Mapping[str, Sequence[str]],
    *,
    on_progress: Callable[[int, int], None] = lambda done, total: None,
) -> LiveForms:
    """Exactly one ``GET /forms/{id}/webhooks`` per form in scope, all forms concurrently.

    A declared form that does not exist (or that the token cannot read) is an error naming the
    manifest entry; a form known only from the state file may have been deleted, which is fine.
    """
    declared_at: dict[tuple[str, str], Location | None] = {}
    for hook in desired.webhooks:
        declared_at.setdefault((hook.key.account, hook.key.form_id), hook.location)

    live: dict[tuple[str, str], tuple[LiveWebhook, ...]] = {}
    problems: list[str] = []
    total = sum(len(forms) for forms in scope.values())
    done = 0

    async def fetch(account: str, form_id: str) -> None:
        nonlocal done
        form = (account, form_id)
        try:
            live[form] = tuple(await clients[account].list_webhooks(form_id))
        except FormNotFoundError as exc:
            if form in declared_at:
                where = f"{declared_at[form]}: " if declared_at[form] else ""
                problems.append(f"{where}form {form_id!r} (account {account}): {exc}")
            else:
                live[form] = ()
        except ReconcileError as exc:
            problems.append(str(exc))
        done += 1
        on_progress(done, total)

    on_progress(0, total)
    async with anyio.create_task_group() as tg:
        for account, forms in scope.items():
            for form_id in forms:
                tg.start_soon(fetch, account, form_id)
    if problems:
        unique = list(dict.fromkeys(problems))
        raise ReconcileError("could not read the live webhooks:\n  " + "\n  ".join(sorted(unique)))
    return live


# --------------------------------------------------------------------------- secrets


def resolve_secrets(
    desired: DesiredState, targets: Sequence[Target], *, environ: Mapping[str, str]
) -> dict[WebhookKey, str]:
    """The value of every declared secret in scope; all unresolved references reported at once."""
    values: dict[WebhookKey, str] = {}
    problems: list[str] = []
    for hook in desired.webhooks:
        if hook.secret is None or hook.state is Presence.ABSENT:
            continue
        if not in_targets(hook.key, targets):
            continue
        try:
            values[hook.key] = resolve_secret(hook.secret, environ=environ)
        except SecretResolutionError as exc:
            where = f"{hook.location}: " if hook.location else ""
            problems.append(f"{where}{exc}")
    if problems:
        raise SecretResolutionError("\n".join(problems))
    for value in values.values():
        register_sensitive(value)
    return values


def secret_statuses(
    secrets: Mapping[WebhookKey, str], live: LiveForms, state: State, hashes: FingerprintCache
) -> dict[WebhookKey, SecretStatus]:
    """Compare each declared secret with the live one: directly if the API returned it, else by
    the state file's fingerprint; with neither, it is unknown (and will be set)."""
    live_by_key = {w.key: w for hooks in live.values() for w in hooks}
    statuses: dict[WebhookKey, SecretStatus] = {}
    for key, value in secrets.items():
        hook = live_by_key.get(key)
        entry = state.get(key)
        if hook is not None and hook.secret is not None:
            same = hook.secret == value
        elif entry is not None and entry.secret_fingerprint:
            same = hashes.matches(value, entry.secret_fingerprint)
        else:
            statuses[key] = SecretStatus.UNKNOWN
            continue
        statuses[key] = SecretStatus.IN_SYNC if same else SecretStatus.CHANGED
    return statuses


# --------------------------------------------------------------------------- plan


@dataclass(frozen=True, slots=True)
class Planned:
    """A plan plus what apply needs to execute it (resolved secrets stay in memory only)."""

    plan: Plan
    secrets: Mapping[WebhookKey, str]
    live: LiveForms
    hashes: FingerprintCache


async def plan(
    desired: DesiredState,
    clients: Mapping[str, TypeformClient],
    state: State,
    *,
    environ: Mapping[str, str],
    options: PlanOptions | None = None,
    now: Callable[[], str] = utc_now,
    on_progress: Callable[[int, int], None] = lambda done, total: None,
    hashes: FingerprintCache | None = None,
) -> Planned:
    """Refresh every form in scope and diff it against the manifests."""
    hashes = hashes or FingerprintCache()
    options = options or PlanOptions()
    secrets = resolve_secrets(desired, options.targets, environ=environ)
    scope = forms_in_scope(desired, state, options.targets)
    live = await refresh(desired, clients, scope, on_progress=on_progress)
    result = build_plan(
        desired,
        live,
        managed=state.managed_keys(),
        secrets=secret_statuses(secrets, live, state, hashes),
        created_at=now(),
        options=options,
    )
    written = {
        c.key: hashes.fingerprint(secrets[c.key])
        for c in result.changes
        if c.action in (Action.CREATE, Action.UPDATE) and c.key in secrets
    }
    return Planned(replace(result, secret_fingerprints=written), secrets, live, hashes)


async def check_saved_plan(
    saved: Plan,
    desired: DesiredState,
    clients: Mapping[str, TypeformClient],
    *,
    environ: Mapping[str, str],
    hashes: FingerprintCache,
) -> dict[WebhookKey, str]:
    """Refuse a saved plan whose touched forms or secrets changed since it was made.

    Re-reads only the forms the plan writes to. Returns the resolved secrets to send.
    """
    scope: dict[str, list[str]] = defaultdict(list)
    for account, form_id in sorted(saved.live_fingerprints):
        if account not in clients:
            raise StalePlanError(
                f"the saved plan writes to account {account!r}, which the manifests no longer use"
            )
        scope[account].append(form_id)
    live = await refresh(desired, clients, scope)
    stale = [
        f"{form_id} (account {account})"
        for (account, form_id), digest in sorted(saved.live_fingerprints.items())
        if live_form_fingerprint(live.get((account, form_id), ())) != digest
    ]
    if stale:
        raise StalePlanError(
            "the saved plan is stale: the live webhooks of "
            + ", ".join(stale)
            + " changed since it was made; nothing was written. Run `reconcile plan --out` again."
        )
    secrets: dict[WebhookKey, str] = {}
    changed: list[str] = []
    for change in saved.actions:
        if change.secret_ref is None or change.action is Action.DELETE:
            continue
        value = resolve_secret(change.secret_ref, environ=environ)
        register_sensitive(value)
        digest = saved.secret_fingerprints.get(change.key)
        if digest is None or not hashes.matches(value, digest):
            changed.append(str(change.key))
        secrets[change.key] = value
    if changed:
        raise StalePlanError(
            "the saved plan is stale: the secret of "
            + ", ".join(changed)
            + " changed since it was made; nothing was written. Run `reconcile plan --out` again."
        )
    return secrets

"""The reconcile pipeline as a library: plan, apply (a live plan or a saved one), and their run.

    Run(settings, state store, environment, endpoints, clock, approve, events)
      ├─ plan(run, desired, options)            -> PlanResult
      ├─ apply(run, desired, options, saved)    -> ApplyResult
      ├─ drift(run, desired, options)           -> DriftReport   (a client that only sends GET)
      └─ cycle(run, desired, options)           -> CycleResult   (drift, then heal: watch loops it)

Everything the outside provides is in ``Run``: the CLI builds one from flags, a test from
fixtures, a user's script from keywords (``reconciler.api``). This module never prints, never
reads stdin and never installs a signal handler: progress, warnings and per-write outcomes go to
``run.events``, and approval is ``run.approve``'s to give.

It is level-based like a Kubernetes controller: each call reads the whole desired state, the
state store and the live webhooks of every form in scope, so it never depends on what a previous
call remembered, except ownership, which only the state can prove.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from reconciler.applier import ApplyOutcome, Outcome, adopt, apply_plan
from reconciler.changes import ChangedScope
from reconciler.client import TypeformClient
from reconciler.clock import timestamp, utc_now
from reconciler.credentials import resolve_secret
from reconciler.drift_report import DriftReport, drift_from_plan
from reconciler.errors import (
    ConfigError,
    LocalWriteError,
    PlanError,
    ReconcileError,
    RefreshError,
    SecretResolutionError,
    StalePlanError,
)
from reconciler.events import (
    AccountFailed,
    EventSink,
    LockTakenOver,
    Notice,
    PlanReady,
    Progress,
    WriteDone,
    ignore,
)
from reconciler.fingerprints import Fingerprinter
from reconciler.lock import describe_holder
from reconciler.logs import Redactor, redacting
from reconciler.models import (
    DEFAULT_ACCOUNT,
    Account,
    Action,
    Change,
    DesiredState,
    OperationRecord,
    Plan,
    PlanBinding,
    Presence,
    SelectorMatch,
    WebhookKey,
)
from reconciler.normalize import SecretStatus, desired_digest, hash_text, live_form_fingerprint
from reconciler.pacer import Pacer
from reconciler.planner import (
    DEFAULT_MAX_DELETES,
    LiveForms,
    PlanOptions,
    Target,
    build_plan,
    check_safety,
    in_targets,
)
from reconciler.records import DEFAULT_RECORDS_PATH, RecordWriter, new_run_id
from reconciler.refresh import AccountFailure, Refreshed, forms_in_scope, refresh
from reconciler.render import plan_to_json
from reconciler.selectors import expand, listings_needed
from reconciler.state import State, StateStore
from reconciler.transports import EndpointResolver, account_api_url, default_resolver
from reconciler.watch import HealLimiter

__all__ = [
    "ApplyOptions",
    "ApplyResult",
    "CycleOptions",
    "CycleResult",
    "DriftOptions",
    "PlanResult",
    "Run",
    "Settings",
    "apply",
    "cycle",
    "drift",
    "plan",
]

Approve = Callable[[Plan], Awaitable[bool]]

SAVE_EVERY = 20
"""apply saves the state after at least this many landed writes (or SAVE_INTERVAL seconds) ..."""
SAVE_SHARE = 10
"""... and after a tenth of the entries it holds, so the saves of a run cost O(N), not O(N**2)."""
SAVE_INTERVAL = 1.0
"""Seconds: at Typeform's 2 requests/s, a crash loses the entries of at most two writes."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Run-wide settings from flags (never a token value)."""

    api_url: str | None = None
    """``--api-url``: overrides the default account's URL."""
    rate: float | None = None
    """``--rate``: overrides every account's rate."""
    request_timeout: float = 30.0
    concurrency: int = 4
    lock_timeout: float = 0.0
    secret_dirs: tuple[Path, ...] = ()
    """Directories ``{file:}`` secrets may be read from besides the manifest tree."""


@dataclass(kw_only=True)
class Run:
    """Everything one reconcile run needs from the outside world."""

    store: StateStore
    settings: Settings = field(default_factory=Settings)
    environ: Mapping[str, str] = field(default_factory=dict)
    endpoints: EndpointResolver | None = None
    """How an account's API URL is reached; default: real HTTP, or the emulator for emulator:."""
    clock: Callable[[], datetime] = utc_now
    events: EventSink = ignore
    approve: Approve | None = None
    """Asked before any write unless ``auto_approve``; ``None`` refuses (nobody to ask)."""
    run_id: str = field(default_factory=new_run_id)
    redactor: Redactor = field(default_factory=Redactor)
    on_response: Callable[[str, int | str], None] | None = None
    """Called with (account, HTTP status or ``"error"``) after every request attempt."""

    def now(self) -> str:
        return timestamp(self.clock())


@dataclass(frozen=True, slots=True, kw_only=True)
class ApplyOptions:
    prune: bool = False
    targets: tuple[Target, ...] = ()
    accounts: tuple[str, ...] = ()
    max_deletes: int = DEFAULT_MAX_DELETES
    allow_empty: bool = False
    atomic: bool = False
    auto_approve: bool = False
    records: Path = DEFAULT_RECORDS_PATH
    changed: ChangedScope | None = None
    """``--changed-since``: only what differs from a git ref (a partial plan)."""
    skip: frozenset[WebhookKey] = frozenset()
    """Webhooks left as they are this time (``watch --heal`` past its heal limit)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DriftOptions:
    prune: bool = False
    targets: tuple[Target, ...] = ()
    accounts: tuple[str, ...] = ()
    changed: ChangedScope | None = None
    heal_suspended: frozenset[WebhookKey] = frozenset()


@dataclass(frozen=True, slots=True, kw_only=True)
class CycleOptions:
    """One ``watch`` cycle: drift, then (with ``heal``) apply under every guard of ``apply``."""

    drift: DriftOptions = field(default_factory=DriftOptions)
    heal: bool = False
    apply: ApplyOptions = field(default_factory=lambda: ApplyOptions(auto_approve=True))
    limiter: HealLimiter | None = None
    """Corrections per webhook per hour; past it a webhook is ``heal_suspended``."""


@dataclass(frozen=True, slots=True)
class CycleResult:
    report: DriftReport
    healed: ApplyResult | None = None


@dataclass(frozen=True, slots=True)
class PlanResult:
    """A plan, what the refresh could not read, and what apply needs to execute it.

    ``to_json()`` is exactly the document ``reconcile plan --format json`` prints.
    """

    plan: Plan
    failures: tuple[AccountFailure, ...] = ()
    secrets: Mapping[WebhookKey, str] = field(default_factory=dict, repr=False)
    state: State = field(default_factory=State, repr=False)

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def has_changes(self) -> bool:
        return self.plan.has_changes

    def to_json(self) -> dict[str, Any]:
        return plan_to_json(self.plan)


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """What apply did: one outcome row per write, the adoptions, the state serial written."""

    plan: Plan
    rows: tuple[Outcome, ...] = ()
    adopted: tuple[WebhookKey, ...] = ()
    serial: int | None = None
    run_id: str = ""
    records: Path | None = None
    failures: tuple[AccountFailure, ...] = ()

    @property
    def failed(self) -> tuple[Outcome, ...]:
        return tuple(r for r in self.rows if not r.success)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.failures

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "ok": self.ok,
            "serial": self.serial,
            "outcomes": [r.to_json() for r in self.rows],
            "adopted": [{**k.to_json(), "address": str(k)} for k in self.adopted],
            "failed_accounts": [f.account for f in self.failures],
        }


# --------------------------------------------------------------------------- clients


@asynccontextmanager
async def open_clients(
    run: Run, desired: DesiredState, accounts: Sequence[str], *, read_only: bool
) -> AsyncIterator[dict[str, TypeformClient]]:
    """One paced client per account, reached through ``run.endpoints``; closed on exit."""
    resolve = run.endpoints or default_resolver(run.environ, run.settings.secret_dirs)
    pacers = _pacers(run, desired, accounts)
    async with AsyncExitStack() as stack:
        clients: dict[str, TypeformClient] = {}
        for name in accounts:
            account = _account(desired, name)
            url = account_api_url(account, override=run.settings.api_url, environ=run.environ)
            endpoint = resolve(account, url)
            run.redactor.add(endpoint.token)
            clients[name] = await stack.enter_async_context(
                TypeformClient(
                    base_url=endpoint.base_url,
                    token=endpoint.token,
                    account=name,
                    rate=run.settings.rate or account.rate_limit,
                    concurrency=run.settings.concurrency,
                    transport=endpoint.transport,
                    timeout=run.settings.request_timeout,
                    read_only=read_only,
                    on_response=run.on_response,
                    pacer=pacers[name],
                )
            )
        yield clients


def _pacers(run: Run, desired: DesiredState, accounts: Sequence[str]) -> dict[str, Pacer]:
    """One pacer per rate group: Typeform limits a Typeform account, whatever its tokens."""
    groups: dict[str, list[Account]] = {}
    for name in accounts:
        account = _account(desired, name)
        groups.setdefault(account.rate_group or account.name, []).append(account)
    pacers: dict[str, Pacer] = {}
    for members in groups.values():
        rate = run.settings.rate or min(a.rate_limit for a in members)
        pacer = Pacer(rate=rate, concurrency=run.settings.concurrency)
        pacers.update((a.name, pacer) for a in members)
    return pacers


def _account(desired: DesiredState, name: str) -> Account:
    try:
        return desired.account(name)
    except KeyError:
        raise ConfigError(
            f"account {name!r} is not declared by any Account document in the manifests"
        ) from None


def api_urls(run: Run, desired: DesiredState, accounts: Sequence[str]) -> dict[str, str]:
    """The API URL each account resolves to in this run (what a saved plan binds)."""
    return {
        name: account_api_url(
            _account(desired, name), override=run.settings.api_url, environ=run.environ
        )
        for name in accounts
    }


# --------------------------------------------------------------------------- secrets


def resolve_secrets(
    run: Run, desired: DesiredState, targets: Sequence[Target], accounts: Sequence[str]
) -> dict[WebhookKey, str]:
    """The value of every declared secret in scope; all unresolved references reported at once."""
    values: dict[WebhookKey, str] = {}
    problems: list[str] = []
    for hook in desired.webhooks:
        if hook.secret is None or hook.state is Presence.ABSENT:
            continue
        if not in_targets(hook.key, targets) or (accounts and hook.key.account not in accounts):
            continue
        try:
            values[hook.key] = resolve_secret(
                hook.secret, environ=run.environ, secret_dirs=run.settings.secret_dirs
            )
        except SecretResolutionError as exc:
            where = f"{hook.location}: " if hook.location else ""
            problems.append(f"{where}{exc}")
    if problems:
        raise SecretResolutionError("\n".join(problems))
    for value in values.values():
        run.redactor.add(value)
    return values


def secret_statuses(
    secrets: Mapping[WebhookKey, str], live: LiveForms, state: State, hashes: Fingerprinter
) -> dict[WebhookKey, SecretStatus]:
    """How each declared secret compares with the live one.

    Where the API echoes the secret and it equals ours, it is in sync. Otherwise the echo may be
    masked, so the state's fingerprint decides; with neither, the secret is unknown (and set).
    """
    live_by_key = {w.key: w for hooks in live.values() for w in hooks}
    statuses: dict[WebhookKey, SecretStatus] = {}
    for key, value in secrets.items():
        hook = live_by_key.get(key)
        entry = state.get(key)
        if hook is not None and hook.secret is not None and hook.secret == value:
            statuses[key] = SecretStatus.IN_SYNC
        elif entry is not None and entry.secret_fingerprint:
            same = hashes.matches(value, entry.secret_fingerprint)
            statuses[key] = SecretStatus.IN_SYNC if same else SecretStatus.CHANGED
        else:
            statuses[key] = SecretStatus.UNKNOWN
    return statuses


def _to_verify(
    secrets: Mapping[WebhookKey, str], live: LiveForms, state: State
) -> list[tuple[str, str]]:
    """(secret, recorded fingerprint) pairs that need a slow hash (no plain echo settles them)."""
    echoed = {w.key: w.secret for hooks in live.values() for w in hooks if w.secret}
    return [
        (value, entry.secret_fingerprint)
        for key, value in secrets.items()
        if echoed.get(key) != value
        and (entry := state.get(key)) is not None
        and entry.secret_fingerprint
    ]


# --------------------------------------------------------------------------- plan


@dataclass(frozen=True, slots=True)
class _Planned:
    result: PlanResult
    refreshed: Refreshed
    hashes: Fingerprinter
    desired: DesiredState
    """The desired state with every form selector expanded."""


async def _expand_selectors(
    desired: DesiredState,
    clients: Mapping[str, TypeformClient],
    accounts: Sequence[str],
    *,
    only: frozenset[tuple[str, str, str]] | None = None,
) -> tuple[DesiredState, tuple[SelectorMatch, ...]]:
    """List the forms the selectors need (paged, 200 per page) and expand them; with ``only``,
    just those selector entries (set, account, tag): the others are left out unexpanded."""
    if only is not None:
        desired = replace(
            desired,
            sets=tuple(
                replace(
                    s,
                    selectors=tuple(
                        e for e in s.selectors if (s.name, s.account, e.template.key.tag) in only
                    ),
                )
                for s in desired.sets
            ),
        )
    listings: dict[tuple[str, str | None], list[dict[str, Any]]] = {}
    for account, workspace in listings_needed(desired):
        if account in clients and (not accounts or account in accounts):
            listings[account, workspace] = await clients[account].list_forms(workspace_id=workspace)
    return expand(desired, listings)


async def _make_plan(
    run: Run,
    desired: DesiredState,
    state: State,
    clients: Mapping[str, TypeformClient],
    options: PlanOptions,
    accounts: Sequence[str],
    *,
    with_fingerprints: bool,
) -> _Planned:
    declared = desired
    only = options.changed_selectors if options.changed_since is not None else None
    desired, selected = await _expand_selectors(declared, clients, accounts, only=only)
    if options.changed_since is not None:
        # A changed selector is re-expanded: every form it matches now joins the scope.
        matched = tuple(Target(f, m.tag, m.account) for m in selected for f in m.matched)
        options = replace(options, targets=(*options.targets, *matched))
        if not options.targets:
            return _nothing_changed(run, desired, state, options, accounts)
    secrets = resolve_secrets(run, desired, options.targets, accounts)
    scope = forms_in_scope(
        desired, sorted(state.managed_keys()), options.targets, accounts=accounts
    )
    refreshed = await refresh(
        desired, clients, scope, on_progress=lambda d, t: run.events(Progress(d, t))
    )
    for failure in refreshed.failures:
        run.events(AccountFailed(failure))
    # Targets derived by --changed-since may name what is gone: only a user's are checked.
    if not refreshed.failures and options.changed_since is None:
        _check_targets(options.targets, desired, state, refreshed.live)
    hashes = Fingerprinter(state.fingerprint_salt)
    await hashes.prepare_matches(_to_verify(secrets, refreshed.live, state))
    result = build_plan(
        desired,
        refreshed.live,
        managed={key: entry.webhook_id for key, entry in state.webhooks.items()},
        secrets=secret_statuses(secrets, refreshed.live, state, hashes),
        created_at=run.now(),
        options=options,
    )
    result = replace(
        result,
        accounts=tuple(accounts),
        selectors=selected,
        unread_accounts=tuple(f.account for f in refreshed.failures),
    )
    if with_fingerprints:
        result = replace(
            result,
            binding=PlanBinding(
                api_urls=api_urls(run, desired, sorted(clients)),
                state_serial=state.serial,
                desired_digest=_scope_digest(declared, options.targets, accounts),
            ),
        )
        written = [c for c in result.actions if c.action in (Action.CREATE, Action.UPDATE)]
        await hashes.prepare(secrets[c.key] for c in written if c.key in secrets)
        result = replace(
            result,
            secret_fingerprints={
                c.key: hashes.fingerprint(secrets[c.key]) for c in written if c.key in secrets
            },
            fingerprint_salt=hashes.salt,
        )
    return _Planned(
        PlanResult(result, refreshed.failures, secrets, state), refreshed, hashes, desired
    )


def _nothing_changed(
    run: Run,
    desired: DesiredState,
    state: State,
    options: PlanOptions,
    accounts: Sequence[str],
) -> _Planned:
    """A partial plan of nothing: no manifest entry changed since the ref, so nothing is read."""
    plan = Plan(
        created_at=run.now(),
        actions=(),
        prune=options.prune,
        accounts=tuple(accounts),
        changed_since=options.changed_since,
    )
    return _Planned(
        PlanResult(plan, (), {}, state),
        Refreshed({}),
        Fingerprinter(state.fingerprint_salt),
        desired,
    )


def narrow(options: PlanOptions, changed: ChangedScope | None, state: State) -> PlanOptions:
    """The plan options of ``--changed-since``: what changed, and what the state owns of a
    selector that changed (its old matches may have to go)."""
    if changed is None:
        return options
    if options.targets:
        raise ConfigError("--target and --changed-since cannot be combined: each sets the scope")
    owned = tuple(
        Target(k.form_id, k.tag, k.account)
        for k in sorted(state.webhooks)
        if any(k.account == account and k.tag == tag for _, account, tag in changed.selectors)
    )
    return replace(
        options,
        targets=(*changed.targets, *owned),
        changed_since=changed.ref,
        changed_selectors=changed.selectors,
    )


def _scope_digest(desired: DesiredState, targets: Sequence[Target], accounts: Sequence[str]) -> str:
    """The manifests as a saved plan binds them: webhooks in scope, and every form selector."""
    explicit = desired_digest(
        w
        for w in desired.webhooks
        if in_targets(w.key, targets) and (not accounts or w.key.account in accounts)
    )
    selectors = sorted(
        f"{s.account}|{e.selector.describe()}|"
        + desired_digest([replace(e.template, key=replace(e.template.key, form_id="x"))])
        for s, e in desired.selector_entries
    )
    return explicit if not selectors else f"{explicit}+{hash_text(chr(10).join(selectors))}"


def _check_binding(run: Run, desired: DesiredState, state: State, saved: Plan) -> None:
    """Refuse a saved plan made against another API, another state or other manifests."""
    binding = saved.binding
    if binding is None:
        raise StalePlanError(
            "the saved plan says nothing about what it was made against (API URLs, state "
            "serial, manifests); nothing was written. Make it with `reconcile plan --out`."
        )
    declared = set(desired.account_names())
    named = {*binding.api_urls, *(c.key.account for c in saved.writes)}
    dropped = sorted(a for a in named if a not in declared)
    if dropped:
        raise StalePlanError(
            f"the saved plan writes to account(s) {', '.join(dropped)}, which the manifests "
            "no longer use; nothing was written. Run `reconcile plan --out` again."
        )
    now = api_urls(run, desired, sorted(binding.api_urls))
    moved = sorted(a for a, url in binding.api_urls.items() if now[a] != url)
    if moved:
        raise StalePlanError(
            "the saved plan was made against another API URL for account(s) "
            f"{', '.join(moved)}; nothing was written. Plan again against this one."
        )
    if state.serial != binding.state_serial:
        raise StalePlanError(
            "the saved plan is stale: the state changed since it was made (serial "
            f"{binding.state_serial}, now {state.serial}): another apply ran; nothing was written. "
            "Run `reconcile plan --out` again."
        )
    digest = _scope_digest(desired, saved.targets, saved.accounts)
    if digest != binding.desired_digest:
        raise StalePlanError(
            "the saved plan is stale: the manifests in its scope changed since it was made; "
            "nothing was written. Run `reconcile plan --out` again and review it."
        )


def _accounts_in_scope(
    run: Run,
    desired: DesiredState,
    state: State,
    targets: Sequence[Target],
    accounts: Sequence[str],
) -> list[str]:
    """The accounts to refresh; state entries of an account nothing declares are named."""
    names = set(forms_in_scope(desired, sorted(state.managed_keys()), targets, accounts=accounts))
    names |= {a for a, _ in listings_needed(desired) if not accounts or a in accounts}
    unknown = sorted(
        set(accounts) - set(desired.account_names()) - {k.account for k in state.webhooks}
    )
    if unknown:
        raise ConfigError(f"--account {', '.join(unknown)}: no WebhookSet or state entry uses it")
    resolvable = {a.name for a in desired.accounts} | {DEFAULT_ACCOUNT}
    for name in sorted(names - resolvable):
        entries = ", ".join(str(k) for k in sorted(state.managed_keys(name)))
        run.events(
            Notice(
                f"warning: the state records webhooks of account '{name}', which no Account "
                f"document declares, so they cannot be refreshed or pruned: {entries}. Restore "
                "its Account document, or `reconcile state rm` them."
            )
        )
    return sorted(names & resolvable)


def _check_targets(
    targets: Sequence[Target], desired: DesiredState, state: State, live: LiveForms
) -> None:
    """A target that matches nothing is a typo, not an empty run (SPEC section 4)."""
    known = [
        *(w.key for w in desired.webhooks),
        *state.webhooks,
        *(w.key for hooks in live.values() for w in hooks),
    ]
    missing = [str(t) for t in targets if not any(t.matches(k) for k in known)]
    if missing:
        raise ConfigError(
            f"--target {', '.join(missing)} matches no declared, state-owned or live webhook"
        )


async def plan(
    run: Run,
    desired: DesiredState,
    options: PlanOptions | None = None,
    *,
    accounts: Sequence[str] = (),
    with_fingerprints: bool = False,
    changed: ChangedScope | None = None,
) -> PlanResult:
    """Refresh every form in scope and diff it against the manifests; writes nothing.

    ``with_fingerprints`` adds the secret fingerprints a saved plan needs (``plan --out``); a
    plan only printed computes no fingerprint it will not use.
    """
    options = options or PlanOptions()
    with redacting(run.redactor):
        for warning in desired.warnings:
            run.events(Notice(warning.render()))
        state = run.store.load()
        options = narrow(options, changed, state)
        names = _accounts_in_scope(run, desired, state, options.targets, accounts)
        async with open_clients(run, desired, names, read_only=True) as clients:
            planned = await _make_plan(
                run,
                desired,
                state,
                clients,
                options,
                accounts,
                with_fingerprints=with_fingerprints,
            )
        return planned.result


# --------------------------------------------------------------------------- drift


async def drift(
    run: Run, desired: DesiredState, options: DriftOptions | None = None
) -> DriftReport:
    """Refresh like ``plan`` and report drift; read-only by construction (GET-only clients).

    Raises ``RefreshError`` when an account cannot be read: a report missing an account would
    say "in sync" about webhooks nobody looked at.
    """
    options = options or DriftOptions()
    with redacting(run.redactor):
        for warning in desired.warnings:
            run.events(Notice(warning.render()))
        state = run.store.load()
        narrowed = narrow(
            PlanOptions(prune=options.prune, targets=options.targets), options.changed, state
        )
        names = _accounts_in_scope(run, desired, state, narrowed.targets, options.accounts)
        async with open_clients(run, desired, names, read_only=True) as clients:
            planned = await _make_plan(
                run,
                desired,
                state,
                clients,
                narrowed,
                options.accounts,
                with_fingerprints=False,
            )
        failures = planned.result.failures
        if failures:
            raise RefreshError(
                "; ".join(f.message() for f in failures),
                transient=all(f.transient for f in failures),
                systemic=any(f.systemic for f in failures),
                retry_after=max((f.retry_after or 0.0 for f in failures), default=0.0) or None,
            )
        report = drift_from_plan(
            planned.result.plan,
            last_applied={k: e.applied for k, e in state.webhooks.items() if e.applied},
            checked_at=run.now(),
            heal_suspended=options.heal_suspended,
        )
        # The latest status per webhook, where the store keeps one (PostgreSQL: a table).
        run.store.save_drift(report.to_json())
        return report


async def cycle(run: Run, desired: DesiredState, options: CycleOptions) -> CycleResult:
    """One level-based watch cycle: report drift, then heal what the heal limit still allows.

    Healing is an ``apply`` (under the lock, every guard, records) that leaves alone the
    webhooks corrected too often lately: those are reported ``heal_suspended``, so a receiver
    that keeps getting disabled is not re-enabled forever.
    """
    limiter = options.limiter
    suspended = limiter.suspended() if limiter is not None else frozenset()
    report = await drift(run, desired, replace(options.drift, heal_suspended=suspended))
    if not options.heal or not any(w.is_drift for w in report.webhooks):
        return CycleResult(report)
    drifted = {w.key for w in report.webhooks if w.is_drift}
    held = frozenset(k for k in drifted if limiter is not None and not limiter.allow(k))
    if held - suspended:
        report = replace(
            report,
            webhooks=tuple(
                replace(w, heal_suspended=True) if w.key in held else w for w in report.webhooks
            ),
        )
    if not drifted - held:
        return CycleResult(report)
    healed = await apply(run, desired, replace(options.apply, auto_approve=True, skip=held))
    if limiter is not None:
        for row in healed.rows:
            if row.success:
                limiter.record(row.key)
    return CycleResult(report, healed)


# --------------------------------------------------------------------------- apply


async def apply(
    run: Run,
    desired: DesiredState,
    options: ApplyOptions | None = None,
    *,
    saved: Plan | None = None,
) -> ApplyResult:
    """Plan (or check a saved plan), get approval, execute, record, save state.

    Holds the state store's lock throughout. A saved plan is an approval, not an instruction:
    the plan is derived again and executed only when each action equals the saved one.
    """
    options = options or ApplyOptions()
    if saved is not None:
        decided = (
            ("--target", options.targets),
            ("--account", options.accounts),
            ("--prune", options.prune),
            ("--changed-since", options.changed),
        )
        given = [flag for flag, on in decided if on]
        if given:
            raise ConfigError(
                f"{', '.join(given)} cannot be used with --plan: a saved plan carries the "
                "scope and pruning decided when it was made"
            )
    with redacting(run.redactor):
        for warning in desired.warnings:
            run.events(Notice(warning.render()))
        run.store.check_writable()
        writer = RecordWriter(options.records)
        with run.store.lock(command="apply", timeout=run.settings.lock_timeout) as lock, writer:
            if lock.previous_holder is not None:
                run.events(LockTakenOver(describe_holder(lock.previous_holder)))
            return await _apply_locked(run, desired, options, saved, writer)


async def _apply_locked(
    run: Run,
    desired: DesiredState,
    options: ApplyOptions,
    saved: Plan | None,
    writer: RecordWriter,
) -> ApplyResult:
    state = run.store.load()
    if saved is not None:
        _check_binding(run, desired, state, saved)
        # Derive the plan again over exactly the saved plan's scope.
        plan_options = PlanOptions(
            prune=saved.prune, targets=saved.targets, changed_since=saved.changed_since
        )
        accounts: Sequence[str] = saved.accounts
    else:
        plan_options = narrow(
            PlanOptions(prune=options.prune, targets=options.targets), options.changed, state
        )
        accounts = options.accounts
    names = _accounts_in_scope(run, desired, state, plan_options.targets, accounts)
    async with open_clients(run, desired, names, read_only=False) as clients:
        planned = await _make_plan(
            run,
            desired,
            state,
            clients,
            plan_options,
            accounts,
            with_fingerprints=False,
        )
        fresh, secrets, hashes = planned.result.plan, planned.result.secrets, planned.hashes
        if saved is not None:
            if planned.result.failures:
                raise StalePlanError(
                    "the saved plan cannot be checked: "
                    + "; ".join(f.message() for f in planned.result.failures)
                )
            # The saved fingerprints were made under the salt the plan names (a plan made
            # before the state had one made its own).
            checker = Fingerprinter(saved.fingerprint_salt)
            await checker.prepare(secrets[c.key] for c in saved.writes if c.key in secrets)
            _check_saved(saved, fresh, planned.refreshed.live, secrets, checker)
            the_plan = fresh
        else:
            the_plan = fresh
        if options.skip:
            the_plan = replace(
                the_plan,
                actions=tuple(
                    c
                    for c in the_plan.actions
                    if c.action is Action.NOOP or c.key not in options.skip
                ),
            )
        run.events(PlanReady(the_plan))
        check_safety(
            the_plan,
            planned.desired,
            managed=state.managed_keys(),
            max_deletes=options.max_deletes,
            allow_empty=options.allow_empty,
        )
        if the_plan.has_changes and not options.auto_approve and saved is None:
            if run.approve is None:
                raise PlanError(
                    "refusing to apply without approval: nobody can confirm here. Review the "
                    "plan, then pass --auto-approve (or apply a saved plan with --plan)."
                )
            if not await run.approve(the_plan):
                raise PlanError(
                    "apply cancelled: only 'yes' approves the plan; nothing was written."
                )
        if the_plan.has_changes:
            writer.check()
        await hashes.prepare(secrets[c.key] for c in the_plan.writes if c.key in secrets)

        serial = state.serial
        unsaved: State | None = None  # the newest state, when it is not saved yet
        # The first landed write is saved at once: a run that stops early leaves a state file.
        since, saved_at, save_failed = 0, -math.inf, False

        def save(new_state: State) -> None:
            # Fingerprints are keyed by the state's salt: a new salt is saved with the first.
            nonlocal serial, unsaved, since, saved_at, save_failed
            saving = replace(new_state, serial=serial, fingerprint_salt=hashes.salt)
            try:
                serial = run.store.save(saving).serial
            except BaseException:
                save_failed = True  # the applier stops writing and reports it; never retried
                raise
            unsaved, since, saved_at = None, 0, time.monotonic()

        def persist(new_state: State) -> None:
            # A save costs O(entries), so saving after every write made N writes cost O(N**2).
            # Each write's record is fsynced at once; the state is saved after a number of
            # writes proportional to its size, at least every SAVE_INTERVAL seconds, and at the
            # end, cancelled or not. A crash loses at most the entries of the last writes, which
            # the next apply adopts: they are declared and live.
            nonlocal unsaved, since
            unsaved, since = new_state, since + 1
            due = max(SAVE_EVERY, len(new_state.webhooks) // SAVE_SHARE)
            if since >= due or time.monotonic() - saved_at >= SAVE_INTERVAL:
                save(new_state)

        def on_result(row: Outcome) -> None:
            run.events(WriteDone(row))

        try:
            outcome: ApplyOutcome = await apply_plan(
                the_plan.writes,
                apis=clients,
                secrets=secrets,
                state=state,
                run_id=run.run_id,
                now=run.now,
                fingerprint=hashes.fingerprint,
                record=_recorder(run, writer),
                on_state=persist,
                on_result=on_result,
                atomic=options.atomic,
            )
        except BaseException:
            if unsaved is not None and not save_failed:
                with contextlib.suppress(OSError, ReconcileError):
                    save(unsaved)  # cancelled (SIGINT, SIGTERM): keep what landed
            raise
        if unsaved is not None and not save_failed:
            try:
                save(unsaved)
            except (OSError, ReconcileError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
                landed = ", ".join(
                    f"{r.operation.value} {r.key}" for r in outcome.rows if r.success
                )
                raise LocalWriteError(
                    f"could not write the state ({reason}). Writes that landed: "
                    f"{landed or 'nothing'}. Not recorded: the state of the last {since} "
                    "write(s). Fix the cause and run apply again: it adopts what landed and "
                    "converges."
                ) from exc
    if outcome.local_failure is not None:
        raise LocalWriteError(outcome.local_failure)
    final, adopted = adopt(
        the_plan, outcome.state, secrets=secrets, now=run.now(), fingerprint=hashes.fingerprint
    )
    if adopted:
        save(final)
    return ApplyResult(
        plan=the_plan,
        rows=outcome.rows,
        adopted=adopted,
        serial=serial if (outcome.rows or adopted) else None,
        run_id=run.run_id,
        records=options.records if outcome.rows else None,
        failures=planned.result.failures,
    )


def _recorder(run: Run, writer: RecordWriter) -> Callable[[OperationRecord], None]:
    """Each record to the records file (fsynced), then to the state store (PostgreSQL: a table)."""

    def record(entry: OperationRecord) -> None:
        writer.write(entry)
        run.store.write_record(entry)

    return record


def _action_fingerprint(change: Change) -> tuple[Any, ...]:
    after = None if change.after is None else json.dumps(dict(change.after), sort_keys=True)
    return (change.action, change.key, after)


def _check_saved(
    saved: Plan,
    fresh: Plan,
    live: LiveForms,
    secrets: Mapping[WebhookKey, str],
    hashes: Fingerprinter,
) -> None:
    """Refuse a saved plan unless every action it would write is what the plan is now."""
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
    theirs = {_action_fingerprint(c) for c in saved.writes}
    ours = {_action_fingerprint(c) for c in fresh.writes}
    if theirs != ours:
        differ = sorted({str(k) for _, k, _ in theirs ^ ours})
        raise StalePlanError(
            "the saved plan does not match what the manifests, the state and the live webhooks "
            f"call for now ({', '.join(differ)}); nothing was written. "
            "Run `reconcile plan --out` again and review it."
        )
    changed: list[str] = []
    for change in saved.writes:
        if change.key not in secrets or change.action is Action.DELETE:
            continue
        digest = saved.secret_fingerprints.get(change.key)
        if digest is None or not hashes.matches(secrets[change.key], digest):
            changed.append(str(change.key))
    if changed:
        raise StalePlanError(
            "the saved plan is stale: the secret of "
            + ", ".join(changed)
            + " changed since it was made; nothing was written. Run `reconcile plan --out` again."
        )

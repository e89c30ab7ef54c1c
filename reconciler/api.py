"""The public Python API: ``reconciler.load``, ``reconciler.plan``, ``reconciler.apply``.

Manifest paths come first, then keyword options that mirror the CLI flags. Tokens come from the
environment, exactly as for the CLI (``TYPEFORM_TOKEN``, or each Account document's reference);
``api_url="emulator:"`` runs everything against the built-in emulator with no token::

    import anyio, reconciler

    async def main() -> None:
        result = await reconciler.plan(["manifests/"], api_url="emulator:")
        print(result.plan.count(reconciler.Action.CREATE), "to create")

    anyio.run(main)

``reconciler.sync`` has the same functions as plain calls. Each builds a ``pipeline.Run``; call
``reconciler.pipeline`` directly for full control (your own state store, endpoint resolver,
clock or event sink).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import anyio

from reconciler.changes import ChangedScope, changed_scope
from reconciler.credentials import secret_dirs_from
from reconciler.drift_report import DriftReport
from reconciler.errors import ConfigError
from reconciler.events import EventSink, ignore
from reconciler.manifests import load_desired
from reconciler.models import DesiredState, Plan, Target
from reconciler.pipeline import (
    ApplyOptions,
    ApplyResult,
    Approve,
    DriftOptions,
    PlanResult,
    Run,
    Settings,
)
from reconciler.pipeline import apply as run_apply
from reconciler.pipeline import drift as run_drift
from reconciler.pipeline import plan as run_plan
from reconciler.planfile import read_plan, write_plan
from reconciler.planner import DEFAULT_MAX_DELETES, PlanOptions
from reconciler.records import DEFAULT_RECORDS_PATH
from reconciler.state import open_state_store

__all__ = ["DEFAULT_PATHS", "DEFAULT_STATE", "apply", "drift", "load", "parse_targets", "plan"]

DEFAULT_PATHS: tuple[str, ...] = ("manifests/",)
DEFAULT_STATE = ".reconcile/state.json"

Paths = Sequence[str | os.PathLike[str]] | str | os.PathLike[str]


def _paths(paths: Paths | None) -> list[str]:
    if paths is None:
        return list(DEFAULT_PATHS)
    if isinstance(paths, str | os.PathLike):
        return [os.fspath(paths)]
    return [os.fspath(p) for p in paths] or list(DEFAULT_PATHS)


def _changed(paths: Paths | None, ref: str | None, desired: DesiredState) -> ChangedScope | None:
    return changed_scope(_paths(paths), ref, desired) if ref is not None else None


def parse_targets(targets: Iterable[str | Target]) -> tuple[Target, ...]:
    """``[ACCOUNT:]FORM_ID[/TAG]`` strings (or ``Target``s) -> ``Target``s, or ``ConfigError``."""
    parsed: list[Target] = []
    for target in targets:
        if isinstance(target, Target):
            parsed.append(target)
            continue
        try:
            parsed.append(Target.parse(target))
        except ValueError as exc:
            raise ConfigError(f"--target {exc}") from None
    return tuple(parsed)


async def load(
    paths: Paths | None = None, *, environ: Mapping[str, str] | None = None
) -> DesiredState:
    """Load and validate manifests (``ManifestError`` lists every problem, FILE:LINE:COL)."""
    found = _paths(paths)
    env = dict(os.environ) if environ is None else dict(environ)
    return await anyio.to_thread.run_sync(lambda: load_desired(found, environ=env))


def _run(
    *,
    state: str | os.PathLike[str] | None,
    api_url: str | None,
    rate: float | None,
    request_timeout: float,
    environ: Mapping[str, str] | None,
    events: EventSink | None,
    secret_dirs: Iterable[str | os.PathLike[str]],
    lock_timeout: float = 0.0,
    approve: Approve | None = None,
) -> Run:
    env = dict(os.environ) if environ is None else dict(environ)
    spec = state if state is not None else env.get("RECONCILE_STATE", DEFAULT_STATE)
    return Run(
        store=open_state_store(os.fspath(spec)),
        settings=Settings(
            api_url=api_url,
            rate=rate,
            request_timeout=request_timeout,
            lock_timeout=lock_timeout,
            secret_dirs=secret_dirs_from(env, [Path(d) for d in secret_dirs]),
        ),
        environ=env,
        events=events or ignore,
        approve=approve,
    )


async def plan(
    paths: Paths | None = None,
    *,
    api_url: str | None = None,
    state: str | os.PathLike[str] | None = None,
    prune: bool = False,
    targets: Iterable[str | Target] = (),
    accounts: Iterable[str] = (),
    rate: float | None = None,
    out: str | os.PathLike[str] | None = None,
    changed_since: str | None = None,
    request_timeout: float = 30.0,
    secret_dirs: Iterable[str | os.PathLike[str]] = (),
    environ: Mapping[str, str] | None = None,
    events: EventSink | None = None,
) -> PlanResult:
    """Refresh and diff, like ``reconcile plan``; ``out`` saves the plan for ``apply(plan=...)``.

    Check ``result.ok``: an account that could not be refreshed is in ``result.failures`` and
    left out of the plan.
    """
    desired = await load(paths, environ=environ)
    run = _run(
        state=state,
        api_url=api_url,
        rate=rate,
        request_timeout=request_timeout,
        environ=environ,
        events=events,
        secret_dirs=secret_dirs,
    )
    result = await run_plan(
        run,
        desired,
        PlanOptions(prune=prune, targets=parse_targets(targets)),
        accounts=tuple(accounts),
        with_fingerprints=out is not None,
        changed=_changed(paths, changed_since, desired),
    )
    if out is not None:
        write_plan(Path(out), result.plan)
    return result


async def apply(
    paths: Paths | None = None,
    *,
    plan: str | os.PathLike[str] | Plan | None = None,
    auto_approve: bool = False,
    approve: Approve | None = None,
    api_url: str | None = None,
    state: str | os.PathLike[str] | None = None,
    prune: bool = False,
    targets: Iterable[str | Target] = (),
    accounts: Iterable[str] = (),
    max_deletes: int = DEFAULT_MAX_DELETES,
    allow_empty: bool = False,
    atomic: bool = False,
    records: str | os.PathLike[str] = DEFAULT_RECORDS_PATH,
    rate: float | None = None,
    request_timeout: float = 30.0,
    lock_timeout: float = 0.0,
    changed_since: str | None = None,
    secret_dirs: Iterable[str | os.PathLike[str]] = (),
    environ: Mapping[str, str] | None = None,
    events: EventSink | None = None,
) -> ApplyResult:
    """Make the live webhooks match, like ``reconcile apply``.

    Without ``auto_approve=True`` (or a saved ``plan``, which is the approval) nothing is
    written unless ``approve(plan)`` returns True. Failed writes are rows in the result
    (``result.ok``); refusals (stale saved plan, unsafe plan, lock held) raise.
    """
    target_list = parse_targets(targets)
    account_list = tuple(accounts)
    saved = plan if isinstance(plan, Plan) else read_plan(Path(plan)) if plan is not None else None
    desired = await load(paths, environ=environ)
    run = _run(
        state=state,
        api_url=api_url,
        rate=rate,
        request_timeout=request_timeout,
        lock_timeout=lock_timeout,
        environ=environ,
        events=events,
        approve=approve,
        secret_dirs=secret_dirs,
    )
    return await run_apply(
        run,
        desired,
        ApplyOptions(
            prune=prune,
            targets=target_list,
            accounts=account_list,
            max_deletes=max_deletes,
            allow_empty=allow_empty,
            atomic=atomic,
            auto_approve=auto_approve,
            records=Path(records),
            changed=_changed(paths, changed_since, desired),
        ),
        saved=saved,
    )


async def drift(
    paths: Paths | None = None,
    *,
    api_url: str | None = None,
    state: str | os.PathLike[str] | None = None,
    prune: bool = False,
    targets: Iterable[str | Target] = (),
    accounts: Iterable[str] = (),
    rate: float | None = None,
    changed_since: str | None = None,
    request_timeout: float = 30.0,
    secret_dirs: Iterable[str | os.PathLike[str]] = (),
    environ: Mapping[str, str] | None = None,
    events: EventSink | None = None,
) -> DriftReport:
    """Report drift, like ``reconcile drift``: read-only (its clients can only send GET).

    ``report.to_json()`` is the JSON report; ``report.exits()`` the CLI's exit code (0 in sync,
    2 drift). An account that cannot be read raises ``RefreshError``.
    """
    desired = await load(paths, environ=environ)
    run = _run(
        state=state,
        api_url=api_url,
        rate=rate,
        request_timeout=request_timeout,
        environ=environ,
        events=events,
        secret_dirs=secret_dirs,
    )
    options = DriftOptions(
        prune=prune,
        targets=parse_targets(targets),
        accounts=tuple(accounts),
        changed=_changed(paths, changed_since, desired),
    )
    return await run_drift(run, desired, options)

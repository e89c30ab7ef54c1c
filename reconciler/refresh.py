"""Read the live webhooks of every form in scope: one ``GET /forms/{id}/webhooks`` per form.

Accounts refresh concurrently, each through its own paced client, and fail on their own
(SPEC section 4): an error is a value in that account's ``AccountFailure``, keeping its type
(``transient``, ``systemic``, ``retry_after``) for whoever decides what to do next: ``plan``
reports it, ``watch`` backs off on a transient one and stops on a terminal one. A systemic
error (bad token, API unreachable) stops its account at the first request that shows it, with
one line naming the account, instead of one line per form: each account's first request is sent
alone, so a bad token costs one request.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import anyio

from reconciler.client import TypeformClient
from reconciler.errors import FormNotFoundError, ReconcileError
from reconciler.models import DEFAULT_ACCOUNT, DesiredState, LiveWebhook, Location, WebhookKey
from reconciler.planner import LiveForms, Target, in_targets

__all__ = ["AccountFailure", "Refreshed", "forms_in_scope", "refresh"]

Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class AccountFailure:
    """Why an account's refresh failed: the first systemic error, or every form that failed."""

    account: str
    errors: tuple[ReconcileError, ...]

    @property
    def systemic(self) -> bool:
        return any(e.systemic for e in self.errors)

    @property
    def transient(self) -> bool:
        """Whether trying again later may succeed (every error is transient)."""
        return all(e.transient for e in self.errors)

    @property
    def retry_after(self) -> float | None:
        waits = [w for e in self.errors if (w := getattr(e, "retry_after", None)) is not None]
        return max(waits) if waits else None

    def message(self) -> str:
        if self.systemic:
            first = next(e for e in self.errors if e.systemic)
            return f"account '{self.account}' stopped at its first request: {first}"
        lines = sorted({str(e) for e in self.errors})
        return f"account '{self.account}': " + "\n  ".join(lines)


@dataclass(frozen=True, slots=True)
class Refreshed:
    """What the refresh saw: the live webhooks of each form read, and each account that failed."""

    live: LiveForms
    failures: tuple[AccountFailure, ...] = ()

    @property
    def failed_accounts(self) -> frozenset[str]:
        return frozenset(f.account for f in self.failures)


def forms_in_scope(
    desired: DesiredState,
    owned: Sequence[WebhookKey],
    targets: Sequence[Target],
    *,
    accounts: Sequence[str] = (),
) -> dict[str, list[str]]:
    """Per account, every form declared, holding a webhook the state says is ours, or named by a
    target (so a target can reach an unmanaged webhook), sorted."""
    scope: dict[str, set[str]] = defaultdict(set)
    wanted = set(accounts)
    keys = [*(h.key for h in desired.webhooks), *owned]
    for key in keys:
        if in_targets(key, targets) and (not wanted or key.account in wanted):
            scope[key.account].add(key.form_id)
    used = sorted({k.account for k in keys} | {DEFAULT_ACCOUNT})
    for target in targets:
        for account in [target.account] if target.account else used:
            if not wanted or account in wanted:
                scope[account].add(target.form_id)
    return {account: sorted(forms) for account, forms in sorted(scope.items())}


async def refresh(
    desired: DesiredState,
    clients: Mapping[str, TypeformClient],
    scope: Mapping[str, Sequence[str]],
    *,
    on_progress: Progress = lambda done, total: None,
) -> Refreshed:
    """Read every form of ``scope``, each account through its own client in ``clients``.

    A declared form that does not exist (or that the token cannot read) is an error naming the
    manifest entry; a form known only from the state file may have been deleted, which is fine.
    """
    declared_at: dict[tuple[str, str], Location | None] = {}
    for hook in desired.webhooks:
        declared_at.setdefault((hook.key.account, hook.key.form_id), hook.location)

    live: dict[tuple[str, str], tuple[LiveWebhook, ...]] = {}
    failures: list[AccountFailure] = []
    total = sum(len(forms) for forms in scope.values())
    done = 0

    async def account_run(account: str, forms: Sequence[str]) -> None:
        nonlocal done
        client = clients[account]
        errors: list[ReconcileError] = []
        async with anyio.create_task_group() as tg:

            async def fetch(form_id: str) -> None:
                nonlocal done
                form = (account, form_id)
                try:
                    live[form] = tuple(await client.list_webhooks(form_id))
                except FormNotFoundError as exc:
                    if form in declared_at:
                        where = f"{declared_at[form]}: " if declared_at[form] else ""
                        errors.append(type(exc)(f"{where}{exc}", status=exc.status))
                    else:
                        live[form] = ()
                except ReconcileError as exc:
                    errors.append(exc)
                    if exc.systemic:
                        tg.cancel_scope.cancel()  # one line for the account, not one per form
                done += 1
                on_progress(done, total)

            # The first request goes alone: if the account is unusable (bad token, API
            # unreachable), it is the only one sent.
            await fetch(forms[0])
            if not any(e.systemic for e in errors):
                for form_id in forms[1:]:
                    tg.start_soon(fetch, form_id)
        if errors:
            failures.append(AccountFailure(account, tuple(errors)))
            for form_id in forms:
                live.pop((account, form_id), None)  # half an account is not a refresh

    on_progress(0, total)
    async with anyio.create_task_group() as tg:
        for account, forms in scope.items():
            tg.start_soon(account_run, account, forms)
    return Refreshed(live, tuple(sorted(failures, key=lambda f: f.account)))

"""Execute a plan's writes through a ``WebhookAPI``: one outcome row and one record per write.

Apply does exactly what the plan says and nothing else: it never re-plans. A failing write
becomes a failed row (and record), not an exception that stops the others, so one bad form
cannot hold back the rest; re-running after a partial failure converges because the next plan
starts from whatever did land. With ``atomic`` the writes that did land are reverted when any
failed, and each revert says honestly what it could restore: a secret is write-only, so a rotated
secret stays rotated and a re-created webhook comes back without one.

Every state transition happens here, after each write that landed, so a crash mid-apply loses
nothing that is known to have landed: created or updated webhooks become owned (with their id,
last-applied body and secret fingerprint), deleted ones stop being owned, and declared webhooks
that were already right are adopted. If the state or the records cannot be written after a write
landed, no further write starts, and ``LocalWriteError`` names what landed and what went
unrecorded (SPEC section 4).

Secrets arrive already resolved, keyed by webhook, and go only into request bodies: rows,
records and the state carry at most a fingerprint.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import anyio

from reconciler.errors import APIError, ReconcileError, WebhookNotFoundError
from reconciler.models import (
    Action,
    Change,
    LiveWebhook,
    Operation,
    OperationRecord,
    Plan,
    WebhookKey,
)
from reconciler.state import ManagedWebhook, State

__all__ = [
    "ApplyOutcome",
    "Outcome",
    "WebhookAPI",
    "adopt",
    "applied_body",
    "apply_plan",
    "write_body",
]


class WriteResult(Protocol):
    @property
    def webhook(self) -> LiveWebhook | None: ...

    @property
    def attempts(self) -> int: ...


class WebhookAPI(Protocol):
    """What apply needs from an account's client (``reconciler.client.TypeformClient``)."""

    async def put_webhook(self, form_id: str, tag: str, body: Mapping[str, Any]) -> WriteResult: ...

    async def delete_webhook(self, form_id: str, tag: str) -> WriteResult: ...


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one webhook: one row per write (and per adoption, which writes nothing).

    ``note`` says what a person should know beyond success, such as a secret that a revert
    could not restore.
    """

    change: Change
    operation: Operation
    success: bool
    error: str | None = None
    webhook_id: str | None = None
    attempts: int = 0
    duration_ms: int = 0
    note: str | None = None

    @property
    def key(self) -> WebhookKey:
        return self.change.key

    def to_json(self) -> dict[str, Any]:
        return {
            **self.key.to_json(),
            "address": str(self.key),
            "operation": self.operation.value,
            "success": self.success,
            "error": self.error,
            "webhook_id": self.webhook_id,
            "attempts": self.attempts,
            "duration_ms": self.duration_ms,
            "note": self.note,
        }


@dataclass(frozen=True, slots=True)
class ApplyOutcome:
    rows: tuple[Outcome, ...]
    state: State
    adopted: tuple[WebhookKey, ...] = ()
    local_failure: str | None = None
    skipped: tuple[Change, ...] = field(default=())
    """Writes never started because a local write failed first."""

    @property
    def failed(self) -> tuple[Outcome, ...]:
        return tuple(r for r in self.rows if not r.success)

    @property
    def ok(self) -> bool:
        return not self.failed and self.local_failure is None


def write_body(after: Mapping[str, Any], secret: str | None) -> dict[str, Any]:
    """The full PUT body for a desired essence: every managed field, plus the secret if any."""
    body = {k: v for k, v in after.items() if k != "secret"}
    if secret is not None:
        body["secret"] = secret
    return body


def applied_body(essence: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """What the state keeps of a written body: the managed fields, never the secret."""
    if essence is None:
        return None
    return {k: v for k, v in essence.items() if k != "secret"}


Record = Callable[[OperationRecord], None]
SaveState = Callable[[State], None]


async def apply_plan(
    changes: tuple[Change, ...],
    *,
    apis: Mapping[str, WebhookAPI],
    secrets: Mapping[WebhookKey, str],
    state: State,
    run_id: str,
    now: Callable[[], str],
    fingerprint: Callable[[str], str],
    record: Record,
    on_state: SaveState = lambda _state: None,
    on_result: Callable[[Outcome], None] = lambda _row: None,
    atomic: bool = False,
) -> ApplyOutcome:
    """Run every write concurrently (each account's client paces itself) and collect rows.

    ``record`` is called once per API write and ``on_state`` after each that landed, with the
    updated state; if either raises ``OSError`` or ``ReconcileError``, writes not yet started are
    skipped and the outcome carries ``local_failure`` (the caller raises ``LocalWriteError``).
    """
    current = state
    rows: list[Outcome] = []
    answered: set[int] = set()  # id() of each change that got an answer (or needs none)
    unrecorded: list[str] = []
    local_failure: str | None = None
    writing: list[anyio.CancelScope] = []  # the task group of the writes under way

    def stop_writing(reason: str) -> None:
        nonlocal local_failure
        if local_failure is None:
            local_failure = reason
            for scope in writing:
                scope.cancel()  # nothing more is sent that could go unrecorded

    def settle(row: Outcome, written: LiveWebhook | None) -> None:
        nonlocal current
        answered.add(id(row.change))
        rows.append(row)
        on_result(row)
        try:
            record(_record(row, run_id=run_id, now=now))
        except (OSError, ReconcileError) as exc:
            unrecorded.append(f"record of {row.operation.value} {row.key}")
            stop_writing(_describe(exc, "the operation records"))
        if row.success:
            current = next_state(current, state, row, written, secrets, now(), fingerprint)
            try:
                on_state(current)
            except (OSError, ReconcileError) as exc:
                unrecorded.append(f"state of {row.key}")
                stop_writing(_describe(exc, "the state"))

    async def run(
        change: Change,
        operation: Operation,
        call: Callable[[], Awaitable[WriteResult]],
    ) -> None:
        if local_failure is not None:
            return  # a local write failed: start nothing more that could go unrecorded
        started = time.perf_counter()
        try:
            written = await call()
        except WebhookNotFoundError as exc:
            if change.action is Action.DELETE and operation is Operation.DELETE:
                # Already gone: a retried DELETE whose first attempt landed, or someone else
                # deleted it. Either way the plan's intent holds.
                settle(
                    Outcome(
                        change,
                        operation,
                        True,
                        None,
                        change.webhook_id,
                        exc.attempts,
                        _ms(started),
                        note="already gone (404)",
                    ),
                    None,
                )
                return
            settle(_failed(change, operation, exc, started), None)
            return
        except ReconcileError as exc:
            settle(_failed(change, operation, exc, started), None)
            return
        hook = written.webhook
        settle(
            Outcome(
                change,
                operation,
                True,
                None,
                hook.id if hook else change.webhook_id,
                written.attempts,
                _ms(started),
                note=revert_note(change) if operation is Operation.REVERT else None,
            ),
            hook,
        )

    writes = [c for c in changes if c.action is not Action.NOOP]
    # Renames create the new webhook first; the old one is deleted only once the new one exists,
    # so a failed create never leaves a form with neither.
    for phase in (False, True):
        failed = {r.key for r in rows if not r.success}
        async with anyio.create_task_group() as tg:
            writing[:] = [tg.cancel_scope]
            for change in writes:
                if (change.moved_to is not None) is not phase:
                    continue
                if change.moved_to is not None and change.moved_to in failed:
                    settle(_not_moved(change), None)
                    continue
                api = apis[change.key.account]
                operation = Operation(change.action.value)
                tg.start_soon(run, change, operation, _forward(api, change, secrets))

    if atomic and any(not r.success for r in rows) and local_failure is None:
        landed = [r for r in rows if r.success]
        async with anyio.create_task_group() as tg:
            writing[:] = [tg.cancel_scope]
            for row in landed:
                api = apis[row.key.account]
                # The revert's record names the webhook the write made (a create's id).
                change = replace(row.change, webhook_id=row.webhook_id)
                tg.start_soon(run, change, Operation.REVERT, _backward(api, row))

    skipped = tuple(c for c in writes if id(c) not in answered)
    if local_failure is not None:
        landed_text = (
            ", ".join(f"{r.operation.value} {r.key}" for r in rows if r.success) or "nothing"
        )
        lost = "; ".join(unrecorded) or "nothing"
        local_failure = (
            f"{local_failure}. Writes that landed: {landed_text}. Not recorded: {lost}. "
            f"{len(skipped)} write(s) not sent or stopped before an answer (one in flight may "
            "have landed). Fix the cause and run apply again: it adopts what landed and "
            "converges."
        )
    return ApplyOutcome(tuple(rows), current, (), local_failure, skipped)


def adopt(
    plan: Plan,
    state: State,
    *,
    secrets: Mapping[WebhookKey, str],
    now: str,
    fingerprint: Callable[[str], str],
) -> tuple[State, tuple[WebhookKey, ...]]:
    """Claim every declared webhook the plan found live and right (SPEC section 6).

    A no-op of a declared, present webhook that the state does not record under its live id
    becomes owned: it carries its id, so a later ``--prune`` can prove it is ours.
    """
    adopted: list[WebhookKey] = []
    for change in plan.actions:
        if change.action is not Action.NOOP or change.after is None or not change.webhook_id:
            continue
        entry = state.get(change.key)
        if entry is not None and entry.webhook_id == change.webhook_id:
            continue
        secret = secrets.get(change.key)
        state = state.with_applied(
            ManagedWebhook(
                key=change.key,
                webhook_id=change.webhook_id,
                applied_at=now,
                applied=applied_body(change.after),
                source=change.location.file if change.location else None,
                secret_fingerprint=fingerprint(secret) if secret is not None else None,
            )
        )
        adopted.append(change.key)
    return state, tuple(adopted)


def _not_moved(change: Change) -> Outcome:
    error = f"not deleted: its replacement {change.moved_to} was not created; nothing was sent"
    return Outcome(change, Operation.DELETE, False, error, change.webhook_id, 0, 0)


def _failed(change: Change, operation: Operation, exc: ReconcileError, started: float) -> Outcome:
    attempts = exc.attempts if isinstance(exc, APIError) else 1
    # The client's message already names the HTTP status and what to do.
    return Outcome(change, operation, False, str(exc), change.webhook_id, attempts, _ms(started))


def _describe(exc: BaseException, what: str) -> str:
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return f"could not write {what} ({reason})"


def _forward(
    api: WebhookAPI, change: Change, secrets: Mapping[WebhookKey, str]
) -> Callable[[], Awaitable[WriteResult]]:
    key = change.key
    if change.action is Action.DELETE:
        return lambda: api.delete_webhook(key.form_id, key.tag)
    assert change.after is not None
    body = write_body(change.after, secrets.get(key))
    return lambda: api.put_webhook(key.form_id, key.tag, body)


def _backward(api: WebhookAPI, row: Outcome) -> Callable[[], Awaitable[WriteResult]]:
    """The write that undoes ``row``: delete what was created, restore the before-image.

    A secret cannot be restored (the API never returned it): a reverted update keeps the new
    secret, and a re-created webhook comes back without one.
    """
    change = row.change
    key = change.key
    if change.action is Action.CREATE:
        return lambda: api.delete_webhook(key.form_id, key.tag)
    assert change.before is not None
    body = write_body(change.before, None)
    return lambda: api.put_webhook(key.form_id, key.tag, body)


def revert_note(change: Change) -> str | None:
    """What a revert of ``change`` cannot restore, in words (``None``: everything)."""
    if change.action is Action.UPDATE and any(fc.field == "secret" for fc in change.changes):
        return "fields restored; the secret stays rotated (secrets are write-only)"
    if change.action is Action.DELETE and change.before and "secret" in change.before:
        return "re-created without its secret (secrets are write-only): set it again"
    return None


def _ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)


def _record(row: Outcome, *, run_id: str, now: Callable[[], str]) -> OperationRecord:
    change = row.change
    source = change.after if change.after is not None else change.before
    url = source.get("url") if source else None
    return OperationRecord(
        timestamp=now(),
        run_id=run_id,
        operation=row.operation,
        account=change.key.account,
        form_id=change.key.form_id,
        tag=change.key.tag,
        webhook_id=row.webhook_id,
        url=url,
        success=row.success,
        error=row.error,
        attempts=row.attempts,
        duration_ms=row.duration_ms,
        note=row.note,
    )


def next_state(
    current: State,
    original: State,
    row: Outcome,
    written: LiveWebhook | None,
    secrets: Mapping[WebhookKey, str],
    applied_at: str,
    fingerprint: Callable[[str], str],
) -> State:
    """The state after one write that landed: what the tool now owns, and its secret's hash."""
    change = row.change
    key = change.key
    previous = current.get(key)
    source = change.location.file if change.location else (previous.source if previous else None)
    if row.operation is Operation.REVERT:
        if change.action is Action.CREATE:
            return current.without(key)
        if change.action is Action.UPDATE:
            # Fields restored, still ours; the new secret stays live, and so does its hash.
            if previous is None:
                return current
            return current.with_applied(
                ManagedWebhook(
                    key=key,
                    webhook_id=previous.webhook_id,
                    applied_at=applied_at,
                    applied=applied_body(change.before),
                    source=previous.source,
                    secret_fingerprint=previous.secret_fingerprint,
                )
            )
        was = original.get(key)  # a re-created deletion: ours again only if it was ours before
        if was is None:
            return current
        return current.with_applied(
            ManagedWebhook(
                key=key,
                webhook_id=row.webhook_id or was.webhook_id,
                applied_at=applied_at,
                applied=applied_body(change.before),
                source=was.source,
                secret_fingerprint=None,  # re-created without a secret
            )
        )
    if change.action is Action.DELETE:
        return current.without(key)
    secret = secrets.get(key)
    webhook_id = row.webhook_id
    if not webhook_id:
        # The API answered without the webhook: its id is unknown (the state's previous id, if
        # any, is of a webhook that is gone), so ownership cannot be proven. The next apply
        # adopts it from the live list.
        return current.without(key)
    return current.with_applied(
        ManagedWebhook(
            key=key,
            webhook_id=webhook_id,
            applied_at=applied_at,
            applied=applied_body(change.after),
            source=source,
            secret_fingerprint=(
                fingerprint(secret)
                if secret is not None
                else (previous.secret_fingerprint if previous else None)
            ),
        )
    )

"""Execute a Plan's writes through a ``WebhookAPI`` and report each as an operation record.

Apply does exactly what the plan says and nothing else: it never re-plans. A failing write
becomes a failed result (and record), not an exception that stops the others, so one bad form
cannot hold back the rest; re-running after a partial failure converges because the next plan
starts from whatever did land. With ``atomic`` the writes that did land are reverted when any
failed (a deleted webhook is re-created from its before-image).

Secrets arrive already resolved, keyed by webhook, and go only into request bodies: results,
records and the state file carry at most a fingerprint.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import anyio

from reconciler.errors import APIError, ReconcileError
from reconciler.models import Action, Change, LiveWebhook, OperationRecord, WebhookKey
from reconciler.state import ManagedWebhook, State

__all__ = [
    "ActionResult",
    "ApplyOutcome",
    "WebhookAPI",
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
class ActionResult:
    change: Change
    operation: str  # create | update | delete | revert
    success: bool
    error: str | None
    webhook_id: str | None
    attempts: int
    duration_ms: int


@dataclass(frozen=True, slots=True)
class ApplyOutcome:
    results: tuple[ActionResult, ...]
    reverts: tuple[ActionResult, ...]
    state: State

    @property
    def failed(self) -> tuple[ActionResult, ...]:
        return tuple(r for r in self.results + self.reverts if not r.success)

    @property
    def ok(self) -> bool:
        return not self.failed


def write_body(after: Mapping[str, Any], secret: str | None) -> dict[str, Any]:
    """The full PUT body for a desired essence: every managed field, plus the secret if any."""
    body = {k: v for k, v in after.items() if k != "secret"}
    if secret is not None:
        body["secret"] = secret
    return body


async def apply_plan(
    changes: tuple[Change, ...],
    *,
    apis: Mapping[str, WebhookAPI],
    secrets: Mapping[WebhookKey, str],
    state: State,
    run_id: str,
    now: Callable[[], str],
    fingerprint: Callable[[str], str],
    record: Callable[[OperationRecord], None],
    on_state: Callable[[State], None] = lambda _state: None,
    on_result: Callable[[ActionResult], None] = lambda _result: None,
    atomic: bool = False,
) -> ApplyOutcome:
    """Run every write concurrently (each account's client paces itself) and collect results.

    ``record`` is called once per API write, ``on_state`` after each successful write with the
    updated state (so a crash mid-apply loses nothing that landed), ``on_result`` for progress.
    """
    current = state
    results: list[ActionResult] = []
    reverts: list[ActionResult] = []

    def settle(result: ActionResult, written: LiveWebhook | None) -> None:
        nonlocal current
        (reverts if result.operation == "revert" else results).append(result)
        record(_record(result, run_id=run_id, now=now))
        on_result(result)
        if result.success:
            current = _next_state(current, state, result, written, secrets, now(), fingerprint)
            on_state(current)

    async def run(
        change: Change, operation: str, call: Callable[[], Awaitable[WriteResult]]
    ) -> None:
        started = time.perf_counter()
        try:
            written = await call()
        except ReconcileError as exc:
            attempts = exc.attempts if isinstance(exc, APIError) else 1
            settle(
                ActionResult(
                    change,
                    operation,
                    False,
                    str(exc),  # the client's message already names the HTTP status
                    change.webhook_id,
                    attempts,
                    _ms(started),
                ),
                None,
            )
            return
        hook = written.webhook
        settle(
            ActionResult(
                change,
                operation,
                True,
                None,
                hook.id if hook else change.webhook_id,
                written.attempts,
                _ms(started),
            ),
            hook,
        )

    async with anyio.create_task_group() as tg:
        for change in changes:
            if change.action is Action.NOOP:
                continue
            api = apis[change.key.account]
            tg.start_soon(run, change, change.action.value, _forward(api, change, secrets))

    if atomic and any(not r.success for r in results):
        async with anyio.create_task_group() as tg:
            for result in results:
                if result.success:
                    api = apis[result.change.key.account]
                    tg.start_soon(run, result.change, "revert", _backward(api, result))
    return ApplyOutcome(tuple(results), tuple(reverts), current)


def _forward(
    api: WebhookAPI, change: Change, secrets: Mapping[WebhookKey, str]
) -> Callable[[], Awaitable[WriteResult]]:
    key = change.key
    if change.action is Action.DELETE:
        return lambda: api.delete_webhook(key.form_id, key.tag)
    assert change.after is not None
    body = write_body(change.after, secrets.get(key))
    return lambda: api.put_webhook(key.form_id, key.tag, body)


def _backward(api: WebhookAPI, result: ActionResult) -> Callable[[], Awaitable[WriteResult]]:
    """The write that undoes ``result``: delete what was created, restore the before-image.

    A secret cannot be restored (the API never returned it): a reverted update or re-created
    webhook keeps whatever secret the API leaves it with.
    """
    change = result.change
    key = change.key
    if change.action is Action.CREATE:
        return lambda: api.delete_webhook(key.form_id, key.tag)
    assert change.before is not None
    body = write_body(change.before, None)
    return lambda: api.put_webhook(key.form_id, key.tag, body)


def _ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)


def _record(result: ActionResult, *, run_id: str, now: Callable[[], str]) -> OperationRecord:
    change = result.change
    source = change.after if change.after is not None else change.before
    url = source.get("url") if source else None
    return OperationRecord(
        timestamp=now(),
        run_id=run_id,
        operation=result.operation,
        account=change.key.account,
        form_id=change.key.form_id,
        tag=change.key.tag,
        webhook_id=result.webhook_id,
        url=url,
        success=result.success,
        error=result.error,
        attempts=result.attempts,
        duration_ms=result.duration_ms,
    )


def _next_state(
    current: State,
    original: State,
    result: ActionResult,
    written: LiveWebhook | None,
    secrets: Mapping[WebhookKey, str],
    applied_at: str,
    fingerprint: Callable[[str], str],
) -> State:
    """The state after one successful write: what the tool now owns, and its secret's hash."""
    key = result.change.key
    previous = current.get(key)
    planned = result.change.action
    if result.operation == "revert":
        if planned is Action.CREATE:
            return current.without(key)
        if planned is Action.UPDATE:
            return current  # fields restored; the new secret stays live, so does its hash
        was = original.get(key)  # a re-created deletion: ours again only if it was ours before
        if was is None:
            return current
        return current.with_applied(
            ManagedWebhook(key, result.webhook_id or "", applied_at, was.url, None)
        )
    if planned is Action.DELETE:
        return current.without(key)
    secret = secrets.get(key)
    return current.with_applied(
        ManagedWebhook(
            key=key,
            webhook_id=result.webhook_id or (previous.webhook_id if previous else ""),
            applied_at=applied_at,
            url=written.url if written else None,
            secret_fingerprint=(
                fingerprint(secret)
                if secret is not None
                else (previous.secret_fingerprint if previous else None)
            ),
        )
    )

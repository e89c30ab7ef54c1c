"""Every state transition of the applier, as plain async calls against the in-process emulator.

Each outcome (created, updated, deleted, reverted, adopted, failed, already gone, a local write
failure) is checked three ways: in the state entry ``apply_plan``/``adopt`` returns, in the
operation record it handed to ``record``, and in what the emulator holds afterwards. Plans come
from ``build_plan`` over what the client read back, so every ``Change`` is one the pipeline would
make; faults are the emulator's scripted ones, never a mock of our modules.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
import pytest
from conftest import TEST_TOKEN, MakeEmulator, RunningEmulator

from reconciler.applier import ApplyOutcome, adopt, applied_body, apply_plan, write_body
from reconciler.client import Jitter, RetryPolicy, TypeformClient
from reconciler.emulator import Seed
from reconciler.emulator.seed import SeedForm, SeedWebhook, hash_secret
from reconciler.emulator.store import WebhookChange
from reconciler.errors import StateError
from reconciler.fingerprints import Fingerprinter
from reconciler.models import (
    DEFAULT_ACCOUNT,
    SENSITIVE,
    Action,
    DesiredState,
    DesiredWebhook,
    Location,
    Operation,
    OperationRecord,
    Ownership,
    Plan,
    Presence,
    SecretRef,
    SecretSource,
    WebhookKey,
    WebhookSet,
)
from reconciler.normalize import SecretStatus
from reconciler.planner import PlanOptions, build_plan
from reconciler.state import ManagedWebhook, State

pytestmark = pytest.mark.anyio

NOW = "2026-02-03T04:05:06Z"
LATER = "2026-02-03T05:00:00Z"
RUN_ID = "run-applier-tests"
SOURCE = "manifests/hooks.yaml"
OLD_SECRET = "old-Secret-value-1c9e"
NEW_SECRET = "new-Secret-value-82ab"
FORM_A, FORM_B = "formA", "formB"

SEED = Seed(
    forms=(SeedForm(FORM_A, "Form A"), SeedForm(FORM_B, "Form B")),
    webhooks=(
        SeedWebhook(
            form_id=FORM_A,
            tag="owned",
            url="https://hooks.example.com/owned-v1",
            secret_sha256=hash_secret(OLD_SECRET),
        ),
        SeedWebhook(form_id=FORM_A, tag="stranger", url="https://elsewhere.example.com/x"),
        SeedWebhook(form_id=FORM_B, tag="other", url="https://hooks.example.com/other"),
    ),
)


def key(form: str, tag: str) -> WebhookKey:
    return WebhookKey(DEFAULT_ACCOUNT, form, tag)


OWNED, STRANGER, OTHER = key(FORM_A, "owned"), key(FORM_A, "stranger"), key(FORM_B, "other")
NEW, NEW_B = key(FORM_A, "new"), key(FORM_B, "new-b")


def want(
    k: WebhookKey,
    url: str | None = None,
    *,
    secret: bool = False,
    state: Presence = Presence.PRESENT,
    line: int = 3,
    located: bool = True,
    **kw: Any,
) -> DesiredWebhook:
    return DesiredWebhook(
        key=k,
        url=url or f"https://hooks.example.com/{k.tag}",
        secret=SecretRef(SecretSource.ENV, f"SECRET_{k.tag.upper()}") if secret else None,
        state=state,
        location=Location(SOURCE, line, 5) if located else None,
        **kw,
    )


def desired(*hooks: DesiredWebhook, ownership: Ownership = Ownership.DECLARED) -> DesiredState:
    return DesiredState(sets=(WebhookSet("hooks", DEFAULT_ACCOUNT, ownership, hooks),))


@dataclass
class Rig:
    """One emulator, one client of it, one run's fingerprints and the records it wrote."""

    emulator: RunningEmulator
    client: TypeformClient
    hashes: Fingerprinter = field(default_factory=lambda: Fingerprinter(None))
    records: list[OperationRecord] = field(default_factory=list)

    def live_id(self, k: WebhookKey) -> str | None:
        hook = self.emulator.store.get_webhook(k.form_id, k.tag)
        return hook.id if hook is not None else None

    def entry(self, k: WebhookKey, secret: str | None = None, **kw: Any) -> ManagedWebhook:
        """A state entry recording the live webhook ``k`` as applied by this tool."""
        live_id = self.live_id(k)
        assert live_id is not None
        hook = self.emulator.store.get_webhook(k.form_id, k.tag)
        assert hook is not None
        return ManagedWebhook(
            key=k,
            webhook_id=kw.pop("webhook_id", live_id),
            applied_at=NOW,
            applied={"url": hook.url, "enabled": hook.enabled},
            source=SOURCE,
            secret_fingerprint=self.hashes.fingerprint(secret) if secret else None,
            **kw,
        )

    async def plan(
        self,
        want: DesiredState,
        state: State,
        secrets: Mapping[WebhookKey, str],
        *,
        prune: bool = False,
    ) -> Plan:
        forms = {w.key.form_id for w in want.webhooks} | {k.form_id for k in state.webhooks}
        live = {(DEFAULT_ACCOUNT, f): await self.client.list_webhooks(f) for f in sorted(forms)}
        statuses: dict[WebhookKey, SecretStatus] = {}
        for k, secret in secrets.items():
            recorded = state.get(k)
            if recorded is None or recorded.secret_fingerprint is None:
                statuses[k] = SecretStatus.UNKNOWN
            elif self.hashes.matches(secret, recorded.secret_fingerprint):
                statuses[k] = SecretStatus.IN_SYNC
            else:
                statuses[k] = SecretStatus.CHANGED
        return build_plan(
            want,
            live,
            managed={k: e.webhook_id for k, e in state.webhooks.items()},
            secrets=statuses,
            created_at=NOW,
            options=PlanOptions(prune=prune),
        )

    async def apply(
        self,
        plan: Plan,
        state: State,
        secrets: Mapping[WebhookKey, str],
        *,
        record: Callable[[OperationRecord], None] | None = None,
        **options: Any,
    ) -> ApplyOutcome:
        """``apply_plan`` as the pipeline calls it; ``options`` (``atomic``, ``on_state``,
        ``on_result``) are passed only when given, so their defaults are what is tested."""
        return await apply_plan(
            plan.actions,
            apis={DEFAULT_ACCOUNT: self.client},
            secrets=secrets,
            state=state,
            run_id=RUN_ID,
            now=lambda: LATER,
            fingerprint=self.hashes.fingerprint,
            record=record or self.records.append,
            **options,
        )

    def record_of(self, k: WebhookKey, operation: Operation) -> OperationRecord:
        found = [r for r in self.records if r.operation is operation and r.form_id == k.form_id]
        found = [r for r in found if r.tag == k.tag]
        assert len(found) == 1, f"{len(found)} {operation.value} record(s) of {k}: {self.records}"
        return found[0]


@pytest.fixture
def make_rig(make_emulator: MakeEmulator) -> Callable[..., Rig]:
    def make(
        *,
        faults: dict[str, Any] | None = None,
        attempts: int = 3,
        concurrency: int = 4,
        read_only: bool = False,
        wrap: Callable[[httpx.AsyncBaseTransport], httpx.AsyncBaseTransport] | None = None,
        **kw: Any,
    ) -> Rig:
        emulator = make_emulator(seed=SEED, faults=faults, **kw)
        assert emulator.transport is not None
        client = TypeformClient(
            base_url=emulator.base_url,
            token=TEST_TOKEN,
            transport=wrap(emulator.transport) if wrap else emulator.transport,
            read_only=read_only,
            rate=1000.0,
            concurrency=concurrency,
            retry=RetryPolicy(max_attempts=attempts, base_delay=0.0, jitter=Jitter.NONE),
            clock=emulator.clock,
            sleep=emulator.clock.sleep,
        )
        return Rig(emulator, client)

    return make


def fail_puts_on(form: str, *, status: int = 400, count: int = 1) -> dict[str, Any]:
    return {
        "script": [
            {"method": "PUT", "path": f"/forms/{form}/webhooks/*", "count": count, "status": status}
        ]
    }


# --------------------------------------------------------------------------- created


async def test_a_create_records_the_live_id_the_body_without_secret_the_source_and_a_fingerprint(
    make_rig: Callable[..., Rig],
) -> None:
    rig = make_rig()
    secrets = {NEW: NEW_SECRET}
    plan = await rig.plan(desired(want(NEW, secret=True, line=7)), State(), secrets)
    assert [c.action for c in plan.actions] == [Action.CREATE]

    outcome = await rig.apply(plan, State(), secrets)

    assert outcome.ok
    assert outcome.adopted == ()  # adoption is adopt()'s, after apply
    live_id = rig.live_id(NEW)
    assert live_id is not None
    entry = outcome.state.get(NEW)
    assert entry is not None
    assert entry.webhook_id == live_id
    assert entry.applied_at == LATER
    assert entry.applied == {
        "url": "https://hooks.example.com/new",
        "enabled": True,
        "verify_ssl": True,
        "event_types": {"form_response": True, "form_response_partial": False},
    }
    assert entry.source == SOURCE
    assert entry.secret_fingerprint is not None
    assert rig.hashes.matches(NEW_SECRET, entry.secret_fingerprint)
    assert NEW_SECRET not in repr(outcome.state.to_json())
    hook = rig.emulator.store.get_webhook(FORM_A, "new")
    assert hook is not None
    assert hook.secret_sha256 == hash_secret(NEW_SECRET)

    record = rig.record_of(NEW, Operation.CREATE)
    assert (record.success, record.error, record.attempts) == (True, None, 1)
    assert (record.webhook_id, record.url, record.run_id) == (
        live_id,
        "https://hooks.example.com/new",
        RUN_ID,
    )
    assert (record.account, record.timestamp) == (DEFAULT_ACCOUNT, LATER)
    assert len(rig.records) == 1
    assert [(r.operation, r.success, r.webhook_id) for r in outcome.rows] == [
        (Operation.CREATE, True, live_id)
    ]


async def test_a_create_without_a_declared_secret_records_no_fingerprint(
    make_rig: Callable[..., Rig],
) -> None:
    rig = make_rig()
    plan = await rig.plan(desired(want(NEW)), State(), {})
    outcome = await rig.apply(plan, State(), {})
    entry = outcome.state.get(NEW)
    assert entry is not None
    assert entry.webhook_id == rig.live_id(NEW)
    assert entry.secret_fingerprint is None
    assert rig.record_of(NEW, Operation.CREATE).success


# --------------------------------------------------------------------------- updated


async def test_an_update_replaces_the_entry_and_fingerprints_the_new_secret(
    make_rig: Callable[..., Rig],
) -> None:
    rig = make_rig()
    state = State({OWNED: rig.entry(OWNED, OLD_SECRET)}, serial=4)
    secrets = {OWNED: NEW_SECRET}
    plan = await rig.plan(
        desired(want(OWNED, "https://hooks.example.com/owned-v2", secret=True)), state, secrets
    )
    assert [c.action for c in plan.actions] == [Action.UPDATE]

    outcome = await rig.apply(plan, state, secrets)

    entry = outcome.state.get(OWNED)
    assert entry is not None
    assert entry.webhook_id == rig.live_id(OWNED)
    assert entry.applied_at == LATER
    assert entry.applied is not None
    assert entry.applied["url"] == "https://hooks.example.com/owned-v2"
    assert entry.source == SOURCE
    assert entry.secret_fingerprint is not None
    assert rig.hashes.matches(NEW_SECRET, entry.secret_fingerprint)
    assert not rig.hashes.matches(OLD_SECRET, entry.secret_fingerprint)
    assert outcome.state.serial == 4  # the store increments it on save, not the applier
    record = rig.record_of(OWNED, Operation.UPDATE)
    assert (record.success, record.webhook_id, record.url, record.note) == (
        True,
        rig.live_id(OWNED),
        "https://hooks.example.com/owned-v2",
        None,  # only a revert explains what it could not restore
    )
    hook = rig.emulator.store.get_webhook(FORM_A, "owned")
    assert hook is not None
    assert hook.secret_sha256 == hash_secret(NEW_SECRET)


async def test_an_update_without_a_declared_secret_keeps_the_previous_fingerprint(
    make_rig: Callable[..., Rig],
) -> None:
    rig = make_rig()
    before = rig.entry(OWNED, OLD_SECRET)
    state = State({OWNED: before})
    plan = await rig.plan(desired(want(OWNED, "https://hooks.example.com/owned-v3")), state, {})
    assert [c.action for c in plan.actions] == [Action.UPDATE]

    outcome = await rig.apply(plan, state, {})

    entry = outcome.state.get(OWNED)
    assert entry is not None
    assert entry is not before
    assert entry.applied is not None
    assert entry.applied["url"] == "https://hooks.example.com/owned-v3"
    assert entry.secret_fingerprint == before.secret_fingerprint
    assert rig.record_of(OWNED, Operation.UPDATE).success
    hook = rig.emulator.store.get_webhook(FORM_A, "owned")
    assert hook is not None
    assert hook.secret_sha256 == hash_secret(OLD_SECRET)


async def test_an_update_of_a_webhook_the_state_does_not_record_makes_it_owned(
    make_rig: Callable[..., Rig],
) -> None:
    rig = make_rig()
    plan = await rig.plan(
        desired(want(STRANGER, "https://hooks.example.com/now-ours")), State(), {}
    )
    outcome = await rig.apply(plan, State(), {})
    entry = outcome.state.get(STRANGER)
    assert entry is not None
    assert entry.webhook_id == rig.live_id(STRANGER)
    assert entry.source == SOURCE
    assert entry.secret_fingerprint is None


# --------------------------------------------------------------------------- deleted


async def test_a_delete_removes_the_entry_and_the_live_webhook(
    make_rig: Callable[..., Rig],
) -> None:
    rig = make_rig()
    live_id = rig.live_id(OWNED)
    state = State({OWNED: rig.entry(OWNED, OLD_SECRET), OTHER: rig.entry(OTHER)})
    plan = await rig.plan(desired(want(OWNED, state=Presence.ABSENT), want(OTHER)), state, {})
    assert [c.action for c in plan.actions] == [Action.DELETE, Action.NOOP]

    outcome = await rig.apply(plan, state, {})

    assert outcome.ok
    assert outcome.state.get(OWNED) is None
    assert outcome.state.get(OTHER) is state.get(OTHER)
    assert rig.live_id(OWNED) is None
    record = rig.record_of(OWNED, Operation.DELETE)
    assert (record.success, record.webhook_id, record.url, record.attempts) == (
        True,
        live_id,
        "https://hooks.example.com/owned-v1",
        1,
    )
    assert len(rig.records) == 1  # a no-op writes nothing and records nothing


# --------------------------------------------------------------------------- reverted


async def test_atomic_reverts_a_create_and_drops_its_entry(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(faults=fail_puts_on(FORM_B))
    plan = await rig.plan(desired(want(NEW), want(NEW_B)), State(), {})

    outcome = await rig.apply(plan, State(), {}, atomic=True)

    assert not outcome.ok
    assert rig.live_id(NEW) is None
    assert rig.live_id(NEW_B) is None
    assert outcome.state.get(NEW) is None
    assert outcome.state.get(NEW_B) is None
    created = rig.record_of(NEW, Operation.CREATE)
    reverted = rig.record_of(NEW, Operation.REVERT)
    assert created.success
    assert reverted.success
    assert reverted.note is None
    failed = rig.record_of(NEW_B, Operation.CREATE)
    assert (failed.success, failed.attempts) == (False, 1)
    assert failed.error is not None
    assert "400" in failed.error


async def test_without_atomic_a_failure_elsewhere_reverts_nothing(
    make_rig: Callable[..., Rig],
) -> None:
    rig = make_rig(faults=fail_puts_on(FORM_B))
    plan = await rig.plan(desired(want(NEW), want(NEW_B)), State(), {})
    outcome = await rig.apply(plan, State(), {})
    assert rig.live_id(NEW) is not None
    entry = outcome.state.get(NEW)
    assert entry is not None
    assert entry.webhook_id == rig.live_id(NEW)
    assert not [r for r in rig.records if r.operation is Operation.REVERT]


async def test_atomic_reverts_an_update_keeping_the_entry_with_the_before_body_and_a_note(
    make_rig: Callable[..., Rig],
) -> None:
    rig = make_rig(faults=fail_puts_on(FORM_B))
    original = rig.entry(OWNED, OLD_SECRET)
    state = State({OWNED: original})
    secrets = {OWNED: NEW_SECRET}
    plan = await rig.plan(
        desired(want(OWNED, "https://hooks.example.com/owned-v2", secret=True), want(NEW_B)),
        state,
        secrets,
    )
    assert [c.action for c in plan.actions] == [Action.UPDATE, Action.CREATE]

    outcome = await rig.apply(plan, state, secrets, atomic=True)

    hook = rig.emulator.store.get_webhook(FORM_A, "owned")
    assert hook is not None
    assert hook.url == "https://hooks.example.com/owned-v1"
    assert hook.secret_sha256 == hash_secret(NEW_SECRET)  # write-only: it stays rotated
    entry = outcome.state.get(OWNED)
    assert entry is not None, "a reverted update must stay owned"
    assert entry.webhook_id == original.webhook_id == hook.id
    assert entry.applied == applied_body(plan.actions[0].before)
    assert entry.applied is not None
    assert entry.applied["url"] == "https://hooks.example.com/owned-v1"
    assert entry.source == SOURCE
    assert entry.secret_fingerprint is not None
    assert rig.hashes.matches(NEW_SECRET, entry.secret_fingerprint)
    reverted = rig.record_of(OWNED, Operation.REVERT)
    assert reverted.success
    assert reverted.webhook_id == hook.id
    assert reverted.note == "fields restored; the secret stays rotated (secrets are write-only)"
    assert entry.applied_at == LATER
    row = next(r for r in outcome.rows if r.operation is Operation.REVERT)
    assert row.note == reverted.note


async def test_a_reverted_update_without_a_secret_change_says_nothing_was_lost(
    make_rig: Callable[..., Rig],
) -> None:
    rig = make_rig(faults=fail_puts_on(FORM_B))
    state = State({OWNED: rig.entry(OWNED, OLD_SECRET)})
    secrets = {OWNED: OLD_SECRET}  # declared, and known to be live already
    plan = await rig.plan(
        desired(want(OWNED, "https://hooks.example.com/owned-v2", secret=True), want(NEW_B)),
        state,
        secrets,
    )
    before = plan.actions[0].before
    assert before is not None
    assert before["secret"] == SENSITIVE
    outcome = await rig.apply(plan, state, secrets, atomic=True)
    reverted = rig.record_of(OWNED, Operation.REVERT)
    assert reverted.success
    assert reverted.note is None
    entry = outcome.state.get(OWNED)
    assert entry is not None
    assert entry.webhook_id == rig.live_id(OWNED)


async def test_atomic_re_creates_an_owned_deletion_and_owns_it_again_under_its_new_id(
    make_rig: Callable[..., Rig],
) -> None:
    rig = make_rig(faults=fail_puts_on(FORM_B))
    old_id = rig.live_id(OWNED)
    state = State({OWNED: rig.entry(OWNED, OLD_SECRET)})
    plan = await rig.plan(desired(want(OWNED, state=Presence.ABSENT), want(NEW_B)), state, {})
    assert [c.action for c in plan.actions] == [Action.DELETE, Action.CREATE]

    outcome = await rig.apply(plan, state, {}, atomic=True)

    new_id = rig.live_id(OWNED)
    assert new_id is not None
    assert new_id != old_id
    entry = outcome.state.get(OWNED)
    assert entry is not None, "a re-created deletion of ours is ours again"
    assert entry.webhook_id == new_id
    assert entry.applied == applied_body(plan.actions[0].before)
    assert entry.source == SOURCE
    assert entry.applied_at == LATER
    assert entry.secret_fingerprint is None  # re-created without a secret
    deleted = rig.record_of(OWNED, Operation.DELETE)
    reverted = rig.record_of(OWNED, Operation.REVERT)
    assert (deleted.success, deleted.webhook_id) == (True, old_id)
    assert (reverted.success, reverted.webhook_id) == (True, new_id)


async def test_a_reverted_deletion_of_a_webhook_known_to_carry_a_secret_says_it_came_back_without(
    make_rig: Callable[..., Rig],
) -> None:
    rig = make_rig(faults=fail_puts_on(FORM_B), secret_echo="plain")
    rig.emulator.store.put_webhook(FORM_A, "owned", WebhookChange(secret=OLD_SECRET))
    state = State({OWNED: rig.entry(OWNED, OLD_SECRET)})
    plan = await rig.plan(desired(want(OWNED, state=Presence.ABSENT), want(NEW_B)), state, {})
    assert plan.actions[0].before is not None
    assert plan.actions[0].before["secret"] == SENSITIVE

    outcome = await rig.apply(plan, state, {}, atomic=True)

    reverted = rig.record_of(OWNED, Operation.REVERT)
    assert reverted.note is not None
    assert reverted.note == "re-created without its secret (secrets are write-only): set it again"
    hook = rig.emulator.store.get_webhook(FORM_A, "owned")
    assert hook is not None
    assert hook.secret_sha256 is None
    entry = outcome.state.get(OWNED)
    assert entry is not None
    assert entry.secret_fingerprint is None
    assert OLD_SECRET not in repr(rig.records)
    assert OLD_SECRET not in repr(outcome.rows)


async def test_an_unowned_exclusive_deletion_that_is_reverted_stays_unowned(
    make_rig: Callable[..., Rig],
) -> None:
    rig = make_rig(faults=fail_puts_on(FORM_B))
    # ``stranger`` is undeclared on an exclusive form: --prune deletes it, yet it never was ours.
    state = State({OWNED: rig.entry(OWNED)})
    manifests = DesiredState(
        sets=(
            WebhookSet(
                "a",
                DEFAULT_ACCOUNT,
                Ownership.EXCLUSIVE,
                (want(OWNED, "https://hooks.example.com/owned-v1"),),
            ),
            WebhookSet("b", DEFAULT_ACCOUNT, Ownership.DECLARED, (want(NEW_B),)),
        )
    )
    plan = await rig.plan(manifests, state, {}, prune=True)
    actions = {str(c.key): c.action for c in plan.actions}
    assert actions[str(STRANGER)] is Action.DELETE
    assert actions[str(NEW_B)] is Action.CREATE

    outcome = await rig.apply(plan, state, {}, atomic=True)

    assert rig.live_id(STRANGER) is not None  # re-created
    assert rig.record_of(STRANGER, Operation.REVERT).success
    assert outcome.state.get(STRANGER) is None, "a webhook never ours must not become ours"
    assert outcome.state.get(OWNED) is state.get(OWNED)


async def test_a_failed_revert_is_a_failed_row_and_the_state_keeps_what_landed(
    make_rig: Callable[..., Rig],
) -> None:
    # The create on form B fails, then the revert (a DELETE) of the create on form A fails too.
    faults = fail_puts_on(FORM_B)
    faults["script"].append(
        {"method": "DELETE", "path": f"/forms/{FORM_A}/webhooks/*", "count": 9, "status": 500}
    )
    rig = make_rig(faults=faults, attempts=2)
    plan = await rig.plan(desired(want(NEW), want(NEW_B)), State(), {})

    outcome = await rig.apply(plan, State(), {}, atomic=True)

    reverted = rig.record_of(NEW, Operation.REVERT)
    assert (reverted.success, reverted.attempts) == (False, 2)
    entry = outcome.state.get(NEW)
    assert entry is not None
    assert entry.webhook_id == rig.live_id(NEW)


# --------------------------------------------------------------------------- adopted


async def test_adopt_claims_a_declared_webhook_that_was_already_right(
    make_rig: Callable[..., Rig],
) -> None:
    rig = make_rig()
    plan = await rig.plan(desired(want(OTHER, "https://hooks.example.com/other")), State(), {})
    assert [c.action for c in plan.actions] == [Action.NOOP]
    hashed: list[str] = []

    def fingerprint(secret: str) -> str:
        hashed.append(secret)
        return rig.hashes.fingerprint(secret)

    state, adopted = adopt(plan, State(), secrets={}, now=LATER, fingerprint=fingerprint)

    assert adopted == (OTHER,)
    entry = state.get(OTHER)
    assert entry is not None
    assert entry.webhook_id == rig.live_id(OTHER)
    assert (entry.applied_at, entry.source, entry.secret_fingerprint) == (LATER, SOURCE, None)
    assert entry.applied == {
        "url": "https://hooks.example.com/other",
        "enabled": True,
        "verify_ssl": True,
        "event_types": {"form_response": True, "form_response_partial": False},
    }
    assert hashed == []  # no secret declared: nothing hashed


async def test_adopt_fingerprints_a_declared_secret_that_is_already_in_sync(
    make_rig: Callable[..., Rig],
) -> None:
    rig = make_rig()
    recorded = rig.entry(OWNED, OLD_SECRET, webhook_id="Wh-gone-long-ago")
    state = State({OWNED: recorded})
    secrets = {OWNED: OLD_SECRET}
    plan = await rig.plan(
        desired(want(OWNED, "https://hooks.example.com/owned-v1", secret=True)), state, secrets
    )
    assert [c.action for c in plan.actions] == [Action.NOOP]

    adopted_state, adopted = adopt(
        plan, state, secrets=secrets, now=LATER, fingerprint=rig.hashes.fingerprint
    )

    assert adopted == (OWNED,)
    entry = adopted_state.get(OWNED)
    assert entry is not None
    assert entry.webhook_id == rig.live_id(OWNED)
    assert entry.secret_fingerprint is not None
    assert entry.secret_fingerprint != recorded.secret_fingerprint  # a fresh entry salt
    assert rig.hashes.matches(OLD_SECRET, entry.secret_fingerprint)


async def test_adopt_leaves_an_entry_recorded_under_the_same_id_untouched(
    make_rig: Callable[..., Rig],
) -> None:
    rig = make_rig()
    recorded = rig.entry(OTHER)
    state = State({OTHER: recorded})
    plan = await rig.plan(desired(want(OTHER, "https://hooks.example.com/other")), state, {})

    adopted_state, adopted = adopt(
        plan, state, secrets={}, now=LATER, fingerprint=rig.hashes.fingerprint
    )

    assert adopted == ()
    assert adopted_state.get(OTHER) is recorded


async def test_adopt_re_adopts_an_entry_recorded_under_another_id(
    make_rig: Callable[..., Rig],
) -> None:
    rig = make_rig()
    recorded = rig.entry(OTHER, webhook_id="Wh-re-created-outside")
    state = State({OTHER: recorded})
    plan = await rig.plan(desired(want(OTHER, "https://hooks.example.com/other")), state, {})

    adopted_state, adopted = adopt(
        plan, state, secrets={}, now=LATER, fingerprint=rig.hashes.fingerprint
    )

    assert adopted == (OTHER,)
    entry = adopted_state.get(OTHER)
    assert entry is not None
    assert entry.webhook_id == rig.live_id(OTHER) != recorded.webhook_id
    assert entry.applied_at == LATER


async def test_adopt_ignores_writes_absent_declarations_and_undeclared_webhooks(
    make_rig: Callable[..., Rig],
) -> None:
    rig = make_rig()
    plan = await rig.plan(
        desired(
            want(OWNED, "https://hooks.example.com/owned-v2"),  # an update: apply records it
            want(key(FORM_B, "never-was"), state=Presence.ABSENT),  # a no-op with no webhook
        ),
        State(),
        {},
    )
    assert sorted(c.action for c in plan.actions) == [Action.NOOP, Action.UPDATE]

    adopted_state, adopted = adopt(
        plan, State(), secrets={}, now=LATER, fingerprint=rig.hashes.fingerprint
    )

    assert adopted == ()
    assert dict(adopted_state.webhooks) == {}


# --------------------------------------------------------------------------- failed


async def test_a_write_failing_after_every_retry_records_each_attempt_and_leaves_the_entry(
    make_rig: Callable[..., Rig],
) -> None:
    rig = make_rig(faults=fail_puts_on(FORM_A, status=503, count=50), attempts=3)
    recorded = rig.entry(OWNED, OLD_SECRET)
    state = State({OWNED: recorded})
    secrets = {OWNED: NEW_SECRET}
    plan = await rig.plan(
        desired(want(OWNED, "https://hooks.example.com/owned-v2", secret=True)), state, secrets
    )

    outcome = await rig.apply(plan, state, secrets)

    assert not outcome.ok
    record = rig.record_of(OWNED, Operation.UPDATE)
    assert (record.success, record.attempts) == (False, 3)
    assert record.error is not None
    assert "503" in record.error
    assert record.webhook_id == recorded.webhook_id
    assert NEW_SECRET not in record.error
    assert outcome.state.get(OWNED) is recorded
    [row] = outcome.failed
    assert (row.attempts, row.error) == (3, record.error)
    hook = rig.emulator.store.get_webhook(FORM_A, "owned")
    assert hook is not None
    assert hook.url == "https://hooks.example.com/owned-v1"


async def test_a_failed_create_records_no_entry(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(faults=fail_puts_on(FORM_A, status=400))
    plan = await rig.plan(desired(want(NEW)), State(), {})
    outcome = await rig.apply(plan, State(), {})
    record = rig.record_of(NEW, Operation.CREATE)
    assert (record.success, record.attempts, record.webhook_id) == (False, 1, None)
    assert outcome.state.get(NEW) is None
    assert dict(outcome.state.webhooks) == {}


# --------------------------------------------------------------------------- DELETE 404


async def test_a_delete_of_a_webhook_already_gone_succeeds_and_the_entry_goes(
    make_rig: Callable[..., Rig],
) -> None:
    rig = make_rig()
    state = State({OWNED: rig.entry(OWNED)})
    live_id = rig.live_id(OWNED)
    plan = await rig.plan(desired(want(OWNED, state=Presence.ABSENT)), state, {})
    assert rig.emulator.store.delete_webhook(FORM_A, "owned")  # someone else was faster

    outcome = await rig.apply(plan, state, {})

    assert outcome.ok
    assert outcome.state.get(OWNED) is None
    record = rig.record_of(OWNED, Operation.DELETE)
    assert (record.success, record.error, record.attempts) == (True, None, 1)
    assert (record.note, record.webhook_id) == ("already gone (404)", live_id)


async def test_a_delete_retried_after_a_lost_answer_is_a_success_after_two_attempts(
    make_rig: Callable[..., Rig],
) -> None:
    faults = {
        "script": [{"method": "DELETE", "path": "/forms/*/webhooks/*", "action": "drop_after"}]
    }
    rig = make_rig(faults=faults, attempts=3)
    state = State({OWNED: rig.entry(OWNED)})
    plan = await rig.plan(desired(want(OWNED, state=Presence.ABSENT)), state, {})

    outcome = await rig.apply(plan, state, {})

    assert outcome.ok
    assert rig.live_id(OWNED) is None
    assert outcome.state.get(OWNED) is None
    record = rig.record_of(OWNED, Operation.DELETE)
    assert (record.success, record.attempts) == (True, 2)


async def test_a_404_on_an_update_is_a_failure_not_a_success(
    make_rig: Callable[..., Rig],
) -> None:
    faults = {"script": [{"method": "PUT", "path": "/forms/*/webhooks/*", "status": 404}]}
    rig = make_rig(faults=faults)
    recorded = rig.entry(OWNED)
    state = State({OWNED: recorded})
    plan = await rig.plan(desired(want(OWNED, "https://hooks.example.com/owned-v2")), state, {})
    outcome = await rig.apply(plan, state, {})
    record = rig.record_of(OWNED, Operation.UPDATE)
    assert (record.success, record.attempts) == (False, 1)
    assert record.error is not None
    assert "HTTP 404" in record.error
    assert outcome.state.get(OWNED) is recorded


# --------------------------------------------------------------------------- local failures


async def test_a_failing_record_stops_the_writes_not_started_and_names_what_landed(
    make_rig: Callable[..., Rig],
) -> None:
    rig = make_rig(concurrency=1)
    tags = ("w1", "w2", "w3", "w4")
    plan = await rig.plan(desired(*(want(key(FORM_A, t)) for t in tags)), State(), {})
    calls: list[OperationRecord] = []

    def full_disk(record: OperationRecord) -> None:
        calls.append(record)
        raise OSError(errno.ENOSPC, "No space left on device")

    outcome = await rig.apply(plan, State(), {}, record=full_disk)

    live = [t for t in tags if rig.live_id(key(FORM_A, t)) is not None]
    # One request at a time: the first answer fails its record, so at most the one write then
    # in flight may still land; the others are never sent.
    assert 1 <= len(live) <= 2, f"writes kept starting after the records failed: {live}"
    first = calls[0].tag
    answered = {c.tag for c in calls}
    assert first in live
    assert answered <= set(live)
    assert not outcome.ok
    assert outcome.local_failure is not None
    assert "could not write the operation records (No space left on device)" in (
        outcome.local_failure
    )
    assert f"Writes that landed: create {FORM_A}/{first}" in outcome.local_failure
    assert f"Not recorded: record of create {FORM_A}/{first}" in outcome.local_failure
    assert sorted(c.key.tag for c in outcome.skipped) == sorted(set(tags) - answered)
    assert f"{len(tags) - len(answered)} write(s) not sent" in outcome.local_failure
    for tag in answered:  # the state still follows what landed: the next run is not lost
        entry = outcome.state.get(key(FORM_A, tag))
        assert entry is not None
        assert entry.webhook_id == rig.live_id(key(FORM_A, tag))


async def test_a_failing_state_save_also_stops_the_writes_and_names_the_state(
    make_rig: Callable[..., Rig],
) -> None:
    rig = make_rig(concurrency=1)
    tags = ("w1", "w2", "w3")
    plan = await rig.plan(desired(*(want(key(FORM_A, t)) for t in tags)), State(), {})

    def unwritable(_state: State) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    outcome = await apply_plan(
        plan.actions,
        apis={DEFAULT_ACCOUNT: rig.client},
        secrets={},
        state=State(),
        run_id=RUN_ID,
        now=lambda: LATER,
        fingerprint=rig.hashes.fingerprint,
        record=rig.records.append,
        on_state=unwritable,
    )

    live = [t for t in tags if rig.live_id(key(FORM_A, t)) is not None]
    assert 1 <= len(live) <= 2, f"writes kept starting after the state failed: {live}"
    assert all(r.success for r in rig.records)
    assert outcome.local_failure is not None
    assert "could not write the state (Read-only file system)" in outcome.local_failure
    assert f"Not recorded: state of {FORM_A}/{rig.records[0].tag}" in outcome.local_failure
    assert len(outcome.skipped) == len(tags) - len(rig.records)


async def test_a_local_failure_is_not_followed_by_reverts_even_with_atomic(
    make_rig: Callable[..., Rig],
) -> None:
    rig = make_rig(concurrency=1, faults=fail_puts_on(FORM_B))
    plan = await rig.plan(desired(want(NEW), want(NEW_B)), State(), {})

    def broken(_record: OperationRecord) -> None:
        raise OSError(errno.EIO, "Input/output error")

    outcome = await rig.apply(plan, State(), {}, atomic=True, record=broken)
    assert outcome.local_failure is not None
    assert not [r for r in outcome.rows if r.operation is Operation.REVERT]


# --------------------------------------------------------------------------- bodies


def test_the_write_body_carries_the_secret_only_when_one_is_given() -> None:
    essence = {"url": "https://x.example.com", "enabled": True, "secret": SENSITIVE}
    assert write_body(essence, None) == {"url": "https://x.example.com", "enabled": True}
    assert write_body(essence, "s3cret") == {
        "url": "https://x.example.com",
        "enabled": True,
        "secret": "s3cret",
    }
    assert applied_body(essence) == {"url": "https://x.example.com", "enabled": True}
    assert applied_body(None) is None


# --------------------------------------------------------------------------- callbacks and timing


async def test_every_row_reaches_on_result_and_every_landed_state_reaches_on_state(
    make_rig: Callable[..., Rig],
) -> None:
    rig = make_rig(faults=fail_puts_on(FORM_B))
    plan = await rig.plan(desired(want(NEW), want(NEW_B)), State(), {})
    rows: list[Any] = []
    states: list[State] = []

    outcome = await rig.apply(plan, State(), {}, on_result=rows.append, on_state=states.append)

    assert rows == list(outcome.rows)
    assert len(states) == 1  # one write landed: one save, of the state that records it
    assert states[-1] is outcome.state
    assert states[-1].get(NEW) is not None


async def test_durations_are_measured_in_milliseconds_for_landed_failed_and_gone_writes(
    make_rig: Callable[..., Rig],
) -> None:
    faults = {"latency_ms": 40, **fail_puts_on(FORM_B)}
    rig = make_rig(faults=faults, sleep=anyio.sleep)  # the emulator really waits 40 ms
    state = State({OWNED: rig.entry(OWNED)})
    plan = await rig.plan(
        desired(want(OWNED, state=Presence.ABSENT), want(NEW), want(NEW_B)), state, {}
    )
    assert rig.emulator.store.delete_webhook(FORM_A, "owned")  # the delete will answer 404

    outcome = await rig.apply(plan, state, {})

    assert sorted((r.tag, r.success) for r in rig.records) == [
        ("new", True),
        ("new-b", False),
        ("owned", True),
    ]
    for record in rig.records:
        assert isinstance(record.duration_ms, int)
        assert 40 <= record.duration_ms < 5_000, record
    assert sorted(r.duration_ms for r in outcome.rows) == sorted(r.duration_ms for r in rig.records)


async def test_an_outcome_row_as_json_names_the_webhook_and_what_happened(
    make_rig: Callable[..., Rig],
) -> None:
    rig = make_rig()
    plan = await rig.plan(desired(want(NEW)), State(), {})
    outcome = await rig.apply(plan, State(), {})
    [row] = outcome.rows
    assert row.to_json() == {
        "account": DEFAULT_ACCOUNT,
        "form_id": FORM_A,
        "tag": "new",
        "address": f"{FORM_A}/new",
        "operation": "create",
        "success": True,
        "error": None,
        "webhook_id": rig.live_id(NEW),
        "attempts": 1,
        "duration_ms": row.duration_ms,
        "note": None,
    }


# --------------------------------------------------------------------------- more reverts


async def test_atomic_with_every_write_landed_reverts_nothing(
    make_rig: Callable[..., Rig],
) -> None:
    rig = make_rig()
    plan = await rig.plan(desired(want(NEW), want(NEW_B)), State(), {})
    outcome = await rig.apply(plan, State(), {}, atomic=True)
    assert outcome.ok
    assert [r.operation for r in rig.records] == [Operation.CREATE, Operation.CREATE]
    assert rig.live_id(NEW) is not None
    assert rig.live_id(NEW_B) is not None
    assert outcome.state.get(NEW) is not None
    assert outcome.state.get(NEW_B) is not None


async def test_a_reverted_deletion_whose_re_create_answers_404_is_a_failure(
    make_rig: Callable[..., Rig],
) -> None:
    faults = fail_puts_on(FORM_B)
    faults["script"].append(
        {"method": "PUT", "path": f"/forms/{FORM_A}/webhooks/owned", "status": 404}
    )
    rig = make_rig(faults=faults)
    state = State({OWNED: rig.entry(OWNED)})
    plan = await rig.plan(desired(want(OWNED, state=Presence.ABSENT), want(NEW_B)), state, {})

    outcome = await rig.apply(plan, state, {}, atomic=True)

    reverted = rig.record_of(OWNED, Operation.REVERT)
    assert reverted.success is False
    assert reverted.error is not None
    assert "HTTP 404" in reverted.error
    assert rig.live_id(OWNED) is None
    assert outcome.state.get(OWNED) is None  # the delete landed; nothing came back to own


# --------------------------------------------------------------------------- renames


RENAMED = key(FORM_A, "zz-renamed")
OTHER_V2 = key(FORM_B, "other-v2")


async def test_a_rename_creates_the_new_webhook_before_deleting_the_old_one(
    make_rig: Callable[..., Rig],
) -> None:
    rig = make_rig(concurrency=1)
    state = State({OWNED: rig.entry(OWNED)})
    between = key(FORM_A, "mm-between")  # sorts between the old and the new tag
    plan = await rig.plan(
        desired(want(RENAMED, previous_tags=("owned",)), want(between)), state, {}
    )
    assert [(str(c.key), c.action) for c in plan.actions] == [
        (str(between), Action.CREATE),
        (str(OWNED), Action.DELETE),
        (str(RENAMED), Action.CREATE),
    ]

    outcome = await rig.apply(plan, state, {})

    assert outcome.ok
    assert [(r.tag, r.operation) for r in rig.records][-1] == ("owned", Operation.DELETE)
    assert {r.tag for r in rig.records} == {"owned", "zz-renamed", "mm-between"}
    assert rig.live_id(OWNED) is None
    assert outcome.state.get(OWNED) is None
    for k in (RENAMED, between):
        entry = outcome.state.get(k)
        assert entry is not None
        assert entry.webhook_id == rig.live_id(k)


async def test_a_rename_whose_create_failed_keeps_the_old_webhook_and_sends_nothing_for_it(
    make_rig: Callable[..., Rig],
) -> None:
    faults = {"script": [{"method": "PUT", "path": f"/forms/{FORM_A}/*", "status": 400}]}
    rig = make_rig(faults=faults)
    old_id = rig.live_id(OWNED)
    recorded = rig.entry(OWNED)
    state = State({OWNED: recorded, OTHER: rig.entry(OTHER)})
    plan = await rig.plan(
        desired(
            want(RENAMED, previous_tags=("owned",)),
            want(OTHER_V2, previous_tags=("other",)),
        ),
        state,
        {},
    )

    outcome = await rig.apply(plan, state, {})

    assert rig.live_id(OWNED) == old_id
    assert outcome.state.get(OWNED) is recorded
    record = rig.record_of(OWNED, Operation.DELETE)
    assert (record.success, record.attempts, record.duration_ms) == (False, 0, 0)
    assert record.webhook_id == old_id
    assert record.error == (
        f"not deleted: its replacement {RENAMED} was not created; nothing was sent"
    )
    # The other rename, on another form, still goes through completely.
    assert rig.live_id(OTHER) is None
    assert rig.live_id(OTHER_V2) is not None
    assert rig.record_of(OTHER, Operation.DELETE).success
    assert outcome.state.get(OTHER) is None
    assert outcome.state.get(OTHER_V2) is not None


# --------------------------------------------------------------------------- more adoption


async def test_adopt_goes_through_every_action_of_the_plan(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    recorded = rig.entry(OWNED)
    state = State({OWNED: recorded})
    plan = await rig.plan(
        desired(
            want(OWNED, "https://hooks.example.com/owned-v1"),  # recorded: skipped
            want(STRANGER, "https://hooks.example.com/changed"),  # an update: skipped
            want(OTHER, "https://hooks.example.com/other", located=False),  # adopted
        ),
        state,
        {},
    )
    assert [c.action for c in plan.actions] == [Action.NOOP, Action.UPDATE, Action.NOOP]

    adopted_state, adopted = adopt(
        plan, state, secrets={}, now=LATER, fingerprint=rig.hashes.fingerprint
    )

    assert adopted == (OTHER,)
    assert adopted_state.get(OWNED) is recorded
    assert adopted_state.get(STRANGER) is None
    entry = adopted_state.get(OTHER)
    assert entry is not None
    assert entry.webhook_id == rig.live_id(OTHER)
    assert entry.source is None  # no manifest location known


async def test_an_update_from_a_change_without_location_keeps_the_recorded_source(
    make_rig: Callable[..., Rig],
) -> None:
    rig = make_rig()
    state = State({OWNED: rig.entry(OWNED)})
    plan = await rig.plan(
        desired(want(OWNED, "https://hooks.example.com/owned-v9", located=False)), state, {}
    )
    outcome = await rig.apply(plan, state, {})
    entry = outcome.state.get(OWNED)
    assert entry is not None
    assert entry.source == SOURCE


# --------------------------------------------------------------------------- odd answers


class EmptyPutAnswers(httpx.AsyncBaseTransport):
    """The emulator, except that a PUT is answered ``200`` with an empty body (the write lands)."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        if request.method != "PUT":
            return response
        await response.aread()
        return httpx.Response(200, content=b"", request=request)


async def test_a_create_answered_without_a_body_is_recorded_but_not_owned(
    make_rig: Callable[..., Rig],
) -> None:
    rig = make_rig(wrap=EmptyPutAnswers)
    plan = await rig.plan(desired(want(NEW)), State(), {})
    outcome = await rig.apply(plan, State(), {})
    assert rig.live_id(NEW) is not None
    record = rig.record_of(NEW, Operation.CREATE)
    assert (record.success, record.webhook_id) == (True, None)
    assert outcome.state.get(NEW) is None  # its id is unknown: the next apply adopts it


async def test_a_create_answered_without_a_body_never_inherits_a_stale_id(
    make_rig: Callable[..., Rig],
) -> None:
    rig = make_rig(wrap=EmptyPutAnswers)
    stale = rig.entry(OTHER)
    assert rig.emulator.store.delete_webhook(FORM_B, "other")  # deleted outside the tool
    state = State({OTHER: stale})
    plan = await rig.plan(desired(want(OTHER)), state, {})
    assert [c.action for c in plan.actions] == [Action.CREATE]
    outcome = await rig.apply(plan, state, {})
    new_id = rig.live_id(OTHER)
    assert new_id is not None
    assert new_id != stale.webhook_id
    entry = outcome.state.get(OTHER)
    assert entry is None or entry.webhook_id == new_id


async def test_a_client_that_refuses_to_write_gives_failed_rows_of_one_attempt(
    make_rig: Callable[..., Rig],
) -> None:
    rig = make_rig(read_only=True)
    plan = await rig.plan(desired(want(NEW)), State(), {})
    outcome = await rig.apply(plan, State(), {})
    record = rig.record_of(NEW, Operation.CREATE)
    assert (record.success, record.attempts) == (False, 1)
    assert record.error is not None
    assert "read-only" in record.error
    assert rig.live_id(NEW) is None
    assert dict(outcome.state.webhooks) == {}


# --------------------------------------------------------------------------- local failure text


TAIL = "Fix the cause and run apply again: it adopts what landed and converges."


async def test_a_local_failure_with_nothing_landed_says_so_and_names_both_lost_writes(
    make_rig: Callable[..., Rig],
) -> None:
    rig = make_rig(faults=fail_puts_on(FORM_A))
    plan = await rig.plan(desired(want(NEW)), State(), {})

    def no_records(_record: OperationRecord) -> None:
        raise OSError("the records volume went away")  # no errno, no strerror

    outcome = await rig.apply(plan, State(), {}, record=no_records)

    assert outcome.local_failure == (
        "could not write the operation records (the records volume went away). "
        "Writes that landed: nothing. "
        f"Not recorded: record of create {NEW}. "
        "0 write(s) not sent or stopped before an answer (one in flight may have landed). " + TAIL
    )


async def test_a_local_failure_lists_every_write_that_landed_and_everything_unrecorded(
    make_rig: Callable[..., Rig],
) -> None:
    rig = make_rig(concurrency=1)
    tags = ("w1", "w2", "w3")
    plan = await rig.plan(desired(*(want(key(FORM_A, t)) for t in tags)), State(), {})
    saves: list[State] = []

    def second_save_fails(state: State) -> None:
        saves.append(state)
        if len(saves) == 2:
            raise StateError("state file is locked by someone else")

    def second_record_fails(record: OperationRecord) -> None:
        rig.records.append(record)
        if len(rig.records) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")

    outcome = await rig.apply(
        plan, State(), {}, record=second_record_fails, on_state=second_save_fails
    )

    assert outcome.local_failure is not None
    assert outcome.local_failure.startswith(
        "could not write the operation records (No space left on device). "
        f"Writes that landed: create {FORM_A}/w1, create {FORM_A}/w2"
    )
    assert (
        f"Not recorded: record of create {FORM_A}/w2; state of {FORM_A}/w2" in outcome.local_failure
    )
    assert outcome.local_failure.endswith(TAIL)


async def test_a_state_store_error_is_named_in_its_own_words(
    make_rig: Callable[..., Rig],
) -> None:
    rig = make_rig()
    plan = await rig.plan(desired(want(NEW)), State(), {})

    def refuse(_state: State) -> None:
        raise StateError("the state changed since it was read")

    outcome = await rig.apply(plan, State(), {}, on_state=refuse)
    assert outcome.local_failure is not None
    assert outcome.local_failure.startswith(
        "could not write the state (the state changed since it was read). "
    )

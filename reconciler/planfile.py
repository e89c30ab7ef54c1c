"""Saved plans on disk: ``plan --out`` writes one, ``apply --plan`` and ``show`` read one back.

A plan file is an approval, never an instruction (SPEC section 5): whatever it says is checked
again against the manifests, the state and the live webhooks before anything is written. This
module's job is only to read one *safely*: a truncated, edited, deeply nested or foreign file is
a one-line ``PlanError`` naming the file and the first field at fault, never a traceback. The
document is the one ``render.plan_to_json`` makes (``--format json``), validated with pydantic
models that accept nothing else.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from reconciler.errors import PlanError
from reconciler.fileio import write_json_atomic
from reconciler.fingerprints import valid_salt
from reconciler.models import (
    Action,
    Change,
    FieldChange,
    FormSelector,
    Location,
    Plan,
    PlanBinding,
    Reason,
    SecretRef,
    SecretSource,
    SelectorMatch,
    Target,
    UntouchedWebhook,
    WebhookKey,
)
from reconciler.render import plan_to_json

__all__ = ["MAX_PLAN_BYTES", "plan_from_json", "read_plan", "write_plan"]

MAX_PLAN_BYTES = 64 * 1024 * 1024
"""A plan of 10,000 webhooks is about 10 MB; anything far larger is not one of ours."""

_Name = Annotated[str, StringConstraints(min_length=1, max_length=256)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)


class _FieldChange(_Strict):
    field: _Name
    before: Any = None
    after: Any = None


class _Addressed(_Strict):
    account: _Name
    form_id: _Name
    tag: _Name

    def key(self) -> WebhookKey:
        return WebhookKey(self.account, self.form_id, self.tag)


class _Action(_Addressed):
    action: Literal["create", "update", "delete", "noop"]
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    changes: list[_FieldChange] = Field(default_factory=list)
    reasons: list[_Name] = Field(default_factory=list)
    webhook_id: str | None = None
    location: str | None = None
    secret_ref: dict[str, str] | None = None
    moved_from: _Name | None = None
    moved_to: _Name | None = None


class _Untouched(_Addressed):
    url: str
    reasons: list[_Name] = Field(default_factory=list)


class _FormGuard(_Strict):
    account: _Name
    form_id: _Name
    fingerprint: _Name


class _SecretGuard(_Addressed):
    fingerprint: _Name


class _Guards(_Strict):
    forms: list[_FormGuard] = Field(default_factory=list)
    secrets: list[_SecretGuard] = Field(default_factory=list)
    fingerprint_salt: _Name | None = None


class _Scope(_Strict):
    targets: list[_Name] = Field(default_factory=list)
    accounts: list[_Name] = Field(default_factory=list)
    changed_since: _Name | None = None


class _Binding(_Strict):
    api_urls: dict[_Name, _Name]
    state_serial: Annotated[int, Field(ge=0)]
    desired_digest: _Name


class _Selector(_Strict):
    set: _Name
    account: _Name
    tag: _Name
    location: str | None = None
    selector: dict[str, str]
    matched: list[_Name] = Field(default_factory=list)


class _PlanDoc(_Strict):
    format_version: Literal["1"]
    created_at: _Name
    prune: bool = False
    unread_accounts: list[_Name] = Field(default_factory=list)
    scope: _Scope = Field(default_factory=_Scope)
    actions: list[_Action]
    selectors: list[_Selector] = Field(default_factory=list)
    unmanaged: list[_Untouched] = Field(default_factory=list)
    prune_skipped: list[_Untouched] = Field(default_factory=list)
    guards: _Guards = Field(default_factory=_Guards)
    binding: _Binding | None = None


def write_plan(path: Path, plan: Plan) -> None:
    """Save ``plan`` atomically as its JSON document."""
    try:
        write_json_atomic(path, plan_to_json(plan))
    except OSError as exc:
        raise PlanError(f"cannot write the plan to {path}: {exc.strerror or exc}") from exc


def read_plan(path: Path) -> Plan:
    """Read a plan saved by ``reconcile plan --out``; any defect is one ``PlanError`` line."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_PLAN_BYTES + 1)
    except OSError as exc:
        raise PlanError(f"cannot read the saved plan {path}: {exc.strerror or exc}") from exc
    if len(raw) > MAX_PLAN_BYTES:
        raise PlanError(f"{path} is larger than {MAX_PLAN_BYTES // 2**20} MiB: not a saved plan")
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise PlanError(f"{path} is not a saved plan: it is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise PlanError(
            f"{path} is not a saved plan: invalid JSON at line {exc.lineno}, column {exc.colno}"
        ) from None
    except RecursionError:
        raise PlanError(f"{path} is not a saved plan: JSON nested too deeply") from None
    return plan_from_json(data, source=str(path))


def plan_from_json(data: Any, *, source: str = "the saved plan") -> Plan:
    """Turn a plan document back into a ``Plan``; raises ``PlanError`` naming the first defect."""
    try:
        doc = _PlanDoc.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "document"
        raise PlanError(
            f"{source} is not a plan saved by `reconcile plan --out`: {where}: {first['msg']}"
            + (f" (and {exc.error_count() - 1} more problems)" if exc.error_count() > 1 else "")
        ) from None
    except RecursionError:
        raise PlanError(f"{source} is not a saved plan: nested too deeply") from None
    try:
        return _to_plan(doc)
    except ValueError as exc:
        raise PlanError(f"{source} is not a plan saved by `reconcile plan --out`: {exc}") from None


def _to_plan(doc: _PlanDoc) -> Plan:
    salt = doc.guards.fingerprint_salt
    if salt is not None and not valid_salt(salt):
        raise ValueError("guards.fingerprint_salt is not a salt this tool makes")
    return Plan(
        created_at=doc.created_at,
        actions=tuple(_change(row) for row in doc.actions),
        unmanaged=tuple(_untouched(r) for r in doc.unmanaged),
        prune_skipped=tuple(_untouched(r) for r in doc.prune_skipped),
        live_fingerprints={(g.account, g.form_id): g.fingerprint for g in doc.guards.forms},
        secret_fingerprints={g.key(): g.fingerprint for g in doc.guards.secrets},
        fingerprint_salt=doc.guards.fingerprint_salt,
        binding=(
            PlanBinding(
                dict(doc.binding.api_urls), doc.binding.state_serial, doc.binding.desired_digest
            )
            if doc.binding is not None
            else None
        ),
        prune=doc.prune,
        targets=tuple(Target.parse(t) for t in doc.scope.targets),
        selectors=tuple(
            SelectorMatch(
                set_name=m.set,
                account=m.account,
                tag=m.tag,
                location=_location(m.location),
                selector=FormSelector(m.selector.get("workspace_id"), m.selector.get("title")),
                matched=tuple(m.matched),
            )
            for m in doc.selectors
        ),
        accounts=tuple(doc.scope.accounts),
        changed_since=doc.scope.changed_since,
        unread_accounts=tuple(doc.unread_accounts),
    )


def _change(row: _Action) -> Change:
    return Change(
        action=Action(row.action),
        key=row.key(),
        before=row.before,
        after=row.after,
        changes=tuple(FieldChange(c.field, c.before, c.after) for c in row.changes),
        reasons=tuple(Reason(r) for r in row.reasons),
        webhook_id=row.webhook_id,
        secret_ref=_secret_ref(row.secret_ref),
        location=_location(row.location),
        moved_from=_address(row.moved_from, row.account),
        moved_to=_address(row.moved_to, row.account),
    )


def _address(text: str | None, account: str) -> WebhookKey | None:
    if text is None:
        return None
    target = Target.parse(text)
    if target.tag is None:
        raise ValueError(f"{text!r} is not a webhook address (FORM_ID/TAG)")
    return WebhookKey(target.account or account, target.form_id, target.tag)


def _untouched(row: _Untouched) -> UntouchedWebhook:
    reason = Reason(row.reasons[0]) if row.reasons else Reason.NOT_DECLARED
    return UntouchedWebhook(row.key(), row.url, reason)


def _location(text: str | None) -> Location | None:
    if not text:
        return None
    file, _, col = text.rpartition(":")
    file, _, line = file.rpartition(":")
    try:
        return Location(file, int(line), int(col))
    except ValueError:
        return None


def _secret_ref(obj: dict[str, str] | None) -> SecretRef | None:
    if not obj:
        return None
    for source in SecretSource:
        if source.value in obj:
            return SecretRef(
                source, obj[source.value], obj.get("base_dir", "."), obj.get("root", ".")
            )
    raise ValueError(f"unknown secret reference {sorted(obj)}")

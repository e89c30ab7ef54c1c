"""The typed vocabulary every stage of the pipeline speaks.

Desired state (from manifests), live state (from the API), plans, and the records of what apply
did. Everything here is frozen: a stage receives values, never objects another stage may still
change. This module does no I/O and holds no secret values: a secret is only ever a *reference*
(``SecretRef``) here; the value is resolved at the edge (``credentials.py``) when a write needs it.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = [
    "DEFAULT_ACCOUNT",
    "DEFAULT_RATE",
    "EVENT_TYPE_NAMES",
    "SENSITIVE",
    "Account",
    "Action",
    "Change",
    "DesiredState",
    "DesiredWebhook",
    "Diagnostic",
    "EventTypes",
    "FieldChange",
    "FormSelector",
    "LiveWebhook",
    "Location",
    "Operation",
    "OperationRecord",
    "Ownership",
    "Plan",
    "PlanBinding",
    "Presence",
    "Reason",
    "SecretRef",
    "SecretSource",
    "SelectorEntry",
    "SelectorMatch",
    "Severity",
    "Target",
    "UntouchedWebhook",
    "WebhookKey",
    "WebhookSet",
]

DEFAULT_ACCOUNT = "default"
DEFAULT_RATE = 2.0
EVENT_TYPE_NAMES: tuple[str, ...] = ("form_response", "form_response_partial")
SENSITIVE = "(sensitive)"
"""What a secret looks like in every output: its value never leaves the process."""


# --------------------------------------------------------------------------- diagnostics


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, slots=True, order=True)
class Location:
    """A 1-based position in a manifest file, as editors and compilers print it."""

    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One problem found in the desired state; collected, never raised one at a time."""

    location: Location | None
    message: str
    severity: Severity = Severity.ERROR

    def render(self) -> str:
        where = f"{self.location}: " if self.location else ""
        level = "warning: " if self.severity is Severity.WARNING else ""
        return f"{where}{level}{self.message}"

    def to_json(self) -> dict[str, Any]:
        loc = self.location
        return {
            "file": loc.file if loc else None,
            "line": loc.line if loc else None,
            "col": loc.col if loc else None,
            "severity": self.severity.value,
            "message": self.message,
        }


# --------------------------------------------------------------------------- desired state


class SecretSource(StrEnum):
    ENV = "env"
    FILE = "file"


@dataclass(frozen=True, slots=True)
class SecretRef:
    """Where a secret comes from; never the secret itself.

    ``name`` is the environment variable for ``env``, or the path as written for ``file``;
    ``base_dir`` is the directory of the manifest that declared it (``file`` paths are relative
    to their manifest); ``root`` is the manifest tree it was found in (the PATH argument, or a
    file argument's directory): a ``file`` secret must resolve inside it or a secret directory.
    """

    source: SecretSource
    name: str
    base_dir: str = "."
    root: str = "."

    def describe(self) -> str:
        return f"{self.source.value}:{self.name}"

    def to_json(self) -> dict[str, str]:
        return {self.source.value: self.name}


class Ownership(StrEnum):
    DECLARED = "declared"
    EXCLUSIVE = "exclusive"


class Presence(StrEnum):
    PRESENT = "present"
    ABSENT = "absent"


@dataclass(frozen=True, slots=True)
class EventTypes:
    """The API's ``event_types`` object; absent in a response means ``{form_response: true}``."""

    form_response: bool = True
    form_response_partial: bool = False

    @classmethod
    def from_names(cls, names: list[str] | tuple[str, ...]) -> EventTypes:
        return cls(
            form_response="form_response" in names,
            form_response_partial="form_response_partial" in names,
        )

    @classmethod
    def from_api(cls, obj: Mapping[str, Any] | None) -> EventTypes:
        if obj is None:
            return cls()
        return cls(
            form_response=bool(obj.get("form_response", False)),
            form_response_partial=bool(obj.get("form_response_partial", False)),
        )

    def to_api(self) -> dict[str, bool]:
        return {
            "form_response": self.form_response,
            "form_response_partial": self.form_response_partial,
        }

    def names(self) -> tuple[str, ...]:
        return tuple(n for n in EVENT_TYPE_NAMES if getattr(self, n))


@dataclass(frozen=True, slots=True, order=True)
class WebhookKey:
    """The identity of a webhook: Typeform addresses it by form and tag, we add the account."""

    account: str
    form_id: str
    tag: str

    def __str__(self) -> str:
        prefix = "" if self.account == DEFAULT_ACCOUNT else f"{self.account}:"
        return f"{prefix}{self.form_id}/{self.tag}"

    def to_json(self) -> dict[str, str]:
        return {"account": self.account, "form_id": self.form_id, "tag": self.tag}


_ADDRESS = re.compile(
    r"(?:(?P<account>[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?):)?"
    r"(?P<form_id>[A-Za-z0-9]{1,64})(?:/(?P<tag>[A-Za-z0-9][A-Za-z0-9._-]{0,63}))?"
)


@dataclass(frozen=True, slots=True, order=True)
class Target:
    """``--target [ACCOUNT:]FORM_ID[/TAG]``: limits a run to a form, or one webhook of it.

    Written the way every address is printed, so any address a plan shows is accepted back.
    Without an account it matches the form in every account.
    """

    form_id: str
    tag: str | None = None
    account: str | None = None

    @classmethod
    def parse(cls, text: str) -> Target:
        """Raise ``ValueError`` naming the expected shape when ``text`` is not an address."""
        match = _ADDRESS.fullmatch(text.strip())
        if match is None:
            raise ValueError(
                f"{text!r} is not an address: expected [ACCOUNT:]FORM_ID or "
                "[ACCOUNT:]FORM_ID/TAG, as plans print them"
            )
        return cls(match["form_id"], match["tag"], match["account"])

    def matches(self, key: WebhookKey) -> bool:
        return (
            key.form_id == self.form_id
            and (self.tag is None or key.tag == self.tag)
            and (self.account is None or key.account == self.account)
        )

    def __str__(self) -> str:
        prefix = f"{self.account}:" if self.account else ""
        return f"{prefix}{self.form_id}" + (f"/{self.tag}" if self.tag else "")


@dataclass(frozen=True, slots=True)
class Account:
    """A Typeform account: where its API is and which token reads it.

    ``api_url`` and ``token`` are ``None`` for the implicit ``default`` account, whose values
    come from ``TYPEFORM_API_URL`` / ``TYPEFORM_TOKEN`` (or ``--api-url``) at run time.
    """

    name: str
    api_url: str | None = None
    token: SecretRef | None = None
    rate_limit: float = DEFAULT_RATE
    location: Location | None = None
    rate_group: str | None = None
    """Accounts in one rate group share one pacer (two tokens of one Typeform account)."""


@dataclass(frozen=True, slots=True)
class DesiredWebhook:
    """One validated manifest entry, with the set's defaults already merged in."""

    key: WebhookKey
    url: str | None
    enabled: bool = True
    verify_ssl: bool = True
    event_types: EventTypes = field(default_factory=EventTypes)
    secret: SecretRef | None = None
    state: Presence = Presence.PRESENT
    set_name: str = ""
    ownership: Ownership = Ownership.DECLARED
    location: Location | None = None
    previous_tags: tuple[str, ...] = ()
    """Tags this webhook had before a rename: the old webhook is deleted once this one exists."""


@dataclass(frozen=True, slots=True)
class FormSelector:
    """``forms: {workspace_id, title}``: the forms of a workspace, or whose title matches a glob."""

    workspace_id: str | None = None
    title: str | None = None

    def matches(self, workspace_id: str | None, title: str) -> bool:
        if self.workspace_id is not None and workspace_id != self.workspace_id:
            return False
        return self.title is None or fnmatch.fnmatchcase(title, self.title)

    def describe(self) -> str:
        parts = []
        if self.workspace_id is not None:
            parts.append(f"workspace_id={self.workspace_id}")
        if self.title is not None:
            parts.append(f"title={self.title!r}")
        return ", ".join(parts)


@dataclass(frozen=True, slots=True)
class SelectorEntry:
    """A manifest entry with ``forms:`` instead of ``form_id``: ``template`` (its ``form_id``
    empty) becomes one webhook per form the selector matches, at plan time."""

    selector: FormSelector
    template: DesiredWebhook


@dataclass(frozen=True, slots=True)
class SelectorMatch:
    """What one selector matched in one plan (listed in the plan's ``selectors``)."""

    set_name: str
    account: str
    tag: str
    location: Location | None
    selector: FormSelector
    matched: tuple[str, ...]
    """Form ids that got the webhook (explicit entries for the same form and tag win)."""


@dataclass(frozen=True, slots=True)
class WebhookSet:
    name: str
    account: str
    ownership: Ownership
    webhooks: tuple[DesiredWebhook, ...]
    location: Location | None = None
    selectors: tuple[SelectorEntry, ...] = ()


@dataclass(frozen=True, slots=True)
class DesiredState:
    """Everything the manifests declare, validated; the only input later stages take from them."""

    accounts: tuple[Account, ...] = ()
    sets: tuple[WebhookSet, ...] = ()
    warnings: tuple[Diagnostic, ...] = ()

    @property
    def webhooks(self) -> tuple[DesiredWebhook, ...]:
        return tuple(sorted((w for s in self.sets for w in s.webhooks), key=lambda w: w.key))

    def __iter__(self) -> Iterator[DesiredWebhook]:
        return iter(self.webhooks)

    def account(self, name: str) -> Account:
        for acc in self.accounts:
            if acc.name == name:
                return acc
        if name == DEFAULT_ACCOUNT:
            return Account(name=DEFAULT_ACCOUNT)
        raise KeyError(name)

    @property
    def selector_entries(self) -> tuple[tuple[WebhookSet, SelectorEntry], ...]:
        return tuple((s, e) for s in self.sets for e in s.selectors)

    def account_names(self) -> tuple[str, ...]:
        """Every account that some WebhookSet uses, sorted."""
        return tuple(sorted({s.account for s in self.sets}))

    def forms(self, account: str) -> tuple[str, ...]:
        """The form ids in scope for ``account``, sorted: each is refreshed once."""
        return tuple(sorted({w.key.form_id for w in self.webhooks if w.key.account == account}))

    def exclusive_forms(self) -> frozenset[tuple[str, str]]:
        """(account, form_id) pairs on which some WebhookSet claims exclusive ownership."""
        return frozenset(
            (w.key.account, w.key.form_id)
            for s in self.sets
            if s.ownership is Ownership.EXCLUSIVE
            for w in s.webhooks
        )


# --------------------------------------------------------------------------- live state


@dataclass(frozen=True, slots=True)
class LiveWebhook:
    """A webhook as the API returned it. ``secret`` is set only when the response carried one."""

    key: WebhookKey
    id: str
    url: str
    enabled: bool
    verify_ssl: bool
    event_types: EventTypes
    secret: str | None = field(default=None, repr=False)
    created_at: str | None = None
    updated_at: str | None = None

    @classmethod
    def from_api(cls, account: str, obj: Mapping[str, Any]) -> LiveWebhook:
        return cls(
            key=WebhookKey(account, str(obj["form_id"]), str(obj["tag"])),
            id=str(obj.get("id", "")),
            url=str(obj.get("url", "")),
            enabled=bool(obj.get("enabled", False)),
            verify_ssl=bool(obj.get("verify_ssl", True)),
            event_types=EventTypes.from_api(obj.get("event_types")),
            secret=obj.get("secret") or None,
            created_at=obj.get("created_at"),
            updated_at=obj.get("updated_at"),
        )


# --------------------------------------------------------------------------- plans


class Action(StrEnum):
    """What a plan does to one webhook. ``glyph`` is what the text rendering prints."""

    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    NOOP = "noop"

    @property
    def glyph(self) -> str:
        return {"create": "+", "update": "~", "delete": "-", "noop": " "}[self.value]


class Operation(StrEnum):
    """What apply did to one webhook: the planned action, or what followed from it.

    ``revert`` undoes a write of the same run (``--atomic``); ``adopt`` records a declared webhook
    that was already live and right, so the state file can prove it is ours (no API write).
    """

    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    REVERT = "revert"
    ADOPT = "adopt"

    @property
    def past(self) -> str:
        return {
            "create": "created",
            "update": "updated",
            "delete": "deleted",
            "revert": "reverted",
            "adopt": "adopted",
        }[self.value]


class Reason(StrEnum):
    """Why the plan put a webhook where it did: data for people, never read to decide anything.

    Decisions are made on ``Action``s (Terraform's ``ActionReason`` is the model); ``render.py``
    is the only place that turns a reason into prose.
    """

    DECLARED_NOT_LIVE = "declared_not_live"
    LIVE_DIFFERS = "live_differs"
    SECRET_CHANGED = "secret_changed"
    SECRET_NOT_RECORDED = "secret_not_recorded"
    IN_SYNC = "in_sync"
    DECLARED_ABSENT = "declared_absent"
    ALREADY_ABSENT = "already_absent"
    NO_LONGER_DECLARED = "no_longer_declared"
    EXCLUSIVE_UNDECLARED = "exclusive_undeclared"
    NOT_DECLARED = "not_declared"
    REPLACED_OUTSIDE = "replaced_outside"
    RENAMED = "renamed"
    RENAMED_FROM = "renamed_from"
    RENAMED_NOT_OURS = "renamed_not_ours"


@dataclass(frozen=True, slots=True)
class FieldChange:
    """One field that differs. Secret fields carry ``SENSITIVE`` on both sides, never values."""

    field: str
    before: Any
    after: Any


@dataclass(frozen=True, slots=True)
class Change:
    """One planned action on one webhook.

    ======== ============================== ==============================
    action   before                         after
    ======== ============================== ==============================
    create   None                           desired webhook (API fields)
    update   live webhook (API fields)      desired webhook (API fields)
    delete   live webhook (API fields)      None
    noop     live webhook (API fields)      same as before
    ======== ============================== ==============================

    Webhook objects use the API's field names; ``secret`` is ``SENSITIVE`` when set, absent
    when unmanaged. ``secret_ref`` says where apply finds the value to send (never the value).
    """

    action: Action
    key: WebhookKey
    before: Mapping[str, Any] | None
    after: Mapping[str, Any] | None
    changes: tuple[FieldChange, ...] = ()
    reasons: tuple[Reason, ...] = ()
    webhook_id: str | None = None
    secret_ref: SecretRef | None = None
    location: Location | None = None
    moved_from: WebhookKey | None = None
    """On the new webhook of a rename: the old one, deleted after this write lands."""
    moved_to: WebhookKey | None = None
    """On the deletion of a renamed webhook: the new one, which must exist first."""


@dataclass(frozen=True, slots=True)
class UntouchedWebhook:
    """A live webhook the plan lists but will not change (unmanaged, or prune skipped)."""

    key: WebhookKey
    url: str
    reason: Reason = Reason.NOT_DECLARED


@dataclass(frozen=True, slots=True)
class PlanBinding:
    """What a saved plan was made against: each account's API URL, the state serial, and a
    digest of the desired webhooks in its scope (secret references, never values)."""

    api_urls: Mapping[str, str]
    state_serial: int
    desired_digest: str


@dataclass(frozen=True, slots=True)
class Plan:
    """Inert data: what apply would do, and the evidence it was computed from.

    ``actions`` holds one ``Change`` per declared or owned webhook in scope, no-ops included,
    exactly the JSON document's ``actions``; ``writes`` are the ones apply executes.
    ``live_fingerprints`` maps ``(account, form_id)`` of every form the plan touches to a digest
    of that form's live webhooks at plan time, and ``secret_fingerprints`` each secret the plan
    would send to a salted hash of its value; apply of a saved plan refuses when any differs.
    """

    created_at: str
    actions: tuple[Change, ...]
    unmanaged: tuple[UntouchedWebhook, ...] = ()
    prune_skipped: tuple[UntouchedWebhook, ...] = ()
    live_fingerprints: Mapping[tuple[str, str], str] = field(default_factory=dict)
    secret_fingerprints: Mapping[WebhookKey, str] = field(default_factory=dict)
    prune: bool = False
    targets: tuple[Target, ...] = ()
    """The ``--target``s the plan was limited to."""
    accounts: tuple[str, ...] = ()
    """The ``--account``s the plan was limited to (empty: every account)."""
    fingerprint_salt: str | None = None
    """The state salt ``secret_fingerprints`` were made under (``reconciler.fingerprints``)."""
    binding: PlanBinding | None = None
    """What a saved plan was made against; ``apply --plan`` refuses it anywhere else."""
    selectors: tuple[SelectorMatch, ...] = ()
    """What each ``forms:`` selector matched when the plan was made."""
    changed_since: str | None = None
    """Set for a partial plan (``--changed-since REF``): only ``targets`` were refreshed."""
    unread_accounts: tuple[str, ...] = ()
    """Accounts whose refresh failed: the plan says nothing about them."""

    @property
    def partial(self) -> bool:
        return self.changed_since is not None

    @property
    def writes(self) -> tuple[Change, ...]:
        """The actions that write something (everything but noop), in plan order."""
        return tuple(c for c in self.actions if c.action is not Action.NOOP)

    def count(self, action: Action) -> int:
        return sum(1 for c in self.actions if c.action is action)

    @property
    def has_changes(self) -> bool:
        return any(c.action is not Action.NOOP for c in self.actions)


# --------------------------------------------------------------------------- apply results


@dataclass(frozen=True, slots=True)
class OperationRecord:
    """One API write, as appended to the records file (SPEC section 5)."""

    timestamp: str
    run_id: str
    operation: Operation
    account: str
    form_id: str
    tag: str
    webhook_id: str | None
    url: str | None
    success: bool
    error: str | None
    attempts: int
    duration_ms: int
    note: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "timestamp": self.timestamp,
            "run_id": self.run_id,
            "operation": str(self.operation),
            "account": self.account,
            "form_id": self.form_id,
            "tag": self.tag,
            "webhook_id": self.webhook_id,
            "url": self.url,
            "success": self.success,
            "error": self.error,
            "attempts": self.attempts,
            "duration_ms": self.duration_ms,
            "note": self.note,
        }

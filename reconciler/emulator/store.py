"""The emulated Typeform account: workspaces, forms, webhooks, settings and stats, in memory.

One ``EmulatorStore`` is one account. The HTTP layer (``app.py``) validates requests and calls
the methods here, which keep Typeform's bookkeeping: random alphanumeric webhook ids,
``created_at`` set once, ``updated_at`` moved only by a write that changed something, fields left
out of an update keeping their values. ``version`` grows with every change so the caller knows
when to persist.

Webhooks are indexed by form, so reading one form's webhooks costs that form's webhooks, not the
account's. Each change is also recorded as a small journal entry (``take_changes``), so that
persisting it (``persist.py``) costs the change, not the account; a change only a whole snapshot
can capture (a reset, a new seed) says so.

Persistence is JSON: a snapshot written atomically (temp file, fsync, rename) plus the journal
that ``persist.py`` appends to. The file also keeps the emulator's settings (rate, burst, faults,
echo modes, token grants) so the in-process emulator obeys them across CLI invocations.

Never stored, persisted or shown: a bearer token (only its SHA-256 is kept) or a webhook secret
(only its SHA-256 is kept) -- except in ``secret_echo: plain`` mode, where the emulator must
echo secrets and so keeps them, in memory and in its file. The emulator is a test double: plain
mode is for testing a client against an API that returns secrets, never for real secrets.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import string
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from reconciler.emulator.faults import Faults
from reconciler.emulator.seed import DEMO_SEED, Seed, hash_secret, parse_seed
from reconciler.errors import ConfigError
from reconciler.models import DEFAULT_RATE

__all__ = [
    "ALL_SCOPES",
    "DEFAULT_EVENT_TYPES",
    "FORMAT_VERSION",
    "FORM_SORT_KEYS",
    "EmulatorSettings",
    "EmulatorStore",
    "EventTypesEcho",
    "Form",
    "SecretEcho",
    "Stats",
    "TokenGrant",
    "Webhook",
    "WebhookChange",
    "Workspace",
    "configure",
    "format_timestamp",
    "hash_token",
    "load_or_seed",
    "parse_tokens",
    "utc_now",
]

FORMAT_VERSION = 1
DEFAULT_BURST = 2
_ID_ALPHABET = string.ascii_letters + string.digits
DEFAULT_EVENT_TYPES: Mapping[str, bool] = {"form_response": True, "form_response_partial": False}
FORM_SORT_KEYS = ("created_at", "last_updated_at")
"""``GET /forms?sort_by=``: the values Typeform documents."""

ALL_SCOPES: tuple[str, ...] = (
    "accounts:read",
    "forms:read",
    "forms:write",
    "images:read",
    "images:write",
    "offline",
    "responses:read",
    "responses:write",
    "themes:read",
    "themes:write",
    "webhooks:read",
    "webhooks:write",
    "workspaces:read",
    "workspaces:write",
)
"""Typeform's scope names; a grant naming another is a typo, refused."""


class SecretEcho(StrEnum):
    """What webhook responses carry of the secret (SPEC 9: Typeform's docs leave it open)."""

    NONE = "none"
    """No ``secret`` key (the default)."""
    PLAIN = "plain"
    """The secret as set. The store then keeps the plaintext, in memory and in its file."""
    MASKED = "masked"
    """A fixed mask that reveals nothing of the secret (not even its length)."""


class EventTypesEcho(StrEnum):
    """Whether responses carry ``event_types`` when it is the default ``{form_response: true}``."""

    ALWAYS = "always"
    OMIT_DEFAULT = "omit-default"


def hash_token(token: str) -> str:
    """The only form in which the emulator keeps a bearer token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class TokenGrant:
    """What one token may do: the account it belongs to (whose rate limit it shares), its scopes."""

    account: str
    scopes: frozenset[str]

    def to_json(self, token_sha256: str) -> dict[str, Any]:
        return {
            "token_sha256": token_sha256,
            "account": self.account,
            "scopes": sorted(self.scopes),
        }


def parse_tokens(obj: Any) -> dict[str, TokenGrant]:
    """A token map, keyed by the tokens' SHA-256; raises ``ValueError`` never quoting a token.

    Two forms: ``{TOKEN: {account, scopes}}`` (what a user writes; the tokens are hashed here)
    and ``[{token_sha256, account, scopes}]`` (what the emulator persists). ``scopes`` defaults
    to every scope; ``account`` to ``"default"``.
    """
    if obj is None:
        return {}
    grants: dict[str, TokenGrant] = {}
    if isinstance(obj, Mapping):
        for i, (token, grant) in enumerate(obj.items()):
            where = f"tokens[{i}]"  # never the key: it is the token
            if not isinstance(token, str) or not token.strip() or token != token.strip():
                raise ValueError(f"{where}: a token must be a non-empty string without spaces")
            grants[hash_token(token)] = _grant(grant, where)
        return grants
    if isinstance(obj, list):
        for i, entry in enumerate(obj):
            where = f"tokens[{i}]"
            if not isinstance(entry, Mapping):
                raise ValueError(f"{where}: an object with token_sha256, account, scopes")
            digest = entry.get("token_sha256")
            if not isinstance(digest, str) or len(digest) != 64:
                raise ValueError(f"{where}.token_sha256: a SHA-256 hex digest")
            rest = {k: v for k, v in entry.items() if k != "token_sha256"}
            grants[digest.lower()] = _grant(rest, where)
        return grants
    raise ValueError("tokens: an object {TOKEN: {account, scopes}}")


def _grant(obj: Any, where: str) -> TokenGrant:
    if obj is None:
        obj = {}
    if not isinstance(obj, Mapping):
        raise ValueError(f"{where}: an object with account and scopes")
    unknown = set(obj) - {"account", "scopes"}
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
    account = obj.get("account", "default")
    if not isinstance(account, str) or not account:
        raise ValueError(f"{where}.account: a non-empty string")
    scopes = obj.get("scopes", list(ALL_SCOPES))
    if not isinstance(scopes, list) or not all(isinstance(x, str) for x in scopes):
        raise ValueError(f"{where}.scopes: a list of scope names such as webhooks:read")
    unknown_scopes = sorted(set(scopes) - set(ALL_SCOPES))
    if unknown_scopes:
        raise ValueError(
            f"{where}.scopes: unknown scope(s) {', '.join(unknown_scopes)}; "
            f"known: {', '.join(ALL_SCOPES)}"
        )
    return TokenGrant(account=account, scopes=frozenset(scopes))


def utc_now() -> datetime:
    return datetime.now(UTC)


def format_timestamp(moment: datetime) -> str:
    """Typeform's timestamp: ISO 8601, UTC, to the second, ``T`` delimiter, ``Z`` suffix."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


# --------------------------------------------------------------------------- records


@dataclass(slots=True)
class Workspace:
    id: str
    name: str


@dataclass(slots=True)
class Form:
    id: str
    title: str
    workspace_id: str | None
    created_at: str
    last_updated_at: str


@dataclass(slots=True)
class Webhook:
    id: str
    form_id: str
    tag: str
    url: str
    enabled: bool
    verify_ssl: bool
    event_types: dict[str, bool]
    created_at: str
    updated_at: str
    secret_sha256: str | None = field(default=None, repr=False)
    secret: str | None = field(default=None, repr=False)
    """The plaintext, kept only in ``secret_echo: plain`` mode; ``None`` otherwise."""

    def to_api(self) -> dict[str, Any]:
        """The API's representation, without the secret (``app.py`` adds it per echo mode)."""
        return {
            "id": self.id,
            "form_id": self.form_id,
            "tag": self.tag,
            "url": self.url,
            "enabled": self.enabled,
            "verify_ssl": self.verify_ssl,
            "event_types": dict(self.event_types),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }

    def to_json(self) -> dict[str, Any]:
        """As persisted: the digest, and the plaintext only when plain mode kept one."""
        out = {**self.to_api(), "secret_sha256": self.secret_sha256}
        if self.secret is not None:
            out["secret"] = self.secret
        return out

    @classmethod
    def from_json(cls, w: Mapping[str, Any]) -> Webhook:
        """Raises ``KeyError``/``TypeError`` for a malformed entry (the caller names the file)."""
        secret = w.get("secret")
        return cls(
            id=str(w["id"]),
            form_id=str(w["form_id"]),
            tag=str(w["tag"]),
            url=str(w["url"]),
            enabled=bool(w["enabled"]),
            verify_ssl=bool(w["verify_ssl"]),
            event_types=_event_types(w.get("event_types")),
            created_at=str(w["created_at"]),
            updated_at=str(w["updated_at"]),
            secret_sha256=w.get("secret_sha256"),
            secret=secret if isinstance(secret, str) else None,
        )


@dataclass(frozen=True, slots=True)
class WebhookChange:
    """A validated PUT body: ``None`` means "left out" (keep the value, or default on create).

    ``secret`` is the plaintext as received; the store hashes it immediately.
    """

    url: str | None = None
    enabled: bool | None = None
    verify_ssl: bool | None = None
    event_types: Mapping[str, bool] | None = None
    secret: str | None = field(default=None, repr=False)


@dataclass(slots=True)
class Stats:
    """Requests answered, by ``"METHOD /route/{template}"`` and status; 429s sent."""

    routes: dict[str, dict[str, int]] = field(default_factory=dict)
    throttled: int = 0
    total: int = 0

    def count(self, route: str, status: int | str) -> None:
        """Count one answer; ``status`` is the HTTP status, or ``"dropped"`` for a hang-up."""
        key = str(status)
        by_status = self.routes.setdefault(route, {})
        by_status[key] = by_status.get(key, 0) + 1
        self.total += 1
        if key == "429":
            self.throttled += 1

    def to_json(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "throttled": self.throttled,
            "routes": {route: dict(sorted(s.items())) for route, s in sorted(self.routes.items())},
        }

    @classmethod
    def from_json(cls, obj: Any) -> Stats:
        if not isinstance(obj, Mapping):
            return cls()
        routes = obj.get("routes", {})
        return cls(
            routes={str(r): {str(k): int(v) for k, v in s.items()} for r, s in routes.items()},
            throttled=int(obj.get("throttled", 0)),
            total=int(obj.get("total", 0)),
        )


@dataclass(slots=True)
class EmulatorSettings:
    """How the emulator behaves (not what the account holds). Persisted with the account."""

    rate: float = DEFAULT_RATE
    burst: int = DEFAULT_BURST
    faults: Faults = field(default_factory=Faults)
    secret_echo: SecretEcho = SecretEcho.NONE
    event_types_echo: EventTypesEcho = EventTypesEcho.ALWAYS
    tokens: dict[str, TokenGrant] = field(default_factory=dict)
    """Accepted tokens by SHA-256. Empty: any non-empty token (or the app's single ``token``)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "rate": self.rate,
            "burst": self.burst,
            "faults": self.faults.to_json(),
            "secret_echo": self.secret_echo.value,
            "event_types_echo": self.event_types_echo.value,
            "tokens": [
                grant.to_json(digest)
                for digest, grant in sorted(self.tokens.items(), key=lambda i: (i[1].account, i[0]))
            ],
        }

    def set_modes(
        self,
        *,
        secret_echo: SecretEcho | str | None = None,
        event_types_echo: EventTypesEcho | str | None = None,
        tokens: Mapping[str, Any] | list[Any] | None = None,
    ) -> None:
        """Set the given modes (``None`` keeps one); raises ``ValueError`` naming a bad value."""
        if secret_echo is not None:
            self.secret_echo = _choice(SecretEcho, secret_echo, "secret_echo")
        if event_types_echo is not None:
            self.event_types_echo = _choice(EventTypesEcho, event_types_echo, "event_types_echo")
        if tokens is not None:
            self.tokens = parse_tokens(tokens)

    @classmethod
    def from_json(cls, obj: Any) -> EmulatorSettings:
        """Raises ``ValueError`` naming the bad key."""
        if obj is None:
            return cls()
        if not isinstance(obj, Mapping):
            raise ValueError("settings must be an object")
        unknown = set(obj) - {
            "rate",
            "burst",
            "faults",
            "secret_echo",
            "event_types_echo",
            "tokens",
        }
        if unknown:
            raise ValueError(f"settings: unknown key(s) {', '.join(sorted(unknown))}")
        rate = obj.get("rate", DEFAULT_RATE)
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not rate > 0:
            raise ValueError("settings.rate: a positive number of requests per second")
        burst = obj.get("burst", max(DEFAULT_BURST, math.ceil(rate)))
        if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
            raise ValueError("settings.burst: an integer >= 1")
        settings = cls(rate=float(rate), burst=burst, faults=Faults.from_json(obj.get("faults")))
        settings.set_modes(
            secret_echo=obj.get("secret_echo"),
            event_types_echo=obj.get("event_types_echo"),
            tokens=obj.get("tokens"),
        )
        return settings


def _choice(enum: type[SecretEcho] | type[EventTypesEcho], value: Any, where: str) -> Any:
    try:
        return enum(value)
    except ValueError:
        choices = "|".join(m.value for m in enum)
        raise ValueError(f"settings.{where}: one of {choices}") from None


# --------------------------------------------------------------------------- the account


class EmulatorStore:
    """One emulated account. Not thread-safe: the ASGI app serialises access on one loop."""

    def __init__(
        self,
        seed: Seed = DEMO_SEED,
        *,
        settings: EmulatorSettings | None = None,
        now: Callable[[], datetime] = utc_now,
    ) -> None:
        self.settings = settings or EmulatorSettings()
        self.stats = Stats()
        self.version = 0
        self._now = now
        self.seed = seed
        self.workspaces: dict[str, Workspace] = {}
        self.forms: dict[str, Form] = {}
        self.webhooks: dict[tuple[str, str], Webhook] = {}
        """Every webhook by ``(form_id, tag)``. Read it freely; change it only through methods."""
        self._by_form: dict[str, dict[str, Webhook]] = {}
        self._ids: set[str] = set()
        self._pending: list[dict[str, Any]] = []
        self._snapshot_needed = False
        self.apply_seed(seed)

    # ----------------------------------------------------------------- changes

    def touch(self) -> None:
        """Record a change that only a whole snapshot captures (the caller saves when
        ``version`` moves)."""
        self.version += 1
        self._snapshot_needed = True
        self._pending.clear()

    def settings_changed(self) -> None:
        """Record that ``settings`` changed (a consumed scripted fault, a new mode).

        Leaving plain mode forgets every kept plaintext secret, and then only a new snapshot
        (which no longer holds them) will do.
        """
        if self.settings.secret_echo is not SecretEcho.PLAIN and any(
            w.secret is not None for w in self.webhooks.values()
        ):
            for hook in self.webhooks.values():
                hook.secret = None
            self.touch()
            return
        self._record({"op": "settings", "settings": self.settings.to_json()})

    def take_changes(self) -> list[dict[str, Any]] | None:
        """The journal entries of the changes since the last call; ``None`` when only a whole
        snapshot can capture them."""
        if self._snapshot_needed:
            self._snapshot_needed = False
            self._pending.clear()
            return None
        changes, self._pending = self._pending, []
        return changes

    def apply_change(self, entry: Mapping[str, Any]) -> None:
        """Replay one journal entry (as ``take_changes`` produced it); ``ValueError`` if bad."""
        try:
            op = entry["op"]
            if op == "put":
                hook = Webhook.from_json(entry["webhook"])
                if self.settings.secret_echo is not SecretEcho.PLAIN:
                    hook.secret = None
                self._remove(hook.form_id, hook.tag)
                self._add(hook)
            elif op == "delete":
                self._remove(str(entry["form_id"]), str(entry["tag"]))
            elif op == "settings":
                self.settings = EmulatorSettings.from_json(entry["settings"])
            else:
                raise ValueError(f"unknown journal operation {op!r}")
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"malformed journal entry ({type(exc).__name__}: {exc})") from exc
        self.version += 1

    def _record(self, entry: dict[str, Any]) -> None:
        self.version += 1
        if not self._snapshot_needed:
            self._pending.append(entry)

    # ----------------------------------------------------------------- lifecycle

    def apply_seed(self, seed: Seed) -> None:
        """Replace the whole account with ``seed`` (which becomes what ``reset`` returns to)."""
        stamp = self.timestamp()
        self.seed = seed
        self.workspaces = {w.id: Workspace(w.id, w.name) for w in seed.workspaces}
        self.forms = {
            f.id: Form(
                id=f.id,
                title=f.title,
                workspace_id=f.workspace_id,
                created_at=f.created_at or stamp,
                last_updated_at=f.created_at or stamp,
            )
            for f in seed.forms
        }
        self._clear_webhooks()
        for w in seed.webhooks:
            created = w.created_at or stamp
            self._add(
                Webhook(
                    id=w.id or self._new_id(),
                    form_id=w.form_id,
                    tag=w.tag,
                    url=w.url,
                    enabled=w.enabled,
                    verify_ssl=w.verify_ssl,
                    event_types=dict(w.event_types),
                    created_at=created,
                    updated_at=created,
                    secret_sha256=w.secret_sha256,
                )
            )
        self.touch()

    def reset(self, *, empty: bool = False) -> None:
        """Back to the seed (or to the seed's forms without any webhook), stats cleared."""
        self.apply_seed(self.seed)
        if empty:
            self._clear_webhooks()
        self.stats = Stats()
        self.touch()

    def timestamp(self) -> str:
        return format_timestamp(self._now())

    def _new_id(self) -> str:
        while True:
            candidate = "".join(secrets.choice(_ID_ALPHABET) for _ in range(10))
            if candidate not in self._ids:
                return candidate

    # ----------------------------------------------------------------- the index

    def _add(self, hook: Webhook) -> None:
        self.webhooks[(hook.form_id, hook.tag)] = hook
        self._by_form.setdefault(hook.form_id, {})[hook.tag] = hook
        self._ids.add(hook.id)

    def _remove(self, form_id: str, tag: str) -> Webhook | None:
        hook = self.webhooks.pop((form_id, tag), None)
        if hook is None:
            return None
        by_tag = self._by_form.get(form_id)
        if by_tag is not None:
            by_tag.pop(tag, None)
            if not by_tag:
                del self._by_form[form_id]
        self._ids.discard(hook.id)
        return hook

    def _clear_webhooks(self) -> None:
        self.webhooks.clear()
        self._by_form.clear()
        self._ids.clear()

    # ----------------------------------------------------------------- forms

    def list_forms(
        self,
        *,
        page: int = 1,
        page_size: int = 10,
        search: str | None = None,
        workspace_id: str | None = None,
        sort_by: str | None = None,
        order_by: str | None = None,
    ) -> tuple[int, int, list[Form]]:
        """``(total_items, page_count, items)`` of one page, in a stable order.

        Without ``sort_by``, the order the forms were created in (``order_by=desc`` reverses
        it); with it, by that field (one of ``FORM_SORT_KEYS``), ties broken by id, ascending
        unless ``order_by`` is ``desc``.
        """
        forms: Iterable[Form] = self.forms.values()
        if workspace_id:
            forms = [f for f in forms if f.workspace_id == workspace_id]
        if search:
            needle = search.casefold()
            forms = [f for f in forms if needle in f.title.casefold() or needle in f.id.casefold()]
        chosen = list(forms)
        descending = order_by == "desc"
        if sort_by is not None:
            if sort_by not in FORM_SORT_KEYS:
                raise ValueError(f"sort_by: one of {', '.join(FORM_SORT_KEYS)}")
            chosen.sort(key=lambda f: (getattr(f, sort_by), f.id), reverse=descending)
        elif descending:
            chosen.reverse()
        total = len(chosen)
        page_count = max(1, math.ceil(total / page_size))
        start = (page - 1) * page_size
        return total, page_count, chosen[start : start + page_size]

    def list_workspaces(
        self, *, page: int = 1, page_size: int = 10, search: str | None = None
    ) -> tuple[int, int, list[Workspace]]:
        spaces = list(self.workspaces.values())
        if search:
            spaces = [w for w in spaces if search.casefold() in w.name.casefold()]
        total = len(spaces)
        start = (page - 1) * page_size
        return total, max(1, math.ceil(total / page_size)), spaces[start : start + page_size]

    def form_count(self, workspace_id: str) -> int:
        return sum(1 for f in self.forms.values() if f.workspace_id == workspace_id)

    # ----------------------------------------------------------------- webhooks

    def list_webhooks(self, form_id: str) -> list[Webhook]:
        """One form's webhooks, in the order they were created; costs that form's webhooks."""
        return list(self._by_form.get(form_id, {}).values())

    def get_webhook(self, form_id: str, tag: str) -> Webhook | None:
        return self.webhooks.get((form_id, tag))

    def put_webhook(self, form_id: str, tag: str, change: WebhookChange) -> tuple[Webhook, bool]:
        """Create or update; returns ``(webhook, created)``. The form must exist.

        On create, left-out fields take the API's defaults (``enabled: false``, as Typeform's
        own SDK sends by default; ``verify_ssl: true``; ``event_types: {form_response: true}``).
        On update, left-out fields keep their values and ``updated_at`` moves only if a value
        (the secret included) actually changed.
        """
        if form_id not in self.forms:
            raise KeyError(form_id)
        secret_sha256 = hash_secret(change.secret) if change.secret else None
        plain = self.settings.secret_echo is SecretEcho.PLAIN
        current = self.webhooks.get((form_id, tag))
        if current is None:
            if change.url is None:
                raise ValueError("url is required to create a webhook")
            stamp = self.timestamp()
            hook = Webhook(
                id=self._new_id(),
                form_id=form_id,
                tag=tag,
                url=change.url,
                enabled=change.enabled if change.enabled is not None else False,
                verify_ssl=change.verify_ssl if change.verify_ssl is not None else True,
                event_types=_event_types(change.event_types),
                created_at=stamp,
                updated_at=stamp,
                secret_sha256=secret_sha256,
                secret=change.secret if plain and change.secret else None,
            )
            self._add(hook)
            self._record({"op": "put", "webhook": hook.to_json()})
            return hook, True
        updated = {
            "url": change.url if change.url is not None else current.url,
            "enabled": change.enabled if change.enabled is not None else current.enabled,
            "verify_ssl": (
                change.verify_ssl if change.verify_ssl is not None else current.verify_ssl
            ),
            "event_types": (
                _event_types(change.event_types)
                if change.event_types is not None
                else current.event_types
            ),
            # An empty string clears the secret; leaving it out keeps it.
            "secret_sha256": secret_sha256 if change.secret is not None else current.secret_sha256,
        }
        if any(getattr(current, key) != value for key, value in updated.items()):
            for key, value in updated.items():
                setattr(current, key, value)
            if change.secret is not None:
                current.secret = change.secret if plain and change.secret else None
            current.updated_at = self.timestamp()
            self._record({"op": "put", "webhook": current.to_json()})
        elif plain and change.secret and current.secret is None:
            # The same secret, set again in plain mode: now it can be echoed (and kept).
            current.secret = change.secret
            self._record({"op": "put", "webhook": current.to_json()})
        return current, False

    def delete_webhook(self, form_id: str, tag: str) -> bool:
        if self._remove(form_id, tag) is None:
            return False
        self._record({"op": "delete", "form_id": form_id, "tag": tag})
        return True

    # ----------------------------------------------------------------- JSON

    def to_json(self) -> dict[str, Any]:
        """Everything, as persisted (secrets as SHA-256 only, outside plain mode)."""
        return {
            "format_version": FORMAT_VERSION,
            "settings": self.settings.to_json(),
            "seed": self.seed.to_json(),
            "workspaces": [{"id": w.id, "name": w.name} for w in self.workspaces.values()],
            "forms": [
                {
                    "id": f.id,
                    "title": f.title,
                    "workspace_id": f.workspace_id,
                    "created_at": f.created_at,
                    "last_updated_at": f.last_updated_at,
                }
                for f in self.forms.values()
            ],
            "webhooks": [w.to_json() for w in self.webhooks.values()],
            "stats": self.stats.to_json(),
        }

    def load_json(self, data: Mapping[str, Any]) -> None:
        """Replace this store's content in place with a persisted document.

        A document with only ``settings`` (a test's quick config) starts from the demo seed.
        Raises ``ValueError`` for a document this version cannot read.
        """
        version = data.get("format_version", FORMAT_VERSION)
        if version != FORMAT_VERSION:
            raise ValueError(f"format_version {version!r} is not supported (expected 1)")
        settings = EmulatorSettings.from_json(data.get("settings"))
        seed = parse_seed(data["seed"]) if "seed" in data else DEMO_SEED
        self.settings = settings
        self.apply_seed(seed)
        if "forms" in data:
            self._load_account(data)
        self.stats = Stats.from_json(data.get("stats"))
        self.touch()

    def _load_account(self, data: Mapping[str, Any]) -> None:
        plain = self.settings.secret_echo is SecretEcho.PLAIN
        try:
            self.workspaces = {
                str(w["id"]): Workspace(str(w["id"]), str(w["name"]))
                for w in data.get("workspaces", [])
            }
            self.forms = {
                str(f["id"]): Form(
                    id=str(f["id"]),
                    title=str(f["title"]),
                    workspace_id=f.get("workspace_id"),
                    created_at=str(f["created_at"]),
                    last_updated_at=str(f.get("last_updated_at", f["created_at"])),
                )
                for f in data["forms"]
            }
            self._clear_webhooks()
            for w in data.get("webhooks", []):
                hook = Webhook.from_json(w)
                if not plain:
                    hook.secret = None
                self._add(hook)
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"malformed account data ({type(exc).__name__}: {exc})") from exc

    @classmethod
    def from_json(
        cls, data: Mapping[str, Any], *, now: Callable[[], datetime] = utc_now
    ) -> EmulatorStore:
        store = cls(now=now)
        store.load_json(data)
        return store

    # ----------------------------------------------------------------- files

    def save(self, path: str | Path) -> None:
        """Write a new snapshot atomically (a reader sees the old file or the new one, never
        half of one) and retire the journal it now contains."""
        from reconciler.emulator.persist import save_snapshot

        save_snapshot(self, Path(path))

    @classmethod
    def load(cls, path: str | Path, *, now: Callable[[], datetime] = utc_now) -> EmulatorStore:
        """Read a persisted account (snapshot and journal); a bad file is a ``ConfigError``."""
        from reconciler.emulator.persist import load_into

        store = cls(now=now)
        load_into(store, Path(path))
        return store


def _event_types(value: Mapping[str, bool] | None) -> dict[str, bool]:
    """The stored form: both known keys, missing ones false; absent means form_response only."""
    if value is None:
        return dict(DEFAULT_EVENT_TYPES)
    return {
        "form_response": bool(value.get("form_response", False)),
        "form_response_partial": bool(value.get("form_response_partial", False)),
    }


# --------------------------------------------------------------------------- helpers for files


def load_or_seed(
    path: str | Path, *, seed: Seed = DEMO_SEED, now: Callable[[], datetime] = utc_now
) -> EmulatorStore:
    """The account persisted at ``path``; on first use, a new one from ``seed``, saved there."""
    path = Path(path)
    if path.exists():
        return EmulatorStore.load(path, now=now)
    store = EmulatorStore(seed, now=now)
    store.save(path)
    return store


def configure(
    path: str | Path,
    *,
    rate: float | None = None,
    burst: int | None = None,
    faults: Faults | Mapping[str, Any] | None = None,
    seed: Seed | None = None,
    secret_echo: SecretEcho | str | None = None,
    event_types_echo: EventTypesEcho | str | None = None,
    tokens: Mapping[str, Any] | None = None,
) -> EmulatorStore:
    """Set the settings of the persisted emulator at ``path`` (creating it if needed).

    What tests and scripts call before running CLI commands against ``emulator:PATH``:
    ``configure(path, rate=1000)`` makes the in-process emulator effectively unthrottled;
    ``configure(path, tokens={"tok": {"account": "a", "scopes": ["webhooks:read"]}})`` makes it
    accept only that token, read-only (only the token's SHA-256 is written). ``None`` keeps a
    setting as it is.
    """
    store = load_or_seed(path)
    if seed is not None:
        store.apply_seed(seed)
    if rate is not None:
        if not rate > 0:
            raise ConfigError("emulator rate must be positive")
        store.settings.rate = float(rate)
        if burst is None:
            store.settings.burst = max(store.settings.burst, math.ceil(rate))
    if burst is not None:
        if burst < 1:
            raise ConfigError("emulator burst must be at least 1")
        store.settings.burst = burst
    try:
        if faults is not None:
            store.settings.faults = (
                faults if isinstance(faults, Faults) else Faults.from_json(faults)
            )
        store.settings.set_modes(
            secret_echo=secret_echo, event_types_echo=event_types_echo, tokens=tokens
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    store.settings_changed()
    store.save(path)
    return store

"""The emulated Typeform account: workspaces, forms, webhooks, settings and stats, in memory.

One ``EmulatorStore`` is one account. The HTTP layer (``app.py``) validates requests and calls
the methods here, which keep Typeform's bookkeeping: random alphanumeric webhook ids,
``created_at`` set once, ``updated_at`` moved only by a write that changed something, fields left
out of an update keeping their values. ``version`` grows with every change so the caller knows
when to persist.

Persistence is JSON, written atomically (temp file in the same directory, fsync, rename), so a
crash never leaves a half-written account. The file also keeps the emulator's settings (rate,
burst, faults) so the in-process emulator obeys them across CLI invocations.

Never stored, persisted or shown: a webhook secret. Only its SHA-256 is kept.
"""

from __future__ import annotations

import json
import math
import secrets
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reconciler.emulator.faults import Faults
from reconciler.emulator.seed import DEMO_SEED, Seed, hash_secret, parse_seed
from reconciler.errors import ConfigError
from reconciler.fileio import write_json_atomic
from reconciler.models import DEFAULT_RATE

__all__ = [
    "FORMAT_VERSION",
    "EmulatorSettings",
    "EmulatorStore",
    "Form",
    "Stats",
    "Webhook",
    "WebhookChange",
    "Workspace",
    "configure",
    "format_timestamp",
    "load_or_seed",
    "utc_now",
]

FORMAT_VERSION = 1
DEFAULT_BURST = 2
_ID_ALPHABET = string.ascii_letters + string.digits


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

    def to_api(self) -> dict[str, Any]:
        """The API's representation. The secret is write-only: it is never part of it."""
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
        return {**self.to_api(), "secret_sha256": self.secret_sha256}


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

    def to_json(self) -> dict[str, Any]:
        return {"rate": self.rate, "burst": self.burst, "faults": self.faults.to_json()}

    @classmethod
    def from_json(cls, obj: Any) -> EmulatorSettings:
        """Raises ``ValueError`` naming the bad key."""
        if obj is None:
            return cls()
        if not isinstance(obj, Mapping):
            raise ValueError("settings must be an object")
        unknown = set(obj) - {"rate", "burst", "faults"}
        if unknown:
            raise ValueError(f"settings: unknown key(s) {', '.join(sorted(unknown))}")
        rate = obj.get("rate", DEFAULT_RATE)
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not rate > 0:
            raise ValueError("settings.rate: a positive number of requests per second")
        burst = obj.get("burst", max(DEFAULT_BURST, math.ceil(rate)))
        if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
            raise ValueError("settings.burst: an integer >= 1")
        return cls(rate=float(rate), burst=burst, faults=Faults.from_json(obj.get("faults")))


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
        self.apply_seed(seed)

    # ----------------------------------------------------------------- lifecycle

    def touch(self) -> None:
        """Record that something persisted changed (the caller saves when ``version`` moves)."""
        self.version += 1

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
        self.webhooks = {}
        for w in seed.webhooks:
            created = w.created_at or stamp
            self.webhooks[(w.form_id, w.tag)] = Webhook(
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
        self.touch()

    def reset(self, *, empty: bool = False) -> None:
        """Back to the seed (or to the seed's forms without any webhook), stats cleared."""
        self.apply_seed(self.seed)
        if empty:
            self.webhooks.clear()
        self.stats = Stats()
        self.touch()

    def timestamp(self) -> str:
        return format_timestamp(self._now())

    def _new_id(self) -> str:
        existing = {w.id for w in self.webhooks.values()}
        while True:
            candidate = "".join(secrets.choice(_ID_ALPHABET) for _ in range(10))
            if candidate not in existing:
                return candidate

    # ----------------------------------------------------------------- forms

    def list_forms(
        self,
        *,
        page: int = 1,
        page_size: int = 10,
        search: str | None = None,
        workspace_id: str | None = None,
    ) -> tuple[int, int, list[Form]]:
        """``(total_items, page_count, items)`` of one page, in a stable order."""
        forms = list(self.forms.values())
        if workspace_id:
            forms = [f for f in forms if f.workspace_id == workspace_id]
        if search:
            needle = search.casefold()
            forms = [f for f in forms if needle in f.title.casefold() or needle in f.id.casefold()]
        total = len(forms)
        page_count = max(1, math.ceil(total / page_size))
        start = (page - 1) * page_size
        return total, page_count, forms[start : start + page_size]

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
        return [w for (fid, _), w in self.webhooks.items() if fid == form_id]

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
            )
            self.webhooks[(form_id, tag)] = hook
            self.touch()
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
            current.updated_at = self.timestamp()
            self.touch()
        return current, False

    def delete_webhook(self, form_id: str, tag: str) -> bool:
        if self.webhooks.pop((form_id, tag), None) is None:
            return False
        self.touch()
        return True

    # ----------------------------------------------------------------- JSON

    def to_json(self) -> dict[str, Any]:
        """Everything, as persisted (secrets as SHA-256 only)."""
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
            self.webhooks = {}
            for w in data.get("webhooks", []):
                hook = Webhook(
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
                )
                self.webhooks[(hook.form_id, hook.tag)] = hook
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
        """Write atomically: a reader sees the old file or the new one, never half of one."""
        write_json_atomic(Path(path), self.to_json())

    @classmethod
    def load(cls, path: str | Path, *, now: Callable[[], datetime] = utc_now) -> EmulatorStore:
        """Read a persisted account; a bad file is a ``ConfigError`` naming it."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read emulator state {path}: {exc.strerror}") from exc
        except json.JSONDecodeError as exc:
            raise ConfigError(f"emulator state {path} is not valid JSON: {exc}") from exc
        if not isinstance(data, Mapping):
            raise ConfigError(f"emulator state {path}: expected a JSON object")
        try:
            return cls.from_json(data, now=now)
        except ValueError as exc:
            raise ConfigError(f"emulator state {path}: {exc}") from exc


def _event_types(value: Mapping[str, bool] | None) -> dict[str, bool]:
    """The stored form: both known keys, missing ones false; absent means form_response only."""
    if value is None:
        return {"form_response": True, "form_response_partial": False}
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
) -> EmulatorStore:
    """Set the settings of the persisted emulator at ``path`` (creating it if needed).

    What tests and scripts call before running CLI commands against ``emulator:PATH``:
    ``configure(path, rate=1000)`` makes the in-process emulator effectively unthrottled.
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
    if faults is not None:
        try:
            store.settings.faults = (
                faults if isinstance(faults, Faults) else Faults.from_json(faults)
            )
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
    store.save(path)
    return store

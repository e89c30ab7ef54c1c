"""The accounts the emulator starts with: the built-in demo seed and seed files (YAML or JSON).

A seed file (SPEC section 9) looks like::

    workspaces: [{id, name}]
    forms:      [{id, title, workspace_id}]
    webhooks:   [{form_id, tag, url, enabled, verify_ssl, event_types, secret}]

Webhook fields other than ``form_id``, ``tag`` and ``url`` are optional; ``event_types`` is the
API's object (``{form_response: true}``) or a list of names. A bad seed is a ``ConfigError`` that
names the file and the entry.

A parsed ``Seed`` never holds a secret: a webhook's secret is replaced by its SHA-256 right
here, so a seed can be persisted and shown without leaking anything. The demo seed's form ids
(``onbrd01`` ... ``fdbk001``) are used by the example manifests: keep them.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from reconciler.errors import ConfigError
from reconciler.models import EVENT_TYPE_NAMES

__all__ = [
    "DEMO_SEED",
    "Seed",
    "SeedForm",
    "SeedWebhook",
    "SeedWorkspace",
    "hash_secret",
    "load_seed",
    "parse_seed",
]

FORM_ID_RE = re.compile(r"^[A-Za-z0-9]{1,64}$")
TAG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def hash_secret(secret: str) -> str:
    """The only form in which the emulator keeps a webhook secret."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class SeedWorkspace:
    id: str
    name: str

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name}


@dataclass(frozen=True, slots=True)
class SeedForm:
    id: str
    title: str
    workspace_id: str | None = None
    created_at: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "title": self.title}
        if self.workspace_id is not None:
            out["workspace_id"] = self.workspace_id
        if self.created_at is not None:
            out["created_at"] = self.created_at
        return out


@dataclass(frozen=True, slots=True)
class SeedWebhook:
    form_id: str
    tag: str
    url: str
    enabled: bool = True
    verify_ssl: bool = True
    event_types: Mapping[str, bool] = field(
        default_factory=lambda: {"form_response": True, "form_response_partial": False}
    )
    secret_sha256: str | None = field(default=None, repr=False)
    id: str | None = None
    created_at: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "form_id": self.form_id,
            "tag": self.tag,
            "url": self.url,
            "enabled": self.enabled,
            "verify_ssl": self.verify_ssl,
            "event_types": dict(self.event_types),
        }
        for key in ("secret_sha256", "id", "created_at"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out


@dataclass(frozen=True, slots=True)
class Seed:
    workspaces: tuple[SeedWorkspace, ...] = ()
    forms: tuple[SeedForm, ...] = ()
    webhooks: tuple[SeedWebhook, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "workspaces": [w.to_json() for w in self.workspaces],
            "forms": [f.to_json() for f in self.forms],
            "webhooks": [w.to_json() for w in self.webhooks],
        }


def load_seed(path: str | Path) -> Seed:
    """Read a YAML or JSON seed file; any problem is a ``ConfigError`` naming the file."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read seed file {source}: {exc.strerror}") from exc
    try:
        data = json.loads(text) if source.endswith(".json") else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"seed file {source} is not valid YAML/JSON: {_first_line(exc)}") from exc
    try:
        return parse_seed(data)
    except ValueError as exc:
        raise ConfigError(f"seed file {source}: {exc}") from exc


def parse_seed(data: Any) -> Seed:
    """Validate a seed document; raises ``ValueError`` naming the offending entry."""
    if data is None:
        return Seed()
    if not isinstance(data, Mapping):
        raise ValueError("a seed is an object with workspaces, forms and webhooks")
    _no_unknown(data, {"workspaces", "forms", "webhooks"}, "seed")
    workspaces = tuple(
        _workspace(obj, f"workspaces[{i}]") for i, obj in enumerate(_list(data, "workspaces"))
    )
    forms = tuple(_form(obj, f"forms[{i}]") for i, obj in enumerate(_list(data, "forms")))
    webhooks = tuple(
        _webhook(obj, f"webhooks[{i}]") for i, obj in enumerate(_list(data, "webhooks"))
    )
    _unique([w.id for w in workspaces], "workspaces", "workspace id")
    _unique([f.id for f in forms], "forms", "form id")
    _unique([f"{w.form_id}/{w.tag}" for w in webhooks], "webhooks", "form_id/tag")
    workspace_ids = {w.id for w in workspaces}
    for i, form in enumerate(forms):
        if form.workspace_id is not None and form.workspace_id not in workspace_ids:
            raise ValueError(f"forms[{i}].workspace_id: no workspace {form.workspace_id!r}")
    form_ids = {f.id for f in forms}
    for i, hook in enumerate(webhooks):
        if hook.form_id not in form_ids:
            raise ValueError(f"webhooks[{i}].form_id: no form {hook.form_id!r} in the seed")
    return Seed(workspaces=workspaces, forms=forms, webhooks=webhooks)


# --------------------------------------------------------------------------- entries


def _workspace(obj: Any, where: str) -> SeedWorkspace:
    obj = _object(obj, where)
    _no_unknown(obj, {"id", "name"}, where)
    return SeedWorkspace(id=_str(obj, "id", where), name=_str(obj, "name", where))


def _form(obj: Any, where: str) -> SeedForm:
    obj = _object(obj, where)
    _no_unknown(obj, {"id", "title", "workspace_id", "created_at"}, where)
    form_id = _str(obj, "id", where)
    if not FORM_ID_RE.match(form_id):
        raise ValueError(f"{where}.id: {form_id!r} is not a form id (1-64 letters and digits)")
    workspace_id = obj.get("workspace_id")
    if workspace_id is not None:
        workspace_id = _str(obj, "workspace_id", where)
    return SeedForm(
        id=form_id,
        title=_str(obj, "title", where),
        workspace_id=workspace_id,
        created_at=_timestamp(obj, where),
    )


def _webhook(obj: Any, where: str) -> SeedWebhook:
    obj = _object(obj, where)
    _no_unknown(
        obj,
        {
            "form_id",
            "tag",
            "url",
            "enabled",
            "verify_ssl",
            "event_types",
            "secret",
            "secret_sha256",
            "id",
            "created_at",
        },
        where,
    )
    tag = _str(obj, "tag", where)
    if not TAG_RE.match(tag):
        raise ValueError(f"{where}.tag: {tag!r} is not a valid tag")
    url = _str(obj, "url", where)
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"{where}.url: must be an absolute http(s) URL")
    secret_sha256: str | None = None
    if obj.get("secret") is not None:
        secret_sha256 = hash_secret(_str(obj, "secret", where))
    elif obj.get("secret_sha256") is not None:
        secret_sha256 = _str(obj, "secret_sha256", where)
    webhook_id = obj.get("id")
    if webhook_id is not None:
        webhook_id = _str(obj, "id", where)
    return SeedWebhook(
        form_id=_str(obj, "form_id", where),
        tag=tag,
        url=url,
        enabled=_bool(obj, "enabled", where, default=True),
        verify_ssl=_bool(obj, "verify_ssl", where, default=True),
        event_types=_event_types(obj.get("event_types"), f"{where}.event_types"),
        secret_sha256=secret_sha256,
        id=webhook_id,
        created_at=_timestamp(obj, where),
    )


def _event_types(value: Any, where: str) -> dict[str, bool]:
    if value is None:
        return {"form_response": True, "form_response_partial": False}
    if isinstance(value, list):
        unknown = [v for v in value if v not in EVENT_TYPE_NAMES]
        if unknown or not value:
            raise ValueError(f"{where}: a non-empty list of {', '.join(EVENT_TYPE_NAMES)}")
        return {name: name in value for name in EVENT_TYPE_NAMES}
    if isinstance(value, Mapping):
        unknown = [k for k in value if k not in EVENT_TYPE_NAMES]
        if unknown:
            raise ValueError(f"{where}: unknown event type(s) {', '.join(map(str, unknown))}")
        if not all(isinstance(v, bool) for v in value.values()):
            raise ValueError(f"{where}: every value must be true or false")
        return {name: bool(value.get(name, False)) for name in EVENT_TYPE_NAMES}
    raise ValueError(f"{where}: an object like {{form_response: true}} or a list of names")


# --------------------------------------------------------------------------- helpers


def _object(obj: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(obj, Mapping):
        raise ValueError(f"{where}: must be an object")
    return obj


def _list(data: Mapping[str, Any], key: str) -> list[Any]:
    value = data.get(key, [])
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"{key}: must be a list")
    return value


def _str(obj: Mapping[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{where}.{key}: a non-empty string is required")
    return value


def _bool(obj: Mapping[str, Any], key: str, where: str, *, default: bool) -> bool:
    value = obj.get(key, default)
    if not isinstance(value, bool):
        raise ValueError(f"{where}.{key}: must be true or false")
    return value


def _timestamp(obj: Mapping[str, Any], where: str) -> str | None:
    value = obj.get("created_at")
    if value is None:
        return None
    if isinstance(value, datetime):  # YAML parses unquoted timestamps itself
        value = value.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    if not isinstance(value, str):
        raise ValueError(f"{where}.created_at: an ISO-8601 timestamp")
    try:
        datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{where}.created_at: {value!r} is not an ISO-8601 timestamp") from None
    return value


def _no_unknown(obj: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(str(k) for k in obj if k not in allowed)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)}")


def _unique(values: list[str], where: str, what: str) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"{where}: duplicate {what} {value!r}")
        seen.add(value)


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


# --------------------------------------------------------------------------- demo seed

_T0 = "2024-01-15T09:00:00.000Z"

DEMO_SEED = Seed(
    workspaces=(
        SeedWorkspace(id="wsclnt01", name="Client services"),
        SeedWorkspace(id="wsmrkt01", name="Marketing"),
    ),
    forms=(
        SeedForm("onbrd01", "Client onboarding — intake", "wsclnt01", _T0),
        SeedForm("onbrd02", "Client onboarding — documents", "wsclnt01", _T0),
        SeedForm("onbrd03", "Client onboarding — kickoff scheduling", "wsclnt01", _T0),
        SeedForm("kyc0001", "KYC — identity verification", "wsclnt01", _T0),
        SeedForm("fdbk001", "Customer feedback survey", "wsmrkt01", _T0),
        SeedForm("nwsl001", "Newsletter sign-up", "wsmrkt01", _T0),
        SeedForm("evnt001", "Event registration — spring meetup", "wsmrkt01", _T0),
    ),
    webhooks=(
        # Declared by no manifest: plan lists it as unmanaged and never touches it.
        SeedWebhook(
            form_id="onbrd02",
            tag="crm-sync",
            url="https://crm.example.com/hooks/typeform",
            id="Wh0crmSync",
            created_at=_T0,
        ),
        # The manifests declare it `state: absent`: apply deletes it.
        SeedWebhook(
            form_id="onbrd01",
            tag="legacy-zapier",
            url="https://hooks.zapier.example.com/hooks/catch/123456/abcdef/",
            id="Wh0zapier1",
            created_at=_T0,
        ),
    ),
)

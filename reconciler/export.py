"""Export: an account's live webhooks as manifests, so an existing account can be adopted.

Users start with accounts that already have webhooks. ``export`` reads them (``GET /forms``,
paged, and ``GET /forms/{id}/webhooks``, through a client that can only send GET) and returns an
``Export`` whose ``to_yaml()`` is one WebhookSet per account (plus the Account document for a
non-default account) that ``reconcile validate`` accepts and that ``reconcile plan`` finds in
sync, except for the secrets the user still has to supply.

What it must never do: write to the API; put a secret value from a response anywhere (a live
``secret``, plain or masked, only tells us that one is set, and is dropped right here); emit a
manifest that the schema would reject (an entry it cannot express is left out, with a comment and
a notice saying why).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import anyio
import yaml
from jsonschema import Draft202012Validator

from reconciler.client import TypeformClient
from reconciler.credentials import DEFAULT_TOKEN_ENV
from reconciler.errors import ConfigError, FormNotFoundError, ReconcileError
from reconciler.events import Notice, Progress
from reconciler.manifests import load_schema
from reconciler.models import (
    DEFAULT_ACCOUNT,
    DEFAULT_RATE,
    Account,
    DesiredState,
    EventTypes,
    LiveWebhook,
    SecretSource,
    WebhookKey,
)
from reconciler.pipeline import Run, open_clients

__all__ = ["Export", "ExportedWebhook", "SkippedWebhook", "export", "set_name"]

API_VERSION = "reconciler/v1"
_ID = re.compile(r"^[A-Za-z0-9]{1,64}$")
_NAME_LIMIT = 63
_SET_PREFIX = "exported-"
SET_SECRET_COMMENT = "# set this: the API never returns secrets"
MAYBE_SECRET_COMMENT = "# uncomment if this webhook has a secret"


@dataclass(frozen=True, slots=True)
class ExportedWebhook:
    """One live webhook as a manifest entry. Holds no secret: only the variable to set."""

    key: WebhookKey
    url: str
    enabled: bool
    verify_ssl: bool
    event_types: EventTypes
    secret_env: str
    """The ``{env: NAME}`` placeholder offered for its secret."""
    has_secret: bool
    """The response carried ``secret`` (plain or masked): the placeholder is live, not commented."""

    def entry(self) -> dict[str, Any]:
        """The manifest entry, without the secret (``to_yaml`` writes that line itself)."""
        return {
            "form_id": self.key.form_id,
            "tag": self.key.tag,
            "url": self.url,
            "enabled": self.enabled,
            "verify_ssl": self.verify_ssl,
            "event_types": list(self.event_types.names()),
        }


@dataclass(frozen=True, slots=True)
class SkippedWebhook:
    """A live webhook a manifest cannot express (the schema would reject it): left out."""

    key: WebhookKey
    reason: str


@dataclass(frozen=True, slots=True)
class Export:
    """The live webhooks of one account, as manifests."""

    account: Account
    forms: tuple[str, ...]
    """Every form read, sorted."""
    webhooks: tuple[ExportedWebhook, ...]
    """Sorted by (form_id, tag)."""
    skipped: tuple[SkippedWebhook, ...] = ()

    @property
    def secrets_to_set(self) -> tuple[str, ...]:
        """The variables the user must set before planning (live placeholders only)."""
        return tuple(w.secret_env for w in self.webhooks if w.has_secret)

    def to_yaml(self) -> str:
        """YAML documents: the Account (non-default accounts), then the WebhookSet; comments
        say which secrets to set and what was left out."""
        name = self.account.name
        header = [
            f"# Exported by `reconcile export` from account '{name}': "
            f"{_count(len(self.webhooks), 'webhook')} on {_count(len(self.forms), 'form')}.",
            "# Secrets are write-only in the API: set every variable named on a 'secret:' line,",
            "# and uncomment a '# secret:' line where that webhook has a secret too.",
        ]
        header += [_one_line(f"# left out {s.key}: {s.reason}") for s in self.skipped]
        docs = []
        if name != DEFAULT_ACCOUNT:
            docs.append(_account_yaml(self.account))
        docs.append(self._set_yaml())
        return "\n".join(header) + "\n" + "".join(f"---\n{d}" for d in docs)

    def _set_yaml(self) -> str:
        spec: dict[str, Any] = {}
        if self.account.name != DEFAULT_ACCOUNT:
            spec["account"] = self.account.name
        spec["webhooks"] = [{**w.entry(), "secret": {"env": w.secret_env}} for w in self.webhooks]
        text = _dump(
            {
                "apiVersion": API_VERSION,
                "kind": "WebhookSet",
                "metadata": {"name": set_name(self.account.name)},
                "spec": spec,
            }
        )
        # The secret lines carry the comments. Each placeholder is a unique name we made up
        # from [A-Z0-9_], on a line of its own: matching the whole line is unambiguous.
        lines = []
        by_line = {f"secret: {{env: {w.secret_env}}}": w for w in self.webhooks}
        for line in text.splitlines():
            hook = by_line.get(line.strip())
            if hook is not None:
                indent = line[: len(line) - len(line.lstrip())]
                if hook.has_secret:
                    line = f"{line}  {SET_SECRET_COMMENT}"
                else:
                    line = f"{indent}# {line.strip()}  {MAYBE_SECRET_COMMENT}"
            lines.append(line)
        return "\n".join(lines) + "\n"


def set_name(account: str) -> str:
    """``exported-ACCOUNT``, cut to a DNS label (63 characters, ending in a letter or digit)."""
    return (_SET_PREFIX + account)[:_NAME_LIMIT].rstrip("-")


async def export(
    run: Run,
    desired: DesiredState,
    *,
    forms: Sequence[str] = (),
    workspace: str | None = None,
    all_forms: bool = False,
    account: str = DEFAULT_ACCOUNT,
) -> Export:
    """Read the live webhooks of ``forms``, of every form of ``workspace``, or of every form of
    the account (``all_forms``): exactly one of the three. ``desired`` supplies the Account
    documents (a non-default account must be declared there). Never sends anything but GET.
    """
    chosen = sum((bool(forms), workspace is not None, all_forms))
    if chosen != 1:
        raise ConfigError("give exactly one of --form ID (repeatable), --workspace ID, --all")
    for form_id in forms:
        _check_id("--form", form_id)
    if workspace is not None:
        _check_id("--workspace", workspace)
    async with open_clients(run, desired, [account], read_only=True) as clients:
        client = clients[account]
        if forms:
            form_ids = sorted(set(forms))
        else:
            listed = await client.list_forms(workspace_id=workspace)
            form_ids = sorted({str(f["id"]) for f in listed})
            if not form_ids:
                where = f"workspace {workspace!r}" if workspace else "the account"
                raise ConfigError(
                    f"no forms found in {where} of account {account!r} (check the id and that "
                    "the token has the forms:read scope)"
                )
        live = await _webhooks_of(run, client, form_ids, named=bool(forms))
    return _build(desired.account(account), tuple(form_ids), live, desired, run)


# --------------------------------------------------------------------------- reading


async def _webhooks_of(
    run: Run, client: TypeformClient, form_ids: Sequence[str], *, named: bool
) -> list[LiveWebhook]:
    """Every webhook of ``form_ids``, concurrently (the client paces); the first failure, in
    form order, stops the rest and is raised."""
    found: dict[str, list[LiveWebhook]] = {}
    failures: dict[str, ReconcileError] = {}

    async with anyio.create_task_group() as tg:

        async def one(form_id: str) -> None:
            try:
                found[form_id] = await client.list_webhooks(form_id)
            except ReconcileError as exc:
                failures[form_id] = exc
                tg.cancel_scope.cancel()
                return
            run.events(Progress(len(found), len(form_ids)))

        for form_id in form_ids:
            tg.start_soon(one, form_id)
    if failures:
        form_id = min(failures)
        exc = failures[form_id]
        if named and isinstance(exc, FormNotFoundError):
            raise ConfigError(
                f"--form {form_id}: no such form in account '{client.account}' (or its token "
                "cannot read it)"
            ) from None
        raise exc
    return [hook for form_id in form_ids for hook in found[form_id]]


def _check_id(option: str, value: str) -> None:
    if not _ID.match(value):
        raise ConfigError(f"{option} {value!r}: not an id (1 to 64 letters and digits)")


# --------------------------------------------------------------------------- building


def _build(
    account: Account,
    form_ids: tuple[str, ...],
    live: Iterable[LiveWebhook],
    desired: DesiredState,
    run: Run,
) -> Export:
    taken = _token_variables(desired)
    exported: list[ExportedWebhook] = []
    skipped: list[SkippedWebhook] = []
    for hook in sorted(live, key=lambda w: (w.key.form_id, w.key.tag)):
        entry = ExportedWebhook(
            key=hook.key,
            url=hook.url,
            enabled=hook.enabled,
            verify_ssl=hook.verify_ssl,
            event_types=hook.event_types,
            secret_env="",
            # Plain or masked, the value is dropped here: only its presence is kept.
            has_secret=hook.secret is not None,
        )
        problem = _problem(entry.entry())
        if problem is not None:
            skipped.append(SkippedWebhook(hook.key, problem))
            run.events(Notice(_one_line(f"export: left out {hook.key}: {problem}")))
            continue
        env = _unique(_secret_variable(hook.key), taken)
        taken.add(env)
        exported.append(_with_env(entry, env))
    return Export(account, form_ids, tuple(exported), tuple(skipped))


def _with_env(hook: ExportedWebhook, env: str) -> ExportedWebhook:
    return ExportedWebhook(
        hook.key, hook.url, hook.enabled, hook.verify_ssl, hook.event_types, env, hook.has_secret
    )


def _secret_variable(key: WebhookKey) -> str:
    parts = [key.form_id, key.tag]
    if key.account != DEFAULT_ACCOUNT:
        parts.insert(0, key.account)
    return "WEBHOOK_SECRET_" + "_".join(re.sub(r"[^A-Z0-9]", "_", p.upper()) for p in parts)


def _unique(name: str, taken: set[str]) -> str:
    """``name``, or ``name_2``, ``name_3``...: tags that differ only by case or punctuation
    (``a-b``, ``a.b``) must not share a variable, nor may a secret name a token variable."""
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        candidate = f"{name}_{n}"
    return candidate


def _token_variables(desired: DesiredState) -> set[str]:
    names = {DEFAULT_TOKEN_ENV}
    for account in desired.accounts:
        if account.token is not None and account.token.source is SecretSource.ENV:
            names.add(account.token.name)
    return names


@functools.cache
def _entry_validator() -> Draft202012Validator:
    schema = load_schema()
    return Draft202012Validator({"$ref": "#/$defs/webhook", "$defs": schema["$defs"]})


def _problem(entry: Mapping[str, Any]) -> str | None:
    """Why a manifest cannot hold ``entry``, or None.

    The schema is the one source of these rules; the loader also rejects a URL with user-info,
    which export checks itself because printing it would print a credential.
    """
    try:
        netloc = urlsplit(str(entry["url"])).netloc
    except ValueError:
        return "its url cannot be parsed"
    if "@" in netloc:
        return "its url carries credentials (user-info before '@'), which manifests reject"
    errors = sorted(_entry_validator().iter_errors(entry), key=lambda e: list(e.path))
    if not errors:
        return None
    error = errors[0]
    field = ".".join(str(p) for p in error.path) or "entry"
    message = error.message if len(error.message) <= 120 else error.message[:117] + "..."
    return f"its {field} cannot be written in a manifest ({message})"


# --------------------------------------------------------------------------- YAML


def _account_yaml(account: Account) -> str:
    spec: dict[str, Any] = {"api_url": account.api_url}
    if account.token is not None:
        spec["token"] = account.token.to_json()
    if account.rate_limit != DEFAULT_RATE:
        spec["rate_limit"] = account.rate_limit
    text = _dump(
        {
            "apiVersion": API_VERSION,
            "kind": "Account",
            "metadata": {"name": account.name},
            "spec": spec,
        }
    )
    if account.token is not None and account.token.source is SecretSource.FILE:
        text = (
            "# token: a {file:} path is relative to the manifest holding it: "
            "keep the file next to this one\n" + text
        )
    return text


def _dump(doc: Mapping[str, Any]) -> str:
    # default_flow_style=None: collections of scalars inline ({env: X}, [form_response]), so
    # each secret placeholder sits on one line; a wide width keeps long URLs on theirs.
    return yaml.safe_dump(
        doc, sort_keys=False, default_flow_style=None, width=1_000_000, allow_unicode=True
    )


_LINE_BREAKS = re.compile("[\x00-\x1f\x7f\x85\u2028\u2029]")


def _one_line(text: str) -> str:
    """``text`` with every control character and YAML line break shown as ``?``: a tag or URL
    the API returned must not end a comment and start a line of YAML (or of a terminal)."""
    return _LINE_BREAKS.sub("?", text)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"

"""Plan -> versioned JSON, and text / Markdown rendered *from that JSON*.

One source for every output: ``--format json`` prints ``plan_to_json``, ``plan --out`` saves it,
and the human renderings read nothing but that dict, so they can never show something the machine
output does not say. Order is stable (account, form_id, tag). Pure: no I/O, no terminal checks;
the caller decides colour. Secret values cannot appear: the Plan never holds one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from rich.text import Text

from reconciler.models import (
    DEFAULT_ACCOUNT,
    SENSITIVE,
    Action,
    Change,
    FieldChange,
    Location,
    Plan,
    SecretRef,
    SecretSource,
    UntouchedWebhook,
    WebhookKey,
)

__all__ = [
    "FORMAT_VERSION",
    "MARKDOWN_LIMIT",
    "plan_from_json",
    "plan_summary_line",
    "plan_to_json",
    "render_plan_markdown",
    "render_plan_text",
]

FORMAT_VERSION = "1"
MARKDOWN_LIMIT = 60_000
"""GitHub rejects PR comments over 65,536 characters; stay well below with room for a note."""

_STYLE = {"create": "green", "update": "yellow", "delete": "red", "noop": "dim"}
_VERB = {
    "create": "will be created",
    "update": "will be updated in place",
    "delete": "will be deleted",
    "noop": "unchanged",
}


# --------------------------------------------------------------------------- JSON


def _untouched_json(item: UntouchedWebhook, *, with_reason: bool) -> dict[str, Any]:
    row: dict[str, Any] = {**item.key.to_json(), "url": item.url}
    if with_reason:
        row["reason"] = item.reason
    return row


def _secret_ref_json(ref: SecretRef | None) -> dict[str, str] | None:
    """Where apply reads the secret: a variable's name or a file's path, never the value."""
    if ref is None:
        return None
    if ref.source is SecretSource.FILE:
        return {"file": ref.name, "base_dir": ref.base_dir}
    return {ref.source.value: ref.name}


def _change_json(change: Change) -> dict[str, Any]:
    ref = change.secret_ref
    return {
        "action": change.action.value,
        **change.key.to_json(),
        "before": dict(change.before) if change.before is not None else None,
        "after": dict(change.after) if change.after is not None else None,
        "changes": [
            {"field": fc.field, "before": fc.before, "after": fc.after} for fc in change.changes
        ],
        "reason": change.reason,
        "webhook_id": change.webhook_id,
        "location": str(change.location) if change.location else None,
        "secret_ref": _secret_ref_json(ref),
    }


def plan_summary(plan: Plan) -> dict[str, int]:
    return {
        "create": plan.count(Action.CREATE),
        "update": plan.count(Action.UPDATE),
        "delete": plan.count(Action.DELETE),
        "noop": plan.count(Action.NOOP),
        "unmanaged": len(plan.unmanaged),
        "prune_skipped": len(plan.prune_skipped),
    }


def plan_to_json(plan: Plan) -> dict[str, Any]:
    """The stable, versioned form of a plan (SPEC section 5), also the saved-plan file."""
    return {
        "format_version": FORMAT_VERSION,
        "created_at": plan.created_at,
        "prune": plan.prune,
        "summary": plan_summary(plan),
        "actions": [_change_json(c) for c in plan.changes],
        "unmanaged": [_untouched_json(u, with_reason=False) for u in plan.unmanaged],
        "prune_skipped": [_untouched_json(u, with_reason=True) for u in plan.prune_skipped],
        "guards": {
            "forms": [
                {"account": account, "form_id": form_id, "fingerprint": digest}
                for (account, form_id), digest in sorted(plan.live_fingerprints.items())
            ],
            "secrets": [
                {**key.to_json(), "fingerprint": digest}
                for key, digest in sorted(plan.secret_fingerprints.items())
            ],
        },
    }


def _parse_location(text: str | None) -> Location | None:
    if not text:
        return None
    file, _, rest = text.rpartition(":")
    file, _, line = file.rpartition(":")
    try:
        return Location(file, int(line), int(rest))
    except ValueError:
        return None


def _key(row: Mapping[str, Any]) -> WebhookKey:
    return WebhookKey(str(row["account"]), str(row["form_id"]), str(row["tag"]))


def _secret_ref(obj: Mapping[str, Any] | None) -> SecretRef | None:
    if not obj:
        return None
    for source in SecretSource:
        if source.value in obj:
            return SecretRef(source, str(obj[source.value]), str(obj.get("base_dir", ".")))
    raise ValueError(f"unknown secret reference {sorted(obj)}")


def plan_from_json(data: Mapping[str, Any]) -> Plan:
    """Read back a saved plan. Raises ``ValueError``/``KeyError`` on a malformed document."""
    if data.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"unsupported plan format_version {data.get('format_version')!r} "
            f"(this version reads {FORMAT_VERSION!r})"
        )
    changes = tuple(
        Change(
            action=Action(row["action"]),
            key=_key(row),
            before=row.get("before"),
            after=row.get("after"),
            changes=tuple(
                FieldChange(c["field"], c.get("before"), c.get("after"))
                for c in row.get("changes", ())
            ),
            reason=str(row.get("reason", "")),
            webhook_id=row.get("webhook_id"),
            secret_ref=_secret_ref(row.get("secret_ref")),
            location=_parse_location(row.get("location")),
        )
        for row in data["actions"]
    )
    guards = data.get("guards", {})
    return Plan(
        created_at=str(data["created_at"]),
        changes=changes,
        unmanaged=tuple(UntouchedWebhook(_key(r), str(r["url"])) for r in data["unmanaged"]),
        prune_skipped=tuple(
            UntouchedWebhook(_key(r), str(r["url"]), str(r.get("reason", "")))
            for r in data["prune_skipped"]
        ),
        live_fingerprints={
            (str(g["account"]), str(g["form_id"])): str(g["fingerprint"])
            for g in guards.get("forms", ())
        },
        secret_fingerprints={_key(g): str(g["fingerprint"]) for g in guards.get("secrets", ())},
        prune=bool(data.get("prune", False)),
    )


# --------------------------------------------------------------------------- shared helpers


def _name(row: Mapping[str, Any]) -> str:
    prefix = "" if row["account"] == DEFAULT_ACCOUNT else f"{row['account']}:"
    return f"{prefix}{row['form_id']}/{row['tag']}"


def _value(value: Any, *, field: str = "") -> str:
    if value == SENSITIVE:
        return SENSITIVE  # not a string the user wrote: print it bare, like Terraform
    if value is None:
        return "(unknown)" if field == "secret" else "null"
    return json.dumps(value, sort_keys=True)


def _field_lines(row: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(glyph, text) per field line of one action, shared by text and Markdown."""
    action = row["action"]
    changes = row["changes"]
    width = max((len(c["field"]) for c in changes), default=0)
    lines = []
    for c in changes:
        name = c["field"].ljust(width)
        if action == "create":
            lines.append(("+", f"{name} = {_value(c['after'])}"))
        elif action == "delete":
            lines.append(("-", f"{name} = {_value(c['before'])}"))
        else:
            before, after = _value(c["before"], field=c["field"]), _value(c["after"])
            lines.append(("~", f"{name} = {before} -> {after}"))
    return lines


def plan_summary_line(doc: Mapping[str, Any]) -> str:
    s = doc["summary"]
    if not (s["create"] or s["update"] or s["delete"]):
        line = f"No changes. Live webhooks match the manifests: {s['noop']} unchanged"
    else:
        line = (
            f"Plan: {s['create']} to create, {s['update']} to update, "
            f"{s['delete']} to delete, {s['noop']} unchanged"
        )
    extras = []
    if s["unmanaged"]:
        extras.append(f"{s['unmanaged']} unmanaged")
    if s["prune_skipped"]:
        extras.append(f"{s['prune_skipped']} deletion(s) skipped without --prune")
    return line + (f" ({', '.join(extras)})." if extras else ".")


# --------------------------------------------------------------------------- text


def render_plan_text(doc: Mapping[str, Any], *, show_noop: bool = False) -> Text:
    """Terraform-like text with styles; print it through a rich Console that decides colour."""
    out = Text()
    writes = [r for r in doc["actions"] if r["action"] != "noop" or show_noop]
    if writes:
        out.append("Typeform webhooks will change as follows:\n\n", style="bold")
    for row in writes:
        style = _STYLE[row["action"]]
        glyph = Action(row["action"]).glyph
        out.append(f"  {glyph} ", style=f"bold {style}")
        out.append(_name(row), style="bold")
        out.append(f"  {_VERB[row['action']]}\n")
        for field_glyph, text in _field_lines(row):
            out.append(f"      {field_glyph} ", style=_STYLE[row["action"]])
            out.append(text + "\n")
        if row["reason"]:
            out.append(f"      # {row['reason']}\n", style="dim")
        out.append("\n")
    if doc["prune_skipped"]:
        out.append("Deletions skipped (pass --prune to delete):\n", style="bold")
        for item in doc["prune_skipped"]:
            out.append(f"    {_name(item)}  {item['url']}\n")
            out.append(f"      # {item['reason']}\n", style="dim")
        out.append("\n")
    if doc["unmanaged"]:
        out.append("Unmanaged webhooks (listed, never touched):\n", style="bold")
        for item in doc["unmanaged"]:
            out.append(f"    {_name(item)}  {item['url']}\n", style="dim")
        out.append("\n")
    out.append(plan_summary_line(doc) + "\n", style="bold")
    return out


# --------------------------------------------------------------------------- markdown


def render_plan_markdown(doc: Mapping[str, Any], *, limit: int = MARKDOWN_LIMIT) -> str:
    """Markdown for PR comments and ``$GITHUB_STEP_SUMMARY``: summary first, then details."""
    s = doc["summary"]
    head = [
        "### Typeform webhooks plan",
        "",
        f"**{plan_summary_line(doc)}**",
        "",
        "| create | update | delete | unchanged | unmanaged | prune skipped |",
        "|---:|---:|---:|---:|---:|---:|",
        f"| {s['create']} | {s['update']} | {s['delete']} | {s['noop']} "
        f"| {s['unmanaged']} | {s['prune_skipped']} |",
        "",
    ]
    body: list[str] = []
    writes = [r for r in doc["actions"] if r["action"] != "noop"]
    if writes:
        body += ["| | webhook | why |", "|---|---|---|"]
        for row in writes:
            reason = row["reason"].replace("|", "\\|")
            body.append(
                f"| `{Action(row['action']).glyph}` {row['action']} | `{_name(row)}` | {reason} |"
            )
        body += ["", "<details><summary>Field changes</summary>", "", "```diff"]
        for row in writes:
            body.append(f"{Action(row['action']).glyph} {_name(row)}")
            body += [f"{g}     {text}" for g, text in _field_lines(row)]
        body += ["```", "", "</details>", ""]
    if doc["prune_skipped"]:
        body += ["**Deletions skipped** (pass `--prune` to delete):", ""]
        body += [f"- `{_name(i)}` {i['url']}: {i['reason']}" for i in doc["prune_skipped"]]
        body.append("")
    if doc["unmanaged"]:
        body += ["**Unmanaged** (listed, never touched):", ""]
        body += [f"- `{_name(i)}` {i['url']}" for i in doc["unmanaged"]]
        body.append("")
    text = "\n".join(head + body)
    if len(text) <= limit:
        return text
    note = (
        f"\n\n> Truncated: {len(text) - limit:,} more characters. "
        "Run `reconcile plan --format json` for the full plan.\n"
    )
    cut = text[: limit - len(note)]
    if cut.count("```") % 2:  # do not leave a code fence open
        cut += "\n```"
    return cut + note

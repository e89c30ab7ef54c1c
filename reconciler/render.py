"""Plan -> versioned JSON, and text / Markdown rendered *from that JSON*.

One source for every output: ``--format json`` prints ``plan_to_json``, ``plan --out`` saves it,
and the human renderings read nothing but that dict, so they can never show something the machine
output does not say. Order is stable (account, form_id, tag). Pure: no I/O, no terminal checks;
the caller decides colour. Secret values cannot appear: the Plan never holds one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from rich.text import Text

from reconciler.models import (
    DEFAULT_ACCOUNT,
    SENSITIVE,
    Action,
    Change,
    Location,
    Operation,
    Plan,
    Reason,
    SecretRef,
    SecretSource,
    UntouchedWebhook,
)

__all__ = [
    "FORMAT_VERSION",
    "MARKDOWN_LIMIT",
    "apply_summary_line",
    "plan_summary_line",
    "plan_to_json",
    "reason_text",
    "render_plan_markdown",
    "render_plan_plain",
    "render_plan_text",
    "secret_ref_json",
]

FORMAT_VERSION = "1"
MARKDOWN_LIMIT = 60_000
"""GitHub rejects PR comments over 65,536 characters; stay well below with room for a note."""

_CLOSERS = "\n```\n</details>"
"""What truncation may have to append to close what it cut through."""

_STYLE = {"create": "green", "update": "yellow", "delete": "red", "noop": "dim"}
_VERB = {
    "create": "will be created",
    "update": "will be updated in place",
    "delete": "will be deleted",
    "noop": "unchanged",
}


# --------------------------------------------------------------------------- reasons

_REASON_TEXT: dict[Reason, str] = {
    Reason.DECLARED_NOT_LIVE: "declared{where}, not found on the form",
    Reason.LIVE_DIFFERS: "live differs from the manifest{where}",
    Reason.SECRET_CHANGED: "secret changed",
    Reason.SECRET_NOT_RECORDED: (
        "secret not recorded in the state file: setting it is the only way to be sure"
    ),
    Reason.IN_SYNC: "in sync",
    Reason.DECLARED_ABSENT: "declared state: absent{where}",
    Reason.ALREADY_ABSENT: "already absent",
    Reason.NO_LONGER_DECLARED: (
        "no longer declared; recorded in the state file as applied by this tool"
    ),
    Reason.EXCLUSIVE_UNDECLARED: (
        "not declared on a form whose WebhookSet has ownership: exclusive"
    ),
    Reason.NOT_DECLARED: "not declared and not applied by this tool",
    Reason.REPLACED_OUTSIDE: (
        "its id differs from the one the state file recorded: it was re-created outside this "
        "tool, so it is not ours"
    ),
    Reason.RENAMED: (
        "the previous tag of a renamed webhook{where}: deleted once the new webhook exists"
    ),
    Reason.RENAMED_FROM: "renamed: the webhook under its previous tag is deleted once this exists",
    Reason.RENAMED_NOT_OURS: (
        "a previous tag of a renamed webhook, but not applied by this tool: left alone"
    ),
}


def reason_text(reasons: tuple[Reason, ...], location: Location | None = None) -> str:
    """The prose of a change's reasons; the location is named once, by the first that uses it."""
    where = f" ({location})" if location else ""
    parts = []
    for reason in reasons:
        template = _REASON_TEXT[reason]
        parts.append(template.format(where=where))
        if "{where}" in template:
            where = ""
    return "; ".join(parts)


# --------------------------------------------------------------------------- JSON


def _untouched_json(item: UntouchedWebhook, *, prunable: bool) -> dict[str, Any]:
    row: dict[str, Any] = {**item.key.to_json(), "url": item.url}
    row["reason"] = reason_text((item.reason,)) + ("; --prune deletes it" if prunable else "")
    row["reasons"] = [item.reason.value]
    return row


def secret_ref_json(ref: SecretRef | None) -> dict[str, str] | None:
    """Where apply reads the secret: a variable's name or a file's path, never the value."""
    if ref is None:
        return None
    if ref.source is SecretSource.FILE:
        return {"file": ref.name, "base_dir": ref.base_dir, "root": ref.root}
    return {ref.source.value: ref.name}


def _change_json(change: Change) -> dict[str, Any]:
    return {
        "action": change.action.value,
        **change.key.to_json(),
        "before": dict(change.before) if change.before is not None else None,
        "after": dict(change.after) if change.after is not None else None,
        "changes": [
            {"field": fc.field, "before": fc.before, "after": fc.after} for fc in change.changes
        ],
        "reason": reason_text(change.reasons, change.location),
        "reasons": [r.value for r in change.reasons],
        "webhook_id": change.webhook_id,
        "location": str(change.location) if change.location else None,
        "secret_ref": secret_ref_json(change.secret_ref),
        "moved_from": str(change.moved_from) if change.moved_from else None,
        "moved_to": str(change.moved_to) if change.moved_to else None,
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
        "partial": plan.partial,
        "unread_accounts": list(plan.unread_accounts),
        "scope": {
            "targets": [str(t) for t in plan.targets],
            "accounts": list(plan.accounts),
            "changed_since": plan.changed_since,
        },
        "summary": plan_summary(plan),
        "actions": [_change_json(c) for c in plan.actions],
        "selectors": [
            {
                "set": m.set_name,
                "account": m.account,
                "tag": m.tag,
                "location": str(m.location) if m.location else None,
                "selector": {
                    k: v
                    for k, v in (
                        ("workspace_id", m.selector.workspace_id),
                        ("title", m.selector.title),
                    )
                    if v is not None
                },
                "matched": list(m.matched),
            }
            for m in plan.selectors
        ],
        "unmanaged": [_untouched_json(u, prunable=False) for u in plan.unmanaged],
        "prune_skipped": [_untouched_json(u, prunable=True) for u in plan.prune_skipped],
        "guards": {
            "forms": [
                {"account": account, "form_id": form_id, "fingerprint": digest}
                for (account, form_id), digest in sorted(plan.live_fingerprints.items())
            ],
            "secrets": [
                {**key.to_json(), "fingerprint": digest}
                for key, digest in sorted(plan.secret_fingerprints.items())
            ],
            "fingerprint_salt": plan.fingerprint_salt,
        },
        "binding": (
            {
                "api_urls": dict(sorted(plan.binding.api_urls.items())),
                "state_serial": plan.binding.state_serial,
                "desired_digest": plan.binding.desired_digest,
            }
            if plan.binding is not None
            else None
        ),
    }


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


def _move(row: Mapping[str, Any]) -> str:
    """`` (renamed from X)`` / `` (renamed to Y)``: the two halves of a move, shown as one."""
    if row.get("moved_from"):
        return f" (renamed from {row['moved_from']})"
    if row.get("moved_to"):
        return f" (renamed to {row['moved_to']}, after it is created)"
    return ""


def plan_summary_line(doc: Mapping[str, Any]) -> str:
    s = doc["summary"]
    unread = doc.get("unread_accounts") or []
    if unread:
        # Never "no changes" about what could not be read.
        line = (
            f"Plan incomplete: account(s) {', '.join(unread)} could not be read. Elsewhere: "
            f"{s['create']} to create, {s['update']} to update, {s['delete']} to delete, "
            f"{s['noop']} unchanged"
        )
    elif not (s["create"] or s["update"] or s["delete"]) and s["prune_skipped"]:
        # Not "in sync": webhooks this tool applied are live but no longer declared.
        line = f"No changes without --prune: {s['noop']} unchanged"
    elif not (s["create"] or s["update"] or s["delete"]):
        line = f"No changes. Live webhooks match the manifests: {s['noop']} unchanged"
    else:
        line = (
            f"Plan: {s['create']} to create, {s['update']} to update, "
            f"{s['delete']} to delete, {s['noop']} unchanged"
        )
    extras = []
    if doc.get("partial"):
        extras.append(f"partial: only what changed since {doc['scope']['changed_since']}")
    moves = sum(1 for row in doc["actions"] if row.get("moved_to"))
    if moves:
        extras.append(f"{moves} rename(s): create the new webhook, then delete the old")
    if s["unmanaged"]:
        extras.append(f"{s['unmanaged']} unmanaged")
    if s["prune_skipped"]:
        extras.append(f"{s['prune_skipped']} deletion(s) skipped without --prune")
    return line + (f" ({', '.join(extras)})." if extras else ".")


# --------------------------------------------------------------------------- text


Segment = tuple[str, str | None]
"""A piece of plan text and its rich style (None: unstyled); plain output joins the texts."""

_RICH_STRIPS = dict.fromkeys((7, 8, 11, 12, 13))
"""The control characters rich's ``Text`` drops (bell, backspace, VT, FF, CR): the plain path
drops them too, so both print the same characters."""


def _plan_segments(doc: Mapping[str, Any], *, show_noop: bool) -> Iterator[Segment]:
    writes = [r for r in doc["actions"] if r["action"] != "noop" or show_noop]
    if writes:
        yield "Typeform webhooks will change as follows:\n\n", "bold"
    for row in writes:
        style = _STYLE[row["action"]]
        glyph = Action(row["action"]).glyph
        yield f"  {glyph} ", f"bold {style}"
        yield _name(row), "bold"
        yield f"  {_VERB[row['action']]}{_move(row)}\n", None
        for field_glyph, text in _field_lines(row):
            yield f"      {field_glyph} ", style
            yield text + "\n", None
        if row["reason"]:
            yield f"      # {row['reason']}\n", "dim"
        yield "\n", None
    for sel in doc.get("selectors", ()):
        where = f" ({sel['location']})" if sel["location"] else ""
        what = ", ".join(f"{k}={v!r}" for k, v in sel["selector"].items())
        matched = ", ".join(sel["matched"]) or "no form"
        yield f"Selector forms: {{{what}}} tag {sel['tag']}{where} matched: {matched}\n", None
    if doc.get("selectors"):
        yield "\n", None
    if doc["prune_skipped"]:
        yield "Deletions skipped (pass --prune to delete):\n", "bold"
        for item in doc["prune_skipped"]:
            yield f"    {_name(item)}  {item['url']}\n", None
            yield f"      # {item['reason']}\n", "dim"
        yield "\n", None
    if doc["unmanaged"]:
        yield "Unmanaged webhooks (listed, never touched):\n", "bold"
        for item in doc["unmanaged"]:
            yield f"    {_name(item)}  {item['url']}\n", "dim"
            if item.get("reasons", [Reason.NOT_DECLARED.value]) != [Reason.NOT_DECLARED.value]:
                yield f"      # {item['reason']}\n", "dim"
        yield "\n", None
    yield plan_summary_line(doc) + "\n", "bold"


def render_plan_text(doc: Mapping[str, Any], *, show_noop: bool = False) -> Text:
    """Terraform-like text with styles; print it through a rich Console that decides colour."""
    out = Text()
    for text, style in _plan_segments(doc, show_noop=show_noop):
        out.append(text, style=style)
    return out


def render_plan_plain(doc: Mapping[str, Any], *, show_noop: bool = False) -> str:
    """Exactly the characters a colourless rich Console prints for ``render_plan_text``, about
    ten times faster (no Text, no line wrapping machinery): what ``plan`` prints when colour is
    off, and what a 10,000-change plan can afford."""
    out = "".join(text for text, _ in _plan_segments(doc, show_noop=show_noop))
    out = out.translate(_RICH_STRIPS)
    if "\t" in out:  # rare (a URL from the API): let rich expand tabs by cell width, as it prints
        tabbed = Text(out)
        tabbed.expand_tabs(8)
        out = tabbed.plain
    return out


def apply_summary_line(doc: Mapping[str, Any]) -> str:
    """``Apply complete: 1 created, 2 adopted, 0 failed.`` from an apply result's JSON."""
    counts: dict[str, int] = {}
    for row in doc["outcomes"]:
        if row["success"]:
            counts[row["operation"]] = counts.get(row["operation"], 0) + 1
    if doc["adopted"]:
        counts[Operation.ADOPT.value] = len(doc["adopted"])
    done = ", ".join(f"{n} {Operation(op).past}" for op, n in sorted(counts.items()))
    failed = sum(1 for row in doc["outcomes"] if not row["success"])
    state = "complete" if not failed else "finished with errors"
    return f"Apply {state}: {done or 'nothing written'}, {failed} failed."


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
    cut = text[: limit - len(note) - len(_CLOSERS)]
    if cut.count("```") % 2:  # never leave a code fence open: the rest would render as code
        cut += "\n```"
    if cut.count("<details>") > cut.count("</details>"):
        cut += "\n</details>"
    return cut + note

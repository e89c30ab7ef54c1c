"""Drift report JSON -> text and Markdown, rendered *from that JSON* only.

Like ``render.py`` for plans: ``DriftReport.to_json()`` is the one source, and the human forms
read nothing else, so they cannot say something ``--format json`` does not. Pure: no I/O, no
terminal checks (the caller's rich Console decides colour).

Everything in a report that came from the API (form ids, tags, URLs) is untrusted text: it must
never be able to move the cursor of a terminal, end a Markdown code fence or table row, or open
HTML in a PR comment. Every such string goes through ``_clean`` (control characters escaped) and,
for Markdown, the cell / code-span escapes below. Markdown output never exceeds its limit and
never leaves a fence or ``<details>`` open: it drops whole rows and says how many.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from rich.text import Text

from reconciler.models import DEFAULT_ACCOUNT, SENSITIVE

__all__ = [
    "CAUSE_TEXT",
    "MARKDOWN_LIMIT",
    "drift_summary_line",
    "render_drift_markdown",
    "render_drift_plain",
    "render_drift_text",
]

MARKDOWN_LIMIT = 60_000
"""GitHub rejects comments over 65,536 characters; the same budget as plans."""

CAUSE_TEXT: dict[str, str] = {
    "changed_outside": "changed outside this tool since it was last applied",
    "not_applied": "the manifest changed and was not applied yet",
    "both": "changed outside and in the manifest since the last apply",
    "unknown": "never applied by this tool",
}
_CAUSE_SHORT = {
    "changed_outside": "changed outside",
    "not_applied": "not applied",
    "both": "both",
    "unknown": "unknown",
}
_GLYPH = {"drifted": "~", "missing": "!", "unmanaged": "?", "in_sync": " "}
_STYLE = {"drifted": "yellow", "missing": "red", "unmanaged": "dim", "in_sync": "dim"}

Segment = tuple[str, str | None]
"""A piece of text and its rich style; plain output joins the texts."""


# --------------------------------------------------------------------------- shared helpers


def _clean(text: Any) -> str:
    """``text`` with every control character (newline, ESC, DEL, C1) shown as an escape."""
    s = str(text)
    if s.isprintable():
        return s
    return "".join(ch if ch.isprintable() else json.dumps(ch, ensure_ascii=True)[1:-1] for ch in s)


def _name(row: Mapping[str, Any]) -> str:
    prefix = "" if row["account"] == DEFAULT_ACCOUNT else f"{row['account']}:"
    return _clean(f"{prefix}{row['form_id']}/{row['tag']}")


def _value(value: Any, *, field: str = "") -> str:
    if value == SENSITIVE:
        return SENSITIVE
    if value is None:
        return "(unknown)" if field == "secret" else "null"
    return json.dumps(value, sort_keys=True)  # escapes every control character


def _field_lines(row: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(glyph, text) per field change: live on the left, the manifest on the right."""
    changes = row.get("changes") or []
    width = max((len(_clean(c["field"])) for c in changes), default=0)
    lines = []
    for c in changes:
        name = _clean(c["field"]).ljust(width)
        if c["before"] is None and c["field"] != "secret":
            lines.append(("+", f"{name} = {_value(c['after'])}"))
        elif c["after"] is None:
            lines.append(("-", f"{name} = {_value(c['before'])}"))
        else:
            before = _value(c["before"], field=c["field"])
            lines.append(("~", f"{name} = {before} -> {_value(c['after'])}"))
    return lines


def _flagged(doc: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The webhooks a reader must look at: everything not in sync, or whose healing stopped."""
    return [w for w in doc["webhooks"] if w["status"] != "in_sync" or w.get("heal_suspended")]


def drift_summary_line(doc: Mapping[str, Any]) -> str:
    """``Drift: 1 drifted, 1 missing, 3 in sync, 1 unmanaged (checked …Z).`` or ``No drift: …``."""
    s = doc["summary"]
    parts = []
    if s["drifted"] or s["missing"]:
        head = "Drift"
        parts += [f"{s['drifted']} drifted", f"{s['missing']} missing"]
    else:
        head = "No drift"
    parts += [f"{s['in_sync']} in sync", f"{s['unmanaged']} unmanaged"]
    if s.get("heal_suspended"):
        parts.append(f"{s['heal_suspended']} heal suspended")
    return f"{head}: {', '.join(parts)} (checked {_clean(doc['checked_at'])})."


def _stale_line(doc: Mapping[str, Any]) -> str | None:
    if not doc.get("stale"):
        return None
    error = _clean(doc.get("error") or "unknown error")
    return f"Stale: the check at {_clean(doc['checked_at'])} failed ({error}); last results shown."


# --------------------------------------------------------------------------- text


def _segments(doc: Mapping[str, Any]) -> list[Segment]:
    out: list[Segment] = []
    stale = _stale_line(doc)
    if stale:
        out.append((stale + "\n", "bold red"))
    out.append((drift_summary_line(doc) + "\n", "bold"))
    flagged = _flagged(doc)
    drift = [w for w in flagged if w["status"] != "unmanaged"]
    unmanaged = [w for w in flagged if w["status"] == "unmanaged"]
    if drift:
        out.append(("\n", None))
    for row in drift:
        status = row["status"]
        style = _STYLE[status]
        out.append((f"  {_GLYPH[status]} ", f"bold {style}"))
        out.append((_name(row), "bold"))
        out.append((f"  {status.replace('_', ' ')}", style))
        cause = row.get("cause")
        if cause:
            out.append((f": {CAUSE_TEXT.get(cause, _clean(cause))}", None))
        out.append(("\n", None))
        if row.get("url"):
            out.append((f"      url {_clean(row['url'])}\n", "dim"))
        for glyph, text in _field_lines(row):
            out.append((f"      {glyph} ", style))
            out.append((text + "\n", None))
        for issue in row.get("issues") or ():
            out.append((f"      # {_clean(issue)}\n", "dim"))
        if row.get("heal_suspended"):
            out.append(("      # heal suspended: corrected too often this hour\n", "bold red"))
        if row.get("last_checked") and row["last_checked"] != doc["checked_at"]:
            out.append((f"      # last checked {_clean(row['last_checked'])}\n", "dim"))
    if unmanaged:
        out.append(("\nUnmanaged webhooks (listed, not drift):\n", "bold"))
        for row in unmanaged:
            out.append((f"    {_name(row)}  {_clean(row.get('url') or '')}\n", "dim"))
            for issue in row.get("issues") or ():
                out.append((f"      # {_clean(issue)}\n", "dim"))
    return out


def render_drift_text(doc: Mapping[str, Any]) -> Text:
    """Summary line first, then only what is not in sync; print through a rich Console."""
    out = Text()
    for text, style in _segments(doc):
        out.append(text, style=style)
    return out


def render_drift_plain(doc: Mapping[str, Any]) -> str:
    """The same as ``render_drift_text`` without styles, and without building a rich Text."""
    return "".join(text for text, _ in _segments(doc))


# --------------------------------------------------------------------------- markdown


def _md_prose(text: Any) -> str:
    """Prose safe in a table cell: no row break, no HTML, no unescaped pipe."""
    s = _clean(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return s.replace("|", "\\|")


def _md_code(text: Any) -> str:
    """An inline code span that its content cannot close, safe in a table cell."""
    s = _clean(text)
    run = longest = 0
    for ch in s:
        run = run + 1 if ch == "`" else 0
        longest = max(longest, run)
    fence = "`" * (longest + 1)
    pad = " " if s.startswith("`") or s.endswith("`") else ""
    # GitHub splits table cells on pipes even inside code spans; the backslash is removed.
    return f"{fence}{pad}{s}{pad}{fence}".replace("|", "\\|")


def _md_issues(row: Mapping[str, Any]) -> str:
    issues = [_md_prose(i) for i in row.get("issues") or ()]
    if row.get("heal_suspended"):
        issues.append("**heal suspended**")
    return "; ".join(issues)


def _markdown(doc: Mapping[str, Any], rows: Sequence[Mapping[str, Any]], shown: int) -> str:
    s = doc["summary"]
    lines = ["### Typeform webhooks drift", ""]
    stale = _stale_line(doc)
    if stale:
        lines += [f"> **{_md_prose(stale)}**", ""]
    lines += [
        f"**{_md_prose(drift_summary_line(doc))}**",
        "",
        "| in sync | drifted | missing | unmanaged | heal suspended |",
        "|---:|---:|---:|---:|---:|",
        f"| {s['in_sync']} | {s['drifted']} | {s['missing']} | {s['unmanaged']} "
        f"| {s.get('heal_suspended', 0)} |",
        "",
    ]
    visible = rows[:shown]
    if visible:
        lines += ["| status | webhook | cause | issues |", "|---|---|---|---|"]
        for row in visible:
            cause = _CAUSE_SHORT.get(row.get("cause") or "", _md_prose(row.get("cause") or ""))
            lines.append(
                f"| {row['status'].replace('_', ' ')} | {_md_code(_name(row))} "
                f"| {cause} | {_md_issues(row)} |"
            )
        lines.append("")
    with_changes = [r for r in visible if r.get("changes")]
    if with_changes:
        lines += ["<details><summary>Field changes (live -> manifest)</summary>", "", "```diff"]
        for row in with_changes:
            # Every line starts with a glyph, so no content can begin a closing fence.
            lines.append(f"{_GLYPH[row['status']]} {_name(row)}")
            lines += [f"{g}     {text}" for g, text in _field_lines(row)]
        lines += ["```", "", "</details>", ""]
    cut = len(rows) - shown
    if cut:
        lines += [
            f"> Truncated: {cut} of {len(rows)} webhooks not shown. "
            "Run `reconcile drift --format json` for the full report.",
            "",
        ]
    return "\n".join(lines)


def render_drift_markdown(doc: Mapping[str, Any], *, limit: int = MARKDOWN_LIMIT) -> str:
    """Markdown for PR comments and ``$GITHUB_STEP_SUMMARY``: counts, a table, field changes.

    At most ``limit`` characters: rows are dropped from the end (the note says how many) until
    the whole, well-formed document fits.
    """
    rows = _flagged(doc)
    text = _markdown(doc, rows, len(rows))
    if len(text) <= limit:
        return text
    low, high = 0, len(rows) - 1  # the most rows that fit lies in [low, high]
    while low < high:
        mid = (low + high + 1) // 2
        if len(_markdown(doc, rows, mid)) <= limit:
            low = mid
        else:
            high = mid - 1
    text = _markdown(doc, rows, low)
    if len(text) <= limit:
        return text
    # Not even the head fits: a limit this small gets the head's first lines, nothing opened.
    return text[:limit].rsplit("\n", 1)[0]

"""Drift report renderings: what they show, what they hide, and hostile text from the API."""

from __future__ import annotations

import re
from typing import Any

from markdown_it import MarkdownIt

from reconciler.drift_report import DriftCause, DriftReport, DriftStatus, WebhookDrift, detect_drift
from reconciler.models import (
    DEFAULT_ACCOUNT,
    SENSITIVE,
    DesiredState,
    DesiredWebhook,
    EventTypes,
    FieldChange,
    LiveWebhook,
    Ownership,
    SecretRef,
    SecretSource,
    WebhookKey,
    WebhookSet,
)
from reconciler.normalize import SecretStatus
from reconciler.render_drift import (
    drift_summary_line,
    render_drift_markdown,
    render_drift_plain,
    render_drift_text,
)

NOW = "2026-03-01T12:00:00Z"
A = "https://hooks.example.com/a"
B = "https://hooks.example.com/b"


def key(form: str, tag: str, account: str = DEFAULT_ACCOUNT) -> WebhookKey:
    return WebhookKey(account, form, tag)


def hook(form: str, tag: str, *, url: str = A, enabled: bool = True) -> LiveWebhook:
    return LiveWebhook(key(form, tag), f"id-{tag}", url, enabled, True, EventTypes())


def body(url: str = A) -> dict[str, Any]:
    return {"url": url, "enabled": True, "verify_ssl": True, "event_types": {"form_response": True}}


def mixed_report() -> DriftReport:
    """One of each: in sync, drifted (Typeform-disabled), missing, secret drift, unmanaged."""
    wants = (
        DesiredWebhook(key("F1", "ok"), A),
        DesiredWebhook(key("F1", "off"), A),
        DesiredWebhook(key("F1", "gone"), B),
        DesiredWebhook(key("F2", "sec"), A, secret=SecretRef(SecretSource.ENV, "S")),
    )
    state = DesiredState(sets=(WebhookSet("s", DEFAULT_ACCOUNT, Ownership.DECLARED, wants),))
    live = {
        ("default", "F1"): [hook("F1", "ok"), hook("F1", "off", enabled=False), hook("F1", "zz")],
        ("default", "F2"): [hook("F2", "sec", url=A)],
    }
    last = {key("F1", "off"): body(), key("F1", "gone"): body(B), key("F2", "sec"): body()}
    return detect_drift(
        state,
        live,
        managed={k: f"id-{k.tag}" for k in last},
        last_applied=last,
        secrets={key("F2", "sec"): SecretStatus.CHANGED},
        checked_at=NOW,
        heal_suspended=(key("F1", "off"),),
    )


def row(tag: str, *, url: str = A, changes: tuple[FieldChange, ...] = ()) -> WebhookDrift:
    return WebhookDrift(
        key("F1", tag),
        DriftStatus.DRIFTED,
        DriftCause.CHANGED_OUTSIDE,
        ("live differs from the manifest: url",),
        changes or (FieldChange("url", url, A),),
        url,
        NOW,
    )


# --------------------------------------------------------------------------- text


def test_text_starts_with_a_summary_line_that_counts_every_status() -> None:
    text = render_drift_plain(mixed_report().to_json())
    assert text.splitlines()[0] == (
        f"Drift: 2 drifted, 1 missing, 1 in sync, 1 unmanaged, 1 heal suspended (checked {NOW})."
    )


def test_a_report_without_drift_says_so_first() -> None:
    report = DriftReport(
        NOW, (WebhookDrift(key("F", "t"), DriftStatus.IN_SYNC, None, (), (), A, NOW),)
    )
    assert drift_summary_line(report.to_json()) == (
        f"No drift: 1 in sync, 0 unmanaged (checked {NOW})."
    )
    assert render_drift_plain(report.to_json()) == drift_summary_line(report.to_json()) + "\n"


def test_a_report_with_only_missing_webhooks_is_drift() -> None:
    gone = WebhookDrift(key("F", "t"), DriftStatus.MISSING, DriftCause.UNKNOWN, (), (), A, NOW)
    assert drift_summary_line(DriftReport(NOW, (gone,)).to_json()) == (
        f"Drift: 0 drifted, 1 missing, 0 in sync, 0 unmanaged (checked {NOW})."
    )


def test_text_lists_only_what_is_not_in_sync_with_cause_issues_and_changes() -> None:
    text = render_drift_plain(mixed_report().to_json())
    assert "F1/ok" not in text
    assert "~ F1/off  drifted: changed outside this tool since it was last applied" in text
    assert "~ enabled = false -> true" in text
    assert f"# Typeform disables a webhook whose receiver answered 404 or 410: check {A}" in text
    assert "# heal suspended" in text
    assert "! F1/gone  missing: changed outside this tool since it was last applied" in text
    assert f'+ url         = "{B}"' in text
    assert "~ secret = (sensitive) -> (sensitive)" in text
    assert "drifted: the manifest changed and was not applied yet" in text
    unmanaged = text.split("Unmanaged webhooks (listed, not drift):\n")[1]
    assert unmanaged.startswith(f"    F1/zz  {A}\n")


def test_rich_text_says_exactly_what_the_plain_fast_path_says() -> None:
    doc = mixed_report().to_json()
    rendered = render_drift_text(doc)
    assert rendered.plain == render_drift_plain(doc)
    assert any("yellow" in str(span.style) for span in rendered.spans)


def test_a_stale_report_says_so_before_anything_else_and_shows_old_check_times() -> None:
    report = mixed_report().as_stale(
        "the API answered 503 after 4 attempts", "2026-03-01T12:05:00Z"
    )
    lines = render_drift_plain(report.to_json()).splitlines()
    assert lines[0] == (
        "Stale: the check at 2026-03-01T12:05:00Z failed "
        "(the API answered 503 after 4 attempts); last results shown."
    )
    assert f"      # last checked {NOW}" in lines


def test_control_characters_from_the_api_cannot_reach_the_terminal() -> None:
    evil = "t\x1b[2J\x1b]0;owned\x07\nfake line\r"
    report = DriftReport(NOW, (row(evil, url="https://x.example/\x1b[31mred\n"),))
    for text in (render_drift_plain(report.to_json()), render_drift_text(report.to_json()).plain):
        assert "\x1b" not in text
        assert "\x07" not in text
        assert "\r" not in text
        assert "\nfake line" not in text
        assert "t\\u001b[2J" in text


# --------------------------------------------------------------------------- markdown


def test_markdown_has_counts_a_row_per_flagged_webhook_and_closed_field_changes() -> None:
    md = render_drift_markdown(mixed_report().to_json())
    assert md.startswith("### Typeform webhooks drift\n")
    assert "| 1 | 2 | 1 | 1 | 1 |" in md
    table = [
        line
        for line in md.splitlines()
        if line.startswith("| drifted")
        or line.startswith("| missing")
        or line.startswith("| unmanaged")
    ]
    assert [re.search(r"`([^`]*)`", line)[1] for line in table] == [  # type: ignore[index]
        "F1/gone",
        "F1/off",
        "F1/zz",
        "F2/sec",
    ]
    assert "**heal suspended**" in md
    assert md.count("```") == 2
    assert md.count("<details>") == md.count("</details>") == 1
    assert SENSITIVE in md


def blocks(md: str) -> list[tuple[str, str]]:
    """(type, content) of the tokens GitHub-like Markdown parses ``md`` into that matter here:
    blocks (HTML, fences, table cells) and the inline code spans and HTML inside cells."""
    parser = MarkdownIt("commonmark").enable("table")
    out = []
    for token in parser.parse(md):
        if token.type in _BLOCKS:
            out.append((token.type, token.content))
        out += [(c.type, c.content) for c in token.children or () if c.type in _INLINE]
    return out


_BLOCKS = {"html_block", "fence", "tr_open", "td_open"}
_INLINE = {"code_inline", "html_inline"}


def test_markdown_cells_cannot_be_split_closed_or_turned_into_html_by_api_text() -> None:
    evil_tag = "a|b`</details>\n```"
    report = DriftReport(NOW, (row(evil_tag, url="https://x.example/<script>|```"),))
    parsed = blocks(render_drift_markdown(report.to_json()))
    assert [t for t, _ in parsed if t == "fence"] == ["fence"]
    assert [c.split(">")[0] for t, c in parsed if t == "html_block"] == ["<details", "</details"]
    cells = [t for t, _ in parsed if t == "td_open"]
    assert len(cells) == 5 + 4  # the counts row, then one drift row of four cells, none split
    assert ("code_inline", "F1/" + evil_tag.replace("\n", "\\n")) in parsed
    assert not [c for t, c in parsed if t == "html_inline"]


def test_an_issue_with_pipes_and_html_stays_in_its_cell_as_text() -> None:
    drift = WebhookDrift(
        key("F1", "t"),
        DriftStatus.DRIFTED,
        DriftCause.CHANGED_OUTSIDE,
        ("check https://x.example/a|b<img src=x>",),
        (),
        A,
        NOW,
    )
    md = render_drift_markdown(DriftReport(NOW, (drift,)).to_json())
    html = MarkdownIt("commonmark").enable("table").render(md)
    assert "<td>check https://x.example/a|b&lt;img src=x&gt;</td>" in html
    assert "<img" not in html


def test_a_long_markdown_report_is_cut_by_whole_rows_under_the_limit_and_says_how_many() -> None:
    rows = tuple(
        row(f"t{i:04d}", url=f"https://hooks.example.com/{'x' * 200}/{i}") for i in range(500)
    )
    md = render_drift_markdown(DriftReport(NOW, rows).to_json(), limit=20_000)
    assert len(md) <= 20_000
    shown = sum(1 for line in md.splitlines() if line.startswith("| drifted"))
    assert 10 < shown < 500
    assert f"Truncated: {500 - shown} of 500 webhooks not shown." in md
    parsed = blocks(md)
    assert [c.split(">")[0] for t, c in parsed if t == "html_block"] == ["<details", "</details"]
    assert sum(1 for t, _ in parsed if t == "fence") == 1
    assert md.rstrip().endswith("for the full report.")
    full = render_drift_markdown(DriftReport(NOW, rows).to_json(), limit=10_000_000)
    assert "Truncated" not in full
    assert sum(1 for line in full.splitlines() if line.startswith("| drifted")) == 500


def test_a_limit_smaller_than_the_head_still_holds_and_opens_nothing() -> None:
    md = render_drift_markdown(mixed_report().to_json(), limit=120)
    assert len(md) <= 120
    assert "```" not in md
    assert "<details>" not in md

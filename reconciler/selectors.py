"""Form selectors: ``forms: {workspace_id, title}`` entries become one webhook per matching form.

Pure: the caller lists the forms (``GET /forms``, paged, per account and workspace) and hands the
listings in; this module only matches. An explicit ``form_id`` entry with the same tag wins over
a selector match, and the first selector to match a form and tag wins over later ones, so every
``(account, form_id, tag)`` is declared once. This is how a form copied from a template gets its
webhook on the next plan with no manifest change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from reconciler.models import DesiredState, SelectorMatch, WebhookKey

__all__ = ["Listings", "expand", "listings_needed"]

Listings = Mapping[tuple[str, str | None], Sequence[Mapping[str, Any]]]
"""Forms by ``(account, workspace_id or None)``, as ``GET /forms`` items (``id``, ``title``)."""


def listings_needed(desired: DesiredState) -> list[tuple[str, str | None]]:
    """The form listings the selectors need: one per account and workspace (None: all forms)."""
    wanted = {(s.account, e.selector.workspace_id) for s, e in desired.selector_entries}
    return sorted(wanted, key=lambda k: (k[0], k[1] or ""))


def expand(
    desired: DesiredState, listings: Listings
) -> tuple[DesiredState, tuple[SelectorMatch, ...]]:
    """``desired`` with every selector replaced by the webhooks it matches, and what it matched."""
    taken: set[WebhookKey] = {w.key for w in desired.webhooks}
    matches: list[SelectorMatch] = []
    sets = []
    for webhook_set in desired.sets:
        added = []
        for entry in webhook_set.selectors:
            forms = listings.get((webhook_set.account, entry.selector.workspace_id), ())
            matched = []
            for form in sorted(forms, key=lambda f: str(f.get("id", ""))):
                form_id, title = str(form.get("id", "")), str(form.get("title", ""))
                if not form_id or not entry.selector.matches(entry.selector.workspace_id, title):
                    continue
                key = WebhookKey(webhook_set.account, form_id, entry.template.key.tag)
                if key in taken:
                    continue  # declared explicitly, or by an earlier selector: that one wins
                taken.add(key)
                added.append(replace(entry.template, key=key))
                matched.append(form_id)
            matches.append(
                SelectorMatch(
                    set_name=webhook_set.name,
                    account=webhook_set.account,
                    tag=entry.template.key.tag,
                    location=entry.template.location,
                    selector=entry.selector,
                    matched=tuple(matched),
                )
            )
        sets.append(replace(webhook_set, webhooks=(*webhook_set.webhooks, *added), selectors=()))
    return replace(desired, sets=tuple(sets)), tuple(matches)

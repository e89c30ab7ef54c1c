"""The plain plan renderer prints exactly what rich prints without colour, only faster.

``plan`` prints ``render_plan_plain`` whenever colour is off (``--no-color``, ``NO_COLOR``, not a
terminal) and ``render_plan_text`` through a rich Console otherwise. Both are compared on every
golden case (the ``plan.json`` documents under ``tests/cases/``), with and without unchanged
rows, and on documents carrying what a hostile API could put in a URL: control characters,
tabs after wide characters, lines far wider than a terminal.
"""

from __future__ import annotations

import copy
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from reconciler.commands._runtime import make_console
from reconciler.render import render_plan_plain, render_plan_text

CASES = Path(__file__).parent / "cases"
HOSTILE = [
    "https://x.example/\ttab",
    "https://x.example/表\tafter-wide",
    "https://x.example/\rcarriage\x07bell\x08back\x0bvt\x0cff",
    "https://x.example/\x1b[31mred\x1b[0m",
    "https://x.example/" + "long-" * 40,
    "https://x.example/\nnew line",
    "",
]


def rich_prints(doc: dict[str, Any], *, show_noop: bool) -> str:
    stream = io.StringIO()
    make_console(no_color=True, stream=stream).print(
        render_plan_text(doc, show_noop=show_noop), end=""
    )
    return stream.getvalue()


def golden_docs() -> list[str]:
    return sorted(p.name for p in CASES.iterdir() if (p / "plan.json").exists())


@pytest.mark.parametrize("show_noop", [False, True])
@pytest.mark.parametrize("case", golden_docs())
def test_plain_text_equals_what_rich_prints_for_every_golden_case(
    case: str, show_noop: bool
) -> None:
    doc = json.loads((CASES / case / "plan.json").read_text())
    assert render_plan_plain(doc, show_noop=show_noop) == rich_prints(doc, show_noop=show_noop)


def test_plain_text_is_the_recorded_golden_text() -> None:
    case = CASES / "fields-create-update-noop"
    doc = json.loads((case / "plan.json").read_text())
    assert render_plan_plain(doc) == (case / "plan.txt").read_text()


def _hostile_doc(url: str) -> dict[str, Any]:
    """Every golden action and untouched row, with ``url`` wherever the plan shows a URL."""
    doc: dict[str, Any] = {}
    for case in golden_docs():
        one = json.loads((CASES / case / "plan.json").read_text())
        if not doc:
            doc = copy.deepcopy(one)
            doc["actions"], doc["unmanaged"], doc["prune_skipped"] = [], [], []
        doc["actions"] += one["actions"]
        doc["unmanaged"] += one["unmanaged"]
        doc["prune_skipped"] += one["prune_skipped"]
    for row in doc["unmanaged"] + doc["prune_skipped"]:
        row["url"] = url
    for row in doc["actions"]:
        row["tag"] = f"tag{url[-12:]}"
        for change in row["changes"]:
            for side in ("before", "after"):
                if change["field"] == "url" and change[side] is not None:
                    change[side] = url
        row["reason"] = row["reason"] + url[-10:]
    assert doc["actions"]
    assert doc["unmanaged"]
    assert doc["prune_skipped"]
    return doc


@pytest.mark.parametrize("url", HOSTILE)
def test_plain_text_equals_what_rich_prints_for_urls_a_hostile_api_could_send(url: str) -> None:
    doc = _hostile_doc(url)
    assert render_plan_plain(doc, show_noop=True) == rich_prints(doc, show_noop=True)


def test_the_control_characters_rich_drops_are_dropped_and_tabs_expanded() -> None:
    text = render_plan_plain(_hostile_doc("https://x.example/a\rb\x07c\td"), show_noop=True)
    assert "\r" not in text
    assert "\x07" not in text
    assert "\t" not in text
    assert "abc     d" in text


# --------------------------------------------------------------------------- through the CLI

GOLDEN = CASES / "fields-create-update-noop"


def show(*flags: str, **env: str) -> str:
    """``reconcile show`` of a golden plan with stdout a pipe, in the environment given."""
    base = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR", "TERM")}
    proc = subprocess.run(
        [sys.executable, "-m", "reconciler", "show", *flags, str(GOLDEN / "plan.json")],
        capture_output=True,
        text=True,
        check=True,
        env={**base, **env},
    )
    return proc.stdout


def test_a_pipe_gets_the_plain_text() -> None:
    assert show() == (GOLDEN / "plan.txt").read_text()


def test_a_colour_terminal_gets_styles_and_no_color_or_NO_COLOR_gets_none_at_all() -> None:
    colour = {"FORCE_COLOR": "1", "TERM": "xterm-256color"}  # rich: a colour terminal
    styled = show(**colour)
    assert "\x1b[" in styled
    assert re.sub(r"\x1b\[[0-9;]*m", "", styled) == (GOLDEN / "plan.txt").read_text()
    # rich without colour would still print bold; the plain path prints no escape at all
    assert show("--no-color", **colour) == (GOLDEN / "plan.txt").read_text()
    assert show(NO_COLOR="1", **colour) == (GOLDEN / "plan.txt").read_text()

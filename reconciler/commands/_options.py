"""Options shared by several subcommands, so each is spelled and documented once."""

from __future__ import annotations

import re
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import click

from reconciler.planner import DEFAULT_MAX_DELETES
from reconciler.records import DEFAULT_RECORDS_PATH

F = TypeVar("F", bound=Callable[..., Any])


class OutputFormat(StrEnum):
    TEXT = "text"
    JSON = "json"
    MARKDOWN = "markdown"


def paths_argument(f: F) -> F:
    """``[PATH ...]``: manifest files or directories, default ``manifests/``."""
    return click.argument("paths", nargs=-1, type=click.Path(path_type=str))(f)


def format_option(f: F) -> F:
    return click.option(
        "--format",
        "output_format",
        type=click.Choice([m.value for m in OutputFormat]),
        default=OutputFormat.TEXT.value,
        show_default=True,
        help="Output format on stdout.",
    )(f)


def color_option(f: F) -> F:
    return click.option("--no-color", is_flag=True, default=False, help="Never colour the output.")(
        f
    )


def logging_options(f: F) -> F:
    f = click.option(
        "--log-level",
        type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
        default="warning",
        show_default=True,
        help="Verbosity of the logs on stderr.",
    )(f)
    return click.option(
        "--log-format",
        type=click.Choice(["text", "json"]),
        default="text",
        show_default=True,
        help="Log line format on stderr.",
    )(f)


DEFAULT_PATHS = ("manifests/",)


def resolve_paths(paths: tuple[str, ...]) -> tuple[str, ...]:
    return paths or DEFAULT_PATHS


DEFAULT_STATE = ".reconcile/state.json"


def api_options(f: F) -> F:
    """Where to reconcile and what: --api-url, --rate, --state, --target, --account, timeouts."""
    f = click.option(
        "--request-timeout",
        type=click.FloatRange(min=0, min_open=True),
        default=30.0,
        show_default=True,
        metavar="SECONDS",
        help="Fail a request that hears nothing for this long.",
    )(f)
    f = click.option(
        "--secret-dir",
        "secret_dirs",
        multiple=True,
        metavar="DIR",
        type=click.Path(file_okay=False, path_type=Path),
        help="Also read {file:} secrets from this directory (repeatable; env "
        "RECONCILE_SECRET_DIRS). By default only files inside the manifest tree are read.",
    )(f)
    f = click.option(
        "--account",
        "accounts",
        multiple=True,
        metavar="NAME",
        help="Limit the run to an account (repeatable).",
    )(f)
    f = click.option(
        "--target",
        "targets",
        multiple=True,
        metavar="[ACCOUNT:]FORM_ID[/TAG]",
        help="Limit the run to a form, or one webhook of it (repeatable).",
    )(f)
    f = click.option(
        "--state",
        "state_spec",
        envvar="RECONCILE_STATE",
        default=DEFAULT_STATE,
        show_default=True,
        metavar="PATH|DSN",
        help="State file, or postgresql://…?namespace=NAME (env RECONCILE_STATE).",
    )(f)
    f = click.option(
        "--rate",
        type=click.FloatRange(min=0, min_open=True),
        default=None,
        help="Requests per second per account (overrides every account; Typeform allows 2).",
    )(f)
    return click.option(
        "--api-url",
        default=None,
        metavar="URL",
        help="API base URL of the default account; 'emulator:[PATH]' runs the built-in emulator.",
    )(f)


def write_options(f: F) -> F:
    """The guards of every command that writes (apply, and watch --heal)."""
    for option in reversed(_WRITE_OPTIONS):
        f = option(f)
    return f


_WRITE_OPTIONS = [
    click.option(
        "--prune", is_flag=True, help="Delete webhooks the tool owns but no manifest declares."
    ),
    click.option(
        "--max-deletes",
        type=click.IntRange(min=0),
        default=DEFAULT_MAX_DELETES,
        show_default=True,
        help="Refuse plans with more deletions.",
    ),
    click.option(
        "--allow-empty", is_flag=True, help="Allow deleting every managed webhook of an account."
    ),
    click.option("--atomic", is_flag=True, help="Revert the writes already made when one fails."),
    click.option(
        "--records",
        "records_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=DEFAULT_RECORDS_PATH,
        show_default=True,
        help="Operation records (JSONL, appended).",
    ),
    click.option(
        "--lock-timeout",
        type=click.FloatRange(min=0),
        default=0.0,
        metavar="SECONDS",
        help="Wait this long for another apply's lock instead of failing at once.",
    ),
]


class Duration(click.ParamType):  # type: ignore[type-arg]
    """``30s``, ``5m``, ``1h30m`` or plain seconds (``90``) -> seconds, as a float."""

    name = "DUR"
    _PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
    _UNIT: ClassVar[dict[str, float]] = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, int | float):
            seconds = float(value)
        else:
            text = str(value).strip().lower()
            if re.fullmatch(r"\d+(?:\.\d+)?", text):
                seconds = float(text)
            elif re.fullmatch(rf"(?:{self._PART.pattern})+", text):
                seconds = sum(float(n) * self._UNIT[u] for n, u in self._PART.findall(text))
            else:
                self.fail(f"{value!r} is not a duration: use e.g. 30s, 5m, 1h30m", param, ctx)
        if not seconds > 0:
            self.fail(f"{value!r}: a duration must be positive", param, ctx)
        return seconds


def changed_since_option(f: F) -> F:
    """``--changed-since GIT_REF``: plan, apply and drift only what changed since a git ref."""
    return click.option(
        "--changed-since",
        metavar="GIT_REF",
        default=None,
        help="Only the forms whose desired webhooks differ from GIT_REF (a partial plan; "
        "changes made in Typeform or secret rotations are not seen: run a full drift too).",
    )(f)

"""Options shared by several subcommands, so each is spelled and documented once."""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Any, TypeVar

import click

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

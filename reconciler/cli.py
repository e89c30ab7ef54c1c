"""The ``reconcile`` command line: a thin dispatcher over ``reconciler.commands``.

Its one extra job is the top-level error handler, the only place that decides exit codes for
failures: our own errors (``ReconcileError``) print their message and exit 1, SIGINT (Ctrl-C)
exits 130 and SIGTERM 143 after a clean stop, and anything unexpected exits 3 with a hint to
report it, never a traceback for a user mistake.
"""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Sequence

import click

from reconciler import __version__
from reconciler.commands.apply import apply
from reconciler.commands.drift import drift
from reconciler.commands.emulator import emulator
from reconciler.commands.plan import plan
from reconciler.commands.show import show
from reconciler.commands.signature import ping, verify_signature
from reconciler.commands.state import state
from reconciler.commands.unlock import unlock
from reconciler.commands.validate import validate
from reconciler.commands.watch import watch
from reconciler.errors import Interrupted, ReconcileError

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_INTERNAL = 3
EXIT_INTERRUPTED = 130


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="reconcile")
def cli() -> None:
    """Typeform webhooks as code: validate manifests, plan, apply, detect drift."""


for command in (
    validate,
    plan,
    apply,
    drift,
    watch,
    show,
    state,
    emulator,
    unlock,
    verify_signature,
    ping,
):
    cli.add_command(command)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``reconcile`` script; returns (and exits with) the exit code."""
    try:
        code = cli.main(args=list(argv) if argv is not None else None, standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        code = EXIT_INTERRUPTED
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        code = EXIT_INTERRUPTED
    except Interrupted as exc:
        name = signal.Signals(exc.signum).name
        click.echo(f"Stopped by {name}: what landed is in the state and the records.", err=True)
        code = 128 + exc.signum
    except click.ClickException as exc:
        exc.show()
        code = EXIT_ERROR if exc.exit_code == 2 else exc.exit_code
    except ReconcileError as exc:
        click.echo(f"Error: {exc}", err=True)
        code = EXIT_ERROR
    except ExceptionGroup as group:
        # Concurrent tasks that failed with our own errors: each is a user-facing message.
        ours, rest = group.split(ReconcileError)
        if ours is None or rest is not None:
            code = _internal(group)
        else:
            for leaf in _leaves(ours):
                click.echo(f"Error: {leaf}", err=True)
            code = EXIT_ERROR
    except Exception as exc:
        code = _internal(exc)
    if not isinstance(code, int):
        code = EXIT_OK
    sys.exit(code)


def _internal(exc: BaseException) -> int:
    logging.getLogger("reconciler").debug("internal error", exc_info=exc)
    click.echo(
        f"Internal error: {type(exc).__name__}: {exc}\n"
        "This is a bug in typeform-reconciler; please report it with the command you ran "
        "(rerun with --log-level debug for details).",
        err=True,
    )
    return EXIT_INTERNAL


def _leaves(group: BaseExceptionGroup[ReconcileError]) -> list[ReconcileError]:
    found: list[ReconcileError] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            found.extend(_leaves(exc))
        else:
            found.append(exc)
    return found

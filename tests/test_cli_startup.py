"""Starting ``reconcile`` is cheap: ``--help`` lists every command without importing any of them.

Subcommands load on first use (``reconciler.cli.COMMANDS``), so ``reconcile --help`` never pays
for httpx, pydantic models, deepdiff or the emulator. What a process imported is read from its own
``sys.modules``, in a fresh interpreter.
"""

from __future__ import annotations

import json
import subprocess
import sys

import click
import pytest

from reconciler.cli import COMMANDS, cli, main

HEAVY = ("reconciler.client", "deepdiff", "reconciler.emulator", "httpx", "reconciler.pipeline")


def _run(argv: list[str]) -> tuple[int, str, list[str]]:
    """``reconcile ARGV`` in a fresh interpreter: exit code, stdout, and the modules it loaded."""
    code = f"""
import contextlib, io, json, sys
from reconciler.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        main({argv!r})
    except SystemExit as exc:
        status = exc.code
print(json.dumps({{"code": status, "out": out.getvalue(), "modules": sorted(sys.modules)}}))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    doc = json.loads(proc.stdout)
    return doc["code"], doc["out"], doc["modules"]


def test_help_lists_every_command_with_its_one_line_help_and_imports_none_of_them() -> None:
    code, out, modules = _run(["--help"])
    assert code == 0
    commands = out.split("Commands:\n")[1].splitlines()
    listed = {line.split()[0]: " ".join(line.split()[1:]) for line in commands}
    assert listed == {name: lazy.short_help for name, lazy in COMMANDS.items()}
    loaded = [m for m in modules if m.startswith(HEAVY) or m.startswith("reconciler.commands.")]
    assert loaded == []


def test_running_a_command_loads_it_and_not_the_other_commands() -> None:
    code, out, modules = _run(["show", "--help"])
    assert code == 0
    assert "Show a plan saved by `reconcile plan --out`" in out
    assert "reconciler.commands.show" in modules
    assert "reconciler.commands.apply" not in modules
    assert "reconciler.emulator" not in modules


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_of_the_table_loads_and_shows_its_own_help(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main([name, "--help"])
    assert exited.value.code == 0
    assert "Usage: " in capsys.readouterr().out
    command = cli.get_command(click.Context(cli), name)
    assert isinstance(command, click.Command)
    assert command.name == name


def test_an_unknown_command_is_a_one_line_error_naming_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["plna"])
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert "No such command 'plna'" in err
    assert "Traceback" not in err


def test_a_command_registered_the_usual_way_is_listed_and_wins_over_the_table() -> None:
    @click.command("plan")
    def other() -> None:
        """Someone else's plan."""

    group = type(cli)(name="t", lazy=dict(COMMANDS))
    group.add_command(other)
    ctx = click.Context(group)
    assert group.get_command(ctx, "plan") is other
    assert "Someone else's plan." in group.get_help(ctx)
    assert json.dumps(group.list_commands(ctx)) == json.dumps(sorted(COMMANDS))


GC_PROBE = """
import gc, sys
from reconciler.cli import GC_THRESHOLD, main
default = gc.get_threshold()
try:
    main({argv})
except SystemExit:
    pass
print(gc.get_threshold() == GC_THRESHOLD, gc.get_threshold() == default, gc.get_freeze_count() > 0)
"""


def test_the_reconcile_process_tunes_the_collector_and_a_caller_of_main_keeps_its_own() -> None:
    def probe(argv: str, args: list[str]) -> str:
        code = GC_PROBE.format(argv=argv)
        proc = subprocess.run(
            [sys.executable, "-c", code, *args], capture_output=True, text=True, check=True
        )
        return proc.stdout.strip().splitlines()[-1]

    assert probe("", ["show", "--help"]) == "True False True"  # as `reconcile show --help`
    assert probe("['show', '--help']", []) == "False True False"  # a script calling main(argv)

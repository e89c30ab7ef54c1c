"""The whole-suite leak scan (``tests/conftest.py``) can fail, and says where without the value.

A scan that never fires proves nothing, so each test here runs a tiny generated test file in a
pytest subprocess with our conftest loaded as a plugin (``-p conftest``), and reads the session's
exit code and summary: a needle printed, read through capsys, answered by a subprocess, or
written into a tool-like file fails the session naming the test and the constant; the same
session with nothing leaked, or with a secret only in an input file the test made on purpose,
passes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

TESTS = Path(__file__).resolve().parent

# Built at run time: as module constants of this file they would be needles of this session.
INNER_VALUE = "inner-" + "needle-7d1c0f9e"
REGISTERED_VALUE = "registered-" + "needle-44aa21"

PREAMBLE = f"""
import subprocess, sys
from conftest import LEAK_NEEDLES

INNER_SECRET = {INNER_VALUE!r}
LEAK_NEEDLES.add({REGISTERED_VALUE!r})
REGISTERED = {REGISTERED_VALUE!r}
"""

LEAKY = """
def test_prints_a_secret():
    print("the webhook secret is", INNER_SECRET)

def test_reads_a_secret_through_capsys(capsys):
    print(REGISTERED)
    assert REGISTERED in capsys.readouterr().out

def test_a_subprocess_answers_a_secret():
    done = subprocess.run([sys.executable, "-c", "print(" + repr(REGISTERED) + ")"],
                          capture_output=True, text=True, check=True)
    assert done.stdout

def test_writes_a_secret_into_a_state_file(tmp_path):
    (tmp_path / "state.json").write_text('{"secret": "' + INNER_SECRET + '"}')
"""

CLEAN = """
def test_prints_nothing_secret():
    print("hello")

def test_an_input_file_named_secret_is_not_scanned(tmp_path):
    (tmp_path / "hook-secret.txt").write_text(INNER_SECRET)
    (tmp_path / "vault" ).mkdir()
    (tmp_path / "vault" / "token.json").write_text(REGISTERED)

def test_a_plain_echo_emulator_file_is_not_scanned(tmp_path):
    (tmp_path / "emu.json").write_text(
        '{"settings": {"secret_echo": "plain"}, "webhooks": [{"secret": "' + INNER_SECRET + '"}]}'
    )
"""


def run_inner(tmp_path: Path, body: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_inner.py").write_text(textwrap.dedent(PREAMBLE) + textwrap.dedent(body))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "conftest",
            "--rootdir",
            str(tmp_path),
            "--basetemp",
            str(tmp_path / "basetemp"),
            str(tmp_path / "test_inner.py"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_session_whose_tests_leak_fails_naming_each_test_and_constant_but_not_the_value(
    tmp_path: Path,
) -> None:
    done = run_inner(tmp_path, LEAKY)

    report = done.stdout + done.stderr
    assert done.returncode == 1, report
    assert "4 passed" in report  # the tests pass: the session fails because of the scan
    leaks = [line for line in report.splitlines() if line.startswith("LEAK ")]
    assert any("test_prints_a_secret" in line and "INNER_SECRET" in line for line in leaks), report
    assert any("test_reads_a_secret_through_capsys" in line for line in leaks), report
    assert any("test_a_subprocess_answers_a_secret" in line for line in leaks), report
    assert any("state.json" in line and "INNER_SECRET" in line for line in leaks), report
    assert any("LEAK_NEEDLES" in line for line in leaks), report
    assert INNER_VALUE not in report
    assert REGISTERED_VALUE not in report


def test_a_session_that_leaks_nothing_passes_and_inputs_made_on_purpose_are_not_scanned(
    tmp_path: Path,
) -> None:
    done = run_inner(tmp_path, CLEAN)

    report = done.stdout + done.stderr
    assert done.returncode == 0, report
    assert "LEAK" not in report

"""Hostile manifest input: each case is one located line, exit 1, in bounded time and memory.

Every case runs ``reconcile validate`` in a subprocess (the real entry point,
``reconciler.cli.main``) and measures that process alone: wall time from start to exit, and its
peak resident memory from ``os.wait4``'s ``ru_maxrss`` (exact for that child, unlike
``RUSAGE_CHILDREN``, which is the maximum over every child so far). Bounds: < 5 s and < 300 MB.
As a safety net, the child runs under ``RLIMIT_AS`` of 2 GB, so a regression fails the test
instead of exhausting the machine.

The text cases are committed under ``tests/hostile/`` (``generate.py`` writes the generated ones);
FIFOs, devices, symlink loops, an 11 MB file and unreadable directories are made here.

Unreadable paths: the tests run as root, whom ``chmod 000`` does not stop. The child is started
with ``CAP_DAC_OVERRIDE`` and ``CAP_DAC_READ_SEARCH`` dropped from its capability bounding set
(``prctl(PR_CAPBSET_DROP)`` before ``exec``): root without them is refused a mode-000 directory
like anyone else. Where that is not allowed (no ``CAP_SETPCAP``), those tests are skipped, saying
why; as a non-root user, ``chmod`` alone does it.
"""

from __future__ import annotations

import ctypes
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO / "tests" / "hostile"
MAX_WALL_S = 5.0
MAX_RSS_MB = 300
TOKEN = "tfp_hostile-corpus-token-not-real"
ENTRY = [sys.executable, "-c", "from reconciler.cli import main; main()"]

_PR_CAPBSET_DROP = 24
_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH = 1, 2


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str
    wall: float
    rss_mb: float

    @property
    def lines(self) -> list[str]:
        return self.out.splitlines()

    def assert_bounded(self) -> None:
        assert self.wall < MAX_WALL_S, f"took {self.wall:.1f} s"
        assert self.rss_mb < MAX_RSS_MB, f"peak memory {self.rss_mb:.0f} MB"
        assert "Traceback" not in self.err, self.err


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))


def _drop_dac() -> None:
    _limit_memory()
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH):
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def validate(
    *args: str | Path,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    unprivileged: bool = False,
) -> Run:
    """``reconcile validate --no-color ARGS`` in a child process, measured."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILE_")}
    environ.update(env or {})
    argv = [*ENTRY, "validate", "--no-color", *map(str, args)]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(
            argv,
            cwd=cwd or REPO,
            env=environ,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            preexec_fn=_drop_dac if unprivileged and os.geteuid() == 0 else _limit_memory,
        )
        killer = threading.Timer(6 * MAX_WALL_S, proc.kill)
        killer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            killer.cancel()
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Run(
            code=proc.returncode,
            out=out.read().decode("utf-8", "replace"),
            err=err.read().decode("utf-8", "replace"),
            wall=wall,
            rss_mb=usage.ru_maxrss / 1024,  # KiB on Linux
        )


def _one_error(run: Run, pattern: str) -> None:
    """Exit 1, exactly one diagnostic line, matching ``pattern``, then the summary."""
    assert run.code == 1, run.out + run.err
    assert len(run.lines) == 2, run.out
    assert re.fullmatch(pattern, run.lines[0]), run.lines[0]
    assert ": invalid (1 error" in run.lines[1]
    run.assert_bounded()


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "manifests"
    root.mkdir()
    (root / "ok.yaml").write_text(
        (CORPUS / "token_env_default" / "hooks.yaml")
        .read_text()
        .replace("  defaults:\n    secret: {env: TYPEFORM_TOKEN}\n", "")
    )
    return root


def _copy_case(name: str, tmp_path: Path) -> Path:
    target = tmp_path / name
    shutil.copytree(CORPUS / name, target)
    return target


@pytest.fixture(scope="module")
def can_drop_dac() -> Iterator[bool]:
    """Whether a child can be made subject to file permissions (see the module docstring)."""
    with tempfile.TemporaryDirectory() as tmp:
        locked = Path(tmp) / "locked"
        locked.mkdir(mode=0)
        probe = subprocess.run(
            ["ls", str(locked)],
            preexec_fn=_drop_dac if os.geteuid() == 0 else None,
            capture_output=True,
            check=False,
        )
        locked.chmod(0o700)
        yield probe.returncode != 0


# --------------------------------------------------------------------------- size and shape


def test_a_file_over_10_mb_is_one_error_naming_the_limit_without_reading_it_all(
    tmp_path: Path,
) -> None:
    big = tmp_path / "big.yaml"
    with big.open("w") as f:
        line = "# " + "x" * 1022 + "\n"
        for _ in range(11 * 1024):
            f.write(line)
    run = validate(big)
    _one_error(
        run,
        re.escape(f"{big}:1:1: file is larger than 10 MB (10,485,760 bytes), ")
        + "the limit for one manifest file; split it",
    )


def test_alias_expansion_is_budgeted_per_file_not_per_document() -> None:
    file = CORPUS / "alias_bomb_per_file.yaml"
    run = validate(file)
    _one_error(
        run,
        re.escape(str(file))
        + r":\d+:\d+: file too large: more than 250,000 YAML nodes \(aliases expanded\), "
        "the limit for one manifest file; split it",
    )


def test_two_hundred_documents_of_five_alias_levels_are_cut_off_quickly() -> None:
    file = CORPUS / "alias_bomb_5_levels.yaml"
    run = validate(file)
    _one_error(run, re.escape(str(file)) + r":\d+:\d+: file too large: .*")


def test_a_nearly_10_mb_file_of_tiny_nodes_is_stopped_before_it_is_built(tmp_path: Path) -> None:
    file = tmp_path / "flat.yaml"
    file.write_text("[" + "a," * (4 * 1024 * 1024) + "a]\n")
    run = validate(file)
    _one_error(
        run,
        re.escape(f"{file}:1:500000: file too large: more than 250,000 YAML nodes") + ".*",
    )


@pytest.mark.parametrize(
    ("name", "where"),
    [
        ("nesting_1000_flow.yaml", "1:65"),  # beyond libyaml's own limit (1000)
        ("nesting_500_flow.yaml", "1:257"),  # composed, then cut by the loader
        ("nesting_100_block.yaml", "65:129"),
    ],
)
def test_deep_nesting_is_one_error_where_level_65_starts(name: str, where: str) -> None:
    file = CORPUS / name
    run = validate(file)
    _one_error(
        run,
        re.escape(f"{file}:{where}: nested deeper than 64 levels, the limit for a manifest"),
    )


def test_a_thousand_errors_print_100_lines_and_a_count_of_the_rest(tmp_path: Path) -> None:
    file = tmp_path / "many.yaml"
    hooks = "".join(
        f"    - {{form_id: f{i}, tag: '-bad', url: 'https://x.example/'}}\n" for i in range(1000)
    )
    file.write_text(
        "apiVersion: reconciler/v1\nkind: WebhookSet\nmetadata: {name: a}\nspec:\n"
        "  webhooks:\n" + hooks
    )
    run = validate(file)
    assert run.code == 1
    assert len(run.lines) == 102
    assert run.lines[100] == "... and 900 more errors"
    assert run.lines[101] == f"{file}: invalid (1000 errors in 1 file)"
    run.assert_bounded()


# --------------------------------------------------------------------------- what is read


def test_fifos_devices_and_symlink_loops_in_the_tree_are_errors_never_opened(tree: Path) -> None:
    os.mkfifo(tree / "pipe.yaml")
    (tree / "zero.yaml").symlink_to("/dev/zero")
    (tree / "a.yaml").symlink_to(tree / "b.yaml")
    (tree / "b.yaml").symlink_to(tree / "a.yaml")
    (tree / "gone.yaml").symlink_to(tree / "nowhere.yaml")
    run = validate(tree)
    assert run.code == 1
    assert run.lines == [
        f"{tree / 'a.yaml'}: symlink loop (too many levels of symbolic links)",
        f"{tree / 'b.yaml'}: symlink loop (too many levels of symbolic links)",
        f"{tree / 'gone.yaml'}: broken symlink (its target does not exist)",
        f"{tree / 'pipe.yaml'}: is a FIFO (named pipe), not a regular file; only regular files "
        "are read",
        f"{tree / 'zero.yaml'}: is a character device, not a regular file; only regular files "
        "are read",
        f"{tree}: invalid (5 errors in 1 file)",
    ]
    run.assert_bounded()


def test_a_fifo_a_device_and_a_symlink_loop_given_as_paths_are_errors(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    loop = tmp_path / "loop.yaml"
    loop.symlink_to(loop)
    run = validate(fifo, "/dev/zero", loop)
    assert run.code == 1
    assert run.lines[:3] == [
        f"{fifo}: is a FIFO (named pipe), not a regular file; only regular files are read",
        "/dev/zero: is a character device, not a regular file; only regular files are read",
        f"{loop}: symlink loop (too many levels of symbolic links)",
    ]
    run.assert_bounded()


def test_a_directory_symlink_loop_is_an_error_naming_both_ends(tree: Path) -> None:
    (tree / "sub").mkdir()
    (tree / "sub" / "back").symlink_to(tree)
    run = validate(tree)
    _one_error(run, re.escape(f"{tree / 'sub' / 'back'}: symlink loop (leads back to {tree})"))


def test_a_symlinked_directory_is_followed_not_skipped(tree: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "more.yaml").write_text(
        (tree / "ok.yaml").read_text().replace("name: leak", "name: more").replace("t1", "t2")
    )
    (tree / "linked").symlink_to(elsewhere)
    run = validate(tree)
    assert run.code == 0, run.out
    assert run.lines == [f"{tree}: valid (2 files, 2 webhook sets, 2 webhooks)"]


def test_an_unreadable_directory_is_an_error_not_a_skip(tree: Path, can_drop_dac: bool) -> None:
    if not can_drop_dac:
        pytest.skip("cannot make a child process subject to file permissions here")
    locked = tree / "team"
    locked.mkdir()
    (locked / "x.yaml").write_text("not: read\n")
    tree.parent.chmod(0o755)
    locked.chmod(0)
    try:
        run = validate(tree, unprivileged=True)
    finally:
        locked.chmod(0o755)
    _one_error(run, re.escape(f"{locked}: cannot read directory: Permission denied"))


def test_an_unreadable_file_is_an_error_not_a_skip(tree: Path, can_drop_dac: bool) -> None:
    if not can_drop_dac:
        pytest.skip("cannot make a child process subject to file permissions here")
    secret = tree / "team.yaml"
    secret.write_text("not: read\n")
    secret.chmod(0)
    run = validate(tree, unprivileged=True)
    _one_error(run, re.escape(f"{secret}: cannot read: Permission denied"))


# --------------------------------------------------------------------------- secrets


def test_the_default_token_variable_as_a_webhook_secret_is_rejected(tmp_path: Path) -> None:
    case = _copy_case("token_env_default", tmp_path)
    run = validate(case, env={"TYPEFORM_TOKEN": TOKEN})
    _one_error(
        run,
        re.escape(
            f"{case / 'hooks.yaml'}:7:13: spec.defaults.secret: {{env: TYPEFORM_TOKEN}} is the "
            "API token variable of account 'default'; a webhook secret must be a value of its "
            "own (Typeform would receive the token)"
        ),
    )
    assert TOKEN not in run.out + run.err


def test_a_declared_account_token_variable_as_a_webhook_secret_is_rejected(
    tmp_path: Path,
) -> None:
    case = _copy_case("token_env_account", tmp_path)
    run = validate("--check-env", case, env={"TYPEFORM_TOKEN_EU": TOKEN})
    _one_error(
        run,
        re.escape(
            f"{case / 'hooks.yaml'}:18:15: spec.webhooks[0].secret: {{env: TYPEFORM_TOKEN_EU}} "
            "is the API token variable of account 'eu'"
        )
        + ".*",
    )
    assert TOKEN not in run.out + run.err


def test_an_account_token_file_as_a_webhook_secret_is_rejected(tmp_path: Path) -> None:
    case = _copy_case("token_file_account", tmp_path)
    run = validate("--check-env", case)
    _one_error(
        run,
        re.escape(
            f"{case / 'hooks.yaml'}:18:15: spec.webhooks[0].secret: "
            "{file: ./secrets/../secrets/token.txt} is the API token file of account 'eu'"
        )
        + ".*",
    )
    assert TOKEN not in run.out + run.err


def test_a_secret_file_outside_the_tree_is_rejected_without_being_read(tmp_path: Path) -> None:
    case = _copy_case("secret_file_escapes", tmp_path)
    for extra in ((), ("--check-env",)):
        run = validate(*extra, case)
        _one_error(
            run,
            re.escape(
                f"{case / 'hooks.yaml'}:10:15: spec.webhooks[0].secret: "
                f"{{file: ../../../../../../../../etc/passwd}} is outside the manifest tree "
                f"({case}) and every secret directory; keep it under {case} or allow its "
                "directory with --secret-dir DIR (RECONCILE_SECRET_DIRS)"
            ),
        )
        assert "root:" not in run.out + run.err


def test_a_symlink_in_the_tree_to_a_file_outside_it_is_rejected(tmp_path: Path) -> None:
    case = _copy_case("secret_symlink_escapes", tmp_path)
    (case / "innocent.txt").symlink_to("/etc/passwd")
    run = validate("--check-env", case)
    _one_error(
        run, re.escape(f"{case / 'hooks.yaml'}:10:15: ") + r".*is outside the manifest tree.*"
    )
    assert "root:" not in run.out


def test_a_secret_dir_allows_a_file_outside_the_tree_by_flag_or_environment(
    tmp_path: Path,
) -> None:
    case = _copy_case("secret_file_escapes", tmp_path)
    secret_dir = tmp_path / "run-secrets"
    secret_dir.mkdir()
    (secret_dir / "hook").write_text("whsec-from-a-secret-dir\n")
    hooks = case / "hooks.yaml"
    hooks.write_text(
        hooks.read_text().replace("../../../../../../../../etc/passwd", str(secret_dir / "hook"))
    )
    by_flag = validate("--check-env", "--secret-dir", secret_dir, case)
    by_env = validate(
        "--check-env", case, env={"RECONCILE_SECRET_DIRS": f"/nonexistent{os.pathsep}{secret_dir}"}
    )
    for run in (by_flag, by_env):
        assert run.code == 0, run.out
        assert "whsec-from-a-secret-dir" not in run.out + run.err
    without = validate("--check-env", case)
    assert without.code == 1
    assert "is outside the manifest tree" in without.out

"""Atomic writes (reconciler.fileio): through symlinks, and clean failures."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from reconciler.fileio import resolve_symlinks, write_atomic, write_json_atomic


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_write_atomic_creates_the_file_and_its_parent_directories(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "state.json"
    write_atomic(path, b"hello\n")
    assert path.read_bytes() == b"hello\n"
    assert names(path.parent) == ["state.json"]


def test_write_atomic_replaces_the_file_so_an_open_reader_keeps_the_old_content(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.json"
    write_atomic(path, b"old")
    with path.open("rb") as reader:
        write_atomic(path, b"new")
        assert reader.read() == b"old"
    assert path.read_bytes() == b"new"


def test_write_through_a_symlink_keeps_the_link_and_updates_its_target(tmp_path: Path) -> None:
    volume = tmp_path / "volume"
    volume.mkdir()
    target = volume / "real-state.json"
    target.write_bytes(b"old")
    link = tmp_path / "state.json"
    link.symlink_to(target)

    write_atomic(link, b"new")

    assert link.is_symlink()
    assert os.readlink(link) == str(target)
    assert target.read_bytes() == b"new"
    assert names(tmp_path) == ["state.json", "volume"]
    assert names(volume) == ["real-state.json"]  # the temp file was made next to the target


def test_write_through_a_relative_chain_of_symlinks_reaches_the_last_target(
    tmp_path: Path,
) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "state.json").write_bytes(b"old")
    (tmp_path / "middle.json").symlink_to("data/state.json")
    (tmp_path / "state.json").symlink_to("middle.json")

    write_atomic(tmp_path / "state.json", b"new")

    assert (tmp_path / "state.json").is_symlink()
    assert (tmp_path / "middle.json").is_symlink()
    assert (tmp_path / "data" / "state.json").read_bytes() == b"new"


def test_write_through_a_dangling_symlink_creates_its_target(tmp_path: Path) -> None:
    link = tmp_path / "state.json"
    link.symlink_to(tmp_path / "elsewhere" / "state.json")
    write_atomic(link, b"new")
    assert link.is_symlink()
    assert (tmp_path / "elsewhere" / "state.json").read_bytes() == b"new"


def test_a_symlink_loop_is_an_os_error_and_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "a").symlink_to("b")
    (tmp_path / "b").symlink_to("a")
    with pytest.raises(OSError, match="Too many levels of symbolic links"):
        write_atomic(tmp_path / "a", b"x")
    assert names(tmp_path) == ["a", "b"]
    assert (tmp_path / "a").is_symlink()


def test_resolve_symlinks_leaves_a_regular_or_missing_path_as_given(tmp_path: Path) -> None:
    assert resolve_symlinks(tmp_path / "missing.json") == tmp_path / "missing.json"
    (tmp_path / "file.json").write_text("{}")
    assert resolve_symlinks(tmp_path / "file.json") == tmp_path / "file.json"


def test_write_keeps_the_target_permissions_through_a_symlink(tmp_path: Path) -> None:
    target = tmp_path / "real.json"
    target.write_bytes(b"old")
    target.chmod(0o600)
    (tmp_path / "state.json").symlink_to(target)
    write_atomic(tmp_path / "state.json", b"new")
    assert target.stat().st_mode & 0o777 == 0o600


def test_a_failed_rename_removes_the_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.mkdir()  # a file cannot be renamed over a directory
    with pytest.raises(IsADirectoryError):
        write_atomic(path, b"x")
    assert names(tmp_path) == ["state.json"]


def test_a_parent_that_is_a_regular_file_is_an_os_error(tmp_path: Path) -> None:
    (tmp_path / "not-a-dir").write_text("x")
    with pytest.raises(OSError, match=r"Not a directory|File exists"):
        write_atomic(tmp_path / "not-a-dir" / "state.json", b"x")
    assert names(tmp_path) == ["not-a-dir"]


# A child process with a 4 KiB file size limit (and SIGXFSZ ignored, so the kernel answers
# EFBIG instead of killing it) writes 64 KiB: the same path as a full disk (ENOSPC), without
# needing a full disk.
FILE_TOO_BIG = textwrap.dedent(
    """
    import resource, signal, sys
    from pathlib import Path
    from reconciler.fileio import write_atomic

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
    try:
        write_atomic(Path(sys.argv[1]), b"x" * 65536)
    except OSError as exc:
        print("OSError", exc.errno, exc.strerror)
        sys.exit(0)
    print("written")
    sys.exit(1)
    """
)


def test_a_write_beyond_the_file_size_limit_raises_os_error_and_leaves_the_old_file(
    tmp_path: Path,
) -> None:

    path = tmp_path / "state.json"
    path.write_bytes(b"previous content")
    done = subprocess.run(
        [sys.executable, "-c", FILE_TOO_BIG, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.split()[:2] == ["OSError", str(errno.EFBIG)]
    assert "Traceback" not in done.stderr
    assert path.read_bytes() == b"previous content"
    assert names(tmp_path) == ["state.json"]


def test_write_json_atomic_writes_indented_utf8_with_a_trailing_newline(tmp_path: Path) -> None:
    path = tmp_path / "doc.json"
    write_json_atomic(path, {"name": "Zoë"})
    assert path.read_bytes() == '{\n  "name": "Zoë"\n}\n'.encode()

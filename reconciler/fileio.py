"""Atomic file writes: readers see the old file or the new one, never half of either.

State files, saved plans and the emulator's persisted account all go through here, so the
temp-file + fsync + rename dance (and its clean-up on failure) exists once.

It must never leave a half-written file under the final name, nor a temporary file behind after
a failure (disk full, file size limit, permission), nor replace a symlink with a regular file: a
state file that is a symlink (into a mounted volume, a shared checkout) stays one, and its
target gets the new content (SPEC section 7).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
from pathlib import Path
from typing import Any

__all__ = ["fsync_dir", "resolve_symlinks", "write_atomic", "write_json_atomic"]

_MAX_SYMLINKS = 40
"""Links followed before giving up with ELOOP, as the kernel does (Linux's limit is 40)."""


def resolve_symlinks(path: Path) -> Path:
    """The file that writing ``path`` must replace: ``path`` itself, or the end of its chain of
    symlinks (which may not exist yet). Only the last component is followed: a symlinked
    directory above it is fine for a rename as it is. Raises ``OSError`` (ELOOP) on a loop."""
    current = path
    for _ in range(_MAX_SYMLINKS):
        try:
            link = os.readlink(current)
        except OSError as exc:
            if exc.errno in (errno.EINVAL, errno.ENOENT, errno.ENOTDIR):
                return current  # not a symlink (or nothing there yet): this is the file
            raise
        current = current.parent / link  # an absolute link replaces the parent
    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), str(path))


def write_atomic(path: Path, data: bytes) -> None:
    """Replace the content of ``path`` with ``data`` atomically and durably.

    Through a symlink, the link's target is replaced and the link stays. Raises ``OSError`` on
    failure (``ENOSPC``, ``EFBIG``, ``EACCES``...), after removing its temporary file; the old
    content is then untouched.
    """
    target = resolve_symlinks(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    # 0o666 lets the umask decide, as for any file the user creates; an existing file keeps
    # the permissions its owner gave it.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        try:
            with contextlib.suppress(FileNotFoundError):
                os.fchmod(fd, target.stat().st_mode & 0o777)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(target.parent)


def write_json_atomic(path: Path, obj: Any, *, indent: int | None = 2) -> None:
    """``write_atomic`` of ``obj`` as UTF-8 JSON with a trailing newline, indented unless
    ``indent=None``: compact is about 5 times faster and lighter (json's C encoder does not
    indent), for machine-only files as large as an emulator snapshot."""
    separators = None if indent is not None else (",", ":")
    text = json.dumps(obj, indent=indent, separators=separators, ensure_ascii=False)
    write_atomic(path, (text + "\n").encode("utf-8"))


def fsync_dir(directory: Path) -> None:
    """Make a rename (or a new file) in ``directory`` durable; a no-op where unsupported."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)

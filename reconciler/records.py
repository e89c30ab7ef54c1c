"""Operation records: one JSON line per API write, appended and fsynced as it happens.

The records file (SPEC section 5) is the audit trail of what ``apply`` actually did, so each line
is on disk before the next write starts: if the process is killed, every write it made is
recorded except possibly the one in flight. The file is only ever appended to, by any number of
runs. A record holds no secret: ``OperationRecord`` has no field for one, and this module writes
nothing but its fields.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from reconciler.errors import StateError
from reconciler.models import OperationRecord

__all__ = ["DEFAULT_RECORDS_PATH", "RecordWriter", "new_run_id", "read_records"]

DEFAULT_RECORDS_PATH = Path(".reconcile/records.jsonl")


class RecordWriter:
    """Appends ``OperationRecord``s to a JSONL file; a context manager.

    The file (and its parent directories) are created on the first ``write``, so a run that
    writes nothing leaves no file behind. Each record is one ``write(2)`` of a whole line on a
    descriptor opened with ``O_APPEND``, so concurrent writers do not interleave within a line.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._closed = False
        # The applier's tasks may record from worker threads; a line is written whole.
        self._mutex = threading.Lock()

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def check(self) -> None:
        """Open the file now, so a path that cannot be written fails before any API write."""
        with self._mutex:
            try:
                self._open()
            except OSError as exc:
                raise StateError(
                    f"cannot write operation records to {self.path}: {exc.strerror or exc}"
                ) from exc

    def write(self, record: OperationRecord) -> None:
        line = json.dumps(record.to_json(), ensure_ascii=False, separators=(",", ":")) + "\n"
        with self._mutex:
            if self._closed:
                raise ValueError(f"records file {self.path} is already closed")
            try:
                fd = self._open()
                _write_all(fd, line.encode("utf-8"))
                os.fsync(fd)
            except OSError as exc:
                raise StateError(
                    f"cannot write operation records to {self.path}: {exc.strerror or exc}"
                ) from exc

    def close(self) -> None:
        with self._mutex:
            self._closed = True
            if self._fd is not None:
                fd, self._fd = self._fd, None
                os.close(fd)

    def _open(self) -> int:
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Read access only to look at the last byte (see _terminate_torn_line).
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
            try:
                _terminate_torn_line(fd)
            except BaseException:
                os.close(fd)
                raise
            self._fd = fd
        return self._fd


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _terminate_torn_line(fd: int) -> None:
    # A run killed mid-line leaves a line without its newline; end it, so our first record starts
    # a line of its own instead of being glued to the torn one.
    size = os.fstat(fd).st_size
    if size and os.pread(fd, 1, size - 1) != b"\n":
        _write_all(fd, b"\n")


def read_records(path: Path) -> list[dict[str, Any]]:
    """Every record in the file, in order; blank lines are skipped. For tests and tooling.

    A line cut short by a crash mid-write (it does not end its JSON object; the next writer
    terminated it) is skipped: it is the write the records could not confirm. Raises
    ``ValueError`` naming ``path:line`` for any other line that is not a JSON object.
    """
    records: list[dict[str, Any]] = []
    with path.open(encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                if not line.rstrip().endswith("}"):
                    continue  # torn by a crash
                raise ValueError(f"{path}:{number}: not a JSON record ({exc.msg})") from exc
            if not isinstance(obj, dict):
                raise ValueError(f"{path}:{number}: not a JSON object")
            records.append(obj)
    return records


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_run_id(*, clock: Callable[[], float] = time.time) -> str:
    """A ULID: 26 Crockford base-32 characters, 48 bits of milliseconds then 80 random bits.

    Run ids sort by start time (to the millisecond), so ``sort`` on the records file's run ids
    lists runs in order; 80 random bits make two runs sharing one id practically impossible.
    """
    millis = int(clock() * 1000) & ((1 << 48) - 1)
    value = (millis << 80) | secrets.randbits(80)
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))

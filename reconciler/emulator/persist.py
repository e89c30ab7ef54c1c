"""The emulator's account on disk: a snapshot plus an append-only journal, so a write costs a line.

``PATH`` holds a snapshot (``EmulatorStore.to_json()`` plus a random ``generation``), written
atomically. ``PATH.journal`` holds one JSON line per change since that snapshot (a webhook put
or deleted, new settings), each tagged with the snapshot's generation and appended and fsynced
before the response that made the change returns. Rewriting the whole account on each write
cost time proportional to the account; a journal line costs the change.

Loading reads the snapshot, then replays the journal lines of its generation: lines of another
generation are left over from before a compaction that crashed before removing the journal, and
a last line without its newline (or any line that is not JSON) is a write a crash cut short;
both are ignored. Compaction (a new snapshot, then the journal removed) happens on open when a
journal is left over, on close, and whenever the journal outgrows the snapshot -- so replaying
never costs more than reading the snapshot again.

Several handles (processes) may share one file, one at a time: before each request a handle
reads what others appended (``refresh``), or reloads everything when another handle compacted.
When another handle appended between this one's catching up and its own append, the next
catch-up reads this handle's own lines again too: replaying them in order is harmless, as
each line holds a webhook's or the settings' whole new value. Two processes writing at the
same instant can lose one's write, as with any whole-file rewrite; the emulator is a test
double, not a database.

This module writes only what the store gives it: digests of secrets and tokens, and a webhook's
plaintext secret only in ``secret_echo: plain`` mode.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from reconciler.emulator.seed import DEMO_SEED, Seed
from reconciler.emulator.store import EmulatorStore, utc_now
from reconciler.errors import ConfigError
from reconciler.fileio import fsync_dir, write_json_atomic

__all__ = [
    "JOURNAL_SUFFIX",
    "StoreFile",
    "journal_path",
    "load_into",
    "save_snapshot",
]

log = logging.getLogger(__name__)

JOURNAL_SUFFIX = ".journal"
MIN_COMPACT_BYTES = 1 << 20
"""The journal is compacted once it outgrows both the snapshot and this."""


def journal_path(path: Path) -> Path:
    return path.with_name(path.name + JOURNAL_SUFFIX)


@dataclass(frozen=True, slots=True)
class _Stamp:
    """What tells a handle that a file changed under it."""

    mtime_ns: int
    size: int
    inode: int

    @classmethod
    def of(cls, path: Path) -> _Stamp | None:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return None
        return cls(st.st_mtime_ns, st.st_size, st.st_ino)


# --------------------------------------------------------------------------- reading


def _read_snapshot(path: Path) -> Mapping[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read emulator state {path}: {exc.strerror}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"emulator state {path} is not valid JSON: {exc}") from exc
    if not isinstance(data, Mapping):
        raise ConfigError(f"emulator state {path}: expected a JSON object")
    return data


def _read_journal(
    path: Path, generation: str | None, *, offset: int = 0
) -> tuple[list[dict[str, Any]], int]:
    """The entries of ``generation`` from byte ``offset``; returns them and the offset after
    the last complete line (a torn last line is left for later, or for compaction)."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            raw = f.read()
    except FileNotFoundError:
        return [], 0
    except OSError as exc:
        raise ConfigError(f"cannot read emulator journal {path}: {exc.strerror}") from exc
    end = raw.rfind(b"\n") + 1
    entries: list[dict[str, Any]] = []
    if generation is None:
        return entries, offset + end
    for number, line in enumerate(raw[:end].splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            log.warning("%s: ignoring a line a crash cut short (line %d)", path, number)
            continue
        if not isinstance(entry, dict) or entry.get("g") != generation:
            continue
        entries.append(entry)
    return entries, offset + end


def _replay(store: EmulatorStore, entries: list[dict[str, Any]], journal: Path) -> None:
    for entry in entries:
        try:
            store.apply_change(entry)
        except ValueError as exc:
            raise ConfigError(f"emulator journal {journal}: {exc}") from exc
    store.take_changes()  # replayed changes are already on disk


def load_into(store: EmulatorStore, path: Path) -> str | None:
    """Replace ``store``'s content with the account at ``path``; returns its generation."""
    data = _read_snapshot(path)
    try:
        store.load_json(data)
    except ValueError as exc:
        raise ConfigError(f"emulator state {path}: {exc}") from exc
    generation = data.get("generation")
    generation = generation if isinstance(generation, str) else None
    entries, _ = _read_journal(journal_path(path), generation)
    _replay(store, entries, journal_path(path))
    store.take_changes()
    return generation


# --------------------------------------------------------------------------- writing


def save_snapshot(store: EmulatorStore, path: Path) -> str:
    """Write ``store`` as a new snapshot generation, then retire the journal; returns the
    generation. A crash in between leaves journal lines of the old generation: ignored."""
    generation = secrets.token_hex(8)
    write_json_atomic(path, {**store.to_json(), "generation": generation}, indent=None)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(journal_path(path))
    store.take_changes()
    return generation


def _append(path: Path, lines: bytes, *, expected_size: int) -> int | None:
    """Append and fsync; returns the new size if nobody else appended since ``expected_size``."""
    created = not path.exists()
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        size = os.fstat(fd).st_size
        if size > 0 and os.pread(fd, 1, size - 1) != b"\n":
            lines = b"\n" + lines  # end a line a crash cut short, so ours stays whole
        view = memoryview(lines)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    if created:
        fsync_dir(path.parent)
    return size + len(lines) if size == expected_size else None


# --------------------------------------------------------------------------- a handle


class StoreFile:
    """Keeps one store and its file in step: ``refresh`` before a request, ``flush`` after a
    change (the app's ``on_change``), ``close`` at the end (compacts)."""

    def __init__(
        self,
        path: Path,
        store: EmulatorStore,
        generation: str | None,
        *,
        compact_at: int = MIN_COMPACT_BYTES,
    ) -> None:
        self.path = path
        self._compact_at = compact_at
        self.journal = journal_path(path)
        self.store = store
        self._generation = generation
        self._offset = 0
        self._snapshot_stamp: _Stamp | None = None
        self._journal_stamp: _Stamp | None = None
        self._saved_total = -1

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        seed: Seed = DEMO_SEED,
        now: Callable[[], datetime] = utc_now,
        compact_at: int = MIN_COMPACT_BYTES,
    ) -> StoreFile:
        """The account at ``path`` (created from ``seed`` on first use), compacted if a journal
        was left over. Raises ``ConfigError`` for a file that is not an emulator account.

        ``compact_at``: the journal is compacted once it outgrows both the snapshot and this
        many bytes."""
        path = Path(path)
        store = EmulatorStore(seed, now=now)
        handle = cls(path, store, None, compact_at=compact_at)
        if path.exists():
            handle._load()
            if handle._offset > 0 or handle._journal_stamp is not None:
                handle.compact()
        else:
            handle.compact()
        return handle

    # ----------------------------------------------------------------- reading

    def _load(self) -> None:
        data = _read_snapshot(self.path)
        stamp = _Stamp.of(self.path)
        try:
            self.store.load_json(data)
        except ValueError as exc:
            raise ConfigError(f"emulator state {self.path}: {exc}") from exc
        generation = data.get("generation")
        self._generation = generation if isinstance(generation, str) else None
        self._journal_stamp = _Stamp.of(self.journal)
        entries, self._offset = _read_journal(self.journal, self._generation)
        _replay(self.store, entries, self.journal)
        self._snapshot_stamp = stamp
        self._saved_total = self.store.stats.total

    def refresh(self) -> None:
        """Catch up with what other handles wrote: their journal lines, or a whole reload when
        one of them compacted."""
        if _Stamp.of(self.path) != self._snapshot_stamp:
            self._load()
            return
        stamp = _Stamp.of(self.journal)
        if stamp == self._journal_stamp:
            return
        seen = self._journal_stamp
        if stamp is None or (seen is not None and stamp.inode != seen.inode):
            self._load()
            return
        if stamp.size < self._offset:
            self._load()
            return
        entries, self._offset = _read_journal(self.journal, self._generation, offset=self._offset)
        _replay(self.store, entries, self.journal)
        self._journal_stamp = stamp

    # ----------------------------------------------------------------- writing

    def flush(self, _store: EmulatorStore | None = None) -> None:
        """Persist the store's changes: journal lines, or a new snapshot when only one will do
        (or when the journal has outgrown the snapshot)."""
        changes = self.store.take_changes()
        if changes is None:
            self.compact()
            return
        if not changes:
            return
        if self._generation is None:
            self.compact()
            return
        lines = b"".join(
            json.dumps(
                {"g": self._generation, **entry},
                ensure_ascii=False,
                separators=(",", ":"),
            ).encode("utf-8")
            + b"\n"
            for entry in changes
        )
        new_size = _append(self.journal, lines, expected_size=self._offset)
        if new_size is not None:
            self._offset = new_size
        self._journal_stamp = _Stamp.of(self.journal)
        snapshot_size = self._snapshot_stamp.size if self._snapshot_stamp else 0
        if self._journal_stamp is not None and self._journal_stamp.size > max(
            self._compact_at, snapshot_size
        ):
            self.compact()

    def compact(self) -> None:
        """Write the whole account as a new snapshot and retire the journal."""
        self.store.take_changes()
        self._generation = save_snapshot(self.store, self.path)
        self._snapshot_stamp = _Stamp.of(self.path)
        self._journal_stamp = None
        self._offset = 0
        self._saved_total = self.store.stats.total

    def close(self) -> None:
        """Compact if anything (requests counted included) happened since the last snapshot."""
        self.flush()
        if self._offset > 0 or self.store.stats.total != self._saved_total:
            self.compact()

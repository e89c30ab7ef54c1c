"""Read the manifests: find, parse and validate YAML into a ``DesiredState``.

This is the only way desired state enters the pipeline, so it is strict and exhaustive: it
collects *every* problem it can find (YAML syntax, the JSON Schema in ``schemas/``, then the
cross-document rules a schema cannot express) and reports each at the ``FILE:LINE:COL`` of the
YAML node at fault, like a compiler. The schema is the single home of every rule it can express;
this module only adds duplicates across documents, account references and URL checks that a
pattern cannot explain readably.

It must never resolve a secret unless asked to (``check_env``), never echo a secret or the
credentials of a URL in a message, never touch the network, and never turn a missing or empty
manifest directory into "nothing is desired" (that is how accounts get wiped). Discovery never
skips silently: symlinked directories are followed (a loop is an error), an unreadable
directory or file is an error, and only regular files are opened (a FIFO or a device is an
error, never read). Input is hostile until proven otherwise, so every file is bounded before it
can cost much: at most ``MAX_FILE_BYTES`` read, at most ``MAX_NODES`` YAML nodes per *file*
after alias expansion, at most ``MAX_DEPTH`` levels of nesting; each breach is one located
error, in bounded time and memory, never a traceback.
"""

from __future__ import annotations

import difflib
import errno
import functools
import gc
import json
import math
import os
import re
import stat
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

from reconciler.credentials import (
    DEFAULT_TOKEN_ENV,
    SECRET_DIRS_ENV,
    resolve_secret,
    secret_dirs_from,
    secret_file_allowed,
    secret_file_path,
)
from reconciler.errors import ManifestError, SecretResolutionError
from reconciler.hosts import is_loopback_host as _is_loopback
from reconciler.models import (
    DEFAULT_ACCOUNT,
    DEFAULT_RATE,
    Account,
    DesiredState,
    DesiredWebhook,
    Diagnostic,
    EventTypes,
    FormSelector,
    Location,
    Ownership,
    Presence,
    SecretRef,
    SecretSource,
    SelectorEntry,
    Severity,
    WebhookKey,
    WebhookSet,
)

__all__ = [
    "API_VERSION",
    "MANIFEST_SUFFIXES",
    "MAX_DEPTH",
    "MAX_FILE_BYTES",
    "MAX_NODES",
    "SCHEMA_FILE",
    "CheckResult",
    "check",
    "discover",
    "load_desired",
    "load_schema",
]

API_VERSION = "reconciler/v1"
"""What every document's ``apiVersion`` says (the schema enforces it; ``export`` writes it)."""
SCHEMA_FILE = "reconciler-v1.schema.json"
MANIFEST_SUFFIXES = (".yaml", ".yml")

MAX_FILE_BYTES = 10 * 1024 * 1024
"""The largest manifest file read (10 MB): 10,000 webhooks take about 1 MB."""
MAX_NODES = 250_000
"""YAML nodes per file, counted after alias expansion and over all of the file's documents:
alias expansion can blow a small file up exponentially ("billion laughs"), one document or
hundreds. 10,000 webhooks in one file take about 100,000."""
MAX_DEPTH = 64
"""Levels of nested mappings and lists; a manifest needs 6."""
_MAX_SHOWN = 80

# libyaml's parser is several times faster and keeps the same node marks; the pure-Python one
# is the fallback where PyYAML was built without it.
_YAML_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_YAML_MAP = "tag:yaml.org,2002:map"
_YAML_STR = "tag:yaml.org,2002:str"
# Printable ASCII and ordinary whitespace: where Python's ``re`` and the compiled validator's
# regex dialect agree on every pattern of the schema (``\s`` differs beyond it).
_PLAIN_TEXT = re.compile(r"[\t\n\r\x20-\x7e]*").fullmatch
_YAML_SEQ = "tag:yaml.org,2002:seq"
_YAML_MERGE = "tag:yaml.org,2002:merge"

Pointer = tuple[str | int, ...]


# --------------------------------------------------------------------------- public API


@dataclass(frozen=True, slots=True)
class CheckResult:
    """Everything ``check`` found.

    ``desired`` is set only when there is no error. The counts describe what could be read even
    when there are errors, for the summary line.
    """

    desired: DesiredState | None
    diagnostics: tuple[Diagnostic, ...]
    files: int = 0
    sets: int = 0
    accounts: int = 0
    webhooks: int = 0

    @property
    def errors(self) -> tuple[Diagnostic, ...]:
        return tuple(d for d in self.diagnostics if d.severity is Severity.ERROR)

    @property
    def warnings(self) -> tuple[Diagnostic, ...]:
        return tuple(d for d in self.diagnostics if d.severity is Severity.WARNING)

    @property
    def valid(self) -> bool:
        return self.desired is not None


def load_desired(
    paths: Sequence[str | Path],
    *,
    check_env: bool = False,
    environ: Mapping[str, str] | None = None,
    secret_dirs: Sequence[str | Path] | None = None,
) -> DesiredState:
    """Load and validate the manifests under ``paths``; raise ``ManifestError`` with every error.

    Warnings (e.g. ``http://`` URLs) do not fail the load; they are in ``DesiredState.warnings``.
    With ``check_env``, every secret and token reference must also resolve in ``environ``
    (default ``os.environ``); values are read only to be checked and then dropped.
    ``secret_dirs`` are where ``{file: PATH}`` secrets may live besides their manifest tree
    (default: ``RECONCILE_SECRET_DIRS`` of ``environ``).
    """
    result = check(paths, check_env=check_env, environ=environ, secret_dirs=secret_dirs)
    if result.desired is None:
        raise ManifestError(result.errors)
    return result.desired


def check(
    paths: Sequence[str | Path],
    *,
    check_env: bool = False,
    environ: Mapping[str, str] | None = None,
    secret_dirs: Sequence[str | Path] | None = None,
) -> CheckResult:
    """Like ``load_desired`` but never raises for a manifest problem: returns every diagnostic."""
    env = os.environ if environ is None else environ
    dirs = secret_dirs_from(env) if secret_dirs is None else tuple(Path(d) for d in secret_dirs)
    with _no_gc():
        # The YAML nodes die with _load's frame, before the collector runs again.
        return _load(paths, check_env=check_env, environ=env, secret_dirs=dirs)


def _load(
    paths: Sequence[str | Path],
    *,
    check_env: bool,
    environ: Mapping[str, str],
    secret_dirs: Sequence[Path],
) -> CheckResult:
    diagnostics: list[Diagnostic] = []
    found = _discover(paths, diagnostics)
    files = [file for file, _ in found]
    docs: list[_Doc] = []
    for file, root in found:
        docs.extend(_read_file(file, diagnostics, root=root))
    for doc in docs:
        if not doc.limited:
            _validate_doc(doc, diagnostics)
    builder = _Builder(diagnostics, secret_dirs)
    builder.build(docs)
    if check_env:
        builder.check_env(environ)
    order = {str(f): i for i, f in enumerate(files)}
    # One node can break the same rule twice (e.g. ``spec`` is typed at the top level and again
    # by its kind's branch): say it once.
    diagnostics = sorted(dict.fromkeys(diagnostics), key=lambda d: _sort_key(d, order))
    errors = any(d.severity is Severity.ERROR for d in diagnostics)
    warnings = tuple(d for d in diagnostics if d.severity is Severity.WARNING)
    desired = None
    if not errors:
        desired = DesiredState(
            accounts=tuple(sorted(builder.accounts, key=lambda a: a.name)),
            sets=tuple(sorted(builder.sets, key=lambda s: (s.account, s.name))),
            warnings=warnings,
        )
    return CheckResult(
        desired=desired,
        diagnostics=tuple(diagnostics),
        files=len(files),
        sets=len(builder.sets),
        accounts=len(builder.accounts),
        webhooks=sum(len(s.webhooks) for s in builder.sets),
    )


def discover(paths: Sequence[str | Path], diagnostics: list[Diagnostic]) -> list[Path]:
    """The manifest files named by ``paths``: files as given, directories searched recursively.

    Directories are walked in sorted order for ``*.yaml`` / ``*.yml``, skipping hidden entries
    (``.git``, ``.reconcile``). A path that does not exist, and a directory holding no manifest,
    are errors: both usually mean a typo or a checkout gone wrong, and must not read as "nothing
    is desired". A file given explicitly is read whatever its suffix. Each file is read once.
    Symlinks are followed (a loop is an error); a directory that cannot be listed, and a
    manifest that is not a regular file (a FIFO, a device, a socket), are errors too.
    """
    return [file for file, _ in _discover(paths, diagnostics)]


@contextmanager
def _no_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while loading.

    Composing YAML allocates hundreds of thousands of small objects that all stay alive; each
    allocation burst makes the collector scan them again, which tripled the cost of a 10,000
    webhook tree. Nothing built here is cyclic garbage worth collecting early.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@functools.cache
def load_schema() -> dict[str, Any]:
    """The manifest JSON Schema, from the installed package or else the source tree."""
    packaged = resources.files("reconciler").joinpath("_schemas", SCHEMA_FILE)
    if packaged.is_file():
        text = packaged.read_text(encoding="utf-8")
    else:
        text = (Path(__file__).resolve().parent.parent / "schemas" / SCHEMA_FILE).read_text(
            encoding="utf-8"
        )
    schema: dict[str, Any] = json.loads(text)
    return schema


# --------------------------------------------------------------------------- discovery, YAML


_FILE_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISDIR, "a directory"),
)


def _not_regular(path: str, mode: int) -> Diagnostic:
    kind = next((name for test, name in _FILE_KINDS if test(mode)), "not a regular file")
    return Diagnostic(None, f"{path}: is {kind}, not a regular file; only regular files are read")


def _stat_problem(path: str, exc: OSError) -> Diagnostic:
    """One line for a path that cannot be looked at: a loop, a dangling symlink, a permission."""
    if exc.errno == errno.ELOOP:
        return Diagnostic(None, f"{path}: symlink loop (too many levels of symbolic links)")
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        if os.path.lexists(path):
            return Diagnostic(None, f"{path}: broken symlink (its target does not exist)")
        return Diagnostic(None, f"{path}: no such file or directory")
    return Diagnostic(None, f"{path}: cannot read: {exc.strerror or exc}")


def _discover(paths: Sequence[str | Path], diagnostics: list[Diagnostic]) -> list[tuple[Path, str]]:
    """``discover``, with the root each file was found under (its PATH argument)."""
    found: list[tuple[Path, str]] = []
    seen: set[str] = set()

    def add(file: Path, root: str) -> None:
        real = os.path.realpath(file)
        if real not in seen:
            seen.add(real)
            found.append((file, root))

    for raw in paths:
        path = Path(raw)
        try:
            info = os.stat(path)
        except OSError as exc:
            diagnostics.append(_stat_problem(str(raw), exc))
            continue
        if stat.S_ISDIR(info.st_mode):
            problems = len(diagnostics)
            in_dir = sorted(_walk(path, info, diagnostics), key=lambda p: p.parts)
            if not in_dir and len(diagnostics) == problems:
                diagnostics.append(
                    Diagnostic(None, f"{raw}: no manifests (*.yaml, *.yml) found in this directory")
                )
            for file in in_dir:
                add(file, str(path))
        elif stat.S_ISREG(info.st_mode):
            add(path, str(path.parent))
        else:
            diagnostics.append(_not_regular(str(raw), info.st_mode))
    return found


def _walk(top: Path, top_info: os.stat_result, diagnostics: list[Diagnostic]) -> list[Path]:
    """Every manifest under ``top``, following symlinks, with loop detection.

    Iterative (a deep tree cannot exhaust the stack). A directory whose ``(st_dev, st_ino)`` is
    already on the path from ``top`` is a loop: reported, not entered.
    """
    found: list[Path] = []
    top_id = (top_info.st_dev, top_info.st_ino)
    stack: list[tuple[Path, dict[tuple[int, int], Path]]] = [(top, {top_id: top})]
    while stack:
        directory, ancestors = stack.pop()
        try:
            with os.scandir(directory) as entries:
                names = sorted(entry.name for entry in entries)
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            diagnostics.append(Diagnostic(None, f"{directory}: cannot read directory: {reason}"))
            continue
        subdirs: list[tuple[Path, dict[tuple[int, int], Path]]] = []
        for name in names:
            if name.startswith("."):
                continue
            path = directory / name
            try:
                info = os.stat(path)
            except OSError as exc:
                diagnostics.append(_stat_problem(str(path), exc))
                continue
            if stat.S_ISDIR(info.st_mode):
                ident = (info.st_dev, info.st_ino)
                if ident in ancestors:
                    diagnostics.append(
                        Diagnostic(None, f"{path}: symlink loop (leads back to {ancestors[ident]})")
                    )
                else:
                    subdirs.append((path, {**ancestors, ident: path}))
            elif name.endswith(MANIFEST_SUFFIXES):
                if stat.S_ISREG(info.st_mode):
                    found.append(path)
                else:
                    diagnostics.append(_not_regular(str(path), info.st_mode))
        stack.extend(reversed(subdirs))
    return found


@dataclass
class _Doc:
    """One YAML document: its plain value and where each of its nodes is."""

    file: str
    base_dir: str
    value: Any
    root: str = "."
    nodes: dict[Pointer, yaml.Node] = field(default_factory=dict)
    keys: dict[Pointer, yaml.Node] = field(default_factory=dict)
    broken: bool = False
    limited: bool = False
    """Over a size, alias or nesting limit: only that is reported, the rest is not checked."""
    exotic: bool = False
    """Holds text beyond printable ASCII, where regex dialects differ: validate in Python."""
    bad_entries: set[int] = field(default_factory=set)
    unreadable: set[Pointer] = field(default_factory=set)
    """Values the converter already reported: schema errors about them would only repeat it."""

    def loc(self, ptr: Pointer, *, key: bool = False) -> Location:
        """Where ``ptr`` is; with ``key``, where its key is (the nearest existing ancestor else)."""
        node = self.keys.get(ptr) if key else None
        while node is None:
            node = self.nodes.get(ptr)
            if node is None:
                if not ptr:
                    return Location(self.file, 1, 1)
                ptr = ptr[:-1]
        return _mark_loc(self.file, node.start_mark)


def _mark_loc(file: str, mark: Any) -> Location:
    """``mark`` is a ``yaml.Mark`` (of either the C or the Python parser) or ``None``."""
    if mark is None:
        return Location(file, 1, 1)
    return Location(file, mark.line + 1, mark.column + 1)


def _read_bytes(path: Path, diagnostics: list[Diagnostic]) -> bytes | None:
    """At most ``MAX_FILE_BYTES`` of a regular file, or ``None`` after reporting why not.

    The file is opened non-blocking (a FIFO swapped in after discovery cannot hang us) and
    checked again once open; never more than the limit plus one byte is read.
    """
    file = str(path)
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            diagnostics.append(_not_regular(file, info.st_mode))
            return None
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOENT):
            diagnostics.append(_stat_problem(file, exc))
        else:
            diagnostics.append(Diagnostic(None, f"{file}: cannot read: {exc.strerror or exc}"))
        return None
    chunks: list[bytes] = []
    size = 0
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            diagnostics.append(_not_regular(file, info.st_mode))
            return None
        if info.st_size <= MAX_FILE_BYTES:
            while size <= MAX_FILE_BYTES:
                chunk = os.read(fd, min(MAX_FILE_BYTES + 1 - size, 1 << 20))
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
        else:
            size = info.st_size
    except OSError as exc:
        diagnostics.append(Diagnostic(None, f"{file}: cannot read: {exc.strerror or exc}"))
        return None
    finally:
        os.close(fd)
    if size > MAX_FILE_BYTES:
        limit = f"{MAX_FILE_BYTES // (1024 * 1024)} MB ({MAX_FILE_BYTES:,} bytes)"
        diagnostics.append(
            Diagnostic(
                Location(file, 1, 1),
                f"file is larger than {limit}, the limit for one manifest file; split it",
            )
        )
        return None
    return b"".join(chunks)


@dataclass
class _Budget:
    """What one file may still cost: nodes after alias expansion, shared by its documents."""

    nodes: int = MAX_NODES
    reported: bool = False


def _read_file(path: Path, diagnostics: list[Diagnostic], *, root: str = ".") -> list[_Doc]:
    file = str(path)
    data = _read_bytes(path, diagnostics)
    if data is None:
        return []
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        loc = _offset_loc(file, data[: exc.start].decode("utf-8", "replace"))
        diagnostics.append(Diagnostic(loc, "not UTF-8 text (manifests must be UTF-8)"))
        return []
    del data
    # As given (relative stays relative), so a saved plan names the same place in any checkout.
    base_dir = str(path.parent)
    docs: list[_Doc] = []
    budget = _Budget()
    try:
        for node in yaml.compose_all(text, Loader=_BoundedLoader):
            if node is None or (node.tag == "tag:yaml.org,2002:null" and not node.value):
                continue  # an empty document ("---" alone, or a trailing "---") means nothing
            doc = _Doc(file=file, base_dir=base_dir, value=None, root=root)
            doc.value = _Converter(doc, diagnostics, budget).convert(node, ())
            docs.append(doc)
            if budget.reported:
                # Over a limit: that one line is the file's report, its documents are not
                # checked (an alias bomb's other documents would only add noise).
                for done in docs:
                    done.broken = done.limited = True
                return docs
    except _TooManyNodes:
        # Where exactly: parser events are counted (aliases too, so they cross no later).
        diagnostics.append(_prescan(file, text) or _too_many(file, None))
        for done in docs:
            done.broken = done.limited = True
        return docs
    except yaml.MarkedYAMLError as exc:
        if exc.problem == "exceeded maximum nesting depth":  # libyaml's own limit (1000)
            # libyaml's scanner can hit it before yielding any event (flow keys look ahead):
            # the Python parser has no such limit and finds level 65 itself.
            problem = _prescan(file, text, loader=yaml.SafeLoader)
            diagnostics.append(problem or _too_deep(file, exc.problem_mark))
            return docs
        where = exc.problem_mark or exc.context_mark
        message = f"YAML syntax error: {exc.problem or exc.context or 'cannot parse'}"
        if exc.context and exc.problem and exc.context_mark is not None:
            message += f" ({exc.context} at line {exc.context_mark.line + 1})"
        diagnostics.append(Diagnostic(_mark_loc(file, where), message))
        return docs
    except yaml.reader.ReaderError as exc:
        loc = _offset_loc(file, text[: exc.position])
        diagnostics.append(Diagnostic(loc, f"not valid YAML text: {exc.reason}"))
        return docs
    except RecursionError:  # the pure-Python composer, where libyaml is missing
        diagnostics.append(_prescan(file, text, loader=yaml.SafeLoader) or _too_deep(file, None))
        return docs
    if not docs:
        diagnostics.append(
            Diagnostic(Location(file, 1, 1), "file holds no manifest document", Severity.WARNING)
        )
    return docs


class _TooManyNodes(Exception):
    """Raised from inside the composer: the file holds more than ``MAX_NODES`` nodes."""


class _BoundedLoader(_YAML_LOADER):  # type: ignore[misc,valid-type]
    """The fast loader, stopped once a file has composed ``MAX_NODES`` nodes.

    The composer asks ``resolve`` for the tag of every node it builds (libyaml's too), so
    counting there bounds the memory a file can take while it is composed (about 300 bytes a
    node), at no cost worth measuring. One loader composes every document of a file.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._nodes_left = MAX_NODES

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        self._nodes_left -= 1
        if self._nodes_left < 0:
            raise _TooManyNodes
        return super().resolve(kind, value, implicit)


def _too_deep(file: str, mark: Any) -> Diagnostic:
    return Diagnostic(
        _mark_loc(file, mark),
        f"nested deeper than {MAX_DEPTH} levels, the limit for a manifest",
    )


def _too_many(file: str, mark: Any) -> Diagnostic:
    return Diagnostic(
        _mark_loc(file, mark),
        f"file too large: more than {MAX_NODES:,} YAML nodes (aliases expanded), "
        "the limit for one manifest file; split it",
    )


_NODE_EVENTS = (yaml.ScalarEvent, yaml.AliasEvent, yaml.CollectionStartEvent)


def _prescan(
    file: str, text: str, *, loader: type[yaml.SafeLoader] = _YAML_LOADER
) -> Diagnostic | None:
    """The first node over the nesting or node limit, found from parser events alone.

    Events are streamed and dropped, so this costs little memory whatever the file holds. A
    syntax error stops the scan quietly: composing reports it, at its place, as usual.
    """
    depth = 0
    nodes = 0
    try:
        for event in yaml.parse(text, Loader=loader):
            if isinstance(event, _NODE_EVENTS):
                nodes += 1
                if nodes > MAX_NODES:
                    return _too_many(file, event.start_mark)
                if isinstance(event, yaml.CollectionStartEvent):
                    depth += 1
                    if depth > MAX_DEPTH:
                        return _too_deep(file, event.start_mark)
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except (yaml.YAMLError, RecursionError):
        return None
    return None


def _offset_loc(file: str, before: str) -> Location:
    """The location just after ``before``, the text preceding a problem."""
    return Location(file, before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1)


class _Converter:
    """Builds plain Python values from a composed YAML node tree, recording where each node is.

    Keys are taken as their literal text, so ``on:`` or ``1:`` are the strings a reader sees, not
    YAML 1.1 booleans or numbers. Scalars are constructed by PyYAML's safe constructor.
    """

    def __init__(self, doc: _Doc, diagnostics: list[Diagnostic], budget: _Budget) -> None:
        self._doc = doc
        self._diagnostics = diagnostics
        self._constructor = yaml.SafeLoader("")
        self._budget = budget
        self._active: set[int] = set()

    def _error(self, node: yaml.Node, message: str) -> None:
        self._doc.broken = True
        self._diagnostics.append(Diagnostic(_mark_loc(self._doc.file, node.start_mark), message))

    def _over_limit(self, problem: Diagnostic) -> None:
        """Once per file: the first node over a limit. The document is checked no further."""
        self._doc.broken = self._doc.limited = True
        if not self._budget.reported:
            self._budget.reported = True
            self._diagnostics.append(problem)

    def convert(self, node: yaml.Node, ptr: Pointer) -> Any:
        budget = self._budget
        budget.nodes -= 1
        if budget.nodes < 0:
            self._over_limit(_too_many(self._doc.file, node.start_mark))
            return None
        self._doc.nodes[ptr] = node
        if isinstance(node, yaml.ScalarNode):
            if node.tag == _YAML_STR:  # most values: no constructor needed
                value: str = node.value
                if not self._doc.exotic and not _PLAIN_TEXT(value):
                    self._doc.exotic = True
                return value
            return self._scalar(node, ptr)
        if len(ptr) >= MAX_DEPTH:
            self._over_limit(_too_deep(self._doc.file, node.start_mark))
            return None
        if id(node) in self._active:
            self._error(node, "recursive YAML alias")
            return None
        self._active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                if node.tag != _YAML_SEQ:
                    self._error(node, f"unsupported YAML tag {node.tag!r}")
                return [self.convert(item, (*ptr, i)) for i, item in enumerate(node.value)]
            if isinstance(node, yaml.MappingNode):
                if node.tag != _YAML_MAP:
                    self._error(node, f"unsupported YAML tag {node.tag!r}")
                return self._mapping(node, ptr)
            self._error(node, "unsupported YAML node")
            return None
        finally:
            self._active.discard(id(node))

    def _scalar(self, node: yaml.ScalarNode, ptr: Pointer) -> Any:
        try:
            value = self._constructor.construct_object(node, deep=True)
            if not isinstance(value, bool | int | float | str | None):
                self._doc.exotic = True  # dates, bytes: only Python's validator knows them
            return value
        except yaml.MarkedYAMLError as exc:
            self._error(node, f"cannot read value: {exc.problem}")
        except (ValueError, TypeError, OverflowError):
            self._error(node, f"cannot read value of type {node.tag}")
        self._doc.unreadable.add(ptr)
        return node.value

    def _mapping(self, node: yaml.MappingNode, ptr: Pointer) -> dict[str, Any]:
        result: dict[str, Any] = {}
        first_key: dict[str, yaml.Node] = {}
        merged: list[tuple[yaml.Node, yaml.Node]] = []
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag == _YAML_MERGE:
                merged.extend(self._merge_sources(value_node))
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self._error(key_node, "mapping keys must be plain strings")
                continue
            key = key_node.value
            if key in first_key:
                line = first_key[key].start_mark.line + 1
                self._error(key_node, f"duplicate key {key!r} (first at line {line})")
            first_key[key] = key_node
            self._doc.keys[(*ptr, key)] = key_node
            result[key] = self.convert(value_node, (*ptr, key))
        # "<<: *anchor" merges: explicit keys win, then earlier merge sources win.
        for key_node, value_node in merged:
            key = key_node.value
            if key not in result:
                self._doc.keys[(*ptr, key)] = key_node
                result[key] = self.convert(value_node, (*ptr, key))
        return result

    def _merge_sources(self, node: yaml.Node) -> list[tuple[yaml.Node, yaml.Node]]:
        sources = node.value if isinstance(node, yaml.SequenceNode) else [node]
        pairs: list[tuple[yaml.Node, yaml.Node]] = []
        for source in sources:
            if not isinstance(source, yaml.MappingNode):
                self._error(source, "'<<' merges only mappings")
                continue
            for key_node, value_node in source.value:
                if isinstance(key_node, yaml.ScalarNode) and key_node.tag != _YAML_MERGE:
                    pairs.append((key_node, value_node))
        return pairs


# --------------------------------------------------------------------------- schema


@functools.cache
def _validator() -> Draft202012Validator:
    return Draft202012Validator(load_schema())


@functools.cache
def _fast_check() -> Callable[[Any], bool] | None:
    """A compiled validator's yes/no, if ``jsonschema-rs`` is installed; ``None`` otherwise.

    It only ever says "valid": a document it rejects (or cannot take, e.g. a NaN) is checked
    again by ``jsonschema``, which explains every error exactly as without it. Formats are
    annotations, as in ``jsonschema``.
    """
    try:
        import jsonschema_rs  # optional: the fast path only
    except ImportError:
        return None
    try:
        validator = jsonschema_rs.validator_for(load_schema(), validate_formats=False)
    except Exception:  # any trouble compiling: use the reference validator
        return None
    is_valid: Callable[[Any], bool] = validator.is_valid
    return is_valid


def _validate_doc(doc: _Doc, out: list[Diagnostic]) -> None:
    if not isinstance(doc.value, dict):
        doc.broken = True
        out.append(
            Diagnostic(
                doc.loc(()),
                "a manifest document must be a mapping with apiVersion, kind, metadata and "
                f"spec, not {_kind_of(doc.value)}",
            )
        )
        return
    fast = _fast_check()
    if fast is not None and not doc.exotic:
        try:
            if fast(doc.value):
                return
        except Exception:  # noqa: S110 -- a value it cannot take: ask jsonschema
            pass
    errors = sorted(_validator().iter_errors(doc.value), key=lambda e: list(map(str, e.path)))
    for error in errors:
        ptr: Pointer = tuple(error.absolute_path)
        if (
            len(ptr) >= 3
            and ptr[:2] == ("spec", "webhooks")
            and isinstance(ptr[2], int)
            and doc.value.get("kind") == "WebhookSet"
        ):
            doc.bad_entries.add(ptr[2])
        else:
            doc.broken = True
        if not any(ptr[: len(bad)] == bad for bad in doc.unreadable):
            out.extend(_explain(doc, error))


def _explain(doc: _Doc, error: ValidationError) -> list[Diagnostic]:
    """Human diagnostics for one schema error, at the YAML node it is about."""
    if error.context:  # oneOf / anyOf: the branch that got furthest says the most
        inner = best_match(error.context)
        if inner is not None:
            return _explain(doc, inner)
    ptr: Pointer = tuple(error.absolute_path)
    where = _render_ptr(ptr)
    prefix = f"{where}: " if where else ""
    schema = error.schema if isinstance(error.schema, dict) else {}
    # Whatever sits under a secret or token may be the value itself, pasted where a reference
    # belongs (``{env: s3cr3t}``): describe it, never echo it.
    hidden = any(part in _SENSITIVE_KEYS for part in ptr)
    raw: Any = error.instance
    instance: Any = _Hidden(raw) if hidden else raw
    bound: Any = error.validator_value
    kw = error.validator

    if kw == "additionalProperties" and isinstance(raw, dict):
        allowed = list(schema.get("properties", {}))
        found = []
        for key in raw:  # keys are names, never values: safe to show
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                suggestion = f"did you mean {close[0]!r}? " if close else ""
                message = f"{prefix}unknown key {key!r} ({suggestion}allowed: {', '.join(allowed)})"
                found.append(Diagnostic(doc.loc((*ptr, key), key=True), message))
        if found:
            return found
    if kw == "required" and "errorMessage" not in schema:
        # jsonschema reports each missing key as its own error, naming it only in the message.
        match = _REQUIRED.match(error.message)
        name = match.group(1) if match else error.message
        return [Diagnostic(doc.loc(ptr), f"{prefix}missing required key {name}")]

    location = doc.loc(ptr)
    if "errorMessage" in schema:
        message = str(schema["errorMessage"]).replace("{value}", _show(instance))
        return [Diagnostic(location, prefix + message)]
    if kw == "type":
        wanted = _TYPE_NAMES.get(str(bound), str(bound))
        node = doc.nodes.get(ptr)
        shown = "" if hidden else _raw(node, instance)
        got = f"{_kind_of(instance)} {shown}".rstrip()
        hint = ""
        if bound == "string" and isinstance(node, yaml.ScalarNode) and not node.style:
            hint = " (quote it to make it a string)"
        return [Diagnostic(location, f"{prefix}expected {wanted}, got {got}{hint}")]
    if kw == "pattern":
        message = f"{_show(instance)} does not match {bound}"
        return [Diagnostic(location, prefix + message)]
    if kw == "enum":
        options = ", ".join(str(v) for v in bound)
        return [Diagnostic(location, f"{prefix}{_show(instance)} is not one of: {options}")]
    if kw == "const":
        message = f"must be {_show(bound)}, not {_show(instance)}"
        return [Diagnostic(location, prefix + message)]
    if kw == "minItems":
        if bound == 1:
            return [Diagnostic(location, f"{prefix}must not be empty")]
        return [Diagnostic(location, f"{prefix}needs at least {bound} items")]
    if kw == "uniqueItems" and isinstance(instance, list):
        for i, item in enumerate(instance):
            if item in instance[:i]:
                message = f"{prefix}{_show(item)} is listed more than once"
                return [Diagnostic(doc.loc((*ptr, i)), message)]
    if kw == "maxLength":
        message = f"{prefix}is {len(raw)} characters long (at most {bound})"
        return [Diagnostic(location, message)]
    if kw == "minLength":
        return [Diagnostic(location, f"{prefix}must not be empty")]
    if kw in ("exclusiveMinimum", "minimum"):
        relation = "greater than" if kw == "exclusiveMinimum" else "at least"
        message = f"{prefix}must be {relation} {bound}, not {_show(instance)}"
        return [Diagnostic(location, message)]
    if hidden:
        return [Diagnostic(location, f"{prefix}invalid {_kind_of(instance)} ({kw})")]
    return [Diagnostic(location, prefix + error.message)]


_REQUIRED = re.compile(r"^('.*') is a required property$")

_TYPE_NAMES = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "boolean": "true or false",
    "number": "a number",
    "integer": "an integer",
}


_SENSITIVE_KEYS = frozenset({"secret", "token"})


@dataclass(frozen=True, slots=True)
class _Hidden:
    """A value that may be a secret: messages show what kind of value it is, never the value."""

    value: Any


def _kind_of(value: Any) -> str:
    if isinstance(value, _Hidden):
        return _kind_of(value.value)
    if value is None:
        return "an empty value"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"a {type(value).__name__}"


def _raw(node: yaml.Node | None, value: Any) -> str:
    """The scalar as written (``0123`` rather than the octal 83 YAML 1.1 makes of it)."""
    if isinstance(value, str):
        return _show(value)
    if isinstance(node, yaml.ScalarNode) and node.value:
        return _clip(_redact(node.value))
    if isinstance(value, int | float | bool):
        return _show(value)
    return ""


def _show(value: Any) -> str:
    if isinstance(value, _Hidden):
        return f"{_kind_of(value.value)} (not shown)"
    if isinstance(value, str):
        return repr(_clip(_redact(value)))
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return repr(value)
    return _kind_of(value)


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 1] + "…"


_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#@]*@")


def _redact(text: str) -> str:
    """Hide a URL's user-info part: it may hold a password, and messages are printed."""
    return _USERINFO.sub(r"\1***@", text)


def _render_ptr(ptr: Pointer) -> str:
    out = ""
    for part in ptr:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# --------------------------------------------------------------------------- models, cross-doc


class _Builder:
    """Builds models from schema-valid documents and applies the rules a schema cannot express."""

    def __init__(self, diagnostics: list[Diagnostic], secret_dirs: Sequence[Path] = ()) -> None:
        self._out = diagnostics
        self._secret_dirs = tuple(secret_dirs)
        self.accounts: list[Account] = []
        self.sets: list[WebhookSet] = []
        # every secret reference where it is written (what it is for, the reference): a
        # defaults secret shared by ten entries is checked, and reported, once
        self._secrets: dict[Location, tuple[str, SecretRef]] = {}
        # references already rejected where they are written: not resolved by check_env
        self._rejected: set[Location] = set()
        # where each account's token comes from: a webhook secret must never point there
        self._token_vars: dict[str, str] = {DEFAULT_TOKEN_ENV: DEFAULT_ACCOUNT}
        self._token_files: dict[str, str] = {}

    def _error(self, location: Location, message: str) -> None:
        self._out.append(Diagnostic(location, message))

    def build(self, docs: list[_Doc]) -> None:
        account_docs = [d for d in docs if _kind(d) == "Account"]
        set_docs = [d for d in docs if _kind(d) == "WebhookSet"]
        # Names of Account documents count as declared even when the document is invalid:
        # its own errors are reported, an "unknown account" on top would be noise.
        declared = {
            d.value["metadata"]["name"]
            for d in account_docs
            if isinstance(d.value.get("metadata"), dict)
            and isinstance(d.value["metadata"].get("name"), str)
        }
        first_account: dict[str, Location] = {}
        for doc in account_docs:
            if not doc.broken:
                self._account(doc, first_account)
        # Token references of every Account document that names one, even an invalid one: a
        # webhook secret that reuses it would send the API token to Typeform as a secret.
        for doc in account_docs:
            if doc.limited or not isinstance(doc.value, dict):
                continue
            spec, metadata = doc.value.get("spec"), doc.value.get("metadata")
            token = spec.get("token") if isinstance(spec, dict) else None
            name = metadata.get("name") if isinstance(metadata, dict) else None
            if isinstance(token, dict) and len(token) == 1 and isinstance(name, str):
                ((source, ref_name),) = token.items()
                if source == "env" and isinstance(ref_name, str):
                    self._token_vars.setdefault(ref_name, name)
                elif source == "file" and isinstance(ref_name, str):
                    real = os.path.realpath(Path(doc.base_dir) / ref_name)
                    self._token_files.setdefault(real, name)
        first_set: dict[tuple[str, str], Location] = {}
        first_hook: dict[WebhookKey, Location] = {}
        for doc in set_docs:
            if not doc.broken:
                self._webhook_set(doc, declared, first_set, first_hook)
        self._check_renames(first_hook)

    def _check_renames(self, declared: Mapping[WebhookKey, Location]) -> None:
        """A previous tag names a webhook that no longer exists in the manifests, once."""
        claimed: dict[WebhookKey, Location] = {}
        for hook in (h for s in self.sets for h in s.webhooks):
            for old in hook.previous_tags:
                where = hook.location or Location("?", 0, 0)
                previous = WebhookKey(hook.key.account, hook.key.form_id, old)
                if old == hook.key.tag:
                    self._error(where, f"previous_tags of {hook.key}: {old!r} is its own tag")
                elif previous in declared:
                    self._error(
                        where,
                        f"previous_tags of {hook.key}: {previous} is declared too, at "
                        f"{declared[previous]} (a renamed webhook is declared only by its "
                        "new tag)",
                    )
                elif previous in claimed:
                    self._error(
                        where,
                        f"previous_tags of {hook.key}: {previous} is already the previous tag "
                        f"of the webhook at {claimed[previous]}",
                    )
                else:
                    claimed[previous] = where

    def _account(self, doc: _Doc, first: dict[str, Location]) -> None:
        name: str = doc.value["metadata"]["name"]
        spec: dict[str, Any] = doc.value["spec"]
        name_loc = doc.loc(("metadata", "name"))
        if name in first:
            self._error(name_loc, f"duplicate Account {name!r}: already declared at {first[name]}")
            return
        first[name] = name_loc
        api_url: str = spec["api_url"]
        if not api_url.startswith("emulator:"):
            self._check_url(doc, ("spec", "api_url"), api_url, api=True)
        rate = spec.get("rate_limit", DEFAULT_RATE)
        if not math.isfinite(rate):
            self._error(doc.loc(("spec", "rate_limit")), "spec.rate_limit: must be a finite number")
        token = _secret_ref(spec["token"], doc)
        token_loc = doc.loc(("spec", "token"))
        self._secrets[token_loc] = (f"token of account {name!r}", token)
        self._check_file_ref(token_loc, "spec.token", token)
        self.accounts.append(
            Account(
                name=name,
                api_url=api_url,
                token=token,
                rate_limit=float(rate),
                location=doc.loc(()),
                rate_group=spec.get("rate_group"),
            )
        )

    def _webhook_set(
        self,
        doc: _Doc,
        declared: set[str],
        first_set: dict[tuple[str, str], Location],
        first_hook: dict[WebhookKey, Location],
    ) -> None:
        name: str = doc.value["metadata"]["name"]
        spec: dict[str, Any] = doc.value["spec"]
        account: str = spec.get("account", DEFAULT_ACCOUNT)
        if account != DEFAULT_ACCOUNT and account not in declared:
            known = ", ".join(sorted(declared)) or "none"
            self._error(
                doc.loc(("spec", "account")),
                f"spec.account: unknown account {account!r} (declare it in a kind: Account "
                f"document; declared: {known})",
            )
        name_loc = doc.loc(("metadata", "name"))
        if (account, name) in first_set:
            self._error(
                name_loc,
                f"duplicate WebhookSet {name!r} in account {account!r}: already declared at "
                f"{first_set[account, name]}",
            )
        else:
            first_set[account, name] = name_loc
        ownership = Ownership(spec.get("ownership", Ownership.DECLARED.value))
        defaults: dict[str, Any] = spec.get("defaults", {})
        hooks: list[DesiredWebhook] = []
        selectors: list[SelectorEntry] = []
        checked: set[Location] = set()
        for i, entry in enumerate(spec["webhooks"]):
            if i in doc.bad_entries:
                continue
            ptr: Pointer = ("spec", "webhooks", i)
            merged = {**defaults, **entry}
            selector = entry.get("forms")
            key = WebhookKey(account, entry.get("form_id", ""), entry["tag"])
            location = doc.loc(ptr)
            if selector is None and key in first_hook:
                self._error(
                    location,
                    f"duplicate webhook {key} (account {account!r}): already declared at "
                    f"{first_hook[key]}",
                )
                continue
            if selector is None:
                first_hook[key] = location
            state = Presence(merged.get("state", Presence.PRESENT.value))
            url = merged.get("url")
            if url is not None:
                self._check_url(doc, (*ptr, "url"), url, api=False)
            secret = None
            if "secret" in merged:
                secret = _secret_ref(merged["secret"], doc)
                where = (*ptr, "secret") if "secret" in entry else ("spec", "defaults", "secret")
                secret_loc = doc.loc(where)
                if secret_loc not in checked:
                    checked.add(secret_loc)
                    self._check_secret_ref(secret_loc, _render_ptr(where), secret)
                if state is Presence.PRESENT:
                    self._secrets.setdefault(secret_loc, ("secret", secret))
            names = merged.get("event_types", ["form_response"])
            hook = DesiredWebhook(
                key=key,
                url=url,
                enabled=merged.get("enabled", True),
                verify_ssl=merged.get("verify_ssl", True),
                event_types=EventTypes.from_names(tuple(names)),
                secret=secret,
                state=state,
                set_name=name,
                ownership=ownership,
                location=location,
                previous_tags=tuple(entry.get("previous_tags", ())),
            )
            if selector is None:
                hooks.append(hook)
            else:
                chosen = FormSelector(selector.get("workspace_id"), selector.get("title"))
                selectors.append(SelectorEntry(chosen, hook))
        self.sets.append(
            WebhookSet(
                name=name,
                account=account,
                ownership=ownership,
                webhooks=tuple(hooks),
                location=doc.loc(()),
                selectors=tuple(selectors),
            )
        )

    def _check_url(self, doc: _Doc, ptr: Pointer, url: str, *, api: bool) -> None:
        """What the schema's URL pattern cannot say readably. Never echoes the URL's user-info."""
        verdict = _url_verdict(_origin(url), api=api)
        if verdict is not None:
            message, severity = verdict
            self._out.append(Diagnostic(doc.loc(ptr), f"{_render_ptr(ptr)}: {message}", severity))

    def _check_secret_ref(self, location: Location, where: str, ref: SecretRef) -> None:
        """A webhook secret must be its own value: never an account's token, never a file
        outside the manifest tree and the secret directories."""
        if ref.source is SecretSource.ENV:
            account = self._token_vars.get(ref.name)
            if account is not None:
                self._rejected.add(location)
                self._error(
                    location,
                    f"{where}: {{env: {ref.name}}} is the API token variable of account "
                    f"{account!r}; a webhook secret must be a value of its own (Typeform would "
                    "receive the token)",
                )
            return
        account = self._token_files.get(os.path.realpath(secret_file_path(ref)))
        if account is not None:
            self._rejected.add(location)
            self._error(
                location,
                f"{where}: {{file: {ref.name}}} is the API token file of account {account!r}; "
                "a webhook secret must be a value of its own (Typeform would receive the token)",
            )
            return
        self._check_file_ref(location, where, ref)

    def _check_file_ref(self, location: Location, where: str, ref: SecretRef) -> None:
        if ref.source is SecretSource.FILE and not secret_file_allowed(ref, self._secret_dirs):
            self._rejected.add(location)
            self._error(
                location,
                f"{where}: {{file: {ref.name}}} is outside the manifest tree ({ref.root}) and "
                f"every secret directory; keep it under {ref.root} or allow its directory with "
                f"--secret-dir DIR ({SECRET_DIRS_ENV})",
            )

    def check_env(self, environ: Mapping[str, str]) -> None:
        """Resolve every secret and token reference once, at the place it is written."""
        for location, (what, ref) in self._secrets.items():
            if location in self._rejected:
                continue
            try:
                resolve_secret(ref, environ=environ, secret_dirs=self._secret_dirs)
            except SecretResolutionError as exc:
                self._error(location, f"{what} does not resolve: {exc}")


def _origin(url: str) -> str:
    """``scheme://netloc`` of ``url``: all that the URL checks look at (hosts repeat a lot)."""
    start = url.find("://")
    if start < 0:
        return url
    end = len(url)
    for stop in "/?#":
        found = url.find(stop, start + 3)
        if 0 <= found < end:
            end = found
    return url[:end]


@functools.lru_cache(maxsize=4096)
def _url_verdict(origin: str, *, api: bool) -> tuple[str, Severity] | None:
    """The problem with a URL's scheme and host, if any: a message and its severity."""
    try:
        parts = urlsplit(origin)
        host = parts.hostname
        parts.port  # noqa: B018 -- parsing the port is the check
    except ValueError as exc:
        return f"cannot parse the URL's host: {exc}", Severity.ERROR
    if "@" in parts.netloc:
        advice = "use the account's token" if api else "authenticate with the webhook secret"
        return (
            f"must not contain user-info (credentials before '@'); {advice}",
            Severity.ERROR,
        )
    if not host:
        return "URL has no host", Severity.ERROR
    if not _valid_host(host):
        return f"{_clip(host)!r} is not a valid host name", Severity.ERROR
    if parts.scheme == "http" and not (api and _is_loopback(host)):
        what = "the token" if api else "deliveries"
        return f"http:// sends {what} unencrypted; use https://", Severity.WARNING
    return None


def _kind(doc: _Doc) -> str | None:
    if isinstance(doc.value, dict):
        kind = doc.value.get("kind")
        return kind if isinstance(kind, str) else None
    return None


def _secret_ref(obj: Mapping[str, str], doc: _Doc) -> SecretRef:
    ((source, name),) = obj.items()
    return SecretRef(source=SecretSource(source), name=name, base_dir=doc.base_dir, root=doc.root)


_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")


def _valid_host(host: str) -> bool:
    if ":" in host:  # an IPv6 literal; urlsplit already checked the brackets
        return True
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:
        return False
    labels = ascii_host.rstrip(".").split(".")
    return len(ascii_host) <= 253 and all(_HOST_LABEL.match(label) for label in labels)


def _sort_key(diagnostic: Diagnostic, order: Mapping[str, int]) -> tuple[int, int, int, int]:
    loc = diagnostic.location
    if loc is None:
        return (0, 0, 0, 0)
    return (1, order.get(loc.file, len(order)), loc.line, loc.col)

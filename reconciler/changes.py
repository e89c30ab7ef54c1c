"""``--changed-since GIT_REF``: the forms whose desired webhooks differ between GIT_REF and now.

A pull request that touches 3 forms of 1,000 should cost 3 requests, not 1,000. This module
reads the manifests as they were at GIT_REF (through ``git archive``, into a temporary
directory), loads them with the same loader, and compares them entry by entry with the working
tree: an entry added, changed or removed puts its webhook in scope; a selector that changed is
re-expanded (its matches join the scope); unchanged selectors are not listed at all.

What it cannot see, by design: secrets rotated outside git (the value behind ``{env: ...}``),
and changes made in Typeform. The scheduled full ``drift`` is for those.
"""

from __future__ import annotations

import os
import subprocess
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from reconciler.errors import ConfigError, ManifestError
from reconciler.manifests import load_desired
from reconciler.models import DesiredState, DesiredWebhook, Target, WebhookKey
from reconciler.normalize import desired_digest

__all__ = ["ChangedScope", "changed_scope", "compare"]


@dataclass(frozen=True, slots=True)
class ChangedScope:
    """What differs since ``ref``: webhooks to refresh, and selectors to re-expand."""

    ref: str
    targets: tuple[Target, ...] = ()
    selectors: frozenset[tuple[str, str, str]] = frozenset()
    """``(set name, account, tag)`` of every selector entry added, changed or removed."""

    @property
    def empty(self) -> bool:
        return not self.targets and not self.selectors


def _entry_digest(hook: DesiredWebhook) -> str:
    return desired_digest([hook])


def compare(old: DesiredState, new: DesiredState, ref: str) -> ChangedScope:
    """Pure: every webhook whose entry differs, and every selector entry that differs."""
    before = {w.key: _entry_digest(w) for w in old.webhooks}
    after = {w.key: _entry_digest(w) for w in new.webhooks}
    keys: list[WebhookKey] = sorted(
        k for k in before.keys() | after.keys() if before.get(k) != after.get(k)
    )
    targets = tuple(Target(k.form_id, k.tag, k.account) for k in keys)

    def selectors(state: DesiredState) -> dict[tuple[str, str, str], str]:
        return {
            (s.name, s.account, e.template.key.tag): e.selector.describe()
            + _entry_digest(e.template)
            for s, e in state.selector_entries
        }

    was, now = selectors(old), selectors(new)
    changed = frozenset(k for k in was.keys() | now.keys() if was.get(k) != now.get(k))
    return ChangedScope(ref, targets, changed)


def _git(args: Sequence[str], cwd: Path) -> bytes:
    try:
        done = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, check=False, timeout=120
        )
    except FileNotFoundError:
        raise ConfigError("--changed-since needs git, which is not installed here") from None
    except subprocess.TimeoutExpired:
        raise ConfigError("--changed-since: git did not answer within 120 s") from None
    if done.returncode != 0:
        reason = done.stderr.decode(errors="replace").strip().splitlines()
        raise ConfigError(f"--changed-since: git {args[0]} failed: {reason[-1] if reason else ''}")
    return done.stdout


def changed_scope(
    paths: Sequence[str], ref: str, new: DesiredState, *, cwd: Path | None = None
) -> ChangedScope:
    """Compare the manifests under ``paths`` at git ``ref`` with ``new`` (the working tree)."""
    here = Path(cwd or os.getcwd())
    top = Path(_git(["rev-parse", "--show-toplevel"], here).decode().strip())
    _git(["rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], here)
    relative = []
    for path in paths:
        absolute = (here / path).resolve()
        try:
            relative.append(absolute.relative_to(top.resolve()).as_posix() or ".")
        except ValueError:
            raise ConfigError(f"--changed-since: {path} is outside the git work tree") from None
    with tempfile.TemporaryDirectory(prefix="reconcile-changed-since-") as tmp:
        roots = [Path(tmp) / rel for rel in relative]
        present = [rel for rel in relative if _exists_at(ref, rel, top)]
        if present:
            archive = Path(tmp) / ".archive.tar"
            archive.write_bytes(_git(["archive", "--format=tar", ref, "--", *present], top))
            with tarfile.open(archive) as tar:
                tar.extractall(tmp, filter="data")
        existing = [str(r) for r in roots if r.exists()]
        if not existing:
            old = DesiredState()
        else:
            try:
                old = load_desired(existing, environ={})
            except ManifestError as exc:
                raise ConfigError(
                    f"--changed-since: the manifests at {ref} do not load, so nothing can be "
                    f"compared ({len(exc.diagnostics)} problem(s)); plan without it"
                ) from None
    return compare(old, new, ref)


def _exists_at(ref: str, path: str, top: Path) -> bool:
    return bool(_git(["ls-tree", "--name-only", ref, "--", path], top).strip())

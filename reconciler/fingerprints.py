"""Secret fingerprints: tell whether a declared secret changed without ever storing it.

Typeform never returns a webhook's secret, so the state file keeps a fingerprint of the secret
last applied (SPEC section 7) and a plan compares the declared value against it. Three
requirements shape the design:

* **Guessing must be slow.** The state file may be committed; a weak secret must not be
  recoverable by hashing guesses quickly. Every fingerprint rests on scrypt (``FINGERPRINT_COST``,
  about 40-50 ms and 16 MiB per hash).
* **Fingerprints must be unlinkable.** Two webhooks sharing a secret must not show it: identical
  secrets give different fingerprints.
* **A plan must stay cheap.** One scrypt per *entry* made a no-change plan of 1,000 webhooks with
  distinct secrets take 40 s. So scrypt runs once per *distinct secret* per run, under one salt
  per state file (``State.fingerprint_salt``), on worker threads; each entry then gets a fresh
  random salt and ``HMAC-SHA256(key=slow_hash, msg=entry_salt)``, which costs microseconds.

The v2 format is ``v2$<entry salt, base64>$<HMAC, base64>``: it verifies only with the state's
salt and at ``FINGERPRINT_COST`` (a new cost or KDF gets a new scheme tag). The first format,
``scrypt$n=..,r=..,p=..$<salt>$<hash>`` (one scrypt per entry, parameters spelled out), still
verifies, with its work factors bounded so that a tampered state file cannot make a plan allocate
gigabytes.

This module must never store, log, return or put into an exception a secret value: the slow
hashes it keeps for the run are keyed by an HMAC of the secret under a random per-instance key,
never by the secret, and neither they nor the keys appear in ``repr``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial

import anyio
import anyio.to_thread

__all__ = [
    "FINGERPRINT_COST",
    "Fingerprinter",
    "ScryptCost",
    "fingerprint_secret",
    "is_legacy_fingerprint",
    "new_salt",
    "secret_matches",
    "valid_salt",
]


@dataclass(frozen=True, slots=True)
class ScryptCost:
    """scrypt's work factors. Legacy fingerprints carry theirs, so raising the default later kept
    them verifiable; v2 fingerprints are made and checked at ``FINGERPRINT_COST``."""

    n: int = 2**14
    r: int = 8
    p: int = 1

    def maxmem(self) -> int:
        # What OpenSSL needs (128 * r * (n + p + 2) bytes), plus slack for its bookkeeping.
        return 128 * self.r * (self.n + self.p + 2) + 1024 * 1024


FINGERPRINT_COST = ScryptCost(n=2**11)
"""The cost of the v2 slow hash: about 5 ms and 2 MiB on one core. It runs once per distinct
secret per run, so a no-change plan of 1,000 webhooks with distinct secrets costs about 2.5 s on
2 cores (the target of ``make bench``); n=2**14 made that 17 s. The secrets it protects are
signing keys, not passwords: generate them long and random, and a committed state file gives
nothing to guess."""

SALT_BYTES = 16
_MIN_SALT_BYTES = 16
_MAX_SALT_BYTES = 64
_HASH_BYTES = 32
_MAX_SCRYPT_MEMORY = 64 * 1024 * 1024
_MAX_WORKERS = 8
"""Slow hashes at once: 16 MiB each, so a 64-core runner does not take 1 GiB for them."""

_V2_RE = re.compile(r"v2\$(?P<salt>[A-Za-z0-9+/]{22,86})\$(?P<mac>[A-Za-z0-9+/]{43})")
_LEGACY_RE = re.compile(
    r"scrypt\$n=(?P<n>[0-9]{1,8}),r=(?P<r>[0-9]{1,3}),p=(?P<p>[0-9]{1,3})"
    r"\$(?P<salt>[A-Za-z0-9+/]{11,88})\$(?P<hash>[A-Za-z0-9+/]{22,88})"
)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    """Unpadded standard base64; raises ``ValueError`` for anything else."""
    if len(text) % 4 == 1:
        raise ValueError("truncated base64")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except binascii.Error as exc:
        raise ValueError("invalid base64") from exc


def _scrypt(secret: str, salt: bytes, cost: ScryptCost, length: int) -> bytes:
    # hashlib.scrypt releases the GIL, so worker threads really run in parallel.
    return hashlib.scrypt(
        secret.encode("utf-8"),
        salt=salt,
        n=cost.n,
        r=cost.r,
        p=cost.p,
        maxmem=cost.maxmem(),
        dklen=length,
    )


def new_salt() -> str:
    """A fresh per-state salt for ``State.fingerprint_salt``."""
    return _b64(secrets.token_bytes(SALT_BYTES))


def valid_salt(text: str) -> bool:
    """Whether ``text`` can be a state's fingerprint salt (base64 of 16 to 64 bytes)."""
    try:
        return _MIN_SALT_BYTES <= len(_unb64(text)) <= _MAX_SALT_BYTES
    except ValueError:
        return False


def is_legacy_fingerprint(fingerprint: str) -> bool:
    """Whether ``fingerprint`` is in the first (one scrypt per entry) format; a caller may
    re-fingerprint such an entry when it writes it anyway."""
    return fingerprint.startswith("scrypt$")


def _worker_count() -> int:
    try:
        cpus = len(os.sched_getaffinity(0))  # what this process may use, e.g. in a container
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, _MAX_WORKERS))


class Fingerprinter:
    """The fingerprints of one run: one slow hash per distinct secret, then cheap per entry.

    ``salt`` is the state's ``fingerprint_salt`` (``None``: a new random one, which the caller
    stores into the state it saves, see ``salt``). ``prepare`` computes the slow hashes of many
    secrets on worker threads; ``fingerprint`` and ``matches`` compute a missing one inline.
    ``slow_hash_count`` counts every scrypt this instance ran (v2 and legacy), for tests and
    benchmarks.
    """

    def __init__(self, salt: str | None, *, cost: ScryptCost = FINGERPRINT_COST) -> None:
        if salt is None:
            salt = new_salt()
        elif not valid_salt(salt):
            raise ValueError("a fingerprint salt must be base64 of 16 to 64 bytes")
        self._salt_text = salt
        self._salt = _unb64(salt)
        self._cost = cost
        self._key = secrets.token_bytes(32)
        self._slow: dict[bytes, bytes] = {}
        self._legacy: dict[tuple[bytes, str], bool] = {}
        self._count = 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self._slow)} secrets)"

    @property
    def salt(self) -> str:
        """The per-state salt the v2 fingerprints of this run are made under."""
        return self._salt_text

    @property
    def slow_hash_count(self) -> int:
        return self._count

    def _id(self, secret: str) -> bytes:
        return hmac.new(self._key, secret.encode("utf-8"), hashlib.sha256).digest()

    def _slow_hash(self, secret: str) -> bytes:
        ident = self._id(secret)
        found = self._slow.get(ident)
        if found is None:
            found = self._slow[ident] = _scrypt(secret, self._salt, self._cost, _HASH_BYTES)
            self._count += 1
        return found

    async def prepare(self, secrets: Iterable[str]) -> None:
        """Compute the slow hash of every distinct secret not yet known, concurrently on worker
        threads (at most one per CPU, and at most 8). Calling it again costs nothing."""
        todo: dict[bytes, str] = {}
        for secret in secrets:
            ident = self._id(secret)
            if ident not in self._slow:
                todo.setdefault(ident, secret)
        salt, cost = self._salt, self._cost

        async def one(ident: bytes, secret: str) -> None:
            work = partial(_scrypt, secret, salt, cost, _HASH_BYTES)
            self._slow[ident] = await anyio.to_thread.run_sync(work, limiter=limiter)
            self._count += 1  # back on the event loop thread: no race on the counter

        limiter = anyio.CapacityLimiter(_worker_count())
        async with anyio.create_task_group() as group:
            for ident, secret in todo.items():
                group.start_soon(one, ident, secret)

    async def prepare_matches(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Make ``matches(secret, fingerprint)`` instant for every pair: the slow hash of each
        v2 pair's secret, and the legacy comparisons (one scrypt each), on worker threads."""
        pairs = list(pairs)
        await self.prepare(s for s, f in pairs if not is_legacy_fingerprint(f))
        todo: dict[tuple[bytes, str], str] = {}
        for secret, fingerprint in pairs:
            memo = (self._id(secret), fingerprint)
            if is_legacy_fingerprint(fingerprint) and memo not in self._legacy:
                todo.setdefault(memo, secret)

        async def one(memo: tuple[bytes, str], secret: str) -> None:
            work = partial(_legacy_match, secret, memo[1])
            self._legacy[memo], cost = await anyio.to_thread.run_sync(work, limiter=limiter)
            self._count += cost

        limiter = anyio.CapacityLimiter(_worker_count())
        async with anyio.create_task_group() as group:
            for memo, secret in todo.items():
                group.start_soon(one, memo, secret)

    def fingerprint(self, secret: str) -> str:
        """A new fingerprint of ``secret`` for one state entry (a fresh entry salt each call)."""
        entry_salt = secrets.token_bytes(SALT_BYTES)
        mac = hmac.new(self._slow_hash(secret), entry_salt, hashlib.sha256).digest()
        return f"v2${_b64(entry_salt)}${_b64(mac)}"

    def matches(self, secret: str, fingerprint: str) -> bool:
        """Whether ``fingerprint`` was made from ``secret`` (v2 under this salt, or legacy);
        ``False`` for anything malformed, decided before any slow hash."""
        if is_legacy_fingerprint(fingerprint):
            memo = (self._id(secret), fingerprint)
            known = self._legacy.get(memo)
            if known is None:
                known, cost = _legacy_match(secret, fingerprint)
                self._legacy[memo] = known
                self._count += cost
            return known
        match = _V2_RE.fullmatch(fingerprint)
        if match is None:
            return False
        try:
            entry_salt, expected = _unb64(match["salt"]), _unb64(match["mac"])
        except ValueError:
            return False
        if len(entry_salt) < _MIN_SALT_BYTES or len(expected) != _HASH_BYTES:
            return False
        mac = hmac.new(self._slow_hash(secret), entry_salt, hashlib.sha256).digest()
        return hmac.compare_digest(mac, expected)


# --------------------------------------------------------------------------- the first format


def fingerprint_secret(
    secret: str, *, salt: bytes | None = None, cost: ScryptCost = FINGERPRINT_COST
) -> str:
    """A legacy fingerprint, ``scrypt$n=16384,r=8,p=1$<salt b64>$<hash b64>``: one scrypt per
    entry. Kept to make test fixtures; state files written before v2 carry these."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    digest = _scrypt(secret, salt, cost, _HASH_BYTES)
    return f"scrypt$n={cost.n},r={cost.r},p={cost.p}${_b64(salt)}${_b64(digest)}"


def secret_matches(secret: str, fingerprint: str) -> bool:
    """Whether a legacy ``fingerprint`` was made from ``secret``; ``False`` if malformed."""
    return _legacy_match(secret, fingerprint)[0]


def _legacy_match(secret: str, fingerprint: str) -> tuple[bool, int]:
    """(matches, scrypt runs spent). Work factors come from the fingerprint but are bounded."""
    match = _LEGACY_RE.fullmatch(fingerprint)
    if match is None:
        return False, 0
    cost = ScryptCost(n=int(match["n"]), r=int(match["r"]), p=int(match["p"]))
    if not (
        cost.n >= 2
        and cost.n & (cost.n - 1) == 0
        and cost.r >= 1
        and 1 <= cost.p <= 16
        and 128 * cost.r * cost.n <= _MAX_SCRYPT_MEMORY
    ):
        return False, 0
    try:
        salt = _unb64(match["salt"])
        expected = _unb64(match["hash"])
    except ValueError:
        return False, 0
    if len(salt) < 8 or len(expected) < 16:
        return False, 0
    return hmac.compare_digest(_scrypt(secret, salt, cost, len(expected)), expected), 1

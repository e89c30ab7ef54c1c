"""Secret fingerprints (reconciler.fingerprints): unlinkable, one slow hash per secret per run."""

from __future__ import annotations

import base64
import time

import anyio
import pytest

from reconciler.fingerprints import (
    FINGERPRINT_COST,
    Fingerprinter,
    ScryptCost,
    fingerprint_secret,
    is_legacy_fingerprint,
    new_salt,
    secret_matches,
    valid_salt,
)

# Cheap work factors: these tests are about behaviour, not about scrypt's cost.
CHEAP = ScryptCost(n=2**10, r=8, p=1)
SECRET = "whsec-Distinctive-7f3a9c-VALUE"
SALT = base64.b64encode(bytes(range(16))).decode().rstrip("=")


def fingerprinter(salt: str | None = SALT) -> Fingerprinter:
    return Fingerprinter(salt, cost=CHEAP)


# --------------------------------------------------------------------------- v2 fingerprints


def test_identical_secrets_give_different_fingerprints_that_both_verify() -> None:
    fp = fingerprinter()
    first, second = fp.fingerprint(SECRET), fp.fingerprint(SECRET)
    assert first != second
    assert first.split("$")[1] != second.split("$")[1]  # a fresh entry salt each time
    assert fp.matches(SECRET, first)
    assert fp.matches(SECRET, second)


def test_a_fingerprint_does_not_match_another_secret() -> None:
    fp = fingerprinter()
    fingerprint = fp.fingerprint(SECRET)
    assert not fp.matches(SECRET + "x", fingerprint)
    assert not fp.matches("", fingerprint)


def test_a_fingerprint_verifies_in_a_later_run_with_the_same_state_salt() -> None:
    fingerprint = fingerprinter().fingerprint(SECRET)
    later = fingerprinter()
    assert later.matches(SECRET, fingerprint)
    assert not later.matches("other", fingerprint)


def test_a_fingerprint_does_not_verify_under_another_state_salt() -> None:
    fingerprint = fingerprinter().fingerprint(SECRET)
    assert not fingerprinter(new_salt()).matches(SECRET, fingerprint)


def test_a_fingerprint_made_at_one_cost_does_not_verify_at_another() -> None:
    fingerprint = fingerprinter().fingerprint(SECRET)
    assert not Fingerprinter(SALT, cost=ScryptCost(n=2**11, r=8, p=1)).matches(SECRET, fingerprint)


def test_the_v2_format_is_entry_salt_and_a_32_byte_mac_in_base64() -> None:
    fingerprint = fingerprinter().fingerprint(SECRET)
    scheme, salt, mac = fingerprint.split("$")
    assert scheme == "v2"
    assert len(base64.b64decode(salt + "==")) == 16
    assert len(base64.b64decode(mac + "=")) == 32
    assert not is_legacy_fingerprint(fingerprint)


def test_no_salt_means_a_new_random_salt_to_store_in_the_state() -> None:
    first, second = Fingerprinter(None, cost=CHEAP), Fingerprinter(None, cost=CHEAP)
    assert first.salt != second.salt
    assert valid_salt(first.salt)
    assert len(base64.b64decode(first.salt + "==")) == 16
    fingerprint = first.fingerprint(SECRET)
    assert Fingerprinter(first.salt, cost=CHEAP).matches(SECRET, fingerprint)


@pytest.mark.parametrize("salt", ["", "short", "not base64!!!!!!!!!!!!!!!", "A" * 200, "AAAAA"])
def test_a_malformed_state_salt_is_refused(salt: str) -> None:
    assert not valid_salt(salt)
    with pytest.raises(ValueError, match="base64 of 16 to 64 bytes"):
        Fingerprinter(salt)


def test_the_secret_appears_nowhere_in_its_fingerprint_or_the_fingerprinter() -> None:
    fp = fingerprinter()
    fingerprint = fp.fingerprint(SECRET)
    encoded = base64.b64encode(SECRET.encode()).decode().rstrip("=")
    for form in (SECRET, SECRET.lower(), encoded):
        assert form not in fingerprint
        assert form not in repr(fp)
    for value in vars(fp).values():
        assert SECRET not in repr(value)
    assert repr(fp) == "Fingerprinter(1 secrets)"


def test_a_tampered_v2_fingerprint_no_longer_matches() -> None:
    fp = fingerprinter()
    scheme, salt, mac = fp.fingerprint(SECRET).split("$")
    flipped_mac = ("B" if mac[0] == "A" else "A") + mac[1:]
    flipped_salt = ("B" if salt[0] == "A" else "A") + salt[1:]
    assert not fp.matches(SECRET, f"{scheme}${salt}${flipped_mac}")
    assert not fp.matches(SECRET, f"{scheme}${flipped_salt}${mac}")


@pytest.mark.parametrize(
    "fingerprint",
    [
        "",
        "v2$",
        "v2$$",
        "v3$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "v2$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",  # MAC too short
        "v2$AAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",  # entry salt too short
        "v2$AAAAAAAAAAAAAAAAAAAAA!$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",  # not base64
        "v2$AAAAAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",  # 25 chars
        "v2$" + "A" * 100_000 + "$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        " v2$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ],
)
def test_a_malformed_v2_fingerprint_matches_nothing_without_a_slow_hash(fingerprint: str) -> None:
    fp = fingerprinter()
    assert not fp.matches(SECRET, fingerprint)
    assert fp.slow_hash_count == 0


# --------------------------------------------------------------------------- one slow hash each


def test_prepare_computes_one_slow_hash_per_distinct_secret_and_nothing_after() -> None:
    fp = fingerprinter()
    distinct = [f"secret-{i}" for i in range(20)]
    anyio.run(fp.prepare, distinct * 3)
    assert fp.slow_hash_count == 20

    fingerprints = [fp.fingerprint(distinct[i % 20]) for i in range(1000)]
    assert len(set(fingerprints)) == 1000
    assert all(fp.matches(distinct[i % 20], f) for i, f in enumerate(fingerprints))
    assert not any(fp.matches(distinct[(i + 1) % 20], f) for i, f in enumerate(fingerprints))
    anyio.run(fp.prepare, distinct)  # idempotent
    assert fp.slow_hash_count == 20


def test_without_prepare_the_slow_hash_is_computed_once_on_first_use() -> None:
    fp = fingerprinter()
    fingerprint = fp.fingerprint(SECRET)
    assert fp.slow_hash_count == 1
    for _ in range(50):
        assert fp.matches(SECRET, fingerprint)
        fp.fingerprint(SECRET)
    assert fp.slow_hash_count == 1
    assert not fp.matches("another", fingerprint)
    assert fp.slow_hash_count == 2


def test_prepare_runs_slow_hashes_on_worker_threads_leaving_the_event_loop_free() -> None:
    # At n=2**14, 8 slow hashes take ~8 x 40 ms one after another; on worker threads
    # (hashlib.scrypt releases the GIL) the event loop stays free meanwhile.
    fp = Fingerprinter(SALT, cost=ScryptCost(n=2**14))
    ticks = 0

    async def main() -> None:
        nonlocal ticks

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await anyio.sleep(0.005)

        async with anyio.create_task_group() as group:
            group.start_soon(ticker)
            await fp.prepare(f"s{i}" for i in range(8))
            group.cancel_scope.cancel()

    anyio.run(main)
    assert fp.slow_hash_count == 8
    assert ticks >= 5  # the loop kept running while scrypt ran


# --------------------------------------------------------------------------- legacy fingerprints


def test_a_legacy_fingerprint_still_verifies_and_a_wrong_secret_does_not() -> None:
    legacy = fingerprint_secret(SECRET, cost=CHEAP)
    assert legacy.startswith("scrypt$n=1024,r=8,p=1$")
    assert is_legacy_fingerprint(legacy)
    fp = fingerprinter()
    assert fp.matches(SECRET, legacy)
    assert not fp.matches(SECRET + "x", legacy)
    assert secret_matches(SECRET, legacy)


def test_a_legacy_comparison_is_computed_once_per_secret_and_fingerprint() -> None:
    legacy = fingerprint_secret(SECRET, cost=CHEAP)
    fp = fingerprinter()
    for _ in range(10):
        assert fp.matches(SECRET, legacy)
    assert fp.slow_hash_count == 1


def test_prepare_matches_makes_every_later_comparison_free() -> None:
    fp = fingerprinter()
    pairs = [(f"s{i}", fingerprint_secret(f"s{i}", cost=CHEAP)) for i in range(5)]
    pairs += [(f"v{i}", fingerprinter().fingerprint(f"v{i}")) for i in range(5)]
    anyio.run(fp.prepare_matches, pairs)
    assert fp.slow_hash_count == 10
    assert all(fp.matches(s, f) for s, f in pairs)
    assert fp.slow_hash_count == 10


def test_the_default_legacy_fingerprint_spells_out_its_parameters() -> None:
    assert ScryptCost(n=2**11, r=8, p=1) == FINGERPRINT_COST
    scheme, params, salt, digest = fingerprint_secret(SECRET).split("$")
    assert (scheme, params) == ("scrypt", "n=2048,r=8,p=1")
    assert len(base64.b64decode(salt + "==")) == 16
    assert len(base64.b64decode(digest + "=")) == 32


def test_legacy_fingerprints_keep_verifying_whatever_cost_they_were_made_at() -> None:
    older = fingerprint_secret(SECRET, cost=ScryptCost(n=2**8, r=4, p=2))
    assert older.startswith("scrypt$n=256,r=4,p=2$")
    assert fingerprinter().matches(SECRET, older)


@pytest.mark.parametrize(
    "fingerprint",
    [
        "scrypt$",
        "bcrypt$n=1024,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        # n not a power of two
        "scrypt$n=1000,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        # work factors that would need gigabytes of memory, or hours
        "scrypt$n=16777216,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "scrypt$n=1024,r=999,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "scrypt$n=1024,r=8,p=999$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "scrypt$n=99999999,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        # r = 0 and p = 0
        "scrypt$n=1024,r=0,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "scrypt$n=1024,r=8,p=0$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        # not base64
        "scrypt$n=1024,r=8,p=1$A$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "scrypt$n=1024,r=8,p=1$AAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ],
)
def test_a_malformed_or_too_costly_legacy_fingerprint_is_false_quickly(fingerprint: str) -> None:
    fp = fingerprinter()
    started = time.perf_counter()
    assert not fp.matches(SECRET, fingerprint)
    assert not secret_matches(SECRET, fingerprint)
    assert time.perf_counter() - started < 0.5
    assert fp.slow_hash_count == 0

"""Secret and token references resolve at the edge, and their errors never carry a value."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reconciler.credentials import (
    MAX_SECRET_BYTES,
    resolve_secret,
    resolve_token,
    secret_dirs_from,
)
from reconciler.errors import SecretResolutionError
from reconciler.models import Account, SecretRef, SecretSource

VALUE = "s3cr3t-value-never-in-messages"


def _env(name: str) -> SecretRef:
    return SecretRef(SecretSource.ENV, name)


def test_an_env_reference_resolves_to_the_variable() -> None:
    assert resolve_secret(_env("HOOK_SECRET"), environ={"HOOK_SECRET": VALUE}) == VALUE


def test_an_unset_variable_is_named_in_the_error() -> None:
    with pytest.raises(
        SecretResolutionError, match=r"^environment variable HOOK_SECRET is not set$"
    ):
        resolve_secret(_env("HOOK_SECRET"), environ={})


def test_an_empty_variable_is_an_error() -> None:
    with pytest.raises(SecretResolutionError, match="HOOK_SECRET is empty"):
        resolve_secret(_env("HOOK_SECRET"), environ={"HOOK_SECRET": ""})


def test_a_file_reference_is_read_relative_to_its_manifest_without_the_trailing_newline(
    tmp_path: Path,
) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "hook.txt").write_text(VALUE + "\r\n")
    ref = SecretRef(SecretSource.FILE, "secrets/hook.txt", str(tmp_path), root=str(tmp_path))
    assert resolve_secret(ref, environ={}) == VALUE


def test_a_missing_file_is_named_in_the_error(tmp_path: Path) -> None:
    ref = SecretRef(SecretSource.FILE, "nope.txt", str(tmp_path), root=str(tmp_path))
    with pytest.raises(SecretResolutionError) as info:
        resolve_secret(ref, environ={})
    assert str(info.value) == f"secret file {tmp_path / 'nope.txt'} does not exist"


@pytest.mark.parametrize(
    ("content", "problem"),
    [(b"\n", "is empty"), (b"\xff\xfe" + VALUE.encode(), "is not UTF-8 text")],
    ids=["empty", "binary"],
)
def test_an_unusable_file_is_an_error_that_quotes_nothing_from_it(
    tmp_path: Path, content: bytes, problem: str
) -> None:
    (tmp_path / "hook.txt").write_bytes(content)
    ref = SecretRef(SecretSource.FILE, "hook.txt", str(tmp_path), root=str(tmp_path))
    with pytest.raises(SecretResolutionError) as info:
        resolve_secret(ref, environ={})
    assert problem in str(info.value)
    assert VALUE not in str(info.value)
    # Nothing chained either: a traceback of the decode error would show the file's bytes.
    assert info.value.__cause__ is None
    assert info.value.__context__ is None or info.value.__suppress_context__


def test_a_directory_is_not_a_secret_file(tmp_path: Path) -> None:
    ref = SecretRef(SecretSource.FILE, ".", str(tmp_path), root=str(tmp_path))
    with pytest.raises(SecretResolutionError, match="is a directory"):
        resolve_secret(ref, environ={})


def test_the_default_account_token_comes_from_typeform_token() -> None:
    default = Account(name="default")
    assert resolve_token(default, environ={"TYPEFORM_TOKEN": VALUE}) == VALUE
    assert resolve_token(default, environ={}) is None
    assert resolve_token(default, environ={"TYPEFORM_TOKEN": ""}) is None


def test_a_declared_account_token_must_resolve_and_its_error_names_the_account() -> None:
    account = Account(name="eu-clients", api_url="https://api.eu.typeform.com", token=_env("EU"))
    assert resolve_token(account, environ={"EU": VALUE}) == VALUE
    with pytest.raises(SecretResolutionError) as info:
        resolve_token(account, environ={"TYPEFORM_TOKEN": VALUE})
    assert str(info.value) == ("token of account 'eu-clients': environment variable EU is not set")


# --------------------------------------------------------------------------- where files may be


def test_secret_dirs_come_from_flags_then_the_environment_each_once() -> None:
    env = {"RECONCILE_SECRET_DIRS": f"/run/secrets{os.pathsep}{os.pathsep}/b{os.pathsep}/a"}
    assert secret_dirs_from(env, ["/a"]) == (Path("/a"), Path("/run/secrets"), Path("/b"))
    assert secret_dirs_from({}) == ()


def test_a_file_outside_the_manifest_tree_is_refused_naming_the_path_not_the_content(
    tmp_path: Path,
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "hook.txt").write_text(VALUE)
    tree = tmp_path / "manifests"
    tree.mkdir()
    ref = SecretRef(SecretSource.FILE, "../outside/hook.txt", str(tree), root=str(tree))
    with pytest.raises(SecretResolutionError) as info:
        resolve_secret(ref, environ={})
    assert str(info.value) == (
        f"secret file {tree / '../outside/hook.txt'} is outside the manifest tree {tree} and "
        "every secret directory (--secret-dir, RECONCILE_SECRET_DIRS)"
    )
    assert resolve_secret(ref, environ={}, secret_dirs=[outside]) == VALUE


def test_a_symlink_out_of_the_tree_is_judged_by_where_it_leads(tmp_path: Path) -> None:
    (tmp_path / "real.txt").write_text(VALUE)
    tree = tmp_path / "manifests"
    tree.mkdir()
    (tree / "hook.txt").symlink_to(tmp_path / "real.txt")
    ref = SecretRef(SecretSource.FILE, "hook.txt", str(tree), root=str(tree))
    with pytest.raises(SecretResolutionError, match="is outside the manifest tree"):
        resolve_secret(ref, environ={})


def test_a_fifo_as_a_secret_file_is_refused_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "hook.txt")
    ref = SecretRef(SecretSource.FILE, "hook.txt", str(tmp_path), root=str(tmp_path))
    with pytest.raises(SecretResolutionError, match="is not a regular file"):
        resolve_secret(ref, environ={})


def test_a_secret_file_larger_than_a_secret_is_refused(tmp_path: Path) -> None:
    (tmp_path / "hook.txt").write_bytes(b"x" * (MAX_SECRET_BYTES + 1))
    ref = SecretRef(SecretSource.FILE, "hook.txt", str(tmp_path), root=str(tmp_path))
    with pytest.raises(SecretResolutionError, match=f"larger than {MAX_SECRET_BYTES} bytes"):
        resolve_secret(ref, environ={})

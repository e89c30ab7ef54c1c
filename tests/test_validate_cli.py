"""``reconcile validate`` through the real entry point: exit codes, output formats, --check-env."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from reconciler.cli import main
from reconciler.commands.validate import render_text
from reconciler.manifests import check

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "manifests"
GOOD = REPO / "tests" / "manifests_good"
DEMO_SECRET = "demo-secret-value-never-printed"

HOOK_SET = """\
apiVersion: reconciler/v1
kind: WebhookSet
metadata: {name: one}
spec:
  webhooks:
    - form_id: f1
      tag: t1
      url: %s
"""


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    captured = capsys.readouterr()
    return int(exit_info.value.code or 0), captured.out, captured.err


def test_example_manifests_are_valid_and_summarised(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO)
    code, out, _ = _run(["validate", "manifests/"], capsys)
    assert code == 0
    assert out == "manifests/: valid (2 files, 2 webhook sets, 6 webhooks)\n"


def test_default_path_is_manifests_in_the_working_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copytree(EXAMPLES, tmp_path / "manifests")
    monkeypatch.chdir(tmp_path)
    code, out, _ = _run(["validate"], capsys)
    assert code == 0
    assert out.startswith("manifests/: valid (2 files")


def test_a_missing_manifest_directory_fails_instead_of_meaning_nothing_is_desired(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, _ = _run(["validate"], capsys)
    assert code == 1
    assert out.splitlines() == [
        "manifests/: no such file or directory",
        "manifests/: invalid (1 error in 0 files)",
    ]


def test_an_empty_manifest_directory_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run(["validate", str(tmp_path)], capsys)
    assert code == 1
    assert f"{tmp_path}: no manifests (*.yaml, *.yml) found in this directory" in out


def test_warnings_are_printed_with_their_location_and_do_not_fail(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "a.yaml"
    file.write_text(HOOK_SET % "http://hooks.example.com/x")
    code, out, _ = _run(["validate", "--no-color", str(file)], capsys)
    assert code == 0
    assert out.splitlines() == [
        f"{file}:8:12: warning: spec.webhooks[0].url: http:// sends deliveries unencrypted; "
        "use https://",
        f"{file}: valid (1 file, 1 webhook set, 1 webhook, 1 warning)",
    ]


def test_json_output_has_the_versioned_shape(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "a.yaml"
    file.write_text(HOOK_SET % "not-a-url")
    code, out, _ = _run(["validate", "--format", "json", str(file)], capsys)
    assert code == 1
    assert json.loads(out) == {
        "format_version": "1",
        "valid": False,
        "files": 1,
        "webhook_sets": 1,
        "accounts": 0,
        "webhooks": 0,
        "diagnostics": [
            {
                "file": str(file),
                "line": 8,
                "col": 12,
                "severity": "error",
                "message": "spec.webhooks[0].url: 'not-a-url' does not match "
                "^https?://[^\\s/?#]+([/?#]\\S*)?$",
            }
        ],
    }


def test_json_output_of_valid_manifests_counts_what_they_declare(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = _run(["validate", "--format", "json", str(GOOD)], capsys)
    assert code == 0
    report = json.loads(out)
    assert report["valid"] is True
    assert (report["files"], report["webhook_sets"], report["accounts"], report["webhooks"]) == (
        3,
        3,
        1,
        7,
    )
    assert report["diagnostics"] == []


def test_markdown_output_lists_each_problem_for_a_pull_request_comment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "a.yaml"
    file.write_text(HOOK_SET % "ftp://x")
    code, out, _ = _run(["validate", "--format", "markdown", str(file)], capsys)
    assert code == 1
    assert out.startswith("### reconcile validate: invalid\n\n- **error** `")
    assert f"`{file}:8:12` spec.webhooks[0].url:" in out


def test_check_env_fails_naming_the_unset_variable_at_its_manifest_location(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO)
    monkeypatch.delenv("ONBOARDING_WEBHOOK_SECRET", raising=False)
    code, out, _ = _run(["validate", "--check-env", "--no-color", "manifests/"], capsys)
    assert code == 1
    assert out.splitlines()[0] == (
        "manifests/client-onboarding.yaml:16:13: secret does not resolve: "
        "environment variable ONBOARDING_WEBHOOK_SECRET is not set"
    )


def test_check_env_passes_when_the_secret_is_set_and_never_prints_it(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("ONBOARDING_WEBHOOK_SECRET", DEMO_SECRET)
    for fmt in ("text", "json", "markdown"):
        code, out, err = _run(["validate", "--check-env", "--format", fmt], capsys)
        assert code == 0
        assert DEMO_SECRET not in out + err


def test_check_env_reads_file_secrets_relative_to_their_manifest_and_never_prints_them(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EU_PARTIALS_SECRET", "env-secret-never-printed")
    monkeypatch.setenv("TYPEFORM_TOKEN_EU", "token-never-printed")
    monkeypatch.chdir(REPO / "tests")  # the file path must not depend on the working directory
    code, out, err = _run(["validate", "--check-env", "--format", "json", "manifests_good"], capsys)
    assert code == 0, out
    for value in ("file-secret-value-do-not-print", "env-secret-never", "token-never"):
        assert value not in out + err


def test_check_env_with_an_unset_account_token_names_the_variable(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EU_PARTIALS_SECRET", "x")
    monkeypatch.delenv("TYPEFORM_TOKEN_EU", raising=False)
    code, out, _ = _run(["validate", "--check-env", "--no-color", str(GOOD)], capsys)
    assert code == 1
    assert (
        f"{GOOD / 'accounts.yaml'}:8:10: token of account 'eu-clients' does not resolve: "
        "environment variable TYPEFORM_TOKEN_EU is not set"
    ) in out.splitlines()


def test_without_check_env_unset_variables_are_not_an_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ONBOARDING_WEBHOOK_SECRET", raising=False)
    code, _, _ = _run(["validate", str(EXAMPLES)], capsys)
    assert code == 0


def test_an_unknown_format_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(["validate", "--format", "yaml", str(EXAMPLES)], capsys)
    assert code == 1
    assert "--format" in err


def test_coloured_text_says_the_same_as_plain_text(tmp_path: Path) -> None:
    file = tmp_path / "a.yaml"
    file.write_text(HOOK_SET % "http://hooks.example.com/x" + "      urll: x\n")
    result = check([file])
    targets = (str(file),)
    plain = render_text(result, targets)
    styled = render_text(result, targets, styled=True)
    assert "\x1b[" in styled
    assert re.sub(r"\x1b\[[0-9;]*m", "", styled) == plain


def _many_bad_entries(tmp_path: Path, count: int) -> Path:
    file = tmp_path / "many.yaml"
    hooks = "".join(
        f"    - {{form_id: f{i}, tag: '-bad', url: 'https://x.example/'}}\n" for i in range(count)
    )
    file.write_text(
        "apiVersion: reconciler/v1\nkind: WebhookSet\nmetadata: {name: a}\nspec:\n"
        "  webhooks:\n" + hooks
    )
    return file


def test_json_lists_at_most_100_diagnostics_and_says_how_many_were_left_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = _many_bad_entries(tmp_path, 150)
    code, out, _ = _run(["validate", "--format", "json", str(file)], capsys)
    assert code == 1
    report = json.loads(out)
    assert len(report["diagnostics"]) == 100
    assert report["diagnostics_omitted"] == 50
    assert report["diagnostics"][0]["line"] == 6


def test_markdown_ends_its_capped_list_with_the_count_of_the_rest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = _many_bad_entries(tmp_path, 101)
    code, out, _ = _run(["validate", "--format", "markdown", str(file)], capsys)
    assert code == 1
    bullets = [line for line in out.splitlines() if line.startswith("- ")]
    assert len(bullets) == 101
    assert bullets[-1] == "- ... and 1 more error"
    assert out.rstrip().endswith("invalid (101 errors in 1 file)")


def test_exactly_100_diagnostics_are_all_printed_with_no_count_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = _many_bad_entries(tmp_path, 100)
    code, out, _ = _run(["validate", "--no-color", str(file)], capsys)
    assert code == 1
    assert len(out.splitlines()) == 101
    assert "more error" not in out
    code, out, _ = _run(["validate", "--format", "json", str(file)], capsys)
    assert "diagnostics_omitted" not in json.loads(out)

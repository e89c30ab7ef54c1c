"""The bad-manifest corpus: every scenario under tests/manifests_bad/ fails with its own message.

One scenario is a file or a folder. Its expectations are comments in its files:
``# expect: LINE:COL: message fragment`` (the location is in the file holding the comment). The
CLI must exit 1, print each expected ``FILE:LINE:COL: fragment``, and report exactly as many
errors as there are expectations: a spurious extra error fails the scenario too.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from reconciler.cli import main

REPO = Path(__file__).resolve().parent.parent
CORPUS = Path("tests/manifests_bad")
EXPECT = re.compile(r"#\s*expect:\s*(\d+):(\d+):\s*(.+?)\s*$")


def _scenarios() -> list[Path]:
    return sorted((REPO / CORPUS).iterdir())


def _expectations(scenario: Path) -> list[str]:
    files = sorted(scenario.rglob("*")) if scenario.is_dir() else [scenario]
    found = []
    for file in files:
        if not file.is_file():
            continue
        shown = file.relative_to(REPO).as_posix()
        for line in file.read_bytes().decode("utf-8", "replace").splitlines():
            match = EXPECT.search(line)
            if match:
                found.append(f"{shown}:{match[1]}:{match[2]}: {match[3]}")
    return found


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    return int(exit_info.value.code or 0), capsys.readouterr().out


def test_the_corpus_holds_at_least_twenty_scenarios_each_with_an_expectation() -> None:
    scenarios = _scenarios()
    assert len(scenarios) >= 20
    for scenario in scenarios:
        assert _expectations(scenario), f"{scenario.name} has no '# expect:' comment"


@pytest.mark.parametrize("scenario", _scenarios(), ids=lambda p: p.name)
def test_bad_manifest_is_reported_with_its_file_line_and_column(
    scenario: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO)
    target = (CORPUS / scenario.name).as_posix()
    expected = _expectations(scenario)

    code, out = _run(["validate", "--no-color", target], capsys)

    assert code == 1
    lines = out.splitlines()
    for fragment in expected:
        assert any(line.startswith(fragment) for line in lines), (
            f"expected a line starting with\n  {fragment}\ngot:\n{out}"
        )
    code, out = _run(["validate", "--format", "json", target], capsys)
    assert code == 1
    errors = [d for d in json.loads(out)["diagnostics"] if d["severity"] == "error"]
    assert len(errors) == len(expected), out


def test_no_value_from_a_rejected_plaintext_secret_or_url_password_is_printed(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO)
    targets = [
        (CORPUS / name).as_posix()
        for name in (
            "plaintext_secret.yaml",
            "account_plaintext_token.yaml",
            "url_with_userinfo.yaml",
            "secret_value_as_env_name.yaml",
        )
    ]
    for fmt in ("text", "json", "markdown"):
        code, out = _run(["validate", "--format", fmt, *targets], capsys)
        assert code == 1
        assert "plaintext secrets are rejected" in out
        for value in ("hunter2-do-not-print", "tfp_plaintext-token", "hunter2-url", "whsec-pasted"):
            assert value not in out

"""The pipeline pieces we ship call only commands and flags that exist, and keep secrets secret.

Every ``reconcile ...`` invocation in the GitHub Actions examples (``run:`` steps), the Kubernetes
examples (container ``command``/``args``: the image's ENTRYPOINT is ``reconcile``), the pre-commit
hook (``entry``), the Dockerfile (ENTRYPOINT + CMD) and the READMEs' ``yaml``/``sh`` blocks is
found, split with shlex (nothing expanded: ``${{ ... }}`` and ``$VAR`` become a placeholder) and
parsed by the real click parser without running anything. A renamed flag or subcommand fails here,
naming the file and the command line, before a user's pipeline fails on it.

The rest checks what a reviewer of a CI or cluster setup checks: minimal ``permissions`` on every
job, no secret inside a script, a write token only where something writes, a non-root image, the
Docker build context, the shard rule (``--account NAME`` with ``?namespace=NAME``) and alerts on
metrics that exist. Where a well-kept validator is installed (pre-commit, check-jsonschema,
kubernetes-validate, docker) it is used as well.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

import reconciler
from reconciler.cli import cli

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
WORKFLOWS = sorted((EXAMPLES / "github-actions").glob("*.yml"))
KUBERNETES = sorted((EXAMPLES / "kubernetes").glob("*.yaml"))
HOOKS = REPO / ".pre-commit-hooks.yaml"
DOCKERFILE = REPO / "Dockerfile"
READMES = [REPO / "README.md", *sorted(EXAMPLES.glob("**/README.md"))]
IMAGE_NAME = "typeform-reconciler"
PLACEHOLDER = "PLACEHOLDER"
CHANGED_SINCE_REASON = "--changed-since lands with the scale issue"


# --------------------------------------------------------------------------- finding invocations


@dataclass(frozen=True)
class Invocation:
    """One ``reconcile`` command line found in a file (argv without the program name)."""

    where: str
    argv: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.where}: reconcile {shlex.join(self.argv)}"


_GHA_EXPRESSION = re.compile(r"\$\{\{.*?\}\}", re.DOTALL)
_SHELL_VARIABLE = re.compile(r"\$(?:\{[A-Za-z_][A-Za-z0-9_]*\}|[A-Za-z_][A-Za-z0-9_]*)")
_FD_BEFORE_REDIRECT = re.compile(r"(?<![\w/=.-])\d+(?=>)")
_OPERATOR_CHARS = set("();<>|&")
_PREFIX_WORDS = {"if", "then", "else", "elif", "do", "while", "until", "!", "time", "{", "exec"}
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def _placeholders(text: str) -> str:
    return _SHELL_VARIABLE.sub(PLACEHOLDER, _GHA_EXPRESSION.sub(PLACEHOLDER, text))


def shell_invocations(script: str) -> list[tuple[str, ...]]:
    """Every simple command of ``script`` whose program is ``reconcile`` (any directory).

    Line continuations are joined; redirections (``> f``, ``2>&1``, ``>> "$X"``) are dropped;
    pipelines and lists (``|``, ``&&``, ``;``) are split. ``$(...)`` on a reconcile line is not
    understood and raises, rather than being guessed at.
    """
    found: list[tuple[str, ...]] = []
    text = _placeholders(script).replace("\\\n", " ")
    for line in text.splitlines():
        if not re.search(r"\breconcile\b", line):
            continue
        if "$(" in line or "`" in line:
            raise ValueError(f"command substitution on a reconcile line: {line.strip()}")
        lexer = shlex.shlex(_FD_BEFORE_REDIRECT.sub("", line), posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        lexer.commenters = "#"
        segments: list[list[str]] = [[]]
        tokens = list(lexer)
        i = 0
        while i < len(tokens):
            token = tokens[i]
            if token and set(token) <= _OPERATOR_CHARS:
                if token.lstrip("&")[:1] in (">", "<"):
                    i += 2  # a redirection and its target
                    continue
                segments.append([])
            else:
                segments[-1].append(token)
            i += 1
        for words in segments:
            while words and (words[0] in _PREFIX_WORDS or _ASSIGNMENT.match(words[0])):
                words = words[1:]
            if words and Path(words[0]).name == "reconcile":
                found.append(tuple(words[1:]))
    return found


def _container_invocations(container: dict[str, Any]) -> list[tuple[str, ...]]:
    command = [str(c) for c in container.get("command") or []]
    args = [str(a) for a in container.get("args") or []]
    if command and Path(command[0]).name == "reconcile":
        return [tuple(_placeholders(w) for w in command[1:] + args)]
    if command and Path(command[0]).name in ("sh", "bash") and "-c" in command:
        script = (command + args)[command.index("-c") + 1]
        return shell_invocations(script)
    if not command and IMAGE_NAME in str(container.get("image", "")):
        return [tuple(_placeholders(a) for a in args)]  # the image's ENTRYPOINT is reconcile
    return []


def yaml_invocations(node: Any, where: str) -> Iterator[Invocation]:
    """Walk any YAML tree: ``run:`` steps, pod ``containers``, pre-commit hooks."""
    if isinstance(node, list):
        for item in node:
            yield from yaml_invocations(item, where)
        return
    if not isinstance(node, dict):
        return
    label = where
    if isinstance(node.get("name"), str):
        label = f"{where} [{node['name']}]"
    if isinstance(node.get("run"), str):
        for argv in shell_invocations(node["run"]):
            yield Invocation(label, argv)
    if isinstance(node.get("entry"), str) and "id" in node:
        entry = shlex.split(node["entry"])
        if entry and Path(entry[0]).name == "reconcile":
            files = ["manifests/changed.yaml"] if node.get("pass_filenames", True) else []
            argv = [*entry[1:], *map(str, node.get("args", [])), *files]
            yield Invocation(f"{where} [hook {node['id']}]", tuple(argv))
    for key in ("containers", "initContainers"):
        for container in node.get(key) or []:
            if isinstance(container, dict):
                for argv in _container_invocations(container):
                    yield Invocation(f"{where} [container {container.get('name')}]", argv)
    for value in node.values():
        yield from yaml_invocations(value, label)


_FENCE = re.compile(r"^```(\w+)[^\n]*\n(.*?)^```", re.DOTALL | re.MULTILINE)


def readme_invocations(path: Path) -> Iterator[Invocation]:
    text = path.read_text(encoding="utf-8")
    for match in _FENCE.finditer(text):
        lang, body = match.group(1), match.group(2)
        line = text.count("\n", 0, match.start()) + 1
        where = f"{path.relative_to(REPO)}:{line}"
        if lang in ("yaml", "yml"):
            for doc in yaml.safe_load_all(body):
                yield from yaml_invocations(doc, where)
        elif lang in ("sh", "bash", "shell"):
            for argv in shell_invocations(body):
                yield Invocation(where, argv)


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    pairs = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        pairs.append((keyword.upper(), rest.strip()))
    return pairs


def final_stage(path: Path) -> list[tuple[str, str]]:
    instructions = dockerfile_instructions(path)
    last_from = max(i for i, (k, _) in enumerate(instructions) if k == "FROM")
    return instructions[last_from:]


def dockerfile_invocations() -> Iterator[Invocation]:
    stage = dict(final_stage(DOCKERFILE))
    entrypoint = json.loads(stage["ENTRYPOINT"])
    cmd = json.loads(stage.get("CMD", "[]"))
    if entrypoint and Path(entrypoint[0]).name == "reconcile":
        yield Invocation("Dockerfile [ENTRYPOINT + CMD]", tuple(entrypoint[1:] + cmd))


def load_yaml_documents(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]


def all_invocations() -> list[Invocation]:
    found: list[Invocation] = []
    for path in [*sorted(EXAMPLES.glob("**/*.y*ml")), HOOKS]:
        for doc in load_yaml_documents(path):
            found.extend(yaml_invocations(doc, str(path.relative_to(REPO))))
    for readme in READMES:
        found.extend(readme_invocations(readme))
    found.extend(dockerfile_invocations())
    return found


# --------------------------------------------------------------------------- parsing, not running


def _knows_option(command: click.Command, flag: str) -> bool:
    return any(flag in (*p.opts, *p.secondary_opts) for p in command.params)


def parse_with_cli(argv: tuple[str, ...]) -> click.Context:
    """Parse ``argv`` as the ``reconcile`` script would, down to the leaf command; run nothing.

    Raises click's own ``UsageError`` family for an unknown command, an unknown flag, a missing
    value or a bad choice. ``--help``/``--version`` end in ``click.exceptions.Exit(0)``.
    """
    ctx = cli.make_context("reconcile", list(argv), resilient_parsing=False)
    group: click.Group = cli
    while True:
        with warnings.catch_warnings():  # click 8.2+: protected_args folds into args in 9.0
            warnings.simplefilter("ignore", DeprecationWarning)
            rest = [*getattr(ctx, "protected_args", []), *ctx.args]
        if not rest:
            raise click.UsageError("no subcommand", ctx=ctx)
        name, command, rest = group.resolve_command(ctx, rest)
        assert name is not None
        assert command is not None
        ctx = command.make_context(name, rest, parent=ctx, resilient_parsing=False)
        if not isinstance(command, click.Group):
            return ctx
        group = command


def _only_a_missing_file(exc: click.UsageError) -> bool:
    """A ``click.Path(exists=True)`` value that does not exist here: a fact of the run, not of
    the command line (the test runs in an empty directory)."""
    param = getattr(exc, "param", None)
    return (
        isinstance(exc, click.BadParameter)
        and param is not None
        and isinstance(param.type, click.Path)
        and param.type.exists
        and "does not exist" in exc.format_message()
    )


def _without_changed_since(argv: tuple[str, ...]) -> tuple[str, ...]:
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--changed-since":
            skip = True
        elif not arg.startswith("--changed-since="):
            out.append(arg)
    return tuple(out)


def _invocation_params() -> list[Any]:
    """One case per command line; a --changed-since one is a strict xfail while its command
    does not know the flag (only that flag: the rest of the line must parse regardless)."""
    params = []
    for inv in all_invocations():
        marks = []
        command = cli.get_command(click.Context(cli), inv.argv[0]) if inv.argv else None
        if (
            _without_changed_since(inv.argv) != inv.argv
            and command is not None
            and not _knows_option(command, "--changed-since")
        ):
            marks.append(
                pytest.mark.xfail(
                    reason=CHANGED_SINCE_REASON, strict=True, raises=click.NoSuchOption
                )
            )
        params.append(pytest.param(inv, id=str(inv)[:120], marks=marks))
    return params


def test_the_examples_hold_reconcile_invocations_of_every_kind() -> None:
    """The finder itself works: each kind of place yields at least one command line."""
    found = all_invocations()
    wheres = {inv.where for inv in found}
    assert any("webhooks-pr.yml" in w for w in wheres)
    assert any("webhooks-apply.yml" in w for w in wheres)
    assert any("webhooks-drift.yml" in w for w in wheres)
    assert any("[container drift]" in w for w in wheres)
    assert any("[container reconcile]" in w for w in wheres)
    assert any("[hook reconcile-validate]" in w for w in wheres)
    assert any(w.startswith("Dockerfile") for w in wheres)
    subcommands = {inv.argv[0] for inv in found if inv.argv}
    assert {"validate", "plan", "show", "apply", "drift", "watch"} <= subcommands


@pytest.mark.parametrize("invocation", _invocation_params())
def test_every_reconcile_command_line_in_the_examples_parses_with_the_real_cli(
    invocation: Invocation, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # relative paths in the examples never meet real files
    monkeypatch.delenv("RECONCILE_STATE", raising=False)
    rest = _without_changed_since(invocation.argv)
    if rest != invocation.argv:
        parse_with_cli(rest)  # everything but --changed-since parses in any case
    try:
        parse_with_cli(invocation.argv)
    except click.exceptions.Exit as done:
        if done.exit_code != 0:  # --help and --version end here, with 0
            pytest.fail(f"{invocation}\n  -> exit {done.exit_code}")
    except click.UsageError as exc:
        if isinstance(exc, click.NoSuchOption) and exc.option_name == "--changed-since":
            raise
        if _only_a_missing_file(exc):
            return  # the flag exists; the file it names exists where the example runs

        pytest.fail(f"{invocation}\n  -> {exc.format_message()}")


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        (
            "reconcile plan --out plan.json manifests/",
            [("plan", "--out", "plan.json", "manifests/")],
        ),
        (
            'reconcile show --format markdown plan.json >> "$GITHUB_STEP_SUMMARY"',
            [("show", "--format", "markdown", "plan.json")],
        ),
        ("a && .venv/bin/reconcile drift 2>&1 | tee x", [("drift",)]),
        (
            "if reconcile validate \\\n  --no-color m/; then echo ok; fi",
            [("validate", "--no-color", "m/")],
        ),
        ("X=1 reconcile apply --plan ${{ steps.a.outputs.p }}", [("apply", "--plan", PLACEHOLDER)]),
        ('echo "reconcile drift failed"; reconciler --x', []),
        ("reconcile plan > out.md 2> err.log # reconcile --bogus", [("plan",)]),
    ],
)
def test_the_shell_splitter_finds_reconcile_commands_and_drops_redirections(
    script: str, expected: list[tuple[str, ...]]
) -> None:
    assert shell_invocations(script) == expected


def test_a_misspelt_flag_or_subcommand_is_caught_by_the_parser() -> None:
    with pytest.raises(click.NoSuchOption):
        parse_with_cli(("plan", "--outt", "plan.json"))
    with pytest.raises(click.UsageError):
        parse_with_cli(("plna", "manifests/"))
    with pytest.raises(click.UsageError):
        parse_with_cli(("state", "lst"))
    with pytest.raises(click.BadParameter):
        parse_with_cli(("drift", "--format", "html"))
    assert parse_with_cli(("state", "rm", "onbrd01/x")).command.name == "rm"


def test_a_command_substitution_on_a_reconcile_line_is_refused_rather_than_guessed() -> None:
    with pytest.raises(ValueError, match="command substitution"):
        shell_invocations("reconcile plan --out $(date).json")


# --------------------------------------------------------------------------- YAML files


@pytest.mark.parametrize(
    "path", [*sorted(EXAMPLES.glob("**/*.y*ml")), HOOKS], ids=lambda p: str(p.relative_to(REPO))
)
def test_every_yaml_file_of_the_examples_loads_safely(path: Path) -> None:
    docs = load_yaml_documents(path)
    assert docs, f"{path} holds no document"


def _workflows() -> list[tuple[Path, dict[str, Any]]]:
    return [(p, load_yaml_documents(p)[0]) for p in WORKFLOWS]


def test_the_three_workflows_exist() -> None:
    assert {p.name for p in WORKFLOWS} == {
        "webhooks-pr.yml",
        "webhooks-apply.yml",
        "webhooks-drift.yml",
    }


def test_every_workflow_job_declares_its_permissions_and_none_writes_contents() -> None:
    for path, workflow in _workflows():
        assert workflow.get("permissions") == {}, f"{path.name}: default permissions not {{}}"
        for name, job in workflow["jobs"].items():
            permissions = job.get("permissions")
            assert isinstance(permissions, dict), f"{path.name}: job {name} has no permissions"
            assert permissions.get("contents") == "read", f"{path.name}: {name} contents"
            assert "write-all" not in str(permissions)


def _scripts(job: dict[str, Any]) -> Iterator[str]:
    for step in job.get("steps", []):
        if isinstance(step.get("run"), str):
            yield step["run"]
        script = (step.get("with") or {}).get("script")
        if isinstance(script, str):
            yield script


def test_pull_requests_write_only_in_the_job_that_writes_the_sticky_comment() -> None:
    commenting = 0
    for path, workflow in _workflows():
        for name, job in workflow["jobs"].items():
            comments = any("createComment" in s for s in _scripts(job))
            writes = job["permissions"].get("pull-requests") == "write"
            assert comments == writes, f"{path.name}: job {name}"
            commenting += comments
    assert commenting == 1


def _secret_bound_env(*envs: dict[str, Any] | None) -> dict[str, str]:
    bound = {}
    for env in envs:
        for key, value in (env or {}).items():
            if "secrets." in str(value) or "github.token" in str(value):
                bound[key] = str(value)
    return bound


def test_workflows_never_put_a_secret_in_a_script_or_echo_one() -> None:
    for path, workflow in _workflows():
        raw = path.read_text(encoding="utf-8")
        assert "set -x" not in raw, path.name
        assert "ACTIONS_STEP_DEBUG" not in raw, path.name
        for job_name, job in workflow["jobs"].items():
            for step in job.get("steps", []):
                bound = _secret_bound_env(workflow.get("env"), job.get("env"), step.get("env"))
                for script in [s for s in [step.get("run")] if isinstance(s, str)]:
                    where = f"{path.name}: {job_name}: {step.get('name', step.get('run'))!r}"
                    assert "secrets." not in script, f"{where}: a secret expanded into a script"
                    for variable in bound:
                        assert not re.search(rf"\$\{{?{variable}\b", script), (
                            f"{where}: ${variable} (a secret) used in the script"
                        )
                for key, value in (step.get("with") or {}).items():
                    if "secrets." in str(value):
                        pytest.fail(f"{path.name}: {job_name}: secret passed as with.{key}")


def test_only_a_job_that_applies_holds_a_write_token() -> None:
    seen_write = seen_read = False
    for path, workflow in _workflows():
        for name, job in workflow["jobs"].items():
            applies = any(
                inv.argv[:1] == ("apply",)
                for s in _scripts(job)
                for inv in [Invocation("", a) for a in shell_invocations(s)]
            )
            for step in job.get("steps", []):
                for key, value in _secret_bound_env(job.get("env"), step.get("env")).items():
                    if not key.startswith("TYPEFORM_TOKEN"):
                        continue
                    secret = re.search(r"secrets\.(\w+)", value)
                    assert secret, f"{path.name}: {name}: {key} is not from a secret"
                    if "READ" in secret.group(1).upper():
                        seen_read = True
                        continue
                    assert applies, (
                        f"{path.name}: {name}: {key} is a write token in a job that does not apply"
                    )
                    seen_write = True
    assert seen_read
    assert seen_write


def test_the_state_comes_from_a_secret_in_every_workflow() -> None:
    for path, workflow in _workflows():
        for name, job in workflow["jobs"].items():
            assert job["env"]["RECONCILE_STATE"] == "${{ secrets.RECONCILE_STATE_DSN }}", (
                f"{path.name}: {name}"
            )


def test_the_apply_workflow_downloads_what_the_pull_request_workflow_uploads() -> None:
    pr = load_yaml_documents(EXAMPLES / "github-actions" / "webhooks-pr.yml")[0]
    apply = load_yaml_documents(EXAMPLES / "github-actions" / "webhooks-apply.yml")[0]
    (pr_job,) = pr["jobs"].values()
    (apply_job,) = apply["jobs"].values()
    uploads = [
        s for s in pr_job["steps"] if str(s.get("uses", "")).startswith("actions/upload-artifact")
    ]
    downloads = [
        s
        for s in apply_job["steps"]
        if str(s.get("uses", "")).startswith("actions/download-artifact")
    ]
    assert [u["with"]["name"] for u in uploads] == [d["with"]["name"] for d in downloads]
    assert uploads[0]["with"]["path"] == "plan.json"
    finder = next(s for s in apply_job["steps"] if s.get("id") == "reviewed")
    assert "workflow_id: 'webhooks-pr.yml'" in finder["with"]["script"]
    assert apply_job["permissions"].get("actions") == "read"
    checkout = next(
        s for s in pr_job["steps"] if str(s.get("uses", "")).startswith("actions/checkout")
    )
    assert checkout["with"]["fetch-depth"] == 0, "--changed-since origin/main needs the history"
    comment = next(s for s in pr_job["steps"] if "createComment" in str(s.get("with", {})))
    assert "<!-- typeform-reconciler-plan -->" in comment["with"]["script"]
    assert "updateComment" in comment["with"]["script"]


def test_the_apply_falls_back_only_when_the_reviewed_plan_is_refused_as_stale(
    tmp_path: Path,
) -> None:
    """The grep in the apply step matches what a stale refusal really prints."""
    apply = (EXAMPLES / "github-actions" / "webhooks-apply.yml").read_text(encoding="utf-8")
    needle = re.search(r"grep -q '([^']+)' apply-plan\.log", apply)
    assert needle
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TYPEFORM_", "RECONCILE_"))}
    env["ONBOARDING_WEBHOOK_SECRET"] = "examples-test-secret"
    shutil.copytree(REPO / "manifests", tmp_path / "manifests")
    common = ["--api-url", "emulator:emu.json", "--state", "state.json", "--records", "r.jsonl"]
    run = [sys.executable, "-m", "reconciler"]

    def reconcile(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*run, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )

    planned = reconcile("plan", "--out", "plan.json", *common[:4])
    assert planned.returncode == 0, planned.stderr
    assert reconcile("apply", "--auto-approve", *common).returncode == 0  # main moved on
    refused = reconcile("apply", "--plan", "plan.json", *common)
    assert refused.returncode == 1
    assert needle.group(1) in refused.stderr
    assert "examples-test-secret" not in refused.stdout + refused.stderr


def test_workflows_are_valid_against_the_github_workflow_schema() -> None:
    if importlib.util.find_spec("check_jsonschema") is None:
        pytest.skip("check-jsonschema is not installed (dev extra): GitHub schema not checked")
    done = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows"]
        + [str(p) for p in WORKFLOWS],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


# --------------------------------------------------------------------------- pre-commit hook

# The keys pre-commit documents for a .pre-commit-hooks.yaml entry (pre-commit.com, "new hooks").
PRE_COMMIT_HOOK_KEYS = {
    "id", "name", "entry", "language", "files", "exclude", "types", "types_or", "exclude_types",
    "always_run", "fail_fast", "verbose", "pass_filenames", "require_serial", "description",
    "language_version", "minimum_pre_commit_version", "args", "stages",
}  # fmt: skip


def test_the_pre_commit_hook_runs_reconcile_validate_on_changed_yaml_files() -> None:
    (hooks,) = load_yaml_documents(HOOKS)
    hook = next(h for h in hooks if h["id"] == "reconcile-validate")
    assert set(hook) <= PRE_COMMIT_HOOK_KEYS, set(hook) - PRE_COMMIT_HOOK_KEYS
    assert hook["language"] == "python"
    assert shlex.split(hook["entry"]) == ["reconcile", "validate"]
    assert hook["pass_filenames"] is True
    pattern = re.compile(hook["files"])
    assert pattern.search("manifests/a.yaml")
    assert pattern.search("support/b.yml")
    assert not pattern.search("manifests/a.json")
    assert not pattern.search("a.yaml.bak")


def test_the_pre_commit_manifest_passes_pre_commits_own_validator() -> None:
    if importlib.util.find_spec("pre_commit") is None:
        pytest.skip("pre-commit is not installed (dev extra): its manifest validator not run")
    done = subprocess.run(
        [sys.executable, "-m", "pre_commit", "validate-manifest", str(HOOKS)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.slow
def test_the_pre_commit_hook_installs_and_reports_a_bad_manifest(tmp_path: Path) -> None:
    """pre-commit try-repo installs this repository as the hook (from PyPI: needs the registry)."""
    if importlib.util.find_spec("pre_commit") is None:
        pytest.skip("pre-commit is not installed (dev extra)")
    if subprocess.run(["git", "-C", str(REPO), "ls-files", "--error-unmatch", HOOKS.name],
                      capture_output=True).returncode != 0:  # fmt: skip
        pytest.skip(".pre-commit-hooks.yaml is not committed yet: try-repo reads the git tree")
    project = tmp_path / "project"
    shutil.copytree(REPO / "manifests", project / "manifests")
    bad = (REPO / "tests" / "manifests_bad" / "bad_tag.yaml").read_text(encoding="utf-8")
    (project / "manifests" / "bad.yaml").write_text(bad, encoding="utf-8")
    env = {
        **os.environ,
        "PRE_COMMIT_HOME": str(tmp_path / "cache"),
        "GIT_CONFIG_GLOBAL": "/dev/null",
    }
    env.pop("ONBOARDING_WEBHOOK_SECRET", None)
    for args in (["init", "-q"], ["add", "."]):
        subprocess.run(["git", *args], cwd=project, check=True, env=env)
    done = subprocess.run(
        [sys.executable, "-m", "pre_commit", "try-repo", str(REPO), "reconcile-validate",
         "--all-files", "--color", "never"],
        cwd=project, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    output = done.stdout + done.stderr
    if "CalledProcessError" in output and "pip" in output:
        pytest.skip(
            f"pre-commit could not install the hook (no package registry?): {output[-300:]}"
        )
    assert done.returncode == 1, output
    assert "manifests/bad.yaml:9:12: spec.webhooks[0].tag" in output
    assert "1 error in 3 files" in output


# --------------------------------------------------------------------------- Dockerfile


def test_the_image_runs_reconcile_as_a_non_root_user() -> None:
    stage = final_stage(DOCKERFILE)
    assert stage[0][1].startswith("python:${PYTHON_VERSION}-slim")
    assert dict(dockerfile_instructions(DOCKERFILE))["ARG"] == "PYTHON_VERSION=3.12"
    users = [arg for key, arg in stage if key == "USER"]
    assert users, "no USER in the final stage: the image would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    assert json.loads(dict(stage)["ENTRYPOINT"]) == ["reconcile"]
    assert json.loads(dict(stage)["CMD"]) == ["--help"]
    runs = " ".join(arg for key, arg in dockerfile_instructions(DOCKERFILE) if key == "RUN")
    assert "pip install --no-cache-dir '.[postgres]'" in runs


def test_the_docker_build_context_leaves_out_venv_git_state_and_caches(tmp_path: Path) -> None:
    if importlib.util.find_spec("docker") is None:
        pytest.skip("the docker SDK is not installed (dev extra): .dockerignore not evaluated")
    from docker.utils.build import exclude_paths

    wanted = [
        "pyproject.toml",
        "README.md",
        "reconciler/cli.py",
        "schemas/reconciler-v1.schema.json",
    ]
    unwanted = [
        ".venv/bin/python", ".git/config", ".reconcile/state.json", ".pytest_cache/v/x",
        ".mypy_cache/x.json", ".ruff_cache/x", ".hypothesis/x", "reconciler/__pycache__/cli.pyc",
        "tests/test_x.py", ".env", "state.json", "build/lib/x.py",
    ]  # fmt: skip
    for name in wanted + unwanted:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x", encoding="utf-8")
    lines = (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]

    context = exclude_paths(str(tmp_path), patterns)

    assert set(wanted) <= context
    assert not context & set(unwanted), context & set(unwanted)


@pytest.mark.slow
def test_the_files_the_dockerfile_copies_build_the_package_with_its_schemas(tmp_path: Path) -> None:
    """The build stage's COPY lines are enough for ``pip install .`` (hatchling from PyPI)."""
    context = tmp_path / "src"
    context.mkdir()
    copies = [arg.split() for key, arg in dockerfile_instructions(DOCKERFILE) if key == "COPY"]
    for words in copies:
        if any(w.startswith("--from") for w in words):
            continue
        for source in words[:-1]:
            src = REPO / source.rstrip("/")
            if src.is_dir():
                shutil.copytree(
                    src, context / src.name, ignore=shutil.ignore_patterns("__pycache__")
                )
            else:
                shutil.copy2(src, context / src.name)
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q"]
    done = subprocess.run(
        [*pip_wheel, "-w", str(tmp_path / "w"), str(context)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0 and ("hatchling" in done.stderr and "No matching" in done.stderr):
        pytest.skip(f"no package registry for the build backend: {done.stderr[-300:]}")
    assert done.returncode == 0, done.stderr
    import zipfile

    (wheel,) = (tmp_path / "w").glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "reconciler/_schemas/reconciler-v1.schema.json" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "reconcile = reconciler.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def _docker_works() -> bool:
    if shutil.which("docker") is None:
        return False
    probe = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=60)
    return probe.returncode == 0


@pytest.mark.slow
def test_the_docker_image_builds_and_prints_the_version() -> None:
    if not _docker_works():
        pytest.skip("docker is not available here (`docker info` failed): image not built")
    tag = "typeform-reconciler:test-examples"
    build = subprocess.run(
        ["docker", "build", "-t", tag, str(REPO)], capture_output=True, text=True, timeout=900
    )
    if build.returncode != 0 and re.search(
        r"(pull access|failed to resolve|failed to fetch|TLS handshake|dial tcp|no such host|"
        r"failed to do request|i/o timeout)",
        build.stderr,
    ):
        pytest.skip(f"the base image could not be pulled (no network?): {build.stderr[-300:]}")
    assert build.returncode == 0, build.stderr[-3000:]
    try:
        version = subprocess.run(
            ["docker", "run", "--rm", tag, "--version"], capture_output=True, text=True, timeout=120
        )
        assert version.returncode == 0, version.stderr
        assert version.stdout.strip() == f"reconcile, version {reconciler.__version__}"
        user = subprocess.run(
            ["docker", "run", "--rm", "--entrypoint", "id", tag, "-u"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert user.stdout.strip() not in ("", "0")
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, timeout=120)


def test_an_account_token_file_under_run_secrets_needs_secret_dir(tmp_path: Path) -> None:
    """What the Dockerfile and READMEs say: /run/secrets is read only when allowed."""
    secrets = tmp_path / "run-secrets"
    secrets.mkdir()
    (secrets / "typeform-token").write_text("tok-examples-test\n", encoding="utf-8")
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "account.yaml").write_text(
        "apiVersion: reconciler/v1\nkind: Account\nmetadata: {name: eu-clients}\n"
        "spec:\n  api_url: https://api.eu.typeform.com\n"
        f"  token: {{file: {secrets}/typeform-token}}\n",
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TYPEFORM_", "RECONCILE_"))}

    def validate(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "reconciler", "validate", *extra, str(manifests)],
            env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    refused, allowed = validate(), validate("--check-env", "--secret-dir", str(secrets))

    assert refused.returncode == 1
    assert "--secret-dir" in refused.stdout + refused.stderr
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    assert (
        "tok-examples-test" not in refused.stdout + refused.stderr + allowed.stdout + allowed.stderr
    )


# --------------------------------------------------------------------------- Kubernetes


def _k8s_documents() -> list[tuple[Path, dict[str, Any]]]:
    docs = [(p, d) for p in KUBERNETES for d in load_yaml_documents(p)]
    return [(p, d) for p, d in docs if d.get("kind") not in (None, "Kustomization")]


def _pod_specs(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    if doc["kind"] == "Deployment":
        yield doc["spec"]["template"]["spec"]
    elif doc["kind"] == "CronJob":
        yield doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def _our_containers(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for pod in _pod_specs(doc):
        for container in pod.get("containers", []):
            if IMAGE_NAME in container["image"]:
                yield container


def test_kubernetes_objects_are_valid_for_the_api_server() -> None:
    if importlib.util.find_spec("kubernetes_validate") is None:
        pytest.skip("kubernetes-validate is not installed (dev extra): schemas not checked")
    import kubernetes_validate

    checked = 0
    for path, doc in _k8s_documents():
        if doc["apiVersion"].startswith("monitoring.coreos.com/") or doc["kind"] == "Kustomization":
            continue  # custom resources: no schema ships with kubernetes-validate
        try:
            kubernetes_validate.validate(doc, "1.30.0", strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{path.name}: {doc['kind']} {doc['metadata']['name']}: {exc.message}")
        checked += 1
    assert checked >= 4


def test_kubernetes_tokens_and_passwords_come_only_from_secrets() -> None:
    for path, doc in _k8s_documents():
        for pod in _pod_specs(doc):
            assert pod["securityContext"]["runAsNonRoot"] is True
            for container in [*pod.get("initContainers", []), *pod["containers"]]:
                assert container["securityContext"]["readOnlyRootFilesystem"] is True
                assert container["securityContext"]["allowPrivilegeEscalation"] is False
                for env in container.get("env", []):
                    sensitive = re.search(r"TOKEN|SECRET|PASSWORD", env["name"])
                    if sensitive:
                        assert "value" not in env, f"{path.name}: {env['name']} has a value"
                        assert "secretKeyRef" in env["valueFrom"], f"{path.name}: {env['name']}"
                    if "value" in env:
                        assert not re.search(r"://[^/@]*:[^/@]*@", str(env["value"])), (
                            f"{path.name}: {env['name']}: a password in a URL"
                        )


def _arg_value(args: list[str], flag: str) -> str | None:
    for i, arg in enumerate(args):
        if arg == flag:
            return args[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def test_each_shard_uses_its_account_and_its_own_state_namespace() -> None:
    shards: list[str] = []
    for path, doc in _k8s_documents():
        for container in _our_containers(doc):
            account = _arg_value(container["args"], "--account")
            assert account, f"{path.name}: {container['name']} is not limited to one account"
            state = next(e["value"] for e in container["env"] if e["name"] == "RECONCILE_STATE")
            assert state.startswith("postgresql://")
            assert state.endswith(f"?namespace={account}"), f"{path.name}: {state} for {account}"
            shards.append(f"{doc['kind']}/{account}")
    assert {"CronJob/default", "CronJob/eu-clients", "Deployment/default"} <= set(shards)
    assert len(shards) == len(set(shards)), "two workloads of one kind on one shard"


def test_the_watcher_exposes_metrics_that_the_service_and_alerts_use() -> None:
    from prometheus_client import generate_latest

    from reconciler.metrics import WEBHOOK_STATUSES, Metrics

    docs = {(d["kind"], d["metadata"]["name"]): d for _, d in _k8s_documents()}
    (deployment,) = [d for (kind, _), d in docs.items() if kind == "Deployment"]
    (container,) = _our_containers(deployment)
    args = container["args"]
    assert args[0] == "watch"
    assert "--heal" in args
    port = int(_arg_value(args, "--metrics-port") or 0)
    assert _arg_value(args, "--metrics-host") == "0.0.0.0"
    assert container["ports"] == [{"name": "metrics", "containerPort": port}]
    (service,) = [d for (kind, _), d in docs.items() if kind == "Service"]
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    (monitor,) = [d for (kind, _), d in docs.items() if kind == "ServiceMonitor"]
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"

    exported = set(re.findall(r"^# TYPE (\w+)", generate_latest(Metrics().registry).decode(), re.M))
    (rule,) = [d for (kind, _), d in docs.items() if kind == "PrometheusRule"]
    exprs = [r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]]
    used = {m for e in exprs for m in re.findall(r"\b(reconcile_\w+)", e)}
    assert "reconcile_last_success_timestamp_seconds" in used
    assert used <= exported, used - exported
    for statuses in re.findall(r'status=~"([^"]+)"', " ".join(exprs)):
        assert set(statuses.split("|")) <= set(WEBHOOK_STATUSES)
    interval_s = 300 if _arg_value(args, "--interval") == "5m" else None
    assert any(f"3 * {interval_s}" in e for e in exprs), "the freshness alert follows the interval"


def test_every_kubernetes_file_is_listed_in_the_kustomization() -> None:
    (kustomization,) = load_yaml_documents(EXAMPLES / "kubernetes" / "kustomization.yaml")
    listed = set(kustomization["resources"])
    assert listed == {p.name for p in KUBERNETES} - {"kustomization.yaml"}

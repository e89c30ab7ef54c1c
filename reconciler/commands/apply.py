"""``reconcile apply``: plan (or read a saved plan), confirm, execute, record, save state."""

from __future__ import annotations

import json
import sys
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import click

from reconciler.applier import ActionResult, ApplyOutcome, apply_plan
from reconciler.commands._options import (
    OutputFormat,
    color_option,
    format_option,
    logging_options,
    paths_argument,
)
from reconciler.commands._runtime import (
    api_options,
    load,
    make_settings,
    parse_targets,
    plan_with_progress,
    setup_logging,
)
from reconciler.commands.plan import print_plan
from reconciler.controller import check_saved_plan, open_clients, utc_now
from reconciler.errors import ApplyError, PlanError
from reconciler.models import Plan, WebhookKey
from reconciler.planner import DEFAULT_MAX_DELETES, PlanOptions, check_safety
from reconciler.records import RecordWriter, new_run_id
from reconciler.render import plan_from_json, plan_to_json
from reconciler.state import (
    ApplyLock,
    FingerprintCache,
    State,
    describe_holder,
    load_state,
    save_state,
)

DEFAULT_RECORDS = Path(".reconcile/records.jsonl")
_PAST = {"create": "created", "update": "updated", "delete": "deleted", "revert": "reverted"}


def read_saved_plan(path: Path) -> Plan:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return plan_from_json(data)
    except OSError as exc:
        raise PlanError(f"cannot read the saved plan {path}: {exc.strerror}") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise PlanError(f"{path} is not a plan saved by `reconcile plan --out`: {exc}") from exc


def confirm(*, to_stderr: bool = False) -> None:
    """Ask on a terminal; refuse outright when nobody can answer (CI, pipes)."""
    if not sys.stdin.isatty():
        raise PlanError(
            "refusing to apply without confirmation: stdin is not a terminal. "
            "Review the plan, then pass --auto-approve (or apply a saved plan with --plan)."
        )
    answer = click.prompt(
        "Apply these changes? Only 'yes' is accepted",
        default="",
        show_default=False,
        err=to_stderr,
    )
    if answer.strip() != "yes":
        # Declining is an answer, not an interruption: exit 1 like any refusal (Ctrl-C stays 130).
        raise PlanError("apply cancelled: only 'yes' approves the plan; nothing was written.")


def report(result: ActionResult, *, to_stderr: bool = False) -> None:
    key = result.change.key
    verb = _PAST[result.operation] if result.success else f"{result.operation} FAILED"
    line = f"{result.change.action.glyph if result.operation != 'revert' else '↺'} {key}: {verb}"
    if result.attempts > 1:
        line += f" after {result.attempts} attempts"
    if result.error:
        line += f": {result.error}"
    click.echo(line, err=to_stderr or not result.success)


def summary(outcome: ApplyOutcome) -> str:
    counts: dict[str, int] = {}
    for r in outcome.results + outcome.reverts:
        if r.success:
            counts[r.operation] = counts.get(r.operation, 0) + 1
    done = ", ".join(f"{n} {_PAST[op]}" for op, n in sorted(counts.items())) or "nothing written"
    failed = len(outcome.failed)
    return f"Apply {'complete' if not failed else 'finished with errors'}: {done}, {failed} failed."


@click.command()
@paths_argument
@api_options
@click.option(
    "--plan",
    "plan_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Execute a plan saved by `plan --out` (refused if stale).",
)
@click.option("--auto-approve", is_flag=True, help="Do not ask for confirmation.")
@click.option(
    "--prune", is_flag=True, help="Delete webhooks the tool owns but no manifest declares."
)
@click.option(
    "--max-deletes",
    type=click.IntRange(min=0),
    default=DEFAULT_MAX_DELETES,
    show_default=True,
    help="Refuse plans with more deletions.",
)
@click.option(
    "--allow-empty", is_flag=True, help="Allow deleting every managed webhook of an account."
)
@click.option("--atomic", is_flag=True, help="Revert the writes already made when one fails.")
@click.option(
    "--records",
    "records_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_RECORDS,
    show_default=True,
    help="Operation records (JSONL, appended).",
)
@format_option
@color_option
@logging_options
def apply(
    paths: tuple[str, ...],
    api_url: str | None,
    rate: float | None,
    state_path: Path,
    targets: tuple[str, ...],
    plan_file: Path | None,
    auto_approve: bool,
    prune: bool,
    max_deletes: int,
    allow_empty: bool,
    atomic: bool,
    records_path: Path,
    output_format: str,
    no_color: bool,
    log_level: str,
    log_format: str,
) -> int:
    """Make the live webhooks match the manifests (or a saved plan)."""
    setup_logging(log_level, log_format)
    settings = make_settings(api_url, rate)
    desired = load(paths)
    saved = read_saved_plan(plan_file) if plan_file is not None else None
    options = PlanOptions(prune=prune, targets=parse_targets(targets))
    run_id = new_run_id()
    hashes = FingerprintCache()
    # With --format json, stdout carries the plan document alone (it must parse); what a person
    # reads while apply runs goes to stderr.
    human_err = output_format == OutputFormat.JSON

    with ApplyLock(state_path, command="apply") as lock:
        if lock.previous_holder is not None:
            click.echo(
                f"Note: took over the lock left by {describe_holder(lock.previous_holder)}, "
                "which ended without releasing it.",
                err=True,
            )
        state = load_state(state_path)

        async def run() -> ApplyOutcome | None:
            accounts = sorted({c.key.account for c in saved.actions}) if saved is not None else None
            async with open_clients(desired, settings, accounts=accounts) as clients:
                secrets: dict[WebhookKey, str]
                if saved is not None:
                    the_plan = saved
                    secrets = await check_saved_plan(
                        saved, desired, clients, environ=settings.environ, hashes=hashes
                    )
                else:
                    planned = await plan_with_progress(
                        desired, clients, state, settings, options, hashes=hashes
                    )
                    the_plan, secrets = planned.plan, dict(planned.secrets)
                doc: dict[str, Any] = plan_to_json(the_plan)
                print_plan(doc, output_format=output_format, no_color=no_color)
                check_safety(
                    the_plan,
                    desired,
                    managed=state.managed_keys(),
                    max_deletes=max_deletes,
                    allow_empty=allow_empty,
                )
                if not the_plan.has_changes:
                    return None
                if not auto_approve and saved is None:
                    await anyio.to_thread.run_sync(partial(confirm, to_stderr=human_err))
                with RecordWriter(records_path) as writer:

                    def persist(new_state: State) -> None:
                        save_state(state_path, new_state)

                    return await apply_plan(
                        the_plan.actions,
                        apis=clients,
                        secrets=secrets,
                        state=state,
                        run_id=run_id,
                        now=utc_now,
                        fingerprint=hashes.fingerprint,
                        record=writer.write,
                        on_state=persist,
                        on_result=partial(report, to_stderr=human_err),
                        atomic=atomic,
                    )

        outcome = anyio.run(run)

    if outcome is None:
        click.echo("\nNothing to apply.", err=human_err)
        return 0
    line = summary(outcome)
    click.echo("\n" + line + f" Records: {records_path} (run {run_id}).", err=human_err)
    if not outcome.ok:
        raise ApplyError(
            f"{len(outcome.failed)} write(s) failed; the others were applied"
            + (" and then reverted (--atomic)" if atomic else "")
            + ". Fix the cause and run apply again: it converges.",
            outcome.failed,
        )
    return 0

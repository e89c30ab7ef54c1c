"""``reconcile emulator``: serve the Typeform API emulator over HTTP, on loopback by default.

Flags become an ``EmulatorStore`` (from ``--seed``, ``--state`` or the demo seed), settings and
faults; ``reconciler.emulator.serve`` does the serving. The token comes from the environment
(``TYPEFORM_TOKEN`` or ``--token-env NAME``), never from a flag, and is never printed: the
start-up line shows the variable's name, not its value.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from reconciler.commands._options import logging_options
from reconciler.errors import ConfigError

if TYPE_CHECKING:
    from reconciler.emulator.faults import Faults
    from reconciler.emulator.store import EmulatorStore

DEFAULT_TOKEN_ENV = "TYPEFORM_TOKEN"


def _probability(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    if value is not None and not 0.0 <= value <= 1.0:
        raise click.BadParameter("a probability between 0 and 1")
    return value


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8787, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--seed",
    "seed_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Seed file (YAML or JSON): workspaces, forms, webhooks. Default: the demo account.",
)
@click.option(
    "--state",
    "state_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Persist the account in this JSON file (resumed on the next start unless --seed).",
)
@click.option("--rate", type=float, default=None, help="Requests per second per token [2].")
@click.option("--burst", type=click.IntRange(min=1), default=None, help="Bucket size [2].")
@click.option(
    "--token-env",
    default=DEFAULT_TOKEN_ENV,
    show_default=True,
    help="Environment variable holding the only token to accept (unset: accept any).",
)
@click.option("--latency", help="Added latency in ms: '50', or a range '20-80'.")
@click.option("--error-rate", type=float, callback=_probability, help="Share of 5xx answers.")
@click.option("--throttle-rate", type=float, callback=_probability, help="Share of 429 answers.")
@click.option(
    "--faults",
    "faults_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Faults as YAML/JSON (latency_ms, error_rate, throttle_rate, script).",
)
@click.option(
    "--allow-remote", is_flag=True, help="Allow binding a non-loopback address (no real auth!)."
)
@logging_options
def emulator(
    host: str,
    port: int,
    seed_file: Path | None,
    state_file: Path | None,
    rate: float | None,
    burst: int | None,
    token_env: str,
    latency: str | None,
    error_rate: float | None,
    throttle_rate: float | None,
    faults_file: Path | None,
    allow_remote: bool,
    log_level: str,
    log_format: str,
) -> int:
    """Serve the Typeform API emulator (loopback only unless --allow-remote)."""
    # Imported here so that every other command starts without loading starlette and uvicorn.
    from reconciler.emulator.app import create_app
    from reconciler.emulator.server import base_url, bind_socket, is_loopback, serve

    if not is_loopback(host) and not allow_remote:
        raise ConfigError(
            f"refusing to bind {host}: the emulator's control API is unauthenticated; "
            "use a loopback address, or pass --allow-remote if you really mean it"
        )
    store = _load_store(seed_file=seed_file, state_file=state_file)
    settings = store.settings
    if rate is not None:
        if rate <= 0:
            raise ConfigError("--rate must be positive")
        settings.rate = rate
    if burst is not None:
        settings.burst = burst
    settings.faults = _faults(
        settings.faults,
        faults_file=faults_file,
        latency=latency,
        error_rate=error_rate,
        throttle_rate=throttle_rate,
    )
    token = os.environ.get(token_env) or None

    level = log_level.upper()
    if level in ("INFO", "DEBUG"):
        logging.basicConfig(stream=sys.stderr, level=level)

    on_change = (lambda s: s.save(state_file)) if state_file else None
    app = create_app(
        store,
        token=token,
        rate=settings.rate,
        burst=settings.burst,
        on_change=on_change,
    )
    try:
        sock = bind_socket(host, port)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    url = base_url(sock)

    def announce() -> None:
        token_hint = f"${token_env}" if token else "anything"
        click.echo(
            f"Typeform API emulator listening on {url} (rate {settings.rate:g}/s, burst "
            f"{settings.burst}); try: TYPEFORM_API_URL={url} TYPEFORM_TOKEN={token_hint} "
            "reconcile plan",
        )
        sys.stdout.flush()

    try:
        stopped_by = serve(
            app,
            sock,
            log_level=log_level.lower(),
            access_log=level in ("INFO", "DEBUG"),
            on_started=announce,
        )
    finally:
        sock.close()
        if state_file is not None:
            store.save(state_file)
    if stopped_by is not None:
        click.echo(f"Emulator stopped ({signal.Signals(stopped_by).name}).", err=True)
    return 0


def _load_store(*, seed_file: Path | None, state_file: Path | None) -> EmulatorStore:
    from reconciler.emulator.seed import load_seed
    from reconciler.emulator.store import EmulatorStore

    if seed_file is not None:
        store = EmulatorStore(load_seed(seed_file))
        if state_file is not None and state_file.exists():
            # --seed wins, but keep the settings the state file carried.
            store.settings = EmulatorStore.load(state_file).settings
        return store
    if state_file is not None and state_file.exists():
        return EmulatorStore.load(state_file)
    return EmulatorStore()


def _faults(
    base: Faults,
    *,
    faults_file: Path | None,
    latency: str | None,
    error_rate: float | None,
    throttle_rate: float | None,
) -> Faults:
    from reconciler.emulator.faults import Faults, parse_latency

    faults = base
    if faults_file is not None:
        import yaml  # only needed for this flag

        try:
            data = yaml.safe_load(faults_file.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read faults file {faults_file}: {exc}") from exc
        try:
            faults = Faults.from_json(data)
        except ValueError as exc:
            raise ConfigError(f"faults file {faults_file}: {exc}") from exc
    try:
        if latency is not None:
            faults.latency_ms, faults.latency_max_ms = parse_latency(latency)
    except ValueError as exc:
        raise ConfigError(f"--latency: {exc}") from exc
    if error_rate is not None:
        faults.error_rate = error_rate
    if throttle_rate is not None:
        faults.throttle_rate = throttle_rate
    return faults

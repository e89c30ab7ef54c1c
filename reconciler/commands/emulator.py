"""``reconcile emulator``: serve the Typeform API emulator over HTTP, on loopback by default.

Flags become an ``EmulatorStore`` (from ``--seed``, ``--state`` or the demo seed), settings,
faults and echo modes; ``reconciler.emulator.serve`` does the serving. The token comes from the
environment (``TYPEFORM_TOKEN`` or ``--token-env NAME``), never from a flag, and is never
printed: the start-up line shows the variable's name, not its value. Token grants with scopes
come from a file (``--tokens FILE``), whose keys are tokens or ``$VARIABLE`` names; they are
kept and persisted as SHA-256 digests only.

Logs (ours and uvicorn's access and error logs) go to stderr through ``reconciler.logs``, as
text or, with ``--log-format json``, one JSON object a line; none of them carries a request
header, so no token.
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
    from reconciler.emulator.persist import StoreFile
    from reconciler.emulator.store import EmulatorStore

DEFAULT_TOKEN_ENV = "TYPEFORM_TOKEN"
UVICORN_LOGGERS = ("uvicorn", "uvicorn.access", "uvicorn.error")

log = logging.getLogger("reconciler.emulator")


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
    "--secret-echo",
    type=click.Choice(["none", "plain", "masked"]),
    default=None,
    help="What webhook responses carry of the secret [none; or as --state had it].",
)
@click.option(
    "--event-types-echo",
    type=click.Choice(["always", "omit-default"]),
    default=None,
    help="Leave event_types out of responses when it is {form_response: true} [always].",
)
@click.option(
    "--tokens",
    "tokens_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Token grants as YAML/JSON: {TOKEN or $VARIABLE: {account, scopes}}.",
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
    secret_echo: str | None,
    event_types_echo: str | None,
    tokens_file: Path | None,
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
    handle, store = _load_store(seed_file=seed_file, state_file=state_file)
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
    try:
        settings.set_modes(
            secret_echo=secret_echo,
            event_types_echo=event_types_echo,
            tokens=_read_tokens(tokens_file) if tokens_file is not None else None,
        )
    except ValueError as exc:
        where = f"tokens file {tokens_file}: " if tokens_file is not None else ""
        raise ConfigError(f"{where}{exc}") from exc
    store.settings_changed()
    token = os.environ.get(token_env) or None
    level = log_level.upper()

    if handle is not None:
        handle.compact()  # the flags' settings, on disk before the first request
    on_change = handle.flush if handle is not None else None
    app = create_app(
        store,
        token=token,
        rate=settings.rate,
        burst=settings.burst,
        on_change=on_change,
    )
    _configure_logs(log_level=log_level, log_format=log_format)
    try:
        sock = bind_socket(host, port)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    url = base_url(sock)

    def announce() -> None:
        log.info(
            "emulator listening on %s (rate %g/s, burst %d, secret_echo %s, "
            "event_types_echo %s, %d token grant(s))",
            url,
            settings.rate,
            settings.burst,
            settings.secret_echo.value,
            settings.event_types_echo.value,
            len(settings.tokens),
        )
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
        if handle is not None:
            handle.close()
    if stopped_by is not None:
        name = signal.Signals(stopped_by).name
        if log_format == "json":
            log.warning("emulator stopped (%s)", name)
        else:
            click.echo(f"Emulator stopped ({name}).", err=True)
    return 0


def _configure_logs(*, log_level: str, log_format: str) -> None:
    """Our loggers and uvicorn's through one handler: one format on stderr, redaction included."""
    from reconciler.logs import configure_logging

    configure_logging(level=log_level, fmt=log_format)
    ours = logging.getLogger("reconciler")
    for name in UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers = list(ours.handlers) if name == "uvicorn" else []
        logger.propagate = name != "uvicorn"
    logging.getLogger("uvicorn").setLevel(log_level.upper())


def _load_store(
    *, seed_file: Path | None, state_file: Path | None
) -> tuple[StoreFile | None, EmulatorStore]:
    from reconciler.emulator.persist import StoreFile
    from reconciler.emulator.seed import DEMO_SEED, load_seed
    from reconciler.emulator.store import EmulatorStore

    if state_file is None:
        return None, EmulatorStore(load_seed(seed_file) if seed_file is not None else DEMO_SEED)
    handle = StoreFile.open(state_file)
    if seed_file is not None:
        # --seed wins over the account the state file held, but keep its settings.
        handle.store.apply_seed(load_seed(seed_file))
    return handle, handle.store


def _read_tokens(path: Path) -> dict[str, object]:
    """A token grants file; ``$NAME`` keys are read from the environment (and must be set)."""
    import yaml  # only needed for this flag

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        # A YAML error may quote the line it failed on, which may hold a token: say where only.
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        reason = exc.strerror if isinstance(exc, OSError) else "not valid YAML/JSON"
        raise ConfigError(f"cannot read tokens file {path}: {reason}{where}") from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"tokens file {path}: expected {{TOKEN or $VARIABLE: {{account, scopes}}}}"
        )
    grants: dict[str, object] = {}
    for i, (key, grant) in enumerate(data.items()):
        if isinstance(key, str) and key.startswith("$"):
            value = os.environ.get(key[1:])
            if not value:
                raise ConfigError(f"tokens file {path}: {key} is not set in the environment")
            key = value
        if not isinstance(key, str):
            raise ConfigError(f"tokens file {path}: tokens[{i}]: a token must be a string")
        grants[key] = grant
    return grants


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

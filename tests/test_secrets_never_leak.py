"""SPEC section 10: no secret and no token reaches any output or any file the tool writes.

A whole session runs with distinctive values (``validate``, every plan format, saved plans,
apply, apply with failures and retries, ``--atomic``, ``unlock``), with debug logs in both log
formats, once against the in-process ``emulator:`` and once over real HTTP against a served
emulator that accepts only the one token. Then everything printed and every byte written under the
test's directory is scanned. Nothing is excluded: the emulator's own persisted file is scanned too
(it keeps a SHA-256 of each secret, which is also how the test proves the secrets were really
sent).
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.cli import main
from reconciler.emulator import Faults, configure, hash_secret, open_emulator

SECRET_ENV = "ONBOARDING_WEBHOOK_SECRET"
SECRET = "s3cr3t-VALUE-8472"
ROTATED = "r0tated-VALUE-5519"
TOKEN = "tfp_T0KEN-leakcheck-3391"
FILE_SECRET = "f1le-secret-VALUE-6620"
NEEDLES = (SECRET, ROTATED, TOKEN, FILE_SECRET)


def write_manifests(root: Path, vault: Path) -> Path:
    """The manifests; the ``{file:}`` secret lives in ``vault``, outside the scanned tree."""
    manifests = root / "manifests"
    manifests.mkdir()
    secret_file = vault / "kyc.secret"
    secret_file.write_text(FILE_SECRET + "\n", encoding="utf-8")
    doc = {
        "apiVersion": "reconciler/v1",
        "kind": "WebhookSet",
        "metadata": {"name": "onboarding"},
        "spec": {
            "defaults": {"secret": {"env": SECRET_ENV}},
            "webhooks": [
                {"form_id": "onbrd01", "tag": "intake", "url": "https://hooks.example.com/i"},
                {"form_id": "onbrd02", "tag": "company", "url": "https://hooks.example.com/c"},
                {
                    "form_id": "kyc0001",
                    "tag": "review",
                    "url": "https://hooks.example.com/k",
                    "secret": {"file": str(secret_file)},
                },
                {"form_id": "onbrd01", "tag": "legacy-zapier", "state": "absent"},
            ],
        },
    }
    (manifests / "onboarding.yaml").write_text(yaml.safe_dump(doc, sort_keys=False), "utf-8")
    return manifests


class Session:
    """Runs ``reconcile`` in-process and keeps a transcript of everything it printed."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self._capsys = capsys
        self.transcript: list[str] = []

    def __call__(self, *argv: str) -> int:
        before = self._capsys.readouterr()
        self.transcript += [before.out, before.err]
        with pytest.raises(SystemExit) as exited:
            main(list(argv))
        out, err = self._capsys.readouterr()
        self.transcript += [out, err]
        code = exited.value.code
        assert isinstance(code, int)
        return code


def run_session(
    reconcile: Session,
    *,
    manifests: Path,
    api: list[str],
    set_faults: Callable[[dict[str, Any]], None],
    monkeypatch: pytest.MonkeyPatch,
    full: bool,
) -> None:
    """The commands that handle secrets and tokens, failing paths included.

    ``full`` adds what does not depend on the transport (formats, refusals, --atomic, unlock);
    each run costs a slow secret fingerprint or two, so the HTTP session runs the short list.
    """
    m = str(manifests)
    debug = ["--log-level", "debug"]
    json_logs = [*debug, "--log-format", "json"]
    if full:
        assert reconcile("validate", "--check-env", m) == 0
        assert reconcile("plan", m, *api, "--format", "json", *json_logs) == 0
        assert reconcile("plan", m, *api, "--format", "markdown") == 0
    assert reconcile("plan", m, *api, *debug) == 0
    assert reconcile("plan", m, *api, "--out", "plans/first.json", *debug) == 0
    assert reconcile("apply", m, *api, "--plan", "plans/first.json", *debug) == 0

    # Rotation with failures: one write rejected, one retried after a 503.
    monkeypatch.setenv(SECRET_ENV, ROTATED)
    set_faults(
        {
            "script": [
                {"method": "PUT", "path": "/forms/onbrd02/webhooks/*", "status": 400},
                {"method": "PUT", "path": "/forms/onbrd01/webhooks/*", "status": 503},
            ]
        }
    )
    assert reconcile("apply", m, *api, "--auto-approve", *json_logs) == 1
    assert reconcile("apply", m, *api, "--auto-approve", *debug) == 0
    if full:
        # A stale saved plan, a refused prompt, an --atomic run that reverts.
        monkeypatch.setenv(SECRET_ENV, SECRET)
        assert reconcile("plan", m, *api, "--out", "plans/second.json") == 0
        monkeypatch.setenv(SECRET_ENV, ROTATED)
        assert reconcile("apply", m, *api, "--plan", "plans/second.json", *debug) == 1
        monkeypatch.setenv(SECRET_ENV, SECRET)
        assert reconcile("apply", m, *api, *debug) == 1  # stdin is not a terminal
        set_faults(
            {"script": [{"method": "PUT", "path": "/forms/onbrd02/webhooks/*", "status": 400}]}
        )
        assert reconcile("apply", m, *api, "--auto-approve", "--atomic", *debug) == 1
        set_faults({})
        assert reconcile("apply", m, *api, "--auto-approve", "--prune", *debug) == 0
        assert reconcile("unlock", "--state", api[api.index("--state") + 1]) == 0
    assert reconcile("plan", m, *api, "--detailed-exitcode", *debug) == 0


def assert_nothing_leaked(reconcile: Session, root: Path) -> None:
    printed = "".join(reconcile.transcript)
    # The scan covers what matters: plans showing secrets, debug logs in both formats, errors.
    assert "(sensitive)" in printed
    assert "attempt 1/5: 200" in printed
    assert '"level": "debug"' in printed
    assert "FAILED" in printed
    for needle in NEEDLES:
        assert needle not in printed, f"{needle[:4]}… was printed"
    files = [p for p in root.rglob("*") if p.is_file()]
    # Every kind of file the session writes is there to be scanned.
    assert {"state.json", "records.jsonl", "first.json"} <= {p.name for p in files}
    for path in files:
        data = path.read_bytes()
        for needle in NEEDLES:
            assert needle.encode() not in data, f"{needle[:4]}… found in {path}"


@pytest.fixture
def vault(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A secrets directory outside the manifest tree, allowed as a container's /run/secrets is."""
    path = tmp_path_factory.mktemp("vault")
    monkeypatch.setenv("RECONCILE_SECRET_DIRS", str(path))
    return path


@pytest.fixture
def session(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Session:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RECONCILE_STATE", raising=False)
    monkeypatch.setenv(SECRET_ENV, SECRET)
    monkeypatch.setenv("TYPEFORM_TOKEN", TOKEN)
    monkeypatch.setattr(sys, "stdin", io.StringIO("yes\n"))
    return Session(capsys)


def test_no_secret_or_token_leaks_in_a_whole_session_against_the_embedded_emulator(
    session: Session,
    tmp_path: Path,
    vault: Path,
    emulator_path: Path,
    emulator_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TYPEFORM_API_URL", raising=False)
    manifests = write_manifests(tmp_path, vault)
    api = ["--api-url", emulator_url, "--state", "state/state.json", "--rate", "1000"]

    def set_faults(faults: dict[str, Any]) -> None:
        configure(emulator_path, faults=faults)

    run_session(
        session,
        manifests=manifests,
        api=api,
        set_faults=set_faults,
        monkeypatch=monkeypatch,
        full=True,
    )

    assert_nothing_leaked(session, tmp_path)
    assert (tmp_path / "plans" / "second.json").is_file()
    # The secrets did reach the API: the emulator file holds their digests, never the values.
    persisted = emulator_path.read_text(encoding="utf-8")
    assert hash_secret(SECRET) in persisted
    assert hash_secret(FILE_SECRET) in persisted
    hooks = open_emulator(emulator_url).store.webhooks
    assert hooks[("kyc0001", "review")].secret_sha256 == hash_secret(FILE_SECRET)


@pytest.mark.parametrize("secret_echo", ["none", "plain", "masked"])
def test_no_secret_or_token_leaks_in_a_whole_session_over_http(
    session: Session,
    tmp_path: Path,
    vault: Path,
    make_emulator: Any,
    monkeypatch: pytest.MonkeyPatch,
    secret_echo: str,
) -> None:
    # Only TOKEN is accepted: every successful run proves the token was sent. With a plain
    # echo every response carries the secrets: the tool must still print none of them.
    served = make_emulator(mode="served", token=TOKEN, rate=1000.0, secret_echo=secret_echo)
    monkeypatch.setenv("TYPEFORM_API_URL", served.base_url)
    manifests = write_manifests(tmp_path, vault)
    api = ["--state", "state/state.json", "--rate", "1000"]

    def set_faults(faults: dict[str, Any]) -> None:
        served.store.settings.faults = Faults.from_json(faults)

    run_session(
        session,
        manifests=manifests,
        api=api,
        set_faults=set_faults,
        monkeypatch=monkeypatch,
        full=False,
    )

    assert_nothing_leaked(session, tmp_path)
    assert served.store.webhooks[("onbrd01", "intake")].secret_sha256 == hash_secret(ROTATED)
    assert served.store.stats.to_json()  # requests were served
    if secret_echo != "plain":  # a plain-echo emulator keeps secrets to echo them
        dumped = repr(served.store.to_json())
        for needle in NEEDLES:
            assert needle not in dumped

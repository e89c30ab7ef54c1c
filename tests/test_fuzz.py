"""Fuzzing the three doors where outside data comes in: manifests, API answers, saved plans.

Each property feeds generated input (random shapes mixed with the real structure, so examples
reach deep into the validators instead of failing at the first key) and asserts the one promise
of that door:

* manifests: ``reconciler.manifests.check`` returns diagnostics and never raises; ``reconcile
  validate`` exits 0 or 1, never 3;
* API answers: ``TypeformClient.list_webhooks`` returns webhooks or raises a ``ReconcileError``
  subclass, never ``KeyError`` / ``TypeError`` / pydantic's ``ValidationError``;
* saved plans: ``plan_from_json`` returns a ``Plan`` or raises ``PlanError``, whatever was done
  to a real plan document.

Examples are few per property (the file runs in seconds) and ``deadline=None``: a slow example
on a loaded CI machine is not a bug.
"""

from __future__ import annotations

import copy
import json
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import yaml
from conftest import LEAK_NEEDLES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.cli import main
from reconciler.client import RetryPolicy, TypeformClient
from reconciler.emulator import configure
from reconciler.errors import PlanError, ReconcileError
from reconciler.manifests import check
from reconciler.models import Plan
from reconciler.planfile import plan_from_json

TOKEN = "tf-fuzz-token-9XkQ2mWv"
SECRET = "fuzz-s3cret-VALUE-1187"
SECRET_ENV = "FUZZ_WEBHOOK_SECRET"
LEAK_NEEDLES.update({TOKEN, SECRET})

FUZZ = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def _outcome(call: Callable[[], Any]) -> Any:
    """What ``call`` returned, or the exception it raised (any: the properties sort them)."""
    try:
        return call()
    except Exception as exc:
        return exc


# --------------------------------------------------------------------------- generic JSON

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.sampled_from(["", "onbrd01", "intake", "https://h.example/x", "\u202e\u0000", "🦄" * 3]),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*prefix, index))


def _replace(doc: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    parent = doc
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = new
    return doc


@st.composite
def mutated(draw: st.DrawFn, base: Any, *, max_mutations: int = 4) -> Any:
    """``base`` with a few random edits: a value replaced by another type, a key dropped or
    added, a node wrapped in a list or nested deep, a string made huge."""
    doc = copy.deepcopy(base)
    for _ in range(draw(st.integers(min_value=1, max_value=max_mutations))):
        paths = list(_paths(doc))
        path = draw(st.sampled_from(paths))
        target: Any = doc
        for step in path:
            target = target[step]
        edit = draw(st.sampled_from(["value", "drop", "add", "wrap", "nest", "huge", "type"]))
        if edit == "value":
            doc = _replace(doc, path, draw(json_values))
        elif edit == "drop" and path:
            parent: Any = doc
            for step in path[:-1]:
                parent = parent[step]
            del parent[path[-1]]
        elif edit == "add" and isinstance(target, dict):
            target[draw(st.text(max_size=10))] = draw(json_values)
        elif edit == "wrap":
            doc = _replace(doc, path, [target])
        elif edit == "nest":
            deep: Any = target
            for _ in range(draw(st.integers(min_value=5, max_value=300))):
                deep = {"x": deep}
            doc = _replace(doc, path, deep)
        elif edit == "huge":
            doc = _replace(doc, path, "A" * draw(st.sampled_from([1000, 70_000])))
        elif edit == "type":
            swapped = {dict: [], list: {}, str: 7, int: "7", bool: "true", type(None): 0}
            doc = _replace(doc, path, swapped.get(type(target)))
    return doc


# --------------------------------------------------------------------------- manifests

WEBHOOK_SET = {
    "apiVersion": "reconciler/v1",
    "kind": "WebhookSet",
    "metadata": {"name": "fuzz"},
    "spec": {
        "account": "default",
        "ownership": "declared",
        "defaults": {"enabled": True, "event_types": ["form_response"], "secret": {"env": "S_1"}},
        "webhooks": [
            {"form_id": "onbrd01", "tag": "intake", "url": "https://hooks.example.com/i"},
            {"form_id": "onbrd01", "tag": "old", "state": "absent"},
            {"forms": {"workspace_id": "ws1", "title": "On*"}, "tag": "t", "url": "https://h.x/"},
            {
                "form_id": "kyc0001",
                "tag": "kyc",
                "url": "https://hooks.example.com/k",
                "previous_tags": ["kyc-old"],
                "secret": {"file": "s.txt"},
            },
        ],
    },
}
ACCOUNT = {
    "apiVersion": "reconciler/v1",
    "kind": "Account",
    "metadata": {"name": "eu-clients"},
    "spec": {"api_url": "https://api.eu.typeform.com", "token": {"env": "TF_EU"}, "rate_limit": 2},
}

documents = st.one_of(mutated(WEBHOOK_SET), mutated(ACCOUNT), json_values)
yaml_noise = st.sampled_from(
    [
        "a: [unclosed\n",
        "\t- tab: indented\n",
        "x: &a [*a]\n",
        "- &a [1]\n- *a\n- *b\n",
        "!!python/object:os.system ls\n",
        "key: !custom tag\n",
        "%YAML 9.9\n---\nx: 1\n",
        "? complex\n: key\n",
        "x: 1\nx: 2\n",
        "\ufeffapiVersion: reconciler/v1\n",
        "---\n...\n---\n",
        "\x00\x01binary",
    ]
)


def _dump(docs: list[Any], noise: str | None) -> str:
    text = yaml.safe_dump_all(docs, sort_keys=False, allow_unicode=True) if docs else ""
    return text + (noise or "")


def _validate_tree(text: str) -> tuple[Any, Path, tempfile.TemporaryDirectory[str]]:
    tmp = tempfile.TemporaryDirectory(prefix="fuzz-manifests-")
    root = Path(tmp.name)
    (root / "m.yaml").write_text(text, encoding="utf-8", errors="surrogatepass")
    return check([root]), root, tmp


@FUZZ
@given(docs=st.lists(documents, max_size=3), noise=st.none() | yaml_noise)
def test_any_manifest_document_gives_diagnostics_and_never_raises(
    docs: list[Any], noise: str | None
) -> None:
    try:
        text = _dump(docs, noise)
    except (yaml.YAMLError, RecursionError):
        return  # not dumpable (too deep for PyYAML's emitter): nothing reaches the loader
    result, _root, tmp = _validate_tree(text)
    with tmp:
        assert isinstance(result.errors, list | tuple)


@settings(FUZZ, max_examples=30)
@given(docs=st.lists(documents, min_size=1, max_size=2), noise=st.none() | yaml_noise)
def test_reconcile_validate_on_any_manifest_exits_0_or_1_never_3(
    docs: list[Any], noise: str | None
) -> None:
    try:
        text = _dump(docs, noise)
    except (yaml.YAMLError, RecursionError):
        return
    with tempfile.TemporaryDirectory(prefix="fuzz-validate-") as tmp:
        (Path(tmp) / "m.yaml").write_text(text, encoding="utf-8", errors="surrogatepass")
        with pytest.raises(SystemExit) as exited:
            main(["validate", tmp])
    assert exited.value.code in (0, 1)


# --------------------------------------------------------------------------- API answers

WEBHOOK = {
    "id": "Wh1",
    "form_id": "onbrd01",
    "tag": "intake",
    "url": "https://hooks.example.com/i",
    "enabled": True,
    "verify_ssl": True,
    "event_types": {"form_response": True, "form_response_partial": False},
    "secret": "(masked)",
    "created_at": "2025-01-01T00:00:00Z",
    "updated_at": "2025-01-01T00:00:00Z",
}
listings = st.one_of(
    mutated({"items": [WEBHOOK, {**WEBHOOK, "id": "Wh2", "tag": "other"}]}, max_mutations=3),
    json_values,
)
answers = st.one_of(
    st.tuples(st.just(200), listings.map(lambda v: json.dumps(v).encode())),
    st.tuples(
        st.sampled_from([200, 204, 301, 400, 401, 404, 409, 418, 429, 500, 503]),
        st.one_of(
            st.binary(max_size=64),
            listings.map(lambda v: json.dumps(v).encode()),
            st.just(b'{"code": "X", "description": 5, "details": "no"}'),
        ),
    ),
)

RETRY_AFTERS = ["1", "-5", "nan", "1e400", "Wed, 21 Oct", "inf", "99999999999999999999"]


def _list_webhooks(status: int, body: bytes, headers: dict[str, str]) -> Any:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body, headers=headers)

    async def call() -> Any:
        async with TypeformClient(
            base_url="https://api.typeform.example",
            token=TOKEN,
            transport=httpx.MockTransport(handler),
            retry=RetryPolicy(max_attempts=1),
        ) as client:
            return await client.list_webhooks("onbrd01")

    return anyio.run(call)


@FUZZ
@given(
    answer=answers,
    retry_after=st.none()
    | st.sampled_from(["1", "-5", "nan", "1e400", "Wed, 21 Oct", "inf", "99999999999999999999"]),
    content_type=st.sampled_from(
        ["application/json", "text/html", "application/json; charset=latin-1"]
    ),
)
def test_any_webhook_listing_answer_is_webhooks_or_a_reconcile_error(
    answer: tuple[int, bytes], retry_after: str | None, content_type: str
) -> None:
    status, body = answer
    headers = {"content-type": content_type}
    if retry_after is not None:
        headers["retry-after"] = retry_after
    outcome = _outcome(lambda: _list_webhooks(status, body, headers))

    if isinstance(outcome, BaseException):
        assert isinstance(outcome, ReconcileError), repr(outcome)
        assert TOKEN not in str(outcome)
    else:
        assert isinstance(outcome, list)


# --------------------------------------------------------------------------- saved plans


@pytest.fixture(scope="module")
def real_plan_doc(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A plan saved by ``reconcile plan --out`` against the emulator: a create with a secret,
    an update, a delete and an unmanaged webhook, bound to its account and live forms."""
    root = tmp_path_factory.mktemp("fuzz-plan")
    emulator = root / "emu.json"
    configure(emulator, rate=1000.0, burst=1000)
    manifests = root / "manifests"
    manifests.mkdir()
    spec = {
        "defaults": {"secret": {"env": SECRET_ENV}},
        "webhooks": [
            {"form_id": "onbrd01", "tag": "intake", "url": "https://hooks.example.com/i"},
            {"form_id": "onbrd01", "tag": "legacy-zapier", "state": "absent"},
        ],
    }
    doc = {"apiVersion": "reconciler/v1", "kind": "WebhookSet", "metadata": {"name": "p"}}
    (manifests / "p.yaml").write_text(yaml.safe_dump({**doc, "spec": spec}), encoding="utf-8")
    out = root / "plan.json"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(SECRET_ENV, SECRET)
        patch.delenv("TYPEFORM_TOKEN", raising=False)
        with pytest.raises(SystemExit) as exited:
            main(
                [
                    "plan",
                    str(manifests),
                    "--api-url",
                    f"emulator:{emulator}",
                    "--state",
                    str(root / "state.json"),
                    "--out",
                    str(out),
                ]
            )
    assert exited.value.code == 0
    loaded: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    assert isinstance(plan_from_json(loaded), Plan)
    return loaded


@FUZZ
@given(data=st.data())
def test_any_edit_of_a_real_plan_document_is_a_plan_or_a_plan_error(
    real_plan_doc: dict[str, Any], data: st.DataObject
) -> None:
    doc = data.draw(mutated(real_plan_doc, max_mutations=5))
    outcome = _outcome(lambda: plan_from_json(doc))

    if isinstance(outcome, BaseException):
        assert isinstance(outcome, PlanError), repr(outcome)
        assert "\n" not in str(outcome)
    else:
        assert isinstance(outcome, Plan)


@settings(FUZZ, max_examples=60)
@given(doc=json_values)
def test_any_json_value_as_a_plan_is_a_plan_error(doc: Any) -> None:
    with pytest.raises(PlanError):
        plan_from_json(doc)

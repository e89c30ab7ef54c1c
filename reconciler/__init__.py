"""typeform-reconciler: Typeform webhooks as code.

Desired webhooks live in YAML manifests; ``plan`` diffs them against the live API and ``apply``
makes the API match. The CLI (``reconcile``) is a thin shell over the functions exported here::

    result = await reconciler.plan(["manifests/"], api_url="emulator:")
    result.to_json()          # the document of `reconcile plan --format json`

``reconciler.sync`` offers the same functions without ``await``; ``reconciler.pipeline`` the
pipeline itself, for a custom state store, endpoint resolver, clock or event sink.

Names load lazily, so ``import reconciler`` (and ``reconcile --help``) stays cheap.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# A library logs, it does not print: without the application's own logging set-up, nothing
# reaches stderr (the CLI configures handlers in reconciler.logs).
logging.getLogger(__name__).addHandler(logging.NullHandler())

if TYPE_CHECKING:
    from reconciler.api import apply, drift, load, plan
    from reconciler.drift_report import DriftReport
    from reconciler.models import Action, DesiredState, Operation, Plan, Reason, Target
    from reconciler.pipeline import ApplyResult, PlanResult, Run, Settings

_WHERE = {
    "apply": "api",
    "drift": "api",
    "DriftReport": "drift_report",
    "load": "api",
    "plan": "api",
    "Action": "models",
    "DesiredState": "models",
    "Operation": "models",
    "Plan": "models",
    "Reason": "models",
    "Target": "models",
    "ApplyResult": "pipeline",
    "PlanResult": "pipeline",
    "Run": "pipeline",
    "Settings": "pipeline",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        if name in ("sync", "pipeline", "api"):
            return importlib.import_module(f"{__name__}.{name}")
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "Action",
    "ApplyResult",
    "DesiredState",
    "DriftReport",
    "Operation",
    "Plan",
    "PlanResult",
    "Reason",
    "Run",
    "Settings",
    "Target",
    "__version__",
    "apply",
    "drift",
    "load",
    "plan",
]

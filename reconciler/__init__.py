"""typeform-reconciler: Typeform webhooks as code.

Desired webhooks live in YAML manifests; ``plan`` diffs them against the live API and ``apply``
makes the API match. The CLI (``reconcile``) is a thin layer over the functions exported here.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]

"""Field-level description of how two webhook essences differ.

The only user of deepdiff. The planner compares essences with ``==`` first and calls this only for
pairs that differ, so a plan over thousands of webhooks does not pay deepdiff's cost for each one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from deepdiff import DeepDiff

from reconciler.models import FieldChange

__all__ = ["MISSING", "field_changes"]

MISSING: Any = None
"""What a side shows for a field it does not have."""

_PATH_PART = re.compile(r"\[(?:'((?:[^'\\]|\\.)*)'|(\d+))\]")


def _field_name(path: str) -> str:
    """``root['event_types']['form_response']`` -> ``event_types.form_response``."""
    parts = [quoted if quoted else index for quoted, index in _PATH_PART.findall(path)]
    return ".".join(parts) if parts else path


def _lookup(obj: Mapping[str, Any], field: str) -> Any:
    value: Any = obj
    for part in field.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return MISSING
        value = value[part]
    return value


def field_changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> tuple[FieldChange, ...]:
    """Every leaf field that differs, sorted by field name, with its value on each side."""
    if before == after:
        return ()
    tree = DeepDiff(dict(before), dict(after), view="tree", ignore_order=False)
    fields = {_field_name(str(level.path())) for levels in tree.values() for level in levels}
    return tuple(
        FieldChange(field=name, before=_lookup(before, name), after=_lookup(after, name))
        for name in sorted(fields)
    )

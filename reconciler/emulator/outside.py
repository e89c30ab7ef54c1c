"""``python -m reconciler.emulator.outside PATH ADDRESS FIELD=VALUE...``: change a webhook of the
persisted emulator at ``PATH`` as someone outside the tool would (Typeform's UI, or Typeform
disabling a webhook whose receiver answered 404/410). ``make demo`` uses it to show drift.

It goes through the control API (``POST /_emulator/webhooks/{form_id}/{tag}``) of the in-process
emulator; values are JSON (``enabled=false``, ``url='"https://..."'``) or plain strings.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

import anyio

from reconciler.emulator.transport import open_emulator


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


async def change(path: str, address: str, fields: dict[str, Any]) -> tuple[int, str]:
    form_id, _, tag = address.partition("/")
    emulated = open_emulator(f"emulator:{path}")
    async with emulated.client() as client:
        response = await client.post(f"/_emulator/webhooks/{form_id}/{tag}", json=fields)
    return response.status_code, response.text


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 3 or any("=" not in a for a in args[2:]):
        print(__doc__, file=sys.stderr)
        return 1
    fields = {k: _value(v) for k, _, v in (a.partition("=") for a in args[2:])}
    status, text = anyio.run(change, args[0], args[1], fields)
    if status != 200:
        print(f"error: {text}", file=sys.stderr)
        return 1
    shown = ", ".join(f"{k}={json.dumps(v)}" for k, v in fields.items())
    print(f"changed {args[1]} outside the tool: {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

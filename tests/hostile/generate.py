"""Writes the text cases of the hostile-input corpus (run from anywhere; output is committed).

Cases that cannot be committed (FIFOs, devices, symlink loops, an 11 MB file, unreadable
directories) are made by fixtures in ``tests/test_manifests_hostile.py``.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
SET = (
    "apiVersion: reconciler/v1\nkind: WebhookSet\nmetadata: {name: %s}\nspec:\n"
    "  webhooks:\n    - form_id: f1\n      tag: t1\n      url: https://hooks.example.com/x\n"
)


def alias_bomb(docs: int, levels: int, width: int) -> str:
    """``docs`` documents, each expanding ``width ** levels`` nodes: small each, huge in all."""
    out = []
    for d in range(docs):
        lines = [f"a0: &a0 [{', '.join(['x'] * width)}]"]
        for i in range(1, levels):
            lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]")
        out.append(f"# document {d}\n" + "\n".join(lines) + "\n")
    return "---\n".join(out)


def main() -> None:
    # 200 documents of ~1,555 nodes: under any per-document budget, 311,000 in the file.
    (HERE / "alias_bomb_per_file.yaml").write_text(alias_bomb(200, 4, 6))
    # The reviewer's case: 200 documents of 5 alias levels (111,111 nodes each), 69 KB.
    (HERE / "alias_bomb_5_levels.yaml").write_text(alias_bomb(200, 5, 10))
    (HERE / "nesting_1000_flow.yaml").write_text("[" * 1000 + "]" * 1000 + "\n")
    (HERE / "nesting_500_flow.yaml").write_text("{a: " * 500 + "x" + "}" * 500 + "\n")
    (HERE / "nesting_100_block.yaml").write_text(
        "".join("  " * i + f"k{i}:\n" for i in range(100)) + "  " * 100 + "leaf\n"
    )


if __name__ == "__main__":
    main()

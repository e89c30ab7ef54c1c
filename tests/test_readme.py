"""The README's Python API example runs as written, from a fresh directory, with no token."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_readme_python_api_example_runs(tmp_path: Path) -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Python API", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    shutil.copytree(REPO / "manifests", tmp_path / "manifests")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TYPEFORM_")}
    env["ONBOARDING_WEBHOOK_SECRET"] = "readme-example-secret"

    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )

    assert done.returncode == 0, done.stderr
    assert "writes planned" in done.stdout
    assert "state serial:" in done.stdout
    assert "readme-example-secret" not in done.stdout + done.stderr

"""The import contracts of ``make lint`` (import-linter, configured in pyproject.toml) hold, and bite.

The project itself must keep every contract. To show the check is not vacuous, the same
contracts are run over a tiny tree with the project's five top-level packages, first clean, then
with one deliberate violation each: a cycle hidden in a function, an upward import, analytics
importing exporters, and the simulator imported from outside the demo/eval verbs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("collector", "analytics", "exporters", "hciwatch", "lab")


def lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    code = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    return subprocess.run(
        [sys.executable, "-c", code, "--no-cache", str(cwd / "pyproject.toml")],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_project_keeps_its_import_contracts() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "BROKEN" not in result.stdout and "4 kept, 0 broken" in result.stdout


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text(encoding="utf-8"), encoding="utf-8")
    base = {f"{p}/__init__.py": "" for p in PACKAGES}
    base.update(
        {
            "collector/schema.py": "X = 1\n",
            "collector/rows.py": "from collector.schema import X\n",
            "analytics/engine.py": "from collector.schema import X\n",
            "exporters/otlp.py": "from collector.rows import X\n",
            "lab/world.py": "from collector.schema import X\n",
            "hciwatch/demo.py": "import lab.world\nimport analytics.engine\nimport exporters.otlp\n",
            "hciwatch/evaluate.py": "import lab.world\n",
            "hciwatch/cli.py": "import hciwatch.demo\nimport hciwatch.evaluate\n",
        }
    )
    base.update(files)
    for rel, text in base.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return tmp_path


def test_a_clean_tree_passes(tmp_path: Path) -> None:
    result = lint_imports(_tree(tmp_path, {}))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("files", "broken"),
    [
        (
            {"collector/schema.py": "X = 1\n\ndef later():\n    from collector import rows\n    return rows\n"},
            "no import cycles between sibling modules of any package",
        ),
        ({"collector/rows.py": "import exporters.otlp\nX = 1\n"}, "layers: hciwatch above lab"),
        ({"analytics/engine.py": "import exporters.otlp\n"}, "analytics and exporters do not know each other"),
        ({"hciwatch/api.py": "import lab.world\n"}, "the simulator is used only by the demo and eval verbs"),
    ],
    ids=["cycle-in-a-function", "upward-import", "analytics-imports-exporters", "lab-outside-demo"],
)
def test_a_deliberate_violation_fails_the_check(tmp_path: Path, files: dict[str, str], broken: str) -> None:
    result = lint_imports(_tree(tmp_path, files))
    assert result.returncode != 0
    broken_lines = [line for line in result.stdout.splitlines() if line.endswith("BROKEN")]
    assert any(line.startswith(broken) for line in broken_lines), result.stdout

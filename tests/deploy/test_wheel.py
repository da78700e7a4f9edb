"""The wheel a user builds installs into a clean venv and runs (no checkout on the path).

Dependencies are not downloaded (the test stays bounded and offline): the clean venv gets the
wheel with ``--no-deps`` and a ``.pth`` line to the test environment's site-packages for the
third-party libraries only, so everything hciwatch itself needs — its modules, the web assets,
the sample config, the console script, the licence — must come from the wheel.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.integration
def test_wheel_installs_into_a_clean_venv_and_runs(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    for pkg in ("collector", "analytics", "exporters", "hciwatch", "lab"):
        shutil.copytree(ROOT / pkg, src / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp_path / "dist"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(src)],
        check=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    (wheel,) = dist.glob("hciwatch-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "hciwatch/web/live.html" in names and "hciwatch/sample_config.toml" in names
    assert any(n.endswith((".dist-info/licenses/LICENSE", ".dist-info/LICENSE")) for n in names)
    assert not any(n.startswith("tests/") for n in names)

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    subprocess.run(
        [str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True, timeout=300, env=env
    )
    site = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    ).stdout.strip()
    (Path(site) / "zz_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # third-party libraries only

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(venv / "bin" / "hciwatch"), *args], capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path
        )

    version = run("--version")
    assert version.returncode == 0 and version.stdout.startswith("hciwatch 0."), version.stderr
    sample = run("sample-config")
    assert sample.returncode == 0 and "[[networks]]" in sample.stdout
    where = subprocess.run(
        [
            str(py),
            "-c",
            "import hciwatch, importlib.resources as r; print(hciwatch.__file__); "
            "print(r.files('hciwatch').joinpath('web/live.html').is_file())",
        ],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    ).stdout.split()
    assert where[0].startswith(str(venv)) and where[1] == "True"
    bad = run("check-config", "--config", str(tmp_path / "missing.toml"))
    assert bad.returncode == 2 and "cannot read config" in bad.stderr and "Traceback" not in bad.stderr

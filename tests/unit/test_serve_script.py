"""scripts/serve, the quick start, installs Dockyard into the project's own virtual environment
(.venv, made when missing) and never into the Python it finds, even one where pip may install.

The script runs for real in a copy of its project whose pyproject.toml describes a stand-in
`dockyard` package (installable offline) whose command reports the environment it runs from."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]

# Offline and without the `wheel` package, an editable install takes setuptools' legacy path,
# which wants a setup.py and a pyproject.toml naming no build backend.
PYPROJECT = """\
[project]
name = "dockyard"
version = "0.0.0"
"""
SETUP = """\
from setuptools import setup

setup(
    name="dockyard",
    version="0.0.0",
    py_modules=["dockyard"],
    entry_points={"console_scripts": ["dockyard=dockyard:main"]},
)
"""

STAND_IN = """\
import json, sys

def main() -> None:
    print(json.dumps({"prefix": sys.prefix, "args": sys.argv[1:]}))
"""


def _project_copy(root: Path) -> Path:
    project = root / "project"
    (project / "scripts").mkdir(parents=True)
    for script in ("serve", "python-env.sh"):
        shutil.copy2(PROJECT / "scripts" / script, project / "scripts" / script)
    (project / "pyproject.toml").write_text(PYPROJECT)
    (project / "setup.py").write_text(SETUP)
    (project / "dockyard.py").write_text(STAND_IN)
    return project


def _run_serve(project: Path, python: Path, home: Path) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": f"{python.parent}:/usr/bin:/bin",
        "HOME": str(home),
        "PYTHON": str(python),
        # Offline: the stand-in installs with the setuptools the new environment already has.
        "PIP_NO_INDEX": "1",
        "PIP_USE_PEP517": "0",
    }
    return subprocess.run(
        [str(project / "scripts" / "serve"), "--port", "5001"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _installed(python: Path) -> bool:
    found = subprocess.run(
        [str(python), "-c", "import importlib.util, sys; sys.exit(importlib.util.find_spec('dockyard') is None)"],
        cwd="/",
        env={"PATH": "/usr/bin:/bin", "PYTHONNOUSERSITE": "0"},
        capture_output=True,
    )
    return found.returncode == 0


def test_serve_installs_into_the_project_venv_not_the_python_it_finds(tmp_path: Path) -> None:
    # The user's Python: one where pip may install (not marked externally managed).
    subprocess.run([sys.executable, "-m", "venv", str(tmp_path / "user-python")], check=True, timeout=300)
    user_python = tmp_path / "user-python" / "bin" / "python"
    project = _project_copy(tmp_path)
    home = tmp_path / "home"
    home.mkdir()

    for _ in range(2):  # the second start reuses .venv and what is installed there
        done = _run_serve(project, user_python, home)
        assert done.returncode == 0, done.stderr
        ran = json.loads(done.stdout.strip().splitlines()[-1])
        assert Path(ran["prefix"]) == project / ".venv"
        assert ran["args"] == ["serve", "--port", "5001"]

    assert (project / ".venv" / "bin" / "dockyard").exists()
    assert not _installed(user_python)
    assert not (home / ".local").exists()

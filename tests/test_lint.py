"""The tree stays clean: pyproject's ruff and mypy rules hold, no shell warnings."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_python_passes_the_projects_ruff_rules():
    """pyproject's [tool.ruff] selection: pyflakes, syntax, import order, bugbear."""
    ruff = Path(sys.executable).with_name("ruff")
    assert ruff.exists(), "ruff is a test dependency: pip install -e '.[test]'"
    done = subprocess.run([str(ruff), "check", "--output-format", "concise",
                           "hpcwizard", "tests", "benchmarks", "screenshots"],
                          cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_hpcwizard_passes_mypy_for_the_oldest_python():
    """pyproject's [tool.mypy]: the package type-checks as Python 3.9 code, so
    3.10-only typing (typing.Self, `X | Y` evaluated at run time, zip(strict=))
    fails here rather than on a login node's python3."""
    mypy = Path(sys.executable).with_name("mypy")
    assert mypy.exists(), "mypy is a test dependency: pip install -e '.[test]'"
    done = subprocess.run([str(mypy)], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_project_shell_scripts_pass_shellcheck():
    assert shutil.which("shellcheck"), "shellcheck is installed by scripts/bootstrap"
    scripts = [p for p in (REPO / "scripts").iterdir() if p.is_file() and p.read_text().startswith("#!/usr/bin/env bash")]
    scripts.append(REPO / ".ci" / "run")
    assert len(scripts) >= 5
    done = subprocess.run(["shellcheck", "-S", "warning", *map(str, scripts)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr

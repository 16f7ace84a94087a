"""The installed package: entry point, version, shipped templates."""

from __future__ import annotations

import subprocess
import sys

from hpcwizard import __version__


def test_version_and_help_from_the_console_script():
    out = subprocess.run([sys.executable, "-m", "hpcwizard", "--version"], capture_output=True, text=True)
    assert out.returncode == 0
    assert out.stdout.strip() == f"hpcwizard {__version__}"
    helped = subprocess.run([sys.executable, "-m", "hpcwizard", "--help"], capture_output=True, text=True)
    assert helped.returncode == 0
    assert "usage: hpcwizard" in helped.stdout

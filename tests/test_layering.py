"""The layering rule, enforced: the core never imports Textual.

Only ``hpcwizard.tui`` (and the ``__main__`` entry points, which run the app)
may. The CLI, the checks, the jobs and the project code must import on a
machine where Textual cannot be imported, so that they stay usable (and
testable) without a terminal UI. Checked in a fresh interpreter, where a
meta-path finder refuses ``textual`` and everything under it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "hpcwizard"

# Runs in the fresh interpreter: blocks Textual, imports each module given on
# stdin, prints {module: error} for those that failed and whether any module
# got Textual in anyway.
_IMPORT_ALL = r"""
import importlib, json, sys

class NoTextual:
    def find_spec(self, name, path=None, target=None):
        if name == "textual" or name.startswith("textual."):
            raise ImportError(f"textual is blocked here ({name})")
        return None

sys.meta_path.insert(0, NoTextual())
try:
    import textual  # noqa: F401
    blocked = False
except ImportError:
    blocked = True
failed = {}
for name in sys.stdin.read().split():
    try:
        importlib.import_module(name)
    except Exception as exc:
        failed[name] = f"{type(exc).__name__}: {exc}"
loaded = sorted(m for m in sys.modules if m == "textual" or m.startswith("textual."))
print(json.dumps({"blocked": blocked, "failed": failed, "textual_loaded": loaded}))
"""


def package_modules() -> list[str]:
    """Every importable module of the package but the ``__main__`` entry
    points, from the tree (importing packages to walk them would import all)."""
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        folders = path.parent.relative_to(REPO).parts
        # Only files inside packages (the demo's code_base is data, run as scripts on the cluster).
        if not all((REPO.joinpath(*folders[: i + 1]) / "__init__.py").exists() for i in range(len(folders))):
            continue
        if parts[-1] != "__main__":
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def core_modules() -> list[str]:
    """The modules outside ``hpcwizard.tui``."""
    return [name for name in package_modules() if not name.startswith("hpcwizard.tui")]


def test_every_module_outside_the_tui_imports_without_textual():
    modules = core_modules()
    # The walk found the package, not a stray folder: the layers are all there.
    for expected in ("hpcwizard.cli", "hpcwizard.checks.preflight", "hpcwizard.jobs.submit",
                     "hpcwizard.project.plan", "hpcwizard.remote.connection", "hpcwizard.slurm.client"):
        assert expected in modules
    assert not any(name.startswith("hpcwizard.tui") for name in modules)
    done = subprocess.run([sys.executable, "-c", _IMPORT_ALL], input="\n".join(modules), cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["blocked"], "the finder did not block textual: the check would prove nothing"
    assert result["failed"] == {}, "\n".join(f"{name}: {error}" for name, error in result["failed"].items())
    assert result["textual_loaded"] == []


def test_the_tui_is_what_needs_textual():
    """The other side of the rule, so the block above is known to bite: the
    app module does not import without Textual."""
    done = subprocess.run([sys.executable, "-c", _IMPORT_ALL], input="hpcwizard.tui.app", cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    failed = json.loads(done.stdout)["failed"]
    assert list(failed) == ["hpcwizard.tui.app"]
    assert "textual is blocked here" in failed["hpcwizard.tui.app"]

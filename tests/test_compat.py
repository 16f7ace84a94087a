"""hpcwizard runs on every Python it claims (3.9, the stock python3 of
RHEL/Rocky 9 login nodes, to 3.13): scripts/test runs this file, with the rest
of the core suite, on 3.9 and 3.13 too."""

from __future__ import annotations

import ast
import re
import socket
import subprocess
import sys
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python < 3.11: pytest's own dependency
    import tomli as tomllib

from test_layering import package_modules

REPO = Path(__file__).resolve().parent.parent


def test_a_host_command_reaches_the_login_node_on_this_python(tmp_path):
    """Remote mode imports the SSH side (hpcwizard.remote) only for --host.
    `from typing import Self` (3.11+) there once made every --host command an
    ImportError traceback on 3.10; on this interpreter it must get as far as
    connecting: a port with nobody listening is one line, exit status 2."""
    with socket.socket() as bound:  # bound, never listening: the kernel refuses connections to it
        bound.bind(("127.0.0.1", 0))
        port = bound.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "hpcwizard", "status", "--once", "--project-home", "/srv/proj",
                               "--host", f"root@127.0.0.1:{port}", "--ssh-config", "/dev/null"],
                              capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60, cwd=tmp_path)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip() == (f"hpcwizard: 127.0.0.1 port {port} refused the connection; "
                                   "check the host and port (is sshd running there?)")
    assert done.returncode == 2


def test_every_module_imports_on_this_python():
    """The TUI's screens too, which the wizard imports only when it reaches
    them: a base class like ``ModalScreen[str | None]`` is evaluated at import
    and is a TypeError on 3.9, where no test of the core suite would load it."""
    modules = package_modules()
    assert "hpcwizard.tui.app" in modules and "hpcwizard.tui.widgets.confirm" in modules
    script = ("import importlib, sys\n"
              "for name in sys.stdin.read().split():\n"
              "    try:\n"
              "        importlib.import_module(name)\n"
              "    except Exception as exc:\n"
              "        print(f'{name}: {type(exc).__name__}: {exc}')\n")
    done = subprocess.run([sys.executable, "-c", script], input="\n".join(modules), cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "", done.stdout


def test_the_oldest_python_is_the_same_everywhere():
    """requires-python, the type check, the linter and the runs of scripts/test
    name the same oldest Python, so a 3.10-only construct is caught before a
    user on 3.9 meets it."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    oldest = re.fullmatch(r">=(3\.\d+)", pyproject["project"]["requires-python"])
    assert oldest, pyproject["project"]["requires-python"]
    version = oldest.group(1)
    assert pyproject["tool"]["mypy"]["python_version"] == version
    assert pyproject["tool"]["ruff"]["target-version"] == "py" + version.replace(".", "")
    test_script = (REPO / "scripts" / "test").read_text()
    others = re.search(r"^OTHER_PYTHONS=\$\{HPCWIZARD_TEST_PYTHONS-(.*)\}$", test_script, re.MULTILINE)
    assert others and others.group(1).split()[0] == version
    # Its venv installs pinned versions: no resolver walk over releases it cannot run.
    assert (REPO / "scripts" / f"constraints-py{version}.txt").exists()


def _names(node: ast.expr | None) -> set[str]:
    """The exception names an ``except`` clause catches, dotted (``socket.timeout``)."""
    if node is None:
        return set()
    items = node.elts if isinstance(node, ast.Tuple) else [node]
    return {ast.unparse(item) for item in items}


def test_a_socket_timeout_is_caught_as_such_on_3_9():
    """On Python 3.9 ``socket.timeout`` is an OSError but not a TimeoutError
    (3.10 made them one class). An SFTP call that timed out on a RHEL 9 login
    node's python once fell through ``except TimeoutError`` into the
    reconnect-and-retry path, and a test's server thread ended at its first
    accept timeout. So every clause that catches TimeoutError also names
    socket.timeout (an asyncio or futures timeout is its own class)."""
    missing = []
    for path in sorted([*(REPO / "hpcwizard").rglob("*.py"), *(REPO / "tests").rglob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ExceptHandler):
                names = _names(node.type)
                if "TimeoutError" in names and "socket.timeout" not in names:
                    missing.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert missing == [], "except TimeoutError without socket.timeout: " + ", ".join(missing)

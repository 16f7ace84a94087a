"""A light start: what the first screen imports (functional; the timings are in
benchmarks/bench_startup.py).

Login-node venvs live on Lustre or GPFS, where every imported module costs
metadata round trips: the welcome step must not pull in the hub client, SSH,
Jinja, psutil or the later steps' screens. Each check runs in a fresh
interpreter, so nothing another test imported hides a regression.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

from hpcwizard.project.wizard_steps import STEPS, WELCOME
from hpcwizard.tui.screens.wizard import DASHBOARD_MODULE

# Imported when first needed (a hub call, an SSH connection, a render, a
# folder measured), never by merely showing a screen.
HEAVY = ("huggingface_hub", "httpx", "httpx2", "paramiko", "jinja2", "psutil")
LATER_SCREENS = sorted(step.screen_module for step in STEPS if step is not WELCOME) + [DASHBOARD_MODULE]

# The CLI's own path to the wizard (`hpcwizard --project-home DIR`: parse,
# build_tui, which takes the project lock and settles an interrupted submit),
# then the app headless until the welcome step has read the project's session.
WELCOME = textwrap.dedent("""
    import asyncio, json, sys, time
    from hpcwizard.cli import build_parser, build_tui

    async def main():
        app = build_tui(build_parser().parse_args(["--project-home", sys.argv[1]]), "wizard")
        async with app.run_test(size=(100, 30)) as pilot:
            deadline = time.monotonic() + 60
            while getattr(app.screen, "STEP", None) != "welcome" or app.screen.saved is None:
                if time.monotonic() > deadline:
                    raise SystemExit(f"no welcome step with its session after 60 s (on {app.screen!r})")
                await pilot.pause(0.05)
            print(json.dumps({"screen": type(app.screen).__name__, "modules": sorted(sys.modules)}))

    asyncio.run(main())
""")


def run_python(code: str, *args: str, home: Path) -> dict:
    env = {**os.environ, "HF_HOME": str(home / "hf"), "TEXTUAL_ANIMATIONS": "none"}
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def loaded(modules: list[str], package: str) -> list[str]:
    return [name for name in modules if name == package or name.startswith(package + ".")]


def test_the_welcome_step_shows_without_the_heavy_packages_or_later_screens(tmp_path):
    home = tmp_path / "project"
    home.mkdir()
    seen = run_python(WELCOME, str(home), home=tmp_path)
    modules = seen["modules"]
    assert seen["screen"] == "WelcomeStep"
    assert "hpcwizard.tui.screens.welcome" in modules
    for package in HEAVY:
        assert not loaded(modules, package), f"{package} imported by the time the welcome step shows"
    assert [name for name in LATER_SCREENS if name in modules] == []


def test_a_new_project_s_welcome_step_needs_no_yaml_recipes_or_slurm_client(tmp_path):
    # With no saved plan and no interrupted submit there is nothing to parse
    # or settle: PyYAML, the recipes and the Slurm client are for later steps.
    home = tmp_path / "project"
    home.mkdir()
    modules = run_python(WELCOME, str(home), home=tmp_path)["modules"]
    for package in ("yaml", "hpcwizard.project.recipe", "hpcwizard.slurm", "hpcwizard.jobs.journal"):
        assert not loaded(modules, package), f"{package} imported by the time the welcome step shows"


def test_showing_any_screen_imports_no_heavy_package(tmp_path):
    # Each step's screen imports what it needs when it calls it (a hub check
    # in a worker, a render, a measured folder), not when it is shown.
    code = "import importlib, json, sys\n" + "".join(
        f"importlib.import_module({name!r})\n" for name in LATER_SCREENS
    ) + "print(json.dumps({'modules': sorted(sys.modules)}))\n"
    modules = run_python(code, home=tmp_path)["modules"]
    assert set(LATER_SCREENS) <= set(modules)
    for package in HEAVY:
        assert not loaded(modules, package), f"{package} imported by importing the screens"


# `hpcwizard --host HOST --project-home DIR` as the CLI builds it, headless.
# The app and its connect screen start without paramiko; the connect screen's
# worker imports it when it connects (here to a closed port: it fails at once
# and the screen shows the failure, so the worker did run). An import hook
# notes which thread imported paramiko first.
REMOTE = textwrap.dedent("""
    import asyncio, json, sys, threading, time

    class FirstImport:
        thread = None  # the thread that first imported paramiko

        def find_spec(self, name, path=None, target=None):
            if name == "paramiko" and FirstImport.thread is None:
                FirstImport.thread = threading.current_thread().name
            return None

    sys.meta_path.insert(0, FirstImport())
    from hpcwizard.cli import build_parser, build_tui
    from hpcwizard.tui.screens.connect import ConnectScreen

    async def main():
        args = build_parser().parse_args(["--project-home", "/srv/project", "--host", sys.argv[1],
                                          "--ssh-config", "/dev/null"])
        app = build_tui(args, "wizard")
        before_run = sorted(sys.modules)
        async with app.run_test(size=(100, 30)) as pilot:
            deadline = time.monotonic() + 60
            while not (isinstance(app.screen, ConnectScreen) and app.screen.failure is not None):
                if time.monotonic() > deadline:
                    raise SystemExit(f"no connect failure after 60 s (on {app.screen!r})")
                await pilot.pause(0.05)
            failure = app.screen.failure.one_line()
        print(json.dumps({"before_run": before_run, "thread": FirstImport.thread, "failure": failure,
                          "main": threading.main_thread().name}))

    asyncio.run(main())
""")


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # free once closed: nothing listens there


def test_remote_mode_loads_paramiko_only_in_the_connect_worker(tmp_path):
    seen = run_python(REMOTE, f"127.0.0.1:{closed_port()}", home=tmp_path)
    # Built and ready to run (the connect screen is its first screen): no SSH library yet.
    assert not loaded(seen["before_run"], "paramiko")
    assert "hpcwizard.remote.connection" not in seen["before_run"]
    # Connecting imported it, in the connect screen's worker thread.
    assert seen["thread"] is not None, "connecting never imported paramiko"
    assert seen["thread"] != seen["main"]
    assert "127.0.0.1" in seen["failure"]

"""The training's Python sees the environment hpcwizard built, not what the
user's shell or home adds: a stale ``pip install --user`` under ~/.local or an
exported PYTHONPATH (sbatch passes the submitting shell's environment on)."""

from __future__ import annotations

import re
import subprocess
import sys
import venv
from pathlib import Path

from hpcwizard.prepare.steps import command_env
from hpcwizard.project.recipe import get_recipe


def _activate_env_function(tmp_path: Path) -> str:
    plan = get_recipe("demo").default_plan(tmp_path / "proj", tmp_path / "data", hf_namespace="alice")
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text(plan.to_yaml())
    rendered = subprocess.run([sys.executable, "-m", "hpcwizard", "render", str(plan_file), "--out", str(tmp_path / "out")],
                              capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert rendered.returncode == 0, rendered.stderr
    script = (tmp_path / "out" / "02_train.sbatch").read_text()
    match = re.search(r"^activate_env\(\) \{\n.*?^\}\n", script, re.MULTILINE | re.DOTALL)
    assert match, "the train script defines activate_env"
    return match.group(0)


def test_the_training_python_ignores_the_users_site_packages_and_pythonpath(tmp_path):
    env_dir = tmp_path / "env"
    venv.create(env_dir, with_pip=False)
    (env_dir / ".hpcwizard-env-ready").write_text("{}\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "shadow.py").write_text("print('shadowed')\n")
    probe = ("import os, sys; print(os.environ.get('PYTHONPATH', '-')); print(sys.flags.no_user_site); "
             "print(sys.prefix)")
    program = ("log() { printf '[log] %s\\n' \"$*\"; }\ndie() { log \"ERROR: $*\"; exit 1; }\nset -euo pipefail\n"
               + _activate_env_function(tmp_path)
               + 'activate_env "$1"\npython -c "$2"\n')
    result = subprocess.run(["bash", "-c", program, "bash", str(env_dir), probe], capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(elsewhere),
                                 "PYTHONHOME": "/nonexistent"}, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert f"[log] PYTHONPATH of the submitting shell unset for the training: {elsewhere}" in lines
    assert lines[-3:] == ["-", "1", str(env_dir)], result.stdout


def test_pip_and_conda_builds_ignore_the_users_site_packages(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_never_passed_on")
    env = command_env()
    assert env["PYTHONNOUSERSITE"] == "1" and "HF_TOKEN" not in env
    # The python a build runs honours it: ~/.local is not on its path.
    probe = subprocess.run([sys.executable, "-c", "import sys; print(sys.flags.no_user_site)"], env=env,
                           capture_output=True, text=True, timeout=60)
    assert probe.stdout.strip() == "1"

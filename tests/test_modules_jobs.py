"""The plan's environment modules in real jobs on the local cluster, with the
real Environment Modules (scripts/bootstrap installs it) and modulefiles
written here: every job loads them first, and one that does not load ends the
job at once with one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hpcwizard.demo import build_demo_hub, write_token_file
from hpcwizard.devhub import DevHub
from hpcwizard.project.recipe import get_recipe
from hpcwizard.slurm import JobState, SlurmClient
from test_demo_chain import wait_for_states
from test_modules import MODULEFILE

TOKEN = "hf_modules_canary_0001"


def _modulepath(tmp_path: Path) -> Path:
    root = tmp_path / "modulefiles"
    (root / "toolchain").mkdir(parents=True)
    bin_dir = tmp_path / "toolchain-1.0" / "bin"
    bin_dir.mkdir(parents=True)
    (root / "toolchain" / "1.0").write_text(MODULEFILE.format(bin=bin_dir, version="1.0"))
    return root


def _plan_file(tmp_path: Path, modules: list[str]) -> tuple[Path, Path]:
    home = tmp_path / "proj"
    data = get_recipe("demo").default_plan(home, tmp_path / "data", hf_namespace="alice").to_dict()
    data["modules"] = modules
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text(yaml.safe_dump(data))
    return plan_file, home


def _env(tmp_path: Path, slurm_conf: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
    env.update(HF_HOME=str(tmp_path / "hf-home"), SLURM_CONF=slurm_conf, MODULEPATH=str(_modulepath(tmp_path)), **extra)
    return env


def test_every_job_loads_the_plans_modules_first(tmp_path, slurm_conf, slurm_runner):
    build_demo_hub(tmp_path / "hub", user="alice", token=TOKEN)
    write_token_file(tmp_path / "hf-home", TOKEN)
    plan_file, home = _plan_file(tmp_path, ["toolchain/1.0"])
    with DevHub(tmp_path / "hub") as hub:
        env = _env(tmp_path, slurm_conf, HF_ENDPOINT=hub.url)
        submitted = subprocess.run([sys.executable, "-m", "hpcwizard", "submit", str(plan_file), "--json"], env=env,
                                   capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        assert submitted.returncode == 0, submitted.stderr
        ids = [job["id"] for job in json.loads(submitted.stdout)["jobs"]]
        slurm = SlurmClient(slurm_runner)
        try:
            states = wait_for_states(slurm, ids, timeout=240)
        finally:
            slurm.cancel(ids)
    logs = {p.name: p.read_text(errors="replace") for p in (home / "logs").glob("*.out")}
    assert [states[i] for i in ids] == [JobState.COMPLETED, JobState.COMPLETED], logs
    for job_id in ids:
        [text] = [t for name, t in logs.items() if name.endswith(f"-{job_id}.out")]
        assert "loading modules: toolchain/1.0" in text and "modules loaded: toolchain/1.0" in text, text


def test_a_module_that_does_not_load_ends_the_job_at_once_with_one_line(tmp_path, slurm_conf, slurm_runner):
    plan_file, home = _plan_file(tmp_path, ["toolchain/1.0", "nosuch/9"])
    env = _env(tmp_path, slurm_conf)
    out = tmp_path / "scripts"
    rendered = subprocess.run([sys.executable, "-m", "hpcwizard", "render", str(plan_file), "--out", str(out)],
                              env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert rendered.returncode == 0, rendered.stderr
    sbatch = subprocess.run(["sbatch", "--parsable", str(out / "01_setup.sbatch")], env=env, cwd=home,
                            capture_output=True, text=True, timeout=60)
    assert sbatch.returncode == 0, sbatch.stderr
    job_id = sbatch.stdout.strip().split(";")[0]
    slurm = SlurmClient(slurm_runner)
    try:
        states = wait_for_states(slurm, [job_id], timeout=120)
    finally:
        slurm.cancel([job_id])
    assert states[job_id] is JobState.FAILED
    err = next((home / "logs").glob(f"*-{job_id}.err")).read_text()
    assert "module load toolchain/1.0 nosuch/9 failed on " in err and "fix the plan's modules:" in err
    out_log = next((home / "logs").glob(f"*-{job_id}.out")).read_text()
    assert "verifying" not in out_log and "preparing" not in out_log  # nothing ran after it


def test_prepare_builds_the_environment_with_the_plans_modules_loaded(tmp_path):
    """A login plan whose modules bring a newer Python: prepare makes the venv with it."""
    python312 = sorted(Path(os.path.expanduser("~/.pyenv/versions")).glob("3.12*/bin/python3.12"))
    if not python312:
        pytest.skip("no Python 3.12 in pyenv here to stand in for a module's Python")
    build_demo_hub(tmp_path / "hub", user="alice", token=TOKEN)
    write_token_file(tmp_path / "hf-home", TOKEN)
    home = tmp_path / "proj"
    data = get_recipe("demo").default_plan(home, tmp_path / "data", hf_namespace="alice", download="login").to_dict()
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text(yaml.safe_dump({**data, "modules": ["toolchain/1.0"]}))
    modulepath = _modulepath(tmp_path)
    (tmp_path / "toolchain-1.0" / "bin" / "python3.12").symlink_to(python312[-1])
    with DevHub(tmp_path / "hub") as hub:
        env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
        # This PATH's newest Python is Debian's 3.11: only the module brings 3.12.
        env.update(HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "hf-home"), MODULEPATH=str(modulepath),
                   PATH="/usr/local/bin:/usr/bin:/bin")
        done = subprocess.run([sys.executable, "-m", "hpcwizard", "prepare", str(plan_file)], env=env,
                              capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    assert "environment: module load toolchain/1.0" in done.stdout
    made_with = (home / "envs" / "demo" / "pyvenv.cfg").read_text()
    assert "version = 3.12" in made_with or "version_info = 3.12" in made_with, made_with

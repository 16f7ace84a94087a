"""``hpcwizard prepare``: files, code and environment built where the network is.

Real git, a real venv with a real package from the package index (the demo
pins tqdm), the local Hub-protocol server, and the real local Slurm cluster
for the chain that runs on what the login node prepared.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from hpcwizard.demo import DEMO_TQDM, build_demo_hub, write_token_file
from hpcwizard.devhub import DevHub
from hpcwizard.prepare.code import code_problem, prepare_code
from hpcwizard.prepare.environment import (
    STAMP,
    build_environment,
    environment_problem,
    find_python,
    python_version,
    read_requirements,
    requirement_key,
)
from hpcwizard.prepare.steps import PrepareError
from hpcwizard.project.plan import PlanError, plan_from_dict
from hpcwizard.project.prepare_spec import CodeSpec, EnvironmentSpec, PythonSpec
from hpcwizard.project.recipe import RecipeError, get_recipe
from hpcwizard.project.resolved import resolve
from hpcwizard.slurm import JobState, SlurmClient

TOKEN = "hf_demo_prepare_0001"


def _hpcwizard(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hpcwizard", *argv], env=env, capture_output=True, text=True,
                          timeout=300, stdin=subprocess.DEVNULL)


@pytest.fixture
def demo_login_plan(tmp_path: Path):
    """A demo plan with download: login, its hub and the environment for the CLI."""
    build_demo_hub(tmp_path / "hub", user="alice", token=TOKEN)
    plan = get_recipe("demo").default_plan(tmp_path / "proj", tmp_path / "data", hf_namespace="alice",
                                           download="login")
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text(plan.to_yaml())
    write_token_file(tmp_path / "hf-home", TOKEN)
    with DevHub(tmp_path / "hub") as hub:
        env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
        env.update(HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "hf-home"))
        yield plan, plan_file, env


def test_prepare_builds_each_part_once_and_a_job_verifies_it_offline(demo_login_plan):
    plan, plan_file, env = demo_login_plan
    first = _hpcwizard(env, "prepare", str(plan_file))
    assert first.returncode == 0, first.stderr
    assert "environment: installing 1 pip requirement(s)" in first.stdout
    assert f"tqdm-{DEMO_TQDM}" in first.stdout  # pip's own lines, streamed
    env_dir = plan.project_home / "envs" / "demo"
    import_tqdm = subprocess.run([str(env_dir / "bin" / "python"), "-c", "import tqdm; print(tqdm.__version__)"],
                                 capture_output=True, text=True)
    assert import_tqdm.stdout.strip() == DEMO_TQDM
    stamp = json.loads((env_dir / STAMP).read_text())
    assert stamp["kind"] == "venv" and len(stamp["digest"]) == 64

    # A second run redoes nothing: no file fetched again, no pip.
    second = _hpcwizard(env, "download", str(plan_file))  # the alias
    assert second.returncode == 0, second.stderr
    assert "pip" not in second.stdout and "demo already built" in second.stdout
    assert "5 already complete" in second.stdout
    assert (env_dir / STAMP).read_text() == json.dumps(stamp) + "\n"

    # The setup job of a login plan: no network needed, everything checked.
    offline = dict(env, HF_ENDPOINT="http://127.0.0.1:9", PIP_NO_INDEX="1", HF_HUB_OFFLINE="1")
    verified = _hpcwizard(offline, "prepare", str(plan_file), "--in-job")
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.strip().endswith("prepare: everything was prepared on the login node")

    # A part that is not ready is named, on one line, with the fix.
    (env_dir / STAMP).unlink()
    refused = _hpcwizard(offline, "prepare", str(plan_file), "--in-job")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    [line] = refused.stderr.strip().splitlines()
    assert line.startswith(f"hpcwizard: environment not prepared: {env_dir} is not built yet")
    assert "run `hpcwizard prepare PLAN` on the login node" in line


def test_a_changed_requirement_rebuilds_the_environment(demo_login_plan):
    plan, plan_file, env = demo_login_plan
    assert _hpcwizard(env, "prepare", str(plan_file)).returncode == 0
    # env_overrides changes an input: the stamp no longer matches, prepare rebuilds.
    changed = plan_file.read_text() + "env_overrides: {'tqdm==%s': 'tqdm==4.66.5'}\n" % DEMO_TQDM
    plan_file.write_text(changed)
    check = _hpcwizard(dict(env, PIP_NO_INDEX="1"), "prepare", str(plan_file), "--in-job")
    assert check.returncode == 2 and "other requirements (they changed since)" in check.stderr
    rebuilt = _hpcwizard(env, "prepare", str(plan_file))
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "removing the outdated environment" in rebuilt.stdout and "tqdm-4.66.5" in rebuilt.stdout


def test_a_login_plan_prepared_on_the_login_node_trains_to_completion(demo_login_plan, slurm_conf, slurm_runner):
    """What the login node prepared is all the chain needs: setup verifies, train runs in the built env."""
    _prepare_submit_and_complete(demo_login_plan, slurm_conf, slurm_runner)


def test_compute_nodes_without_network_train_what_the_login_node_prepared(demo_login_plan, offline_slurm_conf):
    """The offline local cluster (its node in a network namespace that reaches
    only the controller: no hub, no package index): after `hpcwizard prepare`
    on this (login) side, the demo chain runs to COMPLETED there."""
    from hpcwizard.shell import LocalRunner

    _prepare_submit_and_complete(demo_login_plan, offline_slurm_conf,
                                 LocalRunner(extra_env={"SLURM_CONF": offline_slurm_conf}))


def _prepare_submit_and_complete(demo_login_plan, slurm_conf, slurm_runner):
    plan, plan_file, env = demo_login_plan
    env["SLURM_CONF"] = slurm_conf
    assert _hpcwizard(env, "prepare", str(plan_file)).returncode == 0
    submitted = _hpcwizard(env, "submit", str(plan_file), "--json")
    assert submitted.returncode == 0, submitted.stderr
    ids = [job["id"] for job in json.loads(submitted.stdout)["jobs"]]
    slurm = SlurmClient(slurm_runner)
    try:
        deadline = time.monotonic() + 180
        states: dict[str, JobState] = {}
        while time.monotonic() < deadline:
            queued = {e.job_id: e.state for e in slurm.queue(ids)}
            gone = [i for i in ids if i not in queued]
            states = {**queued, **({f.job_id: f.state for f in slurm.finished(gone)} if gone else {})}
            if len(states) == len(ids) and all(s.is_finished for s in states.values()):
                break
            if any(e.dependency_never_satisfied for e in slurm.queue(ids)):
                break
            time.sleep(0.5)
    finally:
        slurm.cancel(ids)
    logs = {p.name: p.read_text(errors="replace") for p in (plan.project_home / "logs").glob("*")}
    assert [states.get(i) for i in ids] == [JobState.COMPLETED, JobState.COMPLETED], logs
    setup_log = next(text for name, text in logs.items() if name.endswith(f"-{ids[0]}.out"))
    assert "verifying what the login node prepared" in setup_log
    assert "prepare: everything was prepared on the login node" in setup_log
    weights = json.loads((plan.project_home / "demo" / "converted_weights" / "weights.json").read_text())
    assert weights["stage"] == 2


# ---------------------------------------------------------------- the environment's inputs


def _yml_spec(tmp_path: Path, pip: list[str], **kw) -> EnvironmentSpec:
    yml = tmp_path / "environment.yml"
    yml.write_text(yaml.safe_dump({"name": "x", "prefix": "/home/someone/miniconda3/envs/x",
                                   "dependencies": ["python=3.9.19", "pip", {"pip": pip}]}))
    return EnvironmentSpec(dir=tmp_path / "env", python=PythonSpec(">=3.9"), environment_yml=yml, **kw)


def test_env_overrides_replace_a_pin_in_environment_yml_and_an_unused_one_warns(tmp_path):
    spec = _yml_spec(tmp_path, ["accelerate==0.25.0", "clip==1.0", "Open_Clip-Torch == 3.2.0"],
                     extra=("decord==0.6.0",))
    reqs = read_requirements(spec, {"CLIP == 1.0": "git+https://github.com/openai/CLIP.git",
                                    "open-clip-torch==3.2.0": "open-clip-torch==3.1.0",
                                    "timm==0.6.13": "timm==1.0.0"})
    assert reqs.pip == ("accelerate==0.25.0", "git+https://github.com/openai/CLIP.git", "open-clip-torch==3.1.0",
                        "decord==0.6.0")
    conda = yaml.safe_load(reqs.environment_yml)
    assert conda["dependencies"][:2] == ["python=3.9.19", "pip"] and "prefix" not in conda
    assert conda["dependencies"][2]["pip"] == list(reqs.pip)
    assert reqs.unused_overrides == ("timm==0.6.13",)
    warned: list[str] = []
    # An environment whose stamp matches is not rebuilt, but the unused override is still said.
    spec.dir.mkdir()
    (spec.dir / STAMP).write_text(json.dumps({"digest": reqs.digest("venv"), "kind": "venv"}))
    assert environment_problem(spec, reqs) is None
    assert build_environment(spec, reqs, warned.append) == "env already built"
    assert warned == ["WARNING: env_overrides 'timm==0.6.13' matches no requirement of this environment"]


def test_requirement_keys_compare_as_pip_does():
    assert requirement_key("Open_Clip.Torch == 3.2.0") == requirement_key("open-clip-torch==3.2.0")
    assert requirement_key("clip==1.0 ; python_version < '4'") == "clip==1.0"


@pytest.mark.parametrize("bad", [{"clip": "x"}, {"clip==1.0": "--index-url http://evil/"}, {"clip==1.0": ""},
                                 ["clip==1.0"], {"clip==1.0": "a\nb"}])
def test_bad_env_overrides_are_refused_with_one_line(tmp_path, bad):
    data = get_recipe("demo").default_plan(tmp_path).to_dict()
    data["env_overrides"] = bad
    with pytest.raises(PlanError) as caught:
        plan_from_dict(data)
    assert "env_overrides" in caught.value.one_line() and "\n" not in caught.value.one_line()


def test_env_overrides_round_trip_through_the_plan_file(tmp_path):
    data = get_recipe("demo").default_plan(tmp_path).to_dict()
    data["env_overrides"] = {"clip==1.0": "git+https://github.com/openai/CLIP.git"}
    plan = plan_from_dict(data)
    assert plan_from_dict(yaml.safe_load(plan.to_yaml())).env_overrides == data["env_overrides"]


# ---------------------------------------------------------------- Python for a venv


def _pyenv_bin(version: str) -> Path | None:
    root = subprocess.run(["pyenv", "root"], capture_output=True, text=True).stdout.strip() if \
        subprocess.run(["sh", "-c", "command -v pyenv"], capture_output=True).returncode == 0 else ""
    found = sorted(Path(root, "versions").glob(f"{version}.*/bin")) if root else []
    return found[-1] if found else None


def test_python_ranges():
    spec = PythonSpec(">=3.10,<3.13")
    assert spec.allows((3, 10)) and spec.allows((3, 12)) and not spec.allows((3, 9)) and not spec.allows((3, 13))
    assert spec.best_known() == (3, 12)
    with pytest.raises(RecipeError):
        PythonSpec("3.10+").clauses()


def test_a_venv_needs_a_python_the_recipe_supports(tmp_path, monkeypatch):
    bin39 = _pyenv_bin("3.9")
    if bin39 is None:
        pytest.skip("no Python 3.9 from pyenv on this machine")
    monkeypatch.setenv("PATH", f"{bin39}:/usr/bin:/bin")
    found = find_python(PythonSpec(">=3.9,<3.10"))
    assert found is not None and Path(found).resolve().is_relative_to(bin39.parent.resolve())
    newer = find_python(PythonSpec(">=3.10,<3.13"))  # /usr/bin's own python3.11, or none
    assert newer is None or (python_version(newer) or ((0, 0), ""))[0] >= (3, 10)
    spec = EnvironmentSpec(dir=tmp_path / "env", python=PythonSpec(">=3.14"), generated_requirements="r.txt")
    reqs = read_requirements(spec, {}, "tqdm==4.67.1\n")
    with pytest.raises(PrepareError) as caught:
        build_environment(spec, reqs, lambda line: None)
    assert caught.value.one_line().startswith("environment: no Python >=3.14 on this machine's PATH")
    assert "module load python/" in caught.value.one_line()
    assert not spec.dir.exists()


# ---------------------------------------------------------------- code at a pinned commit


def _git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True,
                          env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x",
                               "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@x"}).stdout.strip()


def test_code_is_cloned_at_the_pinned_commit_moved_when_the_pin_changes_and_checked_offline(tmp_path):
    upstream = tmp_path / "upstream"
    upstream.mkdir()
    _git("init", "-q", cwd=upstream)
    (upstream / "train.py").write_text("print('v1')\n")
    _git("add", ".", cwd=upstream)
    _git("commit", "-q", "-m", "v1", cwd=upstream)
    first = _git("rev-parse", "HEAD", cwd=upstream)
    (upstream / "train.py").write_text("print('v2')\n")
    _git("commit", "-q", "-am", "v2", cwd=upstream)
    second = _git("rev-parse", "HEAD", cwd=upstream)
    dest = tmp_path / "proj" / "Code"
    lines: list[str] = []
    spec = CodeSpec(url=f"file://{upstream}", commit=first[:7], dest=dest)
    assert code_problem(spec) == f"{dest} is not cloned yet"
    assert prepare_code(spec, lines.append) == f"Code cloned at {first[:7]}"
    assert (dest / "train.py").read_text() == "print('v1')\n" and not dest.with_name("Code.partial").exists()
    assert code_problem(spec) is None
    assert prepare_code(spec, lines.append) == f"Code already at {first[:7]}"
    # The recipe pins a newer commit: the clone moves there (files the job added stay).
    (dest / "config.yaml").write_text("written by the train job\n")
    newer = CodeSpec(url=spec.url, commit=second, dest=dest)
    assert code_problem(newer) == f"{dest} is at commit {first[:12]}, not the pinned {second[:12]}"
    assert prepare_code(newer, lines.append) == f"Code moved to {second[:12]}"
    assert (dest / "train.py").read_text() == "print('v2')\n" and (dest / "config.yaml").exists()
    # A folder that is not a clone is never overwritten.
    other = CodeSpec(url=spec.url, commit=first, dest=tmp_path / "mine")
    other.dest.mkdir()
    with pytest.raises(PrepareError) as caught:
        prepare_code(other, lines.append)
    assert "exists but is not a git clone" in caught.value.one_line()
    # An unreachable host fails with one line naming the part and the host.
    gone = CodeSpec(url=f"file://{tmp_path}/nowhere", commit=first, dest=tmp_path / "gone")
    with pytest.raises(PrepareError) as caught:
        prepare_code(gone, lines.append)
    assert caught.value.one_line().startswith("code: git clone failed")
    assert not (tmp_path / "gone").exists() and not (tmp_path / "gone.partial").exists()


def test_fff_vdi_declares_its_code_and_environment(tmp_path):
    from hpcwizard.prepare import parts_of
    from hpcwizard.project.prepare_spec import code_spec, environment_spec

    recipe = get_recipe("fff-vdi")
    plan = recipe.default_plan(tmp_path / "p", download="login")
    code = code_spec(recipe, plan)
    assert code is not None and code.url == "https://github.com/Hydragon516/FFF-VDI.git"
    assert code.commit == recipe.parameter("fff_vdi_commit").default and code.dest == tmp_path / "p" / "FFF-VDI"
    env = environment_spec(recipe, plan)
    assert env is not None and env.generated_requirements == "requirements.txt"
    assert env.python.allows((3, 10)) and not env.python.allows((3, 9))
    assert [(p.name, bool(p.problem)) for p in parts_of(resolve(plan, recipe))] == [
        ("files", True), ("code", True), ("environment", True)]


# ---------------------------------------------------------------- pins the package index lacks


FORK_PIP = ["accelerate==0.25.0", "clip==1.0", "tqdm==4.66.4", "git+https://github.com/openai/CLIP.git"]


def test_check_blocks_a_pin_the_package_index_lacks_and_an_override_clears_it(tmp_path):
    """The user's fork pins clip==1.0 (OpenAI CLIP from git reports 1.0; the index
    has 0.0.1/0.1.0/0.2.0): found from the environment.yml on the Hub, before
    anything is downloaded, against the real package index."""
    from hpcwizard.devhub import add_token, write_repo
    from hpcwizard.prepare.check import check_environment_pins

    root = tmp_path / "hub"
    add_token(root, TOKEN, "alice")
    yml = yaml.safe_dump({"name": "diffueraser", "dependencies": ["python=3.9.19", "pip", {"pip": FORK_PIP}]})
    write_repo(root, "datasets", "alice/DiffuEraser-finetune-code", {"environment.yml": yml})
    recipe = get_recipe("diffueraser")
    plan = recipe.default_plan(tmp_path / "p", hf_namespace="alice")
    with DevHub(root) as hub:
        [row] = check_environment_pins(resolve(plan, recipe), token=TOKEN, endpoint=hub.url)
        assert row.level.value == "block", row
        assert row.message.startswith("environment.yml pins what the package index cannot install: clip==1.0: ")
        assert "has only 0.0.1, 0.1.0, 0.2.0" in row.message
        assert row.fix == "add to the plan: env_overrides: {'clip==1.0': 'git+https://github.com/openai/CLIP.git'}"
        fixed = plan.with_changes(env_overrides={"clip==1.0": "git+https://github.com/openai/CLIP.git"})
        [row] = check_environment_pins(resolve(fixed, recipe), token=TOKEN, endpoint=hub.url)
        assert row.level.value == "ok" and row.message.startswith("5 requirement(s) of environment.yml: every pin")


def test_check_says_which_python_a_venv_lacks_and_how_to_load_one(tmp_path):
    """A login node whose only Python is 3.9 (RHEL 9's) cannot build FFF-VDI's
    venv (torch 2.9 needs >= 3.10): blocked for a login plan, with the module hint."""
    from hpcwizard.prepare.check import check_environment_python
    from hpcwizard.shell import LocalRunner

    bin39 = _pyenv_bin("3.9")
    if bin39 is None:
        pytest.skip("no Python 3.9 from pyenv on this machine")
    only39 = tmp_path / "bin"
    only39.mkdir()
    for name, target in {"sh": "/bin/sh", "python3": bin39 / "python3.9", "python3.9": bin39 / "python3.9"}.items():
        (only39 / name).symlink_to(target)
    runner = LocalRunner(extra_env={"PATH": str(only39)})
    recipe = get_recipe("fff-vdi")
    [row] = check_environment_python(resolve(recipe.default_plan(tmp_path / "p", download="login"), recipe), runner)
    assert row.level.value == "block"
    assert row.message == ("no Python >=3.10,<3.13 on this login node for the training venv "
                           "(found: python3.9 3.9, python3 3.9)")
    assert row.fix.startswith("load one (e.g. `module load python/3.12`")
    [row] = check_environment_python(resolve(recipe.default_plan(tmp_path / "p"), recipe), runner)
    assert row.level.value == "warn"  # download: job builds it on a compute node, which may differ
    demo = get_recipe("demo")
    [row] = check_environment_python(resolve(demo.default_plan(tmp_path / "d", hf_namespace="alice"), demo), runner)
    assert row.level.value == "ok" and "(Python 3.9, the recipe needs >=3.8)" in row.message


def test_a_conda_that_wants_anacondas_terms_accepted_is_said_in_one_line_with_both_ways_out(tmp_path, monkeypatch):
    """conda >= 25.5 from Anaconda's installers refuses the defaults channel
    (the user's fork lists it) until its Terms of Service are accepted, and
    never asks without a terminal. No conda runs on this machine: a PATH
    wrapper prints conda's real refusal (tests/data/conda/tos-not-accepted.txt,
    as reported in beasteers/singuconda#10, 2025-07-23) and exits 1."""
    recorded = Path(__file__).parent / "data" / "conda" / "tos-not-accepted.txt"
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "conda").write_text(f"#!/bin/sh\ncat {shlex.quote(str(recorded))} >&2\nexit 1\n")
    (fake_bin / "conda").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}:/usr/bin:/bin")
    spec = _yml_spec(tmp_path, ["accelerate==0.25.0"])
    reqs = read_requirements(spec, {})
    with pytest.raises(PrepareError) as caught:
        build_environment(spec, reqs, lambda line: None)
    line = caught.value.one_line()
    assert "\n" not in line
    assert line.startswith("environment: conda env create failed: this conda wants Anaconda's Terms of Service "
                           "accepted for https://repo.anaconda.com/pkgs/main, https://repo.anaconda.com/pkgs/r")
    assert "conda tos accept --override-channels --channel https://repo.anaconda.com/pkgs/main" in line
    assert "Miniforge" in line and not (spec.dir / STAMP).exists()

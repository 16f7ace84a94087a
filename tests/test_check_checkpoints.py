"""`hpcwizard check` when an earlier run left checkpoints (issue 14, item 1).

Training resumes from the latest checkpoint it finds. A plan whose steps are
at or below that checkpoint would train nothing: the train job "completes" in
seconds and converts the old checkpoint. The check blocks it, and offers the
two ways out: continue (raise the steps) or start fresh (``--start-fresh``
moves the old checkpoints into a dated folder; nothing is deleted). Real
cluster, local Hub-protocol server, the real CLI in a subprocess.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import test_check
from hpcwizard.checks.preflight import (
    EARLIER_CHECKPOINTS,
    check_earlier_checkpoints,
    continue_steps,
    find_earlier_checkpoints,
    start_fresh,
)
from hpcwizard.checks.space import Level
from hpcwizard.project.home import Project
from hpcwizard.project.recipe import get_recipe
from hpcwizard.project.resolved import resolve
from hpcwizard.shell import LocalRunner
from test_check import CANARY, write_plan

demo_hub = test_check.demo_hub  # the fixture, by name


def leave_checkpoints(project_home: Path, stage1: int, stage2: int | None = None) -> None:
    """What an earlier demo run leaves: checkpoint-N folders and converted weights."""
    for stage, latest in (("stage1", stage1), ("stage2", stage2)):
        if latest is None:
            continue
        for step in (latest - 2, latest):
            folder = project_home / "demo" / stage / f"checkpoint-{step}"
            folder.mkdir(parents=True)
            (folder / "state.json").write_text('{"step": %d}\n' % step)
    converted = project_home / "demo" / "converted_stage1"
    converted.mkdir(parents=True)
    (converted / "weights.json").write_text("{}\n")


def run_cli(tmp_path: Path, hub, plan: Path, token: str, slurm_conf: str, *extra: str):
    from hpcwizard.demo import write_token_file

    env = {k: v for k, v in os.environ.items() if k != "HF_TOKEN"}
    env.update(HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "hf-home"), SLURM_CONF=slurm_conf)
    write_token_file(tmp_path / "hf-home", token)
    done = subprocess.run([sys.executable, "-m", "hpcwizard", "check", str(plan), *extra],
                          env=env, capture_output=True, text=True, timeout=180)
    assert "Traceback" not in done.stderr, done.stderr
    assert CANARY not in done.stdout + done.stderr
    return done


def earlier_lines(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if EARLIER_CHECKPOINTS in line]


def test_checkpoints_at_or_beyond_the_steps_block_with_both_choices(tmp_path, demo_hub, slurm_conf):
    hub, built = demo_hub
    plan = write_plan(tmp_path)  # the demo's default: 6 steps per stage
    leave_checkpoints(tmp_path / "proj", stage1=70, stage2=70)
    done = run_cli(tmp_path, hub, plan, built.token, slurm_conf)
    assert done.returncode == 1, done.stdout
    [line] = earlier_lines(done.stdout)  # one line says it, with the mark that blocks
    assert line.startswith("BLOCK") and "nothing would be trained" in line
    assert "checkpoint-70" in line and "6 steps" in line
    fix = done.stdout.splitlines()[done.stdout.splitlines().index(line) + 1]
    assert "continue: raise max_train_steps to 76 or more" in fix
    assert "start fresh: `hpcwizard check --start-fresh PLAN`" in fix and "nothing is deleted" in fix
    assert done.stdout.rstrip().endswith("blocked: fix the BLOCK rows, then check again")
    # The details the wizard shows on Enter are on the terminal's line at once.
    assert any("Hugging Face token: valid for alice (read from " in line for line in done.stdout.splitlines())


def test_start_fresh_moves_the_old_checkpoints_into_a_dated_folder_and_the_check_passes(tmp_path, demo_hub,
                                                                                       slurm_conf):
    hub, built = demo_hub
    plan = write_plan(tmp_path)
    home = tmp_path / "proj"
    leave_checkpoints(home, stage1=70, stage2=70)
    done = run_cli(tmp_path, hub, plan, built.token, slurm_conf, "--start-fresh")
    assert done.returncode == 0, done.stdout
    assert not earlier_lines(done.stdout)
    moved = [line for line in done.stdout.splitlines() if line.startswith("moved ")]
    assert len(moved) == 3  # stage1, stage2, and the converted weights with their marker
    [dated] = (home / "old-checkpoints").iterdir()
    assert (dated / "demo" / "stage1" / "checkpoint-70" / "state.json").read_text() == '{"step": 70}\n'
    assert (dated / "demo" / "stage2" / "checkpoint-68").is_dir()
    assert (dated / "demo" / "converted_stage1" / "weights.json").is_file()
    assert not (home / "demo" / "stage1").exists() and not (home / "demo" / "converted_stage1").exists()
    assert f"moved {home / 'demo' / 'stage1'} to {dated / 'demo' / 'stage1'}" in moved
    # Again: nothing left to move, said in one line.
    again = run_cli(tmp_path, hub, plan, built.token, slurm_conf, "--start-fresh")
    assert again.returncode == 0 and "no earlier checkpoints to move" in again.stdout.splitlines()[0]


def test_checkpoints_below_the_steps_only_warn(tmp_path):
    plan_path = write_plan(tmp_path)
    from hpcwizard.project.recipe import load_plan_for_recipe

    plan, recipe = load_plan_for_recipe(plan_path)
    plan = plan.with_changes(params={"max_train_steps": 100})
    leave_checkpoints(plan.project_home, stage1=70)
    [row] = check_earlier_checkpoints(Project(plan.project_home), resolve(plan, recipe))
    assert row.level is Level.WARN and "checkpoint-70" in row.message and "nothing would be trained" not in row.message
    assert "--start-fresh" in row.fix


@pytest.mark.parametrize("stages, blocked", [("both", True), ("stage2", False)])
def test_a_stage_the_plan_does_not_train_does_not_block(tmp_path, stages, blocked):
    """DiffuEraser with stage 1 done at 60 of 50 steps: "both" retrains nothing in stage 1;
    stages: stage2 does not train stage 1 at all, so its checkpoints block nothing."""
    recipe = get_recipe("diffueraser")
    plan = recipe.default_plan(tmp_path / "proj", hf_namespace="alice",
                               params={"stages": stages, "stage1_max_train_steps": 50})
    folder = recipe.checkpoint_dirs_for(plan)[0] / "checkpoint-60"
    folder.mkdir(parents=True)
    [found] = find_earlier_checkpoints(Project(plan.project_home), resolve(plan, recipe))
    assert found.stage == "stage 1" and found.latest == 60
    assert found.nothing_to_train is blocked
    [row] = check_earlier_checkpoints(Project(plan.project_home), resolve(plan, recipe))
    assert (row.level is Level.BLOCK) is blocked
    if blocked:
        assert continue_steps([found]) == {"stage1_max_train_steps": 110}
        assert "stage1_max_train_steps to 110 or more" in row.fix


def test_start_fresh_refuses_to_overwrite_and_says_which_folder(tmp_path):
    recipe = get_recipe("demo")
    plan = recipe.default_plan(tmp_path / "proj", hf_namespace="alice")
    leave_checkpoints(plan.project_home, stage1=8)
    from datetime import datetime

    when = datetime(2026, 1, 2, 3, 4, 5)
    # The dated folder already holds a non-empty stage1 (a second fresh start in the same second).
    blocker = plan.project_home / "old-checkpoints" / "2026-01-02_030405" / "demo" / "stage1" / "x"
    blocker.mkdir(parents=True)
    from hpcwizard.errors import UserError

    with pytest.raises(UserError) as caught:
        start_fresh(Project(plan.project_home, runner=LocalRunner()), resolve(plan, recipe), when=when)
    assert str(plan.project_home / "demo" / "stage1") in caught.value.message
    assert (plan.project_home / "demo" / "stage1" / "checkpoint-8").is_dir()  # nothing lost

"""Several nodes: ``train.nodes`` in the plan, one launcher per node through
srun, the main address from Slurm, and a real two-node run of the demo on the
two-node local cluster (fixture ``two_node_slurm_conf``: two slurmd, each in
its own network namespace, so the ranks meet over a real network)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from hpcwizard.checks.preflight import job_limits
from hpcwizard.demo import build_demo_hub, write_token_file
from hpcwizard.devhub import DevHub
from hpcwizard.project.files import LOCAL_FILES
from hpcwizard.project.home import Project
from hpcwizard.project.plan import PlanError, plan_from_dict
from hpcwizard.project.recipe import get_recipe
from hpcwizard.project.render import render
from hpcwizard.project.resolved import resolve
from hpcwizard.shell import LocalRunner
from hpcwizard.slurm import JobState, SlurmClient

TOKEN = "hf_demo_multinode_0001"


def _hpcwizard(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hpcwizard", *argv], env=env, capture_output=True, text=True,
                          timeout=300, stdin=subprocess.DEVNULL)


def _rendered(tmp_path: Path, recipe_name: str, *, nodes: int, gpus: int) -> dict[str, str]:
    recipe = get_recipe(recipe_name)
    plan = recipe.default_plan(tmp_path / recipe_name, tmp_path / "data", hf_namespace="alice")
    plan = replace(plan, train=replace(plan.train, nodes=nodes, gpus=gpus))
    out = tmp_path / f"out-{recipe_name}-{nodes}"
    rendering = render(Project(plan.project_home), resolve(plan, recipe), out)
    rendering.write(out, LOCAL_FILES)
    return {f.name: f.text for f in rendering.files}


# ---------------------------------------------------------------- the plan


def test_train_nodes_is_validated_and_left_out_at_one(tmp_path):
    recipe = get_recipe("demo")
    data = recipe.default_plan(tmp_path / "p", tmp_path / "d", hf_namespace="alice").to_dict()
    assert "nodes" not in data["train"] and "nodes" not in data["setup"]  # one node: plans unchanged
    two = plan_from_dict({**data, "train": {**data["train"], "nodes": 2}})
    assert two.train.nodes == 2 and two.to_dict()["train"]["nodes"] == 2
    for bad in (0, -1, "2", True, 1.5, 5000):
        with pytest.raises(PlanError, match=r"train\.nodes has a bad value .*; allowed: a whole number from 1"):
            plan_from_dict({**data, "train": {**data["train"], "nodes": bad}})
    with pytest.raises(PlanError, match=r"unknown key setup\.nodes"):
        plan_from_dict({**data, "setup": {**data["setup"], "nodes": 2}})


# ---------------------------------------------------------------- the scripts


@pytest.mark.parametrize("recipe_name", ["fff-vdi", "diffueraser"])
def test_a_two_node_accelerate_launch(tmp_path, recipe_name):
    files = _rendered(tmp_path, recipe_name, nodes=2, gpus=4)
    train = files["02_train.sbatch"]
    header = [line for line in train.splitlines() if line.startswith("#SBATCH")]
    assert {"#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=1", "#SBATCH --gres=gpu:4"} <= set(header)
    assert "#SBATCH --ntasks=1" not in header
    # One launcher per node: srun, one task each, the node's rank from Slurm.
    assert "ON_NODES=(srun --nodes=2 --ntasks-per-node=1 --kill-on-bad-exit=1 --gres=gpu:4" in train
    assert 'rank=${SLURM_NODEID:?}' in train and '"${arg//@NODE_RANK@/$rank}"' in train
    launch = re.search(r"python -m accelerate\.commands\.launch [^\n)]*", train).group(0)
    assert "--num_machines 2 --num_processes 8 --machine_rank @NODE_RANK@" in launch
    assert '--main_process_ip "$MAIN_ADDR" --main_process_port "$MAIN_PORT"' in launch and "--multi_gpu" in launch
    # The main address is the first node's NodeAddr (names need not resolve).
    assert 'MAIN_NODE=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)' in train
    assert "sed -n 's/^NodeAddr=//p'" in train
    assert "MAIN_PORT=$((20000 + SLURM_JOB_ID % 20000))" in train
    # Every node's output in its own file; the job log keeps node 0's.
    assert '.node")' in train and 'log=$1$rank.out' in train and 'tee -a "$log"' in train
    config_name = "accelerate_config.yaml" if recipe_name == "fff-vdi" else "default_config.yaml"
    config = files[config_name]
    assert re.search(r"^num_machines: 2$", config, re.M) and re.search(r"^num_processes: 8$", config, re.M)
    assert re.search(r"^distributed_type: MULTI_GPU$", config, re.M)


@pytest.mark.parametrize("recipe_name", ["demo", "fff-vdi", "diffueraser"])
def test_two_node_scripts_pass_shellcheck_and_one_node_scripts_stay_as_they_were(tmp_path, recipe_name):
    assert shutil.which("shellcheck"), "shellcheck is installed by scripts/bootstrap"
    two = _rendered(tmp_path, recipe_name, nodes=2, gpus=2)
    scripts = [tmp_path / f"out-{recipe_name}-2" / name for name in two if name.endswith(".sbatch")]
    done = subprocess.run(["shellcheck", "-S", "warning", *map(str, scripts)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    one = _rendered(tmp_path, recipe_name, nodes=1, gpus=2)["02_train.sbatch"]
    assert "#SBATCH --nodes=1\n#SBATCH --ntasks=1\n" in one
    assert "ON_NODES" not in one and "srun" not in one and "@NODE_RANK@" not in one


def test_more_nodes_than_the_partition_has_are_refused_naming_its_nodes(tmp_path, two_node_slurm_conf):
    runner = LocalRunner(extra_env={"SLURM_CONF": two_node_slurm_conf})
    part = next(p for p in SlurmClient(runner).partitions() if p.name == "cpu")
    assert part.node_count == 2
    plan = get_recipe("demo").default_plan(tmp_path / "p", tmp_path / "d", hf_namespace="alice")
    three = replace(plan.train, nodes=3)
    [row] = [r for r in job_limits("train", three, part, plan) if r.level.name == "BLOCK"]
    assert row.message == f"3 nodes asked, partition cpu has 2 nodes ({part.nodes}, 2 GPUs each)"
    assert row.fix == "set train.nodes to at most 2, or choose a partition with more nodes"
    fits = job_limits("train", replace(plan.train, nodes=2), part, plan)
    assert [r.level.name for r in fits] == ["OK"] and "2 nodes × (1 CPU" in fits[0].message


# ---------------------------------------------------------------- a real two-node run


def _node_addr(conf: str, node: str) -> str:
    shown = subprocess.run(["scontrol", "show", "node", node], env={**os.environ, "SLURM_CONF": conf},
                           capture_output=True, text=True, check=True).stdout
    return re.search(r"NodeAddr=(\S+)", shown).group(1)


def _run_two_node_demo(tmp_path: Path, conf: str, *, params: dict | None = None, time_limit: str | None = None,
                       timeout: float = 240) -> tuple[Path, list[str], dict[str, JobState], dict[str, str]]:
    """Prepare (download: login: the nodes have no network) and submit the
    demo chain with train.nodes: 2; wait for it to end. The project home,
    the job ids, their final states and the logs' texts by file name."""
    build_demo_hub(tmp_path / "hub", user="alice", token=TOKEN)
    recipe = get_recipe("demo")
    plan = recipe.default_plan(tmp_path / "proj", tmp_path / "data", hf_namespace="alice", download="login")
    data = plan.to_dict()
    data["train"] = {**data["train"], "nodes": 2, **({"time": time_limit} if time_limit else {})}
    data["params"] = {**data.get("params", {}), **(params or {})}
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text(plan_from_dict(data).to_yaml())
    write_token_file(tmp_path / "hf-home", TOKEN)
    slurm = SlurmClient(LocalRunner(extra_env={"SLURM_CONF": conf}))
    with DevHub(tmp_path / "hub") as hub:
        env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
        env.update(HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "hf-home"), SLURM_CONF=conf)
        prepared = _hpcwizard(env, "prepare", str(plan_file))
        assert prepared.returncode == 0, prepared.stderr
        submitted = _hpcwizard(env, "submit", str(plan_file), "--json")
    assert submitted.returncode == 0, submitted.stderr
    ids = [job["id"] for job in json.loads(submitted.stdout)["jobs"]]
    states: dict[str, JobState] = {}
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            queued = {e.job_id: e.state for e in slurm.queue(ids)}
            gone = [i for i in ids if i not in queued]
            states = {**queued, **({f.job_id: f.state for f in slurm.finished(gone)} if gone else {})}
            if len(states) == len(ids) and all(s.is_finished for s in states.values()):
                break
            time.sleep(1.0)
    finally:
        slurm.cancel(ids)
    home = tmp_path / "proj"
    texts = {p.name: p.read_text(errors="replace") for p in (home / "logs").glob("*")}
    return home, ids, states, texts


def _node_logs(texts: dict[str, str], job_id: str) -> dict[int, str]:
    return {int(m.group(1)): text for name, text in texts.items()
            if (m := re.fullmatch(rf".*-{job_id}\.node(\d)\.out", name))}


def test_a_two_node_demo_training_completes_with_both_ranks_joined(tmp_path, two_node_slurm_conf):
    """The demo chain with train.nodes: 2 on the two-node cluster: setup, then
    one trainer per node meeting at node1's NodeAddr; every step's loss is
    averaged over both ranks, so both nodes log the same losses."""
    home, ids, states, texts = _run_two_node_demo(tmp_path, two_node_slurm_conf)
    assert [states.get(i) for i in ids] == [JobState.COMPLETED, JobState.COMPLETED], texts
    train_id = ids[1]
    node_logs = _node_logs(texts, train_id)
    assert sorted(node_logs) == [0, 1], sorted(texts)
    main = _node_addr(two_node_slurm_conf, "node1")
    for rank, text in node_logs.items():
        joined = re.findall(rf"rank {rank} of 2 joined main at {re.escape(main)}:(\d+)", text)
        assert len(joined) == 2, text  # stage 1 and stage 2
        assert {int(port) for port in joined} == {20000 + int(train_id) % 20000}
    losses = {rank: re.findall(r"loss=([0-9.]+)", text) for rank, text in node_logs.items()}
    assert losses[0] and losses[0] == losses[1], losses
    job_log = next(text for name, text in texts.items() if name.endswith(f"-{train_id}.out"))
    assert "rank 0 of 2 joined main at" in job_log and "rank 1 of 2 joined" not in job_log
    assert f"2 nodes (node[1-2]), 0 GPU(s) each: main process at {main}:" in job_log
    weights = json.loads((home / "demo" / "converted_weights" / "weights.json").read_text())
    assert weights["stage"] == 2


def test_a_two_node_training_continues_across_its_time_limit(tmp_path, two_node_slurm_conf):
    """2 stages x 20 steps x 3 s on both nodes, a 2-minute limit: the time-limit
    warning stops both ranks at the same step (srun forwards it), the job
    requeues itself, and the next segment meets again and resumes there."""
    from test_continuation import FOLLOW, LIMIT

    home, ids, states, texts = _run_two_node_demo(tmp_path, two_node_slurm_conf, params=FOLLOW,
                                                  time_limit=LIMIT, timeout=600)
    assert [states.get(i) for i in ids] == [JobState.COMPLETED, JobState.COMPLETED], texts
    train_id = ids[1]
    job_log = next(text for name, text in texts.items() if name.endswith(f"-{train_id}.out"))
    assert "[hpcwizard] segment 1 of ~" in job_log and "stopped at the time limit; requeued to continue from" in job_log
    resumed = re.findall(r"\[hpcwizard\] segment (\d+) of ~\d+, resumed from (checkpoint-\d+)", job_log)
    assert resumed and resumed[0][0] == "2", job_log
    node_logs = _node_logs(texts, train_id)
    assert sorted(node_logs) == [0, 1], sorted(texts)
    for rank, text in node_logs.items():
        # Every segment's launch meets again (at least two joins per rank).
        assert len(re.findall(rf"rank {rank} of 2 joined main at", text)) >= 2, text
    weights = json.loads((home / "demo" / "converted_weights" / "weights.json").read_text())
    assert (weights["stage"], weights["step"]) == (2, FOLLOW["max_train_steps"])


def test_the_check_says_what_a_multi_node_training_costs(tmp_path, slurm_runner):
    """2 stages × 1000 steps × 36 s on 2 nodes × 4 GPUs: 20 h of training, 160 GPU-hours."""
    from hpcwizard.checks.preflight import check_continuation
    from hpcwizard.jobs.continuation import cost_text, plan_continuation

    recipe = get_recipe("demo")
    data = recipe.default_plan(tmp_path / "p", tmp_path / "d", hf_namespace="alice").to_dict()
    data["train"] = {**data["train"], "nodes": 2, "gpus": 4, "partition": "gpu", "time": "4:00:00"}
    data["params"] = {"max_train_steps": 1000, "seconds_per_step": 36}
    plan = plan_from_dict(data)
    cont = plan_continuation(resolve(plan, recipe), requeue=True)
    assert cont.training_seconds == pytest.approx(72000, rel=0.01)
    assert cost_text(cont, plan.train) == "≈ 160 GPU-hours (2 nodes × 4 GPUs × ≈ 20h)"
    one = replace(plan.train, nodes=1, gpus=0)
    assert cost_text(cont, one) == "≈ 20 node-hours (no GPU × ≈ 20h)"
    rows = {r.name: r for r in check_continuation(Project(plan.project_home, runner=slurm_runner), resolve(plan, recipe))}
    assert rows["train cost"].message == "≈ 160 GPU-hours (2 nodes × 4 GPUs × ≈ 20h)"


def test_a_training_of_seconds_costs_less_than_a_hundredth_not_a_long_decimal(tmp_path):
    from hpcwizard.jobs.continuation import cost_text, plan_continuation

    recipe = get_recipe("demo")
    plan = recipe.default_plan(tmp_path / "p", tmp_path / "d", hf_namespace="alice")  # 2 × 6 steps × 0.2 s, and the startup
    cont = plan_continuation(resolve(plan, recipe), requeue=True)
    assert cost_text(cont, plan.train) == "< 0.01 node-hours (no GPU × ≈ 3s)"
    assert cost_text(cont, replace(plan.train, gpus=1)) == "< 0.01 GPU-hours (1 GPU × ≈ 3s)"

"""Chained submission on the real local cluster: all or nothing, exactly once."""

from __future__ import annotations

import json

import pytest

from helpers import wait_for
from hpcwizard.cli import main
from hpcwizard.demo import write_token_file
from hpcwizard.jobs.submit import ChainRefused, submit_chain
from hpcwizard.project.home import Project
from hpcwizard.project.recipe import get_recipe
from hpcwizard.project.resolved import resolve
from hpcwizard.project.state import load_state
from hpcwizard.slurm import JobState, SlurmClient


def test_refused_chain_leaves_no_job_queued(tmp_path, slurm_runner):
    recipe = get_recipe("demo")
    # 3 GPUs on a node with 2: setup is accepted, train refused.
    plan = recipe.default_plan(tmp_path / "proj", hf_namespace="alice",
                               train={"partition": "gpu", "gpus": 3, "cpus": 1, "mem": "1G", "time": "00:10:00"})
    slurm = SlurmClient(slurm_runner)
    before = {e.job_id for e in slurm.queue(me=True)}
    with pytest.raises(ChainRefused) as caught:
        submit_chain(Project(plan.project_home, runner=slurm_runner), resolve(plan, recipe))
    message = caught.value.one_line()
    assert "Slurm refused job train" in message
    assert "nothing was submitted" in message
    # Nothing new stays queued (the cancelled setup job may linger as CANCELLED).
    live = [e for e in slurm.queue(me=True) if e.job_id not in before and e.state in (JobState.PENDING, JobState.RUNNING)]
    assert live == []
    assert load_state(plan.state_dir).submissions == []


def test_submit_without_a_token_file_for_the_setup_job_submits_nothing(tmp_path, slurm_runner, capsys, hf_home,
                                                                       monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_only_in_env")  # not passed into jobs: the file is what counts
    plan = get_recipe("demo").default_plan(tmp_path / "proj", hf_namespace="alice")
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text(plan.to_yaml())
    assert main(["submit", str(plan_file)]) == 2
    err = capsys.readouterr().err
    assert f"no Hugging Face token file at {hf_home / 'token'}" in err and "nothing was submitted" in err
    assert "hf_only_in_env" not in err
    assert load_state(plan.state_dir).submissions == []


def test_submit_records_the_chain_and_refuses_a_second_submit(tmp_path, slurm_runner, capsys, hf_home):
    recipe = get_recipe("demo")
    write_token_file(hf_home, "hf_for_the_jobs")
    plan = recipe.default_plan(tmp_path / "proj", hf_namespace="alice")
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text(plan.to_yaml())
    slurm = SlurmClient(slurm_runner)
    submitted = []
    try:
        assert main(["submit", str(plan_file), "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        jobs = out["jobs"]
        submitted = [j["id"] for j in jobs]
        assert [j["name"] for j in jobs] == ["setup", "train"]
        assert jobs[0]["dependency"] is None
        assert jobs[1]["dependency"] == f"afterok:{jobs[0]['id']}"
        assert all(j["partition"] == "cpu" for j in jobs)

        state = load_state(plan.state_dir)
        assert [s.job_ids for s in state.submissions] == [submitted]

        # The train job waits on setup through a real Slurm dependency.
        entries = {e.job_id: e for e in slurm.queue(submitted)}
        train = entries.get(submitted[1])
        if train is not None and train.state == JobState.PENDING:
            assert train.dependency_raw.startswith(f"afterok:{submitted[0]}")

        assert main(["submit", str(plan_file)]) == 2
        err = capsys.readouterr().err
        assert "already submitted" in err and submitted[0] in err and "--force" in err

        assert main(["submit", str(plan_file), "--force", "--json"]) == 0
        again = [j["id"] for j in json.loads(capsys.readouterr().out)["jobs"]]
        submitted += again
        assert len(load_state(plan.state_dir).submissions) == 2
    finally:
        slurm.cancel(submitted)


def test_logs_folder_exists_before_jobs_start(tmp_path, slurm_runner):
    recipe = get_recipe("demo")
    home = tmp_path / "it's a $(touch PWNED) home"
    plan = recipe.default_plan(home, hf_namespace="alice")
    slurm = SlurmClient(slurm_runner)
    submission = submit_chain(Project(plan.project_home, runner=slurm_runner), resolve(plan, recipe))
    try:
        assert (home / "logs").is_dir()
        setup_id = submission.jobs[0].job_id
        # The setup job runs (and fails: no hub here) and writes its log in the hostile home.
        wait_for("the setup log", lambda: list((home / "logs").glob(f"*-{setup_id}.out")), timeout=60)
        assert not list(tmp_path.rglob("PWNED"))
    finally:
        slurm.cancel(submission.job_ids)


class RefuseTrainSubmission:
    """The real local runner, except the train job's real sbatch gets a bad partition.

    Fault injection on the way to the real Slurm, which does the refusing: it
    exercises the cancel-what-was-accepted path that --test-only normally
    pre-empts.
    """

    def __init__(self, runner):
        self.runner = runner

    def run(self, argv, **kwargs):
        argv = list(argv)
        if "sbatch" in argv and "--test-only" not in argv and argv[-1].endswith("_train.sbatch"):
            argv.insert(argv.index("sbatch") + 1, "--partition=does-not-exist")
        return self.runner.run(argv, **kwargs)

    def which(self, program):
        return self.runner.which(program)


def test_refusal_after_acceptance_cancels_the_accepted_jobs(tmp_path, slurm_runner):
    recipe = get_recipe("demo")
    plan = recipe.default_plan(tmp_path / "proj", hf_namespace="alice")
    slurm = SlurmClient(slurm_runner)
    with pytest.raises(ChainRefused) as caught:
        submit_chain(Project(plan.project_home, runner=RefuseTrainSubmission(slurm_runner)), resolve(plan, recipe))
    message = caught.value.one_line()
    assert "Slurm refused job train" in message and "cancelled the accepted jobs" in message
    setup_id = message.split("cancelled the accepted jobs ")[1].split(";")[0].strip()
    entry = wait_for("the setup job", lambda: next(iter(slurm.queue([setup_id])), None) or "gone", timeout=10)
    assert entry == "gone" or entry.state == JobState.CANCELLED
    assert load_state(plan.state_dir).submissions == []


def test_sbatch_variables_left_in_the_users_shell_do_not_override_the_plan(tmp_path, slurm_runner, capsys,
                                                                           hf_home, monkeypatch):
    """sbatch ranks SBATCH_* above the script's #SBATCH lines: a stale
    ~/.bashrc export would move, shorten or hide every job (and SBATCH_WAIT
    would hang the submit until the job ends)."""
    recipe = get_recipe("demo")
    write_token_file(hf_home, "hf_for_the_jobs")
    plan = recipe.default_plan(tmp_path / "proj", hf_namespace="alice")
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text(plan.to_yaml())
    for name, value in {"SBATCH_PARTITION": "nosuchpartition", "SBATCH_TIMELIMIT": "1",
                        "SBATCH_OUTPUT": str(tmp_path / "elsewhere-%j.out"), "SBATCH_MEM_PER_NODE": "1",
                        "SBATCH_JOB_NAME": "not-the-plans", "SBATCH_WAIT": "1", "SBATCH_ARRAY_INX": "0-3"}.items():
        monkeypatch.setenv(name, value)
    slurm = SlurmClient(slurm_runner)
    submitted: list[str] = []
    try:
        assert main(["submit", str(plan_file), "--json"]) == 0, capsys.readouterr().err
        submitted = [job["id"] for job in json.loads(capsys.readouterr().out)["jobs"]]
        for job_id, name in zip(submitted, ("setup", "train")):
            shown = slurm_runner.run(["scontrol", "show", "job", job_id]).stdout
            assert "Partition=cpu " in shown and "TimeLimit=00:10:00" in shown, shown
            assert f"JobName={plan.job_prefix}{name}" in shown and "ArrayJobId" not in shown, shown
            assert f"StdOut={plan.logs_dir}/" in shown and "MinMemoryNode=1G" in shown, shown
    finally:
        slurm.cancel(submitted)


def test_the_check_says_which_sbatch_variables_of_the_shell_the_jobs_leave_out():
    from hpcwizard.checks.preflight import check_sbatch_variables
    from hpcwizard.shell import LocalRunner

    only_policy = check_sbatch_variables(LocalRunner(extra_env={"SBATCH_CONSTRAINT": "a100"}))
    assert not any("SBATCH_CONSTRAINT" in row.message for row in only_policy)
    [row] = check_sbatch_variables(LocalRunner(extra_env={"SBATCH_PARTITION": "debug", "SBATCH_TIMELIMIT": "30",
                                                          "SBATCH_CONSTRAINT": "a100"}))
    assert row.level.value == "warn" and row.group == "slurm"
    assert row.message.startswith("SBATCH_PARTITION, SBATCH_TIMELIMIT set in your shell")
    assert "SBATCH_CONSTRAINT" not in row.message  # site policy is kept, and not reported

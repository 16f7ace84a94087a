"""The DependencyNeverSatisfied doctor without the TUI, on the real local cluster.

Chains are tiny sbatch scripts written here and recorded in the project state
exactly as :func:`hpcwizard.jobs.submit.submit_chain` records them. The cluster is
shared with other modules: every test cancels what it submitted.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import wait_for
from hpcwizard.jobs.resubmit import (
    Diagnosis,
    ResubmitError,
    cancel_chain,
    chain_of,
    dependents_of,
    diagnose,
    resubmit_failed,
    where_it_logged,
    with_exit_code,
)
from hpcwizard.jobs.status import take_snapshot
from hpcwizard.project.home import Project
from hpcwizard.project.plan import job_prefix_for
from hpcwizard.project.state import (
    ProjectState,
    Submission,
    SubmittedJob,
    load_state,
    now_iso,
    update_state,
)
from hpcwizard.slurm import SlurmClient

pytestmark = pytest.mark.timeout(180)

WAIT = 60.0




def write_script(project_home: Path, name: str, body: str, header: str = "") -> Path:
    """A tiny job script like the rendered ones: logs/%x-%j.out/.err, 1 CPU;
    ``header``: more ``#SBATCH`` lines (a later ``--time`` wins)."""
    scripts = project_home / "hpcwizard" / "runs" / "test"
    scripts.mkdir(parents=True, exist_ok=True)
    path = scripts / f"{name}.sbatch"
    path.write_text(
        "#!/bin/bash\n"
        f"#SBATCH --job-name={job_prefix_for(project_home)}{name}\n"
        "#SBATCH --output=logs/%x-%j.out\n"
        "#SBATCH --error=logs/%x-%j.err\n"
        "#SBATCH --cpus-per-task=1\n"
        "#SBATCH --mem=64M\n"
        "#SBATCH --time=2\n"
        f"{header}"
        f"{body}\n"
    )
    return path


def rewrite_body(script: Path | str, body: str) -> None:
    """Keep the #! and #SBATCH header, replace the commands (the user's fix)."""
    script = Path(script)
    header = [line for line in script.read_text().splitlines() if line.startswith("#")]
    script.write_text("\n".join(header) + f"\n{body}\n")


def submit_test_chain(project_home: Path, runner, jobs: list[tuple[str, str]],
                      headers: dict[str, str] | None = None) -> Submission:
    """Submit ``jobs`` (name, body) as an afterok chain and record it;
    ``headers``: more ``#SBATCH`` lines by job name."""
    project_home.mkdir(parents=True, exist_ok=True)
    (project_home / "logs").mkdir(exist_ok=True)
    slurm = SlurmClient(runner)
    accepted: list[SubmittedJob] = []
    previous = None
    for name, body in jobs:
        script = write_script(project_home, name, body, (headers or {}).get(name, ""))
        job_id = slurm.submit(str(script), dependency=[previous] if previous else None, workdir=str(project_home))
        accepted.append(SubmittedJob(
            name=name, slurm_name=f"{job_prefix_for(project_home)}{name}", job_id=job_id, partition="cpu",
            script=str(script), dependency=(f"afterok:{previous}",) if previous else (),
        ))
        previous = job_id
    submission = Submission("test-fingerprint", now_iso(), str(script.parent), tuple(accepted))
    update_state(project_home / "hpcwizard", lambda state: state.submissions.append(submission))
    return submission


def all_ids(project_home: Path) -> list[str]:
    return [j for s in load_state(project_home / "hpcwizard").submissions for j in s.job_ids]


def row(project_home: Path, runner, job_id: str):
    snapshot = take_snapshot(Project(project_home, runner=runner))
    return next((r for r in snapshot.jobs if r.job_id == job_id), None)


# --------------------------------------------------------------------------
# Pure chain logic (no cluster)


def _state() -> ProjectState:
    a = SubmittedJob("setup", "p-setup", "10", "cpu", "/s/setup.sbatch")
    b = SubmittedJob("train", "p-train", "11", "cpu", "/s/train.sbatch", ("afterok:10",))
    c = SubmittedJob("eval", "p-eval", "12", "cpu", "/s/eval.sbatch", ("afterok:11",))
    other = SubmittedJob("setup", "p-setup", "20", "cpu", "/s/setup.sbatch")
    again = SubmittedJob("train", "p-train", "31", "cpu", "/s/train.sbatch", ("afterok:10",))
    return ProjectState(submissions=[
        Submission("f", "t1", "/s", (a, b, c)),
        Submission("f", "t2", "/s", (other,)),
        Submission("f", "t3", "/s", (again,)),
    ])


def test_dependents_follow_the_recorded_chain_transitively():
    state = _state()
    assert [j.job_id for j in dependents_of(state, "10")] == ["11", "31", "12"]
    assert [j.job_id for j in dependents_of(state, "11")] == ["12"]
    assert dependents_of(state, "12") == []
    assert [j.job_id for j in chain_of(state, "12")] == ["10", "11", "12", "31"]
    assert [j.job_id for j in chain_of(state, "20")] == ["20"]
    assert chain_of(state, "999") == []


def test_a_timeout_or_oom_is_explained_as_such_not_as_an_exit_code():
    """A TIMEOUT's "exit code 0:0" read as success; the advice to "fix the
    cause (edit the script or the data)" fits neither a time nor a memory limit."""
    from hpcwizard.jobs.resubmit import fix_advice, how_it_ended
    from hpcwizard.jobs.status import JobRow

    def parent(state: str, exit_code: str) -> JobRow:
        return JobRow("10", "train", "p-train", state, None, None, "gpu", 7200, 7200, None, exit_code, "squeue",
                      "/p/logs/p-train-10.out", "/p/logs/p-train-10.err", "/s/train.sbatch")

    stuck = (JobRow("11", "eval", "p-eval", "PENDING", "DependencyNeverSatisfied", "afterok:10(failed)", "cpu",
                    0, 60, None, None, "squeue", "/p/logs/e.out", "/p/logs/e.err"),)
    timeout = Diagnosis(parent("TIMEOUT", "0:0"), stuck).explain()
    assert "hit its time limit of 2:00:00 (TIMEOUT)" in timeout and "exit code" not in timeout
    # The sbatch files say "edit the plan, not this file": so does the advice.
    assert "raise this job's time in the plan" in fix_advice(parent("TIMEOUT", "0:0"))
    assert "the wizard's Slurm step" in fix_advice(parent("TIMEOUT", "0:0"))
    assert "#SBATCH" not in fix_advice(parent("TIMEOUT", "0:0"))
    assert how_it_ended(parent("OUT_OF_MEMORY", "0:125")) == "ran out of memory (OUT_OF_MEMORY)"
    assert "raise this job's mem in the plan" in fix_advice(parent("OUT_OF_MEMORY", "0:125"))
    assert how_it_ended(parent("FAILED", "3:0")) == "ended FAILED, exit code 3:0"
    assert fix_advice(parent("FAILED", "3:0")).startswith("Fix the cause first: in the data or the code")
    assert "edit the script" not in fix_advice(parent("FAILED", "3:0"))


# --------------------------------------------------------------------------
# On the real cluster


def test_doctor_explains_and_resubmit_completes_the_chain(tmp_path, slurm_runner):
    home = tmp_path / "proj"
    project = Project(home, runner=slurm_runner)
    submission = submit_test_chain(home, slurm_runner, [
        ("prep", "echo preparing; echo 'RuntimeError: no data' >&2; exit 3"),
        ("train", "echo training; sleep 1"),
        ("eval", "echo evaluating"),
    ])
    prep, train, evaluate = submission.job_ids
    slurm = SlurmClient(slurm_runner)
    try:
        def stuck():
            snapshot = take_snapshot(project)
            return snapshot if any(r.job_id == train and r.never_runs for r in snapshot.jobs) else None

        snapshot = wait_for("train to be DependencyNeverSatisfied", stuck, WAIT)
        diagnoses = diagnose(project, snapshot)
        assert len(diagnoses) == 1
        diagnosis = with_exit_code(diagnoses[0], slurm)
        assert diagnosis.parent.job_id == prep
        assert diagnosis.parent.state == "FAILED"
        assert diagnosis.parent.exit_code == "3:0"
        # The grandchild pends on "Dependency" only, but it is just as stuck.
        assert [r.job_id for r in diagnosis.stuck] == [train, evaluate]
        text = diagnosis.explain()
        assert f"prep ({prep})" in text and "FAILED" in text and "3:0" in text
        logs = where_it_logged(diagnosis.parent, str(home))
        assert f"\n  logs/{diagnosis.parent.slurm_name}-{prep}.err" in logs  # a line of its own

        rewrite_body(submission.jobs[0].script, "echo fixed; exit 0")
        result = resubmit_failed(project, prep)
        assert set(result.new_ids) == {prep, train, evaluate}
        assert set(result.cancelled) == {train, evaluate}
        new_prep, new_train, new_eval = (result.new_ids[j] for j in (prep, train, evaluate))

        state = load_state(home / "hpcwizard")
        assert len(state.submissions) == 2
        recorded = state.submissions[-1]
        assert recorded.job_ids == [new_prep, new_train, new_eval]
        assert recorded.jobs[1].dependency == (f"afterok:{new_prep}",)
        assert recorded.jobs[2].dependency == (f"afterok:{new_train}",)
        assert recorded.jobs[0].script == submission.jobs[0].script

        def states():
            rows = {r.job_id: r.state for r in take_snapshot(project).jobs}
            return rows if all(rows.get(j) == "COMPLETED" for j in (new_prep, new_train, new_eval)) else None

        rows = wait_for("the new chain to complete", states, timeout=90)
        assert rows[train] == "CANCELLED" and rows[evaluate] == "CANCELLED"
        assert rows[prep] == "FAILED"
        out = home / "logs" / f"{recorded.jobs[0].slurm_name}-{new_prep}.out"
        assert out.read_text().strip() == "fixed"
        # Nothing is stuck any more.
        assert diagnose(project, take_snapshot(project)) == []
    finally:
        slurm.cancel(all_ids(home))


def test_refused_resubmit_leaves_the_old_chain_alone(tmp_path, slurm_runner):
    home = tmp_path / "proj"
    project = Project(home, runner=slurm_runner)
    submission = submit_test_chain(home, slurm_runner, [("prep", "exit 1"), ("train", "echo never")])
    prep, train = submission.job_ids
    slurm = SlurmClient(slurm_runner)
    try:
        wait_for("train to be stuck", lambda: (r := row(home, slurm_runner, train)) and r.never_runs, WAIT)
        # The "fix" breaks the script: Slurm refuses it; nothing changes.
        script = Path(submission.jobs[0].script)
        script.write_text(script.read_text().replace("#SBATCH --mem=64M", "#SBATCH --partition=does-not-exist"))
        with pytest.raises(ResubmitError) as caught:
            resubmit_failed(project, prep)
        assert "the old chain is unchanged" in caught.value.one_line()
        assert len(load_state(home / "hpcwizard").submissions) == 1
        still = row(home, slurm_runner, train)
        assert still.state == "PENDING" and still.never_runs

        with pytest.raises(ResubmitError):
            resubmit_failed(project, "424242")  # not ours
    finally:
        slurm.cancel(all_ids(home))


def test_cancel_chain_cancels_every_active_job_of_the_chain(tmp_path, slurm_runner):
    home = tmp_path / "proj"
    project = Project(home, runner=slurm_runner)
    submission = submit_test_chain(home, slurm_runner, [("a", "sleep 60"), ("b", "sleep 1"), ("c", "sleep 1")])
    slurm = SlurmClient(slurm_runner)
    try:
        active = [r.job_id for r in take_snapshot(project).jobs if r.active]
        assert set(active) == set(submission.job_ids)
        asked = cancel_chain(project, submission.job_ids[1], active_ids=active)
        assert asked == submission.job_ids

        def all_cancelled():
            rows = {r.job_id: r.state for r in take_snapshot(project).jobs}
            return all(rows.get(j) == "CANCELLED" for j in submission.job_ids)

        wait_for("the chain to be cancelled", all_cancelled, WAIT)
    finally:
        slurm.cancel(submission.job_ids)


def test_a_train_job_of_the_recipe_resumes_from_its_checkpoint_and_a_timeout_of_it_needs_no_fix(tmp_path):
    from dataclasses import replace

    from hpcwizard.jobs.resubmit import continues_from_checkpoint, fix_advice, resumes_from_checkpoint
    from hpcwizard.jobs.status import JobRow
    from hpcwizard.project.recipe import get_recipe

    runs = tmp_path / "runs"
    runs.mkdir()
    plan = get_recipe("demo").default_plan(tmp_path / "p", tmp_path / "d", hf_namespace="alice")
    (runs / "plan.yaml").write_text(plan.to_yaml())
    setup = SubmittedJob("setup", "p-setup", "10", "cpu", str(runs / "setup.sbatch"))
    train = SubmittedJob("train", "p-train", "11", "gpu", str(runs / "train.sbatch"), ("afterok:10",))
    older = SubmittedJob("train", "p-train", "5", "gpu", "/gone/train.sbatch")  # no plan beside it: by its name
    state = ProjectState(submissions=[Submission("f", "t", str(runs), (setup, train)),
                                      Submission("f", "t0", "/gone", (older,))])
    project = Project(tmp_path / "p")
    assert resumes_from_checkpoint(project, "11", state=state) and resumes_from_checkpoint(project, "5", state=state)
    assert not resumes_from_checkpoint(project, "10", state=state)
    assert not resumes_from_checkpoint(project, "99", state=state)

    row = JobRow(job_id="11", name="train", slurm_name="p-train", state="TIMEOUT", reason=None, dependency=None,
                 partition="gpu", elapsed=60, time_limit=60, start=None, exit_code="0:0", source="sacct",
                 log_out="/p/logs/p-train-11.out", log_err="/p/logs/p-train-11.err", script=train.script)
    assert continues_from_checkpoint(row) and "Nothing to change first" in fix_advice(row, resumes=True)
    assert "Give it more time first" in fix_advice(row)  # not known to resume: more time first
    assert not continues_from_checkpoint(replace(row, state="FAILED"))
    stuck = replace(row, job_id="12", name="convert", state="PENDING", reason="DependencyNeverSatisfied")
    explained = Diagnosis(parent=row, stuck=(stuck,)).explain(resumes=True)
    assert "Continue train from its latest checkpoint (its dependents follow it)" in explained

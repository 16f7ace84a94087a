"""The status layer: what a snapshot says about each job, and how the job
table and ``hpcwizard status --once`` print it (they print times alike)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from helpers import wait_for
from hpcwizard.cli import print_status_table
from hpcwizard.jobs.status import (
    JobRow,
    StatusSnapshot,
    current_reason,
    format_elapsed_limit,
    take_snapshot,
)
from hpcwizard.project.files import LOCAL_FILES
from hpcwizard.project.home import Project
from hpcwizard.slurm import JobState, SlurmClient
from hpcwizard.tui.widgets.job_table import COLUMNS, format_start, row_cells
from test_resubmit import all_ids, submit_test_chain

TIME, START = ([key for key, _ in COLUMNS].index(key) for key in ("time", "start"))

pytestmark = pytest.mark.timeout(120)


def a_row(**changes) -> JobRow:
    row = JobRow(job_id="7", name="train", slurm_name="hw-proj-train", state="RUNNING", reason=None,
                 dependency=None, partition="gpu", elapsed=10, time_limit=60, start="2026-12-02T18:00:00",
                 exit_code=None, source="squeue", log_out="/p/logs/hw-proj-train-7.out",
                 log_err="/p/logs/hw-proj-train-7.err")
    return replace(row, **changes)


def test_an_ended_job_keeps_only_a_reason_that_explains_its_end():
    assert current_reason(JobState.PENDING, "Resources") == "Resources"
    assert current_reason(JobState.PENDING, "Dependency") == "Dependency"
    # squeue keeps a cancelled job's last pending reason: stale news.
    assert current_reason(JobState.CANCELLED, "Resources") is None
    assert current_reason(JobState.CANCELLED, "Dependency") is None
    assert current_reason(JobState.CANCELLED, "JobHeldUser") is None
    # Reasons that say why it ended, or why it never ran, stay.
    assert current_reason(JobState.FAILED, "NonZeroExitCode") == "NonZeroExitCode"
    assert current_reason(JobState.TIMEOUT, "TimeLimit") == "TimeLimit"
    assert current_reason(JobState.CANCELLED, "DependencyNeverSatisfied") == "DependencyNeverSatisfied"


def test_a_held_job_shows_held_not_an_estimate_and_a_job_that_never_started_no_start():
    held = a_row(state="PENDING", reason="JobHeldUser", start="2026-12-02T18:00:00")
    assert held.held and format_start(held) == "held"
    assert format_start(a_row(state="PENDING", reason="JobHeldAdmin")) == "held"
    assert format_start(a_row(state="PENDING", reason="Resources")) == "~12-02 18:00"
    assert format_start(a_row(state="CANCELLED", start=None)) == "-"
    assert format_start(a_row()) == "12-02 18:00"


def test_elapsed_and_limit_read_the_same_in_the_table_and_the_cli(capsys):
    assert format_elapsed_limit(1, None) == "0:01 / ?"  # sacct does not say the limit
    assert format_elapsed_limit(65, 3600) == "1:05 / 1:00:00"
    assert format_elapsed_limit(None, None) == "-"
    rows = [a_row(job_id="5", elapsed=1, time_limit=None, state="COMPLETED", source="sacct"),
            a_row(job_id="6", state="PENDING", reason="JobHeldUser", elapsed=0, time_limit=120)]
    assert [row_cells(r)[TIME].plain for r in rows] == ["0:01 / ?", "0:00 / 2:00"]
    print_status_table(StatusSnapshot("/p", "now", tuple(rows)))
    out = capsys.readouterr().out
    assert "0:01 / ?" in out and "0:00 / 2:00" in out
    assert "start ~" not in out  # a held job's estimate assumes a release


def test_a_job_cancelled_while_pending_shows_no_reason_and_no_start(tmp_path: Path, slurm_runner):
    """On the real cluster: squeue keeps the cancelled job's "Dependency"
    reason and gives it a start time (the moment it was cancelled)."""
    home = tmp_path / "proj"
    submission = submit_test_chain(home, slurm_runner, [("blocker", "sleep 60"), ("waiter", "echo never")])
    blocker, waiter = submission.job_ids
    slurm = SlurmClient(slurm_runner)
    try:
        wait_for("the blocker to run", lambda: slurm.queue([blocker])[0].state.value == "RUNNING", 60)
        slurm.cancel([waiter])

        def cancelled():
            rows = {r.job_id: r for r in take_snapshot(Project(home, runner=slurm_runner)).jobs}
            return rows if rows.get(waiter) and rows[waiter].state == "CANCELLED" else None

        rows = wait_for("the waiter cancelled", cancelled, 60)
        row = rows[waiter]
        assert row.reason is None and row.start is None
        cells = [cell.plain for cell in row_cells(row)]
        assert cells[3] == "" and cells[START] == "-"
        # The job that runs keeps its real start.
        assert rows[blocker].start is not None and row_cells(rows[blocker])[START].plain != "-"
    finally:
        slurm.cancel(all_ids(home))


# --------------------------------------------------------------------------
# Train jobs as trainings (no cluster: rows as Slurm would give them, real files)


def training_project(tmp_path: Path, *, steps: int = 600, signal: bool = False):
    """A project whose chain (setup → train) was submitted with a demo plan
    of two stages of ``steps`` steps; returns (home, train log path)."""
    from hpcwizard.project.recipe import get_recipe
    from hpcwizard.project.state import Submission, SubmittedJob, update_state

    home = tmp_path / "proj"
    runs = home / "hpcwizard" / "runs" / "1"
    runs.mkdir(parents=True)
    (home / "logs").mkdir()
    plan = get_recipe("demo").default_plan(home, tmp_path / "data", hf_namespace="alice",
                                           params={"max_train_steps": steps})
    (runs / "plan.yaml").write_text(plan.to_yaml())
    header = "#!/bin/bash\n#SBATCH --time=4\n" + ("#SBATCH --signal=B:USR1@120\n" if signal else "")
    (runs / "train.sbatch").write_text(header + "python train.py\n")
    (runs / "setup.sbatch").write_text("#!/bin/bash\necho setup\n")
    jobs = (SubmittedJob("setup", "hw-setup", "6", "cpu", str(runs / "setup.sbatch")),
            SubmittedJob("train", "hw-train", "7", "gpu", str(runs / "train.sbatch"), ("afterok:6",)))
    update_state(home / "hpcwizard", lambda state: state.submissions.append(
        Submission("fp", "now", str(runs), jobs)))
    return home, home / "logs" / "hw-train-7.out"


def training_rows(home: Path, **changes) -> StatusSnapshot:
    train = a_row(slurm_name="hw-train", log_out=str(home / "logs" / "hw-train-7.out"),
                  log_err=str(home / "logs" / "hw-train-7.err"), elapsed=100, time_limit=240)
    setup = a_row(job_id="6", name="setup", slurm_name="hw-setup", state="COMPLETED", source="sacct",
                  log_out=str(home / "logs" / "hw-setup-6.out"), log_err=str(home / "logs" / "hw-setup-6.err"))
    return StatusSnapshot(str(home), "now", (setup, replace(train, **changes)))


def bar(step: int, total: int, remaining: str, rate: str = "2.00it/s") -> str:
    return f"Steps: {100 * step // total:3d}%|##        | {step}/{total} [00:10<{remaining}, {rate}, loss=0.1]\n"


def test_a_continuing_training_shows_its_segment_and_overall_progress(tmp_path):
    from hpcwizard.jobs.status import TrainingWatch
    from hpcwizard.project.state import load_state

    home, log = training_project(tmp_path, steps=600)
    log.write_text(
        "[2026-01-02 01:00:00] [hpcwizard] segment 1 of ~3, starting\n"
        "[2026-01-02 01:00:00] stage 1\n" + "".join(bar(i, 600, "0:10") for i in range(1, 400))
        + "[2026-01-02 01:04:00] [hpcwizard] segment 1 stopped at the time limit; requeued to continue from "
          "checkpoint-398\n")
    state = load_state(home / "hpcwizard")
    watch = TrainingWatch(LOCAL_FILES)
    # Requeued: pending again, its log says so.
    status = watch.update(training_rows(home, state="PENDING", reason="BeginTime", elapsed=0), state)["7"]
    assert set(watch.statuses) == {"7"}  # setup is no training
    assert status.requeued and not status.ended and status.continues
    assert status.summary() == "continuing: segment 2 of ~3"
    assert (status.overall.step, status.overall.total) == (399, 1200)
    # Segment 2 runs and reaches stage 2: the appended lines are read, nothing else.
    with open(log, "a") as handle:
        handle.write("[2026-01-02 01:06:00] [hpcwizard] segment 2 of ~3, resumed from checkpoint-398\n"
                     "[2026-01-02 01:06:00] stage 1\nResuming from checkpoint /p/demo/stage1/checkpoint-398\n"
                     + "".join(bar(i, 600, "0:10") for i in range(399, 601))
                     + "[2026-01-02 01:08:00] stage 2\n" + bar(60, 600, "4:30"))
    status = watch.update(training_rows(home, state="RUNNING", elapsed=30), state)["7"]
    assert not status.requeued and status.summary() == "segment 2 of ~3" and status.stage == 2
    assert (status.overall.step, status.overall.total, status.eta_seconds) == (660, 1200, 270)
    assert status.limit_in is None  # it continues: the limit is no news
    # Ended: the final state says it; no live ETA.
    status = watch.update(training_rows(home, state="COMPLETED", source="sacct"), state)["7"]
    assert status.ended and status.eta_seconds is None
    assert watch._logs == {}  # let go


def test_a_training_without_continuation_is_warned_before_its_time_limit(tmp_path):
    from hpcwizard.jobs.status import TrainingWatch
    from hpcwizard.project.state import load_state

    home, log = training_project(tmp_path, steps=600)
    log.write_text("[2026-01-02 01:00:00] stage 1\n" + bar(100, 600, "4:10"))
    state = load_state(home / "hpcwizard")
    watch = TrainingWatch(LOCAL_FILES)
    # 250 s of stage 1 and 300 s of stage 2 left; 140 s to the limit.
    status = watch.update(training_rows(home, elapsed=100, time_limit=240), state)["7"]
    assert not status.continues and status.eta_seconds == 250 + 300
    assert status.limit_in == 140 and status.summary() == "will hit the time limit in ~2:20"
    # Enough time: no warning.
    assert watch.update(training_rows(home, elapsed=100, time_limit=3600), state)["7"].limit_in is None
    # A script that asks for the warning signal continues by itself: no warning either.
    home2, log2 = training_project(tmp_path / "b", steps=600, signal=True)
    log2.write_text("[2026-01-02 01:00:00] stage 1\n" + bar(100, 600, "4:10"))
    status = TrainingWatch(LOCAL_FILES).update(training_rows(home2), load_state(home2 / "hpcwizard"))["7"]
    assert status.continues and status.limit_in is None and status.summary() is None


def test_a_requeued_job_without_separators_still_continues_and_one_that_stopped_says_why(tmp_path):
    from hpcwizard.jobs.status import TrainingWatch
    from hpcwizard.project.state import load_state

    home, log = training_project(tmp_path)
    state = load_state(home / "hpcwizard")
    watch = TrainingWatch(LOCAL_FILES)
    # Pending before it ever ran: no log, nothing to say.
    status = watch.update(training_rows(home, state="PENDING", reason="Dependency"), state)["7"]
    assert not status.requeued and status.summary() is None
    # Its log exists while it pends again: Slurm requeued it (a node failure).
    log.write_text(bar(100, 600, "4:10"))
    status = watch.update(training_rows(home, state="PENDING", reason="BeginTime"), state)["7"]
    assert status.requeued and status.summary() == "continuing (requeued)"
    status = watch.update(training_rows(home, state="REQUEUE_HOLD"), state)["7"]
    assert status.requeued
    with open(log, "a") as handle:
        handle.write("[hpcwizard] segment 3 of ~4, resumed from checkpoint-100\n"
                     "[hpcwizard] segment 3 saved no new checkpoint (still checkpoint-100): not continuing\n")
    status = watch.update(training_rows(home, state="COMPLETING"), state)["7"]
    assert status.stopped and status.summary() == "not continuing: segment 3 saved no new checkpoint (still checkpoint-100)"


def test_a_follow_on_job_is_the_train_job_it_continues(tmp_path: Path, slurm_runner):
    """On a site that does not requeue, a train job submits itself again as a
    new job appending to its log, and records both ids; the snapshot names the
    new job after the recorded one, with its log and script, and says who
    continues whom. Real jobs on the local cluster."""
    import json

    from hpcwizard.jobs.status import TrainingWatch
    from hpcwizard.project.state import load_state

    home = tmp_path / "proj"
    bookkeeping = home / "hpcwizard" / "continuation"
    body = f"""
name=$SLURM_JOB_NAME
if [ -z "${{HPCWIZARD_CONTINUES:-}}" ]; then
    echo "[hpcwizard] segment 1 of ~2, starting"
    new=$(sbatch --parsable --job-name="$name" --dependency="afterany:$SLURM_JOB_ID" --time=2 --mem=64M \\
          --output="logs/$name-$SLURM_JOB_ID.out" --open-mode=append \\
          --export="ALL,HPCWIZARD_CONTINUES=$SLURM_JOB_ID" --wrap='echo "[hpcwizard] segment 2 of ~2, resumed from checkpoint-5"; sleep 60')
    mkdir -p {bookkeeping}
    printf '{{"version": 1, "first_job_id": "%s", "job_ids": ["%s", "%s"]}}\\n' "$SLURM_JOB_ID" "$SLURM_JOB_ID" "$new" \\
        > {bookkeeping}/$name.json
    echo "[hpcwizard] segment 1 stopped at the time limit; requeued to continue from checkpoint-5"
fi
"""
    submission = submit_test_chain(home, slurm_runner, [("train", body)])
    (train,) = submission.job_ids
    slurm = SlurmClient(slurm_runner)
    try:
        def handed_over():
            rows = {r.job_id: r for r in take_snapshot(Project(home, runner=slurm_runner)).jobs}
            follow = [r for r in rows.values() if r.continues == train]
            if rows.get(train) and rows[train].state == "COMPLETED" and follow and follow[0].state == "RUNNING":
                return rows, follow[0]
            return None

        rows, follow = wait_for("the follow-on job running", handed_over, 60)
        assert rows[train].continued_by == follow.job_id
        assert follow.name == "train" and follow.log_out == rows[train].log_out and follow.script == rows[train].script
        assert row_cells(rows[train])[3].plain == f"continued by {follow.job_id}"
        snapshot = take_snapshot(Project(home, runner=slurm_runner))
        statuses = TrainingWatch(LOCAL_FILES).update(snapshot, load_state(home / "hpcwizard"))

        def log_read():
            latest = take_snapshot(Project(home, runner=slurm_runner))
            status = TrainingWatch(LOCAL_FILES).update(latest, load_state(home / "hpcwizard"))
            return status.get(follow.job_id) if status.get(follow.job_id) and status[follow.job_id].segment \
                and status[follow.job_id].segment.segment == 2 else None

        status = wait_for("segment 2 in the shared log", log_read, 30)
        assert status.summary() == "segment 2 of ~2" and not status.requeued
        assert statuses[train].ended
        bookkeeping_file = json.loads((bookkeeping / f"{rows[train].slurm_name}.json").read_text())
        assert bookkeeping_file["job_ids"] == [train, follow.job_id]
    finally:
        ids = [train]
        try:
            ids += json.loads(next(bookkeeping.glob("*.json")).read_text())["job_ids"]
        except (StopIteration, OSError, ValueError):
            pass
        slurm.cancel(ids)

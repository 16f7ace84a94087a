"""The dashboard tells the truth about ended jobs, limits, chains and its own keys.

Issue 14's dashboard items that are not about timing (those are in
tests/test_dashboard_ends.py): the limit recorded at submit, ended jobs with
final figures only, the doctor on a cancelled parent, two-stage progress,
which job is selected, the help and the palette, the doctor's wording.
Real Slurm where Slurm is involved; Textual's pilot for the screens.
"""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import datetime

import pytest

from hpcwizard.jobs.status import JobRow, StatusSnapshot
from hpcwizard.jobs.submit import sbatch_time_limit, submit_chain
from hpcwizard.project.recipe import get_recipe
from hpcwizard.project.state import Submission, SubmittedJob, load_state, now_iso, update_state
from hpcwizard.slurm import JobState, SlurmClient
from hpcwizard.tui.app import make_app
from hpcwizard.tui.messages import SnapshotTaken
from hpcwizard.tui.screens.dashboard import DashboardScreen
from test_dashboard import anyio_backend, until  # noqa: F401 (a fixture)

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(150)]

os.environ["TEXTUAL_ANIMATIONS"] = "none"
FIXED = datetime(2026, 1, 2, 3, 4, 5)


def cells(screen: DashboardScreen, job_id: str) -> dict[str, str]:
    from hpcwizard.tui.widgets.job_table import COLUMNS

    return dict(zip([key for key, _ in COLUMNS], screen.table._shown.get(job_id, ())))


async def the_dashboard(pilot) -> DashboardScreen:
    app = pilot.app
    return await until(pilot, "the dashboard", lambda: isinstance(app.screen, DashboardScreen) and app.screen)


# --------------------------------------------------------------------------
# 5. The Limit column


def test_a_scripts_time_limit_is_read_as_sbatch_reads_it():
    assert sbatch_time_limit("#!/bin/bash\n#SBATCH --time=00:10:00\necho\n") == 600
    assert sbatch_time_limit("#SBATCH --time=2\n#SBATCH --time=1-00:00:00\n") == 86400  # the last wins
    assert sbatch_time_limit("#SBATCH -t 30\n") == 1800
    assert sbatch_time_limit("#SBATCH --mem=1G\n") is None
    assert sbatch_time_limit("#SBATCH --time=soon\n") is None


async def test_the_limit_is_recorded_at_submit_and_shown_after_slurm_forgot_the_job(tmp_path, slurm_runner):
    """Accounting does not say a finished job's limit: the Limit column read
    "?" (or nothing) once squeue forgot a job. The submit records it."""
    recipe = get_recipe("demo")
    home = tmp_path / "proj"
    plan = recipe.default_plan(home, hf_namespace="alice")
    submission = submit_chain(plan, recipe, slurm_runner)
    slurm = SlurmClient(slurm_runner)
    slurm.cancel(submission.job_ids)  # only its record matters here
    recorded = load_state(home / "hpcwizard").submissions[-1].jobs
    assert [job.time_limit for job in recorded] == [600, 600]  # the demo's 00:10:00 each
    # A job of an earlier cluster's life (its ids start again): Slurm knows
    # nothing of it, the record still knows its limit.
    forgotten = SubmittedJob("train", recorded[1].slurm_name, "999999", "cpu", recorded[1].script,
                             time_limit=5400)
    update_state(home / "hpcwizard", lambda state: state.submissions.insert(
        0, Submission("earlier", now_iso(), submission.scripts_dir, (forgotten,))))
    app = make_app(project_home=home, runner=slurm_runner, clock=lambda: FIXED, start_mode="dashboard")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await the_dashboard(pilot)
        await until(pilot, "both chains", lambda: {"999999", *submission.job_ids} <= set(screen.table.rows_by_id))
        assert screen.table.rows_by_id["999999"].state is JobState.FINISHED_UNKNOWN
        assert cells(screen, "999999")["time"] == "- / 1:30:00"
        assert cells(screen, submission.job_ids[0])["time"].endswith(" / 10:00")


def a_row(job_id: str, **changes) -> JobRow:
    row = JobRow(job_id=job_id, name="train", slurm_name="hw-proj-train", state=JobState.RUNNING, reason=None,
                 dependency=None, partition="gpu", elapsed=10, time_limit=3600, start="2026-01-02T03:00:00",
                 exit_code=None, source="squeue", log_out=f"/nonexistent/logs/train-{job_id}.out",
                 log_err=f"/nonexistent/logs/train-{job_id}.err")
    return replace(row, **changes)


async def test_a_limit_nobody_says_any_more_stays_the_last_one_slurm_said(tmp_path):
    """A job submitted before limits were recorded: once squeue forgot it,
    accounting says no limit; the column keeps the one squeue said."""
    app = make_app(project_home=None, clock=lambda: FIXED, start_mode="dashboard")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await the_dashboard(pilot)
        home = str(tmp_path)
        screen.post_message(SnapshotTaken(StatusSnapshot(home, "t1", (a_row("5"),)), 0.1))
        await until(pilot, "the running job", lambda: cells(screen, "5").get("time", "").endswith(" / 1:00:00"))
        done = a_row("5", state=JobState.COMPLETED, elapsed=70, time_limit=None, source="sacct")
        screen.post_message(SnapshotTaken(StatusSnapshot(home, "t2", (done,)), 0.1))
        await until(pilot, "the ended job", lambda: screen.table.rows_by_id["5"].state is JobState.COMPLETED)
        assert cells(screen, "5")["time"] == "1:10 / 1:00:00"

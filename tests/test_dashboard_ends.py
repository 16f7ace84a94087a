"""A job's end shows within seconds, without polling Slurm any harder.

Every job script prints one last line from its exit trap (the templates'
preamble); the dashboard reads the stdout logs of running jobs once a second
and asks Slurm at once when that line appears, or when a job runs past its
time limit. Between refreshes, running jobs' Elapsed ticks on. The cluster
tests set the idle refresh to 300 s: what shows an end sooner is the marker
(or the limit), never the regular poll. Latency and squeue calls per minute
are measured by benchmarks/bench_dashboard_ends.py.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import subprocess
import time
from datetime import datetime
from pathlib import Path

import pytest

from hpcwizard.jobs.logtail import LocalFileSource
from hpcwizard.jobs.poll import END_MARKER, EndingJobs, EndWatch, PollPolicy
from hpcwizard.project.files import LOCAL_FILES
from hpcwizard.project.home import Project
from hpcwizard.project.recipe import get_recipe
from hpcwizard.project.render import render
from hpcwizard.project.resolved import resolve
from hpcwizard.slurm import JobState, SlurmClient
from hpcwizard.tui.app import make_app
from hpcwizard.tui.screens.dashboard import DashboardScreen
from hpcwizard.tui.widgets.job_table import COLUMNS
from test_dashboard import anyio_backend, until  # noqa: F401 (a fixture)
from test_resubmit import all_ids, submit_test_chain

pytestmark = [pytest.mark.anyio]

os.environ["TEXTUAL_ANIMATIONS"] = "none"
FIXED = datetime(2026, 1, 2, 3, 4, 5)


def template_end_trap(tmp_path: Path) -> str:
    """The ``log`` function and the EXIT trap of a rendered job script (the
    demo's train job: every template shares the preamble)."""
    home = tmp_path / "render-home"
    plan = get_recipe("demo").default_plan(home, home / "data", hf_namespace="alice")
    out = tmp_path / "rendered"
    render(Project(plan.project_home), resolve(plan), out).write(out, LOCAL_FILES, logs=False)
    text = next(out.glob("*_train.sbatch")).read_text()
    lines = [line for line in text.splitlines()
             if line.startswith("log() {") or (line.startswith("trap ") and line.endswith(" EXIT"))]
    assert len(lines) == 2, lines
    return "\n".join(lines)


@pytest.fixture
def idle_for_long(monkeypatch):
    """A 300 s refresh: only a marker or a time limit can make the dashboard
    look again within the tests' timeouts."""
    monkeypatch.setattr("hpcwizard.tui.screens.dashboard.PollPolicy",
                        functools.partial(PollPolicy, fast=300.0, idle_max=300.0, finished_max=300.0, interval=300.0))


async def dashboard(pilot) -> DashboardScreen:
    app = pilot.app
    return await until(pilot, "the dashboard", lambda: isinstance(app.screen, DashboardScreen) and app.screen)


def running_in_slurm(runner, job_id: str) -> None:
    """Wait for Slurm to run the job: the dashboard, refreshing every 300 s,
    would not see it start."""
    deadline = time.monotonic() + 60
    while not any(e.state is JobState.RUNNING for e in SlurmClient(runner).queue([job_id])):
        assert time.monotonic() < deadline, f"job {job_id} did not start within 60 s"
        time.sleep(0.2)


def state_of(screen: DashboardScreen, job_id: str) -> JobState | None:
    row = screen.table.rows_by_id.get(job_id)
    return row.state if row is not None else None


# --------------------------------------------------------------------------
# The marker, from the real template, in real bash


@pytest.mark.parametrize(("ending", "body"), [
    ("exit 0", "echo working; exit 0"),
    ("exit 3", "echo working; exit 3"),
    ("a failing command under set -e", "echo working; false; echo never"),
    ("scancel's SIGTERM", "echo working; sleep 30 & wait"),
])
def test_every_job_script_prints_the_end_marker_last_however_it_ends(tmp_path, ending, body):
    script = tmp_path / "job.sh"
    script.write_text("set -Eeuo pipefail\n" + template_end_trap(tmp_path) + "\n" + body + "\n")
    env = {**os.environ, "SLURM_JOB_ID": "4711"}
    process = subprocess.Popen(["bash", str(script)], stdout=subprocess.PIPE, text=True, env=env,
                               start_new_session=True)
    if "SIGTERM" in ending:
        assert process.stdout.readline() == "working\n"
        os.killpg(process.pid, signal.SIGTERM)  # Slurm signals the job's whole process group
    out, _ = process.communicate(timeout=30)
    last = out.strip().splitlines()[-1]
    assert (match := END_MARKER.search(last)) and match.group(1) == "4711", (ending, out)


# --------------------------------------------------------------------------
# The watch and the pacing (no cluster)


def test_end_watch_reports_a_marker_once_whether_it_came_before_or_after_the_watch_began(tmp_path):
    before, after = tmp_path / "a.out", tmp_path / "b.out"
    before.write_text("step 1\n[2026-01-02 03:04:05] [hpcwizard] job 11 ends\n")
    after.write_text("step 1\n")
    watch = EndWatch(LocalFileSource)
    logs = {"11": str(before), "12": str(after), "13": str(tmp_path / "not-yet.out")}
    assert watch.check(logs) == ["11"]  # it ended between two refreshes
    assert watch.check(logs) == []
    with after.open("a") as fh:
        fh.write("step 2\n[2026-01-02 03:04:09] [hpcwizard] job 12 ends\n")
    assert watch.check(logs) == ["12"]
    assert watch.check(logs) == []
    watch.close()


def test_ending_jobs_pace_refreshes_to_a_second_after_a_marker_and_two_past_a_limit():
    now = [0.0]
    ending = EndingJobs(clock=lambda: now[0])
    assert ending.soon() is None
    assert ending.past_its_limit("7") and not ending.past_its_limit("7")  # a refresh once, not every tick
    assert ending.soon() == 2.0
    ending.marker("8")
    assert ending.soon() == 1.0
    now[0] = 16.0  # the marker's window passed; Slurm's limit check is slower
    ending.update(["7", "8"])
    assert ending.soon() == 2.0
    ending.update([])  # both ended
    assert ending.soon() is None
    policy = PollPolicy(fast=2.0, idle_max=32.0, interval=32.0)
    assert policy.next(changed=False, error=False, soon=1.0) == 1.0


# --------------------------------------------------------------------------
# On the cluster


@contextlib.asynccontextmanager
async def dashboard_on_one_job(tmp_path: Path, runner, name: str, body: str, header: str = ""):
    """One job submitted and running, and the dashboard showing it running."""
    home = tmp_path / "proj"
    submission = submit_test_chain(home, runner, [(name, body)], headers={name: header})
    (job,) = submission.job_ids
    running_in_slurm(runner, job)
    app = make_app(project_home=home, runner=runner, clock=lambda: FIXED, start_mode="dashboard")
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            screen = await dashboard(pilot)
            await until(pilot, "the job running", lambda: state_of(screen, job) is JobState.RUNNING)
            yield pilot, screen, job
    finally:
        SlurmClient(runner).cancel(all_ids(home))


@pytest.mark.timeout(150)
async def test_a_job_end_shows_when_its_log_says_so_not_at_the_next_idle_refresh(tmp_path, slurm_runner, idle_for_long):
    body = template_end_trap(tmp_path) + "\nlog started\nsleep 15\nlog done"
    async with dashboard_on_one_job(tmp_path, slurm_runner, "short", body) as (pilot, screen, job):
        polls = screen.polls
        ended = await until(pilot, "the end in the table", lambda: (s := state_of(screen, job))
                            and s.is_finished and s, timeout=60)
        assert ended is JobState.COMPLETED
        assert screen.polls > polls  # well before the idle refresh, 300 s away
        log = Path(screen.table.rows_by_id[job].log_out).read_text()
        assert END_MARKER.search(log.strip().splitlines()[-1])


@pytest.mark.timeout(240)
async def test_a_job_past_its_time_limit_is_looked_at_until_slurm_ends_it(tmp_path, slurm_runner, idle_for_long):
    """No marker here (the script is killed): a job whose Elapsed reached its
    limit is refreshed at once, then every 2 s until Slurm's limit check ends it."""
    async with dashboard_on_one_job(tmp_path, slurm_runner, "slow", "sleep 300", "#SBATCH --time=1\n") as (
            pilot, screen, job):
        await until(pilot, "the limit reached", lambda: job in screen._ending, timeout=90)
        ended = await until(pilot, "the timeout in the table", lambda: (s := state_of(screen, job))
                            and s.is_finished and s, timeout=120)
        assert ended is JobState.TIMEOUT


@pytest.mark.timeout(120)
async def test_elapsed_ticks_between_refreshes(tmp_path, slurm_runner, idle_for_long):
    async with dashboard_on_one_job(tmp_path, slurm_runner, "ticking", "sleep 60") as (pilot, screen, job):
        polls = screen.polls
        time_cell = [key for key, _ in COLUMNS].index("time")
        shown = screen.table._shown[job][time_cell]
        later = await until(pilot, "Elapsed to move on",
                            lambda: (t := screen.table._shown[job][time_cell]) != shown and t,
                            timeout=10)
        assert screen.polls == polls  # no refresh: ticked locally
        assert later.endswith(" / 2:00")

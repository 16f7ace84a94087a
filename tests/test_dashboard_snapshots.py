"""Snapshots of the job dashboard (pytest-textual-snapshot), deterministic.

The scene: a project under a fixed path (``/tmp/hpcwizard-snapshots-dashboard``)
whose state records a submitted chain setup → train → convert; Slurm's answers
are fixed (``SlurmClient.queue`` and ``SlurmClient.finished`` replaced, the
runner refuses any real command): setup COMPLETED (sacct, squeue forgot it),
train RUNNING, convert PENDING on its Dependency. The train job is selected;
its log has tqdm progress, a Trainer loss line and a caught CUDA out-of-memory
traceback (triage colours them), and ends in an unfinished tqdm line.

What depends on time is fixed: the app's clock (the "refreshed" time), the
measured refresh duration (the dashboard's ``time.monotonic``), the poll
interval (a policy whose fast interval is 30 s, so no second refresh happens
while the test runs and the status line always says "every 30 s"); job times
come from the fixed Slurm answers. Animations are off. Update deliberately with
``pytest tests/test_dashboard_snapshots.py --snapshot-update`` and look at the
report.
"""

from __future__ import annotations

import functools
import shutil
import time
from datetime import datetime
from pathlib import Path

import pytest

from helpers import machine_lock
from hpcwizard.jobs.poll import PollPolicy
from hpcwizard.project.plan import job_prefix_for
from hpcwizard.project.state import Submission, SubmittedJob, update_state
from hpcwizard.slurm import (
    ExitStatus,
    FinishedJob,
    FinishedSource,
    JobState,
    QueueEntry,
    SlurmClient,
)
from hpcwizard.tui.app import make_app
from hpcwizard.tui.screens.dashboard import DashboardScreen
from hpcwizard.tui.widgets.progress_panel import ProgressPanel

ROOT = Path("/tmp/hpcwizard-snapshots-dashboard")
HOME = ROOT / "proj"
PREFIX = job_prefix_for(HOME)
RUNS = HOME / "hpcwizard" / "runs" / "20260102-010000"
CLOCK = datetime(2026, 1, 2, 3, 4, 5)

SETUP, TRAIN, CONVERT = "4101", "4102", "4103"
JOBS = (
    SubmittedJob("setup", f"{PREFIX}setup", SETUP, "cpu", str(RUNS / "setup.sbatch")),
    SubmittedJob("train", f"{PREFIX}train", TRAIN, "gpu", str(RUNS / "train.sbatch"), (f"afterok:{SETUP}",)),
    SubmittedJob("convert", f"{PREFIX}convert", CONVERT, "cpu", str(RUNS / "convert.sbatch"),
                 (f"afterok:{TRAIN}",)),
)

SETUP_LOG = (
    "downloading 3 files (2.1 MiB) into /tmp/hpcwizard-snapshots-dashboard/data\n"
    "unpacking frames.tar: 12000 frames\n"
    "setup done in 5:12\n"
)


def _bar(step: int, total: int, elapsed: str, remaining: str, loss: float) -> str:
    done = 10 * step // total
    return (f"Steps: {100 * step // total:3d}%|{'#' * done}{' ' * (10 - done)}| {step}/{total} "
            f"[{elapsed}<{remaining},  4.70s/it, loss={loss:.4f}, lr=1e-05]")


TRAIN_LOG = "".join([
    "stage 1: 12000 frames, base model tiny-base-model, steps 0->1000\n",
    _bar(100, 1000, "07:50", "1:10:30", 0.4812) + "\n",
    _bar(200, 1000, "15:40", "1:02:40", 0.3307) + "\n",
    "{'loss': 0.2719, 'grad_norm': 1.84, 'learning_rate': 1e-05, 'epoch': 0.25}\n",
    _bar(300, 1000, "23:30", "54:50", 0.2719) + "\n",
    _bar(400, 1000, "31:20", "47:00", 0.2254) + "\n",
    "2026-01-02 02:31:40 ERROR __main__: validation at step 400 failed; training continues\n",
    "Traceback (most recent call last):\n",
    '  File "/tmp/hpcwizard-snapshots-dashboard/proj/code/train.py", line 212, in validate\n',
    "    frames = pipeline(batch, num_inference_steps=25)\n",
    ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. "
     "GPU 0 has a total capacity of 39.39 GiB of which 1.12 GiB is free.\n"),
    _bar(500, 1000, "39:10", "39:10", 0.2031) + "\n",
    # tqdm redraws its bar with \r: the last, unfinished line is the live one.
    _bar(520, 1000, "40:44", "37:36", 0.1990) + "\r" + _bar(523, 1000, "40:58", "37:22", 0.1984),
])
LAST_FULL_LINE = _bar(500, 1000, "39:10", "39:10", 0.2031)


class NoCommands:
    """A runner that refuses to run anything: every Slurm answer is fixed."""

    def run(self, argv, **_):
        raise AssertionError(f"the snapshot test ran a real command: {argv}")

    def which(self, program):
        return None


def fake_queue(self, job_ids=None, *, me=False, name_prefix=None, all_states=False):
    """squeue: train runs, convert waits for it; setup is forgotten; a job of
    another project is filtered out by the dashboard."""
    return [
        QueueEntry(TRAIN, f"{PREFIX}train", JobState.RUNNING, None, None, (), "gpu", 2458, 4 * 3600, 1,
                   "gpu01", datetime(2026, 1, 2, 2, 0, 7), datetime(2026, 1, 2, 1, 0, 0), "alice"),
        QueueEntry(CONVERT, f"{PREFIX}convert", JobState.PENDING, "Dependency", f"afterok:{TRAIN}(unfulfilled)",
                   (), "cpu", 0, 30 * 60, 1, "", datetime(2026, 1, 2, 6, 0, 7), datetime(2026, 1, 2, 1, 0, 0),
                   "alice"),
        QueueEntry("4099", "jupyter", JobState.RUNNING, None, None, (), "cpu", 7200, 8 * 3600, 1, "cpu03",
                   datetime(2026, 1, 2, 1, 4, 5), datetime(2026, 1, 2, 1, 4, 0), "alice"),
    ]


def fake_finished(self, job_ids):
    """sacct: setup completed."""
    answers = {
        SETUP: FinishedJob(SETUP, JobState.COMPLETED, ExitStatus(0, 0), 312, datetime(2026, 1, 2, 1, 54, 55),
                           datetime(2026, 1, 2, 2, 0, 7), FinishedSource.SACCT, f"{PREFIX}setup", "cpu", "cpu01"),
    }
    return [answers[str(job_id)] for job_id in job_ids if str(job_id) in answers]


class FrozenTime:
    """The dashboard's ``time`` module with a still monotonic clock: every
    refresh measures 0.0 s (the status line shows that duration)."""

    def __getattr__(self, name):
        return getattr(time, name)

    @staticmethod
    def monotonic() -> float:
        return 1000.0


@pytest.fixture(autouse=True)
def fixed_world(monkeypatch):
    with machine_lock("hpcwizard-snapshots-dashboard"):
        yield from _fixed_world(monkeypatch)


def _fixed_world(monkeypatch):
    shutil.rmtree(ROOT, ignore_errors=True)
    (HOME / "logs").mkdir(parents=True)
    monkeypatch.setenv("TEXTUAL_ANIMATIONS", "none")
    update_state(HOME / "hpcwizard", lambda state: state.submissions.append(
        Submission("fp-snapshot", "2026-01-02T01:00:00+00:00", str(RUNS), JOBS)))
    (HOME / "logs" / f"{PREFIX}setup-{SETUP}.out").write_text(SETUP_LOG)
    (HOME / "logs" / f"{PREFIX}train-{TRAIN}.out").write_text(TRAIN_LOG)
    monkeypatch.setattr(SlurmClient, "queue", fake_queue)
    monkeypatch.setattr(SlurmClient, "finished", fake_finished)
    monkeypatch.setattr("hpcwizard.tui.screens.dashboard.time", FrozenTime())
    monkeypatch.setattr("hpcwizard.tui.screens.dashboard.PollPolicy", functools.partial(PollPolicy, fast=30.0))
    yield
    shutil.rmtree(ROOT, ignore_errors=True)


def dashboard_app():
    return make_app(project_home=HOME, runner=NoCommands(), start_mode="dashboard", clock=lambda: CLOCK)


async def train_selected(pilot):
    """Wait for the first refresh, select train, wait for its log and progress."""
    app = pilot.app
    deadline = time.monotonic() + 20

    async def until(what, predicate):
        while not predicate():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            await pilot.pause(0.05)

    def refreshed():
        screen = app.screen
        return (isinstance(screen, DashboardScreen) and screen.polls >= 1 and not screen.polling
                and set(screen.table.rows_by_id) == {SETUP, TRAIN, CONVERT})

    await until("the first refresh", refreshed)
    screen = app.screen
    # The newest chain's running job is selected: train, not the finished setup.
    train_log = str(HOME / "logs" / f"{PREFIX}train-{TRAIN}.out")

    def log_shown():
        panel = screen.log_panel
        return (panel.path == train_log and panel.shown_lines and panel.shown_lines[-1] == LAST_FULL_LINE
                and "523/1000" in str(panel.query_one("#log-partial").render())
                and "traceback" in panel.counts
                and "step 523/1000" in screen.query_one(ProgressPanel).text)

    await until("the train log", log_shown)
    assert screen.banner_text is None
    assert "refreshed 03:04:05 (0.0 s) · every 30 s · 3 jobs, 2 active" in screen.status_text
    await pilot.pause(0.2)


def test_dashboard_snapshot(snap_compare):
    assert snap_compare(dashboard_app(), terminal_size=(100, 30), run_before=train_selected)


def test_dashboard_snapshot_at_80x24(snap_compare):
    assert snap_compare(dashboard_app(), terminal_size=(80, 24), run_before=train_selected)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # Textual runs on asyncio


@pytest.mark.anyio
async def test_the_newest_submission_is_selected_and_shown_on_first_fill():
    """Opened after a submission, the dashboard selects the new chain's
    running job (not the oldest job of an earlier chain, not the chain's
    finished setup) and scrolls it into view at 80x24."""
    older = tuple(SubmittedJob(f"old{i}", f"{PREFIX}old{i}", str(4001 + i), "cpu", str(RUNS / "old.sbatch"))
                  for i in range(8))
    update_state(HOME / "hpcwizard", lambda state: state.submissions.insert(
        0, Submission("fp-older", "2026-01-01T01:00:00+00:00", str(RUNS), older)))
    app = dashboard_app()
    async with app.run_test(size=(80, 24)) as pilot:
        deadline = time.monotonic() + 20
        while not (isinstance(app.screen, DashboardScreen) and app.screen.polls >= 1):
            assert time.monotonic() < deadline, "timed out waiting for the first refresh"
            await pilot.pause(0.05)
        screen = app.screen
        table = screen.table
        assert table.row_count == 11 and table.selected_job_id == TRAIN
        await pilot.pause(0.3)
        row = table.cursor_row
        shown = table.size.height - 1  # the header stays
        assert table.scroll_y <= row < table.scroll_y + shown, (row, table.scroll_y, shown)
        assert screen.log_panel.path == str(HOME / "logs" / f"{PREFIX}train-{TRAIN}.out")


# A train job that continues across its time limit, back in the queue for its
# next segment (Slurm: PENDING, BeginTime): CONTINUING, never failed, with the
# segment it runs next and its progress over both stages of its plan.
CONTINUING_LOG = "".join([
    "[2026-01-02 01:00:07] [hpcwizard] segment 1 of ~3, starting\n",
    "[2026-01-02 01:00:07] stage 1\n",
    *(_bar(step, 1000, "20:00", "30:00", 0.5 - step / 4000) + "\n" for step in (200, 400, 600, 800, 1000)),
    "[2026-01-02 02:10:00] stage 2\n",
    *(_bar(step, 1000, "10:00", "47:00", 0.3 - step / 4000) + "\n" for step in (100, 200, 300, 400)),
    "[2026-01-02 02:57:40] the time limit is near (USR1): stopping the training\n",
    "[2026-01-02 02:58:10] [hpcwizard] segment 1 stopped at the time limit; requeued to continue from checkpoint-400\n",
])


def continuing_queue(self, job_ids=None, *, me=False, name_prefix=None, all_states=False):
    return [
        QueueEntry(TRAIN, f"{PREFIX}train", JobState.PENDING, "BeginTime", None, (), "gpu", 0, 4 * 3600, 1,
                   "", datetime(2026, 1, 2, 3, 5, 0), datetime(2026, 1, 2, 1, 0, 0), "alice"),
        QueueEntry(CONVERT, f"{PREFIX}convert", JobState.PENDING, "Dependency", f"afterok:{TRAIN}(unfulfilled)",
                   (), "cpu", 0, 30 * 60, 1, "", None, datetime(2026, 1, 2, 1, 0, 0), "alice"),
    ]


async def continuing_train_selected(pilot):
    app = pilot.app
    deadline = time.monotonic() + 20

    async def until(what, predicate):
        while not predicate():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            await pilot.pause(0.05)

    await until("the first refresh", lambda: isinstance(app.screen, DashboardScreen) and app.screen.polls >= 1
                and not app.screen.polling)
    screen = app.screen
    # Nothing runs: the newest chain's next job to run, the continuing train job, is selected.
    await until("the continuing train job", lambda: screen.log_panel.path is not None
                and screen.log_panel.path.endswith(f"train-{TRAIN}.out")
                and screen.query_one(ProgressPanel).text.startswith(
                    "continuing: segment 2 of ~3 · stage 2/2 · step 400/1000"))
    await pilot.pause(0.2)


def test_dashboard_snapshot_of_a_continuing_training_at_80x24(snap_compare, monkeypatch):
    from hpcwizard.project.recipe import get_recipe

    RUNS.mkdir(parents=True, exist_ok=True)
    plan = get_recipe("demo").default_plan(HOME, HOME / "data", hf_namespace="alice",
                                           params={"max_train_steps": 1000})
    (RUNS / "plan.yaml").write_text(plan.to_yaml())
    (HOME / "logs" / f"{PREFIX}train-{TRAIN}.out").write_text(CONTINUING_LOG)
    monkeypatch.setattr(SlurmClient, "queue", continuing_queue)
    assert snap_compare(dashboard_app(), terminal_size=(80, 24), run_before=continuing_train_selected)

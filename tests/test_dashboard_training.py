"""The dashboard and the doctor on train jobs, against the real local cluster:
a training that continues across its time limit (its separator lines, a real
requeue), its progress over every stage, the time limit of a training that
does not continue, and the doctor continuing a timed-out one from its latest
checkpoint.

The train jobs are small bash scripts printing what the train templates and
trainers print (separator lines, "stage N" lines, tqdm bars); their chain is
recorded with a demo plan of two stages of 600 steps beside its scripts, as
``hpcwizard submit`` renders one. Waits are on conditions, never fixed sleeps.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest

from hpcwizard.jobs.status import JobRow, TrainingStatus
from hpcwizard.jobs.triage import OverallProgress, TrainingProgress, parse_segment_line
from hpcwizard.project.recipe import get_recipe
from hpcwizard.slurm import SlurmClient
from hpcwizard.tui.app import make_app
from hpcwizard.tui.screens.dashboard import DashboardScreen
from hpcwizard.tui.widgets.confirm import ChoiceScreen
from hpcwizard.tui.widgets.job_table import COLUMNS, row_cells
from hpcwizard.tui.widgets.progress_panel import ProgressPanel, describe
from test_resubmit import all_ids, submit_test_chain

pytestmark = [pytest.mark.anyio]

os.environ["TEXTUAL_ANIMATIONS"] = "none"
FIXED = datetime(2026, 1, 2, 3, 4, 5)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # Textual runs on asyncio


async def until(pilot, what: str, predicate, timeout: float = 60.0):
    """Let the app run until ``predicate()`` is truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        await pilot.pause(0.1)


def write_plan(home: Path, steps: int = 600) -> None:
    """The demo plan (two stages of ``steps``) beside the test chain's scripts."""
    scripts = home / "hpcwizard" / "runs" / "test"
    scripts.mkdir(parents=True, exist_ok=True)
    plan = get_recipe("demo").default_plan(home, home / "data", hf_namespace="alice",
                                           params={"max_train_steps": steps})
    (scripts / "plan.yaml").write_text(plan.to_yaml())


def cells(screen: DashboardScreen, job_id: str) -> dict[str, str]:
    """The job table's cells of one job, as drawn (plain text), by column key."""
    return dict(zip([key for key, _ in COLUMNS], screen.table._shown.get(job_id, ())))


def scontrol(*args: str) -> None:
    subprocess.run(["scontrol", *args], check=True, capture_output=True, text=True, timeout=30)


# A train job that continues across its time limit, as the continuation
# prints it: segment 1 trains stage 1 to step 300 and, stopped by Slurm
# (SIGTERM: here a `scontrol requeue`), says it requeued; segment 2 resumes,
# finishes stage 1 and starts stage 2.
CONTINUING_TRAINER = r"""
stamp() { date '+[%Y-%m-%d %H:%M:%S]'; }
k=$(( ${SLURM_RESTART_COUNT:-0} + 1 ))
if [ "$k" = 1 ]; then
    trap 'echo "$(stamp) [hpcwizard] segment 1 stopped at the time limit; requeued to continue from checkpoint-300"; exit 0' TERM
    echo "$(stamp) [hpcwizard] segment 1 of ~3, starting"
    echo "$(stamp) stage 1"
    echo "Steps:  50%|#####     | 300/600 [02:00<02:00,  2.50it/s, loss=0.1000]"
else
    echo "$(stamp) [hpcwizard] segment $k of ~3, resumed from checkpoint-300"
    echo "$(stamp) stage 1"
    echo "Resuming from checkpoint demo/stage1/checkpoint-300"
    echo "Steps: 100%|##########| 600/600 [02:00<00:00,  2.50it/s, loss=0.0500]"
    echo "$(stamp) stage 2"
    echo "Steps:  10%|#         | 60/600 [00:24<03:36,  2.50it/s, loss=0.0200]"
fi
sleep 300 & wait
"""


@pytest.mark.timeout(240)
async def test_a_requeued_training_is_shown_continuing_then_its_next_segment_with_overall_progress(
        tmp_path, slurm_runner):
    home = tmp_path / "proj"
    write_plan(home)
    submission = submit_test_chain(home, slurm_runner, [("train", CONTINUING_TRAINER), ("convert", "echo converted")],
                                   headers={"train": "#SBATCH --requeue\n#SBATCH --open-mode=append\n"})
    train, convert = submission.job_ids
    app = make_app(project_home=home, runner=slurm_runner, clock=lambda: FIXED, start_mode="dashboard")
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            screen = await until(pilot, "the dashboard", lambda: isinstance(app.screen, DashboardScreen) and app.screen)
            progress = screen.query_one(ProgressPanel)
            # The first fill selects the new chain's first job: train.
            await until(pilot, "segment 1 with its overall progress",
                        lambda: cells(screen, train).get("reason") == "segment 1 of ~3"
                        and "stage 1/2 · step 300/600" in progress.text)
            assert cells(screen, train)["state"] == "RUNNING"
            assert "segment 1 of ~3" in progress.text

            # Requeued AND held: without the hold it starts again ~20 s later
            # (cred_expire), and a loaded machine could miss the window between.
            scontrol("requeuehold", train)
            await pilot.press("r")
            await until(pilot, "train continuing", lambda: cells(screen, train).get("state") == "CONTINUING"
                        and cells(screen, train).get("reason") == "segment 2 of ~3")
            await until(pilot, "the panel to say so", lambda: progress.text.startswith("continuing: segment 2 of ~3"))
            assert "stage 1/2 · step 300/600" in progress.text
            # Never a failure: what waits on it still just waits.
            waiting = screen.table.rows_by_id[convert]
            assert waiting.state == "PENDING" and waiting.reason == "Dependency" and not screen.diagnoses
            assert not any(mark in cells(screen, train)["state"] for mark in ("FAILED", "CANCELLED", "TIMEOUT"))

            # Released, it starts once the begin time Slurm gave the requeue has
            # passed (cred_expire + 1 s: 21 s here). Never bring that forward with
            # StartTime=now: the node still holds the revoked credential of
            # segment 1 and kills a relaunch within that window ("Job credential
            # revoked"), which failed this test in CI.
            scontrol("release", train)
            # Wait for Slurm to run segment 2 (its log says stage 2), then refresh
            # as a user would: the idle poll may be 30 s away.
            log = next((home / "logs").glob(f"*-{train}.out"))
            deadline = time.monotonic() + 100
            while "stage 2" not in log.read_text(errors="replace") or not any(
                    e.state.value == "RUNNING" for e in SlurmClient(slurm_runner).queue([train])):
                if time.monotonic() > deadline:
                    shown = subprocess.run(["scontrol", "show", "job", train], capture_output=True, text=True)
                    pytest.fail(f"segment 2 did not start within 100 s:\n{shown.stdout}")
                await pilot.pause(0.5)
            await pilot.press("r")
            await until(pilot, "segment 2 running, in stage 2",
                        lambda: cells(screen, train).get("state") == "RUNNING"
                        and cells(screen, train).get("reason") == "segment 2 of ~3"
                        and "stage 2/2 · step 60/600" in progress.text)
            # convert waits on it: the ETA is the training's, not the chain's.
            assert "training ETA ~3:36" in progress.text
            assert not progress.text.startswith("continuing")
            # One log, appended to by every segment.
            shown = screen.log_panel.shown_lines
            assert any(line.endswith("[hpcwizard] segment 1 of ~3, starting") for line in shown)
            assert any(line.endswith("segment 2 of ~3, resumed from checkpoint-300") for line in shown)
        # Scripts see the same: status --once (--json) reads the train log's tail.
        said = subprocess.run([sys.executable, "-m", "hpcwizard", "status", "--once", "--json", "--project-home",
                               str(home)], capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        assert said.returncode == 0, said.stderr
        [training] = json.loads(said.stdout)["trainings"]
        assert (training["job_id"], training["segment"], training["step"], training["total_steps"]) == (
            train, "segment 2 of ~3", 660, 1200)
        assert training["continues"] and not training["ended"] and training["stage"] == 2
        table = subprocess.run([sys.executable, "-m", "hpcwizard", "status", "--once", "--project-home", str(home)],
                               capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        assert f"training {train}: segment 2 of ~3 · step 660/1200 · ETA " in table.stdout, table.stdout
    finally:
        SlurmClient(slurm_runner).cancel(all_ids(home))


# A train job of a plan without continuation: it checkpoints once, then needs
# far longer than its one-minute limit; run again, it resumes from the
# checkpoint and finishes.
RESUMING_TRAINER = r"""
mkdir -p demo
if [ -f demo/checkpoint ]; then
    echo "Resuming from checkpoint $(cat demo/checkpoint)"
    echo "[$(date '+%Y-%m-%d %H:%M:%S')] stage 2"
    echo "Steps: 100%|##########| 600/600 [00:01<00:00, 600.00it/s, loss=0.0100]"
    echo trained
    exit 0
fi
echo "[$(date '+%Y-%m-%d %H:%M:%S')] stage 1"
echo "Steps:  10%|#         | 60/600 [00:20<03:00,  3.00it/s, loss=0.2000]"
echo checkpoint-60 > demo/checkpoint
sleep 600
"""


@pytest.mark.timeout(300)
async def test_a_training_without_continuation_is_warned_then_continued_by_the_doctor(tmp_path, slurm_runner):
    home = tmp_path / "proj"
    write_plan(home)
    submission = submit_test_chain(home, slurm_runner, [("train", RESUMING_TRAINER), ("convert", "echo converted")],
                                   headers={"train": "#SBATCH --time=1\n"})
    train, convert = submission.job_ids
    app = make_app(project_home=home, runner=slurm_runner, clock=lambda: FIXED, start_mode="dashboard")
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            screen = await until(pilot, "the dashboard", lambda: isinstance(app.screen, DashboardScreen) and app.screen)
            hint = screen.query_one("#dash-training")
            # 180 s of stage 1 and 200 s of stage 2 left, a minute to the limit.
            await until(pilot, "the time-limit warning",
                        lambda: hint.has_class("shown") and cells(screen, train).get("reason", "").startswith("limit in ~"))
            text = str(hint.render())
            assert f"train ({train}) will hit the time limit in ~" in text and "of training left" in text
            assert "d continues it from its latest checkpoint" in text
            await until(pilot, "the progress",
                        lambda: "stage 1/2 · step 60/600" in screen.query_one(ProgressPanel).text)

            # It ends TIMEOUT (Slurm checks limits every 30 s or so); convert can never start.
            await until(pilot, "train TIMEOUT and convert stuck",
                        lambda: screen.table.rows_by_id[train].state == "TIMEOUT" and screen.diagnoses, timeout=150)
            assert not hint.has_class("shown")  # ended: no more warning, no live ETA
            assert screen.query_one(ProgressPanel).text == "TIMEOUT · stage 1/2 · step 60/600 · loss 0.2"
            doctor = str(screen.query_one("#dash-doctor").render())
            assert f"train ({train}) ended TIMEOUT — press d to continue it from its latest checkpoint" in doctor

            await pilot.press("d")
            modal = await until(pilot, "the doctor", lambda: isinstance(app.screen, ChoiceScreen)
                                and app.screen.query("Button") and app.screen)
            await pilot.pause()
            body = modal.body_text
            assert "hit its time limit of 1:00 (TIMEOUT)" in body
            assert "Continue train from its latest checkpoint" in body and "Nothing to change first" in body
            assert "Its plan predates continuation" in body and "--time=" not in body
            assert "Continue from the latest checkpoint (s)" in [str(b.label) for b in modal.query("Button")]
            await pilot.press("s")

            def new_ids():
                submissions = screen.table.rows_by_id
                return [j for j in all_ids(home) if j not in (train, convert) and j in submissions]

            await until(pilot, "the new chain", lambda: len(new_ids()) == 2)
            new_train, new_convert = new_ids()
            await until(pilot, "the new chain to complete",
                        lambda: [screen.table.rows_by_id[j].state for j in (new_train, new_convert)]
                        == ["COMPLETED", "COMPLETED"], timeout=90)
            out = (home / "logs" / f"{screen.table.rows_by_id[new_train].slurm_name}-{new_train}.out").read_text()
            assert "Resuming from checkpoint checkpoint-60" in out and "trained" in out
            assert screen.table.rows_by_id[convert].state == "CANCELLED"  # the stuck one, replaced
    finally:
        SlurmClient(slurm_runner).cancel(all_ids(home))


# --------------------------------------------------------------------------
# The cells and the progress line (no cluster)


def train_row(**changes) -> JobRow:
    row = JobRow(job_id="7", name="train", slurm_name="hw-train", state="RUNNING", reason=None, dependency=None,
                 partition="gpu", elapsed=100, time_limit=3600, start="2026-01-02T01:00:00", exit_code=None,
                 source="squeue", log_out="/p/logs/hw-train-7.out", log_err="/p/logs/hw-train-7.err")
    return replace(row, **changes)


def test_train_job_cells_say_continuing_the_segment_and_the_time_limit():
    def shown(row: JobRow, training: TrainingStatus) -> tuple[str, str]:
        drawn = row_cells(row, training)
        return drawn[2].plain, drawn[3].plain

    resumed = parse_segment_line("[hpcwizard] segment 2 of ~4, resumed from checkpoint-1400")
    requeued = parse_segment_line("[hpcwizard] segment 2 stopped at the time limit; requeued to continue from "
                                  "checkpoint-2800")
    requeued = replace(requeued, of=4)
    running = TrainingStatus("7", continues=True, segment=resumed)
    assert shown(train_row(), running) == ("RUNNING", "segment 2 of ~4")
    waiting = TrainingStatus("7", continues=True, segment=requeued, requeued=True)
    assert shown(train_row(state="PENDING", reason="BeginTime"), waiting) == ("CONTINUING", "segment 3 of ~4")
    assert shown(train_row(state="PENDING", reason="JobHeldUser"), waiting) == ("CONTINUING", "segment 3 of ~4, held")
    preempted = TrainingStatus("7", continues=True, segment=resumed, requeued=True)  # no requeue line
    assert shown(train_row(state="PENDING", reason="BeginTime"), preempted) == ("CONTINUING", "segment 3 of ~4")
    rerun = TrainingStatus("7", continues=False, requeued=True)  # an older plan, requeued by Slurm
    assert shown(train_row(state="PENDING", reason="BeginTime"), rerun) == ("CONTINUING", "requeued")
    late = TrainingStatus("7", continues=False, limit_in=754)
    assert shown(train_row(), late) == ("RUNNING", "limit in ~12:34")
    assert late.summary() == "will hit the time limit in ~12:34"
    stopped = TrainingStatus("7", continues=True, ended=True, segment=parse_segment_line(
        "[hpcwizard] segment 3 saved no new checkpoint (still checkpoint-2800): not continuing"))
    assert shown(train_row(state="FAILED", exit_code="1:0"), stopped) == ("FAILED 1:0", "no new checkpoint")
    used_up = replace(stopped, segment=parse_segment_line(
        "[hpcwizard] segment 4 stopped at the time limit; train.segments allows 4: not continuing"))
    assert shown(train_row(state="FAILED", exit_code="1:0"), used_up) == ("FAILED 1:0", "segments used up")
    # Ended: the final state, nothing live.
    done = TrainingStatus("7", continues=True, ended=True, segment=resumed)
    assert shown(train_row(state="COMPLETED", exit_code="0:0"), done) == ("COMPLETED", "")


def test_an_eta_reaching_into_further_segments_says_their_queue_waits():
    from hpcwizard.jobs.status import segments_beyond

    # A 2-hour limit warned 10 minutes before: 110 minutes of training a segment.
    assert segments_beyond(eta=30 * 60, limit=7200, lead=600, elapsed=3600) == 0  # ends in this one
    assert segments_beyond(eta=60 * 60, limit=7200, lead=600, elapsed=3600) == 1  # 50 min here, 10 in the next
    assert segments_beyond(eta=4 * 3600, limit=7200, lead=600, elapsed=0) == 2  # 110 + 110 + 20
    assert segments_beyond(eta=3600, limit=7200, lead=600, elapsed=9000) == 1  # past its warning: all in the next
    assert segments_beyond(eta=3600, limit=600, lead=600, elapsed=0) == 0  # nonsense lead: nothing said
    ahead = TrainingStatus("7", continues=True, segments_ahead=2)
    assert ahead.waits_text == "+ 2 queue waits" and ahead.to_dict()["segments_ahead"] == 2
    assert TrainingStatus("7", continues=True, segments_ahead=1).waits_text == "+ 1 queue wait"
    assert TrainingStatus("7", continues=True, segments_ahead=2, ended=True).waits_text is None
    stage = TrainingProgress(step=60, max_steps=600, loss=0.02, rate_its=2.5, eta_seconds=216.0)
    overall = OverallProgress(step=660, total=1200, eta_seconds=216.0, stage=2, stages=2, stage_step=60,
                              stage_total=600)
    assert describe(stage, overall, waits="+ 2 queue waits").startswith(
        "stage 2/2 · step 60/600 · training ETA ~3:36 + 2 queue waits · loss")


def test_the_progress_line_covers_the_whole_training():
    stage = TrainingProgress(step=60, max_steps=600, loss=0.02, rate_its=2.5, eta_seconds=216.0)
    overall = OverallProgress(step=660, total=1200, eta_seconds=216.0, stage=2, stages=2, stage_step=60,
                              stage_total=600)
    segment = parse_segment_line("[hpcwizard] segment 2 of ~3, resumed from checkpoint-300")
    assert describe(stage, overall, segment) == ("stage 2/2 · step 60/600 · training ETA ~3:36 · "
                                                 "segment 2 of ~3 · loss 0.02 · 2.5 it/s")
    assert describe(stage, overall, chain_end=True).startswith("stage 2/2 · step 60/600 · chain ETA ~3:36")
    requeued = parse_segment_line("[hpcwizard] segment 2 stopped at the time limit; requeued to continue from "
                                  "checkpoint-400")
    assert describe(stage, overall, replace(requeued, of=3), requeued=True).startswith(
        "continuing: segment 3 of ~3 · stage 2/2 · step 60/600 · training ETA ~3:36")
    # Ended: where it stopped, no ETA.
    assert describe(stage, overall, segment, active=False) == "stage 2/2 · step 60/600 · segment 2 of ~3 · loss 0.02"
    # The plan's stages unknown: the stage the log names, the bar's own ETA.
    assert describe(stage, stage=2) == "stage 2 · step 60/600 · ETA 3:36 · loss 0.02 · 2.5 it/s"
    # Without the plan's stages: the bar as it is.
    assert describe(stage) == "step 60/600 · ETA 3:36 · loss 0.02 · 2.5 it/s"

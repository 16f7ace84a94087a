"""The dashboard tells the truth about ended jobs, limits, chains and its own keys.

Issue 14's dashboard items that are not about timing (those are in
tests/test_dashboard_ends.py): the limit recorded at submit, ended jobs with
final figures only, the doctor on a cancelled parent, two-stage progress,
which job is selected, the help and the palette, the doctor's wording.
Real Slurm where Slurm is involved; Textual's pilot for the screens.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from datetime import datetime

import anyio
import pytest
from textual.widgets import ProgressBar

from hpcwizard.jobs.status import JobRow, StatusSnapshot
from hpcwizard.jobs.submit import sbatch_time_limit, submit_chain
from hpcwizard.project.home import Project
from hpcwizard.project.plan import job_prefix_for
from hpcwizard.project.recipe import get_recipe
from hpcwizard.project.resolved import resolve
from hpcwizard.project.state import Submission, SubmittedJob, load_state, now_iso, update_state
from hpcwizard.slurm import JobState, SlurmClient
from hpcwizard.tui.app import make_app
from hpcwizard.tui.messages import SnapshotTaken
from hpcwizard.tui.screens.dashboard import DashboardScreen
from hpcwizard.tui.widgets.confirm import ChoiceScreen, ConfirmScreen
from hpcwizard.tui.widgets.progress_panel import ProgressPanel
from test_dashboard import anyio_backend, until  # noqa: F401 (a fixture)
from test_resubmit import all_ids, submit_test_chain

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
    submission = submit_chain(Project(plan.project_home, runner=slurm_runner), resolve(plan, recipe))
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


# --------------------------------------------------------------------------
# 4. Ended means final state, last step, no ETA


async def test_a_stopped_download_says_no_time_left():
    from textual.app import App
    from textual.widgets import Label

    from hpcwizard.download import DownloadProgress, FileState, FileStatus
    from hpcwizard.tui.widgets.download_bars import DownloadBars

    class BarsApp(App):
        def compose(self):
            yield DownloadBars()

    moving = FileStatus("alice/weights", "model.bin", 40 << 20, 100 << 20, 2 << 20, FileState.DOWNLOADING)
    progress = DownloadProgress((moving,), 40 << 20, 100 << 20, 0, 1, 2 << 20, 21.0, 20.0)
    app = BarsApp()
    async with app.run_test(size=(80, 24)) as pilot:
        bars = app.query_one(DownloadBars)
        bars.show(progress)
        summary = app.query_one("#download-summary", Label)
        await until(pilot, "the live line", lambda: "21s left" in str(summary.render()))
        assert "at 2 MiB/s" in str(summary.render())
        bars.stopped()
        await pilot.pause()
        line = str(summary.render())
        assert "left" not in line and "/s" not in line and line.endswith("· stopped"), line
        assert "40 MiB of 100 MiB, 0/1 files" in line
        state = app.query_one(".file-state", Label)
        await until(pilot, "the file's word", lambda: str(state.render()) == "stopped")


async def test_a_file_bar_shows_its_latest_status_however_its_updates_and_compose_interleave():
    """Seen in the screenshots: a 2 MiB prepare ended with bars reading "0%
    queued", "100% verifying", "31%" under a finished total. A status shown
    before the bar was composed was painted later, after the newer ones."""
    from textual.app import App
    from textual.containers import Vertical
    from textual.widgets import Label, ProgressBar

    from hpcwizard.download import FileState, FileStatus
    from hpcwizard.tui.widgets.download_bars import FileBar

    class BarsApp(App):
        def compose(self):
            yield Vertical(id="files")

    queued = FileStatus("alice/code", "requirements.txt", 0, 100, 0.0, FileState.QUEUED)
    done = FileStatus("alice/code", "requirements.txt", 100, 100, 0.0, FileState.DONE)
    app = BarsApp()
    async with app.run_test(size=(100, 24)) as pilot:
        bar = FileBar(queued, id="file-0")
        bar.show(queued)  # before it is composed: painted once it is
        await app.query_one("#files").mount(bar)
        bar.show(done)  # composed now: painted at once
        for _ in range(3):
            await pilot.pause()
        assert str(bar.query_one(".file-state", Label).render()) == "done"
        assert bar.query_one(ProgressBar).percentage == 1.0


BAR_65 = "Steps:  65%|######5   | 65/100 [01:05<00:35,  1.00it/s, loss=0.1000]"


async def test_a_cancelled_job_shows_its_final_state_and_last_step_not_live_figures(tmp_path, slurm_runner):
    home = tmp_path / "proj"
    submission = submit_test_chain(home, slurm_runner, [("train", f"echo '{BAR_65}'\nsleep 300")])
    (job,) = submission.job_ids
    app = make_app(project_home=home, runner=slurm_runner, clock=lambda: FIXED, start_mode="dashboard")
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            screen = await the_dashboard(pilot)
            progress = screen.query_one(ProgressPanel)
            await until(pilot, "the live progress", lambda: "ETA 0:35" in progress.text, timeout=60)
            assert "1 it/s" in progress.text
            await pilot.press("c")
            await until(pilot, "the question", lambda: isinstance(app.screen, ConfirmScreen))
            await pilot.press("y")
            await until(pilot, "CANCELLED", lambda: screen.table.rows_by_id[job].state is JobState.CANCELLED)
            await until(pilot, "the final figures", lambda: progress.text.startswith("CANCELLED"))
            assert progress.text == "CANCELLED · step 65/100 · loss 0.1"
    finally:
        SlurmClient(slurm_runner).cancel(all_ids(home))


# --------------------------------------------------------------------------
# 10. Two-stage progress


TWO_STAGES = r"""
stamp() { date '+[%Y-%m-%d %H:%M:%S]'; }
echo "$(stamp) stage 1"
echo "Steps: 100%|##########| 60/60 [00:30<00:00,  2.00it/s, loss=0.3000]"
echo "$(stamp) stage 2"
echo "Steps:  23%|##3       | 14/60 [00:07<00:23,  2.00it/s, loss=0.2000]"
sleep 300
"""


async def test_two_stage_progress_names_its_stage_and_gives_the_chains_eta(tmp_path, slurm_runner):
    """It jumped from 97 % to "23 % step 14/60" with no stage label."""
    from test_dashboard_training import write_plan

    home = tmp_path / "proj"
    write_plan(home, steps=60)
    submission = submit_test_chain(home, slurm_runner, [("train", TWO_STAGES)])
    (job,) = submission.job_ids
    app = make_app(project_home=home, runner=slurm_runner, clock=lambda: FIXED, start_mode="dashboard")
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await the_dashboard(pilot)
            progress = screen.query_one(ProgressPanel)
            await until(pilot, "stage 2's progress", lambda: "step 14/60" in progress.text, timeout=60)
            await until(pilot, "the plan's stages", lambda: progress.text.startswith("stage 2/2 · step 14/60"))
            # Nothing runs after it: 46 steps of stage 2 at 2 it/s is the chain's end.
            assert "· chain ETA ~0:23 ·" in progress.text, progress.text
            bar = progress.query_one(ProgressBar)
            assert (bar.progress, bar.total) == (74, 120)  # the bar covers both stages: 62 %, never 23 %
    finally:
        SlurmClient(slurm_runner).cancel(all_ids(home))


# --------------------------------------------------------------------------
# 11. Selection


async def test_the_running_job_of_the_newest_chain_is_selected(tmp_path, slurm_runner):
    """It selected the newest chain's first job (setup, long finished), not
    its running train job."""
    home = tmp_path / "proj"
    older = submit_test_chain(home, slurm_runner, [("old", "sleep 120")])
    newest = submit_test_chain(home, slurm_runner, [("setup", "echo set up"), ("train", "sleep 120")])
    setup, train = newest.job_ids
    try:
        deadline = time.monotonic() + 90
        while not any(e.state is JobState.RUNNING for e in SlurmClient(slurm_runner).queue([train])):
            assert time.monotonic() < deadline, "the train job did not start within 90 s"
            await anyio.sleep(0.2)
        app = make_app(project_home=home, runner=slurm_runner, clock=lambda: FIXED, start_mode="dashboard")
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await the_dashboard(pilot)
            await until(pilot, "the first fill", lambda: screen.polls >= 1 and screen.table.selected_job_id)
            assert screen.table.selected_job_id == train
            assert screen.table.rows_by_id[setup].state is JobState.COMPLETED
            assert older.job_ids[0] in screen.table.rows_by_id
            await until(pilot, "its log followed", lambda: screen.log_panel.path == screen.table.rows_by_id[train].log_out)
    finally:
        SlurmClient(slurm_runner).cancel(all_ids(home))


async def test_the_selected_row_stays_in_view_after_a_resize(tmp_path):
    from test_dashboard import TableApp, table_showing

    rows = [a_row(str(100 + i), state=JobState.PENDING) for i in range(30)]
    app = TableApp()
    async with app.run_test(size=(100, 60)) as pilot:
        table = await table_showing(pilot, rows)
        table.move_cursor(row=25)

        def in_view() -> bool:
            shown = table.scrollable_content_region.height - 1  # the header stays
            return table.scroll_y <= table.cursor_row < table.scroll_y + shown

        await until(pilot, "row 25 in view", in_view)
        await pilot.resize_terminal(100, 16)
        await until(pilot, "a shorter table", lambda: table.size.height < 10)
        await until(pilot, "row 25 still in view", in_view, timeout=5)
        assert table.selected_job_id == "125"


# --------------------------------------------------------------------------
# 3. The doctor and a cancelled parent


async def test_a_cancelled_parent_makes_its_child_repairable_at_once_and_the_reason_says_so(tmp_path, slurm_runner):
    """Right after a setup job was cancelled, d on its train job said "nothing
    to repair" until Slurm set DependencyNeverSatisfied (~25 s), and the
    Reason column read "20 failed" for a cancelled 20."""
    from test_dashboard import select

    home = tmp_path / "proj"
    submission = submit_test_chain(home, slurm_runner, [("setup", "sleep 120"), ("train", "echo trained")])
    setup, train = submission.job_ids
    app = make_app(project_home=home, runner=slurm_runner, clock=lambda: FIXED, start_mode="dashboard")
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            screen = await the_dashboard(pilot)
            await until(pilot, "the chain", lambda: {setup, train} <= set(screen.table.rows_by_id))
            select(screen, setup)
            await pilot.press("c")
            await until(pilot, "the question", lambda: isinstance(app.screen, ConfirmScreen))
            await pilot.press("y")
            await until(pilot, "setup CANCELLED", lambda: screen.table.rows_by_id[setup].state is JobState.CANCELLED)
            # The same refresh: from the recorded chain, not Slurm's later verdict.
            assert [d.parent.job_id for d in screen.diagnoses] == [setup]
            assert cells(screen, train)["reason"] == f"{setup} CANCELLED"
            hint = str(screen.query_one("#dash-doctor").render())
            assert f"train ({train}) can never start: setup ({setup}) ended CANCELLED" in hint
            select(screen, train)
            await pilot.press("d")
            doctor = await until(pilot, "the doctor", lambda: isinstance(app.screen, ChoiceScreen) and app.screen)
            assert doctor.title_text == f"Doctor: setup ({setup}) CANCELLED"
            assert f"for setup ({setup}) to succeed, but it ended CANCELLED" in doctor.body_text
    finally:
        SlurmClient(slurm_runner).cancel(all_ids(home))


# --------------------------------------------------------------------------
# 13. Help and palette


async def test_help_lists_the_dashboards_keys_before_the_tables_generic_ones():
    from textual.widgets import DataTable, HelpPanel
    from textual.widgets._key_panel import BindingsTable

    app = make_app(project_home=None, clock=lambda: FIXED, start_mode="dashboard")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await the_dashboard(pilot)
        await pilot.press("question_mark")
        panel = await until(pilot, "the keys panel", lambda: screen.query(HelpPanel) and screen.query_one(HelpPanel))
        table = await until(pilot, "its table", lambda: panel.query(BindingsTable) and panel.query_one(BindingsTable))
        rendered = table.render_bindings_table()
        listed = [str(cell) for cell in rendered.columns[1]._cells]
        own = [listed.index(text) for text in ("Dashboard", "Refresh", "Doctor", "Cancel chain")]
        generic = [listed.index(b.description) for b in DataTable.BINDINGS if b.description in listed]
        assert generic, listed  # the table's keys are still listed…
        assert max(own) < min(generic), listed  # …after the dashboard's
        assert screen.query_one("#jobs").has_focus  # the table keeps the focus


async def test_the_palette_has_one_quit_in_the_dashboard_and_in_the_wizard(tmp_path):
    from textual.command import CommandPalette

    async def titles(app, pilot) -> list[str]:
        await pilot.press("ctrl+p")
        palette = await until(pilot, "the palette", lambda: isinstance(app.screen, CommandPalette) and app.screen)
        from textual.widgets import OptionList

        options = palette.query_one(OptionList)
        await until(pilot, "its commands", lambda: options.option_count > 3)
        await pilot.pause(0.3)  # every provider answered
        shown = [str(options.get_option_at_index(i).prompt).split("\n")[0] for i in range(options.option_count)]
        await pilot.press("escape")
        return shown

    for mode in ("dashboard", "wizard"):
        app = make_app(project_home=tmp_path / mode, clock=lambda: FIXED, start_mode=mode)
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.pause(0.5)
            shown = await titles(app, pilot)
            quits = [title for title in shown if "quit" in title.lower()]
            assert quits == ["Quit hpcwizard"], (mode, shown)


# --------------------------------------------------------------------------
# 14. The doctor's wording


async def test_the_doctor_dialog_keeps_paths_whole_names_no_log_for_a_job_that_never_ran_and_says_edit_the_plan(
        tmp_path):
    from textual.geometry import Region

    from hpcwizard.jobs.resubmit import Diagnosis

    home = tmp_path / "a-project-home-with-a-rather-long-name" / "below-another-long-folder-name"
    stem = home / "logs" / f"{job_prefix_for(home)}setup"  # as long as Slurm names get
    setup = JobRow(job_id="20", name="setup", slurm_name=stem.name, state=JobState.CANCELLED, reason=None,
                   dependency=None, partition="cpu", elapsed=0, time_limit=600, start=None, exit_code="0:15",
                   source="squeue", log_out=f"{stem}-20.out", log_err=f"{stem}-20.err",
                   script=str(home / "hpcwizard" / "runs" / "20261204-183000" / "01_setup.sbatch"))
    train = replace(setup, job_id="21", name="train", state=JobState.PENDING, reason="Dependency",
                    dependency="afterok:20(unfulfilled)", script=None)
    failed = replace(setup, state=JobState.FAILED, elapsed=42, start="2026-01-02T03:00:00", exit_code="3:0")
    app = make_app(project_home=None, clock=lambda: FIXED, start_mode="dashboard")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await the_dashboard(pilot)
        app.context.project_home = home
        for parent, stuck in ((setup, (train,)), (failed, ())):
            screen._show_doctor(Diagnosis(parent=parent, stuck=stuck))
            modal = await until(pilot, "the doctor", lambda: isinstance(app.screen, ChoiceScreen)
                                and app.screen.query("Button") and app.screen)
            await pilot.pause()
            body = modal.body_text
            assert "edit the script" not in body and "in the plan" in body or "a change to the plan" in body, body
            text = modal.query_one("#confirm-body Static")
            drawn = [strip.text.rstrip() for strip in text.render_lines(Region(0, 0, text.size.width, text.size.height))]
            # Each path whole, on a line of its own, below the project home.
            assert "  hpcwizard/runs/20261204-183000/01_setup.sbatch" in drawn, drawn
            if parent is setup:  # cancelled while pending: it never ran, it wrote nothing
                assert "It never started, so it wrote no log." in drawn and ".out" not in body
            else:
                assert f"  logs/{stem.name}-20.out" in drawn and f"  logs/{stem.name}-20.err" in drawn
            modal.dismiss(None)
            await until(pilot, "the dashboard again", lambda: app.screen is screen)

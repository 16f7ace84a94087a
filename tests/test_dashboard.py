"""The live dashboard, headless, against the real local Slurm cluster.

Each test submits its own tiny chain (see tests/test_resubmit.py), drives the
app with Textual's pilot and waits on conditions (never on fixed sleeps);
jobs are cancelled at the end. The log panel tests need no cluster.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest
from textual.app import App
from textual.geometry import Region

from hpcwizard.jobs.logtail import LocalFileSource
from hpcwizard.jobs.poll import FinishedJobsCache, PollPolicy
from hpcwizard.jobs.status import JobRow
from hpcwizard.project.home import Project
from hpcwizard.project.state import Submission, SubmittedJob, load_state, now_iso, update_state
from hpcwizard.slurm import SlurmClient
from hpcwizard.tui.app import make_app
from hpcwizard.tui.screens.dashboard import (
    DashboardCommands,
    DashboardScreen,
    human_seconds,
)
from hpcwizard.tui.screens.sbatch_viewer import SbatchViewer
from hpcwizard.tui.widgets.confirm import ChoiceScreen, ConfirmScreen
from hpcwizard.tui.widgets.job_table import (
    COLUMNS,
    REASON_MAX,
    JobTable,
    reason_cell,
    row_cells,
    short_dependency,
)
from hpcwizard.tui.widgets.log_panel import LogPanel
from hpcwizard.tui.widgets.progress_panel import ProgressPanel
from test_resubmit import all_ids, rewrite_body, submit_test_chain

pytestmark = [pytest.mark.timeout(150), pytest.mark.anyio]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # Textual runs on asyncio

os.environ["TEXTUAL_ANIMATIONS"] = "none"
FIXED = datetime(2026, 1, 2, 3, 4, 5)
LOCAL_SLURM = Path(__file__).resolve().parent.parent / "scripts" / "local-slurm"


async def until(pilot, what: str, predicate, timeout: float = 45.0):
    """Let the app run until ``predicate()`` is truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        await pilot.pause(0.1)


def dashboard_app(home: Path, runner):
    app = make_app(project_home=home, runner=runner, clock=lambda: FIXED, start_mode="dashboard")
    return app


def state_of(screen: DashboardScreen, job_id: str) -> str | None:
    row = screen.table.rows_by_id.get(job_id)
    return row.state if row else None


def select(screen: DashboardScreen, job_id: str) -> None:
    screen.table.move_cursor(row=screen.table.get_row_index(job_id))


# --------------------------------------------------------------------------
# Polling policy (pure)


def test_poll_policy_speeds_up_on_change_backs_off_when_idle_or_down():
    policy = PollPolicy()
    assert policy.next(changed=True, error=False) == 2
    idle = [policy.next(changed=False, error=False) for _ in range(6)]
    assert idle == [4, 8, 16, 32, 32, 32]  # >= 30 s while nothing changes
    assert policy.next(changed=False, error=False, all_finished=True) == 64
    assert policy.next(changed=False, error=False, all_finished=True) == 120
    assert policy.next(changed=True, error=False) == 2
    # A slow controller (3 s per squeue) is asked at most every 30 s.
    assert policy.next(changed=True, error=False, duration=3.0) == 30
    # Down: no squeue backoff, a cheap probe every 3 s; recovery goes back to fast.
    down = [policy.next(changed=False, error=True) for _ in range(7)]
    assert down == [3] * 7 and policy.down
    assert policy.next(changed=False, error=False) == 2
    assert policy.poke() == 2
    # A job ending any moment caps the wait below fast.
    for _ in range(6):
        policy.next(changed=False, error=False)
    assert policy.next(changed=False, error=False, soon=1.0) == 1.0


def test_intervals_are_said_in_round_seconds():
    """The slow-controller floor makes the interval any float: it read
    "every 8.41332 s" and "retrying in 16.8266 s"."""
    assert human_seconds(8.41332) == "8 s"
    assert human_seconds(16.8266) == "17 s"
    assert human_seconds(1.5) == "1.5 s"
    assert human_seconds(2.0) == "2 s"
    assert human_seconds(120.0) == "120 s"


def test_finished_jobs_are_asked_about_once(monkeypatch):
    from hpcwizard.slurm import JobState
    from hpcwizard.slurm import SlurmClient as Client
    from hpcwizard.slurm.models import FinishedJob, FinishedSource
    asked: list[list[str]] = []
    states = {"1": JobState.COMPLETED, "2": JobState.FAILED, "3": JobState.FINISHED_UNKNOWN}

    def fake_finished(self, job_ids):
        asked.append(list(job_ids))
        return [FinishedJob(j, states[j], None, None, None, None, FinishedSource.SACCT) for j in job_ids]

    monkeypatch.setattr(Client, "finished", fake_finished)
    cache = FinishedJobsCache(runner=None)
    assert [j.state for j in cache.finished(["1", "2", "3"])] == [states["1"], states["2"], states["3"]]
    assert [j.job_id for j in cache.finished(["1", "2", "3"])] == ["1", "2", "3"]
    # Known final states come from memory; only the unknown one is asked again.
    assert asked == [["1", "2", "3"], ["3"]]


# --------------------------------------------------------------------------
# On the cluster


async def test_running_chain_appears_and_its_log_is_followed_live(tmp_path, slurm_runner):
    home = tmp_path / "proj"
    submission = submit_test_chain(home, slurm_runner, [
        ("writer", "for i in $(seq 1 30); do echo line $i; sleep 0.2; done"),
        ("after", "echo done"),
    ])
    writer, after = submission.job_ids
    app = dashboard_app(home, slurm_runner)
    try:
        async with app.run_test(size=(120, 36)) as pilot:
            screen = app.screen
            assert isinstance(screen, DashboardScreen)
            await until(pilot, "both jobs in the table", lambda: {writer, after} <= set(screen.table.rows_by_id))
            assert screen.table.rows_by_id[after].dependency.startswith(f"afterok:{writer}")
            select(screen, writer)
            panel = screen.log_panel

            def numbered():
                return [line for line in panel.shown_lines if line.startswith("line ")]

            # Live: some lines are shown before the job wrote them all.
            await until(pilot, "the first lines", lambda: 0 < len(numbered()) < 30)
            assert state_of(screen, writer) in ("RUNNING", "COMPLETING", "PENDING")
            await until(pilot, "line 30", lambda: "line 30" in numbered())
            assert numbered() == [f"line {i}" for i in range(1, 31)]  # each once, in order
            await until(pilot, "the chain to complete",
                        lambda: state_of(screen, after) == "COMPLETED" and state_of(screen, writer) == "COMPLETED")
            status = screen.status_text
            assert "refreshed 03:04:05" in status and "every " in status
            # Finished jobs stay in the table.
            assert {writer, after} <= set(screen.table.rows_by_id)
            assert screen.banner_text is None
    finally:
        SlurmClient(slurm_runner).cancel(all_ids(home))


async def test_doctor_resubmits_a_failed_parent_and_the_new_chain_completes(tmp_path, slurm_runner):
    home = tmp_path / "proj"
    submission = submit_test_chain(home, slurm_runner, [
        ("prep", "echo 'Traceback (most recent call last):' >&2; echo 'RuntimeError: no data' >&2; exit 3"),
        ("train", "echo trained"),
    ])
    prep, train = submission.job_ids
    app = dashboard_app(home, slurm_runner)
    try:
        async with app.run_test(size=(120, 36)) as pilot:
            screen = app.screen
            await until(pilot, "train stuck on DependencyNeverSatisfied",
                        lambda: (r := screen.table.rows_by_id.get(train)) is not None
                        and r.reason == "DependencyNeverSatisfied" and screen.diagnoses)
            hint = str(screen.query_one("#dash-doctor").render())
            assert f"train ({train}) can never start" in hint and f"prep ({prep})" in hint

            # prep wrote its error to stderr; the panel opens stdout, and e
            # finds the error there (it said "no error found in this log").
            select(screen, prep)
            await until(pilot, "prep's stdout", lambda: screen.log_panel.path == screen.table.rows_by_id[prep].log_out)
            await pilot.press("e")
            panel = screen.log_panel
            await until(pilot, "the error in stderr", lambda: panel.stream == "err" and panel.status_note == "first error")
            assert panel.shown_lines[panel.highlighted_index] == "Traceback (most recent call last):"
            await pilot.press("o")  # back to stdout for the rest
            await until(pilot, "stdout again", lambda: panel.stream == "out")

            rewrite_body(submission.jobs[0].script, "echo fixed")  # the user's fix
            select(screen, train)
            await pilot.press("d")
            modal = await until(pilot, "the doctor", lambda: isinstance(app.screen, ChoiceScreen) and app.screen)
            body = modal.body_text
            assert f"prep ({prep})" in body and "FAILED" in body and "exit code 3:0" in body
            assert f"prep-{prep}.err" in body
            # r (Refresh on the dashboard) does not resubmit here: s does.
            await pilot.press("r")
            await pilot.pause(0.3)
            assert app.screen is modal and len(load_state(home / "hpcwizard").submissions) == 1
            assert [str(b.label) for b in modal.query("#confirm-buttons Button")] == [
                "Close (esc)", "Resubmit (s)", "Cancel stuck jobs (x)"]
            await pilot.press("s")

            state_dir = home / "hpcwizard"
            await until(pilot, "the resubmission in the state", lambda: len(load_state(state_dir).submissions) == 2)
            new_prep, new_train = load_state(state_dir).submissions[-1].job_ids
            await until(pilot, "the new chain to complete",
                        lambda: state_of(screen, new_prep) == "COMPLETED" and state_of(screen, new_train) == "COMPLETED",
                        timeout=60)
            assert state_of(screen, train) == "CANCELLED"
            assert state_of(screen, prep) == "FAILED"
            await until(pilot, "the doctor hint to go", lambda: not screen.query_one("#dash-doctor").has_class("shown"))
    finally:
        SlurmClient(slurm_runner).cancel(all_ids(home))


async def test_cancel_asks_first_and_leaves_the_job_cancelled_at_80x24(tmp_path, slurm_runner):
    home = tmp_path / "proj"
    submission = submit_test_chain(home, slurm_runner, [("long", "sleep 60"), ("next", "echo next")])
    job, waiting = submission.job_ids
    app = dashboard_app(home, slurm_runner)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            screen = app.screen
            await until(pilot, "the job", lambda: job in screen.table.rows_by_id)
            # Usable at 80x24: the table, the log and the footer all show.
            assert screen.table.region.height >= 2 and screen.log_panel.region.height >= 5
            await pilot.click(screen.table, offset=(2, 1))  # the mouse selects the first row
            assert screen.table.selected_job_id == job

            # The sbatch file, read-only and highlighted.
            await pilot.press("v")
            viewer = await until(pilot, "the sbatch viewer",
                                 lambda: isinstance(app.screen, SbatchViewer) and app.screen.text and app.screen)
            assert "#SBATCH --job-name=" in viewer.text and "sleep 60" in viewer.text
            await pilot.press("escape")
            await until(pilot, "the dashboard again", lambda: app.screen is screen)

            # Hold and release the job waiting on it (each confirmed).
            notes: list[str] = []
            notify = screen.notify
            screen.notify = lambda message, **kw: (notes.append(message), notify(message, **kw))[1]

            async def palette() -> set[str]:
                return {str(hit.text) async for hit in DashboardCommands(screen).discover()}

            await until(pilot, "the waiting job", lambda: state_of(screen, waiting) == "PENDING")
            select(screen, waiting)
            # Waiting on a dependency is not held: nothing to release, and it says why.
            assert "Hold job" in await palette() and "Release job" not in await palette()
            await pilot.press("u")
            await pilot.pause(0.3)
            assert app.screen is screen and f"job {waiting} is not held (it waits for " in notes[-1]
            await pilot.press("h")
            await until(pilot, "the question", lambda: isinstance(app.screen, ConfirmScreen))
            await pilot.press("y")
            # JobHeldUser, or JobHeldAdmin when the tests run as root.
            await until(pilot, "the hold", lambda: (screen.table.rows_by_id[waiting].reason or "").startswith("JobHeld"))
            assert "Release job" in await palette() and "Hold job" not in await palette()
            await pilot.press("h")
            await pilot.pause(0.3)
            assert app.screen is screen and f"job {waiting} is already held" in notes[-1]
            await pilot.press("u")
            await until(pilot, "the question", lambda: isinstance(app.screen, ConfirmScreen))
            await pilot.press("y")
            await until(pilot, "the release",
                        lambda: not (screen.table.rows_by_id[waiting].reason or "").startswith("JobHeld"))
            select(screen, job)

            # Saying no changes nothing.
            await pilot.press("c")
            await until(pilot, "the question", lambda: isinstance(app.screen, ConfirmScreen))
            await pilot.press("n")
            await until(pilot, "the dashboard again", lambda: app.screen is screen)
            assert SlurmClient(slurm_runner).queue([job])[0].state.is_active

            await pilot.press("c")
            await until(pilot, "the question", lambda: isinstance(app.screen, ConfirmScreen))
            await pilot.press("y")
            await until(pilot, "CANCELLED in the table", lambda: state_of(screen, job) == "CANCELLED")
            assert SlurmClient(slurm_runner).queue([job])[0].state.value == "CANCELLED"

            # What is left of the chain: one job, said in the singular.
            select(screen, waiting)
            await pilot.press("C")
            question = await until(pilot, "the question", lambda: isinstance(app.screen, ConfirmScreen) and app.screen)
            assert question.title_text == "Cancel the whole chain (1 job)?"
            await pilot.press("n")
            await until(pilot, "the dashboard again", lambda: app.screen is screen)

            # The command palette offers the dashboard's actions.
            titles = [hit.text async for hit in DashboardCommands(screen).discover()]
            assert {"Refresh now", "Cancel chain", "Doctor: resubmit failed job"} <= {str(t) for t in titles}
    finally:
        SlurmClient(slurm_runner).cancel(all_ids(home))


async def test_the_wizard_opens_again_from_the_dashboard_it_handed_over_to(tmp_path, slurm_runner):
    """After the wizard hands over, "Open wizard" (palette, or w) starts the
    wizard again at its welcome step; it used to show the wizard's idle
    "Starting the wizard…" box with only q to quit. A project home typed
    into the wizard (none on the command line) is the one the dashboard watches."""
    from hpcwizard.project import session
    from hpcwizard.tui.screens.welcome import WelcomeStep

    home = tmp_path / "proj"
    home.mkdir()
    session.save_step(Project(home), session.DONE)  # a chain was submitted from here:
    job = SubmittedJob("setup", "hw-proj-setup", "99999", "cpu", str(home / "setup.sbatch"))
    update_state(home / "hpcwizard", lambda state: state.submissions.append(Submission("f", now_iso(), "/s", (job,))))
    app = make_app(runner=slurm_runner, clock=lambda: FIXED)
    async with app.run_test(size=(80, 24)) as pilot:
        welcome = await until(pilot, "the welcome step", lambda: isinstance(app.screen, WelcomeStep) and app.screen)
        welcome.query_one("#welcome-home-input").value = str(home)
        await pilot.press("enter")
        await until(pilot, "the choices", lambda: welcome.query("#welcome-dashboard"))
        await pilot.click("#welcome-dashboard")
        dashboard = await until(pilot, "the dashboard", lambda: isinstance(app.screen, DashboardScreen) and app.screen)
        assert app.context.project_home == home
        # It watches that home: its recorded job is in the table.
        await until(pilot, "the recorded job", lambda: "99999" in dashboard.table.rows_by_id)

        titles = [str(hit.text) async for hit in DashboardCommands(dashboard).discover()]
        assert "Open wizard" in titles
        for _ in range(2):  # and again after the wizard handed over once more
            await pilot.press("w")
            again = await until(pilot, "the welcome step again",
                                lambda: isinstance(app.screen, WelcomeStep) and app.screen.saved and app.screen)
            assert again is not welcome and again.saved.project_home == home
            assert "1 chain (1 job) was submitted" in str(again.query_one("#welcome-session").render())
            await pilot.click("#welcome-dashboard")
            dashboard = await until(pilot, "a new dashboard", lambda: isinstance(app.screen, DashboardScreen)
                                    and app.screen is not dashboard and app.screen)
            await until(pilot, "its first refresh", lambda: dashboard.polls >= 1)
            welcome = again


async def test_back_from_the_wizard_the_dashboard_selects_the_new_chain(tmp_path, slurm_runner):
    """Dashboard → Open wizard → a new chain submitted → the dashboard shows
    that chain selected (the one left for the wizard still had the old one)."""
    from hpcwizard.project import session

    home = tmp_path / "proj"
    old = submit_test_chain(home, slurm_runner, [("old", "sleep 60")])
    session.save_step(Project(home), session.DONE)
    app = dashboard_app(home, slurm_runner)
    try:
        async with app.run_test(size=(120, 36)) as pilot:
            dashboard = app.screen
            await until(pilot, "the old chain selected", lambda: dashboard.table.selected_job_id == old.job_ids[0])
            await pilot.press("w")
            welcome = await until(pilot, "the wizard", lambda: getattr(app.screen, "saved", None) and app.screen)
            new = await asyncio.to_thread(submit_test_chain, home, slurm_runner, [("new", "sleep 60")])
            assert welcome.saved.project_home == home
            await pilot.click("#welcome-dashboard")
            fresh = await until(pilot, "the dashboard", lambda: isinstance(app.screen, DashboardScreen) and app.screen)
            await until(pilot, "the new chain selected", lambda: fresh.table.selected_job_id == new.job_ids[0])
            assert old.job_ids[0] in fresh.table.rows_by_id
    finally:
        SlurmClient(slurm_runner).cancel(all_ids(home))


def _controller_answers() -> bool:
    conf = os.environ["SLURM_CONF"]
    ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, check=False, env={**os.environ, "SLURM_CONF": conf})
    return ping.returncode == 0 and "UP" in ping.stdout


class RecordingRunner:
    """The real runner, noting each command it runs (when, and its first words)."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.calls: list[tuple[float, str]] = []

    def run(self, argv, **kwargs):
        self.calls.append((time.monotonic(), " ".join(argv[:2])))
        return self.inner.run(argv, **kwargs)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def _stop_own_slurmctld() -> None:
    """Stop the slurmctld of the cluster this run uses (SLURM_CONF is
    <dir>/etc/slurm.conf; its pid file is <dir>/run/slurmctld.pid): never
    another cluster's, never slurmd, so the running job goes on."""
    pidfile = Path(os.environ["SLURM_CONF"]).parent.parent / "run" / "slurmctld.pid"
    pid = int(pidfile.read_text().strip())
    try:
        os.kill(pid, 15)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    pytest.fail(f"slurmctld {pid} did not stop within 30 s")


async def test_controller_down_is_pinged_not_squeued_and_the_banner_clears_once_it_answers(tmp_path, slurm_runner):
    """While the controller is away the dashboard runs no squeue (each takes
    ~10 s to fail): a `scontrol ping` every few seconds, and a refresh as
    soon as one answers. The banner outlived the outage by 45 s when the
    squeue backed off to 90 s. Stops and restarts this run's own slurmctld."""
    home = tmp_path / "proj"
    submission = submit_test_chain(home, slurm_runner, [("idle", "sleep 120")])
    (job,) = submission.job_ids
    runner = RecordingRunner(slurm_runner)
    app = dashboard_app(home, runner)
    try:
        async with app.run_test(size=(120, 36)) as pilot:
            screen = app.screen
            await until(pilot, "the job", lambda: job in screen.table.rows_by_id)
            try:
                await asyncio.to_thread(_stop_own_slurmctld)
                screen.refresh_soon()  # not the idle interval: find the outage now
                banner = await until(pilot, "the banner", lambda: screen.banner_text, timeout=60)
                assert "controller unreachable since 03:04:05" in banner and "scontrol ping" in banner
                down_at = time.monotonic()
                # The last known state stays on screen, not "UNKNOWN".
                known = state_of(screen, job)
                assert known in ("PENDING", "RUNNING")
                probes = screen.probes
                await until(pilot, "two pings", lambda: screen.probes >= probes + 2, timeout=30)
                assert not [c for t, c in runner.calls if t > down_at and c.startswith("squeue")]
                assert state_of(screen, job) == known and screen.banner_text is not None
                assert "controller down, pinged every 3 s" in screen.status_text
            finally:
                started = await asyncio.to_thread(subprocess.run, [str(LOCAL_SLURM), "start"],
                                                  capture_output=True, text=True)
                deadline = time.monotonic() + 60
                while not await asyncio.to_thread(_controller_answers):
                    assert time.monotonic() < deadline, f"controller did not come back: {started.stderr}"
                    await asyncio.sleep(0.2)
            answering_at = time.monotonic()
            # Seconds, not the 45 s+ of a backed-off squeue (the goal, 10 s, is
            # measured by benchmarks/bench_dashboard_ends.py).
            await until(pilot, "the banner to clear by itself", lambda: screen.banner_text is None, timeout=30)
            print(f"banner cleared {time.monotonic() - answering_at:.1f} s after the controller answered")
            after = [c for t, c in runner.calls if t > down_at]
            first_squeue = next(i for i, c in enumerate(after) if c.startswith("squeue"))
            assert after[first_squeue - 1] == "scontrol ping"  # asked again only once a ping answered
            polls = screen.polls
            await until(pilot, "polling to go on", lambda: screen.polls > polls, timeout=60)
            assert screen.banner_text is None and job in screen.table.rows_by_id
    finally:
        SlurmClient(slurm_runner).cancel(all_ids(home))


async def test_the_footer_says_how_to_quit_and_fits_80_columns():
    """q quits (as in the wizard) and the footer says so; the footer's keys
    end before the palette key at 80 columns (it cut "/ Sea"); ? lists every key."""
    from textual.widgets import Footer, HelpPanel
    from textual.widgets._footer import FooterKey

    app = make_app(project_home=None, start_mode="dashboard")  # nothing to poll
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await until(pilot, "the dashboard", lambda: isinstance(app.screen, DashboardScreen) and app.screen)
        footer = screen.query_one(Footer)
        # The footer recomposes when the bindings settle: wait for keys laid out.
        keys = await until(pilot, "the footer keys", lambda: (found := list(footer.query(FooterKey)))
                           and all(key.region.width for key in found) and found)
        palette = [key for key in keys if key.has_class("-command-palette")]
        shown = [key for key in keys if not key.has_class("-command-palette")]
        assert palette and "q" in [key.key for key in shown]
        assert max(key.region.right for key in shown) <= palette[0].region.x <= 80
        assert all(key.region.width > len(key.description) for key in shown)  # none cut
        await pilot.press("question_mark")
        await until(pilot, "the keys panel", lambda: screen.query(HelpPanel))
        await pilot.press("question_mark")
        await until(pilot, "the keys panel to close", lambda: not screen.query(HelpPanel))
        await pilot.press("q")
        await until(pilot, "the app to quit", lambda: not app.is_running)


async def test_the_doctor_dialog_scrolls_a_long_body_and_always_shows_its_buttons():
    body = "\n".join(f"line {i}: " + "why it failed " * 5 for i in range(40))
    app = App()
    async with app.run_test(size=(80, 24)) as pilot:
        for dialog in (ChoiceScreen("Doctor: prep (12) FAILED", body, [("resubmit", "Resubmit", "s")]),
                       ConfirmScreen("Cancel the whole chain (40 jobs)?", body)):
            app.push_screen(dialog)
            await until(pilot, "the dialog", lambda: app.screen is dialog and dialog.query("Button"))
            await pilot.pause()
            frame = dialog.query_one("Vertical").content_region
            for button in dialog.query("Button"):
                assert frame.contains_region(button.region), (button.label, button.region, frame)
            text = dialog.query_one("#confirm-body")
            assert frame.contains_region(text.region) and text.max_scroll_y > 0  # the body scrolls
            dialog.dismiss(None)
            await until(pilot, "the dialog to close", lambda: app.screen is not dialog)


# --------------------------------------------------------------------------
# The log panel alone (no cluster)


class CountingSource:
    """A FileSource that counts the bytes actually read."""

    def __init__(self, path: str) -> None:
        self.inner = LocalFileSource(path)
        self.bytes_read = 0

    def stat(self):
        return self.inner.stat()

    def read_at(self, offset: int, length: int) -> bytes:
        data = self.inner.read_at(offset, length)
        self.bytes_read += len(data)
        return data

    def close(self) -> None:
        self.inner.close()


class PanelApp(App):
    def __init__(self, source_factory) -> None:
        super().__init__()
        self.source_factory = source_factory

    def compose(self):
        yield ProgressPanel()
        yield LogPanel(source_factory=self.source_factory)

    def on_log_chunk(self, event) -> None:
        self.query_one(ProgressPanel).show(event.progress, event.losses)


def job_row(home: Path, state: str = "RUNNING") -> JobRow:
    stem = home / "logs" / "hw-proj-train-7"
    return JobRow(job_id="7", name="train", slurm_name="hw-proj-train", state=state, reason=None, dependency=None,
                  partition="gpu", elapsed=10, time_limit=60, start=None, exit_code=None, source="squeue",
                  log_out=f"{stem}.out", log_err=f"{stem}.err")


def test_the_reason_column_says_what_a_job_waits_for(tmp_path):
    def cells(**changes):
        row = replace(job_row(tmp_path), **changes)
        return [cell.plain if hasattr(cell, "plain") else cell for cell in row_cells(row)]

    assert short_dependency("afterok:41(unfulfilled),afterok:42(failed)") == "afterok:41,afterok:42 failed"
    assert short_dependency("(null)") == short_dependency(None) == ""
    waiting = cells(state="PENDING", reason="Dependency", dependency="afterok:4102(unfulfilled)")
    assert waiting[3] == "afterok:4102"
    # What can never be satisfied, in red (the name of the reason alone would fill the column).
    never = reason_cell(replace(job_row(tmp_path), state="PENDING", reason="DependencyNeverSatisfied",
                                dependency="afterok:4102(failed)"))
    assert never.plain == "4102 failed" and "red" in str(never.style)
    long = reason_cell(replace(job_row(tmp_path), state="PENDING", reason="ReqNodeNotAvail, UnavailableNodes:gpu[01-16]"))
    assert len(long.plain) == REASON_MAX and long.plain.endswith("…")
    assert cells(state="PENDING", reason="Priority")[3] == "Priority"
    # An exit code shows only when it says something.
    assert cells(state="COMPLETED", exit_code="0:0")[2] == "COMPLETED"
    assert cells(state="FAILED", exit_code="1:0")[2] == "FAILED 1:0"
    assert len(cells()) == len(COLUMNS)


class TableApp(App):
    def compose(self):
        yield JobTable()


async def table_showing(pilot, rows: list[JobRow]) -> JobTable:
    """The TableApp's table once it shows ``rows`` at their measured widths."""
    table = pilot.app.query_one(JobTable)
    table.apply(rows)
    await until(pilot, "the columns measured", lambda: not table._require_update_dimensions)
    await pilot.pause()
    return table


async def test_the_cursor_row_is_drawn_at_the_measured_column_widths(tmp_path):
    """DataTable measures changed cells when idle; a frame drawn before that
    (a resize, another widget's refresh) must not stay cached at the old
    widths. It did for the cursor row: ``254  setu  FAILE  NonZer  cpu``."""
    def rows(name: str, reason: str) -> list[JobRow]:
        return [replace(job_row(tmp_path), job_id=str(254 + i), name=name, state="FAILED", reason=reason)
                for i in range(3)]

    def drawn(table: JobTable, y: int) -> str:
        return table.render_lines(Region(0, y, table.size.width, 1))[0].text

    app = TableApp()
    async with app.run_test(size=(100, 24)) as pilot:
        table = app.query_one(JobTable)
        for name, reason in [("setup", "NonZeroExitCode"), ("setup-and-download", "NonZeroExitCode:1")]:
            table.apply(rows(name, reason))
            drawn(table, 1)  # a frame before the table measured the new cells
            await pilot.pause()
            await until(pilot, "the columns measured", lambda: not table._require_update_dimensions)
            await pilot.pause()
            cursor_row, other_row = drawn(table, 1), drawn(table, 2)
            assert f"254  {name}  FAILED  {reason}  gpu" in cursor_row, cursor_row
            assert cursor_row.replace("254", "255") == other_row
            # Away and back: the cursor row is drawn the same.
            table.move_cursor(row=1)
            await pilot.pause()
            table.move_cursor(row=0)
            await pilot.pause()
            assert drawn(table, 1) == cursor_row


async def test_job_names_are_shown_as_written_never_read_as_markup(tmp_path):
    """A ``str`` cell is markup to DataTable: ``x[/]`` raised MarkupError and
    stopped the dashboard; ``[bold]`` vanished into a style."""
    names = ["hw-x[/]", "[bold]loud[/bold]", "a[b]c"]
    rows = [replace(job_row(tmp_path), job_id=str(300 + i), name=name, partition="gpu[1-2]")
            for i, name in enumerate(names)]
    app = TableApp()
    async with app.run_test(size=(100, 24)) as pilot:
        table = await table_showing(pilot, rows)
        drawn = [table.render_lines(Region(0, y, table.size.width, 1))[0].text for y in (1, 2, 3)]
        for name, line in zip(names, drawn):
            assert name in line and "gpu[1-2]" in line, line
        # Widths come from the plain text: the longest name fits its column.
        assert table.columns[table.ordered_columns[1].key].content_width == len("[bold]loud[/bold]")


async def test_a_2gb_log_opens_without_being_read_whole(tmp_path):
    row = job_row(tmp_path)
    log = Path(row.log_out)
    log.parent.mkdir(parents=True)
    with open(log, "wb") as handle:  # noqa: ASYNC230 - a local test file
        handle.truncate(2 * 1024**3)  # sparse: 2 GB of nothing...
    with open(log, "ab") as handle:  # noqa: ASYNC230 - ...then real lines at the end
        handle.writelines(f"tail line {i}\n".encode() for i in range(1, 51))
        handle.write(b"Traceback (most recent call last):\n")
        handle.write(b"torch.cuda.OutOfMemoryError: CUDA out of memory. Tried to allocate 2 GiB\n")
        handle.write("Steps:  12%|█▏  | 1200/10000 [10:00<1:13:20,  2.00it/s, loss=0.123]\n".encode())
    sources: list[CountingSource] = []

    def factory(path: str) -> CountingSource:
        sources.append(CountingSource(path))
        return sources[-1]

    app = PanelApp(factory)
    async with app.run_test(size=(120, 36)) as pilot:
        panel = app.query_one(LogPanel)
        panel.follow(row)
        await until(pilot, "the tail", lambda: "tail line 50" in panel.shown_lines)
        assert log.stat().st_size > 2 * 1024**3
        read = sum(s.bytes_read for s in sources)
        assert read < 16 * 1024**2, f"read {read} bytes of a 2 GB file to open it"
        # Triage and progress from the tail.
        await until(pilot, "the findings", lambda: panel.counts.get("cuda_oom") == 1)
        assert panel.counts.get("traceback") == 1
        progress = app.query_one(ProgressPanel)
        # The chunk reaches the app (which feeds the progress panel) after the log panel.
        await until(pilot, "the progress", lambda: progress.has_class("has-progress"))
        assert "step 1200/10000" in progress.text
        assert "ETA 1:13:20" in progress.text and "loss 0.123" in progress.text
        # A few more polls read nothing new.
        before = sum(s.bytes_read for s in sources)
        await until(pilot, "two more polls", lambda: panel.generation and panel._active_poll is None, timeout=5)
        await pilot.pause(2.5)
        assert sum(s.bytes_read for s in sources) - before < 64 * 1024


async def test_log_panel_search_follow_truncation_and_streams(tmp_path):
    row = job_row(tmp_path)
    log = Path(row.log_out)
    log.parent.mkdir(parents=True)
    lines = [f"row {i}" for i in range(1, 3001)]
    lines[4] = "ERROR: the first error, far above the view"
    lines[9] = "a needle in the haystack"
    lines[2990] = "\x1b[31mcoloured\x1b[0m text"
    lines[2995] = "epoch 1\r50%\rdone"  # a bar redrawn with \r: only its final state shows
    log.write_text("\n".join(lines) + "\n")

    app = PanelApp(LocalFileSource)
    async with app.run_test(size=(120, 36)) as pilot:
        panel = app.query_one(LogPanel)
        panel.follow(row)
        await until(pilot, "the tail", lambda: "row 3000" in panel.shown_lines)
        assert len(panel.shown_lines) == 200  # only the tail was read
        assert "done" in panel.shown_lines and not any("\r" in line for line in panel.shown_lines)

        # Scrolling up to read pauses following; f resumes it. First the
        # view must have reached the end (a refresh after the lines came):
        # scrolling to the top from the top is no scroll at all.
        await until(pilot, "the view at the end",
                    lambda: panel.view.max_scroll_y > 0 and panel.view.scroll_y >= panel.view.max_scroll_y)
        panel.view.scroll_to(y=0, animate=False, immediate=True)
        await until(pilot, "following to pause", lambda: not panel.following)
        panel.toggle_follow()
        assert panel.following

        # Live: appended lines show up.
        with open(log, "a") as handle:  # noqa: ASYNC230 - a local test file
            handle.write("row 3001\n")
        await until(pilot, "the appended line", lambda: panel.shown_lines[-1] == "row 3001")

        # Search: the match lies far above the view, so its context is loaded.
        panel.open_search()
        await pilot.press(*"needle", "enter")
        await until(pilot, "the match", lambda: "a needle in the haystack" in panel.shown_lines)
        assert not panel.following and "needle" in (panel.status_note or "")
        index = panel.shown_lines.index("a needle in the haystack")
        assert panel.highlighted_index == index

        # Follow again: back to the tail.
        panel.toggle_follow()
        await until(pilot, "the tail again", lambda: panel.shown_lines and panel.shown_lines[-1] == "row 3001")

        # Jump to the first error (also far above).
        assert panel.jump_to_first_error() == "looking for the first error…"
        await until(pilot, "the first error",
                    lambda: any(line.startswith("ERROR: the first error") for line in panel.shown_lines))
        panel.toggle_follow()
        await until(pilot, "the tail again", lambda: panel.shown_lines and panel.shown_lines[-1] == "row 3001")

        # Truncation (a requeued job reopening its log) is said, then followed.
        log.write_text("fresh start\n")
        await until(pilot, "the truncation notice",
                    lambda: any("truncated" in line for line in panel.shown_lines) and "fresh start" in panel.shown_lines)

        # stderr does not exist yet: a pending job says so.
        panel.follow(job_row(tmp_path, state="PENDING"))
        panel.toggle_stream()
        await until(pilot, "the missing-file note", lambda: panel.missing)
        header = str(panel.query_one("#log-header").render())
        assert "stderr" in header and "has not started yet" in header


async def test_a_job_that_ended_without_a_log_says_so(tmp_path):
    """Cancelled before it started: not "no log yet; it appears when the job starts"."""
    app = PanelApp(LocalFileSource)
    async with app.run_test(size=(120, 36)) as pilot:
        panel = app.query_one(LogPanel)

        def header() -> str:
            return str(panel.query_one("#log-header").render())

        for row, said in [
            (replace(job_row(tmp_path), state="CANCELLED", elapsed=0), "no log: the job never started (it ended CANCELLED)"),
            (replace(job_row(tmp_path), state="FAILED", elapsed=3), "no log was written (the job ended FAILED)"),
            (job_row(tmp_path, state="PENDING"), "no log yet (the job has not started yet)"),
        ]:
            panel.follow(row, force=True)
            await until(pilot, "the missing-file note", lambda: panel.missing and said in header())
            assert "appears when the job starts" not in header() or row.state == "PENDING"


def test_status_without_once_opens_the_dashboard(tmp_path, monkeypatch):
    from hpcwizard.cli import main
    from hpcwizard.tui import app as app_module

    opened = {}

    def fake_run(self, *args, **kwargs):
        opened.update(mode=self.start_mode, home=self.context.project_home)
        return 0

    monkeypatch.setattr(app_module.HpcWizardApp, "run", fake_run)
    # The CLI refuses to start a TUI without a terminal: pretend to have one.
    monkeypatch.setattr("sys.stdin.isatty", lambda: True, raising=False)
    monkeypatch.setattr("sys.stdout.isatty", lambda: True, raising=False)
    update_state(tmp_path / "hpcwizard", lambda state: None)  # an (empty) project home
    assert main(["status", "--project-home", str(tmp_path)]) == 0
    assert opened == {"mode": "dashboard", "home": tmp_path}


async def test_first_error_of_a_failed_job_is_looked_for_in_stderr_too(tmp_path):
    """The panel opens stdout; a failed job's error usually went to stderr,
    where e said "no error found in this log". A job still running (or with
    no error anywhere) is not switched."""
    row = replace(job_row(tmp_path), state="FAILED", exit_code="1:0")
    out, err = Path(row.log_out), Path(row.log_err)
    out.parent.mkdir(parents=True)
    out.write_text("".join(f"step {i}\n" for i in range(1, 400)))
    err.write_text("warming up\nTraceback (most recent call last):\n  File \"t.py\", line 3\nRuntimeError: boom\n")

    app = PanelApp(LocalFileSource)
    async with app.run_test(size=(80, 24)) as pilot:
        panel = app.query_one(LogPanel)
        for job in (job_row(tmp_path), row):  # running: stdout only; failed: stderr too
            panel.follow(job, force=True)
            await until(pilot, "the tail", lambda: "step 399" in panel.shown_lines)
            panel.jump_to_first_error()
            if job.state == "RUNNING":
                await until(pilot, "the answer", lambda: panel.status_note == "no error found in this log")
                assert panel.stream == "out"
        await until(pilot, "stderr's first error", lambda: panel.stream == "err" and panel.status_note == "first error")
        assert panel.path == row.log_err
        assert panel.shown_lines[panel.highlighted_index] == "Traceback (most recent call last):"
        assert "stderr" in str(panel.query_one("#log-header").render())

        # Neither log has an error: said once, stdout stays.
        err.write_text("nothing to see\n")
        panel.stream = "out"
        await until(pilot, "stdout again", lambda: "step 399" in panel.shown_lines)
        panel.jump_to_first_error()
        await until(pilot, "the answer", lambda: panel.status_note == "no error found in stdout or stderr")
        assert panel.stream == "out"


async def test_search_says_which_match_in_words_at_80_columns(tmp_path):
    """The header ended in "match for 'stage' at offset 1389", cut to "mat…"
    at 80 columns (and a byte offset tells nobody anything)."""
    row = job_row(tmp_path)
    log = Path(row.log_out)
    log.parent.mkdir(parents=True)
    log.write_text("".join(f"stage {n}\n" + "".join(f"row {i}\n" for i in range(50)) for n in (1, 2, 3)))

    app = PanelApp(LocalFileSource)
    async with app.run_test(size=(80, 24)) as pilot:
        panel = app.query_one(LogPanel)
        panel.follow(row)
        await until(pilot, "the tail", lambda: panel.shown_lines and panel.shown_lines[-1] == "row 49")

        def header() -> str:
            return str(panel.query_one("#log-header").render())

        panel.open_search()
        await pilot.press(*"stage", "enter")
        await until(pilot, "the newest match", lambda: "'stage': newest match" in header())
        assert panel.shown_lines[panel.highlighted_index] == "stage 3"
        panel.search_again(older=True)
        await until(pilot, "the next older", lambda: "'stage': match 2 from the end" in header())
        assert panel.shown_lines[panel.highlighted_index] == "stage 2"
        panel.search_again(older=False)
        await until(pilot, "back to the newest", lambda: "'stage': newest match" in header())
        assert "offset" not in header()


async def test_a_long_reason_leaves_elapsed_and_start_on_an_80_column_screen(tmp_path):
    """ "DependencyNeverSatisfied: afterok:317 failed" pushed Elapsed/Limit
    and Start off screen at 80x24."""
    base = job_row(tmp_path)
    rows = [
        replace(base, job_id="316", name="setup", state="COMPLETED", elapsed=65, time_limit=None,
                start="2026-12-02T17:00:00", source="sacct"),
        replace(base, job_id="317", name="train", state="FAILED", exit_code="1:0", reason="NonZeroExitCode",
                elapsed=3, time_limit=3600, start="2026-12-02T17:01:00"),
        replace(base, job_id="318", name="convert", state="PENDING", reason="DependencyNeverSatisfied",
                dependency="afterok:317(failed)", elapsed=0, time_limit=1800, start=None),
        replace(base, job_id="319", name="other", state="PENDING",
                reason="ReqNodeNotAvail, UnavailableNodes:gpu[01-16]", elapsed=0, time_limit=36000,
                start="2026-12-02T18:00:00"),
    ]
    app = TableApp()
    async with app.run_test(size=(80, 24)) as pilot:
        table = await table_showing(pilot, rows)
        widths = {column.label.plain: column.get_render_width(table) for column in table.ordered_columns}
        assert sum(widths.values()) <= 80, widths
        drawn = [table.render_lines(Region(0, y, table.size.width, 1))[0].text for y in range(1, 5)]
        assert "317 FAILED" in drawn[2] and drawn[2].rstrip().endswith("-")  # how 317 ended, in its own word
        assert drawn[3].rstrip().endswith("~12-02 18:00") and "…" in drawn[3]
        assert "1:05 / ?" in drawn[0]


async def test_a_damaged_state_says_so_in_full_and_what_to_do(tmp_path, slurm_runner):
    """The banner was cut after "…move it aside to start over; Slurm" and the
    table kept saying "Asking Slurm for this project's jobs…" forever."""
    home = tmp_path / "proj"
    (home / "hpcwizard").mkdir(parents=True)
    (home / "hpcwizard" / "state.json").write_text("{damaged")
    app = dashboard_app(home, slurm_runner)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        banner = await until(pilot, "the banner", lambda: screen.banner_text)
        await pilot.pause()
        assert "is damaged" in banner and banner.rstrip().endswith("Slurm jobs are not affected")
        shown = screen.query_one("#dash-banner")
        assert shown.region.height >= 2 and shown.region.height == shown.virtual_size.height  # wrapped, not cut
        empty = str(screen.query_one("#dash-empty").render())
        assert "Could not read this project's state" in empty and "Asking Slurm" not in empty
        assert screen.query_one("#dash-empty").region.height == 1  # one line at 80 columns
        # Moved aside: r starts over.
        (home / "hpcwizard" / "state.json").rename(home / "hpcwizard" / "state.json.damaged")
        update_state(home / "hpcwizard", lambda state: None)
        await pilot.press("r")
        await until(pilot, "the recovery", lambda: screen.banner_text is None and screen.polls >= 1)
        assert "No jobs in this project yet" in str(screen.query_one("#dash-empty").render())


async def test_the_doctor_says_a_timeout_needs_more_time_not_a_fix(tmp_path):
    """It said "exit code 0:0 … Fix the cause first (edit the script or the
    data)" for a job that simply hit its time limit."""
    from hpcwizard.jobs.resubmit import Diagnosis

    app = make_app(project_home=None, start_mode="dashboard")
    base = replace(job_row(tmp_path), script="/p/runs/train.sbatch", exit_code="0:0")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await until(pilot, "the dashboard", lambda: isinstance(app.screen, DashboardScreen) and app.screen)
        for state, said, hint in [("TIMEOUT", "hit its time limit of 1:00 (TIMEOUT)", "job's time in the plan"),
                                  ("OUT_OF_MEMORY", "ran out of memory (OUT_OF_MEMORY)", "job's mem in the plan"),
                                  ("FAILED", "ended FAILED.", "Fix the cause first")]:
            screen._show_doctor(Diagnosis(parent=replace(base, state=state), stuck=()))
            modal = await until(pilot, "the doctor", lambda: isinstance(app.screen, ChoiceScreen)
                                and app.screen.query("Button") and app.screen)
            await pilot.pause()  # mounted (its on_mount focuses a button) before it is dismissed
            body = modal.body_text
            assert said in body and hint in body and "exit code" not in body, body
            modal.dismiss(None)
            await until(pilot, "the dashboard again", lambda: app.screen is screen)

"""The live dashboard: job table, followed log, training progress, actions.

Users leave it open for days, so it must cost the cluster almost nothing:

* one :func:`~hpcwizard.jobs.status.take_snapshot` per refresh (one squeue for all
  jobs, at most one sacct), in a thread worker; the next refresh is armed
  with ``set_timer`` only when the previous one finished, so a slow
  controller never gets overlapping requests;
* the interval adapts (:class:`~hpcwizard.jobs.poll.PollPolicy`): fast
  right after a change, doubling while nothing changes, longer still when
  every job has finished, longer when the controller is slow; while it does
  not answer, a ``scontrol ping`` every few seconds instead of any squeue,
  and a refresh as soon as it answers again;
* once a second, without asking Slurm: the Elapsed of running jobs ticks on
  from the last refresh, and the stdout logs of running jobs are read for
  the line every job script prints last (its exit trap): a job that says it
  ends, or that ran past its time limit, gets a refresh at once and then
  every second or two until Slurm shows its end.

Every Slurm action runs in a worker after a confirmation modal; its result
comes back as a message and triggers a fast refresh.
"""

from __future__ import annotations

import time
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import DataTable, Footer, Static
from textual.worker import Worker, WorkerState

from hpcwizard.errors import UserError
from hpcwizard.jobs.poll import EndingJobs, EndWatch, FinishedJobsCache, PollPolicy, controller_answers
from hpcwizard.jobs.status import JobRow, StatusSnapshot, TrainingStatus, TrainingWatch, take_snapshot
from hpcwizard.project.home import Project
from hpcwizard.project.state import StateError
from hpcwizard.slurm import JobState, SlurmClient
from hpcwizard.tui.messages import ActionFinished, ConnectionChanged, LogChunk, SnapshotTaken
from hpcwizard.tui.widgets.confirm import ChoiceScreen, ConfirmScreen
from hpcwizard.tui.widgets.job_table import JobTable, short_dependency
from hpcwizard.tui.widgets.log_panel import LogPanel
from hpcwizard.tui.widgets.progress_panel import ProgressPanel

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from textual import getters

    from hpcwizard.tui.app import AppContext, HpcWizardApp

#: Seconds between two ticks (Elapsed, end markers, time limits).
TICK_SECONDS = 1.0
#: Logs read each tick at most (a stat each; over SSH, a round trip each).
WATCHED_LOGS = 32


def logs_to_watch(jobs) -> dict[str, str]:
    """Job id -> stdout log, for the jobs whose end (or start and end) may
    come before the next refresh: the running ones, then the pending ones
    that may start any moment (not held, not waiting on another job, whose
    end brings a refresh by itself)."""
    running = [job for job in jobs if job.state is JobState.RUNNING]
    startable = [job for job in jobs if job.state is JobState.PENDING and not job.held
                 and job.reason not in ("Dependency", "DependencyNeverSatisfied")]
    return {job.job_id: job.log_out for job in [*running, *startable][:WATCHED_LOGS]}


def _jobs(count: int) -> str:
    return f"{count} job" if count == 1 else f"{count} jobs"


def _hhmmss(moment) -> str:
    return moment.strftime("%H:%M:%S")


def human_seconds(seconds: float) -> str:
    """An interval as people say it (the slow-controller floor makes the poll
    interval any float): whole seconds, ``8 s`` for 8.41332; a tenth only
    under 5 s, where it is a sizeable part (``1.5 s``)."""
    if seconds < 5:
        return f"{round(seconds, 1):g} s"
    return f"{round(seconds)} s"


class DashboardCommands(Provider):
    """Dashboard entries of the command palette (ctrl+p)."""

    def _commands(self) -> list[tuple[str, str, Callable[[], object]]]:
        screen = self.screen
        if not isinstance(screen, DashboardScreen):
            return []
        commands: list[tuple[str, str, Callable[[], object]]] = [
            ("Refresh now", "Ask Slurm for the job states now", screen.action_refresh),
            ("Cancel job", "Cancel the selected job (asks first)", screen.action_cancel_job),
            ("Cancel chain", "Cancel the selected job's whole chain (asks first)", screen.action_cancel_chain),
        ]
        job = screen.selected_job
        if job is not None and job.state is JobState.PENDING:  # offered only where they do something
            if job.held:
                commands.append(("Release job", "Let the selected held job start", screen.action_release))
            else:
                commands.append(("Hold job", "Keep the selected pending job from starting", screen.action_hold))
        commands += [
            ("Doctor: resubmit failed job", "Explain a stuck chain; resubmit or cancel it", screen.action_doctor),
            ("View sbatch file", "Show the selected job's batch script", screen.action_view_sbatch),
            ("Toggle stdout/stderr", "Follow the other log of the selected job", screen.action_toggle_stream),
            ("Next node's log", "A job on several nodes: show its next node's log", screen.action_next_node),
            ("Jump to first error", "Scroll the log to its first error line", screen.action_first_error),
        ]
        if hasattr(screen.app, "open_wizard"):
            commands.append(("Open wizard", "The setup wizard again: resume, back to the last step or a new plan",
                             screen.action_open_wizard))
        return commands

    async def discover(self) -> Hits:
        for title, help_text, callback in self._commands():
            yield DiscoveryHit(title, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help_text, callback in self._commands():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), callback, help=help_text)


class DashboardScreen(Screen):
    """The ``dashboard`` mode's screen (and the wizard's last one)."""

    if TYPE_CHECKING:  # self.app is the HpcWizardApp (for the type checker only: no check at run time)
        app = getters.app(HpcWizardApp)

    CSS_PATH = "dashboard.tcss"
    COMMANDS: ClassVar[set] = {DashboardCommands}
    BINDING_GROUP_TITLE = "Dashboard"

    # The footer shows the few keys that matter most and fits 80 columns;
    # every key stays bound and is listed by ? (and the palette, ctrl+p).
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "app.quit", "Quit"),
        Binding("ctrl+q", "app.quit", "Quit", show=False, priority=True),  # q is in the footer already
        Binding("r", "refresh", "Refresh"),
        Binding("c", "cancel_job", "Cancel"),
        Binding("d", "doctor", "Doctor"),
        Binding("slash", "search", "Search"),
        Binding("question_mark", "help", "Keys"),
        Binding("C", "cancel_chain", "Cancel chain", show=False),
        Binding("h", "hold", "Hold", show=False),
        Binding("u", "release", "Release", show=False),
        Binding("v", "view_sbatch", "Sbatch", show=False),
        Binding("o", "toggle_stream", "out/err", show=False),
        Binding("m", "next_node", "Next node's log", show=False),
        Binding("f", "toggle_follow", "Follow", show=False),
        Binding("n", "search_next", "Older match", show=False),
        Binding("N", "search_previous", "Newer match", show=False),
        Binding("e", "first_error", "1st error", show=False),
        Binding("escape", "close_search", "Close search", show=False),
        Binding("w", "open_wizard", "Wizard", show=False),
    ]

    def __init__(self, *, policy: PollPolicy | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.policy = policy or PollPolicy()
        self.snapshot: StatusSnapshot | None = None
        self.diagnoses: list = []
        self.last_refresh: datetime | None = None  # from the app's clock
        self.last_duration = 0.0
        self.down_since: datetime | None = None
        self.polls = 0  # refreshes completed (tests and the benchmark read it)
        self.probes = 0  # scontrol pings while the controller did not answer
        self._timer: Timer | None = None
        self._poll_active: Worker | None = None
        self._refresh_again = False
        self._slurm: SlurmClient | None = None
        self.connection_note: str | None = None  # remote mode: the last reconnect or loss
        self._filled = False  # the first refresh with jobs picked the row to select
        self._newest_chain: tuple[str, ...] = ()  # the last submission's job ids (worker → first fill)
        self._watch: TrainingWatch | None = None  # the train jobs' logs, followed by the poll worker
        self.training: dict[str, TrainingStatus] = {}  # job id -> where its training stands
        self._last_chunk: LogChunk | None = None  # the followed log's latest progress
        self._polled_at: float | None = None  # time.monotonic() of the last snapshot
        self._ticker: Timer | None = None
        self._end_watch: EndWatch | None = None
        self._end_check: Worker | None = None
        self._ending = EndingJobs()  # jobs that said they end, or ran past their limit

    # -- layout --------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Static("", id="dash-status", markup=False)
        yield Static("", id="dash-banner", markup=False)
        yield Static("", id="dash-doctor", markup=False)
        yield Static("", id="dash-training", markup=False)
        yield JobTable(id="jobs", clock=self.context.clock)
        yield Static("", id="dash-empty", markup=False)
        yield ProgressPanel(id="progress")
        yield LogPanel(id="log", source_factory=self.app.context.files.open_source)
        yield Footer()

    @property
    def context(self) -> AppContext:
        return self.app.context

    @property
    def table(self) -> JobTable:
        return self.query_one(JobTable)

    @property
    def log_panel(self) -> LogPanel:
        return self.query_one(LogPanel)

    def on_mount(self) -> None:
        connection = getattr(self.context, "connection", None)
        if connection is not None:
            # Called from whichever worker thread (re)connects: hop to the UI.
            connection.on_event = lambda event: self.post_message(ConnectionChanged(event))
        self._slurm = FinishedJobsCache(self.context.runner)
        self._watch = TrainingWatch(self.context.files)
        self._end_watch = EndWatch(self.context.files.open_source)
        self._ticker = self.set_interval(TICK_SECONDS, self._tick)
        self.table.focus()
        if self.context.project_home is None:
            self._set_empty("No project home: start with `hpcwizard status --project-home DIR`.")
            self._show_status()
            return
        self._set_empty("Asking Slurm for this project's jobs…")
        self._start_poll()

    def on_unmount(self) -> None:
        if self._timer is not None:
            self._timer.stop()
        if self._ticker is not None:
            self._ticker.stop()
        if self._watch is not None:
            self._watch.close()
        if self._end_watch is not None:
            self._end_watch.close()
        connection = getattr(self.context, "connection", None)
        if connection is not None:
            connection.on_event = None

    def on_connection_changed(self, message: ConnectionChanged) -> None:
        event = message.event
        at = time.strftime("%H:%M:%S", time.localtime(event.at))
        if event.kind == "reconnected":
            self.connection_note = f"reconnected to {event.detail} at {at}"
            self.refresh_soon()
        elif event.kind in ("lost", "retrying"):
            self.connection_note = f"connection lost at {at}, reconnecting…"
        elif event.kind == "failed":
            self.connection_note = f"connection lost at {at}: {event.detail}; retrying at the next refresh"
        else:
            return
        self._show_status()

    # -- polling -------------------------------------------------------------

    @property
    def polling(self) -> bool:
        return self._poll_active is not None

    def _start_poll(self, *, probed: bool = False) -> None:
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        if self.policy.down and not probed:
            # A squeue takes ~10 s to fail against a controller that is away;
            # a ping answers in milliseconds either way.
            self._poll_active = self._probe_worker()
        else:
            self._poll_active = self._poll_worker(self.context.project)
        self._show_status()

    @work(thread=True, exclusive=True, group="probe", exit_on_error=False)
    def _probe_worker(self) -> bool:
        return controller_answers(self.context.runner)

    @work(thread=True, exclusive=True, group="poll", exit_on_error=False)
    def _poll_worker(self, project: Project) -> None:
        from hpcwizard.jobs.resubmit import diagnose

        # The state once per refresh, for the snapshot, the doctor and the trainings.
        state = project.load_state()
        started = time.monotonic()
        snapshot = take_snapshot(project, slurm=self._slurm, state=state)
        duration = time.monotonic() - started
        diagnoses = []
        try:
            # From the recorded chain: a job waiting on one that just ended
            # badly is stuck before Slurm says DependencyNeverSatisfied.
            if any(job.state is JobState.PENDING for job in snapshot.jobs):
                diagnoses = diagnose(project, snapshot, state=state)
        except UserError:
            diagnoses = []
        if not self._filled:
            # Read before the message is posted, so its handler sees it.
            self._newest_chain = tuple(state.submissions[-1].job_ids) if state.submissions else ()
        try:
            # Only the logs of train jobs, only what they appended since.
            training = dict(self._watch.update(snapshot, state)) if self._watch is not None else {}
        except (OSError, UserError):
            training = dict(self._watch.statuses) if self._watch is not None else {}
        self.post_message(SnapshotTaken(snapshot, duration, diagnoses, training))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if worker.group == "poll" and worker is self._poll_active:
            if event.state is WorkerState.ERROR:
                # take_snapshot raised (a damaged state file...): show it, back off.
                self.policy.next(changed=False, error=False)
                error = worker.error
                self._set_banner(f"refresh failed: {error.one_line() if isinstance(error, UserError) else error}")
                if self.snapshot is None:
                    # Not "Asking Slurm…" forever: nothing was asked, the error stopped us.
                    # One line at 80 columns; the banner above has the path and the details.
                    self._set_empty("Could not read this project's state (see above): move it aside, then press r."
                                    if isinstance(error, StateError)
                                    else "The refresh failed (see above); press r to try again.")
            if event.state in (WorkerState.SUCCESS, WorkerState.ERROR, WorkerState.CANCELLED):
                self._poll_active = None
                # Not 0.0: Textual 0.x divides by a zero-interval timer that
                # is still pending when the screen closes (ZeroDivisionError).
                delay = 0.01 if self._refresh_again else self.policy.interval
                self._refresh_again = False
                self._timer = self.set_timer(delay, self._start_poll)
                self._show_status()
        elif worker.group == "probe" and worker is self._poll_active:
            if event.state in (WorkerState.SUCCESS, WorkerState.ERROR, WorkerState.CANCELLED):
                self._poll_active = None
                self.probes += 1
                if event.state is WorkerState.SUCCESS and worker.result:
                    self._start_poll(probed=True)  # it answers again: refresh at once
                else:
                    self._timer = self.set_timer(0.01 if self._refresh_again else self.policy.probe,
                                                 self._start_poll)
                self._refresh_again = False
                self._show_status()
        elif worker.group == "end-watch" and worker is self._end_check:
            if event.state in (WorkerState.SUCCESS, WorkerState.ERROR, WorkerState.CANCELLED):
                self._end_checked(worker)
        elif worker.group == "action" and event.state is WorkerState.ERROR:
            error = worker.error
            text = error.one_line() if isinstance(error, UserError) else str(error)
            self.notify(text, title="Action failed", severity="error", timeout=10, markup=False)
            self.refresh_soon()

    def on_snapshot_taken(self, message: SnapshotTaken) -> None:
        snapshot = self._keep_last_known(message.snapshot)
        self.snapshot = snapshot
        self.polls += 1
        self.last_duration = message.duration
        self.last_refresh = self.context.clock()
        self.training = dict(message.training or {})
        changed = self.table.apply(snapshot.jobs, self.training)
        self._polled_at = time.monotonic()  # Elapsed ticks on from here
        all_finished = bool(snapshot.jobs) and not any(job.active for job in snapshot.jobs)
        for job in snapshot.jobs:
            if job.state is JobState.COMPLETING:
                self._ending.marker(job.job_id)  # over: COMPLETED (or not) any moment
        self._ending.update(job.job_id for job in snapshot.jobs if job.active)
        self.policy.next(changed=changed, error=snapshot.error is not None, duration=message.duration,
                         all_finished=all_finished, soon=self._ending.soon())
        if snapshot.error is not None:
            if self.down_since is None:
                self.down_since = self.last_refresh
            self._set_banner(f"controller unreachable since {_hhmmss(self.down_since)} — {snapshot.error} — "
                             f"showing the last known states; asking it again every "
                             f"{human_seconds(self.policy.probe)} (scontrol ping)")
        else:
            self.down_since = None
            self._set_banner(None)
        self.diagnoses = list(message.diagnoses or [])
        self._show_doctor_hint()
        self._show_training_hint()
        if snapshot.jobs:
            self._set_empty(None)
        else:
            self._set_empty("No jobs in this project yet: submit a plan (`hpcwizard submit PLAN.yaml` or the wizard).")
        if snapshot.jobs and not self._filled:
            self._filled = True
            self._select_first(snapshot.jobs)
        self._follow_selected()
        self._show_progress()  # the job may have ended, or be back in the queue
        self._show_status()

    def _select_first(self, jobs) -> None:
        """On the first fill, the job worth watching: the running job of the
        newest submission (what the wizard just submitted; its setup job has
        long finished while its train job runs), else its next job to run,
        else its last one; without one, the first running or active job.
        Scrolled into view (rows go oldest first, so a new chain may be
        below the fold)."""
        rows = {job.job_id: job for job in jobs}
        newest = [rows[job_id] for job_id in self._newest_chain if job_id in rows]
        pick = (next((job for job in newest if job.state is JobState.RUNNING), None)
                or next((job for job in newest if job.active), None)
                or (newest[-1] if newest else None)
                or next((job for job in jobs if job.state is JobState.RUNNING), None)
                or next((job for job in jobs if job.active), None)
                or jobs[0])
        self.table.move_cursor(row=self.table.get_row_index(pick.job_id), scroll=True)

    def _keep_last_known(self, snapshot: StatusSnapshot) -> StatusSnapshot:
        """During an outage the state file only says "UNKNOWN": show what
        Slurm last told us instead (the banner says it is not live). A limit
        nobody says any more (a job squeue forgot, submitted before limits
        were recorded) stays the last one Slurm said, never "?"."""
        if self.snapshot is None:
            return snapshot
        known = {job.job_id: job for job in self.snapshot.jobs}

        def kept(job: JobRow) -> JobRow:
            last = known.get(job.job_id)
            if last is None:
                return job
            if snapshot.error is not None and job.source == "state":
                return last
            if job.time_limit is None and last.time_limit is not None:
                return replace(job, time_limit=last.time_limit)
            return job

        return replace(snapshot, jobs=tuple(kept(job) for job in snapshot.jobs))

    def refresh_soon(self) -> None:
        """Poll now (or right after the poll under way): a user acted."""
        self.policy.poke()
        self._poll_now()

    def _poll_now(self) -> None:
        if self.context.project_home is None:
            return
        if self.polling:
            self._refresh_again = True
        else:
            self._start_poll()

    # -- between refreshes: elapsed, end markers, time limits ------------------

    def _tick(self) -> None:
        """Once a second, asking Slurm nothing: running jobs' Elapsed goes on
        from the last refresh; a job past its time limit, or whose log says
        it ends (read in a worker), is refreshed at once."""
        if self.snapshot is None or self._polled_at is None or self.policy.down:
            return
        since = time.monotonic() - self._polled_at
        self.table.tick(since)
        running = {job.job_id: job for job in self.snapshot.jobs if job.state is JobState.RUNNING}
        past_limit = [job_id for job_id, job in running.items()
                      if job.time_limit and (job.elapsed or 0) + since >= job.time_limit
                      and self._ending.past_its_limit(job_id)]
        if past_limit:
            self._poll_now()
        if self._end_check is None and self._end_watch is not None:
            self._end_check = self._end_worker(logs_to_watch(self.snapshot.jobs))

    @work(thread=True, exclusive=True, group="end-watch", exit_on_error=False)
    def _end_worker(self, logs: dict[str, str]) -> list[str]:
        assert self._end_watch is not None
        return self._end_watch.check(logs)

    def _end_checked(self, worker: Worker) -> None:
        self._end_check = None
        ending = worker.result if worker.state is WorkerState.SUCCESS else None
        if ending:
            for job_id in ending:
                self._ending.marker(job_id)
            self._poll_now()

    # -- status lines ----------------------------------------------------------

    def _show_status(self) -> None:
        home = self.context.project_home
        parts = []
        # First: the line is cut at its end, and at 80-100 columns a reconnect said fourth was lost.
        if self.connection_note:
            parts.append(self.connection_note)
        if self.last_refresh is not None:
            parts.append(f"refreshed {_hhmmss(self.last_refresh)} ({self.last_duration:.1f} s)")
        if self.policy.down:
            parts.append(f"controller down, pinged every {human_seconds(self.policy.probe)}")
        else:
            parts.append(f"every {human_seconds(self.policy.interval)}" + (" (refreshing…)" if self.polling else ""))
        if self.snapshot is not None:
            active = sum(1 for job in self.snapshot.jobs if job.active)
            parts.append(f"{len(self.snapshot.jobs)} jobs, {active} active")
        files = self.context.files
        where = f"{files.where}:" if files.remote else ""
        parts.append(f"{where}{home}" if home else "no project home")
        self.query_one("#dash-status", Static).update(Text(" · ".join(parts), no_wrap=True, overflow="ellipsis"))

    @property
    def status_text(self) -> str:
        return str(self.query_one("#dash-status", Static).render())

    @property
    def banner_text(self) -> str | None:
        banner = self.query_one("#dash-banner", Static)
        return str(banner.render()) if banner.has_class("shown") else None

    def _set_banner(self, text: str | None) -> None:
        banner = self.query_one("#dash-banner", Static)
        banner.set_class(bool(text), "shown")
        # Wrapped, never cut: the end of a long error says what to do.
        banner.update(Text(text or ""))

    def _set_empty(self, text: str | None) -> None:
        empty = self.query_one("#dash-empty", Static)
        empty.set_class(bool(text), "shown")
        empty.update(text or "")

    def _show_doctor_hint(self) -> None:
        hint = self.query_one("#dash-doctor", Static)
        if not self.diagnoses:
            hint.set_class(False, "shown")
            return
        first = self.diagnoses[0]
        stuck = ", ".join(f"{job.name} ({job.job_id})" for job in first.stuck)
        more = f" (+{len(self.diagnoses) - 1} more)" if len(self.diagnoses) > 1 else ""
        from hpcwizard.jobs.resubmit import continues_from_checkpoint

        parent = first.parent
        todo = ("press d to continue it from its latest checkpoint"
                if continues_from_checkpoint(parent, resumes=parent.job_id in self.training)
                else "press d for the doctor")
        hint.update(Text(f"⚠ {stuck} can never start: {parent.name} ({parent.job_id}) "
                         f"ended {parent.state}{more} — {todo}", overflow="ellipsis"))
        hint.set_class(True, "shown")

    def _show_training_hint(self) -> None:
        """A train job without continuation that will run out of time before
        its training ends: say when, and what to do about it."""
        from hpcwizard.jobs.status import format_clock

        hint = self.query_one("#dash-training", Static)
        warned = [(job_id, t) for job_id, t in self.training.items() if t.limit_in is not None and not t.ended]
        if not warned:
            hint.set_class(False, "shown")
            return
        job_id, training = warned[0]
        row = self.table.rows_by_id.get(job_id)
        name = row.name if row is not None else "train"
        left = training.eta_seconds
        needs = f" (~{format_clock(int(left))} of training left)" if left is not None else ""
        more = f" (+{len(warned) - 1} more)" if len(warned) > 1 else ""
        hint.update(Text(f"⚠ {name} ({job_id}) {training.summary()}{needs}{more}: it does not continue by "
                         "itself; then d continues it from its latest checkpoint", overflow="ellipsis"))
        hint.set_class(True, "shown")

    # -- selection and log -------------------------------------------------------

    @property
    def selected_job(self) -> JobRow | None:
        job_id = self.table.selected_job_id
        return self.table.rows_by_id.get(job_id) if job_id else None

    def _follow_selected(self) -> None:
        self.log_panel.follow(self.selected_job)

    @on(DataTable.RowHighlighted, "#jobs")
    def _row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._follow_selected()

    def on_log_chunk(self, event: LogChunk) -> None:
        if event.generation == self.log_panel.generation:
            self._last_chunk = event
            self._show_progress()

    def _show_progress(self) -> None:
        """The followed log's progress, over every stage of the selected
        train job's plan, with its segment; no ETA once the job ended."""
        from hpcwizard.jobs.triage import overall_progress

        chunk = self._last_chunk
        panel = self.query_one(ProgressPanel)
        if chunk is None or chunk.generation != self.log_panel.generation:
            panel.show(None, [])
            return
        job = self.log_panel.job
        training = self.training.get(job.job_id) if job is not None else None
        overall = None
        if training is not None and training.outline and chunk.progress is not None:
            overall = overall_progress(training.outline, chunk.stage, chunk.progress)
        active = job is None or job.active
        requeued = training is not None and training.requeued and active
        # Nothing of the chain waits on it: the training's ETA is the chain's.
        chain_end = job is not None and not any(
            job.job_id in short_dependency(row.dependency).replace(",", " ").replace(":", " ").split()
            for row in self.table.rows_by_id.values() if row.active)
        panel.show(chunk.progress, chunk.losses, overall=overall, segment=chunk.segment, active=active,
                   requeued=requeued, stage=chunk.stage, ended=None if active or job is None else job.state,
                   chain_end=chain_end, waits=training.waits_text if training is not None else None)

    # -- actions: view ------------------------------------------------------------

    def action_refresh(self) -> None:
        self.refresh_soon()
        self.notify("refreshing", timeout=2)

    @property
    def active_bindings(self):
        """The dashboard's own keys (and the app's) before the focused
        table's: ? listed Textual's generic table keys (cursor up, page down…)
        first and the dashboard's below them. Only the order changes."""
        bindings = super().active_bindings
        own = {key: active for key, active in bindings.items() if active.node in (self, self.app)}
        return {**own, **{key: active for key, active in bindings.items() if key not in own}}

    def action_help(self) -> None:
        """? shows (or hides) every key of the dashboard, not only the footer's."""
        if self.query("HelpPanel"):
            self.app.action_hide_help_panel()
        else:
            self.app.action_show_help_panel()

    def action_toggle_stream(self) -> None:
        self.log_panel.toggle_stream()

    def action_next_node(self) -> None:
        self.notify(self.log_panel.next_node(), timeout=2, markup=False)

    def action_toggle_follow(self) -> None:
        self.log_panel.toggle_follow()

    def action_search(self) -> None:
        if self.log_panel.path is None:
            self.notify("select a job first", severity="warning")
            return
        self.log_panel.open_search()

    def action_close_search(self) -> None:
        self.log_panel.close_search()
        self.table.focus()

    def action_search_next(self) -> None:
        self.notify(self.log_panel.search_again(older=True), timeout=2, markup=False)

    def action_search_previous(self) -> None:
        self.notify(self.log_panel.search_again(older=False), timeout=2, markup=False)

    def action_first_error(self) -> None:
        self.notify(self.log_panel.jump_to_first_error(), timeout=3, markup=False)

    async def action_open_wizard(self) -> None:
        open_wizard = getattr(self.app, "open_wizard", None)
        if open_wizard is not None:
            await open_wizard()

    def action_view_sbatch(self) -> None:
        from hpcwizard.tui.screens.sbatch_viewer import SbatchViewer

        job = self.selected_job
        if job is None:
            self.notify("select a job first", severity="warning")
            return
        if not job.script:
            self.notify(f"job {job.job_id} was not submitted by hpcwizard: no sbatch file recorded",
                        severity="warning", markup=False)
            return
        self.app.push_screen(SbatchViewer(job.script, files=self.context.files))

    # -- actions: Slurm (confirmed, in workers) -----------------------------------

    def _require_job(self) -> JobRow | None:
        job = self.selected_job
        if job is None:
            self.notify("select a job first", severity="warning")
        return job

    def _confirm(self, title: str, body: str, on_yes, *, yes: str = "Yes") -> None:
        def answered(answer: bool | None) -> None:
            if answer:
                on_yes()

        self.app.push_screen(ConfirmScreen(title, body, yes=yes), answered)

    def action_cancel_job(self) -> None:
        job = self._require_job()
        if job is None:
            return
        if not job.active:
            self.notify(f"job {job.job_id} already ended ({job.state})", severity="warning", markup=False)
            return
        self._confirm(f"Cancel job {job.job_id} ({job.name})?",
                      f"It is {job.state}. Jobs that depend on it will never start.",
                      partial(self._slurm_action, "cancel", [job.job_id]), yes="Cancel job")

    def action_cancel_chain(self) -> None:
        from hpcwizard.jobs.resubmit import chain_of

        job = self._require_job()
        if job is None:
            return
        # A small JSON file; reading it here keeps the question synchronous.
        chain = chain_of(self.context.project.load_state(), job.job_id)
        rows = self.table.rows_by_id
        ids = [j.job_id for j in chain if j.job_id in rows and rows[j.job_id].active] or (
            [job.job_id] if job.active else [])
        if not ids:
            self.notify("nothing left to cancel in this chain", severity="warning")
            return
        listing = "\n".join(f"  {i} {rows[i].name} ({rows[i].state})" for i in ids if i in rows)
        self._confirm(f"Cancel the whole chain ({_jobs(len(ids))})?", listing,
                      partial(self._slurm_action, "cancel", ids), yes="Cancel chain")

    def action_hold(self) -> None:
        job = self._require_job()
        if job is None:
            return
        if job.held:
            self.notify(f"job {job.job_id} is already held ({job.reason}): u releases it", severity="warning",
                        markup=False)
            return
        if job.state is not JobState.PENDING:
            self.notify(f"only a pending job can be held: job {job.job_id} is {job.state}", severity="warning",
                        markup=False)
            return
        self._confirm(f"Hold job {job.job_id} ({job.name})?", "It will not start until released (u).",
                      partial(self._slurm_action, "hold", [job.job_id]), yes="Hold")

    def action_release(self) -> None:
        job = self._require_job()
        if job is None:
            return
        if not job.held:
            why = f"it waits for {job.reason}" if job.state is JobState.PENDING and job.reason else f"it is {job.state}"
            self.notify(f"job {job.job_id} is not held ({why}): only a held job can be released",
                        severity="warning", markup=False)
            return
        self._confirm(f"Release job {job.job_id} ({job.name})?", "It may start as soon as Slurm allows.",
                      partial(self._slurm_action, "release", [job.job_id]), yes="Release")

    @work(thread=True, group="action", exit_on_error=False)
    def _slurm_action(self, action: str, job_ids: list[str]) -> None:
        slurm = SlurmClient(self.context.runner)
        getattr(slurm, action)(job_ids)
        verb = {"cancel": "cancelled", "hold": "held", "release": "released"}[action]
        self.post_message(ActionFinished(action, True, f"{verb} {', '.join(job_ids)}"))

    def on_action_finished(self, message: ActionFinished) -> None:
        self.notify(message.text, title=message.action, severity="information" if message.ok else "error",
                    timeout=6, markup=False)
        self.refresh_soon()

    # -- the DependencyNeverSatisfied doctor ---------------------------------------

    def _diagnosis_for(self, job: JobRow):
        from hpcwizard.jobs.resubmit import Diagnosis

        for diagnosis in self.diagnoses:
            if job.job_id == diagnosis.parent.job_id or job.job_id in {s.job_id for s in diagnosis.stuck}:
                return diagnosis
        if not job.active and job.state is not JobState.COMPLETED and job.script:
            return Diagnosis(parent=job, stuck=())  # a failed job with nothing waiting on it
        return None

    def action_doctor(self) -> None:
        job = self.selected_job
        diagnosis = self._diagnosis_for(job) if job is not None else None
        if diagnosis is None and self.diagnoses:
            diagnosis = self.diagnoses[0]
        if diagnosis is None:
            self.notify("nothing to repair: no job waits on a failed parent (select a failed job to resubmit it)",
                        timeout=5)
            return
        self._doctor_worker(diagnosis)

    @work(thread=True, exclusive=True, group="doctor", exit_on_error=False)
    def _doctor_worker(self, diagnosis) -> None:
        from hpcwizard.jobs.nodelogs import node_trouble
        from hpcwizard.jobs.resubmit import with_exit_code

        # squeue has no exit codes: one sacct/scontrol for the failed parent.
        diagnosis = with_exit_code(diagnosis, SlurmClient(self.context.runner))
        # On several nodes: what its node logs say went wrong between them.
        trouble = node_trouble(diagnosis.parent, self.context.files)
        self.app.call_from_thread(self._show_doctor, diagnosis, trouble)

    def _show_doctor(self, diagnosis, node_trouble=()) -> None:
        from hpcwizard.jobs.resubmit import (
            continues_from_checkpoint,
            fix_advice,
            how_it_ended,
            what_resubmit_runs,
            where_it_logged,
        )

        parent = diagnosis.parent
        training = self.training.get(parent.job_id)
        resumes = training is not None  # a train job: its recipe resumes from the latest checkpoint
        carry_on = continues_from_checkpoint(parent, resumes=resumes)
        home = str(self.context.project_home) if self.context.project_home else None
        if diagnosis.stuck:
            body = diagnosis.explain(resumes=resumes)
        else:
            body = f"{parent.name} ({parent.job_id}) {how_it_ended(parent)}."
        # Paths on lines of their own, below the project home: wrapped in a
        # sentence they were cut mid-word.
        body += "\n\n" + where_it_logged(parent, home)
        if node_trouble:
            body += "\n\nIts node logs say:\n" + "\n".join(f"  {finding.text}" for finding in node_trouble[:6])
        verb = "Continue" if carry_on else "Resubmit"
        body += (f"\n\n{verb} runs its recorded sbatch file again:\n{what_resubmit_runs(parent, home)}\n"
                 + ("and cancels the stuck jobs and submits them again after it (afterok). " if diagnosis.stuck else "")
                 + fix_advice(parent, resumes=resumes))
        if carry_on and training is not None:
            body += (" It was to continue across its time limit by itself: the end of its log says why it did not."
                     if training.continues else
                     " (Its plan predates continuation: plans submitted now continue across the time limit by"
                     " themselves.)")
        # Not r or c: on the dashboard they refresh and cancel (with a question);
        # here they would act at once.
        choices = [("resubmit", "Continue from the latest checkpoint" if carry_on else "Resubmit", "s")]
        if diagnosis.stuck:
            choices.append(("cancel", "Cancel stuck jobs", "x"))

        def chosen(choice: str | None) -> None:
            if choice == "resubmit":
                # A follow-on segment runs the script of the job it continues.
                self._resubmit_worker(parent.continues or parent.job_id, carry_on)
            elif choice == "cancel":
                self._slurm_action("cancel", [job.job_id for job in diagnosis.stuck])

        self.app.push_screen(ChoiceScreen(f"Doctor: {parent.name} ({parent.job_id}) {parent.state}", body, choices),
                             chosen)

    @work(thread=True, exclusive=True, group="action", exit_on_error=False)
    def _resubmit_worker(self, parent_id: str, carry_on: bool = False) -> None:
        from hpcwizard.jobs.resubmit import resubmit_failed

        result = resubmit_failed(self.context.project, parent_id)
        pairs = ", ".join(f"{old}→{new}" for old, new in result.new_ids.items())
        if carry_on:
            self.post_message(ActionFinished("continue", True, f"continuing from the latest checkpoint: {pairs}"))
        else:
            self.post_message(ActionFinished("resubmit", True, f"resubmitted {pairs}"))

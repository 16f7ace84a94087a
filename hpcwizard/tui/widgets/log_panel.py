"""Follow one job's log: tail, live updates, search, triage highlights.

The toolong approach: a :class:`~hpcwizard.jobs.logtail.LogFollower` keeps byte
offsets and reads only what was appended, in a thread worker, once a second
(the next poll is armed when the previous one finished, so a slow disk never
stacks reads). Opening a multi-GB log reads its last lines backwards, never
the whole file. The view is a RichLog with a bounded number of lines; each
shown line's byte offset is remembered, so search and "first error" can
scroll to a line in view or load the context around one that is not.

Worker results come back as :class:`~hpcwizard.tui.messages.LogChunk` and
:class:`~hpcwizard.tui.messages.SearchResult`; they bubble on to the screen
(which feeds the progress panel).
"""

from __future__ import annotations

import bisect
import os
from collections import deque
from collections.abc import Callable
from typing import Literal

from rich.text import Text
from textual import on, work
from textual.containers import Vertical
from textual.reactive import reactive
from textual.timer import Timer
from textual.widgets import Input, RichLog, Static
from textual.worker import Worker, WorkerState, get_current_worker

from hpcwizard.jobs.logtail import FileSource, LocalFileSource, LogFollower, LogUpdate
from hpcwizard.jobs.nodelogs import NodeLogWatch
from hpcwizard.jobs.triage import CANDIDATE, DEFAULT_SEVERITY, Kind, NodeFinding, Severity, Triage
from hpcwizard.slurm import JobState
from hpcwizard.tui.messages import LogChunk, SearchResult

#: Lines kept in the view; older ones scroll out (search still finds them).
MAX_VIEW_LINES = 2000
#: Lines read when a log is opened (from its end).
OPEN_TAIL_LINES = 200
#: A displayed line is cut here: a 1 MB line of JSON must not become a 1 MB strip.
MAX_DISPLAY_CHARS = 4000
#: Seconds between two polls of the followed file.
LOG_POLL_SECONDS = 1.0
#: The header's note while the log cannot be read (cleared once it can again).
READ_ERROR_NOTE = "cannot read the log"

# Lines worth asking triage about (the words its rules look for).
ERROR_CANDIDATE = CANDIDATE
#: Seconds between two reads of a running multi-node job's node logs (for
#: trouble between its nodes; the shown log is read every LOG_POLL_SECONDS).
NODE_LOGS_POLL_SECONDS = 5.0

#: End states where the reason is worth looking for in stderr too: Python
#: tracebacks, Slurm's "CANCELLED AT ... DUE TO TIME LIMIT" and the OOM
#: killer's note all go there, while the panel opens stdout.
ENDED_BADLY = frozenset({JobState.FAILED, JobState.TIMEOUT, JobState.OUT_OF_MEMORY, JobState.NODE_FAIL,
                         JobState.BOOT_FAIL, JobState.CANCELLED})

SEVERITY_STYLES = {
    Severity.HIGH: "bold white on dark_red",
    Severity.MEDIUM: "black on dark_orange",
    Severity.LOW: "red",
}


def _human_bytes(count: int) -> str:
    value = float(count)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count} B"


def render_lines(lines: list[tuple[int, str, str | None]]) -> Text:
    """One Text for a batch of log lines (one display line each), ANSI
    colours decoded and triage findings highlighted."""
    out = Text(no_wrap=True, overflow="ignore", end="")
    for index, (_, text, kind) in enumerate(lines):
        if index:
            out.append("\n")
        shown = text[:MAX_DISPLAY_CHARS] if len(text) > MAX_DISPLAY_CHARS else text
        line = Text.from_ansi(shown, no_wrap=True, end="") if "\x1b" in shown else Text(shown, end="")
        if not line.plain:
            line = Text(" ")  # an empty line must still take one row
        if kind is not None:
            severity = DEFAULT_SEVERITY.get(Kind(kind), Severity.LOW)
            line.stylize(SEVERITY_STYLES[severity])
        out.append_text(line)
    return out


def notice(text: str) -> tuple[int, str, str | None]:
    """A line the panel adds itself (truncation, rotation, skipped bytes)."""
    return (-1, f"── {text} ──", None)


class _Session:
    """What one followed file needs across polls; owned by the poll worker."""

    def __init__(self, path: str, source_factory: Callable[[str], FileSource]) -> None:
        self.path = path
        self.follower = LogFollower(source_factory(path))
        self.triage = Triage()
        self.opened = False
        self.triaged_upto = 0  # byte offset: lines before it were fed to triage

    def close(self) -> None:
        self.follower.close()


class LogPanel(Vertical):
    """The followed log of the selected job (stdout or stderr)."""

    DEFAULT_CSS = """
    LogPanel {
        height: 1fr;
        border-top: solid $primary-darken-2;
    }
    LogPanel #log-header {
        height: 1;
        text-wrap: nowrap;
        text-overflow: ellipsis;
        background: $boost;
        color: $text;
    }
    LogPanel #log-triage {
        display: none;  /* shown while the log has findings */
        height: auto;
        max-height: 1;
        text-wrap: nowrap;
        text-overflow: ellipsis;
        color: $warning;
    }
    LogPanel #log-nodes {
        display: none;  /* shown while a multi-node job's node logs tell of trouble */
        height: auto;
        max-height: 1;
        text-wrap: nowrap;
        text-overflow: ellipsis;
        color: $error;
    }
    LogPanel #log-view {
        height: 1fr;
        background: $surface;
    }
    LogPanel #log-partial {
        height: 1;
        text-wrap: nowrap;
        text-overflow: ellipsis;
        color: $text-muted;
    }
    LogPanel #log-search {
        display: none;
        height: 3;
    }
    LogPanel.searching #log-search {
        display: block;
    }
    """

    stream: reactive[str] = reactive("out")  # "out" or "err"
    following: reactive[bool] = reactive(True)

    def __init__(self, *, source_factory: Callable[[str], FileSource] = LocalFileSource, **kwargs) -> None:
        super().__init__(**kwargs)
        self.source_factory = source_factory
        self.generation = 0
        self.job = None  # hpcwizard.jobs.status.JobRow | None
        self.path: str | None = None
        self._session: _Session | None = None
        self._timer: Timer | None = None
        self._active_poll: Worker | None = None
        self._offsets: deque[int] = deque(maxlen=MAX_VIEW_LINES)
        self._plain: deque[str] = deque(maxlen=MAX_VIEW_LINES)
        self._context_mode = False  # the view shows a jump target, not the tail
        self._resume_tail = False  # next poll reopens the tail (after a context view)
        self.missing = False
        self.file_size = 0
        self.counts: dict[str, int] = {}
        self.first_error_offset: int | None = None
        self.last_match = None  # SearchMatch of the last search
        self.last_query: str | None = None
        self.match_number = 0  # 1 = the newest match of last_query; n counts older ones
        self._search_older = True  # the direction of the search under way
        self._error_jump_pending = False  # switched to stderr for its first error: jump once it is read
        self.status_note: str | None = None
        # A job on several nodes: the node whose log is shown (0: the job
        # log, which carries node 0's output), and what its node logs say.
        self.node = 0
        self.node_findings: list[NodeFinding] = []
        self._node_watch: NodeLogWatch | None = None
        self._node_job = None  # the newest JobRow of the watched job
        self._node_check: Worker | None = None
        self._node_check_watch: NodeLogWatch | None = None
        self._node_state_read = None  # the job's state at the last read
        self._node_timer: Timer | None = None

    def compose(self):
        yield Static("no job selected", id="log-header", markup=False)
        yield Static("", id="log-triage", markup=False)
        yield Static("", id="log-nodes", markup=False)
        yield RichLog(id="log-view", max_lines=MAX_VIEW_LINES, wrap=False, auto_scroll=True)
        yield Static("", id="log-partial")
        yield Input(placeholder="search the log (Enter: newest match; n older, N newer; Esc closes)",
                    id="log-search")

    @property
    def view(self) -> RichLog:
        return self.query_one("#log-view", RichLog)

    @property
    def shown_lines(self) -> list[str]:
        """Plain text of the lines in the view (tests and search highlighting)."""
        return list(self._plain)

    # -- what to follow ------------------------------------------------------

    def follow(self, job, *, force: bool = False) -> None:
        """Follow ``job``'s log (a JobRow; None shows nothing)."""
        if job is None or self.job is None or job.job_id != self.job.job_id:
            self.node = 0  # another job: its job log first
        path = self._path_of(job)
        same = path == self.path
        self.job = job
        self._watch_nodes(job)
        if same and not force:
            self._refresh_header()  # the job's state may have changed (pending → running)
            return
        self._restart(path)

    def _restart(self, path: str | None) -> None:
        self.generation += 1
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        self.workers.cancel_group(self, "log-poll")
        self._active_poll = None
        self.path = path
        self._session = None  # the old worker keeps its own reference until it ends
        self._offsets.clear()
        self._plain.clear()
        self.view.clear()
        self._context_mode = False
        self._resume_tail = False
        self.missing = False
        self.counts = {}
        self.first_error_offset = None
        self.last_match = None
        self.match_number = 0
        self._error_jump_pending = False
        self.status_note = None
        self.query_one("#log-partial", Static).update("")
        self._refresh_triage()  # counts were just reset: hides the line
        if path is not None:
            self._session = _Session(path, self.source_factory)
            self._poll()
        self._refresh_header()

    def on_mount(self) -> None:
        self.watch(self.view, "scroll_y", self._view_scrolled, init=False)

    def _view_scrolled(self, old: float, new: float) -> None:
        # The user scrolled up to read: stop dragging the view to the end
        # (toolong does the same); f follows again.
        if self.following and new < old and new < self.view.max_scroll_y - 1:
            self.following = False

    def on_resize(self) -> None:
        # Banners and the progress bar come and go above us: a followed log
        # must stay pinned to its last line when the view gets shorter.
        if self.following and not self._context_mode:
            self.call_after_refresh(self.view.scroll_end, animate=False, immediate=True)

    def watch_stream(self, stream: str) -> None:
        if self.is_mounted and self.job is not None:
            self.follow(self.job, force=True)

    def watch_following(self, following: bool) -> None:
        if not self.is_mounted:
            return
        self.view.auto_scroll = following
        if following:
            if self._context_mode:
                self._resume_tail = True
            else:
                self.view.scroll_end(animate=False)
        self._refresh_header()

    def toggle_stream(self) -> None:
        if self.node:
            # A node log holds both streams: back to the job log's.
            self.node = 0
            self.follow(self.job, force=True)
            return
        self.stream = "err" if self.stream == "out" else "out"

    # -- the nodes of a multi-node job -----------------------------------------

    def _path_of(self, job) -> str | None:
        if job is None:
            return None
        node_logs = getattr(job, "node_logs", ())
        if self.node and self.node < len(node_logs):
            return node_logs[self.node]
        return job.log_out if self.stream == "out" else job.log_err

    def next_node(self) -> str:
        """Show the next node's log of a job on several nodes (after the
        last, the job log again, which is node 0's)."""
        job = self.job
        if job is None:
            return "select a job first"
        count = len(getattr(job, "node_logs", ()))
        if count < 2:
            return f"job {job.job_id} runs on one node: its log is the job log"
        self.node = (self.node + 1) % count
        self.follow(job, force=True)
        return f"{self._node_label(job)}'s log"

    def _node_label(self, job) -> str:
        hosts = job.hosts
        host = f" ({hosts[self.node]})" if self.node < len(hosts) else ""
        return f"node {self.node} of {len(job.node_logs)}{host}"

    def _watch_nodes(self, job) -> None:
        """Read the node logs of a job on several nodes for trouble between
        its nodes: now, every NODE_LOGS_POLL_SECONDS while it is active, and
        once more when it ends."""
        if job is None or len(getattr(job, "node_logs", ())) < 2:
            self._stop_node_watch()
            return
        if self._node_watch is None or self._node_watch.job_id != job.job_id:
            self._stop_node_watch()
            self._node_watch = NodeLogWatch(job, self.source_factory)
        self._node_job = job
        if self._node_check is None and self._node_timer is None and job.state != self._node_state_read:
            self._read_nodes()

    def _stop_node_watch(self, *, show: bool = True) -> None:
        if self._node_timer is not None:
            self._node_timer.stop()
            self._node_timer = None
        watch, self._node_watch, self._node_job, self._node_state_read = self._node_watch, None, None, None
        if watch is not None and self._node_check_watch is not watch:
            watch.close()  # (one a worker still reads is closed when it is done)
        if self.node_findings and show:
            self._show_node_findings([])

    def _read_nodes(self) -> None:
        self._node_timer = None
        watch, job = self._node_watch, self._node_job
        if watch is None or job is None or self._node_check is not None:
            return
        self._node_state_read = job.state
        self._node_check_watch = watch
        self._node_check = self._node_worker(watch, job)

    @work(thread=True, group="node-logs", exit_on_error=False)
    def _node_worker(self, watch: NodeLogWatch, job) -> list[NodeFinding]:
        return watch.update(job)

    def _node_read(self, event: Worker.StateChanged) -> None:
        if event.worker is not self._node_check or event.state not in (
                WorkerState.SUCCESS, WorkerState.ERROR, WorkerState.CANCELLED):
            return
        watch = self._node_check_watch
        self._node_check = self._node_check_watch = None
        if watch is not self._node_watch:
            if watch is not None:
                watch.close()  # another job is selected now
            return
        if event.state is WorkerState.SUCCESS:
            self._show_node_findings(event.worker.result or [])
        job = self._node_job
        if job is not None and (job.active or job.state != self._node_state_read):
            self._node_timer = self.set_timer(NODE_LOGS_POLL_SECONDS if job.active else 0.01, self._read_nodes)

    def _show_node_findings(self, findings: list[NodeFinding]) -> None:
        self.node_findings = list(findings)
        line = self.query_one("#log-nodes", Static)
        line.display = bool(findings)
        if not findings:
            line.update("")
            return
        worst = max(finding.severity for finding in findings)
        first = next(finding for finding in findings if finding.severity == worst)
        more = f" (+{len(findings) - 1} more)" if len(findings) > 1 else ""
        line.update(Text(f"⚠ {first.text}{more} · m: next node's log"))

    def on_unmount(self) -> None:
        self._stop_node_watch(show=False)  # (the lines are gone already)

    def toggle_follow(self) -> None:
        self.following = not self.following

    # -- polling -------------------------------------------------------------

    def _tick(self) -> None:
        self._timer = None
        if self._session is not None:
            self._poll()

    def _poll(self) -> None:
        session = self._session
        if session is None:
            return
        self._active_poll = self._poll_worker(self.generation, session, self._resume_tail)
        self._resume_tail = False

    @work(thread=True, exclusive=True, group="log-poll", exit_on_error=False)
    def _poll_worker(self, generation: int, session: _Session, reopen: bool) -> None:
        worker = get_current_worker()
        follower, triage = session.follower, session.triage
        reset = False
        if not session.opened or reopen:
            update = follower.open_tail_update(OPEN_TAIL_LINES)
            session.opened = not update.missing
            reset = True
            if session.opened and not reopen:
                # The last separator and stage line of a training may lie
                # above the tail: one bounded backward scan finds them.
                from hpcwizard.jobs.status import scan_markers

                triage.seed(*scan_markers(follower, end=update.offset))
        else:
            update = follower.poll()
        if worker.is_cancelled:
            return
        lines = self._triaged(session, update)
        if update.truncated:
            lines.insert(0, notice("the file was truncated; reading it again from the start"))
        if update.rotated:
            lines.insert(0, notice("a new file replaced the log; reading it from the start"))
        if update.skipped_bytes:
            lines.insert(0, notice(f"skipped {_human_bytes(update.skipped_bytes)} written at once"))
        progress = triage.progress
        first = triage.first_error(Severity.LOW)
        self.post_message(LogChunk(
            generation=generation,
            lines=lines,
            partial=update.partial,
            missing=update.missing,
            truncated=update.truncated,
            rotated=update.rotated,
            skipped_bytes=update.skipped_bytes,
            size=update.size,
            reset=reset,
            counts={kind.value: n for kind, n in triage.counts.items()},
            first_error_offset=first.offset if first is not None else None,
            progress=progress,
            losses=triage.losses.recent(120),
            segment=triage.segment,
            stage=triage.stage,
        ))

    @staticmethod
    def _triaged(session: _Session, update: LogUpdate) -> list[tuple[int, str, str | None]]:
        """Feed new lines to triage (each line once) and tag the findings."""
        triage = session.triage
        if update.truncated or update.rotated:
            triage.reset()
            session.triaged_upto = 0
        out: list[tuple[int, str, str | None]] = []
        for text, offset in zip(update.lines, update.line_offsets):
            kind = None
            if offset >= session.triaged_upto:
                found = triage.feed_line(text, offset=offset)
                if found:
                    kind = max(found, key=lambda f: f.severity).kind.value
                session.triaged_upto = offset + 1
            else:
                from hpcwizard.jobs.triage import classify_line

                classified = classify_line(text)
                kind = classified.value if classified is not None else None
            out.append((offset, text, kind))
        if update.partial:
            triage.feed_partial(update.partial)
        return out

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group == "node-logs":
            self._node_read(event)
            return
        if event.worker.group != "log-poll" or event.worker is not self._active_poll:
            return
        if event.state not in (WorkerState.SUCCESS, WorkerState.ERROR, WorkerState.CANCELLED):
            return
        if event.state is WorkerState.ERROR:
            self.status_note = f"{READ_ERROR_NOTE}: {event.worker.error}"
            self._refresh_header()
        elif event.state is WorkerState.SUCCESS and (self.status_note or "").startswith(READ_ERROR_NOTE):
            # Reading works again (remote mode: the connection is back): the
            # old error would otherwise stay above the lines now arriving.
            self.status_note = None
            self._refresh_header()
        # Re-arm only for the current file, and never twice.
        self._active_poll = None
        if self._session is not None and self._timer is None:
            delay = LOG_POLL_SECONDS * (5 if event.state is WorkerState.ERROR else 1)
            self._timer = self.set_timer(delay, self._tick)

    # -- results -------------------------------------------------------------

    def on_log_chunk(self, event: LogChunk) -> None:
        if event.generation != self.generation:
            event.stop()  # a file we no longer follow
            return
        self.missing = event.missing
        self.file_size = event.size
        self.counts = event.counts
        self.first_error_offset = event.first_error_offset
        if event.reset:
            if self._context_mode:
                self._context_mode = False
                self.status_note = None
            self._offsets.clear()
            self._plain.clear()
            self.view.clear()
        if event.lines and not self._context_mode:
            self._write(event.lines)
        partial = event.partial or ""
        self.query_one("#log-partial", Static).update(
            Text.from_ansi(partial[:MAX_DISPLAY_CHARS], no_wrap=True) if partial else "")
        self._refresh_triage()
        self._refresh_header()
        if event.reset and self._error_jump_pending:
            # Now that stderr's tail is shown: a jump made earlier would be
            # wiped by this first chunk.
            self._error_jump_pending = False
            self.jump_to_first_error(fallback=False)

    def _write(self, lines: list[tuple[int, str, str | None]], *, scroll_end: bool | None = None) -> None:
        self.view.write(render_lines(lines), shrink=False, scroll_end=scroll_end)
        for offset, text, _ in lines:
            self._offsets.append(offset)
            self._plain.append(text)

    def _refresh_triage(self) -> None:
        triage = self.query_one("#log-triage", Static)
        triage.display = bool(self.counts)  # no blank line above a clean log
        if not self.counts:
            triage.update("")
            return
        parts = [f"{kind} {count}" for kind, count in sorted(self.counts.items(), key=lambda kv: -kv[1])]
        total = sum(self.counts.values())
        triage.update(Text(f"⚠ {total} finding{'s' if total != 1 else ''}: " + ", ".join(parts) + "  (e: first error)"))

    def _refresh_header(self) -> None:
        header = self.query_one("#log-header", Static)
        if self.path is None:
            header.update("no job selected")
            return
        label = "stdout" if self.stream == "out" else "stderr"
        if self.job is not None and len(getattr(self.job, "node_logs", ())) > 1:
            where = self._node_label(self.job)
            label = where if self.node else f"{where} · {label}"  # a node log holds both streams
        name = os.path.relpath(self.path) if not os.path.isabs(self.path) else self.path
        if self.job is not None:
            home = os.path.dirname(os.path.dirname(self.path))
            name = os.path.relpath(self.path, home)
        if self.missing:
            mode = self._missing_note()
        elif self._context_mode:
            mode = "paused on a jump target · f follows the tail again"
        else:
            mode = "following" if self.following else "paused · f follows"
        size = f" · {_human_bytes(self.file_size)}" if not self.missing else ""
        # The note (a search or jump result) before the mode: at 80 columns
        # the end of the line is cut, and the mode is the same every time.
        note = f" · {self.status_note}" if self.status_note else ""
        header.update(Text(f"{label} {name}{size}{note} · {mode}", no_wrap=True, overflow="ellipsis"))

    def _missing_note(self) -> str:
        """Why the followed log does not exist, from the job's state."""
        state = self.job.state if self.job is not None else None
        if state is JobState.PENDING:
            return "no log yet (the job has not started yet); it appears when the job starts"
        if state is not None and state.is_finished:
            if getattr(self.job, "elapsed", None) == 0:  # None: Slurm no longer knows
                return f"no log: the job never started (it ended {state})"
            return f"no log was written (the job ended {state})"
        return "no log yet (no such file); it appears when the job starts"

    # -- jumping -------------------------------------------------------------

    def _view_index(self, offset: int) -> int | None:
        offsets = list(self._offsets)
        real = [o for o in offsets if o >= 0]
        if not real or offset < real[0]:
            return None
        index = bisect.bisect_left(offsets, offset) if offsets == sorted(offsets) else None
        if index is None:
            try:
                return offsets.index(offset)
            except ValueError:
                return None
        if index < len(offsets) and offsets[index] == offset:
            return index
        return None

    def jump_to_offset(self, offset: int) -> bool:
        """Scroll to the line starting at ``offset`` if it is in view."""
        index = self._view_index(offset)
        if index is None:
            return False
        self.following = False
        self.view.scroll_to(y=max(0, index - 2), animate=False, immediate=True)
        self.highlighted_index = index
        return True

    highlighted_index: int | None = None

    def jump_to_first_error(self, *, fallback: bool = True) -> str:
        """Scroll to the file's first error line (the tail's triage may not
        have seen it: the file is scanned from its start, in a worker).

        For a job that ended badly (ENDED_BADLY) and whose stdout has no
        error, look in its stderr and switch to it: that is where the error
        usually is, and "no error found" on the log the panel happened to
        open sent people hunting for the .err file by hand. stdout stays the
        panel's default: training progress is printed there."""
        if self.path is None:
            return "select a job first"
        if self.first_error_offset is not None and self._whole_file_in_view():
            self.jump_to_offset(self.first_error_offset)
            self.status_note = "first error"
            self._refresh_header()
            return "first error"
        self.status_note = "looking for the first error…"
        self._refresh_header()
        self._first_error_worker(self.generation, self.path, self._stderr_fallback() if fallback else None)
        return "looking for the first error…"

    def _stderr_fallback(self) -> str | None:
        """The stderr log to search when stdout has no error, if any."""
        job = self.job
        if job is None or self.stream != "out" or self.node or getattr(job, "state", None) not in ENDED_BADLY:
            return None
        return job.log_err

    def _error_in_stderr(self, generation: int) -> None:
        """stdout had no error, stderr has: follow stderr and jump there."""
        if generation != self.generation:
            return
        self.stream = "err"  # restarts the panel on the .err log (a new generation)
        self._error_jump_pending = True
        self.status_note = "no error in stdout: looking in stderr…"
        self._refresh_header()

    def _whole_file_in_view(self) -> bool:
        return bool(self._offsets) and self._offsets[0] == 0 and not self._context_mode

    @work(thread=True, exclusive=True, group="log-context", exit_on_error=False)
    def _first_error_worker(self, generation: int, path: str, fallback: str | None = None) -> None:
        worker = get_current_worker()
        follower = LogFollower(self.source_factory(path))
        try:
            match = self._first_error_in(follower, worker)
            context = None
            if match is not None and not self._in_view(match.offset):
                context = [*follower.read_lines_before(match.offset, 10), *follower.read_lines(match.offset, 100)]
        except FileNotFoundError:
            match, context = None, None
        finally:
            follower.close()
        if match is None and fallback is not None and not worker.is_cancelled:
            other = LogFollower(self.source_factory(fallback))
            try:
                found = self._first_error_in(other, worker) is not None
            except FileNotFoundError:
                found = False
            finally:
                other.close()
            if found:
                self.app.call_from_thread(self._error_in_stderr, generation)
                return
        self.post_message(SearchResult(generation, "", match, context))

    @staticmethod
    def _first_error_in(follower: LogFollower, worker):
        """The first line triage calls an error, scanning from the start."""
        from hpcwizard.jobs.triage import classify_line

        match, start = None, 0
        while not worker.is_cancelled:
            # A cheap regex finds candidates; triage's rules decide.
            match = follower.search(ERROR_CANDIDATE, "forward", start, should_stop=lambda: worker.is_cancelled)
            if match is None or classify_line(match.text) is not None:
                break
            start = match.end_offset
        return match

    # -- search --------------------------------------------------------------

    def open_search(self) -> None:
        self.add_class("searching")
        self.query_one("#log-search", Input).focus()

    def close_search(self) -> None:
        self.remove_class("searching")

    @on(Input.Submitted, "#log-search")
    def _search_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        query = event.value.strip()
        if not query:
            return
        self.last_query = query
        self.last_match = None
        self.match_number = 0
        self.search(query, "backward", None)
        self.view.focus()
        self.close_search()

    def search_again(self, older: bool = True) -> str:
        if not self.last_query or self.path is None:
            return "no search yet: press / first"
        match = self.last_match
        if older:
            self.search(self.last_query, "backward", match.offset if match else None)
        else:
            self.search(self.last_query, "forward", match.end_offset if match else None)
        return f"searching {self.last_query!r}…"

    def search(self, query: str, direction: Literal["forward", "backward"], from_offset: int | None) -> None:
        if self.path is None:
            return
        self._search_older = direction == "backward"
        self.status_note = f"searching {query!r}…"
        self._refresh_header()
        self._search_worker(self.generation, self.path, query, direction, from_offset)

    @work(thread=True, exclusive=True, group="log-search", exit_on_error=False)
    def _search_worker(self, generation: int, path: str, query: str, direction: Literal["forward", "backward"],
                       from_offset: int | None) -> None:
        worker = get_current_worker()
        follower = LogFollower(self.source_factory(path))
        try:
            match = follower.search(query, direction, from_offset, ignore_case=True,
                                    should_stop=lambda: worker.is_cancelled)
            context = None
            if match is not None and not self._in_view(match.offset):
                context = [*follower.read_lines_before(match.offset, 10), *follower.read_lines(match.offset, 100)]
        except FileNotFoundError:
            match, context = None, None
        finally:
            follower.close()
        self.post_message(SearchResult(generation, query, match, context))

    def _in_view(self, offset: int) -> bool:
        # Read from a worker thread: a snapshot of the deque is good enough
        # (a line scrolled out meanwhile just means we load its context).
        offsets = list(self._offsets)
        return bool(offsets) and offset in set(offsets)

    def on_search_result(self, event: SearchResult) -> None:
        event.stop()
        if event.generation != self.generation:
            return
        if event.match is None:
            self.status_note = (f"no {'more ' if self.last_match else ''}match for {event.query!r}" if event.query
                                else "no error found in stdout or stderr" if self._stderr_fallback()
                                else "no error found in this log")
            self._refresh_header()
            return
        if event.query:
            self.last_match = event.match
            self.match_number = max(1, self.match_number + (1 if self._search_older else -1))
        if not self.jump_to_offset(event.match.offset) and event.context is not None:
            self._show_context(event.context, event.match.offset)
        # Short, and in words: the header ends in the note at 80 columns, and
        # a byte offset ("at offset 1389") told nobody anything.
        if event.query:
            self.status_note = (f"{event.query!r}: newest match" if self.match_number == 1
                                else f"{event.query!r}: match {self.match_number} from the end")
        else:
            self.status_note = "first error"
        self._refresh_header()

    def _show_context(self, context, offset: int) -> None:
        self.following = False
        self._context_mode = True
        self.view.clear()
        self._offsets.clear()
        self._plain.clear()
        from hpcwizard.jobs.triage import classify_line

        lines = []
        for line in context:
            kind = classify_line(line.text)
            lines.append((line.offset, line.text, kind.value if kind else None))
        if lines:
            self._write(lines, scroll_end=False)
        self.jump_to_offset(offset)

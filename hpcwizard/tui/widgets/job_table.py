"""The job table: one row per job, keyed by job id, updated by diff.

A refresh never clears and refills the table (that loses the cursor and the
scroll position and repaints everything): rows that vanished are removed,
new ones added, and only the cells whose text changed are updated, all in
one ``app.batch_update()``. See dolphie's ``Panels/Processlist.py``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date, datetime
from operator import itemgetter

from rich.cells import cell_len
from rich.text import Text
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey, RowKey

from hpcwizard.jobs.status import JobRow, TrainingStatus, format_clock, format_elapsed_limit
from hpcwizard.slurm import JobState

COLUMNS: tuple[tuple[str, str], ...] = (
    ("id", "Job"),
    ("name", "Name"),
    ("state", "State"),
    ("reason", "Reason"),
    ("partition", "Part."),
    ("nodes", "Nodes"),
    ("time", "Elapsed/Limit"),
    ("start", "Start"),
)

STATE_STYLES = {
    JobState.RUNNING: "bold green",
    JobState.PENDING: "yellow",
    JobState.COMPLETING: "green",
    JobState.CONFIGURING: "green",
    JobState.COMPLETED: "blue",
    JobState.FAILED: "bold red",
    JobState.TIMEOUT: "bold red",
    JobState.OUT_OF_MEMORY: "bold red",
    JobState.NODE_FAIL: "bold red",
    JobState.BOOT_FAIL: "bold red",
    JobState.CANCELLED: "magenta",
    JobState.FINISHED_UNKNOWN: "dim",
    JobState.UNKNOWN: "dim",
}

#: What the State column says for a train job back in the queue for its next
#: segment: it continues, it did not fail (Slurm says PENDING, reason BeginTime).
CONTINUING = "CONTINUING"


#: The Reason column's width: whatever the other columns leave of the table,
#: between these two. A long reason ("ReqNodeNotAvail, UnavailableNodes:...")
#: pushed Elapsed/Limit and Start off an 80-column screen; a cut one ends in
#: "…" (the doctor hint and ``hpcwizard status`` say it whole).
REASON_MIN = 10
REASON_MAX = 24

#: Shown only while a job of the table runs on several nodes: a column of
#: 1s says nothing, and at 80 columns the others need its 7 cells.
NODES_COLUMN = "nodes"
_WITHOUT_NODES = itemgetter(*(i for i, (key, _) in enumerate(COLUMNS) if key != NODES_COLUMN))


def format_start(row: JobRow, today: date | None = None) -> str:
    """``01-02 06:00``; ``06:00`` on ``today`` (the date says nothing then,
    and the Nodes column of a multi-node job needs the room at 80 columns)."""
    if row.held:
        return "held"  # Slurm's estimate assumes a release that may never come
    if not row.start:
        return "-"  # never started (or not yet estimated)
    try:
        moment = datetime.fromisoformat(row.start)
    except ValueError:
        return row.start
    text = moment.strftime("%H:%M" if today is not None and moment.date() == today else "%m-%d %H:%M")
    # While pending, Slurm's start time is only an estimate.
    return f"~{text}" if row.state is JobState.PENDING else text


_DEPENDENCY_STATUS = re.compile(r"\((unfulfilled|failed)\)")


def short_dependency(text: str | None) -> str:
    """squeue's ``afterok:4102(unfulfilled),afterok:4103(failed)`` →
    ``afterok:4102,afterok:4103 failed``: what is awaited, and what never will be."""
    if not text or text == "(null)":
        return ""
    return _DEPENDENCY_STATUS.sub(lambda m: " failed" if m.group(1) == "failed" else "", text)


_AFTEROK = re.compile(r"afterok:([0-9][0-9_+]*)")


def reason_cell(row: JobRow, ended: Mapping[str, JobState] | None = None) -> Text:
    """Why a job waits, in one column: for a dependency, on what (Slurm's
    Reason and Dependency columns together keep the table within 80 columns).
    A dependency that can never be satisfied says which job ended and how
    ("317 CANCELLED", red while the job pends; from ``ended``, the states of
    the table's finished jobs): "DependencyNeverSatisfied: afterok:317 failed"
    filled an 80-column screen by itself, and "failed" was said of a
    cancelled job. A parent's bad end shows at once, before Slurm says the
    dependency can never be satisfied."""
    reason = row.reason or ""
    dependency = short_dependency(row.dependency)
    how = [f"{job_id} {ended[job_id].value}" for job_id in _AFTEROK.findall(row.dependency or "")
           if ended and job_id in ended and ended[job_id] is not JobState.COMPLETED]
    if how and reason in ("Dependency", "DependencyNeverSatisfied"):
        text = Text(", ".join(how), style="bold red" if row.state is JobState.PENDING else "")
    elif reason == "DependencyNeverSatisfied":
        failed = dependency.replace("afterok:", "") if dependency else "never satisfied"
        text = Text(failed, style="bold red" if row.state is JobState.PENDING else "")
    elif reason == "Dependency" and dependency:
        text = Text(dependency)
    else:
        text = Text(reason)
    text.truncate(REASON_MAX, overflow="ellipsis")
    text.overflow = "ellipsis"  # and again when the column is narrower (JobTable._fit_reason)
    return text


def training_reason(row: JobRow, training: TrainingStatus) -> Text | None:
    """The Reason cell of a train job, when its training has news: the
    segment it runs (or runs next), why it stopped continuing, or the time
    limit it will hit (the hint line above the table says it whole)."""
    if training.stopped:
        why = training.segment.why_not_continuing or "" if training.segment else ""
        return Text("no new checkpoint" if "no new checkpoint" in why
                    else "segments used up" if "train.segments" in why else "not continuing", style="yellow")
    if training.ended:
        return None
    if training.requeued:
        text = Text(training.segment_text or "requeued")
        if row.held or row.state is JobState.REQUEUE_HOLD:
            text.append(", held")
        return text
    if training.limit_in is not None:
        return Text(f"limit in ~{format_clock(training.limit_in)}", style="bold yellow")
    segment = training.segment_text
    return Text(segment) if segment and row.state is not JobState.PENDING else None


def nodes_cell(row: JobRow) -> Text:
    """How many nodes it runs on (asks for, while pending); ``-`` when not known."""
    return Text(str(row.node_count) if row.node_count else "-")


def row_cells(row: JobRow, training: TrainingStatus | None = None, *, today: date | None = None,
              ended: Mapping[str, JobState] | None = None) -> tuple[Text, ...]:
    """The table cells of one job, in COLUMNS order. All ``Text``: DataTable
    reads a ``str`` cell as markup, so a job named ``x[/]`` stopped the
    dashboard with a MarkupError and ``[bold]`` in a name restyled it.

    ``training``: what its log says when it is a train job. One back in the
    queue for its next segment reads CONTINUING, never as a failure."""
    state_style = STATE_STYLES.get(row.state, "")
    # An exit code is news only when it is not 0:0.
    failed_exit = row.exit_code and row.exit_code != "0:0" and row.state not in (JobState.RUNNING, JobState.PENDING)
    state = f"{row.state.value} {row.exit_code}" if failed_exit else row.state.value
    reason = reason_cell(row, ended)
    if training is not None:
        if training.requeued and not training.ended:
            state, state_style = CONTINUING, "bold green"
        news = training_reason(row, training)
        if news is not None:
            news.truncate(REASON_MAX, overflow="ellipsis")
            news.overflow = "ellipsis"
            reason = news
    if row.continued_by and not row.active:
        reason = Text(f"continued by {row.continued_by}")  # a follow-on job runs the next segment
    return (
        Text(row.job_id),
        Text(row.name),
        Text(state, style=state_style),
        reason,
        Text(row.partition or ""),
        nodes_cell(row),
        Text(format_elapsed_limit(row.elapsed, row.time_limit)),
        Text(format_start(row, today)),
    )


class JobTable(DataTable):
    """DataTable of jobs; ``apply(rows)`` diffs against what is shown."""

    DEFAULT_CSS = """
    JobTable {
        height: auto;
        max-height: 40%;
        min-height: 4;
    }
    """

    def __init__(self, *, clock: Callable[[], datetime] | None = None, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.clock = clock or datetime.now  # what "today" is for the Start column
        self.rows_by_id: dict[str, JobRow] = {}
        # The plain text of every cell of each row, in COLUMNS order (the
        # Nodes cell too while its column is hidden).
        self._shown: dict[str, tuple[str, ...]] = {}
        self.nodes_shown = False  # the Nodes column is on (a job runs on several nodes)
        self.cell_updates = 0  # cells rewritten by apply(): what a refresh really cost
        self._measured_widths: tuple[int, ...] = ()

    def _update_dimensions(self, new_rows: Iterable[RowKey]) -> None:
        """Column widths for new rows, then the stale-cache fix below.

        Every cell is one line of ``Text``, so its width is the cell length of
        its plain text, which ``apply`` already holds: DataTable instead renders
        and measures each cell with Rich (7 s of a 10,000-job first fill).
        Rows ``apply`` did not add go the DataTable way.

        DataTable measures new and updated cells when it is next idle, but
        its render caches (cells, rows, lines) are keyed by its update count,
        not by the column widths: a frame drawn between ``add_row``/``update_cell``
        and that measurement stays cached at the old widths (the cursor row
        read ``254  setu  FAILE  NonZer`` until the next data change; moving
        the cursor away and back showed the stale cached render again).
        Textual issues #3533 and #4470. When the measurement changed a
        width, bump the update count so every cached render is redone."""
        columns = self.ordered_columns
        others: list[RowKey] = []
        for row_key in new_rows:
            plain = self._shown.get(row_key.value) if row_key.value is not None else None
            if plain is None or self._row_locations.get(row_key) is None:
                others.append(row_key)
                continue
            for column, text in zip(columns, self._displayed(plain)):
                width = cell_len(text)
                if width > column.content_width:
                    column.content_width = width
        self._fit_reason()  # before the virtual size is computed from the widths
        super()._update_dimensions(others)  # with no rows: only the virtual size
        widths = tuple(column.get_render_width(self) for column in self.ordered_columns)
        if widths != self._measured_widths:
            self._measured_widths = widths
            self._update_count += 1
            self.refresh()

    def on_mount(self) -> None:
        self._add_columns()

    def _add_columns(self) -> None:
        for key, label in COLUMNS:
            if key != NODES_COLUMN or self.nodes_shown:
                self.add_column(label, key=key)

    def _displayed(self, cells: Sequence):
        """``cells`` (in COLUMNS order) of the columns on screen."""
        return tuple(cells) if self.nodes_shown else _WITHOUT_NODES(cells)

    def _show_nodes(self, shown: bool) -> str | None:
        """The Nodes column on or off: DataTable only appends columns, so the
        table is emptied to be filled again; returns the job to select again."""
        selected = self.selected_job_id
        self.nodes_shown = shown
        self.clear(columns=True)
        self._add_columns()
        self._shown.clear()
        self.rows_by_id.clear()
        return selected

    def on_resize(self) -> None:
        self._update_dimensions([])  # the Reason column's room changed
        # A shorter table (a smaller terminal, a banner above) must not leave
        # the selected row below the fold.
        self.call_after_refresh(self._keep_cursor_in_view)

    def _keep_cursor_in_view(self) -> None:
        if self.row_count and self.is_mounted:
            self.move_cursor(row=self.cursor_row, scroll=True, animate=False)

    def _fit_reason(self) -> None:
        """The Reason column takes what the other columns leave (between
        REASON_MIN and REASON_MAX, never more than its widest cell), so Elapsed
        and Start stay on screen; its cells end in "…" when cut."""
        reason = self.columns.get(ColumnKey("reason"))
        if reason is None:
            return
        others = sum(column.get_render_width(self) for column in self.ordered_columns if column is not reason)
        room = self.scrollable_content_region.width - others - 2 * self.cell_padding
        width = max(REASON_MIN, min(reason.content_width, REASON_MAX, room))
        if reason.auto_width or reason.width != width:
            reason.auto_width = False
            reason.width = width

    @property
    def selected_job_id(self) -> str | None:
        if not self.row_count:
            return None
        try:
            key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        except Exception:  # noqa: BLE001 - no cursor row (empty or out of range)
            return None
        return key.value

    def tick(self, since_refresh: float) -> int:
        """Running jobs' Elapsed, ``since_refresh`` seconds after Slurm said
        it (a refresh may be 30 s away; the clock on screen should not stop
        meanwhile). Returns the cells rewritten."""
        updated = 0
        time_index = [key for key, _ in COLUMNS].index("time")
        with self.app.batch_update():
            for job_id, row in self.rows_by_id.items():
                if row.state is not JobState.RUNNING or row.elapsed is None:
                    continue
                text = format_elapsed_limit(row.elapsed + int(since_refresh), row.time_limit)
                shown = self._shown.get(job_id)
                if shown is None or shown[time_index] == text:
                    continue
                grow = cell_len(text) > self.columns[ColumnKey("time")].content_width
                self.update_cell(job_id, "time", Text(text), update_width=grow)
                self._shown[job_id] = (*shown[:time_index], text, *shown[time_index + 1:])
                updated += 1
        return updated

    def apply(self, rows: Sequence[JobRow], training: Mapping[str, TrainingStatus] | None = None) -> bool:
        """Show ``rows`` (and what ``training`` says of train jobs, by job
        id); returns True when any job appeared, vanished or changed
        state/reason (what makes the poller speed up)."""
        changed = False
        training = training or {}
        wanted = {row.job_id: row for row in rows}
        ended = {row.job_id: row.state for row in rows if row.state.is_finished}  # how parents ended
        today = self.clock().date()
        reselect = None
        with self.app.batch_update():
            nodes = any((row.node_count or 0) > 1 for row in rows)
            if nodes != self.nodes_shown:
                reselect = self._show_nodes(nodes)
            for job_id in [j for j in self._shown if j not in wanted]:
                self.remove_row(job_id)
                del self._shown[job_id]
                self.rows_by_id.pop(job_id, None)
                changed = True
            for job_id, row in wanted.items():
                cells = row_cells(row, training.get(job_id), today=today, ended=ended)
                plain = tuple(cell.plain for cell in cells)
                old = self._shown.get(job_id)
                if old is None:
                    shown = self._displayed(cells)
                    self.add_row(*shown, key=job_id)
                    self.cell_updates += len(shown)
                    changed = True
                elif old != plain:
                    previous = self.rows_by_id.get(job_id)
                    if previous is None or (previous.state, previous.reason) != (row.state, row.reason):
                        changed = True
                    for (key, _), cell, before, after in zip(COLUMNS, cells, old, plain):
                        if before != after and (key != NODES_COLUMN or self.nodes_shown):
                            # Ask for a width update only when the column must
                            # grow: a narrower value makes DataTable re-measure
                            # the whole column (10,000 cells) for each cell.
                            grow = cell_len(after) > self.columns[ColumnKey(key)].content_width
                            self.update_cell(job_id, key, cell, update_width=grow)
                            self.cell_updates += 1
                self._shown[job_id] = plain
                self.rows_by_id[job_id] = row
            if reselect is not None and reselect in self._shown:
                self.move_cursor(row=self.get_row_index(reselect), scroll=True)
        return changed

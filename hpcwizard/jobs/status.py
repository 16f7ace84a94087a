"""One snapshot of a project's jobs, politely.

A snapshot costs ONE squeue call for all the project's jobs together (the
user's jobs in every state, filtered here to the ids in the project state and
to names carrying the project's prefix), plus at most ONE sacct/scontrol
lookup for the submitted jobs Slurm's queue has already forgotten. Jobs that
nobody remembers any more still show, from the project state, as
``FINISHED_UNKNOWN``. The dashboard and ``hpcwizard status --once --json``
both use :func:`take_snapshot`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from hpcwizard.errors import UserError
from hpcwizard.jobs.logtail import MARKER_SCAN_BYTES, LogFollower
from hpcwizard.jobs.triage import (
    SEGMENT_NEEDLE,
    STAGE_NEEDLE,
    OverallProgress,
    SegmentEvent,
    SegmentMark,
    TrainingProgress,
    Triage,
    merge_segment,
    overall_progress,
    parse_segment_line,
    parse_stage_start,
)
from hpcwizard.project.files import ProjectFiles
from hpcwizard.project.plan import job_prefix_for
from hpcwizard.project.state import ProjectState, SubmittedJob
from hpcwizard.slurm import ExitStatus, JobState, SlurmClient

if TYPE_CHECKING:
    from hpcwizard.project.home import Project

HELD_REASONS = ("JobHeldUser", "JobHeldAdmin")

# Reasons an ended job keeps because they say why it ended (Slurm's FAIL_*
# reasons) or why it never ran; any other reason on an ended job is the
# pending reason it had when it was cancelled ("Resources", "Dependency"),
# stale news.
END_REASONS = frozenset({
    "DependencyNeverSatisfied", "NonZeroExitCode", "RaisedSignal", "TimeLimit", "OutOfMemory",
    "NodeDown", "JobLaunchFailure", "BootFail", "SystemFailure", "InactiveLimit", "PartitionDown",
})


def format_clock(seconds: int | None) -> str:
    """``3725`` → ``1:02:05``; days as ``2-01:02:05``; None → ``-``."""
    if seconds is None:
        return "-"
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    clock = f"{hours}:{minutes:02d}:{secs:02d}" if hours or days else f"{minutes}:{secs:02d}"
    return f"{days}-{hours:02d}:{minutes:02d}:{secs:02d}" if days else clock


def format_elapsed_limit(elapsed: int | None, limit: int | None) -> str:
    """``0:01 / 1:00:00``, the same in the job table and ``hpcwizard status``.

    Accounting (sacct) does not report the limit of a finished job: ``?``
    says "not known", so ``0:01`` alone does not read as "no limit". Nothing
    known at all (a job Slurm forgot) is just ``-``."""
    if elapsed is None and limit is None:
        return "-"
    return f"{format_clock(elapsed)} / {format_clock(limit) if limit is not None else '?'}"


def current_reason(state: JobState, reason: str | None) -> str | None:
    """The reason worth showing: any while pending; once ended, only one that
    explains the end (squeue keeps a cancelled job's last pending reason)."""
    if state is JobState.PENDING or reason in END_REASONS:
        return reason
    return None


def _ran(nodelist: str | None, elapsed: int | None) -> bool:
    # A job cancelled while pending has no node ("" in squeue, "None assigned"
    # in sacct), yet Slurm sets its start time to the moment it was cancelled.
    # Without a node list (scontrol may not say) a non-zero elapsed time is
    # the evidence it ran.
    if nodelist is None:
        return bool(elapsed)
    return bool(nodelist) and nodelist.strip().lower() not in ("none assigned", "none", "(null)")


@dataclass(frozen=True)
class JobRow:
    """What the job table shows for one job."""

    job_id: str
    name: str  # the chain's job name (setup, train...) or the Slurm name for others
    slurm_name: str
    state: JobState
    reason: str | None
    dependency: str | None
    partition: str
    elapsed: int | None
    time_limit: int | None
    start: str | None  # ISO time: actual start, Slurm's estimate while pending, None if it never started
    exit_code: str | None
    source: str  # squeue | sacct | scontrol | state
    log_out: str
    log_err: str
    script: str | None = None
    # A follow-on job a train job submitted to continue its training (a site
    # that does not requeue): the recorded job it continues, whose log it
    # appends to. On that job: the follow-on job that continues it.
    continues: str | None = None
    continued_by: str | None = None
    # The nodes it runs (or ran) on, or asks for while pending (None: not
    # known); its node list (``node[1-2]``) once it has nodes; and, on
    # several nodes, each node's log (node K's at index K).
    node_count: int | None = None
    nodelist: str | None = None
    node_logs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.state, JobState):  # JSON read back, a caller's "RUNNING"
            object.__setattr__(self, "state", JobState.from_slurm(str(self.state)))

    @property
    def active(self) -> bool:
        return self.state.is_active

    @property
    def never_runs(self) -> bool:
        return self.reason == "DependencyNeverSatisfied"

    @property
    def held(self) -> bool:
        """Held by ``scontrol hold`` (the user or an admin), not waiting on its own."""
        return self.state is JobState.PENDING and self.reason in HELD_REASONS

    @property
    def hosts(self) -> list[str]:
        """Its nodes' names, node 0 first (``$SLURM_NODEID`` order); [] before it has any."""
        from hpcwizard.slurm.parse import expand_hostlist

        try:
            return expand_hostlist(self.nodelist)
        except ValueError:
            return []


@dataclass(frozen=True)
class StatusSnapshot:
    project_home: str
    taken_at: str
    jobs: tuple[JobRow, ...]
    error: str | None = None  # the controller did not answer: rows come from the state only

    def to_dict(self) -> dict[str, object]:
        return {
            "project_home": self.project_home,
            "taken_at": self.taken_at,
            "controller_ok": self.error is None,
            "error": self.error,
            "jobs": [{**asdict(job), "state": job.state.value} for job in self.jobs],
        }

    @property
    def all_finished(self) -> bool:
        return bool(self.jobs) and not any(j.active and not j.never_runs for j in self.jobs)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="seconds") if moment else None


def _exit(status: ExitStatus | None) -> str | None:
    return f"{status.code}:{status.signal}" if status is not None else None


def take_snapshot(project: Project, *, slurm: SlurmClient | None = None,
                  state: ProjectState | None = None) -> StatusSnapshot:
    """``project``'s jobs as Slurm (or, failing that, the state) knows them now.

    The state and the bookkeeping are read through the project's files (the
    login node's in remote mode); Slurm is asked through the project's runner
    unless ``slurm`` is given. ``state``: the project state when the caller
    has just read it."""
    project_home = project.home
    layout = project.layout
    if state is None:
        state = project.load_state()
    known = {job.job_id: job for submission in state.submissions for job in submission.jobs}
    prefix = job_prefix_for(project_home)
    slurm = slurm or SlurmClient(project.submit_runner())
    taken_at = datetime.now().astimezone().isoformat(timespec="seconds")

    def log_paths(slurm_name: str, job_id: str) -> tuple[str, str]:
        return str(layout.log_path(slurm_name, job_id)), str(layout.log_path(slurm_name, job_id, "err"))

    def node_logs(slurm_name: str, job_id: str, nodes: int | None) -> tuple[str, ...]:
        # One launcher per node writes logs/%x-%j.node<K>.out (a follow-on
        # job appends to those of the job it continues, as to its log).
        if not nodes or nodes < 2:
            return ()
        return tuple(str(layout.node_log_path(slurm_name, job_id, k)) for k in range(nodes))

    rows: dict[str, JobRow] = {}
    try:
        entries = slurm.queue(me=True, all_states=True)
    except UserError as exc:
        error: str | None = exc.one_line()
        entries = []
    else:
        error = None
    # Follow-on jobs (a site that does not requeue) are found through their
    # train job's bookkeeping, whether squeue still lists them or not: one
    # that ended and left the queue is asked of accounting like a recorded
    # job, so the training's last segment, not its first, says how it ended.
    names = {job.slurm_name for job in known.values()}
    names |= {e.name for e in entries if e.job_id not in known and e.name.startswith(prefix)}
    follow_ons = _follow_on_jobs(project, names, known) if names else {}
    for entry in entries:
        if entry.job_id not in known and not entry.name.startswith(prefix):
            continue
        first = follow_ons.get(entry.job_id)
        recorded = known.get(entry.job_id) or known.get(first or "")
        name = recorded.name if recorded is not None else entry.name
        # A follow-on job appends to the log of the job it continues.
        out, err = log_paths(entry.name, first or entry.job_id)
        never_started = entry.state.is_finished and not _ran(entry.nodelist, entry.elapsed)
        rows[entry.job_id] = JobRow(
            job_id=entry.job_id, name=name, slurm_name=entry.name, state=entry.state,
            reason=current_reason(entry.state, entry.reason), dependency=entry.dependency_raw,
            partition=entry.partition, elapsed=entry.elapsed,
            time_limit=entry.time_limit if entry.time_limit is not None else _recorded_limit(recorded),
            start=None if never_started else _iso(entry.start_time),
            exit_code=_exit(entry.exit_status), source="squeue", log_out=out, log_err=err,
            script=recorded.script if recorded is not None else None, continues=first,
            node_count=entry.node_count or None, nodelist=entry.nodelist or None,
            node_logs=node_logs(entry.name, first or entry.job_id, entry.node_count),
        )

    forgotten = [job_id for job_id in known if job_id not in rows]
    gone_follow_ons = [job_id for job_id in follow_ons if job_id not in rows]
    finished = []
    if (forgotten or gone_follow_ons) and error is None:
        try:
            finished = slurm.finished(forgotten + gone_follow_ons)
        except UserError:
            finished = []
    for done in finished:
        first = follow_ons.get(done.job_id)
        job = known[first or done.job_id]
        # A follow-on job appends to the log of the job it continues.
        out, err = log_paths(job.slurm_name, first or done.job_id)
        # Accounting does not say the limit: the one recorded at submit.
        # Nor (in hpcwizard's sacct format) the node count: its node list does.
        ran = _ran(done.nodelist, done.elapsed)
        nodes = _node_count(done.nodelist) if ran else None
        rows[done.job_id] = JobRow(
            job_id=done.job_id, name=job.name, slurm_name=job.slurm_name, state=done.state, reason=None,
            dependency=_first_dependency(job), partition=done.partition or job.partition, elapsed=done.elapsed,
            time_limit=job.time_limit, start=_iso(done.start_time) if ran else None,
            exit_code=_exit(done.exit_status), source=done.source.value,
            log_out=out, log_err=err, script=job.script, continues=first,
            node_count=nodes, nodelist=done.nodelist if ran else None,
            node_logs=node_logs(job.slurm_name, first or done.job_id, nodes),
        )
    for job_id in forgotten + gone_follow_ons:
        if job_id in rows:
            continue
        first = follow_ons.get(job_id)
        job = known[first or job_id]
        out, err = log_paths(job.slurm_name, first or job_id)
        rows[job_id] = JobRow(
            job_id=job_id, name=job.name, slurm_name=job.slurm_name,
            state=JobState.UNKNOWN if error else JobState.FINISHED_UNKNOWN, reason=None,
            dependency=_first_dependency(job), partition=job.partition, elapsed=None, time_limit=job.time_limit,
            start=None, exit_code=None, source="state", log_out=out, log_err=err, script=job.script,
            continues=first,
        )
    for follow_on, first in sorted(follow_ons.items(), key=lambda kv: _number(kv[0])):
        if first in rows and follow_on in rows:
            rows[first] = replace(rows[first], continued_by=follow_on)
    ordered = sorted(rows.values(), key=lambda row: _number(row.job_id))
    return StatusSnapshot(str(project_home), taken_at, tuple(ordered), error)


def _node_count(nodelist: str | None) -> int | None:
    from hpcwizard.slurm.parse import expand_hostlist

    try:
        return len(expand_hostlist(nodelist)) or None
    except ValueError:
        return None


def _first_dependency(job: SubmittedJob) -> str | None:
    return job.dependency[0] if job.dependency else None


def _recorded_limit(job: SubmittedJob | None) -> int | None:
    return job.time_limit if job is not None else None


def _number(job_id: str) -> int:
    head = job_id.split("_")[0]
    return int(head) if head.isdigit() else 0


# A continuing train job keeps its bookkeeping (written by its script) in
# ``ProjectLayout.continuation_dir / "<slurm job name>.json"``, with the first
# job's id and every job of its chain of segments.


def _follow_on_jobs(project: Project, names: set[str], known: Mapping[str, object]) -> dict[str, str]:
    """Follow-on job id -> the recorded job it continues, for the jobs
    hpcwizard did not submit itself (``names``: the Slurm names to look
    up: the recorded jobs' and the queue's other jobs of the project).

    On a site that does not requeue, a train job continues by submitting
    itself again as a new job that appends to the first job's log; its
    bookkeeping names them all, also once they left the queue. One small
    read per name (a name without bookkeeping is a missing file)."""
    import json

    found: dict[str, str] = {}
    for name in sorted(names):
        try:
            data = json.loads(project.files.read_text(project.layout.continuation_dir / f"{name}.json"))
            first = str(data["first_job_id"])
            ids = [str(job_id) for job_id in data.get("job_ids") or ()]
        except (OSError, ValueError, KeyError, TypeError, UserError):
            continue
        if first in known:
            found.update({job_id: first for job_id in ids if job_id != first and job_id not in known})
    return found


# --------------------------------------------------------------------------
# Train jobs as trainings: segments, stages, overall progress, the time limit

#: Slurm states of a job put back in the queue to run again.
REQUEUE_STATES = frozenset(state for state in JobState if state.is_requeued)  # incl. 25.11's EXPEDITING
#: The job script asks Slurm for the warning signal before its time limit:
#: the train job continues across it (the log's separators say so too).
_SIGNAL_DIRECTIVE = re.compile(r"^#SBATCH\s+--signal[= ]", re.MULTILINE)
#: ... and its lead: ``B:USR1@300`` right after the directive.
_SIGNAL_LEAD = re.compile(r"[^@\s]*@(\d+)")
#: Lines read when a log is first watched (its progress is in the last ones).
WATCH_TAIL_LINES = 200


@dataclass(frozen=True)
class TrainingStatus:
    """A train job seen as a training: where it stands over its stages and
    segments, whether it continues across its time limit, and whether it
    will hit that limit first. Built by :class:`TrainingWatch` from the
    job's log (read incrementally) and the plan it was submitted with."""

    job_id: str
    continues: bool  # continues across its time limit (a separator, or its script asks for the signal)
    segment: SegmentMark | None = None  # the last separator of the log
    stage: int | None = None  # the stage the log says runs (None: it did not say)
    progress: TrainingProgress | None = None  # the current stage's bar
    overall: OverallProgress | None = None  # over every stage (None: no outline, or the stage is unknown)
    outline: tuple[tuple[str, int], ...] = ()  # (stage name, steps) the plan asked for
    requeued: bool = False  # back in the queue for its next segment (or its rerun)
    ended: bool = False  # the job is over: no live ETA
    limit_in: int | None = None  # seconds left before the time limit it will hit (no continuation)
    #: further segments the ETA reaches into (a continuing job): each starts
    #: after a wait in the queue that the ETA, training time only, leaves out
    segments_ahead: int = 0

    @property
    def eta_seconds(self) -> float | None:
        if self.ended:
            return None
        if self.overall is not None:
            return self.overall.eta_seconds
        return self.progress.eta_seconds if self.progress is not None else None

    @property
    def segment_text(self) -> str | None:
        """``segment 2 of ~4``: the segment running, or the next one while requeued."""
        return self.segment.phrase(requeued=self.requeued and not self.ended) if self.segment else None

    def to_dict(self) -> dict[str, object]:
        """What ``status --once --json`` says of the training (steps over every stage)."""
        overall, bar = self.overall, self.progress
        return {
            "job_id": self.job_id,
            "summary": self.summary(),
            "segment": self.segment_text,
            "continues": self.continues,
            "requeued": self.requeued,
            "ended": self.ended,
            "stage": self.stage,
            "step": overall.step if overall else (bar.step if bar else None),
            "total_steps": overall.total if overall else (bar.max_steps if bar else None),
            "eta_seconds": None if self.eta_seconds is None else round(self.eta_seconds),
            "limit_in_seconds": self.limit_in,
            "segments_ahead": self.segments_ahead,
        }

    @property
    def waits_text(self) -> str | None:
        """``+ 2 queue waits``: what the ETA leaves out, when it reaches into further segments."""
        if self.ended or not self.segments_ahead:
            return None
        return f"+ {self.segments_ahead} queue wait{'s' if self.segments_ahead > 1 else ''}"

    @property
    def stopped(self) -> bool:
        """The last segment saved no new checkpoint: the continuation ended."""
        return self.segment is not None and self.segment.event is SegmentEvent.STOPPED

    def summary(self) -> str | None:
        """One phrase for the job: ``continuing: segment 2 of ~4``,
        ``segment 2 of ~4``, ``will hit the time limit in ~12:00``, or None."""
        if self.requeued and not self.ended:
            segment = self.segment_text
            return f"continuing: {segment}" if segment else "continuing (requeued)"
        mark = self.segment
        if mark is not None and mark.event is SegmentEvent.STOPPED:
            return f"not continuing: {mark.why_not_continuing}"
        if self.limit_in is not None and not self.ended:
            return f"will hit the time limit in ~{format_clock(self.limit_in)}"
        return self.segment_text


@dataclass
class _WatchedLog:
    follower: LogFollower
    triage: Triage
    opened: bool = False
    exists: bool = False  # the log was there at some read: the job ran at least once


@dataclass(frozen=True)
class _SubmissionFacts:
    outline: tuple[tuple[str, int], ...]
    train_names: frozenset[str]


def scan_markers(follower: LogFollower, *, end: int | None = None,
                 max_bytes: int = MARKER_SCAN_BYTES) -> tuple[SegmentMark | None, int | None]:
    """The last separator (with the ~N of the last one that said it) and the
    last stage start in a log, looking back at most ``max_bytes``."""
    from hpcwizard.jobs.logtail import LineMarker

    markers = {
        "segment": LineMarker(re.compile(re.escape(SEGMENT_NEEDLE) + r"\d"), SEGMENT_NEEDLE.encode()),
        "segment_of": LineMarker(re.compile(re.escape(SEGMENT_NEEDLE) + r"\d+ of "), SEGMENT_NEEDLE.encode()),
        "stage": LineMarker(re.compile(r"^\[[^\]]*\] stage \d+(?::|\s*$)"), STAGE_NEEDLE.encode()),
    }
    try:
        found = follower.last_markers(markers, end=end, max_bytes=max_bytes)
    except FileNotFoundError:
        return None, None
    segment = parse_segment_line(found["segment"].text) if "segment" in found else None
    if segment is not None and "segment_of" in found:
        segment = merge_segment(parse_segment_line(found["segment_of"].text), segment)
    stage = parse_stage_start(found["stage"].text) if "stage" in found else None
    return segment, stage


class TrainingWatch:
    """Follows the logs of a project's active train jobs from snapshot to
    snapshot, reading only what was appended (the log panel's follower), and
    says where each training stands (:class:`TrainingStatus`).

    A log is opened at its tail plus one bounded backward scan for the last
    separator and stage line, then followed; a job that ended gets one last
    read and is let go. The stages come from the plan each chain was
    submitted with (``plan.yaml`` beside its scripts), read once. ``files``:
    the project's, where those logs and plans are (the login node's in
    remote mode). Not thread-safe: one poll worker at a time owns it. No
    Textual here.
    """

    def __init__(self, files: ProjectFiles, *, scan_bytes: int = MARKER_SCAN_BYTES) -> None:
        self.files = files
        self.scan_bytes = scan_bytes
        self._logs: dict[str, _WatchedLog] = {}
        self._facts: dict[str, _SubmissionFacts] = {}
        self._signal: dict[str, tuple[bool, int | None]] = {}
        self.statuses: dict[str, TrainingStatus] = {}

    def close(self) -> None:
        for watched in self._logs.values():
            watched.follower.close()
        self._logs.clear()

    def update(self, snapshot: StatusSnapshot, state: ProjectState) -> dict[str, TrainingStatus]:
        """The statuses of the snapshot's train jobs (those hpcwizard submitted)."""
        if snapshot.error is not None:
            return self.statuses  # the controller did not answer: the states are not news
        recorded = {job.job_id: (submission, job) for submission in state.submissions for job in submission.jobs}
        statuses: dict[str, TrainingStatus] = {}
        for row in snapshot.jobs:
            found = recorded.get(row.job_id) or (recorded.get(row.continues) if row.continues else None)
            if found is None or row.source == "state":
                continue
            submission, job = found
            facts = self._submission_facts(submission.scripts_dir)
            if job.name not in facts.train_names:
                continue
            status = self._status(row, job.script, facts)
            if status is not None:
                statuses[row.job_id] = status
        for job_id in [j for j in self._logs if j not in statuses]:
            self._logs.pop(job_id).follower.close()
        self.statuses = statuses
        return statuses

    def _status(self, row: JobRow, script: str, facts: _SubmissionFacts) -> TrainingStatus | None:
        active = row.active
        watched = self._logs.get(row.job_id)
        if watched is None:
            previous = self.statuses.get(row.job_id)
            if not active:
                if previous is not None and previous.ended:
                    return previous  # read to its end already
                # Ended before we watched it: its final state says it all;
                # the stages and whether it continues still matter (the
                # progress panel, the doctor).
                return TrainingStatus(job_id=row.job_id, continues=self._asks_for_signal(script),
                                      outline=facts.outline, ended=True)
            watched = self._logs[row.job_id] = _WatchedLog(
                LogFollower(self.files.open_source(row.log_out)), Triage(recent_findings=1, history_capacity=2))
        self._read(watched)
        triage = watched.triage
        segment, stage, progress = triage.segment, triage.stage, triage.progress
        continues = segment is not None or self._asks_for_signal(script)
        state = row.state
        waiting = state is JobState.PENDING or state in REQUEUE_STATES
        # A pending job whose log exists ran before (Slurm creates the log
        # as a job starts): Slurm requeued it, its restart count is above 0.
        # So did one whose last separator says it requeued itself, while
        # Slurm still winds it down.
        requeued = active and ((waiting and watched.exists)
                               or (segment is not None and segment.waiting_for_next))
        overall = overall_progress(facts.outline, stage, progress) if facts.outline else None
        limit_in = None
        if active and not continues and not requeued and state is JobState.RUNNING and row.time_limit:
            eta = overall.eta_seconds if overall is not None else (progress.eta_seconds if progress else None)
            left = row.time_limit - (row.elapsed or 0)
            if eta is not None and eta > left:
                limit_in = max(0, left)
        segments_ahead = 0
        lead = self._signal_lead(script)
        if active and continues and state is JobState.RUNNING and row.time_limit and lead is not None:
            eta = overall.eta_seconds if overall is not None else (progress.eta_seconds if progress else None)
            if eta is not None:
                segments_ahead = segments_beyond(eta, row.time_limit, lead, row.elapsed or 0)
        if not active:
            watched.follower.close()
            self._logs.pop(row.job_id, None)
        return TrainingStatus(
            job_id=row.job_id, continues=continues, segment=segment, stage=stage, progress=progress,
            overall=overall, outline=facts.outline, requeued=requeued, ended=not active, limit_in=limit_in,
            segments_ahead=segments_ahead,
        )

    def _read(self, watched: _WatchedLog) -> None:
        triage = watched.triage
        try:
            if not watched.opened:
                update = watched.follower.open_tail_update(WATCH_TAIL_LINES)
                if update.missing:
                    return
                watched.exists = True
                watched.opened = True
                segment, stage = scan_markers(watched.follower, end=update.offset, max_bytes=self.scan_bytes)
                triage.seed(segment, stage)
            else:
                update = watched.follower.poll()
        except OSError:
            return  # unreadable now (a remote hiccup): try again at the next snapshot
        if update.missing:
            return
        watched.exists = True
        triage.feed(update)

    def _submission_facts(self, scripts_dir: str) -> _SubmissionFacts:
        facts = self._facts.get(scripts_dir)
        if facts is None:
            facts = self._facts[scripts_dir] = _read_submission_facts(self.files, scripts_dir)
        return facts

    def _asks_for_signal(self, script: str) -> bool:
        known = self._script_facts(script)
        return known is not None and known[0]

    def _signal_lead(self, script: str) -> int | None:
        """Seconds before its time limit the script asks for the warning (None: it does not)."""
        known = self._script_facts(script)
        return known[1] if known is not None else None

    def _script_facts(self, script: str) -> tuple[bool, int | None] | None:
        """(continues, the warning's lead) of a job script, read once; None while unreadable."""
        known = self._signal.get(script)
        if known is None:
            try:
                text = self.files.read_text(script)
            except (OSError, UnicodeDecodeError):
                return None  # unreadable now: ask again next time
            lead = signal_lead(text)
            known = self._signal[script] = (lead is not None or SEGMENT_NEEDLE in text, lead)
        return known


def signal_lead(script_text: str) -> int | None:
    """The seconds before its time limit a job script asks Slurm for the
    warning signal (``#SBATCH --signal=B:USR1@300``); None when it does not."""
    directive = _SIGNAL_DIRECTIVE.search(script_text)
    if directive is None:
        return None
    lead = _SIGNAL_LEAD.match(script_text, directive.end())
    return int(lead.group(1)) if lead else 60  # Slurm's default lead


def segments_beyond(eta: float, limit: int, lead: int, elapsed: int) -> int:
    """How many further segments a continuing training needs to train ``eta``
    more seconds: this one trains until the warning (``lead`` seconds before
    its ``limit``, ``elapsed`` in), each further one a limit less the lead."""
    import math

    per_segment = limit - lead
    if per_segment <= 0:
        return 0  # a lead as long as the limit: nothing sensible to say
    left_here = max(0, per_segment - elapsed)
    return 0 if eta <= left_here else math.ceil((eta - left_here) / per_segment)


def submission_train_jobs(files: ProjectFiles, scripts_dir: str) -> frozenset[str]:
    """The names of the train jobs of the chain whose scripts are in ``scripts_dir``."""
    return _read_submission_facts(files, scripts_dir).train_names


def _read_submission_facts(files: ProjectFiles, scripts_dir: str) -> _SubmissionFacts:
    """The stages and train jobs of the plan a chain was submitted with
    (``plan.yaml`` is rendered beside the scripts). A chain without one (or
    one this version cannot read) gets no stages, and its job named
    ``train`` counts as the train job."""
    fallback = _SubmissionFacts((), frozenset({"train"}))
    try:
        text = files.read_text(str(Path(scripts_dir) / "plan.yaml"))
    except (OSError, UnicodeDecodeError):
        return fallback
    try:
        import yaml

        from hpcwizard.jobs.estimate import stage_steps, train_job_names
        from hpcwizard.project.recipe import plan_for_recipe_from_dict

        plan, recipe = plan_for_recipe_from_dict(yaml.safe_load(text))
        outline = tuple(stage_steps(recipe, recipe.resolve_params(plan.params)))
        return _SubmissionFacts(outline, frozenset(train_job_names(recipe)))
    except (UserError, yaml.YAMLError, KeyError, ValueError, TypeError):
        return fallback

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

from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from hpcwizard.errors import UserError
from hpcwizard.files import ProjectFiles
from hpcwizard.plan import job_prefix_for
from hpcwizard.shell import Runner
from hpcwizard.slurm import JobState, SlurmClient
from hpcwizard.state import load_state

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


def current_reason(state: str, reason: str | None) -> str | None:
    """The reason worth showing: any while pending; once ended, only one that
    explains the end (squeue keeps a cancelled job's last pending reason)."""
    if state == JobState.PENDING.value or reason in END_REASONS:
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
    state: str  # a JobState value, or FINISHED_UNKNOWN
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

    @property
    def active(self) -> bool:
        return JobState.from_slurm(self.state).is_active

    @property
    def never_runs(self) -> bool:
        return self.reason == "DependencyNeverSatisfied"

    @property
    def held(self) -> bool:
        """Held by ``scontrol hold`` (the user or an admin), not waiting on its own."""
        return self.state == "PENDING" and self.reason in HELD_REASONS


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
            "jobs": [asdict(job) for job in self.jobs],
        }

    @property
    def all_finished(self) -> bool:
        return bool(self.jobs) and not any(j.active and not j.never_runs for j in self.jobs)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="seconds") if moment else None


def _exit(status: object | None) -> str | None:
    return f"{status.code}:{status.signal}" if status is not None else None  # type: ignore[attr-defined]


def take_snapshot(project_home: Path, runner: Runner, *, slurm: SlurmClient | None = None,
                  files: ProjectFiles | None = None) -> StatusSnapshot:
    """The project's jobs as Slurm (or, failing that, the state) knows them now.

    ``files``: where the project state lives (the login node in remote mode)."""
    project_home = Path(project_home)
    state = load_state(project_home / "hpcwizard", files)
    logs = project_home / "logs"
    known = {}  # job id -> (chain name, slurm name, partition, script, dependency)
    for submission in state.submissions:
        for job in submission.jobs:
            dep = job.dependency[0] if job.dependency else None
            known[job.job_id] = (job.name, job.slurm_name, job.partition, job.script, dep)
    prefix = job_prefix_for(project_home)
    slurm = slurm or SlurmClient(runner)
    taken_at = datetime.now().astimezone().isoformat(timespec="seconds")

    def log_paths(slurm_name: str, job_id: str) -> tuple[str, str]:
        stem = logs / f"{slurm_name}-{job_id}"
        return f"{stem}.out", f"{stem}.err"

    rows: dict[str, JobRow] = {}
    try:
        entries = slurm.queue(me=True, all_states=True)
    except UserError as exc:
        error: str | None = exc.one_line()
        entries = []
    else:
        error = None
    for entry in entries:
        if entry.job_id not in known and not entry.name.startswith(prefix):
            continue
        name = known.get(entry.job_id, (entry.name,))[0]
        out, err = log_paths(entry.name, entry.job_id)
        never_started = entry.state.is_finished and not _ran(entry.nodelist, entry.elapsed)
        rows[entry.job_id] = JobRow(
            job_id=entry.job_id, name=name, slurm_name=entry.name, state=entry.state.value,
            reason=current_reason(entry.state.value, entry.reason), dependency=entry.dependency_raw,
            partition=entry.partition, elapsed=entry.elapsed, time_limit=entry.time_limit,
            start=None if never_started else _iso(entry.start_time),
            exit_code=_exit(entry.exit_status), source="squeue", log_out=out, log_err=err,
            script=known.get(entry.job_id, (None,) * 4)[3],
        )

    forgotten = [job_id for job_id in known if job_id not in rows]
    finished = []
    if forgotten and error is None:
        try:
            finished = slurm.finished(forgotten)
        except UserError:
            finished = []
    for done in finished:
        name, slurm_name, partition, script, dep = known[done.job_id]
        out, err = log_paths(slurm_name, done.job_id)
        rows[done.job_id] = JobRow(
            job_id=done.job_id, name=name, slurm_name=slurm_name, state=done.state.value, reason=None,
            dependency=dep, partition=done.partition or partition, elapsed=done.elapsed, time_limit=None,
            start=_iso(done.start_time) if _ran(done.nodelist, done.elapsed) else None,
            exit_code=_exit(done.exit_status), source=done.source.value,
            log_out=out, log_err=err, script=script,
        )
    for job_id in forgotten:
        if job_id in rows:
            continue
        name, slurm_name, partition, script, dep = known[job_id]
        out, err = log_paths(slurm_name, job_id)
        rows[job_id] = JobRow(
            job_id=job_id, name=name, slurm_name=slurm_name,
            state="UNKNOWN" if error else JobState.FINISHED_UNKNOWN.value, reason=None,
            dependency=dep, partition=partition, elapsed=None, time_limit=None, start=None, exit_code=None,
            source="state", log_out=out, log_err=err, script=script,
        )
    ordered = sorted(rows.values(), key=lambda row: int(row.job_id.split("_")[0]) if row.job_id.split("_")[0].isdigit() else 0)
    return StatusSnapshot(str(project_home), taken_at, tuple(ordered), error)

"""The submit journal: a submit that dies half-way is finished or undone later.

``submit`` (:mod:`hpcwizard.jobs.submit`) writes ``<state_dir>/submit-journal.json``
BEFORE its first sbatch: the plan's fingerprint, a new chain id and the time.
Each job id is added the moment sbatch prints it, and the phase moves from
``submitting`` (jobs go in held, none may run) to ``releasing`` (every job was
accepted; the release is asked and may have happened). Every job carries
``--comment=hpcwizard:<chain>``, so a job whose id never reached the journal
(hpcwizard killed while sbatch was answering, an sbatch that timed out after
Slurm accepted it) is still found: one ``squeue --me`` lists comments.

A finished submit records its chain in the project state and deletes the
journal. A journal that is still there is reconciled with the queue by the
next ``submit``, ``status`` or wizard start (:func:`reconcile`):

- a chain that was released (a job of it left the hold, ran or is running) is
  ADOPTED: recorded in the state like any submission (a later ``submit`` of
  the same plan is refused as already submitted), any job of it still held
  is released;
- otherwise its jobs are held orphans that would never run: they are
  CANCELLED, with the run folder the interrupted submit wrote;
- ``cancelling`` (a failed submit whose cleanup could not reach Slurm): its
  jobs are cancelled, whatever their state.

Each case is said in one line. When Slurm cannot be reached the journal stays
and the next start tries again; a ``submit`` then refuses to go on, since it
cannot tell whether the plan's chain is already queued.

Journal writes are atomic and durable (file and folder fsynced) and happen
under the project's submit lock, which ``submit`` holds throughout and
``reconcile`` takes without waiting (a submit running elsewhere owns its
journal).
"""

from __future__ import annotations

import enum
import json
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from hpcwizard.errors import UserError
from hpcwizard.project.files import LockBusy, ProjectFiles, fsync_folder
from hpcwizard.project.layout import JOURNAL_FILE as JOURNAL_FILE  # the project layout names it (tests read it here)
from hpcwizard.project.state import StateError, Submission, SubmittedJob
from hpcwizard.shell import Runner
from hpcwizard.slurm import JobState, SlurmClient, SlurmCommandError, SlurmUnavailable
from hpcwizard.slurm.errors import slurm_error_line
from hpcwizard.slurm.parse import FIELD_SEPARATOR

if TYPE_CHECKING:
    from hpcwizard.project.home import Project

#: Held by ``submit`` for its whole run; serialises submits and recoveries.
SUBMIT_LOCK = ".submit.lock"
COMMENT_PREFIX = "hpcwizard:"

# squeue -o for finding a chain's jobs: the comment goes last (it is free
# text on other people's jobs), the job name just before it is ours.
_QUEUE_FIELDS = ("%i", "%T", "%r", "%j", "%k")
_QUEUE_FORMAT = FIELD_SEPARATOR.join(_QUEUE_FIELDS)


class Phase(str, enum.Enum):
    """How far a journaled submit got."""

    SUBMITTING = "submitting"  # jobs go in held; none was released
    RELEASING = "releasing"  # every job accepted; the release may have happened
    CANCELLING = "cancelling"  # the submit failed and its jobs must go

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Journal:
    """One submit in flight, as written to disk."""

    chain: str
    plan_fingerprint: str
    started_at: str
    scripts_dir: str
    phase: Phase
    #: The chain's jobs in order; ``job_id`` is "" until sbatch gave it.
    jobs: tuple[SubmittedJob, ...]
    #: Folders this submit created, outermost first: undoing the submit
    #: removes them again (each only when empty).
    created: tuple[str, ...] = ()

    @property
    def comment(self) -> str:
        return chain_comment(self.chain)

    @property
    def job_ids(self) -> list[str]:
        return [job.job_id for job in self.jobs if job.job_id]

    @property
    def complete(self) -> bool:
        """Whether every job of the chain has an id."""
        return all(job.job_id for job in self.jobs)

    def with_phase(self, phase: Phase) -> Journal:
        return replace(self, phase=phase)

    def with_job_id(self, index: int, job_id: str) -> Journal:
        """The journal once job ``index`` was accepted as ``job_id`` (its
        dependency is the previous job, as submit chains them)."""
        jobs = list(self.jobs)
        parent = jobs[index - 1].job_id if index else ""
        jobs[index] = replace(jobs[index], job_id=job_id,
                              dependency=(f"afterok:{parent}",) if parent else ())
        return replace(self, jobs=tuple(jobs))

    def merged(self, found: Iterable[QueuedJob]) -> Journal:
        """Ids the journal lacks, taken from the chain's jobs found by comment
        (matched by Slurm job name: one job per name in a chain)."""
        journal = self
        by_name = {job.name: job.job_id for job in found}
        for index, job in enumerate(self.jobs):
            if not job.job_id and job.slurm_name in by_name:
                journal = journal.with_job_id(index, by_name[job.slurm_name])
        return journal

    def submission(self) -> Submission:
        return Submission(plan_fingerprint=self.plan_fingerprint, submitted_at=self.started_at,
                          scripts_dir=self.scripts_dir, jobs=self.jobs, chain=self.chain)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Journal:
        data = json.loads(text)
        return cls(
            chain=str(data["chain"]),
            plan_fingerprint=str(data["plan_fingerprint"]),
            started_at=str(data["started_at"]),
            scripts_dir=str(data["scripts_dir"]),
            phase=Phase(data["phase"]),
            jobs=tuple(SubmittedJob(**{**j, "dependency": tuple(j.get("dependency", ()))}) for j in data["jobs"]),
            created=tuple(str(p) for p in data.get("created", ())),
        )


@dataclass(frozen=True)
class QueuedJob:
    """A job of a chain as squeue shows it."""

    job_id: str
    state: JobState
    reason: str
    name: str

    @property
    def held(self) -> bool:
        """Held (``--hold``, or by an admin): it never starts until released."""
        return self.state is JobState.PENDING and self.reason.startswith("JobHeld")

    @property
    def live(self) -> bool:
        return not self.state.is_finished


@dataclass(frozen=True)
class Outcome:
    """What a reconciliation did: one line per case, and whether a journal
    is left (Slurm could not be reached, or a cancel failed: retried on the
    next start)."""

    lines: tuple[str, ...] = ()
    #: Set when the journal could not be settled: the line that says why.
    unsettled: str | None = None

    @property
    def settled(self) -> bool:
        return self.unsettled is None

    @property
    def all_lines(self) -> list[str]:
        return [*self.lines, *([self.unsettled] if self.unsettled else [])]


def new_chain_id() -> str:
    """Unique per submit, readable in ``squeue -o %k``: when, then 6 random hex digits."""
    return f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


def chain_comment(chain: str) -> str:
    """The ``--comment`` every job of the chain carries."""
    return f"{COMMENT_PREFIX}{chain}"


def load_journal(project: Project) -> Journal | None:
    path = project.layout.submit_journal
    try:
        return Journal.from_json(project.files.read_text(path))
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise StateError(f"the submit journal {path} is damaged ({type(exc).__name__}: {exc})",
                         "check the queue (`squeue --me -o '%i %j %k'`) for jobs of an interrupted submit, "
                         "cancel them, then move the file aside") from None


def write_journal(project: Project, journal: Journal) -> None:
    """Replace the journal atomically and durably (the caller holds the submit lock)."""
    project.files.write_text_atomic(project.layout.submit_journal, journal.to_json())


def remove_journal(project: Project) -> None:
    """Remove the journal of a settled submit. Best effort: a journal left by
    a failed removal is settled quietly by the next start (its chain is
    recorded, or none of its jobs is left)."""
    files = project.files
    try:
        files.remove(project.layout.submit_journal, missing_ok=True)
    except (OSError, UserError):
        return
    if not files.remote:
        fsync_folder(project.layout.state_dir)


def find_chain_jobs(slurm: SlurmClient, chain: str) -> list[QueuedJob]:
    """The jobs the queue remembers with the chain's comment (one squeue for
    all of the user's jobs; squeue cannot filter on a comment). Raises a
    UserError (SlurmUnavailable when the controller is away) when it cannot say."""
    comment = chain_comment(chain)
    # SlurmClient._run: the client's one way to run a Slurm command (timeouts,
    # an unreachable controller as SlurmUnavailable).
    result = slurm._run(["squeue", "--noheader", "--me", "-t", "all", "-o", _QUEUE_FORMAT])
    if not result.ok:
        raise SlurmCommandError(f"squeue failed: {slurm_error_line(result.stderr) or f'exit {result.returncode}'}",
                                "check that Slurm works here (`squeue --me`)")
    jobs = []
    for line in result.stdout.splitlines():
        fields = line.split(FIELD_SEPARATOR, len(_QUEUE_FIELDS) - 1)
        if len(fields) != len(_QUEUE_FIELDS) or fields[4].strip() != comment:
            continue
        job_id, state, reason, name, _ = fields
        jobs.append(QueuedJob(job_id.strip(), JobState.from_slurm(state), reason.strip(), name))
    return jobs


# --- reconciliation ----------------------------------------------------------


def reconcile(project: Project) -> list[str]:
    """Settle an unfinished submit journal of the project, if there is one,
    with Slurm through the project's runner (which must be set); the lines
    saying what was done (for ``status`` and the wizard's start).

    Costs one file check when there is no journal. A submit running right
    now (it holds the submit lock) is left alone: its journal is its own."""
    runner = project.submit_runner()
    files = project.files
    if not files.exists(project.layout.submit_journal):
        return []
    try:
        with files.lock(project.layout.state_dir / SUBMIT_LOCK, blocking=False):
            return reconcile_locked(project, SlurmClient(runner)).all_lines
    except LockBusy:
        return []


def reconcile_locked(project: Project, slurm: SlurmClient) -> Outcome:
    """:func:`reconcile` for a caller that holds the submit lock."""
    journal = load_journal(project)
    if journal is None:
        return Outcome()
    if any(s.chain == journal.chain for s in project.load_state().submissions):
        remove_journal(project)  # it died after recording the chain: nothing left to do
        return Outcome()
    when = _when(journal.started_at)
    try:
        found = find_chain_jobs(slurm, journal.chain)
    except UserError as exc:
        ids = journal.job_ids
        if ids and journal.phase is Phase.SUBMITTING:
            fate = (f"{_jobs(ids)} {_are(ids)} held and never run; hpcwizard cancels {_them(ids)} on its next start, "
                    f"or run `scancel {' '.join(ids)}`")
        elif ids and journal.phase is Phase.CANCELLING:
            fate = f"hpcwizard cancels {_jobs(ids)} on its next start, or run `scancel {' '.join(ids)}`"
        else:
            fate = "hpcwizard finishes it on its next start"
        return Outcome(unsettled=f"could not check {_the_submit(journal, when)} ({_why(exc)}): {fate}")
    journal = journal.merged(found)
    if journal.phase is not Phase.CANCELLING and _was_released(journal, found, slurm):
        return _adopt(project, journal, found, slurm, when)
    return _cancel(project, journal, found, slurm, when)


def _was_released(journal: Journal, found: Sequence[QueuedJob], slurm: SlurmClient) -> bool:
    """Whether the chain left its hold: the submit had got as far as the release."""
    if journal.phase is not Phase.RELEASING or not journal.complete:
        return False
    ours = [job for job in found if job.job_id in journal.job_ids]
    if ours:
        return any(not job.held and job.state is not JobState.CANCELLED for job in ours)
    # Gone from the queue: a held job only leaves it cancelled, so a job the
    # accounting does not know as cancelled ran (and Slurm forgot it since).
    try:
        finished = slurm.finished(journal.job_ids)
    except UserError:
        return True
    return any(job.state is not JobState.CANCELLED for job in finished)


def _adopt(project: Project, journal: Journal, found: Sequence[QueuedJob], slurm: SlurmClient,
           when: str) -> Outcome:
    held = [job.job_id for job in found if job.held and job.job_id in journal.job_ids]
    if held:
        try:
            slurm.release(held)
        except UserError as exc:
            return Outcome(unsettled=f"{_the_submit(journal, when)} had released part of its chain, but "
                                     f"{_jobs(held)} could not be released ({_why(exc)}): hpcwizard releases "
                                     f"{_them(held)} on its next start, or run `scontrol release {','.join(held)}`")
    submission = journal.submission()
    project.update_state(lambda state: state.submissions.append(submission))
    remove_journal(project)
    also = f" (released {', '.join(held)}, still held)" if held else ""
    return Outcome((f"{_the_submit(journal, when)} had released its chain: adopted {_jobs(journal.job_ids)} "
                    f"as its plan's submission{also}",))


def _cancel(project: Project, journal: Journal, found: Sequence[QueuedJob], slurm: SlurmClient,
            when: str) -> Outcome:
    live = _in_chain_order(journal, [job.job_id for job in found if job.live])
    failed = cancel_jobs(slurm, live)
    if failed is not None:
        write_journal(project, journal.with_phase(Phase.CANCELLING))
        return Outcome(unsettled=could_not_cancel(live, failed, held=all(j.held for j in found if j.live)))
    remove_run_folder(journal, slurm.runner, project.files)
    remove_journal(project)
    if journal.phase is Phase.CANCELLING:
        if live:
            return Outcome((f"cancelled {_jobs(live)} left by {_the_submit(journal, when)}",))
        return Outcome()  # gone already, or never accepted: nothing to say
    if live:
        never = "held, never released" if all(j.held for j in found if j.live) else "of a chain never fully released"
        return Outcome((f"{_the_submit(journal, when)} left {_jobs(live)} ({never}): cancelled {_them(live)}",))
    return Outcome((f"{_the_submit(journal, when)} left no job in the queue: nothing to undo",))


# --- shared with submit ------------------------------------------------------


def cancel_jobs(slurm: SlurmClient, job_ids: Sequence[str]) -> UserError | None:
    """scancel; the error when it failed (None: cancelled, or nothing to cancel)."""
    if not job_ids:
        return None
    try:
        slurm.cancel(job_ids)
    except UserError as exc:
        return exc
    return None


def could_not_cancel(job_ids: Sequence[str], error: UserError, *, held: bool) -> str:
    """The truthful line for a cancel that failed, and what happens next."""
    ids = list(job_ids)
    fate = f"{_it_is(ids)} held and will never run; " if held else ""
    return (f"could not cancel {', '.join(ids)} ({_why(error)}): {fate}hpcwizard cancels {_them(ids)} on its next "
            f"start, or run `scancel {' '.join(ids)}`")


def remove_run_folder(journal: Journal, runner: Runner, files: ProjectFiles) -> None:
    """Remove what an undone submit created: its run folder (flat files it
    rendered) and, when empty, the folders it made. Best effort."""
    scripts = Path(journal.scripts_dir)
    if scripts.name and scripts.parent.name == "runs":  # only a run folder submit made
        remove_files_in(scripts, files)
    remove_empty_folders([scripts, *reversed([Path(p) for p in journal.created])], runner)


def remove_files_in(folder: Path, files: ProjectFiles) -> None:
    """Remove the files directly in ``folder`` (a run folder holds no
    subfolders). Best effort."""
    try:
        names = files.listdir(folder)
    except (OSError, UserError):
        return
    for name in names:
        try:
            files.remove(folder / name, missing_ok=True)
        except (OSError, UserError):
            pass


def remove_empty_folders(folders: Sequence[Path], runner: Runner) -> None:
    """``rmdir`` each folder that is empty, in order (innermost first), on
    the machine the files live on; others are left alone. Best effort."""
    paths = [str(p) for p in dict.fromkeys(folders)]
    if not paths:
        return
    try:
        runner.run(["rmdir", "--ignore-fail-on-non-empty", "--", *paths], timeout=30)
    except UserError:
        pass


def _in_chain_order(journal: Journal, job_ids: Iterable[str]) -> list[str]:
    """``job_ids`` with the chain's own first, in chain order."""
    ids = list(job_ids)
    ours = [i for i in journal.job_ids if i in ids]
    return ours + [i for i in ids if i not in ours]


def _when(started_at: str) -> str:
    """The journal's start time as a person reads it: '2026-12-04 15:47'."""
    try:
        return datetime.fromisoformat(started_at).strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return started_at


def _the_submit(journal: Journal, when: str) -> str:
    """How a line names the journal's submit."""
    if journal.phase is Phase.CANCELLING:
        return f"the submit that failed at {when}"
    return f"the submit interrupted at {when}"


def _why(error: UserError) -> str:
    if isinstance(error, SlurmUnavailable):
        return "controller down"
    return error.message.rstrip(". ")


def _jobs(ids: Sequence[str]) -> str:
    return f"job {ids[0]}" if len(ids) == 1 else f"jobs {', '.join(ids)}"


def _them(ids: Sequence[str]) -> str:
    return "it" if len(ids) == 1 else "them"


def _are(ids: Sequence[str]) -> str:
    return "is" if len(ids) == 1 else "are"


def _it_is(ids: Sequence[str]) -> str:
    return "it is" if len(ids) == 1 else "they are"

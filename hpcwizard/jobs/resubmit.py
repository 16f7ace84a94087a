"""The DependencyNeverSatisfied doctor: explain a stuck chain and repair it.

When a parent job fails, Slurm leaves its ``afterok`` dependents pending
forever with the reason ``DependencyNeverSatisfied``. :func:`diagnose` finds
them in a :class:`~hpcwizard.jobs.status.StatusSnapshot` and names the parent that
failed (state, exit code, log). :func:`resubmit_failed` submits the failed
parent's recorded script again (same working directory: the project home),
cancels the stuck dependents and submits them again with
``--dependency=afterok:<new id>`` in chain order, then records the new jobs
in the project state as a new :class:`~hpcwizard.project.state.Submission`.

Like the first submission it is all or nothing: every new job is submitted
held; if Slurm refuses one, the new ones are cancelled and the old chain is
left exactly as it was. Only once all are accepted are the old dependents
cancelled and the new chain released.

No Textual here: the dashboard, the CLI and the tests all call this module.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hpcwizard.errors import UserError
from hpcwizard.jobs.status import JobRow, StatusSnapshot, format_clock
from hpcwizard.project.files import ProjectFiles
from hpcwizard.project.state import (
    ProjectState,
    Submission,
    SubmittedJob,
    now_iso,
)
from hpcwizard.slurm import SlurmClient
from hpcwizard.slurm.models import JobState
from hpcwizard.slurm.parse import parse_dependency

if TYPE_CHECKING:
    from hpcwizard.project.home import Project

NEVER_SATISFIED = "DependencyNeverSatisfied"


class ResubmitError(UserError):
    """The chain could not be repaired; nothing new stays queued."""


@dataclass(frozen=True)
class Diagnosis:
    """A failed parent and the jobs that can never start because of it.

    ``stuck`` holds every job downstream of the parent (in chain order), not
    only the direct child: a grandchild waits on the child, which will never
    run either.
    """

    parent: JobRow
    stuck: tuple[JobRow, ...]

    @property
    def parent_log(self) -> str:
        return self.parent.log_err if self.parent.log_err else self.parent.log_out

    def explain(self, *, resumes: bool = False) -> str:
        """One paragraph a person can act on. ``resumes``: the parent is a
        train job that resumes from its latest checkpoint
        (:func:`continues_from_checkpoint`)."""
        parent = self.parent
        names = ", ".join(f"{job.name} ({job.job_id})" for job in self.stuck)
        todo = (f"Continue {parent.name} from its latest checkpoint (its dependents follow it), or cancel them."
                if continues_from_checkpoint(parent, resumes=resumes) else
                f"Fix the cause, then resubmit {parent.name} and its dependents, or cancel them.")
        return (
            f"{names} can never start: {'it waits' if len(self.stuck) == 1 else 'they wait'} for "
            f"{parent.name} ({parent.job_id}) to succeed, but it {how_it_ended(parent)}. {todo}"
        )


def _shown_path(path: str, project_home: str | None) -> str:
    """A path below the project home as the user sees it there (``logs/…``):
    short enough for a line of its own, so a dialog never wraps it mid-word."""
    if project_home:
        home = project_home.rstrip("/") + "/"
        if path.startswith(home):
            return path[len(home):]
    return path


def where_it_logged(job: JobRow, project_home: str | None = None) -> str:
    """The logs to read, one per line; none for a job that never started
    (the doctor named a log a job cancelled while pending never wrote)."""
    if job.start is None and job.elapsed == 0:
        return "It never started, so it wrote no log."
    return (f"Its logs (stdout, then stderr):\n  {_shown_path(job.log_out, project_home)}\n"
            f"  {_shown_path(job.log_err, project_home)}")


def what_resubmit_runs(job: JobRow, project_home: str | None = None) -> str:
    """The recorded sbatch file, on a line of its own."""
    return f"  {_shown_path(job.script or '?', project_home)}"


def how_it_ended(job: JobRow) -> str:
    """``ended FAILED, exit code 3:0``; for a job Slurm stopped, why in words:
    a TIMEOUT's exit code 0:0 read as "it succeeded" and sent people looking
    for a bug in the script."""
    if job.state is JobState.TIMEOUT:
        limit = f" of {format_clock(job.time_limit)}" if job.time_limit else ""
        return f"hit its time limit{limit} (TIMEOUT)"
    if job.state is JobState.OUT_OF_MEMORY:
        return "ran out of memory (OUT_OF_MEMORY)"
    exit_code = f", exit code {job.exit_code}" if job.exit_code and job.exit_code != "0:0" else ""
    return f"ended {job.state}{exit_code}"


def continues_from_checkpoint(job: JobRow, *, resumes: bool = True) -> bool:
    """A train job that ran out of time: submitting its script again
    continues the training from its latest checkpoint (the recipes' train
    jobs resume from it by themselves), nothing to fix first. ``resumes``:
    the job is such a train job (:func:`resumes_from_checkpoint`)."""
    return resumes and job.state is JobState.TIMEOUT


def resumes_from_checkpoint(project: Project, job_id: str, *, state: ProjectState | None = None) -> bool:
    """``job_id`` is a train job of ``project`` of its chain's recipe (read
    from the plan submitted with it): its script resumes from the latest
    checkpoint. ``state``: the project state when the caller has just read it."""
    from hpcwizard.jobs.status import submission_train_jobs

    if state is None:
        state = project.load_state()
    for submission in state.submissions:
        for job in submission.jobs:
            if job.job_id == job_id:
                return job.name in submission_train_jobs(project.files, submission.scripts_dir)
    return False


def fix_advice(job: JobRow, *, resumes: bool = False) -> str:
    """What to change before resubmitting. Resubmit runs the recorded sbatch
    file again, so a plan edit alone does not reach it: say both ways.

    A train job that ran out of time (``resumes``) needs no change:
    Continue submits it again and it resumes from its latest checkpoint."""
    if continues_from_checkpoint(job, resumes=resumes):
        return ("Nothing to change first: it resumes from its latest checkpoint, so each run adds its "
                "time limit's worth of training.")
    # The sbatch files say "edit the plan, not this file": so does the advice.
    if job.state is JobState.TIMEOUT:
        return ("Give it more time first: raise this job's time in the plan (the wizard's Slurm step, or "
                "`time:` in the plan file) and submit the plan again; Resubmit runs the recorded sbatch file "
                "with the same limit.")
    if job.state is JobState.OUT_OF_MEMORY:
        return ("Give it more memory first: raise this job's mem in the plan (the wizard's Slurm step, or "
                "`mem:` in the plan file) and submit the plan again; Resubmit runs the recorded sbatch file "
                "with the same memory.")
    return ("Fix the cause first: in the data or the code, then Resubmit; a change to the plan needs the plan "
            "submitted again (Resubmit runs the recorded sbatch file as it is).")


@dataclass(frozen=True)
class Resubmission:
    """What a repair did: old id → new id, and the old jobs it cancelled."""

    new_ids: dict[str, str]
    cancelled: tuple[str, ...]
    submission: Submission


# --------------------------------------------------------------------------
# Chains as recorded in the project state


def recorded_jobs(state: ProjectState) -> dict[str, SubmittedJob]:
    """Every job hpcwizard ever submitted in this project, by id."""
    return {job.job_id: job for submission in state.submissions for job in submission.jobs}


def _parent_ids(job: SubmittedJob) -> list[str]:
    ids = []
    for term in job.dependency:
        ids += [dep.job_id for dep in parse_dependency(term) if dep.job_id]
    return ids


def dependents_of(state: ProjectState, job_id: str) -> list[SubmittedJob]:
    """Jobs that (transitively) wait on ``job_id``, parents before children."""
    jobs = recorded_jobs(state)
    children: dict[str, list[str]] = {}
    for job in jobs.values():
        for parent in _parent_ids(job):
            children.setdefault(parent, []).append(job.job_id)
    order: list[str] = []
    queue = [job_id]
    while queue:
        current = queue.pop(0)
        for child in sorted(children.get(current, []), key=_id_key):
            if child not in order and child != job_id:
                order.append(child)
                queue.append(child)
    return [jobs[j] for j in order]


def chain_of(state: ProjectState, job_id: str) -> list[SubmittedJob]:
    """The whole submission (chain) that holds ``job_id``, plus anything
    resubmitted downstream of it; [] for a job hpcwizard did not submit."""
    for submission in state.submissions:
        if job_id in submission.job_ids:
            chain = list(submission.jobs)
            seen = {job.job_id for job in chain}
            for job in list(chain):
                for later in dependents_of(state, job.job_id):
                    if later.job_id not in seen:
                        chain.append(later)
                        seen.add(later.job_id)
            return chain
    return []


def _id_key(job_id: str) -> tuple[int, str]:
    head = job_id.split("_")[0].split("+")[0]
    return (int(head) if head.isdigit() else 0, job_id)


# --------------------------------------------------------------------------
# Diagnosis


def diagnose(project: Project, snapshot: StatusSnapshot, *, state: ProjectState | None = None) -> list[Diagnosis]:
    """One :class:`Diagnosis` per failed parent with never-satisfiable dependents,
    in ``snapshot`` (of ``project``'s jobs).

    A job pending after a parent that ended badly (``afterok`` on a job that
    failed, was cancelled, timed out) is stuck at once, from the chain
    hpcwizard recorded: Slurm says DependencyNeverSatisfied only at a later
    scheduler pass (the doctor said "nothing to repair" for ~25 s after a
    parent was cancelled). ``state``: the project state when the caller has
    just read it."""
    rows = {row.job_id: row for row in snapshot.jobs}
    if state is None:
        state = project.load_state()
    recorded = recorded_jobs(state)

    def parents(row: JobRow) -> list[str]:
        found = [d.job_id for d in parse_dependency(row.dependency or "") if d.job_id]
        if not found and row.job_id in recorded:
            found = _parent_ids(recorded[row.job_id])
        return found

    def failed(job_id: str) -> bool:
        row = rows.get(job_id)
        if row is None:
            return False
        return not row.active and row.state is not JobState.COMPLETED

    def waits_on_a_failed_job(row: JobRow) -> bool:
        recorded_job = recorded.get(row.job_id)
        terms = recorded_job.dependency if recorded_job is not None else (row.dependency or "",)
        return any(dep.kind == "afterok" and dep.job_id and failed(dep.job_id)
                   for term in terms for dep in parse_dependency(term))

    roots: dict[str, list[JobRow]] = {}
    for row in snapshot.jobs:
        if not (row.state is JobState.PENDING and (row.reason == NEVER_SATISFIED or waits_on_a_failed_job(row))):
            continue
        # Walk up through stuck ancestors to the job that actually failed.
        current: JobRow | None = row
        seen: set[str] = set()
        root: str | None = None
        while current is not None and current.job_id not in seen:
            seen.add(current.job_id)
            ups = parents(current)
            bad = next((p for p in ups if failed(p)), None)
            if bad is not None:
                root = bad
                break
            stuck_parent = next((rows[p] for p in ups if p in rows and rows[p].reason == NEVER_SATISFIED), None)
            current = stuck_parent
        if root is not None:
            roots.setdefault(root, []).append(row)
    diagnoses = []
    for root, stuck in roots.items():
        # Grandchildren pend with reason "Dependency" (their parent is merely
        # pending), but they are just as stuck: include every active job
        # downstream of the failed one.
        found = {r.job_id: r for r in stuck}
        for job in dependents_of(state, root):
            dependent = rows.get(job.job_id)
            if dependent is not None and dependent.active:
                found.setdefault(dependent.job_id, dependent)
        ordered = sorted(found.values(), key=lambda r: _id_key(r.job_id))
        diagnoses.append(Diagnosis(parent=rows[root], stuck=tuple(ordered)))
    return sorted(diagnoses, key=lambda d: _id_key(d.parent.job_id))


def with_exit_code(diagnosis: Diagnosis, slurm: SlurmClient) -> Diagnosis:
    """Fill in the parent's exit code when squeue could not say (one query)."""
    from dataclasses import replace

    if diagnosis.parent.exit_code:
        return diagnosis
    with contextlib.suppress(UserError):
        found = slurm.finished([diagnosis.parent.job_id])
        if found and found[0].exit_status is not None:
            status = found[0].exit_status
            return replace(diagnosis, parent=replace(diagnosis.parent, exit_code=f"{status.code}:{status.signal}"))
    return diagnosis


# --------------------------------------------------------------------------
# Repair and cancel


def resubmit_failed(project: Project, parent_id: str, *, slurm: SlurmClient | None = None) -> Resubmission:
    """Submit the failed job ``parent_id`` of ``project`` again and re-link its dependents.

    The parent's script is the one recorded in the project state (edit it to
    fix the cause first). Dependents that are still queued are cancelled;
    every dependent is submitted again after its (new) parent, in order.
    Slurm is asked through the project's runner unless ``slurm`` is given.
    """
    files = project.files
    state = project.load_state()
    recorded = recorded_jobs(state)
    parent = recorded.get(parent_id)
    if parent is None:
        raise ResubmitError(f"job {parent_id} was not submitted by hpcwizard in {project.home}",
                            "resubmit it by hand with sbatch")
    if not files.exists(parent.script):
        raise ResubmitError(f"the script of job {parent_id} is gone: {parent.script}",
                            "render the plan again (`hpcwizard render`) and submit it")
    dependents = dependents_of(state, parent_id)
    slurm = slurm or SlurmClient(project.submit_runner())
    files.mkdir_p(project.logs_dir)

    new_ids: dict[str, str] = {}
    accepted: list[SubmittedJob] = []
    for job in [parent, *dependents]:
        old_parents = _parent_ids(job) if job is not parent else []
        new_parents = [new_ids.get(p, p) for p in old_parents]
        try:
            job_id = slurm.submit(job.script, dependency=new_parents or None, hold=True,
                                  workdir=str(project.home))
        except UserError as exc:
            _cancel_quietly(slurm, [j.job_id for j in accepted])
            raise ResubmitError(
                f"Slurm refused {job.name} ({job.script}): {exc.message}; the old chain is unchanged",
                exc.hint or "fix the script and try again") from None
        new_ids[job.job_id] = job_id
        accepted.append(SubmittedJob(
            name=job.name, slurm_name=job.slurm_name, job_id=job_id, partition=job.partition,
            script=job.script, dependency=tuple(f"afterok:{p}" for p in new_parents),
            time_limit=_script_time_limit(files, job),
        ))

    # All accepted: the old dependents can go, then the new chain may run.
    old = [job.job_id for job in dependents]
    try:
        slurm.cancel(old)
        slurm.release([job.job_id for job in accepted])
    except UserError as exc:
        _cancel_quietly(slurm, [j.job_id for j in accepted])
        raise ResubmitError(f"could not re-link the chain ({exc.message}); cancelled the new jobs",
                            "check the controller with `sinfo` and try again") from None

    original = next(s for s in state.submissions if parent_id in s.job_ids)
    submission = Submission(
        plan_fingerprint=original.plan_fingerprint,
        submitted_at=now_iso(),
        scripts_dir=original.scripts_dir,
        jobs=tuple(accepted),
    )
    project.update_state(lambda s: s.submissions.append(submission))
    return Resubmission(new_ids=new_ids, cancelled=tuple(old), submission=submission)


def _script_time_limit(files: ProjectFiles, job: SubmittedJob) -> int | None:
    """The limit the script asks for now (someone may have raised its
    ``#SBATCH --time`` by hand)."""
    from hpcwizard.jobs.submit import sbatch_time_limit

    try:
        return sbatch_time_limit(files.read_text(job.script)) or job.time_limit
    except (OSError, UnicodeDecodeError, UserError):
        return job.time_limit


def cancel_chain(project: Project, job_id: str, *, include_finished: bool = False,
                 active_ids: Iterable[str] | None = None, slurm: SlurmClient | None = None) -> list[str]:
    """Cancel ``job_id`` and every job of its chain in ``project``; returns the ids asked.

    ``active_ids`` (from the latest snapshot) limits the scancel to jobs that
    are still queued or running; without it every recorded job is named
    (scancel ignores finished ones). Slurm is asked through the project's
    runner unless ``slurm`` is given.
    """
    state = project.load_state()
    ids = [job.job_id for job in chain_of(state, job_id)] or [job_id]
    if active_ids is not None and not include_finished:
        active = set(active_ids)
        ids = [j for j in ids if j in active]
    (slurm or SlurmClient(project.submit_runner())).cancel(ids)
    return ids


def _cancel_quietly(slurm: SlurmClient, job_ids: list[str]) -> None:
    if job_ids:
        with contextlib.suppress(UserError):
            slurm.cancel(job_ids)

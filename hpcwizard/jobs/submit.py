"""Submit a plan's chain to Slurm, all or nothing, exactly once.

Every job is first checked with ``sbatch --test-only``, then submitted held,
each depending (``afterok``) on the one before. Only when Slurm accepted all
of them are they released; if any is refused, the ones already accepted are
cancelled, so a half chain never runs. The submission is recorded in the
project state, and a second submit of the same plan is refused unless forced,
so reopening hpcwizard never submits twice.

A submit that dies half-way (``kill -9``, a dropped ssh session, a power
cut) is finished or undone by the next start, from the journal written
before the first sbatch (:mod:`hpcwizard.jobs.journal`); the sbatch it was
waiting for dies with it (:func:`hpcwizard.shell.die_with_parent`). A cleanup
that fails is said as such, and retried on the next start. A refused submit
leaves nothing behind: the run folder, the logs folder, and the project home
itself when the submit created them, are removed again.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from hpcwizard.errors import UserError
from hpcwizard.jobs.journal import (
    SUBMIT_LOCK,
    Journal,
    Phase,
    cancel_jobs,
    could_not_cancel,
    find_chain_jobs,
    new_chain_id,
    reconcile_locked,
    remove_empty_folders,
    remove_files_in,
    remove_journal,
    remove_run_folder,
    write_journal,
)
from hpcwizard.project.files import ProjectFiles
from hpcwizard.project.home import Project
from hpcwizard.project.plan import Plan
from hpcwizard.project.render import render
from hpcwizard.project.resolved import ResolvedPlan
from hpcwizard.project.state import Submission, SubmittedJob, now_iso
from hpcwizard.shell import Runner
from hpcwizard.slurm import SlurmClient, SlurmRefused


class AlreadySubmitted(UserError):
    """This plan was submitted before; submitting again needs --force."""


class ChainRefused(UserError):
    """Slurm refused a job of the chain; nothing of it stays queued (or the
    message says which jobs could not be cancelled)."""


class SubmitUnsettled(UserError):
    """An earlier submit of the project could not be finished or undone yet."""


_TIME_DIRECTIVE = re.compile(r"^#SBATCH\s+(?:--time[= ]|-t\s*)(\S+)", re.MULTILINE)


def sbatch_time_limit(script_text: str) -> int | None:
    """Seconds of the ``#SBATCH --time`` a script asks for (the last one,
    as sbatch reads them); None when it asks for none or none that reads."""
    from hpcwizard.slurm.parse import parse_slurm_duration

    found = _TIME_DIRECTIVE.findall(script_text)
    try:
        return parse_slurm_duration(found[-1]) if found else None
    except ValueError:
        return None


def runs_dir(plan: Plan) -> Path:
    return plan.layout.runs_dir


def submit_chain(project: Project, resolved: ResolvedPlan, *, force: bool = False,
                 hf_endpoint: str | None = None, hpcwizard_cmd: list[str] | None = None,
                 on_note: Callable[[str], None] | None = None) -> Submission:
    """Render ``project``'s plan ``resolved`` into a new run folder and submit its chain.

    The project's files and runner say where: this machine, or in remote
    mode the login node (the run folder, logs and state are written there,
    and ``hpcwizard_cmd`` is the login node's hpcwizard for the jobs to call).
    ``on_note``: gets one line per thing done to settle an interrupted
    earlier submit of the project (see :mod:`hpcwizard.jobs.journal`)."""
    plan, files = resolved.plan, project.files
    runner = project.submit_runner()
    # What is missing now is what this submit creates; a refused one removes it again.
    made = _missing_folders(plan, files)
    # One submit at a time per project: two racing submits would both pass
    # the "already submitted" check, and a recovery must not touch the
    # journal of a submit in flight.
    with files.lock(project.state_dir / SUBMIT_LOCK):
        try:
            return _submit_locked(resolved, project, SlurmClient(runner), made, force=force,
                                  hf_endpoint=hf_endpoint, hpcwizard_cmd=hpcwizard_cmd,
                                  note=on_note or (lambda line: None))
        except BaseException:
            # Refused, or interrupted and undone: with no journal left nothing
            # refers to what this submit made. (A chain that went in cleared
            # ``made``: its folders are its own.)
            with contextlib.suppress(Exception):  # never in the way of the error itself
                if made and not files.exists(project.layout.submit_journal):
                    _remove_made(plan, made, runner, files)
            raise


def _submit_locked(resolved: ResolvedPlan, project: Project, slurm: SlurmClient, made: list[Path], *,
                   force: bool, hf_endpoint: str | None, hpcwizard_cmd: list[str] | None,
                   note: Callable[[str], None]) -> Submission:
    plan, files = resolved.plan, project.files
    recovered = reconcile_locked(project, slurm)
    for line in recovered.lines:
        note(line)
    if recovered.unsettled is not None:
        # Whether this plan's chain is already queued cannot be told yet.
        raise SubmitUnsettled(f"{recovered.unsettled}; nothing was submitted",
                              "submit again once the controller answers (`sinfo`)")

    fingerprint = plan.fingerprint()
    earlier = project.load_state().submissions_of(fingerprint)
    if earlier and not force:
        ids = ", ".join(earlier[-1].job_ids)
        raise AlreadySubmitted(
            f"this plan was already submitted on {earlier[-1].submitted_at} (jobs {ids})",
            "watch it with `hpcwizard status`, or pass --force to submit it again")

    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    scripts_dir = runs_dir(plan) / stamp
    suffix = 1
    while files.exists(scripts_dir):
        suffix += 1
        scripts_dir = runs_dir(plan) / f"{stamp}-{suffix}"
    made.append(scripts_dir)
    rendering = render(project, resolved, scripts_dir, hf_endpoint=hf_endpoint, hpcwizard_cmd=hpcwizard_cmd)
    # The logs folder only once the chain is going in (below): a refused
    # submit leaves none behind.
    rendering.write(scripts_dir, files, logs=False)

    # A held job skips Slurm's node-feasibility check (a held job asking
    # for 3 GPUs of a 2-GPU node is accepted and would pend forever once
    # released), so every job is first validated with --test-only.
    for job in rendering.jobs:
        try:
            slurm.test_only(str(scripts_dir / job.script), workdir=str(plan.project_home))
        except UserError as exc:
            raise ChainRefused(
                f"Slurm refused job {job.name} ({job.script}): {exc.message}; nothing was submitted",
                exc.hint or "fix the plan and submit again") from None

    # The intent, durable before the first sbatch: whatever happens from
    # here on, the next start finds this chain's jobs (by id, or by comment).
    journal = Journal(
        chain=new_chain_id(),
        plan_fingerprint=fingerprint,
        started_at=now_iso(),
        scripts_dir=str(scripts_dir),
        phase=Phase.SUBMITTING,
        jobs=tuple(SubmittedJob(name=job.name, slurm_name=job.slurm_name, job_id="",
                                partition=job.resources.partition, script=str(scripts_dir / job.script),
                                time_limit=job.resources.time_seconds())
                   for job in rendering.jobs),
        created=tuple(str(p) for p in made),
    )
    write_journal(project, journal)
    # Slurm opens logs/%x-%j.out relative to the job's working directory
    # before the script runs: the folder must exist at submission.
    files.mkdir_p(plan.logs_dir)

    try:
        for index, job in enumerate(rendering.jobs):
            previous = journal.jobs[index - 1].job_id if index else None
            try:
                job_id = slurm.submit(
                    str(scripts_dir / job.script),
                    dependency=[previous] if previous else None,
                    hold=True,
                    # As an argv element the path needs no quoting, so a
                    # project home with spaces or quotes is safe here.
                    workdir=str(plan.project_home),
                    # Not in the template: the chain id is this submit's.
                    extra_args=[f"--comment={journal.comment}"],
                )
            except UserError as exc:
                refused = isinstance(exc, SlurmRefused)
                what = "Slurm refused" if refused else "could not submit"
                undone = _undo(project, journal, slurm, search=_may_have_reached_slurm(exc), held=True)
                raise ChainRefused(f"{what} job {job.name} ({job.script}): {exc.message}{undone}",
                                   exc.hint or "fix the plan and submit again") from None
            journal = journal.with_job_id(index, job_id)
            write_journal(project, journal)

        journal = journal.with_phase(Phase.RELEASING)
        write_journal(project, journal)
        try:
            slurm.release(journal.job_ids)
        except UserError as exc:
            # The release may have reached Slurm (a timeout): the jobs may no
            # longer be held, and the next start cancels them whatever their state.
            undone = _undo(project, journal.with_phase(Phase.CANCELLING), slurm, search=False, held=False,
                           cancelled_phrase="cancelled jobs")
            raise ChainRefused(f"could not release the held chain ({exc.message}){undone}",
                               "check the controller with `sinfo` and submit again") from None
    except ChainRefused:
        raise
    except UserError as exc:
        # The journal could not be written (a full disk): undo now. (The
        # journal on disk still leads the next start to the chain's jobs.)
        undone = _undo(project, journal.with_phase(Phase.CANCELLING), slurm, search=True, held=False)
        raise ChainRefused(f"{exc.message}{undone}", exc.hint) from None
    except BaseException:
        # Interrupted (Ctrl-C) or a bug: undo what can be undone now; what
        # cannot stays in the journal for the next start.
        try:
            note("the submit was interrupted"
                 + _undo(project, journal.with_phase(Phase.CANCELLING), slurm, search=True, held=False))
        except BaseException:  # noqa: BLE001 - the journal remains; the next start settles it
            pass
        raise

    # The chain is queued: what this submit made belongs to it now.
    made.clear()
    submission = journal.submission()
    project.update_state(lambda state: state.submissions.append(submission))
    remove_journal(project)
    return submission


def _undo(project: Project, journal: Journal, slurm: SlurmClient, *, search: bool,
          held: bool, cancelled_phrase: str = "cancelled the accepted jobs") -> str:
    """Cancel the chain's accepted jobs; the clause saying what was done.

    The journal goes once everything is known cancelled (with the run folder);
    otherwise it stays, in phase ``cancelling``, for the next start, and the
    clause says so truthfully."""
    unsure = False
    strays: list[str] = []
    if search:
        try:
            found = find_chain_jobs(slurm, journal.chain)
        except UserError:
            unsure = True  # whether Slurm accepted the last job is unknown
        else:
            journal = journal.merged(found)
            strays = [job.job_id for job in found if job.live and job.job_id not in journal.job_ids]
    ids = journal.job_ids + strays
    failed = cancel_jobs(slurm, ids)
    if failed is not None or unsure:
        try:
            write_journal(project, journal.with_phase(Phase.CANCELLING))
        except UserError:
            pass  # the journal written before still leads the next start to the chain (by its comment)
        if failed is not None:
            return "; " + could_not_cancel(ids, failed, held=held)
        done = f"; {cancelled_phrase} {', '.join(ids)}" if ids else ""
        return (f"{done}; Slurm did not say whether it took the last job: "
                "hpcwizard looks for it (and cancels it) on its next start")
    remove_run_folder(journal, slurm.runner, project.files)
    remove_journal(project)
    return f"; {cancelled_phrase} {', '.join(ids)}" if ids else "; nothing was submitted"


def _missing_folders(plan: Plan, files: ProjectFiles) -> list[Path]:
    """The folders a submit may create that do not exist yet, outermost
    first (with the missing parents of the project home)."""
    missing = [p for p in (plan.state_dir, runs_dir(plan), plan.logs_dir) if not files.exists(p)]
    home = plan.project_home
    while plan.state_dir in missing and home != home.parent and not files.exists(home):
        missing.insert(0, home)
        home = home.parent
    return missing


def _may_have_reached_slurm(error: UserError) -> bool:
    """Whether a failed sbatch may still have created its job: a refusal or a
    controller never connected to did not; a timeout or an answer that was
    lost on the way back may have (Slurm accepted it, the reply never came)."""
    return not isinstance(error, SlurmRefused) and "(connect failure)" not in error.message


def _remove_made(plan: Plan, made: list[Path], runner: Runner, files: ProjectFiles) -> None:
    """A refused submit removes what it created (with no journal left,
    nothing refers to it): the run folder's files, then each folder it made
    that is empty, the project home last. Best effort."""
    if made and made[-1].parent == runs_dir(plan):
        remove_files_in(made[-1], files)
    if plan.state_dir in made:
        # The lock file goes with the folder this submit made. (A second
        # submit of a project home that did not exist, waiting on this very
        # file, would go on with a lock on a removed file: two first submits
        # of one new project racing is not worth a lock outside it.)
        try:
            files.remove(plan.state_dir / SUBMIT_LOCK, missing_ok=True)
        except (OSError, UserError):
            pass
    remove_empty_folders(sorted(made, key=lambda p: len(p.parts), reverse=True), runner)


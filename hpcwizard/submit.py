"""Submit a plan's chain to Slurm, all or nothing, exactly once.

Every job is first checked with ``sbatch --test-only``, then submitted held,
each depending (``afterok``) on the one before. Only when Slurm accepted all
of them are they released; if any is refused, the ones already accepted are
cancelled, so a half chain never runs. The
submission is recorded in the project state, and a second submit of the same
plan is refused unless forced, so reopening hpcwizard never submits twice.
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from pathlib import Path

from hpcwizard.errors import UserError
from hpcwizard.files import ProjectFiles, local_or
from hpcwizard.plan import Plan
from hpcwizard.recipe import Recipe
from hpcwizard.render import render
from hpcwizard.shell import Runner
from hpcwizard.slurm import SlurmClient
from hpcwizard.state import Submission, SubmittedJob, file_lock, load_state, now_iso, update_state


class AlreadySubmitted(UserError):
    """This plan was submitted before; submitting again needs --force."""


class ChainRefused(UserError):
    """Slurm refused a job of the chain; nothing of it stays queued."""


def runs_dir(plan: Plan) -> Path:
    return plan.state_dir / "runs"


def submit_chain(plan: Plan, recipe: Recipe, runner: Runner, *, force: bool = False,
                 hf_endpoint: str | None = None, files: ProjectFiles | None = None,
                 hpcwizard_cmd: list[str] | None = None) -> Submission:
    """Render the plan into a new run folder and submit its chain.

    ``files``/``runner``: this machine by default; in remote mode the login
    node's (the run folder, logs and state are written there, and
    ``hpcwizard_cmd`` is the login node's hpcwizard for the jobs to call)."""
    fingerprint = plan.fingerprint()
    files = local_or(files)
    # One submit at a time per project: two racing submits would both pass
    # the "already submitted" check below.
    lock = (file_lock(plan.state_dir / ".submit.lock", blocking=True) if not files.remote
            else files.lock(plan.state_dir / ".submit.lock"))
    with lock:
        earlier = load_state(plan.state_dir, files).submissions_of(fingerprint)
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
        rendering = render(plan, recipe, scripts_dir, hf_endpoint=hf_endpoint, hpcwizard_cmd=hpcwizard_cmd)
        rendering.write(scripts_dir, files)
        # Slurm opens logs/%x-%j.out relative to the job's working directory
        # before the script runs: the folder must exist at submission.
        files.mkdir_p(plan.logs_dir)

        slurm = SlurmClient(runner)
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

        accepted: list[SubmittedJob] = []
        previous: str | None = None
        for job in rendering.jobs:
            try:
                job_id = slurm.submit(
                    str(scripts_dir / job.script),
                    dependency=[previous] if previous else None,
                    hold=True,
                    # As an argv element the path needs no quoting, so a
                    # project home with spaces or quotes is safe here.
                    workdir=str(plan.project_home),
                )
            except UserError as exc:
                cancelled = _cancel_quietly(slurm, [j.job_id for j in accepted])
                note = f"; cancelled the accepted jobs {', '.join(cancelled)}" if cancelled else ""
                raise ChainRefused(
                    f"Slurm refused job {job.name} ({job.script}): {exc.message}{note}",
                    exc.hint or "fix the plan and submit again") from None
            accepted.append(SubmittedJob(
                name=job.name,
                slurm_name=job.slurm_name,
                job_id=job_id,
                partition=job.resources.partition,
                script=str(scripts_dir / job.script),
                dependency=(f"afterok:{previous}",) if previous else (),
            ))
            previous = job_id

        ids = [j.job_id for j in accepted]
        try:
            slurm.release(ids)
        except UserError as exc:
            _cancel_quietly(slurm, ids)
            raise ChainRefused(f"could not release the held chain ({exc.message}); cancelled jobs {', '.join(ids)}",
                               "check the controller with `sinfo` and submit again") from None

        submission = Submission(
            plan_fingerprint=fingerprint,
            submitted_at=now_iso(),
            scripts_dir=str(scripts_dir),
            jobs=tuple(accepted),
        )
        update_state(plan.state_dir, lambda state: state.submissions.append(submission), files)
        return submission


def _cancel_quietly(slurm: SlurmClient, job_ids: list[str]) -> list[str]:
    if not job_ids:
        return []
    with contextlib.suppress(UserError):
        slurm.cancel(job_ids)
    return job_ids

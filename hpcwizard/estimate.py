"""What a plan's parameters cost, where it can be known: disk and training time.

Disk is known from the recipe alone: checkpoints kept (bounded by the plan's
checkpoint limits) times their size, plus the final weights
(:meth:`Recipe.output_bytes_for`).

Time is only known from experience: the training rate (iterations per second)
a train job of this project printed in its log. :func:`measured_rate` looks
for the newest train job of the project's submissions whose ``.out`` log
reports a rate; :func:`estimate` divides the steps the plan asks for (per
stage when the recipe has ``stageN_max_train_steps`` parameters) by it and
compares the sum with the plan's train time limit.

The rate was measured with that run's settings (resolution, frames, batch,
GPUs): a changed setting changes the real rate, which is why the wizard shows
where the rate came from. No Textual here; reading a log is disk work, so the
wizard calls :func:`measured_rate` from a worker.

In remote mode (``files`` an :class:`~hpcwizard.files.SshFiles`) the state and
the logs are the login node's: the state is read over SFTP and a log's tail
with SFTP range reads (only the last lines travel).
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpcwizard.errors import UserError
from hpcwizard.files import ProjectFiles, local_or
from hpcwizard.logtail import LogFollower
from hpcwizard.plan import Plan
from hpcwizard.recipe import Recipe
from hpcwizard.state import load_state
from hpcwizard.triage import parse_progress

TAIL_LINES = 400  # the last few hundred lines of a log: enough samples, bounded work
RATE_SAMPLES = 50  # the median of the newest samples: a slow first step or a pause does not skew it
STEPS_PARAM = "max_train_steps"
_STAGE_STEPS = re.compile(r"^stage(\d+)_max_train_steps$")
_ONE_STAGE = re.compile(r"^stage(\d+)$")


@dataclass(frozen=True)
class MeasuredRate:
    """A training rate read from a train job's log."""

    rate_its: float  # iterations (optimisation steps) per second
    job_id: str
    job_name: str
    log: Path


@dataclass(frozen=True)
class StageTime:
    """One stage of training: its steps, and how long they take at the rate (None: no rate)."""

    name: str  # "stage 1", or "training" for a recipe without stages
    steps: int
    seconds: float | None


@dataclass(frozen=True)
class Estimate:
    disk_bytes: int  # checkpoints kept + final weights
    seconds: float | None  # all stages at the measured rate; None without a rate
    fits_time_limit: bool | None  # None without a rate
    time_limit_seconds: int  # the plan's train time limit
    stages: tuple[StageTime, ...] = ()
    rate_its: float | None = None
    checkpoints_kept: int = 0  # the sum of the plan's checkpoint limits


def training_rate_from_log(path: Path | str, lines: int = TAIL_LINES,
                           files: ProjectFiles | None = None) -> float | None:
    """Iterations per second a training log reports in its last ``lines`` lines (None: none).

    The median of the newest samples with a rate (tqdm's ``2.00it/s`` or
    ``1.50s/it``, ``Step N/M ... it/s`` lines); reads only the tail of the file
    (on the machine of ``files``).
    """
    try:
        follower = LogFollower(local_or(files).open_source(str(path)))
        try:
            tail = follower.open_tail(lines)
        finally:
            follower.close()
    except OSError:
        return None
    rates = []
    for line in tail:
        sample = parse_progress(line)
        if sample is not None and sample.rate_its is not None and sample.rate_its > 0:
            rates.append(sample.rate_its)
    if not rates:
        return None
    return float(statistics.median(rates[-RATE_SAMPLES:]))


def train_job_names(recipe: Recipe) -> set[str]:
    """The recipe's jobs that train (take the plan's ``train`` resources)."""
    return {job.name for job in recipe.jobs if job.resources == "train"}


def measured_rate(project_home: Path, recipe: Recipe, lines: int = TAIL_LINES,
                  files: ProjectFiles | None = None) -> MeasuredRate | None:
    """The newest train job of this project whose ``.out`` log reports a rate (None: no such run).

    Logs are ``<project_home>/logs/<slurm_name>-<job_id>.out``, as the
    templates write them. A damaged state file counts as no run. ``files``:
    where the project home is (the login node in remote mode).
    """
    home = Path(project_home)
    try:
        state = load_state(home / "hpcwizard", files)
    except UserError:
        return None
    names = train_job_names(recipe)
    for submission in reversed(state.submissions):
        for job in reversed(submission.jobs):
            if job.name not in names:
                continue
            log = home / "logs" / f"{job.slurm_name}-{job.job_id}.out"
            rate = training_rate_from_log(log, lines, files)
            if rate is not None:
                return MeasuredRate(rate, job.job_id, job.name, log)
    return None


def stage_steps(recipe: Recipe, params: dict[str, Any]) -> list[tuple[str, int]]:
    """``(stage name, steps)`` the resolved ``params`` ask for, in order.

    ``stageN_max_train_steps`` parameters make one entry per stage; a
    ``stages`` choice of ``stageN`` keeps only that stage (``both``/``all``
    keep every one). Otherwise ``max_train_steps`` makes one entry. No step
    parameter: no entries (the time cannot be estimated).
    """
    staged = []
    for param in recipe.parameters:
        match = _STAGE_STEPS.match(param.name)
        if match:
            staged.append((int(match.group(1)), int(params[param.name])))
    if staged:
        only = _ONE_STAGE.match(str(params.get("stages", "")))
        if only:
            staged = [(n, steps) for n, steps in staged if n == int(only.group(1))]
        return [(f"stage {n}", steps) for n, steps in sorted(staged)]
    if STEPS_PARAM in params:
        if recipe.training_stages > 1:  # the same steps, once per stage
            return [(f"stage {n}", int(params[STEPS_PARAM])) for n in range(1, recipe.training_stages + 1)]
        return [("training", int(params[STEPS_PARAM]))]
    return []


def estimate(plan: Plan, recipe: Recipe, rate: float | None) -> Estimate:
    """Disk and time for ``plan`` (its ``params`` validated: PlanError names a bad one).

    ``rate`` is iterations per second from an earlier run, or None.
    """
    params = recipe.resolve_params(plan.params)
    disk = recipe.output_bytes_for(plan)
    limit = plan.train.time_seconds()
    kept = recipe.checkpoints_kept(params)
    usable = rate if rate is not None and rate > 0 else None
    stages = tuple(StageTime(name, steps, steps / usable if usable else None)
                   for name, steps in stage_steps(recipe, params))
    if usable is None or not stages:
        return Estimate(disk, None, None, limit, stages, usable, kept)
    seconds = sum(s.seconds or 0.0 for s in stages)
    return Estimate(disk, seconds, seconds <= limit, limit, stages, usable, kept)


def format_duration(seconds: float) -> str:
    """``3725`` → ``1h 02m``; ``95`` → ``1m 35s``; ``2.4`` → ``3s`` (rounded up); days beyond 48 h."""
    total = max(0, int(-(-seconds // 1)))  # ceil: never promise less than it takes
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if total >= 2 * 86400:
        return f"{days}d {hours:02d}h"
    hours += days * 24
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"

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

Stages train at their own speed (DiffuEraser's stage 2 sees 22 frames where
stage 1 sees 10), and one train job runs them one after the other. The
templates log a ``stage N`` line as each stage starts, so a rate sample in
the tail belongs to the stage whose line came before it (samples above the
first such line to the stage before it). A stage without a sample of its own
takes the overall rate, and the wizard says which.

The rate was measured with that run's settings (resolution, frames, batch,
GPUs), read from its run folder's ``plan.yaml``. What is known scales it: the
time is linear in the steps, and proportional to a parameter the recipe
declares ``step_time: proportional`` (the demo's ``seconds_per_step``,
DiffuEraser's ``stageN_nframes``: recipe.yaml data, not code). Any other
setting that differs from the measured run is named (:attr:`Estimate.differences`):
the estimate is then only an estimate, and the wizard never marks it ✔.
No Textual here; reading a log is disk work, so the
wizard calls :func:`measured_rate` from a worker.

In remote mode (the project's ``files`` an :class:`~hpcwizard.project.files.SshFiles`)
the state and the logs are the login node's: the state is read over SFTP and a
log's tail with SFTP range reads (only the last lines travel).
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from hpcwizard.errors import UserError
from hpcwizard.jobs.logtail import LogFollower
from hpcwizard.jobs.triage import parse_progress
from hpcwizard.project.files import ProjectFiles
from hpcwizard.project.plan import Plan
from hpcwizard.project.recipe import Recipe
from hpcwizard.project.resolved import ResolvedPlan

if TYPE_CHECKING:
    from hpcwizard.project.home import Project

TAIL_LINES = 400  # the last few hundred lines of a log: enough samples, bounded work
RATE_SAMPLES = 50  # the median of the newest samples: a slow first step or a pause does not skew it
STEPS_PARAM = "max_train_steps"
_STAGE_STEPS = re.compile(r"^stage(\d+)_max_train_steps$")
_ONE_STAGE = re.compile(r"^stage(\d+)$")
_STAGE_NAME = re.compile(r"^stage (\d+)$")
#: The templates' ``log "stage N: ..."`` as a stage starts (not "stage N already trained").
_STAGE_START = re.compile(r"^\[[^\]]*\] stage (\d+)(?::|$)")


@dataclass(frozen=True)
class MeasuredSettings:
    """What the measured run trained with (its run folder's ``plan.yaml``)."""

    params: dict[str, Any]  # resolved: every parameter, defaults filled in
    gpus: int
    nodes: int


@dataclass(frozen=True)
class MeasuredRate:
    """A training rate read from a train job's log."""

    rate_its: float  # iterations (optimisation steps) per second, all samples
    job_id: str
    job_name: str
    log: Path
    stage_rates: dict[int, float] = field(default_factory=dict)  # stage number -> its own rate
    settings: MeasuredSettings | None = None  # None: the run's plan could not be read


@dataclass(frozen=True)
class Scaled:
    """A ``step_time: proportional`` parameter that differs from the measured run: the rate scales by it."""

    name: str
    measured: float
    planned: float


@dataclass(frozen=True)
class StageTime:
    """One stage of training: its steps, and how long they take at the rate (None: no rate)."""

    name: str  # "stage 1", or "training" for a recipe without stages
    steps: int
    seconds: float | None
    rate_its: float | None = None  # the rate used for it
    own_rate: bool = False  # measured in this stage (else the overall rate)


@dataclass(frozen=True)
class Estimate:
    disk_bytes: int  # checkpoints kept + final weights
    seconds: float | None  # all stages at the measured rate; None without a rate
    fits_time_limit: bool | None  # None without a rate
    time_limit_seconds: int  # the plan's train time limit
    stages: tuple[StageTime, ...] = ()
    rate_its: float | None = None
    checkpoints_kept: int = 0  # the sum of the plan's checkpoint limits
    scaled: tuple[Scaled, ...] = ()  # parameters the rate was scaled by
    #: The measured run's settings that differ from the plan, as it had them
    #: ("seconds_per_step 0.2", "1 GPU"); scaled ones included.
    differences: tuple[str, ...] = ()
    settings_known: bool = False  # the measured run's settings were read

    @property
    def exact(self) -> bool:
        """Built on the very settings measured (only the steps may differ): the one case for a ✔."""
        return self.seconds is not None and self.settings_known and not self.differences


@dataclass(frozen=True)
class LogRates:
    """The rates a training log's tail reports: overall, and per stage where it says which."""

    overall: float
    stages: dict[int, float]


def _median(rates: list[float]) -> float:
    return float(statistics.median(rates[-RATE_SAMPLES:]))


def rates_from_lines(lines: list[str]) -> LogRates | None:
    """Rates in ``lines`` (a log's tail), or None when no line reports one.

    The median of the newest samples with a rate (tqdm's ``2.00it/s`` or
    ``1.50s/it``, ``Step N/M ... it/s`` lines), overall and per stage."""
    everything: list[float] = []
    by_stage: dict[int | None, list[float]] = {}
    stage: int | None = None
    first_start: int | None = None
    before_first: list[float] = []  # samples above the first stage line of the tail
    for line in lines:
        start = _STAGE_START.match(line)
        if start:
            stage = int(start.group(1))
            first_start = stage if first_start is None else first_start
            continue
        sample = parse_progress(line)
        if sample is None or sample.rate_its is None or sample.rate_its <= 0:
            continue
        everything.append(sample.rate_its)
        (before_first if stage is None else by_stage.setdefault(stage, [])).append(sample.rate_its)
    if not everything:
        return None
    if before_first and first_start is not None and first_start > 1:
        by_stage.setdefault(first_start - 1, []).extend(before_first)
    stages = {n: _median(rates) for n, rates in by_stage.items() if n is not None and rates}
    return LogRates(_median(everything), stages)


def training_rates_from_log(files: ProjectFiles, path: Path | str, lines: int = TAIL_LINES) -> LogRates | None:
    """The rates a training log reports in its last ``lines`` lines (None: none).

    Reads only the tail of the file (on the machine of ``files``)."""
    try:
        follower = LogFollower(files.open_source(str(path)))
        try:
            tail = follower.open_tail(lines)
        finally:
            follower.close()
    except OSError:
        return None
    return rates_from_lines(tail)


def training_rate_from_log(files: ProjectFiles, path: Path | str, lines: int = TAIL_LINES) -> float | None:
    """Iterations per second a training log reports in its last ``lines`` lines, all stages (None: none)."""
    rates = training_rates_from_log(files, path, lines)
    return rates.overall if rates is not None else None


def train_job_names(recipe: Recipe) -> set[str]:
    """The recipe's jobs that train (take the plan's ``train`` resources)."""
    return {job.name for job in recipe.jobs if job.resources == "train"}


def measured_rate(project: Project, recipe: Recipe, lines: int = TAIL_LINES) -> MeasuredRate | None:
    """The newest train job of ``project`` whose ``.out`` log reports a rate (None: no such run).

    Logs are the project layout's (``<home>/logs/<slurm_name>-<job_id>.out``,
    as the templates write them), read where the project's files are (the
    login node in remote mode). A damaged state file counts as no run.
    """
    try:
        state = project.load_state()
    except UserError:
        return None
    names = train_job_names(recipe)
    for submission in reversed(state.submissions):
        for job in reversed(submission.jobs):
            if job.name not in names:
                continue
            log = project.layout.log_path(job.slurm_name, job.job_id)
            rates = training_rates_from_log(project.files, log, lines)
            if rates is not None:
                settings = run_settings(project, Path(submission.scripts_dir), recipe)
                return MeasuredRate(rates.overall, job.job_id, job.name, log, rates.stages, settings)
    return None


def run_settings(project: Project, scripts_dir: Path, recipe: Recipe) -> MeasuredSettings | None:
    """The settings a run of ``project`` trained with, from the plan its run folder
    (``scripts_dir``, one of the project's) keeps (None: unreadable)."""
    try:
        data = yaml.safe_load(project.files.read_text(scripts_dir / "plan.yaml"))
        params = recipe.resolve_params(dict(data.get("params") or {}))
        train = data.get("train") or {}
        return MeasuredSettings(params, int(train.get("gpus", 0) or 0), int(train.get("nodes", 1) or 1))
    except (OSError, UserError, yaml.YAMLError, AttributeError, TypeError, ValueError):
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


def _counts_steps(name: str) -> bool:
    """A parameter that sets how many steps (the time is linear in them) or only which stages run."""
    return name == STEPS_PARAM or bool(_STAGE_STEPS.match(name)) or name == "stages"


_STAGE_OF_PARAM = re.compile(r"^stage(\d+)_")


def stage_number(name: str) -> int | None:
    """``stage 2`` → 2; ``training`` → None."""
    match = _STAGE_NAME.match(name)
    return int(match.group(1)) if match else None


def _applies(param: str, stage: int | None) -> bool:
    """A ``stageN_`` parameter concerns stage N only; any other one every stage."""
    match = _STAGE_OF_PARAM.match(param)
    return match is None or stage is None or int(match.group(1)) == stage


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def differences(recipe: Recipe, params: dict[str, Any], plan: Plan, measured: MeasuredSettings) -> list[str]:
    """The measured run's settings that differ from ``params`` and the plan's train resources,
    as the run had them: ``seconds_per_step 0.2``, ``1 GPU``. Step counts do not count
    (the estimate is linear in them), nor the checkpoint limits (what is kept, not how fast)."""
    ignored = set(recipe.checkpoint_limit_params)
    found = [f"{p.name} {_number(measured.params.get(p.name, p.default))}" for p in recipe.parameters
             if not _counts_steps(p.name) and p.name not in ignored
             and measured.params.get(p.name, p.default) != params.get(p.name, p.default)]
    if measured.gpus != plan.train.gpus:
        found.append(f"{measured.gpus} GPU{'s' if measured.gpus != 1 else ''}")
    if measured.nodes != plan.train.nodes:
        found.append(f"{measured.nodes} node{'s' if measured.nodes != 1 else ''}")
    return found


def _scaling(recipe: Recipe, params: dict[str, Any], measured: MeasuredSettings | None,
             stage: int | None) -> tuple[float, list[Scaled]]:
    """How much longer one step of ``stage`` takes than in the measured run, by the
    ``step_time: proportional`` parameters that differ (1.0: none, or not measurable)."""
    factor = 1.0
    used: list[Scaled] = []
    if measured is None:
        return factor, used
    for param in recipe.parameters:
        if param.step_time != "proportional" or not _applies(param.name, stage):
            continue
        planned = float(params.get(param.name, param.default))
        was = float(measured.params.get(param.name, param.default))
        if planned == was or was <= 0 or planned <= 0:  # to or from zero nothing scales: still named
            continue
        factor *= planned / was
        used.append(Scaled(param.name, was, planned))
    return factor, used


def estimate(resolved: ResolvedPlan, rate: float | None,
             stage_rates: dict[int, float] | None = None, *,
             measured_with: MeasuredSettings | None = None) -> Estimate:
    """Disk and time for the resolved plan (:func:`~hpcwizard.project.resolved.resolve`
    validated its ``params``: PlanError named a bad one).

    ``rate`` is iterations per second from an earlier run, or None;
    ``stage_rates`` the rates it measured per stage number (a stage without
    one takes ``rate``); ``measured_with`` the settings of that run: the rate
    is scaled by the ``step_time: proportional`` parameters that differ, and
    every differing setting is named (without it, the settings are unknown).
    """
    plan, recipe = resolved.plan, resolved.recipe
    params = dict(resolved.params)
    disk = resolved.output_bytes()
    limit = plan.train.time_seconds()
    kept = recipe.checkpoints_kept(params)
    usable = rate if rate is not None and rate > 0 else None
    own = {n: r for n, r in (stage_rates or {}).items() if r > 0} if usable else {}
    stages = []
    scaled: dict[str, Scaled] = {}
    for name, steps in stage_steps(recipe, params):
        number = stage_number(name)
        stage_rate = own.get(number) if number is not None else None
        used = stage_rate or usable
        if used:
            factor, by = _scaling(recipe, params, measured_with, number)
            used = used / factor
            scaled.update({s.name: s for s in by})
        stages.append(StageTime(name, steps, steps / used if used else None, used, stage_rate is not None))
    diffs = tuple(differences(recipe, params, plan, measured_with)) if measured_with is not None else ()
    known = measured_with is not None
    if usable is None or not stages:
        return Estimate(disk, None, None, limit, tuple(stages), usable, kept, (), diffs, known)
    seconds = sum(s.seconds or 0.0 for s in stages)
    return Estimate(disk, seconds, seconds <= limit, limit, tuple(stages), usable, kept,
                    tuple(scaled.values()), diffs, known)


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

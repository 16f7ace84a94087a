"""Train jobs that continue across their time limit (README "Long trainings").

A train job asks Slurm for a warning signal before its limit
(``#SBATCH --signal=B:USR1@<lead>``). The batch script
(``sbatch_templates/_shared/continuation.j2``) runs each training command in
the background in its own process group, and on the signal stops it cleanly:

- a trainer that saves on the signal (the demo's) gets the recipe's stop
  signal at once, finishes its step, saves a checkpoint and exits;
- a trainer that does not (the upstream FFF-VDI and DiffuEraser scripts,
  which checkpoint every N steps and have no signal handler) is left running
  until its next checkpoint is complete, at most ``checkpoint_wait`` seconds,
  then gets SIGTERM (``accelerate launch`` passes it on to its workers). Work
  since the last checkpoint is lost only when the next one does not come in
  time: at most one checkpoint interval. That is why the lead is derived from
  the checkpoint interval (steps x the measured step time) where it is known.

Then the script requeues the job (``scontrol requeue``: the job id stays, so
``afterok`` dependents keep waiting until the final segment COMPLETES), or,
on a site that does not requeue, submits the same script as a follow-on job
and re-links the dependents to it. The next segment resumes from the latest
checkpoint; stages already trained and converted are skipped by the recipes'
markers.

Bounds: ``train.segments`` (``auto``: the estimated need plus 50 %, or
:data:`DEFAULT_SEGMENTS` without an estimate); a segment that saved no new
checkpoint stops the continuation with one line and a non-zero exit.

The separator lines below are a CONTRACT: the dashboard parses them
(:func:`hpcwizard.jobs.triage.parse_segment_line`, the one parser). Each segment appends them to the same log
(``--open-mode=append``). No Textual here.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpcwizard.errors import UserError

if TYPE_CHECKING:
    from hpcwizard.project.home import Project
    from hpcwizard.project.plan import JobResources, Plan
    from hpcwizard.project.recipe import ContinuationSettings, Recipe
    from hpcwizard.project.resolved import ResolvedPlan
    from hpcwizard.shell import Runner

#: The signal the batch script asks Slurm for (``--signal=B:USR1@lead``).
WARNING_SIGNAL = "USR1"
#: ``train.segments: auto`` without a time estimate.
DEFAULT_SEGMENTS = 10
#: ``auto``: the estimated need times this, rounded up.
AUTO_FACTOR = 1.5
#: Seconds after the trainer stopped for the requeue (or the follow-on sbatch) and the script's exit.
STOP_MARGIN = 15
#: Slurm checks time limits every 30 s and sends the signal when the time left
#: is at most lead + 30 s (its documentation says up to 60 s early): on
#: average a segment trains this much less than limit - lead.
SIGNAL_EARLY = 30
#: Without a known step time, a trainer that ignores the signal gets this long
#: (after the recipe's save time) to exit on SIGTERM before SIGKILL.
UNKNOWN_STEP_STOP_WAIT = 60
#: The check's answer whether the cluster requeues (``requeue.json`` beside the
#: train jobs' ``<job-name>.json`` in ``ProjectLayout.continuation_dir``).
SITE_FILE = "requeue.json"

# ---------------------------------------------------------------- the log contract

LINE_PREFIX = "[hpcwizard] "
#: ``[hpcwizard] segment 1 of ~4, starting`` (also a later segment with no checkpoint yet)
STARTING = LINE_PREFIX + "segment {segment} of ~{expected}, starting"
#: ``[hpcwizard] segment 2 of ~4, resumed from checkpoint-1400``
RESUMED = LINE_PREFIX + "segment {segment} of ~{expected}, resumed from {checkpoint}"
#: ``[hpcwizard] segment 2 stopped at the time limit; requeued to continue from checkpoint-2800``
#: (also with a follow-on job: the next segment continues the same log)
REQUEUED = LINE_PREFIX + "segment {segment} stopped at the time limit; requeued to continue from {checkpoint}"
#: ``[hpcwizard] segment 3 saved no new checkpoint (still checkpoint-2800): not continuing``
#: (``still no checkpoint`` when there is none); the job then exits non-zero
NO_PROGRESS = LINE_PREFIX + "segment {segment} saved no new checkpoint (still {checkpoint}): not continuing"
#: ``[hpcwizard] segment 5 stopped at the time limit; train.segments allows 5: not continuing``
AT_BOUND = LINE_PREFIX + "segment {segment} stopped at the time limit; train.segments allows {maximum}: not continuing"
#: ``[hpcwizard] segment 3 finished the training`` (the script ran to its end)
FINISHED = LINE_PREFIX + "segment {segment} finished the training"

# ---------------------------------------------------------------- what a train job does


@dataclass(frozen=True)
class Continuation:
    """How one plan's train job continues: the numbers its script is rendered with."""

    #: False: one segment (``train.segments: 1``), the job ends at its limit
    enabled: bool
    #: requeue the job (True) or submit a follow-on job (the site does not requeue)
    requeue: bool
    #: seconds of warning before the limit (``--signal=B:USR1@lead``)
    lead: int
    #: a trainer that does not save on the signal runs this long at most for its next checkpoint
    checkpoint_wait: int
    #: seconds the trainer gets to exit after the stop signal, then SIGKILL
    stop_wait: int
    max_segments: int
    #: the estimated need (None: no estimate); the ``~N`` of the separator lines
    expected_segments: int | None
    settings: ContinuationSettings
    checkpoint_dirs: tuple[Path, ...]
    limit_seconds: int
    #: the whole training at the known step time (None: unknown)
    training_seconds: float | None = None
    step_seconds: float | None = None
    #: the checkpoint interval in seconds (None: unknown)
    interval_seconds: float | None = None
    #: where the step time came from: "parameter", "measured" or None
    step_source: str | None = None
    auto: bool = True
    #: why the check should warn (empty: nothing)
    concerns: tuple[str, ...] = field(default_factory=tuple)

    @property
    def shown_expected(self) -> int:
        """The ``~N`` a segment line shows: the estimate, else the bound."""
        return self.expected_segments if self.expected_segments is not None else self.max_segments


def _stop_wait(settings: ContinuationSettings, step: float | None) -> int:
    if step is None:
        return settings.save_seconds + UNKNOWN_STEP_STOP_WAIT
    # the step under way, the save, and as much again for a slow filesystem
    return max(10, math.ceil(settings.save_seconds + 2 * step))


def step_seconds_of(recipe: Recipe, params: Mapping[str, Any]) -> float | None:
    """The step time a parameter sets (the recipe's ``continuation.step_seconds``), or None."""
    from hpcwizard.project.recipe import fill_placeholders

    template = recipe.continuation.step_seconds
    if template is None:
        return None
    try:
        value = float(fill_placeholders(template, {k: str(v) for k, v in params.items()}))
    except (ValueError, UserError):
        return None
    return value if value >= 0 else None


def interval_steps(recipe: Recipe, params: Mapping[str, Any]) -> int | None:
    """The checkpoint interval in steps: the largest of the recipe's ``checkpoint_steps`` parameters."""
    steps = [int(params[name]) for name in recipe.continuation.checkpoint_steps if params.get(name)]
    return max(steps) if steps else None


def plan_continuation(resolved: ResolvedPlan, *, rate: float | None = None,
                      stage_rates: dict[int, float] | None = None, requeue: bool = True) -> Continuation:
    """The continuation of the resolved plan's train job.

    ``rate``/``stage_rates``: iterations per second an earlier run logged
    (:func:`hpcwizard.jobs.estimate.measured_rate`); a recipe whose step time is a
    parameter (the demo) uses that instead. ``requeue``: the cluster requeues
    (the check's answer, :func:`site_requeues`)."""
    from hpcwizard.jobs.estimate import estimate

    plan, recipe, params = resolved.plan, resolved.recipe, resolved.params
    settings = recipe.continuation
    limit = plan.train.time_seconds()
    step = step_seconds_of(recipe, params)
    source: str | None = "parameter" if step is not None else None
    training: float | None = None
    if step is not None:
        if step > 0:
            training = estimate(resolved, 1.0 / step).seconds
        else:  # steps take no time at all
            training = 0.0
    elif rate is not None and rate > 0:
        found = estimate(resolved, rate, stage_rates)
        training = found.seconds
        slowest = min([rate, *[r for r in (stage_rates or {}).values() if r > 0]])
        step, source = 1.0 / slowest, "measured"
    steps = interval_steps(recipe, params)
    interval = steps * step if steps is not None and step is not None else None

    stop_wait = _stop_wait(settings, step)
    checkpoint_wait = 0
    if not settings.saves_on_signal and interval is not None:
        checkpoint_wait = math.ceil(interval + settings.save_seconds)
    lead = max(settings.min_lead, checkpoint_wait + stop_wait + STOP_MARGIN)
    # A lead past a quarter of the limit would leave little time to train
    # (unless the recipe's own minimum asks for more, up to half of it).
    cap = max(limit // 4, min(settings.min_lead, limit // 2), 1)
    concerns: list[str] = []
    if lead > cap:
        lead = cap
        if checkpoint_wait:
            checkpoint_wait = max(0, lead - stop_wait - STOP_MARGIN)
            concerns.append(f"a checkpoint every ~{_short(interval or 0)} does not fit the warning "
                            f"({_short(lead)} before the {_short(limit)} limit): each segment may lose up to "
                            "one checkpoint interval of training")
        stop_wait = min(stop_wait, max(5, lead - STOP_MARGIN))

    expected: int | None = None
    if training is not None:
        usable = max(limit - lead - SIGNAL_EARLY, limit / 4)
        expected = max(1, math.ceil(training / usable))
    auto = plan.train.segments is None
    if auto:
        maximum = math.ceil(expected * AUTO_FACTOR) if expected is not None else DEFAULT_SEGMENTS
    else:
        maximum = plan.train.segments or 1
        if expected is not None and expected > maximum:
            concerns.append(f"the training needs ~{expected} segments of {_short(limit)}; "
                            f"train.segments allows {maximum}")
    return Continuation(
        enabled=maximum > 1,
        requeue=requeue,
        lead=int(lead),
        checkpoint_wait=int(checkpoint_wait),
        stop_wait=int(stop_wait),
        max_segments=maximum,
        expected_segments=expected,
        settings=settings,
        checkpoint_dirs=resolved.checkpoint_dirs,
        limit_seconds=limit,
        training_seconds=training,
        step_seconds=step,
        interval_seconds=interval,
        step_source=source,
        auto=auto,
        concerns=tuple(concerns),
    )


def load_continuation(project: Project, resolved: ResolvedPlan) -> Continuation:
    """:func:`plan_continuation` with what ``project`` (the plan's) knows: the
    rate its last train log reports and the check's answer whether the cluster requeues."""
    from hpcwizard.jobs.estimate import measured_rate

    recipe = resolved.recipe
    measured = measured_rate(project, recipe) if recipe.continuation.step_seconds is None else None
    return plan_continuation(resolved, rate=measured.rate_its if measured else None,
                             stage_rates=measured.stage_rates if measured else None,
                             requeue=site_requeues(project))


def segments_text(cont: Continuation) -> str:
    """``~3 segments of 48h`` (or ``1 segment of 48h``), for the check, the params step and the review."""
    limit = _short(cont.limit_seconds)
    if cont.expected_segments is None:
        return f"up to {cont.max_segments} segments of {limit}"
    n = cont.expected_segments
    return f"~{n} segments of {limit}" if n > 1 else f"1 segment of {limit}"


def _short(seconds: float) -> str:
    """``172800`` → ``48h``, ``5400`` → ``1h 30m``, ``120`` → ``2m``, ``25`` → ``25s`` (rounded up, in hours at most)."""
    total = max(0, math.ceil(seconds))
    if total >= 3600:
        hours, minutes = divmod(math.ceil(total / 60), 60)
        return f"{hours}h {minutes:02d}m" if minutes else f"{hours}h"
    if total >= 60:
        minutes, secs = divmod(total, 60)
        return f"{minutes}m {secs:02d}s" if secs else f"{minutes}m"
    return f"{total}s"


def describe(cont: Continuation) -> str:
    """One line for the check's continuation row."""
    if not cont.enabled:
        what = ("one segment (train.segments: 1): the job ends at its time limit "
                f"{_short(cont.limit_seconds)}; continue it from its latest checkpoint by hand")
        if cont.training_seconds is not None:
            what = f"training ≈ {_short(cont.training_seconds)}; " + what
        return what
    how = "requeue" if cont.requeue else "follow-on jobs (this cluster does not requeue)"
    bound = f"at most {cont.max_segments} (train.segments: {'auto' if cont.auto else cont.max_segments})"
    warning = f"Slurm warns {_short(cont.lead)} before each limit"
    if cont.training_seconds is None:
        return (f"training time not known until a first run logs its rate: continues across the "
                f"{_short(cont.limit_seconds)} limit by {how}, {bound}; {warning}")
    needed = cont.expected_segments or 1
    if needed == 1:
        return (f"training ≈ {_short(cont.training_seconds)} fits 1 segment of {_short(cont.limit_seconds)}; "
                f"would continue by {how} ({bound}); {warning}")
    return (f"training ≈ {_short(cont.training_seconds)}: {segments_text(cont)}, continued by {how}; "
            f"{bound}; {warning}")


def cost_text(cont: Continuation, train: JobResources) -> str | None:
    """``≈ 96 GPU-hours (2 nodes × 4 GPUs × ≈ 12h)``: what the estimated
    training costs in the unit sites bill; None before a first run logs its rate."""
    if cont.training_seconds is None:
        return None
    hours = cont.training_seconds / 3600
    nodes = f"{train.nodes} nodes × " if train.nodes > 1 else ""
    if train.gpus:
        gpus = "1 GPU" if train.gpus == 1 else f"{train.gpus} GPUs"
        return f"{_about(train.total_gpus * hours)} GPU-hours ({nodes}{gpus} × ≈ {_short(cont.training_seconds)})"
    return f"{_about(train.nodes * hours)} node-hours ({nodes}no GPU × ≈ {_short(cont.training_seconds)})"


def _about(hours: float) -> str:
    """``≈ 160``, ``≈ 0.25``; ``< 0.01`` for the demo's seconds (not ``≈ 0.000667``)."""
    return "< 0.01" if hours < 0.01 else f"≈ {hours:.3g}"


# ---------------------------------------------------------------- the site: requeue or follow-on jobs


def site_file(project: Project) -> Path:
    return project.layout.continuation_dir / SITE_FILE


def site_requeues(project: Project) -> bool:
    """The check's last answer whether the cluster requeues (True when never checked)."""
    try:
        data = json.loads(project.files.read_text(site_file(project)))
    except (OSError, ValueError, UserError):
        return True
    return bool(data.get("requeue", True)) if isinstance(data, dict) else True


def save_site_answer(project: Project, requeue: bool, reason: str) -> None:
    from hpcwizard.project.state import now_iso

    text = json.dumps({"requeue": requeue, "reason": reason, "checked_at": now_iso()}, indent=2) + "\n"
    project.files.write_text_atomic(site_file(project), text)


@dataclass(frozen=True)
class RequeueAnswer:
    requeue: bool
    reason: str


def probe_requeue(plan: Plan, runner: Runner) -> RequeueAnswer:
    """Does the cluster let the train job requeue itself?

    ``scontrol show config``'s ``JobRequeue=0`` means the site does not requeue
    batch jobs by default: follow-on jobs then (they work everywhere). Else
    ``sbatch --test-only --requeue`` on the train partition (with the plan's
    account and QoS) must be accepted: a site's submit filter may refuse it."""
    config = runner.run(["scontrol", "show", "config"], timeout=30)
    if config.ok:
        match = re.search(r"^\s*JobRequeue\s*=\s*(\S+)", config.stdout, flags=re.M)
        if match and match.group(1) == "0":
            return RequeueAnswer(False, "JobRequeue=0 in the cluster's configuration")
    argv = ["sbatch", "--test-only", "--requeue", f"--partition={plan.train.partition}", "--time=1",
            "--ntasks=1", "--mem=64M", "--job-name=hpcwizard-requeue-test"]
    if plan.account:
        argv.append(f"--account={plan.account}")
    if plan.qos:
        argv.append(f"--qos={plan.qos}")
    argv.append("--wrap=true")
    test = runner.run(argv, timeout=60)
    if not test.ok:
        first = (test.stderr or test.stdout).strip().splitlines()
        return RequeueAnswer(False, f"sbatch --test-only --requeue was refused: {first[-1] if first else 'no reason given'}")
    return RequeueAnswer(True, "sbatch --test-only --requeue is accepted")


# ---------------------------------------------------------------- bookkeeping of a running chain


@dataclass(frozen=True)
class SegmentState:
    """A train job's ``<state_dir>/continuation/<job-name>.json``, written by its script.

    ``state``: running | continuing (stopped, the next segment follows) |
    stopped (continuation ended: no progress, or train.segments reached) |
    done (the script ran to its end)."""

    job_name: str
    job_id: str  # the segment's job (a follow-on job has a new id)
    first_job_id: str
    job_ids: tuple[str, ...]  # every job of the chain of segments, in order
    segment: int
    expected_segments: int | None
    max_segments: int
    restart_count: int
    checkpoint: str | None
    state: str
    updated: str
    script: str = ""  # the rendered script every segment runs


def read_segment_state(project: Project, job_name: str) -> SegmentState | None:
    """The bookkeeping of train job ``job_name`` (its Slurm name), or None:
    ``<job name>.json`` in the project's continuation folder, where train jobs
    keep their segment, last checkpoint..."""
    try:
        data = json.loads(project.files.read_text(project.layout.continuation_dir / f"{job_name}.json"))
        return SegmentState(
            job_name=str(data["job_name"]), job_id=str(data["job_id"]), first_job_id=str(data["first_job_id"]),
            job_ids=tuple(str(j) for j in data.get("job_ids") or ()), segment=int(data["segment"]),
            expected_segments=int(data["expected_segments"]) if data.get("expected_segments") else None,
            max_segments=int(data["max_segments"]), restart_count=int(data.get("restart_count") or 0),
            checkpoint=data.get("checkpoint") or None, state=str(data["state"]), updated=str(data.get("updated", "")),
            script=str(data.get("script") or ""))
    except (OSError, ValueError, KeyError, TypeError, UserError):
        return None

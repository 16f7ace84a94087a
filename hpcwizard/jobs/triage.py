"""Read a training log the way a person skims it: what went wrong, how far along.

:func:`classify_line` spots the lines that explain a dead job (a Python
traceback and its final exception, CUDA out of memory, NCCL failures, the
kernel's oom-killer, Slurm's time limit or cancellation, plain ``ERROR``
lines). :func:`parse_progress` reads training progress from the formats the
recipes' training loops print (tqdm bars, Hugging Face Trainer dict lines,
``Step N/M loss x`` lines). A :class:`Triage` accumulates both over a followed
log so the dashboard can show counts, "jump to first error", step N of M with
an ETA, and a loss sparkline in constant memory.

Pure functions and small classes; no Textual, no I/O.
"""

from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from enum import Enum, IntEnum
from typing import TYPE_CHECKING, NamedTuple

from hpcwizard.jobs.logtail import strip_ansi

if TYPE_CHECKING:
    from hpcwizard.jobs.logtail import LogUpdate


class Severity(IntEnum):
    LOW = 1  # worth a look (an ERROR line a run may survive)
    MEDIUM = 2  # the run stopped or may stall, not necessarily a bug
    HIGH = 3  # the run is dead or dying


class Kind(str, Enum):
    TRACEBACK = "traceback"  # "Traceback (most recent call last):"
    EXCEPTION = "exception"  # the final "SomeError: message" line of a traceback
    CUDA_OOM = "cuda_oom"
    NCCL = "nccl"
    RENDEZVOUS = "rendezvous"  # a rank never joined the others (launcher, store or process-group timeout)
    OOM_KILL = "oom_kill"  # host memory: the kernel or Slurm's cgroup killed us
    TIME_LIMIT = "time_limit"
    CANCELLED = "cancelled"
    ERROR = "error"


DEFAULT_SEVERITY = {
    Kind.TRACEBACK: Severity.HIGH,
    Kind.EXCEPTION: Severity.HIGH,
    Kind.CUDA_OOM: Severity.HIGH,
    Kind.NCCL: Severity.HIGH,
    Kind.RENDEZVOUS: Severity.HIGH,
    Kind.OOM_KILL: Severity.HIGH,
    Kind.TIME_LIMIT: Severity.HIGH,
    Kind.CANCELLED: Severity.MEDIUM,
    Kind.ERROR: Severity.LOW,
}

# Launchers prefix each line with where it came from: torchrun's "[rank3]: "
# and srun --label's "3: ". Strip them so a traceback from rank 3 reads like
# any other (its indentation matters below).
_ORIGIN_PREFIX = re.compile(r"^(?:\[(?:rank|default)\d+\]:[ ]?|\d+: )")

# Most lines are none of these: one search rejects them before the ordered
# checks run.
_ANY_SIGNAL = re.compile(
    r"Traceback|out of memory|OutOfMemory|NCCL|nccl|Watchdog|Killed|oom[-_]kill|Out Of Memory"
    r"|OUT_OF_MEMORY|TIME LIMIT|CANCELLED|Error|ERROR|imed out|never joined|could not join"
)
#: The lines worth asking :func:`classify_line` about (a cheap first search).
CANDIDATE = _ANY_SIGNAL
# A rank that never joined the others: the demo trainer's rendezvous lines
# ("rendezvous timed out after 30 s: rank 1 of 2 never joined main at H:P",
# "rank 1 of 2 could not join main at H:P within 30 s (...)"), torchrun's and
# accelerate's (torch.distributed.elastic), c10d's TCPStore and the store
# barrier of init_process_group.
_RENDEZVOUS = re.compile(
    r"never joined main at|could not join main at|rendezvous timed out|RendezvousTimeoutError"
    r"|Timed out initializing process group|DistNetworkError|The client socket has timed out"
    r"|Timed out after \d+ seconds waiting for clients"
)
# Ordered: the first rule that matches names the line (a Slurm time-limit
# line also says CANCELLED; a CUDA OOM line is also an exception line).
_RULES: tuple[tuple[Kind, re.Pattern[str]], ...] = (
    (Kind.CUDA_OOM, re.compile(r"CUDA out of memory|torch\.cuda\.OutOfMemoryError|OutOfMemoryError: CUDA")),
    (
        Kind.NCCL,
        re.compile(r"NCCL error|nccl\w*Error|NCCL WARN|Watchdog caught collective operation timeout"),
    ),
    (Kind.RENDEZVOUS, _RENDEZVOUS),
    (Kind.TIME_LIMIT, re.compile(r"DUE TO TIME LIMIT")),
    (
        Kind.OOM_KILL,
        re.compile(r"oom[-_]kill|Out Of Memory|OUT_OF_MEMORY|(?:^|\s)Killed(?:\s|$)"),
    ),
    # Slurm's note when a job is requeued ("... CANCELLED AT ... DUE TO JOB
    # REQUEUE ***") is how a continuing training pauses, not a cancellation.
    (Kind.CANCELLED, re.compile(r"CANCELLED AT(?!.*DUE TO JOB REQUEUE)")),
    (Kind.TRACEBACK, re.compile(r"^\s*Traceback \(most recent call last\):")),
    (Kind.ERROR, re.compile(r"\b(?:Error|ERROR)\b")),
)
# A warning from NCCL is worth seeing but healthy runs print some too.
_NCCL_WARN = re.compile(r"NCCL WARN")
# The line that ends a traceback: "pkg.mod.SomeError: message" or a bare name.
_EXCEPTION_LINE = re.compile(r"^(?P<name>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)(?::(?P<message>.*))?$")
_CHAINED = re.compile(r"^(?:During handling of the above exception|The above exception was the direct cause)")


def _looks_like_exception(match: re.Match[str]) -> bool:
    """"KeyError: 'x'" or a bare "KeyboardInterrupt"; not "main()" or "frame"."""
    name = match["name"]
    if name == "Traceback":
        return False
    # A bare word must at least look like a class name.
    return match["message"] is not None or name.rsplit(".", 1)[-1][:1].isupper()


def _clean(line: str) -> str:
    return _ORIGIN_PREFIX.sub("", strip_ansi(line).rstrip("\n"))


def classify_line(line: str) -> Kind | None:
    """The kind of trouble one line reports, or None (stateless: the final
    exception line of a traceback needs :class:`Triage`'s context)."""
    return _classify_clean(_clean(line))


def _classify_clean(text: str) -> Kind | None:
    if not _ANY_SIGNAL.search(text):
        return None
    for kind, pattern in _RULES:
        if pattern.search(text):
            return kind
    return None


@dataclass(frozen=True)
class Finding:
    """One notable line. ``seq`` orders findings of one :class:`Triage`
    even when offsets and line numbers are unknown."""

    kind: Kind
    severity: Severity
    text: str
    seq: int
    offset: int | None = None
    line_no: int | None = None


# --------------------------------------------------------------------------
# Training progress

_NUMBER = r"[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|nan|inf)"
# "Steps:  12%|█▏  | 1200/10000 [10:00<1:13:20,  2.00it/s, loss=0.123, lr=1e-05]"
_TQDM = re.compile(
    r"^(?P<desc>.*?):?\s*(?P<pct>\d{1,3})%\|[^|]*\|\s*"
    r"(?P<n>\d+(?:\.\d+)?[kMGT]?)/(?P<total>\d+(?:\.\d+)?[kMGT]?)\s*"
    r"\[(?P<elapsed>[\d:]+)(?:<(?P<remaining>[\d:]+|\?))?"
    r"(?:,\s*(?P<rate>[\d.]+|\?)\s*(?P<unit>[A-Za-z]*/s|s/[A-Za-z]+))?"
    r"(?:,\s*(?P<postfix>[^\]]*))?\]"
)
# tqdm without a known total: "Steps: 1200it [10:00,  2.00it/s, loss=0.1]"
_TQDM_OPEN = re.compile(
    r"^(?P<desc>.*?):?\s*(?P<n>\d+)(?:it|[A-Za-z]+) \[(?P<elapsed>[\d:]+)"
    r"(?:,\s*(?P<rate>[\d.]+|\?)\s*(?P<unit>[A-Za-z]*/s|s/[A-Za-z]+))?"
    r"(?:,\s*(?P<postfix>[^\]]*))?\]"
)
_POSTFIX_ITEM = re.compile(r"(?P<key>[A-Za-z_][\w.]*)=(?P<value>[^,\s]+)")
# Hugging Face Trainer: "{'loss': 0.1234, 'grad_norm': 1.2, 'learning_rate': 1e-05, 'epoch': 0.5}"
_HF_DICT = re.compile(r"\{'loss': [^{}]*\}")
_HF_ITEM = re.compile(r"'(?P<key>\w+)':\s*'?(?P<value>[^,'}]+)'?")
# Free-form loops: "Step 1200/10000 loss 0.123", "step: 1200, step_loss=0.1"
_STEP = re.compile(r"(?<![\w.])(?:global_)?[Ss]teps?\b[\s:=\[#]*(?P<step>\d+)(?:\s*/\s*(?P<total>\d+))?")
_EPOCH = re.compile(r"\b[Ee]poch\b[\s:=\[#]*(?P<epoch>\d+(?:\.\d+)?)(?:\s*/\s*(?P<total>\d+))?")
_LOSS = re.compile(r"\b(?:step_|train_)?loss\b\s*[:=]?\s*(?P<loss>" + _NUMBER + r")(?![\w.])")
_RATE = re.compile(r"(?P<rate>\d+(?:\.\d+)?)\s*(?P<unit>it/s|s/it|steps?/s|s/steps?)\b")
_LOSS_KEYS = ("loss", "step_loss", "train_loss")


class ProgressSample(NamedTuple):
    """What one line says about progress; None where it says nothing.

    A NamedTuple rather than a frozen dataclass: one is built per progress
    line and a frozen dataclass costs several times more to construct.
    """

    step: int | None = None
    max_steps: int | None = None
    loss: float | None = None
    rate_its: float | None = None  # iterations per second (s/it inverted)
    eta_seconds: float | None = None
    epoch: float | None = None
    bar: str | None = None  # tqdm description, to tell bars apart


@dataclass(frozen=True)
class TrainingProgress:
    """Where training stands, merged from the latest samples."""

    step: int | None = None
    max_steps: int | None = None
    loss: float | None = None
    rate_its: float | None = None
    eta_seconds: float | None = None
    epoch: float | None = None

    @property
    def fraction(self) -> float | None:
        if self.step is None or not self.max_steps:
            return None
        return min(1.0, self.step / self.max_steps)


class _Fields(NamedTuple):
    """TrainingProgress's fields while accumulating (cheap to rebuild)."""

    step: int | None
    max_steps: int | None
    loss: float | None
    rate_its: float | None
    eta_seconds: float | None
    epoch: float | None


_NO_PROGRESS = _Fields(None, None, None, None, None, None)


def _scaled_int(text: str) -> int:
    """tqdm's unit_scale numbers: "1.2k" -> 1200."""
    if text.isdigit():
        return int(text)
    factor = {"k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}.get(text[-1:], 1)
    return int(round(float(text.rstrip("kMGT")) * factor))


def _seconds(clock: str | None) -> float | None:
    """tqdm's "1:13:20" / "10:00" (hours may exceed 24) as seconds."""
    if not clock or clock == "?":
        return None
    total = 0
    for part in clock.split(":"):
        total = total * 60 + int(part)
    return float(total)


def _rate_its(value: str | None, unit: str | None) -> float | None:
    if not value or value == "?" or not unit:
        return None
    rate = float(value)
    if unit.startswith("s/"):
        return 1.0 / rate if rate > 0 else None
    return rate


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _loss_from(items: Iterable[tuple[str, str]]) -> float | None:
    found = dict(items)
    for key in _LOSS_KEYS:
        if key in found:
            return _float(found[key])
    return None


def parse_progress(line: str) -> ProgressSample | None:
    """Training progress reported by one (display) line, if any."""
    return _parse_clean(_clean(line))


def _parse_clean(text: str) -> ProgressSample | None:
    if "%|" in text:
        bar = _TQDM.search(text)
        if bar is not None:
            return _from_tqdm(bar, total=_scaled_int(bar["total"]))
    if "it [" in text or "s [" in text:
        bar = _TQDM_OPEN.search(text)
        if bar is not None and bar["rate"]:
            return _from_tqdm(bar, total=None)
    if "'loss'" in text:
        record = _HF_DICT.search(text)
        if record is not None:
            items = [(m["key"], m["value"].strip()) for m in _HF_ITEM.finditer(record.group(0))]
            loss = _loss_from(items)
            epoch = dict(items).get("epoch")
            return ProgressSample(loss=loss, epoch=_float(epoch) if epoch else None)
    if "tep" not in text and "poch" not in text:
        return None
    # Substring guards first: a regex without a literal prefix is tried at
    # every position, and most lines mention none of these words.
    step = _STEP.search(text) if "tep" in text else None
    epoch = _EPOCH.search(text) if "poch" in text else None
    if step is None and epoch is None:
        return None
    loss_match = _LOSS.search(text) if "loss" in text else None
    rate = _RATE.search(text) if "/s" in text or "s/" in text else None
    if step is not None and loss_match is None and rate is None and step["total"] is None:
        return None  # "saving step 5 checkpoint": a step number alone proves nothing
    return ProgressSample(
        step=int(step["step"]) if step else None,
        max_steps=int(step["total"]) if step and step["total"] else None,
        loss=_float(loss_match["loss"]) if loss_match else None,
        rate_its=_rate_its(rate["rate"], rate["unit"]) if rate else None,
        epoch=float(epoch["epoch"]) if epoch else None,
    )


def _from_tqdm(bar: re.Match[str], total: int | None) -> ProgressSample:
    postfix = bar["postfix"] or ""
    items = [(m["key"], m["value"]) for m in _POSTFIX_ITEM.finditer(postfix)]
    remaining = _seconds(bar["remaining"]) if "remaining" in bar.re.groupindex else None
    return ProgressSample(
        step=_scaled_int(bar["n"]),
        max_steps=total,
        loss=_loss_from(items),
        rate_its=_rate_its(bar["rate"], bar["unit"]),
        eta_seconds=remaining,
        bar=bar["desc"].strip(),
    )


# --------------------------------------------------------------------------
# Segments and stages: where a long training stands as a whole
#
# A train job that continues across its time limit prints one separator line
# per segment into its log, which every segment appends to (the job id stays
# the same across requeues):
#   [hpcwizard] segment 1 of ~4, starting
#   [hpcwizard] segment 2 of ~4, resumed from checkpoint-1400
#   [hpcwizard] segment 2 stopped at the time limit; requeued to continue from checkpoint-2800
#   [hpcwizard] segment 3 saved no new checkpoint (still checkpoint-2800): not continuing
# The job scripts' log() may put a "[YYYY-mm-dd HH:MM:SS] " timestamp before
# them. A recipe with stages logs "[time] stage N" (or "stage N: ...") as
# each stage starts; the tqdm bar then counts that stage's steps from 0.

SEGMENT_NEEDLE = "[hpcwizard] segment "
_SEGMENT_LINE = re.compile(
    r"\[hpcwizard\] segment (?P<k>\d+)(?: of ~?(?P<n>\d+))?"
    r"(?:, (?P<start>starting)|, resumed from (?P<resumed>\S+)"
    r"| stopped at the time limit; requeued to continue from (?P<requeued>\S+)"
    r"| saved no new checkpoint \(still (?P<stuck>[^)]+)\)"
    r"| (?P<finished>finished the training))?"
    r"(?P<rest>.*)$"
)
_NOT_CONTINUING = ": not continuing"
STAGE_NEEDLE = "] stage "
#: The templates' ``log "stage N"`` / ``log "stage N: ..."`` as a stage starts
#: (not "stage N already trained", nor the trainer's own unstamped lines).
_STAGE_START = re.compile(r"^\[[^\]]*\] stage (?P<n>\d+)(?::|\s*$)")


class SegmentEvent(str, Enum):
    STARTED = "started"  # the first segment began
    RESUMED = "resumed"  # a later segment began from a checkpoint
    REQUEUED = "requeued"  # a segment reached its time limit and requeued the job
    STOPPED = "stopped"  # "...: not continuing" (no new checkpoint, or train.segments reached)
    FINISHED = "finished"  # the last segment finished the training
    OTHER = "other"  # a separator this version does not know


@dataclass(frozen=True)
class SegmentMark:
    """What the last separator line of a continuing train job said."""

    segment: int
    of: int | None  # the ~N of "segment K of ~N" (carried over from the last line that said it)
    event: SegmentEvent
    checkpoint: str | None = None  # "checkpoint-1400": resumed from, requeued from, or still at
    text: str = ""  # the line from "segment" on

    @property
    def why_not_continuing(self) -> str | None:
        """``segment 3 saved no new checkpoint (still checkpoint-2800)``: the
        stop line without its ": not continuing"; None for other lines."""
        if self.event is not SegmentEvent.STOPPED:
            return None
        text = self.text.rstrip()
        return text[: -len(_NOT_CONTINUING)] if text.endswith(_NOT_CONTINUING) else text

    @property
    def waiting_for_next(self) -> bool:
        """The segment ended by requeueing: the next one has not started."""
        return self.event is SegmentEvent.REQUEUED

    @property
    def next_segment(self) -> int:
        return self.segment + 1

    def phrase(self, *, requeued: bool = False) -> str:
        """``segment 2 of ~4``: the segment that runs, or, for a job back in
        the queue (``requeued``), the one that runs next."""
        upcoming = requeued and self.event not in (SegmentEvent.STOPPED, SegmentEvent.FINISHED)
        return self.of_text(self.next_segment if upcoming else None)

    def of_text(self, segment: int | None = None) -> str:
        """``segment 2 of ~4``; ``segment 5`` once past the estimate or without one."""
        number = self.segment if segment is None else segment
        if self.of is not None and number <= self.of:
            return f"segment {number} of ~{self.of}"
        return f"segment {number}"


def parse_segment_line(line: str) -> SegmentMark | None:
    """The separator a line holds (anywhere in it), or None."""
    if SEGMENT_NEEDLE not in line:
        return None
    text = strip_ansi(line)
    match = _SEGMENT_LINE.search(text)
    if match is None:
        return None
    of = int(match["n"]) if match["n"] else None
    checkpoint: str | None = None
    if match["rest"].rstrip().endswith(_NOT_CONTINUING) or match["stuck"]:
        # "saved no new checkpoint (still checkpoint-S)", "stopped at the
        # time limit; train.segments allows M", or a reason to come.
        event = SegmentEvent.STOPPED
        if match["stuck"] and match["stuck"].startswith("checkpoint"):
            checkpoint = match["stuck"]
    elif match["start"]:
        event = SegmentEvent.STARTED
    elif match["resumed"]:
        event, checkpoint = SegmentEvent.RESUMED, match["resumed"].rstrip(".,;:")
    elif match["requeued"]:
        event, checkpoint = SegmentEvent.REQUEUED, match["requeued"].rstrip(".,;:")
    elif match["finished"]:
        event = SegmentEvent.FINISHED
    else:
        event = SegmentEvent.OTHER
    return SegmentMark(int(match["k"]), of, event, checkpoint, text[match.start() + len("[hpcwizard] "):].rstrip())


def parse_stage_start(line: str) -> int | None:
    """N when the line is a job script's "stage N" start line, else None."""
    if STAGE_NEEDLE not in line:
        return None
    match = _STAGE_START.match(strip_ansi(line).rstrip())
    return int(match["n"]) if match else None


def merge_segment(previous: SegmentMark | None, new: SegmentMark) -> SegmentMark:
    """``new``, with the ~N of an earlier line when it does not say it (the
    "requeued" and "not continuing" lines name no total)."""
    if new.of is None and previous is not None and previous.of is not None:
        return replace(new, of=previous.of)
    return new


@dataclass(frozen=True)
class OverallProgress:
    """Progress over every stage of a training (and so every segment: a
    resumed segment continues its stage's step count)."""

    step: int  # steps done, all stages
    total: int  # steps asked for, all stages
    eta_seconds: float | None  # the rest of this stage plus the stages after it
    stage: int | None  # 1-based position of the current stage in the outline
    stages: int
    stage_step: int | None = None
    stage_total: int | None = None

    @property
    def fraction(self) -> float:
        return min(1.0, self.step / self.total) if self.total else 0.0


def _stage_number(name: str) -> int | None:
    match = re.fullmatch(r"stage (\d+)", name)
    return int(match.group(1)) if match else None


def overall_progress(outline: Iterable[tuple[str, int]], stage: int | None,
                     progress: TrainingProgress | None) -> OverallProgress | None:
    """Where a training stands over all its stages.

    ``outline``: ``(stage name, steps)`` in order, as the plan asks for them
    ("stage 1", "stage 2"; or one "training"). ``stage``: the number of the
    stage the log says runs now (None: it did not say). ``progress``: the
    current stage's bar. None when the position cannot be told (several
    stages and no stage line), so the caller shows the bar as it is.
    """
    stages = [(name, int(steps)) for name, steps in outline if int(steps) > 0]
    if not stages or progress is None or progress.step is None:
        return None
    numbers = [_stage_number(name) for name, _ in stages]
    index: int | None = None
    if len(stages) == 1:
        index = 0
    elif stage is not None and stage in numbers:
        index = numbers.index(stage)
    if index is None:
        return None
    own_total = progress.max_steps or stages[index][1]
    stage_step = min(progress.step, own_total)
    before = sum(steps for _, steps in stages[:index])
    after = sum(steps for _, steps in stages[index + 1:])
    total = before + own_total + after
    eta = progress.eta_seconds
    rate = progress.rate_its
    if eta is None and rate:
        eta = max(0, own_total - stage_step) / rate
    if eta is not None and after:
        eta = eta + after / rate if rate else None
    return OverallProgress(before + stage_step, total, eta, index + 1, len(stages), stage_step, own_total)


class LossHistory:
    """Losses for a sparkline, in constant memory however long the run.

    Two views: ``recent()`` keeps the last ``capacity`` values as logged;
    ``overview()`` covers the whole run, each point the mean of ``stride``
    consecutive values, halving its resolution (pairs merged) whenever it
    would outgrow ``capacity``.
    """

    def __init__(self, capacity: int = 256) -> None:
        if capacity < 2:
            raise ValueError("capacity must be at least 2")
        self.capacity = capacity
        self.count = 0  # finite values seen
        self.non_finite = 0  # NaN/inf losses: a diverged run, shown apart
        self._recent: deque[float] = deque(maxlen=capacity)
        self._points: list[float] = []
        self._stride = 1
        self._bucket_sum = 0.0
        self._bucket_n = 0
        self._last_step: int | None = None

    def add(self, loss: float, step: int | None = None) -> bool:
        """Record one loss; a repeat of the last step (a progress bar seen
        again on the next poll) is ignored. Returns whether it was kept."""
        if step is not None and step == self._last_step:
            return False
        self._last_step = step
        if not math.isfinite(loss):
            self.non_finite += 1
            return True
        self.count += 1
        self._recent.append(loss)
        self._bucket_sum += loss
        self._bucket_n += 1
        if self._bucket_n == self._stride:
            self._points.append(self._bucket_sum / self._bucket_n)
            self._bucket_sum, self._bucket_n = 0.0, 0
            if len(self._points) > self.capacity:
                pairs = zip(self._points[0::2], self._points[1::2])
                merged = [(a + b) / 2 for a, b in pairs]
                if len(self._points) % 2:  # an odd one out becomes the open bucket
                    self._bucket_sum, self._bucket_n = self._points[-1] * self._stride, self._stride
                self._points = merged
                self._stride *= 2
        return True

    def recent(self, n: int | None = None) -> list[float]:
        values = list(self._recent)
        return values if n is None else values[-n:]

    def overview(self) -> list[float]:
        points = list(self._points)
        if self._bucket_n:
            points.append(self._bucket_sum / self._bucket_n)
        return points

    def sparkline_values(self, width: int, *, whole_run: bool = False) -> list[float]:
        """At most ``width`` values, recent (default) or over the whole run."""
        return downsample(self.overview() if whole_run else self.recent(), width)

    def clear(self) -> None:
        self.__init__(self.capacity)  # type: ignore[misc]  # every field back to its start, as built


def downsample(values: list[float], width: int) -> list[float]:
    """``values`` averaged into at most ``width`` buckets of near-equal size."""
    if width <= 0:
        return []
    if len(values) <= width:
        return list(values)
    out = []
    for i in range(width):
        lo = i * len(values) // width
        hi = (i + 1) * len(values) // width
        bucket = values[lo:hi]
        out.append(sum(bucket) / len(bucket))
    return out


# --------------------------------------------------------------------------
# The accumulator


class Triage:
    """Findings and progress accumulated over one followed log file.

    Feed it every complete line once (``feed`` takes a LogUpdate) and the
    live partial line on every poll (progress only: a partial line is not a
    finding until its newline arrives, or the same bar would count twice).
    """

    def __init__(self, *, recent_findings: int = 200, history_capacity: int = 256) -> None:
        self.counts: dict[Kind, int] = {}
        self.first: dict[Kind, Finding] = {}
        self.last: dict[Kind, Finding] = {}
        self.recent: deque[Finding] = deque(maxlen=recent_findings)
        self.losses = LossHistory(history_capacity)
        self._progress: TrainingProgress | None = None
        self._fields: _Fields | None = None
        self._first_by_severity: dict[Severity, Finding] = {}
        self._seq = 0
        self._in_traceback = False
        self._bar: str | None = None  # the tqdm bar we take for "the training bar"
        self.segment: SegmentMark | None = None  # the last separator of a continuing training
        self.stage: int | None = None  # the stage the last "stage N" line started

    def reset(self) -> None:
        """Forget everything (the log was truncated or replaced)."""
        self.__init__(  # type: ignore[misc]  # every field back to its start, as built
            recent_findings=self.recent.maxlen or 200, history_capacity=self.losses.capacity
        )

    # -- feeding ---------------------------------------------------------------

    def feed(self, update: LogUpdate) -> list[Finding]:
        """Everything new in one poll's result; returns the new findings."""
        if update.truncated or update.rotated:
            self.reset()
        found: list[Finding] = []
        line_no = update.first_line_no
        for text, offset in zip(update.lines, update.line_offsets):
            found.extend(self.feed_line(text, offset=offset, line_no=line_no))
            if line_no is not None:
                line_no += 1
        if update.partial:
            self.feed_partial(update.partial)
        return found

    def feed_lines(self, lines: Iterable[str]) -> list[Finding]:
        found: list[Finding] = []
        for text in lines:
            found.extend(self.feed_line(text))
        return found

    def feed_line(self, line: str, *, offset: int | None = None, line_no: int | None = None) -> list[Finding]:
        """One complete line: findings (usually none) and progress."""
        text = _clean(line)
        kinds: list[tuple[Kind, Severity]] = []
        if self._in_traceback and text and not text[0].isspace():
            exception = _EXCEPTION_LINE.match(text)
            if exception is not None and _looks_like_exception(exception):
                kinds.append((Kind.EXCEPTION, DEFAULT_SEVERITY[Kind.EXCEPTION]))
                self._in_traceback = False
            elif not _CHAINED.match(text):
                self._in_traceback = False  # something else interrupted it
        kind = _classify_clean(text)
        if kind is Kind.TRACEBACK:
            self._in_traceback = True
        if kind is not None and not (kind is Kind.ERROR and kinds):
            severity = Severity.MEDIUM if kind is Kind.NCCL and _NCCL_WARN.search(text) else DEFAULT_SEVERITY[kind]
            kinds.append((kind, severity))
        found = [self._record(k, s, text, offset, line_no) for k, s in kinds]
        if SEGMENT_NEEDLE in text:
            mark = parse_segment_line(text)
            if mark is not None:
                self.segment = merge_segment(self.segment, mark)
        elif STAGE_NEEDLE in text:
            stage = parse_stage_start(text)
            if stage is not None:
                self._start_stage(stage)
        self._take_progress(text, final=True)
        return found

    def seed(self, segment: SegmentMark | None = None, stage: int | None = None) -> None:
        """What a bounded backward scan found above the lines fed so far (a
        log is opened at its tail; the last separator and stage line may lie
        further up). Lines fed afterwards override it."""
        if segment is not None:
            self.segment = merge_segment(self.segment, segment) if self.segment is None else self.segment
        if stage is not None and self.stage is None:
            self.stage = stage

    def _start_stage(self, stage: int) -> None:
        # The new stage's bar counts from 0: the last stage's step and ETA
        # would otherwise read as this stage's until its first bar line.
        self.stage = stage
        self._bar = None
        if self._fields is not None:
            self._fields = self._fields._replace(step=0, max_steps=None, eta_seconds=None)
            self._progress = None

    def feed_partial(self, partial: str) -> None:
        """The live unfinished line (a tqdm bar): progress only."""
        self._take_progress(_clean(partial), final=False)

    def _record(self, kind: Kind, severity: Severity, text: str, offset: int | None, line_no: int | None) -> Finding:
        self._seq += 1
        finding = Finding(kind, severity, text, self._seq, offset, line_no)
        self.counts[kind] = self.counts.get(kind, 0) + 1
        self.first.setdefault(kind, finding)
        self.last[kind] = finding
        self._first_by_severity.setdefault(severity, finding)
        self.recent.append(finding)
        return finding

    def _take_progress(self, text: str, *, final: bool) -> None:
        sample = _parse_clean(text)
        if sample is None:
            return
        if sample.bar is not None and not self._is_training_bar(sample):
            return
        current = self._fields or _NO_PROGRESS
        # Each sample fills in only what it knows (a Trainer dict line has the
        # loss, its tqdm bar the step); the rest carries over.
        step = current.step if sample.step is None else sample.step
        max_steps = current.max_steps if sample.max_steps is None else sample.max_steps
        rate = current.rate_its if sample.rate_its is None else sample.rate_its
        eta = current.eta_seconds
        if sample.eta_seconds is not None:
            eta = sample.eta_seconds
        elif sample.step is not None:
            eta = max(0, max_steps - sample.step) / rate if rate and max_steps else None
        self._fields = _Fields(
            step,
            max_steps,
            current.loss if sample.loss is None else sample.loss,
            rate,
            eta,
            current.epoch if sample.epoch is None else sample.epoch,
        )
        self._progress = None  # built when asked for: most lines are never looked at
        if sample.loss is not None:
            self.losses.add(sample.loss, step=sample.step)

    def _is_training_bar(self, sample: ProgressSample) -> bool:
        """Keep following one tqdm bar: "Loading checkpoint shards 3/3" or a
        validation bar must not pass for the training loop.

        A different bar takes over when it is longer than the current one, or
        when the current one has finished.
        """
        current = self._fields
        if self._bar is None or sample.bar == self._bar or current is None:
            self._bar = sample.bar
            return True
        finished = current.max_steps is not None and current.step is not None and current.step >= current.max_steps
        longer = sample.max_steps is not None and (current.max_steps is None or sample.max_steps > current.max_steps)
        if finished or longer:
            self._bar = sample.bar
            self._fields = _NO_PROGRESS._replace(loss=current.loss, epoch=current.epoch)
            self._progress = None
            return True
        return False

    # -- reading ---------------------------------------------------------------

    @property
    def progress(self) -> TrainingProgress | None:
        """Where training stands, or None before any progress line."""
        if self._progress is None and self._fields is not None:
            self._progress = TrainingProgress(*self._fields)
        return self._progress

    def first_error(self, min_severity: Severity = Severity.HIGH) -> Finding | None:
        """The earliest finding at least this severe ("jump to first error")."""
        candidates = [f for s, f in self._first_by_severity.items() if s >= min_severity]
        return min(candidates, key=lambda f: f.seq) if candidates else None

    @property
    def worst(self) -> Severity | None:
        return max(self._first_by_severity, default=None)

    @property
    def last_exception(self) -> Finding | None:
        """The final line of the latest traceback: usually why the job died."""
        return self.last.get(Kind.EXCEPTION)


# --------------------------------------------------------------------------
# Trouble between nodes: which node a rendezvous or NCCL failure is about
#
# A job on several nodes writes one log per node (logs/%x-%j.node<K>.out, K its
# $SLURM_NODEID). A rank that never joined the others, or an NCCL failure, is
# read there and said with the node it concerns: the node whose log says it,
# or, where the line names the machine rank that never came ("rank 1 of 2
# never joined"), that rank's node (one launcher per node: machine rank K runs
# on node K).

#: The kinds of trouble said per node.
NODE_TROUBLE = frozenset({Kind.RENDEZVOUS, Kind.NCCL})
#: What a node finding says at most (the line itself is kept whole).
NODE_WHAT_CHARS = 120

_NEVER_JOINED = re.compile(
    r"rendezvous timed out after (?P<after>[^:]+): rank (?P<ranks>\d+(?:, \d+)*) of (?P<of>\d+) "
    r"never joined main at (?P<main>\S+)")
_COULD_NOT_JOIN = re.compile(
    r"rank (?P<rank>\d+) of (?P<of>\d+) could not join main at (?P<main>\S+) within [^(]*\((?P<why>[^)]*)\)")
_CLIENT_SOCKET = re.compile(
    r"The client socket has timed out after (?P<after>\S+) while trying to connect to "
    r"\((?P<host>[^,()]+), (?P<port>\d+)\)")
_STORE_BARRIER = re.compile(
    r"Timed out initializing process group in store based ?barrier on rank:? (?P<rank>\d+)"
    r"(?:.*?world_size=(?P<world>\d+), (?:num_workers_joined|worker_count)=(?P<joined>\d+))?")
_STORE_CLIENTS = re.compile(r"Timed out after (?P<after>\d+) seconds waiting for clients\. (?P<joined>\d+)/(?P<world>\d+)")
_EXCEPTION_MESSAGE = re.compile(r"(?P<name>(?:\w+\.)*(?P<short>\w+(?:Error|Exception))):?\s*(?P<message>.*)$")
_WATCHDOG = re.compile(r"(?:\[Rank (?P<rank>\d+)\] )?Watchdog caught collective operation timeout")
_WATCHDOG_RAN = re.compile(r"ran for (?P<ms>\d+) milliseconds")
_NCCL_ERROR_IN = re.compile(r"NCCL error in: [^,]*, (?P<message>.*?)(?:, NCCL version [\d.]+\S*)?$")
_NCCL_RESULT = re.compile(r"(?P<name>nccl[A-Z]\w*Error):?\s*(?P<message>.*)$")
_NCCL_WARN = re.compile(r"NCCL WARN\s*(?P<message>.*)$")
_LINE_RANK = re.compile(r"^\[rank(?P<a>\d+)\]:|\[Rank (?P<b>\d+)\]|\bon rank:? (?P<c>\d+)")


@dataclass(frozen=True)
class NodeFinding:
    """One node's trouble: ``node 1 (node2): rank 1 never joined main at
    10.0.0.2:21234 (rendezvous timeout)``."""

    node: int  # the node it is about ($SLURM_NODEID)
    host: str | None  # that node's name, when Slurm said the job's nodes
    kind: Kind
    what: str  # what happened, in a few words
    seen_on: int  # the node whose log says it
    line: str  # the log line, cleaned

    @property
    def severity(self) -> Severity:
        return Severity.MEDIUM if self.kind is Kind.NCCL and _NCCL_WARN.search(self.line) else DEFAULT_SEVERITY[self.kind]

    @property
    def where(self) -> str:
        return f"node {self.node} ({self.host})" if self.host else f"node {self.node}"

    @property
    def text(self) -> str:
        # Said by another node (rank 0 names the rank that never came): whose log to read.
        seen = f" [node {self.seen_on}'s log]" if self.seen_on != self.node else ""
        return f"{self.where}: {self.what}{seen}"

    def __str__(self) -> str:
        return self.text


def node_findings(line: str, *, seen_on: int, nodes: int, hosts: Sequence[str] = ()) -> list[NodeFinding]:
    """The rendezvous or NCCL trouble one line of node ``seen_on``'s log
    reports (usually none), each with the node it is about. ``nodes``: how
    many nodes the job has; ``hosts``: their names, node 0 first."""
    raw = strip_ansi(line).rstrip("\n")  # with torchrun's "[rank3]:" prefix, which says the rank
    text = _clean(line)
    kind = _classify_clean(text)
    if kind not in NODE_TROUBLE:
        return []
    found = []
    for rank, what in _describe(kind, text, nodes, raw):
        # A machine rank of the job's own count is that node (one launcher a node).
        node = rank if rank is not None and 0 <= rank < nodes else seen_on
        host = hosts[node] if node < len(hosts) else None
        found.append(NodeFinding(node, host, kind, _shorten(what), seen_on, text))
    return found


def _shorten(what: str) -> str:
    return what if len(what) <= NODE_WHAT_CHARS else what[: NODE_WHAT_CHARS - 1].rstrip() + "…"


def _describe(kind: Kind, text: str, nodes: int, raw: str) -> list[tuple[int | None, str]]:
    """(machine rank it is about, or None: the node that says it; what happened)."""
    if kind is Kind.RENDEZVOUS:
        return _describe_rendezvous(text, nodes, raw)
    return [(None, _describe_nccl(text, raw))]


def _of_machines(of: str, nodes: int) -> bool:
    return int(of) == nodes  # "rank R of N" counts machines (nodes), not processes


def _describe_rendezvous(text: str, nodes: int, raw: str) -> list[tuple[int | None, str]]:
    match = _NEVER_JOINED.search(text)
    if match is not None:
        machines = _of_machines(match["of"], nodes)
        return [(int(rank) if machines else None, f"rank {rank} never joined main at {match['main']} (rendezvous timeout)")
                for rank in match["ranks"].split(", ")]
    match = _COULD_NOT_JOIN.search(text)
    if match is not None:
        rank = int(match["rank"]) if _of_machines(match["of"], nodes) else None
        return [(rank, f"rank {match['rank']} never joined main at {match['main']} (rendezvous timeout: {match['why']})")]
    who = _line_rank(raw)
    match = _CLIENT_SOCKET.search(text)
    if match is not None:
        return [(None, f"{who} never reached main at {match['host']}:{match['port']} "
                       f"(rendezvous timeout after {match['after']})")]
    match = _STORE_BARRIER.search(text)
    if match is not None:
        joined = f"{match['joined']} of {match['world']} joined, " if match["world"] else ""
        return [(None, f"rank {match['rank']} timed out initializing the process group ({joined}rendezvous timeout)")]
    match = _STORE_CLIENTS.search(text)
    if match is not None:
        return [(None, f"main waited {match['after']} s for the other ranks: {match['joined']} of {match['world']} "
                       "joined (rendezvous timeout)")]
    match = _EXCEPTION_MESSAGE.search(text)
    if match is not None and match["short"] in ("RendezvousTimeoutError", "DistNetworkError"):
        what = "rendezvous timeout" if match["short"] == "RendezvousTimeoutError" else "network error at the rendezvous"
        message = match["message"].strip()
        return [(None, f"{what} ({match['short']}{': ' + message if message else ''})")]
    return [(None, f"{text.strip()} (rendezvous)")]


def _describe_nccl(text: str, raw: str) -> str:
    match = _WATCHDOG.search(text)
    if match is not None:
        op = re.search(r"OpType=(\w+)", text)
        ran = _WATCHDOG_RAN.search(text)
        rank = match["rank"] if match["rank"] is not None else _line_rank(raw, bare=True)
        who = f"rank {rank}: " if rank else ""
        took = f" after {int(ran['ms']) / 1000:g} s" if ran else ""
        return f"{who}NCCL {op.group(1) if op else 'collective'} timed out{took} (watchdog)"
    match = _NCCL_ERROR_IN.search(text)
    if match is not None:
        return f"NCCL error: {match['message'].strip()}"
    match = _NCCL_RESULT.search(text)
    if match is not None:
        return f"NCCL error: {match['name']}{': ' + match['message'].strip() if match['message'].strip() else ''}"
    match = _NCCL_WARN.search(text)
    if match is not None:
        return f"NCCL warning: {match['message'].strip()}"
    return text.strip()


def _line_rank(text: str, *, bare: bool = False) -> str:
    """``rank 3`` for a line that says its rank (torchrun's ``[rank3]:``, c10d's
    ``[Rank 3]``); else "a rank" (or "" with ``bare``)."""
    match = _LINE_RANK.search(text)
    rank = next((g for g in match.groups() if g is not None), None) if match else None
    if bare:
        return rank or ""
    return f"rank {rank}" if rank is not None else "a rank"

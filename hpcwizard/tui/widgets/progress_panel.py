"""Training progress of the followed log: step N of M, ETA, a loss sparkline.

Fed from :class:`~hpcwizard.jobs.triage.Triage` (via the log panel's worker);
hidden until a log reports progress. With the plan's stages known, the bar,
the step and the ETA cover the whole training (every stage, every segment
of a job that continues across its time limit); a job that ended shows
where it stopped, with no ETA.
"""

from __future__ import annotations

from rich.text import Text
from textual.containers import Horizontal
from textual.widgets import ProgressBar, Sparkline, Static

from hpcwizard.jobs.triage import OverallProgress, SegmentMark, TrainingProgress
from hpcwizard.slurm import JobState


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours >= 24:
        return f"{hours // 24}d {hours % 24}h"
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def segment_phrase(segment: SegmentMark | None, *, requeued: bool = False) -> str | None:
    """``segment 2 of ~4``; ``continuing: segment 3 of ~4`` while the job
    waits in the queue for its next segment."""
    if segment is None:
        return "continuing (requeued)" if requeued else None
    return f"continuing: {segment.phrase(requeued=True)}" if requeued else segment.phrase()


def where_it_stands(progress: TrainingProgress, overall: OverallProgress | None, stage: int | None) -> list[str]:
    """``stage 2/2 · step 14/60``: the stage first, then the step within it
    (the bar shows the whole training); ``stage 2 · step 14/60`` when the
    plan's stages are not known; ``step 14/60`` for a one-stage training."""
    if overall is not None and overall.stages > 1 and overall.stage_step is not None:
        return [f"stage {overall.stage}/{overall.stages}", f"step {overall.stage_step}/{overall.stage_total}"]
    if overall is not None:
        return [f"step {overall.step}/{overall.total}"]
    parts = [f"stage {stage}"] if stage is not None else []
    if progress.step is not None:
        parts.append(f"step {progress.step}" + (f"/{progress.max_steps}" if progress.max_steps else ""))
    return parts


def describe(progress: TrainingProgress, overall: OverallProgress | None = None,
             segment: SegmentMark | None = None, *, active: bool = True, requeued: bool = False,
             stage: int | None = None, ended: JobState | None = None, chain_end: bool = False,
             waits: str | None = None) -> str:
    """``stage 2/2 · step 14/60 · chain ETA ~4:30 · segment 2 of ~3 ·
    loss 0.02 · 2.5 it/s`` (most important first: the line is cut at the
    panel's width).

    With ``overall`` (every stage of the plan) the ETA is the whole
    training's: "chain ETA" when nothing of the chain runs after this
    job (``chain_end``), else "training ETA"; without, the current bar's
    ``ETA``. A job waiting for its next segment starts with ``continuing:
    segment 2 of ~3``. A job that ended (``ended``, or ``active`` False)
    shows its final state and where it stopped: no ETA, no rate, which
    would never come true. ``waits`` (``+ 2 queue waits``) follows the ETA
    when it reaches into further segments: it counts training time only."""
    if ended is not None or not active:
        parts = [ended.value] if ended is not None else []
        parts += where_it_stands(progress, overall, stage)
        if segment is not None:
            parts.append(segment.phrase())
        if progress.loss is not None:
            parts.append(f"loss {progress.loss:.4g}")
        return " · ".join(parts)
    parts = []
    phrase = segment_phrase(segment, requeued=requeued)
    if phrase and requeued:
        parts.append(phrase)
    parts += where_it_stands(progress, overall, stage)
    if overall is not None and overall.eta_seconds is not None:
        parts.append(f"{'chain' if chain_end else 'training'} ETA ~{format_eta(overall.eta_seconds)}"
                     + (f" {waits}" if waits else ""))
    elif overall is None and progress.eta_seconds is not None:
        parts.append(f"ETA {format_eta(progress.eta_seconds)}" + (f" {waits}" if waits else ""))
    if phrase and not requeued:
        parts.append(phrase)
    if progress.loss is not None:
        parts.append(f"loss {progress.loss:.4g}")
    if progress.rate_its:
        parts.append(f"{progress.rate_its:.3g} it/s" if progress.rate_its >= 1 else f"{1 / progress.rate_its:.3g} s/it")
    if progress.epoch is not None:
        parts.append(f"epoch {progress.epoch:g}")
    return " · ".join(parts)


class ProgressPanel(Horizontal):
    """ProgressBar + a one-line summary + the recent loss as a Sparkline."""

    DEFAULT_CSS = """
    ProgressPanel {
        height: auto;
        max-height: 2;
        display: none;
    }
    ProgressPanel.has-progress {
        display: block;
    }
    ProgressPanel ProgressBar {
        width: auto;
        height: 1;
    }
    ProgressPanel ProgressBar Bar {
        /* 14, not 20: at 80 columns the text's two lines must hold the
           stage, the step and the ETA of a continuing training. */
        width: 14;
    }
    ProgressPanel #progress-text {
        /* Two lines at most: at 80 columns one left "step 660/1200 · ETA"
           and the segment cut off. */
        width: 1fr;
        height: auto;
        max-height: 2;
        text-overflow: ellipsis;
        padding: 0 1;
    }
    ProgressPanel Sparkline {
        width: 16;
        height: 1;
    }
    """

    def compose(self):
        yield ProgressBar(total=None, show_eta=False, id="progress-bar")
        yield Static("", id="progress-text")
        yield Sparkline([], id="progress-loss")

    def show(self, progress: TrainingProgress | None, losses: list[float], *,
             overall: OverallProgress | None = None, segment: SegmentMark | None = None,
             active: bool = True, requeued: bool = False, stage: int | None = None,
             ended: JobState | None = None, chain_end: bool = False, waits: str | None = None) -> None:
        """``overall``: over every stage when the plan's are known; ``ended``
        (or ``active`` False) for a job that ended (its final state, no ETA);
        ``requeued`` while it waits for its next segment; ``stage``: the
        stage the log says runs; ``chain_end``: no job of the chain after it."""
        if progress is None:
            self.remove_class("has-progress")
            return
        self.add_class("has-progress")
        bar = self.query_one(ProgressBar)
        if overall is not None:
            bar.update(total=overall.total, progress=min(overall.step, overall.total))
        elif progress.max_steps:
            bar.update(total=progress.max_steps, progress=min(progress.step or 0, progress.max_steps))
        text = describe(progress, overall, segment, active=active, requeued=requeued, stage=stage, ended=ended,
                        chain_end=chain_end, waits=waits)
        self.query_one("#progress-text", Static).update(Text(text, overflow="ellipsis"))
        self.query_one(Sparkline).data = list(losses)

    @property
    def text(self) -> str:
        return str(self.query_one("#progress-text", Static).render())

"""Training progress of the followed log: step N of M, ETA, a loss sparkline.

Fed from :class:`~hpcwizard.triage.Triage` (via the log panel's worker);
hidden until a log reports progress.
"""

from __future__ import annotations

from rich.text import Text
from textual.containers import Horizontal
from textual.widgets import ProgressBar, Sparkline, Static

from hpcwizard.triage import TrainingProgress


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours >= 24:
        return f"{hours // 24}d {hours % 24}h"
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def describe(progress: TrainingProgress) -> str:
    """``step 1200/10000 · ETA 1:13:20 · loss 0.123 · 2 it/s · epoch 3``
    (most important first: the line is cut at the panel's width)."""
    parts = []
    if progress.step is not None:
        parts.append(f"step {progress.step}" + (f"/{progress.max_steps}" if progress.max_steps else ""))
    if progress.eta_seconds is not None:
        parts.append(f"ETA {format_eta(progress.eta_seconds)}")
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
        height: 1;
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
        width: 20;
    }
    ProgressPanel #progress-text {
        width: 1fr;
        height: 1;
        text-wrap: nowrap;
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

    def show(self, progress: TrainingProgress | None, losses: list[float]) -> None:
        if progress is None:
            self.remove_class("has-progress")
            return
        self.add_class("has-progress")
        bar = self.query_one(ProgressBar)
        if progress.max_steps:
            bar.update(total=progress.max_steps, progress=min(progress.step or 0, progress.max_steps))
        self.query_one("#progress-text", Static).update(Text(describe(progress), no_wrap=True, overflow="ellipsis"))
        self.query_one(Sparkline).data = list(losses)

    @property
    def text(self) -> str:
        return str(self.query_one("#progress-text", Static).render())

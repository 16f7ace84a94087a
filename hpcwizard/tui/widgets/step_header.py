"""The wizard's header: which step this is, of how many, and the steps already reached."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from hpcwizard.project.wizard_steps import STEPS, step_index


class StepHeader(Static):
    """``Step 3 of 10 · Recipe and variant`` above a row of step marks."""

    DEFAULT_CSS = """
    StepHeader {
        height: 2;
        padding: 0 1;
        background: $primary-background;
        color: $text;
    }
    """

    def __init__(self, step: str, *, reached: int | None = None, subtitle: str = "") -> None:
        super().__init__()
        self.step = step
        self.reached = reached
        self.subtitle = subtitle

    def on_mount(self) -> None:
        self.update(self.render_header())

    def render_header(self) -> Text:
        index = step_index(self.step)
        reached = max(index, self.reached if self.reached is not None else index)
        text = Text()
        text.append("hpcwizard", style="bold")
        text.append(f" · step {index + 1} of {len(STEPS)} · ")
        text.append(STEPS[index].title, style="bold")
        if self.subtitle:
            text.append(f"  {self.subtitle}", style="dim")
        text.append("\n")
        for i, step in enumerate(STEPS):
            if i == index:
                text.append(f" {i + 1} {step.title} ", style="reverse bold")
            elif i <= reached:
                text.append(f" {i + 1} ", style="bold")
            else:
                text.append(f" {i + 1} ", style="dim")
        return text

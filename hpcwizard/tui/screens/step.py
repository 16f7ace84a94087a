"""The frame every wizard step shares: header, body, Back/Next, footer.

A step is a ``Screen`` that ``dismiss()``es its answer; :data:`BACK` when the
user steps back, :class:`Jump` when the command palette asks for another step.
The :class:`~hpcwizard.tui.screens.wizard.WizardScreen` applies the answer to
the plan, saves it, and shows the next step.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Button, Footer, Label

from hpcwizard.tui.messages import WorkerAnswer
from hpcwizard.tui.widgets.step_header import StepHeader

if TYPE_CHECKING:
    from textual import getters

    from hpcwizard.tui.app import AppContext, HpcWizardApp


class _Back:
    def __repr__(self) -> str:
        return "BACK"


BACK = _Back()


@dataclass(frozen=True)
class Jump:
    """Leave this step for ``step`` (a step already reached)."""

    step: str


def _wizard_commands() -> type:
    from hpcwizard.tui.screens.wizard import WizardCommands

    return WizardCommands


#: What opens a step's Next when it is shut (ctrl+n on it says so).
NEXT_SHUT = {
    "token": "check a token first: paste it and press Enter, or choose 'Use this token'",
    "params": "fix the values marked ✘ first",
    "welcome": "the project home is still being read",
    "slurm": "fix the rows marked ✘ first (or wait for the partitions to load)",
    "preflight": "a check blocks (✘): fix it and press r to check again, or wait for the checks to finish",
    "review": "the scripts are still being rendered",
    "download": "preparing has not finished: r resumes it",
    "submit": "the chain is being submitted",
}


class StepScreen(Screen[Any]):
    """Base of the step screens. Subclasses set ``STEP`` and write ``compose_body``."""

    if TYPE_CHECKING:  # self.app is the HpcWizardApp (for the type checker only: no check at run time)
        app = getters.app(HpcWizardApp)

    STEP: ClassVar[str] = ""
    NEXT_LABEL: ClassVar[str] = "Next"
    #: The answer to save when the user leaves without Next (Back, a jump, quitting):
    #: the form's valid values only, or None. A step with a form keeps it current as
    #: the user types, so it is there even when quitting has already taken the widgets.
    kept: Any = None
    COMMANDS = {_wizard_commands}
    # The status sits in the one-line nav bar: a long message ends with … rather than being cut mid-word.
    # Borderless (compact) fields showed focus only as a 5 % tint: unfocused they are a
    # faint field, focused a clear cursor-coloured bar (the same on every step).
    DEFAULT_CSS = """
    StepScreen #step-status { text-wrap: nowrap; text-overflow: ellipsis; }
    StepScreen Input.-textual-compact { background: $boost; }
    StepScreen Input.-textual-compact:focus { background: $block-cursor-background 60%; text-style: bold; }
    StepScreen Input.-textual-compact.-invalid:focus { background: $error 40%; }
    StepScreen Select.-textual-compact > SelectCurrent { background: $boost; }
    StepScreen Select.-textual-compact:focus > SelectCurrent {
        background: $block-cursor-background 60%; text-style: bold;
    }
    """
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("ctrl+n", "next", "Next"),
    ]

    def __init__(self, *, reached: int | None = None) -> None:
        super().__init__()
        self.reached = reached

    @property
    def context(self) -> AppContext:
        return self.app.context

    async def _on_message(self, message: Message) -> None:
        # A worker's answer can arrive after quitting (or Back) began taking
        # this screen's widgets away: its handler would mount into or query
        # widgets that are gone (MountError, NoMatches: a traceback on ctrl+q).
        # Dropping it loses nothing: leaving the step saved what it holds.
        if isinstance(message, WorkerAnswer) and (not self.app.is_running or not self.is_attached):
            return
        await super()._on_message(message)

    def compose(self) -> ComposeResult:
        yield StepHeader(self.STEP, reached=self.reached)
        with Vertical(id="step-body"):
            yield from self.compose_body()
        with Horizontal(id="step-nav"):
            yield Button("← Back", id="step-back", compact=True, disabled=self.STEP == "welcome")
            yield Label("", id="step-status", markup=False)
            yield Button(f"{self.NEXT_LABEL} →", id="step-next", variant="primary", compact=True)
        yield Footer()

    def compose_body(self) -> Iterable[Widget]:
        return ()

    # -- navigation -------------------------------------------------------------

    def set_status(self, text: str, *, error: bool = False) -> None:
        label = self.query_one("#step-status", Label)
        label.update(text)
        label.set_class(error, "error")

    def allow_next(self, allowed: bool) -> None:
        self.query_one("#step-next", Button).disabled = not allowed

    def action_back(self) -> None:
        if self.STEP != "welcome":
            self.dismiss(BACK)

    def action_next(self) -> None:
        if self.query_one("#step-next", Button).disabled:
            # ctrl+n on a shut Next did nothing at all: say what opens it.
            self.notify(NEXT_SHUT.get(self.STEP, "finish this step first"), title="Next",
                        severity="warning", timeout=5, markup=False)
            return
        self.submit()

    def submit(self) -> None:
        """Validate the step and ``dismiss`` its answer (or say what is wrong)."""
        self.dismiss(None)

    def jump(self, step: str) -> None:
        self.dismiss(Jump(step))

    @on(Button.Pressed, "#step-back")
    def _back_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.action_back()

    @on(Button.Pressed, "#step-next")
    def _next_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.action_next()

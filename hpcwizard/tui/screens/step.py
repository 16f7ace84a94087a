"""The frame every wizard step shares: header, body, Back/Next, footer.

A step is a ``Screen`` that ``dismiss()``es its answer; :data:`BACK` when the
user steps back, :class:`Jump` when the command palette asks for another step.
The :class:`~hpcwizard.tui.screens.wizard.WizardScreen` applies the answer to
the plan, saves it, and shows the next step. What a step is called, what opens
its Next and when the flow goes through it are its entry in
:mod:`hpcwizard.project.wizard_steps`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Button, Footer, Label

from hpcwizard.project.wizard_steps import WELCOME, WizardStep, step_index, step_named
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


class StepFlow(Protocol):
    """What a step's palette entries ask of the wizard that shows the step."""

    step: str

    def reachable_steps(self) -> list[WizardStep]: ...

    def jump(self, step: str) -> None: ...

    def open_dashboard(self) -> None: ...


class WizardCommands(Provider):
    """Palette entries: go back to a step already reached, open the dashboard
    (quitting is the app's own "Quit hpcwizard")."""

    def _commands(self) -> list[tuple[str, str, Callable[[], Any]]]:
        flow = getattr(self.screen, "flow", None)
        commands: list[tuple[str, str, Callable[[], Any]]] = []
        if flow is not None:
            for step in flow.reachable_steps():
                if step.key == flow.step:
                    continue
                number = step_index(step.key) + 1
                commands.append((f"Go to step {number}: {step.title}", "return to this step; answers are kept",
                                 partial(flow.jump, step.key)))
            commands.append(("Open the dashboard", "watch the submitted jobs of this project",
                             flow.open_dashboard))
        return commands

    async def discover(self) -> Hits:
        for name, help_text, callback in self._commands():
            yield DiscoveryHit(name, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, help_text, callback in self._commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), callback, help=help_text)


class StepScreen(Screen[Any]):
    """Base of the step screens. Subclasses set ``STEP`` (their wizard step's key) and write ``compose_body``."""

    if TYPE_CHECKING:  # self.app is the HpcWizardApp (for the type checker only: no check at run time)
        app = getters.app(HpcWizardApp)

    STEP: ClassVar[str] = ""
    NEXT_LABEL: ClassVar[str] = "Next"
    #: The answer to save when the user leaves without Next (Back, a jump, quitting):
    #: the form's valid values only, or None. A step with a form keeps it current as
    #: the user types, so it is there even when quitting has already taken the widgets.
    kept: Any = None
    #: The wizard showing this step (its palette entries ask it); set when the wizard makes the step.
    flow: StepFlow | None = None
    COMMANDS = {WizardCommands}
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
            yield Button("← Back", id="step-back", compact=True, disabled=self.STEP == WELCOME.key)
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

    @property
    def wizard_step(self) -> WizardStep:
        step = step_named(self.STEP)
        assert step is not None, f"{type(self).__name__}.STEP is no wizard step"
        return step

    def action_back(self) -> None:
        if self.STEP != WELCOME.key:
            self.dismiss(BACK)

    def action_next(self) -> None:
        if self.query_one("#step-next", Button).disabled:
            # ctrl+n on a shut Next did nothing at all: say what opens it.
            self.notify(self.wizard_step.next_shut, title="Next",
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

"""An earlier run's checkpoints would leave nothing to train: say so, and offer the two ways out.

Training resumes from the latest checkpoint in the recipe's checkpoint
folders; at or beyond the plan's steps it trains nothing. The params and
preflight steps show this widget then: "Continue" raises the steps (the
screen applies the new values), "Start fresh" moves the old checkpoints into
a dated folder of the project home after a confirmation (nothing is deleted),
in a worker, and posts :class:`~hpcwizard.tui.messages.CheckpointsMovedAside`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Button, Static

from hpcwizard.checks.preflight import (
    FRESH_START_FOLDER,
    EarlierCheckpoints,
    continue_steps,
    describe_nothing_to_train,
    stages_trained,
    start_fresh,
)
from hpcwizard.errors import UserError
from hpcwizard.project.plan import Plan
from hpcwizard.project.resolved import resolve
from hpcwizard.tui.messages import CheckpointsMovedAside
from hpcwizard.tui.widgets.confirm import ConfirmScreen

if TYPE_CHECKING:
    from textual import getters

    from hpcwizard.tui.app import HpcWizardApp


class EarlierRunChoices(Vertical):
    """``✘ nothing would be trained: ...`` and [Continue: steps to N] [Start fresh…]; hidden otherwise."""

    if TYPE_CHECKING:  # self.app is the HpcWizardApp (for the type checker only: no check at run time)
        app = getters.app(HpcWizardApp)

    DEFAULT_CSS = """
    EarlierRunChoices { height: auto; display: none; }
    EarlierRunChoices.-shown { display: block; }
    EarlierRunChoices #earlier-message { width: 1fr; height: auto; color: $error; }
    EarlierRunChoices > Horizontal { height: auto; }
    EarlierRunChoices Button { margin-right: 2; }
    """

    class ContinueChosen(Message):
        """Raise these step parameters to these values."""

        def __init__(self, raised: dict[str, int]) -> None:
            super().__init__()
            self.raised = raised

    def __init__(self, *, id: str | None = None, say: bool = True) -> None:
        """``say``: write what is wrong above the buttons (False inside a preflight row, which says it)."""
        super().__init__(id=id)
        self.say = say
        self.plan: Plan | None = None
        self.raised: dict[str, int] = {}
        self.message = ""
        self.moving = False

    def compose(self) -> ComposeResult:
        message = Static("", id="earlier-message", markup=False)
        message.display = self.say
        yield message
        with Horizontal():
            yield Button("Continue", id="earlier-continue", compact=True)
            yield Button("Start fresh…", id="earlier-fresh", compact=True)

    @property
    def shown(self) -> bool:
        return self.has_class("-shown")

    def show(self, plan: Plan, found: list[EarlierCheckpoints]) -> bool:
        """Show the choices when ``found`` leaves ``plan`` nothing to train; True when shown."""
        self.plan = plan
        stuck = any(c.nothing_to_train for c in found)
        self.set_class(stuck, "-shown")
        if not stuck:
            self.raised = {}
            return False
        self.raised = continue_steps(found)
        self.message = "✘ " + describe_nothing_to_train(found, plan.project_home, stages_trained(resolve(plan)))
        self._update()
        return True

    def _update(self) -> None:
        if not self.query("#earlier-continue"):  # shown before its children composed: once they have
            self.call_after_refresh(self._update)
            return
        self.query_one("#earlier-message", Static).update(self.message)
        to = ", ".join(f"{name} {value}" for name, value in self.raised.items())
        button = self.query_one("#earlier-continue", Button)
        button.label = f"Continue: {to}" if to else "Continue: raise the steps"
        button.disabled = not self.raised

    @on(Button.Pressed, "#earlier-continue")
    def _continue(self, event: Button.Pressed) -> None:
        event.stop()
        if self.raised:
            self.post_message(self.ContinueChosen(dict(self.raised)))

    @on(Button.Pressed, "#earlier-fresh")
    def _fresh(self, event: Button.Pressed) -> None:
        event.stop()
        if self.plan is None or self.moving:
            return
        where = self.plan.project_home / FRESH_START_FOLDER
        body = (f"The checkpoint folders (and the weights converted from them) move into {where}/<date>/. "
                "Nothing is deleted; training then starts from step 0.")
        self.app.push_screen(ConfirmScreen("Start fresh: move the old checkpoints aside?", body,
                                           yes="Move them", no="Keep them", danger=False), self._confirmed)

    def _confirmed(self, yes: bool | None) -> None:
        if yes and self.plan is not None:
            self.moving = True
            self.move_aside(self.plan)

    @work(thread=True, exclusive=True, group="start-fresh", exit_on_error=False)
    def move_aside(self, plan: Plan) -> None:
        context = self.app.context
        try:
            moved = start_fresh(context.project_at(plan.project_home), resolve(plan))
        except UserError as exc:
            self.post_message(CheckpointsMovedAside([], error=exc.one_line()))
        else:
            self.post_message(CheckpointsMovedAside(moved))
        finally:
            self.moving = False

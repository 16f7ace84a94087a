"""The wizard mode's base screen: runs the steps, applies their answers, saves after each.

Each step is a :class:`~hpcwizard.tui.screens.step.StepScreen` pushed on top of
this one; when it dismisses, :meth:`WizardScreen.step_done` applies the answer
to the plan, saves the plan (``plan.yaml``) and ``state.wizard_step``, and
pushes the next step. Quitting anywhere loses nothing: the next
``hpcwizard --project-home X`` offers to resume at the saved step.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Center, Middle
from textual.screen import Screen
from textual.widgets import Footer, Label

from hpcwizard.errors import UserError
from hpcwizard.project import session, wizard_steps
from hpcwizard.project.home import Project
from hpcwizard.project.plan import Plan
from hpcwizard.project.wizard_steps import PREFLIGHT, RECIPE, SUBMIT, TOKEN, WELCOME, WizardStep, step_index
from hpcwizard.tui.choices import PLAN_CHOICES, ParamsChoice, PlanChoice, WelcomeChoice
from hpcwizard.tui.screens.step import BACK, Jump, StepScreen

if TYPE_CHECKING:
    from textual import getters

    from hpcwizard.tui.app import HpcWizardApp


DASHBOARD_MODULE = "hpcwizard.tui.screens.dashboard"


def step_screen_class(step: WizardStep) -> Callable[..., StepScreen]:
    """The screen class of ``step``, its module imported when the wizard first shows
    that step (what it needs, the hub client, Jinja, psutil…, too): the welcome opens fast."""
    screen: Callable[..., StepScreen] = getattr(importlib.import_module(step.screen_module), step.screen_class)
    return screen


def dashboard_available() -> str | None:
    """None when the dashboard can open; else why not."""
    try:
        importlib.import_module(DASHBOARD_MODULE)
    except ImportError as exc:
        return f"the dashboard is not available in this build ({exc})"
    return None


class WizardScreen(Screen[None]):
    """Holds the plan and the flow; the steps are screens pushed on top."""

    if TYPE_CHECKING:  # self.app is the HpcWizardApp (for the type checker only: no check at run time)
        app = getters.app(HpcWizardApp)

    BINDINGS = [Binding("q", "app.quit", "Quit")]
    DEFAULT_CSS = """
    WizardScreen #wizard-message { width: auto; max-width: 76; padding: 1 2; border: round $primary; }
    WizardScreen #wizard-message.error { border: round $error; }
    """

    def __init__(self) -> None:
        super().__init__()
        #: The project the wizard writes (None until the welcome step names its home).
        self.project: Project | None = None
        self.plan: Plan | None = None
        self.step: str = WELCOME.key  # a WizardStep's key, or session.DONE
        self.reached = 0
        self.token_user: str | None = None
        self.current: StepScreen | None = None
        self._took_lock: Project | None = None
        self._unwatch_lock: Callable[[], None] | None = None

    @property
    def project_home(self) -> Path | None:
        return self.project.home if self.project is not None else None

    def compose(self) -> ComposeResult:
        # Nothing of this screen shows under the steps: its message box (and a
        # footer for q) is mounted when it has something to say, so the first
        # paint does not lay out a hidden screen.
        return ()

    def on_mount(self) -> None:
        if self.app.context.project_home is not None:
            project = self.app.context.project
            try:
                # A folder that does not exist yet is locked (and so created)
                # only when the user goes on from the welcome step.
                if project.files.exists(project.home):
                    self._lock(project)
            except UserError as exc:
                self.show_message(f"{exc.one_line()}\n\nPress q to quit.", error=True)
                return
            self.project = project
        self.show(WELCOME.key)

    def on_unmount(self) -> None:
        if self.current is not None:  # quitting mid-step: its edits are kept like on Back
            self.keep_edits(self.current)
            self.current = None
        if self._unwatch_lock is not None:
            self._unwatch_lock()
            self._unwatch_lock = None
        if self._took_lock is not None:
            session.release_project_lock(self._took_lock)
            self._took_lock = None

    def _lock(self, project: Project) -> None:
        if session.acquire_project_lock(project):
            if self._took_lock is not None and self._took_lock.home != project.home:
                session.release_project_lock(self._took_lock)  # the welcome step moved to another folder
            self._took_lock = project
        if self._unwatch_lock is not None:
            self._unwatch_lock()
        # Remote mode: a reconnect that finds the project taken by another
        # hpcwizard makes this one read-only; say so at once, from any thread.
        from hpcwizard.tui.messages import ProjectLockLost

        self._unwatch_lock = session.watch_project_lock(project.home, lambda why: self.post_message(ProjectLockLost(why)))

    def on_project_lock_lost(self, message: Any) -> None:
        self.app.sub_title = "read-only: the project is open in another hpcwizard"
        self.notify(message.why, title="Read-only", severity="error", timeout=60, markup=False)

    def show_message(self, text: str, *, error: bool = False) -> None:
        label = next(self.query("#wizard-message").results(Label), None)
        if label is None:
            label = Label("", id="wizard-message", markup=False)
            self.mount(Middle(Center(label)), Footer())
        label.update(text)
        label.set_class(error, "error")

    # -- the flow ---------------------------------------------------------------

    def make_step(self, step: WizardStep, error: str | None = None) -> StepScreen:
        screen_class = step_screen_class(step)
        reached = self.reached
        if step is WELCOME:
            screen = screen_class(self.project_home, error=error, reached=reached)
        elif step is TOKEN:
            screen = screen_class(reached=reached)
        elif step is RECIPE:
            screen = screen_class(self.plan, default_namespace=self.token_user, reached=reached)
        else:
            assert self.plan is not None, f"step {step.key} needs a plan"
            screen = screen_class(self.plan, reached=reached)
        screen.flow = self
        return screen

    def show(self, key: str, error: str | None = None) -> None:
        step = wizard_steps.step_named(wizard_steps.step_to_show(key, self.plan))
        assert step is not None, f"no wizard step {key!r}"
        self.step = step.key
        self.reached = max(self.reached, step_index(step.key))
        if step is not WELCOME and self.project is not None:
            try:
                session.save_step(self.project, step.key)
            except UserError as exc:
                self.notify(exc.one_line(), title="Not saved", severity="error", timeout=10, markup=False)
        self.current = self.make_step(step, error)
        self.app.push_screen(self.current, self.step_done)

    def next_after(self, step: str) -> str:
        return wizard_steps.step_after(step, self.plan).key

    def previous_before(self, step: str) -> str:
        return wizard_steps.step_before(step, self.plan).key

    def step_done(self, result: Any) -> None:
        step = self.step
        left, self.current = self.current, None
        if result is BACK or isinstance(result, Jump):
            self.keep_edits(left)
        if result is BACK:
            self.show(self.previous_before(step))
            return
        if isinstance(result, Jump):
            self.show(result.step)
            return
        try:
            follow = self.apply(step, result)
        except UserError as exc:
            self.notify(exc.one_line(), title="Not saved", severity="error", timeout=10, markup=False)
            self.show(step)
            return
        if follow is not None:
            self.show(follow)

    def apply(self, step: str, result: Any) -> str | None:
        """Apply a step's answer, save, and say which step comes next (None: none)."""
        if step == WELCOME.key:
            return self._apply_welcome(result)
        if step == TOKEN.key:
            self.token_user = result
        elif step == SUBMIT.key:
            assert self.project is not None
            session.save_step(self.project, session.DONE)
            self.step = session.DONE
            self.open_dashboard()
            return None
        elif isinstance(result, PLAN_CHOICES):
            self._update_plan(result)
        if self.plan is not None:
            session.save_plan(self._project(), self.plan)
        if step == PREFLIGHT.key and isinstance(result, ParamsChoice):
            return PREFLIGHT.key  # "Continue" on an earlier run's checkpoints: the raised steps, then the check again
        return self.next_after(step)

    def _update_plan(self, choice: PlanChoice) -> None:
        """The plan with a plan step's answer (PlanError when it does not validate)."""
        assert self.project_home is not None
        self.plan = choice.updated(self.plan, self.project_home)

    def keep_edits(self, screen: StepScreen | None) -> None:
        """Save what a step left without Next holds (its ``kept`` answer): the welcome
        promises every answer is saved as you go. Never blocks leaving: an answer that
        does not validate as a whole is not saved, and the last saved one stays."""
        kept = screen.kept if screen is not None else None
        if not isinstance(kept, PLAN_CHOICES) or self.plan is None:
            return
        try:
            self._update_plan(kept)
            session.save_plan(self._project(), self._plan())
        except UserError as exc:
            self.notify(exc.one_line(), title="Edits not saved", severity="warning", timeout=10, markup=False)

    def _plan(self) -> Plan:
        assert self.plan is not None
        return self.plan

    def _project(self) -> Project:
        assert self.project is not None
        return self.project

    def _apply_welcome(self, choice: WelcomeChoice) -> str | None:
        context = self.app.context
        project = context.project_at(choice.project_home)
        try:
            self._lock(project)  # held already (the CLI's or ours): nothing happens
        except UserError as exc:  # open elsewhere (StateError), or a folder that cannot be made
            self.show(WELCOME.key, error=exc.one_line())
            return None
        self.project = project
        saved = choice.session
        if choice.open_dashboard:
            self.step = session.DONE
            self.open_dashboard()
            return None
        if choice.resume and saved.resumable:
            self.plan = saved.plan
            self.reached = max(self.reached, step_index(saved.step))
            if saved.step == session.DONE:
                return SUBMIT.key
            return saved.step
        session.forget_plan(project)
        self.plan = None
        self.reached = step_index(TOKEN.key)
        return TOKEN.key

    # -- palette and dashboard ----------------------------------------------------

    def reachable_steps(self) -> list[WizardStep]:
        return wizard_steps.reachable_steps(self.reached, self.plan)

    def jump(self, step: str) -> None:
        if self.current is not None and self.current.is_current:
            self.current.jump(step)

    def open_dashboard(self) -> None:
        why = dashboard_available()
        if why is not None:
            self.show_message(f"The chain is submitted.\n\n{why}.\nWatch it with `hpcwizard status`."
                              "\n\nPress q to quit.")
            self.notify(why, title="Dashboard", severity="warning", timeout=10, markup=False)
            return
        self.app.switch_mode("dashboard")


def find_wizard(app: Any) -> WizardScreen | None:
    for screen in app.screen_stack:
        if isinstance(screen, WizardScreen):
            return screen
    return None

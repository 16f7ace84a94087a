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
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.containers import Center, Middle
from textual.screen import Screen
from textual.widgets import Footer, Label

from hpcwizard.errors import UserError
from hpcwizard.project import session
from hpcwizard.project.plan import Plan
from hpcwizard.project.session import STEP_KEYS, STEPS, TITLES, step_index
from hpcwizard.tui.screens.step import BACK, Jump, StepScreen

if TYPE_CHECKING:
    from textual import getters

    from hpcwizard.tui.app import HpcWizardApp


@dataclass(frozen=True)
class WelcomeChoice:
    """What the welcome step decided: which project home, and resume or start over."""

    project_home: Path
    resume: bool
    session: session.SavedSession
    open_dashboard: bool = False


@dataclass(frozen=True)
class RecipeChoice:
    recipe: str
    variant: str | None
    hf_namespace: str | None


@dataclass(frozen=True)
class ParamsChoice:
    params: dict[str, Any]  # only the values that differ from the recipe's defaults


@dataclass(frozen=True)
class PathsChoice:
    data_root: Path
    download: str


@dataclass(frozen=True)
class SlurmChoice:
    setup: Any  # JobResources
    train: Any
    account: str | None
    qos: str | None


DASHBOARD_MODULE = "hpcwizard.tui.screens.dashboard"

#: Each step's screen class, as ``module:class`` under ``hpcwizard.tui.screens``:
#: a step's module (and what it needs: the hub client, Jinja, psutil…) is
#: imported when the wizard first shows that step, so the welcome step opens fast.
STEP_SCREENS = {
    "welcome": "welcome:WelcomeStep", "token": "token:TokenStep", "recipe": "recipe_step:RecipeStep",
    "params": "params_step:ParamsStep", "paths": "paths:PathsStep", "slurm": "slurm_step:SlurmStep",
    "preflight": "preflight_step:PreflightStep", "review": "review:ReviewStep",
    "download": "download_step:DownloadStep", "submit": "submit_step:SubmitStep",
}


def step_screen_class(step: str) -> Callable[..., StepScreen]:
    """The screen class of ``step``, its module imported on first use."""
    module, name = STEP_SCREENS[step].split(":")
    screen: Callable[..., StepScreen] = getattr(importlib.import_module(f"hpcwizard.tui.screens.{module}"), name)
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
        self.project_home: Path | None = None
        self.plan: Plan | None = None
        self.step: str = "welcome"
        self.reached = 0
        self.token_user: str | None = None
        self.current: StepScreen | None = None
        self._took_lock: Path | None = None
        self._unwatch_lock: Callable[[], None] | None = None

    def compose(self) -> ComposeResult:
        # Nothing of this screen shows under the steps: its message box (and a
        # footer for q) is mounted when it has something to say, so the first
        # paint does not lay out a hidden screen.
        return ()

    def on_mount(self) -> None:
        home = self.app.context.project_home
        if home is not None:
            try:
                # A folder that does not exist yet is locked (and so created)
                # only when the user goes on from the welcome step.
                if self.app.context.files.exists(home):
                    self._lock(home)
            except UserError as exc:
                self.show_message(f"{exc.one_line()}\n\nPress q to quit.", error=True)
                return
            self.project_home = home
        self.show("welcome")

    def on_unmount(self) -> None:
        if self.current is not None:  # quitting mid-step: its edits are kept like on Back
            self.keep_edits(self.step, self.current)
            self.current = None
        if self._unwatch_lock is not None:
            self._unwatch_lock()
            self._unwatch_lock = None
        if self._took_lock is not None:
            session.release_project_lock(self._took_lock)
            self._took_lock = None

    def _lock(self, home: Path) -> None:
        if session.acquire_project_lock(home, self.app.context.files):
            if self._took_lock is not None and self._took_lock != home:
                session.release_project_lock(self._took_lock)  # the welcome step moved to another folder
            self._took_lock = home
        if self._unwatch_lock is not None:
            self._unwatch_lock()
        # Remote mode: a reconnect that finds the project taken by another
        # hpcwizard makes this one read-only; say so at once, from any thread.
        from hpcwizard.tui.messages import ProjectLockLost

        self._unwatch_lock = session.watch_project_lock(home, lambda why: self.post_message(ProjectLockLost(why)))

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

    def make_step(self, step: str, error: str | None = None) -> StepScreen:
        screen = step_screen_class(step)
        reached = self.reached
        if step == "welcome":
            return screen(self.project_home, error=error, reached=reached)
        if step == "token":
            return screen(reached=reached)
        if step == "recipe":
            return screen(self.plan, default_namespace=self.token_user, reached=reached)
        assert self.plan is not None, f"step {step} needs a plan"
        return screen(self.plan, reached=reached)

    def show(self, step: str, error: str | None = None) -> None:
        if step_index(step) > step_index("recipe") and self.plan is None:
            step = "recipe"
        self.step = step
        self.reached = max(self.reached, step_index(step))
        if step != "welcome" and self.project_home is not None:
            try:
                session.save_step(self.project_home, step, self.app.context.files)
            except UserError as exc:
                self.notify(exc.one_line(), title="Not saved", severity="error", timeout=10, markup=False)
        self.current = self.make_step(step, error)
        self.app.push_screen(self.current, self.step_done)

    def next_after(self, step: str) -> str:
        following = STEP_KEYS[step_index(step) + 1]
        if following == "download" and (self.plan is None or self.plan.download != "login"):
            return "submit"
        return following

    def previous_before(self, step: str) -> str:
        before = STEP_KEYS[max(step_index(step) - 1, 0)]
        if before == "download" and (self.plan is None or self.plan.download != "login"):
            return "review"
        return before

    def step_done(self, result: Any) -> None:
        step = self.step
        left, self.current = self.current, None
        if result is BACK or isinstance(result, Jump):
            self.keep_edits(step, left)
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
        if step == "welcome":
            return self._apply_welcome(result)
        if step == "token":
            self.token_user = result
        elif step == "submit":
            assert self.project_home is not None
            session.save_step(self.project_home, session.DONE, self.app.context.files)
            self.step = session.DONE
            self.open_dashboard()
            return None
        elif step == "preflight" and isinstance(result, ParamsChoice):
            # "Continue" on an earlier run's checkpoints: the raised steps, then the check again.
            self._apply_params(result)
            session.save_plan(self._plan(), self.app.context.files)
            return "preflight"
        else:
            self._update_plan(step, result)
        if self.plan is not None:
            session.save_plan(self.plan, self.app.context.files)
        return self.next_after(step)

    def _update_plan(self, step: str, result: Any) -> None:
        """The plan with a plan step's answer (PlanError when it does not validate)."""
        if step == "recipe":
            self._apply_recipe(result)
        elif step == "params":
            self._apply_params(result)
        elif step == "paths":
            self.plan = self._plan().with_changes(data_root=result.data_root, download=result.download)
        elif step == "slurm":
            self.plan = self._plan().with_changes(setup=result.setup, train=result.train,
                                                  account=result.account, qos=result.qos)

    def keep_edits(self, step: str, screen: StepScreen | None) -> None:
        """Save what a step left without Next holds (its ``kept`` answer): the welcome
        promises every answer is saved as you go. Never blocks leaving: an answer that
        does not validate as a whole is not saved, and the last saved one stays."""
        kept = screen.kept if screen is not None else None
        if kept is None or self.plan is None:
            return
        try:
            self._update_plan(step, kept)
            session.save_plan(self._plan(), self.app.context.files)
        except UserError as exc:
            self.notify(exc.one_line(), title="Edits not saved", severity="warning", timeout=10, markup=False)

    def _plan(self) -> Plan:
        assert self.plan is not None
        return self.plan

    def _apply_welcome(self, choice: WelcomeChoice) -> str | None:
        try:
            self._lock(choice.project_home)  # held already (the CLI's or ours): nothing happens
        except UserError as exc:  # open elsewhere (StateError), or a folder that cannot be made
            self.show("welcome", error=exc.one_line())
            return None
        self.project_home = choice.project_home
        saved = choice.session
        if choice.open_dashboard:
            self.step = session.DONE
            self.open_dashboard()
            return None
        if choice.resume and saved.resumable:
            self.plan = saved.plan
            self.reached = max(self.reached, step_index(saved.step))
            if saved.step == session.DONE:
                return "submit"
            return saved.step
        session.forget_plan(choice.project_home, self.app.context.files)
        self.plan = None
        self.reached = 1
        return "token"

    def _apply_recipe(self, choice: RecipeChoice) -> None:
        from hpcwizard.project.recipe import get_recipe

        assert self.project_home is not None
        recipe = get_recipe(choice.recipe)
        if self.plan is None or self.plan.recipe != choice.recipe:
            kept: dict[str, Any] = {}
            if self.plan is not None:
                kept = {"data_root": str(self.plan.data_root), "download": self.plan.download,
                        "account": self.plan.account, "qos": self.plan.qos}
            self.plan = recipe.default_plan(self.project_home, **{
                **kept, "variant": choice.variant, "hf_namespace": choice.hf_namespace})
        else:
            self.plan = self.plan.with_changes(variant=choice.variant, hf_namespace=choice.hf_namespace)

    def _apply_params(self, choice: ParamsChoice) -> None:
        from hpcwizard.project.recipe import get_recipe

        plan = self._plan()
        get_recipe(plan.recipe).resolve_params(choice.params)  # PlanError names a bad one: not saved
        self.plan = plan.with_changes(params=dict(choice.params))

    # -- palette and dashboard ----------------------------------------------------

    def reachable_steps(self) -> list[str]:
        steps = [s.key for s in STEPS[1:] if step_index(s.key) <= self.reached]
        if self.plan is None:
            steps = [s for s in steps if step_index(s) <= step_index("recipe")]
        if self.plan is not None and self.plan.download != "login":
            steps = [s for s in steps if s != "download"]
        return steps

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


class WizardCommands(Provider):
    """Palette entries: go back to a step already reached, open the dashboard
    (quitting is the app's own "Quit hpcwizard")."""

    def _commands(self) -> list[tuple[str, str, Callable[[], Any]]]:
        wizard = find_wizard(self.app)
        commands: list[tuple[str, str, Callable[[], Any]]] = []
        if wizard is not None:
            for key in wizard.reachable_steps():
                if key == wizard.step:
                    continue
                number = step_index(key) + 1
                commands.append((f"Go to step {number}: {TITLES[key]}", "return to this step; answers are kept",
                                 partial(wizard.jump, key)))
            commands.append(("Open the dashboard", "watch the submitted jobs of this project",
                             wizard.open_dashboard))
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

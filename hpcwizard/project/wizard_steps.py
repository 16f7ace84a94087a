"""The wizard's steps, in order: one registry for the flow, the step header, the
palette, the welcome's resume text and the saved session.

Each :class:`WizardStep` says what it is called, what opens its Next when it is
shut, which screen shows it, and when the flow goes through it
(:meth:`WizardStep.applies`). No Textual here: the session (core) reads the
order and the resume rule from it. The screens are named, not imported, so a
step's module (and what it needs: the hub client, Jinja, psutil…) is imported
only when the wizard first shows that step.

The keys are what ``state.wizard_step`` holds on disk: renaming one would send
every saved session of that step back to the welcome step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hpcwizard.project.plan import Plan

#: ``state.wizard_step`` once the chain is submitted (no step: the dashboard's turn).
DONE = "done"


def _every_plan(plan: Plan) -> bool:
    return True


def _prepares_on_login_node(plan: Plan) -> bool:
    # `download: job` prepares in the setup job, on a compute node: nothing to do here.
    return plan.download == "login"


@dataclass(frozen=True)
class WizardStep:
    key: str  # the value saved in state.wizard_step: never renamed
    title: str
    screen: str  # the screen class, "module:Class" under hpcwizard.tui.screens
    #: What opens this step's Next when it is shut (ctrl+n on a shut Next says so).
    next_shut: str = "finish this step first"
    #: Shown only once there is a plan (the recipe step makes it).
    needs_plan: bool = True
    #: Given a plan, whether the flow goes through this step.
    when: Callable[[Plan], bool] = _every_plan

    def applies(self, plan: Plan | None) -> bool:
        """Whether the flow goes through this step with ``plan`` (None: no recipe chosen yet)."""
        if plan is None:
            return not self.needs_plan
        return self.when(plan)

    @property
    def screen_module(self) -> str:
        return f"hpcwizard.tui.screens.{self.screen.partition(':')[0]}"

    @property
    def screen_class(self) -> str:
        return self.screen.partition(":")[2]


WELCOME = WizardStep("welcome", "Welcome", "welcome:WelcomeStep",
                     next_shut="the project home is still being read", needs_plan=False)
TOKEN = WizardStep("token", "Hugging Face token", "token:TokenStep",
                   next_shut="check a token first: paste it and press Enter, or choose 'Use this token'",
                   needs_plan=False)
RECIPE = WizardStep("recipe", "Recipe and variant", "recipe_step:RecipeStep", needs_plan=False)
PARAMS = WizardStep("params", "Training parameters", "params_step:ParamsStep",
                    next_shut="fix the values marked ✘ first")
PATHS = WizardStep("paths", "Folders and download", "paths:PathsStep")
SLURM = WizardStep("slurm", "Slurm resources", "slurm_step:SlurmStep",
                   next_shut="fix the rows marked ✘ first (or wait for the partitions to load)")
PREFLIGHT = WizardStep("preflight", "Preflight checks", "preflight_step:PreflightStep",
                       next_shut="a check blocks (✘): fix it and press r to check again, "
                                 "or wait for the checks to finish")
REVIEW = WizardStep("review", "Review the scripts", "review:ReviewStep",
                    next_shut="the scripts are still being rendered")
DOWNLOAD = WizardStep("download", "Prepare", "download_step:DownloadStep",
                      next_shut="preparing has not finished: r resumes it", when=_prepares_on_login_node)
SUBMIT = WizardStep("submit", "Submit", "submit_step:SubmitStep", next_shut="the chain is being submitted")

STEPS: tuple[WizardStep, ...] = (WELCOME, TOKEN, RECIPE, PARAMS, PATHS, SLURM, PREFLIGHT, REVIEW, DOWNLOAD, SUBMIT)
_BY_KEY = {step.key: step for step in STEPS}


def step_named(key: str | None) -> WizardStep | None:
    """The step saved as ``key``; None for :data:`DONE`, nothing saved, or a key this version does not know."""
    return _BY_KEY.get(key) if key is not None else None


def step_index(key: str | None) -> int:
    """Where ``key`` stands in :data:`STEPS` (0 for a key not known; :data:`DONE` after the last)."""
    if key == DONE:
        return len(STEPS)
    step = step_named(key)
    return STEPS.index(step) if step is not None else 0


def step_after(key: str, plan: Plan | None) -> WizardStep:
    """The step the flow goes on to from ``key`` with ``plan``."""
    for step in STEPS[step_index(key) + 1:]:
        if step.applies(plan):
            return step
    raise LookupError(f"no step after {key}")


def step_before(key: str, plan: Plan | None) -> WizardStep:
    """The step Back goes to from ``key`` with ``plan`` (the welcome step from the first)."""
    earlier = [step for step in STEPS[:step_index(key)] if step.applies(plan)]
    return earlier[-1] if earlier else WELCOME


def step_to_show(key: str, plan: Plan | None) -> str:
    """The step to show (or resume at) for ``key``: a step that needs a plan,
    without one, is the recipe step, which makes it."""
    step = step_named(key)
    if step is not None and step.needs_plan and plan is None:
        return RECIPE.key
    return key


def reachable_steps(reached: int, plan: Plan | None) -> list[WizardStep]:
    """The steps the palette can go back to: reached already, and on the flow for ``plan``."""
    return [step for step in STEPS[1:] if step_index(step.key) <= reached and step.applies(plan)]

"""The wizard's session on disk: which step, which answers, and who holds the project.

No Textual here: the CLI takes the project lock through :func:`acquire_project_lock`
before starting the TUI, and tests read and write sessions directly.

- The answers are the plan, ``<project_home>/hpcwizard/plan.yaml``, written with
  :meth:`Plan.to_yaml` (exactly the documented format), written atomically.
- The step to resume at is ``state.wizard_step`` (``update_state``).
- Before the recipe is chosen there is no plan yet (a plan needs a recipe):
  only the step is saved. The steps, their keys and which need a plan are
  :mod:`hpcwizard.project.wizard_steps`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hpcwizard.errors import UserError
from hpcwizard.project.files import ProjectFiles, expand_home
from hpcwizard.project.home import Project
from hpcwizard.project.layout import ProjectLayout
from hpcwizard.project.plan import Plan, PlanError
from hpcwizard.project.state import ProjectLock
from hpcwizard.project.wizard_steps import DONE as DONE  # what state.wizard_step holds once submitted
from hpcwizard.project.wizard_steps import TOKEN, WELCOME, step_to_show

if TYPE_CHECKING:
    from hpcwizard.project.recipe import Recipe


def plan_path(project_home: Path) -> Path:
    return ProjectLayout(project_home).plan_path


@dataclass(frozen=True)
class SavedSession:
    """What an earlier wizard left in a project home."""

    project_home: Path
    step: str | None  # None: nothing saved
    plan: Plan | None
    problem: str | None = None  # the saved plan could not be read: why
    submitted: int = 0  # chains submitted from this project (by the wizard or the CLI)
    exists: bool = True  # False: the folder is created only when the user goes on
    jobs_submitted: int = 0  # the jobs of those chains

    @property
    def resumable(self) -> bool:
        return self.step is not None and self.step != WELCOME.key


def read_session(project: Project) -> SavedSession:
    """The saved step and plan of a project home (disk work: call it from a worker)."""
    problem = None
    files, home = project.files, project.home
    if not files.exists(home):
        return SavedSession(home, None, None, exists=False)
    try:
        state = project.load_state()
    except UserError as exc:
        return SavedSession(home, None, None, exc.one_line())
    plan = None
    path = project.layout.plan_path
    if files.exists(path):
        # The recipes and PyYAML only when there is a plan to read (the
        # welcome step's start needs neither).
        import yaml

        from hpcwizard.project.recipe import plan_for_recipe_from_dict

        try:
            plan, _ = plan_for_recipe_from_dict(yaml.safe_load(files.read_text(path)))
        except (PlanError, yaml.YAMLError, OSError) as exc:
            problem = f"the saved plan {path} cannot be used: {exc}"
    step = state.wizard_step
    if step is not None:
        step = step_to_show(step, plan)  # answers after the recipe need a plan to stand on
    return SavedSession(home, step, plan, problem, len(state.submissions),
                        jobs_submitted=sum(len(sub.jobs) for sub in state.submissions))


def save_step(project: Project, step: str) -> None:
    ensure_writable(project.home)
    project.update_state(lambda state: setattr(state, "wizard_step", step))


def save_plan(project: Project, plan: Plan) -> Path:
    """Save ``plan`` (a plan of ``project``) as the project's ``plan.yaml``."""
    ensure_writable(project.home)
    path = project.layout.plan_path
    project.files.write_text_atomic(path, plan.to_yaml())
    return path


def forget_plan(project: Project) -> None:
    """Start over: the saved answers go, the submissions stay in the state."""
    ensure_writable(project.home)
    with contextlib.suppress(FileNotFoundError):
        project.files.remove(project.layout.plan_path)
    save_step(project, TOKEN.key)


def recipe_of(plan: Plan) -> Recipe:
    from hpcwizard.project.recipe import all_recipes

    return all_recipes()[plan.recipe]


def check_folder(text: str, files: ProjectFiles) -> tuple[Path | None, str | None]:
    """A folder the user typed: absolute, and writable or creatable. ``(path, None)`` or ``(None, why)``.

    Remote mode: a folder of the login node (``~`` is its home), probed there."""
    text = text.strip()
    if not text:
        return None, "enter a folder"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
        return None, "the path contains a control character"
    if files.remote:
        path = Path(expand_home(files, text))
        example = f"{files.home()}/{text}"
    else:
        path = Path(os.path.expanduser(text))
        example = str(Path.cwd() / text)
    if not path.is_absolute():
        return None, f"use an absolute path, e.g. {example}"
    why = files.creatable(path)
    if why is not None:
        return None, why
    return Path(os.path.normpath(path)), None


# -- the project lock ------------------------------------------------------------

_HELD: dict[Path, ProjectLock] = {}


def acquire_project_lock(project: Project) -> bool:
    """Hold the wizard lock of ``project`` for this process.

    Returns True when this call took it, False when this process held it
    already (the CLI takes it before the TUI starts; the wizard asks again).
    Raises :class:`hpcwizard.project.state.StateError` when another process holds it.
    """
    home = project.home if project.files.remote else project.home.absolute()
    if home in _HELD:
        return False
    lock = ProjectLock(ProjectLayout(home).state_dir, project.files)  # of the absolute home, as held
    lock.acquire()
    _HELD[home] = lock
    return True


def _held_lock(project_home: Path) -> ProjectLock | None:
    return _HELD.get(Path(project_home)) or _HELD.get(Path(project_home).absolute())


def ensure_writable(project_home: Path) -> None:
    """Refuse (:class:`~hpcwizard.project.state.ProjectReadOnly`) to write a
    project whose wizard lock this process lost to another hpcwizard while
    its SSH connection was down. A project this process does not hold the
    lock of (the CLI's commands) is not checked here."""
    lock = _held_lock(project_home)
    if lock is not None:
        lock.ensure()


def watch_project_lock(project_home: Path, listener: Callable[[str], object]) -> Callable[[], None]:
    """Call ``listener(why)`` (from any thread) if the wizard lock of
    ``project_home`` is lost; returns the function that stops watching."""
    lock = _held_lock(project_home)
    if lock is None:
        return lambda: None
    lock.on_lost.append(listener)

    def stop() -> None:
        if listener in lock.on_lost:
            lock.on_lost.remove(listener)

    return stop


def release_project_lock(project: Project) -> None:
    lock = _HELD.pop(project.home, None) or _HELD.pop(project.home.absolute(), None)
    if lock is not None:
        lock.release()

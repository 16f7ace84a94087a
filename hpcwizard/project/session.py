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
from hpcwizard.project.files import ProjectFiles, expand_home, local_or
from hpcwizard.project.home import ProjectLayout
from hpcwizard.project.plan import Plan, PlanError
from hpcwizard.project.state import ProjectLock, load_state, update_state
from hpcwizard.project.wizard_steps import DONE as DONE  # what state.wizard_step holds once submitted
from hpcwizard.project.wizard_steps import TOKEN, WELCOME, step_to_show

if TYPE_CHECKING:
    from hpcwizard.project.recipe import Recipe


def state_dir(project_home: Path) -> Path:
    return ProjectLayout(project_home).state_dir


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


def read_session(project_home: Path, files: ProjectFiles | None = None) -> SavedSession:
    """The saved step and plan of a project home (disk work: call it from a worker)."""
    problem = None
    files = local_or(files)
    if not files.exists(project_home):
        return SavedSession(project_home, None, None, exists=False)
    try:
        state = load_state(state_dir(project_home), files)
    except UserError as exc:
        return SavedSession(project_home, None, None, exc.one_line())
    plan = None
    path = plan_path(project_home)
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
    return SavedSession(project_home, step, plan, problem, len(state.submissions),
                        jobs_submitted=sum(len(sub.jobs) for sub in state.submissions))


def save_step(project_home: Path, step: str, files: ProjectFiles | None = None) -> None:
    ensure_writable(project_home)
    update_state(state_dir(project_home), lambda state: setattr(state, "wizard_step", step), files)


def save_plan(plan: Plan, files: ProjectFiles | None = None) -> Path:
    ensure_writable(plan.project_home)
    path = plan_path(plan.project_home)
    local_or(files).write_text_atomic(path, plan.to_yaml())
    return path


def forget_plan(project_home: Path, files: ProjectFiles | None = None) -> None:
    """Start over: the saved answers go, the submissions stay in the state."""
    ensure_writable(project_home)
    with contextlib.suppress(FileNotFoundError):
        local_or(files).remove(plan_path(project_home))
    save_step(project_home, TOKEN.key, files)


def recipe_of(plan: Plan) -> Recipe:
    from hpcwizard.project.recipe import all_recipes

    return all_recipes()[plan.recipe]


def check_folder(text: str, files: ProjectFiles | None = None) -> tuple[Path | None, str | None]:
    """A folder the user typed: absolute, and writable or creatable. ``(path, None)`` or ``(None, why)``.

    Remote mode: a folder of the login node (``~`` is its home), probed there."""
    text = text.strip()
    if not text:
        return None, "enter a folder"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
        return None, "the path contains a control character"
    files = local_or(files)
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


def acquire_project_lock(project_home: Path, files: ProjectFiles | None = None) -> bool:
    """Hold the wizard lock of ``project_home`` for this process.

    Returns True when this call took it, False when this process held it
    already (the CLI takes it before the TUI starts; the wizard asks again).
    Raises :class:`hpcwizard.project.state.StateError` when another process holds it.
    """
    home = Path(project_home) if files is not None and files.remote else Path(project_home).absolute()
    if home in _HELD:
        return False
    lock = ProjectLock(state_dir(home), files)
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


def release_project_lock(project_home: Path) -> None:
    lock = _HELD.pop(Path(project_home), None) or _HELD.pop(Path(project_home).absolute(), None)
    if lock is not None:
        lock.release()

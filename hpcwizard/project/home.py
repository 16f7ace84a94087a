"""A project home and everything hpcwizard keeps in it, in one place.

A project home is the folder of one training project (``project_home`` in
the plan)::

    <home>/
      hpcwizard/              the state folder (:attr:`ProjectLayout.state_dir`)
        plan.yaml             the wizard's answers
        state.json            what was submitted and downloaded
        runs/<stamp>/         the scripts of each submitted chain
        continuation/         per train job: its segments
        preview/              the review step's rendering
        download/plan.yaml    the plan a remote prepare runs with
        prepare/              the prepare job's rendering
      logs/                   every job's log, <slurm name>-<job id>.out/.err

:class:`~hpcwizard.project.layout.ProjectLayout` is that tree as paths (no
I/O, a leaf module that plan.py and the jobs' modules build on), the only
place that spells them. :class:`Project` adds where the files live (this machine or the
login node over SSH: a :class:`~hpcwizard.project.files.ProjectFiles`) and how
commands run there (a :class:`~hpcwizard.shell.Runner`), and reads and writes
the project's state through them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpcwizard.errors import UserError
from hpcwizard.project.files import LOCAL_FILES, ProjectFiles, expand_home
from hpcwizard.project.layout import ProjectLayout
from hpcwizard.project.state import ProjectState, load_state, update_state

if TYPE_CHECKING:
    from hpcwizard.project.plan import Plan
    from hpcwizard.project.recipe import Recipe
    from hpcwizard.project.resolved import ResolvedPlan
    from hpcwizard.shell import Runner

def home_path(text: str, files: ProjectFiles = LOCAL_FILES) -> Path:
    """The project home (or any folder) the user typed, as an absolute path
    of the machine holding the files: ``~`` is that machine's home (the login
    node's over SSH), and a relative path is taken from there (remote) or from
    the current folder (here). Never resolved: symlinks stay as typed."""
    if files.remote:
        path = Path(expand_home(files, text))
        return path if path.is_absolute() else Path(files.home()) / path
    return Path(os.path.expanduser(text)).absolute()


@dataclass
class Project:
    """One project home, its files (here or on the login node) and the
    runner of the machine its jobs are submitted from."""

    home: Path
    files: ProjectFiles = LOCAL_FILES
    runner: Runner | None = None
    layout: ProjectLayout = field(init=False)

    def __post_init__(self) -> None:
        self.home = Path(self.home)
        self.layout = ProjectLayout(self.home)

    @classmethod
    def at(cls, text: str, files: ProjectFiles = LOCAL_FILES, runner: Runner | None = None) -> Project:
        """The project at a folder the user typed (see :func:`home_path`)."""
        return cls(home_path(text, files), files, runner)

    @property
    def state_dir(self) -> Path:
        return self.layout.state_dir

    @property
    def logs_dir(self) -> Path:
        return self.layout.logs_dir

    def submit_runner(self) -> Runner:
        """The runner of the machine the project's jobs are submitted from; for
        the calls that run commands there (checks, reconciling a submit)."""
        if self.runner is None:
            raise ValueError("this call needs the project's runner: the machine its jobs are submitted from")
        return self.runner

    def is_initialised(self) -> bool:
        """Whether hpcwizard has recorded anything here: a state, or the
        journal of a first submit that was interrupted (which ``status`` settles)."""
        return any(self.files.exists(path) for path in (self.layout.state_path, self.layout.submit_journal))

    def load_state(self) -> ProjectState:
        return load_state(self.state_dir, self.files)

    def update_state(self, change: Callable[[ProjectState], Any]) -> ProjectState:
        """Apply ``change`` to the saved state under the state lock; save and return it."""
        return update_state(self.state_dir, change, self.files)

    def resolve(self, plan: Plan, recipe: Recipe | None = None) -> ResolvedPlan:
        """``plan`` (a plan of this project) joined with its recipe (looked up
        by name unless given) and resolved once: what rendering, the checks,
        submit and prepare take."""
        from hpcwizard.project.resolved import resolve  # recipes and templates: when first needed

        if Path(plan.project_home) != self.home:
            raise UserError(f"the plan's project_home {plan.project_home} is not this project's {self.home}",
                            "this is a bug; report it")
        return resolve(plan, recipe)

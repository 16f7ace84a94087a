"""The paths of a project home's tree (see :mod:`hpcwizard.project.home` for the
tree and :class:`~hpcwizard.project.home.Project` for its I/O): no I/O here,
and no imports of the project's other modules, so the plan and the jobs'
modules can use it without importing what a Project resolves plans with.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hpcwizard.project.state import STATE_FILE

#: The state folder's name inside a project home.
STATE_FOLDER = "hpcwizard"
LOGS_FOLDER = "logs"
PLAN_FILE = "plan.yaml"
RUNS_FOLDER = "runs"
CONTINUATION_FOLDER = "continuation"
PREVIEW_FOLDER = "preview"
#: Left by a submit until its chain is recorded (:mod:`hpcwizard.jobs.journal`).
JOURNAL_FILE = "submit-journal.json"


@dataclass(frozen=True)
class ProjectLayout:
    """Where each thing of a project lives; paths of the machine holding it."""

    home: Path

    @property
    def state_dir(self) -> Path:
        """Where hpcwizard keeps the plan, the state and the rendered scripts."""
        return self.home / STATE_FOLDER

    @property
    def plan_path(self) -> Path:
        return self.state_dir / PLAN_FILE

    @property
    def state_path(self) -> Path:
        return self.state_dir / STATE_FILE

    @property
    def runs_dir(self) -> Path:
        """One folder per submitted chain, holding its scripts and plan."""
        return self.state_dir / RUNS_FOLDER

    @property
    def submit_journal(self) -> Path:
        """An interrupted submit's journal (see :mod:`hpcwizard.jobs.journal`)."""
        return self.state_dir / JOURNAL_FILE

    @property
    def continuation_dir(self) -> Path:
        """A train job's segment records (``<job name>.json``)."""
        return self.state_dir / CONTINUATION_FOLDER

    @property
    def preview_dir(self) -> Path:
        return self.state_dir / PREVIEW_FOLDER

    @property
    def prepare_dir(self) -> Path:
        """The prepare job's rendering."""
        return self.state_dir / "prepare"

    @property
    def remote_prepare_plan(self) -> Path:
        """The plan a prepare on the login node runs with (``--host``)."""
        return self.state_dir / "download" / PLAN_FILE

    @property
    def logs_dir(self) -> Path:
        return self.home / LOGS_FOLDER

    def log_path(self, slurm_name: str, job_id: str, stream: str = "out") -> Path:
        """A job's log as the scripts name it: ``logs/%x-%j.out`` (``.err``)."""
        return self.logs_dir / f"{slurm_name}-{job_id}.{stream}"

    def node_log_path(self, slurm_name: str, job_id: str, node: int) -> Path:
        """Node ``node``'s output of a job on several nodes (stdout and stderr
        together): ``logs/%x-%j.node<K>.out``, K its ``$SLURM_NODEID``."""
        return self.logs_dir / f"{slurm_name}-{job_id}.node{node}.out"

"""Render a plan and its recipe into sbatch scripts and config files.

Every value that reaches a shell goes through the ``sh`` filter
(:func:`shlex.quote`); values that go into ``#SBATCH`` directives, which are
not shell and cannot be quoted, were validated by :mod:`hpcwizard.project.plan`.
Templates use ``StrictUndefined`` so a typo in a template is an error at
render time, not an empty string in a job script.

The token is not a template variable at all: jobs read it from the standard
token file at run time, so no rendering mistake can leak it.
"""

from __future__ import annotations

import contextlib
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpcwizard.checks.hub import chosen_endpoint
from hpcwizard.errors import UserError
from hpcwizard.jobs.continuation import Continuation, load_continuation
from hpcwizard.project.files import ProjectFiles
from hpcwizard.project.plan import JobResources
from hpcwizard.project.recipe import SHARED_FOLDER, Recipe, templates_root
from hpcwizard.project.resolved import ResolvedPlan

if TYPE_CHECKING:
    import jinja2

    from hpcwizard.project.home import Project

# A path that can stand unquoted in an #SBATCH directive.
_DIRECTIVE_SAFE = re.compile(r"^[A-Za-z0-9_./+-]+$")


@dataclass(frozen=True)
class RenderedJob:
    """One job of the chain as rendered: its script name and Slurm settings."""

    index: int
    name: str
    slurm_name: str
    script: str
    resources: JobResources
    description: str


@dataclass(frozen=True)
class RenderedFile:
    name: str
    text: str
    executable: bool = False


@dataclass(frozen=True)
class Rendering:
    """Everything ``render`` produces for one plan."""

    jobs: tuple[RenderedJob, ...]
    files: tuple[RenderedFile, ...]
    #: where the jobs' ``--output``/``--error`` (``logs/%x-%j.*``) land: the
    #: project home's logs/, since the header's ``--chdir`` is the project home
    #: (or, for a path a directive cannot hold, the folder sbatch runs in,
    #: which ``submit`` sets to the project home).
    logs_dir: Path | None = None

    def write(self, out_dir: Path, files: ProjectFiles, *, logs: bool = True) -> list[Path]:
        """Write every file atomically into ``out_dir``; return the paths.

        ``files``: where (the project's: this machine, or the login node in
        remote mode, where ``out_dir`` is a path of the login node). ``logs``: also create
        the logs folder: Slurm opens a job's log before the script runs and
        creates no folder, so a job submitted by hand (``sbatch`` of a written
        script) without it fails with no log at all. Best effort: a project
        home that cannot be written is the check's to report (and submit's to
        refuse), not a reason to withhold the scripts. A render that only
        tests the scripts (the check's) passes ``logs=False``."""
        # A unique temporary name per file (never a predictable one that a
        # symlink planted in a shared folder could redirect), then rename.
        files.mkdir_p(out_dir)
        for file in self.files:
            files.write_text_atomic(out_dir / file.name, file.text, mode=0o755 if file.executable else 0o644)
        if logs and self.logs_dir is not None:
            with contextlib.suppress(OSError, UserError):
                files.mkdir_p(self.logs_dir)
        return [out_dir / file.name for file in self.files]


def hpcwizard_command() -> list[str]:
    """How a job calls this same hpcwizard installation, by absolute path.

    In remote mode the jobs must call the LOGIN NODE's installation instead:
    callers pass ``render(..., hpcwizard_cmd=[remote path])``."""
    return [str(Path(sys.executable).absolute()), "-m", "hpcwizard"]


def _sh(value: Any) -> str:
    return shlex.quote(str(value))


def _environment(recipe: Recipe) -> jinja2.Environment:
    import jinja2  # imported when a plan is first rendered, not at startup

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(recipe.folder), str(templates_root() / SHARED_FOLDER)]),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters["sh"] = _sh
    return env


def render(project: Project, resolved: ResolvedPlan, out_dir: Path, *, hf_endpoint: str | None = None,
           hpcwizard_cmd: list[str] | None = None, continuation: Continuation | None = None) -> Rendering:
    """Render ``project``'s plan ``resolved``; ``out_dir`` is where the files will live.

    ``out_dir`` must be known here because the scripts refer to the plan copy
    written beside them by absolute path (Slurm runs a copy of the script from
    its spool directory, so a script cannot find its own folder).

    ``continuation``: how the train job continues across its time limit;
    by default :func:`hpcwizard.jobs.continuation.load_continuation` reading
    the project (the rate an earlier run of it logged, the check's answer
    whether the cluster requeues) through its files: this machine's, or the
    login node's in remote mode.
    """
    plan, recipe = resolved.plan, resolved.recipe
    if Path(plan.project_home) != project.home:
        raise UserError(f"the plan's project_home {plan.project_home} is not this project's {project.home}",
                        "this is a bug; report it")
    out_dir = Path(out_dir)
    if not out_dir.is_absolute():  # a local relative --out; remote ones arrive absolute
        out_dir = out_dir.absolute()
    env = _environment(recipe)
    jobs = tuple(
        RenderedJob(
            index=i,
            name=job.name,
            slurm_name=f"{plan.job_prefix}{job.name}",
            script=f"{i:02d}_{job.name}.sbatch",
            resources=getattr(plan, job.resources),
            description=job.description,
        )
        for i, job in enumerate(recipe.jobs, start=1)
    )
    endpoint = chosen_endpoint(hf_endpoint)
    # What templates see (sbatch_templates/README.md "Templates"): every path
    # recipe.yaml declares comes from here, never spelled again in a template.
    context: dict[str, Any] = {
        "plan": plan,
        "recipe": recipe,
        "variant": plan.variant,
        "params": dict(resolved.params),
        "repos": resolved.repos_by_name,
        "environment": resolved.environment,
        "code": resolved.code,
        "checkpoint_dirs": resolved.checkpoint_dirs,
        "folders": resolved.folders,
        "paths": {
            "project_home": plan.project_home,
            "data_root": plan.data_root,
            "logs_dir": plan.logs_dir,
            "continuation_dir": plan.layout.continuation_dir,
            "out_dir": out_dir,
            "plan_file": out_dir / "plan.yaml",
        },
        "chdir_directive": str(plan.project_home) if _DIRECTIVE_SAFE.match(str(plan.project_home)) else None,
        "hpcwizard_cmd": list(hpcwizard_cmd) if hpcwizard_cmd else hpcwizard_command(),
        "hf_endpoint": endpoint,
        "continuation": continuation if continuation is not None else load_continuation(project, resolved),
    }
    rendered = [RenderedFile("plan.yaml", plan.to_yaml())]
    for generated in recipe.files:
        rendered.append(RenderedFile(generated.name, _render_one(env, generated.template, context)))
    for job, recipe_job in zip(jobs, recipe.jobs):
        text = _render_one(env, recipe_job.template, {**context, "job": job})
        rendered.append(RenderedFile(job.script, text, executable=True))
    return Rendering(jobs, tuple(rendered), logs_dir=plan.logs_dir)


def _render_one(env: jinja2.Environment, template: str, context: dict[str, Any]) -> str:
    import jinja2  # loaded already by _environment

    try:
        return env.get_template(template).render(context)
    except jinja2.UndefinedError as exc:
        raise UserError(f"template {template} uses an undefined value: {exc.message}",
                        "this is a bug in the recipe; report it") from None
    except jinja2.TemplateError as exc:
        raise UserError(f"template {template} is broken: {exc}", "this is a bug in the recipe; report it") from None

"""``hpcwizard prepare``: everything that needs the network, done where the network is.

Three parts, in this order (the environment may be built from a downloaded
file):

- **files**: the plan's Hugging Face repos, resumable at the byte, verified,
  unpacked (:mod:`hpcwizard.download`);
- **code**: the recipe's git repository at its pinned commit (:mod:`.code`);
- **environment**: the training environment, conda or venv (:mod:`.environment`).

Each part is skipped when its stamp says it is done with the same inputs. On
the login node (``download: login``) ``prepare`` builds everything; the setup
job of such a plan runs ``prepare --in-job``, which only VERIFIES (no network:
``PIP_NO_INDEX``, ``HF_HUB_OFFLINE``, no git fetch) and fails with one line
naming the part that was not prepared. For ``download: job`` the setup job
builds everything itself on a compute node that has the network.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional

from hpcwizard.errors import UserError
from hpcwizard.prepare.code import code_problem, prepare_code
from hpcwizard.prepare.environment import build_environment, environment_problem, read_requirements
from hpcwizard.prepare.steps import PrepareError
from hpcwizard.project.prepare_spec import CodeSpec, EnvironmentSpec

if TYPE_CHECKING:
    from hpcwizard.download.progress import ProgressCallback
    from hpcwizard.project.files import TextSink
    from hpcwizard.project.home import Project
    from hpcwizard.project.plan import Plan
    from hpcwizard.project.resolved import ResolvedPlan

PARTS = ("files", "code", "environment")
#: ``on_line(part, line)``: one line of a part's progress (git, pip, conda output).
PartLineCallback = Callable[[str, str], None]


@dataclass(frozen=True)
class PreparePart:
    """One part of a plan's preparation, as the wizard and the CLI list it."""

    name: str          # files | code | environment
    title: str         # e.g. "FFF-VDI at bf47e7573232"
    problem: Optional[str] = None  # offline check: why it is not ready (None: ready)


@dataclass
class PrepareSummary:
    done: list[str] = field(default_factory=list)  # one short line per part

    def one_line(self) -> str:
        return "; ".join(self.done)


def _generated_requirements(resolved: "ResolvedPlan", spec: EnvironmentSpec) -> Optional[str]:
    if spec.generated_requirements is None:
        return None
    from hpcwizard.project.home import Project
    from hpcwizard.project.render import render

    # Prepare runs where the project's files are this machine's (a job, or the login node).
    rendering = render(Project(resolved.plan.project_home), resolved, resolved.layout.prepare_dir)
    return next(f.text for f in rendering.files if f.name == spec.generated_requirements)


def parts_of(resolved: "ResolvedPlan") -> list[PreparePart]:
    """The plan's parts and, offline, whether each is ready (for the wizard and check)."""
    from hpcwizard.download import verify_downloaded

    parts = []
    repos = list(resolved.repos)
    missing = verify_downloaded(repos)
    parts.append(PreparePart("files", f"{len(repos)} Hugging Face repo(s)",
                             f"{len(missing)} file(s) missing, e.g. {missing[0]}" if missing else None))
    code = resolved.code
    if code is not None:
        parts.append(PreparePart("code", f"{code.name} at {code.commit[:12]}", code_problem(code)))
    env = resolved.environment
    if env is not None:
        try:
            reqs = read_requirements(env, resolved.plan.env_overrides, _generated_requirements(resolved, env))
            problem = environment_problem(env, reqs)
        except PrepareError:
            problem = f"{env.dir} is not built yet (it is built from the files, which come first)"
        parts.append(PreparePart("environment", f"{env.name} (Python {env.python.text})", problem))
    return parts


def _not_prepared(part: str, problem: str) -> PrepareError:
    return PrepareError(f"{part} not prepared: {problem}",
                        "the plan says download: login, so run `hpcwizard prepare PLAN` on the login node, "
                        "then submit again")


def verify_prepared(resolved: "ResolvedPlan", on_line: PartLineCallback) -> PrepareSummary:
    """In the setup job of a ``download: login`` plan: check every part offline, unpack the files."""
    from hpcwizard.download import download_plan

    summary = PrepareSummary()
    try:
        files = download_plan(resolved, in_job=True)
    except PrepareError:
        raise
    except UserError as exc:  # the files check's own message, with the part named
        raise _not_prepared("files", exc.message) from None
    summary.done.append("files: " + files.one_line())
    code = resolved.code
    if code is not None:
        problem = code_problem(code)
        if problem:
            raise _not_prepared("code", problem)
        summary.done.append(f"code: {code.name} at {code.commit[:12]}")
    env = resolved.environment
    if env is not None:
        reqs = read_requirements(env, resolved.plan.env_overrides, _generated_requirements(resolved, env))
        problem = environment_problem(env, reqs)
        if problem:
            raise _not_prepared("environment", problem)
        summary.done.append(f"environment: {env.name} ready")
    for line in summary.done:
        on_line(line.split(":", 1)[0], line)
    return summary


def prepare_plan(
    resolved: "ResolvedPlan",
    *,
    token: Optional[str] = None,
    endpoint: Optional[str] = None,
    on_progress: Optional["ProgressCallback"] = None,
    on_line: PartLineCallback = lambda part, line: None,
    in_job: bool = False,
    cancel: Optional[threading.Event] = None,
    parts: tuple[str, ...] = PARTS,
) -> PrepareSummary:
    """Prepare the plan's parts (or, in the setup job of a login plan, verify them)."""
    plan = resolved.plan
    if plan.download == "login" and in_job:
        return verify_prepared(resolved, on_line)
    from hpcwizard.download import download_plan

    summary = PrepareSummary()
    if "files" in parts:
        on_line("files", "files: Hugging Face repos")
        files = download_plan(resolved, token=token, endpoint=endpoint, on_progress=on_progress,
                              in_job=in_job, cancel=cancel)
        summary.done.append("files: " + files.one_line())
    code: Optional[CodeSpec] = resolved.code
    if code is not None and "code" in parts:
        _check_cancel(cancel)
        on_line("code", f"code: {code.url} at {code.commit[:12]}")
        summary.done.append("code: " + prepare_code(code, lambda line: on_line("code", line)))
    env: Optional[EnvironmentSpec] = resolved.environment
    if env is not None and "environment" in parts:
        _check_cancel(cancel)
        on_line("environment", f"environment: {env.dir}")
        reqs = read_requirements(env, plan.env_overrides, _generated_requirements(resolved, env))
        summary.done.append("environment: " + build_environment(env, reqs, lambda line: on_line("environment", line),
                                                                env=_with_modules(plan, on_line)))
    return summary


def _with_modules(plan: "Plan", on_line: PartLineCallback) -> Optional[dict[str, str]]:
    """The environment to build in: this process's, after ``module load`` of
    the plan's modules (a venv of a module's Python is made with that module
    loaded, as its jobs will run it); None without modules."""
    if not plan.modules:
        return None
    from hpcwizard.prepare.modules import module_environment
    from hpcwizard.shell import LocalRunner

    on_line("environment", f"environment: module load {' '.join(plan.modules)}")
    return module_environment(plan.modules, LocalRunner())


class PrepareCancelled(Exception):
    pass


def _check_cancel(cancel: Optional[threading.Event]) -> None:
    if cancel is not None and cancel.is_set():
        raise PrepareCancelled()


def run_prepare_command(plan_path: str, *, in_job: bool, files_only: bool = False) -> int:
    """``hpcwizard prepare PLAN [--in-job]``: prepare with progress on stdout, one summary line per part.

    ``files_only``: the old ``download --in-job`` of scripts rendered before
    ``prepare`` existed (they build their environment themselves)."""
    from hpcwizard.download.core import _find_token
    from hpcwizard.download.progress import PlainProgressLog, TerminalProgressBar
    from hpcwizard.project.recipe import fill_namespace, load_plan_for_recipe
    from hpcwizard.project.resolved import resolve

    plan, recipe = load_plan_for_recipe(plan_path)
    plan = fill_namespace(plan, recipe)  # a no-op for the filled copy a job reads
    verify_only = plan.download == "login" and in_job
    token = None if verify_only else _find_token()
    reporter: ProgressCallback = TerminalProgressBar() if sys.stdout.isatty() else PlainProgressLog()

    def show(part: str, line: str) -> None:
        print(line if line.startswith(part + ":") else f"{part}: {line}", flush=True)

    try:
        summary = prepare_plan(resolve(plan, recipe), token=token, on_progress=reporter, on_line=show, in_job=in_job,
                               parts=("files",) if files_only else PARTS)
    except KeyboardInterrupt:
        print("\nprepare interrupted; run the same command again to resume where it stopped", file=sys.stderr)
        return 130
    if verify_only:
        print("prepare: everything was prepared on the login node", flush=True)
    else:
        print(f"prepare: done; {summary.one_line()}", flush=True)
    return 0


def prepare_on_login_node(project: "Project", plan: "Plan", hpcwizard_cmd: list[str],
                          out: "TextSink", *, endpoint: Optional[str] = None,
                          cancel: Optional[threading.Event] = None) -> int:
    """``prepare`` for a laptop (``--host``): ``hpcwizard prepare`` runs ON
    the login node (``project``'s files and runner), with its network, its
    disk and its token file; a copy of ``plan`` is written there for it, and
    its output streams to ``out`` (the CLI's stdout, the wizard's last
    lines). Its exit status (130: cancelled).

    The one way both the CLI and the wizard do it. The hub the user chose
    (``endpoint``, else ``HF_ENDPOINT`` here) goes with it; the token does not
    travel: the login node's token file must be there first."""
    from hpcwizard.checks.hftoken import inspect_token_file
    from hpcwizard.checks.hub import endpoint_env

    files = project.files
    token_file = inspect_token_file(project.submit_runner())
    if not token_file.present:
        raise UserError(f"no Hugging Face token file on {files.where} ({token_file.path}): prepare reads it there",
                        "store it with the wizard's token step (`hpcwizard --host ...`) or `hf auth login` there")
    remote_plan = project.layout.remote_prepare_plan
    files.write_text_atomic(remote_plan, plan.to_yaml())
    out.write(f"running `hpcwizard prepare {remote_plan}` on {files.where}\n")
    out.flush()
    return files.run_streaming([*hpcwizard_cmd, "prepare", str(remote_plan)], out, env=endpoint_env(endpoint),
                               cancel=cancel)


__all__ = [
    "PARTS",
    "PrepareCancelled",
    "PrepareError",
    "PreparePart",
    "PrepareSummary",
    "parts_of",
    "prepare_on_login_node",
    "prepare_plan",
    "run_prepare_command",
    "verify_prepared",
]

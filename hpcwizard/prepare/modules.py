"""Environment modules (Lmod, Environment Modules) a plan asks for.

Sites hand out Python, conda and CUDA as modules: RHEL/Rocky 9 login nodes
have Python 3.9, and FFF-VDI needs 3.10 or later. A venv built with a
module's Python may need that module's libraries to start at all, so the
plan's ``modules:`` are loaded wherever its environment is built or used:
here by :func:`module_environment` (``prepare``, the check), and at the top
of every job script (``hpcw_modules_load`` of ``_shared/modules.sh``, the one
shell text both use). No Textual here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from hpcwizard.errors import UserError
from hpcwizard.project.recipe import SHARED_FOLDER, templates_root

if TYPE_CHECKING:
    from hpcwizard.shell import Runner

#: The shell function, shared with the job scripts.
MODULES_SCRIPT = "modules.sh"
#: Exit status of the capture when the machine has no ``module`` command.
_NO_MODULE_COMMAND = 2


class ModuleError(UserError):
    """The plan's modules cannot be loaded where they were asked for."""


def modules_shell_function() -> str:
    return (templates_root() / SHARED_FOLDER / MODULES_SCRIPT).read_text(encoding="utf-8")


def with_modules(modules: Sequence[str], script: str) -> list[str]:
    """argv running ``script`` after ``module load`` of ``modules`` (the names
    are arguments, never shell text; a failed load exits with its status),
    or ``script`` as it is without modules."""
    if not modules:
        return ["sh", "-c", script]
    return ["bash", "-c", modules_shell_function() + '\nhpcw_modules_load "$@" || exit $?\n' + script,
            "bash", *modules]


def module_environment(modules: Sequence[str], runner: Runner, *, where: str = "this machine") -> dict[str, str]:
    """The environment after ``module load`` of ``modules`` on the runner's
    machine (this one, or the login node over SSH), to run builds in.

    Raises :class:`ModuleError` with ``module``'s own last line when one does
    not load, or when the machine has no module command."""
    result = runner.run(with_modules(modules, "exec env -0\n"), timeout=120)
    names = " ".join(modules)
    if result.returncode == _NO_MODULE_COMMAND:
        raise ModuleError(f"the plan's modules ({names}) need the module command, which {where} lacks",
                          "remove `modules:` from the plan, or run hpcwizard where Lmod or Environment Modules is set up")
    if not result.ok:
        said = [line.strip() for line in result.stderr.splitlines() if line.strip()]
        raise ModuleError(f"module load {names} failed on {where}: {said[-1] if said else f'exit status {result.returncode}'}",
                          "fix the plan's `modules:` (`module avail NAME` lists what there is), then try again")
    environment: dict[str, str] = {}
    for entry in result.stdout.split("\0"):
        name, sep, value = entry.partition("=")
        if sep and name and not name.startswith("BASH_FUNC_"):
            environment[name] = value
    return environment

"""The preflight row for the training environment's pins (``hpcwizard check``).

Reads the environment's pip requirements the way ``prepare`` will build them
(the downloaded environment.yml or requirements file, else the same file
fetched from the Hub now; or the recipe's rendered requirements), applies the
plan's ``env_overrides``, and asks the package index about every pin.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from hpcwizard.checks.results import CheckResult, block, ok, warn
from hpcwizard.errors import UserError

if TYPE_CHECKING:
    from hpcwizard.project.files import ProjectFiles
    from hpcwizard.project.resolved import ResolvedPlan
    from hpcwizard.shell import Runner

ROW = "environment pins"


def _fetch_from_hub(resolved: "ResolvedPlan", path: Path, into: Path, token: Optional[str],
                    endpoint: Optional[str]) -> Optional[Path]:
    """The repo file that will land at ``path``, fetched now into ``into`` (None: no repo brings it)."""
    from huggingface_hub import hf_hub_download

    from hpcwizard.download.core import resolve_endpoint

    for repo in resolved.repos:
        if path.parent == repo.dest and repo.wanted(path.name):
            return Path(hf_hub_download(repo.repo_id, path.name, repo_type=repo.repo_type, token=token or False,
                                        endpoint=resolve_endpoint(endpoint), local_dir=str(into)))
    return None


def check_environment_pins(resolved: "ResolvedPlan", *, token: Optional[str] = None,
                           endpoint: Optional[str] = None, files: Optional["ProjectFiles"] = None,
                           indexes: Optional[list[str]] = None) -> list["CheckResult"]:
    """One row: every pin of the environment is on the package index, or which are not and the override to add."""
    from dataclasses import replace

    from hpcwizard.prepare import _generated_requirements
    from hpcwizard.prepare.environment import read_requirements
    from hpcwizard.prepare.pins import pip_indexes, unsatisfiable

    spec = resolved.environment
    if spec is None:
        return []
    source = spec.environment_yml or spec.requirements
    what = source.name if source else "requirements.txt"
    remote = files is not None and files.remote
    with tempfile.TemporaryDirectory(prefix="hpcwizard-pins-") as tmp:
        try:
            if source is not None and (remote or not source.is_file()):
                fetched = _fetch_from_hub(resolved, source, Path(tmp), token, endpoint)
                if fetched is None:
                    return [warn("environment", ROW, f"{what} is not downloaded yet and no repo of the recipe brings it",
                                  "prepare the files, then check again")]
                spec = replace(spec, environment_yml=fetched) if spec.environment_yml else replace(spec, requirements=fetched)
            reqs = read_requirements(spec, resolved.plan.env_overrides, _generated_requirements(resolved, spec))
        except UserError as exc:
            return [warn("environment", ROW, f"could not read {what}: {exc.message}", exc.hint or "check again later")]
        except Exception as exc:  # the hub refused or is unreachable: its own rows say why
            return [warn("environment", ROW, f"could not fetch {what} to check its pins ({type(exc).__name__})",
                          "the token and access rows say why; check again once they pass")]
    indexes = indexes or pip_indexes()
    problems, unanswered = unsatisfiable(list(reqs.pip), indexes)
    rows: list[CheckResult] = []
    for key in reqs.unused_overrides:
        rows.append(warn("environment", "env_overrides", f"env_overrides {key!r} matches no pin of {what}",
                          "remove it from the plan, or write the pin as the file does"))
    if problems:
        shown = "; ".join(p.message() for p in problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        overrides = ", ".join(f"'{p.requirement}': '{p.override()}'" for p in problems[:3])
        rows.append(block("environment", ROW, f"{what} pins what the package index cannot install: {shown}",
                           f"add to the plan: env_overrides: {{{overrides}}}"))
    elif unanswered and len(unanswered) == sum(1 for _ in reqs.pip):
        rows.append(warn("environment", ROW, f"the package index ({indexes[0] if indexes else 'none'}) did not answer; "
                                              f"{what}'s pins are unchecked", "check again when it answers"))
    else:
        unchecked = f" ({len(unanswered)} unchecked: the index did not answer)" if unanswered else ""
        rows.append(ok("environment", ROW, f"{len(reqs.pip)} requirement(s) of {what}: every pin is on "
                                            f"{indexes[0] if indexes else 'the index'}{unchecked}"))
    return rows


# One constant script (no user value reaches the shell): the first conda tool
# on PATH as "conda TOOL", then every python3.X, newest first, then python3,
# as "NAME MAJOR.MINOR EXECUTABLE".
_FIND_PYTHONS = r"""
for tool in micromamba mamba conda; do
    if command -v "$tool" >/dev/null 2>&1; then echo "conda $tool"; break; fi
done
for name in python3.13 python3.12 python3.11 python3.10 python3.9 python3.8 python3; do
    exe=$(command -v "$name" 2>/dev/null) || continue
    "$exe" -c 'import sys; print(sys.argv[1], "%d.%d" % sys.version_info[:2], sys.executable)' "$name" 2>/dev/null
done
"""


def check_modules(resolved: "ResolvedPlan", runner: "Runner", where: str) -> list["CheckResult"]:
    """The plan's modules load on the login node (prepare builds with them, jobs start with them)."""
    from hpcwizard.prepare.modules import ModuleError, module_environment

    modules = resolved.plan.modules
    if not modules:
        return []
    try:
        loaded = module_environment(modules, runner, where=where)
    except ModuleError as exc:
        return [block("environment", "module load", exc.message, exc.hint or "fix the plan's modules:")]
    shown = loaded.get("LOADEDMODULES", "").replace(":", " ") or " ".join(modules)
    return [ok("environment", "module load", f"{shown}: loads on {where}")]


def check_environment_python(resolved: "ResolvedPlan", runner: "Runner") -> list["CheckResult"]:
    """A venv needs a Python the recipe supports on the machine that builds it
    (the login node for ``download: login``); conda brings its own."""

    plan = resolved.plan
    spec = resolved.environment
    if spec is None:
        return []
    from hpcwizard.prepare.modules import with_modules

    found = runner.run(with_modules(plan.modules, _FIND_PYTHONS), timeout=120)
    seen = []
    for line in found.stdout.splitlines():
        name, _, rest = line.partition(" ")
        if name == "conda":
            return [ok("environment", "python", f"{rest} builds the environment with its own Python {spec.python.text}")]
        version, _, exe = rest.partition(" ")
        major, _, minor = version.partition(".")
        if not (major.isdigit() and minor.isdigit()):
            continue
        seen.append(f"{name} {version}")
        if spec.python.allows((int(major), int(minor))):
            return [ok("environment", "python", f"a venv with {exe} (Python {version}, the recipe needs {spec.python.text})")]
    from hpcwizard.prepare.environment import no_python_hint

    where = "on this login node" if plan.download == "login" else "on this login node (the setup job builds the venv on a compute node)"
    message = (f"no Python {spec.python.text} {where} for the training venv "
               f"(found: {', '.join(dict.fromkeys(seen)) or 'none'})")
    fix = no_python_hint(spec.python).replace(", then prepare again", ", then check again")
    return [block("environment", "python", message, fix) if plan.download == "login" else
            warn("environment", "python", message, fix)]

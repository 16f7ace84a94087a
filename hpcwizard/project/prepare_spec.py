"""What a recipe asks ``prepare`` to build besides the Hugging Face files.

A recipe's ``recipe.yaml`` may declare:

    code:                      # source code from a git host, at a pinned commit
      git: https://github.com/Hydragon516/FFF-VDI.git
      commit: "{fff_vdi_commit}"
      dest: "{project_home}/FFF-VDI"
    environment:               # the training environment
      dir: "{project_home}/envs/fff-vdi"
      python: ">=3.10,<3.13"   # a venv needs such a Python on the node that builds it
      generated_requirements: requirements.txt   # a file the recipe renders (files:)
      requirements: "{project_home}/downloads/x/requirements.txt"  # or a downloaded file
      environment_yml: "{project_home}/downloads/x/environment.yml" # or a conda environment.yml
      extra: ["decord==0.6.0"]   # pins the code needs that its own lists miss

Placeholders are the recipe's (``{project_home}``, parameters...). Resolved
once per plan into frozen dataclasses; nothing here touches the disk.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from hpcwizard.project.plan import Plan
from hpcwizard.project.recipe import Recipe, RecipeError, fill_placeholders

_GIT_URL = re.compile(r"^https://[A-Za-z0-9.-]+(?::[0-9]+)?/[A-Za-z0-9._/~-]+$")
_COMMIT = re.compile(r"^[0-9a-f]{7,40}$")
_PYTHON_CLAUSE = re.compile(r"^\s*(>=|<=|==|!=|>|<)\s*([0-9]+)\.([0-9]+)\s*$")
#: Python minor versions a venv may be built with, newest first.
KNOWN_PYTHONS = ((3, 13), (3, 12), (3, 11), (3, 10), (3, 9), (3, 8))


@dataclass(frozen=True)
class CodeSpec:
    """Source code cloned from a git host at one commit."""

    url: str
    commit: str
    dest: Path

    @property
    def host(self) -> str:
        return self.url.split("/")[2]

    @property
    def name(self) -> str:
        return self.dest.name


@dataclass(frozen=True)
class PythonSpec:
    """A version range like ``>=3.10,<3.13``, on (major, minor) only."""

    text: str

    def clauses(self) -> list[tuple[str, tuple[int, int]]]:
        out = []
        for part in filter(None, (p.strip() for p in self.text.split(","))):
            match = _PYTHON_CLAUSE.match(part)
            if not match:
                raise RecipeError(f"environment.python has a bad clause {part!r}", "write it like >=3.10,<3.13")
            out.append((match.group(1), (int(match.group(2)), int(match.group(3)))))
        return out

    def allows(self, version: tuple[int, int]) -> bool:
        checks = {">=": lambda a, b: a >= b, "<=": lambda a, b: a <= b, "==": lambda a, b: a == b,
                  "!=": lambda a, b: a != b, ">": lambda a, b: a > b, "<": lambda a, b: a < b}
        return all(checks[op](version, bound) for op, bound in self.clauses())

    def best_known(self) -> Optional[tuple[int, int]]:
        """The newest known Python minor version the range allows (for conda's ``python=``)."""
        return next((v for v in KNOWN_PYTHONS if self.allows(v)), None)


@dataclass(frozen=True)
class EnvironmentSpec:
    """The training environment: where, with which Python, from which lists."""

    dir: Path
    python: PythonSpec
    requirements: Optional[Path] = None
    generated_requirements: Optional[str] = None
    environment_yml: Optional[Path] = None
    extra: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.dir.name


def _text(data: dict[str, Any], key: str, where: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise RecipeError(f"{where}.{key} must be text", "see sbatch_templates/README.md for the recipe format")
    return value


def code_spec(recipe: Recipe, plan: Plan, values: Optional[dict[str, str]] = None) -> Optional[CodeSpec]:
    """The recipe's ``code:`` with the plan's values (``values``: its
    placeholders, when already computed), or None when it has none."""
    data = recipe.extra.get("code")
    if data is None:
        return None
    where = f"{recipe.name}/recipe.yaml code"
    if not isinstance(data, dict) or set(data) - {"git", "commit", "dest"}:
        raise RecipeError(f"{where} must be a mapping of git, commit and dest")
    if values is None:
        values = recipe.placeholders(plan)
    url = fill_placeholders(_text(data, "git", where), values)
    commit = fill_placeholders(_text(data, "commit", where), values).lower()
    if not _GIT_URL.match(url):
        raise RecipeError(f"{where}.git is not an https git URL: {url!r}")
    if not _COMMIT.match(commit):
        raise RecipeError(f"the code commit {commit!r} is not a commit id", "give 7 to 40 hexadecimal digits")
    return CodeSpec(url=url, commit=commit, dest=Path(fill_placeholders(_text(data, "dest", where), values)))


def environment_spec(recipe: Recipe, plan: Plan, values: Optional[dict[str, str]] = None) -> Optional[EnvironmentSpec]:
    """The recipe's ``environment:`` with the plan's values (``values`` as for
    :func:`code_spec`), or None."""
    data = recipe.extra.get("environment")
    if data is None:
        return None
    where = f"{recipe.name}/recipe.yaml environment"
    allowed = {"dir", "python", "requirements", "generated_requirements", "environment_yml", "extra"}
    if not isinstance(data, dict) or set(data) - allowed:
        raise RecipeError(f"{where} must be a mapping of {', '.join(sorted(allowed))}")
    if values is None:
        values = recipe.placeholders(plan)

    def path(key: str) -> Optional[Path]:
        return Path(fill_placeholders(_text(data, key, where), values)) if data.get(key) else None

    sources = [k for k in ("requirements", "generated_requirements", "environment_yml") if data.get(k)]
    if len(sources) != 1:
        raise RecipeError(f"{where} needs exactly one of requirements, generated_requirements, environment_yml")
    generated = data.get("generated_requirements")
    if generated is not None and generated not in {f.name for f in recipe.files}:
        raise RecipeError(f"{where}.generated_requirements names {generated!r}, which is not one of the recipe's files:")
    extra = data.get("extra") or []
    if not isinstance(extra, list) or not all(isinstance(x, str) and x for x in extra):
        raise RecipeError(f"{where}.extra must be a list of requirements")
    spec = EnvironmentSpec(
        dir=Path(fill_placeholders(_text(data, "dir", where), values)),
        python=PythonSpec(str(data.get("python") or ">=3.9")),
        requirements=path("requirements"),
        generated_requirements=generated,
        environment_yml=path("environment_yml"),
        extra=tuple(extra),
    )
    spec.python.clauses()  # refuse a malformed range now, not at build time
    return spec

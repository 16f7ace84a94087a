"""A plan joined with its recipe, resolved once.

Rendering, the checks, submitting, preparing and the estimates all need the
same derived facts of a plan: its recipe, its parameters with the defaults
filled in and validated, the repos its variant fetches and where they go, the
code and environment it prepares, the folders training writes. They used to
derive each one again (the recipe looked up by name, ``repos_for`` run twice
per expression, each run validating the parameters anew). :func:`resolve`
computes them once; callers pass the :class:`ResolvedPlan` on.

A plan changed afterwards (``plan.with_changes(...)``) is resolved again: a
:class:`ResolvedPlan` is frozen, so it never disagrees with its plan.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Optional

from hpcwizard.project.recipe import Recipe, RecipeError, ResolvedRepo, fill_placeholders, get_recipe

if TYPE_CHECKING:
    from hpcwizard.project.layout import ProjectLayout
    from hpcwizard.project.plan import Plan
    from hpcwizard.project.prepare_spec import CodeSpec, EnvironmentSpec


@dataclass(frozen=True)
class ResolvedPlan:
    """A plan, its recipe, and everything derived from the two."""

    plan: Plan
    recipe: Recipe
    #: every parameter's value: the plan's, validated, else the recipe's default
    params: Mapping[str, Any]
    #: the repos this plan's variant fetches, in the recipe's order, paths filled in
    repos: tuple[ResolvedRepo, ...]
    #: the recipe's ``code:`` (the git checkout prepare makes), if any
    code: Optional[CodeSpec]
    #: the recipe's ``environment:`` (the environment prepare builds), if any
    environment: Optional[EnvironmentSpec]
    #: where training keeps its checkpoints, and what it converts them into
    checkpoint_dirs: tuple[Path, ...]
    converted_dirs: tuple[Path, ...]
    #: the folders the recipe says it creates (the check's overview)
    created: tuple[Path, ...]
    #: the recipe's named folders (``folders:``), filled in: what templates see as ``folders``
    folders: Mapping[str, Path]

    @property
    def layout(self) -> ProjectLayout:
        return self.plan.layout

    @property
    def repos_by_name(self) -> Mapping[str, ResolvedRepo]:
        """The repos by the name recipe.yaml gives them: what templates see as ``repos``."""
        return MappingProxyType({repo.name: repo for repo in self.repos})

    def output_bytes(self) -> int:
        """What training will write: the checkpoints kept, and the final weights."""
        return self.recipe.checkpoint_bytes * self.recipe.checkpoints_kept(dict(self.params)) + self.recipe.final_bytes


def resolve(plan: Plan, recipe: Recipe | None = None) -> ResolvedPlan:
    """``plan`` joined with its recipe (looked up by name unless given) and resolved.

    Raises the PlanError of a bad parameter, or of a recipe that needs
    ``hf_namespace`` when the plan has none, naming it."""
    from hpcwizard.project.prepare_spec import code_spec, environment_spec  # what recipe.yaml asks prepare to build

    if recipe is None:
        recipe = get_recipe(plan.recipe)
    elif recipe.name != plan.recipe:
        raise RecipeError(f"the plan is for recipe {plan.recipe}, not {recipe.name}", "this is a bug; report it")
    params = recipe.resolve_params(plan.params)
    values = recipe.placeholders(plan, params)

    def filled(folders: tuple[str, ...]) -> tuple[Path, ...]:
        return tuple(Path(fill_placeholders(folder, values)) for folder in folders)

    return ResolvedPlan(
        plan=plan,
        recipe=recipe,
        params=MappingProxyType(params),
        repos=tuple(recipe.repos_with(values, plan.variant)),
        code=code_spec(recipe, plan, values),
        environment=environment_spec(recipe, plan, values),
        checkpoint_dirs=filled(recipe.checkpoint_dirs),
        converted_dirs=filled(recipe.converted_dirs),
        created=filled(recipe.creates),
        folders=MappingProxyType({name: Path(values[name]) for name, _ in recipe.folders}),
    )

"""The answers the wizard's steps dismiss with, and how each changes the plan.

The step screens build them and the wizard applies them; they live here so
that neither imports the other (the wizard imports a step's screen only when it
first shows it). No Textual.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from hpcwizard.project.plan import Plan

if TYPE_CHECKING:
    from hpcwizard.project.session import SavedSession


@dataclass(frozen=True)
class WelcomeChoice:
    """What the welcome step decided: which project home, and resume or start over."""

    project_home: Path
    resume: bool
    session: SavedSession
    open_dashboard: bool = False


@dataclass(frozen=True)
class RecipeChoice:
    recipe: str
    variant: str | None
    hf_namespace: str | None

    def updated(self, plan: Plan | None, project_home: Path) -> Plan:
        """Another recipe starts from its defaults (the folders and the account kept);
        the same one keeps every answer but the variant and the namespace."""
        from hpcwizard.project.recipe import get_recipe

        if plan is not None and plan.recipe == self.recipe:
            return plan.with_changes(variant=self.variant, hf_namespace=self.hf_namespace)
        kept: dict[str, Any] = {}
        if plan is not None:
            kept = {"data_root": str(plan.data_root), "download": plan.download,
                    "account": plan.account, "qos": plan.qos}
        return get_recipe(self.recipe).default_plan(project_home, **{
            **kept, "variant": self.variant, "hf_namespace": self.hf_namespace})


@dataclass(frozen=True)
class ParamsChoice:
    params: dict[str, Any]  # only the values that differ from the recipe's defaults

    def updated(self, plan: Plan | None, project_home: Path) -> Plan:
        from hpcwizard.project.recipe import get_recipe

        assert plan is not None, "parameters need a plan"
        get_recipe(plan.recipe).resolve_params(self.params)  # PlanError names a bad one: not saved
        return plan.with_changes(params=dict(self.params))


@dataclass(frozen=True)
class PathsChoice:
    data_root: Path
    download: str

    def updated(self, plan: Plan | None, project_home: Path) -> Plan:
        assert plan is not None, "folders need a plan"
        return plan.with_changes(data_root=self.data_root, download=self.download)


@dataclass(frozen=True)
class SlurmChoice:
    setup: Any  # JobResources
    train: Any
    account: str | None
    qos: str | None
    modules: tuple[str, ...] = ()

    def updated(self, plan: Plan | None, project_home: Path) -> Plan:
        assert plan is not None, "resources need a plan"
        return plan.with_changes(setup=self.setup, train=self.train, account=self.account, qos=self.qos,
                                 modules=self.modules)


#: The answers that change the plan (each by its ``updated``).
PlanChoice = Union[RecipeChoice, ParamsChoice, PathsChoice, SlurmChoice]
PLAN_CHOICES = (RecipeChoice, ParamsChoice, PathsChoice, SlurmChoice)

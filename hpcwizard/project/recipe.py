"""Recipes: a training pipeline described as data.

A recipe is a folder under ``sbatch_templates/``: ``recipe.yaml`` says what
the pipeline fetches from Hugging Face, the jobs it submits in chain order
with their default resources, and the paths it creates; Jinja2 templates
beside it become the sbatch scripts. Adding a training project is adding a
folder, not Python.

Strings in ``recipe.yaml`` may use placeholders that the plan fills in:
``{namespace}`` (plan.hf_namespace), ``{project_home}``, ``{data_root}``,
``{variant}``, and any of the recipe's parameters by name.

``parameters:`` declares every tunable value: its type (int, float, bool,
choice, str), default, allowed range or choices, a one-line help text and
where it goes (a config key, a training flag...). A plan's ``params:`` are
validated against it; templates see the resolved values (defaults filled in)
as ``params``.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from hpcwizard.errors import UserError, first_unknown_key
from hpcwizard.project.plan import JobResources, Plan, PlanError, plan_from_dict

SHARED_FOLDER = "_shared"
RECIPE_KEYS = ("name", "title", "description", "variants", "parameters", "repos", "jobs", "files",
               "defaults", "creates", "results", "outputs", "settings", "training_stages",
               "code", "environment", "continuation", "folders")
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGT]?)i?B?\s*$", re.IGNORECASE)
_PLACEHOLDER = re.compile(r"\{(\w+)\}")
# Numbers typed as text (the form, a quoted value in a plan file) are written the plain way:
# ASCII digits, an optional leading minus. Python's int() and float() also take "12_3" (saved
# as 123), "+6" and other scripts' digits, which nobody means to type; YAML's own numbers (an
# unquoted 12_3 is YAML 1.1's 123) arrive as numbers, not text, and are left alone.
_WHOLE_TEXT = re.compile(r"-?[0-9]+")
_NUMBER_TEXT = re.compile(r"-?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")


class RecipeError(UserError):
    """A recipe folder is missing or its recipe.yaml is malformed."""


# ---------------------------------------------------------------- continuation:
# A recipe's ``continuation:`` block; what a train job does with it at its time
# limit is hpcwizard.jobs.continuation's.

#: At least this many seconds of warning, unless the recipe says its trainer needs less.
MIN_LEAD_SECONDS = 120
STOP_SIGNALS = ("USR1", "TERM", "INT")
SETTINGS_KEYS = ("stop_signal", "saves_on_signal", "min_lead", "save_seconds", "step_seconds",
                 "checkpoint_steps", "checkpoint_complete")


@dataclass(frozen=True)
class ContinuationSettings:
    """A recipe's ``continuation:`` block: how its trainer stops and saves."""

    #: what the trainer's process group gets when the warning comes
    stop_signal: str = "TERM"
    #: the trainer saves a checkpoint and exits on ``stop_signal`` (else the
    #: script waits for its next checkpoint, then stops it)
    saves_on_signal: bool = False
    #: the lead is at least this many seconds (default 120: big checkpoints
    #: take minutes to write)
    min_lead: int = MIN_LEAD_SECONDS
    #: how long one checkpoint takes to write, in seconds
    save_seconds: int = 60
    #: the step time when a parameter sets it (``"{seconds_per_step}"``);
    #: otherwise the rate an earlier run of the project logged is used
    step_seconds: str | None = None
    #: parameters holding the checkpoint interval in steps (the largest counts)
    checkpoint_steps: tuple[str, ...] = ()
    #: a file every complete checkpoint holds (accelerate's save_state writes
    #: ``random_states_0.pkl`` last); a newest checkpoint without it was cut
    #: short and is moved aside before the trainer resumes
    checkpoint_complete: str | None = None


_PLAIN_FILE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def parse_continuation(data: Any, where: str, parameter_names: set[str]) -> ContinuationSettings:
    """Validate a recipe's ``continuation:`` block (None: the defaults)."""
    if data is None:
        return ContinuationSettings()
    if not isinstance(data, dict):
        raise RecipeError(f"{where} continuation must be a mapping")
    unknown = first_unknown_key(data, SETTINGS_KEYS)
    if unknown is not None:
        raise RecipeError(f"{where} continuation has an unknown key {unknown!r}",
                          f"allowed keys: {', '.join(SETTINGS_KEYS)}")
    settings = ContinuationSettings(
        stop_signal=str(data.get("stop_signal", "TERM")),
        saves_on_signal=data.get("saves_on_signal", False),
        min_lead=data.get("min_lead", MIN_LEAD_SECONDS),
        save_seconds=data.get("save_seconds", 60),
        step_seconds=None if data.get("step_seconds") is None else str(data["step_seconds"]),
        checkpoint_steps=tuple(data.get("checkpoint_steps") or ()),
        checkpoint_complete=data.get("checkpoint_complete"),
    )
    if settings.stop_signal not in STOP_SIGNALS:
        raise RecipeError(f"{where} continuation.stop_signal is {settings.stop_signal!r}",
                          f"allowed: {', '.join(STOP_SIGNALS)}")
    if not isinstance(settings.saves_on_signal, bool):
        raise RecipeError(f"{where} continuation.saves_on_signal must be true or false")
    for name in ("min_lead", "save_seconds"):
        value = getattr(settings, name)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 86400:
            raise RecipeError(f"{where} continuation.{name} must be a whole number of seconds from 1 to 86400")
    missing = sorted(set(settings.checkpoint_steps) - parameter_names)
    if missing:
        raise RecipeError(f"{where} continuation.checkpoint_steps names an undeclared parameter {missing[0]}")
    if settings.checkpoint_complete is not None and not _PLAIN_FILE_NAME.fullmatch(str(settings.checkpoint_complete)):
        raise RecipeError(f"{where} continuation.checkpoint_complete must be a plain file name")
    return settings



def templates_root() -> Path:
    """The folder holding the recipes.

    Installed from a wheel, the recipes ship inside the package; in a source
    checkout (editable install) they sit at the top of the repository.
    """
    package = Path(__file__).resolve().parent.parent  # hpcwizard/, above project/
    for candidate in (package / "sbatch_templates", package.parent / "sbatch_templates"):
        if candidate.is_dir():
            return candidate
    raise RecipeError("the recipe folder sbatch_templates is missing from this installation",
                      "reinstall hpcwizard (pip install --force-reinstall hpcwizard)")


def parse_size(value: Any) -> int:
    """Bytes in ``12345``, ``13.1 GB`` or ``800K`` (binary multiples)."""
    if isinstance(value, bool):
        raise ValueError(f"not a size: {value!r}")
    if isinstance(value, (int, float)):
        return int(value)
    match = _SIZE.match(str(value))
    if not match:
        raise ValueError(f"not a size: {value!r}")
    number, unit = match.groups()
    return int(float(number) * 1024 ** " KMGT".index(unit.upper() or " "))


@dataclass(frozen=True)
class Archive:
    """An archive a repo delivers, unpacked by the setup step."""

    archive: str
    into: str
    unpacked_bytes: int = 0


@dataclass(frozen=True)
class RecipeRepo:
    """A Hugging Face repo the recipe fetches, as declared (placeholders unfilled)."""

    repo_id: str
    repo_type: str
    purpose: str
    dest: str
    include: tuple[str, ...] = ("*",)
    variants: tuple[str, ...] = ()
    size_bytes: int = 0
    gated: bool = False
    optional: bool = False
    archives: tuple[Archive, ...] = ()
    #: what templates call it (``repos['base-model'].dest``); ``name:`` in
    #: recipe.yaml, by default the last part of its id
    name: str = ""

    def wanted(self, path: str) -> bool:
        """Whether a file of the repo is one the recipe fetches."""
        return any(fnmatch.fnmatch(path, pattern) for pattern in self.include)


@dataclass(frozen=True)
class RecipeJob:
    """One job of the chain; ``resources`` names the plan section it takes."""

    name: str
    template: str
    resources: str
    description: str = ""


@dataclass(frozen=True)
class GeneratedFile:
    """A config file rendered next to the sbatch scripts (config.yaml...)."""

    template: str
    name: str


PARAMETER_TYPES = ("int", "float", "bool", "choice", "str")


@dataclass(frozen=True)
class Parameter:
    """A tunable value of a recipe."""

    name: str
    type: str
    default: Any
    help: str
    target: str = ""
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[Any, ...] = ()
    pattern: str | None = None
    multiple_of: int | None = None
    #: ``proportional``: one training step takes time in proportion to this
    #: value (the demo's ``seconds_per_step``, DiffuEraser's ``stageN_nframes``),
    #: so the time estimate scales a measured rate by it; "" for no such claim.
    step_time: str = ""

    def allowed(self) -> str:
        """What a valid value looks like, for error messages and help."""
        if self.type == "choice":
            return "one of " + ", ".join(str(c) for c in self.choices)
        if self.type == "bool":
            return "true or false"
        if self.type == "str":
            return f"text matching {self.pattern}" if self.pattern else "text"
        kind = "a whole number" if self.type == "int" else "a number"
        if self.multiple_of:
            kind = f"a multiple of {self.multiple_of}"
        low, high = self._bound(self.minimum), self._bound(self.maximum)
        if low is not None and high is not None:
            return f"{kind} from {low} to {high}"
        if low is not None:
            return f"{kind} of at least {low}"
        if high is not None:
            return f"{kind} of at most {high}"
        return kind

    def spelling_problem(self, value: Any) -> str | None:
        """How to write the number, when ``value`` is text Python reads as one but this
        parameter refuses for its spelling (``12_3``, ``+6``, non-ASCII digits), else None."""
        if self.type not in ("int", "float") or not isinstance(value, str):
            return None
        text = value.strip()
        pattern = _WHOLE_TEXT if self.type == "int" else _NUMBER_TEXT
        if pattern.fullmatch(text):
            return None
        try:
            number = int(text) if self.type == "int" else float(text)
        except ValueError:
            return None  # not a number at all: allowed() says enough
        if number != number or number in (float("inf"), float("-inf")):
            return None  # refused for what it is, not for how it is written
        if self.type == "int":
            return "write digits only, like 123 (no _ or +)"
        return "write it like 0.5, 12 or 1e-4 (no _ or leading +)"

    def _bound(self, value: float | None) -> str | None:
        """A limit as people write it: 10000000 for an int (not 1e+07), 1e-09 for a tiny float."""
        if value is None:
            return None
        if self.type == "int" or (float(value).is_integer() and abs(value) < 1e15):
            return str(int(value))
        return f"{value:g}"

    def convert(self, value: Any) -> Any:
        """``value`` as this parameter's type; ValueError when it is not allowed."""
        if self.type == "bool":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.strip().lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
                return value.strip().lower() in ("true", "yes", "on", "1")
            raise ValueError
        if self.type == "choice":
            for choice in self.choices:
                if value == choice or str(value) == str(choice):
                    return choice
            raise ValueError
        if self.type == "str":
            if not isinstance(value, (str, int)) or isinstance(value, bool):
                raise ValueError
            text = str(value)
            if self.pattern and not re.fullmatch(self.pattern, text):
                raise ValueError
            return text
        if isinstance(value, bool):
            raise ValueError
        if self.spelling_problem(value):
            raise ValueError
        if self.type == "int":
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            number: int | float = value if isinstance(value, int) else int(str(value).strip())
        else:
            number = float(value) if isinstance(value, (int, float)) else float(str(value).strip())
            if number != number or number in (float("inf"), float("-inf")):
                raise ValueError
        if (self.minimum is not None and number < self.minimum) or (self.maximum is not None and number > self.maximum):
            raise ValueError
        if self.multiple_of and number % self.multiple_of:
            raise ValueError
        return number


@dataclass(frozen=True)
class Variant:
    name: str
    description: str = ""
    values: dict[str, str] = field(default_factory=dict)  # placeholders this variant fills in


@dataclass(frozen=True)
class ResolvedArchive:
    archive: Path
    into: Path
    unpacked_bytes: int


@dataclass(frozen=True)
class ResolvedRepo:
    """A repo with the plan's values filled in: what to fetch, and where to."""

    repo_id: str
    repo_type: str
    purpose: str
    dest: Path
    include: tuple[str, ...]
    size_bytes: int
    gated: bool
    archives: tuple[ResolvedArchive, ...]
    name: str = ""

    def wanted(self, path: str) -> bool:
        return any(fnmatch.fnmatch(path, pattern) for pattern in self.include)

    @property
    def into(self) -> Path:
        """The one folder its archives unpack into (templates name the
        unpacked code or frames by it); an error when they unpack apart."""
        folders = {archive.into for archive in self.archives}
        if len(folders) != 1:
            raise RecipeError(f"repo {self.name} unpacks into {len(folders)} folders, not one",
                              "name the archive's folder: archives[i].into")
        return folders.pop()

    @property
    def page(self) -> str:
        prefix = "datasets/" if self.repo_type == "dataset" else ""
        return f"{prefix}{self.repo_id}"


@dataclass(frozen=True)
class Recipe:
    name: str
    title: str
    description: str
    folder: Path
    repos: tuple[RecipeRepo, ...]
    jobs: tuple[RecipeJob, ...]
    defaults: dict[str, JobResources]
    variants: tuple[Variant, ...] = ()
    files: tuple[GeneratedFile, ...] = ()
    creates: tuple[str, ...] = ()
    #: Named folders (``folders:``; placeholders unfilled), in order: templates
    #: read them as ``folders.<name>``, and later paths of recipe.yaml as ``{name}``.
    folders: tuple[tuple[str, str], ...] = ()
    results: str = ""
    checkpoint_bytes: int = 0
    checkpoint_limit_params: tuple[str, ...] = ()
    #: Where training keeps its checkpoints (placeholders unfilled): training
    #: resumes from the latest one there, so the check points out old ones.
    checkpoint_dirs: tuple[str, ...] = ()
    #: What training made from those checkpoints (converted weights and their
    #: stage markers): a fresh start moves these aside with the checkpoints,
    #: or a stage "already trained with these settings" would be skipped.
    converted_dirs: tuple[str, ...] = ()
    final_bytes: int = 0
    needs_namespace: bool = False
    parameters: tuple[Parameter, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    #: Stages that run one after the other with the SAME step and checkpoint
    #: parameters, each keeping its own checkpoints (the demo's stage 1 and
    #: 2). A recipe with ``stageN_...`` parameters counts its stages itself.
    training_stages: int = 1
    #: how its train job stops and saves at the time-limit warning (``continuation:``)
    continuation: ContinuationSettings = field(default_factory=ContinuationSettings)

    def output_bytes_for(self, plan: Plan) -> int:
        """What training will write: checkpoints kept (bounded by the plan's
        limits) times their size, plus the final weights."""
        params = self.resolve_params(plan.params)
        return self.checkpoint_bytes * self.checkpoints_kept(params) + self.final_bytes

    def checkpoints_kept(self, params: dict[str, Any]) -> int:
        """At most how many checkpoints are on disk at the end (resolved ``params``)."""
        return sum(int(params[name]) for name in self.checkpoint_limit_params) * self.training_stages

    def checkpoint_dirs_for(self, plan: Plan) -> list[Path]:
        values = self.placeholders(plan)
        return [Path(_fill(folder, values)) for folder in self.checkpoint_dirs]

    def converted_dirs_for(self, plan: Plan) -> list[Path]:
        values = self.placeholders(plan)
        return [Path(_fill(folder, values)) for folder in self.converted_dirs]

    def parameter(self, name: str) -> Parameter | None:
        return next((p for p in self.parameters if p.name == name), None)

    def resolve_params(self, given: dict[str, Any]) -> dict[str, Any]:
        """Every parameter's value: the plan's, validated, else the default."""
        unknown = first_unknown_key(given, (p.name for p in self.parameters))
        if unknown is not None:
            names = ", ".join(p.name for p in self.parameters) or "none"
            raise PlanError(f"unknown parameter params.{unknown} for recipe {self.name}", f"allowed: {names}")
        resolved = {}
        for param in self.parameters:
            if param.name not in given or given[param.name] is None:
                resolved[param.name] = param.default
                continue
            try:
                resolved[param.name] = param.convert(given[param.name])
            except (ValueError, TypeError):
                spelling = param.spelling_problem(given[param.name])
                how = f"; {spelling}" if spelling else ""
                raise PlanError(f"params.{param.name} has a bad value {given[param.name]!r}",
                                f"allowed: {param.allowed()} ({param.help}){how}") from None
        return resolved

    @property
    def variant_names(self) -> tuple[str, ...]:
        return tuple(v.name for v in self.variants)

    def check_variant(self, variant: str | None) -> str | None:
        """The plan's variant, validated; the first variant when omitted."""
        if not self.variants:
            if variant is not None:
                raise PlanError(f"variant {variant!r} given but recipe {self.name} has no variants",
                                "remove the variant key from the plan")
            return None
        if variant is None:
            return self.variants[0].name
        if variant not in self.variant_names:
            raise PlanError(f"variant has a bad value {variant!r} for recipe {self.name}",
                            f"allowed: {', '.join(self.variant_names)}")
        return variant

    def placeholders(self, plan: Plan, params: dict[str, Any] | None = None) -> dict[str, str]:
        """The values of ``{name}`` in recipe.yaml for ``plan`` (``params``: its
        parameters already resolved, else resolved here)."""
        if self.needs_namespace and not plan.hf_namespace:
            raise PlanError(f"recipe {self.name} needs hf_namespace (the owner of your Hugging Face repos)",
                            "set hf_namespace: <your HF user or org> in the plan")
        if params is None:
            params = self.resolve_params(plan.params)
        values = {name: str(value) for name, value in params.items()}
        variant = next((v for v in self.variants if v.name == plan.variant), None)
        if variant is not None:
            values.update(variant.values)
        values.update({
            "namespace": plan.hf_namespace or "",
            "project_home": str(plan.project_home),
            "data_root": str(plan.data_root),
            "variant": plan.variant or "",
        })
        for name, folder in self.folders:  # in order: a folder may use the ones above it
            values[name] = _fill(folder, values)
        return values

    def repos_for(self, plan: Plan, *, include_optional: bool = False) -> list[ResolvedRepo]:
        """The repos this plan's variant needs, with paths filled in."""
        return self.repos_with(self.placeholders(plan), plan.variant, include_optional=include_optional)

    def repos_with(self, values: dict[str, str], variant: str | None, *,
                   include_optional: bool = False) -> list[ResolvedRepo]:
        """:meth:`repos_for` from placeholder values already computed."""
        resolved = []
        for repo in self.repos:
            if repo.variants and variant not in repo.variants:
                continue
            if repo.optional and not include_optional:
                continue
            dest = Path(_fill(repo.dest, values))
            resolved.append(ResolvedRepo(
                repo_id=_fill(repo.repo_id, values),
                repo_type=repo.repo_type,
                purpose=repo.purpose,
                dest=dest,
                include=repo.include,
                size_bytes=repo.size_bytes,
                gated=repo.gated,
                archives=tuple(
                    ResolvedArchive(dest / a.archive, Path(_fill(a.into, values)), a.unpacked_bytes)
                    for a in repo.archives
                ),
                name=repo.name,
            ))
        return resolved

    def created_paths(self, plan: Plan) -> list[Path]:
        values = self.placeholders(plan)
        return [Path(_fill(p, values)) for p in self.creates]

    def default_plan(self, project_home: Path, data_root: Path | None = None, **overrides: Any) -> Plan:
        """A plan with this recipe's defaults, for the wizard and tests."""
        data: dict[str, Any] = {
            "recipe": self.name,
            "project_home": str(project_home),
            "data_root": str(data_root or project_home / "data"),
            "setup": dict(vars(self.defaults["setup"])),
            "train": dict(vars(self.defaults["train"])),
        }
        if self.variants:
            data["variant"] = self.variants[0].name
        data.update(overrides)
        return plan_from_dict(data)


def fill_placeholders(template: str, values: dict[str, str]) -> str:
    """``template`` with its ``{name}`` placeholders filled from ``values``."""
    return _fill(template, values)


def _fill(template: str, values: dict[str, str]) -> str:
    def sub(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            raise RecipeError(f"unknown placeholder {{{key}}} in a recipe",
                              f"use one of {', '.join('{' + k + '}' for k in values)}")
        return values[key]

    return _PLACEHOLDER.sub(sub, template)


def _require(data: dict[str, Any], key: str, where: str) -> Any:
    if key not in data:
        raise RecipeError(f"{where} has no {key!r}", "see sbatch_templates/README.md for the recipe format")
    return data[key]


def _load_recipe(folder: Path) -> Recipe:
    where = f"{folder.name}/recipe.yaml"
    try:
        data = yaml.safe_load((folder / "recipe.yaml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise RecipeError(f"cannot read {where}: {exc}") from None
    if not isinstance(data, dict):
        raise RecipeError(f"{where} must be a mapping")
    unknown = first_unknown_key(data, RECIPE_KEYS)
    if unknown is not None:
        raise RecipeError(f"{where} has an unknown key {unknown!r}",
                          f"allowed keys: {', '.join(RECIPE_KEYS)} (free-form values go under settings:)")
    repos = []
    for i, repo in enumerate(data.get("repos") or []):
        rwhere = f"{where} repos[{i}]"
        repo_type = repo.get("type", "model")
        if repo_type not in ("model", "dataset"):
            raise RecipeError(f"{rwhere} has type {repo_type!r}", "allowed: model, dataset")
        repos.append(RecipeRepo(
            repo_id=_require(repo, "id", rwhere),
            repo_type=repo_type,
            purpose=repo.get("purpose", ""),
            dest=_require(repo, "dest", rwhere),
            include=tuple(repo.get("include") or ("*",)),
            variants=tuple(repo.get("variants") or ()),
            size_bytes=parse_size(repo.get("size", 0)),
            gated=bool(repo.get("gated", False)),
            optional=bool(repo.get("optional", False)),
            archives=tuple(
                Archive(_require(a, "archive", rwhere), _require(a, "into", rwhere),
                        parse_size(a.get("unpacked_size", 0)))
                for a in repo.get("unpack") or ()
            ),
            name=str(repo.get("name") or str(_require(repo, "id", rwhere)).rsplit("/", 1)[-1]),
        ))
    names = [repo.name for repo in repos]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise RecipeError(f"{where} has two repos named {twice[0]!r}", "give each repo its own name:")
    jobs = tuple(
        RecipeJob(_require(j, "name", where), _require(j, "template", where),
                  j.get("resources", "train"), j.get("description", ""))
        for j in _require(data, "jobs", where)
    )
    for job in jobs:
        if job.resources not in ("setup", "train"):
            raise RecipeError(f"{where} job {job.name} has resources {job.resources!r}", "allowed: setup, train")
        if not (folder / job.template).is_file():
            raise RecipeError(f"{where} job {job.name} names a missing template {job.template}")
    defaults_data = _require(data, "defaults", where)
    defaults = {}
    for kind in ("setup", "train"):
        try:
            defaults[kind] = JobResources(**_require(defaults_data, kind, f"{where} defaults"))
        except TypeError as exc:
            raise RecipeError(f"{where} defaults.{kind}: {exc}") from None
    text = yaml.safe_dump(data)
    parameters = tuple(_load_parameter(p, f"{where} parameters[{i}]") for i, p in enumerate(data.get("parameters") or ()))
    outputs = data.get("outputs") or {}
    unknown_limits = set(outputs.get("checkpoint_limits") or ()) - {p.name for p in parameters}
    if unknown_limits:
        raise RecipeError(f"{where} outputs.checkpoint_limits names an undeclared parameter {sorted(unknown_limits)[0]}")
    training_stages = data.get("training_stages", 1)
    if not isinstance(training_stages, int) or isinstance(training_stages, bool) or training_stages < 1:
        raise RecipeError(f"{where} training_stages must be a whole number >= 1, got {training_stages!r}")
    reserved = {"namespace", "project_home", "data_root", "variant"} & {p.name for p in parameters}
    reserved_names = ({"namespace", "project_home", "data_root", "variant"} | {p.name for p in parameters}
                      | {str(k) for v in data.get("variants") or () for k in (v.get("values") or {})})
    if reserved:
        raise RecipeError(f"{where} declares a parameter named {sorted(reserved)[0]}", "that name is a placeholder; rename it")
    return Recipe(
        name=_require(data, "name", where),
        title=str(data.get("title", data["name"])),
        description=" ".join(str(data.get("description", "")).split()),
        folder=folder,
        repos=tuple(repos),
        jobs=jobs,
        defaults=defaults,
        variants=tuple(Variant(v["name"], v.get("description", ""), {str(k): str(x) for k, x in (v.get("values") or {}).items()})
                       for v in data.get("variants") or ()),
        files=tuple(GeneratedFile(f["template"], f["name"]) for f in data.get("files") or ()),
        creates=tuple(data.get("creates") or ()),
        folders=_load_folders(data.get("folders"), where, reserved_names),
        results=str(data.get("results", "")),
        checkpoint_bytes=parse_size(outputs.get("checkpoint_size", 0)),
        checkpoint_limit_params=tuple(outputs.get("checkpoint_limits") or ()),
        checkpoint_dirs=tuple(str(d) for d in outputs.get("checkpoint_dirs") or ()),
        converted_dirs=tuple(str(d) for d in outputs.get("converted_dirs") or ()),
        final_bytes=parse_size(outputs.get("final_size", 0)),
        needs_namespace="{namespace}" in text,
        parameters=parameters,
        extra={k: v for k, v in data.items() if k not in {
            "name", "title", "description", "repos", "jobs", "defaults", "variants",
            "files", "creates", "outputs", "parameters", "results", "training_stages", "continuation",
            "folders"}},
        training_stages=training_stages,
        continuation=parse_continuation(data.get("continuation"), where, {p.name for p in parameters}),
    )


_FOLDER_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def _load_folders(data: Any, where: str, taken: set[str]) -> tuple[tuple[str, str], ...]:
    """A recipe's ``folders:``: ``name: "{project_home}/..."`` (or under
    ``{data_root}``, or under a folder above it), in order."""
    if data is None:
        return ()
    if not isinstance(data, dict):
        raise RecipeError(f"{where} folders must be a mapping of names to paths",
                          'e.g. folders: {frames: "{data_root}/frames"}')
    folders: list[tuple[str, str]] = []
    for name, folder in data.items():
        if not isinstance(name, str) or not _FOLDER_NAME.match(name):
            raise RecipeError(f"{where} folders has a bad name {name!r}",
                              "use lower-case letters, digits and _ (templates read folders.<name>)")
        if name in taken:
            raise RecipeError(f"{where} folders.{name} is already a placeholder (a parameter, a variant's value "
                              "or a built-in)", "rename the folder")
        bases = ("project_home", "data_root", *(earlier for earlier, _ in folders))
        if not isinstance(folder, str) or not folder.startswith(tuple(f"{{{base}}}" for base in bases)):
            raise RecipeError(f"{where} folders.{name} must be a path under {{project_home}}, {{data_root}} or a "
                              f"folder above it, got {folder!r}", 'e.g. "{data_root}/frames"')
        folders.append((name, folder))
    return tuple(folders)


PARAMETER_KEYS = ("name", "type", "default", "help", "target", "min", "max", "choices", "pattern", "multiple_of",
                  "step_time")
STEP_TIME_KINDS = ("proportional",)


def _load_parameter(data: dict[str, Any], where: str) -> Parameter:
    name = _require(data, "name", where)
    unknown = first_unknown_key(data, PARAMETER_KEYS)
    if unknown is not None:
        # A comma inside an unquoted flow-mapping value ({help: a, b}) makes
        # a stray key: refuse it rather than silently cut the text.
        raise RecipeError(f"{where} ({name}) has an unknown key {unknown!r}",
                          f"allowed keys: {', '.join(PARAMETER_KEYS)}; quote values that contain commas")
    kind = data.get("type", "str")
    if kind not in PARAMETER_TYPES:
        raise RecipeError(f"{where} ({name}) has type {kind!r}", f"allowed: {', '.join(PARAMETER_TYPES)}")
    param = Parameter(
        name=name,
        type=kind,
        default=_require(data, "default", where),
        help=" ".join(str(_require(data, "help", where)).split()),
        target=str(data.get("target", "")),
        minimum=data.get("min"),
        maximum=data.get("max"),
        choices=tuple(data.get("choices") or ()),
        pattern=data.get("pattern"),
        multiple_of=data.get("multiple_of"),
        step_time=str(data.get("step_time") or ""),
    )
    if param.step_time and (param.step_time not in STEP_TIME_KINDS or kind not in ("int", "float")):
        raise RecipeError(f"{where} ({name}) has step_time {param.step_time!r}",
                          f"allowed: {', '.join(STEP_TIME_KINDS)}, on an int or float parameter")
    if kind == "choice" and not param.choices:
        raise RecipeError(f"{where} ({name}) is a choice without choices")
    try:
        param.convert(param.default)
    except (ValueError, TypeError):
        raise RecipeError(f"{where} ({name}) has a default {param.default!r} outside what it allows") from None
    return param


@lru_cache(maxsize=4)
def _catalog(root: Path) -> dict[str, Recipe]:
    recipes = {}
    for folder in sorted(root.iterdir()):
        if folder.is_dir() and (folder / "recipe.yaml").is_file() and folder.name != SHARED_FOLDER:
            recipe = _load_recipe(folder)
            recipes[recipe.name] = recipe
    return recipes


def all_recipes() -> dict[str, Recipe]:
    """Every recipe shipped with hpcwizard, by name."""
    return dict(_catalog(templates_root()))


def get_recipe(name: str) -> Recipe:
    recipes = all_recipes()
    if name not in recipes:
        raise PlanError(f"recipe has a bad value {name!r}", f"allowed: {', '.join(recipes)}")
    return recipes[name]


def fill_namespace(plan: Plan, recipe: Recipe) -> Plan:
    """The plan with ``hf_namespace`` defaulted to the token's user, as DESIGN promises.

    Only asks the hub when the recipe needs a namespace and the plan has none.
    """
    if plan.hf_namespace or not recipe.needs_namespace:
        return plan
    from hpcwizard.checks import hub

    source = hub.find_token()
    if source is None:
        raise PlanError(f"recipe {recipe.name} needs hf_namespace and no Hugging Face token was found to default it",
                        "set hf_namespace: <your HF user or org> in the plan, or log in (`hpcwizard` token step)")
    return plan.with_changes(hf_namespace=hub.validate_token(source.token).name)


def load_plan_for_recipe(path: Path | str) -> tuple[Plan, Recipe]:
    """Load a plan and its recipe, validating the variant against the recipe."""
    from hpcwizard.project.plan import load_plan

    recipes = all_recipes()
    return checked_against_recipe(load_plan(path, recipe_names=tuple(recipes)), recipes)


def plan_for_recipe_from_dict(data: Any) -> tuple[Plan, Recipe]:
    """:func:`load_plan_for_recipe` for a plan already parsed (the wizard's saved plan)."""
    recipes = all_recipes()
    return checked_against_recipe(plan_from_dict(data, recipe_names=tuple(recipes)), recipes)


def checked_against_recipe(plan: Plan, recipes: dict[str, Recipe]) -> tuple[Plan, Recipe]:
    """The variant and the parameters validated against the plan's recipe: a
    value no recipe declares never reaches a template."""
    recipe = recipes[plan.recipe]
    variant = recipe.check_variant(plan.variant)
    if variant != plan.variant:
        plan = plan.with_changes(variant=variant)
    recipe.resolve_params(plan.params)  # refuse a bad parameter at load time, naming it
    return plan, recipe

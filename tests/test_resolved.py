"""A plan is resolved once (hpcwizard.project.resolved), and templates read the
paths recipe.yaml declares from that resolution instead of spelling them again.

No mocks: the shipped recipes, copies of them with a path moved, the real
renderer, the real checks on a scratch tree."""

from __future__ import annotations

import dataclasses
import re
import shlex
import shutil
from pathlib import Path

import pytest

from hpcwizard.checks.preflight import find_earlier_checkpoints
from hpcwizard.errors import UserError
from hpcwizard.prepare import parts_of
from hpcwizard.project.home import Project
from hpcwizard.project.recipe import SHARED_FOLDER, RecipeError, _load_recipe, all_recipes, templates_root
from hpcwizard.project.render import render
from hpcwizard.project.resolved import ResolvedPlan, resolve

ODD_HOME = "/tmp/odd home/$(x)"
ODD_DATA = "/tmp/odd data/`y`"
_NAMED_REPO = re.compile(r"repos\['([^']+)'\]\.dest")


def cases() -> list[tuple[str, str | None]]:
    return [(name, variant) for name, recipe in all_recipes().items()
            for variant in (recipe.variant_names or (None,))]


def plan_of(recipe, variant, home=ODD_HOME, data=ODD_DATA):
    extra = {"variant": variant} if variant else {}
    return recipe.default_plan(Path(home), Path(data), hf_namespace="alice", **extra)


def template_sources(folder: Path) -> str:
    """Every template a recipe's scripts are rendered from: its own and the shared ones."""
    return "\n".join(path.read_text(encoding="utf-8")
                     for path in sorted([*folder.glob("*.j2"), *(templates_root() / SHARED_FOLDER).glob("*.j2")]))


def declared_folders(recipe) -> list[str]:
    """The paths recipe.yaml declares for the repos, the code, the environment
    and its named ``folders:``, placeholders unfilled (a folder under another
    folder spelled out from the roots)."""
    declared = [repo.dest for repo in recipe.repos]
    for section in ("code", "environment"):
        data = recipe.extra.get(section)
        if isinstance(data, dict):
            declared += [str(data[key]) for key in ("dest", "dir") if key in data]
    spelled: dict[str, str] = {}
    for name, folder in recipe.folders:
        for earlier, text in spelled.items():
            folder = folder.replace("{" + earlier + "}", text)
        spelled[name] = folder
    return declared + list(spelled.values())


def spellings(declared: str) -> list[str]:
    """How a template would spell ``declared`` itself: its tail after the
    project home's or data root's shell variable, or after the paths value."""
    root, tail = re.fullmatch(r"\{(project_home|data_root)\}(/.*)", declared).groups()
    variable = root.upper()
    return [f"${variable}{tail}", f"${{{variable}}}{tail}", f'"${variable}"{tail}',
            f"paths.{root} ~ '{tail}", f'paths.{root} ~ "{tail}']


@pytest.mark.parametrize("name", sorted(all_recipes()))
def test_no_template_spells_a_path_recipe_yaml_declares(name):
    """A repo's dest, the code's dest, the environment's dir: recipe.yaml says
    where they are, once. A template that spelled one again (say
    "$PROJECT_HOME/weights/tiny-base-model") would keep the old place after
    recipe.yaml moved it."""
    recipe = all_recipes()[name]
    sources = template_sources(recipe.folder)
    checked = 0
    for declared in declared_folders(recipe):
        if "{" in declared.split("}", 1)[1]:  # a variant's or a parameter's value inside: no fixed text to look for
            continue
        for spelling in spellings(declared):
            assert spelling not in sources, f"a {name} template spells {declared} ({spelling}) instead of reading it"
        checked += 1
    assert checked >= 2


@pytest.mark.parametrize(("name", "variant"), cases())
def test_scripts_follow_a_repo_moved_in_recipe_yaml(tmp_path, name, variant):
    """Move every repo a template reads in a copy of the recipe: the rendered
    files name the new place, quoted, and the old one nowhere."""
    shipped = all_recipes()[name]
    read = sorted(set(_NAMED_REPO.findall(template_sources(shipped.folder))))
    if not read:
        pytest.skip(f"{name}'s templates read no repo's dest")
    copy = tmp_path / name
    shutil.copytree(shipped.folder, copy)
    text = (copy / "recipe.yaml").read_text(encoding="utf-8")
    old = resolve(plan_of(shipped, variant))
    for repo in shipped.repos:
        if repo.name in read:
            assert text.count(f'dest: "{repo.dest}"') == 1
            text = text.replace(f'dest: "{repo.dest}"', f'dest: "{{project_home}}/moved/{repo.name} dir"')
    (copy / "recipe.yaml").write_text(text, encoding="utf-8")
    moved = _load_recipe(copy)
    resolved = resolve(plan_of(moved, variant), moved)
    rendered = "\n".join(f.text for f in render(Project(resolved.plan.project_home), resolved, tmp_path / "out").files)
    for repo_name in read:
        if repo_name not in resolved.repos_by_name:  # another variant's repo
            continue
        new_dest = resolved.repos_by_name[repo_name].dest
        assert new_dest == Path(ODD_HOME) / "moved" / f"{repo_name} dir"
        assert shlex.quote(str(new_dest)) in rendered or f'"{new_dest}"' in rendered  # sh, or tojson in a config
        assert str(old.repos_by_name[repo_name].dest) not in rendered


def test_render_and_the_checks_read_the_resolution_they_are_given(tmp_path):
    """What render, prepare and the checkpoint check use is the ResolvedPlan's
    fields, not a second lookup of the recipe: change a field, and they follow."""
    recipe = all_recipes()["demo"]
    resolved = resolve(recipe.default_plan(tmp_path / "p", tmp_path / "d", hf_namespace="alice"))
    base = resolved.repos_by_name["base-model"]
    elsewhere = dataclasses.replace(base, dest=tmp_path / "another base")
    changed = dataclasses.replace(resolved, repos=tuple(elsewhere if r is base else r for r in resolved.repos))
    train = next(f.text for f in render(Project(changed.plan.project_home), changed, tmp_path / "out").files if f.name.endswith("_train.sbatch"))
    assert f"BASE_MODEL={shlex.quote(str(tmp_path / 'another base'))}" in train

    assert parts_of(resolved)[0].title == "3 Hugging Face repo(s)"
    assert parts_of(dataclasses.replace(resolved, repos=resolved.repos[:1]))[0].title == "1 Hugging Face repo(s)"

    folder = tmp_path / "somewhere else"
    (folder / "checkpoint-4").mkdir(parents=True)
    assert find_earlier_checkpoints(Project(resolved.plan.project_home), resolved) == []
    [found] = find_earlier_checkpoints(Project(resolved.plan.project_home),
                                       dataclasses.replace(resolved, checkpoint_dirs=(folder,)))
    assert (found.folder, found.latest) == (folder, 4)


@pytest.mark.parametrize(("name", "variant"), cases())
def test_resolve_fills_in_each_fact_once_and_frozen(name, variant):
    recipe = all_recipes()[name]
    plan = plan_of(recipe, variant)
    resolved = resolve(plan)
    assert isinstance(resolved, ResolvedPlan) and resolved.recipe is recipe and resolved.plan is plan
    assert resolved.repos == tuple(recipe.repos_for(plan))
    assert dict(resolved.params) == recipe.resolve_params(plan.params)
    assert list(resolved.checkpoint_dirs) == recipe.checkpoint_dirs_for(plan)
    assert list(resolved.created) == recipe.created_paths(plan)
    assert resolved.output_bytes() == recipe.output_bytes_for(plan)
    assert resolve(plan, recipe) == resolved  # the same facts whether the recipe is given or looked up
    with pytest.raises(dataclasses.FrozenInstanceError):
        resolved.repos = ()  # type: ignore[misc]
    with pytest.raises(TypeError):
        resolved.params["x"] = 1  # type: ignore[index]


def test_resolve_refuses_what_the_plan_cannot_be(tmp_path):
    recipe = all_recipes()["demo"]
    with pytest.raises(UserError, match="params.max_train_steps"):
        resolve(recipe.default_plan(tmp_path, hf_namespace="alice", params={"max_train_steps": 0}))
    with pytest.raises(UserError, match="needs hf_namespace"):
        resolve(recipe.default_plan(tmp_path))
    with pytest.raises(UserError, match="not fff-vdi"):
        resolve(recipe.default_plan(tmp_path, hf_namespace="alice"), all_recipes()["fff-vdi"])


def test_a_project_resolves_its_own_plans(tmp_path):
    plan = all_recipes()["demo"].default_plan(tmp_path / "p", hf_namespace="alice")
    assert Project(tmp_path / "p").resolve(plan) == resolve(plan)
    with pytest.raises(UserError, match="not this project"):
        Project(tmp_path / "other").resolve(plan)


def test_two_repos_of_one_name_are_refused(tmp_path):
    copy = tmp_path / "demo"
    shutil.copytree(all_recipes()["demo"].folder, copy)
    text = (copy / "recipe.yaml").read_text(encoding="utf-8")
    (copy / "recipe.yaml").write_text(text.replace("name: frames", "name: code"), encoding="utf-8")
    with pytest.raises(RecipeError, match="two repos named 'code'"):
        _load_recipe(copy)

"""Recipe parameters: declared in recipe.yaml, validated in the plan, rendered where they belong."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from hpcwizard.cli import main
from hpcwizard.project.home import Project
from hpcwizard.project.plan import PlanError
from hpcwizard.project.recipe import all_recipes, get_recipe
from hpcwizard.project.render import render
from hpcwizard.project.resolved import resolve


def rendered(tmp_path: Path, recipe_name: str, params: dict, variant: str | None = None) -> dict[str, str]:
    recipe = get_recipe(recipe_name)
    overrides = {"params": params}
    if variant:
        overrides["variant"] = variant
    plan = recipe.default_plan(tmp_path / "proj", hf_namespace="alice", **overrides)
    return {f.name: f.text for f in render(Project(plan.project_home), resolve(plan, recipe), tmp_path / "out").files}


def test_every_parameter_is_documented_and_its_default_is_allowed():
    for recipe in all_recipes().values():
        assert recipe.parameters, f"{recipe.name} declares no parameters"
        for param in recipe.parameters:
            assert param.help and param.target, f"{recipe.name}.{param.name} lacks help or target"
            assert param.convert(param.default) == param.default


FFF_VDI_CONFIG_KEYS = {
    "width": 640, "height": 320, "num_frames": 14, "learning_rate": 2.5e-6, "max_train_steps": 1234,
    "per_gpu_batch_size": 2, "checkpointing_steps": 50, "checkpoints_total_limit": 4, "seed": 7,
    "mixed_precision": "bf16",
}


def test_fff_vdi_parameters_reach_config_yaml(tmp_path):
    files = rendered(tmp_path, "fff-vdi", FFF_VDI_CONFIG_KEYS)
    config = yaml.safe_load(files["config.yaml"])
    for key, value in FFF_VDI_CONFIG_KEYS.items():
        assert config[key] == pytest.approx(value) if isinstance(value, float) else config[key] == value, key
    assert "--mixed_precision bf16" in files["02_train.sbatch"]
    # Nowhere else: the scripts do not carry config values as flags (config.yaml overrides flags upstream).
    assert "1234" not in files["01_setup.sbatch"]


def test_fff_vdi_validation_toggle(tmp_path):
    off = yaml.safe_load(rendered(tmp_path / "a", "fff-vdi", {})["config.yaml"])
    on = yaml.safe_load(rendered(tmp_path / "b", "fff-vdi", {"validation": True, "validation_steps": 500})["config.yaml"])
    assert off["validation_steps"] > off["max_train_steps"]
    assert on["validation_steps"] == 500


def test_fff_vdi_defaults_reproduce_the_seed(tmp_path):
    config = yaml.safe_load(rendered(tmp_path, "fff-vdi", {})["config.yaml"])
    seed = {"width": 512, "height": 256, "num_frames": 25, "per_gpu_batch_size": 1,
            "max_train_steps": 100000, "mixed_precision": "fp16"}
    assert {k: config[k] for k in seed} == seed
    assert config["learning_rate"] == pytest.approx(1e-5)
    assert config["data_root"].endswith("youtube-vos/JPEGImages") and config["data_root"].startswith("/")


def flag_values(script: str, flag: str) -> list[str]:
    return re.findall(rf"--{flag}=(\S+?)(?: |\\|$)", script, flags=re.MULTILINE)


@pytest.mark.parametrize("variant", ["non-prompt", "prompt"])
def test_diffueraser_parameters_reach_each_stage(tmp_path, variant):
    params = {
        "stage1_resolution": 384, "stage2_resolution": 448, "stage1_nframes": 8, "stage2_nframes": 16,
        "stage1_learning_rate": 5e-6, "stage2_learning_rate": 2e-6, "stage1_max_train_steps": 300,
        "stage2_max_train_steps": 400, "stage1_train_batch_size": 2, "stage2_train_batch_size": 3,
        "stage1_checkpointing_steps": 30, "stage2_checkpointing_steps": 40,
        "stage1_checkpoints_total_limit": 5, "stage2_checkpoints_total_limit": 6,
    }
    script = rendered(tmp_path, "diffueraser", params, variant)["02_train.sbatch"]
    assert flag_values(script, "resolution") == ["384", "448"]
    assert flag_values(script, "nframes") == ["8", "16"]
    assert flag_values(script, "learning_rate") == ["5e-06", "2e-06"]
    assert flag_values(script, "max_train_steps") == ["300", "400"]
    assert flag_values(script, "train_batch_size") == ["2", "3"]
    assert flag_values(script, "checkpointing_steps") == ["30", "40"]
    assert flag_values(script, "checkpoints_total_limit") == ["5", "6"]


def test_diffueraser_defaults_reproduce_upstream_and_bound_checkpoints(tmp_path):
    script = rendered(tmp_path, "diffueraser", {})["02_train.sbatch"]
    assert flag_values(script, "resolution") == ["512", "512"]
    assert flag_values(script, "nframes") == ["10", "22"]
    assert flag_values(script, "learning_rate") == ["5e-06", "5e-06"]  # the fork's run_finetune_all.sbatch
    assert flag_values(script, "checkpointing_steps") == ["2000", "2000"]
    assert all(int(v) >= 1 for v in flag_values(script, "checkpoints_total_limit"))


def test_diffueraser_stages_choice(tmp_path):
    launch = '"${ACCELERATE[@]}" train_DiffuEraser_stage'
    only_one = rendered(tmp_path / "a", "diffueraser", {"stages": "stage1"})["02_train.sbatch"]
    assert f"{launch}1.py" in only_one and f"{launch}2.py" not in only_one
    only_two = rendered(tmp_path / "b", "diffueraser", {"stages": "stage2"})["02_train.sbatch"]
    assert f"{launch}1.py" not in only_two and f"{launch}2.py" in only_two
    assert "needs the converted stage 1" in only_two


def test_demo_parameters_reach_the_trainer(tmp_path):
    script = rendered(tmp_path, "demo", {"max_train_steps": 9, "seconds_per_step": 0})["02_train.sbatch"]
    # The two trainer runs (the stage markers record the same flags too).
    runs = [line for line in script.splitlines() if line.strip().startswith("--output-dir")]
    assert len(runs) == 2 and all("--max-steps 9 " in run and "--seconds-per-step 0 " in run for run in runs)


@pytest.mark.parametrize(
    ("recipe", "params", "message"),
    [
        ("fff-vdi", {"width": 10}, "params.width has a bad value 10; allowed: a multiple of 64 from 64 to 2048"),
        ("fff-vdi", {"width": 500}, "params.width has a bad value 500; allowed: a multiple of 64 from 64 to 2048"),
        ("diffueraser", {"stage1_resolution": 500}, "params.stage1_resolution has a bad value 500; allowed: a multiple of 8"),
        ("fff-vdi", {"num_frames": "many"}, "params.num_frames has a bad value 'many'; allowed: a whole number"),
        ("fff-vdi", {"learning_rate": "fast"}, "params.learning_rate has a bad value 'fast'; allowed: a number from"),
        ("fff-vdi", {"learning_rate": 1.0}, "params.learning_rate has a bad value 1.0"),
        ("fff-vdi", {"mixed_precision": "fp8"}, "params.mixed_precision has a bad value 'fp8'; allowed: one of fp16, bf16, no"),
        ("fff-vdi", {"validation": "maybe"}, "params.validation has a bad value 'maybe'; allowed: true or false"),
        ("fff-vdi", {"max_train_steps": True}, "params.max_train_steps has a bad value True"),
        ("fff-vdi", {"fff_vdi_commit": "main; rm -rf ~"}, "params.fff_vdi_commit has a bad value"),
        ("fff-vdi", {"lr": 1e-4}, "unknown parameter params.lr for recipe fff-vdi; allowed: width, height"),
        ("diffueraser", {"stages": "three"}, "params.stages has a bad value 'three'; allowed: one of both, stage1, stage2"),
        ("diffueraser", {"stage1_nframes": 0}, "params.stage1_nframes has a bad value 0"),
    ],
)
def test_bad_parameter_values_are_refused_naming_the_parameter(tmp_path, recipe, params, message):
    with pytest.raises(PlanError) as caught:
        rendered(tmp_path, recipe, params)
    assert message in caught.value.one_line()


def test_cli_refuses_a_bad_parameter_in_one_line(tmp_path, capsys):
    plan = get_recipe("fff-vdi").default_plan(tmp_path / "proj")
    data = plan.to_dict()
    data["params"] = {"num_frames": 1000}
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text(yaml.safe_dump(data))
    assert main(["render", str(plan_file), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hpcwizard: params.num_frames has a bad value 1000; allowed: a whole number from 2 to 64")
    assert err.count("\n") == 1 and not (tmp_path / "out").exists()


def test_params_round_trip_through_the_plan_file(tmp_path):
    from hpcwizard.project.recipe import load_plan_for_recipe

    plan = get_recipe("diffueraser").default_plan(tmp_path / "proj", hf_namespace="alice",
                                                  params={"stage1_learning_rate": 5e-6, "stages": "stage1"})
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text(plan.to_yaml())
    loaded, _ = load_plan_for_recipe(plan_file)
    assert loaded.params == {"stage1_learning_rate": 5e-6, "stages": "stage1"}


@pytest.mark.parametrize(
    ("kind", "text", "expected"),
    [
        ("int", "123", 123), ("int", " 7 ", 7), ("int", "-5", -5),
        ("int", "12_3", None), ("int", "+6", None), ("int", "\u0663", None),  # Arabic-Indic 3: int() reads it
        ("int", "6.0", None), ("int", "many", None),
        ("float", "0.5", 0.5), ("float", "1e-4", 1e-4), ("float", "1E+3", 1000.0), ("float", ".5", 0.5),
        ("float", "5.", 5.0), ("float", "-2", -2.0),
        ("float", "1_0.5", None), ("float", "+1e-4", None), ("float", "0_5", None), ("float", "inf", None),
    ],
)
def test_numbers_typed_as_text_are_written_plainly(kind, text, expected):
    # Python's int() and float() take "12_3" (as 123) and "+6": nobody types those on purpose.
    from hpcwizard.project.recipe import Parameter

    param = Parameter("n", kind, 1, "a number", minimum=-10, maximum=10000)
    if expected is None:
        with pytest.raises(ValueError):
            param.convert(text)
    else:
        assert param.convert(text) == expected


def test_a_quoted_number_with_an_underscore_in_a_plan_file_is_refused_saying_how_to_write_it(tmp_path):
    from hpcwizard.project.recipe import load_plan_for_recipe

    plan = get_recipe("demo").default_plan(tmp_path / "proj", hf_namespace="alice")
    data = plan.to_dict()
    plan_file = tmp_path / "plan.yaml"
    data["params"] = {"max_train_steps": "12_3"}
    plan_file.write_text(yaml.safe_dump(data))
    with pytest.raises(PlanError) as caught:
        load_plan_for_recipe(plan_file)
    said = caught.value.one_line()
    assert "params.max_train_steps has a bad value '12_3'" in said and "write digits only, like 123 (no _ or +)" in said
    # YAML's own numbers are YAML's business: an unquoted 12_3 is YAML 1.1's 123.
    plan_file.write_text(yaml.safe_dump(data).replace("'12_3'", "12_3"))
    assert "12_3" in plan_file.read_text() and "'12_3'" not in plan_file.read_text()
    loaded, _ = load_plan_for_recipe(plan_file)
    assert loaded.params == {"max_train_steps": 123}


def test_recipes_json_lists_parameters(capsys):
    assert main(["recipes", "--json"]) == 0
    recipes = {r["name"]: r for r in json.loads(capsys.readouterr().out)["recipes"]}
    fff = {p["name"]: p for p in recipes["fff-vdi"]["parameters"]}
    assert fff["learning_rate"]["default"] == pytest.approx(1e-5)
    assert fff["mixed_precision"]["choices"] == ["fp16", "bf16", "no"]
    assert fff["checkpoints_total_limit"]["min"] == 1
    assert "stage2_nframes" in {p["name"] for p in recipes["diffueraser"]["parameters"]}


def test_expected_outputs_follow_the_checkpoint_limit(tmp_path):
    recipe = get_recipe("fff-vdi")
    two = recipe.output_bytes_for(recipe.default_plan(tmp_path))
    five = recipe.output_bytes_for(recipe.default_plan(tmp_path, params={"checkpoints_total_limit": 5}))
    assert five - two == 3 * recipe.checkpoint_bytes > 0
    diffueraser = get_recipe("diffueraser")
    plan = diffueraser.default_plan(tmp_path, params={"stage1_checkpoints_total_limit": 1, "stage2_checkpoints_total_limit": 1})
    assert diffueraser.output_bytes_for(plan) == 2 * diffueraser.checkpoint_bytes + diffueraser.final_bytes


def test_readme_recipe_sections_match_the_recipes():
    from hpcwizard.project.recipe_docs import BEGIN, END, recipes_markdown

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    start, end = readme.index(BEGIN), readme.index(END) + len(END) + 1
    assert readme[start:end] == recipes_markdown(list(all_recipes().values())), (
        "README's recipe sections are stale: regenerate them with `hpcwizard recipes --markdown`")


def test_a_recipes_named_folders_fill_its_paths_and_bad_ones_are_refused(tmp_path):
    """``folders:`` names paths once: later folders and every other path of
    recipe.yaml use them as placeholders; a bad name, a clash with another
    placeholder, or a path under no root is refused at load, naming it."""
    from hpcwizard.project.recipe import RecipeError, _load_recipe

    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "train.sbatch.j2").write_text("#!/bin/bash\n")
    base = ("name: mine\njobs: [{name: train, template: train.sbatch.j2, resources: train}]\n"
            "defaults: {setup: {partition: cpu}, train: {partition: gpu}}\n"
            "parameters: [{name: width, type: int, default: 64, help: pixels}]\n")
    (folder / "recipe.yaml").write_text(base + 'folders: {data: "{data_root}/set", frames: "{data}/frames {width}"}\n'
                                               'creates: ["{frames}"]\n')
    recipe = _load_recipe(folder)
    resolved = resolve(recipe.default_plan(tmp_path / "home", tmp_path / "d"), recipe)
    assert dict(resolved.folders) == {"data": tmp_path / "d" / "set", "frames": tmp_path / "d" / "set" / "frames 64"}
    assert resolved.created == (tmp_path / "d" / "set" / "frames 64",)
    for bad, says in [('folders: {Frames: "{data_root}/f"}', "bad name 'Frames'"),
                      ('folders: {width: "{data_root}/f"}', "folders.width is already a placeholder"),
                      ('folders: {f: "/scratch/f"}', "folders.f must be a path under {project_home}, {data_root} or"),
                      ('folders: {f: "{later}/x", later: "{data_root}/l"}', "folders.f must be a path under"),
                      ('folders: ["{data_root}/f"]', "folders must be a mapping")]:
        (folder / "recipe.yaml").write_text(base + bad + "\n")
        with pytest.raises(RecipeError, match=re.escape(says)):
            _load_recipe(folder)


def test_a_recipe_with_a_typo_or_a_cut_help_text_is_refused(tmp_path):
    from hpcwizard.project.recipe import RecipeError, _load_recipe

    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "train.sbatch.j2").write_text("#!/bin/bash\n")
    base = ("name: mine\njobs: [{name: train, template: train.sbatch.j2, resources: train}]\n"
            "defaults: {setup: {partition: cpu}, train: {partition: gpu}}\n")
    (folder / "recipe.yaml").write_text(base + "paramaters: []\n")
    with pytest.raises(RecipeError, match="unknown key 'paramaters'"):
        _load_recipe(folder)
    # An unquoted comma in a flow mapping silently splits the help text into a stray key.
    (folder / "recipe.yaml").write_text(base + "parameters:\n  - {name: w, type: int, default: 1, help: pixels, a multiple of 64}\n")
    with pytest.raises(RecipeError, match="unknown key 'a multiple of 64'.*quote values that contain commas"):
        _load_recipe(folder)
    (folder / "recipe.yaml").write_text(base + "parameters:\n  - {name: w, type: int, default: 0, min: 1, help: x}\n")
    with pytest.raises(RecipeError, match="default 0 outside what it allows"):
        _load_recipe(folder)

"""Plan files: loading, validation messages, round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hpcwizard.cli import main
from hpcwizard.project.plan import PlanError, load_plan, parse_memory_mb, parse_time_limit, plan_from_dict
from hpcwizard.project.recipe import all_recipes, get_recipe, load_plan_for_recipe

GOOD = {
    "recipe": "demo",
    "project_home": "/tmp/proj",
    "data_root": "/tmp/proj/data",
    "hf_namespace": "alice",
    "download": "job",
    "setup": {"partition": "cpu", "cpus": 2, "mem": "4G", "time": "01:00:00"},
    "train": {"partition": "gpu", "gpus": 2, "cpus": 2, "mem": "8G", "time": "04:00:00"},
    "account": None,
}


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_design_example_loads_and_round_trips(tmp_path):
    plan = load_plan(write(tmp_path, GOOD))
    assert plan.train.gpus == 2 and plan.setup.gpus == 0
    assert plan.project_home == Path("/tmp/proj")
    again = plan_from_dict(yaml.safe_load(plan.to_yaml()))
    assert again == plan
    assert again.fingerprint() == plan.fingerprint()


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"colour": "red"}, "unknown key 'colour' in the plan; allowed keys: recipe,"),
        ({"download": "sometimes"}, "download has a bad value 'sometimes'; allowed: job, login"),
        ({"project_home": "relative/dir"}, "project_home must be an absolute path"),
        ({"data_root": "/ok\nnewline"}, "data_root contains a control character"),
        ({"train": {**GOOD["train"], "gpu": 2}}, "unknown key train.gpu; allowed keys: partition, gpus, cpus, mem, time"),
        ({"train": {**GOOD["train"], "time": "3 days"}}, "train.time has a bad value '3 days'"),
        ({"train": {**GOOD["train"], "mem": "lots"}}, "train.mem has a bad value 'lots'; allowed: a size like 16G"),
        ({"train": {**GOOD["train"], "gpus": -1}}, "train.gpus has a bad value -1; allowed: a whole number from 0"),
        ({"setup": {**GOOD["setup"], "partition": "cpu; rm -rf /"}}, "setup.partition has a bad value"),
        ({"account": "$(whoami)"}, "account has a bad value '$(whoami)'"),
        ({"hf_namespace": "bad name"}, "hf_namespace has a bad value 'bad name'"),
    ],
)
def test_bad_values_name_the_key_and_what_is_allowed(tmp_path, change, expected):
    with pytest.raises(PlanError) as caught:
        load_plan(write(tmp_path, {**GOOD, **change}))
    assert expected in caught.value.one_line()


def test_unknown_recipe_and_variant_are_refused_with_the_choices(tmp_path):
    with pytest.raises(PlanError, match="recipe has a bad value 'nope'; allowed: .*demo"):
        load_plan_for_recipe(write(tmp_path, {**GOOD, "recipe": "nope"}))
    with pytest.raises(PlanError, match="recipe demo has no variants"):
        load_plan_for_recipe(write(tmp_path, {**GOOD, "variant": "prompt"}))


def test_cli_reports_a_bad_plan_in_one_line_without_traceback(tmp_path, capsys):
    code = main(["render", str(write(tmp_path, {**GOOD, "download": "maybe"})), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("hpcwizard: download has a bad value 'maybe'")
    assert not (tmp_path / "out").exists()


def test_missing_and_broken_plan_files(tmp_path):
    with pytest.raises(PlanError, match="no plan file at"):
        load_plan(tmp_path / "absent.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("recipe: demo\n  bad: [indent\n")
    with pytest.raises(PlanError, match="not valid YAML at line"):
        load_plan(broken)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 5400), ("30:00", 1800), ("04:00:00", 14400), ("1-00:00:00", 86400), ("2-12", 216000), ("1-2:30", 95400)],
)
def test_time_limits(text, seconds):
    assert parse_time_limit(text) == seconds


def test_memory_sizes():
    assert parse_memory_mb("16G") == 16384
    assert parse_memory_mb("500M") == 500
    assert parse_memory_mb("1T") == 1048576
    assert parse_memory_mb("2048") == 2048


def test_every_recipe_default_plan_is_valid(tmp_path):
    for name, recipe in all_recipes().items():
        plan = recipe.default_plan(tmp_path / name, hf_namespace="alice")
        assert plan.recipe == name
        assert recipe.check_variant(plan.variant) == plan.variant
        assert recipe.repos_for(plan), f"{name} fetches nothing"


def test_recipe_needing_a_namespace_says_so(tmp_path):
    recipe = get_recipe("demo")
    plan = recipe.default_plan(tmp_path)
    with pytest.raises(PlanError, match="needs hf_namespace"):
        recipe.repos_for(plan)


def test_recipes_command_lists_what_each_needs(capsys):
    assert main(["recipes", "--json"]) == 0
    import json

    listed = {r["name"]: r for r in json.loads(capsys.readouterr().out)["recipes"]}
    assert "demo" in listed
    demo = listed["demo"]
    assert [j["name"] for j in demo["jobs"]] == ["setup", "train"]
    assert any(r["gated"] for r in demo["repos"])
    assert all(r["size_bytes"] > 0 for r in demo["repos"])


@pytest.mark.parametrize("key, value", [
    ("variant", "x\nid > /tmp/pwned\n#"),
    ("variant", "non-prompt\n#SBATCH --export=NONE"),
    ("account", "acct\n"),
    ("qos", "normal\n"),
    ("hf_namespace", "alice\n"),
])
def test_values_that_reach_scripts_match_whole_patterns(tmp_path, key, value):
    """``$`` also matches before a final newline: every pattern must match the
    whole value, or a newline reaches a script or an #SBATCH line."""
    data = yaml.safe_load(get_recipe("diffueraser").default_plan(tmp_path, hf_namespace="alice").to_yaml())
    data[key] = value
    with pytest.raises(PlanError, match=key):
        plan_from_dict(data, recipe_names=tuple(all_recipes()))


@pytest.mark.parametrize("field, value", [("partition", "cpu\n"), ("mem", "1G\n"), ("time", "00:10:00\n")])
def test_resources_refuse_a_trailing_newline(tmp_path, field, value):
    data = yaml.safe_load(get_recipe("demo").default_plan(tmp_path, hf_namespace="alice").to_yaml())
    data["train"][field] = value
    with pytest.raises(PlanError):
        plan_from_dict(data, recipe_names=tuple(all_recipes()))


@pytest.mark.parametrize("time, why", [
    ("25:99", "minutes and seconds go up to 59"),
    ("99:99:99", "minutes and seconds go up to 59"),
    ("1-24", "hours up to 23 once days are given (2-23:59:59)"),
    ("0", "no time at all"),
    ("00:00:00", "no time at all"),
    (43200, "quote it in YAML"),  # an unquoted 12:00:00, as YAML reads it
])
def test_time_limits_slurm_would_misread_are_refused(tmp_path, time, why):
    data = yaml.safe_load(get_recipe("demo").default_plan(tmp_path, hf_namespace="alice").to_yaml())
    data["setup"]["time"] = time
    with pytest.raises(PlanError, match="setup.time") as refused:
        plan_from_dict(data, recipe_names=tuple(all_recipes()))
    assert why in refused.value.one_line()


def test_an_unquoted_yaml_time_is_caught_in_the_file(tmp_path):
    text = get_recipe("demo").default_plan(tmp_path, hf_namespace="alice").to_yaml()
    path = tmp_path / "plan.yaml"
    path.write_text(text.replace("time: '00:10:00'", "time: 12:00:00").replace('time: "00:10:00"', "time: 12:00:00"))
    assert "time: 12:00:00" in path.read_text()
    with pytest.raises(PlanError, match=r"time is the number 43200"):
        load_plan(path, recipe_names=tuple(all_recipes()))


def test_a_key_given_twice_is_refused_with_both_lines(tmp_path):
    plan = tmp_path / "plan.yaml"
    plan.write_text("recipe: demo\nproject_home: /p\nrecipe: diffueraser\n")
    with pytest.raises(PlanError, match=r"sets 'recipe' twice \(lines 1 and 3\)"):
        load_plan(plan)
    nested = tmp_path / "nested.yaml"
    nested.write_text("recipe: demo\nproject_home: /p\ndata_root: /d\nsetup: {partition: cpu, partition: gpu}\n")
    with pytest.raises(PlanError, match="sets 'partition' twice"):
        load_plan(nested)


def test_an_unknown_recipe_is_named_before_missing_keys(tmp_path):
    plan = tmp_path / "plan.yaml"
    plan.write_text("recipe: nope\nproject_home: /p\n")
    with pytest.raises(PlanError, match="recipe has a bad value 'nope'"):
        load_plan(plan, recipe_names=("demo", "diffueraser"))


def test_train_segments_auto_or_a_bound(tmp_path):
    auto = load_plan(write(tmp_path, {**GOOD, "train": {**GOOD["train"], "segments": "auto"}}))
    assert auto.train.segments is None
    # auto is the default and left out: plans from before `segments` keep their fingerprint
    assert "segments" not in auto.to_dict()["train"]
    assert auto.fingerprint() == load_plan(write(tmp_path, GOOD)).fingerprint()
    three = load_plan(write(tmp_path, {**GOOD, "train": {**GOOD["train"], "segments": 3}}))
    assert three.train.segments == 3 and three.to_dict()["train"]["segments"] == 3
    assert plan_from_dict(yaml.safe_load(three.to_yaml())) == three


@pytest.mark.parametrize(("section", "value", "expected"), [
    ("train", 0, "train.segments has a bad value 0; allowed: auto (the estimated need plus 50 %) or a whole number"),
    ("train", "many", "train.segments has a bad value 'many'"),
    ("train", True, "train.segments has a bad value True"),
    ("train", 5000, "train.segments has a bad value 5000"),
    ("setup", 2, "unknown key setup.segments; allowed keys: partition, gpus, cpus, mem, time"),
])
def test_bad_segments_are_refused(tmp_path, section, value, expected):
    with pytest.raises(PlanError) as caught:
        load_plan(write(tmp_path, {**GOOD, section: {**GOOD[section], "segments": value}}))
    assert expected in caught.value.one_line()


def test_notify_mail_round_trips(tmp_path):
    plan = load_plan(write(tmp_path, {**GOOD, "notify": {"mail": "alice.b+runs@lab-1.example.org"}}))
    assert plan.notify_mail == "alice.b+runs@lab-1.example.org"
    assert plan_from_dict(yaml.safe_load(plan.to_yaml())) == plan
    assert load_plan(write(tmp_path, {**GOOD, "notify": {"mail": None}})).notify_mail is None
    assert "notify" not in load_plan(write(tmp_path, GOOD)).to_dict()


@pytest.mark.parametrize("mail", [
    "alice",  # no domain: Slurm would mail a local user
    "alice@example",  # no top-level domain
    "a b@example.org",
    "alice@example.org\n#SBATCH --export=ALL",  # a second directive
    "$(id)@example.org",
    "a%j@example.org",  # Slurm's % patterns
    "'alice'@example.org",
    ".alice@example.org",
    "alice@-example.org",
    12,
])
def test_notify_mail_must_be_a_plain_address(tmp_path, mail):
    with pytest.raises(PlanError) as caught:
        load_plan(write(tmp_path, {**GOOD, "notify": {"mail": mail}}))
    assert caught.value.one_line().startswith("notify.mail has a bad value")


def test_notify_is_a_mapping_with_known_keys(tmp_path):
    with pytest.raises(PlanError, match="notify must be a mapping"):
        load_plan(write(tmp_path, {**GOOD, "notify": "alice@example.org"}))
    with pytest.raises(PlanError, match="unknown key notify.sms; allowed keys: mail"):
        load_plan(write(tmp_path, {**GOOD, "notify": {"sms": "123"}}))


def test_modules_are_names_module_load_takes_kept_in_order_and_left_out_when_none(tmp_path):
    data = get_recipe("demo").default_plan(tmp_path).to_dict()
    assert "modules" not in data  # plans without modules keep their text and fingerprint
    plan = plan_from_dict({**data, "modules": ["python/3.11.4-gcc-12", "cuda/12.1", "py-torch/2.1.0+cuda@x:y"]})
    assert plan.modules == ("python/3.11.4-gcc-12", "cuda/12.1", "py-torch/2.1.0+cuda@x:y")
    assert plan_from_dict(plan.to_dict()) == plan
    assert plan_from_dict({**data, "modules": "python/3.11 cuda/12.1"}).modules == ("python/3.11", "cuda/12.1")
    for bad in (["python 3.11"], ["$(id)"], ["-f"], [3.11], {"python": "3.11"}, ["x"] * 33):
        with pytest.raises(PlanError) as caught:
            plan_from_dict({**data, "modules": bad})
        assert caught.value.one_line().startswith("modules ") and "\n" not in caught.value.one_line()

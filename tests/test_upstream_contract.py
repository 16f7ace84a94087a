"""The generated files speak the upstream training code's language.

FFF-VDI's train.py reads a hard-coded ./config.yaml whose keys it copies onto
its argparse namespace with setattr (no argparse typing, no check for unknown
keys): a misspelt key is silently ignored and a float written as text stays
text. The DiffuEraser finetune scripts take flags; argparse refuses an unknown
one, but only once the job has waited in the queue for 8 GPUs. So the upstream
interface is recorded here as facts, read from the upstream sources at the
commits the recipes use, and every rendered file is checked against them.

Also checked: accelerate always gets a generated --config_file; every job
header appends to its log; arrays that may be empty survive `set -u` on
bash < 4.4; plans with Slurm-special characters in their paths are refused;
render creates the logs folder; and the DiffuEraser train script's stage
markers, run for real in bash against a fake accelerate.

Set HPCWIZARD_OLD_BASH to a bash 4.2 binary to run the shell tests under it
too (they run under the system bash regardless).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hpcwizard.cli import main
from hpcwizard.project.files import LOCAL_FILES
from hpcwizard.project.home import Project
from hpcwizard.project.plan import PlanError, plan_from_dict
from hpcwizard.project.recipe import get_recipe
from hpcwizard.project.render import render
from hpcwizard.project.resolved import resolve

# ---------------------------------------------------------------- upstream facts

# FFF-VDI: github.com/Hydragon516/FFF-VDI, train.py at this commit (the
# recipe's default fff_vdi_commit). train.py reads ./config.yaml from 8cfab26
# on; resuming works from 61b75c9 on.
FFF_VDI_COMMIT = "bf47e7573232b2c4e9768709374316ff16c8522e"

# Every `args.<key>` that train.py at FFF_VDI_COMMIT reads, with the YAML type
# a config.yaml value needs (its argparse type; bool for store_true flags;
# data_root has no flag and is a path). args.global_batch_size is only
# assigned (per_gpu_batch_size x processes), never read, so it is not here.
FFF_VDI_KEYS: dict[str, type] = {
    "adam_beta1": float, "adam_beta2": float, "adam_epsilon": float, "adam_weight_decay": float,
    "allow_tf32": bool, "checkpointing_steps": int, "checkpoints_total_limit": int,
    "conditioning_dropout_prob": float, "data_root": str, "gradient_accumulation_steps": int,
    "gradient_checkpointing": bool, "height": int, "hub_model_id": str, "hub_token": str,
    "learning_rate": float, "local_rank": int, "logging_dir": str, "lr_scheduler": str,
    "lr_warmup_steps": int, "max_grad_norm": float, "max_train_steps": int, "mixed_precision": str,
    "non_ema_revision": str, "num_frames": int, "num_train_epochs": int, "num_validation_images": int,
    "num_workers": int, "output_dir": str, "per_gpu_batch_size": int, "pretrain_unet": str,
    "pretrained_model_name_or_path": str, "push_to_hub": bool, "report_to": str,
    "resume_from_checkpoint": str, "revision": str, "scale_lr": bool, "seed": int,
    "validation_steps": int, "width": int,
}

# DiffuEraser finetune: the user's fork github.com/jh5117-debug/Reg_DPO_Inpainting
# at commit d4fdb5a (the code the user's Hugging Face code tarball was built
# from): the `parser.add_argument("--...")` calls of parse_args() in
# training/baseline/train_DiffuEraser_stage{1,2}.py (the non-prompt variant)
# and training/prompt/train_DiffuEraser_stage{1,2}.py (prompt). Kind: the
# argparse type, or "flag" for store_true options (which take no value).
DIFFUERASER_COMMIT = "d4fdb5a"
_FORK_COMMON: dict[str, str] = {
    "adam_beta1": "float", "adam_beta2": "float", "adam_epsilon": "float", "adam_weight_decay": "float",
    "allow_tf32": "flag", "base_model_name_or_path": "str", "cache_dir": "str", "caption_column": "str",
    "checkpointing_steps": "int", "checkpoints_total_limit": "int", "csv_file": "str",
    "dataloader_num_workers": "int", "davis_root": "str", "enable_xformers_memory_efficient_attention": "flag",
    "gradient_accumulation_steps": "int", "gradient_checkpointing": "flag", "hub_model_id": "str",
    "hub_token": "str", "learning_rate": "float", "logging_dir": "str", "lr_num_cycles": "int",
    "lr_power": "float", "lr_scheduler": "str", "lr_warmup_steps": "int", "max_grad_norm": "float",
    "max_train_samples": "int", "max_train_steps": "int", "mixed_precision": "str", "nframes": "int",
    "num_train_epochs": "int", "output_dir": "str", "proportion_empty_prompts": "float", "report_to": "str",
    "resolution": "int", "resume_from_checkpoint": "str", "revision": "str", "scale_lr": "flag", "seed": "int",
    "set_grads_to_none": "flag", "tokenizer_name": "str", "tracker_project_name": "str",
    "train_batch_size": "int", "train_data_dir": "str", "use_8bit_adam": "flag", "vae_path": "str",
    "validation_image": "str", "validation_mask": "str", "validation_prompt": "str",
    "validation_steps": "int", "variant": "str", "video_column": "str", "ytvos_root": "str",
}
_FORK_STAGE1 = {"brushnet_model_name_or_path": "str", "pretrained_stage1_path": "str"}
_FORK_STAGE2 = {"motion_adapter_path": "str", "pretrained_stage1": "str"}
_FORK_PROMPT = {"caption_yaml": "str"}
# (recipe variant, stage) -> {option name without "--": kind}
DIFFUERASER_FLAGS: dict[tuple[str, int], dict[str, str]] = {
    ("non-prompt", 1): {**_FORK_COMMON, **_FORK_STAGE1},
    ("non-prompt", 2): {**_FORK_COMMON, **_FORK_STAGE2},
    ("prompt", 1): {**_FORK_COMMON, **_FORK_STAGE1, **_FORK_PROMPT},
    ("prompt", 2): {**_FORK_COMMON, **_FORK_STAGE2, **_FORK_PROMPT},
}
# At d4fdb5a stage 1 ends with this call on a UNet2DConditionModel, which has
# no such method (fixed in the fork's 2f2a8a1): the train script guards it.
STAGE1_FINAL_SAVE = "        unet_main.save_motion_modules(args.output_dir)"


# ---------------------------------------------------------------- checkers


def config_problems(text: str) -> list[str]:
    """What in a generated FFF-VDI config.yaml train.py would not read as meant."""
    config = yaml.safe_load(text)
    problems = []
    for key, value in config.items():
        if key not in FFF_VDI_KEYS:
            problems.append(f"{key}: train.py at {FFF_VDI_COMMIT[:7]} never reads args.{key}")
            continue
        want = FFF_VDI_KEYS[key]
        # bool is an int to Python, not to train.py; an int is a fine float.
        ok = (isinstance(value, want) and not (want is int and isinstance(value, bool))) or (
            want is float and isinstance(value, int) and not isinstance(value, bool))
        if not ok:
            problems.append(f"{key}: {value!r} is YAML {type(value).__name__}, train.py needs {want.__name__}")
    return problems


def flag_problems(variant: str, stage: int, args: list[str]) -> list[str]:
    """What in the arguments of train_DiffuEraser_stageN.py its parse_args refuses
    (an unknown option, a value given to a flag or missing from an option,
    a literal value of the wrong type). Options must be spelt out: argparse
    would take a prefix, but a prefix is one upstream rename away from
    meaning something else."""
    accepted = DIFFUERASER_FLAGS[(variant, stage)]
    problems = []
    for arg in args:
        if not arg.startswith("--"):
            problems.append(f"{arg!r}: not an --option (every value is given as --name=value)")
            continue
        name, has_value, value = arg[2:].partition("=")
        kind = accepted.get(name)
        if kind is None:
            problems.append(f"--{name}: train_DiffuEraser_stage{stage}.py ({variant}) at {DIFFUERASER_COMMIT} has no such option")
        elif kind == "flag" and has_value:
            problems.append(f"--{name} takes no value, got {value!r}")
        elif kind != "flag" and not has_value:
            problems.append(f"--{name} needs a value")
        elif kind in ("int", "float") and "$" not in value:
            try:
                (int if kind == "int" else float)(value)
            except ValueError:
                problems.append(f"--{name}={value}: not an {kind}")
    return problems


def stage_invocations(script: str) -> dict[int, list[str]]:
    """The arguments the rendered train script passes to each
    train_DiffuEraser_stageN.py, as words (an `${A[@]+"${A[@]}"}` expansion
    replaced by the array's literal assignment)."""
    arrays = {m.group(1): shlex.split(m.group(2)) for m in re.finditer(r"^([A-Z_]+)=\((.*)\)$", script, re.M)}
    found: dict[int, list[str]] = {}
    lines = script.splitlines()
    for i, line in enumerate(lines):
        match = re.search(r"train_DiffuEraser_stage(\d)\.py \\$", line)
        if not match or '"${ACCELERATE[@]}"' not in line:
            continue
        words: list[str] = []
        j = i + 1
        while True:
            text = lines[j].strip()
            more = text.endswith("\\")
            text = text.rstrip("\\").strip()
            guarded = re.fullmatch(r'\$\{(\w+)\[@\]\+"\$\{\1\[@\]\}"\}', text)
            if guarded:
                words.extend(arrays[guarded.group(1)])
            elif text:
                words.extend(shlex.split(text))
            if not more:
                break
            j += 1
        found[int(match.group(1))] = words
    return found


def unguarded_array_expansions(script: str) -> list[str]:
    """`"${A[@]}"` of an array that may be empty, outside the
    `${A[@]+"${A[@]}"}` guard: bash < 4.4 calls it unbound under `set -u`.
    An array counts as never empty only if every assignment to it is a
    non-empty literal list."""
    assigned: dict[str, list[str]] = {}
    code = [line for line in script.splitlines() if not line.lstrip().startswith("#")]
    for line in code:
        for name, body in re.findall(r"(?:^|[\s;])(?:local\s+)?([A-Za-z_]\w*)\+?=\(([^)]*)\)", line):
            assigned.setdefault(name, []).append(body)
    never_empty = {name for name, bodies in assigned.items() if all(body.strip() for body in bodies)}
    problems = []
    for line in code:
        stripped = re.sub(r'\$\{(\w+)\[@\]\+"\$\{\1\[@\]\}"\}', "", line)
        for name in re.findall(r'"\$\{(\w+)\[[@*]\]\}"', stripped):
            if name not in never_empty:
                problems.append(f"{name}: {line.strip()}")
    return problems


# ---------------------------------------------------------------- helpers


def _render(tmp_path: Path, name: str, variant: str | None = None, *, gpus: int = 8, out: str = "out",
            recipe=None, **params):
    recipe = recipe or get_recipe(name)
    overrides: dict = {"params": params} if params else {}
    if variant:
        overrides["variant"] = variant
    train = {**dataclasses.asdict(recipe.defaults["train"]), "gpus": gpus}
    plan = recipe.default_plan(tmp_path / "project", hf_namespace="alice", train=train, **overrides)
    out_dir = tmp_path / out
    rendering = render(Project(plan.project_home), resolve(plan, recipe), out_dir)
    rendering.write(out_dir, LOCAL_FILES)
    return plan, {f.name: f.text for f in rendering.files}


def _patched_recipe(tmp_path: Path, name: str, template: str, old: str, new: str):
    """The recipe, rendered from a copy of its folder with one template edited."""
    recipe = get_recipe(name)
    folder = tmp_path / f"recipe-{name}"
    shutil.copytree(recipe.folder, folder)
    path = folder / template
    text = path.read_text()
    assert old in text, f"{old!r} is not in {template}"
    path.write_text(text.replace(old, new))
    return dataclasses.replace(recipe, folder=folder)


def _launch_lines(script: str) -> list[str]:
    return [line for line in script.splitlines() if "accelerate.commands.launch" in line]


def _config_file_of(launch: str) -> Path:
    match = re.search(r"--config_file (\S+)", launch)
    assert match, f"no --config_file in {launch!r}"
    return Path(shlex.split(match.group(1))[0])


SHELLS = ["bash"] + ([os.environ["HPCWIZARD_OLD_BASH"]] if os.environ.get("HPCWIZARD_OLD_BASH") else [])
VARIANTS = ["non-prompt", "prompt"]


# ---------------------------------------------------------------- FFF-VDI


def test_fff_vdi_is_pinned_to_the_checked_commit():
    parameter = get_recipe("fff-vdi").parameter("fff_vdi_commit")
    assert parameter.default == FFF_VDI_COMMIT
    assert "61b75c9" in parameter.help


@pytest.mark.parametrize("params", [{}, {"validation": True, "mixed_precision": "no", "learning_rate": 3e-6,
                                         "num_workers": 4, "max_train_steps": 10}])
def test_fff_vdi_config_keys_are_read_by_train_py_with_their_types(tmp_path, params):
    _, files = _render(tmp_path, "fff-vdi", **params)
    assert config_problems(files["config.yaml"]) == []
    config = yaml.safe_load(files["config.yaml"])
    assert config["resume_from_checkpoint"] == "latest"
    if params:
        assert config["mixed_precision"] == "no" and config["learning_rate"] == pytest.approx(3e-6)


def test_the_config_checker_catches_a_key_train_py_does_not_read(tmp_path):
    assert config_problems("lerning_rate: 0.00001\n") == [
        f"lerning_rate: train.py at {FFF_VDI_COMMIT[:7]} never reads args.lerning_rate"]
    # global_batch_size is assigned by train.py, never read
    assert config_problems("global_batch_size: 8\n")
    # PyYAML reads 1e-05 (no dot) as text; train.py would hand AdamW a string
    assert config_problems("learning_rate: 1e-05\n") == [
        "learning_rate: '1e-05' is YAML str, train.py needs float"]
    assert config_problems("max_train_steps: 1.0e+5\n") and config_problems("seed: true\n")
    assert config_problems("mixed_precision: no\n")  # YAML 1.1 reads an unquoted no as false
    # ...and a template that writes such a key fails the test above:
    recipe = _patched_recipe(tmp_path, "fff-vdi", "config.yaml.j2",
                             "num_workers:", "dataloader_num_workers: 2\nnum_workers:")
    _, files = _render(tmp_path, "fff-vdi", recipe=recipe)
    assert config_problems(files["config.yaml"]) == [
        f"dataloader_num_workers: train.py at {FFF_VDI_COMMIT[:7]} never reads args.dataloader_num_workers"]


@pytest.mark.parametrize("gpus", [8, 1])
def test_fff_vdi_launch_uses_the_generated_accelerate_config(tmp_path, gpus):
    _, files = _render(tmp_path, "fff-vdi", gpus=gpus, mixed_precision="bf16")
    (launch,) = _launch_lines(files["02_train.sbatch"])
    config_file = _config_file_of(launch)
    assert config_file == tmp_path / "out" / "accelerate_config.yaml" and config_file.is_file()
    config = yaml.safe_load(config_file.read_text())
    assert config["num_processes"] == gpus
    assert (config["num_machines"], config["machine_rank"], config["gpu_ids"], config["use_cpu"]) == (1, 0, "all", False)
    assert config["distributed_type"] == ("MULTI_GPU" if gpus > 1 else "NO")
    assert config["mixed_precision"] == "bf16" and "--mixed_precision bf16" in launch
    assert f"--num_processes {gpus} " in launch


# ---------------------------------------------------------------- DiffuEraser


@pytest.mark.parametrize("gpus", [8, 1])
@pytest.mark.parametrize("variant", VARIANTS)
def test_diffueraser_flags_are_accepted_by_the_fork(tmp_path, variant, gpus):
    _, files = _render(tmp_path, "diffueraser", variant, gpus=gpus)
    invocations = stage_invocations(files["02_train.sbatch"])
    assert sorted(invocations) == [1, 2]
    for stage, args in invocations.items():
        assert flag_problems(variant, stage, args) == [], f"stage {stage}"
        assert any(a.startswith("--max_train_steps=") for a in args)
        assert ("--caption_yaml=$CAPTION_YAML" in args) == (variant == "prompt")
    (launch,) = _launch_lines(files["02_train.sbatch"])
    assert launch.startswith("ACCELERATE=(")
    config_file = _config_file_of(launch)
    assert config_file == tmp_path / "out" / "default_config.yaml" and config_file.is_file()
    config = yaml.safe_load(config_file.read_text())
    assert config["num_processes"] == gpus and config["gpu_ids"] == "all" and config["machine_rank"] == 0


def test_diffueraser_learning_rate_default_is_the_forks():
    recipe = get_recipe("diffueraser")
    assert recipe.parameter("stage1_learning_rate").default == 5e-6
    assert recipe.parameter("stage2_learning_rate").default == 5e-6


def test_the_flag_checker_catches_what_the_fork_refuses(tmp_path):
    assert flag_problems("non-prompt", 2, ["--pretrained_stage1_path=/w"]) == [
        f"--pretrained_stage1_path: train_DiffuEraser_stage2.py (non-prompt) at {DIFFUERASER_COMMIT} has no such option"]
    assert flag_problems("non-prompt", 1, ["--caption_yaml=/c.yaml"])  # only the prompt code has it
    assert flag_problems("prompt", 1, ["--pretrained_stage1=/w"])  # a prefix argparse would guess at
    assert flag_problems("prompt", 1, ["--gradient_checkpointing=true"]) == [
        "--gradient_checkpointing takes no value, got 'true'"]
    assert flag_problems("prompt", 1, ["--nframes=ten"]) == ["--nframes=ten: not an int"]
    # ...and a template that passes such a flag fails the test above:
    recipe = _patched_recipe(tmp_path, "diffueraser", "train.sbatch.j2",
                             '--motion_adapter_path="$WEIGHTS/animatediff-motion-adapter-v1-5-2" \\',
                             '--motion_adapter_path="$WEIGHTS/animatediff-motion-adapter-v1-5-2" \\\n'
                             '  --brushnet_model_name_or_path="$WEIGHTS/diffuEraser" \\')
    _, files = _render(tmp_path, "diffueraser", "prompt", recipe=recipe)
    stage2 = stage_invocations(files["02_train.sbatch"])[2]
    assert flag_problems("prompt", 2, stage2) == [
        f"--brushnet_model_name_or_path: train_DiffuEraser_stage2.py (prompt) at {DIFFUERASER_COMMIT} has no such option"]


# ---------------------------------------------------------------- every recipe's scripts


def _every_rendering(tmp_path: Path):
    for name, variant in (("demo", None), ("fff-vdi", None), ("diffueraser", "non-prompt"), ("diffueraser", "prompt")):
        _, files = _render(tmp_path, name, variant, out=f"out-{name}-{variant}")
        yield name, variant, files


def test_every_job_appends_to_its_log(tmp_path):
    for name, _variant, files in _every_rendering(tmp_path):
        for script in (text for file, text in files.items() if file.endswith(".sbatch")):
            header = [line for line in script.splitlines() if line.startswith("#SBATCH")]
            assert "#SBATCH --open-mode=append" in header, name
            assert "#SBATCH --output=logs/%x-%j.out" in header


def test_no_possibly_empty_array_is_expanded_unguarded(tmp_path):
    for name, variant, files in _every_rendering(tmp_path):
        for file, script in files.items():
            if file.endswith(".sbatch"):
                assert unguarded_array_expansions(script) == [], f"{name} {variant} {file}"
    # the checker itself: an empty array expanded plainly is caught, a guarded one is not
    bad = 'EXTRA=()\nrun "${EXTRA[@]}"\nok ${EXTRA[@]+"${EXTRA[@]}"}\nA=(x)\nrun "${A[@]}"\n'
    assert unguarded_array_expansions(bad) == ['EXTRA: run "${EXTRA[@]}"']


@pytest.mark.parametrize("shell", SHELLS)
def test_scripts_parse_in_every_shell(tmp_path, shell):
    for name, variant, files in _every_rendering(tmp_path):
        for file, script in files.items():
            if file.endswith(".sbatch"):
                done = subprocess.run([shell, "-n"], input=script, capture_output=True, text=True)
                assert done.returncode == 0, f"{shell} -n {name} {variant} {file}: {done.stderr}"


# ---------------------------------------------------------------- plans and render


@pytest.mark.parametrize("key", ["project_home", "data_root"])
@pytest.mark.parametrize("path", ["/scratch/run%j", "/scratch/100%", "/scratch/a\\b"])
def test_slurm_special_characters_in_paths_are_refused(tmp_path, key, path, capsys):
    data = {"recipe": "demo", "project_home": "/tmp/proj", "data_root": "/tmp/proj/data",
            "setup": {"partition": "cpu"}, "train": {"partition": "gpu", "gpus": 1}, key: path}
    with pytest.raises(PlanError) as caught:
        plan_from_dict(data)
    line = caught.value.one_line()
    assert "\n" not in line and line.startswith(f"{key} {path!r} contains")
    assert "Slurm" in line and "no log at all" in line and "choose a path without % or \\" in line
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text(yaml.safe_dump(data))
    assert main(["render", str(plan_file), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "contains" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_render_creates_the_logs_folder_jobs_write_to(tmp_path, capsys):
    """Slurm opens --output=logs/%x-%j.out relative to the job's working
    directory (--chdir, the project home) before the script runs, and creates
    no folder: without logs/ a job submitted by hand fails with no log."""
    home = tmp_path / "project"
    plan = get_recipe("demo").default_plan(home, hf_namespace="alice")
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text(plan.to_yaml())
    assert main(["render", str(plan_file), "--out", str(tmp_path / "out")]) == 0
    assert (home / "logs").is_dir()
    script = (tmp_path / "out" / "01_setup.sbatch").read_text()
    assert f"#SBATCH --chdir={home}\n" in script
    assert "#SBATCH --output=logs/%x-%j.out" in script
    # A project home that cannot stand in a directive gets no --chdir: the
    # header says to submit from the project home.
    spaced = get_recipe("demo").default_plan(tmp_path / "my project", hf_namespace="alice")
    rendering = render(Project(spaced.project_home), resolve(spaced), tmp_path / "out2")
    rendering.write(tmp_path / "out2", LOCAL_FILES)
    assert (tmp_path / "my project" / "logs").is_dir()
    text = rendering.files[-1].text
    assert "--chdir" not in text and "submit from it" in text
    # A render that only tests the scripts can leave the project home alone.
    other = get_recipe("demo").default_plan(tmp_path / "untouched", hf_namespace="alice")
    render(Project(other.project_home), resolve(other), tmp_path / "out3").write(tmp_path / "out3", LOCAL_FILES, logs=False)
    assert not (tmp_path / "untouched").exists()


# ---------------------------------------------------------------- DiffuEraser stage markers, for real

# A stand-in for the training environment's python: `-m accelerate.commands.launch`
# records its argv, refuses options the fork refuses, fails like the fork's
# stage 1 at its end when that call is unguarded, and "trains" by creating
# checkpoint-<max_train_steps> (complete: with accelerate's random_states_0.pkl);
# any other use runs the script (the conversion).
FAKE_PYTHON = r'''#!{python}
import json, os, re, runpy, sys
if sys.argv[1:3] == ["-m", "accelerate.commands.launch"]:
    argv = sys.argv[3:]
    at = next(i for i, a in enumerate(argv) if a.endswith(".py"))
    launcher, script, args = argv[:at], argv[at], argv[at + 1:]
    opts = dict(a[2:].partition("=")[::2] for a in args)
    out = opts["output_dir"]
    os.makedirs(out, exist_ok=True)
    steps = sorted(int(d.split("-")[1]) for d in os.listdir(out) if d.startswith("checkpoint"))
    with open(os.environ["FAKE_RECORD"], "a") as fh:
        fh.write(json.dumps({{"launcher": launcher, "script": script, "args": args,
                             "resumed_from": steps[-1] if steps else None}}) + "\n")
    done = os.path.join(out, "checkpoint-" + opts["max_train_steps"])
    os.makedirs(done, exist_ok=True)
    open(os.path.join(done, "random_states_0.pkl"), "w").close()  # accelerate's save_state writes it last
    with open(script) as fh:
        if re.search(r"^\s*unet_main\.save_motion_modules\(", fh.read(), re.M) and "stage1" in script:
            sys.exit("AttributeError: 'UNet2DConditionModel' object has no attribute 'save_motion_modules'")
    sys.exit(0)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
'''

FAKE_TRAIN = '''import argparse
parser = argparse.ArgumentParser()
parser.add_argument("--davis_root")
parser.add_argument("--checkpoints_total_limit")
def main(args):
    pass
{final_save}
'''

FAKE_CONVERT = '''import os
input_dir = "checkpoint-1"
output_dir = "converted"
for part in ("unet_main", "brushnet"):
    os.makedirs(os.path.join(output_dir, part), exist_ok=True)
'''


class FakeProject:
    """A DiffuEraser project with a fake environment and code, whose rendered
    train script runs for real."""

    def __init__(self, tmp_path: Path, variant: str, shell: str):
        self.tmp_path, self.variant, self.shell = tmp_path, variant, shell
        self.home = tmp_path / "project"
        self.work = self.home / ("DiffuEraser_finetune_prompt" if variant == "prompt" else "DiffuEraser_finetune")
        self.record = tmp_path / "launches.jsonl"
        self.runs = 0
        env = self.home / "envs" / "diffueraser"
        (env / "bin").mkdir(parents=True)
        (env / ".hpcwizard-env-ready").write_text("ready\n")
        fake = env / "bin" / "python"
        fake.write_text(FAKE_PYTHON.format(python=sys.executable))
        fake.chmod(0o755)
        for folder in ("weights/stable-diffusion-v1-5", "dataset/DAVIS/JPEGImages", "dataset/YTBV/JPEGImages",
                       "captions"):
            (self.work / folder).mkdir(parents=True, exist_ok=True)
        (self.work / "captions" / "all_captions_merged.yaml").write_text("{}\n")
        (self.work / "train_DiffuEraser_stage1.py").write_text(FAKE_TRAIN.format(final_save=STAGE1_FINAL_SAVE.strip()))
        (self.work / "train_DiffuEraser_stage2.py").write_text(FAKE_TRAIN.format(final_save=""))
        for stage in (1, 2):
            (self.work / f"save_checkpoint_stage{stage}.py").write_text(FAKE_CONVERT)

    def run(self, **params) -> list[dict]:
        """Render the plan with these params into a new run folder, run its
        train script; return the launches it made."""
        self.runs += 1
        _, files = _render(self.tmp_path, "diffueraser", self.variant, gpus=2, out=f"run{self.runs}", **params)
        self.record.write_text("")
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
        env["FAKE_RECORD"] = str(self.record)
        done = subprocess.run([self.shell, str(self.tmp_path / f"run{self.runs}" / "02_train.sbatch")],
                              capture_output=True, text=True, env=env, cwd=self.tmp_path)
        assert done.returncode == 0, f"train script failed:\n{done.stdout}\n{done.stderr}"
        self.log = done.stdout + done.stderr
        return [json.loads(line) for line in self.record.read_text().splitlines()]

    def marker(self, stage: int) -> str:
        return (self.work / "converted_weights" / f"finetuned-stage{stage}" / ".hpcwizard-converted").read_text()

    def superseded(self, stage: int) -> list[Path]:
        return sorted(self.work.glob(f"finetune-stage{stage}.superseded-*"))


def _settings(marker: str) -> list[str]:
    return [line for line in marker.splitlines() if not line.startswith("#")]


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_stage_markers_retrain_what_changed(tmp_path, variant, shell):
    project = FakeProject(tmp_path, variant, shell)
    small = {"stage1_max_train_steps": 4, "stage2_max_train_steps": 6}

    # First run: both stages train from the start, with flags the fork accepts.
    launches = project.run(**small)
    assert [(launch["script"], launch["resumed_from"]) for launch in launches] == [
        ("train_DiffuEraser_stage1.py", None), ("train_DiffuEraser_stage2.py", None)]
    for stage, launch in enumerate(launches, start=1):
        assert flag_problems(variant, stage, launch["args"]) == []
        assert ("--caption_yaml=" + str(project.work / "captions" / "all_captions_merged.yaml") in launch["args"]) == (
            variant == "prompt")
        config = _config_file_of(" ".join(map(shlex.quote, launch["launcher"])))
        assert yaml.safe_load(config.read_text())["num_processes"] == 2
    # the fork's stage-1 final save was guarded (else the stand-in fails like it)
    assert "if hasattr(unet_main" in (project.work / "train_DiffuEraser_stage1.py").read_text()
    stage1 = ["stage1.resolution=512", "stage1.nframes=10", "stage1.train_batch_size=1",
              "stage1.learning_rate=5e-06", "stage1.max_train_steps=4"]
    stage2 = ["stage2.resolution=512", "stage2.nframes=22", "stage2.train_batch_size=1",
              "stage2.learning_rate=5e-06", "stage2.max_train_steps=6"]
    assert _settings(project.marker(1)) == stage1
    # stage 2's marker holds stage 1's settings too: it depends on them
    assert _settings(project.marker(2)) == stage1 + stage2
    assert project.marker(2).startswith("# DiffuEraser stage 2 weights, converted by hpcwizard from ")

    # The same plan again: nothing to do.
    assert project.run(**small) == []
    assert "stage 1 already trained and converted" in project.log

    # A changed stage 2 parameter retrains only stage 2, from the start (its
    # checkpoints were trained with the old value: moved aside, not resumed).
    launches = project.run(**small, stage2_learning_rate=2e-6)
    assert [(launch["script"], launch["resumed_from"]) for launch in launches] == [("train_DiffuEraser_stage2.py", None)]
    assert len(project.superseded(2)) == 1 and not project.superseded(1)
    assert "stage2.learning_rate=2e-06" in _settings(project.marker(2))

    # A raised stage 2 budget continues stage 2's checkpoints.
    launches = project.run(**small | {"stage2_max_train_steps": 8}, stage2_learning_rate=2e-6)
    assert [(launch["script"], launch["resumed_from"]) for launch in launches] == [("train_DiffuEraser_stage2.py", 6)]

    # A changed stage 1 (here its budget) retrains stage 1, continuing its
    # checkpoints, and then stage 2 from the start: it started from the old stage 1.
    launches = project.run(**small | {"stage1_max_train_steps": 5, "stage2_max_train_steps": 8},
                           stage2_learning_rate=2e-6)
    assert [(launch["script"], launch["resumed_from"]) for launch in launches] == [
        ("train_DiffuEraser_stage1.py", 4), ("train_DiffuEraser_stage2.py", None)]
    assert "stage1.max_train_steps=5" in _settings(project.marker(2))
    assert len(project.superseded(2)) == 2

    # Another stage 1 setting: both stages from the start.
    launches = project.run(**small | {"stage1_max_train_steps": 5, "stage2_max_train_steps": 8},
                           stage2_learning_rate=2e-6, stage1_nframes=8)
    assert [(launch["script"], launch["resumed_from"]) for launch in launches] == [
        ("train_DiffuEraser_stage1.py", None), ("train_DiffuEraser_stage2.py", None)]
    assert _settings(project.marker(2))[1] == "stage1.nframes=8"
    # markers stay readable: comments, then one setting a line
    settings = (project.work / "finetune-stage2" / ".hpcwizard-settings").read_text()
    assert settings.startswith("# ") and "stage1.nframes=8\n" in settings and "max_train_steps=8" not in settings


@pytest.mark.parametrize("shell", SHELLS)
def test_stage2_alone_records_the_stage1_it_started_from(tmp_path, shell):
    project = FakeProject(tmp_path, "non-prompt", shell)
    project.run(stages="stage1", stage1_max_train_steps=3)
    assert not (project.work / "converted_weights" / "finetuned-stage2").exists()
    launches = project.run(stages="stage2", stage1_max_train_steps=99, stage2_max_train_steps=2)
    assert [launch["script"] for launch in launches] == ["train_DiffuEraser_stage2.py"]
    # what stage 2 depends on is the stage 1 on disk, not the plan's stage-1 params
    assert "stage1.max_train_steps=3" in _settings(project.marker(2))


@pytest.mark.parametrize("shell", SHELLS)
def test_a_checkpoint_cut_short_is_set_aside_before_training_resumes(tmp_path, shell):
    """A job stopped or killed while accelerate was saving leaves a checkpoint
    without random_states_0.pkl (written last): resuming it would fail, so the
    next segment moves it aside and training resumes from the one before."""
    project = FakeProject(tmp_path, "non-prompt", shell)
    project.run(stages="stage1", stage1_max_train_steps=4)
    cut_short = project.work / "finetune-stage1" / "checkpoint-6"
    (cut_short / "unet").mkdir(parents=True)
    launches = project.run(stages="stage1", stage1_max_train_steps=8)
    assert [(launch["script"], launch["resumed_from"]) for launch in launches] == [("train_DiffuEraser_stage1.py", 4)]
    assert not cut_short.exists()
    aside = list((project.work / "finetune-stage1").glob("incomplete-checkpoint-6-*"))
    assert len(aside) == 1 and (aside[0] / "unet").is_dir()
    assert "checkpoint-6 in " in project.log and "was cut short while it was saved" in project.log
    # the segment's separator lines and bookkeeping (outside Slurm: one segment)
    assert "[hpcwizard] segment 1 of ~" in project.log and "[hpcwizard] segment 1 finished the training" in project.log

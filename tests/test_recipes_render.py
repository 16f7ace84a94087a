"""Every shipped recipe renders into scripts that bash and shellcheck accept,
that quote hostile paths, that never contain the token, and whose shell
helpers (latest_checkpoint, path rewriting, checkpoint
conversion, unzip) really work in bash on a scratch tree."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from hpcwizard.project.files import LOCAL_FILES
from hpcwizard.project.home import Project
from hpcwizard.project.recipe import all_recipes, get_recipe
from hpcwizard.project.render import _environment, render
from hpcwizard.project.resolved import resolve

CANARY = "hf_canaryTOKEN0123456789abcdefghijklmnop"
HOSTILE_HOME = "/tmp/a b/it's $(touch PWNED)"
HOSTILE_DATA = "/tmp/d`touch PWNED`ata/x;$(touch PWNED) \"q\""


def recipe_variants() -> list[tuple[str, str | None]]:
    cases = []
    for name, recipe in all_recipes().items():
        for variant in recipe.variant_names or (None,):
            cases.append((name, variant))
    return cases


CASES = recipe_variants()
CASE_IDS = [f"{n}-{v}" if v else n for n, v in CASES]


@pytest.fixture(autouse=True)
def canary_token(tmp_path, monkeypatch):
    """A token in the environment and in the standard token file."""
    hf_home = tmp_path / "hf-home"
    hf_home.mkdir()
    token = hf_home / "token"
    token.write_text(CANARY)
    token.chmod(0o600)
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.setenv("HF_TOKEN", CANARY)
    monkeypatch.setenv("HUGGING_FACE_HUB_TOKEN", CANARY)
    return CANARY


def make_plan(name, variant, home, data_root=None, **overrides):
    recipe = get_recipe(name)
    if variant is not None:
        overrides["variant"] = variant
    plan = recipe.default_plan(Path(home), Path(data_root) if data_root else None, hf_namespace="alice", **overrides)
    return plan, recipe


def render_to(out: Path, name, variant, home, data_root=None, **overrides):
    plan, recipe = make_plan(name, variant, home, data_root, **overrides)
    rendering = render(Project(plan.project_home), resolve(plan, recipe), out)
    # logs=False: HOSTILE_HOME is a real path under /tmp, outside tmp_path
    rendering.write(out, LOCAL_FILES, logs=False)
    return plan, recipe, {f.name: f.text for f in rendering.files}


def sbatch_files(out: Path) -> list[Path]:
    files = sorted(out.glob("*.sbatch"))
    assert files, f"no .sbatch rendered in {out}"
    return files


def run_ok(cmd, **kw):
    done = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert done.returncode == 0, f"{cmd} failed:\n{done.stdout}\n{done.stderr}"
    return done


# ---------------------------------------------------------------- rendering


def test_both_training_recipes_are_shipped():
    recipes = all_recipes()
    assert {"demo", "fff-vdi", "diffueraser"} <= set(recipes)
    assert recipes["diffueraser"].variant_names == ("non-prompt", "prompt")
    assert recipes["fff-vdi"].variant_names == ()


@pytest.mark.parametrize(("name", "variant"), CASES, ids=CASE_IDS)
def test_scripts_pass_bash_and_shellcheck(tmp_path, name, variant):
    out = tmp_path / "out"
    render_to(out, name, variant, tmp_path / "project")
    for script in sbatch_files(out):
        run_ok(["bash", "-n", str(script)])
        run_ok(["shellcheck", "-S", "warning", str(script)])


@pytest.mark.parametrize(("name", "variant"), CASES, ids=CASE_IDS)
def test_token_never_reaches_a_generated_file(tmp_path, name, variant, canary_token):
    out = tmp_path / "out"
    _, _, files = render_to(out, name, variant, tmp_path / "project")
    for path in out.iterdir():
        text = path.read_text()
        assert canary_token not in text, f"token leaked into {path.name}"
        assert "hf_canary" not in text
    assert files


def test_writing_follows_no_planted_symlink(tmp_path):
    """In a shared output folder, a symlink planted at a predictable temporary
    name must not make render overwrite (or chmod) the file it points to."""
    out = tmp_path / "shared"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    victim.chmod(0o600)
    for name in ("plan.yaml", "01_setup.sbatch", "02_train.sbatch"):
        (out / f".{name}.tmp").symlink_to(victim)
    render_to(out, "demo", None, tmp_path / "project")
    assert victim.read_text() == "precious" and victim.stat().st_mode & 0o777 == 0o600
    assert not (out / "plan.yaml").is_symlink() and (out / "plan.yaml").read_text().startswith("recipe: demo")


def _eval_assignment(line: str, var: str, cwd: Path) -> str:
    done = run_ok(["bash", "-c", 'eval "$1"; printf %s "${!2}"', "_", line, var], cwd=cwd)
    return done.stdout


@pytest.mark.parametrize(("name", "variant"), CASES, ids=CASE_IDS)
def test_hostile_paths_are_quoted(tmp_path, name, variant):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    out = tmp_path / "out dir"
    _, _, files = render_to(out, name, variant, HOSTILE_HOME, HOSTILE_DATA)
    for script in sbatch_files(out):
        run_ok(["bash", "-n", str(script)], cwd=scratch)
        run_ok(["shellcheck", "-S", "warning", str(script)], cwd=scratch)
        text = script.read_text()
        for var, expected in (("PROJECT_HOME", HOSTILE_HOME), ("DATA_ROOT", HOSTILE_DATA)):
            line = next(line for line in text.splitlines() if line.startswith(f"{var}="))
            assert _eval_assignment(line, var, scratch) == expected
        # every other top-level assignment of a path evaluates without running anything
        for line in text.splitlines():
            match = re.match(r"^([A-Z_]+)=(?!\"\$)", line)
            if match and match.group(1) not in ("PROJECT_HOME", "DATA_ROOT", "HPCWIZARD"):
                value = _eval_assignment(line, match.group(1), scratch)
                if "PWNED" in line:
                    assert value.startswith((HOSTILE_HOME + "/", HOSTILE_DATA + "/")), line
    if name == "fff-vdi":
        config = yaml.safe_load(files["config.yaml"])
        assert config["data_root"] == HOSTILE_DATA + "/youtube-vos/JPEGImages"
        assert config["pretrained_model_name_or_path"].startswith(HOSTILE_HOME + "/")
    assert not list(scratch.rglob("PWNED"))
    assert not Path("PWNED").exists()
    assert not Path("/tmp/PWNED").exists()


# ---------------------------------------------------------------- fff-vdi


def test_fff_vdi_config_is_local_and_absolute(tmp_path):
    home = tmp_path / "project"
    plan, _, files = render_to(tmp_path / "out", "fff-vdi", None, home, tmp_path / "data")
    config = yaml.safe_load(files["config.yaml"])
    assert os.path.isabs(config["data_root"])
    assert config["data_root"].endswith("youtube-vos/JPEGImages")
    assert config["data_root"] == str(tmp_path / "data" / "youtube-vos" / "JPEGImages")
    assert config["pretrained_model_name_or_path"] == str(home / "weights" / "stable-video-diffusion-img2vid-xt-1-1")
    assert not config["pretrained_model_name_or_path"].startswith("stabilityai/")
    assert config["output_dir"].startswith(str(home) + "/")
    assert (config["width"], config["height"], config["num_frames"]) == (512, 256, 25)
    assert config["per_gpu_batch_size"] == 1
    assert isinstance(config["learning_rate"], float) and config["learning_rate"] == pytest.approx(1e-5)
    assert config["max_train_steps"] == 100000
    assert config["mixed_precision"] == "fp16"
    assert isinstance(config["checkpoints_total_limit"], int) and config["checkpoints_total_limit"] >= 1
    assert config["checkpointing_steps"] > 0
    assert config["resume_from_checkpoint"] == "latest"
    assert isinstance(config["seed"], int)  # train.py seeds a Generator with it
    # validation off by default: its interval is past the last step
    assert config["validation_steps"] > config["max_train_steps"]
    assert "torch==2.9.1" in files["requirements.txt"]
    assert "diffusers==0.30.0" in files["requirements.txt"]


def test_fff_vdi_params_override_and_stay_numbers(tmp_path):
    _, _, files = render_to(tmp_path / "out", "fff-vdi", None, tmp_path / "p",
                            params={"learning_rate": "3e-6", "max_train_steps": 10, "checkpoints_total_limit": 1})
    config = yaml.safe_load(files["config.yaml"])
    assert config["learning_rate"] == pytest.approx(3e-6)
    assert config["max_train_steps"] == 10
    assert config["checkpoints_total_limit"] == 1


def test_fff_vdi_unbounded_checkpoints_are_refused(tmp_path):
    from hpcwizard.project.plan import PlanError

    with pytest.raises(PlanError, match=r"params.checkpoints_total_limit has a bad value 0; allowed: a whole number from 1 to 100"):
        render_to(tmp_path / "out", "fff-vdi", None, tmp_path / "p", params={"checkpoints_total_limit": 0})


@pytest.mark.parametrize("gpus", [8, 2, 1])
def test_fff_vdi_train_is_offline_with_plan_gpus(tmp_path, gpus):
    train = {"partition": "gpu", "gpus": gpus, "cpus": 8, "mem": "200G", "time": "48:00:00"}
    _, _, files = render_to(tmp_path / "out", "fff-vdi", None, tmp_path / "p", train=train)
    script = files["02_train.sbatch"]
    assert "export HF_HUB_OFFLINE=1" in script
    # The module, not the console script: its shebang would not survive a hostile env path.
    # Run through c_train, which stops it cleanly at the time-limit warning (continuation.j2).
    launch = next(line for line in script.splitlines() if line.startswith("c_train python -m accelerate.commands.launch"))
    assert f"--num_processes {gpus} " in launch
    assert ("--multi_gpu" in launch) == (gpus > 1)
    assert "--mixed_precision fp16" in launch and launch.endswith("train.py")
    assert 'cp -f "$CONFIG" "$CODE_DIR/config.yaml"' in script
    assert f"#SBATCH --gres=gpu:{gpus}" in script


def test_fff_vdi_setup_fetches_and_checks_layout(tmp_path):
    _, recipe, files = render_to(tmp_path / "out", "fff-vdi", None, tmp_path / "p")
    setup = files["01_setup.sbatch"]
    # download: job (the default): prepare fetches, clones and builds on the node.
    assert '"${HPCWIZARD[@]}" prepare "$PLAN_FILE" --in-job' in setup
    assert "HF_HUB_OFFLINE" not in setup and "PIP_NO_INDEX" not in setup
    assert "youtube-vos/JPEGImages" in setup and "train/JPEGImages" in setup
    # Nothing in the script itself reaches the network: prepare does.
    assert "git clone" not in setup and "pip install" not in setup
    ids = {r.repo_id for r in recipe.repos}
    assert "stabilityai/stable-video-diffusion-img2vid-xt-1-1" in ids
    svd = next(r for r in recipe.repos if r.repo_id.startswith("stabilityai/"))
    assert svd.gated and svd.wanted("unet/diffusion_pytorch_model.safetensors")
    assert svd.wanted("model_index.json") and not svd.wanted("svd_xt_1_1.safetensors")
    ytvos = recipe.repos[0]
    assert ytvos.repo_type == "dataset" and ytvos.gated
    assert ytvos.repo_id == "{youtube_vos_repo}"
    plan = recipe.default_plan(tmp_path / "p")
    assert recipe.repos_for(plan)[0].repo_id == "ecoz/YouTube-VOS-2019"
    # A plan can point the dataset at another mirror.
    mirror = recipe.repos_for(plan.with_changes(params={"youtube_vos_repo": "lab/ytvos-2019"}))[0]
    assert mirror.repo_id == "lab/ytvos-2019"


# ---------------------------------------------------------------- diffueraser


def test_diffueraser_variants_differ_in_work_dir_and_repos(tmp_path):
    home = tmp_path / "p"
    plans = {}
    for variant in ("non-prompt", "prompt"):
        plan, recipe, files = render_to(tmp_path / variant, "diffueraser", variant, home)
        plans[variant] = (plan, recipe, files)
    np_plan, recipe, np_files = plans["non-prompt"]
    p_plan, _, p_files = plans["prompt"]
    np_ids = [r.repo_id for r in recipe.repos_for(np_plan)]
    p_ids = [r.repo_id for r in recipe.repos_for(p_plan)]
    assert "alice/DiffuEraser-finetune-prompt-code" in p_ids
    assert "alice/DiffuEraser-finetune-prompt-code" not in np_ids
    for ids in (np_ids, p_ids):
        assert "alice/DiffuEraser-finetune-code" in ids and "alice/DiffuEraser-finetune-weights" in ids
    np_into = {a.into for r in recipe.repos_for(np_plan) for a in r.archives}
    p_into = {a.into for r in recipe.repos_for(p_plan) for a in r.archives}
    assert home / "DiffuEraser_finetune" in np_into
    assert not any("DiffuEraser_finetune_prompt" in str(p) for p in np_into)
    assert home / "DiffuEraser_finetune_prompt" in p_into
    assert f"WORK_DIR={home}/DiffuEraser_finetune\n" in np_files["02_train.sbatch"]
    assert f"WORK_DIR={home}/DiffuEraser_finetune_prompt\n" in p_files["02_train.sbatch"]
    assert "--caption_yaml" in p_files["02_train.sbatch"]
    assert "--caption_yaml" not in np_files["02_train.sbatch"]
    # folders: names both variants' work folders (setup rewrites the upstream
    # scripts' paths to them): they are the variants' own, not a second spelling.
    for plan in (np_plan, p_plan):
        folders = resolve(plan, recipe).folders
        work = home / ("DiffuEraser_finetune_prompt" if plan.variant == "prompt" else "DiffuEraser_finetune")
        assert folders["work_prompt" if plan.variant == "prompt" else "work_non_prompt"] == work
        assert {a.into for r in recipe.repos_for(plan) for a in r.archives if a.archive.name == "code_base.tar.gz"} == {work}


def test_dpo_dataset_is_listed_but_not_fetched(tmp_path):
    plan, recipe = make_plan("diffueraser", None, tmp_path / "p")
    assert any(r.repo_id.endswith("/DPO-dataset") and r.optional for r in recipe.repos)
    assert not any(r.repo_id.endswith("/DPO-dataset") for r in recipe.repos_for(plan))
    assert any(r.repo_id == "alice/DPO-dataset" for r in recipe.repos_for(plan, include_optional=True))


@pytest.mark.parametrize("gpus", [8, 1])
@pytest.mark.parametrize("variant", ["non-prompt", "prompt"])
def test_diffueraser_train_flags(tmp_path, variant, gpus):
    train = {"partition": "gpu", "gpus": gpus, "cpus": 16, "mem": "200G", "time": "72:00:00"}
    _, _, files = render_to(tmp_path / "out", "diffueraser", variant, tmp_path / "p", train=train)
    script = files["02_train.sbatch"]
    assert "export HF_HUB_OFFLINE=1" in script
    assert "NCCL_TOPO_FILE" not in script and "export NCCL_DEBUG=WARN" in script
    launch = next(line for line in script.splitlines() if line.startswith("ACCELERATE=("))
    assert f"--num_processes {gpus} " in launch
    assert ("--multi_gpu" in launch) == (gpus > 1)
    assert f"--config_file {tmp_path}/out/default_config.yaml" in launch
    for flag in ("--resolution=512", "--nframes=10", "--nframes=22", "--train_batch_size=1",
                 "--learning_rate=5e-06", "--resume_from_checkpoint=latest", "--checkpointing_steps=2000",
                 "--checkpoints_total_limit=3", "--max_train_steps=50000",
                 "--motion_adapter_path=\"$WEIGHTS/animatediff-motion-adapter-v1-5-2\"",
                 "--pretrained_stage1=\"$CONVERTED/finetuned-stage1\""):
        assert flag in script, flag
    assert 'latest_checkpoint "$WORK_DIR/finetune-stage$stage"' in script
    accel = yaml.safe_load(files["default_config.yaml"])
    assert accel["num_processes"] == gpus
    assert accel["mixed_precision"] == "fp16"
    assert accel["distributed_type"] == ("MULTI_GPU" if gpus > 1 else "NO")


def test_diffueraser_params_are_per_stage(tmp_path):
    params = {"stage1_learning_rate": 5e-6, "stage2_learning_rate": 5e-6, "stage2_nframes": 16,
              "stage1_max_train_steps": 100, "stage2_max_train_steps": 100, "stage1_checkpoints_total_limit": 2}
    _, _, files = render_to(tmp_path / "out", "diffueraser", "prompt", tmp_path / "p", params=params)
    script = files["02_train.sbatch"]
    assert script.count("--learning_rate=5e-06") == 2
    assert "--nframes=10" in script and "--nframes=16" in script and "--nframes=22" not in script
    assert script.count("--max_train_steps=100 ") + script.count("--max_train_steps=100\n") == 2
    assert "--checkpoints_total_limit=2" in script and "--checkpoints_total_limit=3" in script


def test_diffueraser_setup_uses_environment_yml(tmp_path):
    _, _, files = render_to(tmp_path / "out", "diffueraser", "non-prompt", tmp_path / "p")
    setup = files["01_setup.sbatch"]
    assert '"${HPCWIZARD[@]}" prepare "$PLAN_FILE" --in-job' in setup
    assert "pip install" not in setup and "conda" not in setup.replace("conda-meta", "")
    assert "rewrite_paths \"$WORK_DIR\"" in setup
    assert "sed -i" not in setup


# ---------------------------------------------------------------- shell helpers in real bash


def shell_prelude(tmp_path: Path, *macros: str) -> Path:
    """A bash file defining log/die, HPCWIZARD and the named macros' functions."""
    env = _environment(get_recipe("diffueraser"))
    imports = '{% import "macros.j2" as m with context %}{% import "training.j2" as t with context %}\n'
    body = "\n".join("{{ " + macro + "() }}" for macro in macros)
    text = env.from_string(imports + body + "\n").render(
        recipe=get_recipe("diffueraser"), variant=None, hf_endpoint=None)
    py = sys.executable
    prelude = tmp_path / "prelude.sh"
    prelude.write_text(
        "set -Eeuo pipefail\n"
        "log() { printf '[log] %s\\n' \"$*\"; }\n"
        "die() { log \"ERROR: $*\" >&2; exit 1; }\n"
        f"HPCWIZARD=({py!s} -m hpcwizard)\n" + text)
    return prelude


def bash(prelude: Path, script: str, *args: str, check=True, cwd=None, env=None):
    done = subprocess.run(["bash", "-c", f'source "$0"\n{script}', str(prelude), *args],
                          capture_output=True, text=True, cwd=cwd, env=env)
    if check:
        assert done.returncode == 0, f"bash failed:\n{done.stdout}\n{done.stderr}"
    return done


def test_latest_checkpoint_is_numeric(tmp_path):
    prelude = shell_prelude(tmp_path, "m.checkpoint_functions")
    runs = tmp_path / "run dir"
    for name in ("checkpoint-2", "checkpoint-10", "checkpoint-9", "checkpoint-abc"):
        (runs / name).mkdir(parents=True)
    (runs / "checkpoint-11").write_text("a file, not a checkpoint")
    done = bash(prelude, 'latest_checkpoint "$1"', str(runs))
    assert done.stdout.strip() == str(runs / "checkpoint-10")
    empty = tmp_path / "empty"
    empty.mkdir()
    failed = bash(prelude, 'latest_checkpoint "$1"', str(empty), check=False)
    assert failed.returncode != 0 and "no checkpoint-N folder" in failed.stderr


def test_rewrite_paths_is_safe_and_idempotent(tmp_path):
    prelude = shell_prelude(tmp_path, "t.path_rewrite_functions")
    work = tmp_path / "it's a b" / "DiffuEraser_finetune"
    (work / "dataset" / "DAVIS").mkdir(parents=True)
    (work / "weights").mkdir()
    (work / "libs").mkdir()
    train = work / "train_DiffuEraser_stage1.py"
    train.write_text('DAVIS = "/home/hj/Train_Diffueraser/dataset/DAVIS"\n'
                     'W = "/home/hj/DiffuEraser_new/weights/sd"\n'
                     'P = "/home/hj/Train_Diffueraser_prompt/x"\n')
    train.chmod(0o755)
    (work / "libs" / "cfg.yaml").write_text("root: ~/DiffuEraser_finetune/data\n")
    untouched = work / "dataset" / "DAVIS" / "notes.txt"
    untouched.write_text("/home/hj/Train_Diffueraser\n")
    (work / "weights" / "x.py").write_text("/home/hj/Train_Diffueraser\n")

    # with a quote in the target path, nothing is written into code
    skipped = bash(prelude, 'rewrite_paths "$1" /home/hj/Train_Diffueraser "$1"', str(work))
    assert "WARNING: not rewriting" in skipped.stderr
    assert "/home/hj/Train_Diffueraser/dataset" in train.read_text()

    safe = tmp_path / "a b" / "DiffuEraser_finetune"
    shutil.copytree(work, safe, symlinks=True)
    train = safe / "train_DiffuEraser_stage1.py"
    script = ('rewrite_paths "$1" /home/hj/Train_Diffueraser_prompt "$1" /home/hj/Train_Diffueraser/dataset "$1/dataset" '
              '/home/hj/Train_Diffueraser "$1" /home/hj/DiffuEraser_new/weights "$1/weights" '
              "'~/DiffuEraser_finetune' \"$1\"")
    for _ in range(2):  # a rerun changes nothing
        bash(prelude, script, str(safe))
        assert train.read_text() == (f'DAVIS = "{safe}/dataset/DAVIS"\n'
                                     f'W = "{safe}/weights/sd"\n'
                                     f'P = "{safe}/x"\n')
    assert os.access(train, os.X_OK)
    assert (safe / "libs" / "cfg.yaml").read_text() == f"root: {safe}/data\n"
    assert (safe / "dataset" / "DAVIS" / "notes.txt").read_text() == "/home/hj/Train_Diffueraser\n"
    assert (safe / "weights" / "x.py").read_text() == "/home/hj/Train_Diffueraser\n"

    # a target that the rewrite itself would change again is refused
    nested = bash(prelude, 'rewrite_paths "$1" /home/hj/Train_Diffueraser /home/hj/Train_Diffueraser/x/y',
                  str(safe), check=False)
    assert nested.returncode != 0 and "refusing" in nested.stderr


UPSTREAM_CONVERT = '''from accelerate import Accelerator
import os
base_model_name_or_path = "weights/stable-diffusion-v1-5"
output_dir = "weights/converted_weights/diffuEraser-model-stage1/checkpoint-1"
input_dir = "diffuEraser-model-stage1/checkpoint-1"
def main():
    input_dir = "not top level"
'''
FORK_CONVERT = '''import os
ckpt = os.path.join("/home/x/finetune-stage1", "checkpoint-xxxx")
'''


def test_prepare_convert_script_uses_the_real_checkpoint(tmp_path):
    prelude = shell_prelude(tmp_path, "t.convert_functions")
    src = tmp_path / "save_checkpoint_stage1.py"
    src.write_text(UPSTREAM_CONVERT)
    dst = tmp_path / "patched.py"
    checkpoint = "/tmp/it's \"odd\"/finetune-stage1/checkpoint-10"
    output = "/tmp/a b/converted_weights/finetuned-stage1"
    bash(prelude, 'prepare_convert_script "$@"', str(src), str(dst), checkpoint, output)
    text = dst.read_text()
    compile(text, str(dst), "exec")
    namespace: dict[str, object] = {}
    exec(compile("\n".join(line for line in text.splitlines() if line.startswith(("input_dir", "output_dir"))),
                 "x", "exec"), namespace)
    assert namespace == {"__builtins__": namespace["__builtins__"], "input_dir": checkpoint, "output_dir": output}
    assert 'input_dir = "not top level"' in text

    fork = tmp_path / "fork.py"
    fork.write_text(FORK_CONVERT)
    bash(prelude, 'prepare_convert_script "$@"', str(fork), str(dst), "/x/checkpoint-4000", output)
    assert '"checkpoint-4000")' in dst.read_text()

    bad = tmp_path / "bad.py"
    bad.write_text("print('nothing to patch')\n")
    failed = bash(prelude, 'prepare_convert_script "$@"', str(bad), str(dst), checkpoint, output, check=False)
    assert failed.returncode != 0 and "cannot tell it which checkpoint" in failed.stderr


def test_safe_unzip_and_reorganise(tmp_path):
    prelude = shell_prelude(tmp_path, "t.archive_functions")
    archive = tmp_path / "train.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("train/JPEGImages/00a23ccf53/00000.jpg", b"jpg")
        zf.writestr("train/meta.json", b"{}")
    into = tmp_path / "data root" / "youtube-vos"
    bash(prelude, 'safe_unzip "$1" "$2"', str(archive), str(into))
    assert (into / "train" / "JPEGImages" / "00a23ccf53" / "00000.jpg").read_bytes() == b"jpg"
    again = bash(prelude, 'safe_unzip "$1" "$2"', str(archive), str(into))
    assert "already unpacked" in again.stdout

    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../escaped.txt", b"x")
    failed = bash(prelude, 'safe_unzip "$1" "$2"', str(evil), str(tmp_path / "e"), check=False)
    assert failed.returncode != 0 and "unsafe path" in failed.stderr
    assert not (tmp_path / "escaped.txt").exists()


def test_recipes_command_lists_the_recipes():
    done = run_ok([sys.executable, "-m", "hpcwizard", "recipes", "--json"])
    data = {r["name"]: r for r in yaml.safe_load(done.stdout)["recipes"]}
    assert [v["name"] for v in data["diffueraser"]["variants"]] == ["non-prompt", "prompt"]
    assert any(r["optional"] and r["id"].endswith("DPO-dataset") for r in data["diffueraser"]["repos"])
    assert data["fff-vdi"]["jobs"][1]["defaults"]["gpus"] == 8

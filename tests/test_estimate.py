"""The cost of a plan's parameters: disk from the recipe, time from a real run's log."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from hpcwizard.jobs.estimate import (
    MeasuredSettings,
    estimate,
    format_duration,
    measured_rate,
    rates_from_lines,
    stage_steps,
    training_rate_from_log,
)
from hpcwizard.project.files import LOCAL_FILES
from hpcwizard.project.home import Project
from hpcwizard.project.plan import PlanError
from hpcwizard.project.recipe import RecipeError, get_recipe
from hpcwizard.project.resolved import resolve
from hpcwizard.project.state import Submission, SubmittedJob, now_iso, update_state

GiB = 1024 ** 3


def demo_trainer_lines(steps: int, seconds_per_step: float, stage: int = 1) -> list[str]:
    """What hpcwizard/demo/code_base/train.py prints, line by line."""
    lines = [f"stage {stage}: 5 frames, base model tiny, steps 0->{steps}"]
    for step in range(1, steps + 1):
        done = 20 * step // steps
        lines.append(f"Steps: {100 * step // steps:3d}%|{'#' * done}{' ' * (20 - done)}| {step}/{steps} "
                     f"[00:0{step}<00:00, {1 / seconds_per_step:.2f}it/s, loss={1 / step:.4f}]")
    lines.append(f"stage {stage} finished")
    return lines


def write_log(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def record_submission(home: Path, *jobs: tuple[str, str, str]) -> None:
    """A chain in the project state: ``(name, slurm_name, job_id)`` per job."""
    submitted = tuple(SubmittedJob(name, slurm_name, job_id, "cpu", f"/x/{name}.sbatch")
                      for name, slurm_name, job_id in jobs)
    update_state(home / "hpcwizard", lambda s: s.submissions.append(
        Submission("fp", now_iso(), str(home / "hpcwizard" / "runs" / "x"), submitted)))


# -- the rate from a log ----------------------------------------------------------------

def test_rate_from_the_demo_trainer_log(tmp_path):
    log = write_log(tmp_path / "train.out", demo_trainer_lines(6, 0.25))
    assert training_rate_from_log(LOCAL_FILES, log) == pytest.approx(4.0)


def test_rate_from_seconds_per_iteration_and_the_median_of_the_tail(tmp_path):
    lines = ["Steps:   0%|          | 1/50000 [01:00<999:00:00, 60.00s/it, lr=1e-05, step_loss=0.3]"]  # warm-up
    lines += [f"Steps:   1%|          | {n}/50000 [20:00<33:00:00,  2.00s/it, lr=1e-05, step_loss=0.1]"
              for n in range(2, 40)]
    lines += ["Steps:   1%|          | 40/50000 [20:05<33:00:00,  9.00s/it, lr=1e-05, step_loss=0.1]"]  # a validation pause
    log = write_log(tmp_path / "train.out", lines)
    assert training_rate_from_log(LOCAL_FILES, log) == pytest.approx(0.5)


def test_rate_reads_only_the_tail(tmp_path):
    old = [f"Steps:   1%|  | {n}/100 [00:01<00:10,  1.00it/s]" for n in range(1, 50)]
    new = ["some other output"] * 30 + [f"Steps:  60%|  | {n}/100 [00:10<00:05,  8.00it/s]" for n in range(50, 60)]
    log = write_log(tmp_path / "train.out", old + new)
    assert training_rate_from_log(LOCAL_FILES, log, lines=40) == pytest.approx(8.0)


def test_no_rate_in_a_log_without_progress_or_no_log(tmp_path):
    log = write_log(tmp_path / "setup.out", ["cloning", "Traceback (most recent call last):", "ValueError: x"])
    assert training_rate_from_log(LOCAL_FILES, log) is None
    assert training_rate_from_log(LOCAL_FILES, tmp_path / "missing.out") is None


# -- the newest train run of the project --------------------------------------------------

def test_measured_rate_takes_the_newest_train_job_with_a_rate(tmp_path):
    home = tmp_path / "proj"
    demo = get_recipe("demo")
    assert measured_rate(Project(home), demo) is None  # no state, no run
    record_submission(home, ("setup", "hw-p-setup", "11"), ("train", "hw-p-train", "12"))
    write_log(home / "logs" / "hw-p-setup-11.out", ["Steps:  50%|  | 1/2 [00:01<00:01, 99.00it/s]"])  # not a train job
    assert measured_rate(Project(home), demo) is None  # the train log is missing
    write_log(home / "logs" / "hw-p-train-12.out", demo_trainer_lines(6, 0.5))
    found = measured_rate(Project(home), demo)
    assert found is not None and found.rate_its == pytest.approx(2.0) and found.job_id == "12"
    # A newer run whose log has no rate yet (cancelled before training) does not hide the older one.
    record_submission(home, ("setup", "hw-p-setup", "21"), ("train", "hw-p-train", "22"))
    write_log(home / "logs" / "hw-p-train-22.out", ["loading"])
    assert measured_rate(Project(home), demo).job_id == "12"
    write_log(home / "logs" / "hw-p-train-22.out", demo_trainer_lines(6, 0.1))
    assert measured_rate(Project(home), demo).rate_its == pytest.approx(10.0)


def test_measured_rate_over_ssh_reads_the_login_nodes_state_and_log_tail(tmp_path, sshd, monkeypatch):
    """Remote mode: state over SFTP, the log's tail with SFTP range reads
    (the login node is this machine through the local sshd)."""

    from hpcwizard.project.files import SshFiles
    from hpcwizard.remote import SshConnection
    from hpcwizard.remote.files import SftpFileSource
    from hpcwizard.remote.target import resolve

    home = tmp_path / "remote proj"
    demo = get_recipe("demo")
    record_submission(home, ("setup", "hw-p-setup", "11"), ("train", "hw-p-train", "12"))
    noise = [f"epoch data line {i:06d} " + "x" * 80 for i in range(20_000)]  # ~2 MB before the rates
    log = write_log(home / "logs" / "hw-p-train-12.out", noise + demo_trainer_lines(6, 0.25))
    known = tmp_path / "known_hosts"
    known.write_text(sshd.known_hosts_line)
    host = replace(resolve(f"root@127.0.0.1:{sshd.port}", config_path="/dev/null"), identity_files=(sshd.key,))
    read: list[tuple[str, int]] = []
    original = SftpFileSource.read_at

    def counting(source, offset, length):
        data = original(source, offset, length)
        read.append((source.path, len(data)))
        return data

    monkeypatch.setattr(SftpFileSource, "read_at", counting)
    with SshConnection(host, known_hosts=known, use_agent=False, system_known_hosts=(),
                       identity_dir="/nonexistent") as connection:
        files = SshFiles(connection)
        found = measured_rate(Project(home, files), demo)
        assert found is not None and found.rate_its == pytest.approx(4.0) and found.job_id == "12"
        assert training_rate_from_log(files, home / "logs" / "missing.out") is None
    assert {path for path, _ in read} == {str(log)}
    assert 0 < sum(n for _, n in read) < log.stat().st_size // 10  # the tail, not the whole log


def test_a_damaged_state_means_no_measured_rate(tmp_path):
    home = tmp_path / "proj"
    (home / "hpcwizard").mkdir(parents=True)
    (home / "hpcwizard" / "state.json").write_text("{not json")
    assert measured_rate(Project(home), get_recipe("demo")) is None


# -- steps, disk and time -------------------------------------------------------------------

def test_stage_steps_follow_the_stage_keys_and_the_stages_choice():
    diffueraser = get_recipe("diffueraser")
    params = diffueraser.resolve_params({"stage1_max_train_steps": 100, "stage2_max_train_steps": 300})
    assert stage_steps(diffueraser, params) == [("stage 1", 100), ("stage 2", 300)]
    only2 = diffueraser.resolve_params({"stages": "stage2", "stage2_max_train_steps": 300})
    assert stage_steps(diffueraser, only2) == [("stage 2", 300)]
    fff = get_recipe("fff-vdi")
    assert stage_steps(fff, fff.resolve_params({"max_train_steps": 9})) == [("training", 9)]
    # The demo's two stages share max_train_steps (training_stages: 2): counted twice.
    demo = get_recipe("demo")
    assert stage_steps(demo, demo.resolve_params({"max_train_steps": 9})) == [("stage 1", 9), ("stage 2", 9)]


def test_stages_sharing_parameters_keep_their_own_checkpoints():
    demo = get_recipe("demo")
    plan = replace(demo.default_plan(Path("/p"), hf_namespace="alice"), params={"checkpoints_total_limit": 3})
    cost = estimate(resolve(plan, demo), 2.0)
    assert cost.checkpoints_kept == 3 * 2
    assert cost.disk_bytes == 6 * 4 * 1024 + 1024 * 1024
    assert cost.seconds == 2 * 6 / 2.0


def test_disk_follows_the_checkpoint_limits():
    diffueraser = get_recipe("diffueraser")
    plan = diffueraser.default_plan(Path("/p"), hf_namespace="alice")
    assert estimate(resolve(plan, diffueraser), None).disk_bytes == (3 + 3) * 8 * GiB + 8 * GiB
    fewer = plan.with_changes(params={"stage1_checkpoints_total_limit": 1, "stage2_checkpoints_total_limit": 1})
    assert estimate(resolve(fewer, diffueraser), None).disk_bytes == (1 + 1) * 8 * GiB + 8 * GiB


def test_time_per_stage_against_the_train_time_limit():
    diffueraser = get_recipe("diffueraser")
    plan = diffueraser.default_plan(Path("/p"), hf_namespace="alice",
                                    params={"stage1_max_train_steps": 3600, "stage2_max_train_steps": 7200})
    plan = plan.with_changes(train=plan.train.__class__(**{**vars(plan.train), "time": "2:00:00"}))
    at_two = estimate(resolve(plan, diffueraser), 2.0)  # 1800 s + 3600 s
    assert [(s.name, s.seconds) for s in at_two.stages] == [("stage 1", 1800.0), ("stage 2", 3600.0)]
    assert at_two.seconds == 5400.0 and at_two.time_limit_seconds == 7200 and at_two.fits_time_limit is True
    at_one = estimate(resolve(plan, diffueraser), 1.0)  # 10800 s > 2 h
    assert at_one.fits_time_limit is False
    unknown = estimate(resolve(plan, diffueraser), None)
    assert unknown.seconds is None and unknown.fits_time_limit is None
    assert [s.steps for s in unknown.stages] == [3600, 7200] and unknown.checkpoints_kept == 6


def test_rates_per_stage_follow_the_templates_stage_lines():
    def steps(rate, n=3):
        return [f"Steps: {i}/{n} [00:0{i}<00:00, {rate:.2f}it/s, loss=0.1]" for i in range(1, n + 1)]

    both = rates_from_lines(["[2026-12-02 10:00:00] stage 1: 9 steps, nframes 10, 1 GPU(s)", *steps(4.0),
                             "[2026-12-02 10:05:00] stage 1 converted", "noise",
                             "[2026-12-02 10:06:00] stage 2: 9 steps, nframes 22, 1 GPU(s)", *steps(1.0)])
    assert both is not None and both.stages == {1: 4.0, 2: 1.0}
    # The tail began inside stage 1: the samples above "stage 2" are stage 1's.
    cut = rates_from_lines([*steps(4.0), "[2026-12-02 10:06:00] stage 2", *steps(1.0)])
    assert cut is not None and cut.stages == {1: 4.0, 2: 1.0}
    # "stage 1 already trained ..." starts no stage; a log without stage lines has no per-stage rate.
    skipped = rates_from_lines(["[2026-12-02 10:00:00] stage 1 already trained and converted; skipping it",
                                *steps(2.0)])
    assert skipped is not None and skipped.stages == {} and skipped.overall == 2.0
    assert rates_from_lines(["no progress here"]) is None


def test_each_stage_at_its_own_rate_and_the_overall_rate_for_the_others():
    diffueraser = get_recipe("diffueraser")
    plan = diffueraser.default_plan(Path("/p"), hf_namespace="alice",
                                    params={"stage1_max_train_steps": 3600, "stage2_max_train_steps": 3600})
    cost = estimate(resolve(plan, diffueraser), 2.0, {2: 1.0})
    assert [(s.name, s.seconds, s.rate_its, s.own_rate) for s in cost.stages] == [
        ("stage 1", 1800.0, 2.0, False), ("stage 2", 3600.0, 1.0, True)]
    assert cost.seconds == 5400.0


def test_a_bad_parameter_is_refused_by_name():
    demo = get_recipe("demo")
    plan = demo.default_plan(Path("/p"), params={"checkpoints_total_limit": 0})
    with pytest.raises(PlanError, match="checkpoints_total_limit"):
        estimate(resolve(plan, demo), 1.0)


# -- what the measured run had: scaled where the recipe says how, named otherwise (issue 14, item 2) ---

def settings_of(plan, recipe) -> MeasuredSettings:
    return MeasuredSettings(recipe.resolve_params(plan.params), plan.train.gpus, plan.train.nodes)


def test_a_declared_step_time_parameter_scales_the_rate_and_is_named():
    """Measured at 0.2 s/step (4 it/s), planned at 60 s/step: the demo's old estimate said ≈ 3 s and ✔;
    the job then timed out. seconds_per_step is declared proportional in recipe.yaml."""
    demo = get_recipe("demo")
    measured = demo.default_plan(Path("/p"), hf_namespace="alice")  # seconds_per_step 0.2
    plan = measured.with_changes(params={"seconds_per_step": 60})
    cost = estimate(resolve(plan, demo), 4.0, measured_with=settings_of(measured, demo))
    assert cost.seconds == pytest.approx(2 * 6 * 60 / 0.2 / 4.0)  # 900 s: 300x slower steps
    assert [(s.name, s.measured, s.planned) for s in cost.scaled] == [("seconds_per_step", 0.2, 60.0)]
    assert cost.differences == ("seconds_per_step 0.2",)
    assert cost.fits_time_limit is False and not cost.exact


def test_only_the_steps_differ_the_estimate_is_exact():
    demo = get_recipe("demo")
    measured = demo.default_plan(Path("/p"), hf_namespace="alice")
    plan = measured.with_changes(params={"max_train_steps": 60, "checkpoints_total_limit": 5})
    cost = estimate(resolve(plan, demo), 4.0, measured_with=settings_of(measured, demo))
    assert cost.seconds == pytest.approx(2 * 60 / 4.0) and cost.scaled == () and cost.differences == ()
    assert cost.exact and cost.fits_time_limit
    # Without the measured run's settings nothing vouches for it.
    assert not estimate(resolve(plan, demo), 4.0).exact


def test_a_setting_without_a_declared_cost_is_named_not_scaled():
    demo = get_recipe("demo")
    measured = demo.default_plan(Path("/p"), hf_namespace="alice")
    plan = measured.with_changes(params={"checkpointing_steps": 1},
                                 train=measured.train.__class__(**{**vars(measured.train), "gpus": 2}))
    cost = estimate(resolve(plan, demo), 4.0, measured_with=settings_of(measured, demo))
    assert cost.seconds == pytest.approx(3.0) and cost.scaled == ()
    assert cost.differences == ("checkpointing_steps 2", "0 GPUs") and not cost.exact


def test_a_stage_parameter_scales_its_own_stage_only():
    """DiffuEraser: stage 2 at 44 frames instead of 22 takes twice as long per step; stage 1 is as measured."""
    diffueraser = get_recipe("diffueraser")
    measured = diffueraser.default_plan(Path("/p"), hf_namespace="alice",
                                        params={"stage1_max_train_steps": 100, "stage2_max_train_steps": 100})
    plan = measured.with_changes(params={**measured.params, "stage2_nframes": 44})
    cost = estimate(resolve(plan, diffueraser), 1.0, {1: 2.0, 2: 1.0}, measured_with=settings_of(measured, diffueraser))
    assert [(s.name, s.seconds) for s in cost.stages] == [("stage 1", 50.0), ("stage 2", 200.0)]
    assert cost.differences == ("stage2_nframes 22",)


def test_measured_rate_reads_the_settings_the_run_kept_in_its_run_folder(tmp_path):
    home = tmp_path / "proj"
    demo = get_recipe("demo")
    plan = demo.default_plan(home, params={"seconds_per_step": 0.5})
    record_submission(home, ("train", "hw-p-train", "12"))
    write_log(home / "logs" / "hw-p-train-12.out", demo_trainer_lines(6, 0.5))
    assert measured_rate(Project(home), demo).settings is None  # no plan kept: the settings are not known
    run = home / "hpcwizard" / "runs" / "x"
    run.mkdir(parents=True)
    (run / "plan.yaml").write_text(plan.to_yaml())
    settings = measured_rate(Project(home), demo).settings
    assert settings is not None and settings.params["seconds_per_step"] == 0.5 and settings.gpus == 0


def test_step_time_is_recipe_data_and_checked(tmp_path):
    assert [p.name for p in get_recipe("demo").parameters if p.step_time == "proportional"] == ["seconds_per_step"]
    from hpcwizard.project.recipe import _load_parameter

    with pytest.raises(RecipeError, match="step_time"):
        _load_parameter({"name": "x", "type": "choice", "choices": [1], "default": 1, "help": "h",
                         "step_time": "proportional"}, "r.yaml")


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0s"), (2.4, "3s"), (95, "1m 35s"), (3725, "1h 02m"), (25 * 3600, "25h 00m"), (3 * 86400 + 7200, "3d 02h"),
])
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text

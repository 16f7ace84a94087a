"""`hpcwizard check` on the real local cluster against a local Hub-protocol server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hpcwizard.demo import build_demo_hub, write_token_file
from hpcwizard.devhub import DevHub, add_token, configure_repo

CANARY = "hf_check_canary_0123456789"


@pytest.fixture
def demo_hub(tmp_path):
    root = tmp_path / "hub"
    built = build_demo_hub(root, user="alice", token=CANARY)
    with DevHub(root) as hub:
        yield hub, built


def write_plan(tmp_path: Path, **train) -> Path:
    resources = {"partition": "cpu", "cpus": 1, "mem": "1G", "time": "00:10:00", **train}
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "recipe: demo\n"
        f"project_home: {tmp_path / 'proj'}\n"
        f"data_root: {tmp_path / 'data'}\n"
        "hf_namespace: alice\n"
        "setup: {partition: cpu, cpus: 1, mem: 1G, time: '00:10:00'}\n"
        f"train: {json.dumps(resources)}\n"
    )
    return plan


def run_check(tmp_path: Path, hub: DevHub, plan: Path, token: str | None, slurm_conf: str) -> tuple[int, dict, str]:
    env = {k: v for k, v in os.environ.items() if k != "HF_TOKEN"}
    env.update(HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "hf-home"), SLURM_CONF=slurm_conf)
    if token is not None:
        write_token_file(tmp_path / "hf-home", token)
    done = subprocess.run([sys.executable, "-m", "hpcwizard", "check", str(plan), "--json"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in done.stderr
    report = json.loads(done.stdout) if done.stdout.strip() else {}
    # The token never reaches the output, whatever happened.
    assert CANARY not in done.stdout + done.stderr
    return done.returncode, report, done.stderr


def rows(report: dict, group: str, level: str | None = None) -> list[dict]:
    return [r for r in report["checks"] if r["group"] == group and (level is None or r["level"] == level)]


def test_good_plan_passes(tmp_path, demo_hub, slurm_conf):
    hub, built = demo_hub
    code, report, _err = run_check(tmp_path, hub, write_plan(tmp_path), built.token, slurm_conf)
    assert code == 0, (report, _err)
    assert report["ok"] is True and report["counts"]["block"] == 0
    assert "valid for alice" in rows(report, "token")[0]["message"]
    assert len(rows(report, "access", "ok")) == 3
    assert any("would start at" in r["message"] for r in rows(report, "slurm", "ok"))
    assert any(r["name"] == "still to write" and "MiB" in r["message"] for r in rows(report, "space"))


def test_over_max_time_and_over_gpus_are_blocked_with_the_limit(tmp_path, demo_hub, slurm_conf):
    hub, built = demo_hub
    plan = write_plan(tmp_path, partition="gpu", gpus=3, time="05:00:00")
    code, report, _ = run_check(tmp_path, hub, plan, built.token, slurm_conf)
    assert code == 1 and report["ok"] is False
    blocked = {r["message"]: r["fix"] for r in rows(report, "slurm", "block")}
    assert blocked["time 05:00:00 exceeds the partition's MaxTime 04:00:00"] == "set train.time to at most 04:00:00"
    assert any("3 GPUs asked, a node of gpu has 2" in m for m in blocked)


def test_unknown_partition_is_blocked_with_the_choices(tmp_path, demo_hub, slurm_conf):
    hub, built = demo_hub
    code, report, _ = run_check(tmp_path, hub, write_plan(tmp_path, partition="nope"), built.token, slurm_conf)
    assert code == 1
    [row] = rows(report, "slurm", "block")
    assert row["message"] == "partition nope does not exist" and "cpu" in row["fix"] and "gpu" in row["fix"]


def test_gated_awaiting_and_missing_repos(tmp_path, demo_hub, slurm_conf):
    hub, built = demo_hub
    root = Path(hub.root)
    # The gated base model: alice's request is awaiting review (manual gate).
    configure_repo(root, "models", "hpcwizard-demo/tiny-base-model", gated="manual", accepted=[], pending=["alice"])
    # The data repo is gone.
    import shutil

    shutil.rmtree(root / "datasets" / "alice" / "hpcwizard-demo-frames")
    code, report, _err = run_check(tmp_path, hub, write_plan(tmp_path), built.token, slurm_conf)
    assert code == 1
    blocked = {r["name"]: r for r in rows(report, "access", "block")}
    assert "awaiting" in blocked["model hpcwizard-demo/tiny-base-model"]["message"].lower()
    missing = blocked["dataset alice/hpcwizard-demo-frames"]
    assert "missing" in missing["message"].lower() or "not found" in missing["message"].lower()


def test_valid_token_that_accepted_no_gate(tmp_path, demo_hub, slurm_conf):
    hub, _ = demo_hub
    add_token(Path(hub.root), "hf_bob_token_000000000000", "bob")
    code, report, _ = run_check(tmp_path, hub, write_plan(tmp_path), "hf_bob_token_000000000000", slurm_conf)
    assert code == 1
    gated = {r["name"]: r for r in rows(report, "access", "block")}["model hpcwizard-demo/tiny-base-model"]
    assert gated["message"].startswith("gated, conditions not accepted")  # words, not gated_not_accepted
    assert "hpcwizard-demo/tiny-base-model" in gated["fix"]


def test_invalid_token_blocks(tmp_path, demo_hub, slurm_conf):
    hub, _ = demo_hub
    code, report, _ = run_check(tmp_path, hub, write_plan(tmp_path), "hf_not_a_real_token_00000", slurm_conf)
    assert code == 1
    [token_row] = rows(report, "token")
    assert token_row["level"] == "block" and "invalid" in token_row["message"].lower()
    assert "huggingface.co/settings/tokens" in token_row["fix"]


def test_text_output_has_fixes_and_a_verdict(tmp_path, demo_hub, slurm_conf):
    hub, built = demo_hub
    env = {k: v for k, v in os.environ.items() if k != "HF_TOKEN"}
    write_token_file(tmp_path / "hf-home", built.token)
    env.update(HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "hf-home"), SLURM_CONF=slurm_conf)
    plan = write_plan(tmp_path, partition="gpu", time="05:00:00")
    done = subprocess.run([sys.executable, "-m", "hpcwizard", "check", str(plan)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "BLOCK slurm       train on gpu: time 05:00:00 exceeds" in done.stdout
    assert "fix: set train.time to at most 04:00:00" in done.stdout
    assert done.stdout.rstrip().endswith("blocked: fix the BLOCK rows, then check again")


def test_no_token_and_an_unreachable_hub_are_both_reported(tmp_path, slurm_conf):
    import socket

    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}"
    env = {k: v for k, v in os.environ.items() if k != "HF_TOKEN"}
    env.update(HF_ENDPOINT=dead, HF_HOME=str(tmp_path / "empty-hf-home"), SLURM_CONF=slurm_conf)
    done = subprocess.run([sys.executable, "-m", "hpcwizard", "check", str(write_plan(tmp_path)), "--json"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    report = json.loads(done.stdout)
    [token_row] = rows(report, "token")
    assert token_row["level"] == "block" and "no token found" in token_row["message"]
    [hub_row] = [r for r in rows(report, "environment") if r["name"] == "hub"]
    assert hub_row["level"] == "warn" and "did not answer" in hub_row["message"]
    assert "HTTPS_PROXY" in hub_row["fix"]
    # The Slurm side is still checked and fine.
    assert rows(report, "slurm", "ok")


def test_namespace_defaults_to_the_tokens_user(tmp_path, demo_hub, slurm_conf):
    hub, built = demo_hub
    plan = write_plan(tmp_path)
    plan.write_text(plan.read_text().replace("hf_namespace: alice\n", "hf_namespace: null\n"))
    env = {k: v for k, v in os.environ.items() if k != "HF_TOKEN"}
    env.update(HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "hf-home"), SLURM_CONF=slurm_conf)
    # Without a token there is nobody to default to: a clear error.
    done = subprocess.run([sys.executable, "-m", "hpcwizard", "render", str(plan), "--out", str(tmp_path / "a")],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "needs hf_namespace and no Hugging Face token was found" in done.stderr
    write_token_file(tmp_path / "hf-home", built.token)
    done = subprocess.run([sys.executable, "-m", "hpcwizard", "render", str(plan), "--out", str(tmp_path / "b")],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "hf_namespace: alice" in (tmp_path / "b" / "plan.yaml").read_text()


def test_a_token_only_in_hf_token_blocks_jobs_that_download_gated_repos(tmp_path, demo_hub, slurm_conf):
    """HF_TOKEN is never passed into a job (sbatch would keep it with the job's
    record): the setup job reads the token file, so one must exist."""
    hub, built = demo_hub
    env = {k: v for k, v in os.environ.items() if k != "HF_TOKEN"}
    env.update(HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "no-file"), SLURM_CONF=slurm_conf, HF_TOKEN=built.token)
    done = subprocess.run([sys.executable, "-m", "hpcwizard", "check", str(write_plan(tmp_path)), "--json"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    report = json.loads(done.stdout)
    [job_row] = [r for r in rows(report, "token") if r["name"] == "token for the jobs"]
    assert job_row["level"] == "block" and "hpcwizard-demo/tiny-base-model is gated" in job_row["message"]
    assert "hf auth login" in job_row["fix"]
    assert built.token not in done.stdout + done.stderr


def test_a_token_file_others_can_read_is_a_warning_with_the_chmod(tmp_path, demo_hub, slurm_conf):
    hub, built = demo_hub
    write_token_file(tmp_path / "hf-home", built.token)
    (tmp_path / "hf-home" / "token").chmod(0o644)
    code, report, _ = run_check(tmp_path, hub, write_plan(tmp_path), None, slurm_conf)
    [loose] = [r for r in rows(report, "token") if r["name"] == "token file"]
    assert loose["level"] == "warn" and "mode 644" in loose["message"]
    assert loose["fix"] == f"make it private: chmod 600 {tmp_path / 'hf-home' / 'token'}"
    assert code == 0  # a warning, not a block


def test_a_project_home_that_cannot_be_written_blocks_before_submit(tmp_path, demo_hub, slurm_conf):
    hub, built = demo_hub
    (tmp_path / "a-file").write_text("x")
    plan = write_plan(tmp_path)
    plan.write_text(plan.read_text().replace(f"project_home: {tmp_path / 'proj'}",
                                             f"project_home: {tmp_path / 'a-file' / 'proj'}"))
    code, report, _ = run_check(tmp_path, hub, plan, built.token, slurm_conf)
    [home] = [r for r in rows(report, "space") if r["name"] == "project home writable"]
    assert home["level"] == "block" and f"{tmp_path / 'a-file'} is a file, not a folder" in home["message"]
    assert "project_home" in home["fix"]
    [data] = [r for r in rows(report, "space") if r["name"] == "data root writable"]
    assert data["level"] == "ok"
    assert code == 1


def test_checkpoints_of_an_earlier_run_are_pointed_out(tmp_path, demo_hub, slurm_conf):
    """Training resumes from the latest checkpoint: a new plan in the same
    project home would silently skip the steps up to it (at or beyond the
    plan's steps it blocks: tests/test_check_checkpoints.py)."""
    hub, built = demo_hub
    stage1 = tmp_path / "proj" / "demo" / "stage1"
    for step in (4, 60):
        (stage1 / f"checkpoint-{step}").mkdir(parents=True)
    plan = write_plan(tmp_path)
    plan.write_text(plan.read_text() + "params: {max_train_steps: 100}\n")
    code, report, _ = run_check(tmp_path, hub, plan, built.token, slurm_conf)
    [row] = rows(report, "training")
    assert row["level"] == "warn" and f"{stage1} has checkpoint-60 from an earlier run" in row["message"]
    assert row["fix"].startswith("to train from the start: `hpcwizard check --start-fresh PLAN` moves the old "
                                 f"checkpoints into {tmp_path / 'proj' / 'old-checkpoints'}/<date>/")
    assert code == 0


def test_a_login_plan_is_blocked_until_prepared_and_submit_refuses_it(tmp_path, demo_hub, slurm_conf):
    """download: login means the setup job only verifies what the login node
    prepared (files AND environment): checked and submitted before `hpcwizard
    prepare`, the chain failed in its first job."""
    hub, built = demo_hub
    plan = write_plan(tmp_path)
    plan.write_text(plan.read_text() + "download: login\n")
    code, report, _ = run_check(tmp_path, hub, plan, built.token, slurm_conf)
    [row] = [r for r in rows(report, "space") if r["name"] == "not prepared"]
    assert code == 1 and row["level"] == "block"
    assert row["message"].startswith("download: login, and not prepared yet: files: ")
    assert "environment: " in row["message"] and "is not built yet" in row["message"]
    assert "run `hpcwizard prepare PLAN` on this login node first" in row["fix"]
    env = {k: v for k, v in os.environ.items() if k != "HF_TOKEN"}
    env.update(HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "hf-home"), SLURM_CONF=slurm_conf)

    def hpcwizard(*argv):
        return subprocess.run([sys.executable, "-m", "hpcwizard", *argv], env=env, capture_output=True, text=True,
                              timeout=120)

    refused = hpcwizard("submit", str(plan))
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert "not prepared yet" in refused.stderr and "nothing was submitted" in refused.stderr
    assert not (tmp_path / "proj" / "hpcwizard" / "state.json").exists() or \
        '"submissions": []' in (tmp_path / "proj" / "hpcwizard" / "state.json").read_text()
    prepared = hpcwizard("prepare", str(plan))
    assert prepared.returncode == 0, prepared.stderr
    code, report, _ = run_check(tmp_path, hub, plan, built.token, slurm_conf)
    assert code == 0, report
    [done] = [r for r in rows(report, "space") if r["name"] == "prepared"]
    assert done["level"] == "ok" and done["message"] == "prepared on this node: files, environment"


def test_a_training_longer_than_the_partition_allows_is_shown_in_segments(tmp_path, demo_hub, slurm_conf):
    """Train jobs continue across their time limit: a long training is ~N
    segments, not a problem; only a bound too small for it is a warning, and
    a time over MaxTime still blocks (test above)."""
    hub, built = demo_hub
    plan = write_plan(tmp_path, time="2")
    plan.write_text(plan.read_text() + "params: {max_train_steps: 100, seconds_per_step: 2}\n")
    code, report, _ = run_check(tmp_path, hub, plan, built.token, slurm_conf)
    [row] = [r for r in rows(report, "slurm") if r["name"] == "train continuation"]
    assert code == 0 and row["level"] == "ok", row
    assert row["message"].startswith("training ≈ 6m 40s: ~7 segments of 2m, continued by requeue; "
                                     "at most 11 (train.segments: auto); Slurm warns 25s before each limit")
    requeue = json.loads((tmp_path / "proj" / "hpcwizard" / "continuation" / "requeue.json").read_text())
    assert requeue["requeue"] is True

    plan.write_text(plan.read_text().replace('"time": "2"', '"time": "2", "segments": 3'))
    code, report, _ = run_check(tmp_path, hub, plan, built.token, slurm_conf)
    [row] = [r for r in rows(report, "slurm") if r["name"] == "train continuation"]
    assert code == 0 and row["level"] == "warn"
    assert "the training needs ~7 segments of 2m; train.segments allows 3" in row["message"]
    assert row["fix"].startswith("raise train.segments")

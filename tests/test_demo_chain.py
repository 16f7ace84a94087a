"""The demo recipe end to end: real Slurm, real bash and tar, the local Hub-protocol server.

Submit through the CLI, wait for setup then train to COMPLETE, and check that
the converted weights exist, the logs sit under <project_home>/logs, and the
token appears in no generated file and no job log.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from hpcwizard.demo import build_demo_hub, write_token_file
from hpcwizard.devhub import DevHub
from hpcwizard.project.recipe import get_recipe
from hpcwizard.slurm import JobState, SlurmClient

CANARY = "hf_demo_canary_7f3a9c1e5b"


def wait_for_states(slurm: SlurmClient, ids: list[str], timeout: float = 120.0) -> dict[str, JobState]:
    deadline = time.monotonic() + timeout
    states: dict[str, JobState] = {}
    while time.monotonic() < deadline:
        states = {e.job_id: e.state for e in slurm.queue(ids)}
        missing = [i for i in ids if i not in states]
        if missing:
            states.update({f.job_id: f.state for f in slurm.finished(missing)})
        if all(s.is_finished for s in states.values()) and len(states) == len(ids):
            return states
        if any(e.dependency_never_satisfied for e in slurm.queue(ids)):
            return states
        time.sleep(0.5)
    raise AssertionError(f"jobs {ids} did not finish within {timeout} s: {states}")


def test_demo_chain_completes_without_leaking_the_token(tmp_path, slurm_conf, slurm_runner):
    hub_root = tmp_path / "hub"
    build_demo_hub(hub_root, user="alice", token=CANARY)
    # A project home a shell would love to misread.
    home = tmp_path / "it's a $(touch PWNED) project"
    plan = get_recipe("demo").default_plan(home, tmp_path / "data dir", hf_namespace="alice")
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text(plan.to_yaml())
    hf_home = tmp_path / "hf-home"
    write_token_file(hf_home, CANARY)

    with DevHub(hub_root) as hub:
        env = {k: v for k, v in os.environ.items() if k != "HF_TOKEN"}
        env.update(HF_ENDPOINT=hub.url, HF_HOME=str(hf_home), SLURM_CONF=slurm_conf)
        done = subprocess.run([sys.executable, "-m", "hpcwizard", "submit", str(plan_file), "--json"],
                              env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        jobs = json.loads(done.stdout)["jobs"]
        ids = [j["id"] for j in jobs]
        slurm = SlurmClient(slurm_runner)
        try:
            states = wait_for_states(slurm, ids)
        finally:
            slurm.cancel(ids)

    logs = sorted((home / "logs").iterdir())
    log_text = {p.name: p.read_text(errors="replace") for p in logs}
    assert states == {ids[0]: JobState.COMPLETED, ids[1]: JobState.COMPLETED}, log_text
    weights = json.loads((home / "demo" / "converted_weights" / "weights.json").read_text())
    assert weights["stage"] == 2 and weights["step"] == 6
    assert (home / "demo" / "converted_stage1" / "weights.json").is_file()
    assert {f"{j['slurm_name']}-{j['id']}.out" for j in jobs} <= set(log_text)
    assert "final weights in" in log_text[f"{jobs[1]['slurm_name']}-{ids[1]}.out"]
    assert "unpacked 2 archive" in log_text[f"{jobs[0]['slurm_name']}-{ids[0]}.out"]
    assert not list(tmp_path.rglob("PWNED"))

    # The token: in no generated script or config, no plan copy, no log, no state file.
    scanned = 0
    for path in [*home.rglob("*"), *tmp_path.glob("*.yaml")]:
        if path.is_file() and path.stat().st_size < 5_000_000 and "hf-home" not in path.parts:
            assert CANARY.encode() not in path.read_bytes(), f"token leaked into {path}"
            scanned += 1
    assert scanned > 10

"""Do the compute nodes reach the network? The probe job on the real local cluster.

The local cluster's node shares this machine's network: it reaches the local
Hub-protocol server and the package index (PyPI is reachable here and in CI)
but not github.com (no internet beyond the package registries). The tests
assert exactly that, per target, rather than "online" as a whole.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import test_wizard as tw
from devhub_fixtures import hf_home  # noqa: F401
from helpers import pilot_wait_for
from hpcwizard.checks import netprobe
from hpcwizard.checks.netprobe import ProbeResult, TargetKind, TargetResult
from hpcwizard.checks.preflight import NETWORK_ROW, Level, check_network
from hpcwizard.demo import build_demo_hub, write_token_file
from hpcwizard.devhub import DevHub
from hpcwizard.project.home import Project
from hpcwizard.project.recipe import get_recipe
from hpcwizard.project.resolved import resolve
from hpcwizard.shell import LocalRunner
from test_remote_cli import conn, ssh_config  # noqa: F401

CANARY = "hf_netprobe_canary_0123456789"


@pytest.fixture
def demo_hub(tmp_path):
    root = tmp_path / "hub"
    built = build_demo_hub(root, user="alice", token=CANARY)
    with DevHub(root) as hub:
        yield hub, built


def demo_plan(tmp_path: Path, **changes):
    return get_recipe("demo").default_plan(tmp_path / "proj", tmp_path / "data", hf_namespace="alice", **changes)


def write_plan(tmp_path: Path, **changes) -> Path:
    path = tmp_path / "plan.yaml"
    path.write_text(demo_plan(tmp_path, **changes).to_yaml())
    return path


def hpcwizard(tmp_path: Path, hub: DevHub, slurm_conf: str, *argv: str, hf_token: str | None = None):
    env = {k: v for k, v in os.environ.items() if k != "HF_TOKEN"}
    env.update(HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "hf-home"), SLURM_CONF=slurm_conf)
    if hf_token:
        env["HF_TOKEN"] = hf_token
    done = subprocess.run([sys.executable, "-m", "hpcwizard", *argv], env=env, capture_output=True, text=True,
                          timeout=300)
    assert "Traceback" not in done.stderr, done.stderr
    assert CANARY not in done.stdout + done.stderr
    return done


def network_row(report: dict) -> dict:
    [row] = [r for r in report["checks"] if r["name"] == NETWORK_ROW]
    assert row["group"] == "slurm"
    return row


def probe_jobs(state_dir: Path) -> list[str]:
    """Ids of the probe jobs Slurm knows that ran for this project (its state dir is their work dir)."""
    out = subprocess.run(["squeue", "--noheader", "-t", "all", "-n", netprobe.JOB_NAME, "-o", "%i|%Z"],
                         capture_output=True, text=True, check=True).stdout
    return sorted(line.split("|")[0] for line in out.splitlines() if line.split("|", 1)[1:] == [str(state_dir)])


def job_environment(job_id: str) -> str:
    """The environment Slurm stored for a job (its state save location keeps it for MinJobAge)."""
    config = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, check=True).stdout
    [location] = [line.split("=", 1)[1].strip() for line in config.splitlines() if line.startswith("StateSaveLocation")]
    return (Path(location) / f"hash.{int(job_id) % 10}" / f"job.{job_id}" / "environment").read_bytes().decode(
        errors="replace")


def scratch_left(state_dir: Path) -> list[str]:
    return sorted(p.name for p in state_dir.glob(".netprobe-*"))


# --- the probe, its cache and `check --probe` --------------------------------------------

def test_probe_reports_each_target_and_check_reuses_the_cached_result(tmp_path, demo_hub, slurm_conf):
    hub, built = demo_hub
    write_token_file(tmp_path / "hf-home", built.token)
    plan_file = write_plan(tmp_path)
    plan = demo_plan(tmp_path)
    state_dir = plan.state_dir

    # HF_TOKEN exported by the user: used by hpcwizard, never seen by the probe job.
    first = hpcwizard(tmp_path, hub, slurm_conf, "check", str(plan_file), "--json", hf_token=CANARY)
    report = json.loads(first.stdout)
    row = network_row(report)
    assert first.returncode == 0 and row["level"] == "ok", report
    assert row["message"].startswith(f"compute nodes of partition cpu reach the Hugging Face endpoint {hub.url}, "
                                     "the package index ")
    assert "cached" not in row["message"]

    cache = json.loads((state_dir / netprobe.CACHE_FILE).read_text())
    cluster = netprobe.cluster_name(LocalRunner())
    assert cluster == "hpcwizard-local"
    [(key, probe)] = cache["probes"].items()
    assert key == "hpcwizard-local/cpu" and probe["partition"] == "cpu" and probe["probed_at"]
    targets = {t["kind"]: t for t in probe["targets"]}
    # Honest per target: the local hub and the package index answer, github.com does not.
    assert targets["hub"]["url"] == hub.url and targets["hub"]["reachable"], targets
    assert targets["hub"]["detail"].startswith("HTTP ")
    assert targets["index"]["url"] == netprobe.index_url(LocalRunner(), sys.executable)
    assert targets["index"]["reachable"] and targets["index"]["detail"].startswith("HTTP "), targets
    assert targets["code"]["url"] == "https://github.com" and not targets["code"]["reachable"], targets
    assert targets["code"]["detail"] and not targets["code"]["detail"].startswith("HTTP ")

    # One probe job, not a job of the chain: not in the project state, not named like the chain.
    [job_id] = probe_jobs(state_dir)
    assert probe["job_id"] == job_id and not netprobe.JOB_NAME.startswith(plan.job_prefix)
    assert not (state_dir / "state.json").exists()
    assert scratch_left(state_dir) == []
    assert CANARY not in job_environment(job_id)

    # Again: the cached result, with its date, and no new job.
    again = hpcwizard(tmp_path, hub, slurm_conf, "check", str(plan_file), "--json")
    row = network_row(json.loads(again.stdout))
    assert row["level"] == "ok" and f"(probed {ProbeResult.from_dict(probe).date}, cached)" in row["message"]
    assert probe_jobs(state_dir) == [job_id]
    assert json.loads((state_dir / netprobe.CACHE_FILE).read_text()) == cache

    # --probe: a new job, a new cached result; the text output says so in the slurm group.
    fresh = hpcwizard(tmp_path, hub, slurm_conf, "check", str(plan_file), "--probe")
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    jobs = probe_jobs(state_dir)
    assert len(jobs) == 2 and job_id in jobs
    [new_id] = [j for j in jobs if j != job_id]
    assert json.loads((state_dir / netprobe.CACHE_FILE).read_text())["probes"][key]["job_id"] == new_id
    [line] = [line for line in fresh.stdout.splitlines() if NETWORK_ROW in line]
    assert line.startswith("ok    slurm       compute nodes' network: compute nodes of partition cpu reach")
    assert "cached" not in line
    assert scratch_left(state_dir) == []


def test_nodes_without_network_block_a_download_job_plan(tmp_path, demo_hub, offline_slurm_conf):
    """The offline cluster (its node in a network namespace of its own): the
    probe reaches neither the local hub nor the package index, and `check`
    blocks a download: job plan with the way out; download: login is fine."""
    hub, built = demo_hub
    write_token_file(tmp_path / "hf-home", built.token)
    plan_file = write_plan(tmp_path)
    state_dir = demo_plan(tmp_path).state_dir
    done = hpcwizard(tmp_path, hub, offline_slurm_conf, "check", str(plan_file), "--json")
    report = json.loads(done.stdout)
    row = network_row(report)
    assert done.returncode == 1 and report["ok"] is False
    assert row["level"] == "block", row
    assert row["message"].startswith(f"compute nodes of partition cpu cannot reach the Hugging Face endpoint {hub.url} "
                                     "or the package index "), row["message"]
    assert "(probed " in row["message"]
    assert row["fix"].startswith("choose download: login (the wizard's 'prepare on the login node'), "
                                 "then run `hpcwizard prepare PLAN` on the login node")
    # Only the network row blocks: the plan is fine otherwise.
    assert [r["name"] for r in report["checks"] if r["level"] == "block"] == [NETWORK_ROW]
    [probe] = json.loads((state_dir / netprobe.CACHE_FILE).read_text())["probes"].values()
    assert not any(t["reachable"] for t in probe["targets"]), probe
    assert scratch_left(state_dir) == []

    # The same nodes for a plan prepared on the login node: its jobs run offline.
    login_plan = write_plan(tmp_path, download="login")
    done = hpcwizard(tmp_path, hub, offline_slurm_conf, "check", str(login_plan), "--json")
    row = network_row(json.loads(done.stdout))
    assert row["level"] == "ok" and row["message"].startswith(
        "jobs run offline: everything is prepared on the login node (compute nodes of partition cpu cannot reach")


def test_a_recipe_that_clones_from_the_code_host_is_blocked_there_and_login_plans_are_fine(
        tmp_path, demo_hub, slurm_conf, monkeypatch):
    """fff-vdi clones its code from github.com, which the local node cannot reach:
    a download: job plan is blocked with the way out; the same nodes are fine for
    a download: login plan (its jobs run offline). All from one cached probe."""
    hub, _ = demo_hub
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    runner = LocalRunner(extra_env={"SLURM_CONF": slurm_conf})
    demo = demo_plan(tmp_path)
    [row] = check_network(Project(demo.project_home, runner=runner), resolve(demo))
    assert row.level is Level.OK, row
    [job_id] = probe_jobs(demo.state_dir)

    fff = get_recipe("fff-vdi")
    assert netprobe.needed_kinds(fff) == (TargetKind.HUB, TargetKind.INDEX, TargetKind.CODE)
    assert netprobe.code_host(fff) == "https://github.com"
    fff_plan = fff.default_plan(demo.project_home, demo.data_root, hf_namespace="alice").with_changes(
        setup=demo.setup)
    [row] = check_network(Project(fff_plan.project_home, runner=runner), resolve(fff_plan, fff))
    assert row.level is Level.BLOCK, row
    assert row.message.startswith("compute nodes of partition cpu cannot reach the code host https://github.com "
                                  "(probed "), row.message
    assert ", cached)" in row.message
    assert row.fix.startswith("choose download: login (the wizard's 'prepare on the login node'), "
                              "then run `hpcwizard prepare PLAN` on the login node")
    [row] = check_network(Project(fff_plan.project_home, runner=runner),
                           resolve(fff_plan.with_changes(download="login"), fff))
    assert row.level is Level.OK and row.message.startswith("jobs run offline: everything is prepared on the login node")
    assert "cannot reach the code host https://github.com" in row.message
    assert probe_jobs(demo.state_dir) == [job_id]  # all from the one probe


def test_a_login_plan_without_a_cached_probe_submits_nothing(tmp_path, slurm_conf):
    runner = LocalRunner(extra_env={"SLURM_CONF": slurm_conf})
    plan = demo_plan(tmp_path, download="login")
    [row] = check_network(Project(plan.project_home, runner=runner), resolve(plan))
    assert row.level is Level.OK and row.message == "jobs run offline: everything is prepared on the login node"
    assert probe_jobs(plan.state_dir) == [] and not plan.state_dir.exists()


def test_a_probe_still_pending_after_the_wait_is_a_warning_and_is_cancelled(tmp_path, slurm_conf, monkeypatch):
    """Held in the queue for real (--begin an hour from now): after the
    (shortened) wait the row says unknown, the job is cancelled, nothing is
    cached and no scratch file is left; the token never reached the job."""
    monkeypatch.setenv("HF_TOKEN", CANARY)  # exported by the user; the runner strips it
    runner = LocalRunner(extra_env={"SLURM_CONF": slurm_conf})
    plan = demo_plan(tmp_path)
    [row] = check_network(Project(plan.project_home, runner=runner), resolve(plan), probe=True, wait=3,
                          sbatch_args=["--begin=now+1hour"])
    assert row.level is Level.WARN, row
    assert row.message.startswith("unknown (probe pending): job "), row.message
    assert "still pending after 3 s in partition cpu; cancelled" in row.message
    assert "hpcwizard check --probe PLAN" in row.fix and "download: login" in row.fix
    job_id = re.search(r"job (\d+)", row.message).group(1)
    assert probe_jobs(plan.state_dir) == [job_id]
    state = subprocess.run(["squeue", "--noheader", "-t", "all", "-j", job_id, "-o", "%T"],
                           capture_output=True, text=True, check=True).stdout.strip()
    assert state == "CANCELLED"
    assert not (plan.state_dir / netprobe.CACHE_FILE).exists()
    assert scratch_left(plan.state_dir) == []
    assert CANARY not in job_environment(job_id)


def test_giving_up_on_the_wait_cancels_the_probe(tmp_path, slurm_conf):
    """The wizard quitting mid-preflight cancels its worker: the probe stops
    waiting at once, and its job and scratch files go with it."""
    runner = LocalRunner(extra_env={"SLURM_CONF": slurm_conf})
    plan = demo_plan(tmp_path)
    asked: list[float] = []

    def cancelled() -> bool:
        asked.append(time.monotonic())
        return len(asked) > 2  # the user quits while the probe waits in the queue

    started = time.monotonic()
    assert check_network(Project(plan.project_home, runner=runner), resolve(plan), probe=True, wait=120,
                         sbatch_args=["--begin=now+1hour"], cancelled=cancelled) == []
    assert time.monotonic() - started < 60
    [job_id] = probe_jobs(plan.state_dir)
    state = subprocess.run(["squeue", "--noheader", "-t", "all", "-j", job_id, "-o", "%T"],
                           capture_output=True, text=True, check=True).stdout.strip()
    assert state == "CANCELLED"
    assert scratch_left(plan.state_dir) == [] and not (plan.state_dir / netprobe.CACHE_FILE).exists()


def test_the_probe_runs_from_the_login_node_in_remote_mode(tmp_path, conn, monkeypatch):  # noqa: F811
    """Over SSH: sbatch, squeue and the index lookup run on the login node,
    the script, result and cache are written and read there over SFTP."""
    from hpcwizard.project.files import SshFiles
    from hpcwizard.remote import SshRunner

    with DevHub(tmp_path / "hub") as served:
        url = served.url
        monkeypatch.setenv("HF_ENDPOINT", url)
        files = SshFiles(conn)
        written: list[str] = []
        original = SshFiles.write_text_atomic

        def spy(self, path, *args, **kwargs):
            written.append(str(path))
            return original(self, path, *args, **kwargs)

        monkeypatch.setattr(SshFiles, "write_text_atomic", spy)
        plan = demo_plan(tmp_path)
        [row] = check_network(Project(plan.project_home, files, SshRunner(conn)), resolve(plan),
                              hpcwizard_cmd=[sys.executable, "-m", "hpcwizard"])
    assert row.level is Level.OK, row
    assert row.message.startswith(f"compute nodes of partition cpu reach the Hugging Face endpoint {url}")
    assert str(plan.state_dir / netprobe.CACHE_FILE) in written
    assert any(Path(p).name.startswith(".netprobe-") and p.endswith(".sh") for p in written)
    [job_id] = probe_jobs(plan.state_dir)
    cached = netprobe.load_cache(Project(plan.project_home, files))
    assert cached["hpcwizard-local/cpu"].job_id == job_id
    assert scratch_left(plan.state_dir) == []


def test_the_probe_script_quotes_every_value_and_passes_shellcheck(tmp_path):
    plan = demo_plan(tmp_path, account="acct_1", qos="normal")
    python = "/opt/my env/$(touch pwned)/bin/python3"
    result = str(tmp_path / "a b" / "it's" / "result.json")
    targets = (netprobe.Target(TargetKind.HUB, "http://127.0.0.1:1/$(x)"),
               netprobe.Target(TargetKind.INDEX, "https://pypi.org/simple"),
               netprobe.Target(TargetKind.CODE, "https://github.com"))
    script = netprobe.render_probe_script(plan, python, result, targets)
    path = tmp_path / "probe.sh"
    path.write_text(script)
    assert shutil.which("shellcheck")
    # Hostile values only draw SC2016 ("does not expand in single quotes": the point).
    checked = subprocess.run(["shellcheck", "-S", "warning", str(path)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout
    plain = tmp_path / "plain.sh"
    plain.write_text(netprobe.render_probe_script(plan, "/usr/bin/python3", str(tmp_path / "r.json"), targets[1:]))
    checked = subprocess.run(["shellcheck", "-S", "style", str(plain)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout
    for directive in ("--job-name=hpcwizard-netprobe", "--partition=cpu", "--account=acct_1", "--qos=normal",
                      "--cpus-per-task=1", "--mem=256M", "--time=00:02:00"):
        assert f"#SBATCH {directive}\n" in script
    assert "unset HF_TOKEN HUGGING_FACE_HUB_TOKEN" in script
    # What bash would run: exactly these words, nothing expanded.
    printed = "printf '%s\\0' " + script.split("\nexec ", 1)[1]
    words = subprocess.run(["bash", "-c", printed], capture_output=True, text=True, check=True,
                           cwd=tmp_path).stdout.split("\0")[:-1]
    assert words[0] == python and words[2] == netprobe.PROBE_CODE and words[3] == result
    assert words[5:] == ["hub", "http://127.0.0.1:1/$(x)", "index", "https://pypi.org/simple",
                         "code", "https://github.com"]
    assert not (tmp_path / "pwned").exists()


def test_the_index_is_the_one_pip_would_use_without_its_credentials(tmp_path, monkeypatch):
    monkeypatch.delenv("PIP_INDEX_URL", raising=False)
    config = tmp_path / "pip.conf"
    config.write_text("[global]\nindex-url = https://mirror.example.org/pypi/simple/\n")
    runner = LocalRunner(extra_env={"PIP_CONFIG_FILE": str(config)})
    assert netprobe.index_url(runner, sys.executable) == "https://mirror.example.org/pypi/simple"
    runner = LocalRunner(extra_env={"PIP_CONFIG_FILE": str(config),
                                    "PIP_INDEX_URL": "https://user:s3cret@pypi.example.org:8443/simple/"})
    assert netprobe.index_url(runner, sys.executable) == "https://pypi.example.org:8443/simple"
    assert netprobe.index_url(LocalRunner(extra_env={"PIP_CONFIG_FILE": os.devnull}), sys.executable) == \
        "https://pypi.org/simple"


def test_one_lookup_gives_every_index_pip_would_use_main_first(tmp_path, monkeypatch):
    """The pins check asks every index pip would use; the probe tries the main one."""
    from hpcwizard.prepare.pins import pip_indexes

    for name in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL"):
        monkeypatch.delenv(name, raising=False)
    config = tmp_path / "pip.conf"
    config.write_text("[global]\nindex-url = https://mirror.example.org/pypi/simple/\n"
                      "extra-index-url = https://extra.example.org/simple file:///opt/wheels\n")
    runner = LocalRunner(extra_env={"PIP_CONFIG_FILE": str(config)})
    assert pip_indexes(runner) == ["https://mirror.example.org/pypi/simple", "https://extra.example.org/simple"]
    runner = LocalRunner(extra_env={"PIP_CONFIG_FILE": str(config), "PIP_INDEX_URL": "https://env.example.org/simple",
                                    "PIP_EXTRA_INDEX_URL": "https://more.example.org/simple"})
    assert pip_indexes(runner)[:2] == ["https://env.example.org/simple", "https://more.example.org/simple"]
    # A file index cannot be asked: PyPI is not put in its place, nothing is.
    assert pip_indexes(LocalRunner(extra_env={"PIP_CONFIG_FILE": os.devnull,
                                              "PIP_INDEX_URL": "file:///opt/pypi/simple"})) == []


# --- the wizard's folders step ------------------------------------------------------------

# The fixtures of tests/test_wizard.py (imported by name, not its tests).
anyio_backend = tw.anyio_backend
_no_animations = tw._no_animations
hub = tw.hub
home = tw.home
make = tw.make


def offline_result(cluster: str, partition: str = "cpu") -> ProbeResult:
    return ProbeResult(cluster, partition, "2026-01-02T03:04:05+00:00", "1", "node1", (
        TargetResult(TargetKind.HUB, "https://huggingface.co", False, "[Errno 101] Network is unreachable"),
        TargetResult(TargetKind.INDEX, "https://pypi.org/simple", False, "[Errno 101] Network is unreachable"),
        TargetResult(TargetKind.CODE, "https://github.com", False, "[Errno 101] Network is unreachable")))


@pytest.mark.anyio
@pytest.mark.timeout(180)
async def test_folders_step_preselects_login_when_the_cached_probe_says_offline(make, home, slurm_runner):
    """A cached probe of this cluster's setup partition says offline: the
    folders step opens on 'prepare on the login node'; the user can still choose
    the setup job."""
    plan = tw.demo_plan(home)
    netprobe.save_result(Project(home), offline_result(netprobe.cluster_name(slurm_runner)))
    tw.saved_at(home, "paths", plan)
    app = make(home)
    async with app.run_test(size=tw.SIZE) as pilot:
        await tw.resume(pilot, "paths")
        radios = app.screen.query_one("#paths-download")
        await pilot_wait_for(pilot, lambda: radios.pressed_index == 1, 30, "login preselected")
        note = app.screen.query_one("#paths-netprobe").render().plain
        assert "Compute nodes of partition cpu cannot reach the Hugging Face endpoint https://huggingface.co" in note
        assert "(probed 2026-01-02 03:04)" in note
        radios.query("RadioButton").first().value = True  # the user's own choice stays
        await pilot_wait_for(pilot, lambda: radios.pressed_index == 0, 10, "job chosen again")
        await pilot.pause(0.3)
        assert radios.pressed_index == 0


@pytest.mark.anyio
@pytest.mark.timeout(180)
async def test_folders_step_keeps_the_choice_for_another_cluster_or_partition(make, home, slurm_runner):
    plan = tw.demo_plan(home)
    netprobe.save_result(Project(home), offline_result("some-other-cluster"))
    # This cluster, another partition (not the plan's setup partition).
    netprobe.save_result(Project(home), offline_result(netprobe.cluster_name(slurm_runner), "gpu"))
    tw.saved_at(home, "paths", plan)
    app = make(home)
    async with app.run_test(size=tw.SIZE) as pilot:
        await tw.resume(pilot, "paths")
        await pilot_wait_for(pilot, lambda: app.screen.network_read, 30, "the cache read")
        await pilot.pause(0.2)
        assert app.screen.query_one("#paths-download").pressed_index == 0
        assert not app.screen.query("#paths-netprobe")

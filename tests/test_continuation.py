"""Train jobs that continue across their time limit, on the real local cluster.

Two demo chains run side by side (submitted through the CLI, set up from the
local Hub-protocol server):

- a training needing several times what a 2-minute train job can do: it is
  warned (USR1) before each limit, saves, requeues itself and resumes until it
  COMPLETES, with the final weights at the last step of stage 2, every
  segment's separator line in one log, and a job waiting on it (afterok) run
  only after the final segment;
- a training whose trainer has no signal handler and whose first checkpoint
  is far away: its first segment saves nothing, so the continuation stops with
  its reason line and the job fails, with no second segment;
- on a cluster that does not requeue (the check's stored answer says so), a
  training continues as a follow-on job appending to the same log, and a job
  waiting on the first one is re-linked to it.

The chains are submitted long, stuck, follow-on: on the 2-CPU node the long
training always finds a free CPU when its requeue wait ends, so the overhead
it prints is that of an idle cluster.

Slurm's facts that set the numbers (measured on 22.05): the warning comes when
the time left is at most lead + 30 s (Slurm's timer runs every 30 s), so a
2-minute segment trains ~65-95 s with the demo's 25-s lead; a requeued job may
start again only AuthInfo's cred_expire + 1 s later (Slurm's default 121 s;
scripts/local-slurm sets 20) and at the next scheduler pass (sched_interval:
default 60 s, 5 here). The timeouts below follow the running cluster's own
settings, so an older local cluster is slower, not failing. The overhead per
segment (from the warning to the next segment running) is printed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from hpcwizard.checks.preflight import check_continuation
from hpcwizard.demo import build_demo_hub, write_token_file
from hpcwizard.devhub import DevHub
from hpcwizard.jobs import continuation as contract
from hpcwizard.jobs.continuation import (
    describe,
    plan_continuation,
    read_segment_state,
    save_site_answer,
    segments_text,
)
from hpcwizard.jobs.status import signal_lead, take_snapshot
from hpcwizard.jobs.triage import SegmentEvent, parse_segment_line
from hpcwizard.project.home import Project
from hpcwizard.project.plan import plan_from_dict
from hpcwizard.project.recipe import get_recipe
from hpcwizard.project.render import render
from hpcwizard.project.resolved import resolve
from hpcwizard.shell import LocalRunner
from hpcwizard.slurm import JobState, SlurmClient

TOKEN = "hf_demo_continuation_0001"
LIMIT = "2"  # minutes: the train job's time limit
# The long training: 2 stages x 40 steps x 3 s = 240 s of steps, twice the
# limit and ~3 times what one segment trains (3-4 segments).
LONG = {"max_train_steps": 40, "seconds_per_step": 3.0, "checkpointing_steps": 5, "checkpoints_total_limit": 2}
# The stuck one: the first checkpoint at step 200, ~65-95 steps per segment,
# and no signal handler (the warning ends the trainer unsaved).
STUCK = {"max_train_steps": 200, "seconds_per_step": 1.0, "checkpointing_steps": 1000,
         "signal_handling": False}
# Follow-on jobs: 2 stages x 20 steps x 3 s = 120 s, more than one 2-minute segment trains.
FOLLOW = {"max_train_steps": 20, "seconds_per_step": 3.0, "checkpointing_steps": 5, "checkpoints_total_limit": 2}


# ---------------------------------------------------------------- without the cluster


def _plan(name: str, tmp_path: Path, **train):
    recipe = get_recipe(name)
    plan = recipe.default_plan(tmp_path / "p", hf_namespace="alice")
    data = plan.to_dict()
    data["train"] = {**data["train"], **train}
    return plan_from_dict(data), recipe


def test_the_log_contract_lines_parse_back_with_the_dashboards_parser():
    """The separator lines continuation.py documents (and continuation.j2
    prints) are what the dashboard's one parser reads."""
    lines = {
        contract.STARTING.format(segment=1, expected=4): (1, 4, SegmentEvent.STARTED, None),
        contract.RESUMED.format(segment=2, expected=4, checkpoint="checkpoint-1400"):
            (2, 4, SegmentEvent.RESUMED, "checkpoint-1400"),
        contract.REQUEUED.format(segment=2, checkpoint="checkpoint-2800"):
            (2, None, SegmentEvent.REQUEUED, "checkpoint-2800"),
        contract.NO_PROGRESS.format(segment=3, checkpoint="checkpoint-2800"):
            (3, None, SegmentEvent.STOPPED, "checkpoint-2800"),
        contract.NO_PROGRESS.format(segment=1, checkpoint="no checkpoint"): (1, None, SegmentEvent.STOPPED, None),
        contract.AT_BOUND.format(segment=5, maximum=5): (5, None, SegmentEvent.STOPPED, None),
        contract.FINISHED.format(segment=3) + "\n": (3, None, SegmentEvent.FINISHED, None),
    }
    for line, expected in lines.items():
        mark = parse_segment_line(line)
        assert mark is not None, line
        assert (mark.segment, mark.of, mark.event, mark.checkpoint) == expected, line
    assert parse_segment_line("[2026-01-01 00:00:00] segment 1 of ~4, starting") is None
    assert parse_segment_line(contract.REQUEUED.format(segment=2, checkpoint="checkpoint-7")).waiting_for_next


def _separators(text: str):
    """The separator lines of a train log, as the dashboard reads them."""
    return [m for m in map(parse_segment_line, text.splitlines()) if m is not None]


def test_a_long_real_training_is_planned_in_segments_with_a_lead_from_its_checkpoint_interval(tmp_path):
    plan, recipe = _plan("fff-vdi", tmp_path)  # 100000 steps, a checkpoint every 1000, 48 h
    cont = plan_continuation(resolve(plan, recipe), rate=0.5)  # 2 s a step, as an earlier run logged
    assert cont.training_seconds == 200_000 and cont.step_source == "measured"
    # it waits for the next checkpoint (1000 steps, 2000 s, + 300 s to save) before stopping the trainer
    assert cont.checkpoint_wait == 2300 and cont.stop_wait == 304
    assert cont.lead == 2300 + 304 + 15
    assert (cont.expected_segments, cont.max_segments, cont.requeue) == (2, 3, True)
    assert segments_text(cont) == "~2 segments of 48h"
    assert describe(cont).startswith("training ≈ 55h 34m: ~2 segments of 48h, continued by requeue; "
                                     "at most 3 (train.segments: auto); Slurm warns 43m 39s before each limit")
    assert not cont.concerns
    # Without a measured rate: stopped at the warning (work since its last checkpoint is lost).
    unknown = plan_continuation(resolve(plan, recipe))
    assert (unknown.checkpoint_wait, unknown.lead, unknown.max_segments, unknown.expected_segments) == (0, 375, 10, None)
    assert "training time not known until a first run logs its rate" in describe(unknown)


def test_a_checkpoint_interval_longer_than_the_warning_allows_is_a_concern(tmp_path):
    plan, recipe = _plan("fff-vdi", tmp_path, time="02:00:00")
    cont = plan_continuation(resolve(plan, recipe), rate=0.05)  # 20 s a step: a checkpoint every 5.5 h
    assert cont.lead == 1800  # a quarter of the limit at most
    assert cont.checkpoint_wait == 1800 - cont.stop_wait - 15
    assert any("each segment may lose up to one checkpoint interval" in c for c in cont.concerns)


def test_segments_bound_and_one_segment_means_no_continuation(tmp_path):
    plan, recipe = _plan("fff-vdi", tmp_path, segments=1)
    cont = plan_continuation(resolve(plan, recipe), rate=0.5)
    assert not cont.enabled and "one segment (train.segments: 1)" in describe(cont)
    script = render(Project(plan.project_home), resolve(plan, recipe), tmp_path / "out", continuation=cont).files[-1].text
    assert "#SBATCH --signal" not in script and "#SBATCH --requeue" not in script and "C_ENABLED=0" in script
    few, _ = _plan("fff-vdi", tmp_path, segments=1 + 1)
    short = plan_continuation(resolve(few, recipe), rate=0.1)  # ~12 segments needed
    assert short.max_segments == 2 and any("train.segments allows 2" in c for c in short.concerns)


def test_train_scripts_ask_for_the_warning_and_requeue_or_follow_on(tmp_path):
    for name in ("demo", "fff-vdi", "diffueraser"):
        plan, recipe = _plan(name, tmp_path / name)
        plan = plan_from_dict({**plan.to_dict(), "notify": {"mail": "alice@example.org"}})
        cont = plan_continuation(resolve(plan, recipe))
        files = {f.name: f.text for f in render(Project(plan.project_home), resolve(plan, recipe), tmp_path / name / "out", continuation=cont).files}
        train, setup = files["02_train.sbatch"], files["01_setup.sbatch"]
        assert f"#SBATCH --signal=B:USR1@{cont.lead}\n#SBATCH --requeue\n" in train
        assert "--signal" not in setup and "--requeue" not in setup
        assert signal_lead(train) == cont.lead and signal_lead(setup) is None  # what the dashboard reads back
        for script in (train, setup):  # mail for the end, a failure and a requeue, on every job
            assert "#SBATCH --mail-type=END,FAIL,REQUEUE\n#SBATCH --mail-user=alice@example.org\n" in script
        assert "c_train " in train and "\nc_begin\n" in train
        follow = render(Project(plan.project_home), resolve(plan, recipe), tmp_path / name / "out2", continuation=replace(cont, requeue=False)).files[-1]
        assert "#SBATCH --signal=B:USR1@" in follow.text and "#SBATCH --requeue" not in follow.text
        assert "C_REQUEUE=0" in follow.text


def test_the_check_stores_whether_the_cluster_requeues(tmp_path, slurm_runner):
    plan, recipe = _plan("demo", tmp_path, time="2")
    rows = check_continuation(Project(plan.project_home, runner=slurm_runner), resolve(plan, recipe))
    assert [(r.name, r.level.value) for r in rows] == [("train continuation", "ok"), ("train cost", "ok")]
    assert "continued by requeue" in rows[0].message or "would continue by requeue" in rows[0].message
    assert json.loads((plan.state_dir / "continuation" / "requeue.json").read_text())["requeue"] is True
    # A site that does not requeue: the stored answer switches render to follow-on jobs.
    save_site_answer(Project(plan.project_home), False, "JobRequeue=0 in the cluster's configuration")
    assert render(Project(plan.project_home), resolve(plan, recipe), tmp_path / "out").files[-1].text.count("#SBATCH --requeue") == 0


# ---------------------------------------------------------------- on the cluster


def _cluster_settings(runner: LocalRunner) -> tuple[int, int]:
    """(seconds a requeued job waits before it may start, seconds between scheduler passes)."""
    config = runner.run(["scontrol", "show", "config"], timeout=30).stdout
    cred = re.search(r"cred_expire=(\d+)", config)
    sched = re.search(r"sched_interval=(\d+)", config)
    return (int(cred.group(1)) if cred else 120) + 1, int(sched.group(1)) if sched else 60


@dataclass
class Chain:
    home: Path
    plan_file: Path
    setup_id: str
    train_id: str
    train_name: str

    @property
    def log(self) -> Path:
        return self.home / "logs" / f"{self.train_name}-{self.train_id}.out"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def _submit(env: dict[str, str], home: Path, data_root: Path, params: dict, plan_file: Path,
            requeue: bool = True) -> Chain:
    recipe = get_recipe("demo")
    plan = recipe.default_plan(home, data_root, hf_namespace="alice")
    data = plan.to_dict()
    data["train"] = {**data["train"], "time": LIMIT}
    data["params"] = params
    plan = plan_from_dict(data)
    plan_file.write_text(plan.to_yaml())
    if not requeue:
        # What `hpcwizard check` stores on a cluster that does not requeue.
        save_site_answer(Project(plan.project_home), False, "JobRequeue=0 in the cluster's configuration")
    done = subprocess.run([sys.executable, "-m", "hpcwizard", "submit", str(plan_file), "--json"],
                          env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    jobs = {j["name"]: j for j in json.loads(done.stdout)["jobs"]}
    return Chain(home, plan_file, jobs["setup"]["id"], jobs["train"]["id"], jobs["train"]["slurm_name"])


@dataclass
class Chains:
    long: Chain
    stuck: Chain
    follow: Chain
    dependent_id: str  # waits for long's train job (afterok)
    dependent_stamp: Path
    follow_dependent_id: str  # waits for follow's first train job (afterok), re-linked to the follow-on
    follow_dependent_stamp: Path
    requeue_wait: int
    sched_interval: int


@pytest.fixture(scope="module")
def chains(tmp_path_factory, slurm_conf) -> Chains:
    root = tmp_path_factory.mktemp("continuation")
    build_demo_hub(root / "hub", user="alice", token=TOKEN)
    write_token_file(root / "hf-home", TOKEN)
    runner = LocalRunner(extra_env={"SLURM_CONF": slurm_conf})
    slurm = SlurmClient(runner)
    requeue_wait, sched_interval = _cluster_settings(runner)
    ids: list[str] = []
    follow: Chain | None = None
    with DevHub(root / "hub") as hub:
        env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
        env.update(HF_ENDPOINT=hub.url, HF_HOME=str(root / "hf-home"), SLURM_CONF=slurm_conf)
        try:
            long = _submit(env, root / "long", root / "long-data", LONG, root / "long.yaml")
            ids += [long.setup_id, long.train_id]
            stuck = _submit(env, root / "stuck", root / "stuck-data", STUCK, root / "stuck.yaml")
            ids += [stuck.setup_id, stuck.train_id]
            follow = _submit(env, root / "follow", root / "follow-data", FOLLOW, root / "follow.yaml", requeue=False)
            ids += [follow.setup_id, follow.train_id]
            # Jobs of the user's own that wait for a training (afterok).
            stamp, follow_stamp = root / "dependent-ran", root / "follow-dependent-ran"
            dependent = _sbatch_after(env, long.train_id, stamp)
            follow_dependent = _sbatch_after(env, follow.train_id, follow_stamp)
            ids += [dependent, follow_dependent]
            # The setup jobs fetch from the hub: it serves until they are done.
            setups = [long.setup_id, stuck.setup_id, follow.setup_id]
            _wait(slurm, setups, lambda s: all(x.is_finished for x in s.values()), "the setup jobs", 420)
            yield Chains(long, stuck, follow, dependent, stamp, follow_dependent, follow_stamp,
                         requeue_wait, sched_interval)
        finally:
            # and the follow-on jobs the follow chain submitted itself
            later = read_segment_state(project_of(follow.plan_file), follow.train_name) if follow else None
            slurm.cancel(ids + list(later.job_ids if later else ()))


def _sbatch_after(env: dict[str, str], job_id: str, stamp: Path) -> str:
    return subprocess.run(
        ["sbatch", "--parsable", f"--dependency=afterok:{job_id}", "--time=1", "--mem=64M",
         f"--output={stamp}.out", f"--wrap=date +%s > {stamp}"],
        env=env, capture_output=True, text=True, timeout=60, check=True).stdout.strip()


def _states(slurm: SlurmClient, ids: list[str]) -> dict[str, JobState]:
    states = {e.job_id: e.state for e in slurm.queue(ids)}
    missing = [i for i in ids if i not in states]
    if missing:
        states.update({f.job_id: f.state for f in slurm.finished(missing)})
    return states


def _wait(slurm: SlurmClient, ids: list[str], done, what: str, timeout: float) -> dict[str, JobState]:
    deadline = time.monotonic() + timeout
    states: dict[str, JobState] = {}
    while time.monotonic() < deadline:
        states = _states(slurm, ids)
        if len(states) == len(ids) and done(states):
            return states
        time.sleep(1.0)
    raise AssertionError(f"{what} not done within {timeout:.0f} s: {states}")


def _log_times(text: str, message: str) -> list[datetime]:
    """Times of the log() lines containing ``message``."""
    times = []
    for line in text.splitlines():
        match = re.match(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\] (.*)$", line)
        if match and message in match.group(2):
            times.append(datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S"))
    return times


def test_a_segment_that_saves_nothing_stops_the_continuation(chains: Chains, slurm_runner):
    chain = chains.stuck
    slurm = SlurmClient(slurm_runner)
    states = _wait(slurm, [chain.train_id], lambda s: s[chain.train_id].is_finished,
                   "the stuck training", 120 + chains.requeue_wait + chains.sched_interval + 120)
    text = chain.log_text()
    assert states[chain.train_id] is JobState.FAILED, text
    events = _separators(text)
    assert [(e.event, e.segment) for e in events] == [(SegmentEvent.STARTED, 1), (SegmentEvent.STOPPED, 1)], text
    assert "[hpcwizard] segment 1 saved no new checkpoint (still no checkpoint): not continuing" in text
    # Nothing loops: never requeued (one start in the log), and the job stays failed.
    assert text.count(f"job {chain.train_id} (") == 1
    restarts = re.search(r"Restarts=(\d+)", slurm_runner.run(["scontrol", "show", "job", chain.train_id]).stdout)
    assert restarts is None or restarts.group(1) == "0"  # None: Slurm forgot the job (MinJobAge)
    state = read_segment_state(project_of(chain.plan_file), chain.train_name)
    assert state is not None and state.state == "stopped" and state.segment == 1
    assert not list((chain.home / "demo" / "stage1").glob("checkpoint-*"))


def test_a_training_longer_than_its_limit_completes_by_itself(chains: Chains, slurm_runner):
    chain = chains.long
    slurm = SlurmClient(slurm_runner)
    # Each segment: up to the 2-minute limit, the requeue wait, a scheduler pass, the start.
    per_segment = 120 + chains.requeue_wait + chains.sched_interval + 30
    states = _wait(slurm, [chain.train_id], lambda s: s[chain.train_id].is_finished,
                   "the long training", 6 * per_segment)
    text = chain.log_text()
    err = (chain.home / "logs" / f"{chain.train_name}-{chain.train_id}.err")
    assert states[chain.train_id] is JobState.COMPLETED, text + (err.read_text() if err.exists() else "")

    # The final weights are those of stage 2's last step.
    weights = json.loads((chain.home / "demo" / "converted_weights" / "weights.json").read_text())
    assert (weights["stage"], weights["step"]) == (2, LONG["max_train_steps"])

    # One log, every segment's separator line, in order, each resumed one from
    # the checkpoint the one before stopped at.
    events = _separators(text)
    kinds = [e.event for e in events]
    segments = sum(1 for e in events if e.event in (SegmentEvent.STARTED, SegmentEvent.RESUMED))
    assert segments >= 3, text
    assert kinds[0] is SegmentEvent.STARTED and kinds[-1] is SegmentEvent.FINISHED, kinds
    assert kinds[1:-1] == [SegmentEvent.REQUEUED, SegmentEvent.RESUMED] * (segments - 1), kinds
    for n, (stop, resume) in enumerate(zip(events[1:-1:2], events[2:-1:2]), start=1):
        assert (stop.segment, resume.segment) == (n, n + 1)
        assert stop.checkpoint == resume.checkpoint and stop.checkpoint is not None
    assert f"segment {segments} finished the training" in text
    assert "already trained and converted" in text  # a later segment skipped the finished stage 1
    restarts = re.search(r"Restarts=(\d+)", slurm_runner.run(["scontrol", "show", "job", chain.train_id]).stdout)
    assert restarts and int(restarts.group(1)) == segments - 1  # requeued: the same job id throughout
    state = read_segment_state(project_of(chain.plan_file), chain.train_name)
    assert state is not None and state.state == "done" and state.segment == segments
    assert state.job_ids == (chain.train_id,)

    # The job waiting on it (afterok) ran only after the final segment.
    dependent = _wait(slurm, [chains.dependent_id], lambda s: s[chains.dependent_id].is_finished,
                      "the dependent job", 60 + chains.sched_interval)
    assert dependent[chains.dependent_id] is JobState.COMPLETED
    ran_at = datetime.fromtimestamp(int(chains.dependent_stamp.read_text().strip()))
    finished_at = _log_times(text, "final weights in")[-1]
    assert ran_at >= finished_at

    # The overhead per segment: from the warning to the next segment running.
    warned = _log_times(text, "the time limit is near (USR1)")
    started = _log_times(text, f"job {chain.train_id} (")[1:]
    overheads = [(s - w).total_seconds() for w, s in zip(warned, started)]
    assert len(overheads) == segments - 1
    print(f"\ncontinuation: {segments} segments of {LIMIT} min; from the warning to the next segment running: "
          + ", ".join(f"{o:.0f} s" for o in overheads)
          + f" (requeued jobs wait {chains.requeue_wait} s; scheduler pass every {chains.sched_interval} s)")


def plan_from_file(path: Path):
    return plan_from_dict(yaml.safe_load(path.read_text()))


def project_of(plan_file: Path) -> Project:
    """The project of the plan in ``plan_file``."""
    return Project(plan_from_file(plan_file).project_home)


def test_without_requeue_a_follow_on_job_continues_and_dependents_wait_for_it(chains: Chains, slurm_runner):
    chain = chains.follow
    slurm = SlurmClient(slurm_runner)
    plan = plan_from_file(chain.plan_file)
    script = (next((chain.home / "hpcwizard" / "runs").iterdir()) / "02_train.sbatch").read_text()
    assert "#SBATCH --requeue" not in script and "#SBATCH --signal=B:USR1@" in script

    def finished(_states) -> bool:
        state = read_segment_state(Project(plan.project_home), chain.train_name)
        return state is not None and state.state in ("done", "stopped")

    per_segment = 120 + chains.sched_interval + 30
    _wait(slurm, [chain.train_id], finished, "the follow-on training", 5 * per_segment)
    state = read_segment_state(Project(plan.project_home), chain.train_name)
    assert state is not None
    text = chain.log_text()  # every segment appends to the first job's log
    assert state.state == "done", text
    jobs = list(state.job_ids)
    assert jobs[0] == chain.train_id and len(jobs) == state.segment >= 2
    states = _wait(slurm, jobs, lambda s: all(x.is_finished for x in s.values()), "the segments", 60)
    assert set(states.values()) == {JobState.COMPLETED}, states
    weights = json.loads((chain.home / "demo" / "converted_weights" / "weights.json").read_text())
    assert (weights["stage"], weights["step"]) == (2, FOLLOW["max_train_steps"])
    events = _separators(text)
    assert [e.segment for e in events if e.event is SegmentEvent.REQUEUED] == list(range(1, len(jobs)))
    assert events[-1].event is SegmentEvent.FINISHED and events[-1].segment == len(jobs)
    for job in jobs[1:]:
        assert f"follow-on job {job} continues the training" in text
        assert f"now waits for job {job}" in text
    assert "WARNING" not in text
    # The job that waited on the first segment was re-linked and ran after the last one.
    dependent = _wait(slurm, [chains.follow_dependent_id], lambda s: s[chains.follow_dependent_id].is_finished,
                      "the re-linked dependent job", 60 + chains.sched_interval)
    assert dependent[chains.follow_dependent_id] is JobState.COMPLETED
    ran_at = datetime.fromtimestamp(int(chains.follow_dependent_stamp.read_text().strip()))
    assert ran_at >= _log_times(text, "final weights in")[-1]

    # The status shows every segment's job, each a continuation of the first
    # (found from the bookkeeping, also once a follow-on left the queue), and
    # the first job points to the last: its end is the training's.
    rows = {row.job_id: row for row in take_snapshot(Project(chain.home, runner=slurm_runner)).jobs}
    assert set(jobs) <= set(rows), rows
    assert all(rows[job].continues == jobs[0] and rows[job].name == "train" for job in jobs[1:])
    assert rows[jobs[0]].continued_by == jobs[-1] and rows[jobs[-1]].state is JobState.COMPLETED
    assert all(rows[job].log_out == rows[jobs[0]].log_out for job in jobs)
    warned = _log_times(text, "the time limit is near (USR1)")
    started = [t for job in jobs[1:] for t in _log_times(text, f"job {job} (")]
    print(f"\nfollow-on jobs: {len(jobs)} segments; from the warning to the next segment running: "
          + ", ".join(f"{(s - w).total_seconds():.0f} s" for w, s in zip(warned, started)))

"""Submission is all-or-nothing for real: a submit killed, timed out or cut
off from the controller at any point leaves, once hpcwizard runs again,
exactly one chain and no held job; a failed cleanup is said truthfully and
finished on the next start; a refused submit creates nothing.

Everything runs against the real local Slurm cluster. Faults are injected
with PATH wrappers around the real ``sbatch``/``scontrol``/``scancel`` (a
wrapper can stop at a gate until the test kills hpcwizard, pass through,
hang after the real command, or answer as an unreachable controller), with
``kill -9`` of a ``hpcwizard submit`` process held at such a gate, and by
stopping the controller of a private cluster (never the shared one).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers import wait_for
from hpcwizard.demo import write_token_file
from hpcwizard.jobs import submit as submit_module
from hpcwizard.jobs.journal import JOURNAL_FILE, Journal, Phase, load_journal, write_journal
from hpcwizard.jobs.submit import ChainRefused, submit_chain
from hpcwizard.project.home import Project as HomeProject
from hpcwizard.project.recipe import get_recipe
from hpcwizard.project.resolved import resolve
from hpcwizard.project.state import load_state
from hpcwizard.shell import LocalRunner
from hpcwizard.slurm import SlurmClient

LOCAL_SLURM = Path(__file__).resolve().parent.parent / "scripts" / "local-slurm"
SEP = "\x1f"
DOWN = "Unable to contact slurm controller (connect failure)"

# --- fault injection ---------------------------------------------------------

WRAPPER = r"""#!/usr/bin/env bash
# Fault injection around the real {name}. Counted calls (sbatch: not
# --test-only; scontrol: release only; scancel: all) read what to do from
# $ctl/{name}.N: pass, before (stop at the gate, then run), after (run,
# then stop at the gate before answering), hang-after (run, never answer),
# down (answer as an unreachable controller).
real={real}
ctl={ctl}
{passthrough}
n=$(( $(cat "$ctl/{name}.count" 2>/dev/null || echo 0) + 1 ))
echo "$n" >"$ctl/{name}.count"
mode=$(cat "$ctl/{name}.$n" 2>/dev/null || echo pass)
gate() {{
    echo $$ >"$ctl/{name}.$n.pid.tmp" && mv "$ctl/{name}.$n.pid.tmp" "$ctl/{name}.$n.pid"
    while [ ! -e "$ctl/go" ]; do sleep 0.05; done
}}
case $mode in
    before) gate; exec "$real" "$@" ;;
    after)
        out=$("$real" "$@"); rc=$?
        printf '%s\n' "$out" >"$ctl/{name}.$n.out"
        gate
        printf '%s\n' "$out"; exit $rc ;;
    hang-after)
        "$real" "$@" >"$ctl/{name}.$n.out.tmp"; mv "$ctl/{name}.$n.out.tmp" "$ctl/{name}.$n.out"
        exec sleep 600 ;;
    down) echo "{name}: error: {down}" >&2; exit 1 ;;
    *) exec "$real" "$@" ;;
esac
"""

PASSTHROUGH = {
    "sbatch": 'case " $* " in *" --test-only "*) exec "$real" "$@" ;; esac',
    "scontrol": '[ "${1:-}" = release ] || exec "$real" "$@"',
    "scancel": "",
    "squeue": "",
}


class Faults:
    """Wrappers for sbatch, scontrol and scancel in ``bin``, steered through ``ctl``."""

    def __init__(self, root: Path) -> None:
        self.bin = root / "bin"
        self.ctl = root / "ctl"
        self.bin.mkdir(parents=True)
        self.ctl.mkdir()
        for name, passthrough in PASSTHROUGH.items():
            real = shutil.which(name)
            assert real, f"{name} is not installed"
            path = self.bin / name
            path.write_text(WRAPPER.format(name=name, real=real, ctl=self.ctl, passthrough=passthrough, down=DOWN))
            path.chmod(0o755)

    def set(self, name: str, call: int, mode: str) -> None:
        (self.ctl / f"{name}.{call}").write_text(mode)

    def reset(self) -> None:
        for path in self.ctl.iterdir():
            path.unlink()

    def gate_pid(self, name: str, call: int, process: subprocess.Popen | None = None) -> int:
        """Wait until call ``call`` of ``name`` stands at its gate; its pid."""
        pidfile = self.ctl / f"{name}.{call}.pid"

        def reached():
            if process is not None and process.poll() is not None:
                pytest.fail(f"hpcwizard ended before {name} call {call} reached its gate: "
                            f"{process.returncode} {process.stderr.read() if process.stderr else ''}")
            return pidfile.exists() and int(pidfile.read_text())

        return wait_for(f"{name} call {call} at its gate", reached, timeout=60, interval=0.05)

    def open_gates(self) -> None:
        (self.ctl / "go").touch()

    def output(self, name: str, call: int) -> str:
        return wait_for(f"{name} call {call}'s output", lambda: (self.ctl / f"{name}.{call}.out").exists()
                        and (self.ctl / f"{name}.{call}.out").read_text().strip(), timeout=60)

    def path(self) -> str:
        return f"{self.bin}{os.pathsep}{os.environ['PATH']}"


@pytest.fixture
def faults(tmp_path: Path) -> Faults:
    return Faults(tmp_path / "faults")


def gone(pid: int) -> bool:
    """The process ended (a zombie nobody reaped yet counts: it runs nothing)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            stat = handle.read()
    except OSError:  # vanished, possibly between open and read
        return True
    return stat.rsplit(")", 1)[-1].split()[:1] in (["Z"], ["X"], [])


# --- the project, its jobs, and hpcwizard as a user runs it -------------------


@dataclass
class Project:
    plan_file: Path
    plan: object
    conf: str
    hf_home: Path

    @property
    def home(self) -> Path:
        return self.plan.project_home

    @property
    def core(self) -> HomeProject:
        """The project as hpcwizard's core takes it."""
        return HomeProject(self.home)

    def env(self, faults: Faults | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
        env.update(SLURM_CONF=self.conf, HF_HOME=str(self.hf_home))
        if faults is not None:
            env["PATH"] = faults.path()
        return env

    def start(self, *args: str, faults: Faults | None = None) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "hpcwizard", *args], env=self.env(faults),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def run(self, *args: str, faults: Faults | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "hpcwizard", *args], env=self.env(faults),
                              capture_output=True, text=True, timeout=timeout)

    def submit(self, *extra: str, faults: Faults | None = None) -> subprocess.CompletedProcess:
        return self.run("submit", str(self.plan_file), *extra, faults=faults)

    def jobs(self) -> list[QueuedRow]:
        """Every job of this project the controller remembers (by the plan's job-name prefix)."""
        out = subprocess.run(["squeue", "--noheader", "--me", "-t", "all", "-o", SEP.join(("%i", "%T", "%r", "%k", "%j"))],
                             env=self.env(), capture_output=True, text=True, timeout=60, check=True).stdout
        rows = [QueuedRow(*line.split(SEP, 4)) for line in out.splitlines() if line.strip()]
        return [row for row in rows if row.name.startswith(self.plan.job_prefix)]

    def job(self, job_id: str) -> QueuedRow | None:
        return next((row for row in self.jobs() if row.job_id == job_id), None)

    def cancel_all(self) -> None:
        ids = [row.job_id for row in self.jobs() if row.state not in FINISHED]
        if ids:
            subprocess.run(["scancel", *ids], env=self.env(), capture_output=True, timeout=60)

    def assert_one_chain(self) -> list[QueuedRow]:
        """Exactly one chain stands (the one the state records) and no job is held."""
        def settled():
            rows = self.jobs()
            # scancel of a running job takes a moment to show as CANCELLED.
            return rows if not [r for r in rows if r.state in ("COMPLETING", "CANCELLING")] else None

        rows = wait_for("the project's jobs to settle", settled, timeout=60)
        standing = [row for row in rows if row.state != "CANCELLED"]
        assert not [row for row in rows if row.held], rows
        assert len(standing) == 2 and len({row.comment for row in standing}) == 1, rows
        (submission,) = load_state(self.plan.state_dir).submissions
        assert sorted(submission.job_ids, key=int) == sorted((row.job_id for row in standing), key=int)
        assert standing[0].comment == f"hpcwizard:{submission.chain}"
        assert not (self.plan.state_dir / JOURNAL_FILE).exists()
        return standing


FINISHED = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED",
            "BOOT_FAIL", "DEADLINE")


@dataclass(frozen=True)
class QueuedRow:
    job_id: str
    state: str
    reason: str
    comment: str
    name: str

    @property
    def held(self) -> bool:
        return self.state == "PENDING" and self.reason.startswith("JobHeld")


def make_project(tmp_path: Path, conf: str, home: Path | None = None, **plan_overrides) -> Project:
    hf_home = tmp_path / "hf-home"
    write_token_file(hf_home, "hf_for_the_jobs")
    plan = get_recipe("demo").default_plan(home or tmp_path / "proj", hf_namespace="alice", **plan_overrides)
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text(plan.to_yaml())
    return Project(plan_file, plan, conf, hf_home)


@pytest.fixture
def project(tmp_path: Path, slurm_conf: str):
    made = make_project(tmp_path, slurm_conf)
    try:
        yield made
    finally:
        made.cancel_all()


def fault_runner(project: Project, faults: Faults) -> LocalRunner:
    return LocalRunner(extra_env={"SLURM_CONF": project.conf, "PATH": faults.path()})


# --- the children of hpcwizard -------------------------------------------------


def test_a_command_dies_with_hpcwizard(tmp_path):
    """kill -9 of hpcwizard takes the command it was waiting for along (PR_SET_PDEATHSIG)."""
    pidfile = tmp_path / "child.pid"
    code = ("import sys; from hpcwizard.shell import LocalRunner; "
            "LocalRunner().run(['sh', '-c', 'echo $$ >\"$0.tmp\" && mv \"$0.tmp\" \"$0\" && exec sleep 300', sys.argv[1]],"
            " timeout=600)")
    parent = subprocess.Popen([sys.executable, "-c", code, str(pidfile)])
    try:
        child = wait_for("the child", lambda: pidfile.exists() and int(pidfile.read_text()), timeout=60)
        assert not gone(child)
    finally:
        parent.kill()
        parent.wait()
    wait_for("the child to die with its parent", lambda: gone(child), timeout=30)


# --- kill -9 at every window of a submit ----------------------------------------

# (wrapper, call, gate): where the submit stands when it is killed, and what
# the next submit finds: held jobs it cancels, or a released chain it adopts.
WINDOWS = [
    pytest.param("sbatch", 1, "before", "nothing", 0, id="before-first-sbatch"),
    pytest.param("sbatch", 1, "after", "cancelled", 1, id="first-sbatch-accepted-id-unrecorded"),
    pytest.param("sbatch", 2, "before", "cancelled", 1, id="between-two-sbatch"),
    pytest.param("sbatch", 2, "after", "cancelled", 2, id="second-sbatch-accepted-id-unrecorded"),
    pytest.param("scontrol", 1, "before", "cancelled", 2, id="before-release"),
    pytest.param("scontrol", 1, "after", "adopted", 2, id="released-state-unwritten"),
]


@pytest.mark.parametrize(("command", "call", "gate", "outcome", "accepted"), WINDOWS)
def test_submit_killed_at_any_point_then_run_again_leaves_one_chain(project, faults, command, call, gate, outcome,
                                                                    accepted):
    faults.set(command, call, gate)
    first = project.start("submit", str(project.plan_file), faults=faults)
    try:
        child = faults.gate_pid(command, call, first)
    finally:
        first.kill()
        first.wait()
    # The sbatch/scontrol hpcwizard was waiting for dies with it.
    wait_for(f"{command} to die with hpcwizard", lambda: gone(child), timeout=30)
    journal = load_journal(project.core)
    assert journal is not None and journal.phase is (Phase.RELEASING if command == "scontrol" else Phase.SUBMITTING)
    left = [row for row in project.jobs() if row.state != "CANCELLED"]
    assert len(left) == accepted and all(row.comment == journal.comment for row in left), left

    again = project.submit()
    notes = again.stderr
    if outcome == "adopted":
        assert again.returncode == 2, notes
        assert "had released its chain: adopted jobs " in notes and "as its plan's submission" in notes
        assert "already submitted" in notes and "--force" in notes
        assert (load_state(project.plan.state_dir).submissions[0].chain == journal.chain)
    else:
        assert again.returncode == 0, notes
        if outcome == "nothing":
            assert "left no job in the queue: nothing to undo" in notes
        else:
            ids = sorted((row.job_id for row in left), key=int)
            said = f"job {ids[0]}" if len(ids) == 1 else f"jobs {', '.join(ids)}"
            assert f"left {said} (held, never released): cancelled" in notes, notes
            assert all(project.job(i).state == "CANCELLED" for i in ids)
        # The interrupted submit's run folder went with its jobs (unless the
        # new submit, in the same second, took its name again).
        if load_state(project.plan.state_dir).submissions[0].scripts_dir != journal.scripts_dir:
            assert not Path(journal.scripts_dir).exists()
    assert len([line for line in notes.splitlines() if "interrupted" in line]) == 1, notes
    project.assert_one_chain()


def test_ctrl_c_between_two_sbatch_undoes_the_submit_and_says_so(project, faults):
    faults.set("sbatch", 2, "before")
    first = project.start("submit", str(project.plan_file), faults=faults)
    try:
        child = faults.gate_pid("sbatch", 2, first)
        first.send_signal(signal.SIGINT)
        _, err = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 130, err
    wait_for("the sbatch to end with the submit", lambda: gone(child), timeout=30)
    (setup,) = [row.job_id for row in project.jobs()]
    assert f"the submit was interrupted; cancelled the accepted jobs {setup}" in err, err
    assert project.job(setup).state == "CANCELLED"
    assert not project.home.exists()


def test_a_submit_in_flight_is_left_alone_by_status(project, faults):
    """status reconciles only a submit nobody runs: one waiting between two
    sbatch calls keeps its held job and finishes normally."""
    faults.set("sbatch", 2, "before")
    first = project.start("submit", str(project.plan_file), "--json", faults=faults)
    try:
        faults.gate_pid("sbatch", 2, first)
        status = project.run("status", "--project-home", str(project.home), "--once", "--json")
        assert status.returncode == 0, status.stderr
        assert "interrupted" not in status.stderr
        json.loads(status.stdout)
        faults.open_gates()
        out, err = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 0, err
    assert [job["name"] for job in json.loads(out)["jobs"]] == ["setup", "train"]
    project.assert_one_chain()


def test_status_settles_a_first_submit_that_was_killed(project, faults):
    """A project whose only trace is the journal of a killed first submit is a
    project home for status, which cancels the held jobs and says so."""
    faults.set("sbatch", 2, "after")
    first = project.start("submit", str(project.plan_file), faults=faults)
    try:
        faults.gate_pid("sbatch", 2, first)
    finally:
        first.kill()
        first.wait()
    assert not (project.plan.state_dir / "state.json").exists()
    held = sorted((row.job_id for row in project.jobs() if row.held), key=int)
    assert len(held) == 2
    status = project.run("status", "--project-home", str(project.home), "--once", "--json")
    assert status.returncode == 0, status.stderr
    assert f"left jobs {', '.join(held)} (held, never released): cancelled them" in status.stderr
    assert json.loads(status.stdout)["jobs"] is not None  # stdout stays JSON
    assert all(project.job(i).state == "CANCELLED" for i in held)
    assert not (project.plan.state_dir / JOURNAL_FILE).exists()
    # Said once: the next status has nothing to settle.
    assert "interrupted" not in project.run("status", "--project-home", str(project.home), "--once").stderr


def test_the_wizard_start_settles_an_interrupted_submit(project, faults, capsys):
    from hpcwizard.cli import build_parser, build_tui
    from hpcwizard.project.session import release_project_lock

    faults.set("scontrol", 1, "before")
    first = project.start("submit", str(project.plan_file), faults=faults)
    try:
        faults.gate_pid("scontrol", 1, first)
    finally:
        first.kill()
        first.wait()
    held = sorted((row.job_id for row in project.jobs() if row.held), key=int)
    assert len(held) == 2
    args = build_parser().parse_args(["--project-home", str(project.home)])
    try:
        build_tui(args, "wizard")
    finally:
        release_project_lock(project.core)
    err = capsys.readouterr().err
    assert f"left jobs {', '.join(held)} (held, never released): cancelled them" in err
    assert all(project.job(i).state == "CANCELLED" for i in held)


def test_a_journal_whose_chain_is_recorded_goes_quietly(project, slurm_runner):
    """Killed after the state was written but before the journal went: the
    chain is a normal submission; nothing to say, nothing to undo."""
    submission = submit_chain(HomeProject(project.plan.project_home, runner=slurm_runner), resolve(project.plan))
    journal = Journal(chain=submission.chain, plan_fingerprint=submission.plan_fingerprint,
                      started_at=submission.submitted_at, scripts_dir=submission.scripts_dir,
                      phase=Phase.RELEASING, jobs=submission.jobs)
    write_journal(project.core, journal)
    again = project.submit()
    assert again.returncode == 2 and "already submitted" in again.stderr
    assert "interrupted" not in again.stderr
    project.assert_one_chain()


def test_a_submit_that_cannot_check_an_interrupted_one_submits_nothing(project, faults):
    """Whether the plan's chain is queued cannot be told while the queue
    cannot be read: the next submit refuses, and a later start settles it."""
    faults.set("sbatch", 2, "before")
    first = project.start("submit", str(project.plan_file), faults=faults)
    try:
        faults.gate_pid("sbatch", 2, first)
    finally:
        first.kill()
        first.wait()
    (held,) = [row.job_id for row in project.jobs() if row.held]
    faults.reset()
    faults.set("squeue", 1, "down")
    refused = project.submit(faults=faults)
    assert refused.returncode == 2
    assert ("could not check the submit interrupted at " in refused.stderr
            and f"(controller down): job {held} is held and never run; hpcwizard cancels it on its next start, "
                f"or run `scancel {held}`; nothing was submitted" in refused.stderr), refused.stderr
    assert [row.job_id for row in project.jobs()] == [held]
    assert project.submit().returncode == 0
    project.assert_one_chain()


# --- failures of Slurm during a submit, and a truthful cleanup ------------------


def test_failed_cleanup_is_said_truthfully_and_finished_on_the_next_start(project, faults):
    faults.set("sbatch", 2, "down")
    faults.set("scancel", 1, "down")
    failed = project.submit(faults=faults)
    assert failed.returncode == 2
    held = [row for row in project.jobs() if row.held]
    assert len(held) == 1
    job = held[0].job_id
    assert (f"could not cancel {job} (controller down): it is held and will never run; "
            f"hpcwizard cancels it on its next start, or run `scancel {job}`") in failed.stderr, failed.stderr
    assert "cancelled the accepted" not in failed.stderr
    assert load_journal(project.core).phase is Phase.CANCELLING

    status = project.run("status", "--project-home", str(project.home), "--once")
    assert status.returncode == 0, status.stderr
    assert f"cancelled job {job} left by the submit that failed at " in status.stderr
    assert project.job(job).state == "CANCELLED"
    assert not (project.plan.state_dir / JOURNAL_FILE).exists()
    assert project.submit().returncode == 0
    project.assert_one_chain()


def test_failed_release_with_failed_cancel_is_finished_by_the_next_submit(project, faults):
    faults.set("scontrol", 1, "down")
    faults.set("scancel", 1, "down")
    failed = project.submit(faults=faults)
    assert failed.returncode == 2
    ids = sorted((row.job_id for row in project.jobs() if row.held), key=int)
    assert len(ids) == 2
    assert "could not release the held chain" in failed.stderr
    assert (f"could not cancel {', '.join(ids)} (controller down): hpcwizard cancels them on its next start, "
            f"or run `scancel {' '.join(ids)}`") in failed.stderr, failed.stderr
    again = project.submit()
    assert again.returncode == 0, again.stderr
    assert f"cancelled jobs {', '.join(ids)} left by the submit that failed at " in again.stderr
    assert all(project.job(i).state == "CANCELLED" for i in ids)
    project.assert_one_chain()


def test_failed_release_cancels_the_chain_and_says_so(project, faults):
    faults.set("scontrol", 1, "down")
    failed = project.submit(faults=faults)
    assert failed.returncode == 2
    ids = sorted((row.job_id for row in project.jobs()), key=int)
    assert len(ids) == 2
    assert "could not release the held chain" in failed.stderr and f"cancelled jobs {', '.join(ids)}" in failed.stderr
    assert all(project.job(i).state == "CANCELLED" for i in ids)
    assert not project.home.exists()  # a refused submit of a new project leaves no folder


def test_an_sbatch_that_times_out_after_slurm_took_the_job_is_found_and_cancelled(project, faults, monkeypatch):
    """Slurm accepted the job but sbatch never answered: the job is found by
    its comment and cancelled, not left held for ever."""
    monkeypatch.setattr(submit_module, "SlurmClient", functools.partial(SlurmClient, submit_timeout=8))
    faults.set("sbatch", 2, "hang-after")
    with pytest.raises(ChainRefused) as caught:
        submit_chain(HomeProject(project.plan.project_home, runner=fault_runner(project, faults)), resolve(project.plan))
    message = caught.value.one_line()
    setup = next(row for row in project.jobs() if row.name.endswith("setup"))
    train = faults.output("sbatch", 2).split(";")[0]
    assert "could not submit job train (02_train.sbatch): the Slurm controller did not answer sbatch" in message
    assert f"cancelled the accepted jobs {setup.job_id}, {train}" in message, message
    assert project.job(train).state == "CANCELLED" and project.job(setup.job_id).state == "CANCELLED"
    assert not project.home.exists()


# --- a refused submit creates nothing ----------------------------------------------


def test_a_submit_refused_by_the_test_run_creates_nothing(tmp_path, slurm_conf):
    home = tmp_path / "new" / "proj"
    project = make_project(tmp_path, slurm_conf, home=home,
                           train={"partition": "gpu", "gpus": 3, "cpus": 1, "mem": "1G", "time": "00:10:00"})
    refused = project.submit()
    assert refused.returncode == 2 and "nothing was submitted" in refused.stderr
    assert not (tmp_path / "new").exists()


def test_a_refused_submit_of_an_existing_project_removes_what_it_made(tmp_path, slurm_conf, faults):
    project = make_project(tmp_path, slurm_conf)
    project.plan.state_dir.mkdir(parents=True)
    (project.plan.state_dir / "plan.yaml").write_text(project.plan.to_yaml())  # as the wizard leaves it
    faults.set("sbatch", 2, "down")
    refused = project.submit(faults=faults)
    assert refused.returncode == 2
    (setup,) = [row.job_id for row in project.jobs()]
    assert f"cancelled the accepted jobs {setup}" in refused.stderr
    assert sorted(p.name for p in project.home.iterdir()) == ["hpcwizard"]  # no logs/
    assert sorted(p.name for p in project.plan.state_dir.iterdir()) == [".submit.lock", "plan.yaml"]  # no runs/


def test_a_first_sbatch_refused_leaves_no_folder(tmp_path, slurm_conf, faults):
    project = make_project(tmp_path, slurm_conf)
    faults.set("sbatch", 1, "down")
    refused = project.submit(faults=faults)
    assert refused.returncode == 2
    assert "could not submit job setup" in refused.stderr and "nothing was submitted" in refused.stderr
    assert project.jobs() == [] and not project.home.exists()


# --- the controller itself stops mid-submit (a private cluster) -----------------

FAULTS_DIR = os.environ.get("HPCWIZARD_SLURM_FAULTS_DIR",
                            os.environ.get("HPCWIZARD_SLURM_DIR", "/tmp/hpcwizard-slurm") + "-faults")
FAULTS_PORT = os.environ.get("HPCWIZARD_SLURM_FAULTS_PORT",
                             str(int(os.environ.get("HPCWIZARD_SLURM_PORT", "16817")) + 4))


class PrivateCluster:
    """A second local cluster of this module's own, whose controller a test may stop."""

    def __init__(self) -> None:
        self.env = {**os.environ, "HPCWIZARD_SLURM_DIR": FAULTS_DIR, "HPCWIZARD_SLURM_PORT": FAULTS_PORT}
        self.env.pop("HPCWIZARD_SLURM_OFFLINE", None)
        self.conf = ""

    def local_slurm(self, command: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(LOCAL_SLURM), command], env=self.env, capture_output=True, text=True, timeout=180)

    def start(self) -> None:
        started = self.local_slurm("start")
        if started.returncode != 0:
            pytest.fail(f"the private cluster did not start: {started.stderr or started.stdout}")
        self.conf = self.local_slurm("env").stdout.strip().split("=", 1)[1].strip("'\"")

    def stop_controller(self) -> None:
        pidfile = Path(FAULTS_DIR) / "run" / "slurmctld.pid"
        pid = int(pidfile.read_text())
        os.kill(pid, signal.SIGTERM)
        wait_for("slurmctld to stop", lambda: gone(pid), timeout=60)
        pidfile.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def private_cluster(request):
    cluster = PrivateCluster()
    request.addfinalizer(lambda: cluster.local_slurm("stop"))
    cluster.start()
    return cluster


def test_controller_stopped_mid_submit(tmp_path, private_cluster, faults):
    """The issue's case: the controller stops after the first held sbatch.
    The cancel cannot reach it either: said so, and done by the next start."""
    project = make_project(tmp_path, private_cluster.conf)
    faults.set("sbatch", 2, "before")
    first = project.start("submit", str(project.plan_file), faults=faults)
    try:
        faults.gate_pid("sbatch", 2, first)
        (setup,) = [row.job_id for row in project.jobs() if row.held]
        private_cluster.stop_controller()
        try:
            faults.open_gates()
            _, err = first.communicate(timeout=180)
        finally:
            private_cluster.start()
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    try:
        assert first.returncode == 2, err
        assert "could not submit job train" in err
        assert (f"could not cancel {setup} (controller down): it is held and will never run; "
                f"hpcwizard cancels it on its next start, or run `scancel {setup}`") in err, err
        assert project.job(setup).held
        again = project.submit()
        assert again.returncode == 0, again.stderr
        assert f"cancelled job {setup} left by the submit that failed at " in again.stderr
        assert project.job(setup).state == "CANCELLED"
        project.assert_one_chain()
    finally:
        project.cancel_all()

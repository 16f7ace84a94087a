"""An interrupted submit is settled over SSH too, and the wizard's submit
step says what settling it did (issue 15: the journal's recovery with
``--host``, and the recovery notes in the wizard).

The interrupted submit is made for real: the plan rendered into a run
folder, the journal written and the first job accepted held by the real
sbatch with the chain's comment, exactly what ``submit`` leaves when it is
killed between its two sbatch calls (tests/test_submit_journal.py kills real
submits at every such point locally). Then the real sshd on loopback
(scripts/local-sshd) and the real local Slurm settle it.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import Sshd
from hpcwizard.cli import main
from hpcwizard.jobs.journal import Journal, Phase, load_journal, new_chain_id, write_journal
from hpcwizard.project import session
from hpcwizard.project.files import LOCAL_FILES, ProjectFiles, SshFiles
from hpcwizard.project.home import Project
from hpcwizard.project.recipe import get_recipe
from hpcwizard.project.render import render
from hpcwizard.project.resolved import resolve
from hpcwizard.project.state import SubmittedJob, load_state, now_iso
from hpcwizard.remote import SshConnection, SshRunner
from hpcwizard.shell import Runner
from hpcwizard.slurm import JobState, SlurmClient
from test_remote_cli import pinned_ssh_config, remote_args

pytestmark = pytest.mark.timeout(180)


def killed_after_first_sbatch(plan, runner: Runner, files: ProjectFiles, hpcwizard_cmd=None) -> str:
    """What a submit killed between its two sbatch calls leaves: the journal
    (phase submitting, the first job's id) and that job, held. Its id."""
    project = Project(plan.project_home, files)
    recipe = get_recipe(plan.recipe)
    scripts_dir = plan.layout.runs_dir / "20250101-000000"
    rendering = render(Project(plan.project_home, files), resolve(plan, recipe), scripts_dir, hpcwizard_cmd=hpcwizard_cmd)
    rendering.write(scripts_dir, files)
    journal = Journal(
        chain=new_chain_id(), plan_fingerprint=plan.fingerprint(), started_at=now_iso(),
        scripts_dir=str(scripts_dir), phase=Phase.SUBMITTING,
        jobs=tuple(SubmittedJob(name=job.name, slurm_name=job.slurm_name, job_id="",
                                partition=job.resources.partition, script=str(scripts_dir / job.script))
                   for job in rendering.jobs))
    write_journal(project, journal)
    first = rendering.jobs[0]
    job_id = SlurmClient(runner).submit(str(scripts_dir / first.script), hold=True, workdir=str(plan.project_home),
                                        extra_args=[f"--comment={journal.comment}"])
    write_journal(project, journal.with_job_id(0, job_id))
    return job_id


def state_of(slurm: SlurmClient, job_id: str) -> JobState | None:
    queued = {entry.job_id: entry.state for entry in slurm.queue([job_id])}
    return queued.get(job_id)


@pytest.fixture
def ssh_config(tmp_path: Path, sshd: Sshd) -> Path:
    return pinned_ssh_config(tmp_path, sshd)


@pytest.fixture
def conn(ssh_config: Path):
    from test_remote_cli import ALIAS

    connection = SshConnection.from_spec(ALIAS, config_path=ssh_config, system_known_hosts=())
    try:
        yield connection
    finally:
        connection.close()


def test_status_over_ssh_cancels_the_held_job_of_an_interrupted_submit(tmp_path, capsys, ssh_config, conn,
                                                                          slurm_runner):
    files, runner = SshFiles(conn), SshRunner(conn)
    home = tmp_path / "remote proj"  # a path of the login node
    plan = get_recipe("demo").default_plan(home, tmp_path / "data", hf_namespace="alice")
    held = killed_after_first_sbatch(plan, runner, files, hpcwizard_cmd=[sys.executable, "-m", "hpcwizard"])
    slurm = SlurmClient(slurm_runner)
    try:
        assert state_of(slurm, held) is JobState.PENDING
        code = main(["status", "--once", "--project-home", str(home), *remote_args(ssh_config)])
        out, err = capsys.readouterr()
        assert code == 0, err
        assert f"left job {held} (held, never released): cancelled it" in err, err
        assert state_of(slurm, held) in (JobState.CANCELLED, None)  # None: already forgotten by Slurm
        assert load_journal(Project(home, files)) is None
        # Settled once, and undone whole: the first submit's folders are gone with it.
        main(["status", "--once", "--project-home", str(home), *remote_args(ssh_config)])
        again = capsys.readouterr().err
        assert "left job" not in again and "is not an hpcwizard project home" in again, again
        assert not files.exists(plan.layout.runs_dir / "20250101-000000")
    finally:
        slurm.cancel([held])


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_the_remote_wizard_start_settles_an_interrupted_submit(tmp_path, ssh_config, conn, slurm_runner,
                                                                     capsys):
    """``hpcwizard --host``: the connect screen settles it (under the TUI);
    ``run_tui`` says ``args._settled`` on the terminal once the TUI is gone."""
    from hpcwizard.cli import build_parser, build_tui
    from test_wizard import wait_for

    files = SshFiles(conn)
    home = tmp_path / "remote proj"
    plan = get_recipe("demo").default_plan(home, tmp_path / "data", hf_namespace="alice")
    held = killed_after_first_sbatch(plan, SshRunner(conn), files)
    slurm = SlurmClient(slurm_runner)
    args = build_parser().parse_args(["--project-home", str(home), *remote_args(ssh_config)])
    app = build_tui(args, "wizard")
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_for(pilot, lambda: type(app.screen).__name__ == "WelcomeStep", what="the wizard")
            assert state_of(slurm, held) in (JobState.CANCELLED, None)
            assert any(f"left job {held} (held, never released): cancelled it" in line for line in args._settled)
    finally:
        args._ssh_connection.close()
        session.release_project_lock(Project(home, files))
        slurm.cancel([held])


@pytest.mark.anyio
async def test_the_submit_step_shows_what_settling_an_interrupted_submit_did(tmp_path, slurm_conf, monkeypatch):
    """A CLI submit of the same project killed while the wizard was open: the
    wizard's submit settles it first and shows those lines with its answer."""
    from hpcwizard.shell import LocalRunner
    from hpcwizard.tui.app import make_app
    from test_wizard import at_step, demo_plan, resume, saved_at, screen_text, wait_for

    monkeypatch.setenv("TEXTUAL_ANIMATIONS", "none")
    runner = LocalRunner(extra_env={"SLURM_CONF": slurm_conf})
    slurm = SlurmClient(runner)
    home = tmp_path / "proj"
    plan = replace(demo_plan(home), data_root=tmp_path / "data")
    saved_at(home, "submit", plan)
    app = make_app(project_home=home, runner=runner)
    ids: list[str] = []
    try:
        async with app.run_test(size=(110, 40)) as pilot:
            await resume(pilot, "submit")
            held = killed_after_first_sbatch(plan, runner, LOCAL_FILES)
            ids.append(held)
            await at_step(pilot, "submit")
            await pilot.press("enter")
            await wait_for(pilot, lambda: app.screen.submission is not None, 60, "submission")
            ids.extend(job.job_id for job in app.screen.submission.jobs)
            await wait_for(pilot, lambda: f"left job {held} (held, never released): cancelled it"
                           in screen_text(app), 10, "the recovery line on screen")
            assert state_of(slurm, held) in (JobState.CANCELLED, None)
            # Lines to read: the dashboard waits for Enter instead of opening by itself.
            assert "Enter opens the dashboard" in screen_text(app)
        (submission,) = load_state(plan.state_dir).submissions
        assert held not in submission.job_ids
    finally:
        slurm.cancel(ids)

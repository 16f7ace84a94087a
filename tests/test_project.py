"""The Project object: one owner of a project home's layout and state I/O,
here and on the login node (real sshd on loopback)."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from hpcwizard.jobs.journal import JOURNAL_FILE
from hpcwizard.project.files import LOCAL_FILES, SshFiles
from hpcwizard.project.home import Project, home_path
from hpcwizard.project.layout import ProjectLayout
from hpcwizard.project.recipe import get_recipe
from hpcwizard.project.render import render
from hpcwizard.project.resolved import resolve as resolve_plan
from hpcwizard.project.state import Submission, SubmittedJob, now_iso
from hpcwizard.remote.connection import SshConnection
from hpcwizard.remote.target import resolve

REPO = Path(__file__).resolve().parent.parent


def test_the_layout_is_the_documented_tree():
    layout = ProjectLayout(Path("/p"))
    assert layout.state_dir == Path("/p/hpcwizard")
    assert layout.plan_path == Path("/p/hpcwizard/plan.yaml")
    assert layout.state_path == Path("/p/hpcwizard/state.json")
    assert layout.runs_dir == Path("/p/hpcwizard/runs")
    assert layout.continuation_dir == Path("/p/hpcwizard/continuation")
    assert layout.logs_dir == Path("/p/logs")
    assert layout.log_path("hw-p-train", "12") == Path("/p/logs/hw-p-train-12.out")
    assert layout.log_path("hw-p-train", "12", "err") == Path("/p/logs/hw-p-train-12.err")


def test_the_layout_spells_the_state_folder_once():
    """`project_home / "hpcwizard"` is built in one place: ProjectLayout."""
    found = subprocess.run(["grep", "-rn", "--include=*.py", '/ "hpcwizard"', str(REPO / "hpcwizard")],
                           capture_output=True, text=True)
    assert found.stdout == "", found.stdout


def test_the_rendered_jobs_log_where_the_layout_says(tmp_path):
    recipe = get_recipe("demo")
    plan = recipe.default_plan(tmp_path / "proj", tmp_path / "data", hf_namespace="alice")
    rendering = render(Project(plan.project_home), resolve_plan(plan, recipe), tmp_path / "out")
    layout = Project(plan.project_home).layout
    assert plan.layout == layout and plan.state_dir == layout.state_dir and plan.logs_dir == layout.logs_dir
    for job in rendering.jobs:
        text = next(f.text for f in rendering.files if f.name == job.script)
        output = re.search(r"^#SBATCH --output=(\S+)$", text, re.M).group(1)
        # Relative to the job's working directory, the project home.
        stem = output.replace("%x", "NAME").replace("%j", "7")
        assert (plan.project_home / stem) == layout.log_path("NAME", "7"), output
        assert f"C_STATE_DIR={layout.continuation_dir}" in text or "C_STATE_DIR" not in text


def test_home_path_here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert home_path("runs/a") == tmp_path / "runs" / "a"
    assert home_path("~/runs") == Path(os.path.expanduser("~")) / "runs"
    assert home_path(str(tmp_path / "x")) == tmp_path / "x"


def test_a_projects_state_round_trips_and_marks_it_initialised(tmp_path):
    project = Project(tmp_path / "proj")
    assert not project.is_initialised()
    job = SubmittedJob("setup", "hw-proj-setup", "5", "cpu", "/s/setup.sbatch")
    project.update_state(lambda state: state.submissions.append(Submission("f", now_iso(), "/s", (job,))))
    assert project.is_initialised()
    assert project.load_state().latest_submission.job_ids == ["5"]
    assert sorted(p.name for p in project.state_dir.iterdir()) == [".state.lock", "state.json"]


def test_an_interrupted_first_submit_is_a_project_too(tmp_path):
    """Only the journal of a first submit: `status` must find it to settle it."""
    project = Project(tmp_path / "proj")
    LOCAL_FILES.write_text_atomic(project.state_dir / JOURNAL_FILE, "{}")
    assert project.is_initialised()


@pytest.fixture
def ssh_files(tmp_path, sshd):
    known = tmp_path / "known_hosts"
    known.write_text(sshd.known_hosts_line)
    host = replace(resolve(f"root@127.0.0.1:{sshd.port}", config_path="/dev/null"), identity_files=(sshd.key,))
    with SshConnection(host, known_hosts=known, use_agent=False, system_known_hosts=(),
                       identity_dir="/nonexistent") as connection:
        yield SshFiles(connection)


def test_a_project_on_the_login_node(tmp_path, ssh_files):
    """`~` and relative paths are the login node's; the state goes through
    SFTP and the login node's flock, and reads back the same here."""
    remote_home = ssh_files.home()
    assert home_path("~/runs/x", ssh_files) == Path(remote_home) / "runs" / "x"
    assert home_path("runs/x", ssh_files) == Path(remote_home) / "runs" / "x"

    project = Project.at(str(tmp_path / "remote-proj"), ssh_files)
    assert not project.is_initialised()
    job = SubmittedJob("train", "hw-r-train", "9", "gpu", "/s/train.sbatch")
    project.update_state(lambda state: state.submissions.append(Submission("f", now_iso(), "/s", (job,))))
    assert project.is_initialised()
    # The same machine here: what SFTP wrote is the file a local hpcwizard reads.
    assert Project(tmp_path / "remote-proj").load_state().latest_submission.job_ids == ["9"]


def test_a_remote_rendering_reads_the_login_nodes_requeue_answer(tmp_path, ssh_files, monkeypatch):
    """The train job's continuation follows what the check found on the
    cluster (here: no requeue, so follow-on jobs), read through the login
    node's files, not this machine's."""
    from hpcwizard.jobs.continuation import save_site_answer, site_file
    from test_remote_cli import SftpReads

    recipe = get_recipe("demo")
    plan = recipe.default_plan(tmp_path / "proj", tmp_path / "data", hf_namespace="alice")
    project = Project(plan.project_home, ssh_files)
    save_site_answer(project, False, "JobRequeue=0")
    reads = SftpReads(monkeypatch)
    rendering = render(Project(plan.project_home, ssh_files), resolve_plan(plan, recipe), tmp_path / "out")
    train = next(f.text for f in rendering.files if f.name.endswith("train.sbatch"))
    assert "C_REQUEUE=0" in train and "#SBATCH --requeue" not in train
    assert str(site_file(project)) in reads.paths

"""The wizard in remote mode, end to end: the TUI here, the project on the
"login node" (this machine through the local sshd, scripts/local-sshd), the
real local Slurm behind it and the local Hub.

Driven like tests/test_wizard.py's whole flow (its step helpers), with
``make_app(..., runner=SshRunner, files=SshFiles, connection=...)`` as
``hpcwizard --host`` builds it: the token step stores the token on the login
node (0600) when it has none there, the download step runs ``hpcwizard
download`` there, the submit goes through SSH and the chain completes.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import Sshd
from hpcwizard.checks.hftoken import locate_token_file
from hpcwizard.demo import build_demo_hub
from hpcwizard.devhub import DevHub
from hpcwizard.project import session
from hpcwizard.project.files import SshFiles
from hpcwizard.project.state import load_state
from hpcwizard.remote import SshConnection, SshRunner
from hpcwizard.remote.target import resolve
from hpcwizard.slurm import JobState, SlurmClient
from hpcwizard.tui.app import make_app
from test_wizard import (
    SIZE,
    TOKEN,
    at_step,
    do_params,
    do_paths,
    do_preflight,
    do_recipe,
    do_review,
    do_slurm,
    do_token,
    screen_text,
    start_new,
    wait_for,
)

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(180)]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def connection(tmp_path: Path, sshd: Sshd):
    known = tmp_path / "known_hosts"
    known.write_text(sshd.known_hosts_line)
    host = replace(resolve(f"root@127.0.0.1:{sshd.port}", config_path=os.devnull), identity_files=(sshd.key,))
    with SshConnection(host, known_hosts=known, use_agent=False, system_known_hosts=(),
                       identity_dir="/nonexistent") as conn:
        yield conn


@pytest.fixture
def no_remote_token(connection: SshConnection):
    """The login node's user starts without a token file (the one there, if
    any, is put back afterwards): the token step must store one."""
    files = SshFiles(connection)
    path = locate_token_file(SshRunner(connection))  # the local sshd's own HF_HOME (scripts/local-sshd)
    before = files.read_text(path) if files.exists(path) else None
    files.remove(path, missing_ok=True)
    try:
        yield path
    finally:
        if before is None:
            files.remove(path, missing_ok=True)
        else:
            files.write_text_atomic(path, before, mode=0o600)


async def test_wizard_over_ssh_stores_the_token_downloads_there_and_the_chain_completes(
        tmp_path, hf_home, monkeypatch, connection, no_remote_token, slurm_runner):
    monkeypatch.setenv("TEXTUAL_ANIMATIONS", "none")
    hub_root = tmp_path / "hub"
    build_demo_hub(hub_root, user="alice", token=TOKEN)
    home = tmp_path / "remote proj"  # a path on the login node
    files = SshFiles(connection)
    ids: list[str] = []
    with DevHub(hub_root) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        app = make_app(project_home=home, runner=SshRunner(connection), files=files, connection=connection,
                       hpcwizard_cmd=[sys.executable, "-m", "hpcwizard"], hf_endpoint=hub.url)
        try:
            async with app.run_test(size=SIZE) as pilot:
                await start_new(pilot)
                await do_token(pilot)
                # Stored on the login node, readable by its owner only (and here, 0600 too).
                remote = files.stat(no_remote_token)
                assert remote.size == len(TOKEN)
                assert files.connection.with_sftp(lambda sftp: sftp.stat(no_remote_token).st_mode) & 0o777 == 0o600
                assert (Path(os.environ["HF_HOME"]) / "token").stat().st_mode & 0o777 == 0o600
                await do_recipe(pilot)
                await do_params(pilot, seconds_per_step="0.05")
                await do_paths(pilot, tmp_path / "remote data", download="login")
                await do_slurm(pilot)
                await do_preflight(pilot)
                await do_review(pilot, "download")
                await wait_for(pilot, lambda: app.screen.finished, 60, "download on the login node")
                status = str(app.screen.query_one("#step-status").render())
                assert "files" in status, status
                # It ran there: the plan copy the remote hpcwizard read, and its results.
                assert files.exists(home / "hpcwizard" / "download" / "plan.yaml")
                assert files.exists(home / "demo" / "code_base" / "train.py")
                await pilot.press("ctrl+n")
                await at_step(pilot, "submit")
                await pilot.press("enter")
                await wait_for(pilot, lambda: app.screen.submission is not None, 60, "submission")
                ids = [job.job_id for job in app.screen.submission.jobs]
                await wait_for(pilot, lambda: all(f"job {job_id}" in screen_text(app) for job_id in ids), 10,
                               "the job ids on screen")
                await wait_for(pilot, lambda: app.current_mode == "dashboard", 10, "dashboard")
            state = load_state(home / "hpcwizard", files)
            assert state.wizard_step == session.DONE
            assert [s.job_ids for s in state.submissions] == [ids]
            # The chain runs to the end on the cluster behind the login node.
            slurm = SlurmClient(slurm_runner)
            deadline = time.monotonic() + 120
            states: dict[str, JobState] = {}
            while time.monotonic() < deadline:
                queued = {e.job_id: e.state for e in slurm.queue(ids)}
                if all(queued.get(i, JobState.COMPLETED).is_finished for i in ids):
                    gone = [i for i in ids if i not in queued]
                    states = {**queued, **{f.job_id: f.state for f in slurm.finished(gone)}} if gone else queued
                    break
                time.sleep(0.5)
            logs = {p.name: p.read_text(errors="replace")[-2000:] for p in (home / "logs").glob("*")}
            assert states == {ids[0]: JobState.COMPLETED, ids[1]: JobState.COMPLETED}, (states, logs)
        finally:
            if ids:
                SlurmClient(slurm_runner).cancel(ids)
    # The token: only in its token files, never in anything the run wrote.
    for path in home.rglob("*"):
        if path.is_file() and path.stat().st_size < 5_000_000:
            assert TOKEN.encode() not in path.read_bytes(), f"token leaked into {path}"


async def test_a_typed_token_replaces_an_old_one_on_the_login_node(
        tmp_path, hf_home, monkeypatch, connection, no_remote_token):
    """Pasting a token is how a user fixes an expired one: it must replace the
    login node's file, not be 'kept' beside it."""
    monkeypatch.setenv("TEXTUAL_ANIMATIONS", "none")
    hub_root = tmp_path / "hub"
    build_demo_hub(hub_root, user="alice", token=TOKEN)
    files = SshFiles(connection)
    files.write_text_atomic(no_remote_token, "hf_expired_old_token", mode=0o644)
    with DevHub(hub_root) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        app = make_app(project_home=tmp_path / "remote proj", runner=SshRunner(connection), files=files,
                       connection=connection, hpcwizard_cmd=[sys.executable, "-m", "hpcwizard"], hf_endpoint=hub.url)
        async with app.run_test(size=(80, 24)) as pilot:
            await start_new(pilot)
            await do_token(pilot)
    assert files.read_text(no_remote_token) == TOKEN
    assert files.connection.with_sftp(lambda sftp: sftp.stat(no_remote_token).st_mode) & 0o777 == 0o600

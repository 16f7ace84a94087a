"""The wizard's project lock over SSH survives a reconnect (issue 15, remote
item 1): the ``cat`` holding the ``flock`` on the login node dies with the
connection, so the lock is taken again when the connection comes back; if
another hpcwizard took it meanwhile, this one says so and is read-only (no
save, no submit).

Real components only: the local sshd (scripts/local-sshd), the connection is
dropped by killing the sshd process serving it, and "another hpcwizard" is a
process of its own with its own SSH connection.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import Sshd
from hpcwizard.project import session
from hpcwizard.project.files import SshFiles
from hpcwizard.project.home import Project
from hpcwizard.project.state import ProjectReadOnly, load_state
from hpcwizard.remote import SshConnection, SshRunner
from test_remote import kill_and_wait, known_hosts, make_connection, session_process  # noqa: F401 - a fixture

pytestmark = pytest.mark.timeout(120)

# Another hpcwizard: its own process and SSH connection, taking the same
# project's wizard lock (waiting until it is free), then holding it until
# its stdin closes. Prints "locked" or the one-line refusal.
OTHER_WIZARD = textwrap.dedent("""
    import os, sys, time
    from dataclasses import replace
    from pathlib import Path
    from hpcwizard.errors import UserError
    from hpcwizard.project.files import SshFiles
    from hpcwizard.project.state import ProjectLock
    from hpcwizard.remote import SshConnection
    from hpcwizard.remote.target import resolve
    port, known, key, home, wait = sys.argv[1:6]
    host = replace(resolve(f"root@127.0.0.1:{port}", config_path=os.devnull), identity_files=(key,))
    conn = SshConnection(host, known_hosts=known, use_agent=False, system_known_hosts=(),
                         identity_dir="/nonexistent")
    lock = ProjectLock(Path(home) / "hpcwizard", SshFiles(conn))
    deadline = time.monotonic() + float(wait)
    while True:
        try:
            lock.acquire()
            break
        except UserError as exc:
            if time.monotonic() > deadline:
                print(exc.one_line(), flush=True)
                sys.exit(3)
            time.sleep(0.1)
    print("locked", flush=True)
    sys.stdin.read()
    lock.release()
    conn.close()
""")


class OtherWizard:
    """A second hpcwizard process holding (or refused) the project's lock."""

    def __init__(self, sshd: Sshd, known: Path, home: Path, *, wait: float) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", OTHER_WIZARD, str(sshd.port), str(known), sshd.key, str(home), str(wait)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        self.answer = self.process.stdout.readline().strip()

    def close(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
        self.process.wait(timeout=30)


@pytest.fixture
def other_wizards() -> Iterator[list[OtherWizard]]:
    started: list[OtherWizard] = []
    yield started
    for other in started:
        other.close()


@pytest.fixture
def connection(sshd: Sshd, known_hosts: Path) -> Iterator[SshConnection]:  # noqa: F811 - the fixture above
    conn = make_connection(sshd, known_hosts, backoff_initial=0.1)
    try:
        yield conn
    finally:
        conn.close()


def drop(sshd: Sshd, conn: SshConnection) -> None:
    """Kill the sshd process serving ``conn`` (and so the lock's holder), and
    wait until it is gone."""
    kill_and_wait(session_process(sshd, SshRunner(conn)))


def test_the_lock_is_taken_again_when_the_connection_comes_back(
        tmp_path, sshd: Sshd, known_hosts, connection, other_wizards):  # noqa: F811
    files = SshFiles(connection)
    home = tmp_path / "proj"
    home.mkdir()
    project = Project(home, files)
    assert session.acquire_project_lock(project)
    try:
        drop(sshd, connection)
        # The next use of the connection reconnects, and takes the lock again on the way.
        assert files.exists(home)
        assert connection.reconnects == 1
        other = OtherWizard(sshd, known_hosts, home, wait=0)
        other_wizards.append(other)
        assert other.answer.startswith("this project home is already open in hpcwizard (pid "), other.answer
        assert "(over ssh)" in other.answer
        # Still this wizard's project: its saves go through.
        session.save_step(project, "token")
        assert load_state(home / "hpcwizard").wizard_step == "token"
    finally:
        session.release_project_lock(project)
    # Released for real: the next hpcwizard gets it.
    other = OtherWizard(sshd, known_hosts, home, wait=0)
    other_wizards.append(other)
    assert other.answer == "locked"


def test_a_lock_taken_by_another_wizard_during_the_drop_makes_this_one_read_only(
        tmp_path, sshd: Sshd, known_hosts, connection, other_wizards):  # noqa: F811
    files = SshFiles(connection)
    home = tmp_path / "proj"
    home.mkdir()
    project = Project(home, files)
    assert session.acquire_project_lock(project)
    session.save_step(project, "recipe")
    told: list[str] = []
    session.watch_project_lock(home, told.append)
    try:
        drop(sshd, connection)
        # While this one is away, another hpcwizard opens the project (as soon
        # as the login node has released the dropped holder's lock).
        other = OtherWizard(sshd, known_hosts, home, wait=30)
        other_wizards.append(other)
        assert other.answer == "locked"
        assert files.exists(home)  # the connection is back
        assert len(told) == 1 and "another hpcwizard (pid " in told[0] and "read-only" in told[0], told
        with pytest.raises(ProjectReadOnly, match="read-only"):
            session.save_step(project, "params")
        with pytest.raises(ProjectReadOnly):
            session.ensure_writable(home)  # what the submit step asks first
        assert load_state(home / "hpcwizard").wizard_step == "recipe"  # nothing written
    finally:
        session.release_project_lock(project)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_the_wizard_says_it_is_read_only_and_saves_nothing(
        tmp_path, sshd: Sshd, known_hosts, connection, other_wizards, monkeypatch):  # noqa: F811
    from hpcwizard.tui.app import make_app
    from test_wizard import wait_for

    monkeypatch.setenv("TEXTUAL_ANIMATIONS", "none")
    files = SshFiles(connection)
    home = tmp_path / "proj"
    home.mkdir()
    app = make_app(project_home=home, runner=SshRunner(connection), files=files, connection=connection,
                   hpcwizard_cmd=[sys.executable, "-m", "hpcwizard"])
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: type(app.screen).__name__ == "WelcomeStep" and app.screen.saved is not None,
                       what="the welcome step")
        drop(sshd, connection)
        other = OtherWizard(sshd, known_hosts, home, wait=30)
        other_wizards.append(other)
        assert other.answer == "locked"
        started = time.monotonic()
        assert files.exists(home)  # the wizard's connection is back
        assert time.monotonic() - started < 10  # another's holder: said at once, not after a wait
        await wait_for(pilot, lambda: "read-only" in app.sub_title, what="read-only in the title")
        notes = [n.message for n in app._notifications]
        assert any("another hpcwizard (pid" in n and "read-only" in n for n in notes), notes
        before = {p.name for p in (home / "hpcwizard").iterdir()}
        await pilot.press("ctrl+n")  # start a new session: must not save
        await wait_for(pilot, lambda: any("Not saved" == n.title for n in app._notifications),
                       what="the refusal")
        assert {p.name for p in (home / "hpcwizard").iterdir()} == before
        assert not (home / "hpcwizard" / "state.json").exists()

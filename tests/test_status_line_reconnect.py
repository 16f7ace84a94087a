"""The dashboard's status line keeps a reconnect in view at 80 and 100 columns (issue 14, item 15).

Remote mode against the real local sshd: the SSH session serving the
dashboard is killed, the next refresh reconnects, and the status line says
so where it cannot be cut off (it came fourth, after the refresh time, the
interval and the job count, and was lost past the edge).
"""

from __future__ import annotations

import os
from dataclasses import replace

import pytest

from helpers import pilot_wait_for
from hpcwizard.project.files import SshFiles
from hpcwizard.project.state import update_state
from hpcwizard.remote import SshConnection, SshRunner
from hpcwizard.remote.target import resolve
from hpcwizard.tui.app import make_app
from test_remote import kill_and_wait, session_process

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.parametrize("size", [(80, 24), (100, 30)])
async def test_a_reconnect_shows_whole_in_the_status_line(tmp_path, sshd, monkeypatch, size):
    monkeypatch.setenv("TEXTUAL_ANIMATIONS", "none")
    home = tmp_path / "a project home with a long enough name to fill the line"
    update_state(home / "hpcwizard", lambda state: None)  # a project home: its state exists
    known = tmp_path / "known_hosts"
    known.write_text(sshd.known_hosts_line)
    host = replace(resolve(f"root@127.0.0.1:{sshd.port}", config_path=os.devnull), identity_files=(sshd.key,))
    with SshConnection(host, known_hosts=known, use_agent=False, system_known_hosts=(),
                       identity_dir="/nonexistent", backoff_initial=0.1) as connection:
        runner = SshRunner(connection)
        app = make_app(project_home=home, runner=runner, files=SshFiles(connection), connection=connection,
                       start_mode="dashboard")
        async with app.run_test(size=size) as pilot:
            screen = app.screen
            await pilot_wait_for(pilot, lambda: "refreshed" in screen.status_text, 30, "a first refresh")
            kill_and_wait(session_process(sshd, runner))
            await pilot.press("r")  # refresh now: the next command reconnects
            await pilot_wait_for(pilot, lambda: "reconnected to" in screen.status_text, 30, "the reconnect said")
            await pilot.pause()
            line = screen.status_text
            note = line.split(" · ")[0]
            assert note.startswith("reconnected to ") and " at " in note
            status = screen.query_one("#dash-status")
            assert len(note) < status.content_region.width  # whole, before anything the edge may cut

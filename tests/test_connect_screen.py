"""``hpcwizard --host`` asks SSH's questions in the TUI, not on a bare terminal.

The app is built exactly as the CLI builds it (``cli.build_tui`` from parsed
arguments), against the real sshd on loopback: an unknown host key shows its
fingerprint in a modal and is refused unless the user trusts it; an encrypted
key's passphrase is typed into a masked modal; a failure stays on screen with
Retry, and Quit leaves with the one-line error and a non-zero code.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from textual.app import App

from conftest import Sshd
from hpcwizard.cli import build_parser, build_tui
from hpcwizard.errors import UserError
from hpcwizard.project import session
from hpcwizard.project.home import Project
from hpcwizard.project.state import ProjectLock
from hpcwizard.shell import LocalRunner
from hpcwizard.tui.app import make_app
from hpcwizard.tui.screens.connect import ConnectScreen
from hpcwizard.tui.screens.ssh_questions import HostKeyQuestion, PassphraseQuestion
from test_remote_cli import ALIAS, REMOTE_HPCWIZARD, write_ssh_config
from test_wizard import screen_text, wait_for

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def tui_for(ssh_config: Path, *argv: str, mode: str = "wizard"):
    args = build_parser().parse_args(
        [*argv, "--host", ALIAS, "--ssh-config", str(ssh_config), "--remote-hpcwizard", REMOTE_HPCWIZARD])
    return args, build_tui(args, mode)


def close(args) -> None:
    conn = getattr(args, "_ssh_connection", None)
    if conn is not None:
        conn.close()


def on_screen(app, kind) -> bool:
    """``kind`` is the screen shown, composed (not merely pushed)."""
    return isinstance(app.screen, kind) and bool(app.screen.query("Button"))


async def test_an_unknown_host_key_is_asked_in_the_tui_and_refused_unless_trusted(tmp_path, sshd: Sshd):
    known = tmp_path / "known_hosts"
    known.write_text("")
    config = write_ssh_config(tmp_path / "ssh_config", sshd, known, sshd.key)
    home = tmp_path / "proj"
    args, app = tui_for(config, "--project-home", str(home))
    # Building the app touched nothing: no connection yet (the connect screen's
    # worker makes it), no question asked.
    assert getattr(args, "_ssh_connection", None) is None
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_for(pilot, lambda: on_screen(app, HostKeyQuestion), what="the host key question")
            await wait_for(pilot, lambda: sshd.fingerprint() in screen_text(app), what="the fingerprint shown")
            assert "Unknown host key for [127.0.0.1]:" in screen_text(app)
            await pilot.press("enter")  # the focused default is Refuse
            await wait_for(pilot, lambda: on_screen(app, ConnectScreen) and app.screen.failure is not None,
                           what="the refusal")
            assert "was not accepted" in app.screen.failure.one_line()
            await wait_for(pilot, lambda: "was not accepted" in screen_text(app), what="the refusal shown")
            assert known.read_text() == ""  # nothing accepted silently
            await pilot.press("r")
            await wait_for(pilot, lambda: on_screen(app, HostKeyQuestion), what="the question again")
            await pilot.press("y")
            await wait_for(pilot, lambda: type(app.screen).__name__ == "WelcomeStep", what="the wizard")
            assert app.context.project_home == home
            # Jobs call the login node's Python with -m hpcwizard (their helpers need the interpreter).
            assert app.context.hpcwizard_cmd == [sys.executable, "-m", "hpcwizard"]
            assert "127.0.0.1" in known.read_text()  # trusted once, saved for next time
    finally:
        close(args)
        session.release_project_lock(Project(home))


async def test_an_encrypted_key_asks_its_passphrase_in_a_masked_modal(tmp_path, sshd: Sshd):
    known = tmp_path / "known_hosts"
    known.write_text(sshd.known_hosts_line)
    key = tmp_path / "id_locked"
    secret = "s3cret-passphrase-9f2c"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", secret, "-f", str(key)], check=True)
    original = sshd.authorized.read_text()
    sshd.authorized.write_text(original + (tmp_path / "id_locked.pub").read_text())
    config = write_ssh_config(tmp_path / "ssh_config", sshd, known, str(key))
    home = tmp_path / "proj"
    args, app = tui_for(config, "--project-home", str(home))
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_for(pilot, lambda: on_screen(app, PassphraseQuestion), what="the passphrase question")
            assert app.screen.path == str(key)
            await wait_for(pilot, lambda: "Enter the passphrase for" in screen_text(app), what="the question shown")
            await pilot.press(*"wrong")
            assert "wrong" not in screen_text(app)  # masked
            await pilot.press("enter")
            # A wrong passphrase is asked again, saying so (OpenSSH gives 3 tries).
            await wait_for(pilot, lambda: on_screen(app, PassphraseQuestion) and app.screen.retry,
                           what="the question again")
            await wait_for(pilot, lambda: "Wrong passphrase. Try again for" in screen_text(app),
                           what="the retry said")
            for typo in ("wrong again", "still wrong"):
                await pilot.press(*typo, "enter")
                if typo == "wrong again":
                    await wait_for(pilot, lambda: on_screen(app, PassphraseQuestion) and not app.screen.query_one(
                        "#passphrase").value, what="a fresh question")
            await wait_for(pilot, lambda: on_screen(app, ConnectScreen) and app.screen.failure is not None,
                           what="the failed login")
            line = app.screen.failure.one_line()
            assert "wrong passphrase" in line and "3 tries" in line and "ssh-add" in line, line
            await pilot.press("r")
            await wait_for(pilot, lambda: on_screen(app, PassphraseQuestion) and not app.screen.retry,
                           what="the question again")
            await pilot.press(*secret)
            assert secret not in screen_text(app)
            await pilot.press("enter")
            await wait_for(pilot, lambda: type(app.screen).__name__ == "WelcomeStep", what="the wizard")
            assert args._ssh_connection.connected
    finally:
        close(args)
        session.release_project_lock(Project(home))
        sshd.authorized.write_text(original)


async def test_a_failure_before_the_first_screen_quits_with_its_one_line_error(tmp_path, sshd: Sshd):
    known = tmp_path / "known_hosts"
    known.write_text(sshd.known_hosts_line)
    config = write_ssh_config(tmp_path / "ssh_config", sshd, known, sshd.key)
    not_a_project = tmp_path / "empty"
    not_a_project.mkdir()
    args, app = tui_for(config, "status", "--project-home", str(not_a_project), mode="dashboard")
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_for(pilot, lambda: on_screen(app, ConnectScreen) and app.screen.failure is not None,
                           what="the failure")
            await wait_for(pilot, lambda: "is not an hpcwizard project home" in screen_text(app),
                           what="the error shown")
            await pilot.press("q")
        assert isinstance(app.failure, UserError)
        assert "--project-home" in app.failure.one_line()
        assert app.return_code == app.failure.exit_code != 0
    finally:
        close(args)


async def test_a_second_wizard_on_a_remote_project_home_is_refused_and_can_retry(tmp_path, sshd: Sshd):
    known = tmp_path / "known_hosts"
    known.write_text(sshd.known_hosts_line)
    config = write_ssh_config(tmp_path / "ssh_config", sshd, known, sshd.key)
    home = tmp_path / "proj"
    other = ProjectLock(home / "hpcwizard")  # another wizard, on the login node itself
    other.acquire()
    args, app = tui_for(config, "--project-home", str(home))
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_for(pilot, lambda: on_screen(app, ConnectScreen) and app.screen.failure is not None,
                           what="the refusal")
            assert "already open in hpcwizard" in app.screen.failure.one_line()
            other.release()  # the other wizard quits: Retry now gets in
            await pilot.press("r")
            await wait_for(pilot, lambda: type(app.screen).__name__ == "WelcomeStep", what="the wizard")
    finally:
        other.release()
        close(args)
        session.release_project_lock(Project(home))


def test_the_wizard_over_ssh_needs_a_project_home_before_the_tui_opens(tmp_path, sshd: Sshd):
    config = write_ssh_config(tmp_path / "ssh_config", sshd, tmp_path / "known_hosts", sshd.key)
    with pytest.raises(UserError, match="--project-home is required with --host"):
        tui_for(config)


# --------------------------------------------------------------------------
# Snapshots (fixed text: no live sshd, no clock)


class _Asks(App):
    """Shows the question ``make_question`` builds. Built on mount, in the
    app's event loop, as TuiSshPrompts builds them: on Python 3.9 a widget's
    lock needs the current event loop, and after an earlier test's
    asyncio.run() the main thread has none."""

    def __init__(self, make_question) -> None:
        super().__init__()
        self.make_question = make_question

    def on_mount(self) -> None:
        self.push_screen(self.make_question())


def test_host_key_question_snapshot(snap_compare):
    def question():
        return HostKeyQuestion("[login.example.org]:2222", "ssh-ed25519",
                               "SHA256:fXZWHOXfmSx4C1XTZQI0cBrUakGK2SBgO8CLI63XXbg")

    assert snap_compare(_Asks(question), terminal_size=(100, 30))


def test_passphrase_question_snapshot(snap_compare):
    assert snap_compare(_Asks(lambda: PassphraseQuestion("~/.ssh/id_ed25519")), terminal_size=(100, 30),
                        press=[*"secret"])


def test_connect_failure_snapshot(snap_compare):
    def connecting():
        raise UserError("could not connect to login.example.org:22: connection refused",
                        "check the host name and port, or your VPN")

    app = make_app(runner=LocalRunner(), connecting=connecting)
    assert snap_compare(app, terminal_size=(100, 30), run_before=_until_failed)


async def _until_failed(pilot) -> None:
    await wait_for(pilot, lambda: on_screen(pilot.app, ConnectScreen) and pilot.app.screen.failure is not None,
                   what="the failure")

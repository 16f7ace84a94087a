"""Remote mode under faults (issue 15, "Remote mode (--host)"): servers that
are not SSH servers, wrong passphrases, hints that name the config in use,
flags checked before connecting; the real sshd on loopback
(scripts/local-sshd) and real processes, never a mocked connection.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import Sshd
from hpcwizard.devhub import DevHub
from hpcwizard.remote import AuthenticationFailed, SshConnection
from hpcwizard.remote.connection import PASSPHRASE_TRIES
from test_remote_cli import ALIAS, REMOTE_HPCWIZARD, pinned_ssh_config, remote_args, run_cli, write_ssh_config

pytestmark = pytest.mark.timeout(120)

REPO = Path(__file__).resolve().parent.parent


def hpcwizard(*argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """hpcwizard as a user runs it: its own process, stdin not a terminal."""
    return subprocess.run([sys.executable, "-m", "hpcwizard", *argv], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=90, cwd=cwd or REPO)


def config_for_port(path: Path, port: int, known_hosts: Path, key: str) -> Path:
    """An SSH config naming a server on ``port`` with a 2 s ConnectTimeout."""
    path.write_text(f"Host notssh\n  HostName 127.0.0.1\n  Port {port}\n  User root\n"
                    f"  IdentityFile {key}\n  IdentitiesOnly yes\n  UserKnownHostsFile {known_hosts}\n"
                    "  ConnectTimeout 2\n")
    return path


@pytest.fixture
def login_config(tmp_path: Path, sshd: Sshd) -> Path:
    """An SSH config naming the local sshd (host key pinned), as a user's would."""
    return pinned_ssh_config(tmp_path, sshd)


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections (the kernel completes them from the
    backlog) and never says a word: a hung or firewalled service."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("hpcwizard: "), lines
    return lines[0]


def test_a_port_that_is_not_an_ssh_server_gives_one_line_and_no_traceback(tmp_path, sshd: Sshd, devhub_root):
    known = tmp_path / "known_hosts"
    known.write_text("")
    # An HTTP server (the local hub) answers paramiko's greeting with an HTTP error and hangs up.
    with DevHub(devhub_root) as hub:
        port = int(hub.url.rsplit(":", 1)[1])
        config = config_for_port(tmp_path / "http_config", port, known, sshd.key)
        line = one_line_error(hpcwizard("status", "--once", "--host", "notssh", "--ssh-config", str(config),
                                        "--project-home", "/tmp/x"))
    assert f"127.0.0.1 port {port} closed the connection without an SSH greeting" in line, line
    assert "paramiko" not in line and "protocol banner" not in line


def test_a_silent_server_is_said_to_not_answer(tmp_path, sshd: Sshd, silent_port):
    known = tmp_path / "known_hosts"
    known.write_text("")
    config = config_for_port(tmp_path / "silent_config", silent_port, known, sshd.key)
    line = one_line_error(hpcwizard("status", "--once", "--host", "notssh", "--ssh-config", str(config),
                                    "--project-home", "/tmp/x"))
    assert f"the server at 127.0.0.1 port {silent_port} did not answer as an SSH server within 2 s" in line, line
    assert "No existing session" not in line
    # The hint names the config that was used, where ConnectTimeout goes.
    assert f"ConnectTimeout in {config}" in line, line


def test_hints_name_the_ssh_config_given_with_ssh_config(tmp_path, capsys, sshd: Sshd):
    known = tmp_path / "known_hosts"
    known.write_text(sshd.known_hosts_line)
    stranger = tmp_path / "id_stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    config = write_ssh_config(tmp_path / "my_config", sshd, known, str(stranger))
    code, out, err = run_cli(capsys, "status", "--once", "--project-home", "/tmp/x", *remote_args(config))
    assert code != 0
    assert f"set IdentityFile for {ALIAS} in {config}" in err, err
    assert "~/.ssh/config" not in err, err
    # The command to test with reads the same config, by the host's name in it.
    assert f"test with: ssh -F {config} -p {sshd.port} root@{ALIAS}" in err, err

    config.write_text(f"Host {ALIAS}\n  HostName no-such-host.invalid\n")
    code, out, err = run_cli(capsys, "status", "--once", "--project-home", "/tmp/x", *remote_args(config))
    assert code != 0 and f"check the spelling or HostName for {ALIAS} in {config}" in err, err


def test_status_with_host_but_no_project_home_says_so_before_any_host_key_question(tmp_path, capsys, sshd):
    known = tmp_path / "known_hosts"
    known.write_text("")  # the host key is unknown: connecting would have to ask (or refuse)
    config = write_ssh_config(tmp_path / "ssh_config", sshd, known, sshd.key)
    for argv in (["status", "--once", *remote_args(config)], [*remote_args(config), "status", "--once"]):
        code, out, err = run_cli(capsys, *argv)
        assert code != 0
        assert "--project-home is required with --host" in err, err
        assert "host key" not in err, err
    assert known.read_text() == ""


def test_status_json_over_ssh_says_which_host(tmp_path, capsys, login_config, sshd: Sshd):
    from hpcwizard.project.state import update_state

    home = tmp_path / "json home"
    update_state(home / "hpcwizard", lambda s: setattr(s, "wizard_step", "done"))
    code, out, err = run_cli(capsys, "status", "--once", "--json", "--project-home", str(home),
                             *remote_args(login_config))
    assert code == 0, err
    data = json.loads(out)
    assert data["host"] == f"root@127.0.0.1:{sshd.port}"
    assert data["jobs"] == []


@pytest.fixture
def locked_key(tmp_path: Path, sshd: Sshd) -> Iterator[Path]:
    """A passphrase-protected key the local sshd accepts (removed afterwards)."""
    key = tmp_path / "id_locked"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "right-one", "-f", str(key)], check=True)
    original = sshd.authorized.read_text()
    sshd.authorized.write_text(original + (tmp_path / "id_locked.pub").read_text())
    try:
        yield key
    finally:
        sshd.authorized.write_text(original)


def test_a_wrong_passphrase_is_asked_again_and_its_error_is_about_the_passphrase(tmp_path, sshd, locked_key):
    known = tmp_path / "known_hosts"
    known.write_text(sshd.known_hosts_line)
    config = write_ssh_config(tmp_path / "ssh_config", sshd, known, str(locked_key))
    asked: list[bool] = []

    def answers(*typed: str):
        replies = list(typed)

        def passphrase(path: str, retry: bool = False) -> str:
            assert path == str(locked_key)
            asked.append(retry)
            return replies.pop(0)

        return passphrase

    # Two typos, then the right one: OpenSSH's "Bad passphrase, try again", and in.
    with SshConnection.from_spec(ALIAS, config_path=config, system_known_hosts=(), use_agent=False,
                                 passphrase=answers("typo", "typo again", "right-one")) as conn:
        conn.connect()
        assert conn.connected
    assert asked == [False, True, True]

    asked.clear()
    with pytest.raises(AuthenticationFailed) as failed:
        SshConnection.from_spec(ALIAS, config_path=config, system_known_hosts=(), use_agent=False,
                                passphrase=answers(*["wrong"] * PASSPHRASE_TRIES)).connect()
    assert asked == [False] + [True] * (PASSPHRASE_TRIES - 1)
    line = failed.value.one_line()
    assert f"wrong passphrase for {locked_key} ({PASSPHRASE_TRIES} tries)" in line, line
    assert f"ssh-add {locked_key}" in line
    assert "authorized_keys" not in line, line  # the server never saw the key


def test_the_terminal_prompt_says_a_retry_is_a_retry(tmp_path, sshd, locked_key):
    """The CLI's prompt on a real terminal (a pty): OpenSSH's words for a retry."""
    known = tmp_path / "known_hosts"
    known.write_text(sshd.known_hosts_line)
    config = write_ssh_config(tmp_path / "ssh_config", sshd, known, str(locked_key))
    home = tmp_path / "home"
    from hpcwizard.project.state import update_state

    update_state(home / "hpcwizard", lambda s: setattr(s, "wizard_step", "done"))
    import pty

    pid, fd = pty.fork()
    if pid == 0:  # the child: hpcwizard with the pty as its terminal
        os.execv(sys.executable, [sys.executable, "-m", "hpcwizard", "status", "--once", "--project-home",
                                  str(home), *remote_args(config)])
    seen = b""

    def read_until(text: bytes) -> None:
        nonlocal seen
        while text not in seen:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                chunk = b""
            if not chunk:
                pytest.fail(f"hpcwizard ended before {text!r}; it wrote {seen!r}")
            seen += chunk

    try:
        read_until(f"Enter passphrase for key '{locked_key}'".encode())
        os.write(fd, b"nope\n")
        read_until(f"Bad passphrase, try again for '{locked_key}'".encode())
        os.write(fd, b"right-one\n")
        read_until(b"no jobs submitted from this project yet")
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0, seen


# --------------------------------------------------------------------------
# The project home: nothing created on connect, a forbidden one in one line


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def tui_for(config: Path, *argv: str):
    """The app exactly as ``hpcwizard --host ... --project-home ...`` builds it."""
    from hpcwizard.cli import build_parser, build_tui

    args = build_parser().parse_args([*argv, "--host", ALIAS, "--ssh-config", str(config),
                                      "--remote-hpcwizard", REMOTE_HPCWIZARD])
    return args, build_tui(args, "wizard")


def user_config(tmp_path: Path, sshd: Sshd, user: str) -> Path:
    """:func:`pinned_ssh_config` for another user of the login node."""
    config = pinned_ssh_config(tmp_path, sshd)
    config.write_text(config.read_text().replace("User root", f"User {user}"))
    return config


@pytest.mark.anyio
async def test_the_remote_wizard_creates_the_project_home_only_once_the_user_goes_on(tmp_path, login_config):
    from hpcwizard.project import session
    from hpcwizard.project.home import Project
    from test_wizard import screen_text, start_new, wait_for

    home = tmp_path / "nope" / "deeper"
    args, app = tui_for(login_config, "--project-home", str(home))
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_for(pilot, lambda: type(app.screen).__name__ == "WelcomeStep"
                           and app.screen.saved is not None, what="the welcome step")
            assert not app.screen.saved.exists
            await wait_for(pilot, lambda: "does not exist yet: it is created when you start" in screen_text(app),
                           what="the welcome's words")
            assert not (tmp_path / "nope").exists()  # connecting created nothing, no lock either
            await start_new(pilot)  # going on creates it, and locks it as locally
            assert (home / "hpcwizard" / "wizard.lock").is_file()
    finally:
        args._ssh_connection.close()
        session.release_project_lock(Project(home))


@pytest.mark.anyio
async def test_a_project_home_the_login_node_user_cannot_create_is_one_line(tmp_path, sshd: Sshd):
    from hpcwizard.tui.screens.connect import ConnectScreen
    from test_wizard import wait_for

    assert (os.stat("/root").st_mode & 0o077) == 0, "the test needs /root closed to other users"
    config = user_config(tmp_path, sshd, sshd.test_user)
    args, app = tui_for(config, "--project-home", "/root/forbidden/x")
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, ConnectScreen) and app.screen.failure is not None,
                           what="the failure")
            line = app.screen.failure.one_line()
    finally:
        args._ssh_connection.close()
    assert line.startswith(f"cannot write the project's files in /root/forbidden/x on {sshd.test_user}@"), line
    assert "/root" in line and "ermission denied" in line, line
    assert "could not connect" not in line and "bug" not in line and "PermissionError" not in line, line


def test_a_local_project_home_a_user_cannot_create_is_one_line(tmp_path, sshd: Sshd):
    """Locally, as a user who is not root (root may write anywhere): the
    wizard refuses before the TUI, in one line. The process drops to the
    login node's test user after importing hpcwizard (this machine's Python
    lives under /root, which that user cannot read). Building the parser
    first loads what argparse imports lazily (gettext, and on Python 3.9
    locale, which 3.10+ has loaded at start)."""
    import pwd

    user = pwd.getpwnam(sshd.test_user)
    script = (
        "import os, sys\n"
        "import hpcwizard.cli, hpcwizard.project.home, hpcwizard.project.session, hpcwizard.tui.app\n"
        "hpcwizard.cli.build_parser()\n"
        f"os.setgroups([]); os.setgid({user.pw_gid}); os.setuid({user.pw_uid})\n"
        f"os.environ['HOME'] = {user.pw_dir!r}\n"
        "sys.exit(hpcwizard.cli.main(['--project-home', '/root/forbidden/x']))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                            stdin=subprocess.DEVNULL, cwd="/tmp")
    line = one_line_error(result)
    assert line == ("hpcwizard: cannot write the project's files in /root/forbidden/x (/root is not writable "
                    "by you); choose a folder you can write (--project-home, or project_home in the plan)"), line


# --------------------------------------------------------------------------
# The dashboard's log over SSH: an error note goes once reading works again


@pytest.mark.anyio
async def test_the_log_header_drops_its_read_error_once_the_connection_is_back(tmp_path, sshd: Sshd):
    from hpcwizard.remote import SftpFileSource, SshRunner
    from hpcwizard.tui.widgets.log_panel import READ_ERROR_NOTE, LogPanel
    from test_dashboard import PanelApp, job_row, until
    from test_remote import kill_and_wait, make_connection, session_process

    known = tmp_path / "known_hosts"
    known.write_text(sshd.known_hosts_line)
    # One reconnect attempt: with the sshd down, a read fails at once.
    conn = make_connection(sshd, known, reconnect_attempts=1, backoff_initial=0.05)
    row = job_row(tmp_path)
    log = Path(row.log_out)
    log.parent.mkdir(parents=True)
    log.write_text("".join(f"line {i}\n" for i in range(1, 21)))
    local_sshd = REPO / "scripts" / "local-sshd"
    app = PanelApp(lambda path: SftpFileSource(conn, path))
    try:
        async with app.run_test(size=(120, 36)) as pilot:
            panel = app.query_one(LogPanel)
            panel.follow(row)
            await until(pilot, "the log over SFTP", lambda: "line 20" in panel.shown_lines)
            header = panel.query_one("#log-header")
            # The login node goes away: its sshd stops listening and this connection dies.
            serving = session_process(sshd, SshRunner(conn))
            subprocess.run([str(local_sshd), "stop"], check=True, capture_output=True)
            kill_and_wait(serving)
            await until(pilot, "the read error in the header",
                        lambda: READ_ERROR_NOTE in str(header.render()), timeout=30)
            # Back: the next poll reconnects and reads the lines written meanwhile.
            subprocess.run([str(local_sshd), "start"], check=True, capture_output=True)
            with log.open("a") as handle:  # noqa: ASYNC230 - a local test file
                handle.write("line 21 after the reconnect\n")
            await until(pilot, "the new line", lambda: "line 21 after the reconnect" in panel.shown_lines,
                        timeout=30)
            await until(pilot, "the header without the old error",
                        lambda: READ_ERROR_NOTE not in str(header.render()), timeout=5)
            assert conn.reconnects >= 1
    finally:
        subprocess.run([str(local_sshd), "start"], capture_output=True)  # whatever happened, the module's sshd runs
        conn.close()

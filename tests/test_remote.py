"""Remote mode over a real sshd on loopback (scripts/local-sshd) and the real
local Slurm cluster. Never skipped: an sshd that cannot start is a failure.

The sshd runs on this machine, so a test can create or append a file locally
and read it over SFTP, and can find (and kill) the sshd process serving one
connection.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import paramiko
import pytest

from conftest import Sshd  # the sshd fixture lives in conftest.py (shared with test_remote_cli.py)
from hpcwizard.errors import CommandTimeout, UserError
from hpcwizard.jobs.logtail import FileStat, LogFollower
from hpcwizard.remote import (
    AuthenticationFailed,
    ConnectionEvent,
    ConnectionLost,
    HostKeyChanged,
    HostKeyUnknown,
    RemoteFiles,
    SftpFileSource,
    SshConnection,
    SshRunner,
    parse_host,
    remote_command,
    resolve,
    terminal_prompts,
)
from hpcwizard.remote.prompts import ask_host_key_on_terminal
from hpcwizard.remote.target import HostSpecError
from hpcwizard.slurm import SlurmClient

pytestmark = pytest.mark.timeout(120)

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 10.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what} (last: {value!r})")
        time.sleep(0.05)


# --------------------------------------------------------------------------
# Fixtures


@pytest.fixture
def known_hosts(tmp_path: Path, sshd: Sshd) -> Path:
    """A known_hosts that pins the local sshd's host key."""
    path = tmp_path / "known_hosts"
    path.write_text(sshd.known_hosts_line)
    return path


def make_connection(sshd: Sshd, known_hosts: Path, *, user: str = "root", **options) -> SshConnection:
    host = resolve(f"{user}@{HOST}:{sshd.port}", config_path=os.devnull)
    host = replace(host, identity_files=(sshd.key,))
    options.setdefault("use_agent", False)
    options.setdefault("system_known_hosts", ())
    options.setdefault("identity_dir", "/nonexistent")
    return SshConnection(host, known_hosts=known_hosts, **options)


@pytest.fixture
def conn(sshd: Sshd, known_hosts: Path) -> Iterator[SshConnection]:
    connection = make_connection(sshd, known_hosts)
    try:
        yield connection
    finally:
        connection.close()


def proc_stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` after the command name (state, ppid, ...),
    or None once the process is gone.

    A process may exit at any moment, also between open() and read(): the
    read then fails with ESRCH (ProcessLookupError), not ENOENT
    (FileNotFoundError). CI met exactly that once in 712 tests.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat.rsplit(")", 1)[1].split()


def session_process(sshd: Sshd, runner: SshRunner) -> int:
    """Pid of the sshd child (below the master) serving ``runner``'s connection."""
    pid = int(runner.run(["sh", "-c", "echo $PPID"]).check().stdout)
    master = sshd.master_pid
    while True:
        fields = proc_stat(pid)
        if fields is None:
            pytest.fail(f"process {pid} exited while looking for the sshd session above it")
        ppid = int(fields[1])
        if ppid == master:
            return pid
        assert ppid > 1, "walked past the sshd master"
        pid = ppid


def kill_and_wait(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # already gone is as good
        os.kill(pid, signal.SIGKILL)

    def gone() -> bool:
        fields = proc_stat(pid)
        return fields is None or fields[0] == "Z"

    wait_for(f"sshd session {pid} to die", gone)


# --------------------------------------------------------------------------
# Slurm through the "login node"


def test_slurm_client_over_ssh(conn: SshConnection, sshd: Sshd, tmp_path: Path) -> None:
    runner = SshRunner(conn)
    client = SlurmClient(runner)
    names = {p.name for p in client.partitions()}
    assert {"cpu", "gpu"} <= names

    # The script is written over SFTP, then submitted (held, so it stays
    # queued whatever the shared node is doing) and cancelled, all over SSH.
    script = f"{tmp_path}/remote job.sbatch"
    RemoteFiles(conn).write_text_atomic(
        script,
        "#!/bin/bash\n#SBATCH --job-name=hpcw-remote\n"
        f"#SBATCH --output={tmp_path}/%j.out\n#SBATCH --cpus-per-task=1\n#SBATCH --mem=64M\n#SBATCH --time=2\n"
        "echo hello\n",
    )
    job_id = client.submit(script, hold=True)
    try:
        entries = client.queue([job_id])
        assert [e.job_id for e in entries] == [job_id]
        assert entries[0].name == "hpcw-remote"
        assert client.user() == "root"
    finally:
        client.cancel([job_id])

    def cancelled() -> str | None:
        entries = client.queue([job_id])
        if not entries:
            return "forgotten"
        return entries[0].state.value if entries[0].state.value == "CANCELLED" else None

    wait_for("the job to be cancelled", cancelled)
    assert conn.reconnects == 0  # everything went over one connection


def test_hostile_argv_and_env_arrive_verbatim(conn: SshConnection, tmp_path: Path) -> None:
    runner = SshRunner(conn)
    pwned = tmp_path / "PWNED"
    values = [
        f"$(touch {pwned})",
        f"`touch {pwned}`",
        f"; touch {pwned}",
        "it's \"quoted\"",
        "two  spaces ",
        "line1\nline2\n",
        "*",
        "~",
        "-n",
        "",
        "back\\slash $HOME",
        "ünïcode ✓",
    ]
    result = runner.run(["printf", "%s\\0", *values]).check()
    assert result.stdout.split("\0")[:-1] == values
    hostile_env = {"HPCW_VALUE": f"a b $(touch {pwned}) 'q'\nnext"}
    result = runner.run(["sh", "-c", 'printf %s "$HPCW_VALUE"'], env=hostile_env).check()
    assert result.stdout == hostile_env["HPCW_VALUE"]
    # stdin arrives verbatim too, and the command sees EOF after it.
    assert runner.run(["cat"], stdin="x $(y)\n'z'").check().stdout == "x $(y)\n'z'"
    assert not pwned.exists()
    with pytest.raises(ValueError):
        remote_command(["true"], {"BAD NAME": "x"})


def test_a_token_exported_on_the_login_node_never_reaches_a_command(conn: SshConnection, tmp_path: Path) -> None:
    """sbatch copies its environment into the job's record: HF_TOKEN from a
    .bashrc there is removed from every command hpcwizard runs."""
    runner = SshRunner(conn)
    command = remote_command(["sbatch", "x.sbatch"])
    assert command.startswith("env -u HF_TOKEN -u HUGGING_FACE_HUB_TOKEN -- ")
    with pytest.raises(ValueError):
        remote_command(["true"], {"HF_TOKEN": "hf_x"})
    # The real remote env: a wrapper that exports a token and runs us (as a login shell would).
    seen = runner.run(["sh", "-c", "HF_TOKEN=hf_leak; export HF_TOKEN; " + command.replace("sbatch x.sbatch", "printenv")])
    assert "HF_TOKEN" not in seen.stdout and seen.ok


class LoginNode(SshRunner):
    """The login node with ``variables`` in its shell's environment (as a
    user's .bashrc may set them), recording every argv."""

    def __init__(self, connection: SshConnection, **variables: str) -> None:
        super().__init__(connection)
        self.variables = variables
        self.argvs: list[list[str]] = []

    def run(self, argv, **kwargs):
        self.argvs.append(list(argv))
        return super().run(argv, env={**(kwargs.pop("env", None) or {}), **self.variables}, **kwargs)


def test_token_stored_on_the_login_node_is_private_from_the_first_byte(conn: SshConnection, tmp_path: Path) -> None:
    from hpcwizard.checks.hftoken import inspect_token_file, store_token

    home = tmp_path / "hf home"
    login = LoginNode(conn, HF_HOME=str(home))
    token = "hf_store_canary_81f2"
    stored = store_token(token, login)
    found = inspect_token_file(login)
    assert stored.path == str(home / "token") == found.path and stored.created_folder and stored.warning is None
    assert (home / "token").read_text() == token
    assert oct((home / "token").stat().st_mode & 0o777) == "0o600" and found.mode == 0o600 and not found.loose
    assert found.present and found.size == len(token)
    assert oct(home.stat().st_mode & 0o777) == "0o700"
    assert os.listdir(home) == ["token"]  # no temp file left, no second copy
    assert all(token not in " ".join(argv) for argv in login.argvs)  # only on stdin


def test_the_login_nodes_token_file_follows_its_own_environment(conn: SshConnection, tmp_path: Path) -> None:
    """HF_TOKEN_PATH and XDG_CACHE_HOME of the login node's shell decide where
    its token file is (the jobs read it there), not this machine's."""
    from hpcwizard.checks.hftoken import inspect_token_file, store_token

    # HF_HOME empty: the local sshd sets one for its users, and it would come first.
    xdg = LoginNode(conn, XDG_CACHE_HOME=str(tmp_path / "xdg cache"), HF_HOME="")
    stored = store_token("hf_xdg_canary", xdg)
    assert stored.path == str(tmp_path / "xdg cache" / "huggingface" / "token")
    assert inspect_token_file(xdg).present

    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # an existing folder others may write: kept as it is, and said
    explicit = LoginNode(conn, HF_TOKEN_PATH=str(shared / "my token"), HF_HOME=str(tmp_path / "ignored"))
    stored = store_token("hf_path_canary", explicit)
    assert stored.path == str(shared / "my token") and not stored.created_folder
    assert oct(shared.stat().st_mode & 0o7777) == "0o1777"
    assert stored.warning is not None and "writable by other users" in stored.warning
    assert inspect_token_file(explicit).warning == stored.warning
    assert not (tmp_path / "ignored").exists()


def test_runner_errors_like_local_runner(conn: SshConnection) -> None:
    runner = SshRunner(conn)
    result = runner.run(["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (result.returncode, result.stdout, result.stderr) == (3, "out\n", "err\n")
    with pytest.raises(UserError, match=f"no-such-program-hpcw not found on {re.escape(conn.host.display)}"):
        runner.run(["no-such-program-hpcw", "--version"])
    assert runner.which("sinfo") == shutil.which("sinfo")
    assert runner.which("no-such-program-hpcw") is None
    assert runner.which("$(touch /tmp/hpcw-which-pwned)") is None
    assert not Path("/tmp/hpcw-which-pwned").exists()


def test_hanging_command_times_out(conn: SshConnection) -> None:
    runner = SshRunner(conn)
    runner.run(["true"]).check()  # connected before the clock starts
    started = time.monotonic()
    with pytest.raises(CommandTimeout, match="sleep did not answer within 1 s"):
        runner.run(["sleep", "30"], timeout=1)
    assert time.monotonic() - started < 3
    # The connection is still fine afterwards.
    assert runner.run(["echo", "ok"]).check().stdout == "ok\n"
    assert conn.reconnects == 0


def test_timed_out_command_is_terminated_on_the_server(sshd: Sshd, known_hosts: Path) -> None:
    # OpenSSH signals a session's processes on request for ordinary users
    # (not for root sessions, which run without privilege separation).
    marker = f"{27 + (os.getpid() % 1000) / 1000:.3f}"  # a sleep argument only this test uses

    def still_sleeping() -> bool:
        ps = subprocess.run(["ps", "-eo", "args="], capture_output=True, text=True, check=True).stdout
        return f"sleep {marker}" in ps.splitlines()

    with make_connection(sshd, known_hosts, user=sshd.test_user) as connection:
        runner = SshRunner(connection)
        assert runner.run(["id", "-un"]).check().stdout.strip() == sshd.test_user
        with pytest.raises(CommandTimeout):
            runner.run(["sleep", marker], timeout=1)
        wait_for("the remote sleep to be terminated", lambda: not still_sleeping(), timeout=5)


# --------------------------------------------------------------------------
# Host keys


def test_unknown_host_key_refused_without_consent(sshd: Sshd, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    asked: list[tuple[str, str, str]] = []

    def say_no(name: str, key_type: str, fingerprint: str) -> bool:
        asked.append((name, key_type, fingerprint))
        return False

    with pytest.raises(HostKeyUnknown, match="was not accepted") as refused:
        make_connection(sshd, empty, ask_host_key=say_no).connect()
    assert asked == [(f"[{HOST}]:{sshd.port}", "ssh-ed25519", sshd.fingerprint())]
    assert "\n" not in str(refused.value)

    # No callback at all: refused, with the way to add the key.
    with pytest.raises(HostKeyUnknown) as refused:
        make_connection(sshd, empty).connect()
    message = str(refused.value)
    assert f"ssh-keyscan -p {sshd.port} {HOST} >> {empty}" in message
    assert sshd.fingerprint() in message and "\n" not in message

    # The CLI without a terminal (stdin is not a TTY): same refusal.
    ask, passphrase = terminal_prompts(io.StringIO("yes\n"))
    assert ask is None and passphrase is None
    with pytest.raises(HostKeyUnknown, match="ssh-keyscan"):
        make_connection(sshd, empty, ask_host_key=ask).connect()
    assert not empty.exists()  # nothing was saved


def test_unknown_host_key_accepted_with_consent_and_saved(sshd: Sshd, tmp_path: Path) -> None:
    path = tmp_path / "ssh" / "known_hosts"
    with make_connection(sshd, path, ask_host_key=lambda *a: True) as accepted:
        assert SshRunner(accepted).run(["true"]).ok
    line = path.read_text()
    assert line.startswith(f"[{HOST}]:{sshd.port} ssh-ed25519 ")
    assert line.split()[2] == sshd.host_pub.read_text().split()[1]
    assert oct(path.stat().st_mode & 0o777) == "0o600"

    def must_not_ask(*args: object) -> bool:
        raise AssertionError("asked again for a saved key")

    with make_connection(sshd, path, ask_host_key=must_not_ask) as again:
        assert SshRunner(again).run(["true"]).ok


def test_terminal_prompt_defaults_to_no() -> None:
    for answer, expected in [("yes\n", True), ("YES\n", True), ("\n", False), ("y\n", False), ("no\n", False), ("", False),
                             ("SHA256:abc\n", True)]:
        err = io.StringIO()
        assert ask_host_key_on_terminal("[h]:22", "ssh-ed25519", "SHA256:abc", stdin=io.StringIO(answer), stderr=err) is expected
        assert "ED25519 key fingerprint is SHA256:abc." in err.getvalue()


def test_changed_host_key_is_always_refused(sshd: Sshd, tmp_path: Path) -> None:
    keygen = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keygen)], check=True)
    fake_pub = (tmp_path / "other.pub").read_text().split()
    path = tmp_path / "known_hosts"
    path.write_text(f"# keep me\n[{HOST}]:{sshd.port} {fake_pub[0]} {fake_pub[1]}\n")
    before = path.read_text()

    def must_not_ask(*args: object) -> bool:
        raise AssertionError("a changed key must never be offered for acceptance")

    with pytest.raises(HostKeyChanged) as refused:
        make_connection(sshd, path, ask_host_key=must_not_ask).connect()
    message = str(refused.value)
    assert "HAS CHANGED" in message and sshd.fingerprint() in message
    assert f"ssh-keygen -f {path} -R '[{HOST}]:{sshd.port}'" in message
    assert "\n" not in message
    assert path.read_text() == before


def test_known_hosts_markers_are_understood_and_revoked_keys_refused(sshd: Sshd, tmp_path: Path) -> None:
    """Sites with host certificates have @cert-authority lines (paramiko
    raises on them): they are skipped, the plain entries still pin the host.
    A key marked @revoked is refused even when the user would trust it."""
    ca = tmp_path / "ca"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(ca)], check=True)
    ca_pub = (tmp_path / "ca.pub").read_text().strip()
    path = tmp_path / "known_hosts"
    path.write_text(f"@cert-authority *.example.org {ca_pub}\n{sshd.known_hosts_line}")
    with make_connection(sshd, path) as pinned:
        assert SshRunner(pinned).run(["true"]).ok
    key_type, key = sshd.host_pub.read_text().split()[:2]
    path.write_text(f"@revoked [{HOST}]:{sshd.port} {key_type} {key}\n")
    with pytest.raises(HostKeyChanged, match="marked @revoked in known_hosts") as refused:
        make_connection(sshd, path, ask_host_key=lambda *a: True).connect()
    assert "\n" not in str(refused.value)
    assert "@revoked" in path.read_text() and path.read_text().count("\n") == 1  # nothing added


# --------------------------------------------------------------------------
# Authentication


def test_wrong_key_gives_one_clear_line(sshd: Sshd, known_hosts: Path, tmp_path: Path) -> None:
    wrong = tmp_path / "id_wrong"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(wrong)], check=True)
    host = replace(resolve(f"root@{HOST}:{sshd.port}", config_path=os.devnull), identity_files=(str(wrong),))
    connection = SshConnection(host, known_hosts=known_hosts, use_agent=False, system_known_hosts=())
    with pytest.raises(AuthenticationFailed) as refused:
        connection.connect()
    message = str(refused.value)
    assert "\n" not in message
    assert f"root@{HOST}:{sshd.port}" in message and str(wrong) in message
    assert "authorized_keys" in message and f"ssh -p {sshd.port} root@{HOST}" in message

    # No key at all is a different, equally clear line.
    bare = replace(host, identity_files=())
    with pytest.raises(AuthenticationFailed, match="no SSH key"):
        SshConnection(bare, known_hosts=known_hosts, use_agent=False, system_known_hosts=(),
                      identity_dir=tmp_path / "empty").connect()


def test_encrypted_key_asks_for_its_passphrase(sshd: Sshd, known_hosts: Path, tmp_path: Path) -> None:
    key = tmp_path / "id_locked"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "s3cret", "-f", str(key)], check=True)
    original = sshd.authorized.read_text()
    sshd.authorized.write_text(original + (tmp_path / "id_locked.pub").read_text())
    try:
        host = replace(resolve(f"root@{HOST}:{sshd.port}", config_path=os.devnull), identity_files=(str(key),))
        asked: list[str] = []

        def passphrase(path: str) -> str:
            asked.append(path)
            return "s3cret"

        with SshConnection(host, known_hosts=known_hosts, use_agent=False, system_known_hosts=(),
                           passphrase=passphrase) as unlocked:
            assert SshRunner(unlocked).run(["true"]).ok
        assert asked == [str(key)]

        # No way to ask (no terminal): a clear error pointing at ssh-add.
        with pytest.raises(AuthenticationFailed, match="ssh-add"):
            SshConnection(host, known_hosts=known_hosts, use_agent=False, system_known_hosts=()).connect()
    finally:
        sshd.authorized.write_text(original)


# --------------------------------------------------------------------------
# Reconnection


def test_killed_connection_reconnects_by_itself(sshd: Sshd, known_hosts: Path) -> None:
    events: list[ConnectionEvent] = []
    connection = make_connection(sshd, known_hosts, on_event=events.append, backoff_initial=0.1)
    runner = SshRunner(connection)
    try:
        first = session_process(sshd, runner)
        kill_and_wait(first)
        # The next command just works, on a new connection.
        assert runner.run(["echo", "back"]).check().stdout == "back\n"
        assert connection.reconnects == 1
        assert connection.status().last_reconnect_at is not None
        assert [e.kind for e in events] == ["connected", "lost", "reconnected"]
        assert session_process(sshd, runner) != first

        # The client side dropping the transport is handled the same way.
        connection.transport().close()
        assert runner.run(["echo", "again"]).check().stdout == "again\n"
        assert connection.reconnects == 2
    finally:
        connection.close()


def test_silent_server_is_replaced(sshd: Sshd, known_hosts: Path) -> None:
    # A peer that vanished without a word (suspended laptop, dead VPN) sends
    # no RST: the transport still looks alive. The command's deadline notices.
    with make_connection(sshd, known_hosts, backoff_initial=0.1) as connection:
        runner = SshRunner(connection)
        # Freeze the sshd process serving this connection (for root, without
        # privilege separation, the master's child handles the channels).
        frozen = session_process(sshd, runner)
        os.kill(frozen, signal.SIGSTOP)
        try:
            started = time.monotonic()
            assert runner.run(["echo", "ok"], timeout=2).check().stdout == "ok\n"
            assert time.monotonic() - started < 6
            assert connection.reconnects == 1
        finally:
            with contextlib.suppress(ProcessLookupError):  # must not hide the test's own failure
                os.kill(frozen, signal.SIGCONT)


def test_command_in_flight_when_connection_dies_is_not_rerun(sshd: Sshd, known_hosts: Path, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    connection = make_connection(sshd, known_hosts)
    runner = SshRunner(connection)
    try:
        session = session_process(sshd, runner)
        outcome: list[BaseException | object] = []

        def run() -> None:
            try:
                outcome.append(runner.run(["sh", "-c", 'echo ran >> "$1"; sleep 20', "sh", str(marker)], timeout=30))
            except BaseException as exc:  # noqa: BLE001 - recorded for the assert
                outcome.append(exc)

        worker = threading.Thread(target=run)
        worker.start()
        # Deadlines below the command's own 30 s (its timeout would be another
        # outcome), generous for a machine busy with other test suites.
        wait_for("the command to start", lambda: marker.exists() and marker.read_text() == "ran\n", timeout=25)
        kill_and_wait(session)
        wait_for("the command to give up on the dead connection", lambda: not worker.is_alive(), timeout=25)
        assert isinstance(outcome[0], ConnectionLost), outcome
        assert "may or may not have run" in str(outcome[0])
        assert marker.read_text() == "ran\n"  # run once, never re-run
        assert runner.run(["true"]).ok  # and the connection comes back
    finally:
        connection.close()


# --------------------------------------------------------------------------
# Files over SFTP


class CountingSource:
    """Wraps a FileSource and counts the bytes it returned."""

    def __init__(self, inner: SftpFileSource) -> None:
        self.inner = inner
        self.bytes_read = 0
        self.reads: list[tuple[int, int]] = []

    def stat(self) -> FileStat:
        return self.inner.stat()

    def read_at(self, offset: int, length: int) -> bytes:
        data = self.inner.read_at(offset, length)
        self.reads.append((offset, len(data)))
        self.bytes_read += len(data)
        return data

    def close(self) -> None:
        self.inner.close()


def test_sftp_source_reads_only_appended_bytes(conn: SshConnection, tmp_path: Path) -> None:
    log = tmp_path / "train-42.out"
    log.write_text("".join(f"step {i} loss 0.{i:04d}\n" for i in range(50000)))
    size = log.stat().st_size
    source = CountingSource(SftpFileSource(conn, str(log)))
    follower = LogFollower(source)
    tail = follower.open_tail(20)
    assert tail[-1] == "step 49999 loss 0.49999"
    assert source.bytes_read <= 64 * 1024 < size / 10  # the tail only, not the file

    source.bytes_read = 0
    source.reads.clear()
    appended = "step 50000 loss 0.50000\nstep 50001 loss 0.50001\npartial"
    with log.open("a") as out:
        out.write(appended)
    update = follower.poll()
    assert update.lines == ["step 50000 loss 0.50000", "step 50001 loss 0.50001"]
    assert update.partial == "partial"
    assert source.bytes_read == len(appended.encode())
    assert source.reads == [(size, len(appended))]

    # Nothing appended: a poll reads nothing.
    source.bytes_read = 0
    assert not follower.poll().changed
    assert source.bytes_read == 0
    assert source.stat().identity is None  # SFTP v3 has no inode (see files.py)

    # The handle is reopened after the connection drops.
    conn.transport().close()
    with log.open("a") as out:
        out.write(" done\n")
    assert follower.poll().lines == ["partial done"]
    assert conn.reconnects == 1

    # Truncation (a requeued job reopening its log) is seen.
    log.write_text("restarted\n")
    update = follower.poll()
    assert update.truncated and update.lines == ["restarted"]
    follower.close()

    missing = SftpFileSource(conn, str(tmp_path / "not-yet.out"))
    with pytest.raises(FileNotFoundError):
        missing.stat()
    assert LogFollower(missing).poll().missing


def test_remote_files(conn: SshConnection, tmp_path: Path) -> None:
    files = RemoteFiles(conn)
    target = tmp_path / "a b" / "$(x)" / "c"
    files.mkdir_p(str(target))
    files.mkdir_p(str(target))  # idempotent
    assert target.is_dir() and files.is_dir(str(target))
    path = f"{target}/state.yaml"
    assert not files.exists(path)
    files.write_text_atomic(path, "first: 1\n", mode=0o600)
    files.write_text_atomic(path, "second: ✓\n", mode=0o600)
    assert files.read_text(path) == "second: ✓\n"
    assert Path(path).read_text() == "second: ✓\n"
    assert Path(path).stat().st_mode & 0o777 == 0o600
    assert files.listdir(str(target)) == ["state.yaml"]  # no temp file left behind
    assert files.exists(path)
    big = os.urandom(300_000)
    files.write_bytes_atomic(f"{target}/blob", big)
    assert files.read_bytes(f"{target}/blob") == big
    assert files.home() == "/root"
    with pytest.raises(FileNotFoundError):
        files.read_text(f"{target}/missing")
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError):
        files.mkdir_p(str(tmp_path / "file" / "sub"))


# --------------------------------------------------------------------------
# Targets and ~/.ssh/config


def test_parse_host() -> None:
    assert parse_host("login.example.org") == parse_host("login.example.org")
    t = parse_host("alice@login.example.org:2200")
    assert (t.user, t.host, t.port) == ("alice", "login.example.org", 2200)
    t = parse_host("[::1]:22")
    assert (t.user, t.host, t.port) == (None, "::1", 22)
    for bad in ["", "-oProxyCommand=x", "host:0", "host:99999", "host:x", "a b", "bad user@host", "[::1", "h;rm"]:
        with pytest.raises(HostSpecError):
            parse_host(bad)


def test_ssh_config_resolution(sshd: Sshd, known_hosts: Path, tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text(
        f"""
Host hpc-login
    HostName {HOST}
    User root
    Port {sshd.port}
    IdentityFile {sshd.key}
    ServerAliveInterval 7
    ConnectTimeout 9

Host hpc-jumped
    HostName {HOST}
    Port {sshd.port}
    User root
    IdentityFile {sshd.key}
    ProxyJump hpc-login

Host hop-a
    ProxyJump hop-b
Host hop-b
    HostName b.example.org
Host hop-c
    ProxyJump hop-a,alice@hop-b:2201
Host loop
    ProxyJump loop
"""
    )
    host = resolve("hpc-login", config_path=config)
    assert (host.hostname, host.user, host.port, host.identity_files) == (HOST, "root", sshd.port, (sshd.key,))
    assert (host.server_alive_interval, host.connect_timeout, host.jumps) == (7.0, 9.0, ())
    # The command line wins over the config, as with ssh.
    override = resolve("alice@hpc-login:2200", config_path=config)
    assert (override.user, override.port, override.hostname) == ("alice", 2200, HOST)
    chain = resolve("hop-c", config_path=config)
    assert [(j.hostname, j.user, j.port) for j in chain.jumps] == [
        ("b.example.org", chain.user, 22), ("hop-a", chain.user, 22), ("b.example.org", "alice", 2201)]
    with pytest.raises(UserError, match="loops"):
        resolve("loop", config_path=config)

    with SshConnection(host, known_hosts=known_hosts, use_agent=False, system_known_hosts=()) as direct:
        assert direct.keepalive == 7.0 and direct.connect_timeout == 9.0
        assert SshRunner(direct).run(["id", "-un"]).check().stdout == "root\n"

    # ProxyJump through the same sshd to itself: a direct-tcpip channel.
    jumped = resolve("hpc-jumped", config_path=config)
    assert [(j.hostname, j.port) for j in jumped.jumps] == [(HOST, sshd.port)]
    with SshConnection(jumped, known_hosts=known_hosts, use_agent=False, system_known_hosts=()) as through:
        runner = SshRunner(through)
        assert runner.run(["id", "-un"]).check().stdout == "root\n"
        assert isinstance(through.transport().sock, paramiko.Channel)  # tunnelled, not a TCP socket
        assert RemoteFiles(through).exists(str(config))
        # Losing the tunnel reconnects the whole chain.
        through.transport().close()
        assert runner.run(["echo", "ok"]).check().stdout == "ok\n"
        assert through.reconnects == 1


def test_an_sftp_call_that_gets_no_answer_is_one_line_not_a_reconnect(sshd: Sshd, known_hosts: Path) -> None:
    """The login node's sshd stops answering (its session process group
    stopped: a hung file system looks the same): the SFTP call ends after
    sftp_timeout with its one line. On Python 3.9 a socket timeout is not a
    TimeoutError, and with_sftp once took it for a dropped connection there:
    it reconnected and tried again instead of saying so."""
    connection = make_connection(sshd, known_hosts, sftp_timeout=1.0)
    group = None
    try:
        connection.with_sftp(lambda sftp: sftp.stat("/"))  # the SFTP session is open
        group = os.getpgid(session_process(sshd, SshRunner(connection)))
        assert group != os.getpgid(sshd.master_pid)  # each session has its own group (setsid)
        os.killpg(group, signal.SIGSTOP)
        with pytest.raises(UserError, match=r"^SFTP on \S+ did not answer within 1 s; "):
            connection.with_sftp(lambda sftp: sftp.stat("/"))
        assert connection.reconnects == 0
    finally:
        if group is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGCONT)
        connection.close()


def test_unreachable_login_node_is_a_slurm_outage_not_a_crash(sshd: Sshd, known_hosts: Path) -> None:
    """The dashboard backs off on SlurmUnavailable: a login node that cannot be
    reached must surface as that, while host-key problems stay loud."""
    import socket

    from hpcwizard.slurm import SlurmUnavailable

    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind((HOST, 0))
        dead_port = probe.getsockname()[1]
    host = replace(resolve(f"root@{HOST}:{dead_port}", config_path=os.devnull), identity_files=(sshd.key,))
    connection = SshConnection(host, known_hosts=known_hosts, use_agent=False, system_known_hosts=(),
                               identity_dir="/nonexistent", reconnect_attempts=1, backoff_initial=0.05)
    try:
        with pytest.raises(SlurmUnavailable) as caught:
            SlurmClient(SshRunner(connection)).queue(me=True)
        assert "squeue" in caught.value.one_line()
    finally:
        connection.close()

"""Remote mode end to end: ``hpcwizard ... --host`` over the real sshd on
loopback (scripts/local-sshd, fixture in conftest.py) and the real local Slurm.

The "login node" is this machine reached through sshd as root, so a test can
look at the files it wrote "remotely" with plain local reads. The host is
named through a temp SSH config (HostName, Port, User, IdentityFile,
IdentitiesOnly, UserKnownHostsFile), exactly as a user's ~/.ssh/config would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import Sshd
from hpcwizard.checks.hftoken import locate_token_file
from hpcwizard.cli import main
from hpcwizard.demo import build_demo_hub
from hpcwizard.devhub import DevHub
from hpcwizard.project.files import SshFiles
from hpcwizard.project.recipe import get_recipe
from hpcwizard.project.state import ProjectLock, StateError, update_state
from hpcwizard.remote import SshConnection, SshRunner
from hpcwizard.sizes import human_bytes
from hpcwizard.slurm import JobState, SlurmClient

pytestmark = pytest.mark.timeout(120)

REPO = Path(__file__).resolve().parent.parent
REMOTE_HPCWIZARD = str(Path(sys.executable).with_name("hpcwizard"))
ALIAS = "hpcw-login"
CANARY = "hf_remote_canary_3b9d2f7a1c"


def write_ssh_config(path: Path, sshd: Sshd, known_hosts: Path, key: str) -> Path:
    path.write_text(
        f"Host {ALIAS}\n"
        f"  HostName 127.0.0.1\n  Port {sshd.port}\n  User root\n"
        f"  IdentityFile {key}\n  IdentitiesOnly yes\n"
        f"  UserKnownHostsFile {known_hosts}\n"
    )
    return path


def pinned_ssh_config(tmp_path: Path, sshd: Sshd) -> Path:
    """An SSH config naming the local sshd as ALIAS, its host key pinned."""
    known = tmp_path / "known_hosts"
    known.write_text(sshd.known_hosts_line)
    return write_ssh_config(tmp_path / "ssh_config", sshd, known, sshd.key)


@pytest.fixture
def ssh_config(tmp_path: Path, sshd: Sshd) -> Path:
    return pinned_ssh_config(tmp_path, sshd)


def remote_args(ssh_config: Path) -> list[str]:
    return ["--host", ALIAS, "--ssh-config", str(ssh_config), "--remote-hpcwizard", REMOTE_HPCWIZARD]


@pytest.fixture
def conn(ssh_config: Path) -> Iterator[SshConnection]:
    connection = SshConnection.from_spec(ALIAS, config_path=ssh_config, system_known_hosts=())
    try:
        yield connection
    finally:
        connection.close()


@pytest.fixture
def remote_token(conn: SshConnection) -> Iterator[str]:
    """The token file the jobs read on the login node, written over SFTP
    (0600); whatever was there before is put back afterwards."""
    files = SshFiles(conn)
    path = locate_token_file(SshRunner(conn))  # the local sshd's own HF_HOME (scripts/local-sshd)
    before = files.read_text(path) if files.exists(path) else None
    files.write_text_atomic(path, CANARY, mode=0o600)
    try:
        yield path
    finally:
        if before is None:
            files.remove(path, missing_ok=True)
        else:
            files.write_text_atomic(path, before, mode=0o600)


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def wait_finished(slurm: SlurmClient, ids: list[str], timeout: float = 90.0) -> dict[str, JobState]:
    deadline = time.monotonic() + timeout
    states: dict[str, JobState] = {}
    while time.monotonic() < deadline:
        states = {e.job_id: e.state for e in slurm.queue(ids)}
        missing = [i for i in ids if i not in states]
        if missing:
            states.update({f.job_id: f.state for f in slurm.finished(missing)})
        if len(states) == len(ids) and all(s.is_finished for s in states.values()):
            return states
        time.sleep(0.5)
    raise AssertionError(f"jobs {ids} did not finish within {timeout} s: {states}")


# --------------------------------------------------------------------------
# render / submit / status --host


def test_render_submit_status_over_ssh(tmp_path, capsys, monkeypatch, ssh_config, remote_token, slurm_runner):
    hub_root = tmp_path / "hub"
    build_demo_hub(hub_root, user="alice", token=CANARY)
    home = tmp_path / "remote project"
    plan = get_recipe("demo").default_plan(home, tmp_path / "data", hf_namespace="alice")
    plan_file = tmp_path / "local-plan.yaml"  # a LOCAL file; copies land on the login node
    plan_file.write_text(plan.to_yaml())
    monkeypatch.delenv("HF_TOKEN", raising=False)

    with DevHub(hub_root) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        out_dir = tmp_path / "rendered"
        code, out, err = run_cli(capsys, "render", str(plan_file), "--out", str(out_dir), *remote_args(ssh_config))
        assert code == 0, err
        written = out.split()
        assert written and all(Path(p).parent == out_dir and Path(p).is_file() for p in written)
        script = next(p for p in written if p.endswith(".sbatch"))
        # The jobs call the login node's hpcwizard (its Python -m hpcwizard), found and checked over SSH.
        assert f"HPCWIZARD=({sys.executable} -m hpcwizard)" in Path(script).read_text()
        assert os.stat(script).st_mode & 0o777 == 0o755

        code, out, err = run_cli(capsys, "submit", str(plan_file), "--json", *remote_args(ssh_config))
        assert code == 0, err
        jobs = json.loads(out)["jobs"]
        ids = [j["id"] for j in jobs]
        assert all(Path(j["script"]).is_file() for j in jobs)
        slurm = SlurmClient(slurm_runner)
        try:
            states = wait_finished(slurm, ids)
        finally:
            slurm.cancel(ids)
    logs = {p.name: p.read_text(errors="replace") for p in (home / "logs").iterdir()}
    assert states == {i: JobState.COMPLETED for i in ids}, logs
    assert (home / "demo" / "converted_weights" / "weights.json").is_file()

    # status after the command (as users type it), on the remote project home
    code, out, err = run_cli(capsys, "status", "--project-home", str(home), "--once", "--json", *remote_args(ssh_config))
    assert code == 0, err
    snapshot = json.loads(out)
    assert {j["job_id"]: j["state"] for j in snapshot["jobs"]} == {i: "COMPLETED" for i in ids}

    # The second submit of the same plan is refused, as locally.
    code, _, err = run_cli(capsys, "submit", str(plan_file), *remote_args(ssh_config))
    assert code != 0 and "already submitted" in err

    # The token: only in its 0600 file, never in anything the run wrote.
    for path in home.rglob("*"):
        if path.is_file() and path.stat().st_size < 5_000_000:
            assert CANARY.encode() not in path.read_bytes(), f"token leaked into {path}"


def test_submit_without_remote_token_says_so(tmp_path, capsys, conn, ssh_config, monkeypatch):
    files = SshFiles(conn)
    path = locate_token_file(SshRunner(conn))
    if files.exists(path):
        pytest.skip("the login node's user already has a token file")  # never clobber a real one
    plan = get_recipe("demo").default_plan(tmp_path / "p", tmp_path / "d", hf_namespace="alice")
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text(plan.to_yaml())
    code, _, err = run_cli(capsys, "submit", str(plan_file), *remote_args(ssh_config))
    assert code != 0
    assert "no Hugging Face token file on root@127.0.0.1" in err and "nothing was submitted" in err
    assert not (tmp_path / "p" / "hpcwizard" / "state.json").exists()


# --------------------------------------------------------------------------
# Connection errors: one line, non-zero exit


def test_unknown_host_key_is_refused_without_a_terminal(tmp_path, capsys, sshd):
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    config = write_ssh_config(tmp_path / "cfg", sshd, empty, sshd.key)
    code, out, err = run_cli(capsys, "status", "--once", "--project-home", "/tmp", "--host", ALIAS,
                             "--ssh-config", str(config))
    assert code != 0 and out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert "is not known" in err and f"ssh-keyscan -p {sshd.port} 127.0.0.1 >> {empty}" in err
    assert empty.read_text() == ""  # nothing accepted behind the user's back


def test_wrong_key_gives_a_clear_error(tmp_path, capsys, sshd):
    known = tmp_path / "known_hosts"
    known.write_text(sshd.known_hosts_line)
    key = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    config = write_ssh_config(tmp_path / "cfg", sshd, known, str(key))
    code, _, err = run_cli(capsys, "status", "--once", "--project-home", "/tmp", "--host", ALIAS,
                           "--ssh-config", str(config))
    assert code != 0
    assert "could not log in to root@127.0.0.1" in err and str(key) in err
    assert len(err.strip().splitlines()) == 1


# --------------------------------------------------------------------------
# Locks over SSH


def test_remote_lock_refuses_a_second_wizard(tmp_path, conn):
    home = tmp_path / "locked home"
    state_dir = home / "hpcwizard"
    remote = ProjectLock(state_dir, SshFiles(conn))
    remote.acquire()
    try:
        # A wizard on the login node itself (local flock on the same file)...
        with pytest.raises(StateError, match=r"already open in hpcwizard \(pid \d+ on .* \(over ssh\)\)"):
            ProjectLock(state_dir).acquire()
        # (a second remote wizard: tests/test_connect_screen.py)
    finally:
        remote.release()
    with ProjectLock(state_dir):  # released: free again
        pass
    # The reverse: a local holder keeps a remote wizard out.
    with ProjectLock(state_dir):
        with pytest.raises(StateError, match="already open"):
            ProjectLock(state_dir, SshFiles(conn)).acquire()


def test_remote_state_updates_are_serialised_with_local_ones(tmp_path, conn):
    state_dir = tmp_path / "state"
    files = SshFiles(conn)
    for step in ("welcome", "token", "recipe"):
        update_state(state_dir, lambda s, step=step: setattr(s, "wizard_step", step), files)
        update_state(state_dir, lambda s: s.submissions.clear())  # local, same lock file
    assert json.loads((state_dir / "state.json").read_text())["wizard_step"] == "recipe"
    assert (state_dir / "state.json").stat().st_mode & 0o777 == 0o644


# --------------------------------------------------------------------------
# The dashboard over SSH survives a dropped connection


def session_process(sshd: Sshd, runner: SshRunner) -> int:
    """Pid of the sshd child (below the master) serving ``runner``'s connection."""
    pid = int(runner.run(["sh", "-c", "echo $PPID"]).check().stdout)
    while True:
        ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        if ppid == sshd.master_pid:
            return pid
        assert ppid > 1, "walked past the sshd master"
        pid = ppid


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_dashboard_reconnects_and_says_so(tmp_path, sshd, conn, slurm_conf, monkeypatch):
    from hpcwizard.tui.app import make_app
    from hpcwizard.tui.screens.dashboard import DashboardScreen

    monkeypatch.setenv("TEXTUAL_ANIMATIONS", "none")
    home = tmp_path / "dash home"
    update_state(home / "hpcwizard", lambda s: setattr(s, "wizard_step", "done"))
    (home / "logs").mkdir()
    runner = SshRunner(conn)
    app = make_app(project_home=home, runner=runner, files=SshFiles(conn), connection=conn, start_mode="dashboard")

    async def until(what, probe, pilot, timeout=30.0):
        deadline = time.monotonic() + timeout
        while not probe():
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for {what}")
            await pilot.pause(0.05)

    async with app.run_test(size=(120, 30)) as pilot:
        screen = app.screen
        assert isinstance(screen, DashboardScreen)
        await until("a first poll", lambda: screen.polls >= 1, pilot)
        assert "root@127.0.0.1" in screen.status_text
        os.kill(session_process(sshd, runner), signal.SIGKILL)
        screen.refresh_soon()
        await until("the reconnect in the status line", lambda: "reconnected to" in screen.status_text, pilot)
        polls = screen.polls
        await until("a poll after the reconnect", lambda: screen.polls > polls, pilot)
    assert conn.reconnects >= 1


# --------------------------------------------------------------------------
# check / download --host


def still_to_write(message: str, detail: str = "") -> tuple[float, int, dict[str, str]]:
    """The space group's "still to write" row: bytes (as shown, to 0.1
    unit), files, and what each part needs (in its detail, or in brackets
    after the message as the text output shows it)."""
    total, _, rest = message.partition(" in ")
    value, unit = total.split()
    scale = 1024 ** ["B", "KiB", "MiB", "GiB", "TiB"].index(unit)
    files = int(rest.split(" file", 1)[0].replace(",", ""))
    parts = detail or message.partition("(")[2].rstrip(")")
    return float(value) * scale, files, dict(part.rsplit(": ", 1) for part in parts.split("; ") if part)


class SftpReads:
    """Paths read or stat'ed through SshFiles (the login node), recorded."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.paths: list[str] = []
        for name in ("read_text", "stat"):
            original = getattr(SshFiles, name)

            def spy(files, path, *args, _original=original, **kwargs):
                self.paths.append(str(path))
                return _original(files, path, *args, **kwargs)

            monkeypatch.setattr(SshFiles, name, spy)


def test_check_and_download_over_ssh(tmp_path, capsys, monkeypatch, ssh_config, remote_token, sshd):
    PORT = sshd.port  # noqa: N806 - the login node's port, as messages show it
    hub_root = tmp_path / "hub"
    build_demo_hub(hub_root, user="alice", token=CANARY)
    recipe = get_recipe("demo")
    plans = {}
    for name in ("fresh", "fetched"):
        plan = recipe.default_plan(tmp_path / name, tmp_path / f"{name}-data", hf_namespace="alice")
        plans[name] = tmp_path / f"{name}.yaml"
        plans[name].write_text(plan.to_yaml())
    monkeypatch.setenv("HF_TOKEN", CANARY)  # the laptop's token (checked here, never sent)
    reads = SftpReads(monkeypatch)

    with DevHub(hub_root) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        # A fresh project, as a person reads it: each group says where it ran.
        code, out, err = run_cli(capsys, "check", str(plans["fresh"]), *remote_args(ssh_config))
        assert code == 0, out + err
        for group, place in [("token", "laptop"), ("access", "laptop"), ("space", "login node"),
                             ("slurm", "login node"), ("environment", "login node")]:
            assert f"-- {group}: ran on the {place}" in out, out
        assert f"ok    token       token on the cluster: jobs will read {remote_token} on root@127.0.0.1:{PORT}" in out
        assert "ok    slurm       sbatch --test-only setup: would start at" in out
        assert "ready to submit" in out
        row = next(line for line in out.splitlines() if line.startswith("ok    space       still to write: "))
        fresh_bytes, fresh_files, fresh_parts = still_to_write(row.split(": ", 1)[1])
        assert set(fresh_parts) >= {"download of alice/hpcwizard-demo-code", "unpacking code_base.tar.gz",
                                    "download of alice/hpcwizard-demo-frames", "unpacking frames.tar",
                                    "download of hpcwizard-demo/tiny-base-model"}, fresh_parts

        # download --host (prepare's alias) runs hpcwizard prepare on the login node, its output streamed here.
        code, out, err = run_cli(capsys, "download", str(plans["fetched"]), *remote_args(ssh_config))
        assert code == 0, out + err
        remote_plan = tmp_path / "fetched" / "hpcwizard" / "download" / "plan.yaml"
        assert f"running `hpcwizard prepare {remote_plan}` on root@127.0.0.1:{PORT}" in out
        assert "5 files" in out and "unpacked 2" in out, out  # the remote hpcwizard's summary line
        assert (tmp_path / "fetched" / "demo" / "code_base" / "train.py").is_file()
        # Part of it gone again: the base model must be fetched anew and the
        # frames unpacked again (their marker gone); the rest is done.
        subprocess.run(["rm", "-rf", str(tmp_path / "fetched" / "weights")], check=True)
        (tmp_path / "fetched-data" / "demo-frames" / ".hpcwizard-unpacked-frames.tar.json").unlink()

        reads.paths.clear()
        code, out, err = run_cli(capsys, "check", str(plans["fetched"]), "--json", *remote_args(ssh_config))
        fetched = json.loads(out)
        assert code == 0 and fetched["ok"] and fetched["host"] == f"root@127.0.0.1:{PORT}", out + err
        assert fetched["ran_on"]["space"] == "login node" and fetched["ran_on"]["token"] == "laptop"
        row = next(c for c in fetched["checks"] if c["group"] == "space" and c["name"] == "still to write")
        fetched_bytes, files, parts = still_to_write(row["message"], row["detail"])
    assert {p for p in parts if p.startswith(("download", "unpacking"))} == {
        "download of hpcwizard-demo/tiny-base-model", "unpacking frames.tar"}, parts
    assert parts["download of hpcwizard-demo/tiny-base-model"] == fresh_parts["download of hpcwizard-demo/tiny-base-model"]
    # The tar's headers were read on the login node: its real size and members,
    # not the recipe's declared 64K.
    with tarfile.open(tmp_path / "fetched" / "downloads" / "hpcwizard-demo-frames" / "frames.tar") as tar:
        members = tar.getmembers()
    assert parts["unpacking frames.tar"] == human_bytes(sum(m.size for m in members)) == "32 KiB"
    assert fresh_parts["unpacking frames.tar"] == "64 KiB"  # declared: the tar was not there yet
    assert files == 2 + len(members)  # config.json + pytorch_model.bin + the frames
    assert fetched_bytes < fresh_bytes, (fetched_bytes, fresh_bytes)
    # ...and it knew that from the login node's disk, read over SFTP.
    code_dest = tmp_path / "fetched" / "downloads" / "hpcwizard-demo-code"
    assert str(code_dest / ".hpcwizard-complete.json") in reads.paths
    assert str(code_dest / "code_base.tar.gz") in reads.paths
    assert str(tmp_path / "fetched" / "demo" / ".hpcwizard-unpacked-code_base.tar.gz.json") in reads.paths


def test_jobs_call_the_login_nodes_python_so_their_helpers_run(tmp_path, capsys, ssh_config):
    """Job scripts run small Python helpers as ``"${HPCWIZARD[0]}" - <<PY``:
    in remote mode HPCWIZARD must start with the login node's interpreter,
    not the console script (which would take ``-`` for a command)."""
    plan = get_recipe("diffueraser").default_plan(tmp_path / "p", tmp_path / "d", hf_namespace="alice")
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text(plan.to_yaml())
    out_dir = tmp_path / "rendered"
    code, _, err = run_cli(capsys, "render", str(plan_file), "--out", str(out_dir), *remote_args(ssh_config))
    assert code == 0, err
    train = next(out_dir.glob("*train*.sbatch")).read_text()
    line = next(line for line in train.splitlines() if line.startswith("HPCWIZARD=("))
    words = subprocess.run(["bash", "-c", line + '; printf "%s\\n" "${HPCWIZARD[@]}"'],
                           capture_output=True, text=True, check=True).stdout.split("\n")[:-1]
    assert words == [sys.executable, "-m", "hpcwizard"]
    ran = subprocess.run([words[0], "-", "a b"], input="import sys; print(sys.argv[1:])",
                         capture_output=True, text=True, check=True)
    assert ran.stdout.strip() == "['a b']"


def test_download_without_remote_hpcwizard_says_how_to_install(tmp_path, capsys, ssh_config):
    plan = get_recipe("demo").default_plan(tmp_path / "p", tmp_path / "d", hf_namespace="alice")
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text(plan.to_yaml())
    args = remote_args(ssh_config)
    args[args.index(REMOTE_HPCWIZARD)] = "/nonexistent/hpcwizard"
    code, out, err = run_cli(capsys, "download", str(plan_file), *args)
    assert code != 0 and out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert "/nonexistent/hpcwizard does not run on hpcw-login" in err
    assert "pip install --user hpcwizard" in err and "--remote-hpcwizard" in err

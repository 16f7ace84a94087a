"""``ProjectFiles.run_streaming`` on both sides of the seam (issue 16):
this machine (LocalFiles, a real child process) and the login node
(SshFiles, the real sshd on loopback). The same test for both: output
arrives while the command runs, the exit status comes back, ``cancel``
stops it, and the HF token never reaches it.
"""

from __future__ import annotations

import io
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import Sshd
from hpcwizard.project.files import LOCAL_FILES, ProjectFiles, SshFiles
from test_remote import known_hosts, make_connection  # noqa: F401 - a fixture

pytestmark = pytest.mark.timeout(60)


class Sink(io.StringIO):
    """A TextSink that records what arrived, and when the flushes came."""

    def __init__(self) -> None:
        super().__init__()
        self.flushes = 0

    def flush(self) -> None:
        self.flushes += 1


@pytest.fixture(params=["here", "login node"])
def files(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ProjectFiles]:
    if request.param == "here":
        yield LOCAL_FILES
        return
    sshd: Sshd = request.getfixturevalue("sshd")
    known = tmp_path / "known_hosts"
    known.write_text(sshd.known_hosts_line)
    conn = make_connection(sshd, known)
    try:
        yield SshFiles(conn)
    finally:
        conn.close()


def wait_for(what: str, probe, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_output_streams_while_the_command_runs_and_its_status_comes_back(files, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_streaming_canary")  # must not reach the command
    gate = tmp_path / "go"
    sink = Sink()
    script = (f'echo "first é"; while [ ! -e "{gate}" ]; do sleep 0.02; done; '
              'env | grep -c HF_TOKEN; echo "to stderr" >&2; exit 3')
    result: list[int] = []
    runner = threading.Thread(target=lambda: result.append(files.run_streaming(["sh", "-c", script], sink,
                                                                               env={"EXTRA": "x"})))
    runner.start()
    # Streamed: the first line is here while the command still waits at its gate.
    wait_for("the first line", lambda: "first é" in sink.getvalue())
    assert not result
    gate.touch()
    runner.join(timeout=30)
    assert result == [3]
    assert sink.getvalue() == "first é\n0\nto stderr\n"  # stderr merged; no HF_TOKEN in its environment
    assert sink.flushes >= 2


def test_cancel_stops_the_command(files, tmp_path):
    marker = tmp_path / "still running"
    cancel = threading.Event()
    sink = Sink()
    script = f'echo started; while true; do touch "{marker}"; sleep 0.05; done'
    result: list[int] = []
    runner = threading.Thread(target=lambda: result.append(files.run_streaming(["sh", "-c", script], sink,
                                                                               cancel=cancel)))
    runner.start()
    wait_for("the command", lambda: "started" in sink.getvalue() and marker.exists())
    cancel.set()
    runner.join(timeout=30)
    assert result == [130]
    # Stopped for real: no process runs the script any more (here or behind sshd).
    wait_for("the command to end", lambda: not processes_running(str(marker)))


def processes_running(text: str) -> list[int]:
    """Pids whose command line mentions ``text``. /proc entries vanish at any
    moment: one that does while being read is simply not running."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if text.encode() in cmdline:
            found.append(int(entry))
    return found

"""Project state: atomic writes, locked updates, one wizard per project home."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from hpcwizard.project.files import SaveError, atomic_write
from hpcwizard.project.state import (
    FileProgress,
    ProjectLock,
    StateError,
    Submission,
    SubmittedJob,
    load_state,
    update_state,
)


def test_round_trip(tmp_path):
    job = SubmittedJob("setup", "hw-x-setup", "12", "cpu", "/p/01_setup.sbatch")
    train = SubmittedJob("train", "hw-x-train", "13", "gpu", "/p/02_train.sbatch", ("afterok:12",))
    update_state(tmp_path, lambda s: s.submissions.append(Submission("abc", "2026-11-22T04:00:00", "/p", (job, train))))
    update_state(tmp_path, lambda s: s.downloads.update({"a/b": FileProgress("a", "b", 10, 5, False)}))
    state = load_state(tmp_path)
    assert state.latest_submission.job_ids == ["12", "13"]
    assert state.latest_submission.jobs[1].dependency == ("afterok:12",)
    assert state.downloads["a/b"].done == 5


def test_a_submission_keeps_its_chain_id_and_older_states_load(tmp_path):
    job = SubmittedJob("setup", "hw-x-setup", "12", "cpu", "/p/01_setup.sbatch")
    update_state(tmp_path, lambda s: s.submissions.append(Submission("abc", "t", "/p", (job,), chain="c-1")))
    assert load_state(tmp_path).latest_submission.chain == "c-1"
    # A state written before submit journals has no chain ids.
    (tmp_path / "state.json").write_text(
        '{"submissions": [{"plan_fingerprint": "abc", "submitted_at": "t", "scripts_dir": "/p", "jobs": []}]}')
    assert load_state(tmp_path).latest_submission.chain == ""


def test_concurrent_updates_lose_nothing(tmp_path):
    worker = textwrap.dedent(f"""
        from pathlib import Path
        from hpcwizard.project.state import update_state
        for _ in range(40):
            update_state(Path({str(tmp_path)!r}), lambda s: setattr(s, "wizard_step", str(int(s.wizard_step or 0) + 1)))
    """)
    procs = [subprocess.Popen([sys.executable, "-c", worker]) for _ in range(3)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0]
    assert load_state(tmp_path).wizard_step == "120"


def test_a_second_wizard_on_the_same_project_is_refused(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from pathlib import Path
            from hpcwizard.project.state import ProjectLock
            lock = ProjectLock(Path({str(tmp_path)!r}))
            lock.acquire()
            print("locked", flush=True)
            time.sleep(60)
        """)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(StateError) as caught:
            ProjectLock(tmp_path).acquire()
        assert "already open in hpcwizard" in caught.value.one_line()
        assert f"pid {holder.pid}" in caught.value.one_line()
    finally:
        holder.kill()
        holder.wait()
    # The lock dies with its process: no stale lock to clean up.
    with ProjectLock(tmp_path):
        pass


def test_damaged_state_is_a_clear_error(tmp_path):
    (tmp_path / "state.json").write_text("{ not json")
    with pytest.raises(StateError, match="is damaged .* move it aside to start over"):
        load_state(tmp_path)


def test_a_full_disk_keeps_the_previous_file(tmp_path):
    small = tmp_path / "small"
    small.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(small)], capture_output=True)
    assert mounted.returncode == 0, f"this test needs a real small filesystem (root + tmpfs): {mounted.stderr!r}"
    try:
        target = small / "state.json"
        atomic_write(target, "previous\n")
        with pytest.raises(SaveError, match="the disk or your quota is full; free some space"):
            atomic_write(target, "x" * 200_000)
        assert target.read_text() == "previous\n"
        assert [p.name for p in small.iterdir()] == ["state.json"]  # no temp file left behind
    finally:
        subprocess.run(["umount", str(small)], check=True)

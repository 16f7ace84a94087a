"""Files under faults (issue 15, "Token and files"): tar never sees the
token, ``render`` never writes over its input plan, killed saves leave no
temporary files for ever, a huge plan file is refused at once. Real
processes (``hpcwizard`` itself, ``kill -9``, GNU tar behind a PATH wrapper),
and the real sshd for the login node's side.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from hpcwizard.download.unpack import unpack
from hpcwizard.project.files import SshFiles, atomic_write
from hpcwizard.project.recipe import get_recipe
from hpcwizard.project.temp_names import STALE_TEMP_AGE
from test_remote import known_hosts, make_connection  # noqa: F401 - a fixture

pytestmark = pytest.mark.timeout(120)

CANARY = "hf_tar_canary_5e1d"


def hpcwizard(*argv: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hpcwizard", *argv], capture_output=True, text=True, cwd=cwd,
                          stdin=subprocess.DEVNULL, timeout=90, env=env)


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


# -- tar never sees HF_TOKEN ------------------------------------------------------------


def test_tar_runs_without_the_token_in_its_environment(tmp_path, monkeypatch):
    """An exported HF_TOKEN (a user's shell) must not reach tar: a PATH
    wrapper records the environment GNU tar gets, then runs it."""
    real_tar = shutil.which("tar")
    assert real_tar
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    seen = tmp_path / "tar-env"
    wrapper = bin_dir / "tar"
    wrapper.write_text(f'#!/bin/sh\nenv >"{seen}"\nexec "{real_tar}" "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("HF_TOKEN", CANARY)

    source = tmp_path / "src"
    source.mkdir()
    (source / "frame.txt").write_text("a frame\n")
    archive = tmp_path / "frames.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(source / "frame.txt", arcname="frame.txt")
    result = unpack(archive, tmp_path / "out")
    assert not result.skipped and (tmp_path / "out" / "frame.txt").read_text() == "a frame\n"
    environment = seen.read_text()
    assert "PATH=" in environment  # the wrapper ran: it was tar's environment
    assert CANARY not in environment and "HF_TOKEN" not in environment


# -- render never writes over its input plan ----------------------------------------------


def test_render_refuses_to_write_over_its_own_plan(tmp_path):
    folder = tmp_path / "my plans"
    folder.mkdir()
    plan = get_recipe("demo").default_plan(tmp_path / "proj", hf_namespace="alice")
    plan_file = folder / "plan.yaml"
    text = "# my notes about this run: keep them\n" + plan.to_yaml()
    plan_file.write_text(text)
    for argv, cwd in ([str(plan_file), "--out", str(folder)], tmp_path), (["plan.yaml", "--out", "."], folder), \
                     (["plan.yaml", "--out", ""], folder):
        line = one_line(hpcwizard("render", *argv, cwd=cwd))
        assert "would write over the plan" in line or "--out is empty" in line, line
        assert plan_file.read_text() == text  # the commented plan is intact
        assert sorted(os.listdir(folder)) == ["plan.yaml"]  # and nothing was written beside it
    # Elsewhere it renders as always, plan copy included.
    done = hpcwizard("render", str(plan_file), "--out", str(tmp_path / "scripts"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "scripts" / "plan.yaml").is_file() and plan_file.read_text() == text


# -- a plan file larger than 1 MB is refused at once -------------------------------------------


def test_a_huge_plan_file_is_refused_before_it_is_read(tmp_path):
    plan = get_recipe("demo").default_plan(tmp_path / "proj", hf_namespace="alice")
    big = tmp_path / "big.yaml"
    big.write_text(plan.to_yaml() + "# " + "x" * (3 * 1024 * 1024) + "\n")
    for command in (["check", str(big)], ["render", str(big), "--out", str(tmp_path / "out")],
                    ["submit", str(big)], ["prepare", str(big)]):
        line = one_line(hpcwizard(*command, cwd=tmp_path))
        assert f"the plan {big} is 3.0 MB: a plan file is a few KB (at most 1 MB)" in line, (command, line)
    assert not (tmp_path / "out").exists() and not (tmp_path / "proj").exists()


# -- temporary files of killed saves ------------------------------------------------------------

# A save killed (kill -9) between writing its temporary file and renaming it
# over the target: exactly where a killed save leaves one behind.
KILLED_SAVE = """
import os, signal, sys
from pathlib import Path
from hpcwizard.project import files
os.replace = lambda *args: os.kill(os.getpid(), signal.SIGKILL)
files.atomic_write(Path(sys.argv[1]), "half a save\\n")
"""


def temps_of(path: Path) -> list[str]:
    return sorted(name for name in os.listdir(path.parent) if name.startswith(f".{path.name}."))


def test_the_next_save_removes_what_killed_saves_left(tmp_path):
    target = tmp_path / "state" / "plan.yaml"
    atomic_write(target, "the plan\n")
    for _ in range(3):
        killed = subprocess.run([sys.executable, "-c", KILLED_SAVE, str(target)], timeout=60)
        assert killed.returncode == -9
    left = temps_of(target)
    assert len(left) == 3 and target.read_text() == "the plan\n"
    # Two of them are old (their save is long dead); one is recent (its save
    # could still be running in another process): only the old go.
    old = time.time() - STALE_TEMP_AGE - 60
    for name in left[:2]:
        os.utime(target.parent / name, (old, old))
    (target.parent / ".other.yaml.abcdefgh.tmp").write_text("not ours")
    os.utime(target.parent / ".other.yaml.abcdefgh.tmp", (old, old))
    atomic_write(target, "the plan, saved again\n")
    assert temps_of(target) == left[2:]
    assert (target.parent / ".other.yaml.abcdefgh.tmp").exists()  # another file's: left alone
    assert target.read_text() == "the plan, saved again\n"


def test_the_next_save_over_sftp_removes_what_cut_off_writes_left(tmp_path, sshd, known_hosts):  # noqa: F811
    conn = make_connection(sshd, known_hosts)
    try:
        files = SshFiles(conn)
        target = tmp_path / "remote" / "state.json"
        files.write_text_atomic(target, "{}\n")
        # What a write cut off with its connection leaves (the login node is this machine).
        stale, recent = target.parent / ".state.json.tmp-0123456789ab", target.parent / ".state.json.tmp-ba9876543210"
        stale.write_text("{")
        recent.write_text("{")
        old = time.time() - STALE_TEMP_AGE - 60
        os.utime(stale, (old, old))
        files.write_text_atomic(target, '{"saved": 2}\n')
        assert not stale.exists() and recent.exists()
        assert target.read_text() == '{"saved": 2}\n'
    finally:
        conn.close()

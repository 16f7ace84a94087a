"""Bad inputs to the CLI: one line saying what is wrong and how to fix it, a
non-zero exit, never a traceback (found by driving the real program)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hpcwizard.demo import write_token_file
from hpcwizard.project.recipe import get_recipe

pytestmark = pytest.mark.timeout(120)


def hpcwizard(*argv: str, cwd: Path | None = None, hf_home: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "HF_TOKEN"}
    if hf_home is not None:
        env["HF_HOME"] = str(hf_home)
    return subprocess.run([sys.executable, "-m", "hpcwizard", *argv], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60, env=env, cwd=cwd)


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode not in (0, 1), (done.returncode, done.stderr)  # 1 is Python's crash code
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hpcwizard: "), done.stderr
    return lines[0]


def test_the_tui_without_a_terminal_refuses_at_once_instead_of_spinning(tmp_path):
    """Textual on a closed stdin spun at 100 % CPU forever (on a shared login node)."""
    (tmp_path / "hpcwizard").mkdir()
    (tmp_path / "hpcwizard" / "state.json").write_text("{}")
    # (a spinning TUI would hit subprocess.run's timeout instead of returning)
    for argv in (["--project-home", str(tmp_path / "new")], ["status", "--project-home", str(tmp_path)]):
        line = one_line_error(hpcwizard(*argv))
        assert "needs a terminal" in line and "status --once" in line


@pytest.mark.parametrize("home", ["a-file", "/proc/hpcwizard-proj"])
def test_a_project_home_that_cannot_be_written_is_one_line(tmp_path, home):
    (tmp_path / "a-file").write_text("x")
    target = str(tmp_path / home) if not home.startswith("/") else home
    line = one_line_error(hpcwizard("--project-home", target))
    assert "cannot write the project's files in" in line and "choose a folder you can write" in line
    plan = tmp_path / "plan.yaml"
    plan.write_text(get_recipe("demo").default_plan(Path(target), hf_namespace="alice").to_yaml())
    write_token_file(tmp_path / "hf", "hf_for_the_jobs")
    line = one_line_error(hpcwizard("submit", str(plan), hf_home=tmp_path / "hf"))
    assert "cannot write" in line or "cannot save" in line


def test_a_plan_that_is_not_text_is_one_line(tmp_path):
    plan = tmp_path / "plan.yaml"
    plan.write_bytes(b"\xff\xfe\x00binary")
    for command in ("render", "check", "submit"):
        extra = ["--out", str(tmp_path / "out")] if command == "render" else []
        line = one_line_error(hpcwizard(command, str(plan), *extra))
        assert "is not a text file" in line


@pytest.mark.parametrize("text", ["[]", '{"downloads": []}', '{"submissions": {"a": 1}}', "7"])
def test_a_state_file_of_the_wrong_shape_is_reported_as_damaged(tmp_path, text):
    (tmp_path / "hpcwizard").mkdir()
    (tmp_path / "hpcwizard" / "state.json").write_text(text)
    line = one_line_error(hpcwizard("status", "--once", "--project-home", str(tmp_path)))
    assert "is damaged" in line and "move it aside" in line

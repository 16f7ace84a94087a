"""LocalRunner: argv only, bounded by a timeout, stoppable when hpcwizard quits."""

from __future__ import annotations

import threading
import time

import pytest

from helpers import wait_for
from hpcwizard.errors import CommandFailed, CommandTimeout
from hpcwizard.shell import LocalRunner, stop_running_commands


def test_values_reach_the_program_verbatim(tmp_path):
    hostile = "$(touch pwned); `id` 'q\" *"
    result = LocalRunner().run(["printf", "%s", hostile], timeout=10)
    assert result.ok and result.stdout == hostile
    assert not (tmp_path / "pwned").exists()


def test_a_missing_program_and_a_timeout_are_one_line_errors():
    with pytest.raises(CommandFailed, match="no-such-program-xyz not found"):
        LocalRunner().run(["no-such-program-xyz"])
    started = time.monotonic()
    with pytest.raises(CommandTimeout, match="sleep did not answer within 0.5 s"):
        LocalRunner().run(["sleep", "30"], timeout=0.5)
    assert time.monotonic() - started < 10  # killed, not waited for


def test_quitting_stops_a_command_in_flight():
    """A worker blocked on a hung squeue must not keep hpcwizard alive until
    the command's timeout after the TUI quits."""
    outcome: list[BaseException | None] = []

    def worker() -> None:
        try:
            LocalRunner().run(["sleep", "300"], timeout=600)
            outcome.append(None)
        except CommandFailed as exc:
            outcome.append(exc)

    thread = threading.Thread(target=worker)
    thread.start()
    stopped = wait_for("the command to start", lambda: stop_running_commands() or None, timeout=10, interval=0.05)
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert stopped == 1
    assert isinstance(outcome[0], CommandFailed) and "hpcwizard is quitting" in str(outcome[0])
    # The next command runs normally.
    assert LocalRunner().run(["true"]).ok


def test_a_token_in_the_environment_never_reaches_a_command(monkeypatch):
    """sbatch exports its environment into the job (and Slurm keeps it with
    the job's record): HF_TOKEN is removed from every command's environment."""
    monkeypatch.setenv("HF_TOKEN", "hf_env_canary_55e1")
    monkeypatch.setenv("HUGGING_FACE_HUB_TOKEN", "hf_env_canary_55e1")
    seen = LocalRunner(extra_env={"HPCW_KEPT": "yes"}).run(["env"], timeout=10).stdout
    assert "hf_env_canary_55e1" not in seen
    assert "HPCW_KEPT=yes" in seen  # the rest of the environment is passed on

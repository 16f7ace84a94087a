"""Running the commands ``prepare`` needs (git, pip, conda) with their output as lines.

Each command is an argv list run with stdin closed, the HF token removed from
its environment, and every line it prints handed to ``on_line`` as it comes,
so the terminal, the wizard's Prepare step and a job's log all show pip's and
conda's own progress.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Mapping, Sequence
from typing import Optional

from hpcwizard.errors import UserError
from hpcwizard.shell import SECRET_ENV, die_with_parent

LineCallback = Callable[[str], None]


class PrepareError(UserError):
    """A part of ``prepare`` failed or is missing; the message names the part."""


def command_env(extra: Optional[Mapping[str, str]] = None) -> dict[str, str]:
    """The environment of git, pip and conda: no token, and pip never takes a
    package under the user's ~/.local as already installed (a conda env would
    then lack it on the compute nodes, where that folder may differ)."""
    env = {**os.environ, "PYTHONNOUSERSITE": "1", **(extra or {})}
    return {k: v for k, v in env.items() if k not in SECRET_ENV}


def run_streaming(argv: Sequence[str], on_line: LineCallback, *, cwd: Optional[str] = None,
                  env: Optional[Mapping[str, str]] = None) -> tuple[int, list[str]]:
    """Run ``argv``; hand each output line (stdout and stderr merged) to ``on_line``.

    Returns the exit status and the last lines (for an error message)."""
    tail: list[str] = []
    try:
        proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, cwd=cwd, env=command_env(env),
                                text=True, errors="replace", bufsize=1,
                                # pip or conda must not build on after hpcwizard was killed
                                preexec_fn=die_with_parent())
    except FileNotFoundError:
        return 127, [f"{argv[0]}: command not found"]
    assert proc.stdout is not None
    try:
        for raw in proc.stdout:
            # git and pip redraw progress with \r: show each state as a line.
            for line in raw.rstrip("\n").split("\r"):
                line = line.rstrip()
                if line:
                    on_line(line)
                    tail = (tail + [line])[-20:]
        return proc.wait(), tail
    except BaseException:
        proc.kill()
        proc.wait()
        raise


def last_error_line(tail: list[str]) -> str:
    """The most telling line of a failed command's output."""
    for line in reversed(tail):
        if line.lower().startswith(("error", "fatal", "critical")) or "error:" in line.lower():
            return line.strip()
    return tail[-1].strip() if tail else "no output"

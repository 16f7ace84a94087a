"""One way to run commands and touch files: locally now, over SSH later.

Everything in hpcwizard that runs sbatch, squeue, tar, quota... goes through a
:class:`Runner`. Commands are argv lists, never shell strings, so a user's
value can never be parsed by a shell on the way. Every call has a timeout:
a hung ``sinfo`` on a sick controller must not hang the program.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from hpcwizard.errors import CommandFailed, CommandTimeout

DEFAULT_TIMEOUT = 30.0

#: Never in a command's environment: sbatch exports its environment into the
#: job, and Slurm keeps it in the controller's state (and, with
#: AccountingStoreFlags=job_env, in the accounting database). Jobs and
#: downloads read the token FILE instead.
SECRET_ENV = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")


@dataclass(frozen=True)
class CommandResult:
    """What a finished command returned."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def check(self) -> "CommandResult":
        """Raise :class:`CommandFailed` unless the command exited 0."""
        if not self.ok:
            detail = (self.stderr.strip() or self.stdout.strip()).splitlines()
            last = detail[-1] if detail else f"exit status {self.returncode}"
            raise CommandFailed(f"{self.argv[0]} failed: {last}")
        return self


class Runner(Protocol):
    """Runs commands somewhere (this machine, or a login node over SSH)."""

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float = DEFAULT_TIMEOUT,
        env: Mapping[str, str] | None = None,
        stdin: str | None = None,
    ) -> CommandResult:
        """Run ``argv``; return its result whatever the exit status.

        Raises :class:`CommandFailed` when the program cannot be started and
        :class:`CommandTimeout` when it outlives ``timeout`` seconds.
        """
        ...

    def which(self, program: str) -> str | None:
        """The full path of ``program`` on the runner's PATH, or None."""
        ...


# Commands in flight (any LocalRunner), so quitting can stop them: a worker
# thread blocked on a hung squeue would otherwise keep the process alive
# until the command's timeout (Python joins executor threads at exit).
_RUNNING: set[subprocess.Popen] = set()
_STOPPED: set[subprocess.Popen] = set()
_RUNNING_LOCK = threading.Lock()


def stop_running_commands() -> int:
    """SIGTERM every command a LocalRunner is waiting for; their ``run``
    raises :class:`CommandFailed`. Returns how many were stopped."""
    with _RUNNING_LOCK:
        running = list(_RUNNING)
        _STOPPED.update(running)
    for process in running:
        try:
            process.terminate()
        except OSError:  # already gone
            pass
    return len(running)


#: prctl(2) option: the signal a child gets when its parent dies.
_PR_SET_PDEATHSIG = 1
_PRCTL: list[Callable[..., int] | None] = []  # empty: not looked up yet


def _prctl() -> Callable[..., int] | None:
    """libc's prctl, looked up once (Linux only; None elsewhere)."""
    if not _PRCTL:
        found = None
        if sys.platform.startswith("linux"):
            try:
                import ctypes

                found = ctypes.CDLL(None, use_errno=True).prctl
            except (OSError, AttributeError):  # no libc symbols to call: behave as elsewhere
                found = None
        _PRCTL.append(found)
    return _PRCTL[0]


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child die (SIGKILL) with this process.

    A ``kill -9`` of hpcwizard (or the SIGHUP of a dropped ssh session) must
    not leave an sbatch running on: a submit is then recovered from its
    journal at the next start, and a child that went on submitting would
    race that recovery. Linux only (``PR_SET_PDEATHSIG``); None elsewhere.
    The death signal fires when the THREAD that started the child ends: a
    LocalRunner waits for its child in that same thread, so that is the end
    of the command or of the process."""
    prctl = _prctl()
    if prctl is None:
        return None
    import ctypes

    parent = os.getpid()
    option, sig = ctypes.c_ulong(_PR_SET_PDEATHSIG), ctypes.c_ulong(signal.SIGKILL)
    zero = ctypes.c_ulong(0)

    def preexec() -> None:  # runs in the child between fork and exec: keep it minimal
        prctl(option, sig, zero, zero, zero)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


def environment_without_secrets(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment plus ``extra``, without the HF token
    (:data:`SECRET_ENV`): what every child hpcwizard starts gets (sbatch would
    copy a token into the job's record; tar, git and pip never need it)."""
    merged = dict(os.environ)
    merged.update(extra or {})
    for name in SECRET_ENV:
        merged.pop(name, None)
    return merged


class LocalRunner:
    """Runs commands on this machine with :mod:`subprocess` (no shell).

    Its children die with hpcwizard (:func:`die_with_parent`)."""

    def __init__(self, extra_env: Mapping[str, str] | None = None) -> None:
        self.extra_env = dict(extra_env or {})

    def _environment(self, env: Mapping[str, str] | None) -> dict[str, str]:
        return environment_without_secrets({**self.extra_env, **(env or {})})

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float = DEFAULT_TIMEOUT,
        env: Mapping[str, str] | None = None,
        stdin: str | None = None,
    ) -> CommandResult:
        argv = tuple(str(a) for a in argv)
        try:
            process = subprocess.Popen(
                argv,
                # Never the terminal: under the TUI a child reading it would
                # steal keystrokes (or block on a question nobody sees).
                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=self._environment(env),
                preexec_fn=die_with_parent(),
            )
        except FileNotFoundError as exc:
            raise CommandFailed(
                f"{argv[0]} not found",
                "install it or put it on PATH (is this a Slurm login node?)",
            ) from exc
        except PermissionError as exc:
            raise CommandFailed(f"{argv[0]} cannot be executed: {exc.strerror}") from exc
        with _RUNNING_LOCK:
            _RUNNING.add(process)
        try:
            stdout, stderr = process.communicate(stdin, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            process.kill()
            process.communicate()
            raise CommandTimeout(
                f"{argv[0]} did not answer within {timeout:g} s",
                "the service it talks to may be slow or down; try again later",
            ) from exc
        except BaseException:  # interrupted: leave no child behind
            process.kill()
            process.wait()
            raise
        finally:
            with _RUNNING_LOCK:
                _RUNNING.discard(process)
                stopped = process in _STOPPED
                _STOPPED.discard(process)
        if stopped:
            raise CommandFailed(f"{argv[0]} was stopped: hpcwizard is quitting")
        return CommandResult(argv, process.returncode, stdout, stderr)

    def which(self, program: str) -> str | None:
        import shutil

        path = self._environment(None).get("PATH")
        return shutil.which(program, path=path)

"""SshRunner: the :class:`~hpcwizard.shell.Runner` interface over SSH.

An SSH ``exec`` request carries ONE string that the remote login shell parses.
The argv list is therefore joined with :func:`shlex.quote`, which makes every
value inert (``$(...)``, quotes, spaces, newlines, globs arrive verbatim).
This assumes a POSIX login shell (sh, bash, zsh, ksh, dash) on the cluster,
as every Slurm site provides; csh/tcsh users are not supported yet.

``env`` is passed as a quoted ``env VAR=value ...`` prefix, not as SSH
``SetEnv``/``env`` requests (servers accept only their ``AcceptEnv`` list).
Mind that ``ps`` on the login node shows such values: never pass secrets in
``env`` or argv (the HF token travels in files only).

Every call is bounded: opening the channel by ``min(timeout, ConnectTimeout)``
(retried once on a fresh connection, since nothing ran yet), then the exec
request, stdin and output by ``timeout``. A server that does not even answer
the exec request is taken for dead and the next call reconnects. On timeout the remote process group is sent SIGTERM
(the SSH ``signal`` request: OpenSSH >= 7.9 honours it for ordinary users, not
for root sessions) and the channel is closed; a process that ignores it ends
on its own (closing the channel alone does not stop it).
"""

from __future__ import annotations

import re
import select
import shlex
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import paramiko
from paramiko.common import cMSG_CHANNEL_REQUEST
from paramiko.message import Message

from hpcwizard.errors import CommandFailed, CommandTimeout
from hpcwizard.remote.connection import SshConnection
from hpcwizard.remote.errors import ConnectionLost
from hpcwizard.shell import DEFAULT_TIMEOUT, SECRET_ENV, CommandResult

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_READ_SIZE = 64 * 1024
# Longest wait between checks when nothing arrives (the channel's select
# pipe wakes us for data; exit status and close are checked at this pace).
_POLL = 0.05
_NOT_FOUND = re.compile(r"not found|No such file or directory", re.IGNORECASE)


def remote_command(argv: Sequence[str], env: Mapping[str, str] | None = None) -> str:
    """The shell command line that runs ``argv`` (with ``env``) verbatim.

    A token the login node's shell exports (``HF_TOKEN`` in a ``.bashrc``) is
    removed first (:data:`~hpcwizard.shell.SECRET_ENV`): sbatch would copy it
    into the job's record."""
    if not argv:
        raise ValueError("empty argv")
    words = [str(a) for a in argv]
    assignments = []
    for name, value in (env or {}).items():
        if not _ENV_NAME.match(name) or name in SECRET_ENV:
            raise ValueError(f"not an environment variable name hpcwizard passes: {name!r}")
        assignments.append(f"{name}={value}")
    if "=" in words[0]:  # env would take it for one more assignment
        raise ValueError(f"program name with '=': {words[0]!r}")
    unset = [word for name in SECRET_ENV for word in ("-u", name)]
    # `--` before the assignments: none can be read as an option of env itself.
    words = ["env", *unset, "--", *assignments, *words]
    return " ".join(shlex.quote(w) for w in words)


def _send_signal(channel: paramiko.Channel, name: str) -> None:
    """Ask sshd to signal the command's process group (RFC 4254 6.9).

    paramiko has no public call for it; OpenSSH >= 7.9 honours it. Best
    effort: a server that ignores it just leaves the process to finish alone.
    """
    try:
        m = Message()
        m.add_byte(cMSG_CHANNEL_REQUEST)
        m.add_int(channel.remote_chanid)
        m.add_string("signal")
        m.add_boolean(False)
        m.add_string(name)
        # Any: paramiko has no public call for a signal request, only this private sender.
        transport: Any = channel.transport
        if transport is not None:
            transport._send_user_message(m)
    except (OSError, EOFError, paramiko.SSHException):
        pass  # the connection is going away anyway


class SshRunner:
    """Runs commands on the login node through an :class:`SshConnection`."""

    def __init__(self, connection: SshConnection) -> None:
        self.connection = connection

    @property
    def host(self) -> str:
        return self.connection.host.display

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float = DEFAULT_TIMEOUT,
        env: Mapping[str, str] | None = None,
        stdin: str | None = None,
    ) -> CommandResult:
        argv = tuple(str(a) for a in argv)
        command = remote_command(argv, env)
        # Opening the channel is bounded on its own (and retried once on a
        # fresh connection: nothing ran yet); the command's time starts after.
        channel = self.connection.open_session(timeout)
        deadline = time.monotonic() + timeout
        timed_out = threading.Event()

        def expire() -> None:
            # Unblocks every wait below (exec reply, sendall, reads).
            timed_out.set()
            _send_signal(channel, "TERM")
            channel.close()

        watchdog = threading.Timer(max(0.0, deadline - time.monotonic()), expire)
        watchdog.daemon = True
        watchdog.start()
        try:
            exec_answered = False
            try:
                channel.exec_command(command)
                exec_answered = True
                if stdin:
                    channel.sendall(stdin.encode("utf-8"))
                channel.shutdown_write()  # the command sees EOF on stdin
                stdout, stderr = self._collect(channel, timed_out)
            except (EOFError, OSError, paramiko.SSHException) as exc:
                if timed_out.is_set():
                    if not exec_answered:
                        # sshd did not even answer the exec request: the peer
                        # is probably gone silently (no RST); start afresh.
                        self.connection.mark_broken("the server stopped answering")
                    raise self._timeout(argv, timeout) from exc
                raise self._lost(argv, exc) from exc
            if timed_out.is_set():
                raise self._timeout(argv, timeout)
            status = channel.recv_exit_status()
            # No exit status: killed by a signal (sshd sends EOF, then
            # exit-signal), or the connection died under it. A dying paramiko
            # transport closes its channels BEFORE it marks itself inactive,
            # so `connected` alone can still say True here: a channel closed
            # without the server's EOF is a lost connection too.
            if status == -1 and (not channel.eof_received or not self.connection.connected):
                raise self._lost(argv, EOFError("transport closed"))
        finally:
            watchdog.cancel()
            channel.close()
        out = stdout.decode("utf-8", errors="replace")
        err = stderr.decode("utf-8", errors="replace")
        if status == 127 and _NOT_FOUND.search(err):
            raise CommandFailed(
                f"{argv[0]} not found on {self.host}",
                "install it or put it on PATH there (is this a Slurm login node?)",
            )
        if status == 126 and "ermission denied" in err:
            raise CommandFailed(f"{argv[0]} cannot be executed on {self.host}: permission denied")
        return CommandResult(argv, status, out, err)

    @staticmethod
    def _collect(channel: paramiko.Channel, timed_out: threading.Event) -> tuple[bytes, bytes]:
        """Read stdout and stderr together until EOF and exit status (or timeout)."""
        out, err = bytearray(), bytearray()
        while True:
            while channel.recv_ready():
                out += channel.recv(_READ_SIZE)
            while channel.recv_stderr_ready():
                err += channel.recv_stderr(_READ_SIZE)
            if timed_out.is_set():
                break
            if channel.closed or (channel.exit_status_ready() and channel.eof_received):
                # Everything sent before EOF/close is already buffered.
                while channel.recv_ready():
                    out += channel.recv(_READ_SIZE)
                while channel.recv_stderr_ready():
                    err += channel.recv_stderr(_READ_SIZE)
                break
            if channel.eof_received:
                channel.status_event.wait(_POLL)  # output done; waiting for the exit status
            else:
                select.select([channel], [], [], _POLL)
        return bytes(out), bytes(err)

    def _timeout(self, argv: Sequence[str], timeout: float) -> CommandTimeout:
        return CommandTimeout(
            f"{argv[0]} did not answer within {timeout:g} s on {self.host}",
            "the service it talks to may be slow or down; try again later",
        )

    def _lost(self, argv: Sequence[str], exc: BaseException) -> ConnectionLost:
        self.connection.mark_broken(f"connection lost: {exc or type(exc).__name__}")
        return ConnectionLost(
            f"the connection to {self.host} dropped while {argv[0]} ran; it may or may not have run",
            "check its effect (e.g. squeue for sbatch) before trying again",
        )

    def which(self, program: str) -> str | None:
        """``command -v`` on the login node; only a path counts (not a builtin)."""
        result = self.run_shell(f"command -v {shlex.quote(program)}", timeout=DEFAULT_TIMEOUT)
        line = result.stdout.strip().splitlines()
        return line[0] if result.ok and line and line[0].startswith("/") else None

    def run_shell(self, script: str, *, timeout: float = DEFAULT_TIMEOUT) -> CommandResult:
        """Run a fixed shell snippet (never built from user values)."""
        return self.run(["sh", "-c", script], timeout=timeout)

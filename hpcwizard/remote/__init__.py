"""Remote mode: run hpcwizard's Slurm and file side on a login node over SSH.

No Textual here. One :class:`SshConnection` per login node serves every
command (:class:`SshRunner`, the :class:`~hpcwizard.shell.Runner` interface)
and every file access (:class:`SftpFileSource` for log following,
:class:`RemoteFiles` for the rest).
"""

from hpcwizard.remote.connection import (
    ConnectionEvent,
    ConnectionStatus,
    HostKeyPrompt,
    PassphrasePrompt,
    SshConnection,
)
from hpcwizard.remote.errors import (
    AuthenticationFailed,
    ConnectFailed,
    ConnectionLost,
    HostKeyChanged,
    HostKeyUnknown,
    SshError,
)
from hpcwizard.remote.files import RemoteFiles, SftpFileSource
from hpcwizard.remote.prompts import terminal_prompts
from hpcwizard.remote.runner import SshRunner, remote_command
from hpcwizard.remote.target import HostTarget, ResolvedHost, parse_host, resolve

__all__ = [
    "AuthenticationFailed",
    "ConnectFailed",
    "ConnectionEvent",
    "ConnectionLost",
    "ConnectionStatus",
    "HostKeyChanged",
    "HostKeyPrompt",
    "HostKeyUnknown",
    "HostTarget",
    "PassphrasePrompt",
    "RemoteFiles",
    "ResolvedHost",
    "SftpFileSource",
    "SshConnection",
    "SshError",
    "SshRunner",
    "parse_host",
    "remote_command",
    "resolve",
    "terminal_prompts",
]

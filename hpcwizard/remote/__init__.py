"""Remote mode: run hpcwizard's Slurm and file side on a login node over SSH.

No Textual here. One :class:`SshConnection` per login node serves every
command (:class:`SshRunner`, the :class:`~hpcwizard.shell.Runner` interface)
and every file access (:class:`SftpFileSource` for log following,
:class:`RemoteFiles` for the rest).

The names below are imported on first use (PEP 562): importing
``hpcwizard.remote.target`` or ``.errors`` (what ``hpcwizard --host`` needs
before its connect screen) does not load paramiko, which only connecting
(in the connect screen's worker) needs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

#: Each public name and the module that defines it.
_HOMES = {
    "ConnectionEvent": "connection",
    "ConnectionStatus": "connection",
    "HostKeyPrompt": "connection",
    "PassphrasePrompt": "connection",
    "SshConnection": "connection",
    "AuthenticationFailed": "errors",
    "ConnectFailed": "errors",
    "ConnectionLost": "errors",
    "HostKeyChanged": "errors",
    "HostKeyUnknown": "errors",
    "SshError": "errors",
    "RemoteFiles": "files",
    "SftpFileSource": "files",
    "terminal_prompts": "prompts",
    "SshRunner": "runner",
    "remote_command": "runner",
    "HostTarget": "target",
    "ResolvedHost": "target",
    "parse_host": "target",
    "resolve": "target",
}

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


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value  # found once
    return value

"""Expected SSH failures, each a one-line :class:`UserError` with what to do."""

from __future__ import annotations

from hpcwizard.errors import TransportUnavailable, UserError


class SshError(UserError):
    """Connecting to or talking with the login node failed."""


class HostKeyUnknown(SshError):
    """The server's host key is not in known_hosts and nobody accepted it."""


class HostKeyChanged(SshError):
    """The server's host key differs from the one in known_hosts: refused, always."""


class AuthenticationFailed(SshError):
    """No key (agent or file) was accepted by the server."""


class ConnectFailed(SshError, TransportUnavailable):
    """The server could not be reached (DNS, refused, timeout, jump host...)."""


class ConnectionLost(SshError, TransportUnavailable):
    """The connection dropped while a command ran; it may or may not have run.

    A :class:`TransportUnavailable` (so a :class:`CommandFailed`) too, so code
    that handles a failed command or a controller that is away (the Slurm
    client, the dashboard's back-off) handles this one the same way.
    """

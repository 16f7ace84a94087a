"""Which login node to reach, and how: ``--host`` plus ``~/.ssh/config``.

``--host [user@]host[:port]`` names the cluster the way ``ssh`` does, and the
user's OpenSSH client config fills in the rest (HostName, User, Port,
IdentityFile, IdentitiesOnly, ProxyJump, ServerAliveInterval, ConnectTimeout,
UserKnownHostsFile — its first file), so a host that
works with ``ssh alias`` works with ``hpcwizard --host alias``. Values typed
on the command line win over the config file, as with ``ssh``.

Nothing here opens a connection; :mod:`.connection` does.
"""

from __future__ import annotations

import getpass
import os
import re
import shlex
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from hpcwizard.errors import UserError

if TYPE_CHECKING:
    import paramiko

DEFAULT_PORT = 22
DEFAULT_CONFIG = "~/.ssh/config"
# OpenSSH's default identities, tried (after the agent) when the config names
# none. DSA is gone from OpenSSH and paramiko alike.
DEFAULT_IDENTITIES = ("id_ed25519", "id_ecdsa", "id_rsa")
# A ProxyJump chain longer than this is a loop in the config
# (``Host *`` + ``ProxyJump bastion`` without ``!bastion``).
MAX_JUMPS = 8

_USER_RE = re.compile(r"[A-Za-z0-9._][A-Za-z0-9._@-]*\Z")
_HOST_RE = re.compile(r"[A-Za-z0-9_.%:-]+\Z")


class HostSpecError(UserError):
    """A ``--host`` value or a ProxyJump entry that cannot be a host."""


@dataclass(frozen=True)
class HostTarget:
    """A host as typed: ``[user@]host[:port]`` (``host`` may be a config alias)."""

    host: str
    user: str | None = None
    port: int | None = None

    def __str__(self) -> str:
        text = f"[{self.host}]" if ":" in self.host else self.host
        if self.port is not None:
            text = f"{text}:{self.port}"
        return f"{self.user}@{text}" if self.user else text


@dataclass(frozen=True)
class ResolvedHost:
    """Everything needed to open one SSH connection, config applied.

    ``jumps`` are the hosts to go through first, outermost first (each one
    resolved through the config too).
    """

    alias: str
    hostname: str
    port: int
    user: str
    identity_files: tuple[str, ...] = ()
    identities_only: bool = False
    jumps: tuple[ResolvedHost, ...] = ()
    server_alive_interval: float | None = None
    connect_timeout: float | None = None
    #: UserKnownHostsFile (its first file), when the config sets one.
    known_hosts_file: str | None = None
    # Where the config came from, for error messages only.
    config_path: str | None = field(default=None, compare=False)

    @property
    def known_hosts_name(self) -> str:
        """The name OpenSSH files this host's key under in known_hosts."""
        if self.port == DEFAULT_PORT:
            return self.hostname
        return f"[{self.hostname}]:{self.port}"

    @property
    def display(self) -> str:
        """``user@host:port`` for messages."""
        host = f"[{self.hostname}]" if ":" in self.hostname else self.hostname
        port = "" if self.port == DEFAULT_PORT else f":{self.port}"
        return f"{self.user}@{host}{port}"

    @property
    def config_display(self) -> str:
        """The SSH config file hints should name: ``--ssh-config``'s when one
        was given, else ``~/.ssh/config``."""
        return self.config_path or DEFAULT_CONFIG

    def ssh_command(self) -> str:
        """The equivalent ``ssh`` command line, for hints."""
        port = "" if self.port == DEFAULT_PORT else f"-p {self.port} "
        if self.config_path and self.config_path != os.path.expanduser(DEFAULT_CONFIG):
            # --ssh-config: ssh reads that file only with -F, and finds the
            # host's block by the name as typed.
            return f"ssh -F {shlex.quote(self.config_path)} {port}{self.user}@{self.alias}"
        return f"ssh {port}{self.user}@{self.hostname}"


def _port(text: str, where: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 < port < 65536:
        raise HostSpecError(f"bad port {text!r} in {where}", "use a number between 1 and 65535")
    return port


def parse_host(spec: str, *, what: str = "--host") -> HostTarget:
    """Parse ``[user@]host[:port]`` (IPv6 as ``[addr]:port``)."""
    text = spec.strip()
    where = f"{what} {spec!r}"
    if not text:
        raise HostSpecError(f"{what} is empty", "give the login node as [user@]host[:port]")
    user: str | None = None
    if "@" in text:
        user, _, text = text.rpartition("@")
        if not _USER_RE.match(user):
            raise HostSpecError(f"bad user name in {where}", "give the login node as [user@]host[:port]")
    port: int | None = None
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise HostSpecError(f"bad address in {where}", "write an IPv6 address as [addr]:port")
        if rest:
            port = _port(rest[1:], where)
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        port = _port(port_text, where)
    else:
        host = text  # a bare IPv6 address has several colons and no port
    # A leading '-' would read as an option if it ever reached an ssh argv.
    if not host or host.startswith("-") or not _HOST_RE.match(host):
        raise HostSpecError(f"bad host name in {where}", "give the login node as [user@]host[:port]")
    return HostTarget(host=host, user=user, port=port)


def load_config(path: str | os.PathLike[str] | None = None) -> tuple[paramiko.SSHConfig, str | None]:
    """The OpenSSH client config at ``path`` (default ``~/.ssh/config``).

    A missing default file is an empty config; a missing file the caller named
    explicitly is an error.
    """
    import paramiko  # only here, so that parsing a --host spec needs no SSH library

    explicit = path is not None
    config_path = Path(os.path.expanduser(os.fspath(path if path is not None else DEFAULT_CONFIG)))
    if not config_path.exists():
        if explicit:
            raise UserError(f"SSH config {config_path} does not exist", "check the path")
        return paramiko.SSHConfig(), None
    try:
        config = paramiko.SSHConfig.from_path(str(config_path))
        # `--ssh-config /dev/null`: no config at all, as `ssh -F /dev/null`;
        # hints then name no file of it.
        return config, (None if str(config_path) == os.devnull else str(config_path))
    except Exception as exc:  # paramiko raises ConfigParseError, ValueError...
        raise UserError(f"cannot read SSH config {config_path}: {exc}", "fix the file (ssh -G HOST shows how ssh reads it)") from exc


def _float_option(options: dict, key: str, config_path: str | None) -> float | None:
    value = options.get(key)
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        raise UserError(f"bad {key} {value!r} in {config_path or 'the SSH config'}", "use a number of seconds") from None
    return seconds if seconds > 0 else None


def _yes(options: dict, key: str) -> bool:
    return str(options.get(key, "no")).lower() in ("yes", "true")


def resolve(
    target: HostTarget | str,
    *,
    config: paramiko.SSHConfig | None = None,
    config_path: str | os.PathLike[str] | None = None,
    local_user: str | None = None,
    _depth: int = 0,
) -> ResolvedHost:
    """Apply the SSH config to ``target`` (a :class:`HostTarget` or a spec).

    ``config`` (already parsed) or ``config_path`` select the config; by
    default ``~/.ssh/config`` if it exists.
    """
    if isinstance(target, str):
        target = parse_host(target)
    source: str | None = None
    if config is None:
        config, source = load_config(config_path)
    elif config_path is not None:
        source = os.fspath(config_path)
    if _depth > MAX_JUMPS:
        raise UserError(
            f"ProxyJump for {target.host} goes through more than {MAX_JUMPS} hosts",
            f"the SSH config{f' ({source})' if source else ''} probably loops; exclude the jump host itself (Host * !bastion)",
        )
    options = config.lookup(target.host)
    hostname = options.get("hostname", target.host)
    port = target.port or _port(str(options.get("port", DEFAULT_PORT)), f"the SSH config for {target.host}")
    user = target.user or options.get("user") or local_user or getpass.getuser()
    identity_files = tuple(os.path.expanduser(p) for p in options.get("identityfile", ()))
    known_hosts_files = str(options.get("userknownhostsfile", "")).split()
    known_hosts_file = os.path.expanduser(known_hosts_files[0]) if known_hosts_files else None

    jumps: list[ResolvedHost] = []
    proxy_jump = str(options.get("proxyjump", "")).strip()
    if proxy_jump and proxy_jump.lower() != "none":
        for hop_spec in proxy_jump.split(","):
            hop = parse_host(hop_spec.strip().removeprefix("ssh://"), what="ProxyJump")
            resolved_hop = resolve(hop, config=config, config_path=source, local_user=local_user, _depth=_depth + 1)
            # A hop's own jumps come before it; the chain stays flat.
            jumps.extend(resolved_hop.jumps)
            jumps.append(replace(resolved_hop, jumps=()))
    if "proxycommand" in options and not jumps and str(options["proxycommand"]).lower() != "none":
        raise UserError(
            f"the SSH config sets ProxyCommand for {target.host}, which hpcwizard does not run",
            "use ProxyJump instead (ssh -J), or run hpcwizard on the login node",
        )
    return ResolvedHost(
        alias=target.host,
        hostname=hostname,
        port=port,
        user=user,
        identity_files=identity_files,
        identities_only=_yes(options, "identitiesonly"),
        jumps=tuple(jumps),
        server_alive_interval=_float_option(options, "serveraliveinterval", source),
        connect_timeout=_float_option(options, "connecttimeout", source),
        known_hosts_file=known_hosts_file,
        config_path=source,
    )


"""One SSH connection to the login node, shared by commands and SFTP.

:class:`SshConnection` owns ONE :class:`paramiko.SSHClient` at a time: every
command (:class:`~hpcwizard.remote.runner.SshRunner`) and every file access
(:mod:`~hpcwizard.remote.files`) is a channel on it, so a dashboard refresh
costs no new TCP/SSH handshake.

Security rules (the same as OpenSSH's defaults, never weaker):

* Host keys are checked against ``~/.ssh/known_hosts`` and
  ``/etc/ssh/ssh_known_hosts``. An unknown host is never accepted silently:
  the ``ask_host_key`` callback decides (the CLI asks on a terminal, default
  no; without a terminal, or without a callback, the key is refused with the
  ``ssh-keyscan`` line to add it after checking its fingerprint). An accepted
  key is appended to ``known_hosts``. A CHANGED key is always refused.
* Keys come from ssh-agent, then from the IdentityFile(s) of the SSH config
  (or the default ``~/.ssh/id_*``). An encrypted key asks the ``passphrase``
  callback, only when the agent did not already log us in. No passwords.

When the connection drops (laptop sleep, VPN hiccup, sshd restart), the next
call reconnects with exponential backoff and the reconnect is counted and
reported through ``on_event``. A command whose connection dropped while it ran
is NOT re-run (an ``sbatch`` may already have been accepted): it raises
:class:`~hpcwizard.remote.errors.ConnectionLost`.

Thread safety: paramiko transports serve channels from several threads;
connecting and reconnecting are serialised by a lock here.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

if TYPE_CHECKING:  # typing.Self is Python 3.11+; annotations are not evaluated at run time
    from typing_extensions import Self

import paramiko
from paramiko.auth_strategy import (
    AuthFailure,
    AuthStrategy,
    InMemoryPrivateKey,
    PrivateKey,
)
from paramiko.ssh_exception import (
    AuthenticationException,
    BadHostKeyException,
    ChannelException,
    NoValidConnectionsError,
    PasswordRequiredException,
    SSHException,
)

from hpcwizard.remote.errors import (
    AuthenticationFailed,
    ConnectFailed,
    HostKeyChanged,
    HostKeyUnknown,
    SshError,
)
from hpcwizard.remote.target import DEFAULT_IDENTITIES, ResolvedHost, resolve

T = TypeVar("T")

# paramiko logs a failed handshake ("Error reading SSH protocol banner") with
# two tracebacks at ERROR level; with no handler configured Python prints them
# on stderr, over the terminal or the TUI. Every failure it logs also reaches
# us as an exception, which becomes one line with a fix: its log says nothing more.
_paramiko_log = logging.getLogger("paramiko")
_paramiko_log.addHandler(logging.NullHandler())
_paramiko_log.propagate = False

#: Passphrase tries per key, as OpenSSH gives.
PASSPHRASE_TRIES = 3

#: ``(known_hosts name, key type, "SHA256:...") -> accept?`` — asked for an
#: unknown host key. ``known_hosts name`` is ``host`` or ``[host]:port``.
HostKeyPrompt = Callable[[str, str, str], bool]
#: ``(key file path, retry) -> passphrase``; None skips that key. ``retry``
#: is True when the passphrase given before was wrong (ask again, saying so).
PassphrasePrompt = Callable[..., "str | None"]

DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"
SYSTEM_KNOWN_HOSTS = ("/etc/ssh/ssh_known_hosts",)
#: Seconds between keepalives when the config sets no ServerAliveInterval:
#: keeps NAT/firewall state alive and notices a dead peer.
DEFAULT_KEEPALIVE = 30.0
#: TCP connect + SSH handshake + authentication, when the config sets no
#: ConnectTimeout.
DEFAULT_CONNECT_TIMEOUT = 15.0
#: Seconds an SFTP request may take before the SFTP session is given up.
DEFAULT_SFTP_TIMEOUT = 30.0

_KEY_NAMES = {  # how OpenSSH names key types in its prompts
    "ssh-ed25519": "ED25519",
    "ssh-rsa": "RSA",
    "rsa-sha2-256": "RSA",
    "rsa-sha2-512": "RSA",
    "ecdsa-sha2-nistp256": "ECDSA",
    "ecdsa-sha2-nistp384": "ECDSA",
    "ecdsa-sha2-nistp521": "ECDSA",
}


def key_type_label(key_type: str) -> str:
    """``ssh-ed25519`` → ``ED25519``, as OpenSSH prints it."""
    return _KEY_NAMES.get(key_type, key_type)


# --------------------------------------------------------------------------
# Events the dashboard can show


EventKind = Literal["connected", "lost", "retrying", "reconnected", "failed", "closed"]


@dataclass(frozen=True)
class ConnectionEvent:
    """Something that happened to the connection (for the dashboard's footer)."""

    kind: EventKind
    at: float  # time.time()
    detail: str = ""
    attempt: int = 0


@dataclass(frozen=True)
class ConnectionStatus:
    """A snapshot of the connection's health."""

    host: str
    connected: bool
    reconnects: int
    last_reconnect_at: float | None
    last_error: str | None


# --------------------------------------------------------------------------
# Host keys


class _AskPolicy(paramiko.MissingHostKeyPolicy):
    """Unknown host key → ask; never accept silently."""

    def __init__(self, connection: SshConnection, host: ResolvedHost) -> None:
        self.connection = connection
        self.host = host

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        conn = self.connection
        fingerprint = key.fingerprint
        label = key_type_label(key.get_name())
        if conn.revoked.check(hostname, key):
            raise HostKeyChanged(
                f"the host key of {hostname} ({label} {fingerprint}) is marked @revoked in known_hosts: refusing to connect",
                "ask the cluster admins which key the login node should have now",
            )
        add_line = f"ssh-keyscan -p {self.host.port} {self.host.hostname} >> {conn.known_hosts_display}"
        if conn.ask_host_key is None:
            raise HostKeyUnknown(
                f"the host key of {hostname} is not known ({label} {fingerprint}) and there is no terminal to confirm it",
                f"check that fingerprint with your cluster's documentation or admins, then add the key: {add_line}",
            )
        try:
            accepted = bool(conn.ask_host_key(hostname, key.get_name(), fingerprint))
        except (EOFError, KeyboardInterrupt):
            accepted = False
        if not accepted:
            raise HostKeyUnknown(
                f"the host key of {hostname} ({label} {fingerprint}) was not accepted",
                f"connect again and answer yes once the fingerprint is verified, or add it: {add_line}",
            )
        conn._remember_host_key(client, hostname, key)


def _split_markers(text: str, revoked: paramiko.HostKeys) -> str:
    """known_hosts without its marker lines, which paramiko cannot read (it
    raises on them). ``@revoked`` keys go into ``revoked`` (refused, never
    offered to trust); ``@cert-authority`` lines are skipped: host
    certificates are not supported, so such hosts are asked about as unknown."""
    kept = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("@revoked"):
            entry = paramiko.hostkeys.HostKeyEntry.from_line(stripped.split(None, 1)[1] if " " in stripped else "")
            if entry is not None and entry.key is not None:
                for name in entry.hostnames:
                    revoked.add(name, entry.key.get_name(), entry.key)
        elif not stripped.startswith("@"):
            kept.append(line)
    return "\n".join(kept) + "\n"


def _load_lines(load: Callable[[str], None], text: str) -> None:
    """Feed ``text`` to a paramiko loader that only takes a file name."""
    import tempfile

    with tempfile.NamedTemporaryFile("w", encoding="utf-8", prefix="hpcwizard-known-hosts-") as handle:
        handle.write(text)
        handle.flush()
        load(handle.name)


def _changed_key_error(name: str, exc: BadHostKeyException, known_hosts: str) -> HostKeyChanged:
    got, expected = exc.key, exc.expected_key
    return HostKeyChanged(
        f"WARNING: THE HOST KEY OF {name} HAS CHANGED (it offers {key_type_label(got.get_name())} "
        f"{got.fingerprint}, known_hosts has {key_type_label(expected.get_name())} {expected.fingerprint}); "
        "someone may be intercepting the connection, or the host was reinstalled: refusing to connect",
        f"ask the cluster admins; only if they confirm a new key, remove the old one: "
        f"ssh-keygen -f {known_hosts} -R '{name}'",
    )


# --------------------------------------------------------------------------
# Authentication


class _KeyFile(PrivateKey):
    """A key file, loaded (and decrypted, asking for the passphrase) only if
    the sources before it did not log us in."""

    def __init__(self, username: str, path: str, ask: PassphrasePrompt | None, notes: list[str],
                 unlocked: dict[str, paramiko.PKey] | None = None, wrong_passphrase: list[str] | None = None) -> None:
        super().__init__(username=username)
        self.path = path
        self.ask = ask
        self.notes = notes
        #: Keys whose passphrase was given wrong every time (shared with the strategy).
        self.wrong_passphrase = wrong_passphrase if wrong_passphrase is not None else []
        self.unlocked = unlocked if unlocked is not None else {}

    def __repr__(self) -> str:
        return f"_KeyFile({self.path!r})"

    def authenticate(self, transport: paramiko.Transport) -> list[str]:
        if self.path in self.unlocked:
            # Decrypted at an earlier connect: a reconnect (maybe while the
            # TUI owns the terminal) must not ask for the passphrase again.
            self.pkey = self.unlocked[self.path]
            return super().authenticate(transport)
        try:
            self.pkey = paramiko.PKey.from_path(self.path)
        except (TypeError, PasswordRequiredException):
            # cryptography says "password-protected" with a TypeError.
            self.pkey = self._decrypt()
            self.unlocked[self.path] = self.pkey  # in memory only, like ssh-agent
        except (OSError, SSHException, ValueError) as exc:
            self.notes.append(f"cannot read {self.path}: {exc}")
            raise
        return super().authenticate(transport)

    def _decrypt(self) -> paramiko.PKey:
        if self.ask is None:
            self.notes.append(
                f"{self.path} is encrypted and there is no terminal to ask its passphrase; add it to ssh-agent first: ssh-add {self.path}"
            )
            raise AuthenticationException("encrypted key, no passphrase prompt")
        for attempt in range(PASSPHRASE_TRIES):
            passphrase = self.ask(self.path, retry=True) if attempt else self.ask(self.path)
            if passphrase is None:
                self.notes.append(f"{self.path} skipped (no passphrase given)")
                raise AuthenticationException("no passphrase")
            try:
                # bytes: what paramiko 3.x takes; 5.x takes str or bytes. Any:
                # types-paramiko 5 says str only, 4 (the last for Python 3.9)
                # says bytes, and one line must type-check under both.
                secret: Any = passphrase.encode("utf-8")
                return paramiko.PKey.from_path(self.path, secret)
            except (TypeError, ValueError, SSHException):
                continue  # OpenSSH's "Bad passphrase, try again"
        self.notes.append(f"wrong passphrase for {self.path}")
        self.wrong_passphrase.append(self.path)
        raise AuthenticationException("wrong passphrase")


class _KeysStrategy(AuthStrategy):
    """ssh-agent keys first, then key files; the first that works wins."""

    def __init__(self, username: str, agent_keys: Sequence[paramiko.PKey], files: Sequence[str],
                 ask: PassphrasePrompt | None, unlocked: dict[str, paramiko.PKey] | None = None) -> None:
        super().__init__(ssh_config=paramiko.SSHConfig())  # unused: the sources come from get_sources below
        self.username = username
        self.agent_keys = agent_keys
        self.files = files
        self.ask = ask
        self.unlocked = unlocked if unlocked is not None else {}
        self.notes: list[str] = []
        self.wrong_passphrase: list[str] = []

    def get_sources(self) -> Iterator[PrivateKey]:
        for key in self.agent_keys:
            yield InMemoryPrivateKey(self.username, key)
        for path in self.files:
            yield _KeyFile(self.username, path, self.ask, self.notes, self.unlocked, self.wrong_passphrase)


# --------------------------------------------------------------------------
# The connection


def _silent_server(exc: BaseException) -> str | None:
    """How a server that does not speak SSH failed us, in words: it sent no
    SSH greeting in time ("it sent no SSH greeting"), or went silent in the key
    exchange ("the SSH handshake stalled"; paramiko then says "No existing
    session", which a silent server can also get), or hung up without a
    greeting ("closed"). None for anything else."""
    if not isinstance(exc, SSHException):
        return None
    text = str(exc)
    if "protocol banner" in text:
        context = exc.__context__
        if isinstance(context, (socket.timeout, TimeoutError)):
            return "it sent no SSH greeting"
        return "closed"
    if "No existing session" in text:
        return "the SSH handshake stalled"
    return None


def _is_connection_error(exc: BaseException) -> bool:
    """True when ``exc`` means the transport is gone (not a refused request)."""
    if isinstance(exc, ChannelException):
        return False  # the server refused one channel; the connection is fine
    return isinstance(exc, (EOFError, SSHException, ConnectionError, socket.error))


class SshConnection:
    """A (re)connecting SSH connection to ``host`` and its jump hosts.

    Nothing happens until the first use (or :meth:`connect`). ``known_hosts``
    is the user's file (read, and appended to when a key is accepted);
    ``system_known_hosts`` are read only. ``identity_dir`` is where the
    default ``id_*`` keys are looked for (``~/.ssh``).
    """

    def __init__(
        self,
        host: ResolvedHost,
        *,
        ask_host_key: HostKeyPrompt | None = None,
        passphrase: PassphrasePrompt | None = None,
        known_hosts: str | os.PathLike[str] | None = None,
        system_known_hosts: Sequence[str | os.PathLike[str]] = SYSTEM_KNOWN_HOSTS,
        use_agent: bool = True,
        identity_dir: str | os.PathLike[str] | None = None,
        keepalive: float | None = None,
        connect_timeout: float | None = None,
        sftp_timeout: float = DEFAULT_SFTP_TIMEOUT,
        reconnect_attempts: int = 5,
        backoff_initial: float = 0.5,
        backoff_max: float = 8.0,
        on_event: Callable[[ConnectionEvent], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.host = host
        self.ask_host_key = ask_host_key
        self.passphrase = passphrase
        # Key files decrypted with a passphrase, kept in memory for reconnects.
        self._unlocked_keys: dict[str, paramiko.PKey] = {}
        # An explicit argument wins, then the config's UserKnownHostsFile.
        known_hosts = known_hosts or host.known_hosts_file
        self.known_hosts = Path(os.path.expanduser(os.fspath(known_hosts or DEFAULT_KNOWN_HOSTS)))
        self.known_hosts_display = os.fspath(known_hosts) if known_hosts else DEFAULT_KNOWN_HOSTS
        self.system_known_hosts = [Path(os.fspath(p)) for p in system_known_hosts]
        self.use_agent = use_agent
        self.identity_dir = Path(os.path.expanduser(os.fspath(identity_dir or "~/.ssh")))
        self.keepalive = keepalive if keepalive is not None else (host.server_alive_interval or DEFAULT_KEEPALIVE)
        self.connect_timeout = connect_timeout or host.connect_timeout or DEFAULT_CONNECT_TIMEOUT
        self.sftp_timeout = sftp_timeout
        self.reconnect_attempts = max(1, reconnect_attempts)
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.on_event = on_event
        self._sleep = sleep

        self._lock = threading.RLock()
        self._client: paramiko.SSHClient | None = None
        self._jump_clients: list[paramiko.SSHClient] = []
        self._sftp: paramiko.SFTPClient | None = None
        self._sftp_generation = -1
        # paramiko's SFTPClient is not safe for concurrent requests: a thread
        # waiting for its answer may read (and drop) another thread's, which
        # then waits until the SFTP timeout. The wizard's and dashboard's
        # workers share one session, so its operations take turns.
        self._sftp_turn = threading.RLock()
        # Keys accepted in this process, re-applied at every reconnect even if
        # writing known_hosts failed.
        self._accepted = paramiko.HostKeys()
        #: Keys known_hosts marks ``@revoked``: never trusted, even if asked.
        self.revoked = paramiko.HostKeys()
        self._ever_connected = False
        self._closed = False
        self._reconnect_hooks: list[Callable[[], None]] = []
        self._in_hooks = threading.local()
        #: Increases at every successful (re)connect; SFTP handles compare it.
        self.generation = 0
        self.reconnects = 0
        self.last_reconnect_at: float | None = None
        self.last_error: str | None = None

    @classmethod
    def from_spec(cls, spec: str, *, config_path: str | os.PathLike[str] | None = None,
                  **options: Any) -> SshConnection:
        """``--host`` value + SSH config → an (unconnected) connection."""
        return cls(resolve(spec, config_path=config_path), **options)

    # -- public state ---------------------------------------------------------

    @property
    def connected(self) -> bool:
        client = self._client
        transport = client.get_transport() if client is not None else None
        return transport is not None and transport.is_active()

    def status(self) -> ConnectionStatus:
        return ConnectionStatus(
            host=self.host.display,
            connected=self.connected,
            reconnects=self.reconnects,
            last_reconnect_at=self.last_reconnect_at,
            last_error=self.last_error,
        )

    def _emit(self, kind: EventKind, detail: str = "", attempt: int = 0) -> None:
        if self.on_event is not None:
            try:
                self.on_event(ConnectionEvent(kind, time.time(), detail, attempt))
            except Exception:  # noqa: BLE001, S110 - a broken listener must not break the connection
                pass

    # -- connecting -----------------------------------------------------------

    def connect(self) -> SshConnection:
        """Connect now (no-op when connected). Raises :class:`SshError`."""
        self.client()
        return self

    def client(self) -> paramiko.SSHClient:
        """The live SSHClient, reconnecting first if the transport dropped."""
        with self._lock:
            if self._closed:
                raise SshError(f"the connection to {self.host.display} was closed", "this is a bug in hpcwizard")
            if self.connected:
                assert self._client is not None
                return self._client
            if not self._ever_connected:
                self._open()  # first connection: errors go straight to the user
                self._ever_connected = True
                self._emit("connected", self.host.display)
                assert self._client is not None  # _open() set it or raised
                return self._client
            client = self._reconnect()
        # Outside the connection lock: a hook uses the connection (SFTP, a
        # channel), and another thread may hold the SFTP turn while it waits
        # for that lock.
        self._run_reconnect_hooks()
        return client

    def add_reconnect_hook(self, hook: Callable[[], None]) -> Callable[[], None]:
        """Call ``hook()`` after every reconnect (in the thread that
        reconnected): what lived on the old connection, such as a lock held
        by a channel, is gone. Returns the function that removes it."""
        with self._lock:
            self._reconnect_hooks.append(hook)

        def remove() -> None:
            with self._lock:
                if hook in self._reconnect_hooks:
                    self._reconnect_hooks.remove(hook)

        return remove

    def _run_reconnect_hooks(self) -> None:
        if getattr(self._in_hooks, "active", False):
            return  # a hook's own use of the connection reconnected again: the outer run goes on
        self._in_hooks.active = True
        try:
            with self._lock:
                hooks = list(self._reconnect_hooks)
            for hook in hooks:
                try:
                    hook()
                except Exception:  # noqa: BLE001, S110 - one broken hook must not break the call that reconnected
                    pass
        finally:
            self._in_hooks.active = False

    def transport(self) -> paramiko.Transport:
        transport = self.client().get_transport()
        assert transport is not None
        return transport

    def _reconnect(self) -> paramiko.SSHClient:
        self._emit("lost", self.last_error or "transport closed")
        self._drop()
        delay = self.backoff_initial
        for attempt in range(1, self.reconnect_attempts + 1):
            try:
                self._open()
            except ConnectFailed as exc:  # network trouble: worth retrying
                self.last_error = exc.one_line()
                if attempt == self.reconnect_attempts:
                    break
                self._emit("retrying", self.last_error, attempt)
                self._sleep(delay)
                delay = min(delay * 2, self.backoff_max)
                continue
            # Host key or authentication problems are not retried.
            self.reconnects += 1
            self.last_reconnect_at = time.time()
            self._emit("reconnected", self.host.display, attempt)
            assert self._client is not None  # the attempt above set it
            return self._client
        self._emit("failed", self.last_error or "", self.reconnect_attempts)
        raise ConnectFailed(
            f"lost the connection to {self.host.display} and could not reconnect "
            f"({self.reconnect_attempts} attempts): {self.last_error}",
            "check the network or VPN; the next refresh tries again",
        )

    def _open(self) -> None:
        """Open the jump chain and the target; set ``_client``."""
        hops = [*self.host.jumps, self.host]
        clients: list[paramiko.SSHClient] = []
        try:
            sock: paramiko.Channel | None = None
            for index, hop in enumerate(hops):
                if index:
                    sock = self._tunnel(clients[-1], hops[index - 1], hop)
                clients.append(self._open_one(hop, sock))
        except BaseException:
            for client in reversed(clients):
                client.close()
            raise
        self._jump_clients = clients[:-1]
        self._client = clients[-1]
        self.generation += 1

    def _tunnel(self, through: paramiko.SSHClient, jump: ResolvedHost, hop: ResolvedHost) -> paramiko.Channel:
        transport = through.get_transport()
        assert transport is not None
        try:
            return transport.open_channel(
                "direct-tcpip", (hop.hostname, hop.port), ("127.0.0.1", 0), timeout=self.connect_timeout
            )
        except (SSHException, EOFError, OSError) as exc:
            raise ConnectFailed(
                f"jump host {jump.display} could not open a connection to {hop.hostname}:{hop.port}: {exc or type(exc).__name__}",
                "check ProxyJump and HostName in your SSH config (the jump host must allow TCP forwarding)",
            ) from exc

    def _identity_files(self, hop: ResolvedHost) -> list[str]:
        if hop.identity_files:
            files = list(hop.identity_files)
        else:
            files = [str(self.identity_dir / name) for name in DEFAULT_IDENTITIES]
        return [f for f in files if os.path.isfile(f)]

    def _load_host_keys(self, client: paramiko.SSHClient) -> None:
        # Everything goes into the "system" set: paramiko never rewrites it.
        # Accepted keys are appended to known_hosts by _remember_host_key.
        self.revoked = paramiko.HostKeys()
        for path in [*self.system_known_hosts, self.known_hosts]:
            if path.is_file():
                try:
                    plain = _split_markers(path.read_text(encoding="utf-8"), self.revoked)
                    _load_lines(client.load_system_host_keys, plain)
                except (OSError, UnicodeDecodeError, paramiko.hostkeys.InvalidHostKey) as exc:
                    raise SshError(f"cannot read {path}: {exc}", "fix or move that file") from exc
        for name in self._accepted:
            for key_type, key in self._accepted[name].items():
                client.get_host_keys().add(name, key_type, key)

    def _remember_host_key(self, client: paramiko.SSHClient, name: str, key: paramiko.PKey) -> None:
        self._accepted.add(name, key.get_name(), key)
        client.get_host_keys().add(name, key.get_name(), key)
        line = f"{name} {key.get_name()} {key.get_base64()}\n"
        try:
            self.known_hosts.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.known_hosts, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "a", encoding="ascii") as out:
                # Append only: the user's file keeps its comments and markers.
                if out.tell() > 0 and not self._ends_with_newline():
                    out.write("\n")
                out.write(line)
        except OSError as exc:
            raise SshError(
                f"accepted the host key of {name} but could not save it to {self.known_hosts}: {exc.strerror}",
                "fix the permissions of that file",
            ) from exc

    def _ends_with_newline(self) -> bool:
        with open(self.known_hosts, "rb") as f:
            f.seek(-1, os.SEEK_END)
            return f.read(1) == b"\n"

    def _agent_keys(self, hop: ResolvedHost) -> tuple[paramiko.Agent | None, list[paramiko.PKey]]:
        if not self.use_agent or hop.identities_only or not os.environ.get("SSH_AUTH_SOCK"):
            return None, []
        try:
            agent = paramiko.Agent()
            return agent, list(agent.get_keys())
        except (SSHException, OSError):
            return None, []  # a stale SSH_AUTH_SOCK is not fatal: key files follow

    def _open_one(self, hop: ResolvedHost, sock: paramiko.Channel | None) -> paramiko.SSHClient:
        client = paramiko.SSHClient()
        self._load_host_keys(client)
        client.set_missing_host_key_policy(_AskPolicy(self, hop))
        agent, agent_keys = self._agent_keys(hop)
        files = self._identity_files(hop)
        strategy = _KeysStrategy(hop.user, agent_keys, files, self.passphrase, self._unlocked_keys)
        timeout = self.connect_timeout
        try:
            client.connect(
                hop.hostname,
                port=hop.port,
                username=hop.user,
                sock=sock,
                timeout=timeout,
                banner_timeout=timeout,
                auth_timeout=timeout,
                channel_timeout=timeout,
                auth_strategy=strategy,
            )
        except BaseException as exc:
            client.close()
            if isinstance(exc, SshError):
                raise
            raise self._connect_error(hop, exc, agent_keys, files, strategy) from exc
        finally:
            if agent is not None:
                agent.close()
        transport = client.get_transport()
        assert transport is not None
        transport.set_keepalive(max(1, int(self.keepalive)))
        return client

    def _connect_error(self, hop: ResolvedHost, exc: BaseException, agent_keys: Sequence[paramiko.PKey],
                       files: Sequence[str], strategy: _KeysStrategy) -> SshError:
        where = hop.display
        config = hop.config_display
        notes = strategy.notes
        if isinstance(exc, BadHostKeyException):
            return _changed_key_error(hop.known_hosts_name, exc, self.known_hosts_display)
        if isinstance(exc, (AuthFailure, AuthenticationException)):
            tried = (["ssh-agent"] if agent_keys else []) + list(files)
            if not tried:
                return AuthenticationFailed(
                    f"no SSH key to log in to {where}: ssh-agent has none and no key file was found "
                    f"(IdentityFile, or {self.identity_dir}/id_ed25519, id_ecdsa, id_rsa)",
                    f"create one (ssh-keygen -t ed25519), install it on the cluster (ssh-copy-id), or set IdentityFile for {hop.alias} in {config}",
                )
            if strategy.wrong_passphrase:
                # The key could not even be unlocked: the server's
                # authorized_keys has nothing to do with it.
                key = strategy.wrong_passphrase[0]
                others = [note for note in notes if key not in note]
                detail = f" ({'; '.join(others)})" if others else ""
                return AuthenticationFailed(
                    f"wrong passphrase for {key} ({PASSPHRASE_TRIES} tries): could not log in to {where}{detail}",
                    f"connect again and type the passphrase that protects this key (`ssh-keygen -y -f {key}` "
                    f"checks it), or unlock it once in ssh-agent: ssh-add {key}",
                )
            detail = f" ({'; '.join(notes)})" if notes else ""
            return AuthenticationFailed(
                f"could not log in to {where} with the key(s) tried: {', '.join(tried)}{detail}",
                f"check that your public key is in ~/.ssh/authorized_keys on {hop.hostname} "
                f"or set IdentityFile for {hop.alias} in {config}; test with: {hop.ssh_command()}",
            )
        if isinstance(exc, socket.gaierror):
            return ConnectFailed(f"cannot resolve host name {hop.hostname}", f"check the spelling or HostName for {hop.alias} in {config}")
        if isinstance(exc, (NoValidConnectionsError, ConnectionRefusedError)):
            return ConnectFailed(f"{hop.hostname} port {hop.port} refused the connection", "check the host and port (is sshd running there?)")
        if isinstance(exc, (socket.timeout, TimeoutError)):
            return ConnectFailed(f"no answer from {where} within {self.connect_timeout:g} s", f"check the network or VPN (ConnectTimeout in {config} raises the limit)")
        silent = _silent_server(exc)
        if silent is not None:
            if silent == "closed":
                return ConnectFailed(
                    f"{hop.hostname} port {hop.port} closed the connection without an SSH greeting: "
                    "it is not an SSH server, or it refused this client",
                    f"check the host and port (`{hop.ssh_command()}` should work)")
            return ConnectFailed(
                f"the server at {hop.hostname} port {hop.port} did not answer as an SSH server within "
                f"{self.connect_timeout:g} s ({silent})",
                f"check the host and port, and the network or VPN (ConnectTimeout in {config} raises the limit)")
        if isinstance(exc, (SSHException, EOFError, OSError)):
            text = str(exc) or type(exc).__name__
            if isinstance(exc, OSError) and exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
                text = os.strerror(exc.errno)
            return ConnectFailed(f"SSH connection to {where} failed: {text}", f"check that `{hop.ssh_command()}` works")
        raise exc  # a bug (or KeyboardInterrupt): keep the traceback

    # -- channels -------------------------------------------------------------

    def mark_broken(self, reason: str) -> None:
        """Forget the current transport; the next call reconnects."""
        with self._lock:
            self.last_error = reason
            self._drop()

    def open_session(self, timeout: float | None = None) -> paramiko.Channel:
        """A new session channel; reconnects (once) if the transport is gone
        or the server does not answer within ``timeout`` (default: the connect
        timeout).

        Safe to retry: nothing has run on the server before the channel opens.
        """
        for attempt in (1, 2):
            transport = self.transport()
            try:
                return transport.open_session(timeout=min(timeout or self.connect_timeout, self.connect_timeout))
            except ChannelException as exc:
                raise SshError(f"{self.host.display} refused a new SSH channel: {exc}", "the server may limit sessions (MaxSessions); try again") from exc
            except (SSHException, EOFError, OSError) as exc:
                self.mark_broken(f"connection lost: {exc or type(exc).__name__}")
                if attempt == 2:
                    raise ConnectFailed(f"cannot open a channel to {self.host.display}: {exc}", "check the network; the next refresh tries again") from exc
        raise AssertionError("unreachable")

    def sftp(self) -> paramiko.SFTPClient:
        """The shared SFTP session (reopened after a reconnect)."""
        with self._lock:
            client = self.client()
            if self._sftp is None or self._sftp_generation != self.generation or self._sftp.sock.closed:
                self._close_sftp()
                try:
                    sftp = client.open_sftp()
                except (SSHException, EOFError, OSError) as exc:
                    if _is_connection_error(exc) and not self.connected:
                        raise
                    raise SshError(f"{self.host.display} refused SFTP: {exc}", "the server must enable the sftp subsystem") from exc
                channel = sftp.get_channel()
                if channel is not None:  # always, for a client just opened
                    channel.settimeout(self.sftp_timeout)
                self._sftp, self._sftp_generation = sftp, self.generation
            return self._sftp

    def with_sftp(self, operation: Callable[[paramiko.SFTPClient], T]) -> T:
        """Run ``operation(sftp)``; if the connection dropped, reconnect and
        run it once more. Only for idempotent operations (stat, read, atomic
        write, mkdir -p). File errors (missing, permission) pass through."""
        for attempt in (1, 2):
            try:
                with self._sftp_turn:
                    sftp = self.sftp()
                    return operation(sftp)
            except (TimeoutError, socket.timeout) as exc:  # one class from 3.10; on 3.9 a socket's is not a TimeoutError
                with self._lock:
                    self._close_sftp()  # the SFTP stream is out of step now
                raise SshError(
                    f"SFTP on {self.host.display} did not answer within {self.sftp_timeout:g} s",
                    "the login node or its file system may be overloaded; try again",
                ) from exc
            except (EOFError, SSHException, OSError) as exc:
                sftp_alive = self._sftp is not None and not self._sftp.sock.closed
                if self.connected and sftp_alive:
                    raise  # a file error (FileNotFoundError, PermissionError...)
                if attempt == 2:
                    raise ConnectFailed(
                        f"lost the connection to {self.host.display} during a file operation: {exc or type(exc).__name__}",
                        "check the network; the next refresh tries again",
                    ) from exc
                self.mark_broken(f"connection lost: {exc or type(exc).__name__}")
        raise AssertionError("unreachable")

    # -- closing --------------------------------------------------------------

    def _close_sftp(self) -> None:
        if self._sftp is not None:
            try:
                self._sftp.close()
            except (OSError, EOFError, SSHException):
                pass  # its channel may be gone with the connection
            self._sftp = None

    def _drop(self) -> None:
        self._close_sftp()
        for client in [self._client, *reversed(self._jump_clients)]:
            if client is not None:
                try:
                    client.close()
                except (OSError, EOFError, SSHException):
                    pass  # already dead: nothing left to close
        self._client = None
        self._jump_clients = []

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._drop()
                self._closed = True
                self._emit("closed", self.host.display)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""Project files, here or on the login node: one small interface beside the runner.

Everything hpcwizard keeps in a project home (plan, state, rendered scripts,
logs, locks) goes through a :class:`ProjectFiles`:

- :class:`LocalFiles`: this machine (hpcwizard runs on the login node):
  atomic temp file + fsync + rename, and ``flock`` locks.
- :class:`SshFiles`: the login node over the SSH connection of ``--host``:
  SFTP for reading and atomic writing (temp + ``posix-rename``), and log
  following that reads only the appended bytes (:class:`SftpFileSource`).

Paths are paths of the machine the files live on. In remote mode they are the
LOGIN NODE's paths: never ``resolve()``, ``expanduser()`` or ``exists()`` them
locally; a leading ``~`` is expanded with :meth:`ProjectFiles.home`.

Locks over SSH
--------------
SFTP has no ``flock``, and a lock file created with ``O_EXCL`` goes stale when
a laptop sleeps or crashes (and the laptop's pid cannot be checked from the
cluster). So :meth:`SshFiles.lock` runs the lock ON THE LOGIN NODE: one SSH
channel runs ``flock`` (util-linux, present on every Linux login node) on the
same lock file a local hpcwizard would use, and keeps it (``cat`` waiting on
the channel's stdin) for the ``with`` block. Consequences:

- a remote hpcwizard, a local one on the login node and a setup job recording
  download progress all exclude each other with the SAME kernel lock;
- the lock can never go stale: when the laptop closes the channel, crashes
  or loses the network, sshd closes the process's stdin, ``cat`` ends and the
  kernel releases the lock;
- hence a lock lasts as long as its SSH connection. The wizard's project
  lock (:class:`~hpcwizard.project.state.ProjectLock`) is taken again on
  reconnect (:meth:`ProjectFiles.on_reconnect`); if another wizard opened the
  project in between, the first one turns read-only. (The state file stays
  consistent either way: every read-modify-write takes its own short lock.)
"""

from __future__ import annotations

import codecs
import contextlib
import errno
import fcntl
import os
import posixpath
import socket
import stat as stat_mode
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Union

from hpcwizard.errors import UserError
from hpcwizard.project.temp_names import is_stale_temp, local_temp_affixes

if TYPE_CHECKING:
    from hpcwizard.jobs.logtail import FileSource
    from hpcwizard.remote.connection import SshConnection

# Union, not `|`: an alias is evaluated at run time, and Python 3.9 has no `|` on types.
PathLike = Union[str, "os.PathLike[str]"]


def open_lock_file(path: Path) -> int:
    """A descriptor on the lock file ``path`` (folders created); a folder that
    cannot be made or written is one line saying which, not a traceback."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        where = exc.filename or path.parent
        raise UserError(f"cannot write the project's files in {path.parent} ({where}: {exc.strerror or exc})",
                        "choose a folder you can write (--project-home, or project_home in the plan)") from None


class LockBusy(UserError):
    """A non-blocking lock is held by someone else; ``holder`` says who (if known)."""

    def __init__(self, path: str, holder: str) -> None:
        super().__init__(f"{path} is locked by {holder or 'another process'}")
        self.path = path
        self.holder = holder


class LockTimeout(LockBusy):
    """A blocking lock still held by someone else when its wait ran out."""

    def __init__(self, path: str, holder: str, where: str, timeout: float) -> None:
        super().__init__(path, holder)
        self.message = f"could not lock {path} on {where} within {timeout:g} s"
        self.hint = "another hpcwizard or a job holds it; try again"


class LockHandle(Protocol):
    """A lock held for a ``with`` block of :meth:`ProjectFiles.lock`."""

    def held(self) -> bool:
        """Whether the lock is still ours: a lock held through an SSH
        channel is gone with the connection that carried it."""
        ...


class _FdHold:
    """A local ``flock``: held as long as its descriptor is open."""

    def held(self) -> bool:
        return True


def holder_note() -> str:
    """What a lock file says about its holder (for the other side's message only)."""
    return f"pid {os.getpid()} on {socket.gethostname()}"


class TextSink(Protocol):
    """Where a streamed command's output goes: a text file (``sys.stdout``)
    or anything with ``write`` and ``flush``."""

    def write(self, text: str, /) -> object: ...

    def flush(self) -> object: ...


@dataclass(frozen=True)
class PathStat:
    """Size and modification time of a file, here or on the login node."""

    size: int
    mtime_ns: int
    #: SFTP v3 (OpenSSH) reports whole seconds: remote mtimes are compared at
    #: this resolution (a local ``stat`` has nanoseconds).
    mtime_resolution_ns: int = 1

    def same_mtime(self, mtime_ns: int) -> bool:
        """Whether ``mtime_ns`` (recorded by a local ``stat`` on the file's
        machine) is this mtime, as far as this stat's resolution can tell."""
        step = self.mtime_resolution_ns
        return self.mtime_ns // step == mtime_ns // step


class ProjectFiles(Protocol):
    """File access for a project home, on this machine or on the login node."""

    #: True when the files live on another machine (paths are the login node's).
    remote: bool
    @property
    def where(self) -> str:
        """Where the files are, for messages ("this machine", "root@login1");
        read-only (SshFiles derives it from its connection)."""
        ...

    def read_text(self, path: PathLike) -> str:
        """The file's text; FileNotFoundError when absent."""
        ...

    def write_text_atomic(self, path: PathLike, text: str, mode: int = 0o644) -> None:
        """Replace ``path`` with ``text`` atomically (parents created); ``mode``
        applies from the first byte, so a 0600 file is never readable by others."""
        ...

    def exists(self, path: PathLike) -> bool: ...

    def stat(self, path: PathLike) -> PathStat:
        """Size and mtime (following symlinks); FileNotFoundError when absent."""
        ...

    def is_dir(self, path: PathLike) -> bool: ...

    def mkdir_p(self, path: PathLike) -> None:
        """``mkdir -p``; a folder that cannot be made is a :class:`UserError` naming it."""
        ...

    def creatable(self, path: PathLike) -> str | None:
        """None when ``path`` is a folder this user can write, or can be
        created (a probe folder is made and removed in its nearest existing
        parent); else why not, in a few words."""
        ...

    def listdir(self, path: PathLike) -> list[str]:
        """Names in ``path``, sorted."""
        ...

    def remove(self, path: PathLike, *, missing_ok: bool = False) -> None: ...

    def home(self) -> str:
        """The home directory of the user on the machine the files live on."""
        ...

    def open_source(self, path: str) -> FileSource:
        """A :class:`~hpcwizard.jobs.logtail.FileSource` for following a log."""
        ...

    def lock(self, path: PathLike, *, blocking: bool = True, note: str | None = None,
             timeout: float = 120.0) -> contextlib.AbstractContextManager[LockHandle]:
        """An exclusive lock on ``path`` (created if needed) for the ``with``
        block. Non-blocking: raises :class:`LockBusy` when held. ``note``
        (who holds it) is written into the lock file once it is taken."""
        ...

    def run_streaming(self, argv: list[str], out: TextSink, *, env: Mapping[str, str] | None = None,
                      cancel: threading.Event | None = None) -> int:
        """Run ``argv`` on the machine holding the files, copying its output
        (stderr merged, as a terminal shows it) to ``out`` as it arrives; its
        exit status. No timeout (a download takes hours); ``cancel`` or
        Ctrl-C stops it (SIGINT; 130 when cancelled). The HF token is never
        in its environment."""
        ...

    def on_reconnect(self, hook: Callable[[], None]) -> Callable[[], None]:
        """Call ``hook()`` whenever the way to the files was lost and made
        again (an SSH reconnect; never, for this machine's files): locks held
        on the old connection are gone. Returns the function that removes it."""
        ...


def cannot_write(folder: PathLike, exc: OSError, where: str) -> UserError:
    """A folder of the project that could not be made or written, in one line."""
    place = "" if where == "this machine" else f" on {where}"
    reason = exc.strerror or str(exc) or type(exc).__name__
    culprit = f"{exc.filename}: " if exc.filename and os.fspath(exc.filename) != os.fspath(folder) else ""
    return UserError(f"cannot write the project's files in {folder}{place} ({culprit}{reason})",
                     "choose a folder you can write (--project-home, or project_home in the plan)")


def _visible(path: Path) -> bool:
    """``path.exists()``, where a parent this user may not enter counts as
    not there (Path.exists raises PermissionError for it)."""
    try:
        return path.exists()
    except PermissionError:
        return False


def expand_home(files: ProjectFiles, path: str) -> str:
    """``~`` or ``~/x`` → the files' home (the login node's in remote mode)."""
    if path == "~" or path.startswith("~/"):
        return files.home() + path[1:]
    return path


# --------------------------------------------------------------------------
# This machine


class SaveError(UserError):
    """A project file could not be written (the previous one is intact)."""


def atomic_write(path: Path, text: str, mode: int = 0o644) -> None:
    """Write ``text`` to ``path`` so readers see the old or the new file, never half.

    Durable once it returns: the file is fsynced before the rename and the
    folder after it, so a crash (or a power cut) right after keeps the new
    file; the submit journal relies on that."""
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix, suffix = local_temp_affixes(path.name)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=suffix)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
        fsync_folder(path.parent)
        remove_stale_temps(path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise SaveError(f"cannot save {path}: the disk or your quota is full",
                             "free some space; nothing was lost, the previous file is intact") from None
        raise SaveError(f"cannot save {path}: {exc.strerror}") from None


def remove_stale_temps(path: Path) -> None:
    """Best effort: remove what killed saves of ``path`` left beside it."""
    now = time.time()
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return
    for entry in entries:
        try:
            if is_stale_temp(entry.name, path.name, now - entry.stat(follow_symlinks=False).st_mtime):
                os.unlink(entry.path)
        except OSError:
            continue  # gone already, or not ours to remove


def fsync_folder(folder: Path) -> None:
    """Make a rename or unlink in ``folder`` durable (best effort: some
    filesystems cannot fsync a folder, and then there is nothing more to do)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)




class LocalFiles:
    """Today's behaviour: the local disk, atomic writes, ``flock``."""

    remote = False
    where = "this machine"

    def read_text(self, path: PathLike) -> str:
        return Path(path).read_text(encoding="utf-8")

    def write_text_atomic(self, path: PathLike, text: str, mode: int = 0o644) -> None:
        atomic_write(Path(path), text, mode)

    def exists(self, path: PathLike) -> bool:
        return Path(path).exists()

    def stat(self, path: PathLike) -> PathStat:
        st = os.stat(path)
        return PathStat(st.st_size, st.st_mtime_ns)

    def is_dir(self, path: PathLike) -> bool:
        return Path(path).is_dir()

    def mkdir_p(self, path: PathLike) -> None:
        try:
            Path(path).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise cannot_write(Path(path), exc, self.where) from None

    def creatable(self, path: PathLike) -> str | None:
        path = Path(path)
        existing = path
        while not _visible(existing) and existing.parent != existing:
            existing = existing.parent
        if not existing.is_dir():
            return f"{existing} is a file, not a folder"
        if not os.access(existing, os.W_OK | os.X_OK):
            return f"{'it' if existing == path else existing} is not writable by you"
        if existing != path:
            # os.access says yes to root everywhere (/proc too): try, leaving nothing behind.
            try:
                os.rmdir(tempfile.mkdtemp(prefix=".hpcwizard-probe-", dir=existing))
            except OSError as exc:
                return f"cannot create folders in {existing} ({exc.strerror or exc})"
        return None

    def listdir(self, path: PathLike) -> list[str]:
        return sorted(os.listdir(path))

    def remove(self, path: PathLike, *, missing_ok: bool = False) -> None:
        Path(path).unlink(missing_ok=missing_ok)

    def home(self) -> str:
        return os.path.expanduser("~")

    def open_source(self, path: str) -> FileSource:
        from hpcwizard.jobs.logtail import LocalFileSource  # the log follower: when a log is followed

        return LocalFileSource(path)

    @contextlib.contextmanager
    def lock(self, path: PathLike, *, blocking: bool = True, note: str | None = None,
             timeout: float = 120.0) -> Iterator[LockHandle]:
        # ``timeout`` is for the remote lock; a local flock waits as long as it takes
        # (the holders are short read-modify-writes).
        path = Path(path)
        fd = open_lock_file(path)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
                raise LockBusy(str(path), holder) from None
            if note is not None:
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{note}\n".encode(), 0)
            yield _FdHold()
        finally:
            os.close(fd)  # closing releases the lock

    def on_reconnect(self, hook: Callable[[], None]) -> Callable[[], None]:
        return lambda: None  # this machine's files never go away

    def run_streaming(self, argv: list[str], out: TextSink, *, env: Mapping[str, str] | None = None,
                      cancel: threading.Event | None = None) -> int:
        import selectors
        import signal
        import subprocess

        from hpcwizard.shell import die_with_parent, environment_without_secrets

        try:
            # Its own process group: a stop reaches the command's children too.
            process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT, env=environment_without_secrets(env),
                                       preexec_fn=die_with_parent(), start_new_session=True)
        except OSError as exc:
            raise UserError(f"{argv[0]} cannot run: {exc.strerror or exc}") from None
        assert process.stdout is not None

        def interrupt() -> None:  # as Ctrl-C would; then SIGKILL if it does not end
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()

        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(process.stdout, selectors.EVENT_READ)
                while True:
                    if cancel is not None and cancel.is_set():
                        interrupt()
                        return 130
                    if not selector.select(timeout=0.5):
                        continue
                    chunk = os.read(process.stdout.fileno(), 65536)
                    if not chunk:
                        break
                    out.write(decoder.decode(chunk))
                    out.flush()
            out.write(decoder.decode(b"", final=True))
            return process.wait()
        except KeyboardInterrupt:
            interrupt()
            raise
        finally:
            process.stdout.close()


LOCAL_FILES = LocalFiles()


# --------------------------------------------------------------------------
# The login node over SSH

# $1 signal, $2 pid: signal the process group of pid (the pid alone when
# its group cannot be read, e.g. it has just ended).
_SIGNAL_GROUP = (
    'g=$(ps -o pgid= -p "$2" 2>/dev/null | tr -d " "); '
    'if [ -n "$g" ] && [ "$g" != 0 ]; then kill -s "$1" -- "-$g" 2>/dev/null; else kill -s "$1" -- "$2" 2>/dev/null; fi; '
    'exit 0'
)

# $1 lock file, $2 seconds to wait (0: don't), $3 note ("" for none).
# fd 9 holds the lock; `exec cat` inherits it and keeps it until the channel's
# stdin closes (we are done, or the connection is gone).
_LOCK_SCRIPT = (
    'exec 9>>"$1" || exit 71; '
    'if [ "$2" = 0 ]; then flock -x -n 9; else flock -x -w "$2" 9; fi '
    '|| { st=$?; [ "$st" = 127 ] && exit 127; cat "$1"; exit 75; }; '
    'if [ -n "$3" ]; then printf "%s\\n" "$3" >"$1"; fi; '
    'echo locked; exec cat >/dev/null'
)


class _ChannelHold:
    """A lock held on the login node by ``cat`` at the end of an SSH channel:
    held until that channel ends (released, or its connection dropped)."""

    def __init__(self, channel: Any) -> None:
        self.channel = channel

    def held(self) -> bool:
        return not (self.channel.closed or self.channel.exit_status_ready())


class SshFiles:
    """The login node's files over one :class:`SshConnection` (SFTP + a
    ``flock`` held through an SSH channel; see the module docstring)."""

    remote = True

    def __init__(self, connection: SshConnection) -> None:
        from hpcwizard.remote.files import RemoteFiles

        self.connection = connection
        self.files = RemoteFiles(connection)
        self._home: str | None = None

    @property
    def where(self) -> str:
        return self.connection.host.display

    def read_text(self, path: PathLike) -> str:
        return self.files.read_text(os.fspath(path))

    def write_text_atomic(self, path: PathLike, text: str, mode: int = 0o644) -> None:
        path = os.fspath(path)
        try:
            self.files.mkdir_p(posixpath.dirname(path) or ".")
            self.files.write_text_atomic(path, text, mode=mode)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise UserError(f"cannot save {path} on {self.where}: the disk or your quota is full",
                                "free some space; the previous file is intact") from None
            raise UserError(f"cannot save {path} on {self.where}: {exc.strerror or exc}") from None

    def exists(self, path: PathLike) -> bool:
        return self.files.exists(os.fspath(path))

    def stat(self, path: PathLike) -> PathStat:
        attrs = self.files.stat(os.fspath(path))  # FileNotFoundError when absent
        return PathStat(attrs.st_size or 0, int(attrs.st_mtime or 0) * 1_000_000_000,
                        mtime_resolution_ns=1_000_000_000)

    def is_dir(self, path: PathLike) -> bool:
        return self.files.is_dir(os.fspath(path))

    def mkdir_p(self, path: PathLike) -> None:
        try:
            self.files.mkdir_p(os.fspath(path))
        except OSError as exc:  # SFTP's PermissionError, NotADirectoryError...
            raise cannot_write(os.fspath(path), exc, self.where) from None

    def creatable(self, path: PathLike) -> str | None:
        path = posixpath.normpath(os.fspath(path))
        existing = path
        while True:
            try:
                mode = self.files.stat(existing).st_mode or 0
                break
            except (FileNotFoundError, PermissionError):  # absent, or behind a folder we may not enter
                parent = posixpath.dirname(existing)
                if parent == existing:
                    return f"cannot see any folder of {path}"
                existing = parent
        if not stat_mode.S_ISDIR(mode):
            return f"{existing} is a file, not a folder"
        try:
            self.files.probe_create(existing)
        except OSError as exc:
            where = "it" if existing == path else existing
            return f"cannot create folders in {where} ({exc.strerror or exc})"
        return None

    def listdir(self, path: PathLike) -> list[str]:
        return self.files.listdir(os.fspath(path))

    def remove(self, path: PathLike, *, missing_ok: bool = False) -> None:
        self.files.remove(os.fspath(path), missing_ok=missing_ok)

    def home(self) -> str:
        if self._home is None:
            self._home = self.files.home()
        return self._home

    def open_source(self, path: str) -> FileSource:
        from hpcwizard.remote.files import SftpFileSource

        return SftpFileSource(self.connection, path)

    def on_reconnect(self, hook: Callable[[], None]) -> Callable[[], None]:
        return self.connection.add_reconnect_hook(hook)

    @contextlib.contextmanager
    def lock(self, path: PathLike, *, blocking: bool = True, note: str | None = None,
             timeout: float = 120.0) -> Iterator[LockHandle]:
        from hpcwizard.remote.runner import remote_command

        path = os.fspath(path)
        self.mkdir_p(posixpath.dirname(path) or ".")
        wait = str(max(1, int(timeout))) if blocking else "0"
        command = remote_command(["sh", "-c", _LOCK_SCRIPT, "hpcwizard-lock", path, wait, note or ""])
        channel = self.connection.open_session()
        try:
            channel.settimeout(timeout + 30)
            channel.exec_command(command)
            answer = b""
            while b"locked\n" not in answer:
                try:
                    chunk = channel.recv(4096)
                except (TimeoutError, socket.timeout):
                    raise UserError(f"could not lock {path} on {self.where} within {timeout:g} s",
                                    "another hpcwizard or a job holds it; try again") from None
                if not chunk:
                    break
                answer += chunk
            if b"locked\n" not in answer:
                status = channel.recv_exit_status()
                if status == 75:
                    holder = answer.decode(errors="replace").strip()
                    if blocking:
                        raise LockTimeout(path, holder, self.where, timeout)
                    raise LockBusy(path, holder)
                if status == 127:
                    raise UserError(f"flock not found on {self.where}",
                                    "hpcwizard needs util-linux's flock on the login node; ask the admins")
                err = channel.recv_stderr(4096).decode(errors="replace").strip() if channel.recv_stderr_ready() else ""
                raise UserError(f"cannot lock {path} on {self.where}" + (f": {err}" if err else f" (exit {status})"),
                                "check that the folder is writable by you")
            yield _ChannelHold(channel)
        finally:
            # EOF on the holder's stdin: `cat` ends, the lock is released. Wait
            # (briefly) for it, so a lock taken right after ours sees it free.
            with contextlib.suppress(OSError, EOFError, Exception):
                channel.shutdown_write()
                deadline = time.monotonic() + 5
                while not channel.exit_status_ready() and time.monotonic() < deadline:
                    time.sleep(0.01)
            channel.close()

    def run_streaming(self, argv: list[str], out: TextSink, *, env: Mapping[str, str] | None = None,
                      cancel: threading.Event | None = None) -> int:
        from hpcwizard.remote.runner import remote_command

        # The command says its pid first (then becomes the command: exec), so
        # a stop can signal it by pid: sshd's own "signal" request is ignored
        # for root sessions and by OpenSSH before 7.9 (RHEL 7's 7.4).
        channel = self.connection.open_session()
        pid = ""
        try:
            channel.set_combine_stderr(True)
            channel.exec_command(remote_command(["sh", "-c", 'echo "$$"; exec "$@"', "sh", *argv], env))
            channel.shutdown_write()
            channel.settimeout(0.5)
            decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")  # a character may span two chunks
            head = b""
            try:
                while True:
                    if cancel is not None and cancel.is_set():
                        self._interrupt(channel, pid)
                        return 130
                    try:
                        chunk = channel.recv(65536)
                    except (TimeoutError, socket.timeout):
                        continue
                    if not chunk:
                        break
                    if not pid:  # the first line is the pid, not output
                        head += chunk
                        if b"\n" not in head:
                            continue
                        line, _, chunk = head.partition(b"\n")
                        pid = line.decode(errors="replace").strip()
                    out.write(decoder.decode(chunk))
                    out.flush()
                out.write(decoder.decode(b"", final=True))
            except KeyboardInterrupt:
                self._interrupt(channel, pid)
                raise
            return channel.recv_exit_status()
        finally:
            channel.close()

    def _interrupt(self, channel: Any, pid: str, wait: float = 10.0) -> None:
        """SIGINT to a streamed command (as Ctrl-C would), then wait a little
        for it to end: a resume right after must not run beside it."""
        from hpcwizard.remote.runner import SshRunner, _send_signal

        _send_signal(channel, "INT")
        if not pid.isdigit():
            return
        runner = SshRunner(self.connection)
        # The command's whole process group, as Ctrl-C would reach it: a shell
        # waiting for a child ignores a SIGINT sent to itself alone, and a
        # child left behind would go on running on the login node.
        with contextlib.suppress(UserError):
            runner.run(["sh", "-c", _SIGNAL_GROUP, "sh", "INT", pid], timeout=15)
        deadline = time.monotonic() + wait
        while not channel.exit_status_ready() and time.monotonic() < deadline:
            time.sleep(0.05)
        if not channel.exit_status_ready():  # deaf to SIGINT: never left running
            with contextlib.suppress(UserError):
                runner.run(["sh", "-c", _SIGNAL_GROUP, "sh", "KILL", pid], timeout=15)

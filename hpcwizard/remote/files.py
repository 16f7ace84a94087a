"""Files on the login node over SFTP (the connection's one SFTP session).

:class:`SftpFileSource` is :mod:`hpcwizard.jobs.logtail`'s ``FileSource`` over SFTP,
so the dashboard follows multi-GB logs remotely as cheaply as locally: a poll
is one ``stat`` plus reads of the appended bytes only (one round trip per
32 KiB, paramiko's request size).

Identity: SFTP v3 (OpenSSH) reports no inode or device, so :meth:`stat`
returns ``identity=None`` and the follower cannot see a rotated log by
identity; it still sees truncation (a requeued job reopening its log with
``O_TRUNC``). To avoid reading a replaced file through a stale handle, the
open handle is re-opened when the path's size/mtime and the handle's differ.

:class:`RemoteFiles` is the small file API the rest of hpcwizard will use on
the login node (read, atomic write, mkdir -p, exists, listdir). Remote paths
are POSIX paths on the login node; relative ones are relative to the remote
home (SFTP's start directory); ``~`` is NOT expanded (use :meth:`home`).
"""

from __future__ import annotations

import contextlib
import errno
import posixpath
import secrets
import stat as stat_mode
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # typing.Self is Python 3.11+; annotations are not evaluated at run time
    from typing_extensions import Self

import paramiko

from hpcwizard.errors import UserError
from hpcwizard.jobs.logtail import FileStat
from hpcwizard.project.temp_names import is_stale_temp, sftp_temp_name
from hpcwizard.remote.connection import SshConnection


class SftpFileSource:
    """A remote file read with SFTP ``seek`` + ``read`` of just the range asked.

    The handle stays open between reads (cheap polls) and is reopened after a
    reconnect. One follower (one worker thread) per source, as for
    :class:`~hpcwizard.jobs.logtail.LocalFileSource`; a lock makes concurrent use
    safe but serial.
    """

    def __init__(self, connection: SshConnection, path: str) -> None:
        self.connection = connection
        self.path = path
        self._file: paramiko.SFTPFile | None = None
        self._generation = -1
        self._lock = threading.Lock()

    def stat(self) -> FileStat:
        with self._lock:
            def op(sftp: paramiko.SFTPClient) -> FileStat:
                attrs = sftp.stat(self.path)  # FileNotFoundError when absent
                if self._file is not None and self._generation == self.connection.generation:
                    handle = self._file.stat()
                    if (handle.st_size, handle.st_mtime) != (attrs.st_size, attrs.st_mtime):
                        self._close()  # another file now lives at the path
                return FileStat(size=attrs.st_size or 0, identity=None, mtime=float(attrs.st_mtime or 0))

            return self.connection.with_sftp(op)

    def read_at(self, offset: int, length: int) -> bytes:
        if length <= 0:
            return b""
        with self._lock:
            def op(sftp: paramiko.SFTPClient) -> bytes:
                if self._file is None or self._generation != self.connection.generation:
                    self._close()
                    # bufsize=0: no read-ahead, only the requested bytes travel.
                    self._file = sftp.open(self.path, "rb", bufsize=0)
                    self._generation = self.connection.generation
                self._file.seek(offset)
                return self._file.read(length)

            return self.connection.with_sftp(op)

    def _close(self) -> None:
        file, self._file = self._file, None
        if file is not None:
            try:
                file.close()
            except (OSError, EOFError, paramiko.SSHException):
                pass  # the connection under it may be gone already

    def close(self) -> None:
        with self._lock:
            self._close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RemoteFiles:
    """Small file operations on the login node, each retried once if the
    connection dropped (all of them are idempotent)."""

    def __init__(self, connection: SshConnection) -> None:
        self.connection = connection

    def home(self) -> str:
        """The remote home directory (SFTP's start directory), absolute."""
        return self.connection.with_sftp(lambda sftp: sftp.normalize("."))

    def exists(self, path: str) -> bool:
        def op(sftp: paramiko.SFTPClient) -> bool:
            try:
                sftp.stat(path)
            except FileNotFoundError:
                return False
            return True

        return self.connection.with_sftp(op)

    def is_dir(self, path: str) -> bool:
        def op(sftp: paramiko.SFTPClient) -> bool:
            try:
                return stat_mode.S_ISDIR(sftp.stat(path).st_mode or 0)
            except FileNotFoundError:
                return False

        return self.connection.with_sftp(op)

    def stat(self, path: str) -> paramiko.SFTPAttributes:
        return self.connection.with_sftp(lambda sftp: sftp.stat(path))

    def listdir(self, path: str = ".") -> list[str]:
        """Names in ``path`` (sorted; no ``.``/``..``)."""
        return sorted(self.connection.with_sftp(lambda sftp: sftp.listdir(path)))

    def read_bytes(self, path: str) -> bytes:
        def op(sftp: paramiko.SFTPClient) -> bytes:
            with sftp.open(path, "rb") as f:
                f.prefetch()  # pipelined reads: one round trip's latency, not one per 32 KiB
                return f.read()

        return self.connection.with_sftp(op)

    def read_text(self, path: str, encoding: str = "utf-8") -> str:
        return self.read_bytes(path).decode(encoding)

    def write_bytes_atomic(self, path: str, data: bytes, *, mode: int = 0o644) -> None:
        """Write ``data`` to a temp file beside ``path``, then rename it over
        ``path`` (POSIX rename: readers see the old or the new file, never a
        half-written one). ``mode`` is set before any byte is written, so a
        private file (0600) is never readable by others, even briefly."""
        directory, name = posixpath.split(path)
        temp = posixpath.join(directory, sftp_temp_name(name))

        def op(sftp: paramiko.SFTPClient) -> None:
            try:
                # "x": O_EXCL, never follows or reuses someone else's file.
                with sftp.open(temp, "wbx") as f:
                    f.chmod(mode)
                    f.set_pipelined(True)
                    f.write(data)
                sftp.posix_rename(temp, path)
            except BaseException:
                try:
                    sftp.remove(temp)
                except (OSError, EOFError, paramiko.SSHException):
                    pass  # best effort; the original error matters more
                raise

        self.connection.with_sftp(op)
        self._remove_stale_temps(path)

    def _remove_stale_temps(self, path: str) -> None:
        """Best effort: what writes cut off with their connection left beside
        ``path``. Ages are taken on the login node's clock (the file just
        written is "now"), never this machine's."""
        directory, name = posixpath.split(path)

        def op(sftp: paramiko.SFTPClient) -> None:
            entries = sftp.listdir_attr(directory or ".")
            now = next((e.st_mtime for e in entries if e.filename == name), None)
            for entry in entries:
                if now is not None and is_stale_temp(entry.filename, name, now - (entry.st_mtime or now)):
                    with contextlib.suppress(OSError):
                        sftp.remove(posixpath.join(directory, entry.filename))

        with contextlib.suppress(OSError, EOFError, paramiko.SSHException, UserError):
            self.connection.with_sftp(op)

    def write_text_atomic(self, path: str, text: str, *, mode: int = 0o644, encoding: str = "utf-8") -> None:
        self.write_bytes_atomic(path, text.encode(encoding), mode=mode)

    def remove(self, path: str, *, missing_ok: bool = False) -> None:
        def op(sftp: paramiko.SFTPClient) -> None:
            try:
                sftp.remove(path)
            except FileNotFoundError:
                if not missing_ok:
                    raise

        self.connection.with_sftp(op)

    def probe_create(self, folder: str) -> None:
        """Make and remove a probe folder in ``folder``: OSError (e.g.
        PermissionError) when this user cannot create anything there."""
        probe = posixpath.join(folder, f".hpcwizard-probe-{secrets.token_hex(6)}")

        def op(sftp: paramiko.SFTPClient) -> None:
            sftp.mkdir(probe, 0o700)
            sftp.rmdir(probe)

        self.connection.with_sftp(op)

    def mkdir_p(self, path: str, *, mode: int = 0o755) -> None:
        """``mkdir -p``: create ``path`` and missing parents; fine if it exists."""

        def op(sftp: paramiko.SFTPClient) -> None:
            missing: list[str] = []
            current = posixpath.normpath(path)
            while current not in ("", "/", "."):
                try:
                    attrs = sftp.stat(current)
                except FileNotFoundError:
                    missing.append(current)
                    current = posixpath.dirname(current)
                    continue
                if not stat_mode.S_ISDIR(attrs.st_mode or 0):
                    raise NotADirectoryError(errno.ENOTDIR, "not a directory", current)
                break
            for directory in reversed(missing):
                try:
                    sftp.mkdir(directory, mode)
                except OSError:
                    # Created meanwhile by someone else is fine; anything else is not.
                    if not stat_mode.S_ISDIR(sftp.stat(directory).st_mode or 0):
                        raise

        self.connection.with_sftp(op)

"""Fetch one file over HTTP into ``<file>.part``, resuming at the byte.

huggingface_hub (>= 1.18) writes partial data to a process-unique
``.incomplete`` file, so a new process starts a 13 GB tar from zero. Here the
bytes go to ``<file>.part`` with a sidecar naming the remote content (etag,
size, sha256); any later process continues with ``Range: bytes=<size of the
part>-``. The stdlib does the HTTP (urllib: proxies from the environment,
certificate checks) so the transfer does not depend on which HTTP library the
installed huggingface_hub happens to bundle.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import logging
import os
import random
import re
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from hpcwizard.download.progress import FileState, ProgressTracker
from hpcwizard.download.records import PartInfo, drop_part, part_path, read_sidecar, sidecar_path, write_sidecar
from hpcwizard.errors import UserError
from hpcwizard.project.state import now_iso
from hpcwizard.sizes import human_bytes

log = logging.getLogger("hpcwizard.download")

USER_AGENT = "hpcwizard-downloader/1"
_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)
_RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}


class DownloadError(UserError):
    """A file could not be downloaded (after retries, or for a reason retrying cannot fix)."""


class DiskFullError(DownloadError):
    """The disk or the quota is full; the partial file is kept."""

    def __init__(self, message: str, hint: str | None, *, path: Path, still_needed: int) -> None:
        super().__init__(message, hint)
        self.path = path
        self.still_needed = still_needed


class AccessError(DownloadError):
    """The Hub refused the file: gated, private, bad token, or gone."""


class Cancelled(Exception):
    """Another file failed or the user interrupted: stop, keep the part."""


class _Retry(Exception):
    """A transient failure: reconnect (with Range) after a backoff."""


@dataclass(frozen=True)
class FileTask:
    """One file to fetch: where from, what it must be, where to."""

    repo_id: str
    repo_type: str
    path: str  # posix, relative to the repo root and to ``dest``
    url: str
    size: int
    etag: str | None
    sha256: str | None  # LFS files only (the Hub publishes no sha256 for small git files)
    dest: Path  # the repo's destination folder
    page: str = ""  # the repo's web page, for access errors

    @property
    def key(self) -> str:
        return f"{self.repo_id}/{self.path}"

    @property
    def final(self) -> Path:
        return self.dest.joinpath(*self.path.split("/"))


def check_repo_path(repo_id: str, path: str) -> None:
    """Refuse a file name of the Hub's listing that could lead out of the repo's folder.

    The names are the server's word, joined to the destination: a broken or
    malicious mirror (HF_ENDPOINT) could list ``sub/../../x``, which include
    patterns like ``sub/*`` match. The Hub itself never lists such names."""
    parts = path.split("/")
    if path.startswith("/") or "\\" in path or "\0" in path or any(p in ("", ".", "..") for p in parts):
        raise DownloadError(f"{repo_id} lists a file named {path!r}, which could be written outside its folder",
                            "refusing to download it; check HF_ENDPOINT: the server it names sends a broken listing")


def check_inside_dest(task: FileTask) -> None:
    """Refuse to write ``task`` anywhere but below its destination, also through a
    symlinked folder. Only the folder is resolved: the file itself is replaced
    by a rename, never written through."""
    check_repo_path(task.repo_id, task.path)
    dest = task.dest.resolve()
    folder = task.final.parent.resolve()
    if not folder.is_relative_to(dest):
        raise DownloadError(f"{task.key} would be written to {folder}, outside {dest}",
                            f"a folder below {task.dest} is a symlink to elsewhere; remove it or download to another place")


@dataclass(frozen=True)
class TransferSettings:
    chunk_size: int = 1 << 20
    stall_timeout: float = 60.0  # no byte for this long: drop the connection, reconnect with Range
    max_failures: int = 8  # consecutive failed attempts without a single new byte
    backoff_base: float = 1.0
    backoff_cap: float = 60.0
    sidecar_interval: float = 2.0  # how often ``done`` is written to the sidecar


@dataclass(frozen=True)
class FetchResult:
    transferred: int  # bytes received over the network for this file in this run
    restarted: bool  # a part had to be thrown away (remote change, no Range, damaged data)


def backoff_delay(failures: int, settings: TransferSettings, rng: random.Random) -> float:
    """Exponential backoff with jitter, so many jobs cut at once do not reconnect in lockstep."""
    ceiling = min(settings.backoff_cap, settings.backoff_base * (2 ** max(failures - 1, 0)))
    return ceiling * rng.uniform(0.5, 1.0)


# -- HTTP ----------------------------------------------------------------------------------------


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.scheme, (parts.hostname or "").lower(), port


class _CrossHostSafeRedirect(urllib.request.HTTPRedirectHandler):
    """Follow redirects; once one leaves the original host, drop the token.

    The Hub answers LFS/Xet files with a redirect to a CDN; the token must not
    travel there (huggingface_hub does the same). ``If-Range`` goes too: the
    CDN's etags are not the Hub's, and a mismatch would make it resend the
    whole file.
    """

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> Any:
        # Any, like req: the request carries two attributes of ours (hw_*) across redirects.
        new: Any = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is None:
            return None
        origin = getattr(req, "hw_origin", _origin(req.full_url))
        left = getattr(req, "hw_left_origin", False) or _origin(newurl) != origin
        if left:
            for name in ("Authorization", "If-range"):
                new.remove_header(name)
        new.hw_origin = origin
        new.hw_left_origin = left
        return new


_opener = urllib.request.build_opener(_CrossHostSafeRedirect)


def _header(headers: Any, name: str) -> str:
    return (headers.get(name) if headers is not None else None) or ""


# -- one file ------------------------------------------------------------------------------------


class LiveResponses:
    """The HTTP responses being read, so that stopping is immediate: a read
    blocked on a stalled connection otherwise waits for the stall timeout
    (60 s) before it sees the cancel. :meth:`abort_all` shuts their sockets
    down, which wakes the blocked reads at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._responses: set[Any] = set()

    def add(self, response: Any) -> None:
        with self._lock:
            self._responses.add(response)

    def discard(self, response: Any) -> None:
        with self._lock:
            self._responses.discard(response)

    def abort_all(self) -> None:
        with self._lock:
            responses = list(self._responses)
        for response in responses:
            # http.client keeps the socket behind its buffered reader; shutdown
            # (unlike close) interrupts a recv() blocked in another thread.
            sock = getattr(getattr(getattr(response, "fp", None), "raw", None), "_sock", None)
            try:
                if sock is not None:
                    sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed


class FileFetcher:
    """Downloads one :class:`FileTask`; reports through ``tracker`` under ``task.key``."""

    def __init__(self, task: FileTask, *, token: str | None, settings: TransferSettings,
                 tracker: ProgressTracker, cancel: threading.Event, rng: random.Random | None = None,
                 live: LiveResponses | None = None) -> None:
        self.task = task
        self.live = live
        self.token = token
        self.settings = settings
        self.tracker = tracker
        self.cancel = cancel
        self.rng = rng or random.Random()
        self.final = task.final
        self.part = part_path(task.final)
        self.hasher: Any = None
        self.done = 0
        self.transferred = 0
        self.restarted = False
        self._fd = -1
        self._sidecar_at = 0.0

    # -- helpers ----------------------------------------------------------------------------------
    def _note(self, text: str) -> None:
        log.info("%s", text)
        self.tracker.note(text)

    def _new_hasher(self) -> Any:
        return hashlib.sha256() if self.task.sha256 else None

    def _save_sidecar(self) -> None:
        t = self.task
        try:
            write_sidecar(self.final, PartInfo(url=t.url, etag=t.etag, size=t.size, sha256=t.sha256,
                                               done=self.done, updated_at=now_iso()))
        except (OSError, UserError):
            pass  # advisory only: the part's size is the truth, and a full disk is reported by the data write
        self._sidecar_at = time.monotonic()

    def _restart_from_zero(self) -> None:
        os.ftruncate(self._fd, 0)
        self.hasher = self._new_hasher()
        self.done = 0
        self.restarted = True
        self.tracker.set(self.task.key, done=0)
        self._save_sidecar()

    # -- main -------------------------------------------------------------------------------------
    def run(self) -> FetchResult:
        task = self.task
        check_inside_dest(task)
        self.final.parent.mkdir(parents=True, exist_ok=True)
        self._adopt_or_drop_part()
        # Not through a symlink of that name (one could point at any file of the folder).
        self._fd = os.open(self.part, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        try:
            self._save_sidecar()
            for round_ in (1, 2):
                self._transfer()
                self.tracker.set(task.key, state=FileState.VERIFYING)
                if self.hasher is None or self.hasher.hexdigest() == task.sha256:
                    break
                if round_ == 2:
                    raise DownloadError(
                        f"{task.key} does not match its sha256 even after downloading it again",
                        "the Hub or a proxy serves damaged data; try again later",
                    )
                # The part was damaged (disk, an earlier crash, someone editing it): its bytes
                # cannot be located, so the whole file comes again, once.
                self._note(f"{task.path}: sha256 mismatch, the partial data was damaged; downloading it again from zero")
                self._restart_from_zero()
            os.fsync(self._fd)  # the rename below must never expose a file whose data is not on disk
        finally:
            os.close(self._fd)
            self._fd = -1
        os.replace(self.part, self.final)
        sidecar_path(self.final).unlink(missing_ok=True)
        return FetchResult(self.transferred, self.restarted)

    def _adopt_or_drop_part(self) -> None:
        """Keep a leftover part if it holds the same remote content; re-hash it to go on hashing."""
        task = self.task
        info = read_sidecar(self.final)
        try:
            on_disk = self.part.stat().st_size
        except FileNotFoundError:
            on_disk = None
        if on_disk is not None:
            if info is None:
                self._note(f"{task.path}: leftover partial file without its record; starting from zero")
                on_disk = None
            elif not info.same_remote(task.etag, task.size, task.sha256):
                self._note(f"{task.path} changed on the Hub since the partial download; starting it again from zero")
                on_disk = None
            elif on_disk > task.size:
                self._note(f"{task.path}: partial file is larger than the file on the Hub; starting from zero")
                on_disk = None
            if on_disk is None:
                drop_part(self.final)
                self.restarted = True
        self.hasher = self._new_hasher()
        self.done = on_disk or 0
        self.tracker.set(task.key, done=self.done)
        if self.done and self.hasher is not None:
            self.tracker.set(task.key, state=FileState.CHECKING)
            self._hash_existing()

    def _hash_existing(self) -> None:
        remaining = self.done
        with open(self.part, "rb") as handle:
            while remaining > 0:
                if self.cancel.is_set():
                    raise Cancelled
                block = handle.read(min(8 << 20, remaining))
                if not block:
                    break
                self.hasher.update(block)
                remaining -= len(block)
        self.done -= remaining  # the part shrank while we read it: resume from what was hashed

    def _transfer(self) -> None:
        task, settings = self.task, self.settings
        failures = 0
        while self.done < task.size:
            if self.cancel.is_set():
                raise Cancelled
            before = self.done
            try:
                self.tracker.set(task.key, state=FileState.DOWNLOADING)
                self._attempt()
                continue
            except _Retry as exc:
                if self.cancel.is_set():  # our own abort, not the network
                    raise Cancelled from None
                reason = str(exc)
            failures = 1 if self.done > before else failures + 1
            if failures > settings.max_failures:
                raise DownloadError(
                    f"giving up on {task.key} after {failures} failed attempts ({reason}); "
                    f"{human_bytes(self.done)} of {human_bytes(task.size)} kept",
                    "check the network or the Hub's status, then run the download again: it resumes where it stopped",
                )
            delay = backoff_delay(failures, settings, self.rng)
            self._note(f"{task.path}: {reason}; reconnecting in {delay:.1f}s (attempt {failures + 1})")
            self.tracker.set(task.key, state=FileState.RETRYING)
            self._save_sidecar()
            if self.cancel.wait(delay):
                raise Cancelled
        self._save_sidecar()

    def _request(self) -> urllib.request.Request:
        headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if self.done > 0:
            headers["Range"] = f"bytes={self.done}-"
            if self.task.etag:
                # If the file changed on the server since the part began, it sends the whole
                # new file (200) instead of a range of it, and we restart cleanly.
                headers["If-Range"] = f'"{self.task.etag}"'
        # Any: it carries an attribute of ours, hw_origin, for _CrossHostSafeRedirect.
        req: Any = urllib.request.Request(self.task.url, headers=headers, method="GET")
        req.hw_origin = _origin(self.task.url)
        return req

    def _attempt(self) -> None:
        task = self.task
        try:
            response = _opener.open(self._request(), timeout=self.settings.stall_timeout)
        except urllib.error.HTTPError as exc:
            with exc:
                self._http_error(exc)
            return
        except (TimeoutError, socket.timeout):
            raise _Retry("the Hub did not answer in time") from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, ssl.SSLCertVerificationError):
                raise DownloadError(f"the certificate of {urlsplit(task.url).hostname} was refused ({reason.verify_message})",
                                    "check the proxy or the CA bundle of this machine (SSL_CERT_FILE)") from None
            raise _Retry(f"cannot connect ({reason})") from None
        except (OSError, http.client.HTTPException) as exc:
            raise _Retry(f"connection failed ({type(exc).__name__})") from None
        with response:
            if self.live is not None:
                self.live.add(response)
            try:
                self._accept(response)
                self._stream(response)
            finally:
                if self.live is not None:
                    self.live.discard(response)

    def _http_error(self, exc: urllib.error.HTTPError) -> None:
        task = self.task
        status = exc.code
        code = _header(exc.headers, "X-Error-Code")
        message = _header(exc.headers, "X-Error-Message")
        if status in _RETRY_STATUS or status >= 500:
            raise _Retry(f"the server answered HTTP {status}")
        if status == 416 and self.done > 0:
            self._note(f"{task.path}: the server refused to resume at byte {self.done}; starting it again from zero")
            self._restart_from_zero()
            return
        kind = "dataset" if task.repo_type == "dataset" else "model"
        if code == "GatedRepo" or (status in (401, 403) and "restricted" in message):
            if "awaiting a review" in message:
                raise AccessError(f"your request to access {kind} {task.repo_id} is awaiting a review from its authors",
                                  f"wait for the approval (status at {task.page}), then run the download again")
            if not self.token:
                raise AccessError(f"{kind} {task.repo_id} is gated and no Hugging Face token is set",
                                  f"log in with a token, then accept the conditions at {task.page}")
            raise AccessError(f"{kind} {task.repo_id} is gated and this account has not accepted its conditions",
                              f"open {task.page} while logged in as this token's user, accept them, then rerun")
        if status == 401:
            raise AccessError(f"the Hub refused the token for {kind} {task.repo_id} (invalid or expired)",
                              "create a new 'read' token and log in again")
        if status in (403, 404):
            raise AccessError(f"{task.key} is not available on the Hub (HTTP {status}{', ' + code if code else ''})",
                              "check that the repo still has this file and that your token can read it")
        raise DownloadError(f"the Hub answered HTTP {status} for {task.key}", "try again later")

    def _accept(self, response: Any) -> None:
        """Make ``self.done`` match where the body starts."""
        task = self.task
        status = response.status
        if status == 206:
            match = _CONTENT_RANGE.match(_header(response.headers, "Content-Range"))
            if match and int(match.group(1)) == self.done:
                return
            self._note(f"{task.path}: the server sent a different range than asked; starting it again from zero")
            self._restart_from_zero()
            raise _Retry("unexpected range in the answer")
        if status == 200:
            if self.done > 0:
                self._note(
                    f"{task.path}: the server does not resume downloads (or the file changed); "
                    f"downloading it again from zero ({human_bytes(self.done)} discarded)"
                )
                self._restart_from_zero()
            return
        raise _Retry(f"unexpected HTTP {status}")

    def _stream(self, response: Any) -> None:
        task, chunk_size = self.task, self.settings.chunk_size
        interval = self.settings.sidecar_interval
        while self.done < task.size:
            if self.cancel.is_set():
                raise Cancelled
            try:
                chunk = response.read1(chunk_size)
            except (TimeoutError, socket.timeout):
                raise _Retry(f"no data for {self.settings.stall_timeout:.0f}s (stalled)") from None
            except (OSError, http.client.HTTPException) as exc:
                raise _Retry(f"connection lost ({type(exc).__name__})") from None
            if not chunk:
                raise _Retry("connection closed before the end of the file")
            if len(chunk) > task.size - self.done:
                chunk = chunk[: task.size - self.done]  # longer than announced: sha256/size checks decide
            self._write(chunk)
            if time.monotonic() - self._sidecar_at >= interval:
                self._save_sidecar()

    def _write(self, chunk: bytes) -> None:
        view = memoryview(chunk)
        while view:
            try:
                written = os.pwrite(self._fd, view, self.done)
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                    self._disk_full(exc)
                raise
            if self.hasher is not None:
                self.hasher.update(view[:written])
            self.done += written
            self.transferred += written
            self.tracker.received(self.task.key, written)
            view = view[written:]

    def _disk_full(self, exc: OSError) -> None:
        still = self.task.size - self.done
        self._save_sidecar()
        what = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "your disk quota is full",
                errno.EFBIG: "the file is larger than this filesystem or a limit allows"}.get(
                    exc.errno or 0, exc.strerror or "the disk is full")
        raise DiskFullError(
            f"cannot write {self.part}: {what}; {human_bytes(still)} still needed for this file "
            f"({human_bytes(self.done)} of {human_bytes(self.task.size)} kept)",
            "free space or ask for more quota on that filesystem, then run the download again: it resumes",
            path=self.part, still_needed=still,
        ) from None


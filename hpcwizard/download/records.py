"""What the downloader keeps on disk: the part sidecar and the completion manifest.

Two small JSON files, so that a new process (after a kill, a crash or the end
of a Slurm job) knows exactly where it stands without asking the network:

- ``<dest>/<file>.part.json`` beside ``<dest>/<file>.part`` (the bytes so far)::

      {"version": 1, "url": "...", "etag": "...", "size": 13000000000,
       "sha256": "..." | null, "done": 6500000000, "updated_at": "..."}

  ``done`` is advisory: it is written every few seconds, so after ``kill -9``
  the ``.part`` file's own size is the truth (never less than ``done``). The
  etag says which remote content the bytes belong to; a different etag on the
  Hub means the part is thrown away.

- ``<dest>/.hpcwizard-complete.json``, one per repo destination::

      {"version": 1, "repo_id": "...", "repo_type": "model", "commit": "...",
       "include": ["*.tar"],
       "expected": {"<path>": {"size": N, "etag": "...", "sha256": "..." | null}},
       "complete": {"<path>": {"size": N, "etag": "...", "sha256": "..." | null,
                               "mtime_ns": N, "completed_at": "..."}}}

  ``expected`` is the wanted file list of the last online run: a Slurm job
  without network checks against it that everything is there. A ``complete``
  entry is trusted while the file keeps its size and mtime, so a rerun does not
  re-hash 13 GB to find out nothing changed.

The readers take an optional :class:`~hpcwizard.project.files.ProjectFiles` so that
``check --host`` counts what is already on the LOGIN NODE (over SFTP, where
mtimes have whole seconds only: a complete file is then recognised by its size
and its mtime to the second). Writing is the downloader's, always local.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from hpcwizard.errors import UserError
from hpcwizard.project.files import LOCAL_FILES, ProjectFiles
from hpcwizard.project.state import now_iso

RECORD_VERSION = 1
MANIFEST_NAME = ".hpcwizard-complete.json"
LOCK_NAME = ".hpcwizard-download.lock"
PART_SUFFIX = ".part"
SIDECAR_SUFFIX = ".part.json"


def part_path(final: Path) -> Path:
    return final.with_name(final.name + PART_SUFFIX)


def sidecar_path(final: Path) -> Path:
    return final.with_name(final.name + SIDECAR_SUFFIX)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Replace ``path`` atomically. No fsync: these files only have to survive a
    killed process (the page cache does), and the data file is checked by size
    and sha256 anyway; fsync on every update would stall a busy shared filesystem."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise_write_error(exc, path)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise_write_error(exc, path)
        raise


def raise_write_error(exc: OSError, path: Path) -> NoReturn:
    """An OSError while writing below a destination, as a message for the user (no traceback)."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        raise UserError(f"cannot write {path}: the disk or your quota is full",
                        "free space or ask for more quota on that filesystem, then run the download again") from None
    raise UserError(f"cannot write {path}: {exc.strerror or exc}",
                    "check that the folder exists and is writable by you (the paths come from the plan)") from None


def _read_json(path: Path, files: ProjectFiles = LOCAL_FILES) -> dict[str, Any] | None:
    try:
        data = json.loads(files.read_text(path))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


# -- the part sidecar ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PartInfo:
    """What the bytes in ``<file>.part`` are: which URL/etag, how far (advisory)."""

    url: str
    etag: str | None
    size: int
    sha256: str | None
    done: int = 0
    updated_at: str = ""
    version: int = RECORD_VERSION

    def same_remote(self, etag: str | None, size: int, sha256: str | None) -> bool:
        """Whether the part belongs to this remote content (the URL may differ: it names a commit)."""
        return self.etag == etag and self.size == size and self.sha256 == sha256


def read_sidecar(final: Path, files: ProjectFiles = LOCAL_FILES) -> PartInfo | None:
    data = _read_json(sidecar_path(final), files)
    if data is None or data.get("version") != RECORD_VERSION:
        return None
    try:
        return PartInfo(
            url=str(data["url"]), etag=data.get("etag"), size=int(data["size"]), sha256=data.get("sha256"),
            done=int(data.get("done", 0)), updated_at=str(data.get("updated_at", "")),
        )
    except (KeyError, TypeError, ValueError):
        return None


def write_sidecar(final: Path, info: PartInfo) -> None:
    _write_json(sidecar_path(final), asdict(info))


def drop_part(final: Path) -> None:
    """Remove ``.part`` and its sidecar (a remote change, or a corrupt part)."""
    for path in (part_path(final), sidecar_path(final)):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


# -- the completion manifest ---------------------------------------------------------------------


@dataclass(frozen=True)
class CompleteRecord:
    size: int
    etag: str | None
    sha256: str | None
    mtime_ns: int
    completed_at: str = ""


@dataclass(frozen=True)
class ExpectedFile:
    size: int
    etag: str | None
    sha256: str | None


@dataclass
class Manifest:
    repo_id: str
    repo_type: str
    commit: str | None = None
    include: list[str] = field(default_factory=list)
    expected: dict[str, ExpectedFile] = field(default_factory=dict)
    complete: dict[str, CompleteRecord] = field(default_factory=dict)
    version: int = RECORD_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        return cls(
            repo_id=str(data["repo_id"]),
            repo_type=str(data["repo_type"]),
            commit=data.get("commit"),
            include=[str(p) for p in data.get("include") or []],
            expected={k: ExpectedFile(**v) for k, v in (data.get("expected") or {}).items()},
            complete={k: CompleteRecord(**v) for k, v in (data.get("complete") or {}).items()},
        )

    def is_complete(self, dest: Path, path: str, etag: str | None = None, *, check_etag: bool = True,
                    files: ProjectFiles = LOCAL_FILES) -> bool:
        """The file is recorded complete and still has the recorded size and mtime (and etag)."""
        record = self.complete.get(path)
        if record is None or (check_etag and record.etag != etag):
            return False
        try:
            st = files.stat(dest / path)
        except OSError:
            return False
        return st.size == record.size and st.same_mtime(record.mtime_ns)


_manifest_locks: dict[Path, threading.Lock] = {}
_manifest_locks_guard = threading.Lock()


def _lock_for(dest: Path) -> threading.Lock:
    with _manifest_locks_guard:
        return _manifest_locks.setdefault(dest.resolve(), threading.Lock())


def manifest_path(dest: Path) -> Path:
    return dest / MANIFEST_NAME


def read_manifest(dest: Path, files: ProjectFiles = LOCAL_FILES) -> Manifest | None:
    data = _read_json(manifest_path(dest), files)
    if data is None or data.get("version") != RECORD_VERSION:
        return None
    try:
        return Manifest.from_dict(data)
    except (KeyError, TypeError, ValueError):
        return None


def update_manifest(dest: Path, repo_id: str, repo_type: str, change: Any) -> Manifest:
    """Read-modify-write the manifest of ``dest`` (threads of one process share it: one lock per dest)."""
    with _lock_for(dest):
        manifest = read_manifest(dest)
        if manifest is None or manifest.repo_id != repo_id or manifest.repo_type != repo_type:
            manifest = Manifest(repo_id=repo_id, repo_type=repo_type)
        change(manifest)
        _write_json(manifest_path(dest), manifest.to_dict())
        return manifest


def record_complete(dest: Path, repo_id: str, repo_type: str, path: str,
                    etag: str | None, sha256: str | None) -> CompleteRecord:
    st = (dest / path).stat()
    record = CompleteRecord(size=st.st_size, etag=etag, sha256=sha256, mtime_ns=st.st_mtime_ns, completed_at=now_iso())

    def change(manifest: Manifest) -> None:
        manifest.complete[path] = record

    update_manifest(dest, repo_id, repo_type, change)
    return record


@contextlib.contextmanager
def dest_lock(dest: Path) -> Iterator[None]:
    """Keep a second downloader (another shell, another job) out of ``dest``.

    An ``flock`` dies with its process, so ``kill -9`` never leaves it stale.
    """
    try:
        dest.mkdir(parents=True, exist_ok=True)
        fd = os.open(dest / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise_write_error(exc, dest / LOCK_NAME)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            raise UserError(
                f"another download is writing into {dest} ({holder})",
                "wait for it to finish, or stop it; a rerun resumes where it stopped",
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {os.uname().nodename}\n".encode(), 0)
        yield
    finally:
        os.close(fd)

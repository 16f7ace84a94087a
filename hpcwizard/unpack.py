"""Unpack downloaded archives once, with a marker per archive.

A marker file beside the destination records which archive (by size and
mtime, or sha256 when known) was unpacked, so a rerun of the setup job skips
finished archives and redoes only one that changed or was interrupted: the
marker is written last, after tar succeeded.

GNU tar does the work (a 13 GB tarball unpacks several times faster than
with :mod:`tarfile`), with ``--no-same-owner`` and ``--no-overwrite-dir``;
members with absolute paths or ``..`` are refused before extraction.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from hpcwizard.errors import UserError
from hpcwizard.files import ProjectFiles, local_or

MARKER_PREFIX = ".hpcwizard-unpacked-"


class UnpackError(UserError):
    """An archive could not be unpacked."""


@dataclass(frozen=True)
class UnpackResult:
    archive: Path
    into: Path
    skipped: bool


def marker_path(archive: Path, into: Path) -> Path:
    return into / f"{MARKER_PREFIX}{archive.name}.json"


def _identity(archive: Path, sha256: str | None) -> dict[str, object]:
    st = archive.stat()
    return {"archive": str(archive), "size": st.st_size, "sha256": sha256,
            "mtime_ns": None if sha256 else st.st_mtime_ns}


def is_unpacked(archive: Path, into: Path, sha256: str | None = None,
                files: ProjectFiles | None = None) -> bool:
    """Whether the marker says this very archive was unpacked into ``into``.

    ``files``: where both are (the login node in remote mode, read over SFTP;
    its whole-second mtimes are compared to the second)."""
    files = local_or(files)
    try:
        recorded = json.loads(files.read_text(marker_path(archive, into)))
        st = files.stat(archive)
    except (OSError, ValueError):
        return False
    if not isinstance(recorded, dict):
        return False
    if (recorded.get("archive"), recorded.get("size"), recorded.get("sha256")) != (str(archive), st.size, sha256):
        return False
    mtime_ns = recorded.get("mtime_ns")
    if sha256:
        return mtime_ns is None
    return isinstance(mtime_ns, int) and st.same_mtime(mtime_ns)


def _tar_flags(archive: Path) -> list[str]:
    name = archive.name.lower()
    if name.endswith((".tar.gz", ".tgz")):
        return ["-xzf"]
    if name.endswith((".tar.bz2", ".tbz2")):
        return ["-xjf"]
    if name.endswith((".tar.xz", ".txz")):
        return ["-xJf"]
    if name.endswith(".tar.zst"):
        return ["--zstd", "-xf"]
    if name.endswith(".tar"):
        return ["-xf"]
    raise UnpackError(f"{archive.name} is not a tar archive hpcwizard can unpack",
                      "declare only .tar, .tar.gz, .tar.bz2, .tar.xz or .tar.zst archives in the recipe")


def _check_members(archive: Path, flags: list[str]) -> None:
    listing_flags = [f.replace("x", "t") for f in flags]
    listed = subprocess.run(["tar", *listing_flags, str(archive)], capture_output=True, text=True)
    if listed.returncode != 0:
        raise UnpackError(f"{archive} is not a readable archive: {listed.stderr.strip().splitlines()[-1:]}",
                          "delete it and run the download again")
    for member in listed.stdout.splitlines():
        if member.startswith("/") or ".." in Path(member).parts:
            raise UnpackError(f"{archive.name} contains an unsafe path {member!r}", "refusing to unpack it")


def unpack(archive: Path, into: Path, *, sha256: str | None = None) -> UnpackResult:
    """Unpack ``archive`` into ``into`` unless its marker says it is done."""
    if not archive.is_file():
        raise UnpackError(f"archive {archive} is missing", "run the download first")
    if is_unpacked(archive, into, sha256):
        return UnpackResult(archive, into, skipped=True)
    flags = _tar_flags(archive)
    _check_members(archive, flags)
    into.mkdir(parents=True, exist_ok=True)
    marker = marker_path(archive, into)
    marker.unlink(missing_ok=True)
    done = subprocess.run(
        ["tar", *flags, str(archive), "-C", str(into), "--no-same-owner", "--no-overwrite-dir"],
        capture_output=True, text=True,
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["tar failed"])[-1]
        if "No space left" in done.stderr or "Disk quota exceeded" in done.stderr:
            raise UnpackError(f"unpacking {archive.name} ran out of space: {last}",
                              "free space or quota under the destination and run setup again")
        raise UnpackError(f"unpacking {archive.name} failed: {last}", "delete the archive and download it again")
    tmp = marker.with_suffix(".tmp")
    tmp.write_text(json.dumps(_identity(archive, sha256)))
    os.replace(tmp, marker)
    return UnpackResult(archive, into, skipped=False)

"""Unpack downloaded archives once, with a marker per archive.

A marker file beside the destination records which archive (by size and
mtime, or sha256 when known) was unpacked and what it put at the top of the
destination, so a rerun of the setup job skips finished archives and redoes
one that changed, was interrupted, or whose files were deleted since: the
marker is written last, after tar succeeded.

GNU tar does the work (a 13 GB tarball unpacks several times faster than
with :mod:`tarfile`) as the user running it, with the umask
(``--no-same-owner --no-same-permissions``: no owners, setuid bits or
world-writable modes from the archive, even as root) and without touching
the metadata of existing folders (``--no-overwrite-dir``). Every member is
checked before tar starts (:func:`check_members`): a bad one refuses the
whole archive, so nothing of it is written.

``python -m hpcwizard.download.unpack ARCHIVE INTO`` does the same for job scripts
that unpack an archive themselves (fff-vdi's train.tar).
"""

from __future__ import annotations

import contextlib
import json
import lzma
import os
import subprocess
import sys
import tarfile
import zlib
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from hpcwizard.errors import UserError
from hpcwizard.project.files import LOCAL_FILES, ProjectFiles, atomic_write
from hpcwizard.shell import LocalRunner, Runner, environment_without_secrets

MARKER_PREFIX = ".hpcwizard-unpacked-"
_REFUSE = "refusing to unpack it; get the archive from a source you trust"


class UnpackError(UserError):
    """An archive could not be unpacked."""


@dataclass(frozen=True)
class UnpackResult:
    archive: Path
    into: Path
    skipped: bool


def marker_path(archive: Path, into: Path) -> Path:
    return into / f"{MARKER_PREFIX}{archive.name}.json"


#: A 13 GB dataset takes minutes; the runner's default (seconds) is for Slurm commands.
TAR_TIMEOUT = 24 * 3600.0
MAX_TOP_NAMES = 200  # top-level entries recorded in a marker (checked on every setup run)


def _identity(archive: Path, sha256: str | None, top: list[str] | None = None) -> dict[str, object]:
    st = archive.stat()
    return {"archive": str(archive), "size": st.st_size, "sha256": sha256,
            "mtime_ns": None if sha256 else st.st_mtime_ns, "top": top}


def is_unpacked(archive: Path, into: Path, sha256: str | None = None,
                files: ProjectFiles = LOCAL_FILES) -> bool:
    """Whether the marker says this very archive was unpacked into ``into``.

    ``files``: where both are (the login node in remote mode, read over SFTP;
    its whole-second mtimes are compared to the second)."""
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
    same = mtime_ns is None if sha256 else isinstance(mtime_ns, int) and st.same_mtime(mtime_ns)
    # What the archive put at the top must still be there: a scratch purge
    # (or a user) may have deleted the unpacked files and left the marker.
    top = recorded.get("top") or []
    return same and all(files.exists(into / name) for name in top if isinstance(name, str))


# -- formats -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Format:
    tar_flags: tuple[str, ...]
    # How tarfile reads the headers. None: through ``zstd -dc`` (Python 3.11 has no zstd).
    mode: Literal["r:gz", "r:bz2", "r:xz", "r:*"] | None


_FORMATS: dict[tuple[str, ...], _Format] = {
    (".tar.gz", ".tgz"): _Format(("-xzf",), "r:gz"),
    (".tar.bz2", ".tbz2"): _Format(("-xjf",), "r:bz2"),
    (".tar.xz", ".txz"): _Format(("-xJf",), "r:xz"),
    (".tar.zst",): _Format(("--zstd", "-xf"), None),
    # GNU tar -x also takes a compressed .tar (it looks at the content); so does r:*.
    (".tar",): _Format(("-xf",), "r:*"),
}


def _format(archive: Path) -> _Format:
    name = archive.name.lower()
    for suffixes, fmt in _FORMATS.items():
        if name.endswith(suffixes):
            return fmt
    raise UnpackError(f"{archive.name} is not a tar archive hpcwizard can unpack",
                      "declare only .tar, .tar.gz, .tar.bz2, .tar.xz or .tar.zst archives in the recipe")


# -- reading the headers -------------------------------------------------------------------------


class _StrictHeader(tarfile.TarInfo):
    """A damaged header is an error. tarfile stops there as if the archive
    ended, but GNU tar skips it and reads on: the members after it would be
    unpacked without being checked."""

    @classmethod
    def frombuf(cls, buf: bytes, encoding: str, errors: str) -> _StrictHeader:
        try:
            return super().frombuf(buf, encoding, errors)
        # Both exist in every Python 3 tarfile; typeshed leaves them out (not in __all__).
        except (tarfile.InvalidHeaderError, tarfile.TruncatedHeaderError) as exc:  # type: ignore[attr-defined]
            raise tarfile.ReadError(f"a damaged header ({exc})") from None


def _each(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    # next() rather than iterating: TarFile keeps every header it read in
    # tar.members, gigabytes for a dataset of millions of files.
    while (member := tar.next()) is not None:
        tar.members.clear()  # type: ignore[attr-defined]  # TarFile's header list; typeshed omits it
        yield member


def _zstd_headers(archive: Path) -> Iterator[tarfile.TarInfo]:
    try:
        zstd = subprocess.Popen(["zstd", "-dcq", "--", str(archive)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=environment_without_secrets())
    except FileNotFoundError:
        raise UnpackError(f"{archive.name} is zstd-compressed and zstd is not installed here",
                          "install zstd (GNU tar needs it too) or use a .tar.gz archive") from None
    with zstd:
        assert zstd.stdout is not None and zstd.stderr is not None
        # The default small buffer: the stream skips file data by reading it,
        # and a large buffer is re-sliced for every small member.
        with tarfile.open(fileobj=zstd.stdout, mode="r|", tarinfo=_StrictHeader) as tar:
            yield from _each(tar)
        while zstd.stdout.read(1 << 20):  # tar's end-of-archive padding; zstd must finish to report errors
            pass
        if zstd.wait() != 0:
            raise tarfile.ReadError(zstd.stderr.read().decode(errors="replace").strip() or "zstd failed")


def _headers(archive: Path, fmt: _Format) -> Generator[tarfile.TarInfo, None, None]:
    """Every member's header, in one pass: an uncompressed tar by seeking over the
    data, a compressed one by decompressing it once (as ``tar -t`` does)."""
    if fmt.mode is None:
        yield from _zstd_headers(archive)
        return
    with tarfile.open(archive, fmt.mode, tarinfo=_StrictHeader) as tar:
        yield from _each(tar)


# -- checking the members ------------------------------------------------------------------------


def _parts(name: str) -> list[str]:
    return [p for p in name.split("/") if p not in ("", ".")]


@dataclass
class _MemberCheck:
    """Refuses what could write outside ``into`` or has no place in a dataset.

    Names were always checked (no absolute path, no ``..``). Links are checked
    too, because tar writes through a symlink an earlier member or an earlier
    archive unpacked into the same folder created (``dataset -> /elsewhere``
    then ``dataset/file``). A relative link that stays inside is fine: datasets
    and model repos have them (``snapshots/x/f -> ../../blobs/y``).
    """

    archive: Path
    into: Path
    links: set[str] = field(default_factory=set)  # names that are, or may be, symlinks
    top: set[str] = field(default_factory=set)  # first path components, for the marker
    symlinks: list[tuple[str, str]] = field(default_factory=list)

    def refuse(self, what: str) -> UnpackError:
        return UnpackError(f"{self.archive.name} contains {what}", _REFUSE)

    def member(self, member: tarfile.TarInfo) -> None:
        name, parts = member.name, _parts(member.name)
        if parts and len(self.top) < MAX_TOP_NAMES:
            self.top.add(parts[0])
        if name.startswith("/") or ".." in parts or (not parts and not member.isdir()):
            raise self.refuse(f"an unsafe path {name!r}")
        if len(parts) == 1 and parts[0].startswith(MARKER_PREFIX):
            raise self.refuse(f"{name!r}, a name hpcwizard uses for its unpack markers")
        if member.ischr() or member.isblk():
            raise self.refuse(f"a device file {name!r}")
        if member.isfifo():
            raise self.refuse(f"a FIFO {name!r}")
        if member.issym():
            self.links.add("/".join(parts))
            self.symlinks.append((name, member.linkname))  # checked once every link is known
        elif member.islnk():
            # A hard link to a symlink is a symlink; its target is relative to the archive's root.
            self.links.add("/".join(parts))
            if member.linkname.startswith("/") or ".." in _parts(member.linkname):
                raise self.refuse(f"a hard link {name!r} to {member.linkname!r} outside the folder it unpacks into")

    def finish(self) -> None:
        for name, target in self.symlinks:
            problem = self._symlink_problem(_parts(name)[:-1], target)
            if problem:
                raise self.refuse(f"a symlink {name!r} -> {target!r} {problem}")

    def _symlink_problem(self, folder: list[str], target: str) -> str | None:
        """Why the link at ``folder/<name>`` -> ``target`` may lead outside ``into``.

        Each ``..`` must climb a real folder: after a symlinked folder it goes to
        the parent of the link's target instead (``a -> .`` makes ``a/..`` the
        parent of ``into``). So ``..`` may only lead the target, and the folders it
        climbs out of must not be symlinks, in this archive or on disk (another
        archive unpacked here). Forward steps may go through links: each of them
        is checked to stay inside."""
        if target.startswith("/"):
            return "that points outside the folder it unpacks into (an absolute path)"
        steps = _parts(target)
        ups = 0
        while ups < len(steps) and steps[ups] == "..":
            ups += 1
        if ups > len(folder):
            return "that points outside the folder it unpacks into"
        if ".." in steps[ups:]:
            return "with `..` after a folder name (it could leave the folder it unpacks into through another link)"
        for depth in range(len(folder) - ups + 1, len(folder) + 1):
            climbed = "/".join(folder[:depth])
            if climbed in self.links or os.path.islink(self.into / climbed):
                return f"that climbs out of {climbed!r}, a symlink (it could leave the folder it unpacks into)"
        return None


def check_members(archive: Path, into: Path) -> list[str]:
    """Refuse ``archive`` (before anything of it is written) if a member is unsafe to unpack into ``into``.

    Returns the names it puts at the top of ``into`` (at most MAX_TOP_NAMES)."""
    check = _MemberCheck(archive, into)
    try:
        with contextlib.closing(_headers(archive, _format(archive))) as headers:  # stops zstd at once
            for member in headers:
                check.member(member)
    except (tarfile.TarError, OSError, EOFError, lzma.LZMAError, zlib.error) as exc:
        reason = str(exc)
        if reason.startswith("file could not be opened"):  # r:* lists why each compression did not fit
            reason = "neither a tar archive nor a compressed one"
        raise UnpackError(f"{archive} is not a readable archive: {reason}", "delete it and run the download again") from None
    check.finish()
    return sorted(check.top)


def unpack(archive: Path, into: Path, *, sha256: str | None = None, runner: Runner | None = None) -> UnpackResult:
    """Unpack ``archive`` into ``into`` unless its marker says it is done
    (``tar`` runs through ``runner``: this machine's by default)."""
    if not archive.is_file():
        raise UnpackError(f"archive {archive} is missing", "run the download first")
    if is_unpacked(archive, into, sha256):
        return UnpackResult(archive, into, skipped=True)
    flags = _format(archive).tar_flags
    top = check_members(archive, into)
    into.mkdir(parents=True, exist_ok=True)
    marker = marker_path(archive, into)
    marker.unlink(missing_ok=True)
    # Through the runner: HF_TOKEN (exported in the user's shell) never
    # reaches tar, and tar dies with hpcwizard.
    done = (runner or LocalRunner()).run(
        ["tar", *flags, str(archive), "-C", str(into),
         "--no-same-owner", "--no-same-permissions", "--no-overwrite-dir"],
        timeout=TAR_TIMEOUT,
    )
    if not done.ok:
        last = (done.stderr.strip().splitlines() or ["tar failed"])[-1]
        if "No space left" in done.stderr or "Disk quota exceeded" in done.stderr:
            raise UnpackError(f"unpacking {archive.name} ran out of space: {last}",
                              "free space or quota under the destination and run setup again")
        raise UnpackError(f"unpacking {archive.name} failed: {last}", "delete the archive and download it again")
    # A fresh temporary file, then a rename: a fixed temporary name would be
    # opened through whatever symlink of that name the folder holds.
    atomic_write(marker, json.dumps(_identity(archive, sha256, top)))
    return UnpackResult(archive, into, skipped=False)


def main(argv: list[str] | None = None) -> int:
    """``python -m hpcwizard.download.unpack ARCHIVE INTO``: print one line, exit non-zero on failure."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m hpcwizard.download.unpack ARCHIVE INTO", file=sys.stderr)
        return 2
    archive, into = Path(args[0]).absolute(), Path(args[1]).absolute()
    try:
        result = unpack(archive, into)
    except UserError as exc:
        print(f"hpcwizard: {exc.one_line()}", file=sys.stderr)
        return exc.exit_code
    print(f"{archive} {'was already unpacked' if result.skipped else 'unpacked'} into {into}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Free space and inodes on the filesystem holding a path (or where it will be).

:func:`free_space` measures the filesystem holding a path (the nearest
existing parent when the path is not created yet). On this machine it asks
the kernel directly (``os.statvfs``); through any other runner (SSH to a login
node) it runs ``df`` there, since the filesystem that matters is the remote one.

Its own module because both the quota probe (which filesystem, so which quota
tool) and the disk verdict (:mod:`hpcwizard.checks.space`, which reads the
quota report) need it: here, neither imports the other.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Callable
from dataclasses import dataclass

from hpcwizard.errors import CommandFailed
from hpcwizard.shell import LocalRunner, Runner

__all__ = [
    "DF_PROBE",
    "DF_TIMEOUT",
    "FreeSpace",
    "free_space",
    "free_space_local",
    "free_space_via_commands",
    "parse_df_probe",
]

DF_TIMEOUT = 20.0


@dataclass(frozen=True)
class FreeSpace:
    """Space on the filesystem holding ``path``.

    ``existing`` is the path that was measured: ``path`` itself or its nearest
    existing parent. ``files_*`` are None where the filesystem has no fixed
    inode count (btrfs, some NFS servers report 0).
    """

    path: str
    mount: str
    fstype: str
    bytes_free: int
    bytes_total: int
    files_free: int | None
    files_total: int | None
    existing: str = ""
    device: str = ""

    @property
    def filesystem(self) -> str:
        """The mount point, under the name the rest of the preflight uses."""
        return self.mount

    @property
    def bytes_used(self) -> int:
        return max(0, self.bytes_total - self.bytes_free)


def _walk_up(start: str, found: Callable[[str], bool]) -> str:
    """``start`` or its nearest parent for which ``found`` holds (``/`` at worst)."""
    current = start
    while not found(current):
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    return current


def _nearest_existing_local(path: str) -> str:
    return _walk_up(os.path.abspath(os.path.expanduser(path)), os.path.exists)


def _mount_point_local(path: str) -> str:
    return _walk_up(os.path.realpath(path), os.path.ismount)


def free_space_local(path: str) -> FreeSpace:
    """Measure with ``os.statvfs`` on this machine (no subprocess)."""
    existing = _nearest_existing_local(path)
    st = os.statvfs(existing)
    mount = _mount_point_local(existing)
    fstype, device = "", ""
    import psutil  # imported when a folder is first measured, not at startup

    # /proc/mounts order: the last entry for a mount point is the visible one.
    for part in psutil.disk_partitions(all=True):
        if part.mountpoint == mount:
            fstype, device = part.fstype, part.device
    files_total = st.f_files or None
    return FreeSpace(
        path=path,
        mount=mount,
        fstype=fstype,
        # f_bavail, not f_bfree: the blocks reserved for root are not ours.
        bytes_free=st.f_bavail * st.f_frsize,
        bytes_total=st.f_blocks * st.f_frsize,
        files_free=st.f_favail if files_total else None,
        files_total=files_total,
        existing=existing,
        device=device,
    )


#: Larger than any filesystem (64-bit counts of KiB): not a reading, and it
#: would overflow the float arithmetic of the verdict.
_DF_MAX = 2**80


def _df_number(token: str) -> int | None:
    """df's number, or None for ``-`` and anything that is not a plausible count."""
    if not token.isascii() or not token.isdigit() or len(token) > 30:
        return None
    value = int(token)
    return value if value <= _DF_MAX else None


#: One round trip for a login node over SSH: walk up to the nearest existing
#: folder, then df it twice (statistics, then the device: both columns may
#: hold spaces, so they are asked separately). The path is ``$1``, never
#: part of the script.
DF_PROBE = r"""
p=$1
while [ ! -e "$p" ]; do
  q=$(dirname -- "$p")
  if [ "$q" = "$p" ]; then echo "no existing parent of $1 to measure" >&2; exit 3; fi
  p=$q
done
printf '%s\n' "$p"
LC_ALL=C df -B1 --output=fstype,size,avail,itotal,iavail,target -- "$p" || exit 4
LC_ALL=C df --output=source -- "$p" 2>/dev/null || true
"""


def parse_df_probe(path: str, stdout: str) -> FreeSpace:
    """Read :data:`DF_PROBE`'s output: the folder measured, df's statistics
    (header and row), then df's source (header and row, or nothing)."""
    lines = stdout.splitlines()
    if len(lines) < 3:
        raise ValueError(f"df printed no row for {path}")
    existing, row = lines[0], lines[2]
    parts = row.split(None, 5)
    size, avail = (_df_number(parts[1]), _df_number(parts[2])) if len(parts) == 6 else (None, None)
    if size is None or avail is None:
        raise ValueError(f"df row not understood: {row!r}")
    fstype, itotal, iavail = parts[0], parts[3], parts[4]
    device = lines[4].strip() if len(lines) >= 5 else ""
    files_total = _df_number(itotal) or None
    return FreeSpace(
        path=path,
        mount=parts[5].strip(),
        fstype=fstype,
        bytes_free=avail,
        bytes_total=size,
        files_free=_df_number(iavail) if files_total else None,
        files_total=files_total,
        existing=existing,
        device=device,
    )


def free_space_via_commands(runner: Runner, path: str) -> FreeSpace:
    """Measure through the runner with ``df`` (for a login node over SSH), in
    one command however deep the missing part of ``path`` is."""
    result = runner.run(["sh", "-c", DF_PROBE, "sh", posixpath.normpath(path)], timeout=DF_TIMEOUT)
    if result.returncode == 3:
        raise ValueError(f"no existing parent of {path} to measure")
    if not result.ok:
        detail = (result.stderr.strip() or f"exit status {result.returncode}").splitlines()[-1]
        raise CommandFailed(f"df failed on {path}: {detail}")
    return parse_df_probe(path, result.stdout)


def free_space(runner: Runner, path: str) -> FreeSpace:
    """Free bytes and inodes where ``path`` lives (or will live) on the runner's host."""
    if isinstance(runner, LocalRunner):
        return free_space_local(path)
    return free_space_via_commands(runner, path)

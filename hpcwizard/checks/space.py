"""Free space, inodes and the verdict of the disk part of the preflight.

:func:`free_space` measures the filesystem holding a path (the nearest
existing parent when the path is not created yet). On this machine it asks
the kernel directly (``os.statvfs``); through any other runner (SSH to a login
node) it runs ``df`` there, since the filesystem that matters is the remote one.

:func:`assess` turns "this plan needs N bytes and M files" plus the free space
and the quota report into findings with a level (ok / warn / block), a
message in human units and a concrete fix.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass, replace
from enum import Enum

from hpcwizard.checks.quota import QuotaEntry, QuotaReport
from hpcwizard.errors import CommandFailed
from hpcwizard.shell import LocalRunner, Runner
from hpcwizard.sizes import human_bytes

__all__ = [
    "FreeSpace",
    "Gauge",
    "Level",
    "SpaceFinding",
    "assess",
    "free_space",
    "free_space_local",
    "free_space_via_commands",
    "parse_df_probe",
    "human_bytes",
    "human_count",
    "FULL_FRACTION",
    "worst",
]

# Above this fraction of a filesystem or quota in use, jobs start failing in
# odd ways (checkpoints half-written, pip caches refused): warn before it.
FULL_FRACTION = 0.90
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


# --------------------------------------------------------------------------
# measuring


def _nearest_existing_local(path: str) -> str:
    current = os.path.abspath(os.path.expanduser(path))
    while not os.path.exists(current):
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    return current


def _mount_point_local(path: str) -> str:
    current = os.path.realpath(path)
    while not os.path.ismount(current):
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    return current


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


# --------------------------------------------------------------------------
# the verdict


class Level(str, Enum):
    OK = "ok"
    WARN = "warn"
    BLOCK = "block"


@dataclass(frozen=True)
class Gauge:
    """Bytes needed against what is there, for a bar: used | needed | free, of ``total``
    (the filesystem's usable size, or the quota's limit)."""

    used: int
    need: int
    total: int

    @property
    def free(self) -> int:
        return max(0, self.total - self.used)


@dataclass(frozen=True)
class SpaceFinding:
    """One line of the disk verdict: what was checked, how it went, how to fix it."""

    level: Level
    check: str  # "space", "inodes", "quota-bytes", "quota-files", "quota"
    message: str
    fix: str | None = None
    gauge: Gauge | None = None


def human_count(n: int) -> str:
    """File counts read better with separators: ``1,234,567 files``."""
    return f"{n:,} file" + ("" if n == 1 else "s")


def _where(free: FreeSpace) -> str:
    return f"{free.mount} ({free.fstype})" if free.fstype else free.mount


def _check_filesystem(need_bytes: int, need_files: int, free: FreeSpace) -> list[SpaceFinding]:
    found = []
    # Root's reserved blocks are not ours: the bar's whole is what is used plus what we may still use.
    gauge = Gauge(free.bytes_used, need_bytes, free.bytes_used + free.bytes_free)
    if need_bytes > free.bytes_free:
        short = need_bytes - free.bytes_free
        found.append(
            SpaceFinding(
                Level.BLOCK,
                "space",
                f"needs {human_bytes(need_bytes)} but only {human_bytes(free.bytes_free)} "
                f"is free on {_where(free)}",
                f"free {human_bytes(short)} under {free.mount} or choose a data root on a "
                "filesystem with more space",
                gauge,
            )
        )
    elif free.bytes_total and (free.bytes_used + need_bytes) > FULL_FRACTION * free.bytes_total:
        after = (free.bytes_used + need_bytes) / free.bytes_total
        found.append(
            SpaceFinding(
                Level.WARN,
                "space",
                f"{_where(free)} will be {after:.0%} full after {human_bytes(need_bytes)} "
                f"({human_bytes(free.bytes_free)} free)",
                f"free space under {free.mount} or choose a data root on an emptier filesystem",
                gauge,
            )
        )
    else:
        found.append(
            SpaceFinding(
                Level.OK,
                "space",
                f"{human_bytes(need_bytes)} needed, {human_bytes(free.bytes_free)} free on {_where(free)}",
                gauge=gauge,
            )
        )
    if need_files and free.files_free is not None and free.files_total:
        if need_files > free.files_free:
            found.append(
                SpaceFinding(
                    Level.BLOCK,
                    "inodes",
                    f"needs {human_count(need_files)} but only {human_count(free.files_free)} "
                    f"can still be created on {_where(free)}",
                    f"delete at least {human_count(need_files - free.files_free)} under {free.mount} "
                    "or choose a data root on another filesystem",
                )
            )
        elif (free.files_total - free.files_free + need_files) > FULL_FRACTION * free.files_total:
            found.append(
                SpaceFinding(
                    Level.WARN,
                    "inodes",
                    f"{_where(free)} will have over {FULL_FRACTION:.0%} of its inodes in use "
                    f"after {human_count(need_files)}",
                    f"remove small files under {free.mount} (old caches, unpacked archives)",
                )
            )
    return found


def _check_entry_bytes(need: int, entry: QuotaEntry, mount: str) -> SpaceFinding:
    found = _entry_bytes_finding(need, entry, mount)
    limit = entry.bytes_limit
    return replace(found, gauge=Gauge(entry.bytes_used, need, limit)) if limit else found


def _entry_bytes_finding(need: int, entry: QuotaEntry, mount: str) -> SpaceFinding:
    fs = entry.filesystem
    if entry.bytes_hard is not None and need > entry.bytes_hard - entry.bytes_used:
        room = max(0, entry.bytes_hard - entry.bytes_used)
        return SpaceFinding(
            Level.BLOCK,
            "quota-bytes",
            f"needs {human_bytes(need)} but your quota on {fs} leaves {human_bytes(room)} "
            f"({human_bytes(entry.bytes_used)} used of {human_bytes(entry.bytes_hard)} hard limit)",
            f"free {human_bytes(need - room)} under {mount} or choose a data root on a "
            "filesystem with more quota",
        )
    if entry.bytes_soft is not None and need > entry.bytes_soft - entry.bytes_used:
        room = max(0, entry.bytes_soft - entry.bytes_used)
        return SpaceFinding(
            Level.WARN,
            "quota-bytes",
            f"{human_bytes(need)} goes over your soft quota on {fs} "
            f"({human_bytes(room)} left of {human_bytes(entry.bytes_soft)}); "
            "writes stop when the grace period ends",
            f"free {human_bytes(need - room)} under {mount} or ask for a larger quota",
        )
    limit = entry.bytes_limit
    if limit is not None and entry.bytes_used + need > FULL_FRACTION * limit:
        share = (entry.bytes_used + need) / limit
        return SpaceFinding(
            Level.WARN,
            "quota-bytes",
            f"your quota on {fs} will be {share:.0%} used after {human_bytes(need)}",
            f"free space under {mount} to keep room for checkpoints and logs",
        )
    room_text = "no byte limit" if limit is None else f"{human_bytes(limit - entry.bytes_used)} of quota left"
    return SpaceFinding(Level.OK, "quota-bytes", f"{human_bytes(need)} needed, {room_text} on {fs}")


def _check_entry_files(need: int, entry: QuotaEntry, mount: str) -> SpaceFinding | None:
    fs = entry.filesystem
    if entry.files_hard is not None and need > entry.files_hard - entry.files_used:
        room = max(0, entry.files_hard - entry.files_used)
        return SpaceFinding(
            Level.BLOCK,
            "quota-files",
            f"needs {human_count(need)} but your file quota on {fs} leaves {human_count(room)} "
            f"({entry.files_used:,} used of {entry.files_hard:,})",
            f"delete at least {human_count(need - room)} under {mount} (or pack small files "
            "into archives), or choose a data root on a filesystem with more quota",
        )
    if entry.files_soft is not None and need > entry.files_soft - entry.files_used:
        room = max(0, entry.files_soft - entry.files_used)
        return SpaceFinding(
            Level.WARN,
            "quota-files",
            f"{human_count(need)} goes over your soft file quota on {fs} ({room:,} left); "
            "file creation stops when the grace period ends",
            f"delete at least {human_count(need - room)} under {mount} or ask for a larger quota",
        )
    limit = entry.files_limit
    if limit is not None and entry.files_used + need > FULL_FRACTION * limit:
        share = (entry.files_used + need) / limit
        return SpaceFinding(
            Level.WARN,
            "quota-files",
            f"your file quota on {fs} will be {share:.0%} used after {human_count(need)}",
            f"remove small files under {mount} (old caches, unpacked archives)",
        )
    if limit is None:
        return None
    return SpaceFinding(
        Level.OK, "quota-files", f"{human_count(need)} needed, {limit - entry.files_used:,} files of quota left on {fs}"
    )


def assess(need_bytes: int, need_files: int, free: FreeSpace, quota: QuotaReport) -> list[SpaceFinding]:
    """Findings for writing ``need_bytes`` in ``need_files`` files below ``free.path``.

    Block when the need exceeds the free space or the hard-quota headroom
    (hard - used); warn when it exceeds the soft-quota headroom or leaves the
    filesystem or the quota above 90 % used, or when the quota could not be
    read at all or said something doubtful (the tool's raw text is in
    ``quota.raw`` for display).
    """
    findings = _check_filesystem(need_bytes, need_files, free)
    for entry in quota.entries:
        findings.append(_check_entry_bytes(need_bytes, entry, free.mount))
        file_finding = _check_entry_files(need_files, entry, free.mount)
        if file_finding is not None:
            findings.append(file_finding)
    if quota.checked:
        for warning in quota.warnings:
            findings.append(
                SpaceFinding(Level.WARN, "quota", warning, "compare with your site's quota command if unsure")
            )
    else:
        reason = "; ".join(quota.warnings) or "no quota tool answered"
        wrappers = ", ".join(s.program for s in quota.site_outputs)
        fix = (
            f"check the output of {wrappers} below" if wrappers else "check your quota with your site's quota command"
        )
        findings.append(SpaceFinding(Level.WARN, "quota", f"not checked: {reason}", fix + " before a long download"))
    return findings


def worst(findings: list[SpaceFinding]) -> Level:
    """The level of the whole verdict: block beats warn beats ok."""
    order = [Level.OK, Level.WARN, Level.BLOCK]
    return max((f.level for f in findings), key=order.index, default=Level.OK)

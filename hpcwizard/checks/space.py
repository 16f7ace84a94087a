"""The verdict of the disk part of the preflight.

:func:`free_space` (in :mod:`hpcwizard.checks.freespace`, named here too)
measures the filesystem holding a path, on this machine or over SSH.

:func:`assess` turns "this plan needs N bytes and M files" plus the free space
and the quota report into findings with a level (ok / warn / block), a
message in human units and a concrete fix.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum

from hpcwizard.checks.freespace import (
    FreeSpace,
    free_space,
    free_space_local,
    free_space_via_commands,
    parse_df_probe,
)
from hpcwizard.checks.quota import QuotaEntry, QuotaReport
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

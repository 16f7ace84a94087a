"""Free space (both measuring paths) and the disk verdict."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hpcwizard.checks.quota import QuotaEntry, QuotaReport, SiteOutput
from hpcwizard.checks.space import (
    FreeSpace,
    Level,
    assess,
    free_space,
    free_space_local,
    free_space_via_commands,
    human_bytes,
    human_count,
    parse_df_probe,
    worst,
)
from hpcwizard.errors import CommandFailed
from hpcwizard.shell import LocalRunner

K, M, G, T = 1024, 1024**2, 1024**3, 1024**4


class CommandsOnly:
    """Not a LocalRunner: free_space must measure with `df` through it, as over SSH."""

    def __init__(self) -> None:
        self.inner = LocalRunner()
        self.calls: list[tuple[str, ...]] = []

    def run(self, argv, **kwargs):
        self.calls.append(tuple(argv))
        return self.inner.run(argv, **kwargs)

    def which(self, program):
        return self.inner.which(program)


# --------------------------------------------------------------------------
# measuring


def test_local_and_command_paths_agree(tmp_path: Path) -> None:
    local = free_space(LocalRunner(), str(tmp_path))
    remote = free_space(CommandsOnly(), str(tmp_path))
    assert local.existing == remote.existing == str(tmp_path)
    assert (local.mount, local.fstype, local.bytes_total) == (remote.mount, remote.fstype, remote.bytes_total)
    assert local.device == remote.device
    # Other tests write meanwhile: free space agrees within 1 GiB.
    assert abs(local.bytes_free - remote.bytes_free) < G
    assert local.files_total == remote.files_total
    assert 0 < local.bytes_free <= local.bytes_total


def test_missing_path_walks_up_to_nearest_parent(tmp_path: Path) -> None:
    wanted = tmp_path / "data" / "datasets" / "davis"
    for measured in (free_space_local(str(wanted)), free_space_via_commands(CommandsOnly(), str(wanted))):
        assert measured.path == str(wanted)
        assert measured.existing == str(tmp_path)
        assert measured.filesystem == measured.mount


def test_command_path_is_one_command_however_deep_the_missing_part(tmp_path: Path) -> None:
    runner = CommandsOnly()
    measured = free_space(runner, str(tmp_path / "x" / "y" / "z"))
    assert measured.existing == str(tmp_path)
    assert len(runner.calls) == 1  # one round trip over SSH
    assert runner.calls[0][:2] == ("sh", "-c") and runner.calls[0][-1] == str(tmp_path / "x" / "y" / "z")


def test_command_path_takes_hostile_paths_as_data(tmp_path: Path) -> None:
    odd = tmp_path / "a $(touch pwned) `id` ; 'q\" b"
    odd.mkdir()
    measured = free_space(CommandsOnly(), str(odd / "missing"))
    assert measured.existing == str(odd)
    assert not (Path.cwd() / "pwned").exists() and not (tmp_path / "pwned").exists()


def test_local_path_needs_no_subprocess(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):  # pragma: no cover - must not be called
        raise AssertionError("local measuring ran a command")

    runner = LocalRunner()
    monkeypatch.setattr(runner, "run", refuse)
    measured = free_space(runner, str(tmp_path))
    assert measured.bytes_total > 0


def test_df_probe_output_of_a_lustre_mount_with_spaces() -> None:
    measured = parse_df_probe(
        "/lustre/my project/run1",
        "/lustre/my project\n"
        "Type        1B-blocks           Avail    Inodes     IFree Mounted on\n"
        "lustre 664099048030208 325808627318784 6442450944 4294967296 /lustre/my project\n"
        "Filesystem\n10.0.0.1@o2ib:/scratch\n",
    )
    assert measured == FreeSpace(
        "/lustre/my project/run1",
        "/lustre/my project",
        "lustre",
        325808627318784,
        664099048030208,
        4294967296,
        6442450944,
        existing="/lustre/my project",
        device="10.0.0.1@o2ib:/scratch",
    )


def test_df_probe_output_without_inode_counts_or_device() -> None:
    measured = parse_df_probe("/data", "/data\nType 1B-blocks Avail Inodes IFree Mounted on\nbtrfs 1000 400 0 0 /data\n")
    assert (measured.files_free, measured.files_total, measured.device) == (None, None, "")


def test_df_probe_output_not_understood_raises() -> None:
    with pytest.raises(ValueError, match="df row not understood"):
        parse_df_probe("/data", "/data\nType ...\nsomething else entirely\n")


def test_command_path_df_failure_raises_command_failed(tmp_path: Path) -> None:
    class DfBreaks(CommandsOnly):
        """A real sh whose PATH finds a df that fails like a stale NFS handle."""

        def run(self, argv, **kwargs):
            env = dict(kwargs.pop("env", None) or {})
            env["PATH"] = f"{tmp_path}:{os.environ['PATH']}"
            return super().run(argv, env=env, **kwargs)

    fake_df = tmp_path / "df"
    fake_df.write_text('#!/bin/sh\necho "df: $4: Stale file handle" >&2\nexit 1\n')
    fake_df.chmod(0o755)
    with pytest.raises(CommandFailed, match="Stale file handle"):
        free_space_via_commands(DfBreaks(), str(tmp_path))


# --------------------------------------------------------------------------
# human units


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1 KiB"),
        (1536, "1.5 KiB"),
        (120 * G, "120 GiB"),
        (int(3.25 * T), "3.2 TiB"),
        (5 * 1024**6, "5 EiB"),
        (-2 * M, "-2 MiB"),
    ],
)
def test_human_bytes(n: int, text: str) -> None:
    assert human_bytes(n) == text


def test_human_count() -> None:
    assert human_count(1) == "1 file"
    assert human_count(1234567) == "1,234,567 files"


# --------------------------------------------------------------------------
# the verdict


def disk(free: int = 500 * G, total: int = 1000 * G, files_free: int | None = 5 * 10**6, files_total: int | None = 10**7) -> FreeSpace:
    return FreeSpace("/scratch/u/data", "/scratch", "lustre", free, total, files_free, files_total, "/scratch/u")


def report(*entries: QuotaEntry, checked: bool = True, warnings: tuple[str, ...] = ()) -> QuotaReport:
    return QuotaReport("/scratch/u/data", "lustre", "/scratch", "lfs", entries=entries, checked=checked, warnings=warnings)


def levels(findings, check: str) -> list[Level]:
    return [f.level for f in findings if f.check == check]


def test_all_ok() -> None:
    found = assess(100 * G, 1000, disk(), report(QuotaEntry("/scratch", 10 * G, 800 * G, 1 * T, 10, 10**6, 2 * 10**6)))
    assert worst(found) == Level.OK
    assert levels(found, "space") == [Level.OK]
    assert levels(found, "quota-bytes") == [Level.OK]
    assert levels(found, "quota-files") == [Level.OK]


def test_block_when_need_exceeds_free_space() -> None:
    found = assess(600 * G, 0, disk(free=480 * G), report())
    space = [f for f in found if f.check == "space"][0]
    assert space.level == Level.BLOCK
    assert "600 GiB" in space.message and "480 GiB" in space.message
    assert space.fix == "free 120 GiB under /scratch or choose a data root on a filesystem with more space"


def test_warn_when_filesystem_lands_above_90_percent() -> None:
    found = assess(50 * G, 0, disk(free=120 * G, total=1000 * G), report())
    assert levels(found, "space") == [Level.WARN]


def test_block_when_need_exceeds_hard_quota_headroom() -> None:
    entry = QuotaEntry("/scratch", 400 * G, 450 * G, 500 * G, 0, None, None)
    found = assess(220 * G, 0, disk(), report(entry))
    finding = [f for f in found if f.check == "quota-bytes"][0]
    assert finding.level == Level.BLOCK
    assert "100 GiB" in finding.message  # what the quota still leaves
    assert finding.fix == "free 120 GiB under /scratch or choose a data root on a filesystem with more quota"
    assert worst(found) == Level.BLOCK


def test_warn_when_need_exceeds_soft_quota_headroom_only() -> None:
    entry = QuotaEntry("/scratch", 400 * G, 450 * G, 1 * T, 0, None, None)
    found = assess(100 * G, 0, disk(), report(entry))
    assert levels(found, "quota-bytes") == [Level.WARN]
    assert "soft quota" in [f for f in found if f.check == "quota-bytes"][0].message


def test_warn_when_quota_lands_above_90_percent() -> None:
    entry = QuotaEntry("/scratch", 850 * G, None, 1000 * G, 0, None, None)
    assert levels(assess(60 * G, 0, disk(), report(entry)), "quota-bytes") == [Level.WARN]


def test_already_over_hard_quota_blocks_even_small_needs() -> None:
    entry = QuotaEntry("/scratch", 501 * G, None, 500 * G, 0, None, None)
    assert levels(assess(1, 0, disk(), report(entry)), "quota-bytes") == [Level.BLOCK]


def test_file_quota_block_and_soft_warn() -> None:
    hard = QuotaEntry("/scratch", 0, None, None, 990_000, None, 1_000_000)
    found = assess(1 * G, 20_000, disk(), report(hard))
    assert levels(found, "quota-files") == [Level.BLOCK]
    assert "10,000 files" in [f for f in found if f.check == "quota-files"][0].fix
    soft = QuotaEntry("/scratch", 0, None, None, 990_000, 1_000_000, 5_000_000)
    assert levels(assess(1 * G, 20_000, disk(), report(soft)), "quota-files") == [Level.WARN]


def test_inode_exhaustion_on_the_filesystem() -> None:
    found = assess(1 * G, 2_000_000, disk(files_free=1_000_000), report())
    assert levels(found, "inodes") == [Level.BLOCK]
    found = assess(1 * G, 100, disk(files_free=None, files_total=None), report())
    assert levels(found, "inodes") == []


def test_no_limits_means_no_quota_block() -> None:
    entry = QuotaEntry("/scratch", 900 * T, None, None, 10**9, None, None)
    found = assess(100 * G, 1000, disk(), report(entry))
    assert levels(found, "quota-bytes") == [Level.OK]
    assert levels(found, "quota-files") == []


def test_unchecked_quota_is_a_warning_pointing_at_site_wrapper() -> None:
    unchecked = QuotaReport(
        "/scratch/u/data",
        "lustre",
        "/scratch",
        "lfs",
        warnings=("lfs not found on this host",),
        site_outputs=(SiteOutput("myquota", 0, "Scratch: 1 TB of 10 TB"),),
    )
    found = assess(1 * G, 10, disk(), unchecked)
    quota = [f for f in found if f.check == "quota"][0]
    assert quota.level == Level.WARN
    assert "lfs not found" in quota.message and "myquota" in quota.fix
    assert worst(found) == Level.WARN


def test_doubtful_checked_quota_is_a_warning() -> None:
    doubtful = report(warnings=("quota lists no quota for /dev/sdz (only for /home); assuming none applies there",))
    found = assess(1 * G, 10, disk(), doubtful)
    assert levels(found, "quota") == [Level.WARN]
    assert "/dev/sdz" in [f for f in found if f.check == "quota"][0].message


def test_level_compares_as_text() -> None:
    assert Level.BLOCK == "block" and Level.WARN.value == "warn"
    assert worst([]) == Level.OK


def test_assess_on_this_machine(tmp_path: Path) -> None:
    runner = LocalRunner()
    measured = free_space(runner, str(tmp_path / "new"))
    found = assess(measured.bytes_free + 1, 0, measured, QuotaReport(str(tmp_path), checked=True))
    assert levels(found, "space") == [Level.BLOCK]
    assert os.path.isdir(measured.existing)

"""Archive unpacking with real GNU tar: markers, reruns, unsafe members."""

from __future__ import annotations

import io
import os
import shlex
import shutil
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from hpcwizard.devhub import make_tar
from hpcwizard.download.unpack import UnpackError, is_unpacked, unpack
from hpcwizard.project.home import Project
from hpcwizard.project.resolved import resolve


def test_unpack_once_then_skip_until_the_archive_changes(tmp_path):
    archive = tmp_path / "code.tar.gz"
    archive.write_bytes(make_tar({"code/train.py": "print(1)\n"}, gzip_compress=True))
    into = tmp_path / "out"
    assert unpack(archive, into).skipped is False
    assert (into / "code" / "train.py").read_text() == "print(1)\n"
    assert is_unpacked(archive, into)
    (into / "code" / "train.py").write_text("edited by the user\n")
    assert unpack(archive, into).skipped is True
    assert (into / "code" / "train.py").read_text() == "edited by the user\n"
    archive.write_bytes(make_tar({"code/train.py": "print(2)\n"}, gzip_compress=True))
    assert unpack(archive, into).skipped is False
    assert (into / "code" / "train.py").read_text() == "print(2)\n"


def test_unpacked_files_deleted_since_are_unpacked_again(tmp_path):
    """A scratch purge deletes the frames and leaves the marker: the next setup
    run must unpack again, not skip and fail on missing frames."""
    archive = tmp_path / "frames.tar"
    archive.write_bytes(make_tar({"./frames/0001.jpg": "a", "frames/0002.jpg": "b", "README": "r"}))
    into = tmp_path / "data"
    assert unpack(archive, into).skipped is False
    assert unpack(archive, into).skipped is True
    shutil.rmtree(into / "frames")
    assert not is_unpacked(archive, into)
    assert unpack(archive, into).skipped is False
    assert (into / "frames" / "0002.jpg").read_text() == "b"
    assert is_unpacked(archive, into)


def test_unsafe_members_are_refused_before_anything_is_written(tmp_path):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("../escape.txt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"bad"))
    archive = tmp_path / "evil.tar"
    archive.write_bytes(buffer.getvalue())
    with pytest.raises(UnpackError, match="unsafe path '../escape.txt'"):
        unpack(archive, tmp_path / "out")
    assert not (tmp_path / "escape.txt").exists()


def test_not_an_archive(tmp_path):
    junk = tmp_path / "data.tar"
    junk.write_bytes(b"this is not a tar file at all" * 100)
    with pytest.raises(UnpackError, match="not a readable archive"):
        unpack(junk, tmp_path / "out")
    zipped = tmp_path / "data.zip"
    zipped.write_bytes(b"PK")
    with pytest.raises(UnpackError, match="not a tar archive hpcwizard can unpack"):
        unpack(zipped, tmp_path / "out")


# -- members that could write outside the folder, or have no place in a dataset ---------------------


def member(name: str, data: bytes = b"", **attrs: object) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    for key, value in attrs.items():
        setattr(info, key, value)
    info.size = len(data) if info.isreg() else 0
    return info, data


def symlink(name: str, target: str) -> tuple[tarfile.TarInfo, bytes]:
    return member(name, type=tarfile.SYMTYPE, linkname=target)


def write_tar(path: Path, *members: tuple[tarfile.TarInfo, bytes]) -> Path:
    with tarfile.open(path, "w") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


def test_a_symlink_out_of_the_folder_is_refused_so_a_later_archive_cannot_write_through_it(tmp_path):
    # diffueraser unpacks several archives into one work folder: a link from the
    # first one must not let the second write elsewhere.
    outside = tmp_path / "outside"
    outside.mkdir()
    into = tmp_path / "work"
    first = write_tar(tmp_path / "first.tar", symlink("dataset", str(outside)))
    second = write_tar(tmp_path / "second.tar", member("dataset/pwned.txt", b"pwned"))
    with pytest.raises(UnpackError) as caught:
        unpack(first, into)
    assert str(caught.value).startswith(f"first.tar contains a symlink 'dataset' -> '{outside}' that points outside")
    assert "\n" not in str(caught.value)
    assert not (into / "dataset").is_symlink()
    unpack(second, into)
    assert (into / "dataset" / "pwned.txt").read_bytes() == b"pwned"
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize(("members", "bad"), [
    ([symlink("up", "../outside")], "a symlink 'up' -> '../outside' that points outside"),
    ([symlink("a/b/up", "../../../outside")], "a symlink 'a/b/up' -> '../../../outside' that points outside"),
    # `a -> .` stays inside, but makes `a/..` the parent of the folder
    ([symlink("a", "."), symlink("b", "a/..")], "a symlink 'b' -> 'a/..' with `..` after a folder name"),
    ([symlink("a", "."), symlink("a/up", "../outside")], "a symlink 'a/up' -> '../outside' that climbs out of 'a'"),
    ([symlink("a/up", "../outside"), symlink("a", ".")], "a symlink 'a/up' -> '../outside' that climbs out of 'a'"),
    ([member("x.txt", b"x"), member("hard", type=tarfile.LNKTYPE, linkname="../x.txt")],
     "a hard link 'hard' to '../x.txt' outside"),
    ([member("hard", type=tarfile.LNKTYPE, linkname="/etc/passwd")], "a hard link 'hard' to '/etc/passwd' outside"),
    ([member("null", type=tarfile.CHRTYPE, devmajor=1, devminor=3)], "a device file 'null'"),
    ([member("disk", type=tarfile.BLKTYPE, devmajor=8, devminor=0)], "a device file 'disk'"),
    ([member("pipe", type=tarfile.FIFOTYPE)], "a FIFO 'pipe'"),
    ([member("data/keep.txt", b"keep"), symlink(".hpcwizard-unpacked-evil.tar.tmp", "data/keep.txt")],
     "'.hpcwizard-unpacked-evil.tar.tmp', a name hpcwizard uses for its unpack markers"),
], ids=["up", "deep-up", "dotdot-after-link", "climb-link", "climb-later-link", "hard-up", "hard-abs",
        "chr", "blk", "fifo", "marker-name"])
def test_unsafe_members_are_refused_naming_archive_and_member(tmp_path, members, bad):
    archive = write_tar(tmp_path / "evil.tar", member("first.txt", b"1"), *members)
    into = tmp_path / "work"
    with pytest.raises(UnpackError) as caught:
        unpack(archive, into)
    assert str(caught.value).startswith(f"evil.tar contains {bad}"), str(caught.value)
    assert "refusing to unpack it" in str(caught.value)
    assert not into.exists()  # checked before anything is written


def test_a_link_through_a_link_left_by_an_earlier_archive_is_refused(tmp_path):
    into = tmp_path / "work"
    unpack(write_tar(tmp_path / "first.tar", symlink("a", ".")), into)
    assert (into / "a").is_symlink()
    with pytest.raises(UnpackError, match="second.tar contains a symlink 'a/up' -> '../outside' that climbs out of 'a'"):
        unpack(write_tar(tmp_path / "second.tar", symlink("a/up", "../outside")), into)
    assert not (into / "up").is_symlink()


def test_relative_links_inside_the_folder_unpack(tmp_path):
    # The huggingface cache layout, a link through a link, a hard link.
    archive = write_tar(
        tmp_path / "repo.tar",
        member("blobs/abc123", b"weights"),
        symlink("snapshots/main/model.bin", "../../blobs/abc123"),
        symlink("./snapshots/main/./same.bin", "./model.bin"),
        symlink("latest", "snapshots/main"),
        symlink("model.bin", "latest/model.bin"),
        member("copy.bin", type=tarfile.LNKTYPE, linkname="blobs/abc123"),
    )
    into = tmp_path / "work"
    unpack(archive, into)
    for name in ("snapshots/main/model.bin", "snapshots/main/same.bin", "model.bin", "copy.bin"):
        assert (into / name).read_bytes() == b"weights"
    assert (into / "model.bin").is_symlink() and not (into / "copy.bin").is_symlink()


def test_the_marker_is_not_written_through_a_symlink(tmp_path):
    into = tmp_path / "work"
    into.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    archive = write_tar(tmp_path / "code.tar", member("code/train.py", b"print(1)\n"))
    # The temporary name the marker used to be written through (a link left by anything).
    (into / ".hpcwizard-unpacked-code.tar.tmp").symlink_to(victim)
    unpack(archive, into)
    assert victim.read_text() == "precious"
    assert is_unpacked(archive, into)
    assert not (into / ".hpcwizard-unpacked-code.tar.json").is_symlink()


def test_owner_setuid_and_modes_come_from_the_user_not_the_archive(tmp_path):
    archive = write_tar(tmp_path / "tools.tar",
                        member("bin/tool", b"#!/bin/sh\n", mode=0o6777, uid=4321, gid=4321),
                        member("open.txt", b"x", mode=0o666))
    into = tmp_path / "work"
    old = os.umask(0o022)
    try:
        unpack(archive, into)
    finally:
        os.umask(old)
    tool = (into / "bin" / "tool").stat()
    assert stat.S_IMODE(tool.st_mode) == 0o755  # no setuid/setgid, no world write (as root too)
    assert (tool.st_uid, tool.st_gid) == (os.getuid(), os.getgid())
    assert stat.S_IMODE((into / "open.txt").stat().st_mode) == 0o644


def _tar_with_a_damaged_header(path: Path) -> Path:
    blocks = b""
    for name in ("good.txt", "damaged.txt", "hidden.txt"):
        info, data = member(name, b"x")
        header = bytearray(info.tobuf(tarfile.GNU_FORMAT))
        if name == "damaged.txt":
            header[148:156] = b"0000000\0"  # a wrong checksum
        blocks += bytes(header) + data.ljust(512, b"\0")
    path.write_bytes(blocks + b"\0" * 1024)
    return path


def test_a_damaged_header_cannot_hide_members_from_the_check(tmp_path):
    # tarfile stops at a damaged header as if the archive ended there; GNU tar
    # skips it and unpacks what follows.
    archive = _tar_with_a_damaged_header(tmp_path / "damaged.tar")
    into = tmp_path / "work"
    with pytest.raises(UnpackError, match="damaged.tar is not a readable archive: a damaged header"):
        unpack(archive, into)
    assert not into.exists()


@pytest.mark.skipif(not shutil.which("zstd"), reason="zstd is not installed")
def test_zstd_archives_are_checked_through_zstd(tmp_path):
    good = write_tar(tmp_path / "good.tar", member("a/file.txt", b"hello"), symlink("a/link", "file.txt"))
    subprocess.run(["zstd", "-q", str(good), "-o", str(tmp_path / "good.tar.zst")], check=True)
    unpack(tmp_path / "good.tar.zst", tmp_path / "work")
    assert (tmp_path / "work" / "a" / "link").read_text() == "hello"
    evil = write_tar(tmp_path / "evil.tar", *[member(f"f{i}", b"x" * 1000) for i in range(50)], symlink("up", "../x"))
    subprocess.run(["zstd", "-q", str(evil), "-o", str(tmp_path / "evil.tar.zst")], check=True)
    with pytest.raises(UnpackError, match="evil.tar.zst contains a symlink 'up' -> '../x' that points outside"):
        unpack(tmp_path / "evil.tar.zst", tmp_path / "work2")
    (tmp_path / "cut.tar.zst").write_bytes((tmp_path / "good.tar.zst").read_bytes()[:-20])
    with pytest.raises(UnpackError, match="cut.tar.zst is not a readable archive"):
        unpack(tmp_path / "cut.tar.zst", tmp_path / "work3")


# -- fff-vdi's setup job unpacks train.tar itself, through the same checks -----------------------------


def _setup_train_tar_branch(tmp_path: Path) -> Path:
    """The train.tar branch of the rendered fff-vdi setup script, runnable on its own."""
    from hpcwizard.project.recipe import get_recipe
    from hpcwizard.project.render import render

    recipe = get_recipe("fff-vdi")
    plan = recipe.default_plan(tmp_path / "project", tmp_path / "data", hf_namespace="alice")
    script = next(f.text for f in render(Project(plan.project_home), resolve(plan, recipe), tmp_path / "out").files if f.name == "01_setup.sbatch")
    lines = script.splitlines()
    start = next(i for i, line in enumerate(lines) if 'elif [ -f "$YTVOS_DOWNLOAD/train.tar" ]' in line) + 1
    end = next(i for i in range(start, len(lines)) if lines[i].strip() == "else")
    branch = tmp_path / "branch.sh"
    branch.write_text("set -Eeuo pipefail\n"
                      "log() { printf '[log] %s\\n' \"$*\"; }\n"
                      "die() { log \"ERROR: $*\" >&2; exit 1; }\n"
                      f"HPCWIZARD=({shlex.quote(sys.executable)} -m hpcwizard)\n"
                      'YTVOS_DOWNLOAD=$1 YTVOS_DIR=$2\n' + "\n".join(lines[start:end]) + "\n")
    return branch


def test_fff_vdi_setup_unpacks_train_tar_with_the_same_checks(tmp_path):
    branch = _setup_train_tar_branch(tmp_path)
    downloads, into = tmp_path / "downloads", tmp_path / "data root" / "youtube-vos"
    downloads.mkdir()
    write_tar(downloads / "train.tar", member("train/JPEGImages/00a23ccf53/00000.jpg", b"jpg"))
    def run(into: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", str(branch), str(downloads), str(into)], capture_output=True, text=True,
                              check=False)

    done = run(into)
    assert done.returncode == 0, done.stderr
    assert (into / "train" / "JPEGImages" / "00a23ccf53" / "00000.jpg").read_bytes() == b"jpg"

    write_tar(downloads / "train.tar", symlink("train", str(tmp_path)), member("train/escaped.txt", b"x"))
    done = run(tmp_path / "other")
    assert done.returncode != 0
    assert f"hpcwizard: train.tar contains a symlink 'train' -> '{tmp_path}' that points outside" in done.stderr
    assert "ERROR: train.tar was not unpacked" in done.stderr
    assert not (tmp_path / "escaped.txt").exists()

"""Archive unpacking with real GNU tar: markers, reruns, unsafe members."""

from __future__ import annotations

import io
import tarfile

import pytest

from hpcwizard.devhub import make_tar
from hpcwizard.unpack import UnpackError, is_unpacked, unpack


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

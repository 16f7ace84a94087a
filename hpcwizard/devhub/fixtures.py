"""Create DevHub repos, tokens and tarballs programmatically (demo and tests).

    root = tmp_path / "hub"
    add_token(root, "hf_alice", "alice", orgs=["vilab"])
    write_repo(root, "models", "stabilityai/sd-2", {"model.safetensors": b"..."},
               gated="manual", accepted=["alice"])
    write_repo(root, "datasets", "vilab/davis", {"davis.tar": make_tar({"a/1.png": b"..."})})

hub.yaml is rewritten atomically (temp file + rename), so a running DevHub
never reads half a file and picks changes up on its next request.
"""

from __future__ import annotations

import gzip
import io
import os
import tarfile
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from hpcwizard.devhub.store import GATED_VALUES, valid_repo_id

_UNSET: Any = object()


def _normalise_type(repo_type: str) -> str:
    plural = {"model": "models", "models": "models", "dataset": "datasets", "datasets": "datasets"}.get(repo_type)
    if plural is None:
        raise ValueError(f"repo_type must be 'models' or 'datasets' (got {repo_type!r})")
    return plural


def _load(root: Path) -> dict[str, Any]:
    path = Path(root) / "hub.yaml"
    if not path.exists():
        return {}
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def _save(root: Path, data: dict[str, Any]) -> None:
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=root, prefix=".hub.yaml.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            yaml.safe_dump(data, f, sort_keys=True)
        os.replace(tmp, root / "hub.yaml")
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def add_token(root: Path, token: str, user: str, orgs: Iterable[str] = ()) -> None:
    """Declare ``token`` as a valid token of ``user`` (member of ``orgs``)."""
    data = _load(root)
    data.setdefault("tokens", {})[token] = {"user": user, "orgs": list(orgs)}
    _save(root, data)


def configure_repo(
    root: Path,
    repo_type: str,
    repo_id: str,
    *,
    gated: bool | str = _UNSET,
    private: bool = _UNSET,
    accepted: Iterable[str] = _UNSET,
    pending: Iterable[str] = _UNSET,
) -> None:
    """Change a repo's hub.yaml entry; only the settings given are changed."""
    if gated is not _UNSET and gated not in GATED_VALUES:
        raise ValueError(f"gated must be one of False, 'auto', 'manual' (got {gated!r})")
    data = _load(root)
    key = f"{_normalise_type(repo_type)}/{repo_id}"
    entry = data.setdefault("repos", {}).setdefault(key, {})
    if gated is not _UNSET:
        entry["gated"] = gated
    if private is not _UNSET:
        entry["private"] = bool(private)
    if accepted is not _UNSET:
        entry["accepted"] = sorted(accepted)
    if pending is not _UNSET:
        entry["pending"] = sorted(pending)
    _save(root, data)


def write_repo(
    root: Path,
    repo_type: str,
    repo_id: str,
    files: Mapping[str, bytes | str],
    *,
    gated: bool | str = False,
    private: bool = False,
    accepted: Iterable[str] = (),
    pending: Iterable[str] = (),
) -> Path:
    """Create (or add files to) a repo; returns its folder. ``repo_type``: models|datasets."""
    if not valid_repo_id(repo_id):
        raise ValueError(f"repo_id must look like owner/name (got {repo_id!r})")
    folder = Path(root) / _normalise_type(repo_type) / repo_id
    folder.mkdir(parents=True, exist_ok=True)
    for rel, content in files.items():
        write_file(folder, rel, content)
    configure_repo(root, repo_type, repo_id, gated=gated, private=private, accepted=accepted, pending=pending)
    return folder


def write_file(repo_folder: Path, rel: str, content: bytes | str) -> Path:
    """Write one file of a repo atomically (a DevHub re-hashes it: new etag, new commit)."""
    parts = rel.split("/")
    if rel.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"bad repo file path {rel!r}")
    target = Path(repo_folder).joinpath(*parts)
    target.parent.mkdir(parents=True, exist_ok=True)
    data = content.encode() if isinstance(content, str) else bytes(content)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, target)
    return target


def make_tar(members: Mapping[str, bytes | str], *, gzip_compress: bool = False) -> bytes:
    """A deterministic tar (fixed mtime, owner, mode 0644) of ``members`` (path → content)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in members.items():
            data = content.encode() if isinstance(content, str) else bytes(content)
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 1_700_000_000
            info.mode = 0o644
            info.uname = info.gname = "devhub"
            tar.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    if gzip_compress:
        return gzip.compress(raw, mtime=0)
    return raw

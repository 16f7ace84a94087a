"""The repositories a DevHub serves: files on disk plus ``hub.yaml``.

Layout under the root folder::

    <root>/hub.yaml
    <root>/models/<owner>/<name>/<files...>
    <root>/datasets/<owner>/<name>/<files...>

``hub.yaml`` (every key optional; a repo without an entry is public and ungated)::

    tokens:
      hf_alice_secret: {user: alice, orgs: [vilab]}
      hf_bob_secret: bob                  # shorthand: a user without orgs
    repos:
      models/stabilityai/sd-2:            # <models|datasets>/<owner>/<name>
        gated: manual                     # false | auto | manual
        private: false
        accepted: [alice]                 # users whose access request was granted
        pending: [bob]                    # users awaiting a manual review

A user always reaches the repos of its own name and of its orgs. The file is
re-read whenever it changes on disk, so a test can grant access at runtime.

Hashes (sha256 and the git blob id) are cached per file and recomputed when
the file's size, mtime or inode changes, so rewriting a file changes its etag.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from fnmatch import fnmatch
from pathlib import Path

import yaml

REPO_TYPES = ("model", "dataset")
GATED_VALUES = (False, "auto", "manual")
LFS_THRESHOLD = 1 << 20
LFS_PATTERNS = ("*.tar", "*.tar.gz", "*.tgz", "*.zip", "*.safetensors", "*.bin", "*.pth", "*.ckpt", "*.pt")

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class HubConfigError(ValueError):
    """hub.yaml is malformed; the message names the offending key."""


@dataclass(frozen=True)
class TokenUser:
    name: str
    orgs: tuple[str, ...] = ()


@dataclass(frozen=True)
class RepoSettings:
    gated: bool | str = False
    private: bool = False
    accepted: frozenset[str] = frozenset()
    pending: frozenset[str] = frozenset()


@dataclass(frozen=True)
class HubConfig:
    tokens: dict[str, TokenUser] = field(default_factory=dict)
    repos: dict[tuple[str, str], RepoSettings] = field(default_factory=dict)

    def settings(self, repo_type: str, repo_id: str) -> RepoSettings:
        return self.repos.get((repo_type, repo_id), RepoSettings())


@dataclass(frozen=True)
class FileEntry:
    """One file of a repo, with what the Hub reports about it."""

    path: str  # posix, relative to the repo root
    abspath: Path
    size: int
    sha256: str
    oid: str  # git blob id: of the content, or of the LFS pointer for LFS files
    lfs: bool
    mtime: float

    @property
    def pointer(self) -> bytes:
        return lfs_pointer(self.sha256, self.size)

    @property
    def etag(self) -> str:
        return self.sha256 if self.lfs else self.oid


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def repo_key(repo_type: str, repo_id: str) -> str:
    """``models/owner/name`` or ``datasets/owner/name``: the repo's folder below the root."""
    return f"{repo_type}s/{repo_id}"


def valid_repo_id(repo_id: str) -> bool:
    parts = repo_id.split("/")
    return len(parts) == 2 and all(_NAME_RE.match(p) and ".." not in p for p in parts)


def parse_config(data: object) -> HubConfig:
    """Build a HubConfig from the parsed YAML, rejecting unknown keys by name."""
    if data is None:
        return HubConfig()
    if not isinstance(data, dict):
        raise HubConfigError("hub.yaml: top level must be a mapping with 'tokens' and 'repos'")
    unknown = set(data) - {"tokens", "repos"}
    if unknown:
        raise HubConfigError(f"hub.yaml: unknown key(s) {sorted(unknown)}; allowed: tokens, repos")
    tokens: dict[str, TokenUser] = {}
    for token, spec in (data.get("tokens") or {}).items():
        if isinstance(spec, str):
            tokens[str(token)] = TokenUser(spec)
        elif isinstance(spec, dict) and "user" in spec:
            bad = set(spec) - {"user", "orgs"}
            if bad:
                raise HubConfigError(f"hub.yaml: tokens entry has unknown key(s) {sorted(bad)}; allowed: user, orgs")
            tokens[str(token)] = TokenUser(str(spec["user"]), tuple(str(o) for o in spec.get("orgs") or ()))
        else:
            raise HubConfigError("hub.yaml: each tokens entry must be a user name or {user: NAME, orgs: [...]}")
    repos: dict[tuple[str, str], RepoSettings] = {}
    for key, spec in (data.get("repos") or {}).items():
        repo_type, repo_id = _split_repo_key(str(key))
        spec = spec or {}
        bad = set(spec) - {"gated", "private", "accepted", "pending"}
        if bad:
            raise HubConfigError(
                f"hub.yaml: repos.{key} has unknown key(s) {sorted(bad)}; allowed: gated, private, accepted, pending"
            )
        gated = spec.get("gated", False)
        if gated is True:
            gated = "auto"
        if gated not in GATED_VALUES:
            raise HubConfigError(f"hub.yaml: repos.{key}.gated must be one of false, auto, manual (got {gated!r})")
        repos[(repo_type, repo_id)] = RepoSettings(
            gated=gated,
            private=bool(spec.get("private", False)),
            accepted=frozenset(str(u) for u in spec.get("accepted") or ()),
            pending=frozenset(str(u) for u in spec.get("pending") or ()),
        )
    return HubConfig(tokens=tokens, repos=repos)


def _split_repo_key(key: str) -> tuple[str, str]:
    parts = key.strip("/").split("/")
    if len(parts) == 3 and parts[0] in ("models", "datasets"):
        return parts[0][:-1], "/".join(parts[1:])
    if len(parts) == 2:
        return "model", key.strip("/")
    raise HubConfigError(f"hub.yaml: repo key {key!r} must look like models/<owner>/<name> or datasets/<owner>/<name>")


class RepoStore:
    """Reads repos and hub.yaml from ``root``; thread-safe, with hash and config caches."""

    def __init__(self, root: Path, lfs_threshold: int = LFS_THRESHOLD) -> None:
        self.root = Path(root)
        self.lfs_threshold = lfs_threshold
        self._lock = threading.Lock()
        self._hashes: dict[str, tuple[tuple[int, int, int], str, str | None]] = {}
        self._config_key: tuple[int, int, int] | None = None
        self._config = HubConfig()

    # -- hub.yaml --------------------------------------------------------------
    def config(self) -> HubConfig:
        path = self.root / "hub.yaml"
        try:
            st = path.stat()
        except FileNotFoundError:
            return HubConfig()
        key = (st.st_mtime_ns, st.st_size, st.st_ino)
        with self._lock:
            if key == self._config_key:
                return self._config
        config = parse_config(yaml.safe_load(path.read_text(encoding="utf-8")))
        with self._lock:
            self._config, self._config_key = config, key
        return config

    # -- repos -----------------------------------------------------------------
    def repo_dir(self, repo_type: str, repo_id: str) -> Path | None:
        if repo_type not in REPO_TYPES or not valid_repo_id(repo_id):
            return None
        path = self.root / f"{repo_type}s" / repo_id
        return path if path.is_dir() else None

    def is_lfs(self, rel_path: str, size: int) -> bool:
        name = rel_path.rsplit("/", 1)[-1]
        return size > self.lfs_threshold or any(fnmatch(name, pat) for pat in LFS_PATTERNS)

    def files(self, repo_type: str, repo_id: str) -> list[FileEntry]:
        """All files of the repo sorted by path (empty if the repo does not exist)."""
        base = self.repo_dir(repo_type, repo_id)
        if base is None:
            return []
        entries = []
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = sorted(d for d in dirnames if d != ".git")
            for name in filenames:
                abspath = Path(dirpath) / name
                rel = abspath.relative_to(base).as_posix()
                entry = self._entry(abspath, rel)
                if entry is not None:
                    entries.append(entry)
        entries.sort(key=lambda e: e.path)
        return entries

    def file(self, repo_type: str, repo_id: str, rel_path: str) -> FileEntry | None:
        base = self.repo_dir(repo_type, repo_id)
        if base is None or not rel_path or rel_path.startswith("/"):
            return None
        parts = rel_path.split("/")
        if any(p in ("", ".", "..", ".git") for p in parts):
            return None
        abspath = base.joinpath(*parts)
        if not abspath.is_file():
            return None
        return self._entry(abspath, rel_path)

    def _entry(self, abspath: Path, rel: str) -> FileEntry | None:
        try:
            st = abspath.stat()
        except FileNotFoundError:
            return None
        stat_key = (st.st_size, st.st_mtime_ns, st.st_ino)
        lfs = self.is_lfs(rel, st.st_size)
        cache_key = str(abspath)
        with self._lock:
            cached = self._hashes.get(cache_key)
        if cached is None or cached[0] != stat_key:
            sha256, blob_id = _hash_file(abspath, st.st_size, with_blob_id=not lfs)
            cached = (stat_key, sha256, blob_id)
            with self._lock:
                self._hashes[cache_key] = cached
        _, sha256, blob_id = cached
        if lfs:
            oid = git_blob_id(lfs_pointer(sha256, st.st_size))
        else:
            assert blob_id is not None
            oid = blob_id
        return FileEntry(rel, abspath, st.st_size, sha256, oid, lfs, st.st_mtime)


def _hash_file(path: Path, size: int, *, with_blob_id: bool) -> tuple[str, str | None]:
    sha256 = hashlib.sha256()
    sha1 = hashlib.sha1(b"blob %d\0" % size) if with_blob_id else None
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            sha256.update(chunk)
            if sha1 is not None:
                sha1.update(chunk)
    return sha256.hexdigest(), (sha1.hexdigest() if sha1 is not None else None)


def commit_sha(repo_type: str, repo_id: str, files: list[FileEntry]) -> str:
    """A 40-hex commit id that changes exactly when the repo's content changes."""
    digest = hashlib.sha1(f"{repo_type}s/{repo_id}\n".encode())
    for entry in files:
        digest.update(f"{entry.path}\0{entry.oid}\n".encode())
    return digest.hexdigest()


def tree_oid(dir_path: str, files: list[FileEntry]) -> str:
    prefix = dir_path + "/"
    digest = hashlib.sha1(b"tree " + dir_path.encode())
    for entry in files:
        if entry.path.startswith(prefix):
            digest.update(f"{entry.path}\0{entry.oid}\n".encode())
    return digest.hexdigest()


def iso_time(timestamp: float) -> str:
    moment = datetime.fromtimestamp(timestamp, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"

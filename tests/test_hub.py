"""hpcwizard.checks.hub against a DevHub: token discovery, validation, storage, access matrix, file metadata.

The hub functions take ``endpoint=`` explicitly (see test_devhub.py for why);
``login()`` only knows the import-time HF_ENDPOINT/HF_HOME, so the test of
that path runs in a subprocess with both set.
"""

from __future__ import annotations

import hashlib
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import get_hf_file_metadata

from devhub_fixtures import TOKENS
from hpcwizard.checks.hub import (
    AccessStatus,
    HubUser,
    RepoRef,
    TokenSource,
    check_access,
    download_size,
    find_token,
    repo_files,
    store_token,
    token_file_path,
    validate_token,
)
from hpcwizard.devhub import DevHub, write_repo
from hpcwizard.errors import UserError

ALICE, BOB, CAROL = TOKENS["alice"], TOKENS["bob"], TOKENS["carol"]
BIG = os.urandom(1_500_000)


@pytest.fixture
def repos(devhub_root: Path) -> Path:
    write_repo(devhub_root, "models", "acme/open", {"config.json": "{}", "model.safetensors": BIG})
    write_repo(devhub_root, "models", "acme/auto", {"w.pth": b"w"}, gated="auto", accepted=["alice"])
    write_repo(devhub_root, "models", "acme/manual", {"w.pth": b"w"}, gated="manual", pending=["bob"])
    write_repo(devhub_root, "datasets", "acme/data", {"d.tar": b"d" * 10, "x/y.txt": "y"}, gated="manual")
    write_repo(devhub_root, "models", "vilab/private", {"a.txt": "a"}, private=True)
    return devhub_root


def _closed_port_endpoint() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# -- token discovery ----------------------------------------------------------------


def test_find_token_none(hf_home: Path) -> None:
    assert find_token() is None


def test_find_token_from_file(hf_home: Path) -> None:
    hf_home.mkdir()
    (hf_home / "token").write_text(f"{BOB}\n")
    found = find_token()
    assert found is not None and found.token == BOB
    assert found.source == str(hf_home / "token") and found.path == hf_home / "token"


def test_find_token_env_wins(hf_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hf_home.mkdir()
    (hf_home / "token").write_text(BOB)
    monkeypatch.setenv("HF_TOKEN", ALICE)
    found = find_token()
    assert found == TokenSource(ALICE, "HF_TOKEN environment variable")


def test_token_source_never_shows_the_token(hf_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", ALICE)
    found = find_token()
    assert found is not None
    for text in (repr(found), str(found), f"{found}", repr([found]), repr({"t": found})):
        assert ALICE not in text
    assert "HF_TOKEN environment variable" in str(found)


def test_token_file_path_honours_hf_token_path(hf_home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert token_file_path() == hf_home / "token"
    monkeypatch.setenv("HF_TOKEN_PATH", str(tmp_path / "elsewhere"))
    assert token_file_path() == tmp_path / "elsewhere"


# -- validation and storage -------------------------------------------------------------


def test_validate_token(devhub: DevHub) -> None:
    assert validate_token(ALICE, devhub.url) == HubUser("alice", ("vilab",))
    assert validate_token(BOB, devhub.url) == HubUser("bob", ())


def test_validate_bad_token(devhub: DevHub) -> None:
    with pytest.raises(UserError) as info:
        validate_token("hf_bogus_secret", devhub.url)
    text = str(info.value)
    assert "invalid" in text and "https://huggingface.co/settings/tokens" in text
    assert "hf_bogus_secret" not in text


def test_validate_unreachable() -> None:
    endpoint = _closed_port_endpoint()
    with pytest.raises(UserError) as info:
        validate_token(ALICE, endpoint)
    assert endpoint in str(info.value)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_store_token_own_writer(devhub: DevHub, hf_home: Path) -> None:
    # huggingface_hub's login() is bound to the import-time endpoint, so with another
    # endpoint store_token writes the file itself, with the same modes.
    path = store_token(ALICE, devhub.url)
    assert path == hf_home / "token"
    assert path.read_text() == ALICE and _mode(path) == 0o600 and _mode(path.parent) == 0o700
    assert find_token() == TokenSource(ALICE, str(path), path)
    with pytest.raises(UserError):
        store_token("hf_bogus_secret", devhub.url)
    assert path.read_text() == ALICE  # a refused token does not replace a good one


def test_store_token_through_login(devhub: DevHub, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    code = f"from hpcwizard.checks.hub import store_token; print(store_token({BOB!r}))"
    env = {**os.environ, "HF_ENDPOINT": devhub.url, "HF_HOME": str(home)}
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH"):
        env.pop(name, None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    token_file = home / "token"
    assert out.stdout.strip() == str(token_file)
    assert token_file.read_text() == BOB and _mode(token_file) == 0o600
    assert _mode(home) == 0o700  # login() tightens the directory too
    assert (home / "stored_tokens").exists()  # proof it went through huggingface_hub's login()
    assert BOB not in out.stdout + out.stderr


# -- access matrix -----------------------------------------------------------------------

MATRIX = [
    RepoRef("acme/open"),
    RepoRef("acme/auto"),
    RepoRef("acme/manual"),
    RepoRef("acme/data", "dataset"),
    RepoRef("acme/missing"),
    RepoRef("vilab/private"),
]


def _statuses(results: list) -> dict[str, AccessStatus]:
    return {str(r.repo): r.status for r in results}


def test_access_matrix_alice(devhub: DevHub, repos: Path) -> None:
    results = check_access(MATRIX, ALICE, devhub.url)
    assert [r.repo for r in results] == MATRIX
    assert _statuses(results) == {
        "acme/open": AccessStatus.OK,
        "acme/auto": AccessStatus.OK,
        "acme/manual": AccessStatus.GATED_NOT_ACCEPTED,
        "datasets/acme/data": AccessStatus.GATED_NOT_ACCEPTED,
        "acme/missing": AccessStatus.MISSING_OR_NO_ACCESS,
        "vilab/private": AccessStatus.OK,  # her org's repo
    }
    by_repo = {str(r.repo): r for r in results}
    assert by_repo["acme/open"].ok and by_repo["acme/open"].fix == ""
    assert by_repo["acme/manual"].url == f"{devhub.url}/acme/manual"
    assert f"{devhub.url}/acme/manual" in by_repo["acme/manual"].fix
    assert by_repo["datasets/acme/data"].url == f"{devhub.url}/datasets/acme/data"
    assert f"{devhub.url}/datasets/acme/data" in by_repo["datasets/acme/data"].fix


def test_access_matrix_bob_awaiting(devhub: DevHub, repos: Path) -> None:
    statuses = _statuses(check_access(MATRIX, BOB, devhub.url))
    assert statuses["acme/manual"] == AccessStatus.AWAITING_APPROVAL
    assert statuses["acme/auto"] == AccessStatus.GATED_NOT_ACCEPTED
    assert statuses["vilab/private"] == AccessStatus.MISSING_OR_NO_ACCESS


def test_access_valid_token_no_gate_accepted(devhub: DevHub, repos: Path) -> None:
    results = check_access(MATRIX, CAROL, devhub.url)
    assert _statuses(results) == {
        "acme/open": AccessStatus.OK,
        "acme/auto": AccessStatus.GATED_NOT_ACCEPTED,
        "acme/manual": AccessStatus.GATED_NOT_ACCEPTED,
        "datasets/acme/data": AccessStatus.GATED_NOT_ACCEPTED,
        "acme/missing": AccessStatus.MISSING_OR_NO_ACCESS,
        "vilab/private": AccessStatus.MISSING_OR_NO_ACCESS,
    }


def test_access_anonymous(devhub: DevHub, repos: Path) -> None:
    results = {str(r.repo): r for r in check_access(MATRIX, None, devhub.url)}
    assert results["acme/open"].status == AccessStatus.OK
    assert results["acme/auto"].status == AccessStatus.GATED_NOT_ACCEPTED
    assert "token" in results["acme/auto"].fix


def test_access_bad_token(devhub: DevHub, repos: Path) -> None:
    devhub.reset_stats()
    results = check_access(MATRIX, "hf_bogus_secret", devhub.url)
    assert {r.status for r in results} == {AccessStatus.BAD_TOKEN}
    assert "https://huggingface.co/settings/tokens" in results[0].fix
    assert all("hf_bogus_secret" not in r.detail + r.fix for r in results)


def test_access_unreachable() -> None:
    endpoint = _closed_port_endpoint()
    results = check_access(MATRIX, ALICE, endpoint)
    assert {r.status for r in results} == {AccessStatus.UNREACHABLE}
    assert endpoint in results[0].detail


# -- file metadata ----------------------------------------------------------------------


def test_repo_files(devhub: DevHub, repos: Path) -> None:
    files = {f.path: f for f in repo_files(RepoRef("acme/open"), None, devhub.url)}
    assert set(files) == {"config.json", "model.safetensors"}
    big = files["model.safetensors"]
    assert big.size == len(BIG) and big.sha256 == hashlib.sha256(BIG).hexdigest() == big.etag
    assert files["config.json"].sha256 is None and files["config.json"].size == 2
    assert download_size(list(files.values())) == len(BIG) + 2
    # The etag and the commit are what HEAD /resolve answers, so a downloader can compare them.
    for remote in files.values():
        meta = get_hf_file_metadata(remote.url, token=False)
        assert (meta.etag, meta.commit_hash, meta.size) == (remote.etag, remote.commit, remote.size)


def test_repo_files_patterns_and_gated_without_access(devhub: DevHub, repos: Path) -> None:
    files = repo_files(RepoRef("acme/data", "dataset"), CAROL, devhub.url, patterns=["*.tar"])
    assert [(f.path, f.size) for f in files] == [("d.tar", 10)]
    assert files[0].url.startswith(f"{devhub.url}/datasets/acme/data/resolve/")


def test_repo_files_errors(devhub: DevHub, repos: Path) -> None:
    with pytest.raises(UserError, match="acme/missing"):
        repo_files(RepoRef("acme/missing"), ALICE, devhub.url)
    with pytest.raises(UserError, match="revision"):
        repo_files(RepoRef("acme/open"), ALICE, devhub.url, revision="nope")
    with pytest.raises(UserError, match="invalid"):
        repo_files(RepoRef("acme/open"), "hf_bogus_secret", devhub.url)
    endpoint = _closed_port_endpoint()
    with pytest.raises(UserError, match=endpoint):
        repo_files(RepoRef("acme/open"), ALICE, endpoint)

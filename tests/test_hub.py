"""hpcwizard.checks.hub against a DevHub: token discovery, validation, storage, access matrix, file metadata;
the endpoint rule.

The hub functions take ``endpoint=`` explicitly (see test_devhub.py for why).
Storing a token (hpcwizard.checks.hftoken) runs the real ``sh``, ``mktemp``
and ``mv`` through the local runner, as on the login node.
"""

from __future__ import annotations

import hashlib
import os
import socket
import stat
from pathlib import Path

import pytest
from huggingface_hub import get_hf_file_metadata

from devhub_fixtures import TOKENS
from hpcwizard.checks.hftoken import StoredToken, inspect_token_file, locate_token_file, store_token
from hpcwizard.checks.hub import (
    AccessStatus,
    HubUser,
    RepoRef,
    TokenSource,
    check_access,
    download_size,
    find_token,
    repo_files,
    token_file_path,
    validate_token,
)
from hpcwizard.devhub import DevHub, write_repo
from hpcwizard.errors import UserError
from hpcwizard.shell import LocalRunner

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


def test_store_token_writes_only_the_token_file_in_folders_it_creates_private(hf_home: Path) -> None:
    stored = store_token(ALICE, LocalRunner())
    path = hf_home / "token"
    assert stored == StoredToken(str(path), created_folder=True, warning=None)
    assert path.read_text() == ALICE and _mode(path) == 0o600 and _mode(hf_home) == 0o700
    assert find_token() == TokenSource(ALICE, str(path), path)
    # One copy: huggingface_hub's login() would also write stored_tokens.
    assert sorted(os.listdir(hf_home)) == ["token"]
    store_token(BOB, LocalRunner())  # replaced, still 0600, still alone
    assert path.read_text() == BOB and _mode(path) == 0o600 and sorted(os.listdir(hf_home)) == ["token"]


def test_store_token_leaves_folders_it_did_not_create_as_they_are(tmp_path: Path, hf_home: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A shared 1777 folder, a 0755 $HF_HOME, the user's home with
    HF_TOKEN_PATH=~/.hf_token: none is chmodded; others may write the first: said."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    monkeypatch.setenv("HF_TOKEN_PATH", str(shared / "token"))
    stored = store_token(ALICE, LocalRunner())
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777 and _mode(shared / "token") == 0o600
    assert not stored.created_folder and stored.warning is not None
    assert f"{shared} (mode 1777) is writable by other users" in stored.warning
    assert inspect_token_file(LocalRunner()).warning == stored.warning  # the check says the same

    hf_home.mkdir(mode=0o755)
    hf_home.chmod(0o755)
    monkeypatch.delenv("HF_TOKEN_PATH")
    stored = store_token(ALICE, LocalRunner())
    assert _mode(hf_home) == 0o755 and stored.warning is None and stored.path == str(hf_home / "token")

    home = tmp_path / "home"
    home.mkdir()
    home.chmod(0o751)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("HF_TOKEN_PATH", "~/.hf_token")
    stored = store_token(ALICE, LocalRunner())
    assert stored.path == str(home / ".hf_token") and _mode(home) == 0o751
    assert (home / ".hf_token").read_text() == ALICE and _mode(home / ".hf_token") == 0o600


def test_the_token_file_rule_here_and_through_a_runner(tmp_path: Path, hf_home: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """huggingface_hub's rule: HF_TOKEN_PATH, else HF_HOME, else XDG_CACHE_HOME,
    else ~/.cache; the same whether read here or asked of a machine's shell."""
    monkeypatch.delenv("HF_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "h"))
    cases = [
        ({}, tmp_path / "h" / ".cache" / "huggingface" / "token"),
        ({"XDG_CACHE_HOME": str(tmp_path / "xdg")}, tmp_path / "xdg" / "huggingface" / "token"),
        ({"XDG_CACHE_HOME": str(tmp_path / "xdg"), "HF_HOME": "~/hf"}, tmp_path / "h" / "hf" / "token"),
        ({"HF_HOME": str(tmp_path / "hf"), "HF_TOKEN_PATH": "$HOME/tok"}, tmp_path / "h" / "tok"),
    ]
    for env, expected in cases:
        for name in ("XDG_CACHE_HOME", "HF_HOME", "HF_TOKEN_PATH"):
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        assert token_file_path() == expected, env
        assert locate_token_file(LocalRunner()) == str(expected), env


def test_a_refused_token_is_never_stored(devhub: DevHub, hf_home: Path) -> None:
    """Validation comes first, and once: storing does not ask the hub again."""
    store_token(ALICE, LocalRunner())
    with pytest.raises(UserError):
        validate_token("hf_bogus_secret", devhub.url)
    assert (hf_home / "token").read_text() == ALICE


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


# -- which hub ----------------------------------------------------------------------------


def test_the_hub_endpoint_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    from hpcwizard.checks.hub import DEFAULT_ENDPOINT, chosen_endpoint, default_endpoint, endpoint_env

    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    assert chosen_endpoint() is None and default_endpoint() == DEFAULT_ENDPOINT and endpoint_env() is None
    monkeypatch.setenv("HF_ENDPOINT", "http://mirror.example:8080/")
    assert default_endpoint() == "http://mirror.example:8080" == chosen_endpoint()
    assert endpoint_env() == {"HF_ENDPOINT": "http://mirror.example:8080"}
    assert default_endpoint("http://app.example") == "http://app.example"  # the app's wins


def test_only_the_hub_module_reads_hf_endpoint() -> None:
    """One rule for which hub: every other module asks checks/hub.py."""
    package = Path(__file__).resolve().parent.parent / "hpcwizard"
    readers = []
    for path in package.rglob("*.py"):
        if path.parts[-2] in ("devhub", "demo") or "code_base" in path.parts:
            continue  # the hub stand-in and the demo's own scripts are not hpcwizard's client side
        text = path.read_text(encoding="utf-8")
        if any(f'{call}("HF_ENDPOINT"' in text for call in ("environ.get", "getenv", "environ[")):
            readers.append(path.relative_to(package).as_posix())
    assert readers == ["checks/hub.py"], readers

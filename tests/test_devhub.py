"""DevHub against the REAL huggingface_hub client.

How the client is pointed at the server: huggingface_hub reads ``HF_ENDPOINT``
once, at import time, so setting it in a test is too late. Instead every call
passes ``endpoint=hub.url``: ``HfApi(endpoint=...)``, ``hf_hub_download(...,
endpoint=...)`` and ``snapshot_download(..., endpoint=...)`` all honour it
in-process (``hf_hub_url`` swaps the import-time endpoint prefix for it). The
cache dir is also fixed at import time, so every download passes
``cache_dir=tmp_path``, and ``token=`` is always explicit (a string, or False
for anonymous) so the machine's own token is never used. Code that can only
read the import-time values (``login()``) runs in a subprocess with
``HF_ENDPOINT``/``HF_HOME`` set (see test_hub.py and the CLI test below).
"""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import logging
import os
import signal
import subprocess
import sys
import tarfile
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from huggingface_hub import HfApi, get_hf_file_metadata, hf_hub_download, hf_hub_url, snapshot_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from devhub_fixtures import TOKENS
from helpers import wait_for
from hpcwizard.devhub import DevHub, configure_repo, make_tar, write_file, write_repo

ALICE, BOB, CAROL = TOKENS["alice"], TOKENS["bob"], TOKENS["carol"]
BIG = bytes(range(256)) * 8192  # 2 MiB: LFS by size


def _get(url: str, headers: dict[str, str] | None = None, method: str = "GET") -> tuple[int, dict, bytes]:
    """Plain http.client request: status, headers, body (no client-side magic)."""
    host_port, _, path = url.removeprefix("http://").partition("/")
    conn = http.client.HTTPConnection(host_port, timeout=10)
    conn.request(method, "/" + path, headers=headers or {})
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, dict(resp.getheaders()), body


@pytest.fixture
def repos(devhub_root: Path) -> Path:
    write_repo(
        devhub_root,
        "models",
        "acme/tiny",
        {"config.json": '{"hidden": 8}', "weights.safetensors": b"\x00" * 100, "big/blob.dat": BIG},
    )
    write_repo(devhub_root, "models", "acme/gated", {"w.pth": b"gated weights"}, gated="auto", accepted=["alice"])
    write_repo(devhub_root, "models", "acme/reviewed", {"w.pth": b"reviewed"}, gated="manual", pending=["bob"])
    write_repo(devhub_root, "models", "vilab/private", {"a.txt": "secret"}, private=True)
    write_repo(
        devhub_root,
        "datasets",
        "vilab/clips",
        {"README.md": "# clips\n", "train.tar": make_tar({"c/1.txt": "one", "c/2.txt": "two"}), "meta/x.json": "{}"},
    )
    return devhub_root


def test_whoami_ok_and_bad_token(devhub: DevHub) -> None:
    me = HfApi(endpoint=devhub.url).whoami(token=ALICE)
    assert me["name"] == "alice"
    assert [o["name"] for o in me["orgs"]] == ["vilab"]
    with pytest.raises(HfHubHTTPError) as info:
        HfApi(endpoint=devhub.url).whoami(token="hf_not_a_real_token")
    assert info.value.response.status_code == 401
    assert info.value.response.headers["X-Error-Message"] == "Invalid credentials in Authorization header"


def test_model_info_with_sizes_and_lfs(devhub: DevHub, repos: Path) -> None:
    info = HfApi(endpoint=devhub.url, token=False).model_info("acme/tiny", files_metadata=True)
    assert info.id == "acme/tiny" and len(info.sha) == 40 and info.gated is False
    by_name = {s.rfilename: s for s in info.siblings}
    assert set(by_name) == {"config.json", "weights.safetensors", "big/blob.dat"}
    assert by_name["config.json"].size == 13 and by_name["config.json"].lfs is None
    assert by_name["big/blob.dat"].lfs.sha256 == hashlib.sha256(BIG).hexdigest()
    assert by_name["big/blob.dat"].size == len(BIG)
    assert by_name["weights.safetensors"].lfs is not None  # LFS by extension
    # Same commit for the same content, and via /revision/.
    again = HfApi(endpoint=devhub.url, token=False).model_info("acme/tiny", revision=info.sha)
    assert again.sha == info.sha
    gated = HfApi(endpoint=devhub.url, token=False).model_info("acme/reviewed")
    assert gated.gated == "manual"


def test_download_normal_and_lfs_file(devhub: DevHub, repos: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    path = hf_hub_download("acme/tiny", "config.json", endpoint=devhub.url, token=False, cache_dir=cache)
    assert Path(path).read_text() == '{"hidden": 8}'
    url = hf_hub_url("acme/tiny", "big/blob.dat", endpoint=devhub.url)
    meta = get_hf_file_metadata(url, token=False)
    sha = hashlib.sha256(BIG).hexdigest()
    assert meta.etag == sha and meta.size == len(BIG) and len(meta.commit_hash) == 40
    path = hf_hub_download("acme/tiny", "big/blob.dat", endpoint=devhub.url, token=False, cache_dir=cache)
    assert hashlib.sha256(Path(path).read_bytes()).hexdigest() == sha
    # The client names LFS blobs by their sha256 in the cache.
    assert Path(path).resolve().name == sha


def test_snapshot_download_dataset(devhub: DevHub, repos: Path, tmp_path: Path) -> None:
    folder = Path(
        snapshot_download("vilab/clips", repo_type="dataset", endpoint=devhub.url, token=False, cache_dir=tmp_path)
    )
    assert (folder / "README.md").read_text() == "# clips\n"
    assert (folder / "meta" / "x.json").read_text() == "{}"
    with tarfile.open(folder / "train.tar") as tar:
        assert tar.extractfile("c/2.txt").read() == b"two"
    dry = snapshot_download(
        "vilab/clips", repo_type="dataset", endpoint=devhub.url, token=False, cache_dir=tmp_path / "x", dry_run=True
    )
    assert sum(f.file_size for f in dry) == sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def test_gated_repo(devhub: DevHub, repos: Path, tmp_path: Path) -> None:
    kwargs = {"endpoint": devhub.url, "cache_dir": tmp_path}
    with pytest.raises(GatedRepoError) as anon:
        hf_hub_download("acme/gated", "w.pth", token=False, **kwargs)
    assert anon.value.response.status_code == 401
    with pytest.raises(GatedRepoError) as carol:
        hf_hub_download("acme/gated", "w.pth", token=CAROL, **kwargs)
    assert carol.value.response.status_code == 403
    # Metadata stays readable without access; only content is refused.
    info = HfApi(endpoint=devhub.url, token=CAROL).model_info("acme/gated", files_metadata=True)
    assert info.gated == "auto" and info.siblings[0].size == len(b"gated weights")
    assert Path(hf_hub_download("acme/gated", "w.pth", token=ALICE, **kwargs)).read_bytes() == b"gated weights"
    HfApi(endpoint=devhub.url).auth_check("acme/gated", token=ALICE)
    # Access granted at runtime (hub.yaml rewritten) is seen at once.
    configure_repo(repos, "models", "acme/gated", accepted=["alice", "carol"])
    HfApi(endpoint=devhub.url).auth_check("acme/gated", token=CAROL)


def test_awaiting_approval(devhub: DevHub, repos: Path, tmp_path: Path) -> None:
    with pytest.raises(GatedRepoError) as info:
        HfApi(endpoint=devhub.url).auth_check("acme/reviewed", token=BOB)
    assert info.value.response.status_code == 403
    assert "Your request to access model acme/reviewed is awaiting a review from the repo authors" in str(info.value)
    with pytest.raises(GatedRepoError):
        hf_hub_download("acme/reviewed", "w.pth", endpoint=devhub.url, token=BOB, cache_dir=tmp_path)


def test_missing_and_private_repo(devhub: DevHub, repos: Path, tmp_path: Path) -> None:
    api = HfApi(endpoint=devhub.url)
    with pytest.raises(RepositoryNotFoundError) as info:
        api.model_info("acme/nope", token=ALICE)
    assert not isinstance(info.value, GatedRepoError)
    assert info.value.response.headers["X-Error-Code"] == "RepoNotFound"
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("acme/nope", "x", endpoint=devhub.url, token=False, cache_dir=tmp_path)
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("vilab/private", token=BOB)
    with pytest.raises(RepositoryNotFoundError):
        api.auth_check("vilab/private", token=False)
    api.auth_check("vilab/private", token=ALICE)  # alice is in org vilab
    # A model id is not a dataset id.
    with pytest.raises(RepositoryNotFoundError):
        api.dataset_info("acme/tiny", token=False)


def test_missing_file_and_revision(devhub: DevHub, repos: Path, tmp_path: Path) -> None:
    with pytest.raises(EntryNotFoundError):
        hf_hub_download("acme/tiny", "nope.bin", endpoint=devhub.url, token=False, cache_dir=tmp_path)
    with pytest.raises(RevisionNotFoundError):
        HfApi(endpoint=devhub.url, token=False).model_info("acme/tiny", revision="v9")


def test_tree_listing(devhub: DevHub, repos: Path) -> None:
    api = HfApi(endpoint=devhub.url, token=False)
    assert sorted(api.list_repo_files("vilab/clips", repo_type="dataset")) == ["README.md", "meta/x.json", "train.tar"]
    top = {e.path: type(e).__name__ for e in api.list_repo_tree("acme/tiny")}
    assert top == {"big": "RepoFolder", "config.json": "RepoFile", "weights.safetensors": "RepoFile"}
    inner = list(api.list_repo_tree("acme/tiny", path_in_repo="big"))
    assert [e.path for e in inner] == ["big/blob.dat"] and inner[0].lfs.size == len(BIG)
    infos = api.get_paths_info("acme/tiny", ["config.json", "big", "absent"])
    assert sorted(i.path for i in infos) == ["big", "config.json"]


def test_range_requests(devhub: DevHub, repos: Path) -> None:
    url = hf_hub_url("acme/tiny", "big/blob.dat", endpoint=devhub.url)
    status, headers, body = _get(url, {"Range": "bytes=1000-"})
    assert status == 206 and body == BIG[1000:]
    assert headers["Content-Range"] == f"bytes 1000-{len(BIG) - 1}/{len(BIG)}"
    assert headers["Accept-Ranges"] == "bytes"
    status, headers, body = _get(url, {"Range": "bytes=10-19"})
    assert (status, body, headers["Content-Length"]) == (206, BIG[10:20], "10")
    status, _, body = _get(url, {"Range": "bytes=-5"})
    assert (status, body) == (206, BIG[-5:])
    status, headers, _ = _get(url, {"Range": f"bytes={len(BIG)}-"})
    assert status == 416 and headers["Content-Range"] == f"bytes */{len(BIG)}"
    # If-Range with a stale etag: the whole (new) file.
    status, _, body = _get(url, {"Range": "bytes=1000-", "If-Range": '"0000"'})
    assert status == 200 and body == BIG
    # Knob: no Range support -> always 200 with the full body.
    devhub.range_support = False
    status, headers, body = _get(url, {"Range": "bytes=1000-"})
    assert status == 200 and body == BIG and "Accept-Ranges" not in headers


def test_head_headers(devhub: DevHub, repos: Path) -> None:
    status, headers, body = _get(hf_hub_url("acme/tiny", "config.json", endpoint=devhub.url), method="HEAD")
    assert status == 200 and body == b"" and headers["Content-Length"] == "13"
    assert len(headers["X-Repo-Commit"]) == 40 and "X-Linked-Etag" not in headers
    status, headers, _ = _get(hf_hub_url("acme/tiny", "big/blob.dat", endpoint=devhub.url), method="HEAD")
    sha = hashlib.sha256(BIG).hexdigest()
    assert headers["X-Linked-Etag"] == f'"{sha}"' and headers["ETag"] == f'"{sha}"'
    assert headers["X-Linked-Size"] == headers["Content-Length"] == str(len(BIG))
    status, headers, _ = _get(hf_hub_url("acme/tiny", "nope", endpoint=devhub.url), method="HEAD")
    assert status == 404 and headers["X-Error-Code"] == "EntryNotFound" and len(headers["X-Repo-Commit"]) == 40


def test_byte_counters(devhub: DevHub, repos: Path, tmp_path: Path) -> None:
    hf_hub_download("acme/tiny", "big/blob.dat", endpoint=devhub.url, token=False, cache_dir=tmp_path)
    _get(hf_hub_url("acme/tiny", "big/blob.dat", endpoint=devhub.url), {"Range": "bytes=100-"})
    key = "models/acme/tiny/big/blob.dat"
    assert devhub.bytes_sent(key) == len(BIG) + len(BIG) - 100
    assert devhub.bytes_sent() == devhub.bytes_sent(key)
    stats = json.loads(urllib.request.urlopen(f"{devhub.url}/_devhub/stats").read())
    assert stats["files"][key] == devhub.bytes_sent(key)
    assert stats["requests"][f"GET {key}"] == 2 and stats["requests"][f"RANGE {key}"] == 1
    urllib.request.urlopen(urllib.request.Request(f"{devhub.url}/_devhub/reset", data=b"", method="POST"))
    assert devhub.stats() == {"total_bytes": 0, "files": {}, "requests": {}}


def test_counters_are_thread_safe(devhub: DevHub, repos: Path) -> None:
    url = hf_hub_url("acme/tiny", "big/blob.dat", endpoint=devhub.url)
    threads = [threading.Thread(target=_get, args=(url,)) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # A client can have read the last chunk before the server thread that
    # sent it has counted it: wait for the counts to settle, then compare.
    wait_for("the server threads to count", lambda: devhub.bytes_sent() >= 6 * len(BIG) or None, timeout=10)
    assert devhub.bytes_sent() == 6 * len(BIG)


def test_changed_file_gets_new_etag_and_commit(devhub: DevHub, repos: Path) -> None:
    url = hf_hub_url("acme/tiny", "big/blob.dat", endpoint=devhub.url)
    before = get_hf_file_metadata(url, token=False)
    assert get_hf_file_metadata(url, token=False) == before  # stable
    write_file(repos / "models" / "acme" / "tiny", "big/blob.dat", BIG[::-1])
    after = get_hf_file_metadata(url, token=False)
    assert after.etag == hashlib.sha256(BIG[::-1]).hexdigest() != before.etag
    assert after.commit_hash != before.commit_hash
    # The old commit is gone (only main and the current commit resolve).
    status, headers, _ = _get(hf_hub_url("acme/tiny", "config.json", revision=before.commit_hash, endpoint=devhub.url))
    assert status == 404 and headers["X-Error-Code"] == "RevisionNotFound"


def test_throttle_and_runtime_config(devhub: DevHub, repos: Path) -> None:
    url = hf_hub_url("acme/tiny", "big/blob.dat", endpoint=devhub.url)
    req = urllib.request.Request(f"{devhub.url}/_devhub/config", data=json.dumps({"throttle": 400_000}).encode())
    assert json.loads(urllib.request.urlopen(req).read())["throttle"] == 400_000
    began = time.monotonic()
    status, _, body = _get(url, {"Range": f"bytes={len(BIG) - 200_000}-"})
    elapsed = time.monotonic() - began
    assert status == 206 and len(body) == 200_000 and 0.35 < elapsed < 3
    devhub.throttle = None
    began = time.monotonic()
    _get(url)
    assert time.monotonic() - began < 0.5


def test_drop_after_cuts_the_body(devhub: DevHub, repos: Path) -> None:
    devhub.drop_after = 100_000
    with pytest.raises(http.client.IncompleteRead) as info:
        _get(hf_hub_url("acme/tiny", "big/blob.dat", endpoint=devhub.url))
    assert len(info.value.partial) == 100_000
    assert devhub.bytes_sent() == 100_000


def test_stop_cuts_a_download_in_flight(devhub_root: Path, repos: Path) -> None:
    hub = DevHub(devhub_root, throttle=200_000).start()
    url = hf_hub_url("acme/tiny", "big/blob.dat", endpoint=hub.url)
    errors: list[BaseException] = []

    def fetch() -> None:
        try:
            _get(url)
        except (http.client.HTTPException, OSError) as exc:
            errors.append(exc)

    thread = threading.Thread(target=fetch)
    thread.start()
    time.sleep(0.5)
    began = time.monotonic()
    hub.stop()
    thread.join(timeout=5)
    assert not thread.is_alive() and time.monotonic() - began < 3
    assert errors and 0 < hub.bytes_sent() < len(BIG)


def test_request_log_never_shows_the_token(
    devhub_root: Path, repos: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="hpcwizard.devhub")
    with DevHub(devhub_root, log_requests=True) as hub:
        HfApi(endpoint=hub.url).whoami(token=ALICE)
        with pytest.raises(HfHubHTTPError):
            HfApi(endpoint=hub.url).whoami(token="hf_wrong_secret")
    text = caplog.text
    assert "/api/whoami-v2" in text and "user=alice" in text and "token=invalid" in text
    assert ALICE not in text and "hf_wrong_secret" not in text


def test_cli_serves_until_sigterm(devhub_root: Path, repos: Path, tmp_path: Path) -> None:
    port_file = tmp_path / "port"
    proc = subprocess.Popen(
        [sys.executable, "-m", "hpcwizard.devhub", "--root", str(devhub_root), "--port-file", str(port_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 10
        while not port_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        port = int(port_file.read_text())
        endpoint = f"http://127.0.0.1:{port}"
        # The real client configured the documented way: HF_ENDPOINT set before import.
        code = (
            "from huggingface_hub import HfApi, hf_hub_download; import sys;"
            f"print(HfApi().whoami(token={ALICE!r})['name']);"
            f"print(open(hf_hub_download('acme/tiny', 'config.json', token=False, cache_dir={str(tmp_path)!r})).read())"
        )
        env = {**os.environ, "HF_ENDPOINT": endpoint, "HF_HOME": str(tmp_path / "home")}
        env.pop("HF_TOKEN", None)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == ["alice", '{"hidden":', "8}"]
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert '"GET /api/whoami-v2" 200' in stderr and "user=alice" in stderr
    assert ALICE not in stderr


def test_make_tar_is_deterministic() -> None:
    members = {"a/b.txt": "hello", "c.bin": b"\x00\x01"}
    assert make_tar(members) == make_tar(members)
    gz = make_tar(members, gzip_compress=True)
    with tarfile.open(fileobj=io.BytesIO(gz), mode="r:gz") as tar:
        assert tar.getnames() == ["a/b.txt", "c.bin"]
        assert tar.extractfile("a/b.txt").read() == b"hello"


def test_lfs_redirect_to_cdn_like_the_real_hub(devhub: DevHub, repos: Path, tmp_path: Path) -> None:
    devhub.configure(lfs_redirect=True)
    url = hf_hub_url("acme/tiny", "big/blob.dat", endpoint=devhub.url)
    status, headers, _ = _get(url, {"Authorization": f"Bearer {ALICE}"}, method="HEAD")
    sha = hashlib.sha256(BIG).hexdigest()
    assert status == 302 and headers["Location"].startswith(f"http://localhost:{devhub.port}/_devhub/cdn/")
    assert headers["X-Linked-Etag"] == f'"{sha}"' and headers["X-Linked-Size"] == str(len(BIG))
    path = hf_hub_download("acme/tiny", "big/blob.dat", endpoint=devhub.url, token=ALICE, cache_dir=tmp_path)
    assert hashlib.sha256(Path(path).read_bytes()).hexdigest() == sha
    key = "models/acme/tiny/big/blob.dat"
    requests = devhub.stats()["requests"]
    assert requests[f"CDN GET {key}"] == 1 and f"CDN AUTH {key}" not in requests  # the token stayed home
    assert devhub.bytes_sent(key) == len(BIG)
    # Small files are still served directly; Range works on the CDN; a stale CDN URL expires.
    assert hf_hub_download("acme/tiny", "config.json", endpoint=devhub.url, token=False, cache_dir=tmp_path)
    status, _, body = _get(headers["Location"], {"Range": "bytes=5-9"})
    assert (status, body) == (206, BIG[5:10])
    write_file(repos / "models" / "acme" / "tiny", "big/blob.dat", b"new" * 10)
    assert _get(headers["Location"])[0] == 403

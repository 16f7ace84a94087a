"""The resumable downloader against a real DevHub (the Hub protocol served locally).

Interruptions are real: a subprocess killed with SIGKILL, connections cut by
the hub (``drop_after``), a hub that stops sending (``throttle=1``), a hub
without Range support, a full tmpfs. Waits loop on a condition with a timeout.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import http.server
import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hpcwizard.devhub import DevHub, add_token, make_tar, write_file, write_repo
from hpcwizard.download import (
    DiskFullError,
    DownloadError,
    DownloadProgress,
    FileState,
    FileStatus,
    FileTask,
    PartInfo,
    PlainProgressLog,
    ProgressTracker,
    TerminalProgressBar,
    TransferSettings,
    download_plan,
    download_repos,
    plan_download_size,
    read_manifest,
    run_download_command,
)
from hpcwizard.download.records import part_path, sidecar_path, write_sidecar
from hpcwizard.download.transfer import FileFetcher
from hpcwizard.errors import UserError
from hpcwizard.project.recipe import ResolvedRepo, get_recipe
from hpcwizard.project.resolved import resolve
from hpcwizard.project.state import load_state

FAST = TransferSettings(backoff_base=0.01, backoff_cap=0.05, stall_timeout=5.0, sidecar_interval=0.2)
TOKEN = "hf_alice_secret"


def wait_for(condition: Callable[[], object], timeout: float = 20.0, what: str = "condition") -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def blob(n: int, seed: int = 0) -> bytes:
    """Deterministic incompressible-ish bytes (fast: repeated sha256 blocks)."""
    out = bytearray()
    block = hashlib.sha256(str(seed).encode()).digest()
    while len(out) < n:
        block = hashlib.sha256(block).digest()
        out += block * 64
    return bytes(out[:n])


def repo_of(repo_id: str, dest: Path, include: tuple[str, ...] = ("*",), repo_type: str = "model") -> ResolvedRepo:
    return ResolvedRepo(repo_id=repo_id, repo_type=repo_type, purpose="test", dest=dest, include=include,
                        size_bytes=0, gated=False, archives=())


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[DevHub]:
    root = tmp_path / "hub"
    add_token(root, TOKEN, "alice")
    with DevHub(root) as running:
        yield running


def make_part(dest: Path, path: str, data: bytes, upto: int, *, etag: str, sha256: str | None, url: str = "x",
              flip_at: int | None = None) -> Path:
    """A leftover partial download, as an interrupted run leaves it (``flip_at``: 10 damaged bytes there)."""
    final = dest / path
    final.parent.mkdir(parents=True, exist_ok=True)
    part = bytearray(data[:upto])
    if flip_at is not None:
        part[flip_at:flip_at + 10] = bytes(b ^ 0xFF for b in part[flip_at:flip_at + 10])
    part_path(final).write_bytes(bytes(part))
    write_sidecar(final, PartInfo(url=url, etag=etag, size=len(data), sha256=sha256, done=upto))
    return final


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- basics ----------------------------------------------------------------------------------------


def test_downloads_several_files_verifies_and_skips_on_rerun(hub: DevHub, tmp_path: Path) -> None:
    big = blob(3_000_000)
    write_repo(hub.root, "models", "alice/m", {"README.md": "hi", "config.json": "{}", "weights/big.bin": big,
                                               "skip.txt": "not wanted"})
    dest = tmp_path / "dest"
    repo = repo_of("alice/m", dest, include=("*.md", "*.json", "weights/*"))
    seen: list[DownloadProgress] = []
    summary = download_repos([repo], endpoint=hub.url, on_progress=seen.append, settings=FAST)

    assert (dest / "weights" / "big.bin").read_bytes() == big
    assert (dest / "README.md").read_text() == "hi"
    assert not (dest / "skip.txt").exists()
    assert not list(dest.rglob("*.part")) and not list(dest.rglob("*.part.json"))
    assert summary.files_total == 3 and summary.files_downloaded == 3
    assert summary.bytes_transferred == len(big) + 4
    manifest = read_manifest(dest)
    assert manifest is not None and set(manifest.complete) == {"README.md", "config.json", "weights/big.bin"}
    assert manifest.complete["weights/big.bin"].sha256 == sha(big)
    assert seen[-1].finished and seen[-1].files_done == 3 and seen[-1].bytes_done == seen[-1].bytes_total

    hub.reset_stats()
    again = download_repos([repo], endpoint=hub.url, settings=FAST)
    assert again.files_skipped == 3 and again.files_downloaded == 0
    assert hub.bytes_sent() == 0


def test_cut_connections_resume_with_range_without_refetching(hub: DevHub, tmp_path: Path) -> None:
    data = blob(3_500_000, seed=1)
    write_repo(hub.root, "models", "alice/m", {"big.bin": data})
    hub.drop_after = 1_000_000  # every GET is cut after 1 MB
    notes: list[str] = []
    summary = download_repos([repo_of("alice/m", tmp_path / "d")], endpoint=hub.url, settings=FAST,
                             on_progress=lambda p: notes.extend(p.notes))
    assert (tmp_path / "d" / "big.bin").read_bytes() == data
    assert hub.bytes_sent("models/alice/m/big.bin") == len(data)  # not one byte twice
    assert hub.stats()["requests"]["RANGE models/alice/m/big.bin"] == 3
    assert summary.bytes_transferred == len(data)
    assert any("reconnecting" in n for n in notes)


KILL_SCRIPT = """
import sys
from pathlib import Path
from hpcwizard.download import download_repos
from hpcwizard.project.recipe import ResolvedRepo
repo = ResolvedRepo(repo_id="alice/m", repo_type="model", purpose="", dest=Path(sys.argv[2]), include=("*",),
                    size_bytes=0, gated=False, archives=())
print(download_repos([repo], endpoint=sys.argv[1]).bytes_transferred)
"""


def test_kill_9_mid_download_then_new_process_fetches_only_missing_bytes(hub: DevHub, tmp_path: Path) -> None:
    data = blob(8_000_000, seed=2)
    write_repo(hub.root, "models", "alice/m", {"big.bin": data})
    dest = tmp_path / "dest"
    part = part_path(dest / "big.bin")
    hub.throttle = 4_000_000  # ~2 s for the file: time to kill it half-way
    idle = set(hub._server.open_sockets)  # type: ignore[union-attr]
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, hub.url, str(dest)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: part.exists() and part.stat().st_size >= len(data) // 2, what="the part at 50%")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    kept = part.stat().st_size
    assert len(data) // 2 <= kept < len(data)
    assert json.loads(sidecar_path(dest / "big.bin").read_text())["etag"] == sha(data)

    # The hub's handler of the killed connection may still be writing a chunk into the void:
    # wait until it noticed, so the counters below only see the rerun.
    wait_for(lambda: hub._server.open_sockets <= idle, what="the killed connection to close")  # type: ignore[union-attr]
    hub.throttle = None
    hub.reset_stats()
    rerun = subprocess.run([sys.executable, "-c", KILL_SCRIPT, hub.url, str(dest)],
                           capture_output=True, text=True, timeout=60)
    assert rerun.returncode == 0, rerun.stderr
    assert (dest / "big.bin").read_bytes() == data
    sent = hub.bytes_sent("models/alice/m/big.bin")
    assert sent == len(data) - kept  # exactly the missing bytes
    assert int(rerun.stdout.strip()) == sent
    assert not part.exists()


def test_damaged_part_is_caught_by_sha256_and_fetched_again(hub: DevHub, tmp_path: Path) -> None:
    data = blob(2_000_000, seed=3)
    write_repo(hub.root, "models", "alice/m", {"big.bin": data})
    dest = tmp_path / "d"
    make_part(dest, "big.bin", data, 1_000_000, etag=sha(data), sha256=sha(data), flip_at=500_000)
    notes: list[str] = []
    summary = download_repos([repo_of("alice/m", dest)], endpoint=hub.url, settings=FAST,
                             on_progress=lambda p: notes.extend(p.notes))
    assert (dest / "big.bin").read_bytes() == data
    assert summary.restarted == ("alice/m/big.bin",)
    assert any("sha256 mismatch" in n for n in notes), notes
    # the missing half, then the whole file once more
    assert hub.bytes_sent("models/alice/m/big.bin") == len(data) - 1_000_000 + len(data)


def test_file_changed_on_the_hub_between_runs_restarts_cleanly(hub: DevHub, tmp_path: Path) -> None:
    old, new = blob(2_000_000, seed=4), blob(2_200_000, seed=5)
    folder = write_repo(hub.root, "models", "alice/m", {"big.bin": old})
    dest = tmp_path / "d"
    hub.drop_after = 700_000
    with pytest.raises(DownloadError, match="giving up"):
        download_repos([repo_of("alice/m", dest)], endpoint=hub.url,
                       settings=TransferSettings(max_failures=0, backoff_base=0.01))
    assert part_path(dest / "big.bin").stat().st_size == 700_000

    hub.drop_after = None
    write_file(folder, "big.bin", new)
    hub.reset_stats()
    notes: list[str] = []
    summary = download_repos([repo_of("alice/m", dest)], endpoint=hub.url, settings=FAST,
                             on_progress=lambda p: notes.extend(p.notes))
    assert (dest / "big.bin").read_bytes() == new
    assert summary.restarted == ("alice/m/big.bin",)
    assert any("changed on the Hub" in n for n in notes)
    assert hub.bytes_sent("models/alice/m/big.bin") == len(new)
    assert read_manifest(dest).complete["big.bin"].sha256 == sha(new)  # type: ignore[union-attr]


def test_if_range_makes_a_changed_file_come_whole(hub: DevHub, tmp_path: Path) -> None:
    """A sidecar that still names the old etag (change between listing and request): the hub sends 200."""
    old, new = blob(1_500_000, seed=6), blob(1_500_000, seed=7)
    folder = write_repo(hub.root, "models", "alice/m", {"big.bin": new})
    write_file(folder, "big.bin", new)
    dest = tmp_path / "d"
    task = FileTask("alice/m", "model", "big.bin", f"{hub.url}/alice/m/resolve/main/big.bin", len(new),
                    etag=sha(old), sha256=sha(new), dest=dest)
    make_part(dest, "big.bin", old, 600_000, etag=sha(old), sha256=sha(new))
    tracker = ProgressTracker(None)
    tracker.add(task.key, task.repo_id, task.path, task.size)
    result = FileFetcher(task, token=None, settings=FAST, tracker=tracker, cancel=threading.Event()).run()
    assert (dest / "big.bin").read_bytes() == new
    assert result.restarted and result.transferred == len(new)


def test_server_without_range_support_restarts_from_zero_and_says_so(hub: DevHub, tmp_path: Path) -> None:
    data = blob(2_000_000, seed=8)
    write_repo(hub.root, "models", "alice/m", {"big.bin": data})
    dest = tmp_path / "d"
    make_part(dest, "big.bin", data, 900_000, etag=sha(data), sha256=sha(data))
    hub.range_support = False
    notes: list[str] = []
    summary = download_repos([repo_of("alice/m", dest)], endpoint=hub.url, settings=FAST,
                             on_progress=lambda p: notes.extend(p.notes))
    assert (dest / "big.bin").read_bytes() == data
    assert any("does not resume" in n for n in notes)
    assert summary.bytes_transferred == len(data) and summary.restarted == ("alice/m/big.bin",)


def test_stalled_transfer_is_dropped_and_resumed(hub: DevHub, tmp_path: Path) -> None:
    data = blob(1_500_000, seed=9)
    write_repo(hub.root, "models", "alice/m", {"big.bin": data})
    hub.throttle = 1  # sends one 1 KiB chunk, then nothing for ~17 minutes
    notes: list[str] = []
    result: list[object] = []
    settings = TransferSettings(stall_timeout=0.5, backoff_base=0.01, backoff_cap=0.05, max_failures=50)

    def run() -> None:
        try:
            result.append(download_repos([repo_of("alice/m", tmp_path / "d")], endpoint=hub.url,
                                         settings=settings, on_progress=lambda p: notes.extend(p.notes)))
        except BaseException as exc:  # surfaced by the assertion below
            result.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    wait_for(lambda: any("stalled" in n for n in notes), what="the stall watchdog")
    hub.throttle = None
    worker.join(timeout=30)
    assert result and not isinstance(result[0], BaseException), result
    assert (tmp_path / "d" / "big.bin").read_bytes() == data


# -- redirects and auth -----------------------------------------------------------------------------


class _RedirectingHandler(http.server.BaseHTTPRequestHandler):
    """``/resolve`` on 127.0.0.1 redirects to ``/cdn`` on ``localhost`` (another host, same server)."""

    data = b""
    seen: list[tuple[str, str, bool]] = []

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        host = self.headers.get("Host", "").split(":")[0]
        type(self).seen.append((self.path, host, "Authorization" in self.headers))
        port = self.server.server_address[1]
        if self.path == "/same":
            self.send_response(302)
            self.send_header("Location", "/resolve")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/resolve":
            self.send_response(302)
            self.send_header("Location", f"http://localhost:{port}/cdn")
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self.send_response(200)
            self.send_header("Content-Length", str(len(self.data)))
            self.end_headers()
            self.wfile.write(self.data)


def test_redirect_to_another_host_drops_the_token(tmp_path: Path) -> None:
    data = blob(100_000, seed=10)
    _RedirectingHandler.data, _RedirectingHandler.seen = data, []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RedirectingHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        task = FileTask("alice/m", "model", "f.bin", f"http://127.0.0.1:{port}/same", len(data), etag="e",
                        sha256=sha(data), dest=tmp_path)
        tracker = ProgressTracker(None)
        tracker.add(task.key, task.repo_id, task.path, task.size)
        FileFetcher(task, token=TOKEN, settings=FAST, tracker=tracker, cancel=threading.Event()).run()
    finally:
        server.shutdown()
        server.server_close()
    assert (tmp_path / "f.bin").read_bytes() == data
    # same host (relative redirect): token kept; CDN on another host: token dropped
    assert _RedirectingHandler.seen == [("/same", "127.0.0.1", True), ("/resolve", "127.0.0.1", True),
                                        ("/cdn", "localhost", False)]


def test_gated_repo_without_access_is_a_clear_error(hub: DevHub, tmp_path: Path) -> None:
    write_repo(hub.root, "models", "owner/gated", {"model.bin": blob(10_000)}, gated="manual")
    with pytest.raises(UserError) as caught:
        download_repos([repo_of("owner/gated", tmp_path / "d")], token=TOKEN, endpoint=hub.url, settings=FAST)
    text = str(caught.value)
    assert "gated" in text and f"{hub.url}/owner/gated" in text
    assert TOKEN not in text
    assert not (tmp_path / "d" / "model.bin").exists()


def test_gated_repo_with_accepted_conditions_downloads(hub: DevHub, tmp_path: Path) -> None:
    data = blob(10_000)
    write_repo(hub.root, "models", "owner/gated", {"model.bin": data}, gated="manual", accepted=["alice"])
    download_repos([repo_of("owner/gated", tmp_path / "d")], token=TOKEN, endpoint=hub.url, settings=FAST)
    assert (tmp_path / "d" / "model.bin").read_bytes() == data


# -- disk full ------------------------------------------------------------------------------------


@contextlib.contextmanager
def tiny_tmpfs(where: Path, size: str = "1M") -> Iterator[Path]:
    where.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs here ({mounted.stderr.strip()}); this test needs root")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_full_disk_is_a_clear_error_and_keeps_the_part(hub: DevHub, tmp_path: Path) -> None:
    data = blob(3_000_000, seed=11)
    write_repo(hub.root, "models", "alice/m", {"big.bin": data})
    with tiny_tmpfs(tmp_path / "small") as small:
        dest = small / "dest"
        with pytest.raises(DiskFullError) as caught:
            download_repos([repo_of("alice/m", dest)], endpoint=hub.url, settings=FAST)
        err = caught.value
        kept = part_path(dest / "big.bin").stat().st_size
        assert 0 < kept < len(data)
        text = err.one_line()
        assert str(part_path(dest / "big.bin")) in text and "disk is full" in text and "still needed" in text
        assert err.still_needed == len(data) - kept
        assert "Traceback" not in text and err.__suppress_context__


# -- plan level: the demo recipe ------------------------------------------------------------------


def demo_hub(root: Path, *, accepted: bool = True) -> dict[str, bytes]:
    code = make_tar({"code/train.py": "print('train')\n"}, gzip_compress=True)
    frames = make_tar({f"frame{i}.txt": f"frame {i}\n" for i in range(3)})
    weights = blob(2_000_000, seed=12)
    write_repo(root, "models", "alice/hpcwizard-demo-code", {"code_base.tar.gz": code, "requirements.txt": "pyyaml\n"})
    write_repo(root, "datasets", "alice/hpcwizard-demo-frames", {"frames.tar": frames, "README.md": "x"})
    write_repo(root, "models", "hpcwizard-demo/tiny-base-model", {"config.json": "{}", "model.bin": weights},
               gated="auto", accepted=["alice"] if accepted else [])
    return {"code": code, "frames": frames, "weights": weights}


def demo_plan(tmp_path: Path, **overrides: object):  # type: ignore[no-untyped-def]
    recipe = get_recipe("demo")
    plan = recipe.default_plan(tmp_path / "project", hf_namespace="alice", **overrides)
    return plan, recipe


def test_download_plan_unpacks_records_state_and_verifies_offline(hub: DevHub, tmp_path: Path) -> None:
    content = demo_hub(hub.root)
    plan, recipe = demo_plan(tmp_path, download="login")
    assert plan_download_size(resolve(plan, recipe), TOKEN, hub.url) == (
        sum(len(v) for v in content.values()) + len("pyyaml\n") + 2, 5, sum(len(v) for v in content.values()) + 9)

    summary = download_plan(resolve(plan, recipe), token=TOKEN, endpoint=hub.url, settings=FAST)
    home = plan.project_home
    assert (home / "weights/tiny-base-model/model.bin").read_bytes() == content["weights"]
    assert (home / "demo/code/train.py").read_text() == "print('train')\n"
    assert (plan.data_root / "demo-frames/frame2.txt").read_text() == "frame 2\n"
    assert summary.files_total == 5 and len(summary.unpacked) == 2
    assert plan_download_size(resolve(plan, recipe), TOKEN, hub.url)[:2] == (0, 0)

    downloads = load_state(plan.state_dir).downloads
    assert set(downloads) == {"alice/hpcwizard-demo-code/code_base.tar.gz", "alice/hpcwizard-demo-code/requirements.txt",
                              "alice/hpcwizard-demo-frames/frames.tar", "hpcwizard-demo/tiny-base-model/config.json",
                              "hpcwizard-demo/tiny-base-model/model.bin"}
    assert all(d.complete and d.done == d.size for d in downloads.values())

    # In the setup job of a ``download: login`` plan: no network at all (the hub is gone).
    hub.stop()
    again = download_plan(resolve(plan, recipe), in_job=True)
    assert again.files_skipped == 5 and all(u.skipped for u in again.unpacked)


def test_in_job_with_login_download_and_missing_files_says_what_to_run(hub: DevHub, tmp_path: Path) -> None:
    demo_hub(hub.root)
    plan, recipe = demo_plan(tmp_path, download="login")
    with pytest.raises(UserError, match=r"hpcwizard download PLAN.*login node"):
        download_plan(resolve(plan, recipe), in_job=True)
    download_plan(resolve(plan, recipe), token=TOKEN, endpoint=hub.url, settings=FAST)
    (plan.project_home / "weights/tiny-base-model/model.bin").write_bytes(b"truncated")
    with pytest.raises(UserError, match="tiny-base-model/model.bin"):
        download_plan(resolve(plan, recipe), in_job=True)


def test_state_records_progress_while_downloading(hub: DevHub, tmp_path: Path) -> None:
    content = demo_hub(hub.root)
    plan, recipe = demo_plan(tmp_path)
    hub.throttle = 500_000  # the 2 MB weights take ~4 s; the small files finish first and trigger a record
    errors: list[BaseException] = []

    def run() -> None:
        try:
            download_plan(resolve(plan, recipe), token=TOKEN, endpoint=hub.url, settings=FAST, workers=2)
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=run)
    worker.start()

    def partial_recorded() -> bool:
        if not (plan.state_dir / "state.json").exists():
            return False
        rec = load_state(plan.state_dir).downloads.get("hpcwizard-demo/tiny-base-model/model.bin")
        return rec is not None and not rec.complete and 0 < rec.done < len(content["weights"])

    wait_for(partial_recorded, what="a partial record in state.json")
    hub.throttle = None
    worker.join(timeout=30)
    assert not errors
    assert load_state(plan.state_dir).downloads["hpcwizard-demo/tiny-base-model/model.bin"].complete


def test_partial_counts_as_done_in_plan_download_size(hub: DevHub, tmp_path: Path) -> None:
    content = demo_hub(hub.root)
    plan, recipe = demo_plan(tmp_path)
    dest = plan.project_home / "weights/tiny-base-model"
    weights = content["weights"]
    make_part(dest, "model.bin", weights, 500_000, etag=sha(weights), sha256=sha(weights))
    to_fetch, files, total = plan_download_size(resolve(plan, recipe), TOKEN, hub.url)
    assert files == 5 and to_fetch == total - 500_000


def test_run_download_command_prints_progress_lines_and_a_summary(
    hub: DevHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    demo_hub(hub.root)
    plan, _ = demo_plan(tmp_path)
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text(plan.to_yaml())
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert run_download_command(str(plan_file), in_job=False) == 0
    out = capsys.readouterr().out
    assert "download: 100%" in out  # plain lines: stdout is not a terminal here
    assert "5 files" in out.splitlines()[-1] and "unpacked 2 archive(s)" in out.splitlines()[-1]
    assert TOKEN not in out


def test_gated_error_from_the_command_names_the_page(hub: DevHub, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    demo_hub(hub.root, accepted=False)
    plan, _ = demo_plan(tmp_path)
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text(plan.to_yaml())
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    with pytest.raises(UserError) as caught:
        run_download_command(str(plan_file), in_job=False)
    assert f"{hub.url}/hpcwizard-demo/tiny-base-model" in str(caught.value)


def test_orphaned_hf_incomplete_files_are_removed(hub: DevHub, tmp_path: Path) -> None:
    write_repo(hub.root, "models", "alice/m", {"a.txt": "a"})
    dest = tmp_path / "d"
    cache = dest / ".cache" / "huggingface" / "download"
    cache.mkdir(parents=True)
    old, fresh = cache / "x.abc.incomplete", cache / "y.abc.incomplete"
    old.write_bytes(b"0" * 1000)
    fresh.write_bytes(b"0" * 10)
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    summary = download_repos([repo_of("alice/m", dest)], endpoint=hub.url, settings=FAST)
    assert not old.exists() and fresh.exists()
    assert any("unfinished huggingface_hub downloads" in n for n in summary.notes)


def test_existing_file_without_record_is_adopted_by_hash(hub: DevHub, tmp_path: Path) -> None:
    data = blob(1_200_000, seed=13)
    write_repo(hub.root, "models", "alice/m", {"big.bin": data, "small.txt": "small"})
    dest = tmp_path / "d"
    dest.mkdir()
    (dest / "big.bin").write_bytes(data)
    (dest / "small.txt").write_text("small")
    summary = download_repos([repo_of("alice/m", dest)], endpoint=hub.url, settings=FAST)
    assert hub.bytes_sent() == 0
    assert summary.files_skipped == 2 and summary.files_downloaded == 0
    assert set(read_manifest(dest).complete) == {"big.bin", "small.txt"}  # type: ignore[union-attr]


# -- progress ---------------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_tracker_throttles_callbacks_and_smooths_the_rate() -> None:
    clock = FakeClock()
    calls: list[DownloadProgress] = []
    tracker = ProgressTracker(calls.append, max_rate=10, clock=clock)
    tracker.add("r/a", "r", "a", 10_000_000)
    for _ in range(100):  # 1 s of 10 ms steps, 10 kB each
        clock.now += 0.01
        tracker.received("r/a", 10_000)
        tracker.tick()
    assert 9 <= len(calls) <= 11
    tracker.note("hello")
    tracker.tick()
    assert calls[-1].notes == ("hello",)
    last = tracker.snapshot()
    assert last.rate == pytest.approx(1_000_000, rel=0.05)
    assert last.eta == pytest.approx((10_000_000 - 1_000_000) / last.rate, rel=0.01)


def _progress(done: int, notes: tuple[str, ...] = (), finished: bool = False) -> DownloadProgress:
    files = (FileStatus("r", "big.tar", done, 1000, 100.0, FileState.DOWNLOADING),
             FileStatus("r", "a.txt", 10, 10, 0.0, FileState.DONE))
    return DownloadProgress(files=files, bytes_done=done + 10, bytes_total=1010, files_done=1, files_total=2,
                            rate=100.0, eta=5.0, elapsed=1.0, notes=notes, finished=finished)


def test_terminal_bar_redraws_one_line() -> None:
    out = io.StringIO()
    bar = TerminalProgressBar(out, width=120)
    bar(_progress(100))
    bar(_progress(500, notes=("server does not resume",)))
    bar(_progress(1000, finished=True))
    text = out.getvalue()
    assert text.count("\n") == 2  # the note, and the final newline
    assert "server does not resume\n" in text and "big.tar" in text and "\r[" in text
    assert all(len(line) <= 120 for line in text.replace("\r", "\n").splitlines())


def test_plain_log_prints_every_interval() -> None:
    clock = FakeClock()
    out = io.StringIO()
    log = PlainProgressLog(out, interval=10, clock=clock)
    for step in range(30):
        clock.now += 1
        log(_progress(step * 10))
    log(_progress(1000, finished=True))
    lines = out.getvalue().splitlines()
    assert len(lines) == 4 and all(line.startswith("download: ") for line in lines)
    assert "big.tar" in lines[0] and "ETA" in lines[0]


def test_unwritable_destination_is_a_user_error(hub: DevHub, tmp_path: Path) -> None:
    write_repo(hub.root, "models", "alice/m", {"a.txt": "a"})
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    with pytest.raises(UserError, match="cannot write .*not-a-folder"):
        download_repos([repo_of("alice/m", blocker / "dest")], endpoint=hub.url, settings=FAST)


# -- names from the listing are not trusted ------------------------------------------------------------


def serve_names(hub: DevHub, monkeypatch: pytest.MonkeyPatch, names: dict[str, str]) -> None:
    """Make the hub list a file under another name (``{listed: real}``), as a malicious mirror could:
    the DevHub itself only lists files it has on disk."""
    files, file = hub.store.files, hub.store.file

    def listed(repo_type: str, repo_id: str) -> list:  # type: ignore[type-arg]
        entries = files(repo_type, repo_id)
        by_path = {e.path: e for e in entries}
        return entries + [dataclasses.replace(by_path[real], path=name) for name, real in names.items()]

    def served(repo_type: str, repo_id: str, rel_path: str):  # type: ignore[no-untyped-def]
        return file(repo_type, repo_id, names.get(rel_path, rel_path))

    monkeypatch.setattr(hub.store, "files", listed)
    monkeypatch.setattr(hub.store, "file", served)


@pytest.mark.parametrize("name", ["sub/../../../ESCAPED.txt", "/tmp/ESCAPED.txt", "sub\\..\\..\\..\\ESCAPED.txt",
                                  "sub//ESCAPED.txt", "sub/./ESCAPED.txt"])
def test_a_listed_name_that_could_leave_the_destination_is_refused(hub: DevHub, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    write_repo(hub.root, "models", "evil/m", {"sub/ok.txt": "fine", "payload.txt": "pwned"})
    serve_names(hub, monkeypatch, {name: "payload.txt"})
    dest = tmp_path / "a" / "b" / "dest"
    with pytest.raises(DownloadError) as caught:
        download_repos([repo_of("evil/m", dest, include=("*",))], endpoint=hub.url, settings=FAST)
    assert str(caught.value).startswith(f"evil/m lists a file named {name!r}, which could be written outside")
    assert "\n" not in str(caught.value)
    assert not dest.exists()  # refused before any byte moved
    assert not list(tmp_path.rglob("ESCAPED.txt")) and not Path("/tmp/ESCAPED.txt").exists()


def test_a_symlinked_folder_below_the_destination_is_not_written_through(hub: DevHub, tmp_path: Path) -> None:
    write_repo(hub.root, "models", "alice/m", {"sub/file.txt": "data"})
    dest, elsewhere = tmp_path / "dest", tmp_path / "elsewhere"
    dest.mkdir()
    elsewhere.mkdir()
    (dest / "sub").symlink_to(elsewhere)
    with pytest.raises(DownloadError, match=re.escape(f"alice/m/sub/file.txt would be written to {elsewhere}, outside {dest}")):
        download_repos([repo_of("alice/m", dest)], endpoint=hub.url, settings=FAST)
    assert list(elsewhere.iterdir()) == []


def test_files_download_in_parallel_with_a_bounded_pool(hub: DevHub, tmp_path: Path) -> None:
    files = {f"f{i}.bin": blob(600_000, seed=20 + i) for i in range(4)}
    write_repo(hub.root, "models", "alice/m", files)
    hub.throttle = 2_000_000
    most = 0

    def watch(progress: DownloadProgress) -> None:
        nonlocal most
        most = max(most, sum(1 for f in progress.files if f.state is FileState.DOWNLOADING))

    download_repos([repo_of("alice/m", tmp_path / "d")], endpoint=hub.url, settings=FAST, workers=2,
                   on_progress=watch)
    assert most == 2
    assert all((tmp_path / "d" / name).read_bytes() == data for name, data in files.items())


class _FlakyHandler(http.server.BaseHTTPRequestHandler):
    """Answers 503 to the first two requests, then the file (honouring Range)."""

    data = b""
    calls = 0

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        cls = type(self)
        cls.calls += 1
        if cls.calls <= 2:
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.data)))
        self.end_headers()
        self.wfile.write(self.data)


def test_server_errors_are_retried_with_backoff(tmp_path: Path) -> None:
    data = blob(50_000, seed=30)
    _FlakyHandler.data, _FlakyHandler.calls = data, 0
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FlakyHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        task = FileTask("alice/m", "model", "f.bin", f"http://127.0.0.1:{server.server_address[1]}/f", len(data),
                        etag="e", sha256=sha(data), dest=tmp_path)
        tracker = ProgressTracker(None)
        tracker.add(task.key, task.repo_id, task.path, task.size)
        FileFetcher(task, token=None, settings=FAST, tracker=tracker, cancel=threading.Event()).run()
    finally:
        server.shutdown()
        server.server_close()
    assert (tmp_path / "f.bin").read_bytes() == data and _FlakyHandler.calls == 3


def test_backoff_grows_exponentially_with_jitter() -> None:
    import random

    from hpcwizard.download.transfer import backoff_delay

    settings = TransferSettings(backoff_base=1.0, backoff_cap=30.0)
    rng = random.Random(1)
    for failures, ceiling in ((1, 1), (2, 2), (3, 4), (5, 16), (9, 30)):
        delays = {backoff_delay(failures, settings, rng) for _ in range(20)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays) and len(delays) > 1


def test_stopping_a_stalled_transfer_is_immediate(hub: DevHub, tmp_path: Path) -> None:
    """Ctrl-C or the wizard's stop key while the Hub sends nothing: the blocked
    read is woken at once, not after the 60 s stall timeout; the part stays."""
    data = blob(1_500_000, seed=10)
    write_repo(hub.root, "models", "alice/m", {"big.bin": data})
    hub.throttle = 1  # one 1 KiB chunk, then nothing for minutes
    cancel = threading.Event()
    result: list[object] = []
    settings = TransferSettings(stall_timeout=60.0, backoff_base=0.01, backoff_cap=0.05)

    def run() -> None:
        try:
            result.append(download_repos([repo_of("alice/m", tmp_path / "d")], endpoint=hub.url,
                                         settings=settings, cancel=cancel))
        except BaseException as exc:  # surfaced by the assertions below
            result.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    part = tmp_path / "d" / "big.bin.part"
    wait_for(lambda: part.exists() and part.stat().st_size > 0, what="the first bytes")
    stopped_at = time.monotonic()
    cancel.set()
    worker.join(timeout=30)
    took = time.monotonic() - stopped_at
    hub.throttle = None
    assert not worker.is_alive()
    assert took < 10, f"stopping took {took:.1f} s"  # the stall timeout is 60 s
    assert isinstance(result[0], DownloadError) and "stopped" in str(result[0])
    assert part.stat().st_size > 0  # kept for the rerun

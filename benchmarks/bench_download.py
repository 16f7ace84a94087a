"""Benchmark: hpcwizard's downloader vs huggingface_hub's ``hf_hub_download`` on one DevHub.

Prints figures, asserts nothing (not a test). Both clients fetch the same LFS
file from the same local DevHub in the same run:

1. throughput, best of ``--rounds`` runs each, alternating (target: hpcwizard >= 0.9x hf);
2. an interruption at ~50 %: the downloading process is killed with SIGKILL and a
   new process downloads again; the hub's byte counters say how much was sent twice
   (target: hpcwizard <= 1 % of the file; hf_hub_download >= 1.18 sends ~100 % again).

    .venv/bin/python benchmarks/bench_download.py [--size-mb 200] [--rounds 3]
"""

from __future__ import annotations

import os

os.environ["HF_HUB_DISABLE_XET"] = "1"  # read at import time: plain HTTP like the DevHub serves
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import argparse  # noqa: E402
import hashlib  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from hpcwizard.devhub import DevHub, write_repo  # noqa: E402
from hpcwizard.sizes import human_bytes  # noqa: E402

REPO = "bench/big"
FILE = "data.tar"
KEY = f"models/{REPO}/{FILE}"

HW_SCRIPT = """
import sys
from pathlib import Path
from hpcwizard.download import download_repos
from hpcwizard.project.recipe import ResolvedRepo
repo = ResolvedRepo(repo_id=sys.argv[2], repo_type="model", purpose="", dest=Path(sys.argv[3]), include=("*",),
                    size_bytes=0, gated=False, archives=())
download_repos([repo], endpoint=sys.argv[1])
"""

HF_SCRIPT = """
import os, sys
os.environ["HF_HUB_DISABLE_XET"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
from huggingface_hub import hf_hub_download
hf_hub_download(sys.argv[2], sys.argv[4], local_dir=sys.argv[3], endpoint=sys.argv[1])
"""


def make_file(path: Path, size: int) -> None:
    """Incompressible-looking content, written in blocks (no 200 MB in memory twice)."""
    block = hashlib.sha256(b"bench").digest() * 32768  # 1 MiB
    with open(path, "wb") as handle:
        left = size
        counter = 0
        while left > 0:
            counter += 1
            chunk = hashlib.sha256(counter.to_bytes(8, "little")).digest() + block[32:]
            handle.write(chunk[:left])
            left -= len(chunk[:left])


def run_hw(url: str, dest: Path) -> float:
    from hpcwizard.download import download_repos
    from hpcwizard.project.recipe import ResolvedRepo

    repo = ResolvedRepo(repo_id=REPO, repo_type="model", purpose="", dest=dest, include=("*",), size_bytes=0,
                        gated=False, archives=())
    began = time.perf_counter()
    download_repos([repo], endpoint=url)
    return time.perf_counter() - began


def run_hf(url: str, dest: Path) -> float:
    from huggingface_hub import hf_hub_download

    began = time.perf_counter()
    hf_hub_download(REPO, FILE, local_dir=str(dest), endpoint=url)
    return time.perf_counter() - began


def wait_for(condition, timeout: float = 120.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.01)
    raise SystemExit("benchmark: timed out waiting for the download to reach 50 %")


def biggest(paths: list[Path]) -> int:
    return max((p.stat().st_size for p in paths if p.exists()), default=0)


def interrupted(hub: DevHub, size: int, work: Path, which: str) -> tuple[int, int, int]:
    """Kill the client at ~50 %, rerun it in a new process: (sent before the kill, sent after, kept on disk)."""
    dest = work / f"interrupt-{which}"
    shutil.rmtree(dest, ignore_errors=True)
    script = HW_SCRIPT if which == "hpcwizard" else HF_SCRIPT
    argv = [sys.executable, "-c", script, hub.url, REPO, str(dest), FILE]

    def partial_size() -> int:
        if which == "hpcwizard":
            return biggest([dest / f"{FILE}.part"])
        return biggest(list((dest / ".cache").rglob("*.incomplete")) if (dest / ".cache").exists() else [])

    hub.reset_stats()
    hub.throttle = max(size // 4, 1 << 20)  # ~2 s to reach 50 %
    idle = set(hub._server.open_sockets)  # keep-alive connections of this process, not the client's
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: partial_size() >= size // 2)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    kept = partial_size()
    wait_for(lambda: hub._server.open_sockets <= idle)  # the hub noticed the dead client's connection
    first = hub.bytes_sent(KEY)
    hub.throttle = None
    hub.reset_stats()
    rerun = subprocess.run(argv, capture_output=True, text=True)
    if rerun.returncode != 0:
        raise SystemExit(f"benchmark: the {which} rerun failed:\n{rerun.stderr}")
    second = hub.bytes_sent(KEY)
    if (dest / FILE).stat().st_size != size:
        raise SystemExit(f"benchmark: {which} produced a file of the wrong size")
    return first, second, kept


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=200, help="size of the test file in MiB (default 200)")
    parser.add_argument("--rounds", type=int, default=3, help="throughput runs per client (best is kept)")
    parser.add_argument("--workdir", type=Path, default=None, help="scratch folder (default: a temp dir)")
    args = parser.parse_args()
    size = args.size_mb << 20

    work = Path(tempfile.mkdtemp(prefix="bench-download-", dir=args.workdir))
    try:
        root = work / "hub"
        folder = write_repo(root, "models", REPO, {})
        make_file(folder / FILE, size)
        with DevHub(root) as hub:
            hub.bytes_sent()  # warm the hub's sha256 cache (a HEAD/listing hashes the file once)
            from huggingface_hub import HfApi

            HfApi(endpoint=hub.url).model_info(REPO, files_metadata=True)

            times: dict[str, list[float]] = {"hpcwizard": [], "hf_hub_download": []}
            for _ in range(args.rounds):
                for name, run in (("hpcwizard", run_hw), ("hf_hub_download", run_hf)):
                    dest = work / f"dest-{name}"
                    shutil.rmtree(dest, ignore_errors=True)
                    times[name].append(run(hub.url, dest))
                    shutil.rmtree(dest, ignore_errors=True)
            rate = {name: size / min(t) for name, t in times.items()}
            median = {name: size / statistics.median(t) for name, t in times.items()}

            print(f"file: {human_bytes(size)} LFS file on a local DevHub ({hub.url}), {args.rounds} rounds each")
            print("\nthroughput:")
            for name in times:
                rounds = ", ".join(f"{t:.2f}s" for t in times[name])
                print(f"  {name:16s} best {human_bytes(rate[name])}/s, median {human_bytes(median[name])}/s"
                      f"   (rounds: {rounds})")
            best = rate["hpcwizard"] / rate["hf_hub_download"]
            mid = median["hpcwizard"] / median["hf_hub_download"]
            print(f"  ratio hpcwizard / hf_hub_download = {best:.2f}x best, {mid:.2f}x median   (target >= 0.90x)")

            print("\ninterrupted at ~50 % (SIGKILL), then a new process:")
            for name in ("hpcwizard", "hf_hub_download"):
                first, second, kept = interrupted(hub, size, work, name)
                twice = first + second - size
                print(f"  {name:16s} kept on disk {human_bytes(kept)} ({kept / size:.1%}); "
                      f"rerun fetched {human_bytes(second)} ({second / size:.1%} of the file); "
                      f"sent twice in total {human_bytes(max(twice, 0))} ({max(twice, 0) / size:.2%})")
                if name == "hpcwizard":
                    lost = second - (size - kept)
                    print(f"  {'':16s} re-fetched beyond the missing bytes: {lost} B ({lost / size:.2%}; target <= 1 %)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

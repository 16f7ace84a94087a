"""How cheap is opening a huge training log? Prints figures; not a test.

Writes a realistic log of ``--size-mb`` (default 2048) in a temporary
directory (a ~1 MB block of training-log lines repeated, then a unique tail),
then measures getting its last 200 lines three ways:

* ``LogFollower.open_tail`` (backward chunked reads),
* ``tail -n 200`` (coreutils, as a subprocess),
* naive Python ``open(...).readlines()[-200:]``, on a smaller file
  (``--naive-mb``, default 200) because on the full size it would need
  several GB of RAM; its 2 GB figure is extrapolated linearly and labelled so.

Memory: the peak-RSS increase of a fresh process doing only that one thing
(``ru_maxrss`` after minus before, so below the allocator's granularity it
reads 0; ``/usr/bin/time -f %M`` for tail, whose figure is its whole RSS),
and for the Python readers the tracemalloc peak of a second, traced run. Also: bytes read by the follower, one capped
poll after a 256 MB append, and a whole-file search for an absent string;
then a log of ``--size-mb`` that is all nested tqdm redraws (a validation bar
under the training bar: newline, bar, cursor up, for every update), opened
the same way, with how many of its raw lines the 200 shown lines stand for.
All figures come from the same run; the page cache is warm (the file was just
written), which favours the readers that read everything.

    .venv/bin/python benchmarks/bench_logtail.py [--size-mb 2048] [--naive-mb 200]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MB = 1024 * 1024


def realistic_block(target: int = MB) -> bytes:
    """About ``target`` bytes of what a diffusers/accelerate job prints."""
    lines: list[str] = []
    size = 0
    i = 0
    while size < target:
        step = i * 7 % 10000
        choice = i % 10
        if choice < 5:
            line = (
                f"\x1b[32m2024-05-01 10:{i % 60:02d}:{i * 7 % 60:02d}\x1b[0m | INFO | train.py:{200 + i % 50} - "
                f"step {step} step_loss={0.05 + (i % 97) / 1000:.4f} lr=1.0e-05 grad_norm={1 + i % 13 / 10:.2f}\n"
            )
        elif choice < 8:
            line = (
                f"Steps:  {step // 100:2d}%|{'█' * (step // 1000)}{' ' * (10 - step // 1000)}| {step}/10000 "
                f"[10:00<1:13:20,  2.00it/s, lr=1e-05, step_loss={0.1 + (i % 89) / 1000:.3f}]\r"
                f"Steps:  {step // 100:2d}%|{'█' * (step // 1000)}{' ' * (10 - step // 1000)}| {step + 1}/10000 "
                f"[10:01<1:13:19,  2.00it/s, lr=1e-05, step_loss={0.1 + (i % 83) / 1000:.3f}]\n"
            )
        elif choice < 9:
            line = f"{{'loss': {0.1 + (i % 71) / 1000:.4f}, 'grad_norm': 1.25, 'learning_rate': 1e-05, 'epoch': {i / 1e4:.2f}}}\n"
        else:
            line = f"[rank{i % 8}]: /opt/venv/lib/python3.11/site-packages/torch/utils/checkpoint.py:{i % 90}: UserWarning: None of the inputs have requires_grad=True. Gradients will be None\n"
        lines.append(line)
        size += len(line.encode())
        i += 1
    return "".join(lines).encode()


def write_log(path: Path, size: int, block: bytes) -> None:
    tail = "".join(f"FINAL step {n} loss 0.{n:04d}\n" for n in range(300)).encode()
    with open(path, "wb") as fh:
        written = 0
        body = size - len(tail)
        while written + len(block) <= body:
            fh.write(block)
            written += len(block)
        fh.write(block[: body - written])
        fh.write(b"\n" + tail[1:])  # ends the cut block line, keeps the size exact


# Each measurement runs in a fresh interpreter so its peak RSS is its own.
FOLLOWER_CODE = """
import json, resource, sys, time
sys.path.insert(0, {repo!r})
from hpcwizard.jobs.logtail import LocalFileSource, LogFollower
class Counting(LocalFileSource):
    bytes_read = 0
    def read_at(self, offset, length):
        data = super().read_at(offset, length)
        Counting.bytes_read += len(data)
        return data
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
f = LogFollower(Counting({path!r}))
lines = f.open_tail(200)
elapsed = time.perf_counter() - t0
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
bytes_read = Counting.bytes_read
import tracemalloc  # a second, traced open: Python allocations at their peak
tracemalloc.start()
LogFollower(Counting({path!r})).open_tail(200)
peak = tracemalloc.get_traced_memory()[1]
print(json.dumps({{"seconds": elapsed, "rss_kb": after - before, "lines": len(lines),
                  "last": lines[-1], "bytes_read": bytes_read, "py_peak": peak}}))
"""

NAIVE_CODE = """
import json, resource, time
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
with open({path!r}, encoding="utf-8", errors="replace") as fh:
    lines = fh.readlines()[-200:]
elapsed = time.perf_counter() - t0
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
peak = None
if {traced}:
    del lines
    import tracemalloc
    tracemalloc.start()
    with open({path!r}, encoding="utf-8", errors="replace") as fh:
        lines = fh.readlines()[-200:]
    peak = tracemalloc.get_traced_memory()[1]
print(json.dumps({{"seconds": elapsed, "rss_kb": after - before, "lines": len(lines),
                  "last": lines[-1].rstrip(), "py_peak": peak}}))
"""


def run_python(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def measure_follower(path: Path, repeat: int) -> dict:
    runs = [run_python(FOLLOWER_CODE.format(repo=str(REPO), path=str(path))) for _ in range(repeat)]
    return {
        "seconds": statistics.median(r["seconds"] for r in runs),
        "rss_kb": max(r["rss_kb"] for r in runs),
        "py_peak": max(r["py_peak"] for r in runs),
        "bytes_read": runs[0]["bytes_read"],
        "last": runs[0]["last"],
    }


def measure_naive(path: Path, repeat: int) -> dict:
    runs = [run_python(NAIVE_CODE.format(path=str(path), traced=i == 0)) for i in range(repeat)]
    return {
        "seconds": statistics.median(r["seconds"] for r in runs),
        "rss_kb": max(r["rss_kb"] for r in runs),
        "py_peak": runs[0]["py_peak"],
        "last": runs[0]["last"],
    }


def measure_tail(path: Path, repeat: int) -> dict:
    timer = shutil.which("time") or ("/usr/bin/time" if os.path.exists("/usr/bin/time") else None)
    seconds, rss = [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = subprocess.run(["tail", "-n", "200", str(path)], capture_output=True, check=True)
        seconds.append(time.perf_counter() - t0)
        if timer:
            timed = subprocess.run(
                [timer, "-f", "%M", "tail", "-n", "200", str(path)], capture_output=True, text=True, check=True
            )
            rss.append(int(timed.stderr.strip().splitlines()[-1]))
    return {
        "seconds": statistics.median(seconds),
        "rss_kb": max(rss) if rss else None,
        "last": out.stdout.decode().splitlines()[-1],
    }


def measure_poll_and_search(path: Path, append_mb: int) -> dict:
    sys.path.insert(0, str(REPO))
    from hpcwizard.jobs.logtail import LocalFileSource, LogFollower

    f = LogFollower(LocalFileSource(path))
    f.open_tail(200)
    block = realistic_block()
    with open(path, "ab") as fh:
        for _ in range(append_mb):
            fh.write(block)
    t0 = time.perf_counter()
    update = f.poll()
    poll_seconds = time.perf_counter() - t0
    size = path.stat().st_size
    t0 = time.perf_counter()
    hit = f.search("no such text anywhere")
    search_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    hit_ci = f.search("no such text anywhere", ignore_case=True)
    search_ci_seconds = time.perf_counter() - t0
    f.close()
    assert hit is None and hit_ci is None
    return {
        "poll_seconds": poll_seconds,
        "poll_lines": len(update.lines),
        "poll_skipped_mb": update.skipped_bytes / MB,
        "search_seconds": search_seconds,
        "search_ci_seconds": search_ci_seconds,
        "searched_mb": size / MB,
    }


def nested_bars_block(target: int = MB) -> bytes:
    """About ``target`` bytes of what tqdm writes to a file for a validation
    bar nested under the training bar: each update is a line of its own."""
    parts: list[str] = []
    size = 0
    step = 0
    while size < target:
        for i in range(25):
            part = f"\n\rvalidation: {4 * i:3d}%|{'#' * (i // 3):<9}| {i}/25 [00:01<00:02, 9.50it/s]\x1b[A"
            parts.append(part)
            size += len(part)
        part = (f"\n\r{' ' * 70}\x1b[A\r{' ' * 70}\rstep {step} loss=0.{step % 1000:03d}\n"
                f"\rSteps: {step % 100:3d}%|{'#' * (step % 10):<10}| {step}/100000 [10:00<20:00, 2.00it/s]")
        parts.append(part)
        size += len(part)
        step += 1
    return "".join(parts).encode()


def measure_nested(path: Path, repeat: int) -> dict:
    sys.path.insert(0, str(REPO))
    from hpcwizard.jobs.logtail import LocalFileSource, LogFollower

    times = []
    for _ in range(repeat):
        follower = LogFollower(LocalFileSource(path))
        t0 = time.perf_counter()
        update = follower.open_tail_update(200)
        times.append(time.perf_counter() - t0)
        follower.close()
    with open(path, "rb") as fh:
        fh.seek(max(0, path.stat().st_size - 4 * MB))
        tail = fh.read()
    return {"seconds": statistics.median(times), "lines": update.lines, "partial": update.partial,
            "raw_lines_in_4mb_tail": tail.count(b"\n")}


def fmt_kb(kb: float | None) -> str:
    return "n/a" if kb is None else f"{kb / 1024:8.1f} MB"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mb", type=int, default=2048, help="size of the big log (default 2048)")
    parser.add_argument("--naive-mb", type=int, default=200, help="size for the naive readlines (default 200)")
    parser.add_argument("--repeat", type=int, default=5, help="runs per fast measurement (median)")
    parser.add_argument("--append-mb", type=int, default=256, help="appended before the capped poll")
    parser.add_argument("--dir", default=None, help="where to write the temporary logs")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bench-logtail-", dir=args.dir))
    try:
        block = realistic_block()
        big, small = workdir / "big.out", workdir / "small.out"
        t0 = time.perf_counter()
        write_log(big, args.size_mb * MB, block)
        write_log(small, args.naive_mb * MB, block)
        print(f"wrote {args.size_mb} MB + {args.naive_mb} MB logs in {time.perf_counter() - t0:.1f} s ({workdir})")
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, warm page cache\n")

        tail_small = measure_tail(small, args.repeat)
        tail_big = measure_tail(big, args.repeat)
        fol_small = measure_follower(small, args.repeat)
        fol_big = measure_follower(big, args.repeat)
        naive_small = measure_naive(small, 3)
        for result in (tail_small, tail_big, fol_small, fol_big, naive_small):
            assert result["last"] == "FINAL step 299 loss 0.0299", result["last"]

        scale = args.size_mb / args.naive_mb
        naive_big_s = naive_small["seconds"] * scale
        naive_big_kb = naive_small["rss_kb"] * scale
        print(f"follower bytes read: {fol_big['bytes_read']:,} of {args.size_mb * MB:,}\n")
        def row(name: str, mb: int, r: dict, note: str = "", seconds: float | None = None,
                rss: float | None = None, peak: float | None = None) -> None:
            seconds = r["seconds"] if seconds is None else seconds
            rss = r.get("rss_kb") if rss is None else rss
            peak = r.get("py_peak") if peak is None else peak
            peak_text = "n/a" if peak is None else f"{peak / MB:9.3f} MB"
            read = f"{r['bytes_read']:,}" if "bytes_read" in r else ""
            print(f"  {name:12s} {mb:5d} MB {seconds * 1e3:10.2f} ms  {fmt_kb(rss):>11s}  {peak_text:>12s}  {read:>10s} {note}")

        print("last 200 lines          time       peak RSS +   Python peak   bytes read")
        row("LogFollower", args.size_mb, fol_big)
        row("tail -n 200", args.size_mb, tail_big, "(RSS: whole process; time includes exec)")
        row("LogFollower", args.naive_mb, fol_small)
        row("tail -n 200", args.naive_mb, tail_small)
        row("readlines()", args.naive_mb, naive_small)
        row("readlines()", args.size_mb, naive_small, f"(extrapolated x{scale:g} from {args.naive_mb} MB)",
            seconds=naive_big_s, rss=naive_big_kb, peak=naive_small["py_peak"] * scale)
        print()
        print("ratios (same run):")
        print(f"  readlines / LogFollower at {args.naive_mb} MB: time x{naive_small['seconds'] / fol_small['seconds']:,.0f}, "
              f"Python peak memory x{naive_small['py_peak'] / fol_small['py_peak']:,.0f}")
        print(f"  readlines (extrapolated) / LogFollower at {args.size_mb} MB: time x{naive_big_s / fol_big['seconds']:,.0f}, "
              f"Python peak memory x{naive_small['py_peak'] * scale / fol_big['py_peak']:,.0f}")
        print(f"  tail / LogFollower at {args.size_mb} MB: time x{tail_big['seconds'] / fol_big['seconds']:,.1f} "
              "(tail pays a process start; both read only the end)")
        print(f"  LogFollower time {args.size_mb} MB / {args.naive_mb} MB: x{fol_big['seconds'] / fol_small['seconds']:.2f} "
              "(independent of file size)")
        print()
        extra = measure_poll_and_search(big, args.append_mb)
        print(f"poll after a {args.append_mb} MB append: {extra['poll_seconds'] * 1e3:.1f} ms, "
              f"{extra['poll_lines']:,} lines returned, {extra['poll_skipped_mb']:.1f} MB skipped")
        print(f"search for an absent string over {extra['searched_mb']:.0f} MB: {extra['search_seconds']:.2f} s "
              f"({extra['searched_mb'] / extra['search_seconds']:.0f} MB/s); "
              f"ignore-case: {extra['search_ci_seconds']:.2f} s")
        big.unlink()
        small.unlink()
        nested = workdir / "nested.out"
        nested_block = nested_bars_block()
        with open(nested, "wb") as fh:  # redraws to the very end, as a training still running
            for _ in range(args.size_mb * MB // len(nested_block)):
                fh.write(nested_block)
        result = measure_nested(nested, args.repeat)
        shown = result["lines"]
        updates = [line for line in shown if "validation" in line]
        assert shown and shown[-1].startswith("step ") and "Steps:" in (result["partial"] or ""), shown[-3:]
        print(f"\nnested tqdm bars, {args.size_mb} MB: last 200 lines in {result['seconds'] * 1e3:.2f} ms (median of "
              f"{args.repeat}); {len(shown)} lines shown, {len(updates)} of them validation updates (a terminal "
              f"shows none); the 4 MB tail holds {result['raw_lines_in_4mb_tail']:,} raw lines; "
              f"ratio to the plain {args.size_mb} MB log's open: x{result['seconds'] / fol_big['seconds']:.1f}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

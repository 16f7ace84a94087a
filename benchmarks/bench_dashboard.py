"""What does the live dashboard cost? Prints figures; not a test.

1. Slurm calls per minute while idle, with 1 job and with 200 jobs: a
   counting Runner wraps LocalRunner, the real dashboard runs headless against
   the local cluster (``scripts/local-slurm``) for ``--seconds`` (default 90)
   with its real adaptive poller. The jobs are submitted held (they never
   change, which is what "idle" means) and cancelled afterwards.
2. squeue parse + table update for ``--jobs`` (default 10,000) jobs:
   synthetic squeue output in :data:`hpcwizard.slurm.parse.SQUEUE_FORMAT`,
   parsed, turned into rows, shown in a headless app's JobTable (first fill),
   then a refresh where 30 % of the jobs' elapsed time and 1 % of their states
   changed (the key-diff update), each timed until the screen has repainted.

The 2 GB log open has its own benchmark: benchmarks/bench_logtail.py.

    eval "$(scripts/local-slurm env)"
    .venv/bin/python benchmarks/bench_dashboard.py [--seconds 90] [--jobs 10000] [--skip-idle]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import random
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("TEXTUAL_ANIMATIONS", "none")

from textual.app import App

from hpcwizard.jobs.status import JobRow
from hpcwizard.project.plan import job_prefix_for
from hpcwizard.project.state import Submission, SubmittedJob, now_iso, update_state
from hpcwizard.shell import LocalRunner
from hpcwizard.slurm import SlurmClient
from hpcwizard.slurm.parse import FIELD_SEPARATOR, parse_squeue
from hpcwizard.tui.app import make_app
from hpcwizard.tui.widgets.job_table import JobTable


class CountingRunner:
    """LocalRunner that counts (and timestamps) every command it runs."""

    def __init__(self) -> None:
        self.inner = LocalRunner()
        self.calls: list[tuple[float, str]] = []
        self._lock = threading.Lock()

    def run(self, argv, **kwargs):
        with self._lock:
            self.calls.append((time.monotonic(), argv[0]))
        return self.inner.run(argv, **kwargs)

    def which(self, program):
        return self.inner.which(program)


# --------------------------------------------------------------------------
# 1. Idle polling


def make_project(home: Path, count: int) -> list[str]:
    """``count`` held one-liner jobs recorded as one chain-less submission."""
    home.mkdir(parents=True)
    (home / "logs").mkdir()
    script = home / "idle.sbatch"
    name = f"{job_prefix_for(home)}idle"
    script.write_text(
        "#!/bin/bash\n"
        f"#SBATCH --job-name={name}\n#SBATCH --output=logs/%x-%j.out\n"
        "#SBATCH --cpus-per-task=1\n#SBATCH --mem=64M\n#SBATCH --time=1\n"
        "echo never\n"
    )
    slurm = SlurmClient(LocalRunner())
    ids = [slurm.submit(str(script), hold=True, workdir=str(home)) for _ in range(count)]
    jobs = tuple(SubmittedJob("idle", name, job_id, "cpu", str(script)) for job_id in ids)
    update_state(home / "hpcwizard",
                 lambda state: state.submissions.append(Submission("bench", now_iso(), str(home), jobs)))
    return ids


async def run_idle(home: Path, seconds: float) -> dict:
    runner = CountingRunner()
    app = make_app(project_home=home, runner=runner, start_mode="dashboard")
    intervals: list[float] = []
    async with app.run_test(size=(120, 36)):
        screen = app.screen
        start = time.monotonic()
        while time.monotonic() - start < seconds:
            await asyncio.sleep(0.5)
            if not intervals or intervals[-1] != screen.policy.interval:
                intervals.append(screen.policy.interval)
        polls = screen.polls
        rows = len(screen.table.rows_by_id)
    elapsed = time.monotonic() - start
    commands = collections.Counter(name for _, name in runner.calls)
    return {
        "seconds": elapsed,
        "rows": rows,
        "polls": polls,
        "calls": len(runner.calls),
        "per_min": len(runner.calls) / elapsed * 60,
        "commands": dict(commands),
        "intervals": intervals,
    }


def bench_idle(seconds: float) -> None:
    print(f"== Slurm calls while idle ({seconds:g} s of the real poller, headless) ==")
    for count in (1, 200):
        with tempfile.TemporaryDirectory(prefix="bench-dash-") as tmp:
            home = Path(tmp) / f"proj{count}"
            t0 = time.monotonic()
            ids = make_project(home, count)
            submit_time = time.monotonic() - t0
            try:
                result = asyncio.run(run_idle(home, seconds))
            finally:
                SlurmClient(LocalRunner()).cancel(ids)
            print(f"{count:>4} job(s): {result['calls']} Slurm calls in {result['seconds']:.0f} s = "
                  f"{result['per_min']:.1f}/min overall (start-up included), steady state "
                  f"{60 / result['intervals'][-1]:.1f}/min (one every {result['intervals'][-1]:g} s); "
                  f"{result['polls']} refreshes; commands {result['commands']}; rows shown {result['rows']}; "
                  f"interval went {' -> '.join(f'{i:g}' for i in result['intervals'])} s "
                  f"(submitting them took {submit_time:.1f} s)")


# --------------------------------------------------------------------------
# 2. Parse + table update for many jobs

STATES = ["RUNNING"] * 3 + ["PENDING"] * 6 + ["COMPLETED"]


def synth_squeue(count: int, *, seed: int, changed_states: float = 0.0, base: dict | None = None) -> tuple[str, dict]:
    """squeue -o SQUEUE_FORMAT text for ``count`` jobs; ``base`` gives the
    previous states so a refresh changes only what it should."""
    rng = random.Random(seed)
    start = datetime(2026, 1, 1, 8, 0, 0)
    lines, states = [], {}
    for i in range(count):
        job_id = str(100000 + i)
        state = base[job_id] if base else STATES[i % len(STATES)]
        if base and rng.random() < changed_states:
            state = "COMPLETED" if state == "RUNNING" else "RUNNING"
        states[job_id] = state
        elapsed = rng.randrange(0, 86400) if state == "RUNNING" else 0
        reason = "None" if state == "RUNNING" else ("Dependency" if i % 2 else "Priority")
        dep = f"afterok:{100000 + i - 1}(unfulfilled)" if reason == "Dependency" else "(null)"
        est = (start + timedelta(minutes=i)).isoformat()
        fields = [job_id, state, reason, dep, "gpu", f"{elapsed // 3600}:{elapsed % 3600 // 60:02d}:{elapsed % 60:02d}",
                  "3-00:00:00", "1", "node01" if state == "RUNNING" else "", est, start.isoformat(), "alice",
                  f"hw-proj-abc123-train{i % 7}"]
        lines.append(FIELD_SEPARATOR.join(fields))
    return "\n".join(lines) + "\n", states


def to_rows(entries) -> list[JobRow]:
    return [
        JobRow(job_id=e.job_id, name=e.name, slurm_name=e.name, state=e.state.value, reason=e.reason,
               dependency=e.dependency_raw, partition=e.partition, elapsed=e.elapsed, time_limit=e.time_limit,
               start=e.start_time.isoformat() if e.start_time else None, exit_code=None, source="squeue",
               log_out="", log_err="")
        for e in entries
    ]


class TableApp(App):
    def compose(self):
        yield JobTable()


async def run_table(count: int) -> None:
    first_text, states = synth_squeue(count, seed=1)
    second_text, _ = synth_squeue(count, seed=2, changed_states=0.01, base=states)
    t0 = time.perf_counter()
    first_entries = parse_squeue(first_text)
    parse_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    first_rows = to_rows(first_entries)
    rows_s = time.perf_counter() - t0
    second_rows = to_rows(parse_squeue(second_text))

    app = TableApp()
    async with app.run_test(size=(120, 36)) as pilot:
        table = app.query_one(JobTable)
        await pilot.pause()
        t0 = time.perf_counter()
        table.apply(first_rows)
        apply1 = time.perf_counter() - t0
        await pilot.pause()
        fill_s = time.perf_counter() - t0
        cells1 = table.cell_updates
        t0 = time.perf_counter()
        changed = table.apply(second_rows)
        apply2 = time.perf_counter() - t0
        await pilot.pause()
        diff_s = time.perf_counter() - t0
        cells2 = table.cell_updates - cells1
        t0 = time.perf_counter()
        table.apply(second_rows)
        apply3 = time.perf_counter() - t0
    print(f"== squeue parse + table update, {count} jobs ({len(first_text) / 1e6:.1f} MB of squeue output) ==")
    print(f"parse_squeue: {parse_s * 1000:.0f} ms; to rows: {rows_s * 1000:.0f} ms")
    print(f"first fill: apply {apply1 * 1000:.0f} ms, until repainted {fill_s * 1000:.0f} ms ({cells1} cells)")
    print(f"refresh (30% elapsed + 1% states changed): apply {apply2 * 1000:.0f} ms, until repainted "
          f"{diff_s * 1000:.0f} ms, {cells2} cells rewritten, state change seen: {changed}")
    print(f"refresh with nothing changed: apply {apply3 * 1000:.0f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=90.0)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--skip-idle", action="store_true", help="only the parse/table benchmark (no cluster)")
    args = parser.parse_args()
    asyncio.run(run_table(args.jobs))
    if not args.skip_idle:
        bench_idle(args.seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

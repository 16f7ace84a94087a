"""How soon does the dashboard show a job's end, and what does it cost? Prints figures; not a test.

Submits the demo recipe's real chain (setup, then a two-stage training of
``--steps`` steps of ``--seconds-per-step`` each: ~90 s by default) to the
local cluster (``scripts/local-slurm``) through the CLI, with the local
Hub-protocol server, and watches it with two headless dashboards at once:

* ``watch``: the dashboard as shipped: end markers in the logs, time limits,
  Elapsed ticking;
* ``baseline`` (a second process): the same dashboard with the log watch and
  the time-limit trigger switched off: only the adaptive poller (2 s after a
  change, doubling to 32 s while nothing changes), what it did before.

For each job: Slurm's EndTime (``scontrol show job``, whole seconds), the wall
time each dashboard first showed a finished state, and the difference. For
each dashboard: squeue calls per minute over the chain's life (from the
dashboard's start to the last end), and its other Slurm commands.

    eval "$(scripts/local-slurm env)"
    .venv/bin/python benchmarks/bench_dashboard_ends.py [--steps 45] [--seconds-per-step 1.0]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("TEXTUAL_ANIMATIONS", "none")

from hpcwizard.shell import LocalRunner  # noqa: E402
from hpcwizard.slurm import JobState, SlurmClient  # noqa: E402
from hpcwizard.slurm.parse import parse_key_values, parse_slurm_datetime  # noqa: E402


class CountingRunner:
    """LocalRunner that counts every command it runs (by its first words)."""

    def __init__(self) -> None:
        self.inner = LocalRunner()
        self.calls: list[tuple[float, str]] = []
        self._lock = threading.Lock()

    def run(self, argv, **kwargs):
        with self._lock:
            self.calls.append((time.monotonic(), " ".join(argv[:2]) if argv[0] == "scontrol" else argv[0]))
        return self.inner.run(argv, **kwargs)

    def which(self, program):
        return self.inner.which(program)


def switch_off_end_watch() -> None:
    """The baseline: no log watch, no time-limit trigger; the poller alone."""
    from hpcwizard.jobs.poll import EndingJobs
    from hpcwizard.tui.screens import dashboard

    dashboard.logs_to_watch = lambda jobs: {}
    EndingJobs.past_its_limit = lambda self, job_id: False


async def observe(home: Path, ids: list[str], deadline: float) -> dict:
    """Run a headless dashboard until every job shows finished; when each did."""
    from hpcwizard.tui.app import make_app

    runner = CountingRunner()
    app = make_app(project_home=home, runner=runner, start_mode="dashboard")
    shown: dict[str, float] = {}
    async with app.run_test(size=(100, 30)) as pilot:
        started = time.monotonic()
        screen = app.screen
        while len(shown) < len(ids) and time.time() < deadline:
            rows = getattr(screen, "table", None)
            for job_id in ids:
                row = rows.rows_by_id.get(job_id) if rows is not None else None
                if job_id not in shown and row is not None and row.state.is_finished:
                    shown[job_id] = time.time()
            await pilot.pause(0.05)
        watched = time.monotonic() - started
        polls = screen.polls
        states = {job_id: str(row.state) for job_id, row in screen.table.rows_by_id.items() if job_id in ids}
    commands = collections.Counter(name for _, name in runner.calls)
    return {"shown": shown, "seconds": watched, "commands": dict(commands), "polls": polls, "states": states}


def slurm_end_times(ids: list[str]) -> dict[str, float]:
    runner = LocalRunner()
    ends = {}
    for job_id in ids:
        out = runner.run(["scontrol", "show", "job", "-o", job_id], timeout=20).stdout
        end = parse_slurm_datetime(parse_key_values(out.strip()).get("EndTime", ""))
        if end is not None:
            ends[job_id] = end.timestamp()  # naive local time, as Slurm prints it
    return ends


def submit_demo(tmp: Path, steps: int, seconds_per_step: float, hub_url: str, hf_home: Path) -> tuple[Path, list]:
    from hpcwizard.project.recipe import get_recipe

    home = tmp / "proj"
    plan = get_recipe("demo").default_plan(home, tmp / "data", hf_namespace="alice", params={
        "max_train_steps": steps, "seconds_per_step": seconds_per_step, "checkpointing_steps": max(1, steps // 3)})
    plan_file = tmp / "plan.yaml"
    plan_file.write_text(plan.to_yaml())
    env = {k: v for k, v in os.environ.items() if k != "HF_TOKEN"}
    env.update(HF_ENDPOINT=hub_url, HF_HOME=str(hf_home))
    done = subprocess.run([sys.executable, "-m", "hpcwizard", "submit", str(plan_file), "--json"],
                          env=env, capture_output=True, text=True, timeout=180)
    if done.returncode != 0:
        sys.exit(f"submit failed: {done.stderr.strip()}")
    return home, json.loads(done.stdout)["jobs"]


def per_minute(result: dict, name: str) -> float:
    return result["commands"].get(name, 0) / result["seconds"] * 60


def report(jobs: list, ends: dict[str, float], results: dict[str, dict]) -> None:
    print(f"{'job':<8} {'name':<6} {'state':<10} " + "  ".join(f"{mode + ' latency':>18}" for mode in results))
    latencies: dict[str, list[float]] = {mode: [] for mode in results}
    for job in jobs:
        job_id = job["id"]
        cells = []
        for mode, result in results.items():
            shown = result["shown"].get(job_id)
            if shown is None or job_id not in ends:
                cells.append(f"{'not seen':>18}")
                continue
            latency = shown - ends[job_id]
            latencies[mode].append(latency)
            cells.append(f"{latency:>16.1f} s")
        state = results["watch"]["states"].get(job_id, "?")
        print(f"{job_id:<8} {job['name']:<6} {state:<10} " + "  ".join(cells))
    print("(Slurm's EndTime has whole seconds: each latency may read up to 1 s long.)")
    for mode, result in results.items():
        worst = max(latencies[mode], default=float("nan"))
        print(f"{mode:>8}: worst end latency {worst:.1f} s; squeue {result['commands'].get('squeue', 0)} calls in "
              f"{result['seconds']:.0f} s = {per_minute(result, 'squeue'):.1f}/min (goal: at most 30/min); "
              f"{result['polls']} refreshes; all commands {result['commands']}")
    watch, base = results["watch"], results["baseline"]
    worst_watch = max(latencies["watch"], default=float("nan"))
    worst_base = max(latencies["baseline"], default=float("nan"))
    print(f"ratio watch/baseline: worst latency {worst_watch / worst_base:.2f}x, "
          f"squeue per minute {per_minute(watch, 'squeue') / max(per_minute(base, 'squeue'), 1e-9):.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=45, help="training steps per stage (two stages)")
    parser.add_argument("--seconds-per-step", type=float, default=1.0)
    parser.add_argument("--observer", choices=("baseline",), help=argparse.SUPPRESS)
    parser.add_argument("--home", help=argparse.SUPPRESS)
    parser.add_argument("--ids", help=argparse.SUPPRESS)
    parser.add_argument("--deadline", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if "SLURM_CONF" not in os.environ:
        sys.exit('no cluster: eval "$(scripts/local-slurm env)" first')

    if args.observer:  # the baseline dashboard, in its own process
        switch_off_end_watch()
        result = asyncio.run(observe(Path(args.home), args.ids.split(","), args.deadline))
        print(json.dumps(result))
        return

    from hpcwizard.demo import build_demo_hub, write_token_file
    from hpcwizard.devhub import DevHub

    with tempfile.TemporaryDirectory(prefix="bench-ends-") as tmp_name:
        tmp = Path(tmp_name)
        token = "hf_bench_ends_token"
        build_demo_hub(tmp / "hub", user="alice", token=token)
        hf_home = tmp / "hf-home"
        write_token_file(hf_home, token)
        with DevHub(tmp / "hub") as hub:
            home, jobs = submit_demo(tmp, args.steps, args.seconds_per_step, hub.url, hf_home)
            ids = [job["id"] for job in jobs]
            chain = ", ".join(f"{job['name']} {job['id']}" for job in jobs)
            print(f"== demo chain {chain}: "
                  f"{args.steps} steps x 2 stages x {args.seconds_per_step:g} s ==", flush=True)
            deadline = time.time() + 900
            baseline = subprocess.Popen(
                [sys.executable, __file__, "--observer", "baseline", "--home", str(home), "--ids", ",".join(ids),
                 "--deadline", str(deadline)], stdout=subprocess.PIPE, text=True)
            try:
                watch = asyncio.run(observe(home, ids, deadline))
                out, _ = baseline.communicate(timeout=max(60.0, deadline - time.time() + 60))
            finally:
                if baseline.poll() is None:
                    baseline.kill()
                SlurmClient(LocalRunner()).cancel(ids)
            ends = slurm_end_times(ids)
            results = {"watch": watch, "baseline": json.loads(out.strip().splitlines()[-1])}
            report(jobs, ends, results)
            unfinished = [i for i in ids if not JobState.from_slurm(results["watch"]["states"].get(i, "")).is_finished]
            if unfinished:
                print(f"jobs not finished within the deadline: {unfinished}")


if __name__ == "__main__":
    main()

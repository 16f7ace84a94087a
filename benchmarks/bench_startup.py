"""How light is the start? Prints figures; not a test.

hpcwizard and a bare Textual app (an App with one Static) are started side by
side, alternately, in the same run with the same venv, each in a real 100x30
tmux pane (a private tmux server), as a user would start them:

* hpcwizard as the README's ``hpcwizard --project-home DIR`` (the console
  script's ``main``), on a fresh empty project home in a temporary folder;
* the bare app, ``App.run()``.

First paint: the moment ``tmux capture-pane`` shows the first screen's text
(the welcome step's introduction; the bare app's Static), polled, timed from
just before ``tmux new-session`` starts the process. Both pay the interpreter
start, the imports and the first frame.

Modules: at that moment the benchmark sends SIGUSR1; a handler the child
installed before anything else writes its ``sys.modules``. On the Lustre or
GPFS filesystems where login-node venvs live, every module is metadata round
trips, so the count is the figure that travels. Goals (issue 16): modules at
most 1.3x, first paint at most 1.5x the bare app's.

Remote mode's start is counted too (modules only): ``hpcwizard --host
127.0.0.1:PORT --project-home DIR`` until its connect screen shows, PORT a
closed one. Its connect worker starts with the screen; an audit hook holds
that worker at ``import paramiko`` until the modules are counted, so the
count is the start's own (paramiko in it would mean the start imported it).

A warm-up run of each comes first (it compiles bytecode into a private cache,
``PYTHONPYCACHEPREFIX``, as pip does at install; and warms the page cache),
then ``--runs`` measured runs of each; the figures are medians.

    .venv/bin/python benchmarks/bench_startup.py [--runs 7] [--list] [--tree DIR]
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

# Installed first thing in the child: on SIGUSR1, write the CPU time it used and
# sys.modules (atomically, the benchmark waits for the file). `signal` is imported by Textual's driver
# anyway and `time` by the interpreter's start, so they add nothing to either count.
DUMP_MODULES = """\
import os, signal, sys, time
_modules_file = sys.argv[1]
def _dump(signum, frame):
    cpu = time.process_time()  # all threads, nanosecond clock (os.times() counts 10 ms ticks)
    with open(_modules_file + ".tmp", "w") as out:
        out.write("\\n".join([f"cpu={cpu}", *sorted(sys.modules)]))
    os.replace(_modules_file + ".tmp", _modules_file)
signal.signal(signal.SIGUSR1, _dump)
"""

BARE_TEXT = "A bare Textual app: one Static."
BARE_APP = DUMP_MODULES + f"""\
from textual.app import App
from textual.widgets import Static
class BareApp(App):
    def compose(self):
        yield Static({BARE_TEXT!r})
BareApp().run()
"""

# What the console script `hpcwizard` runs, with the project home as argument.
HPCWIZARD_TEXT = "hpcwizard prepares and submits a training run"
HPCWIZARD_APP = DUMP_MODULES + """\
sys.argv = ["hpcwizard", "--project-home", sys.argv[2]]
from hpcwizard.cli import main
sys.exit(main())
"""

# `hpcwizard --host 127.0.0.1:PORT --project-home DIR`, PORT closed (the
# connection fails once counted); see the module docstring for the hold.
HOST_TEXT = "127.0.0.1"  # the connect screen names it, connecting or failed
HOST_APP = DUMP_MODULES + """\
import threading
_counted = threading.Event()
def _hold_connecting(event, args):
    # Before the import machinery takes any lock (a meta path finder runs
    # under the global import lock, and would stop the main thread too).
    if event == "import" and args[0] == "paramiko" and threading.current_thread() is not threading.main_thread():
        _counted.wait(30)
sys.addaudithook(_hold_connecting)
def _dump_then_go_on(signum, frame):
    _dump(signum, frame)
    _counted.set()
signal.signal(signal.SIGUSR1, _dump_then_go_on)
sys.argv = ["hpcwizard", "--host", sys.argv[3], "--ssh-config", os.devnull, "--project-home", sys.argv[2]]
from hpcwizard.cli import main
sys.exit(main())
"""


@dataclass(frozen=True)
class Contender:
    name: str
    code: str
    first_screen_text: str
    needs_project_home: bool
    needs_closed_port: bool = False


BARE = Contender("bare Textual app (App + one Static)", BARE_APP, BARE_TEXT, False)
HPCWIZARD = Contender("hpcwizard --project-home DIR (welcome step)", HPCWIZARD_APP, HPCWIZARD_TEXT, True)
HOST = Contender("hpcwizard --host H --project-home DIR (connect)", HOST_APP, HOST_TEXT, True, True)


@dataclass(frozen=True)
class Start:
    first_paint_s: float
    cpu_s: float  # user + system CPU of the process by first paint: what load on the machine hardly changes
    modules: frozenset[str]


class Tmux:
    """A private tmux server (its own socket), so nobody else's sessions are touched."""

    def __init__(self, workdir: Path) -> None:
        self.base = ["tmux", "-S", str(workdir / "tmux.sock"), "-f", "/dev/null"]

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([*self.base, *args], capture_output=True, text=True, check=check)

    def has(self, session: str) -> bool:
        return self("has-session", "-t", session, check=False).returncode == 0

    def kill_server(self) -> None:
        self("kill-server", check=False)


def wait_for(condition, timeout: float, what: str, poll: float = 0.005):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll)
    raise SystemExit(f"bench_startup: timed out after {timeout:g} s waiting for {what}")


def start_once(tmux: Tmux, contender: Contender, run: int, workdir: Path, tree: Path | None) -> Start:
    session = f"run{run}"
    modules_file = workdir / f"{session}.modules"
    argv = [sys.executable, "-c", contender.code, str(modules_file)]
    if contender.needs_project_home:
        home = workdir / f"{session}-home"
        home.mkdir()
        argv.append(str(home))
    if contender.needs_closed_port:
        argv.append(f"127.0.0.1:{closed_port()}")
    env = {
        "HF_HOME": str(workdir / "hf-home"),  # no real token is read or shown
        # Bytecode as an installed package has it (pip compiles at install): the
        # warm-up round writes it to a private cache, the measured rounds read it.
        "PYTHONDONTWRITEBYTECODE": "",
        "PYTHONPYCACHEPREFIX": str(workdir / "pycache"),
    }
    if tree is not None and contender.needs_project_home:
        env["PYTHONPATH"] = str(tree)  # another hpcwizard (a baseline checkout), ahead of the installed one
    env_args = [arg for key, value in env.items() for arg in ("-e", f"{key}={value}")]
    t0 = time.perf_counter()
    pid = int(tmux("new-session", "-d", "-P", "-F", "#{pane_pid}", "-s", session, "-x", "100", "-y", "30",
                   "-c", str(workdir), *env_args, "--", *argv).stdout.strip())

    def painted() -> bool:
        screen = tmux("capture-pane", "-p", "-t", session, check=False)
        if screen.returncode != 0:
            raise SystemExit(f"bench_startup: {contender.name} ended before its first screen")
        return contender.first_screen_text in screen.stdout

    wait_for(painted, 60, f"the first screen of {contender.name}")
    first_paint = time.perf_counter() - t0
    os.kill(pid, signal.SIGUSR1)
    wait_for(modules_file.exists, 10, f"the module list of {contender.name}")
    cpu_line, *modules = modules_file.read_text().split()
    tmux("send-keys", "-t", session, "C-q")  # both apps quit on ctrl+q
    try:
        wait_for(lambda: not tmux.has(session), 10, f"{contender.name} to quit", poll=0.02)
    except SystemExit:
        tmux("kill-session", "-t", session, check=False)
        raise
    return Start(first_paint, float(cpu_line.removeprefix("cpu=")), frozenset(modules))


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # nothing listens there once closed


def top_level_counts(modules: frozenset[str]) -> collections.Counter:
    return collections.Counter(name.split(".")[0] for name in modules)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="measured starts of each app (default 7)")
    parser.add_argument("--list", action="store_true", help="also list every module hpcwizard adds")
    parser.add_argument("--tree", type=Path, help="start the hpcwizard of this source tree (e.g. "
                        "`git archive BASE | tar -x -C DIR`: a before/after comparison) instead of the installed one")
    args = parser.parse_args()
    if shutil.which("tmux") is None:
        print("bench_startup: needs tmux (apt-get install tmux)", file=sys.stderr)
        return 2

    load_before = os.getloadavg()[0]
    workdir = Path(tempfile.mkdtemp(prefix="bench-startup-"))
    tmux = Tmux(workdir)
    results: dict[Contender, list[Start]] = {BARE: [], HPCWIZARD: []}
    try:
        # A session that only keeps the server up, so each start pays a client, not a server.
        tmux("new-session", "-d", "-s", "keep", "-x", "100", "-y", "30", "--", "sleep", "100000")
        run = 0
        for measured in [False] + [True] * args.runs:  # the first round warms bytecode and page cache
            for contender in (BARE, HPCWIZARD):
                run += 1
                start = start_once(tmux, contender, run, workdir, args.tree)
                if measured:
                    results[contender].append(start)
        # Remote mode: its count only, which does not vary (a warm-up, then one).
        host = [start_once(tmux, HOST, run + i, workdir, args.tree) for i in (1, 2)][-1]
    finally:
        tmux.kill_server()
        shutil.rmtree(workdir, ignore_errors=True)

    bare, wizard = results[BARE], results[HPCWIZARD]
    bare_modules = statistics.median(len(s.modules) for s in bare)
    wizard_modules = statistics.median(len(s.modules) for s in wizard)
    print(f"== Modules imported by the time the first screen shows (sys.modules, python "
          f"{sys.version.split()[0]}, same venv; median of {args.runs}) ==")
    print(f"  {BARE.name:<46} {bare_modules:>5.0f}")
    print(f"  {HPCWIZARD.name:<46} {wizard_modules:>5.0f}")
    print(f"  ratio hpcwizard / bare: {wizard_modules / bare_modules:.2f}x (goal <= 1.3x)")
    extra = wizard[-1].modules - bare[-1].modules
    by_package = top_level_counts(extra).most_common()
    print(f"  {len(extra)} modules beyond the bare app's, by top-level package: "
          + ", ".join(f"{name} {count}" for name, count in by_package))
    if args.list:
        for name in sorted(extra):
            print(f"    {name}")
    ssh = sorted(top_level_counts(host.modules).keys() & {"paramiko", "cryptography", "nacl", "bcrypt"})
    print(f"  {HOST.name:<46} {len(host.modules):>5}  ({len(host.modules) / bare_modules:.2f}x; "
          f"SSH libraries by then: {', '.join(ssh) or 'none, they load in the connect worker'})")

    print()
    print(f"== Time to first paint in a real 100x30 tmux pane ({args.runs} runs each, alternating; "
          f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after) ==")
    for contender, starts in ((BARE, bare), (HPCWIZARD, wizard)):
        times = sorted(s.first_paint_s * 1e3 for s in starts)
        print(f"  {contender.name:<46} median {statistics.median(times):6.0f} ms "
              f"(min {times[0]:.0f}, max {times[-1]:.0f}); CPU used by then "
              f"{statistics.median(s.cpu_s for s in starts) * 1e3:.0f} ms")
    wall_ratio = statistics.median(s.first_paint_s for s in wizard) / statistics.median(s.first_paint_s for s in bare)
    cpu_ratio = statistics.median(s.cpu_s for s in wizard) / statistics.median(s.cpu_s for s in bare)
    print(f"  ratio hpcwizard / bare: {wall_ratio:.2f}x (goal <= 1.5x); "
          f"CPU by first paint {cpu_ratio:.2f}x (what a busy machine changes least)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

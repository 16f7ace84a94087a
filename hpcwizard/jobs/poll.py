"""When to ask Slurm again, and what to watch between two asks. No Textual here.

The dashboard stays open for days, so it must cost the controller almost
nothing, yet show a job's end within seconds of Slurm recording it:

* :class:`PollPolicy` says how long to wait before the next squeue: fast
  after a change, doubling while nothing changes, at once (and then every
  second for a little while) when a job is ending; while the controller
  does not answer, no squeue at all, only a cheap ``scontrol ping``;
* :class:`EndWatch` follows the stdout logs of the running jobs once a
  second (a ``stat`` each, and the bytes appended) for the line every job
  script prints last (:data:`END_MARKER`, the templates' exit trap): a job
  that said it ends is worth an immediate squeue;
* :func:`controller_answers` is that ping;
* :class:`FinishedJobsCache` asks accounting about each finished job once.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from hpcwizard.errors import UserError
from hpcwizard.jobs.logtail import FileSource, LogFollower
from hpcwizard.shell import Runner
from hpcwizard.slurm import JobState, SlurmClient
from hpcwizard.slurm.models import FinishedJob

#: The last line of every job script's stdout, printed by its exit trap
#: (``sbatch_templates/_shared/macros.j2``, ``preamble``):
#: ``[2026-01-02 03:04:05] [hpcwizard] job 4711 ends``.
END_MARKER = re.compile(r"\[hpcwizard\] job (\S+) ends\b")
#: Seconds a ``scontrol ping`` may take (it answers in milliseconds either way
#: when the controller's host is reachable).
PING_TIMEOUT = 10.0


@dataclass
class PollPolicy:
    """How long to wait before the next refresh (seconds).

    * ``fast`` after any change (a job appeared, vanished, changed state or
      reason) or a user action, and on recovery from an outage;
    * doubled after each refresh that changed nothing, up to ``idle_max``
      while jobs are active and ``finished_max`` once all are finished;
    * ``soon`` (from the caller: a job said it ends, or ran past its time
      limit) caps the wait, so its end shows within seconds;
    * never less than ``slow_factor`` × the time the last refresh took (up
      to ``slow_max``), so a struggling controller spends at most
      ~1/slow_factor of its time on us;
    * when the controller does not answer: no squeue (one takes ~10 s to
      fail, and would be stale news), a ``scontrol ping`` every ``probe``
      seconds instead, and a refresh as soon as it answers.
    """

    fast: float = 2.0
    idle_max: float = 32.0
    finished_max: float = 120.0
    probe: float = 3.0
    slow_factor: float = 10.0
    slow_max: float = 120.0
    interval: float = 2.0
    down: bool = False

    def next(self, *, changed: bool, error: bool, duration: float = 0.0, all_finished: bool = False,
             soon: float | None = None) -> float:
        if error:
            self.down = True
            self.interval = self.probe
            return self.interval
        if self.down or changed:
            self.down = False
            self.interval = self.fast
        else:
            cap = self.finished_max if all_finished else self.idle_max
            self.interval = min(self.interval * 2, cap)
        floor = self.fast
        if soon is not None:
            self.interval = min(self.interval, soon)
            floor = min(floor, soon)
        slow_floor = min(duration * self.slow_factor, self.slow_max)
        self.interval = max(self.interval, slow_floor, floor)
        return self.interval

    def poke(self) -> float:
        """A user action: things are about to change, look again soon."""
        self.interval = self.fast
        return self.interval


def controller_answers(runner: Runner) -> bool:
    """True when ``scontrol ping`` says a controller is UP: a few
    milliseconds either way, where a squeue takes ~10 s to fail."""
    try:
        result = runner.run(["scontrol", "ping"], timeout=PING_TIMEOUT)
    except (UserError, OSError):  # timed out, the SSH connection is down, no scontrol
        return False
    return " is UP" in result.stdout


class FinishedJobsCache(SlurmClient):
    """A SlurmClient that asks accounting about each finished job once.

    A finished job never changes, yet :func:`~hpcwizard.jobs.status.take_snapshot`
    asks sacct about every job squeue has forgotten on every refresh; over a
    days-long run that is one sacct per refresh for nothing. Jobs whose final
    state is known are answered from memory; only the others reach Slurm.
    """

    def __init__(self, runner: Runner) -> None:
        super().__init__(runner)
        self._final: dict[str, FinishedJob] = {}

    def finished(self, job_ids: Iterable[str | int]) -> list[FinishedJob]:
        ids = [str(job_id) for job_id in job_ids]
        missing = [job_id for job_id in ids if job_id not in self._final]
        fresh: dict[str, FinishedJob] = {}
        if missing:
            for job in super().finished(missing):
                fresh[job.job_id] = job
                if job.state.is_finished and job.state is not JobState.FINISHED_UNKNOWN:
                    self._final[job.job_id] = job
        return [self._final.get(job_id) or fresh[job_id] for job_id in ids if job_id in self._final or job_id in fresh]


@dataclass
class _Watched:
    follower: LogFollower
    opened: bool = False


@dataclass
class EndWatch:
    """Follows the stdout logs of running jobs for :data:`END_MARKER`.

    ``check({job id: log path})`` (once a second, in a worker) returns the
    ids whose log printed the marker since the last check. A log is opened
    at its last lines (a job that ended between two refreshes printed the
    marker already) and then only what is appended is read; logs of jobs no
    longer asked about are closed. Not thread-safe: one worker at a time.
    """

    open_source: Callable[[str], FileSource]
    tail_lines: int = 3
    _logs: dict[str, _Watched] = field(default_factory=dict)
    _said: set[str] = field(default_factory=set)

    def check(self, logs: dict[str, str]) -> list[str]:
        ending: list[str] = []
        for job_id in [j for j in self._logs if j not in logs]:
            self._logs.pop(job_id).follower.close()
        # A job that stopped running (it ended, or was requeued) says it ends anew.
        self._said &= set(logs)
        for job_id, path in logs.items():
            watched = self._logs.get(job_id)
            if watched is None:
                watched = self._logs[job_id] = _Watched(LogFollower(self.open_source(path)))
            try:
                if watched.opened:
                    update = watched.follower.poll()
                else:
                    update = watched.follower.open_tail_update(self.tail_lines)
                    watched.opened = not update.missing
            except (OSError, UserError):
                continue  # unreadable now (a remote hiccup): the next tick tries again
            if job_id not in self._said and any(END_MARKER.search(line) for line in update.lines):
                self._said.add(job_id)
                ending.append(job_id)
        return ending

    def close(self) -> None:
        for watched in self._logs.values():
            watched.follower.close()
        self._logs.clear()


@dataclass
class EndingJobs:
    """The jobs expected to end any moment, and how soon to look again.

    A job whose log printed :data:`END_MARKER` is looked at every
    ``after_marker`` seconds for ``marker_window`` seconds (Slurm records
    the end a moment after the script exits); one that ran past its time
    limit every ``past_limit`` seconds until it ends (Slurm's limit check
    runs every ~30 s), for at most ``limit_window`` seconds.
    """

    after_marker: float = 1.0
    marker_window: float = 15.0
    past_limit: float = 2.0
    limit_window: float = 180.0
    clock: Callable[[], float] = time.monotonic
    _since: dict[str, tuple[float, float, float]] = field(default_factory=dict)  # id -> (since, every, window)

    def marker(self, job_id: str) -> None:
        self._since[job_id] = (self.clock(), self.after_marker, self.marker_window)

    def past_its_limit(self, job_id: str) -> bool:
        """Note a job past its limit; True the first time (worth a refresh now)."""
        if job_id in self._since:
            return False
        self._since[job_id] = (self.clock(), self.past_limit, self.limit_window)
        return True

    def update(self, active_ids: Iterable[str]) -> None:
        """Drop jobs that ended (or vanished) and windows that passed."""
        active = set(active_ids)
        now = self.clock()
        self._since = {job_id: entry for job_id, entry in self._since.items()
                       if job_id in active and now - entry[0] <= entry[2]}

    def soon(self) -> float | None:
        """The wait before the next refresh while jobs are ending, else None."""
        return min((every for _, every, _ in self._since.values()), default=None)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._since

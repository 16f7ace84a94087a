"""Download progress: snapshots for a callback, and two ready-made reporters.

Worker threads only set numbers on a :class:`ProgressTracker`; the thread that
runs the download builds :class:`DownloadProgress` snapshots from them and
calls ``on_progress`` at most ``max_rate`` times a second (notes are delivered
at once). The TUI turns each snapshot into a message; the CLI uses
:class:`TerminalProgressBar` on a terminal and :class:`PlainProgressLog` in a
job log, where a ``\\r`` redraw would leave thousands of lines.
"""

from __future__ import annotations

import enum
import math
import shutil
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from hpcwizard.sizes import human_bytes, human_duration


class FileState(str, enum.Enum):
    QUEUED = "queued"
    CHECKING = "checking"  # hashing a leftover part or an existing file
    DOWNLOADING = "downloading"
    RETRYING = "retrying"  # waiting (backoff) before reconnecting
    VERIFYING = "verifying"
    DONE = "done"  # downloaded and verified in this run
    SKIPPED = "skipped"  # already complete before this run
    FAILED = "failed"

    @property
    def active(self) -> bool:
        return self in (FileState.CHECKING, FileState.DOWNLOADING, FileState.RETRYING, FileState.VERIFYING)

    @property
    def finished(self) -> bool:
        return self in (FileState.DONE, FileState.SKIPPED)


@dataclass(frozen=True)
class FileStatus:
    """One file in a snapshot."""

    repo: str
    path: str
    done: int
    size: int
    rate: float  # bytes/s, smoothed
    state: FileState

    @property
    def fraction(self) -> float:
        return 1.0 if self.size <= 0 else min(self.done / self.size, 1.0)


@dataclass(frozen=True)
class DownloadProgress:
    """Everything a progress display needs, at one moment."""

    files: tuple[FileStatus, ...]
    bytes_done: int  # including bytes complete or partial before this run
    bytes_total: int
    files_done: int
    files_total: int
    rate: float  # bytes/s transferred in this run, smoothed
    eta: float | None  # seconds; None while the rate is unknown
    elapsed: float
    notes: tuple[str, ...] = ()  # things to tell the user, new since the previous snapshot
    finished: bool = False

    @property
    def active(self) -> tuple[FileStatus, ...]:
        return tuple(f for f in self.files if f.state.active)

    @property
    def fraction(self) -> float:
        return 1.0 if self.bytes_total <= 0 else min(self.bytes_done / self.bytes_total, 1.0)


ProgressCallback = Callable[[DownloadProgress], object]  # what it returns is ignored (post_message's bool)


class _Rate:
    """An exponentially smoothed rate; ``tau`` seconds of memory, so one slow second does not swing the ETA."""

    def __init__(self, tau: float = 5.0) -> None:
        self.tau = tau
        self.value = 0.0
        self._last_t: float | None = None
        self._last_n = 0
        self._primed = False

    def sample(self, now: float, total: int) -> float:
        if self._last_t is None:
            self._last_t, self._last_n = now, total
            return self.value
        dt = now - self._last_t
        if dt < 0.25:  # too short to mean anything
            return self.value
        inst = max(total - self._last_n, 0) / dt
        if not self._primed:
            self.value, self._primed = inst, True
        else:
            self.value += (1 - math.exp(-dt / self.tau)) * (inst - self.value)
        self._last_t, self._last_n = now, total
        return self.value


class _Entry:
    __slots__ = ("repo", "path", "size", "done", "state", "transferred", "rate")

    def __init__(self, repo: str, path: str, size: int, done: int, state: FileState) -> None:
        self.repo, self.path, self.size, self.done, self.state = repo, path, size, done, state
        self.transferred = 0  # bytes received in this run (the rate's input)
        self.rate = _Rate()


class ProgressTracker:
    """Shared by the workers (which set numbers) and the driver (which calls back)."""

    def __init__(self, callback: ProgressCallback | None, *, max_rate: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.callback = callback
        self.min_interval = 1.0 / max_rate if max_rate > 0 else 0.0
        self.clock = clock
        self.started = clock()
        self._entries: dict[str, _Entry] = {}
        self._notes: list[str] = []
        self.history: list[str] = []  # every note of the run, for the summary
        self._lock = threading.Lock()
        self._rate = _Rate()
        self._last_call = -math.inf

    # -- workers ---------------------------------------------------------------------------------
    def add(self, key: str, repo: str, path: str, size: int, done: int = 0,
            state: FileState = FileState.QUEUED) -> None:
        with self._lock:
            self._entries[key] = _Entry(repo, path, size, done, state)

    def set(self, key: str, *, done: int | None = None, state: FileState | None = None) -> None:
        entry = self._entries[key]
        if done is not None:
            entry.done = done
        if state is not None:
            entry.state = state

    def received(self, key: str, nbytes: int) -> None:
        """Bytes that came over the network (``done`` may also jump back on a restart)."""
        entry = self._entries[key]
        entry.transferred += nbytes
        entry.done += nbytes

    def note(self, text: str) -> None:
        with self._lock:
            self._notes.append(text)
            self.history.append(text)

    def state_of(self, key: str) -> FileState:
        return self._entries[key].state

    # -- driver ----------------------------------------------------------------------------------
    @property
    def transferred(self) -> int:
        return sum(e.transferred for e in list(self._entries.values()))

    def snapshot(self, *, finished: bool = False, take_notes: bool = True) -> DownloadProgress:
        now = self.clock()
        with self._lock:
            entries = list(self._entries.values())
            notes = tuple(self._notes) if take_notes else ()
            if take_notes:
                self._notes.clear()
        files = tuple(
            FileStatus(e.repo, e.path, min(e.done, e.size) if e.size else e.done, e.size,
                       e.rate.sample(now, e.transferred) if e.state.active else 0.0, e.state)
            for e in entries
        )
        transferred = sum(e.transferred for e in entries)
        rate = self._rate.sample(now, transferred)
        if finished:  # the whole run's average says more than the last few seconds
            rate = transferred / max(now - self.started, 1e-6)
        bytes_total = sum(f.size for f in files)
        bytes_done = sum(f.size if f.state.finished else f.done for f in files)
        remaining = max(bytes_total - bytes_done, 0)
        eta = 0.0 if remaining == 0 else (remaining / rate if rate > 0 else None)
        return DownloadProgress(
            files=files, bytes_done=bytes_done, bytes_total=bytes_total,
            files_done=sum(1 for f in files if f.state.finished), files_total=len(files),
            rate=rate, eta=eta, elapsed=now - self.started, notes=notes, finished=finished,
        )

    def tick(self, *, force: bool = False, finished: bool = False) -> None:
        """Call back if ``max_rate`` allows it, a note is waiting, or ``force``."""
        if self.callback is None:
            with self._lock:
                self._notes.clear()
            return
        now = self.clock()
        if not (force or finished or self._notes or now - self._last_call >= self.min_interval):
            return
        self._last_call = now
        self.callback(self.snapshot(finished=finished))


# -- reporters ---------------------------------------------------------------------------------------


def _bar(fraction: float, width: int) -> str:
    filled = int(round(fraction * width))
    return "#" * filled + "-" * (width - filled)


def _eta(progress: DownloadProgress) -> str:
    if progress.eta is None:
        return "ETA --"
    return f"ETA {human_duration(progress.eta)}"


def summary_line(progress: DownloadProgress) -> str:
    """``42% 5.4 GiB/12.9 GiB, 3/7 files, 85.1 MiB/s, ETA 1m 30s``."""
    return (
        f"{progress.fraction * 100:3.0f}% {human_bytes(progress.bytes_done)}/{human_bytes(progress.bytes_total)}, "
        f"{progress.files_done}/{progress.files_total} files, {human_bytes(progress.rate)}/s, {_eta(progress)}"
    )


class TerminalProgressBar:
    """One line redrawn with ``\\r``: the total bar, then the files in flight."""

    def __init__(self, stream: TextIO | None = None, width: int | None = None) -> None:
        self.stream = stream or sys.stdout
        self.width = width
        self._drawn = 0

    def _columns(self) -> int:
        return self.width or shutil.get_terminal_size((100, 24)).columns

    def _clear(self) -> None:
        if self._drawn:
            self.stream.write("\r" + " " * self._drawn + "\r")
            self._drawn = 0

    def __call__(self, progress: DownloadProgress) -> None:
        for note in progress.notes:
            self._clear()
            self.stream.write(note + "\n")
        columns = max(self._columns() - 1, 20)  # never touch the last column: some terminals wrap there
        line = f"[{_bar(progress.fraction, 20)}] {summary_line(progress)}"
        current = ", ".join(f"{f.path.rsplit('/', 1)[-1]} {f.fraction * 100:.0f}%" for f in progress.active)
        if current:
            line += f" | {current}"
        line = line[:columns]
        self.stream.write("\r" + line + " " * max(self._drawn - len(line), 0))
        self._drawn = len(line)
        if progress.finished:
            self.stream.write("\n")
            self._drawn = 0
        self.stream.flush()


class PlainProgressLog:
    """A line every ``interval`` seconds, for job logs and pipes."""

    def __init__(self, stream: TextIO | None = None, interval: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream or sys.stdout
        self.interval = interval
        self.clock = clock
        self._last = -math.inf

    def __call__(self, progress: DownloadProgress) -> None:
        for note in progress.notes:
            self.stream.write(f"download: {note}\n")
        now = self.clock()
        if progress.finished or now - self._last >= self.interval:
            self._last = now
            current = ", ".join(
                f"{f.path} {human_bytes(f.done)}/{human_bytes(f.size)}" for f in progress.active
            )
            line = f"download: {summary_line(progress)}"
            if current:
                line += f"; in progress: {current}"
            self.stream.write(line + "\n")
        self.stream.flush()

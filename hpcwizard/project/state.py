"""What is done in a project: wizard step, submissions, downloads.

One JSON file, ``<project_home>/hpcwizard/state.json``, written atomically
(temp file, fsync, rename) so a crash or a full disk never leaves half a file.
Read-modify-write goes through :func:`update_state`, which holds a short
``flock`` so the login-node wizard and a setup job recording download progress
never lose each other's updates. A separate long-lived lock
(:class:`ProjectLock`) keeps a second wizard off the same project home.

Every function takes an optional ``files`` (:mod:`hpcwizard.project.files`): this
machine by default, the login node over SSH in remote mode (where the locks
are ``flock``s held on the login node itself, so both sides exclude each other).
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hpcwizard.errors import UserError
from hpcwizard.project.files import LOCAL_FILES, LockBusy, LockHandle, ProjectFiles, holder_note

STATE_FILE = "state.json"
STATE_VERSION = 1


class StateError(UserError):
    """The project state cannot be read, written or locked."""


@dataclass(frozen=True)
class SubmittedJob:
    name: str
    slurm_name: str
    job_id: str
    partition: str
    script: str
    dependency: tuple[str, ...] = ()
    #: Seconds, as submitted (``#SBATCH --time``): accounting does not say a
    #: finished job's limit. None: not recorded (older states), or no limit.
    time_limit: int | None = None


@dataclass(frozen=True)
class Submission:
    """One chain as submitted: which plan, when, and the job ids Slurm gave."""

    plan_fingerprint: str
    submitted_at: str
    scripts_dir: str
    jobs: tuple[SubmittedJob, ...]
    #: The submit's chain id: its jobs carry ``--comment=hpcwizard:<chain>``
    #: (:mod:`hpcwizard.jobs.journal`). Empty in states written before journals.
    chain: str = ""

    @property
    def job_ids(self) -> list[str]:
        return [job.job_id for job in self.jobs]


@dataclass(frozen=True)
class FileProgress:
    """A downloaded file's progress, as the downloader last recorded it."""

    repo: str
    path: str
    size: int
    done: int
    complete: bool
    updated_at: str = ""


@dataclass
class ProjectState:
    wizard_step: str | None = None
    submissions: list[Submission] = field(default_factory=list)
    downloads: dict[str, FileProgress] = field(default_factory=dict)
    version: int = STATE_VERSION

    def submissions_of(self, fingerprint: str) -> list[Submission]:
        return [s for s in self.submissions if s.plan_fingerprint == fingerprint]

    @property
    def latest_submission(self) -> Submission | None:
        return self.submissions[-1] if self.submissions else None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "ProjectState":
        data = json.loads(text)
        return cls(
            wizard_step=data.get("wizard_step"),
            submissions=[
                Submission(
                    plan_fingerprint=s["plan_fingerprint"],
                    submitted_at=s["submitted_at"],
                    scripts_dir=s["scripts_dir"],
                    jobs=tuple(SubmittedJob(**{**j, "dependency": tuple(j.get("dependency", ()))}) for j in s["jobs"]),
                    chain=s.get("chain", ""),
                )
                for s in data.get("submissions", [])
            ],
            downloads={k: FileProgress(**v) for k, v in data.get("downloads", {}).items()},
            version=data.get("version", STATE_VERSION),
        )


def now_iso() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")


def load_state(state_dir: Path, files: ProjectFiles = LOCAL_FILES) -> ProjectState:
    path = Path(state_dir) / STATE_FILE
    try:
        return ProjectState.from_json(files.read_text(path))
    except FileNotFoundError:
        return ProjectState()
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise StateError(f"the project state {path} is damaged ({type(exc).__name__}: {exc})",
                         "move it aside to start over; Slurm jobs are not affected") from None


def update_state(state_dir: Path, change: Callable[[ProjectState], Any],
                 files: ProjectFiles = LOCAL_FILES) -> ProjectState:
    """Apply ``change`` to the saved state under a lock; save and return it."""
    state_dir = Path(state_dir)
    with files.lock(state_dir / ".state.lock"):
        state = load_state(state_dir, files)
        change(state)
        files.write_text_atomic(state_dir / STATE_FILE, state.to_json())
        return state


class ProjectBusy(StateError):
    """Another hpcwizard holds the project; ``holder`` is what its lock file says."""

    def __init__(self, holder: str) -> None:
        super().__init__(f"this project home is already open in hpcwizard ({holder or 'another process'})",
                         "close the other hpcwizard first, or use another --project-home")
        self.holder = holder


class ProjectReadOnly(StateError):
    """This wizard lost its project lock to another hpcwizard: it may not save or submit."""


class ProjectLock:
    """Keeps one interactive hpcwizard per project home.

    An ``flock`` dies with its process, so a crashed wizard never leaves a
    stale lock behind; the pid and host written inside only serve the message.
    In remote mode the ``flock`` is held on the login node for as long as the
    SSH connection lives (see :mod:`hpcwizard.project.files`): when the
    connection comes back after a drop, the lock is taken again at once. If
    another hpcwizard took it meanwhile, this one is read-only from then on
    (:attr:`lost` says why; :meth:`ensure` refuses writes) and the
    ``on_lost`` listeners are told.
    """

    #: How long a retake waits for our own holder on the old connection to
    #: end (the login node notices the dropped channel within moments).
    RETAKE_WAIT = 10.0

    def __init__(self, state_dir: Path, files: ProjectFiles = LOCAL_FILES) -> None:
        self.path = Path(state_dir) / "wizard.lock"
        self.files = files
        self._held: contextlib.ExitStack | None = None
        self._handle: LockHandle | None = None
        self._unhook: Callable[[], None] | None = None
        self._retaking = threading.Lock()
        self.note = holder_note() + (" (over ssh)" if self.files.remote else "")
        #: Why this wizard may no longer write (another one holds the project); None while it may.
        self.lost: str | None = None
        self.on_lost: list[Callable[[str], object]] = []

    def _take(self, *, wait: float = 0.0) -> None:
        stack = contextlib.ExitStack()
        try:
            self._handle = stack.enter_context(
                self.files.lock(self.path, blocking=wait > 0, note=self.note, timeout=wait or 120.0))
        except LockBusy as exc:
            stack.close()
            raise ProjectBusy(exc.holder) from None
        self._held = stack

    def acquire(self) -> None:
        self._take()
        self._unhook = self.files.on_reconnect(self.retake)

    def held(self) -> bool:
        return self._held is not None and self._handle is not None and self._handle.held()

    def retake(self) -> None:
        """After a reconnect: take the lock again if the old connection took
        it away; mark it :attr:`lost` when another hpcwizard holds it now."""
        with self._retaking:
            if self._unhook is None or self.lost is not None or self.held():
                return
            old, self._held, self._handle = self._held, None, None
            if old is not None:
                with contextlib.suppress(Exception):  # its channel died with the connection
                    old.close()
            try:
                try:
                    self._take()
                except ProjectBusy as busy:
                    if busy.holder != self.note:
                        self._lose(busy.holder)
                        return
                    # Our own holder on the dropped connection has not ended yet.
                    self._take(wait=self.RETAKE_WAIT)
            except ProjectBusy as busy:
                self._lose(busy.holder)
            except UserError:
                pass  # the connection went again: the next reconnect (or ensure) tries again

    def _lose(self, holder: str) -> None:
        where = f" to {self.files.where}" if self.files.remote else ""
        self.lost = (f"another hpcwizard ({holder or 'another process'}) opened this project while the "
                     f"connection{where} was down: this wizard is read-only now, nothing more is saved or submitted")
        for listener in list(self.on_lost):
            with contextlib.suppress(Exception):
                listener(self.lost)

    def ensure(self) -> None:
        """Before a write: raise :class:`ProjectReadOnly` when the lock is lost
        (retaking it first if its connection dropped unnoticed)."""
        if self.lost is None and self._unhook is not None and not self.held():
            self.retake()
        if self.lost is not None:
            raise ProjectReadOnly(self.lost, "quit; close the other hpcwizard, then open the project again")
        if self._unhook is not None and not self.held():
            raise ProjectReadOnly(f"this wizard no longer holds the lock of {self.path.parent.parent}"
                                  f"{' on ' + self.files.where if self.files.remote else ''} (the connection dropped)",
                                  "check the connection; the next step tries again")

    def release(self) -> None:
        if self._unhook is not None:
            self._unhook()
            self._unhook = None
        if self._held is not None:
            self._held.close()
            self._held = None
            self._handle = None

    def __enter__(self) -> "ProjectLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

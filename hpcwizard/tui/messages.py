"""Messages that carry worker results back to the UI thread.

Workers never touch widgets; they post one of these and the screen's handler
updates the UI.
"""

from __future__ import annotations

# --------------------------------------------------------------------------
# Dashboard (job table, log panel, actions)
from dataclasses import dataclass as _dataclass  # noqa: E402
from typing import Any as _Any  # noqa: E402

from textual.message import Message  # noqa: E402


class WorkerAnswer(Message):
    """Base of the messages below: what a worker found, for a screen to show.
    A screen may be going away when one arrives (see ``StepScreen._on_message``)."""


_Message = WorkerAnswer


@_dataclass
class SnapshotTaken(_Message):
    """One poll of the job table finished: the snapshot and how long it took."""

    snapshot: _Any  # hpcwizard.jobs.status.StatusSnapshot
    duration: float  # seconds the squeue (+ sacct) took
    diagnoses: list | None = None  # hpcwizard.jobs.resubmit.Diagnosis: chains stuck on a failed parent
    training: dict | None = None  # job id -> hpcwizard.jobs.status.TrainingStatus, for train jobs


@_dataclass
class LogChunk(_Message):
    """What a log poll found for the followed file (lines already triaged).

    ``generation`` tells results of the current file from late results of a
    file the user has since switched away from.
    """

    generation: int
    lines: list  # list[tuple[int, str, str | None]]: offset, text, finding kind
    partial: str | None
    missing: bool
    truncated: bool
    rotated: bool
    skipped_bytes: int
    size: int
    reset: bool  # the view must be cleared first (open, or context jump)
    counts: dict  # finding kind -> count, for the whole followed file
    first_error_offset: int | None
    progress: _Any  # hpcwizard.jobs.triage.TrainingProgress | None
    losses: list  # recent loss values for the sparkline
    note: str | None = None  # e.g. "showing the context of offset 123 (paused)"
    segment: _Any = None  # hpcwizard.jobs.triage.SegmentMark: the log's last separator, if any
    stage: int | None = None  # the stage the log's last "stage N" line started


@_dataclass
class SearchResult(_Message):
    """A log search finished: the match (or None) for the query."""

    generation: int
    query: str
    match: _Any  # hpcwizard.jobs.logtail.SearchMatch | None
    context: list | None  # lines to show when the match is outside the view


@_dataclass
class ActionFinished(_Message):
    """A Slurm action (cancel, hold, release, resubmit) finished."""

    action: str
    ok: bool
    text: str


# --------------------------------------------------------------------------
# Wizard (token, folders, partitions, preflight, preview, download, submit),
# on the same WorkerAnswer base as the dashboard's (one class, defined above).


@_dataclass
class SessionRead(_Message):
    """The saved wizard session of a project home (a ``SavedSession``)."""

    session: _Any


@_dataclass
class TokenChecked(_Message):
    """A token was validated (and stored): who it belongs to, or why not. Never the token."""

    user: str | None
    saved_to: str | None = None
    error: str | None = None


@_dataclass
class FolderMeasured(_Message):
    """Free space and quota where a folder lives, or why the folder will not do."""

    field: str  # which input asked
    path: str
    summary: str | None = None
    error: str | None = None
    warn: bool = False
    resolved: _Any = None  # pathlib.Path of a folder that will do


@_dataclass
class DataRootChecked(_Message):
    """Next on the paths step: the data root checked (off the UI thread: over
    SSH, or on a hung network filesystem, a stat can take long)."""

    path: _Any  # pathlib.Path, or None when it will not do
    why: str | None
    download: str  # "login" or "job"


@_dataclass
class NetworkProbeRead(_Message):
    """The paths step read the project's cached network probe
    (``hpcwizard.checks.netprobe``): ``offline`` when it says compute nodes of the
    setup partition miss something the jobs need, else None."""

    offline: _Any | None  # hpcwizard.checks.netprobe.ProbeResult
    what: str = ""  # "the package index https://pypi.org/simple or ..."


@_dataclass
class PartitionsLoaded(_Message):
    """The cluster's partitions (``PartitionInfo`` list), or why sinfo failed."""

    partitions: list[_Any] | None
    error: str | None = None


@_dataclass
class CheckArrived(_Message):
    """One preflight row (``CheckResult``), as soon as it is known."""

    row: _Any


@_dataclass
class PreflightDone(_Message):
    """The preflight finished; ``error`` when it could not run."""

    blocked: bool
    error: str | None = None


@_dataclass
class PreviewRendered(_Message):
    """Rendered files ``(name, text)`` and the diff against the previous run ('' when none)."""

    files: list[tuple[str, str]]
    diff: str
    previous: str | None = None
    error: str | None = None
    segments: str = ""  # "~3 segments of 48h" when the training outlasts one job


class DownloadProgressed(_Message):
    """A ``DownloadProgress`` snapshot; bursts coalesce, only the newest matters."""

    def __init__(self, progress: _Any) -> None:
        super().__init__()
        self.progress = progress

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, DownloadProgressed) and not message.progress.notes


@_dataclass
class DownloadEnded(_Message):
    """The download finished (``summary``), was stopped, or failed (``error``)."""

    summary: str | None = None
    error: str | None = None
    cancelled: bool = False


@_dataclass
class ChainSubmitted(_Message):
    """``submit_chain`` answered: the ``Submission``, or the refusal."""

    submission: _Any | None
    error: str | None = None
    already: bool = False
    #: What settling an interrupted earlier submit did first (the journal's lines).
    notes: tuple[str, ...] = ()


# --------------------------------------------------------------------------
# Wizard: the parameters step

@_dataclass
class TrainingRateRead(_Message):
    """The training rate of this project's newest train run with one in its log
    (a ``hpcwizard.jobs.estimate.MeasuredRate``), or None when there is no such run."""

    rate: _Any | None


@_dataclass
class EarlierCheckpointsRead(_Message):
    """Checkpoints an earlier run left where this plan trains
    (``hpcwizard.checks.preflight.EarlierCheckpoints`` list; empty: none)."""

    found: list


@_dataclass
class CheckpointsMovedAside(_Message):
    """A fresh start moved the old checkpoints (``MovedAside`` list), or why it could not."""

    moved: list
    error: str | None = None


@_dataclass
class ConnectionChanged(_Message):
    """Remote mode: the SSH connection was lost, is retrying, or came back
    (a :class:`hpcwizard.remote.ConnectionEvent`)."""

    event: _Any


@_dataclass
class ProjectLockLost(_Message):
    """Remote mode: after a reconnect another hpcwizard held the project;
    this wizard is read-only now. ``why`` says so in one line."""

    why: str

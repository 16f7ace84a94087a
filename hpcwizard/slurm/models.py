"""What hpcwizard knows about a Slurm cluster, as small frozen dataclasses.

Times are seconds (``None`` means unlimited / not set) and datetimes are naive,
in the cluster's local time, exactly as Slurm prints them. Job ids are strings
because array (``123_4``) and heterogeneous (``123+0``) ids are not integers.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime


class PartitionState(str, enum.Enum):
    """A partition's availability (sinfo ``%a`` / scontrol ``State=``)."""

    UP = "up"
    DOWN = "down"
    DRAIN = "drain"
    INACTIVE = "inactive"
    UNKNOWN = "unknown"

    def __str__(self) -> str:
        # Slurm's own word, not "JobState.PENDING", in messages and tables.
        return self.value

    @classmethod
    def from_slurm(cls, text: str) -> PartitionState:
        word = text.strip().lower()
        if word in ("inact", "inactive"):
            return cls.INACTIVE
        for state in cls:
            if state.value == word:
                return state
        return cls.UNKNOWN


class JobState(str, enum.Enum):
    """A job's state, as squeue ``%T``, sacct ``State`` and scontrol ``JobState`` print it."""

    PENDING = "PENDING"
    CONFIGURING = "CONFIGURING"
    RUNNING = "RUNNING"
    COMPLETING = "COMPLETING"
    SUSPENDED = "SUSPENDED"
    STOPPED = "STOPPED"
    SIGNALING = "SIGNALING"
    STAGE_OUT = "STAGE_OUT"
    RESIZING = "RESIZING"
    REQUEUED = "REQUEUED"
    REQUEUE_HOLD = "REQUEUE_HOLD"
    REQUEUE_FED = "REQUEUE_FED"
    # 25.11: a job that failed with --requeue=expedite, being requeued and then
    # waiting with the highest priority until it starts again (the flag is
    # cleared at launch; src/slurmctld/job_mgr.c, job_scheduler.c). Pending-like.
    EXPEDITING = "EXPEDITING"
    RESV_DEL_HOLD = "RESV_DEL_HOLD"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMEOUT = "TIMEOUT"
    OUT_OF_MEMORY = "OUT_OF_MEMORY"
    NODE_FAIL = "NODE_FAIL"
    PREEMPTED = "PREEMPTED"
    BOOT_FAIL = "BOOT_FAIL"
    DEADLINE = "DEADLINE"
    REVOKED = "REVOKED"
    SPECIAL_EXIT = "SPECIAL_EXIT"
    # Slurm printed something this version of hpcwizard does not know.
    UNKNOWN = "UNKNOWN"
    # The job is gone from squeue and no accounting source remembers it.
    FINISHED_UNKNOWN = "FINISHED_UNKNOWN"

    def __str__(self) -> str:
        # Slurm's own word, not "JobState.PENDING", in messages and tables.
        return self.value

    @classmethod
    def from_slurm(cls, text: str) -> JobState:
        # sacct prints "CANCELLED by 1000"; compact codes ("PD", "CG") come from %t.
        word = text.strip().split(" ", 1)[0].upper().rstrip("+")
        word = _COMPACT_STATES.get(word, word)
        try:
            return cls(word)
        except ValueError:
            return cls.UNKNOWN

    @property
    def is_finished(self) -> bool:
        """True once the job will never run (again) on its own."""
        return self in _FINISHED_STATES

    @property
    def is_active(self) -> bool:
        """True while the job is queued, running or winding down."""
        return not self.is_finished and self is not JobState.UNKNOWN

    @property
    def is_success(self) -> bool:
        return self is JobState.COMPLETED

    @property
    def is_requeued(self) -> bool:
        """Put back in the queue to run again (waiting, not finished)."""
        return self in _REQUEUE_STATES


_COMPACT_STATES = {
    "PD": "PENDING",
    "CF": "CONFIGURING",
    "R": "RUNNING",
    "CG": "COMPLETING",
    "S": "SUSPENDED",
    "ST": "STOPPED",
    "SI": "SIGNALING",
    "SO": "STAGE_OUT",
    "RS": "RESIZING",
    "RQ": "REQUEUED",
    "RH": "REQUEUE_HOLD",
    "RF": "REQUEUE_FED",
    "RD": "RESV_DEL_HOLD",
    "CD": "COMPLETED",
    "F": "FAILED",
    "CA": "CANCELLED",
    "TO": "TIMEOUT",
    "OOM": "OUT_OF_MEMORY",
    "NF": "NODE_FAIL",
    "PR": "PREEMPTED",
    "BF": "BOOT_FAIL",
    "DL": "DEADLINE",
    "RV": "REVOKED",
    "SE": "SPECIAL_EXIT",
}

_REQUEUE_STATES = frozenset(
    {JobState.REQUEUED, JobState.REQUEUE_HOLD, JobState.REQUEUE_FED, JobState.EXPEDITING}
)

_FINISHED_STATES = frozenset(
    {
        JobState.COMPLETED,
        JobState.FAILED,
        JobState.CANCELLED,
        JobState.TIMEOUT,
        JobState.OUT_OF_MEMORY,
        JobState.NODE_FAIL,
        JobState.PREEMPTED,
        JobState.BOOT_FAIL,
        JobState.DEADLINE,
        JobState.REVOKED,
        JobState.SPECIAL_EXIT,
        JobState.FINISHED_UNKNOWN,
    }
)


@dataclass(frozen=True)
class GresEntry:
    """One generic resource of a node, e.g. ``gpu:a100:2(S:2,5)`` → gpu, a100, 2."""

    name: str
    type: str | None
    count: int


@dataclass(frozen=True)
class PartitionInfo:
    """A partition and the limits a job submitted to it must respect.

    Per-node figures are those of the partition's LARGEST node: they answer
    "can any node here run this request", which is what preflight asks.
    """

    name: str
    is_default: bool
    state: PartitionState
    max_time: int | None  # seconds; None = no limit
    default_time: int | None  # seconds; None = Slurm uses max_time
    node_count: int
    cpus_per_node: int
    memory_mb_per_node: int
    gpus_per_node: int
    gpu_types: tuple[str, ...]
    gpus_free: int | None  # idle GPUs on usable nodes now; None = not known
    allow_accounts: tuple[str, ...] | None  # None = ALL
    allow_qos: tuple[str, ...] | None  # None = ALL
    nodes: str = ""  # the node list expression, e.g. "gpu[01-08]"
    # Slurm enforces a deny list only when the allow list is ALL (slurm.conf(5));
    # scontrol prints one or the other. None = nothing denied.
    deny_accounts: tuple[str, ...] | None = None
    deny_qos: tuple[str, ...] | None = None

    @property
    def is_usable(self) -> bool:
        return self.state is PartitionState.UP

    def allows_account(self, account: str | None) -> bool:
        return _allowed(account, self.allow_accounts, self.deny_accounts)

    def allows_qos(self, qos: str | None) -> bool:
        return _allowed(qos, self.allow_qos, self.deny_qos)

    def access_problems(self, account: str | None, qos: str | None) -> list[tuple[str, str]]:
        """(problem, fix) for an account or QoS this partition refuses; [] when both pass.

        Slurm's lists are hierarchical (a sub-account of a listed account is
        included) and hpcwizard does not see the hierarchy: it compares names.
        """
        problems = []
        if account and not self.allows_account(account):
            problems.append((f"account {account} may not use {self.name}",
                             _access_fix("accounts", self.allow_accounts, self.deny_accounts)))
        if qos and not self.allows_qos(qos):
            problems.append((f"QoS {qos} is not allowed on {self.name}",
                             _access_fix("QoS", self.allow_qos, self.deny_qos)))
        return problems


def _allowed(name: str | None, allow: tuple[str, ...] | None, deny: tuple[str, ...] | None) -> bool:
    # Slurm stores account and QoS names in lower case; a plan may not.
    if name is None:
        return True
    wanted = name.lower()
    if allow is not None:
        return wanted in {a.lower() for a in allow}
    return deny is None or wanted not in {d.lower() for d in deny}


def _access_fix(what: str, allow: tuple[str, ...] | None, deny: tuple[str, ...] | None) -> str:
    if allow is not None:
        return f"allowed {what}: {', '.join(allow)}"
    return f"use another {'account' if what == 'accounts' else what}; denied here: {', '.join(deny or ())}"


@dataclass(frozen=True)
class Dependency:
    """One term of a job's dependency, e.g. ``afterok:15(failed)``."""

    kind: str  # afterok, afterany, afternotok, aftercorr, after, singleton...
    job_id: str | None  # None for singleton
    status: str | None  # unfulfilled, failed, fulfilled...; None when Slurm shows none

    @property
    def never_satisfied(self) -> bool:
        return self.status == "failed"


@dataclass(frozen=True)
class ExitStatus:
    """A job's exit: Slurm's ``code:signal`` pair (``0:15`` = killed by SIGTERM)."""

    code: int
    signal: int

    @property
    def ok(self) -> bool:
        return self.code == 0 and self.signal == 0

    def __str__(self) -> str:
        return f"{self.code}:{self.signal}"


@dataclass(frozen=True)
class QueueEntry:
    """One line of squeue."""

    job_id: str
    name: str
    state: JobState
    reason: str | None  # None when squeue says "None"
    dependency_raw: str | None  # None when squeue says "(null)"
    dependencies: tuple[Dependency, ...]
    partition: str
    elapsed: int  # seconds
    time_limit: int | None  # seconds; None = unlimited
    node_count: int
    nodelist: str  # "" while pending
    start_time: datetime | None  # actual start, or Slurm's estimate while pending
    submit_time: datetime | None
    user: str
    exit_status: ExitStatus | None = None  # squeue -o has no exit code; sacct has

    @property
    def dependency_never_satisfied(self) -> bool:
        return self.reason == "DependencyNeverSatisfied" or any(
            d.never_satisfied for d in self.dependencies
        )


class FinishedSource(str, enum.Enum):
    """Where :class:`FinishedJob` facts came from."""

    SACCT = "sacct"
    SACCT_COMPLETION = "sacct --completion"
    SCONTROL = "scontrol"
    NONE = "none"


@dataclass(frozen=True)
class FinishedJob:
    """What is known about a job after it left the queue."""

    job_id: str
    state: JobState
    exit_status: ExitStatus | None
    elapsed: int | None  # seconds
    start_time: datetime | None
    end_time: datetime | None
    source: FinishedSource
    name: str | None = None
    partition: str | None = None
    nodelist: str | None = None


@dataclass(frozen=True)
class TestOnlyResult:
    """What ``sbatch --test-only`` predicts (it consumes a job id, runs nothing)."""

    __test__ = False  # not a pytest test class, despite the name

    job_id: str
    start_time: datetime | None
    partition: str | None
    nodes: str | None
    processors: int | None = None


@dataclass(frozen=True)
class Association:
    """One sacctmgr association: the user may submit with this account (and these QoS)."""

    user: str
    account: str
    partition: str | None  # None = any partition
    qos: tuple[str, ...]
    default_qos: str | None
    cluster: str | None = None

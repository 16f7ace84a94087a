"""Slurm layer: partitions, submission, queue and finished jobs, parsed into dataclasses.

Everything goes through a :class:`hpcwizard.shell.Runner`; nothing here imports Textual.
"""

from __future__ import annotations

from hpcwizard.slurm.client import SlurmClient
from hpcwizard.slurm.errors import (
    AccountingPolicy,
    InvalidAccount,
    InvalidDependency,
    InvalidGres,
    InvalidNodeCount,
    InvalidQos,
    MemoryUnavailable,
    NodeConfigUnavailable,
    PartitionUnavailable,
    ScriptUnreadable,
    SlurmCommandError,
    SlurmError,
    SlurmRefused,
    SlurmUnavailable,
    TimeLimitExceeded,
    TooManyCpus,
    UnknownPartition,
)
from hpcwizard.slurm.models import (
    Association,
    Dependency,
    ExitStatus,
    FinishedJob,
    FinishedSource,
    GresEntry,
    JobState,
    PartitionInfo,
    PartitionState,
    QueueEntry,
    TestOnlyResult,
)
from hpcwizard.slurm.parse import format_slurm_duration, parse_gres, parse_slurm_duration

__all__ = [
    "AccountingPolicy", "Association", "Dependency", "ExitStatus", "FinishedJob",
    "FinishedSource", "GresEntry", "InvalidAccount", "InvalidDependency", "InvalidGres",
    "InvalidNodeCount", "InvalidQos", "JobState", "MemoryUnavailable", "NodeConfigUnavailable",
    "PartitionInfo", "PartitionState", "PartitionUnavailable", "QueueEntry", "ScriptUnreadable",
    "SlurmClient", "SlurmCommandError", "SlurmError", "SlurmRefused", "SlurmUnavailable",
    "TestOnlyResult", "TimeLimitExceeded", "TooManyCpus", "UnknownPartition",
    "format_slurm_duration", "parse_gres", "parse_slurm_duration",
]

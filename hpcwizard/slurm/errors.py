"""Slurm's refusals and outages, as errors a user can act on.

sbatch explains a refusal in one stderr line (``sbatch: error: Batch job
submission failed: <strerror>``, or a client-side check such as ``invalid
partition specified: X``). The wording comes from Slurm's ``slurm_errno.c``
and is stable across 20.x–24.x; each known line maps to a class whose message
says what is wrong and how to fix it. An unknown refusal keeps Slurm's text.
"""

from __future__ import annotations

import re

from hpcwizard.errors import CommandFailed, UserError


class SlurmError(UserError):
    """Base of every Slurm-related failure the user is expected to see."""


class SlurmUnavailable(SlurmError, CommandFailed):
    """The Slurm controller did not answer (down, unreachable, too slow)."""


class SlurmCommandError(SlurmError, CommandFailed):
    """A Slurm query (squeue, sinfo...) failed for a reason not covered elsewhere."""


class SlurmRefused(SlurmError):
    """sbatch (or scontrol) refused a request. ``slurm_message`` is Slurm's own line."""

    #: What kind of refusal; subclasses override it.
    cause = "unknown"

    def __init__(self, message: str, hint: str | None = None, *, slurm_message: str = "") -> None:
        super().__init__(message, hint)
        self.slurm_message = slurm_message


class UnknownPartition(SlurmRefused):
    cause = "partition"


class PartitionUnavailable(SlurmRefused):
    cause = "partition_state"


class InvalidAccount(SlurmRefused):
    cause = "account"


class InvalidQos(SlurmRefused):
    cause = "qos"


class TimeLimitExceeded(SlurmRefused):
    cause = "time"


class InvalidGres(SlurmRefused):
    cause = "gres"


class NodeConfigUnavailable(SlurmRefused):
    cause = "node_config"


class MemoryUnavailable(SlurmRefused):
    cause = "memory"


class TooManyCpus(SlurmRefused):
    cause = "cpus"


class InvalidNodeCount(SlurmRefused):
    cause = "nodes"


class AccountingPolicy(SlurmRefused):
    cause = "policy"


class InvalidDependency(SlurmRefused):
    cause = "dependency"


class ScriptUnreadable(SlurmRefused):
    cause = "script"


# (pattern over the whole stderr, class, message, hint). First match wins, so
# the specific client-side lines come before the generic server-side ones
# that sbatch prints after them.
_REFUSALS: list[tuple[re.Pattern[str], type[SlurmRefused], str, str]] = [
    (
        re.compile(r"invalid partition specified: (?P<name>\S+)", re.I),
        UnknownPartition,
        "Slurm has no partition '{name}'",
        "pick one that `sinfo -s` lists (check the spelling in the job's partition setting)",
    ),
    (
        re.compile(r"Invalid partition name specified", re.I),
        UnknownPartition,
        "Slurm has no such partition",
        "pick one that `sinfo -s` lists (check the spelling in the job's partition setting)",
    ),
    (
        re.compile(r"Required partition not available \(inactive or drain\)", re.I),
        PartitionUnavailable,
        "the partition is inactive or draining and accepts no jobs now",
        "choose another partition or ask the cluster admins when it reopens",
    ),
    (
        re.compile(r"Invalid account or account/partition combination specified", re.I),
        InvalidAccount,
        "Slurm does not accept this account (unknown, or not allowed on this partition)",
        "set an account you belong to (`sacctmgr show assoc user=$USER`), or leave it empty to use your default",
    ),
    (
        re.compile(r"Invalid qos specification", re.I),
        InvalidQos,
        "Slurm does not accept this QoS for your account",
        "set a QoS your association allows (`sacctmgr show assoc user=$USER format=account,qos`), or leave it empty",
    ),
    (
        re.compile(r"Requested time limit is invalid \(missing or exceeds some limit\)", re.I),
        TimeLimitExceeded,
        "the requested time limit exceeds the partition's (or QoS's) maximum",
        "lower the job's time to at most the partition's MaxTime (`sinfo -o '%P %l'`) or pick a partition with a longer limit",
    ),
    (
        re.compile(r"Invalid generic resource \(gres\) specification", re.I),
        InvalidGres,
        "Slurm does not know the requested generic resource (GPU type or name)",
        "request GPUs as gpu:N, or gpu:TYPE:N with a type `sinfo -o '%P %G'` shows",
    ),
    (
        re.compile(r"Memory specification can not be satisfied|Memory required by task is not available", re.I),
        MemoryUnavailable,
        "no node in the partition has the requested memory",
        "lower the memory request to at most the partition's memory per node (`sinfo -o '%P %m'`)",
    ),
    (
        re.compile(r"More processors requested than permitted", re.I),
        TooManyCpus,
        "more CPUs (or nodes) requested than the partition allows",
        "lower the CPU or node count to what `sinfo -o '%P %c %D'` shows",
    ),
    (
        re.compile(r"Node count specification invalid", re.I),
        InvalidNodeCount,
        "the requested node count is not possible in this partition",
        "request fewer nodes (`sinfo -o '%P %D'` shows how many there are)",
    ),
    (
        re.compile(r"Requested node configuration is not available", re.I),
        NodeConfigUnavailable,
        "no node in the partition has what the job asks for (GPUs, CPUs, memory or features together)",
        "compare the request with `sinfo -o '%P %c %m %G'` and lower the GPUs, CPUs or memory per node",
    ),
    (
        re.compile(r"Job violates accounting/QOS policy", re.I),
        AccountingPolicy,
        "the job exceeds a limit of your account or QoS (job count, size or time)",
        "ask for less (time, GPUs, jobs at once) or use another account/QoS; `sacctmgr show assoc user=$USER` shows the limits",
    ),
    (
        re.compile(r"Job dependency problem|Invalid dependency", re.I),
        InvalidDependency,
        "the dependency names a job Slurm no longer knows or that already failed",
        "resubmit the whole chain",
    ),
    (
        re.compile(r"Unable to open file", re.I),
        ScriptUnreadable,
        "sbatch could not read the job script",
        "check that the script exists on the cluster side and is readable",
    ),
]

_UNAVAILABLE = re.compile(
    r"Unable to contact slurm controller|Socket timed out on send/recv|"
    r"Zero Bytes were transmitted or received|Slurm backup controller in standby mode|"
    r"Communication connection failure",
    re.I,
)


def is_controller_unreachable(stderr: str) -> bool:
    return bool(_UNAVAILABLE.search(stderr))


def unavailable(command: str, detail: str) -> SlurmUnavailable:
    detail = " ".join(detail.split()) or "no answer"
    return SlurmUnavailable(
        f"the Slurm controller did not answer {command}: {detail}",
        "the cluster may be down or overloaded; try again in a minute (`sinfo` shows when it is back)",
    )


def slurm_error_line(stderr: str) -> str:
    """The most telling line of Slurm's stderr (the last ``error:`` line, else the last line)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    return (errors or lines or [""])[-1]


def refusal_from_stderr(stderr: str, *, command: str = "sbatch") -> SlurmRefused | SlurmUnavailable:
    """Map a failed sbatch's stderr to the error to raise."""
    if is_controller_unreachable(stderr):
        return unavailable(command, slurm_error_line(stderr))
    verbatim = slurm_error_line(stderr)
    for pattern, cls, message, hint in _REFUSALS:
        match = pattern.search(stderr)
        if match:
            return cls(message.format(**match.groupdict()), hint, slurm_message=verbatim)
    shown = re.sub(r"^\w+: error: (Batch job submission failed: )?", "", verbatim) or "no reason given"
    return SlurmRefused(
        f"Slurm refused the job: {shown}",
        "fix what Slurm names in the job's settings and submit again",
        slurm_message=verbatim,
    )

"""Pure functions: Slurm command output (text) → hpcwizard dataclasses.

No command runs here, so every function is tested on recorded outputs of
several Slurm versions. Formats are the ones :mod:`hpcwizard.slurm.client`
asks for with ``-o``/``-O`` and an explicit delimiter; nothing is parsed by
column width and nothing from ``--json`` (its schema changes every release).

Whatever the text, the only exception a parser here raises is ValueError
(tests/test_slurm_parse.py fuzzes every one). The line-based parsers take
``strict``: True (the default) raises on the first line they cannot read,
False skips it, so one odd line does not hide every other job or partition.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

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

# Unit separator: a character no partition, user, reason or job name contains,
# and that sinfo/squeue/sacct copy through their format strings untouched.
FIELD_SEPARATOR = "\x1f"

# --- formats the client asks for (kept next to the parsers that read them) ---

#: sinfo -o: partition (with the default's "*"), avail, max time, default time,
#: nodes, CPUs/node, memory MB/node, GRES, node list.
SINFO_FIELDS = ("%P", "%a", "%l", "%L", "%D", "%c", "%m", "%G", "%N")
SINFO_FORMAT = FIELD_SEPARATOR.join(SINFO_FIELDS)

#: sinfo -N -O: per node and partition, configured GRES and GRES in use.
SINFO_GRES_USAGE_FIELDS = ("NodeHost", "Partition", "StateLong", "Gres", "GresUsed")
# -O "Field:<suffix>" with no width prints the value unpadded, then the suffix.
SINFO_GRES_USAGE_FORMAT = ",".join(f"{f}:{FIELD_SEPARATOR}" for f in SINFO_GRES_USAGE_FIELDS)

#: squeue -o: the job name goes LAST so nothing it contains can shift a field.
SQUEUE_FIELDS = ("%i", "%T", "%r", "%E", "%P", "%M", "%l", "%D", "%N", "%S", "%V", "%u", "%j")
SQUEUE_FORMAT = FIELD_SEPARATOR.join(SQUEUE_FIELDS)

#: sacct -o (with -P and --delimiter=FIELD_SEPARATOR); JobName last, as above.
SACCT_FIELDS = ("JobID", "State", "ExitCode", "Elapsed", "Start", "End", "Partition", "NodeList", "JobName")
SACCT_FORMAT = ",".join(SACCT_FIELDS)

#: sacctmgr -n -P show assoc format=...
SACCTMGR_ASSOC_FIELDS = ("Cluster", "Account", "User", "Partition", "QOS", "DefaultQOS")


# --- scalars -----------------------------------------------------------------

_NO_VALUE = {"", "n/a", "none", "(null)", "null", "unknown", "invalid"}
_UNLIMITED = {"infinite", "unlimited"}
# squeue prints NOT_SET for a limit that is NO_VAL (a job without partition
# record; src/squeue/print.c): no limit is known, like N/A.
_NOT_SET = {"not_set"}

T = TypeVar("T")


def _lines(text: str, parse_line: Callable[[str], T], strict: bool) -> list[T]:
    """``parse_line`` over the non-blank lines; ``strict=False`` skips a line it refuses."""
    results = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            results.append(parse_line(line))
        except ValueError:
            if strict:
                raise
    return results


def parse_slurm_duration(text: str) -> int | None:
    """Seconds in a Slurm time string; None for "no limit" / "not set".

    Accepts what Slurm prints and what ``--time`` takes: ``infinite``,
    ``UNLIMITED``, ``NONE``, ``N/A``, ``NOT_SET`` (→ None); ``MM`` (minutes,
    "5"), ``MM:SS``, ``HH:MM:SS``, ``D-HH``, ``D-HH:MM``, ``D-HH:MM:SS``.
    Raises ValueError on anything else.
    """
    value = text.strip()
    word = value.lower()
    if word in _UNLIMITED or word in _NO_VALUE or word in _NOT_SET:
        return None
    # ASCII digits (re's \d takes any script's), at most 12 of them a field:
    # more is no time Slurm prints, and int() of 4301 digits raises anyway.
    match = re.fullmatch(r"(?:([0-9]{1,12})-)?([0-9]{1,12})(?::([0-9]{1,12}))?(?::([0-9]{1,12}))?", value)
    if not match:
        raise ValueError(f"not a Slurm time: {text!r}")
    days_s, first, second, third = match.groups()
    days = int(days_s or 0)
    parts = [int(p) for p in (first, second, third) if p is not None]
    if days_s is not None:
        # After "D-" the fields are hours[:minutes[:seconds]].
        hours, minutes, seconds = (parts + [0, 0])[:3]
    elif len(parts) == 1:
        hours, minutes, seconds = 0, parts[0], 0  # a bare number is minutes
    elif len(parts) == 2:
        hours, (minutes, seconds) = 0, parts
    else:
        hours, minutes, seconds = parts
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def format_slurm_duration(seconds: int | None) -> str:
    """A ``--time`` value: ``D-HH:MM:SS`` or ``HH:MM:SS``; None → ``UNLIMITED``."""
    if seconds is None:
        return "UNLIMITED"
    if seconds < 0:
        raise ValueError(f"negative duration: {seconds}")
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    clock = f"{hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{days}-{clock}" if days else clock


def parse_slurm_datetime(text: str) -> datetime | None:
    """``2026-11-23T04:16:28`` → datetime; ``N/A``/``Unknown``/``None`` → None."""
    value = text.strip()
    if value.lower() in _NO_VALUE:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def parse_exit_code(text: str) -> ExitStatus | None:
    """``3:0`` → ExitStatus(3, 0). A bare number is a raw wait status (squeue -O)."""
    value = text.strip()
    if value.lower() in _NO_VALUE:
        return None
    if ":" in value:
        code, _, signal = value.partition(":")
        try:
            return ExitStatus(int(code), int(signal))
        except ValueError:
            return None
    try:
        status = int(value)
    except ValueError:
        return None
    # POSIX wait status: low 7 bits = signal, next byte = exit code.
    return ExitStatus((status >> 8) & 0xFF, status & 0x7F)


def _leading_int(text: str) -> int:
    """``64+`` (sinfo: "at least 64, some nodes have more") → 64."""
    match = re.match(r"\s*([0-9]{1,18})(?![0-9])", text)
    return int(match.group(1)) if match else 0


def _split_top_level(text: str, sep: str = ",") -> list[str]:
    """Split on ``sep`` outside parentheses: ``gpu:a100:2(S:2,5),gpu:v100:1``."""
    items: list[str] = []
    current: list[str] = []
    depth = 0
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth = max(0, depth - 1)
        if char == sep and depth == 0:
            items.append("".join(current))
            current = []
        else:
            current.append(char)
    items.append("".join(current))
    return [item.strip() for item in items if item.strip()]


# --- host lists --------------------------------------------------------------

#: More hosts than any job holds: a longer list is not expanded.
MAX_HOSTS = 100_000
_BRACKETS = re.compile(r"\[([^\[\]]*)\]")


def expand_hostlist(text: str | None) -> list[str]:
    """A Slurm node list, one name per node, in Slurm's order (the order of
    ``scontrol show hostnames``, which is also ``$SLURM_NODEID``'s):
    ``node[1-2]`` → node1, node2; ``gpu[01-02,07],cpu5`` → gpu01, gpu02,
    gpu07, cpu5 (zero padding kept); ``rack[1-2]-n[1-2]`` → all four.
    Nothing assigned (``""``, ``None assigned``, ``(null)``) → []."""
    value = (text or "").strip()
    if value.lower() in _NO_VALUE or value.lower() in ("none assigned", "none"):
        return []
    hosts: list[str] = []
    for item in _split_top_level(value.replace("[", "(").replace("]", ")")):
        item = item.replace("(", "[").replace(")", "]")
        names = [""]
        rest = item
        while rest:
            match = _BRACKETS.search(rest)
            if match is None:
                if "[" in rest or "]" in rest:
                    raise ValueError(f"unbalanced brackets in node list {text!r}")
                names = [name + rest for name in names]
                break
            prefix, rest = rest[: match.start()], rest[match.end():]
            if "[" in prefix or "]" in prefix:
                raise ValueError(f"unbalanced brackets in node list {text!r}")
            numbers = _host_numbers(match.group(1), text)
            if len(names) * len(numbers) + len(hosts) > MAX_HOSTS:
                raise ValueError(f"node list {text!r} names more than {MAX_HOSTS} nodes")
            names = [name + prefix + number for name in names for number in numbers]
        hosts.extend(names)
        if len(hosts) > MAX_HOSTS:
            raise ValueError(f"node list {text!r} names more than {MAX_HOSTS} nodes")
    return hosts


def _host_numbers(ranges: str, text: str | None) -> list[str]:
    """``01-03,07`` → 01, 02, 03, 07 (the width of the first bound kept)."""
    numbers: list[str] = []
    for part in ranges.split(","):
        low, _, high = part.strip().partition("-")
        if not low.isdigit() or (high and not high.isdigit()):
            raise ValueError(f"bad range {part!r} in node list {text!r}")
        start, end = int(low), int(high or low)
        if end < start or len(numbers) + end - start >= MAX_HOSTS:
            raise ValueError(f"bad range {part!r} in node list {text!r}")
        numbers.extend(str(n).zfill(len(low)) for n in range(start, end + 1))
    return numbers


# --- GRES --------------------------------------------------------------------


def parse_gres(text: str) -> tuple[GresEntry, ...]:
    """Parse a node's GRES (sinfo ``%G``, ``GresUsed``, scontrol ``Gres=``).

    ``gpu:8(S:0-1)``, ``gpu:a100:2(S:2,5)``, ``gpu:a100:4,gpu:v100:2``,
    ``gpu:tesla:2(IDX:0-1)``, ``gpu:2``, ``gpu`` (one), ``(null)`` (none).
    """
    value = text.strip()
    if value.lower() in _NO_VALUE:
        return ()
    entries = []
    for item in _split_top_level(value):
        # Drop the trailing socket/index annotation, keep a "(null)" type.
        bare = re.sub(r"\((?!null\))[^()]*\)$", "", item)
        parts = bare.split(":")
        name = parts[0]
        count = 1
        gres_type: str | None = None
        if len(parts) >= 2:
            last = parts[-1]
            count_match = re.fullmatch(r"([0-9]{1,18})([KMGTP]?)", last)
            if count_match:
                count = int(count_match.group(1)) * _COUNT_SUFFIX[count_match.group(2)]
                middle = parts[1:-1]
            else:
                middle = parts[1:]
            if middle:
                gres_type = ":".join(middle)
        if gres_type is not None and gres_type.lower() in _NO_VALUE:
            gres_type = None
        entries.append(GresEntry(name=name, type=gres_type, count=count))
    return tuple(entries)


_COUNT_SUFFIX = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4, "P": 1024**5}


def gpu_count(entries: Iterable[GresEntry]) -> int:
    return sum(entry.count for entry in entries if entry.name == "gpu")


def gpu_types(entries: Iterable[GresEntry]) -> tuple[str, ...]:
    seen: list[str] = []
    for entry in entries:
        if entry.name == "gpu" and entry.type and entry.type not in seen:
            seen.append(entry.type)
    return tuple(seen)


# --- key=value (scontrol -o) -------------------------------------------------

# A key is a word that may contain ":", "/" (AllocNode:Sid, CPUs/Task).
_KEY_TOKEN = re.compile(r"^([A-Za-z][A-Za-z0-9_:/.]*)=(.*)$")


def parse_key_values(line: str) -> dict[str, str]:
    """One ``scontrol show ... -o`` line → {key: value}.

    Values split at ``=`` once (``TRES=cpu=2,mem=1G``); a token that is not
    ``key=value`` belongs to the previous value (a Command with spaces).
    """
    result: dict[str, str] = {}
    last_key: str | None = None
    for token in line.strip().split(" "):
        match = _KEY_TOKEN.match(token)
        if match:
            last_key = match.group(1)
            result[last_key] = match.group(2)
        elif last_key is not None:
            result[last_key] += " " + token
    return result


def _allow_list(value: str | None) -> tuple[str, ...] | None:
    if value is None or value.strip().upper() in ("ALL", ""):
        return None
    return tuple(v for v in value.split(",") if v)


def _deny_list(value: str | None) -> tuple[str, ...] | None:
    """``DenyAccounts=``/``DenyQos=``: scontrol prints one in place of the
    Allow key when only a deny list is set (src/api/partition_info.c)."""
    if value is None or value.strip().lower() in _NO_VALUE:
        return None
    return tuple(v for v in value.split(",") if v) or None


# --- partitions --------------------------------------------------------------


@dataclass(frozen=True)
class SinfoRow:
    """One line of sinfo ``-o SINFO_FORMAT`` (a group of alike nodes of a partition)."""

    partition: str
    is_default: bool
    avail: PartitionState
    max_time: int | None
    default_time: int | None
    node_count: int
    cpus: int
    memory_mb: int
    gres: tuple[GresEntry, ...]
    nodes: str


def parse_sinfo(text: str, *, strict: bool = True) -> list[SinfoRow]:
    return _lines(text, _sinfo_row, strict)


def _sinfo_row(line: str) -> SinfoRow:
    fields = line.split(FIELD_SEPARATOR)
    if len(fields) != len(SINFO_FIELDS):
        raise ValueError(f"unexpected sinfo line ({len(fields)} fields): {line!r}")
    name, avail, limit, default, nodes, cpus, memory, gres, nodelist = fields
    return SinfoRow(
        partition=name.strip().rstrip("*"),
        is_default=name.strip().endswith("*"),
        avail=PartitionState.from_slurm(avail),
        max_time=parse_slurm_duration(limit),
        default_time=parse_slurm_duration(default),
        node_count=_leading_int(nodes),
        cpus=_leading_int(cpus),
        memory_mb=_leading_int(memory),
        gres=parse_gres(gres),
        nodes=nodelist.strip(),
    )


def parse_scontrol_partitions(text: str) -> dict[str, dict[str, str]]:
    """``scontrol show partition -o`` → {partition name: {key: value}}."""
    partitions = {}
    for line in text.splitlines():
        if line.strip():
            fields = parse_key_values(line)
            if "PartitionName" in fields:
                partitions[fields["PartitionName"]] = fields
    return partitions


def parse_gres_usage(text: str, *, strict: bool = True) -> dict[str, int]:
    """sinfo ``-N -O SINFO_GRES_USAGE_FORMAT`` → {partition: GPUs free now}.

    Only nodes that can take work count; a drained node's idle GPUs are not free.
    """
    free: dict[str, int] = {}
    for partition, spare in _lines(text, _gres_usage_row, strict):
        free[partition] = free.get(partition, 0) + spare
    return free


def _gres_usage_row(line: str) -> tuple[str, int]:
    """(partition, GPUs free on this node) of one sinfo -N -O line."""
    fields = line.split(FIELD_SEPARATOR)
    if len(fields) < len(SINFO_GRES_USAGE_FIELDS):
        raise ValueError(f"unexpected sinfo -O line: {line!r}")
    _node, partition, state, gres, used = (f.strip() for f in fields[:5])
    usable = state.rstrip("*~#!%$@^-").lower() in ("idle", "mixed", "allocated", "completing")
    spare = max(0, gpu_count(parse_gres(gres)) - gpu_count(parse_gres(used)))
    return partition.rstrip("*"), spare if usable else 0


def merge_partitions(
    sinfo_rows: Sequence[SinfoRow],
    scontrol: dict[str, dict[str, str]],
    free_gpus: dict[str, int] | None = None,
) -> list[PartitionInfo]:
    """Combine sinfo (per-node sizes) and scontrol (limits, access lists).

    scontrol is authoritative for the default flag, state, times and
    allow/deny lists; sinfo supplies what only it summarises (CPUs, memory,
    GRES). A time scontrol prints that cannot be read falls back to sinfo's.
    """
    grouped: dict[str, list[SinfoRow]] = {}
    for row in sinfo_rows:
        grouped.setdefault(row.partition, []).append(row)
    names = list(grouped) + [n for n in scontrol if n not in grouped]
    partitions = []
    for name in names:
        rows = grouped.get(name, [])
        conf = scontrol.get(name, {})
        first = rows[0] if rows else None
        if "Default" in conf:
            is_default = conf["Default"].upper() == "YES"
        else:
            is_default = bool(first and first.is_default)
        state = PartitionState.from_slurm(conf["State"]) if "State" in conf else (
            first.avail if first else PartitionState.UNKNOWN
        )
        max_time = _conf_duration(conf, "MaxTime", first.max_time if first else None)
        default_time = _conf_duration(conf, "DefaultTime", first.default_time if first else None)
        node_count = sum(r.node_count for r in rows) or _leading_int(conf.get("TotalNodes", "0"))
        gres_all = [g for r in rows for g in r.gres]
        partitions.append(
            PartitionInfo(
                name=name,
                is_default=is_default,
                state=state,
                max_time=max_time,
                default_time=default_time,
                node_count=node_count,
                cpus_per_node=max((r.cpus for r in rows), default=0),
                memory_mb_per_node=max((r.memory_mb for r in rows), default=0),
                gpus_per_node=max((gpu_count(r.gres) for r in rows), default=0),
                gpu_types=gpu_types(gres_all),
                gpus_free=None if free_gpus is None else free_gpus.get(name, 0),
                allow_accounts=_allow_list(conf.get("AllowAccounts")),
                allow_qos=_allow_list(conf.get("AllowQos")),
                nodes=conf.get("Nodes") or (",".join(r.nodes for r in rows)),
                deny_accounts=_deny_list(conf.get("DenyAccounts")),
                deny_qos=_deny_list(conf.get("DenyQos")),
            )
        )
    return partitions


def _conf_duration(conf: dict[str, str], key: str, fallback: int | None) -> int | None:
    if key not in conf:
        return fallback
    try:
        return parse_slurm_duration(conf[key])
    except ValueError:
        return fallback


# --- queue -------------------------------------------------------------------

# "afterok:7(failed)", "afterany:3_*(unfulfilled)", "after:5+10(unfulfilled)",
# "singleton(unfulfilled)"; terms are joined by "," (all) or "?" (any).
_DEPENDENCY_TERM = re.compile(
    r"^(?P<kind>[a-z_]+)(?::(?P<ids>[^()]+))?(?:\((?P<status>[^()]*)\))?$"
)


def parse_dependency(text: str) -> tuple[Dependency, ...]:
    """squeue ``%E`` / scontrol ``Dependency=`` → its terms.

    ``afterok:1(unfulfilled),afterany:2`` → (afterok, 1, unfulfilled),
    (afterany, 2, None). ``afterok:1:2`` gives one term per job.
    """
    value = text.strip()
    if value.lower() in _NO_VALUE:
        return ()
    terms = []
    for item in re.split(r"[,?]", value):
        item = item.strip()
        if not item:
            continue
        match = _DEPENDENCY_TERM.match(item)
        if not match:
            terms.append(Dependency(kind=item, job_id=None, status=None))
            continue
        status = match.group("status") or None
        ids = match.group("ids")
        if not ids:
            terms.append(Dependency(match.group("kind"), None, status))
            continue
        for job_id in ids.split(":"):
            job_id = job_id.split("+", 1)[0]  # "after:5+10": 10 minutes after 5 starts
            terms.append(Dependency(match.group("kind"), job_id, status))
    return tuple(terms)


def _optional(text: str) -> str | None:
    value = text.strip()
    return None if value.lower() in _NO_VALUE else value


def parse_squeue(text: str, *, strict: bool = True) -> list[QueueEntry]:
    """squeue ``--noheader -o SQUEUE_FORMAT`` lines."""
    return _lines(text, _squeue_entry, strict)


def _squeue_entry(line: str) -> QueueEntry:
    fields = line.split(FIELD_SEPARATOR, len(SQUEUE_FIELDS) - 1)
    if len(fields) != len(SQUEUE_FIELDS):
        raise ValueError(f"unexpected squeue line ({len(fields)} fields): {line!r}")
    (job_id, state, reason, dependency, partition, elapsed, limit,
     nodes, nodelist, start, submit, user, name) = fields
    if not job_id.strip():
        raise ValueError(f"squeue line without a job id: {line!r}")
    return QueueEntry(
        job_id=job_id.strip(),
        name=name,
        state=JobState.from_slurm(state),
        reason=_optional(reason),
        dependency_raw=_optional(dependency),
        dependencies=parse_dependency(dependency),
        partition=partition.strip(),
        elapsed=parse_slurm_duration(elapsed) or 0,
        time_limit=parse_slurm_duration(limit),
        node_count=_leading_int(nodes),
        nodelist=_optional(nodelist) or "",
        start_time=parse_slurm_datetime(start),
        submit_time=parse_slurm_datetime(submit),
        user=user.strip(),
    )


# --- finished jobs -----------------------------------------------------------


def parse_sacct(text: str, source: FinishedSource = FinishedSource.SACCT, *,
                strict: bool = True) -> list[FinishedJob]:
    """sacct ``-n -X -P --delimiter=FIELD_SEPARATOR -o SACCT_FORMAT`` lines.

    A requeued job can appear more than once; the last line wins.
    """
    def job(line: str) -> FinishedJob:
        fields = line.split(FIELD_SEPARATOR, len(SACCT_FIELDS) - 1)
        if len(fields) != len(SACCT_FIELDS):
            raise ValueError(f"unexpected sacct line ({len(fields)} fields): {line!r}")
        job_id, state, exit_code, elapsed, start, end, partition, nodelist, name = fields
        if not job_id.strip():
            raise ValueError(f"sacct line without a job id: {line!r}")
        return FinishedJob(
            job_id=job_id.strip(),
            state=JobState.from_slurm(state),
            exit_status=parse_exit_code(exit_code),
            elapsed=_duration_or_none(elapsed),
            start_time=parse_slurm_datetime(start),
            end_time=parse_slurm_datetime(end),
            source=source,
            name=name,
            partition=_optional(partition),
            nodelist=_optional(nodelist),
        )

    return list({j.job_id: j for j in _lines(text, job, strict)}.values())


def _duration_or_none(text: str) -> int | None:
    try:
        return parse_slurm_duration(text)
    except ValueError:
        return None


def parse_scontrol_job(text: str) -> FinishedJob | None:
    """``scontrol show job -o ID`` → FinishedJob (None when no job line)."""
    for line in text.splitlines():
        fields = parse_key_values(line)
        if "JobId" not in fields:
            continue
        return FinishedJob(
            job_id=fields["JobId"],
            state=JobState.from_slurm(fields.get("JobState", "")),
            exit_status=parse_exit_code(fields.get("ExitCode", "")),
            elapsed=_duration_or_none(fields.get("RunTime", "")),
            start_time=parse_slurm_datetime(fields.get("StartTime", "")),
            end_time=parse_slurm_datetime(fields.get("EndTime", "")),
            source=FinishedSource.SCONTROL,
            name=fields.get("JobName"),
            partition=_optional(fields.get("Partition", "")),
            nodelist=_optional(fields.get("NodeList", "")),
        )
    return None


# --- sbatch ------------------------------------------------------------------


def parse_sbatch_parsable(stdout: str) -> str:
    """``sbatch --parsable`` prints ``id`` or ``id;cluster``."""
    for line in stdout.splitlines():
        line = line.strip()
        if line:
            job_id = line.split(";", 1)[0]
            if re.fullmatch(r"\d+", job_id):
                return job_id
    raise ValueError(f"no job id in sbatch output: {stdout!r}")


# src/api/allocate.c, one line each:
#   < 25.05  "Job %u to start at %s using %u processors on nodes %s in partition %s"
#   >= 25.05 "Job %u to start at %s%s%s a using %u processors on nodes %s in partition %s"
#            (the %s%s%s is an optional " on cluster NAME"; the stray " a" is Slurm's)
#   het job  "Job %u to start at %s using %u processors on %s"  (no partition)
# The time is SLURM_TIME_FORMAT's, which may hold spaces; a partition name
# may too ("GPU nodes (nvidia)"), so it runs to the end of the line.
_TEST_ONLY = re.compile(
    r"Job (?P<id>[0-9]+) to start at (?P<start>[^\n]+?)"
    r"(?: on cluster (?P<cluster>\S+))?"
    r"(?: a)?"
    r" using (?P<cpus>[0-9]{1,9}) processors on (?:nodes? )?(?P<nodes>\S+)"
    r"(?: in partition (?P<partition>[^\n]*?))?[ \t]*$",
    re.MULTILINE,
)
# Whatever else a future release prints after the time: the id and time still count.
_TEST_ONLY_BARE = re.compile(r"Job (?P<id>[0-9]+) to start at (?P<start>\S+)")


def parse_test_only(stderr: str) -> TestOnlyResult | None:
    """``sbatch: Job 5 to start at 2026-11-23T04:16:28 using 1 processors on nodes vm in partition cpu``.

    None when sbatch printed no prediction.
    """
    match = _TEST_ONLY.search(stderr)
    if match:
        return TestOnlyResult(
            job_id=match.group("id"),
            start_time=parse_slurm_datetime(match.group("start")),
            partition=_optional(match.group("partition") or ""),
            nodes=_optional(match.group("nodes")),
            processors=int(match.group("cpus")),
        )
    bare = _TEST_ONLY_BARE.search(stderr)
    if not bare:
        return None
    return TestOnlyResult(job_id=bare.group("id"), start_time=parse_slurm_datetime(bare.group("start")),
                          partition=None, nodes=None)


# --- sacctmgr ----------------------------------------------------------------


def parse_sacctmgr_associations(text: str) -> list[Association]:
    """``sacctmgr -n -P show assoc where user=U format=SACCTMGR_ASSOC_FIELDS``."""
    associations = []
    for line in text.splitlines():
        if not line.strip():
            continue
        fields = line.split("|")
        if len(fields) < len(SACCTMGR_ASSOC_FIELDS):
            raise ValueError(f"unexpected sacctmgr line: {line!r}")
        cluster, account, user, partition, qos, default_qos = (f.strip() for f in fields[:6])
        if not user:
            continue  # an account's own line, not the user's association
        associations.append(
            Association(
                user=user,
                account=account,
                partition=partition or None,
                qos=tuple(q for q in qos.split(",") if q),
                default_qos=default_qos or None,
                cluster=cluster or None,
            )
        )
    return associations

"""Slurm parsers on recorded outputs (22.05 from the local cluster, 23.x/24.x sites)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from hpcwizard.errors import UserError
from hpcwizard.slurm import errors as slurm_errors
from hpcwizard.slurm import parse
from hpcwizard.slurm.models import (
    Dependency,
    ExitStatus,
    FinishedSource,
    GresEntry,
    JobState,
    PartitionState,
)

DATA = Path(__file__).parent / "data" / "slurm"


def read(name: str) -> str:
    return (DATA / name).read_text()


# --- durations ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("infinite", None),
        ("UNLIMITED", None),
        ("NONE", None),
        ("N/A", None),
        ("n/a", None),
        ("1-00:00:00", 86400),
        ("4:00:00", 14400),
        ("04:00:00", 14400),
        ("30:00", 1800),
        ("0:05", 5),
        ("5", 300),
        ("2-12", 2 * 86400 + 12 * 3600),
        ("2-12:30", 2 * 86400 + 12 * 3600 + 30 * 60),
        ("3-00:00:16", 3 * 86400 + 16),
        ("00:00:00", 0),
    ],
)
def test_parse_slurm_duration(text: str, seconds: int | None) -> None:
    assert parse.parse_slurm_duration(text) == seconds


@pytest.mark.parametrize("text", ["abc", "1:2:3:4", "-5", "1-", "4h"])
def test_parse_slurm_duration_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError):
        parse.parse_slurm_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "UNLIMITED"), (0, "00:00:00"), (1800, "00:30:00"), (14400, "04:00:00"),
     (86400, "1-00:00:00"), (3 * 86400 + 3661, "3-01:01:01")],
)
def test_format_slurm_duration_round_trips(seconds: int | None, text: str) -> None:
    assert parse.format_slurm_duration(seconds) == text
    assert parse.parse_slurm_duration(text) == seconds


def test_exit_codes() -> None:
    assert parse.parse_exit_code("0:1") == ExitStatus(0, 1)
    assert parse.parse_exit_code("3:0") == ExitStatus(3, 0)
    assert parse.parse_exit_code("768") == ExitStatus(3, 0)  # raw wait status (squeue -O)
    assert parse.parse_exit_code("9") == ExitStatus(0, 9)
    assert parse.parse_exit_code("N/A") is None
    assert str(ExitStatus(0, 15)) == "0:15" and not ExitStatus(0, 15).ok


def test_job_state_spellings() -> None:
    assert JobState.from_slurm("CANCELLED by 1000") is JobState.CANCELLED
    assert JobState.from_slurm("PD") is JobState.PENDING
    assert JobState.from_slurm("OOM") is JobState.OUT_OF_MEMORY
    assert JobState.from_slurm("OUT_OF_ME+") is JobState.UNKNOWN  # truncated: never from -P
    assert JobState.from_slurm("") is JobState.UNKNOWN
    assert JobState.TIMEOUT.is_finished and JobState.COMPLETING.is_active


# --- GRES --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "entries"),
    [
        ("gpu:8(S:0-1)", [GresEntry("gpu", None, 8)]),
        ("gpu:a100:2(S:2,5)", [GresEntry("gpu", "a100", 2)]),
        ("gpu:nvidia_h100_80gb_hbm3_3g.40gb:4(S:0-3)",
         [GresEntry("gpu", "nvidia_h100_80gb_hbm3_3g.40gb", 4)]),
        ("gpu:2", [GresEntry("gpu", None, 2)]),
        ("(null)", []),
        ("gpu:a100:4,gpu:v100:2", [GresEntry("gpu", "a100", 4), GresEntry("gpu", "v100", 2)]),
        ("gpu:tesla:2(IDX:0-1)", [GresEntry("gpu", "tesla", 2)]),
        ("gpu:a100:0(IDX:N/A)", [GresEntry("gpu", "a100", 0)]),
        ("gpu:(null):0", [GresEntry("gpu", None, 0)]),
        ("gpu", [GresEntry("gpu", None, 1)]),
        ("gpu:a100:2(S:0),mps:400,shard:8", [GresEntry("gpu", "a100", 2), GresEntry("mps", None, 400),
                                             GresEntry("shard", None, 8)]),
    ],
)
def test_parse_gres(text: str, entries: list[GresEntry]) -> None:
    assert list(parse.parse_gres(text)) == entries


def test_gpu_count_ignores_other_gres() -> None:
    entries = parse.parse_gres("gpu:a100:4,gpu:v100:2,mps:400")
    assert parse.gpu_count(entries) == 6
    assert parse.gpu_types(entries) == ("a100", "v100")


# --- partitions --------------------------------------------------------------


def test_partitions_local_22_05() -> None:
    rows = parse.parse_sinfo(read("sinfo_22.05_local.txt"))
    assert [(r.partition, r.is_default) for r in rows] == [("cpu", True), ("gpu", False)]
    partitions = parse.merge_partitions(
        rows,
        parse.parse_scontrol_partitions(read("scontrol_partition_22.05_local.txt")),
        parse.parse_gres_usage(read("sinfo_gres_usage_22.05_local.txt")),
    )
    cpu, gpu = partitions
    assert cpu.name == "cpu" and cpu.is_default and cpu.max_time == 86400
    assert gpu.name == "gpu" and not gpu.is_default and gpu.max_time == 14400
    assert gpu.default_time is None and gpu.state is PartitionState.UP
    assert gpu.gpus_per_node == 2 and gpu.gpu_types == () and gpu.gpus_free == 2
    assert gpu.cpus_per_node == 2 and gpu.memory_mb_per_node > 1000
    assert gpu.allow_accounts is None and gpu.allow_qos is None and gpu.allows_account("x")


def test_partitions_site_24_05() -> None:
    partitions = {
        p.name: p
        for p in parse.merge_partitions(
            parse.parse_sinfo(read("sinfo_24.05_site.txt")),
            parse.parse_scontrol_partitions(read("scontrol_partition_23.11_site.txt")),
            parse.parse_gres_usage(read("sinfo_gres_usage_23.02_site.txt")),
        )
    }
    assert list(partitions) == ["cpu", "gpu-a100", "gpu-h100-mig", "mixed", "legacy", "debug", "maint"]
    cpu = partitions["cpu"]
    assert cpu.is_default and cpu.default_time == 3600 and cpu.gpus_per_node == 0
    assert cpu.node_count == 120 and cpu.cpus_per_node == 64 and cpu.memory_mb_per_node == 257000
    a100 = partitions["gpu-a100"]
    # Two node groups (8-GPU and "64+" CPU 4-GPU nodes): sizes are the largest node's.
    assert a100.node_count == 28 and a100.gpus_per_node == 8 and a100.cpus_per_node == 128
    assert a100.gpu_types == ("a100",) and a100.max_time == 2 * 86400
    assert a100.gpus_free == 3 + 0 + 8  # drained and down nodes' GPUs are not free
    assert a100.allow_accounts == ("vision", "nlp") and a100.allow_qos == ("normal", "long")
    assert not a100.allows_account("physics") and a100.allows_qos("long")
    mig = partitions["gpu-h100-mig"]
    assert mig.gpu_types == ("nvidia_h100_80gb_hbm3_3g.40gb",) and mig.gpus_per_node == 4
    assert mig.max_time == 12 * 3600 and mig.default_time is None and mig.gpus_free == 0
    mixed = partitions["mixed"]
    assert mixed.max_time is None and mixed.gpus_per_node == 6 and mixed.gpu_types == ("a100", "v100")
    assert mixed.gpus_free == 5
    legacy = partitions["legacy"]
    assert legacy.state is PartitionState.DOWN and not legacy.is_usable
    assert legacy.max_time == 1800 and legacy.default_time == 300 and legacy.gpu_types == ("tesla",)
    assert partitions["debug"].state is PartitionState.INACTIVE
    assert partitions["debug"].max_time == 2 * 86400 + 12 * 3600
    maint = partitions["maint"]
    assert maint.state is PartitionState.DRAIN and maint.max_time is None and maint.node_count == 0
    assert maint.allow_accounts == ("admin",)


def test_sinfo_alone_still_gives_default_and_limits() -> None:
    # Without scontrol (e.g. it failed), sinfo's "*" and times are used.
    partitions = parse.merge_partitions(parse.parse_sinfo(read("sinfo_24.05_site.txt")), {})
    by_name = {p.name: p for p in partitions}
    assert by_name["cpu"].is_default and not by_name["mixed"].is_default
    assert by_name["mixed"].max_time is None and by_name["legacy"].default_time == 300
    assert by_name["debug"].state is PartitionState.INACTIVE and by_name["cpu"].gpus_free is None


def test_sinfo_line_with_wrong_field_count_is_an_error() -> None:
    with pytest.raises(ValueError):
        parse.parse_sinfo("cpu*|up|1-00:00:00\n")


def test_key_values_keep_commands_with_spaces() -> None:
    fields = parse.parse_key_values(
        "JobId=5 JobName=a b Command=/x/run me.sh --flag WorkDir=/tmp TRES=cpu=1,mem=1G Power="
    )
    assert fields["JobName"] == "a b" and fields["Command"] == "/x/run me.sh --flag"
    assert fields["TRES"] == "cpu=1,mem=1G" and fields["Power"] == ""


# --- queue -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "terms"),
    [
        ("afterok:15(failed)", [Dependency("afterok", "15", "failed")]),
        ("afterok:1(unfulfilled),afterany:2",
         [Dependency("afterok", "1", "unfulfilled"), Dependency("afterany", "2", None)]),
        ("afterok:1:2", [Dependency("afterok", "1", None), Dependency("afterok", "2", None)]),
        ("singleton(unfulfilled)", [Dependency("singleton", None, "unfulfilled")]),
        ("after:812345+10(unfulfilled)?afternotok:7(fulfilled)",
         [Dependency("after", "812345", "unfulfilled"), Dependency("afternotok", "7", "fulfilled")]),
        ("afterany:3_*(unfulfilled)", [Dependency("afterany", "3_*", "unfulfilled")]),
        ("(null)", []),
        ("", []),
    ],
)
def test_parse_dependency(text: str, terms: list[Dependency]) -> None:
    assert list(parse.parse_dependency(text)) == terms


def test_squeue_local_22_05() -> None:
    entries = {e.job_id: e for e in parse.parse_squeue(read("squeue_22.05_local.txt"))}
    failed = entries["27"]
    assert failed.state is JobState.FAILED and failed.reason == "NonZeroExitCode"
    assert failed.name == "hpcw demo|fail"  # the name is last: "|" and spaces are harmless
    never = entries["28"]
    assert never.state is JobState.PENDING and never.reason == "DependencyNeverSatisfied"
    assert never.dependency_raw == "afterok:27(failed)"
    assert never.dependencies == (Dependency("afterok", "27", "failed"),)
    assert never.dependency_never_satisfied and never.start_time is None and never.nodelist == ""
    waiting = entries["30"]
    assert waiting.reason == "Dependency" and not waiting.dependency_never_satisfied
    assert entries["29"].reason == "JobHeldUser" and entries["29"].time_limit == 1800
    assert entries["29"].partition == "gpu"
    running = entries["26"]
    assert running.state is JobState.RUNNING and running.reason is None and running.nodelist == "vm"
    assert running.elapsed == 7 and running.time_limit == 86400 and running.user == "root"
    assert running.start_time == datetime(2026, 11, 22, 4, 24, 58)
    assert running.dependency_raw is None and running.dependencies == ()
    assert entries["6"].state is JobState.COMPLETED and entries["8"].state is JobState.CANCELLED


def test_squeue_site_24_05() -> None:
    entries = {e.job_id: e for e in parse.parse_squeue(read("squeue_24.05_site.txt"))}
    train = entries["812345"]
    assert train.elapsed == 86400 + 2 * 3600 + 3 * 60 + 4 and train.time_limit == 3 * 86400
    assert train.node_count == 2 and train.nodelist == "gpu[03-04]"
    assert entries["812346"].start_time == datetime(2026, 3, 4, 8, 0)  # pending estimate
    assert entries["812347"].dependencies == (Dependency("afterok", "812340", "failed"),)
    assert entries["812347"].dependency_never_satisfied
    both = entries["812348"]
    assert [d.job_id for d in both.dependencies] == ["812345", "812346"]
    assert both.time_limit is None
    ddp = entries["812349"]
    assert ddp.reason == "ReqNodeNotAvail, Reserved for maintenance" and ddp.name == "ddp run|4 nodes"
    assert ddp.partition == "gpu-a100,gpu-h100-mig"
    assert entries["812350_[2-4]"].dependencies == (Dependency("singleton", None, "unfulfilled"),)
    states = {job_id: e.state for job_id, e in entries.items()}
    assert states["812350_1"] is JobState.COMPLETING
    assert states["812351"] is JobState.SUSPENDED
    assert states["812352"] is JobState.OUT_OF_MEMORY
    assert states["812353"] is JobState.TIMEOUT
    assert states["812354"] is JobState.NODE_FAIL
    assert states["812355"] is JobState.PREEMPTED
    assert states["812356"] is JobState.REQUEUED
    assert entries["812357"].time_limit == 300


# --- finished jobs -----------------------------------------------------------


def test_sacct_completion_local_22_05() -> None:
    jobs = {j.job_id: j for j in parse.parse_sacct(read("sacct_completion_22.05_local.txt"),
                                                   FinishedSource.SACCT_COMPLETION)}
    assert jobs["7"].state is JobState.FAILED and jobs["7"].exit_status == ExitStatus(3, 0)
    assert jobs["7"].source is FinishedSource.SACCT_COMPLETION and jobs["7"].nodelist == "vm"
    assert jobs["4"].state is JobState.CANCELLED and jobs["4"].nodelist is None
    assert jobs["7"].start_time == datetime(2026, 11, 22, 4, 19, 28) and jobs["7"].elapsed == 0
    # jobcomp/filetxt splits a job name with spaces: the state is lost (the
    # client then asks scontrol), the line must still parse.
    assert jobs["27"].state is JobState.UNKNOWN and jobs["27"].exit_status == ExitStatus(3, 0)


def test_sacct_site_23_11() -> None:
    jobs = {j.job_id: j for j in parse.parse_sacct(read("sacct_23.11_site.txt"))}
    assert jobs["812340"].state is JobState.FAILED and jobs["812340"].exit_status == ExitStatus(1, 0)
    assert jobs["812341"].state is JobState.CANCELLED and jobs["812341"].exit_status == ExitStatus(0, 15)
    assert jobs["812342"].state is JobState.TIMEOUT and jobs["812342"].elapsed == 3 * 86400 + 16
    assert jobs["812343"].state is JobState.OUT_OF_MEMORY
    assert jobs["812344"].state is JobState.NODE_FAIL
    assert jobs["812345"].state is JobState.COMPLETED and jobs["812345"].exit_status.ok
    assert jobs["812346"].start_time is None and jobs["812346"].nodelist == "None assigned"
    assert jobs["812347"].start_time is None and jobs["812347"].name == "never ran"
    assert jobs["812348"].state is JobState.PREEMPTED
    assert jobs["812350_3"].name == "sweep|3"


def test_scontrol_job() -> None:
    job = parse.parse_scontrol_job(read("scontrol_job_22.05_failed.txt"))
    assert job is not None and job.state is JobState.FAILED and job.exit_status == ExitStatus(3, 0)
    assert job.source is FinishedSource.SCONTROL and job.elapsed == 0
    pending = parse.parse_scontrol_job(read("scontrol_job_22.05_pending_dep.txt"))
    assert pending is not None and pending.state is JobState.PENDING and pending.start_time is None
    assert parse.parse_scontrol_job("") is None


# --- sbatch ------------------------------------------------------------------


def test_sbatch_parsable() -> None:
    assert parse.parse_sbatch_parsable("42\n") == "42"
    assert parse.parse_sbatch_parsable("42;cluster-a\n") == "42"
    with pytest.raises(ValueError):
        parse.parse_sbatch_parsable("Submitted batch job\n")


def test_test_only() -> None:
    result = parse.parse_test_only(read("sbatch_test_only_22.05.stderr"))
    assert result is not None and result.partition == "gpu" and result.nodes == "vm"
    assert result.start_time == datetime(2026, 11, 22, 4, 25, 16) and result.processors == 1
    other = parse.parse_test_only(
        "sbatch: Job 5 to start at 2026-11-23T04:16:28 using 1 processors on nodes vm in partition cpu"
    )
    assert other is not None and other.job_id == "5" and other.partition == "cpu"
    assert parse.parse_test_only("nothing here") is None


REFUSALS = {
    "unknown_partition_22.05": (slurm_errors.UnknownPartition, "nope"),
    "unknown_partition_23.11": (slurm_errors.UnknownPartition, "gpu-h200"),
    "time_limit_22.05": (slurm_errors.TimeLimitExceeded, "time limit"),
    "gres_count_22.05": (slurm_errors.NodeConfigUnavailable, "GPUs"),
    "gpus_22.05": (slurm_errors.NodeConfigUnavailable, "GPUs"),
    "gres_name_22.05": (slurm_errors.InvalidGres, "generic resource"),
    "memory_22.05": (slurm_errors.MemoryUnavailable, "memory"),
    "memory_task_slurm_errno": (slurm_errors.MemoryUnavailable, "memory"),
    "cpus_22.05": (slurm_errors.TooManyCpus, "CPUs"),
    "nodes_22.05": (slurm_errors.TooManyCpus, "CPUs"),
    "account_slurm_errno": (slurm_errors.InvalidAccount, "account"),
    "qos_slurm_errno": (slurm_errors.InvalidQos, "QoS"),
    "policy_slurm_errno": (slurm_errors.AccountingPolicy, "limit"),
    "partition_inactive_slurm_errno": (slurm_errors.PartitionUnavailable, "inactive"),
    "dependency_slurm_errno": (slurm_errors.InvalidDependency, "dependency"),
    "unmapped_slurm_errno": (slurm_errors.SlurmRefused, "Requested reservation is invalid"),
    "controller_down_22.05": (slurm_errors.SlurmUnavailable, "did not answer"),
}


def test_every_recorded_refusal_is_covered() -> None:
    recorded = {p.stem for p in (DATA / "sbatch_refusals").glob("*.stderr")}
    assert recorded == set(REFUSALS)


@pytest.mark.parametrize("name", sorted(REFUSALS))
def test_refusal_mapping(name: str) -> None:
    expected_class, words = REFUSALS[name]
    stderr = (DATA / "sbatch_refusals" / f"{name}.stderr").read_text()
    error = slurm_errors.refusal_from_stderr(stderr)
    assert type(error) is expected_class
    assert isinstance(error, UserError)
    line = error.one_line()
    assert words in line and "\n" not in line
    assert error.hint  # every refusal says what to do
    if isinstance(error, slurm_errors.SlurmRefused):
        assert error.slurm_message in stderr and "error" in error.slurm_message


def test_unmapped_refusal_keeps_slurm_text_and_drops_warnings() -> None:
    stderr = (DATA / "sbatch_refusals" / "unmapped_slurm_errno.stderr").read_text()
    error = slurm_errors.refusal_from_stderr(stderr)
    assert error.cause == "unknown"
    assert error.message == "Slurm refused the job: Requested reservation is invalid"


def test_controller_down_is_detected() -> None:
    assert slurm_errors.is_controller_unreachable(read("controller_down_sinfo_22.05.stderr"))
    assert not slurm_errors.is_controller_unreachable(read("squeue_forgotten_id_22.05.stderr"))


def test_sacctmgr_associations() -> None:
    associations = parse.parse_sacctmgr_associations(read("sacctmgr_assoc_23.11.txt"))
    assert [(a.account, a.partition, a.qos, a.default_qos) for a in associations] == [
        ("vision", None, ("long", "normal"), "normal"),
        ("nlp", "gpu-a100", ("normal",), None),
    ]

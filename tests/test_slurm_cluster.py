"""SlurmClient against the real local Slurm 22.05 cluster (never skipped).

The cluster is shared with other test modules, so every check looks only at
this module's own jobs, jobs are tiny (1 CPU, 64 MB), waits poll a condition
with a deadline, and every job left pending is cancelled at the end.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import wait_for
from hpcwizard.shell import LocalRunner
from hpcwizard.slurm import (
    FinishedSource,
    JobState,
    NodeConfigUnavailable,
    PartitionState,
    SlurmClient,
    SlurmUnavailable,
    TimeLimitExceeded,
    UnknownPartition,
)
from hpcwizard.slurm.models import Dependency

pytestmark = pytest.mark.timeout(180)





class Jobs:
    """Writes job scripts into tmp_path and remembers every job id to clean up."""

    def __init__(self, client: SlurmClient, directory: Path) -> None:
        self.client = client
        self.directory = directory
        self.ids: list[str] = []
        self._count = 0

    def script(self, body: str, *, name: str = "hpcw-test") -> Path:
        self._count += 1
        path = self.directory / f"job{self._count}.sbatch"
        path.write_text(
            "#!/bin/bash\n"
            f"#SBATCH --job-name={name}\n"
            f"#SBATCH --output={self.directory}/%j.out\n"
            "#SBATCH --cpus-per-task=1\n"
            "#SBATCH --mem=64M\n"
            "#SBATCH --time=2\n"
            f"{body}\n"
        )
        return path

    def submit(self, body: str, *, name: str = "hpcw-test", **options) -> str:
        job_id = self.client.submit(str(self.script(body, name=name)), **options)
        self.ids.append(job_id)
        return job_id

    def state(self, job_id: str) -> JobState | None:
        entries = self.client.queue([job_id])
        return entries[0].state if entries else None


@pytest.fixture
def client(slurm_runner: LocalRunner) -> SlurmClient:
    return SlurmClient(slurm_runner)


@pytest.fixture
def jobs(client: SlurmClient, tmp_path: Path) -> Iterator[Jobs]:
    tracker = Jobs(client, tmp_path)
    try:
        yield tracker
    finally:
        client.cancel(tracker.ids)


def test_partitions_and_limits(client: SlurmClient) -> None:
    partitions = {p.name: p for p in client.partitions()}
    assert {"cpu", "gpu"} <= set(partitions)
    cpu, gpu = partitions["cpu"], partitions["gpu"]
    assert cpu.is_default and not gpu.is_default
    assert cpu.max_time == 86400 and gpu.max_time == 14400
    assert cpu.default_time is None and gpu.default_time is None
    assert cpu.state is PartitionState.UP and gpu.state is PartitionState.UP
    assert gpu.gpus_per_node == 2 and gpu.gpu_types == ()
    assert gpu.gpus_free is not None and 0 <= gpu.gpus_free <= 2
    assert gpu.node_count == 1 and gpu.cpus_per_node >= 1 and gpu.memory_mb_per_node > 0
    assert gpu.allow_accounts is None and gpu.allow_qos is None


def test_afterok_chain_runs_in_order(client: SlurmClient, jobs: Jobs) -> None:
    parent = jobs.submit("sleep 1", name="hpcw-chain-a")
    child = jobs.submit("echo child", name="hpcw-chain-b", dependency=[parent])
    entry = client.queue([child])[0]
    assert entry.dependencies and entry.dependencies[0].kind == "afterok"
    assert entry.dependencies[0].job_id == parent
    wait_for("the chain to complete",
             lambda: jobs.state(child) is JobState.COMPLETED or None)
    a, b = client.finished([parent, child])
    assert a.state is JobState.COMPLETED and b.state is JobState.COMPLETED
    assert a.end_time is not None and b.start_time is not None and b.start_time >= a.end_time
    assert b.exit_status is not None and b.exit_status.ok


def test_dependency_on_failed_job_is_never_satisfied(client: SlurmClient, jobs: Jobs) -> None:
    parent = jobs.submit("exit 3", name="hpcw-fail-a")
    child = jobs.submit("echo never", name="hpcw-fail-b", dependency=[parent])

    def stuck():
        entries = client.queue([child])
        return entries and entries[0].reason == "DependencyNeverSatisfied" and entries[0]

    entry = wait_for("DependencyNeverSatisfied", stuck)
    assert entry.state is JobState.PENDING and entry.dependency_never_satisfied
    assert entry.dependency_raw == f"afterok:{parent}(failed)"
    assert entry.dependencies == (Dependency("afterok", parent, "failed"),)

    (failed,) = client.finished([parent])
    assert failed.state is JobState.FAILED and failed.exit_status is not None
    assert failed.exit_status.code == 3
    # No slurmdbd here: the jobcomp/filetxt fallback answered, and is remembered.
    assert failed.source is FinishedSource.SACCT_COMPLETION
    assert client._finished_source is FinishedSource.SACCT_COMPLETION

    client.cancel([child])
    wait_for("the cancelled job", lambda: jobs.state(child) is JobState.CANCELLED or None)


def test_hold_then_release(client: SlurmClient, jobs: Jobs) -> None:
    held = jobs.submit("echo released", name="hpcw-held", hold=True)
    entry = client.queue([held])[0]
    assert entry.state is JobState.PENDING and entry.reason and entry.reason.startswith("JobHeld")
    client.release([held])
    wait_for("the released job to complete", lambda: jobs.state(held) is JobState.COMPLETED or None)

    later = jobs.submit("echo later", name="hpcw-later", extra_args=["--begin=now+3600"])
    client.hold([later])
    reason = client.queue([later])[0].reason
    assert reason is not None and reason.startswith("JobHeld")
    client.release([later])
    assert not (client.queue([later])[0].reason or "").startswith("JobHeld")


def test_queue_filters_and_forgotten_ids(client: SlurmClient, jobs: Jobs) -> None:
    mine = jobs.submit("echo x", name="hpcw-filter-me", hold=True)
    by_prefix = client.queue(me=True, name_prefix="hpcw-filter")
    assert [e.job_id for e in by_prefix] == [mine]
    assert by_prefix[0].user  # squeue's user column
    assert client.queue(["999999"]) == []  # squeue exits 1 for an id it forgot
    assert [e.job_id for e in client.queue([mine, "999999"])] == [mine]
    client.cancel([mine, "999999"])  # an unknown id is nothing to cancel
    wait_for("the cancelled job", lambda: jobs.state(mine) is JobState.CANCELLED or None)


def test_test_only_predicts_a_start(client: SlurmClient, jobs: Jobs) -> None:
    result = client.test_only(str(jobs.script("echo x")), extra_args=["--partition=gpu"])
    assert result.start_time is not None and result.partition == "gpu"
    assert result.nodes and re.fullmatch(r"\d+", result.job_id)


@pytest.mark.parametrize(
    ("extra_args", "error_class", "words"),
    [
        (["--partition=gpu", "--gres=gpu:3"], NodeConfigUnavailable, "GPUs"),
        (["--partition=no-such-partition"], UnknownPartition, "no-such-partition"),
        (["--partition=gpu", "--time=5:00:00"], TimeLimitExceeded, "time limit"),
    ],
)
def test_refused_submissions_are_mapped(client: SlurmClient, jobs: Jobs, extra_args, error_class,
                                        words) -> None:
    with pytest.raises(error_class) as caught:
        jobs.submit("echo never", extra_args=extra_args)
    line = caught.value.one_line()
    assert words in line and caught.value.hint and "Traceback" not in line
    assert "sbatch: error:" in caught.value.slurm_message


def test_finished_reports_jobs_the_controller_forgot_as_unknown(client: SlurmClient,
                                                                jobs: Jobs) -> None:
    ok = jobs.submit("true", name="hpcw-done")
    # A name with a space: jobcomp/filetxt cannot parse it back; scontrol answers.
    bad = jobs.submit("exit 2", extra_args=["--job-name=hpcw fails here"])  # argv: no quoting
    wait_for("both jobs to finish", lambda: all(
        e.state.is_finished for e in client.queue([ok, bad])) and len(client.queue([ok, bad])) == 2)
    done, failed, unknown = client.finished([ok, bad, "999999"])
    assert done.state is JobState.COMPLETED and done.exit_status is not None and done.exit_status.ok
    assert failed.state is JobState.FAILED and failed.exit_status is not None
    assert failed.exit_status.code == 2 and failed.source is FinishedSource.SCONTROL
    assert unknown.state is JobState.FINISHED_UNKNOWN and unknown.source is FinishedSource.NONE


def test_sacctmgr_without_slurmdbd_means_unknown(client: SlurmClient) -> None:
    assert client.associations() is None
    assert client.default_account() is None


def test_down_controller_is_a_user_error(slurm_conf: str, tmp_path: Path) -> None:
    # The same cluster config pointing at a port nobody listens on.
    conf = Path(slurm_conf).read_text()
    down = tmp_path / "slurm.conf"
    down.write_text(re.sub(r"(?m)^SlurmctldPort=.*$", "SlurmctldPort=9", conf))
    client = SlurmClient(LocalRunner(extra_env={"SLURM_CONF": str(down)}), timeout=2)
    with pytest.raises(SlurmUnavailable) as caught:
        client.partitions()
    assert "did not answer" in caught.value.one_line()
    with pytest.raises(SlurmUnavailable):
        client.queue(me=True)
    # Given time, the client itself gives up (~9 s) and its own words reach the user.
    patient = SlurmClient(LocalRunner(extra_env={"SLURM_CONF": str(down)}), timeout=30)
    with pytest.raises(SlurmUnavailable) as caught:
        patient.partitions(free_gpus=False)
    assert "Unable to contact slurm controller" in caught.value.one_line()

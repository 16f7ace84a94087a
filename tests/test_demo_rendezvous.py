"""The demo trainer's rendezvous: real processes joined over real TCP, no torch.

hpcwizard/demo/code_base/train.py takes accelerate's --num_machines,
--machine_rank, --main_process_ip and --main_process_port. These tests run two
ranks as real processes on loopback (rank 0 listening, rank 1 connecting),
and once on the two-node local cluster with `srun -N2`, the machine rank from
$SLURM_NODEID and the main address from the first node's NodeAddr, as a
multi-node job script does. Waits poll the ranks' logs or their exit with a
deadline; nothing sleeps a fixed time.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import wait_for

TRAIN = Path(__file__).resolve().parent.parent / "hpcwizard" / "demo" / "code_base" / "train.py"
# A loaded 2-core CI machine may take seconds to start a Python process.
DEADLINE = 60.0
STEP = re.compile(r"^Steps: .*\| (\d+)/(\d+) \[.*loss=([0-9.]+)\]$", re.M)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def data(tmp_path: Path) -> list[str]:
    """The stand-in frames and base model, as the setup job leaves them."""
    frames, base = tmp_path / "frames", tmp_path / "base"
    frames.mkdir()
    base.mkdir()
    (frames / "f0001.png").write_bytes(b"frame")
    (base / "config.json").write_text('{"model_type": "tiny"}')
    (base / "pytorch_model.bin").write_bytes(b"\0" * 1234)
    return ["--frames", str(frames), "--base-model", str(base)]


class Rank:
    """One trainer process, its output in files (read while it runs)."""

    def __init__(self, folder: Path, rank: int, args: list[str], prefix: tuple[str, ...] = ()) -> None:
        self.rank = rank
        self.out, self.err = folder / f"rank{rank}.out", folder / f"rank{rank}.err"
        with self.out.open("w") as out, self.err.open("w") as err:
            self.process = subprocess.Popen([*prefix, sys.executable, str(TRAIN), *args, "--machine_rank", str(rank)],
                                            stdout=out, stderr=err, env={**os.environ, "HF_HUB_OFFLINE": "1"})

    def log(self) -> str:
        return self.out.read_text()

    def stderr(self) -> str:
        return self.err.read_text()

    def wait(self) -> int:
        try:
            return self.process.wait(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            self.process.kill()
            pytest.fail(f"rank {self.rank} did not end within {DEADLINE:g} s; its log:\n{self.log()}{self.stderr()}")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def ranks():
    """Starts ranks; kills whatever still runs when the test ends."""
    started: list[Rank] = []

    def start(*args, **kwargs) -> Rank:
        rank = Rank(*args, **kwargs)
        started.append(rank)
        return rank

    yield start
    for rank in started:
        rank.kill()


def losses(log: str) -> list[tuple[int, str]]:
    return [(int(step), loss) for step, _total, loss in STEP.findall(log)]


def training_args(tmp_path: Path, data: list[str], port: int, *more: str) -> list[str]:
    return ["--stage", "1", *data, "--output-dir", str(tmp_path / "out"), "--resume-from-checkpoint", "latest",
            "--num_machines", "2", "--main_process_ip", "127.0.0.1", "--main_process_port", str(port), *more]


def test_two_ranks_join_at_rank_0_and_log_the_same_averaged_loss(tmp_path, data, ranks):
    port = free_port()
    args = training_args(tmp_path, data, port, "--max-steps", "5", "--seconds-per-step", "0.05",
                         "--checkpointing-steps", "2")
    # Rank 1 first: it retries until rank 0 listens.
    rank1 = ranks(tmp_path, 1, args)
    rank0 = ranks(tmp_path, 0, args)
    assert (rank0.wait(), rank1.wait()) == (0, 0), rank0.stderr() + rank1.stderr()
    for rank in (rank0, rank1):
        assert f"rank {rank.rank} of 2 joined main at 127.0.0.1:{port}\n" in rank.log()
        assert rank.log().rstrip().endswith("stage 1 finished")
    # Every rank's own loss is 1/(step + stage + rank); all log their mean.
    expected = [(step, f"{(1 / (step + 1) + 1 / (step + 2)) / 2:.4f}") for step in range(1, 6)]
    assert losses(rank0.log()) == losses(rank1.log()) == expected
    # Rank 0 alone wrote the checkpoints, with the averaged losses summed in.
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint-4", "checkpoint-5"]
    assert '"step": 5' in (out / "checkpoint-5" / "state.json").read_text()


def test_a_rank_that_cannot_join_says_so_in_one_line_naming_the_main_address(tmp_path, data, ranks):
    port = free_port()
    args = training_args(tmp_path, data, port, "--rendezvous_timeout", "1")
    alone1 = ranks(tmp_path, 1, args)
    assert alone1.wait() == 1
    assert alone1.stderr() == (f"error: rank 1 of 2 could not join main at 127.0.0.1:{port} within 1 s "
                               "(Connection refused)\n")
    alone0 = ranks(tmp_path, 0, args)
    assert alone0.wait() == 1
    assert alone0.stderr() == f"error: rendezvous timed out after 1 s: rank 1 of 2 never joined main at 127.0.0.1:{port}\n"
    assert alone0.log() == alone1.log() == ""


def test_a_rank_that_dies_mid_training_stops_the_other(tmp_path, data, ranks):
    port = free_port()
    args = training_args(tmp_path, data, port, "--max-steps", "1000", "--seconds-per-step", "0.1")
    rank0, rank1 = ranks(tmp_path, 0, args), ranks(tmp_path, 1, args)
    wait_for("both ranks training", lambda: losses(rank0.log()) and losses(rank1.log()), timeout=DEADLINE)
    rank1.kill()
    assert rank0.wait() == 1
    assert re.fullmatch(rf"error: rank 1 left during step \d+ \(main at 127\.0\.0\.1:{port}\)\n", rank0.stderr())


def test_a_stop_signal_on_one_rank_stops_both_at_the_same_step_and_both_resume_there(tmp_path, data, ranks):
    port = free_port()
    # 300 steps of 0.1 s: the signal comes long before the end, even on a slow machine.
    args = training_args(tmp_path, data, port, "--max-steps", "300", "--seconds-per-step", "0.1",
                         "--checkpointing-steps", "1000")
    rank0, rank1 = ranks(tmp_path, 0, args), ranks(tmp_path, 1, args)
    wait_for("both ranks training", lambda: losses(rank0.log()) and losses(rank1.log()), timeout=DEADLINE)
    rank1.process.send_signal(signal.SIGUSR1)  # the time-limit warning, seen by one machine only
    assert (rank0.wait(), rank1.wait()) == (75, 75), rank0.stderr() + rank1.stderr()
    stopped = re.search(r"stage 1: SIGUSR1 received; saved checkpoint-(\d+) and stopped", rank0.log())
    assert stopped, rank0.log()
    step = int(stopped.group(1))
    assert f"stage 1: SIGUSR1 received; rank 0 saved checkpoint-{step} and stopped" in rank1.log()
    assert losses(rank0.log()) == losses(rank1.log()) and losses(rank0.log())[-1][0] == step
    assert [p.name for p in (tmp_path / "out").iterdir()] == [f"checkpoint-{step}"]

    # The next segment: both read the shared checkpoint and agree where to go on.
    again = training_args(tmp_path, data, port, "--max-steps", "300", "--seconds-per-step", "0",
                          "--checkpointing-steps", "1000")
    (tmp_path / "segment2").mkdir()
    rank0, rank1 = ranks(tmp_path / "segment2", 0, again), ranks(tmp_path / "segment2", 1, again)
    assert (rank0.wait(), rank1.wait()) == (0, 0), rank0.stderr() + rank1.stderr()
    for rank in (rank0, rank1):
        assert f"Resuming from checkpoint {tmp_path / 'out' / f'checkpoint-{step}'}" in rank.log()
        assert f"steps {step}->300" in rank.log()
        assert rank.log().rstrip().endswith("stage 1 finished")
    assert losses(rank0.log()) == losses(rank1.log()) and losses(rank0.log())[0][0] == step + 1


def test_ranks_that_would_resume_from_different_steps_refuse(tmp_path, data, ranks):
    port = free_port()
    (tmp_path / "out" / "checkpoint-2").mkdir(parents=True)
    (tmp_path / "out" / "checkpoint-2" / "state.json").write_text('{"step": 2, "value": 1.0, "stage": 1}')
    args = training_args(tmp_path, data, port)
    rank0 = ranks(tmp_path, 0, args)
    # Rank 1 sees another (empty) folder, as on a machine without the shared file system.
    rank1 = ranks(tmp_path, 1, [*args, "--output-dir", str(tmp_path / "elsewhere")])
    assert (rank0.wait(), rank1.wait()) == (1, 1)
    problem = ("the ranks resume from different steps (rank 0: step 2, rank 1: step 0): "
               "--output-dir must be the same shared folder on every machine")
    assert rank0.stderr() == f"error: {problem}\n"
    assert rank1.stderr() == f"error: rank 1: {problem}\n"


def test_one_machine_trains_without_any_network(tmp_path, data, ranks):
    """The default: no socket at all; it runs in a network namespace whose loopback is down."""
    args = ["--stage", "2", *data, "--output-dir", str(tmp_path / "out"), "--max-steps", "3",
            "--seconds-per-step", "0", "--pretrained-stage1", str(tmp_path / "stage1")]
    (tmp_path / "stage1").mkdir()
    (tmp_path / "stage1" / "weights.json").write_text('{"value": 3.0}')
    single = ranks(tmp_path, 0, args, prefix=("unshare", "--net"))
    assert single.wait() == 0, single.stderr()
    lines = single.log().splitlines()
    assert lines[0] == "stage 2: 1 frames, base model tiny, steps 0->3"
    assert lines[-1] == "stage 2 finished" and "joined" not in single.log()
    assert losses(single.log()) == [(1, "0.3333"), (2, "0.2500"), (3, "0.2000")]


def test_rank_0_that_cannot_listen_says_so_in_one_line(tmp_path, data, ranks):
    with socket.create_server(("", 0)) as taken:
        port = taken.getsockname()[1]
        rank0 = ranks(tmp_path, 0, training_args(tmp_path, data, port))
        assert rank0.wait() == 1
    assert re.fullmatch(rf"error: rank 0 cannot listen on port {port} \(main 127\.0\.0\.1:{port}\): .+\n", rank0.stderr())


# One real 2-node Slurm run: what a multi-node job script does, in one srun line.
SRUN_RANK = (
    'main=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1); '
    'addr=$(scontrol show node "$main" | sed -n "s/.*NodeAddr=\\([^ ]*\\).*/\\1/p"); '
    'exec "$0" "$@" --machine_rank "$SLURM_NODEID" --main_process_ip "$addr" '
    '--main_process_port $((20000 + SLURM_JOB_ID % 10000))'
)


@pytest.mark.slurm
@pytest.mark.timeout(300)
def test_a_two_node_slurm_job_joins_one_rank_per_node_at_the_first_nodes_address(two_node_slurm_conf, tmp_path, data):
    env = {**os.environ, "SLURM_CONF": two_node_slurm_conf, "HF_HUB_OFFLINE": "1"}
    node1 = subprocess.run(["scontrol", "show", "node", "node1"], env=env, capture_output=True, text=True, check=True)
    main_addr = re.search(r"NodeAddr=(\S+)", node1.stdout).group(1)
    name = f"hw-rdzv-{os.getpid()}"
    args = ["--stage", "1", *data, "--output-dir", str(tmp_path / "out"), "--max-steps", "4",
            "--seconds-per-step", "0.05", "--num_machines", "2"]
    submitted = time.monotonic()
    job = subprocess.Popen(["srun", "--job-name", name, "--time", "2", "-N2", "--ntasks-per-node=1",
                            "--output", str(tmp_path / "node%n.out"), "--error", str(tmp_path / "node%n.err"),
                            "bash", "-c", SRUN_RANK, sys.executable, str(TRAIN), *args],
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        logs = [tmp_path / "node0.out", tmp_path / "node1.out"]

        def joined() -> bool:
            return all(log.exists() and " joined main at " in log.read_text() for log in logs)

        wait_for("both ranks joined", joined, timeout=DEADLINE, interval=0.05)
        print(f"submit to both ranks joined: {time.monotonic() - submitted:.2f} s")
        out, err = job.communicate(timeout=DEADLINE)
    finally:
        if job.poll() is None:
            job.kill()
        subprocess.run(["scancel", "--name", name], env=env, capture_output=True, check=False)
    assert job.returncode == 0, err + "".join(p.read_text() for p in tmp_path.glob("node*.err"))
    texts = [log.read_text() for log in logs]
    # Node id 0 is rank 0; both met at node1's NodeAddr on the port derived from the job id.
    joined = [re.search(r"^rank (\d) of 2 joined main at (\S+):(\d+)$", text, re.M) for text in texts]
    assert all(joined), texts
    assert [m.groups() for m in joined] == [("0", main_addr, joined[0].group(3)), ("1", main_addr, joined[0].group(3))]
    assert 20000 <= int(joined[0].group(3)) < 30000
    for text in texts:
        assert text.rstrip().endswith("stage 1 finished")
    assert losses(texts[0]) == losses(texts[1]) and len(losses(texts[0])) == 4


"""The two-node local cluster: real multi-node jobs on one machine (real Slurm, real namespaces).

`scripts/local-slurm` with HPCWIZARD_SLURM_NODES=2 (fixture `two_node_slurm_conf`)
runs node1 and node2, each a slurmd in its own network namespace on one bridge
with the controller. These tests run real jobs across both: one task per node
sees its node id, the first node's NodeAddr (as `scontrol show node` gives it;
the node names do not resolve) takes a TCP connection from the second node,
and a job asking for more nodes than there are is refused. Jobs are tiny, have
a short time limit and are cancelled by name when a test ends; waits are
bounded by srun's own completion (subprocess timeouts), never fixed sleeps.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import LOCAL_SLURM, TWO_NODE_SLURM_DIR, TWO_NODE_SLURM_PORT

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(300)]

# Generous for a loaded 2-core CI machine; a job here takes about a second.
JOB_TIMEOUT = 120.0


@pytest.fixture
def slurm_env(two_node_slurm_conf: str) -> dict[str, str]:
    return {**os.environ, "SLURM_CONF": two_node_slurm_conf}


@pytest.fixture
def job_name(slurm_env: dict[str, str]) -> Iterator[str]:
    """A unique job name; whatever still runs under it is cancelled at the end."""
    name = f"hw2n-{secrets.token_hex(4)}"
    yield name
    subprocess.run(["scancel", "--name", name], env=slurm_env, capture_output=True, check=False)


def srun(slurm_env: dict[str, str], job_name: str, *args: str) -> subprocess.CompletedProcess[str]:
    """srun on both nodes, one task each, labelled with the task id; waits for the job's end."""
    return subprocess.run(
        ["srun", "--job-name", job_name, "--time", "2", "-N2", "--ntasks-per-node=1", "--label", *args],
        env=slurm_env, capture_output=True, text=True, timeout=JOB_TIMEOUT, check=False,
    )


def by_task(stdout: str) -> dict[int, str]:
    """srun --label output, one line per task: {task id: its line}."""
    lines = {}
    for line in stdout.splitlines():
        label, _, text = line.partition(": ")
        lines[int(label)] = text
    return lines


def node_addr(slurm_env: dict[str, str], node: str) -> str:
    shown = subprocess.run(["scontrol", "show", "node", node], env=slurm_env,
                           capture_output=True, text=True, check=True).stdout
    found = re.search(r"\bNodeAddr=(\S+)", shown)
    assert found, shown
    return found.group(1)


def test_one_task_per_node_sees_its_node_id(slurm_env, job_name):
    done = srun(slurm_env, job_name, "bash", "-c",
                'echo "$SLURM_NODEID $SLURMD_NODENAME $SLURM_JOB_NUM_NODES $SLURM_JOB_NODELIST"')
    assert done.returncode == 0, done.stderr
    tasks = by_task(done.stdout)
    assert sorted(tasks.values()) == ["0 node1 2 node[1-2]", "1 node2 2 node[1-2]"], done.stdout


def test_each_node_has_two_gpus_of_its_own(slurm_env, job_name):
    done = srun(slurm_env, job_name, "--gres=gpu:2", "bash", "-c", 'echo "$SLURMD_NODENAME $CUDA_VISIBLE_DEVICES"')
    assert done.returncode == 0, done.stderr
    assert sorted(by_task(done.stdout).values()) == ["node1 0,1", "node2 0,1"]


# Runs on both nodes: node id 0 listens on its own NodeAddr (as the first node of
# a training would for the rendezvous), node id 1 connects to it, retrying until
# the listener is up, and both report what they saw.
RENDEZVOUS = textwrap.dedent("""\
    import json, os, socket, subprocess, sys, time

    main_addr, port, token = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    shown = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True, check=True).stdout
    local = sorted(line.split()[3].split("/")[0] for line in shown.splitlines())
    if os.environ["SLURM_NODEID"] == "0":
        server = socket.create_server((main_addr, port))
        server.settimeout(60)
        conn, peer = server.accept()
        with conn:
            conn.settimeout(60)
            got = conn.recv(64).decode()
            conn.sendall(b"welcome " + got.encode())
        print(json.dumps({"role": "main", "got": got, "peer": peer[0], "local": local}), flush=True)
    else:
        deadline = time.monotonic() + 60
        while True:
            try:
                conn = socket.create_connection((main_addr, port), timeout=5)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        with conn:
            conn.settimeout(60)
            conn.sendall(token.encode())
            reply = conn.recv(64).decode()
        print(json.dumps({"role": "peer", "reply": reply, "local": local}), flush=True)
""")


def test_the_second_node_reaches_the_first_nodes_address_over_tcp(slurm_env, job_name, tmp_path):
    script = tmp_path / "rendezvous.py"
    script.write_text(RENDEZVOUS)
    main_addr, peer_addr = node_addr(slurm_env, "node1"), node_addr(slurm_env, "node2")
    token = secrets.token_hex(8)
    done = srun(slurm_env, job_name, sys.executable, str(script), main_addr, "29517", token)
    assert done.returncode == 0, done.stdout + done.stderr
    seen = {r["role"]: r for r in map(json.loads, by_task(done.stdout).values())}
    assert seen["main"]["got"] == token and seen["peer"]["reply"] == f"welcome {token}"
    # The connection came from node2's own address, across the bridge: the two
    # tasks live in different network namespaces, each holding only its address.
    assert seen["main"]["peer"] == peer_addr
    assert main_addr in seen["main"]["local"] and main_addr not in seen["peer"]["local"]
    assert peer_addr in seen["peer"]["local"] and peer_addr not in seen["main"]["local"]


def test_a_job_asking_for_three_nodes_is_refused(slurm_env, job_name):
    done = subprocess.run(["sbatch", "--job-name", job_name, "-N3", "--wrap", "true"],
                          env=slurm_env, capture_output=True, text=True, timeout=JOB_TIMEOUT, check=False)
    assert done.returncode != 0
    assert "Node count specification invalid" in done.stderr


def test_the_nodes_do_not_reach_this_machines_loopback(slurm_env, job_name):
    """Two nodes are always offline: a server on this machine's 127.0.0.1 is out of reach."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        probe = ("import socket, sys\n"
                 "try:\n"
                 f"    socket.create_connection(('127.0.0.1', {port}), timeout=5).close(); print('reached')\n"
                 "except OSError as exc:\n"
                 "    print('unreachable', type(exc).__name__)\n")
        done = srun(slurm_env, job_name, sys.executable, "-c", probe)
    assert done.returncode == 0, done.stderr
    assert all(line.startswith("unreachable") for line in by_task(done.stdout).values()), done.stdout


def script_env() -> dict[str, str]:
    """The environment of scripts/local-slurm for this cluster, without the node count:
    stop, status and env find it from the DIR alone."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HPCWIZARD_SLURM_")}
    return {**env, "HPCWIZARD_SLURM_DIR": TWO_NODE_SLURM_DIR, "HPCWIZARD_SLURM_PORT": TWO_NODE_SLURM_PORT}


def test_status_env_and_a_second_start_know_the_two_nodes(two_node_slurm_conf):
    status = subprocess.run([str(LOCAL_SLURM), "status"], env=script_env(), capture_output=True, text=True)
    assert status.returncode == 0, status.stdout + status.stderr
    assert re.search(r"^slurmd node1: running \(pid \d+\)$", status.stdout, re.M)
    assert re.search(r"^slurmd node2: running \(pid \d+\)$", status.stdout, re.M)
    assert "node1 " in status.stdout and "(offline)" in status.stdout
    env = subprocess.run([str(LOCAL_SLURM), "env"], env=script_env(), capture_output=True, text=True, check=True)
    assert env.stdout.strip() == f"export SLURM_CONF={two_node_slurm_conf}"
    again = subprocess.run([str(LOCAL_SLURM), "start"], env={**script_env(), "HPCWIZARD_SLURM_NODES": "2"},
                           capture_output=True, text=True)
    assert again.returncode == 0 and "already running" in again.stdout, again.stdout + again.stderr
    # Asking for one node on the DIR of a running two-node cluster is refused, not mixed.
    other = subprocess.run([str(LOCAL_SLURM), "start"], env=script_env(), capture_output=True, text=True)
    assert other.returncode != 0 and "runs a two-node cluster" in other.stderr
    assert Path(two_node_slurm_conf).read_text().count("NodeHostname=") == 2

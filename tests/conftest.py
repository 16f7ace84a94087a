"""Shared fixtures: the real local Slurm cluster and a runner bound to it."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from hpcwizard.shell import LocalRunner

REPO = Path(__file__).resolve().parent.parent
LOCAL_SLURM = REPO / "scripts" / "local-slurm"
LOCAL_SSHD = REPO / "scripts" / "local-sshd"


@pytest.fixture(scope="session")
def slurm_conf() -> str:
    """Path of the running local cluster's slurm.conf; starts it if needed.

    Cluster tests never skip: a cluster that cannot start is a failure.
    """
    status = subprocess.run([str(LOCAL_SLURM), "status"], capture_output=True, text=True)
    if status.returncode != 0:
        started = subprocess.run([str(LOCAL_SLURM), "start"], capture_output=True, text=True)
        if started.returncode != 0:
            pytest.fail(f"local Slurm cluster did not start: {started.stderr or started.stdout}")
    env = subprocess.run([str(LOCAL_SLURM), "env"], capture_output=True, text=True, check=True)
    conf = env.stdout.strip().split("=", 1)[1].strip("'\"")
    os.environ["SLURM_CONF"] = conf
    return conf


@pytest.fixture
def slurm_runner(slurm_conf: str) -> LocalRunner:
    """A runner whose commands talk to the local cluster."""
    return LocalRunner(extra_env={"SLURM_CONF": slurm_conf})


# The offline cluster (scripts/local-slurm with HPCWIZARD_SLURM_OFFLINE=1): a
# second cluster, next to the normal one, whose node runs in its own network
# namespace and reaches only its controller. Started by this fixture only (never
# by scripts/test), and stopped at the end of the session even when tests fail.
# Unless set, the offline and two-node clusters' folders and ports follow the
# main cluster's (HPCWIZARD_SLURM_DIR/PORT): a second suite on this machine
# with its own main cluster never starts or stops this suite's others (a
# stopped shared offline cluster failed CI with "Protocol authentication error").
_MAIN_SLURM_DIR = os.environ.get("HPCWIZARD_SLURM_DIR", "/tmp/hpcwizard-slurm")
_MAIN_SLURM_PORT = int(os.environ.get("HPCWIZARD_SLURM_PORT", "16817"))
OFFLINE_SLURM_DIR = os.environ.get("HPCWIZARD_SLURM_OFFLINE_DIR", _MAIN_SLURM_DIR + "-offline")
OFFLINE_SLURM_PORT = os.environ.get("HPCWIZARD_SLURM_OFFLINE_PORT", str(_MAIN_SLURM_PORT + 10))


@pytest.fixture(scope="session")
def offline_slurm_conf(request: pytest.FixtureRequest) -> str:
    """Path of the offline cluster's slurm.conf. Does not touch os.environ's SLURM_CONF."""
    env = {
        **os.environ,
        "HPCWIZARD_SLURM_OFFLINE": "1",
        "HPCWIZARD_SLURM_DIR": OFFLINE_SLURM_DIR,
        "HPCWIZARD_SLURM_PORT": OFFLINE_SLURM_PORT,
    }

    def stop() -> None:
        subprocess.run([str(LOCAL_SLURM), "stop"], env=env, capture_output=True, text=True, check=False)

    # Registered before starting, so a half-started cluster is cleaned up too.
    request.addfinalizer(stop)
    started = subprocess.run([str(LOCAL_SLURM), "start"], env=env, capture_output=True, text=True, check=False)
    if started.returncode != 0:
        pytest.fail(f"offline Slurm cluster did not start: {started.stderr or started.stdout}")
    out = subprocess.run([str(LOCAL_SLURM), "env"], env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip().split("=", 1)[1].strip("'\"")


# The two-node cluster (scripts/local-slurm with HPCWIZARD_SLURM_NODES=2): node1
# and node2, each a slurmd in its own network namespace on one bridge with the
# controller, for multi-node jobs. Like the offline cluster: its own DIR and
# ports next to the others, started by this fixture only, stopped at the end.
TWO_NODE_SLURM_DIR = os.environ.get("HPCWIZARD_SLURM_TWO_NODES_DIR", _MAIN_SLURM_DIR + "-2nodes")
TWO_NODE_SLURM_PORT = os.environ.get("HPCWIZARD_SLURM_TWO_NODES_PORT", str(_MAIN_SLURM_PORT + 20))


@pytest.fixture(scope="session")
def two_node_slurm_conf(request: pytest.FixtureRequest) -> str:
    """Path of the two-node cluster's slurm.conf. Does not touch os.environ's SLURM_CONF."""
    env = {
        **os.environ,
        "HPCWIZARD_SLURM_NODES": "2",
        "HPCWIZARD_SLURM_DIR": TWO_NODE_SLURM_DIR,
        "HPCWIZARD_SLURM_PORT": TWO_NODE_SLURM_PORT,
    }

    def stop() -> None:
        subprocess.run([str(LOCAL_SLURM), "stop"], env=env, capture_output=True, text=True, check=False)

    request.addfinalizer(stop)  # before starting: a half-started cluster is cleaned up too
    started = subprocess.run([str(LOCAL_SLURM), "start"], env=env, capture_output=True, text=True, check=False)
    if started.returncode != 0:
        pytest.fail(f"two-node Slurm cluster did not start: {started.stderr or started.stdout}")
    out = subprocess.run([str(LOCAL_SLURM), "env"], env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip().split("=", 1)[1].strip("'\"")


# The local sshd (scripts/local-sshd): the "login node" of remote-mode tests
# (tests/test_remote.py, tests/test_remote_cli.py). Module scope: each module
# starts it (a no-op when running) and stops it when done.


class Sshd:
    """The running local sshd: where its keys and pid file are."""

    def __init__(self, env: dict[str, str]) -> None:
        self.dir = Path(env["HPCWIZARD_SSHD_DIR"])
        self.port = int(env["HPCWIZARD_SSHD_PORT"])
        self.pidfile = Path(env["HPCWIZARD_SSHD_PIDFILE"])
        self.key = env["HPCWIZARD_SSHD_KEY"]
        self.test_user = env["HPCWIZARD_SSHD_TEST_USER"]
        self.known_hosts_line = Path(env["HPCWIZARD_SSHD_KNOWN_HOSTS"]).read_text()
        self.host_pub = self.dir / "etc" / "ssh_host_ed25519_key.pub"
        self.authorized = self.dir / "authorized" / "root"

    @property
    def master_pid(self) -> int:
        return int(self.pidfile.read_text().strip())

    def fingerprint(self) -> str:
        out = subprocess.run(["ssh-keygen", "-lf", str(self.host_pub)], capture_output=True, text=True, check=True)
        return out.stdout.split()[1]


@pytest.fixture(scope="module")
def sshd(slurm_conf: str) -> Iterator[Sshd]:
    started = subprocess.run([str(LOCAL_SSHD), "start"], capture_output=True, text=True, check=False)
    if started.returncode != 0:
        pytest.fail(f"local sshd did not start: {started.stderr or started.stdout}")
    env_out = subprocess.run([str(LOCAL_SSHD), "env"], capture_output=True, text=True, check=True).stdout
    env = {}
    for line in env_out.splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        env[name] = value.strip("'\"")
    try:
        yield Sshd(env)
    finally:
        subprocess.run([str(LOCAL_SSHD), "stop"], capture_output=True, text=True, check=False)



# The local Hub-protocol server and an isolated HF_HOME, for every test module.
from devhub_fixtures import devhub, devhub_root, hf_home  # noqa: E402,F401

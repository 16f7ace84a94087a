"""Shared fixtures: the real local Slurm cluster and a runner bound to it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from hpcwizard.shell import LocalRunner

REPO = Path(__file__).resolve().parent.parent
LOCAL_SLURM = REPO / "scripts" / "local-slurm"


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


# The local Hub-protocol server and an isolated HF_HOME, for every test module.
from devhub_fixtures import devhub, devhub_root, hf_home  # noqa: E402,F401

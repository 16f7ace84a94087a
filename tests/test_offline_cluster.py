"""The offline cluster: jobs on a compute node without network (real Slurm, real namespaces).

`scripts/local-slurm` with HPCWIZARD_SLURM_OFFLINE=1 runs slurmd in its own
network namespace that reaches only the controller (fixture
`offline_slurm_conf`). The same probe job, submitted with sbatch to both
clusters, connects to a TCP server this test runs on 127.0.0.1 and to
pypi.org:443: on the offline cluster both fail (quickly), on the normal cluster
the local server answers. Waits poll the job's state and output file with a
deadline; jobs are tiny (1 CPU, 64 MB) and cancelled when left unfinished.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers import wait_for

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(300)]

# Generous for a loaded 2-core CI machine: the normal cluster is shared with
# other test modules' jobs, so the probe may wait for a free CPU.
JOB_DEADLINE = 150.0
CONNECT_TIMEOUT = 5.0
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"}

# Runs inside the job: one TCP connect per target, each bounded by a timeout;
# prints one JSON line with the outcome and the node's network interfaces.
PROBE = """\
import json, socket, sys, time

targets = json.load(open(sys.argv[1]))
timeout = float(sys.argv[2])
results = {}
for name, (host, port) in targets.items():
    start = time.monotonic()
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            conn.settimeout(timeout)
            results[name] = {"ok": True, "received": conn.recv(128).decode(errors="replace")}
    except OSError as exc:
        results[name] = {"ok": False, "error": repr(exc)}
    results[name]["seconds"] = round(time.monotonic() - start, 3)
interfaces = sorted(name for _, name in socket.if_nameindex())
print("PROBE " + json.dumps({"results": results, "interfaces": interfaces}), flush=True)
"""


class LocalServer:
    """A TCP server on 127.0.0.1 (root namespace) that greets each client with a token."""

    def __init__(self) -> None:
        self.token = secrets.token_hex(8)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:  # TimeoutError from 3.10; on 3.9 only this
                continue
            except OSError:
                return
            with conn:
                try:
                    conn.sendall(self.token.encode())
                except OSError:
                    pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


@dataclass
class ProbeRun:
    job_id: str
    state: str
    exit_code: str
    results: dict
    interfaces: list[str]


@pytest.fixture(scope="module")
def local_server() -> Iterator[LocalServer]:
    server = LocalServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def probe_targets(local_server: LocalServer) -> dict[str, tuple[str, int]]:
    targets = {"local": ("127.0.0.1", local_server.port), "pypi": ("pypi.org", 443)}
    # pypi.org by address too (when this side can resolve it), so a failing name
    # lookup in the job is not the only thing that keeps it from the internet.
    try:
        infos = socket.getaddrinfo("pypi.org", 443, socket.AF_INET, socket.SOCK_STREAM)
    except OSError:
        infos = []
    if infos:
        targets["pypi_ip"] = (infos[0][4][0], 443)
    return targets


def _scontrol_job(conf: str, job_id: str) -> dict[str, str]:
    out = subprocess.run(
        ["scontrol", "-o", "show", "job", job_id],
        env={**os.environ, "SLURM_CONF": conf}, capture_output=True, text=True, check=False,
    )
    return dict(re.findall(r"(\w+)=(\S*)", out.stdout)) if out.returncode == 0 else {}


def run_probe(conf: str, directory: Path, targets: dict[str, tuple[str, int]]) -> ProbeRun:
    """Submit the probe job with sbatch to the cluster of ``conf`` and wait for its result."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "probe.py").write_text(PROBE)
    (directory / "targets.json").write_text(json.dumps(targets))
    script = directory / "probe.sbatch"
    script.write_text(
        "#!/bin/bash\n"
        "#SBATCH --job-name=hpcw-netprobe\n"
        f"#SBATCH --output={directory}/%j.out\n"
        "#SBATCH --cpus-per-task=1\n"
        "#SBATCH --mem=64M\n"
        "#SBATCH --time=2\n"
        f"exec {sys.executable} {directory}/probe.py {directory}/targets.json {CONNECT_TIMEOUT}\n"
    )
    env = {**os.environ, "SLURM_CONF": conf}
    submitted = subprocess.run(["sbatch", "--parsable", str(script)], env=env, capture_output=True, text=True, check=False)
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip().split(";")[0]
    output = directory / f"{job_id}.out"

    def finished() -> dict[str, str] | None:
        info = _scontrol_job(conf, job_id)
        return info if info.get("JobState") in TERMINAL else None

    def probe_line() -> str | None:
        text = output.read_text() if output.exists() else ""
        return next((x for x in text.splitlines() if x.startswith("PROBE ")), None)

    try:
        job = wait_for(f"job {job_id} to finish on {conf}", finished, timeout=JOB_DEADLINE)
        line = wait_for(f"the probe's line in {output}", probe_line, timeout=30)
    finally:
        subprocess.run(["scancel", job_id], env=env, capture_output=True, check=False)
    report = json.loads(line.removeprefix("PROBE "))
    return ProbeRun(job_id, job["JobState"], job.get("ExitCode", ""), report["results"], report["interfaces"])


@pytest.fixture(scope="module")
def offline_probe(offline_slurm_conf: str, probe_targets, tmp_path_factory) -> ProbeRun:
    return run_probe(offline_slurm_conf, tmp_path_factory.mktemp("offline-probe"), probe_targets)


@pytest.fixture(scope="module")
def normal_probe(slurm_conf: str, probe_targets, tmp_path_factory) -> ProbeRun:
    return run_probe(slurm_conf, tmp_path_factory.mktemp("normal-probe"), probe_targets)


def test_a_job_runs_to_completed_on_the_offline_cluster(offline_probe: ProbeRun) -> None:
    assert offline_probe.state == "COMPLETED", offline_probe
    assert offline_probe.exit_code == "0:0", offline_probe
    # It ran in the node's namespace: its own lo and the veth to the controller, nothing else.
    assert "lo" in offline_probe.interfaces
    assert all(name == "lo" or name.startswith("hwz") for name in offline_probe.interfaces), offline_probe.interfaces


def test_an_offline_job_reaches_neither_the_login_side_loopback_nor_the_package_index(offline_probe: ProbeRun) -> None:
    results = offline_probe.results
    assert results["local"]["ok"] is False, results
    for name in ("pypi", "pypi_ip"):
        if name in results:
            assert results[name]["ok"] is False, results
            # Refused at once (no route, no name server), well within the connect timeout.
            assert results[name]["seconds"] < CONNECT_TIMEOUT + 3, results


def test_the_same_probe_on_the_normal_cluster_reaches_the_local_server(
    normal_probe: ProbeRun, offline_probe: ProbeRun, local_server: LocalServer
) -> None:
    assert normal_probe.state == "COMPLETED", normal_probe
    assert normal_probe.results["local"] == {
        "ok": True, "received": local_server.token, "seconds": normal_probe.results["local"]["seconds"],
    }, normal_probe.results
    # Both clusters answered while both were running.
    assert offline_probe.state == "COMPLETED"

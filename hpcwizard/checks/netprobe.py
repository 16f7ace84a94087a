"""Do the compute nodes reach the network? A tiny probe job finds out.

Jobs need no network unless the compute nodes have it (DESIGN.md): a setup
job that downloads (``download: job``) on nodes without internet fails hours
later, in the queue. The probe asks the nodes themselves: one small job on the
plan's SETUP partition (1 CPU, 256M, 2 minutes; the plan's account and QoS)
runs the Python of this hpcwizard installation (the one the jobs call, by
absolute path) with a few lines of ``urllib`` that try, each within a few
seconds and all at once:

- the Hugging Face endpoint hpcwizard uses (``HF_ENDPOINT``, else
  https://huggingface.co);
- the package index pip uses on the login node (``PIP_INDEX_URL``, else the
  ``index-url`` of ``pip config list``, else https://pypi.org/simple);
- the code host: that of the recipe's code repository, else https://github.com.

Any HTTP answer counts as reachable (a 401 from the Hub or a private index is
still the network working); a refused connection, a name that does not
resolve or silence within the timeout does not.

The result is cached in the project, ``<state_dir>/netprobe.json``, per
cluster (``ClusterName`` of ``scontrol show config``) and partition, with its
date; a new probe runs only when asked (``hpcwizard check --probe``), or when
the URLs to try changed. The probe job is NOT part of the project's chain:
its name does not carry the project's job prefix and it is never recorded in
``state.json``, so the dashboard never shows it. Its script, output and
result are scratch files in the state dir, removed once read; a probe still
pending after the wait is cancelled (nothing is left in the queue either).

The token never reaches the probe: hpcwizard removes ``HF_TOKEN`` from every
command's environment (:data:`hpcwizard.shell.SECRET_ENV`), and the script
unsets it again before anything runs. No Textual import here.
"""

from __future__ import annotations

import contextlib
import enum
import json
import re
import secrets
import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from hpcwizard.errors import UserError
from hpcwizard.prepare.pins import DEFAULT_INDEX, pip_indexes
from hpcwizard.project.files import ProjectFiles
from hpcwizard.project.plan import Plan
from hpcwizard.project.state import now_iso
from hpcwizard.shell import Runner
from hpcwizard.slurm import JobState, SlurmClient

if TYPE_CHECKING:
    from hpcwizard.project.home import Project

CACHE_FILE = "netprobe.json"
CACHE_VERSION = 1
#: Not the project's job prefix (``hw-<folder>-<hash>-``): the dashboard and
#: ``status`` never take the probe for a job of the chain.
JOB_NAME = "hpcwizard-netprobe"
JOB_TIME = "00:02:00"
JOB_MEM = "256M"
#: Seconds each target may take to answer, on the node.
TARGET_TIMEOUT = 8.0
#: Seconds the probe may stay PENDING before it is cancelled ("unknown").
PENDING_WAIT = 60.0
#: Seconds a RUNNING probe may take (its own time limit is 2 minutes; the
#: targets are tried in parallel, so it normally ends in ~TARGET_TIMEOUT).
RUNNING_WAIT = 130.0
DEFAULT_CODE_HOST = "https://github.com"

# Directive values cannot be quoted: only plain Slurm names (the plan validated them already).
_SLURM_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")


class TargetKind(str, enum.Enum):
    """What the jobs would fetch from a host."""

    HUB = "hub"
    INDEX = "index"
    CODE = "code"

    def __str__(self) -> str:
        return self.value

    @property
    def words(self) -> str:
        return {TargetKind.HUB: "the Hugging Face endpoint", TargetKind.INDEX: "the package index",
                TargetKind.CODE: "the code host"}[self]


@dataclass(frozen=True)
class Target:
    kind: TargetKind
    url: str  # tried as is (HEAD); credentials already removed

    def describe(self) -> str:
        return f"{self.kind.words} {self.url}"


@dataclass(frozen=True)
class TargetResult:
    kind: TargetKind
    url: str
    reachable: bool
    detail: str  # "HTTP 200", or why not: "[Errno -2] Name or service not known"

    def describe(self) -> str:
        return f"{self.kind.words} {self.url}"


@dataclass(frozen=True)
class ProbeResult:
    """What one probe job found, as cached for its cluster and partition."""

    cluster: str
    partition: str
    probed_at: str  # ISO 8601, local time of the login node
    job_id: str
    node: str
    targets: tuple[TargetResult, ...]

    @property
    def key(self) -> str:
        return cache_key(self.cluster, self.partition)

    @property
    def date(self) -> str:
        """``2025-06-01 14:03``, for messages."""
        try:
            return datetime.fromisoformat(self.probed_at).strftime("%Y-%m-%d %H:%M")
        except ValueError:
            return self.probed_at

    def result_for(self, kind: TargetKind) -> TargetResult | None:
        return next((t for t in self.targets if t.kind is kind), None)

    def covers(self, targets: Sequence[Target]) -> bool:
        """Whether this result answers for exactly these targets (same URLs)."""
        return all((found := self.result_for(t.kind)) is not None and found.url == t.url for t in targets)

    def unreachable(self, kinds: Sequence[TargetKind]) -> list[TargetResult]:
        return [t for t in self.targets if t.kind in kinds and not t.reachable]

    def to_dict(self) -> dict[str, Any]:
        return {"cluster": self.cluster, "partition": self.partition, "probed_at": self.probed_at,
                "job_id": self.job_id, "node": self.node,
                "targets": [{"kind": t.kind.value, "url": t.url, "reachable": t.reachable, "detail": t.detail}
                            for t in self.targets]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProbeResult:
        return cls(str(data["cluster"]), str(data["partition"]), str(data["probed_at"]), str(data["job_id"]),
                   str(data.get("node", "")),
                   tuple(TargetResult(TargetKind(t["kind"]), str(t["url"]), bool(t["reachable"]), str(t["detail"]))
                         for t in data["targets"]))


class ProbeStatus(enum.Enum):
    DONE = "done"  # a result: fresh or cached
    PENDING = "pending"  # the job never started within the wait; cancelled
    FAILED = "failed"  # could not submit, or the job ended without a result
    CANCELLED = "cancelled"  # the caller gave up (the wizard quit); nothing to show
    NOT_PROBED = "not probed"  # no cached result, and none was asked for


@dataclass(frozen=True)
class ProbeAnswer:
    status: ProbeStatus
    result: ProbeResult | None = None
    cached: bool = False
    detail: str = ""  # why not DONE
    job_id: str | None = None
    partition: str = ""


def cache_key(cluster: str, partition: str) -> str:
    return f"{cluster}/{partition}"


# --- what to try -------------------------------------------------------------------

def public_url(url: str) -> str:
    """``url`` without user:password@ (an index URL may carry credentials:
    they must reach neither the probe script nor the cache nor a message)."""
    parts = urlsplit(url.strip())
    if not parts.scheme or not parts.hostname:
        return url.strip().rstrip("/")
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", "")).rstrip("/")


def code_url(recipe: Any) -> str | None:
    """The git URL the recipe clones its code from, if any: ``code: {git: URL}``,
    or the older ``settings: {code_url: URL}``."""
    code = getattr(recipe, "code", None)
    if code is None:
        code = (getattr(recipe, "extra", None) or {}).get("code")
    git = code.get("git") if isinstance(code, dict) else getattr(code, "git", None)
    if isinstance(git, str) and git.strip():
        return git.strip()
    settings = (getattr(recipe, "extra", None) or {}).get("settings") or {}
    url = settings.get("code_url") if isinstance(settings, dict) else None
    return url.strip() if isinstance(url, str) and url.strip() else None


def code_host(recipe: Any) -> str:
    """``https://host`` of the recipe's code repository (GitHub when it has none
    or the URL is not http(s), e.g. ``git@host:x``)."""
    url = code_url(recipe)
    parts = urlsplit(url) if url else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        return DEFAULT_CODE_HOST
    return public_url(f"{parts.scheme}://{parts.netloc}")


def needed_kinds(recipe: Any) -> tuple[TargetKind, ...]:
    """What the plan's jobs would reach: the Hub and the package index always,
    the code host when the recipe clones code."""
    return (TargetKind.HUB, TargetKind.INDEX) + ((TargetKind.CODE,) if code_url(recipe) else ())


# The index pip would use on the login node: PIP_INDEX_URL, else pip's config
# (the same rule as the check of the environment's pins, hpcwizard.prepare.pins,
# but asked THERE: in remote mode the login node's environment and files count).
# $1 is the Python of hpcwizard (its pip reads the same config files).
def index_url(runner: Runner, python: str) -> str:
    """The package index pip would use on the runner's machine (credentials removed)."""
    indexes = pip_indexes(runner, python)
    return public_url(indexes[0]) if indexes else DEFAULT_INDEX


def probe_targets(recipe: Any, runner: Runner, python: str, endpoint: str | None = None) -> tuple[Target, ...]:
    """The three targets, as the login node would name them. The code host is
    tried whatever the recipe needs, so one cached result serves every recipe."""
    from hpcwizard.checks.hub import default_endpoint

    hub = public_url(default_endpoint(endpoint))
    return (Target(TargetKind.HUB, hub), Target(TargetKind.INDEX, index_url(runner, python)),
            Target(TargetKind.CODE, code_host(recipe)))


def cluster_name(runner: Runner) -> str:
    """``ClusterName`` of ``scontrol show config``; "cluster" when it cannot say."""
    try:
        shown = runner.run(["scontrol", "show", "config"], timeout=20)
    except UserError:
        return "cluster"
    for line in shown.stdout.splitlines():
        name, sep, value = line.partition("=")
        if sep and name.strip() == "ClusterName" and value.strip():
            return value.strip()
    return "cluster"


# --- the cache ---------------------------------------------------------------------

def cache_path(project: Project) -> Path:
    return project.state_dir / CACHE_FILE


def load_cache(project: Project) -> dict[str, ProbeResult]:
    """Every cached probe result by ``cluster/partition``; a missing or damaged
    cache is empty (it only saves a 2-minute job)."""
    try:
        data = json.loads(project.files.read_text(cache_path(project)))
        probes = data.get("probes", {}) if isinstance(data, dict) else {}
        return {key: ProbeResult.from_dict(value) for key, value in probes.items()}
    except (OSError, UserError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def save_result(project: Project, result: ProbeResult) -> None:
    """Record ``result`` (atomically, under the cache's own lock: two checks at
    once keep both partitions' results)."""
    files = project.files
    with files.lock(project.state_dir / ".netprobe.lock"):
        cache = load_cache(project)
        cache[result.key] = result
        text = json.dumps({"version": CACHE_VERSION, "probes": {k: v.to_dict() for k, v in sorted(cache.items())}},
                          indent=2, sort_keys=True) + "\n"
        files.write_text_atomic(cache_path(project), text)


def cached_result(project: Project, cluster: str, partition: str) -> ProbeResult | None:
    return load_cache(project).get(cache_key(cluster, partition))


def cached_offline(project: Project, plan: Plan, recipe: Any, runner: Runner) -> ProbeResult | None:
    """The cached probe of the plan's setup partition on this cluster (``plan``
    is a plan of ``project``) when it says the nodes miss something the plan
    needs; None otherwise (no cache: no Slurm call either)."""
    cache = load_cache(project)
    partition = plan.setup.partition
    if not any(result.partition == partition for result in cache.values()):
        return None
    result = cache.get(cache_key(cluster_name(runner), partition))
    return result if result is not None and result.unreachable(needed_kinds(recipe)) else None


# --- the job -------------------------------------------------------------------------

# Runs on the node with the Python of hpcwizard: argv = result file, timeout,
# then kind/url pairs. Every target in its own thread (a name lookup on a node
# without DNS can hang past any socket timeout); what has not answered by the
# deadline is "no answer". The result is written atomically.
PROBE_CODE = """\
import json, os, socket, sys, threading, time, urllib.error, urllib.request
out, timeout, pairs = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
targets = [(pairs[i], pairs[i + 1]) for i in range(0, len(pairs), 2)]
answers = [(False, "no answer within %g s" % timeout)] * len(targets)
def reach(i, url):
    request = urllib.request.Request(url, method="HEAD", headers={"User-Agent": "hpcwizard-netprobe"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            answers[i] = (True, "HTTP %d" % reply.status)
    except urllib.error.HTTPError as exc:
        answers[i] = (True, "HTTP %d" % exc.code)
    except Exception as exc:
        answers[i] = (False, str(getattr(exc, "reason", exc)) or type(exc).__name__)
threads = [threading.Thread(target=reach, args=(i, url), daemon=True) for i, (_, url) in enumerate(targets)]
for thread in threads:
    thread.start()
deadline = time.monotonic() + timeout + 2
for thread in threads:
    thread.join(max(0.0, deadline - time.monotonic()))
found = list(answers)
result = {"node": socket.gethostname(), "targets": [
    {"kind": kind, "url": url, "reachable": ok, "detail": detail}
    for (kind, url), (ok, detail) in zip(targets, found)]}
with open(out + ".tmp", "w") as handle:
    json.dump(result, handle)
    handle.flush()
    os.fsync(handle.fileno())
os.replace(out + ".tmp", out)
"""


def render_probe_script(plan: Plan, python: str, result_file: str, targets: Sequence[Target],
                        timeout: float = TARGET_TIMEOUT) -> str:
    """The probe's batch script: directives from validated names only, every
    other value through :func:`shlex.quote`."""
    directives = {"job-name": JOB_NAME, "partition": plan.setup.partition, "account": plan.account,
                  "qos": plan.qos, "nodes": "1", "ntasks": "1", "cpus-per-task": "1", "mem": JOB_MEM,
                  "time": JOB_TIME}
    lines = ["#!/bin/bash",
             "# hpcwizard: can compute nodes of this partition reach the network the jobs need?",
             "# Written by `hpcwizard check`; removed once its result is read. Not a job of the chain."]
    for name, value in directives.items():
        if value is None:
            continue
        if name in ("partition", "account", "qos") and not _SLURM_NAME.fullmatch(str(value)):
            raise UserError(f"{name} {value!r} is not a plain Slurm name", f"fix {name} in the plan")
        lines.append(f"#SBATCH --{name}={value}")
    lines += ["#SBATCH --no-requeue", "set -u",
              "# The probe needs no token: none may reach it.",
              "unset HF_TOKEN HUGGING_FACE_HUB_TOKEN"]
    argv = [python, "-c", PROBE_CODE, result_file, f"{timeout:g}"]
    for target in targets:
        argv += [target.kind.value, target.url]
    lines.append("exec " + " ".join(shlex.quote(a) for a in argv))
    return "\n".join(lines) + "\n"


def run_probe(project: Project, plan: Plan, runner: Runner, targets: Sequence[Target], python: str, *,
              cluster: str | None = None, wait: float = PENDING_WAIT,
              sbatch_args: Sequence[str] = (), cancelled: Callable[[], bool] | None = None,
              clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> ProbeAnswer:
    """Submit the probe, wait for it, and cache its result.

    ``wait``: seconds it may stay PENDING before it is cancelled (then
    :attr:`ProbeStatus.PENDING`). ``sbatch_args``: extra sbatch options (tests
    hold it with ``--begin=now+1hour``). ``cancelled``: polled between looks at
    the queue; when it says so the job is cancelled. The scratch files are
    removed and an unfinished job cancelled whatever happens (Ctrl-C too).
    ``plan`` is a plan of ``project``, whose state folder holds the scratch
    files and the cache."""
    files = project.files
    partition = plan.setup.partition
    cluster = cluster or cluster_name(runner)
    state_dir = project.state_dir
    stem = state_dir / f".netprobe-{secrets.token_hex(4)}"
    script, result_file, output = (Path(f"{stem}{suffix}") for suffix in (".sh", ".json", ".out"))
    slurm = SlurmClient(runner)
    job_id: str | None = None
    finished = False
    try:
        try:
            text = render_probe_script(plan, python, str(result_file), targets)
        except UserError as exc:
            return ProbeAnswer(ProbeStatus.FAILED, detail=exc.one_line(), partition=partition)
        try:
            files.mkdir_p(state_dir)
            files.write_text_atomic(script, text)
        except (OSError, UserError) as exc:
            why = exc.one_line() if isinstance(exc, UserError) else (exc.strerror or str(exc))
            return ProbeAnswer(ProbeStatus.FAILED, detail=f"cannot write the probe script in {state_dir}: {why}",
                               partition=partition)
        try:
            job_id = slurm.submit(str(script), workdir=str(state_dir),
                                  extra_args=[f"--output={output}", *sbatch_args])
        except UserError as exc:
            return ProbeAnswer(ProbeStatus.FAILED, detail=f"sbatch refused the probe: {exc.message}",
                               partition=partition)
        started = clock()
        pause = 0.5
        state: JobState | None = JobState.PENDING
        while True:
            if cancelled is not None and cancelled():
                return ProbeAnswer(ProbeStatus.CANCELLED, job_id=job_id, partition=partition)
            try:
                entries = slurm.queue([job_id])
            except UserError:
                entries = None  # a slow controller: look again, within the same deadlines
            if entries is not None:
                state = entries[0].state if entries else None  # None: finished and forgotten
            if state is None or state.is_finished:
                finished = True
                break
            waited = clock() - started
            if state is JobState.PENDING and waited > wait:
                return ProbeAnswer(ProbeStatus.PENDING, job_id=job_id, partition=partition,
                                   detail=f"job {job_id} still pending after {wait:g} s in partition {partition}; "
                                          "cancelled")
            if waited > wait + RUNNING_WAIT:
                return ProbeAnswer(ProbeStatus.FAILED, job_id=job_id, partition=partition,
                                   detail=f"job {job_id} did not finish within {wait + RUNNING_WAIT:g} s; cancelled")
            sleep(pause)
            pause = min(pause * 1.5, 2.0)
        found = _read_result(files, result_file, clock, sleep)
        if found is None:
            return ProbeAnswer(ProbeStatus.FAILED, job_id=job_id, partition=partition,
                               detail=f"job {job_id} ended ({state or 'gone'}) without a result"
                                      f"{_last_line(files, output)}")
        result = ProbeResult(cluster, partition, now_iso(), job_id, str(found.get("node", "")),
                             tuple(TargetResult(TargetKind(t["kind"]), str(t["url"]), bool(t["reachable"]),
                                                str(t["detail"])) for t in found["targets"]))
        with contextlib.suppress(UserError, OSError):  # a result not cached is still this check's answer
            save_result(project, result)
        return ProbeAnswer(ProbeStatus.DONE, result, job_id=job_id, partition=partition)
    finally:
        if job_id is not None and not finished:
            with contextlib.suppress(UserError):
                slurm.cancel([job_id])
        for path in (script, result_file, Path(f"{result_file}.tmp"), output):
            with contextlib.suppress(OSError, UserError):
                files.remove(path, missing_ok=True)


def _read_result(files: ProjectFiles, path: Path, clock: Callable[[], float],
                 sleep: Callable[[float], None]) -> dict[str, Any] | None:
    """The job's result file; a few seconds' grace for a shared filesystem
    that shows the file to the login node a little after the job ended."""
    deadline = clock() + 10
    while True:
        try:
            data = json.loads(files.read_text(path))
            if isinstance(data, dict) and isinstance(data.get("targets"), list):
                return data
        except (OSError, UserError, ValueError):
            pass
        if clock() > deadline:
            return None
        sleep(0.5)


def _last_line(files: ProjectFiles, output: Path) -> str:
    try:
        lines = [line.strip() for line in files.read_text(output).splitlines() if line.strip()]
    except (OSError, UserError, UnicodeDecodeError):
        return ""
    return f": {lines[-1][:300]}" if lines else ""


def network_status(project: Project, plan: Plan, recipe: Any, *,
                   endpoint: str | None = None, hpcwizard_cmd: Sequence[str] | None = None,
                   probe: bool = False, use_cache_only: bool = False, wait: float = PENDING_WAIT,
                   sbatch_args: Sequence[str] = (),
                   cancelled: Callable[[], bool] | None = None) -> ProbeAnswer:
    """The compute nodes' network for the plan's setup partition: the cached
    result when it covers the same URLs (unless ``probe``), else a new probe
    (unless ``use_cache_only``: then NOT_PROBED). ``project``: the plan's
    project (the cache is in its state folder; its runner submits the probe)."""
    from hpcwizard.project.render import hpcwizard_command

    runner = project.runner
    if runner is None:
        raise ValueError("network_status needs the project's runner: the machine its jobs are submitted from")
    partition = plan.setup.partition
    if use_cache_only and not any(r.partition == partition for r in load_cache(project).values()):
        return ProbeAnswer(ProbeStatus.NOT_PROBED, partition=partition)  # nothing to look up: no command runs
    python = (list(hpcwizard_cmd) if hpcwizard_cmd else hpcwizard_command())[0]
    cluster = cluster_name(runner)
    targets = probe_targets(recipe, runner, python, endpoint)
    if not probe:
        cached = cached_result(project, cluster, partition)
        if cached is not None and cached.covers(targets):
            return ProbeAnswer(ProbeStatus.DONE, cached, cached=True, job_id=cached.job_id, partition=partition)
    if use_cache_only:
        return ProbeAnswer(ProbeStatus.NOT_PROBED, partition=partition)
    return run_probe(project, plan, runner, targets, python, cluster=cluster, wait=wait,
                     sbatch_args=sbatch_args, cancelled=cancelled)

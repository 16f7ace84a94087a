"""Preflight: everything that would fail hours into a job, checked before submit.

Each check returns :class:`CheckResult` rows (ok / warn / block, each with a
fix). The groups are separate functions so the TUI can run each in its own
worker and fill the table as answers arrive; :func:`run_preflight` runs them
all for ``hpcwizard check``.

- token: found where, valid for whom (never printed);
- access: every repo of the recipe and variant: ok / gated / awaiting / missing;
- space: bytes and files still to download plus unpacked archives plus
  expected outputs, per filesystem, against free space AND quota;
- slurm: partitions exist and are up, time/GPUs/CPUs/memory fit, account and
  QoS allowed, then ``sbatch --test-only`` with the estimated start; whether
  compute nodes reach the network the jobs need (a probe job, cached:
  :mod:`hpcwizard.checks.netprobe`);
- environment: conda-like tool or venv, Lmod, whether the hub is reachable.
"""

from __future__ import annotations

import contextlib
import re
import shlex
import stat
import tarfile
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from hpcwizard.checks import hub
from hpcwizard.checks.quota import probe_quota
from hpcwizard.checks.results import CheckResult, Preflight
from hpcwizard.checks.results import block as _block
from hpcwizard.checks.results import ok as _ok
from hpcwizard.checks.results import warn as _warn
from hpcwizard.checks.space import FreeSpace, Level, assess, free_space
from hpcwizard.errors import UserError
from hpcwizard.prepare.check import check_environment_pins, check_environment_python, check_modules
from hpcwizard.project.files import ProjectFiles
from hpcwizard.project.plan import JobResources, Plan, count_of
from hpcwizard.project.recipe import ResolvedRepo
from hpcwizard.project.render import render
from hpcwizard.project.resolved import ResolvedPlan
from hpcwizard.shell import Runner
from hpcwizard.sizes import human_bytes
from hpcwizard.slurm import PartitionInfo, PartitionState, SlurmClient, format_slurm_duration

if TYPE_CHECKING:
    from hpcwizard.project.home import Project

__all__ = ["CheckResult", "Level", "Preflight", "job_limits", "run_preflight"]


# --- token and access --------------------------------------------------------

@dataclass(frozen=True)
class TokenCheck:
    results: list[CheckResult]
    token: str | None = field(default=None, repr=False)
    user: str | None = None


def check_token(endpoint: str | None = None) -> TokenCheck:
    source = hub.find_token()
    if source is None:
        return TokenCheck([_block(
            "token", "Hugging Face token", "no token found (HF_TOKEN is unset and there is no token file)",
            "run `hpcwizard` and enter a token, or `hf auth login`; make one at https://huggingface.co/settings/tokens")])
    try:
        user = hub.validate_token(source.token, endpoint)
    except UserError as exc:
        return TokenCheck([_block("token", "Hugging Face token", f"token from {source.source}: {exc.message}",
                                  exc.hint or "make a new token at https://huggingface.co/settings/tokens")])
    rows = [_ok("token", "Hugging Face token", f"valid for {user.name}", f"read from {source.source}")]
    loose = loose_token_file()
    if loose is not None:
        rows.append(loose)
    return TokenCheck(rows, source.token, user.name)


def loose_token_file() -> CheckResult | None:
    """A warning when the token file (this machine) is readable by other users."""
    path = hub.token_file_path()
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return None
    if not mode & 0o077:
        return None
    return _warn("token", "token file", f"{path} is readable by other users (mode {mode:o})",
                 f"make it private: chmod 600 {shlex.quote(str(path))}")


def check_job_token(plan: Plan, repos: Iterable[ResolvedRepo]) -> CheckResult | None:
    """The setup job downloads with the token FILE: HF_TOKEN is never passed
    into a job (sbatch would store it with the job). None when nothing to say."""
    if plan.download != "job" or hub.find_token() is None:  # no token at all: the token row says so
        return None
    path = hub.token_file_path()
    try:
        if path.read_text(encoding="utf-8").strip():
            return None
    except (OSError, UnicodeDecodeError):
        pass
    gated = [repo.repo_id for repo in repos if repo.gated]
    message = (f"no token file at {path}, and the setup job reads only that file "
               "(HF_TOKEN is not passed into jobs: Slurm would keep it with the job)")
    fix = "save the token there: run `hpcwizard` (its token step) or `hf auth login`"
    if gated:
        return _block("token", "token for the jobs", f"{message}; {gated[0]} is gated", fix)
    return _warn("token", "token for the jobs", message, fix)


def repo_refs(repos: Iterable[ResolvedRepo]) -> list[hub.RepoRef]:
    return [hub.RepoRef(r.repo_id, r.repo_type) for r in repos]


#: How each refusal reads in the check's table (the enum values are for --json readers).
ACCESS_WORDS = {
    hub.AccessStatus.GATED_NOT_ACCEPTED: "gated, conditions not accepted",
    hub.AccessStatus.AWAITING_APPROVAL: "gated, awaiting the authors' approval",
    hub.AccessStatus.MISSING_OR_NO_ACCESS: "not found, or no access with this token",
    hub.AccessStatus.BAD_TOKEN: "the token was refused",
    hub.AccessStatus.UNREACHABLE: "the Hub did not answer",
}


def check_repo_access(repos: list[ResolvedRepo], token: str | None, endpoint: str | None = None) -> list[CheckResult]:
    results = []
    for access in hub.check_access(repo_refs(repos), token, endpoint):
        name = f"{access.repo.repo_type} {access.repo.repo_id}"
        if access.ok:
            results.append(_ok("access", name, access.detail or "access granted"))
        else:
            words = ACCESS_WORDS.get(access.status, access.status.value)
            results.append(_block("access", name, f"{words}: {access.detail}".rstrip(": "),
                                  access.fix or "check the repo id and your token's permissions"))
    return results


# --- space ---------------------------------------------------------------------

@dataclass(frozen=True)
class SpaceNeed:
    """Bytes and files the plan will still write under one destination path."""

    path: Path
    bytes: int
    files: int
    what: str


def _tar_contents(archive: Path) -> tuple[int, int] | None:
    """Unpacked bytes and members of a local plain tar, read from its headers."""
    if not archive.name.endswith(".tar") or not archive.is_file():
        return None
    try:
        with tarfile.open(archive, "r:") as tar:  # headers only: tarfile seeks past data
            members = tar.getmembers()
    except (OSError, tarfile.TarError):
        return None
    return sum(m.size for m in members), len(members)


# The same header walk, run on the login node in remote mode: one command
# instead of one SFTP round trip per member (a tar of 100k frames has 100k headers).
_TAR_CONTENTS_PY = (
    "import sys, tarfile\n"
    "with tarfile.open(sys.argv[1], 'r:') as t:\n"
    "    m = t.getmembers()\n"
    "print(sum(x.size for x in m), len(m))\n"
)
TAR_CONTENTS_TIMEOUT = 120.0


def _remote_tar_contents(archive: Path, runner: Runner) -> tuple[int, int] | None:
    """:func:`_tar_contents` on the login node (python3 there); None when it
    cannot tell (no python3, not a tar, too slow): the recipe's declared size counts then."""
    if not archive.name.endswith(".tar"):
        return None
    try:
        result = runner.run(["python3", "-c", _TAR_CONTENTS_PY, str(archive)], timeout=TAR_CONTENTS_TIMEOUT)
    except UserError:
        return None
    fields = result.stdout.split()
    if not result.ok or len(fields) != 2 or not all(f.isdigit() for f in fields):
        return None
    return int(fields[0]), int(fields[1])


def space_needs(project: Project, resolved: ResolvedPlan, token: str | None,
                endpoint: str | None = None) -> list[SpaceNeed]:
    """What still has to be written, by destination, from hub metadata and the disk.

    The destinations are in the project's files: in remote mode the download
    manifest, ``.part`` sizes and unpack markers are read on the login node
    over SFTP, and a plain tar's headers are read there by the project's runner."""
    from hpcwizard.download import read_manifest, repo_download_size
    from hpcwizard.download.unpack import is_unpacked

    files, runner = project.files, project.runner
    needs = []
    for repo in resolved.repos:
        # The downloader's own accounting: complete files and usable .part bytes count as done.
        to_fetch, count, _ = repo_download_size(repo, token, endpoint, files)
        needs.append(SpaceNeed(repo.dest, to_fetch, count, f"download of {repo.repo_id}"))
        manifest = read_manifest(repo.dest, files) if repo.archives else None
        for archive in repo.archives:
            present = files.exists(archive.archive)
            # The setup job unpacks with the sha256 the manifest recorded; its marker says so.
            rel = archive.archive.relative_to(repo.dest).as_posix() if archive.archive.is_relative_to(repo.dest) else None
            record = manifest.complete.get(rel) if (manifest and rel) else None
            if present and is_unpacked(archive.archive, archive.into, record.sha256 if record else None, files):
                continue
            if not present:
                measured = None
            elif files.remote:
                measured = _remote_tar_contents(archive.archive, runner) if runner is not None else None
            else:
                measured = _tar_contents(archive.archive)
            size, members = measured if measured else (archive.unpacked_bytes, 0)
            needs.append(SpaceNeed(archive.into, size, members, f"unpacking {archive.archive.name}"))
    outputs = resolved.output_bytes()
    if outputs:
        needs.append(SpaceNeed(resolved.plan.project_home, outputs, 0, "checkpoints and final weights"))
    return needs


# Can this user create files where the folder will be? A real write (an empty
# folder made and removed at once) in the nearest existing parent: `test -w`
# says yes to root on a read-only filesystem or /proc. The path is $1.
_WRITE_PROBE = r"""
p=$1
while [ ! -e "$p" ]; do p=$(dirname -- "$p"); done
if [ ! -d "$p" ]; then echo "$p is a file, not a folder"; exit 3; fi
d=$(mktemp -d "$p/.hpcwizard-write-test.XXXXXX" 2>&1) || { echo "$d"; exit 4; }
rmdir -- "$d"
"""


def check_folders(plan: Plan, runner: Runner) -> list[CheckResult]:
    """The project home and the data root can be written (or created)."""
    results = []
    for what, path in (("project home", plan.project_home), ("data root", plan.data_root)):
        try:
            probe = runner.run(["sh", "-c", _WRITE_PROBE, "sh", str(path)], timeout=30)
        except UserError as exc:
            results.append(_warn("space", f"{what} writable", f"could not test {path}: {exc.message}",
                                 "check the connection to the login node, then check again"))
            continue
        if probe.ok:
            results.append(_ok("space", f"{what} writable", f"{path}"))
            continue
        why = (probe.stdout.strip() or probe.stderr.strip() or f"exit status {probe.returncode}").splitlines()[-1]
        results.append(_block("space", f"{what} writable", f"cannot create files in {path}: {why}",
                              f"choose a {what} you can write (`{'project_home' if what == 'project home' else 'data_root'}` in the plan)"))
    return results


_CHECKPOINT = re.compile(r"checkpoint-(\d+)")
EARLIER_CHECKPOINTS = "earlier checkpoints"  # the row's name: the wizard offers its two fixes on it
NOTHING_TO_TRAIN = "nothing would be trained"
FRESH_START_FOLDER = "old-checkpoints"


@dataclass(frozen=True)
class EarlierCheckpoints:
    """Checkpoints an earlier run left where this plan's training resumes."""

    folder: Path
    latest: int  # the step of the newest checkpoint-N there
    stage: str  # "stage 1", or "training" for a recipe without stages
    steps: int | None  # what the plan trains in that stage; None: not trained by this plan, or unknown
    steps_param: str | None  # the parameter that sets ``steps`` (what "continue" raises)

    @property
    def nothing_to_train(self) -> bool:
        """Training resumes at ``latest`` and stops at once: it is at or beyond the plan's steps."""
        return self.steps is not None and self.latest >= self.steps


def _steps_by_folder(resolved: ResolvedPlan) -> list[tuple[str, int | None, str | None]]:
    """``(stage, steps, steps parameter)`` for each checkpoint folder, in order.

    A recipe with one folder trains once into it; with several, folder N
    belongs to stage N (the recipes list them in stage order). A stage the
    plan does not train (DiffuEraser's ``stages: stage2``) has no steps."""
    from hpcwizard.jobs.estimate import STEPS_PARAM, stage_steps

    folders = resolved.checkpoint_dirs
    planned = stage_steps(resolved.recipe, dict(resolved.params))
    names = {p.name for p in resolved.recipe.parameters}

    def param_of(number: int | None) -> str | None:
        staged = f"stage{number}_{STEPS_PARAM}"
        return staged if number is not None and staged in names else (STEPS_PARAM if STEPS_PARAM in names else None)

    if len(folders) == 1:
        if len(planned) == 1:
            return [(planned[0][0], planned[0][1], param_of(None))]
        return [("training", None, None)]
    by_stage = {name: steps for name, steps in planned}
    return [(f"stage {i}", by_stage.get(f"stage {i}"), param_of(i)) for i in range(1, len(folders) + 1)]


def against_plan(found: list[EarlierCheckpoints], resolved: ResolvedPlan) -> list[EarlierCheckpoints]:
    """``found`` measured against another plan's steps (the wizard's form as it is typed): no disk work."""
    by_folder = dict(zip(resolved.checkpoint_dirs, _steps_by_folder(resolved)))
    return [replace(c, stage=by_folder[c.folder][0], steps=by_folder[c.folder][1], steps_param=by_folder[c.folder][2])
            for c in found if c.folder in by_folder]


def stages_trained(resolved: ResolvedPlan) -> int:
    """How many checkpoint folders the plan trains into."""
    return sum(1 for _, steps, _ in _steps_by_folder(resolved) if steps is not None)


def find_earlier_checkpoints(project: Project, resolved: ResolvedPlan) -> list[EarlierCheckpoints]:
    """The recipe's checkpoint folders that already hold checkpoints (disk work, in the project's files)."""
    files = project.files
    found = []
    for folder, (stage, steps, param) in zip(resolved.checkpoint_dirs, _steps_by_folder(resolved)):
        try:
            names = files.listdir(folder) if files.is_dir(folder) else []
        except (OSError, UserError):
            continue
        numbers = [int(m.group(1)) for name in names if (m := _CHECKPOINT.fullmatch(name))]
        if numbers:
            found.append(EarlierCheckpoints(folder, max(numbers), stage, steps, param))
    return found


def describe_nothing_to_train(found: list[EarlierCheckpoints], project_home: Path, stages_trained: int) -> str:
    """``nothing would be trained: ...``, the words the check, the CLI and the wizard share.
    ``stages_trained``: how many stages the plan trains (fewer stuck ones: it says which)."""
    stuck = [c for c in found if c.nothing_to_train]

    def short(folder: Path) -> str:
        return str(folder.relative_to(project_home)) if folder.is_relative_to(project_home) else str(folder)

    steps = {c.steps for c in stuck}
    one = len(steps) == 1
    where = ", ".join(f"checkpoint-{c.latest} in {short(c.folder)}" + ("" if one else f" ≥ {c.steps} steps")
                      for c in stuck)
    scope = "" if len(stuck) >= stages_trained else " in " + " and ".join(c.stage for c in stuck)
    asked = f"the plan's {steps.pop()} steps" if one else "the plan's steps"
    return f"{NOTHING_TO_TRAIN}{scope}: {asked} are done already ({where})"


def continue_steps(found: list[EarlierCheckpoints]) -> dict[str, int]:
    """"Continue": the step parameters to raise, each to its checkpoint plus the steps asked for now
    (training resumes at the checkpoint and trains that many more)."""
    raised: dict[str, int] = {}
    for c in found:
        if c.nothing_to_train and c.steps_param and c.steps is not None:
            raised[c.steps_param] = max(raised.get(c.steps_param, 0), c.latest + c.steps)
    return raised


def fresh_start_folder(plan: Plan, when: datetime | None = None) -> Path:
    """The dated folder a fresh start moves the old checkpoints into (nothing is deleted)."""
    stamp = (when or datetime.now()).strftime("%Y-%m-%d_%H%M%S")
    return plan.project_home / FRESH_START_FOLDER / stamp


def _fresh_start_fix(plan: Plan, found: list[EarlierCheckpoints]) -> str:
    raise_to = ", ".join(f"{name} to {value} or more" for name, value in continue_steps(found).items())
    keep = f"continue: raise {raise_to} in the plan" if raise_to else "continue: raise the steps in the plan"
    return (f"{keep}; or start fresh: `hpcwizard check --start-fresh PLAN` moves the old checkpoints into "
            f"{plan.project_home / FRESH_START_FOLDER}/<date>/ (nothing is deleted)")


def check_earlier_checkpoints(project: Project, resolved: ResolvedPlan) -> list[CheckResult]:
    """Training resumes from the latest checkpoint it finds: after a finished
    (or abandoned) run in the same project home, a new plan trains nothing
    new up to that step, whatever its settings, and nothing at all when the
    checkpoint is at or beyond its steps: that blocks (the train job would
    "complete" in seconds and convert the old checkpoint)."""
    plan = resolved.plan
    found = find_earlier_checkpoints(project, resolved)
    if not found:
        return []
    if any(c.nothing_to_train for c in found):
        message = describe_nothing_to_train(found, plan.project_home, stages_trained(resolved))
        return [_block("training", EARLIER_CHECKPOINTS, message, _fresh_start_fix(plan, found))]
    newest = max(found, key=lambda c: c.latest)
    return [_warn("training", EARLIER_CHECKPOINTS,
                  f"{newest.folder} has checkpoint-{newest.latest} from an earlier run: training resumes there "
                  f"with this plan's settings (steps up to {newest.latest} are not trained again)",
                  "to train from the start: `hpcwizard check --start-fresh PLAN` moves the old checkpoints into "
                  f"{plan.project_home / FRESH_START_FOLDER}/<date>/ (nothing is deleted)")]


@dataclass(frozen=True)
class MovedAside:
    source: Path
    target: Path
    into: Path  # the dated folder holding everything this fresh start moved


def start_fresh(project: Project, resolved: ResolvedPlan, when: datetime | None = None) -> list[MovedAside]:
    """Move the checkpoint folders that hold checkpoints, and what was converted
    from them, into one dated folder under the project home (``mv``, through
    the project's runner: here or on the login node). Nothing is deleted; a folder that
    cannot be moved stops it with a UserError naming it (what was moved stays moved)."""
    plan = resolved.plan
    files, runner = project.files, project.submit_runner()
    with_checkpoints = [c.folder for c in find_earlier_checkpoints(project, resolved)]
    if not with_checkpoints:
        return []
    converted = [d for d in resolved.converted_dirs if files.exists(d)]
    target_root = fresh_start_folder(plan, when)
    moved = []
    for folder in with_checkpoints + converted:
        try:
            relative = folder.relative_to(plan.project_home)
        except ValueError:  # outside the project home: keep its name only
            relative = Path(folder.name)
        target = target_root / relative
        made = runner.run(["mkdir", "-p", "--", str(target.parent)], timeout=30)
        result = made if not made.ok else runner.run(["mv", "-T", "--", str(folder), str(target)], timeout=600)
        if not result.ok:
            why = (result.stderr.strip() or f"exit status {result.returncode}").splitlines()[-1]
            raise UserError(f"could not move {folder} to {target}: {why}",
                            "move it aside by hand (or free the folder), then check again")
        moved.append(MovedAside(folder, target, target_root))
    return moved


def _and(words: Iterable[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    items = list(words)
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def check_login_download(resolved: ResolvedPlan, *, required: bool) -> CheckResult | None:
    """``download: login``: the setup job only verifies what the login node
    prepared (compute nodes may have no network): files, code, environment.
    A chain submitted before ``hpcwizard prepare`` fails in its first job.
    ``required``: the plan is about to be submitted as it is (``hpcwizard
    check``); the wizard passes False, its Prepare step comes next. None for
    ``download: job`` plans."""
    from hpcwizard.prepare import parts_of

    if resolved.plan.download != "login":
        return None
    parts = parts_of(resolved)
    missing = [part for part in parts if part.problem]
    names = ", ".join(part.name for part in parts)
    if not missing:
        return _ok("space", "prepared", f"prepared on this node: {names}")
    shown = "; ".join(f"{part.name}: {part.problem}" for part in missing)
    if not required:
        # Said once ("to download: 3 not downloaded yet" repeated itself): what, and who does it.
        return _ok("space", "prepare on this node", f"{_and(p.name for p in missing)}: the Prepare step does it next",
                   shown)
    return _block("space", "not prepared", f"download: login, and not prepared yet: {shown}",
                  "run `hpcwizard prepare PLAN` on this login node first (it resumes), or set download: job")


def still_to_write(needs: list[SpaceNeed]) -> CheckResult:
    """The total the plan will still write; what it is made of in the details."""
    total = sum(n.bytes for n in needs)
    count = sum(n.files for n in needs)
    # Checkpoints count bytes, not files (0): "1 MiB in 0 files" said nothing true.
    files_part = f" in {count:,} file{'s' if count != 1 else ''}" if count else ""
    return _ok("space", "still to write",
               f"{human_bytes(total)}{files_part}" if total else "nothing left to download or unpack",
               "; ".join(f"{n.what}: {human_bytes(n.bytes)}" for n in needs if n.bytes))


#: How the space findings are named in the table (the verdict's keys are for code).
_FINDING_NAMES = {"quota-bytes": "quota", "quota-files": "file quota"}


def check_space(project: Project, resolved: ResolvedPlan, token: str | None,
                endpoint: str | None = None) -> list[CheckResult]:
    runner = project.submit_runner()
    try:
        needs = space_needs(project, resolved, token, endpoint)
    except UserError as exc:
        return [_warn("space", "download size", f"could not list the repos' files: {exc.message}",
                      "fix the access rows above; the size check reruns then")]
    by_mount: dict[str, list[SpaceNeed]] = defaultdict(list)
    free_by_mount = {}
    free_by_path: dict[str, FreeSpace] = {}  # several needs share a folder: one df each (a round trip over SSH)
    for need in needs:
        if str(need.path) not in free_by_path:
            free_by_path[str(need.path)] = free_space(runner, str(need.path))
        free = free_by_path[str(need.path)]
        by_mount[free.mount].append(need)
        free_by_mount[free.mount] = (free, need.path)
    results = [still_to_write(needs)]
    for mount, group in by_mount.items():
        free, path = free_by_mount[mount]
        quota = probe_quota(runner, str(path), free=free)
        for finding in assess(sum(n.bytes for n in group), sum(n.files for n in group), free, quota):
            results.append(CheckResult("space", f"{_FINDING_NAMES.get(finding.check, finding.check)} on {mount}",
                                       finding.level,
                                       finding.message, finding.fix or "", gauge=finding.gauge))
    return results


# --- slurm -----------------------------------------------------------------------

def job_limits(kind: str, res: JobResources, part: PartitionInfo, plan: Plan) -> list[CheckResult]:
    """Does ``res`` (the plan's ``kind`` section) fit partition ``part``? The wizard checks as you type."""
    name = f"{kind} on {part.name}"
    results = []
    if part.state != PartitionState.UP:
        results.append(_block("slurm", name, f"partition {part.name} is {part.state.value}",
                              "choose a partition that is up (see `sinfo`)"))
    limit = part.max_time
    if limit is not None and res.time_seconds() > limit:
        results.append(_block("slurm", name, f"time {res.time_text()} exceeds the partition's MaxTime "
                                             f"{format_slurm_duration(limit)}",
                              f"set {kind}.time to at most {format_slurm_duration(limit)}"))
    if res.nodes > part.node_count:
        gpus = f"{count_of(part.gpus_per_node, 'GPU')} each" if part.gpus_per_node else "no GPUs"
        results.append(_block("slurm", name, f"{res.nodes} nodes asked, partition {part.name} has "
                                             f"{count_of(part.node_count, 'node')} ({part.nodes or '?'}, {gpus})",
                              f"set {kind}.nodes to at most {part.node_count}, or choose a partition with more nodes"))
    if res.gpus > part.gpus_per_node:
        results.append(_block("slurm", name, f"{count_of(res.gpus, 'GPU')} asked, a node of {part.name} has "
                                             f"{part.gpus_per_node}",
                              f"set {kind}.gpus to at most {part.gpus_per_node}, or choose a partition with bigger GPU nodes"
                              if part.gpus_per_node else "choose a partition with GPUs"))
    if res.cpus > part.cpus_per_node:
        results.append(_block("slurm", name, f"{count_of(res.cpus, 'CPU')} asked, a node of {part.name} has "
                                             f"{part.cpus_per_node}",
                              f"set {kind}.cpus to at most {part.cpus_per_node}"))
    if part.memory_mb_per_node and res.mem_megabytes() > part.memory_mb_per_node:
        results.append(_block("slurm", name, f"memory {res.mem} exceeds a node's {part.memory_mb_per_node} MB",
                              f"set {kind}.mem to at most {part.memory_mb_per_node // 1024}G"))
    for problem, fix in part.access_problems(plan.account, plan.qos):  # AllowAccounts/Qos, DenyAccounts/Qos
        results.append(_block("slurm", name, problem, fix))
    if not results:
        free = f", {part.gpus_free} GPUs free now" if part.gpus_free is not None and res.gpus else ""
        results.append(_ok("slurm", name, f"fits: {res.describe()}{free}"))
    return results


def check_slurm(project: Project, resolved: ResolvedPlan, hpcwizard_cmd: list[str] | None = None) -> list[CheckResult]:
    plan, recipe = resolved.plan, resolved.recipe
    files, runner = project.files, project.submit_runner()
    slurm = SlurmClient(runner)
    try:
        partitions = {p.name: p for p in slurm.partitions()}
    except UserError as exc:
        return [_block("slurm", "controller", exc.message, exc.hint or "check `sinfo` works on this node")]
    results = []
    for kind in sorted({job.resources for job in recipe.jobs}, key=["setup", "train"].index):
        res: JobResources = getattr(plan, kind)
        part = partitions.get(res.partition)
        if part is None:
            results.append(_block("slurm", f"{kind} partition", f"partition {res.partition} does not exist",
                                  f"choose one of: {', '.join(partitions)}"))
            continue
        results.extend(job_limits(kind, res, part, plan))
    associations = slurm.associations()
    if associations is not None and plan.account:
        if plan.account not in {a.account for a in associations}:
            results.append(_block("slurm", "account", f"you have no association with account {plan.account}",
                                  f"your accounts: {', '.join(sorted({a.account for a in associations}))}"))
    if plan.qos and associations:
        allowed = {q for a in associations for q in a.qos}
        if allowed and plan.qos not in allowed:
            results.append(_block("slurm", "qos", f"QoS {plan.qos} is not in your associations",
                                  f"your QoS: {', '.join(sorted(allowed))}"))
    if any(r.level == Level.BLOCK for r in results):
        return results
    # Render into a scratch folder: --test-only reads the script and submits nothing.
    with _scratch_dir(runner, files) as scratch:
        rendering = render(project, resolved, Path(scratch), hpcwizard_cmd=hpcwizard_cmd)
        rendering.write(Path(scratch), files, logs=False)  # testing the scripts creates nothing
        for job in rendering.jobs:
            try:
                predicted = slurm.test_only(str(Path(scratch) / job.script))
            except UserError as exc:
                results.append(_block("slurm", f"sbatch --test-only {job.name}", exc.message,
                                      exc.hint or "adjust the job's resources in the plan"))
                continue
            when = predicted.start_time.strftime("%Y-%m-%d %H:%M") if predicted.start_time else "unknown"
            results.append(_ok("slurm", f"sbatch --test-only {job.name}",
                               f"would start at {when} on {predicted.nodes or '?'} in {predicted.partition or job.resources.partition}"))
    return results


_job_limits = job_limits  # the earlier private name


def check_continuation(project: Project, resolved: ResolvedPlan) -> list[CheckResult]:
    """How the train job continues across its time limit (README "Long
    trainings"): whether the cluster requeues (the answer is kept for render:
    :func:`hpcwizard.jobs.continuation.site_requeues`), and the segments the
    estimated training takes ("~3 segments of 48h"): a training longer than
    the partition allows is not a problem, only one the bound cannot cover."""
    from hpcwizard.jobs.continuation import (
        cost_text,
        describe,
        load_continuation,
        probe_requeue,
        save_site_answer,
    )

    plan = resolved.plan
    results = []
    try:
        answer = probe_requeue(plan, project.submit_runner())
    except UserError as exc:
        answer = None
        results.append(_warn("slurm", "requeue", f"could not tell whether the cluster requeues: {exc.message}",
                             "the train job tries `scontrol requeue` and falls back to a follow-on job"))
    if answer is not None:
        with contextlib.suppress(OSError, UserError):
            save_site_answer(project, answer.requeue, answer.reason)
    try:
        cont = load_continuation(project, resolved)
    except UserError as exc:  # a bad parameter: the params rows say it
        return results + [_warn("slurm", "train continuation", exc.message, exc.hint or "fix the plan")]
    if answer is not None and cont.requeue != answer.requeue:  # the file could not be written
        cont = replace(cont, requeue=answer.requeue)
    message = describe(cont)
    if answer is not None and not answer.requeue:
        message += f" ({answer.reason})"
    if cont.concerns:
        fix = ("raise train.segments (or train.time up to the partition's MaxTime)"
               if any("train.segments allows" in c for c in cont.concerns)
               else "lower the checkpointing steps so a checkpoint comes well within the warning")
        results.append(_warn("slurm", "train continuation", message + "; " + "; ".join(cont.concerns), fix))
    else:
        results.append(_ok("slurm", "train continuation", message))
    cost = cost_text(cont, plan.train)
    if cost is not None:
        results.append(_ok("slurm", "train cost", cost))
    return results


@contextlib.contextmanager
def _scratch_dir(runner: Runner, files: ProjectFiles) -> Iterator[str]:
    """A temporary folder where sbatch will read the scripts: here, or on the
    login node in remote mode (made and removed there through the runner)."""
    if not files.remote:
        with tempfile.TemporaryDirectory(prefix="hpcwizard-check-") as scratch:
            yield scratch
        return
    made = runner.run(["mktemp", "-d", "-t", "hpcwizard-check-XXXXXX"], timeout=30)
    scratch = made.stdout.strip()
    if not made.ok or not scratch.startswith("/"):
        raise UserError(f"cannot make a temporary folder on {files.where}: {made.stderr.strip()}",
                        "check that /tmp (or $TMPDIR) is writable there")
    try:
        yield scratch
    finally:
        with contextlib.suppress(UserError):
            runner.run(["rm", "-rf", "--", scratch], timeout=30)


def check_remote_token(runner: Runner, where: str) -> CheckResult:
    """Jobs read the token file on the cluster, where the login node's
    environment puts it (HF_TOKEN_PATH, HF_HOME, XDG_CACHE_HOME): is there one?

    Only ``stat`` runs there: the token itself never travels."""
    from hpcwizard.checks.hftoken import FOLDER_FIX, inspect_token_file

    found = inspect_token_file(runner)
    if found.present and found.loose:
        return _warn("token", "token on the cluster",
                     f"{found.path} on {where} is readable by other users (mode {found.mode:o})",
                     f"make it private on the login node: chmod 600 {shlex.quote(found.path)}")
    if found.present and found.warning:
        return _warn("token", "token on the cluster", f"jobs will read {found.path} on {where}; {found.warning}",
                     FOLDER_FIX)
    if found.present:
        return _ok("token", "token on the cluster", f"jobs will read {found.path} on {where}")
    return _block("token", "token on the cluster",
                  f"no Hugging Face token file on {where} ({found.path}); the setup job reads it there",
                  "store it there with the wizard's token step (`hpcwizard --host ...`), or run "
                  "`hf auth login` on the login node")


# --- compute nodes' network ---------------------------------------------------------

NETWORK_ROW = "compute nodes' network"
_PREPARE_ON_LOGIN = ("choose download: login (the wizard's 'prepare on the login node'), "
                     "then run `hpcwizard prepare PLAN` on the login node")


def check_network(project: Project, resolved: ResolvedPlan, *,
                  endpoint: str | None = None, hpcwizard_cmd: list[str] | None = None, probe: bool = False,
                  cache_only: bool = False, wait: float | None = None, sbatch_args: Iterable[str] = (),
                  cancelled: Callable[[], bool] | None = None) -> list[CheckResult]:
    """Do compute nodes of the setup partition reach what the jobs need
    (:mod:`hpcwizard.checks.netprobe`)? A cached probe result unless ``probe``; a
    ``download: login`` plan never waits for a new one (its jobs run offline),
    nor does ``cache_only`` (the Slurm rows block). ``wait``: seconds a probe
    may stay pending (tests shorten it)."""
    from hpcwizard.checks import netprobe

    plan, recipe = resolved.plan, resolved.recipe
    login = plan.download == "login"
    answer = netprobe.network_status(
        project, plan, recipe, endpoint=endpoint, hpcwizard_cmd=hpcwizard_cmd, probe=probe,
        use_cache_only=cache_only or (login and not probe),
        wait=netprobe.PENDING_WAIT if wait is None else wait, sbatch_args=list(sbatch_args), cancelled=cancelled)
    partition = plan.setup.partition
    offline_ok = "jobs run offline: everything is prepared on the login node"
    if answer.status is netprobe.ProbeStatus.CANCELLED:
        return []
    if answer.status is netprobe.ProbeStatus.NOT_PROBED:
        return [_ok("slurm", NETWORK_ROW, offline_ok)] if login else []
    if answer.status is not netprobe.ProbeStatus.DONE or answer.result is None:
        pending = answer.status is netprobe.ProbeStatus.PENDING
        message = f"unknown (probe pending): {answer.detail}" if pending else f"unknown: could not probe: {answer.detail}"
        if login:
            return [_ok("slurm", NETWORK_ROW, f"{offline_ok} (compute nodes' network {message})")]
        return [_warn("slurm", NETWORK_ROW, message,
                      "run `hpcwizard check --probe PLAN` to probe again"
                      + (" when the partition is less busy" if pending else "")
                      + "; if the compute nodes have no internet, " + _PREPARE_ON_LOGIN)]
    result = answer.result
    missing = result.unreachable(netprobe.needed_kinds(recipe))
    when = f"probed {result.date}" + (", cached" if answer.cached else "")
    if not missing:
        reached = ", ".join(t.describe() for t in result.targets if t.kind in netprobe.needed_kinds(recipe))
        if login:
            return [_ok("slurm", NETWORK_ROW, f"{offline_ok} (compute nodes of partition {partition} reach the "
                                              f"network too, {when})")]
        return [_ok("slurm", NETWORK_ROW, f"compute nodes of partition {partition} reach {reached} ({when})")]
    what = " or ".join(t.describe() for t in missing)
    why = "; ".join(f"{t.url}: {t.detail}" for t in missing)
    if login:
        return [_ok("slurm", NETWORK_ROW, f"{offline_ok} (compute nodes of partition {partition} cannot reach "
                                          f"{what}, {when})")]
    return [_block("slurm", NETWORK_ROW, f"compute nodes of partition {partition} cannot reach {what} ({when}): {why}",
                   _PREPARE_ON_LOGIN + " (`hpcwizard check --probe PLAN` probes again)")]


# --- environment -------------------------------------------------------------------

def check_sbatch_variables(runner: Runner) -> list[CheckResult]:
    """A warning when the login shell sets SBATCH_* variables for what the plan
    decides: hpcwizard submits without them (sbatch would rank them above the
    scripts' #SBATCH lines), and the user should know their export is ignored."""
    from hpcwizard.slurm.client import PLAN_DECIDES_ENV

    try:
        names = runner.run(["sh", "-c", "env | cut -d= -f1"], timeout=20).stdout.split()
    except UserError:
        return []
    found = [name for name in PLAN_DECIDES_ENV if name in names]
    if not found:
        return []
    return [_warn("slurm", "sbatch variables", f"{', '.join(found)} set in your shell: hpcwizard's jobs leave "
                  "them out (the plan decides)",
                  "put what you meant in the plan (partition, time, account...), or unset them in ~/.bashrc")]


def check_environment(runner: Runner, endpoint: str | None) -> list[CheckResult]:
    results = []
    conda = next((tool for tool in ("micromamba", "mamba", "conda") if runner.which(tool)), None)
    if conda:
        results.append(_ok("environment", "conda", f"{conda} found: training environments use it"))
    else:
        venv = runner.run(["python3", "-c", "import venv, ensurepip"], timeout=20)
        if venv.ok:
            results.append(_warn("environment", "conda", "no conda, mamba or micromamba; environments will be Python venvs",
                                 "fine for most recipes; to build with conda, add its module to the plan's "
                                 "modules: (e.g. miniforge3)"))
        else:
            results.append(_block("environment", "python venv", "neither conda nor a working python3 -m venv",
                                  "install python3-venv, or load a Python/conda module before running hpcwizard"))
    lmod = runner.run(["bash", "-lc", "type -t module"], timeout=20)
    if lmod.ok and lmod.stdout.strip():
        results.append(_ok("environment", "modules", "environment modules (`module`) available"))
    where = endpoint or hub.default_endpoint()
    answered, detail = hub.endpoint_reachable(endpoint)
    # Any HTTP answer means the hub is there (401: an anonymous request, as expected): a
    # "✔ answers (HTTP 401)" read like a refusal, so the code goes into the details only.
    results.append(_ok("environment", "hub", f"{where} is reachable from this node",
                       f"it answered an anonymous request ({detail})") if answered else
                   _warn("environment", "hub", f"{where} did not answer from this node: {detail}",
                         "check the proxy settings (HTTPS_PROXY), or use `download: job` if compute nodes have internet"))
    return results


def run_preflight(project: Project, resolved: ResolvedPlan, *, endpoint: str | None = None,
                  on_result: Callable[[CheckResult], object] | None = None,  # its answer is ignored
                  hpcwizard_cmd: list[str] | None = None,
                  downloads_required: bool = False, probe_network: bool = False,
                  network_wait: float | None = None,
                  cancelled: Callable[[], bool] | None = None) -> Preflight:
    """Every check of the plan; ``on_result`` sees each row as it is known.

    ``downloads_required``: a ``download: login`` plan must be downloaded
    already (``hpcwizard check``: the next step is submit; the wizard's
    Download step comes after its preflight).

    ``probe_network``: probe the compute nodes' network again even when a
    result is cached (``check --probe``); ``network_wait``: seconds the probe
    may stay pending (default :data:`hpcwizard.checks.netprobe.PENDING_WAIT`);
    ``cancelled``: polled while waiting for the probe (the wizard quit).

    ``project``: the plan's project, its files and the runner of the
    machine its jobs are submitted from. Remote mode (the project's files
    remote): token, access and the hub checks run HERE (the laptop's token and
    network), space, Slurm and environment checks on the login node through
    the project's runner, plus whether the login node has the token file the
    jobs read."""
    plan = resolved.plan
    files, runner = project.files, project.submit_runner()
    preflight = Preflight()

    def add(rows: Iterable[CheckResult]) -> None:
        for row in rows:
            preflight.results.append(row)
            if on_result:
                on_result(row)

    token = check_token(endpoint)
    add(token.results)
    repos = list(resolved.repos)
    if files.remote:
        add([check_remote_token(runner, files.where)])
    else:
        job_token = check_job_token(plan, repos)
        add([job_token] if job_token else [])
        # The manifests are files of this machine (remote: the wizard's Download step or `download --host`).
        login_download = check_login_download(resolved, required=downloads_required)
        add([login_download] if login_download else [])
    add(check_repo_access(repos, token.token, endpoint))
    add(check_folders(plan, runner))
    add(check_earlier_checkpoints(project, resolved))
    add(check_space(project, resolved, token.token, endpoint))
    slurm_rows = check_slurm(project, resolved, hpcwizard_cmd)
    add(slurm_rows)
    add(check_sbatch_variables(runner))
    # No new probe job while the Slurm rows block (no such partition, no controller).
    slurm_blocked = any(row.level == Level.BLOCK for row in slurm_rows)
    if not slurm_blocked:
        add(check_continuation(project, resolved))
    add(check_network(project, resolved, endpoint=endpoint, hpcwizard_cmd=hpcwizard_cmd,
                      probe=probe_network and not slurm_blocked, cache_only=slurm_blocked, wait=network_wait,
                      cancelled=cancelled))
    add(check_environment(runner, endpoint))
    add(check_modules(resolved, runner, files.where if files.remote else "this login node"))
    add(check_environment_python(resolved, runner))
    add(check_environment_pins(resolved, token=token.token, endpoint=endpoint, files=files))
    return preflight

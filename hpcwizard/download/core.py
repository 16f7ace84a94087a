"""Download the repos of a plan: list, skip what is complete, fetch the rest in parallel, unpack.

The listing (sizes, etags, sha256) comes from the Hub's API through
:mod:`hpcwizard.checks.hub`; the bytes come from :mod:`.transfer`. Worker threads
fetch files (a small bounded pool: the Hub and a shared filesystem both prefer
a few streams to many); the calling thread drives progress callbacks and
records progress in the project state every few seconds and at each file's end.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import logging
import random
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from hpcwizard.checks.hub import default_endpoint as resolve_endpoint  # the one rule; light (no huggingface_hub)
from hpcwizard.download.progress import (
    DownloadProgress,
    FileState,
    PlainProgressLog,
    ProgressCallback,
    ProgressTracker,
    TerminalProgressBar,
)
from hpcwizard.download.records import (
    ExpectedFile,
    Manifest,
    dest_lock,
    part_path,
    raise_write_error,
    read_manifest,
    read_sidecar,
    record_complete,
    update_manifest,
)
from hpcwizard.download.transfer import (
    Cancelled,
    DiskFullError,
    DownloadError,
    FileFetcher,
    FileTask,
    LiveResponses,
    TransferSettings,
    check_repo_path,
)
from hpcwizard.download.unpack import UnpackResult, unpack
from hpcwizard.errors import UserError
from hpcwizard.project.files import LOCAL_FILES, ProjectFiles
from hpcwizard.project.recipe import ResolvedRepo
from hpcwizard.project.state import FileProgress, ProjectState, now_iso, update_state
from hpcwizard.sizes import human_bytes, human_duration

if TYPE_CHECKING:
    from hpcwizard.project.resolved import ResolvedPlan

log = logging.getLogger("hpcwizard.download")

STATE_INTERVAL = 5.0  # seconds between progress records in state.json
_HF_LEFTOVER_AGE = 600.0  # seconds: younger .incomplete files may belong to a running hf download


@dataclass(frozen=True)
class DownloadSummary:
    files_total: int
    files_downloaded: int  # fetched (fully or the missing part) in this run
    files_skipped: int  # already complete
    bytes_total: int
    bytes_transferred: int  # over the network in this run
    seconds: float
    restarted: tuple[str, ...] = ()  # files whose partial data had to be thrown away
    unpacked: tuple[UnpackResult, ...] = ()
    notes: tuple[str, ...] = ()

    def one_line(self) -> str:
        parts = [f"{self.files_total} files ({human_bytes(self.bytes_total)}) ready"]
        if self.files_downloaded:
            parts.append(f"downloaded {self.files_downloaded} ({human_bytes(self.bytes_transferred)} "
                         f"in {human_duration(self.seconds)})")
        if self.files_skipped:
            parts.append(f"{self.files_skipped} already complete")
        fresh = [u for u in self.unpacked if not u.skipped]
        if self.unpacked:
            parts.append(f"unpacked {len(fresh)} archive(s)" + (f", {len(self.unpacked) - len(fresh)} already unpacked"
                                                               if len(fresh) < len(self.unpacked) else ""))
        return "; ".join(parts)


@dataclass
class _RepoListing:
    repo: ResolvedRepo
    commit: str | None
    files: list[FileTask] = field(default_factory=list)


# -- listing -------------------------------------------------------------------------------------


def _page(endpoint: str, repo: ResolvedRepo) -> str:
    return f"{endpoint}/{repo.page}"


def list_repo(repo: ResolvedRepo, token: str | None, endpoint: str) -> _RepoListing:
    """The wanted files of ``repo`` with url, size, etag and sha256 (metadata is readable even when gated)."""
    from hpcwizard.checks.hub import RepoRef, repo_files

    remote = repo_files(RepoRef(repo.repo_id, repo.repo_type), token, endpoint)
    listing = _RepoListing(repo, remote[0].commit if remote else None)
    for f in remote:
        if not repo.wanted(f.path):
            continue
        check_repo_path(repo.repo_id, f.path)  # before any byte moves: one bad name refuses the repo
        listing.files.append(FileTask(
            repo_id=repo.repo_id, repo_type=repo.repo_type, path=f.path, url=f.url, size=f.size,
            etag=f.etag, sha256=f.sha256, dest=repo.dest, page=_page(endpoint, repo),
        ))
    if not listing.files:
        raise UserError(f"{repo.repo_type} {repo.repo_id} has no file matching {', '.join(repo.include)}",
                        "check the repo on the Hub and the include patterns of the recipe")
    return listing


def _check_access(listings: list[_RepoListing], needed: set[str], token: str | None, endpoint: str) -> None:
    """Fail before any byte moves if a repo with files still to fetch refuses this token."""
    from hpcwizard.checks.hub import RepoRef, check_access

    repos = [lst.repo for lst in listings if lst.repo.repo_id in needed]
    if not repos:
        return
    for access in check_access([RepoRef(r.repo_id, r.repo_type) for r in repos], token, endpoint):
        if not access.ok:
            raise UserError(access.detail, access.fix)


def _is_complete(manifest: Manifest | None, task: FileTask, files: ProjectFiles = LOCAL_FILES) -> bool:
    return manifest is not None and manifest.is_complete(task.dest, task.path, task.etag, files=files)


def _part_done(task: FileTask, files: ProjectFiles = LOCAL_FILES) -> int:
    """Bytes of a usable leftover part (same remote content), else 0."""
    info = read_sidecar(task.final, files)
    if info is None or not info.same_remote(task.etag, task.size, task.sha256):
        return 0
    try:
        return min(files.stat(part_path(task.final)).size, task.size)
    except OSError:
        return 0


def _clean_hf_leftovers(dest: Path, note: Callable[[str], None]) -> None:
    """Remove huggingface_hub's orphaned ``*.incomplete`` files under ``<dest>/.cache/huggingface``.

    Since huggingface_hub 1.18 no later process resumes them, so they only take
    quota (a 13 GB tar interrupted twice is 26 GB of garbage). Recent ones are
    left alone: an hf download might still be writing them.
    """
    cache = dest / ".cache" / "huggingface"
    if not cache.is_dir():
        return
    freed = 0
    now = time.time()
    for path in cache.rglob("*.incomplete"):
        try:
            st = path.stat()
            if now - st.st_mtime < _HF_LEFTOVER_AGE:
                continue
            path.unlink()
            freed += st.st_size
        except OSError:
            continue
    if freed:
        note(f"removed {human_bytes(freed)} of unfinished huggingface_hub downloads under {cache}")


# -- verification (adopting a file that is there without a record) ----------------------------------


def _file_matches(task: FileTask, cancel: threading.Event) -> bool:
    """Whether an existing final file (no completion record) is the remote content.

    sha256 for LFS files; for small git files the etag is the git blob id, so
    hash ``blob <size>\\0<data>`` with sha1. A false "no" only costs a re-download.
    """
    import hashlib

    final = task.final
    try:
        if final.stat().st_size != task.size:
            return False
    except OSError:
        return False
    if task.sha256:
        digest, expected = hashlib.sha256(), task.sha256
    elif task.etag and len(task.etag) == 40:
        digest, expected = hashlib.sha1(b"blob %d\0" % task.size), task.etag
    else:
        return False
    with open(final, "rb") as handle:
        while block := handle.read(8 << 20):
            if cancel.is_set():
                raise Cancelled
            digest.update(block)
    return digest.hexdigest() == expected


# -- the download ----------------------------------------------------------------------------------


class _StateRecorder:
    """Writes per-file progress to state.json: every ``interval`` seconds and whenever a file finishes."""

    def __init__(self, state_dir: Path | None, tracker: ProgressTracker, interval: float = STATE_INTERVAL) -> None:
        self.state_dir = state_dir
        self.tracker = tracker
        self.interval = interval
        self._last = 0.0
        self._written: dict[str, tuple[int, bool]] = {}
        self._failed = False

    def maybe_flush(self, progress: DownloadProgress, *, force: bool = False) -> None:
        if self.state_dir is None or self._failed:
            return
        finished_now = any(f.state.finished and not self._written.get(f"{f.repo}/{f.path}", (0, False))[1]
                           for f in progress.files)
        if not (force or finished_now or time.monotonic() - self._last >= self.interval):
            return
        stamp = now_iso()
        changes: dict[str, FileProgress] = {}
        for f in progress.files:
            key = f"{f.repo}/{f.path}"
            value = (f.done if not f.state.finished else f.size, f.state.finished)
            if self._written.get(key) != value:
                changes[key] = FileProgress(repo=f.repo, path=f.path, size=f.size, done=value[0],
                                            complete=value[1], updated_at=stamp)

        def change(state: ProjectState) -> None:
            state.downloads.update(changes)

        self._last = time.monotonic()
        if not changes:
            return
        try:
            update_state(self.state_dir, change)
        except UserError as exc:
            # The download itself is what matters; its completion records live beside the files.
            self._failed = True
            self.tracker.note(f"cannot record progress in the project state: {exc}")
            return
        for key, fp in changes.items():
            self._written[key] = (fp.done, fp.complete)


def download_repos(
    repos: Iterable[ResolvedRepo],
    *,
    token: str | None = None,
    endpoint: str | None = None,
    on_progress: ProgressCallback | None = None,
    workers: int = 4,
    state_dir: Path | None = None,
    settings: TransferSettings | None = None,
    cancel: threading.Event | None = None,
    progress_rate: float = 10.0,
) -> DownloadSummary:
    """Download every wanted file of ``repos`` into ``repo.dest/<path>`` (no unpacking)."""
    repos = list(repos)
    endpoint = resolve_endpoint(endpoint)
    settings = settings or TransferSettings()
    cancel = cancel or threading.Event()
    tracker = ProgressTracker(on_progress, max_rate=progress_rate)
    started = time.monotonic()

    def note(text: str) -> None:
        log.info("%s", text)
        tracker.note(text)

    listings = [list_repo(repo, token, endpoint) for repo in repos]
    todo: list[FileTask] = []
    for listing in listings:
        repo = listing.repo
        manifest = read_manifest(repo.dest)
        for task in listing.files:
            if _is_complete(manifest, task):
                tracker.add(task.key, task.repo_id, task.path, task.size, task.size, FileState.SKIPPED)
            else:
                tracker.add(task.key, task.repo_id, task.path, task.size, _part_done(task))
                todo.append(task)
    _check_access(listings, {t.repo_id for t in todo}, token, endpoint)

    recorder = _StateRecorder(state_dir, tracker)
    with _locked_dests([lst.repo.dest for lst in listings]):
        for listing in listings:
            _clean_hf_leftovers(listing.repo.dest, note)
            _record_expected(listing)
        results = _run_pool(todo, token=token, settings=settings, tracker=tracker, cancel=cancel,
                            workers=workers, recorder=recorder)
    final = tracker.snapshot(finished=True, take_notes=False)
    recorder.maybe_flush(final, force=True)
    tracker.tick(finished=True)
    return DownloadSummary(
        files_total=final.files_total,
        files_downloaded=sum(1 for f in final.files if f.state is FileState.DONE),
        files_skipped=sum(1 for f in final.files if f.state is FileState.SKIPPED),
        bytes_total=final.bytes_total,
        bytes_transferred=sum(r[1] for r in results),
        seconds=time.monotonic() - started,
        restarted=tuple(key for key, _, restarted in results if restarted),
        notes=tuple(tracker.history),
    )


@contextlib.contextmanager
def _locked_dests(dests: list[Path]) -> Iterator[None]:
    """Hold the per-destination locks of all repos (sorted, so two runs never deadlock)."""
    with contextlib.ExitStack() as stack:
        for dest in sorted({d.resolve() for d in dests}):
            stack.enter_context(dest_lock(dest))
        yield


def _record_expected(listing: _RepoListing) -> None:
    repo = listing.repo

    def change(manifest: Manifest) -> None:
        manifest.commit = listing.commit
        manifest.include = list(repo.include)
        manifest.expected = {t.path: ExpectedFile(t.size, t.etag, t.sha256) for t in listing.files}
        # Drop records of files the recipe no longer wants or that changed on the Hub.
        manifest.complete = {p: r for p, r in manifest.complete.items()
                             if p in manifest.expected and r.etag == manifest.expected[p].etag}

    update_manifest(repo.dest, repo.repo_id, repo.repo_type, change)


def _fetch_one(task: FileTask, *, token: str | None, settings: TransferSettings, tracker: ProgressTracker,
               cancel: threading.Event, live: LiveResponses | None = None) -> tuple[str, int, bool]:
    key = task.key
    try:
        if task.final.exists() and not part_path(task.final).exists():
            # A file is there without a completion record (an earlier hf download, a lost
            # manifest): keep it if its hash says it is the right content.
            tracker.set(key, state=FileState.CHECKING)
            if _file_matches(task, cancel):
                record_complete(task.dest, task.repo_id, task.repo_type, task.path, task.etag, task.sha256)
                tracker.set(key, done=task.size, state=FileState.SKIPPED)
                return key, 0, False
        fetched = FileFetcher(task, token=token, settings=settings, tracker=tracker, cancel=cancel,
                              rng=random.Random(), live=live).run()
        record_complete(task.dest, task.repo_id, task.repo_type, task.path, task.etag, task.sha256)
        tracker.set(key, done=task.size, state=FileState.DONE)
        return key, fetched.transferred, fetched.restarted
    except OSError as exc:  # creating folders, opening the part, renaming: not the data writes
        tracker.set(key, state=FileState.FAILED)
        raise_write_error(exc, part_path(task.final))
    except BaseException:
        tracker.set(key, state=FileState.FAILED)
        raise


def _run_pool(todo: list[FileTask], *, token: str | None, settings: TransferSettings, tracker: ProgressTracker,
              cancel: threading.Event, workers: int, recorder: _StateRecorder) -> list[tuple[str, int, bool]]:
    if not todo:
        return []
    # Biggest first: the long pole starts at once and small files fill the other workers.
    ordered = sorted(todo, key=lambda t: -t.size)
    results: list[tuple[str, int, bool]] = []
    failure: BaseException | None = None
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, min(workers, len(todo))),
                                                 thread_name_prefix="hpcwizard-download")
    live = LiveResponses()
    try:
        pending = {pool.submit(_fetch_one, t, token=token, settings=settings, tracker=tracker, cancel=cancel,
                               live=live)
                   for t in ordered}
        while pending:
            if cancel.is_set():  # stopped (Ctrl-C, the wizard's stop key, a failure): wake stalled reads
                live.abort_all()
            done, pending = concurrent.futures.wait(pending, timeout=0.1,
                                                    return_when=concurrent.futures.FIRST_COMPLETED)
            for future in done:
                try:
                    results.append(future.result())
                except Cancelled:
                    pass
                except BaseException as exc:  # the first real failure stops the others
                    if failure is None:
                        failure = exc
                    cancel.set()
            tracker.tick()
            recorder.maybe_flush(tracker.snapshot(take_notes=False))
    except KeyboardInterrupt:
        cancel.set()  # workers stop at their next chunk; parts and sidecars stay for the rerun
        live.abort_all()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        recorder.maybe_flush(tracker.snapshot(take_notes=False), force=True)
    if failure is not None:
        if isinstance(failure, DiskFullError):
            snap = tracker.snapshot(take_notes=False)
            remaining = sum(f.size - f.done for f in snap.files if not f.state.finished)
            raise DiskFullError(
                f"{failure.message}; {human_bytes(remaining)} still needed in total for this download",
                failure.hint, path=failure.path, still_needed=remaining,
            ) from None
        raise failure
    if cancel.is_set():
        raise DownloadError("the download was stopped", "run it again: it resumes where it stopped")
    return results


# -- plan level ----------------------------------------------------------------------------------


def verify_downloaded(repos: Iterable[ResolvedRepo]) -> list[str]:
    """Offline: what is missing or incomplete, per the completion manifests (empty list: all there)."""
    missing: list[str] = []
    for repo in repos:
        manifest = read_manifest(repo.dest)
        if manifest is None or not manifest.expected:
            missing.append(f"{repo.repo_id} (never downloaded into {repo.dest})")
            continue
        if list(manifest.include) != list(repo.include):
            missing.append(f"{repo.repo_id} (the recipe's file patterns changed since the download)")
            continue
        for path, expected in sorted(manifest.expected.items()):
            if not manifest.is_complete(repo.dest, path, expected.etag):
                missing.append(f"{repo.repo_id}/{path}")
    return missing


def _unpack_all(repos: list[ResolvedRepo]) -> list[UnpackResult]:
    results = []
    for repo in repos:
        manifest = read_manifest(repo.dest)
        for archive in repo.archives:
            rel = archive.archive.relative_to(repo.dest).as_posix() if archive.archive.is_relative_to(repo.dest) else None
            record = manifest.complete.get(rel) if (manifest and rel) else None
            if record is None:
                raise UserError(f"archive {archive.archive} was not downloaded and verified",
                                "check that the recipe's include patterns cover it, then run the download again")
            results.append(unpack(archive.archive, archive.into, sha256=record.sha256))
    return results


def download_plan(
    resolved: ResolvedPlan,
    *,
    token: str | None = None,
    endpoint: str | None = None,
    on_progress: ProgressCallback | None = None,
    in_job: bool = False,
    workers: int = 4,
    settings: TransferSettings | None = None,
    cancel: threading.Event | None = None,
) -> DownloadSummary:
    """Download (or, in a job of a ``download: login`` plan, only verify) and unpack the plan's repos."""
    plan = resolved.plan
    repos = list(resolved.repos)
    started = time.monotonic()
    if plan.download == "login" and in_job:
        # The compute node may have no network at all: trust only what the login node recorded.
        missing = verify_downloaded(repos)
        if missing:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            raise UserError(
                f"{len(missing)} file(s) are not downloaded or incomplete: {shown}",
                "the plan says download: login, so run `hpcwizard download PLAN` on the login node, then submit again",
            )
        manifests = [m for m in (read_manifest(r.dest) for r in repos) if m is not None]  # all there: verified above
        files = sum(len(m.expected) for m in manifests)
        total = sum(e.size for m in manifests for e in m.expected.values())
        summary = DownloadSummary(files_total=files, files_downloaded=0, files_skipped=files, bytes_total=total,
                                  bytes_transferred=0, seconds=0.0)
    else:
        summary = download_repos(repos, token=token, endpoint=endpoint, on_progress=on_progress, workers=workers,
                                 state_dir=plan.state_dir, settings=settings, cancel=cancel)
    unpacked = _unpack_all(repos)
    return dataclasses.replace(summary, unpacked=tuple(unpacked), seconds=time.monotonic() - started)


def repo_download_size(repo: ResolvedRepo, token: str | None = None, endpoint: str | None = None,
                       files: ProjectFiles = LOCAL_FILES) -> tuple[int, int, int]:
    """``(bytes_to_download, files_to_download, bytes_total)`` of one repo.

    ``files``: where ``repo.dest`` is (the login node's disk in remote mode);
    the manifest, the sidecars and the files' sizes are read there."""
    listing = list_repo(repo, token, resolve_endpoint(endpoint))
    manifest = read_manifest(repo.dest, files)
    to_fetch = count = total = 0
    for task in listing.files:
        total += task.size
        if _is_complete(manifest, task, files):
            continue
        count += 1
        to_fetch += task.size - _part_done(task, files)
    return to_fetch, count, total


def plan_download_size(resolved: ResolvedPlan, token: str | None = None, endpoint: str | None = None,
                       files: ProjectFiles = LOCAL_FILES) -> tuple[int, int, int]:
    """``(bytes_to_download, files_to_download, bytes_total)``; complete files and usable parts count as done."""
    sizes = [repo_download_size(repo, token, endpoint, files) for repo in resolved.repos]
    return sum(s[0] for s in sizes), sum(s[1] for s in sizes), sum(s[2] for s in sizes)


def _find_token() -> str | None:
    from hpcwizard.checks.hub import find_token

    found = find_token()
    return found.token if found else None


def run_download_command(plan_path: str, *, in_job: bool) -> int:
    """``hpcwizard download PLAN [--in-job]``: download with a progress display, print one summary line."""
    from hpcwizard.project.recipe import fill_namespace, load_plan_for_recipe
    from hpcwizard.project.resolved import resolve

    plan, recipe = load_plan_for_recipe(plan_path)
    plan = fill_namespace(plan, recipe)  # a no-op for the filled copy a job reads
    token = None if (plan.download == "login" and in_job) else _find_token()
    reporter: ProgressCallback = TerminalProgressBar() if sys.stdout.isatty() else PlainProgressLog()
    try:
        summary = download_plan(resolve(plan, recipe), token=token, on_progress=reporter, in_job=in_job)
    except KeyboardInterrupt:
        print("\ndownload interrupted; run the same command again to resume where it stopped", file=sys.stderr)
        return 130
    print(summary.one_line())
    return 0

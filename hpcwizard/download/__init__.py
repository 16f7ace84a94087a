"""Resumable downloads of a plan's Hugging Face repos.

huggingface_hub (>= 1.18) does not resume a file interrupted in an earlier
process, so a 13 GB tar cut by a job's time limit starts again from zero. This
package fetches with HTTP ``Range`` into ``<file>.part`` plus a sidecar
(``.part.json``), verifies sha256, and records completed files in
``<dest>/.hpcwizard-complete.json`` so that a rerun continues at the byte and a
job without network can check that everything is there.

    summary = download_plan(resolve(plan), token=token, on_progress=TerminalProgressBar())

No Textual here: the TUI passes its own ``on_progress`` callback.
"""

from __future__ import annotations

from hpcwizard.download.core import (
    DownloadSummary,
    download_plan,
    download_repos,
    plan_download_size,
    repo_download_size,
    resolve_endpoint,
    run_download_command,
    verify_downloaded,
)
from hpcwizard.download.progress import (
    DownloadProgress,
    FileState,
    FileStatus,
    PlainProgressLog,
    ProgressTracker,
    TerminalProgressBar,
    summary_line,
)
from hpcwizard.download.records import MANIFEST_NAME, Manifest, PartInfo, read_manifest, read_sidecar
from hpcwizard.download.transfer import (
    AccessError,
    DiskFullError,
    DownloadError,
    FileTask,
    TransferSettings,
)

__all__ = [
    "MANIFEST_NAME",
    "AccessError",
    "DiskFullError",
    "DownloadError",
    "DownloadProgress",
    "DownloadSummary",
    "FileState",
    "FileStatus",
    "FileTask",
    "Manifest",
    "PartInfo",
    "PlainProgressLog",
    "ProgressTracker",
    "TerminalProgressBar",
    "TransferSettings",
    "download_plan",
    "download_repos",
    "plan_download_size",
    "repo_download_size",
    "read_manifest",
    "read_sidecar",
    "resolve_endpoint",
    "run_download_command",
    "summary_line",
    "verify_downloaded",
]

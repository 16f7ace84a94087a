"""The recipe's source code: a git clone at the pinned commit.

Cloned on the login node (compute nodes usually cannot reach the git host)
into ``<dest>.partial`` and renamed into place only once checked out, so an
interrupted clone never looks finished. A stamp in ``.git/`` records the URL
and commit; the setup job of a ``download: login`` plan only checks it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Optional

from hpcwizard.prepare.steps import LineCallback, PrepareError, command_env, last_error_line, run_streaming
from hpcwizard.project.prepare_spec import CodeSpec

STAMP = "hpcwizard-code.json"
_GIT_ENV = {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "/bin/true", "LC_ALL": "C"}


def _head(dest: Path) -> Optional[str]:
    try:
        out = subprocess.run(["git", "-C", str(dest), "rev-parse", "HEAD"], capture_output=True, text=True,
                             stdin=subprocess.DEVNULL, env=command_env(_GIT_ENV), timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _stamp(dest: Path) -> dict[str, str]:
    try:
        data = json.loads((dest / ".git" / STAMP).read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def code_problem(spec: CodeSpec) -> Optional[str]:
    """Offline: why the code at ``spec.dest`` is not the pinned commit, or None when it is."""
    if not (spec.dest / ".git").is_dir():
        return f"{spec.dest} is not cloned yet"
    stamp = _stamp(spec.dest)
    head = _head(spec.dest) or stamp.get("commit", "")
    if not head.startswith(spec.commit):
        return f"{spec.dest} is at commit {head[:12] or 'unknown'}, not the pinned {spec.commit[:12]}"
    return None


def _git(args: list[str], on_line: LineCallback, what: str, spec: CodeSpec) -> None:
    status, tail = run_streaming(["git", "-c", "http.lowSpeedLimit=1000", "-c", "http.lowSpeedTime=60", *args],
                                 on_line, env=_GIT_ENV)
    if status == 127:
        raise PrepareError("code: git is not installed on this machine", "install git (or `module load git`), then prepare again")
    if status != 0:
        raise PrepareError(f"code: {what} failed: {last_error_line(tail)}",
                           f"check that this machine reaches {spec.host}, then prepare again")


def _write_stamp(dest: Path, spec: CodeSpec) -> None:
    head = _head(dest) or spec.commit
    tmp = dest / ".git" / (STAMP + ".tmp")
    tmp.write_text(json.dumps({"url": spec.url, "commit": head}) + "\n", encoding="utf-8")
    tmp.replace(dest / ".git" / STAMP)


def prepare_code(spec: CodeSpec, on_line: LineCallback) -> str:
    """Clone (or move) ``spec.dest`` to the pinned commit; return what was done, in a few words."""
    if code_problem(spec) is None:
        return f"{spec.name} already at {spec.commit[:12]}"
    if spec.dest.exists() and not (spec.dest / ".git").is_dir():
        raise PrepareError(f"code: {spec.dest} exists but is not a git clone",
                           "move it away (hpcwizard never deletes your files), then prepare again")
    if (spec.dest / ".git").is_dir():
        # A clone at another commit: fetch only when the commit is not there yet.
        have = subprocess.run(["git", "-C", str(spec.dest), "cat-file", "-e", spec.commit + "^{commit}"],
                              capture_output=True, stdin=subprocess.DEVNULL, env=command_env(_GIT_ENV))
        if have.returncode != 0:
            on_line(f"fetching {spec.url}")
            _git(["-C", str(spec.dest), "fetch", "--progress", "origin"], on_line, "git fetch", spec)
        _git(["-C", str(spec.dest), "checkout", "--quiet", spec.commit], on_line, f"git checkout {spec.commit}", spec)
        _write_stamp(spec.dest, spec)
        return f"{spec.name} moved to {spec.commit[:12]}"
    partial = spec.dest.with_name(spec.dest.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    spec.dest.parent.mkdir(parents=True, exist_ok=True)
    on_line(f"cloning {spec.url}")
    _git(["clone", "--progress", "--no-checkout", spec.url, str(partial)], on_line, "git clone", spec)
    _git(["-C", str(partial), "checkout", "--quiet", spec.commit], on_line, f"git checkout {spec.commit}", spec)
    _write_stamp(partial, spec)
    partial.rename(spec.dest)
    return f"{spec.name} cloned at {spec.commit[:12]}"

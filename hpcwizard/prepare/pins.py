"""Pins the package index cannot satisfy, found before anything is built.

The user's fork pins ``clip==1.0`` in environment.yml: that is OpenAI CLIP
installed from git (it reports 1.0), while the package index has only
0.0.1/0.1.0/0.2.0, so a plain ``conda env create`` fails at its pip step,
hours into a setup job. The check asks the index pip would use (PEP 691's
JSON simple API, HTML as a fallback) for each pinned name, a few at a time.
"""

from __future__ import annotations

import concurrent.futures
import json
import re
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from hpcwizard.shell import Runner

DEFAULT_INDEX = "https://pypi.org/simple"
#: Pins known to come from elsewhere than the index, and what replaces them.
KNOWN_REPLACEMENTS = {
    "clip==1.0": ("git+https://github.com/openai/CLIP.git", "OpenAI CLIP from git reports 1.0"),
}
_REQ = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*((?:===|==|~=|!=|>=|<=|>|<)[^;#]*)?\s*(?:;.*)?$")
_VERSION_IN_FILE = re.compile(r"^[A-Za-z0-9._]+?-([0-9][A-Za-z0-9.!+_-]*?)(?:-[^-]+-[^-]+-[^-]+\.whl|\.tar\.gz|\.zip|\.whl)$")


@dataclass(frozen=True)
class PinProblem:
    requirement: str
    index: str
    available: tuple[str, ...]  # the versions the index has (empty: the name is not there)

    def message(self) -> str:
        if not self.available:
            return f"{self.requirement}: no such package on {self.index}"
        shown = ", ".join(self.available[-6:])
        return f"{self.requirement}: {self.index} has only {shown}"

    def override(self) -> str:
        """A replacement to suggest in env_overrides."""
        known = KNOWN_REPLACEMENTS.get(self.requirement.replace(" ", "").lower())
        if known:
            return known[0]
        name = _REQ.match(self.requirement)
        return f"{name.group(1) if name else self.requirement}=={self.available[-1]}" if self.available else "<a requirement that exists>"


# Run where pip will run (this machine, or the login node through its runner):
# the environment's settings first, then pip's own configuration.
_PIP_INDEX_SETTINGS = r"""
printf 'env.index-url=%s\n' "${PIP_INDEX_URL:-}"
printf 'env.extra-index-url=%s\n' "${PIP_EXTRA_INDEX_URL:-}"
"$1" -m pip config list 2>/dev/null || pip config list 2>/dev/null
exit 0
"""


def pip_indexes(runner: Optional[Runner] = None, python: str = sys.executable) -> list[str]:
    """The package indexes pip would use on the runner's machine (default this
    one), the main one first: PIP_INDEX_URL / PIP_EXTRA_INDEX_URL, else
    ``pip config``, else PyPI. Only http(s) ones: a file index cannot be asked.
    The one lookup behind the pins check and the network probe's target."""
    from hpcwizard.errors import UserError
    from hpcwizard.shell import LocalRunner

    try:
        listed = (runner or LocalRunner()).run(["sh", "-c", _PIP_INDEX_SETTINGS, "sh", python], timeout=30).stdout
    except UserError:
        listed = ""
    from_env: Optional[str] = None
    configured: Optional[str] = None
    extra: list[str] = []
    for line in listed.splitlines():
        key, _, value = line.partition("=")
        value = value.strip().strip("'\"")
        if key == "env.index-url":
            from_env = value or None
        elif key == "env.extra-index-url" or key.endswith(".extra-index-url"):
            extra.extend(value.split())
        elif key.endswith(".index-url") and configured is None:
            configured = value
    urls = [from_env or configured or DEFAULT_INDEX, *extra]
    return [u.rstrip("/") for u in dict.fromkeys(urls) if u.startswith(("http://", "https://"))]


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def handle_data(self, data: str) -> None:
        if data.strip():
            self.names.append(data.strip())


def index_versions(index: str, name: str, timeout: float = 15.0) -> Optional[tuple[str, ...]]:
    """The versions ``index`` has of ``name`` (empty: not there); None when the index did not answer."""
    project = re.sub(r"[-_.]+", "-", name).lower()
    request = urllib.request.Request(f"{index}/{project}/", headers={
        "Accept": "application/vnd.pypi.simple.v1+json, text/html;q=0.1", "User-Agent": "hpcwizard"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - http(s) only
            body = response.read()
            kind = response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        return () if exc.code == 404 else None
    except (OSError, ValueError):
        return None
    if "json" in kind:
        data = json.loads(body)
        if isinstance(data.get("versions"), list):
            return tuple(str(v) for v in data["versions"])
        filenames = [f.get("filename", "") for f in data.get("files", [])]
    else:
        parser = _Links()
        parser.feed(body.decode("utf-8", "replace"))
        filenames = parser.names
    found = [m.group(1) for m in map(_VERSION_IN_FILE.match, filenames) if m]
    return tuple(dict.fromkeys(found))


def _satisfied(spec: str, versions: tuple[str, ...]) -> bool:
    try:
        from packaging.specifiers import SpecifierSet
        from packaging.version import InvalidVersion, Version
    except ImportError:  # packaging comes with huggingface_hub; compare exact pins as text
        return spec.lstrip("=") in versions
    wanted = SpecifierSet(spec)
    for text in versions:
        try:
            if Version(text) in wanted:
                return True
        except InvalidVersion:
            continue
    return False


def unsatisfiable(requirements: list[str], indexes: Optional[list[str]] = None,
                  workers: int = 8) -> tuple[list[PinProblem], list[str]]:
    """``(problems, unanswered)``: pins no index can satisfy, and names no index answered for.

    Lines that are not ``name<specifier>`` (git+ URLs, paths, options) are
    not the index's business and are skipped."""
    indexes = indexes or pip_indexes()
    checks = []
    for line in requirements:
        match = _REQ.match(line)
        if match and match.group(3) and not line.strip().startswith(("-", "git+", "http")):
            checks.append((line.strip(), match.group(1), match.group(3).strip()))
    problems: list[PinProblem] = []
    unanswered: list[str] = []

    def check(item: tuple[str, str, str]) -> tuple[tuple[str, str, str], Optional[PinProblem], bool]:
        requirement, name, spec = item
        seen: tuple[str, ...] = ()
        answered = False
        for index in indexes:
            versions = index_versions(index, name)
            if versions is None:
                continue
            answered = True
            if _satisfied(spec, versions):
                return item, None, True
            seen = seen or versions
        return item, (PinProblem(requirement, indexes[0], seen) if answered else None), answered

    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        for (requirement, _, _), problem, answered in pool.map(check, checks):
            if problem:
                problems.append(problem)
            elif not answered:
                unanswered.append(requirement)
    return problems, unanswered

"""The Hugging Face token file, here or on the login node: where it is, what
state it is in, and storing a token in it.

Where: one rule, huggingface_hub's own: ``$HF_TOKEN_PATH``, else
``$HF_HOME/token``, else ``$XDG_CACHE_HOME/huggingface/token``, else
``~/.cache/huggingface/token`` (:func:`token_path_in`). It is applied to the
environment of the machine holding the file: this process's
(:func:`token_file_path`), or the login node's shell's, where the jobs read
it (:func:`locate_token_file` with that machine's runner; the jobs inherit
that environment through sbatch).

Reading: :func:`find_token` (this machine): ``HF_TOKEN`` first, then the file.

Writing: :func:`store_token` writes that file and nothing else (no
``stored_tokens`` beside it, huggingface_hub's ``login()`` second copy), the
same way on both machines, through a runner: the token travels on the
command's stdin (never argv or env) into a temp file ``mktemp`` creates 0600,
renamed over the old one. A folder it has to create is created 0700; a folder
that exists keeps its mode (it may be the user's home, a 0755 ``$HF_HOME`` or
a shared 1777 folder), and :attr:`StoredToken.warning` says when others may
write in it. Validating a token is the caller's, once, before it is stored
(:func:`hpcwizard.checks.hub.validate_token`).

No Textual and no huggingface_hub here: the token step and ``find_token`` in
every job load only this.
"""

from __future__ import annotations

import os
import posixpath
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from hpcwizard.errors import UserError
from hpcwizard.shell import Runner

ENV_SOURCE = "HF_TOKEN environment variable"
#: The variables the rule reads, in that order of precedence (HOME last: ``~``).
RULE_VARIABLES = ("HF_TOKEN_PATH", "HF_HOME", "XDG_CACHE_HOME", "HOME")
_VARIABLE = re.compile(r"\$(\w+)|\$\{(\w+)\}")


@dataclass(frozen=True)
class TokenSource:
    """A token and where it was found. ``repr``/``str`` never show the token."""

    token: str = field(repr=False)
    source: str  # "HF_TOKEN environment variable" or the token file's path
    path: Path | None = None  # the token file, when it came from one

    def __str__(self) -> str:
        return f"Hugging Face token from {self.source}"


def clean_token(token: str | None) -> str | None:
    """A pasted or read token without line breaks and blanks (None: empty)."""
    if token is None:
        return None
    return token.replace("\r", "").replace("\n", "").strip() or None


def _expand(text: str, env: Mapping[str, str]) -> str:
    """``~`` and ``$VAR``/``${VAR}`` as huggingface_hub expands them
    (``expanduser``, then ``expandvars``), with ``env`` for the environment."""
    home = env.get("HOME") or ""
    if home and (text == "~" or text.startswith("~/")):
        text = home + text[1:]

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return env.get(name, match.group(0))  # an unset variable stays as written

    return _VARIABLE.sub(value, text)


def token_path_in(env: Mapping[str, str]) -> str:
    """Where the token file is for a process with environment ``env``."""
    explicit = env.get("HF_TOKEN_PATH")
    if explicit:
        return _expand(explicit, env)
    hf_home = env.get("HF_HOME")
    if not hf_home:
        cache = env.get("XDG_CACHE_HOME") or posixpath.join(env.get("HOME") or "~", ".cache")
        hf_home = posixpath.join(cache, "huggingface")
    return posixpath.join(_expand(hf_home, env), "token")


def token_file_path() -> Path:
    """This machine's token file (for this process's environment)."""
    env = dict(os.environ)
    env.setdefault("HOME", os.path.expanduser("~"))
    return Path(token_path_in(env))


def find_token() -> TokenSource | None:
    """The token huggingface_hub would use here: ``HF_TOKEN`` first, then the token file."""
    from_env = clean_token(os.environ.get("HF_TOKEN"))
    if from_env:
        return TokenSource(from_env, ENV_SOURCE)
    path = token_file_path()
    try:
        from_file = clean_token(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError, UnicodeDecodeError):
        return None
    return TokenSource(from_file, str(path), path) if from_file else None


# -- the token file of a runner's machine (this one, or the login node) ----------------------

# Prints the rule's variables, NUL-separated (a value may hold anything but NUL).
_ENV_PROBE = "printf '%s\\0' " + " ".join(f'"${{{name}-}}"' for name in RULE_VARIABLES)

# $1 the token file: its size and mode (nothing when absent), then its folder's mode.
_INSPECT = r"""
f=$1
if [ -f "$f" ]; then stat -L -c '%s %a' -- "$f"; else echo -; fi
stat -L -c '%a' -- "$(dirname -- "$f")" 2>/dev/null || echo -
"""

# $1 the token file; the token on stdin. A missing folder is created 0700
# (umask 077, parents too); an existing one is left as it is. The file is a
# mktemp file (0600 from its first byte) renamed over the old one. Prints
# whether the folder was created (1/0) and its mode.
_STORE = r"""
umask 077
f=$1
d=$(dirname -- "$f")
made=0
if [ ! -d "$d" ]; then mkdir -p -- "$d" || exit 1; made=1; fi
t=$(mktemp "$d/.token.XXXXXX") || exit 1
if cat > "$t" && mv -f -- "$t" "$f"; then
    printf '%s %s\n' "$made" "$(stat -L -c '%a' -- "$d" 2>/dev/null || echo -)"
    exit 0
fi
rm -f -- "$t"
exit 1
"""


def _octal(text: str) -> int | None:
    try:
        return int(text, 8)
    except ValueError:
        return None


#: What to do about a token folder others may write in.
FOLDER_FIX = "keep the token in a folder only you can write (set HF_TOKEN_PATH)"


def folder_warning(folder: str, mode: int | None) -> str | None:
    """A warning when others may write in the token's folder (they could
    replace the file with a token of theirs, or a link); :data:`FOLDER_FIX` says what to do."""
    if mode is None or not mode & 0o022:
        return None
    return f"its folder {folder} (mode {stat.S_IMODE(mode):o}) is writable by other users, who could replace it"


@dataclass(frozen=True)
class TokenFile:
    """The token file of one machine, as found there."""

    path: str
    size: int | None = None  # None: no file there
    mode: int | None = None
    folder_mode: int | None = None

    @property
    def present(self) -> bool:
        """A file with something in it."""
        return bool(self.size)

    @property
    def loose(self) -> bool:
        """Group or others may read it."""
        return self.mode is not None and bool(self.mode & 0o077)

    @property
    def warning(self) -> str | None:
        return folder_warning(posixpath.dirname(self.path), self.folder_mode)


@dataclass(frozen=True)
class StoredToken:
    """Where a token was stored, and what to say about its folder."""

    path: str
    created_folder: bool = False
    warning: str | None = None


def locate_token_file(runner: Runner) -> str:
    """Where the token file is on the runner's machine (it may not exist),
    by the rule of :func:`token_path_in` applied to that machine's environment."""
    result = runner.run(["sh", "-c", _ENV_PROBE], timeout=30)
    values = result.stdout.split("\0")
    if not result.ok or len(values) < len(RULE_VARIABLES):
        raise UserError("cannot tell where the Hugging Face token file belongs on the login node",
                        (result.stderr.strip().splitlines() or [f"exit status {result.returncode}"])[-1])
    env = {name: value for name, value in zip(RULE_VARIABLES, values) if value}
    path = token_path_in(env)
    if not path.startswith("/"):
        raise UserError(f"the Hugging Face token file would be {path!r} on the login node, not an absolute path",
                        "set HOME, HF_HOME or HF_TOKEN_PATH to an absolute path there")
    return path


def inspect_token_file(runner: Runner) -> TokenFile:
    """The token file the runner's machine (and its jobs) would read: where,
    how big, its mode and its folder's. Only ``stat`` runs: the token never travels."""
    path = locate_token_file(runner)
    result = runner.run(["sh", "-c", _INSPECT, "sh", path], timeout=30)
    lines = result.stdout.split("\n") if result.ok else []
    file_line = lines[0].split() if lines else []
    size = int(file_line[0]) if len(file_line) == 2 and file_line[0].isdigit() else None
    mode = _octal(file_line[1]) if len(file_line) == 2 else None
    folder_mode = _octal(lines[1].strip()) if len(lines) > 1 else None
    return TokenFile(path, size, mode, folder_mode)


def store_token(token: str, runner: Runner, path: str | None = None) -> StoredToken:
    """Store ``token`` (validated by the caller) as the token file of the
    runner's machine (or ``path`` there): only that file is written, 0600."""
    token = clean_token(token) or ""
    if not token:
        raise UserError("the Hugging Face token is empty", "paste a token")
    path = path or locate_token_file(runner)
    result = runner.run(["sh", "-c", _STORE, "sh", path], stdin=token, timeout=30)
    if not result.ok:
        raise UserError(f"cannot save the token as {path}: "
                        f"{(result.stderr.strip().splitlines() or ['exit status ' + str(result.returncode)])[-1]}",
                        "check that the folder is writable by you and the disk not full")
    made, _, mode = result.stdout.strip().partition(" ")
    created = made == "1"
    return StoredToken(path, created, None if created else folder_warning(posixpath.dirname(path), _octal(mode)))


def make_private(path: str, runner: Runner) -> None:
    """Make a token file the user chose readable by them alone (0600); its
    folder is left as it is (it may be their home)."""
    runner.run(["chmod", "600", "--", path], timeout=30).check()

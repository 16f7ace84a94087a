"""The training environment: conda (micromamba, mamba, conda) when present, else a venv.

Built where the network is (the login node for ``download: login``), into its
final folder (neither conda envs nor venvs can be moved). A stamp written last
holds the hash of every input (the requirement lists after ``env_overrides``,
the Python range, the tool kind), so a second ``prepare`` with the same inputs
does nothing, a changed input rebuilds, and the setup job of a login plan can
check it offline.

Training environments pin old stacks (transformers 4.x needs
huggingface_hub < 1.0): they are always separate from hpcwizard's own.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import yaml

from hpcwizard.prepare.steps import LineCallback, PrepareError, command_env, last_error_line, run_streaming
from hpcwizard.project.prepare_spec import KNOWN_PYTHONS, EnvironmentSpec, PythonSpec

STAMP = ".hpcwizard-env-ready"
CONDA_TOOLS = ("micromamba", "mamba", "conda")
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def requirement_key(text: str) -> str:
    """A pin compared the way pip would: name normalised (PEP 503), no spaces."""
    text = text.split(";")[0].strip()
    match = _NAME.match(text)
    if not match:
        return text.replace(" ", "")
    name = re.sub(r"[-_.]+", "-", match.group(1)).lower()
    return name + text[match.end():].replace(" ", "")


@dataclass(frozen=True)
class Requirements:
    """The environment's inputs once read and overridden."""

    pip: tuple[str, ...]                 # pip requirement lines (overrides applied, extras added)
    environment_yml: Optional[str]       # the overridden environment.yml text, for conda
    unused_overrides: tuple[str, ...]    # env_overrides keys that matched no pin
    python: PythonSpec

    def digest(self, kind: str) -> str:
        blob = json.dumps({"kind": kind, "pip": self.pip, "yml": self.environment_yml,
                           "python": self.python.text}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()


def _apply(lines: list[str], overrides: Mapping[str, str], used: set[str]) -> list[str]:
    wanted = {requirement_key(k): (k, v) for k, v in overrides.items()}
    out = []
    for line in lines:
        hit = wanted.get(requirement_key(line))
        if hit:
            used.add(hit[0])
            out.append(hit[1])
        else:
            out.append(line)
    return out


def _pip_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def pip_section(yml_text: str, where: str) -> tuple[dict[str, Any], list[str]]:
    """The parsed environment.yml and the pip list inside its dependencies."""
    try:
        data = yaml.safe_load(yml_text) or {}
    except yaml.YAMLError:
        raise PrepareError(f"environment: {where} is not valid YAML", "fix or download it again, then prepare again") from None
    if not isinstance(data, dict):
        raise PrepareError(f"environment: {where} is not a conda environment file (not a mapping)")
    pip: list[str] = []
    for dep in data.get("dependencies") or []:
        if isinstance(dep, dict) and isinstance(dep.get("pip"), list):
            pip.extend(str(item).strip() for item in dep["pip"] if str(item).strip())
    return data, pip


def read_requirements(spec: EnvironmentSpec, overrides: Mapping[str, str],
                      generated: Optional[str] = None) -> Requirements:
    """The environment's inputs, with ``overrides`` (pin -> replacement) applied.

    ``generated``: the text of the recipe's rendered requirements file, when
    the spec names one."""
    used: set[str] = set()
    yml_out: Optional[str] = None
    if spec.environment_yml is not None:
        try:
            text = spec.environment_yml.read_text(encoding="utf-8")
        except OSError:
            raise PrepareError(f"environment: {spec.environment_yml} is missing",
                               "it comes with the files: prepare them first") from None
        data, pip = pip_section(text, str(spec.environment_yml))
        pip = _apply(pip, overrides, used)
        deps = []
        for dep in data.get("dependencies") or []:
            if isinstance(dep, dict) and "pip" in dep:
                deps.append({"pip": pip + list(spec.extra)})
            else:
                deps.append(dep)
        if not any(isinstance(d, dict) and "pip" in d for d in deps) and spec.extra:
            deps.append({"pip": list(spec.extra)})
        data = {**data, "dependencies": deps}
        data.pop("prefix", None)  # the machine it was exported on
        yml_out = yaml.safe_dump(data, sort_keys=False)
    elif spec.requirements is not None:
        try:
            pip = _pip_lines(spec.requirements.read_text(encoding="utf-8"))
        except OSError:
            raise PrepareError(f"environment: {spec.requirements} is missing",
                               "it comes with the files: prepare them first") from None
        pip = _apply(pip, overrides, used)
    else:
        pip = _apply(_pip_lines(generated or ""), overrides, used)
    return Requirements(pip=tuple(pip) + spec.extra, environment_yml=yml_out,
                        unused_overrides=tuple(k for k in overrides if k not in used), python=spec.python)


def conda_tool(env: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """micromamba, mamba or conda, the first on PATH (``env``'s: the plan's modules loaded)."""
    path = env.get("PATH") if env is not None else None
    return next((tool for tool in CONDA_TOOLS if shutil.which(tool, path=path)), None)


def python_version(exe: str, env: Optional[Mapping[str, str]] = None) -> Optional[tuple[tuple[int, int], str]]:
    """``((major, minor), real executable)`` of the Python ``exe`` starts (a pyenv shim's target)."""
    try:
        out = subprocess.run([exe, "-c", "import sys; print('%d.%d' % sys.version_info[:2]); print(sys.executable)"],
                             capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=30, env=command_env(env))
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = out.stdout.split("\n")
    major, _, minor = lines[0].strip().partition(".")
    if out.returncode != 0 or not major.isdigit() or not minor.isdigit():
        return None
    return (int(major), int(minor)), (lines[1].strip() if len(lines) > 1 and lines[1].strip() else exe)


def find_python(spec: PythonSpec, env: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """A Python on PATH (``env``'s) the range allows (python3.X newest first, then python3), by its real path."""
    names = [f"python{major}.{minor}" for major, minor in KNOWN_PYTHONS] + ["python3"]
    path = env.get("PATH") if env is not None else None
    for name in names:
        exe = shutil.which(name, path=path)
        found = python_version(exe, env) if exe else None
        if found and spec.allows(found[0]):
            return found[1]
    return None


def no_python_hint(spec: PythonSpec) -> str:
    best = spec.best_known()
    want = f"{best[0]}.{best[1]}" if best else spec.text
    return (f"load one (e.g. `module load python/{want}`; `module avail python` lists them) "
            "or install conda/micromamba, then prepare again")


def environment_problem(spec: EnvironmentSpec, reqs: Requirements) -> Optional[str]:
    """Offline: why the environment is not ready for these inputs, or None when it is."""
    try:
        stamp = json.loads((spec.dir / STAMP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return f"{spec.dir} is not built yet"
    if not isinstance(stamp, dict) or stamp.get("digest") != reqs.digest(str(stamp.get("kind"))):
        return f"{spec.dir} was built from other requirements (they changed since)"
    return None


#: conda 25.5 and later (Anaconda's installers) refuse Anaconda's own
#: channels (``defaults``, which the user's fork lists) until their Terms of
#: Service are accepted, and never ask when run without a terminal.
_TERMS_REFUSED = "Terms of Service have not been accepted"
_ANACONDA_CHANNEL = re.compile(r"https://repo\.anaconda\.com/\S+")


def _fail(status: int, tail: list[str], what: str) -> None:
    if status == 0:
        return
    if any(_TERMS_REFUSED in line for line in tail):
        channels = list(dict.fromkeys(c.rstrip(".,;:") for line in tail if "tos accept" not in line
                                      for c in _ANACONDA_CHANNEL.findall(line)))
        named = ", ".join(channels) or "Anaconda's channels"
        example = channels[0] if channels else "https://repo.anaconda.com/pkgs/main"
        raise PrepareError(
            f"environment: {what} failed: this conda wants Anaconda's Terms of Service accepted for {named} "
            "(environment.yml lists the defaults channel)",
            f"if your site may use them, accept once on this login node (`conda tos accept --override-channels "
            f"--channel {example}`, for each channel), or use a conda without them (Miniforge, micromamba: "
            "conda-forge only); then prepare again")
    raise PrepareError(f"environment: {what} failed: {last_error_line(tail)}",
                       "fix the cause above (a pin the package index lacks: env_overrides in the plan), then prepare again")


def build_environment(spec: EnvironmentSpec, reqs: Requirements, on_line: LineCallback,
                      env: Optional[Mapping[str, str]] = None) -> str:
    """Build the environment unless its stamp matches; return what was done, in a few words.

    ``env``: the environment to build in (the plan's modules loaded, see
    :mod:`hpcwizard.prepare.modules`); this process's by default."""
    for key in reqs.unused_overrides:
        on_line(f"WARNING: env_overrides {key!r} matches no requirement of this environment")
    if environment_problem(spec, reqs) is None:
        return f"{spec.name} already built"
    tool = conda_tool(env)
    kind = tool or "venv"
    if spec.dir.exists():
        on_line(f"removing the outdated environment {spec.dir}")
        shutil.rmtree(spec.dir)
    spec.dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="hpcwizard-env-") as tmp:
        req_file = Path(tmp) / "requirements.txt"
        req_file.write_text("".join(line + "\n" for line in reqs.pip), encoding="utf-8")
        if tool and reqs.environment_yml is not None:
            yml = Path(tmp) / "environment.yml"
            yml.write_text(reqs.environment_yml, encoding="utf-8")
            argv = ([tool, "create", "-y", "-p", str(spec.dir), "-f", str(yml)] if tool == "micromamba"
                    else [tool, "env", "create", "-p", str(spec.dir), "-f", str(yml)])
            on_line(f"creating the {tool} environment {spec.dir}")
            _fail(*run_streaming(argv, on_line, env=env), f"{tool} env create")
        else:
            if tool:
                best = spec.python.best_known()
                if best is None:
                    raise PrepareError(f"environment: no known Python satisfies {spec.python.text}")
                on_line(f"creating the {tool} environment {spec.dir} (python {best[0]}.{best[1]})")
                _fail(*run_streaming([tool, "create", "-y", "-p", str(spec.dir), f"python={best[0]}.{best[1]}", "pip"],
                                     on_line, env=env), f"{tool} create")
            else:
                if reqs.environment_yml is not None:
                    on_line("WARNING: no conda, mamba or micromamba here; a venv gets only the pip packages of environment.yml")
                python = find_python(spec.python, env)
                if python is None:
                    raise PrepareError(f"environment: no Python {spec.python.text} on this machine's PATH", no_python_hint(spec.python))
                on_line(f"creating the venv {spec.dir} with {python}")
                _fail(*run_streaming([python, "-m", "venv", str(spec.dir)], on_line, env=env), "python -m venv")
            if reqs.pip:
                on_line(f"installing {len(reqs.pip)} pip requirement(s)")
                _fail(*run_streaming([str(spec.dir / "bin" / "python"), "-m", "pip", "install", "--no-input",
                                      "--progress-bar", "off", "-r", str(req_file)], on_line, env=env), "pip install")
    stamp = spec.dir / (STAMP + ".tmp")
    stamp.write_text(json.dumps({"digest": reqs.digest(kind), "kind": kind}) + "\n", encoding="utf-8")
    stamp.replace(spec.dir / STAMP)
    return f"{spec.name} built ({kind}, {len(reqs.pip)} pip requirement(s))"

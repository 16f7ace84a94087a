"""The plan: the user's answers, one YAML file.

The wizard writes exactly this file; ``check``, ``render``, ``submit`` and
``download`` read it. Loading validates every key: an unknown key or a bad
value is refused with the key's name and what is allowed, because a typo in
a plan must never silently become a default on a cluster.

Values that end up in ``#SBATCH`` lines (partition, account, QoS, memory,
time) are validated against strict patterns, since sbatch directives are not
shell and cannot be quoted; paths and free-form values are quoted by the
renderer instead.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from hpcwizard.errors import UserError, first_unknown_key
from hpcwizard.project.layout import ProjectLayout

DOWNLOAD_MODES = ("job", "login")
PLAN_KEYS = (
    "recipe", "variant", "project_home", "data_root", "hf_namespace",
    "download", "setup", "train", "account", "qos", "params", "env_overrides", "notify", "modules",
)
RESOURCE_KEYS = ("partition", "gpus", "cpus", "mem", "time")
#: Keys only the train section has: ``segments`` (continuing across the time
#: limit) and ``nodes`` (machines, each with ``gpus`` GPUs).
TRAIN_ONLY_KEYS = ("segments", "nodes")
#: ``train.nodes`` at most (a typo guard; the partition's size is the real bound, checked by preflight).
MAX_NODES = 1024
_TRAIN_ONLY_DEFAULTS: dict[str, Any] = {"segments": None, "nodes": 1}
#: ``train.segments`` at most (a bound against loops, not a goal).
MAX_SEGMENTS = 1000
NOTIFY_KEYS = ("mail",)

# Slurm names: partitions, accounts, QoS. Letters, digits, _ . - only.
_SLURM_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
# Memory as sbatch takes it: a number with an optional K/M/G/T suffix.
_MEMORY = re.compile(r"^[1-9][0-9]*[KMGT]?$")
# Recipe variant names (they appear in generated scripts' comments).
_VARIANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# Hugging Face user or organisation names.
_HF_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
# Characters Slurm interprets in --chdir/--output/--error paths (%j, %x, ...
# and \ escapes): refused in project_home and data_root.
_SLURM_PATH_SPECIAL = "%\\"
# A mail address for --mail-user: it goes into an #SBATCH line, which cannot
# be quoted, so only the plain shape local@domain.tld (no %, quotes, spaces).
_MAIL = re.compile(r"^[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*@[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?"
                   r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?)*\.[A-Za-z]{2,63}$")
# Time limits as sbatch accepts them: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S.
_TIME = re.compile(r"^(?:\d+-\d{1,2}(?::\d{1,2}){0,2}|\d+(?::\d{1,2}){0,2})$")


class PlanError(UserError):
    """The plan file is missing, unreadable or has a bad value."""


@dataclass(frozen=True)
class JobResources:
    """What one kind of job asks Slurm for."""

    partition: str
    cpus: int = 1
    mem: str = "4G"
    time: str = "01:00:00"
    gpus: int = 0
    #: train only: how many segments the job may run, continuing across its
    #: time limit (README "Long trainings"); None is ``auto`` (the estimated
    #: need plus 50 %, see :mod:`hpcwizard.jobs.continuation`)
    segments: int | None = None
    #: train only: machines the job spans; ``gpus`` (and cpus, mem) are per node
    nodes: int = 1

    @property
    def total_gpus(self) -> int:
        """GPUs over all nodes: the training's process count."""
        return self.gpus * self.nodes

    def time_seconds(self) -> int:
        return parse_time_limit(self.time)

    def mem_megabytes(self) -> int:
        return parse_memory_mb(self.mem)

    def time_text(self) -> str:
        """The time limit as Slurm reads it (``1`` is one minute: ``00:01:00``), never raw."""
        from hpcwizard.slurm.parse import format_slurm_duration

        try:
            return format_slurm_duration(self.time_seconds())
        except ValueError:  # not a time limit: validation says why
            return str(self.time)

    def describe(self) -> str:
        """``1 CPU, no GPU, 1G, 00:10:00``: what the job asks for, as people say it."""
        gpus = count_of(self.gpus, "GPU") if self.gpus else "no GPU"
        text = f"{count_of(self.cpus, 'CPU')}, {gpus}, {self.mem}, {self.time_text()}"
        return f"{self.nodes} nodes × ({text})" if self.nodes > 1 else text


def count_of(n: int, word: str) -> str:
    """``1 CPU``, ``8 CPUs``."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


@dataclass(frozen=True)
class Plan:
    """The user's answers, as in DESIGN.md's plan file."""

    recipe: str
    project_home: Path
    data_root: Path
    setup: JobResources
    train: JobResources
    variant: str | None = None
    hf_namespace: str | None = None
    download: str = "job"
    account: str | None = None
    qos: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    #: environment pin -> replacement requirement, applied when the training
    #: environment is built (``clip==1.0`` -> ``git+https://github.com/openai/CLIP.git``)
    env_overrides: dict[str, str] = field(default_factory=dict)
    #: ``notify: {mail: ADDRESS}``: Slurm mails the end, a failure and a requeue of each job
    notify_mail: str | None = None
    #: environment modules (``module load``) the environment is built and run
    #: with: ``python/3.11`` where the login node's python3 is too old
    modules: tuple[str, ...] = ()

    @property
    def layout(self) -> ProjectLayout:
        """Where this project's state, scripts and logs live."""
        return ProjectLayout(self.project_home)

    @property
    def state_dir(self) -> Path:
        """Where hpcwizard keeps this project's plan, state and scripts."""
        return self.layout.state_dir

    @property
    def logs_dir(self) -> Path:
        return self.layout.logs_dir

    @property
    def job_prefix(self) -> str:
        return job_prefix_for(self.project_home)

    def to_dict(self) -> dict[str, Any]:
        """The plan as plain YAML-able data, in the documented key order."""
        data: dict[str, Any] = {"recipe": self.recipe}
        if self.variant is not None:
            data["variant"] = self.variant
        data["project_home"] = str(self.project_home)
        data["data_root"] = str(self.data_root)
        data["hf_namespace"] = self.hf_namespace
        data["download"] = self.download
        for kind in ("setup", "train"):
            res = asdict(getattr(self, kind))
            if not res["gpus"]:
                del res["gpus"]
            if res["segments"] is None:
                # auto, the default: left out, so plans written before
                # segments existed keep their fingerprint
                del res["segments"]
            if res["nodes"] == 1:
                del res["nodes"]  # one node, the default: plans keep their fingerprint
            data[kind] = res
        data["account"] = self.account
        data["qos"] = self.qos
        if self.params:
            data["params"] = dict(self.params)
        if self.env_overrides:
            data["env_overrides"] = dict(self.env_overrides)
        if self.notify_mail:
            data["notify"] = {"mail": self.notify_mail}
        if self.modules:
            data["modules"] = list(self.modules)
        return data

    def to_yaml(self) -> str:
        import yaml  # PyYAML when a plan is written, not when the wizard starts

        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)

    def fingerprint(self) -> str:
        """A stable hash of the plan, to recognise a plan already submitted."""
        import hashlib

        import yaml

        canonical = yaml.safe_dump(self.to_dict(), sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def with_changes(self, **changes: Any) -> "Plan":
        return replace(self, **changes)


def job_prefix_for(project_home: Path) -> str:
    """Prefix of a project's Slurm job names, for finding them in squeue.

    The folder name keeps it readable; a short hash of the whole path keeps
    two projects both called ``run1`` apart.
    """
    import hashlib

    slug = re.sub(r"[^a-z0-9]+", "-", Path(project_home).name.lower()).strip("-")[:20]
    digest = hashlib.sha1(str(project_home).encode()).hexdigest()[:6]
    return f"hw-{slug or 'project'}-{digest}-"


def parse_time_limit(text: str) -> int:
    """Seconds in a plan's time limit (``M``, ``H:M:S``, ``D-H:M:S``...)."""
    from hpcwizard.slurm.parse import parse_slurm_duration

    text = str(text).strip()
    problem = time_limit_problem(text)
    if problem:
        raise ValueError(f"not a Slurm time limit: {text!r} ({problem})")
    return parse_slurm_duration(text) or 0


def time_limit_problem(text: str) -> str | None:
    """Why ``text`` is not a usable time limit, or None.

    Slurm would silently round ``25:99`` up and refuses ``0``: fields after
    the first are minutes and seconds (< 60), hours after ``D-`` are < 24."""
    if not _TIME.fullmatch(text):
        return "write it like 12:00:00, 2-00:00:00 or 90 (minutes)"
    days, _, clock = text.rpartition("-")
    fields = [int(f) for f in clock.split(":")]
    if any(f >= 60 for f in fields[1:]) or (days and fields[0] >= 24):
        return "minutes and seconds go up to 59, and hours up to 23 once days are given (2-23:59:59)"
    if not int(days or 0) and not any(fields):
        return "a zero time limit lets the job run for no time at all"
    return None


def parse_memory_mb(text: str) -> int:
    """Megabytes in an sbatch ``--mem`` value (no suffix means MB)."""
    text = str(text).strip().upper()
    if not _MEMORY.fullmatch(text):
        raise ValueError(f"not a memory size: {text!r}")
    factor = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}
    if text[-1] in factor:
        return int(int(text[:-1]) * factor[text[-1]])
    return int(text)


def _type_name(value: Any) -> str:
    return type(value).__name__ if value is not None else "nothing"


def _check_path(key: str, value: Any) -> Path:
    if not isinstance(value, str) or not value:
        raise PlanError(f"{key} must be an absolute path, got {_type_name(value)}",
                        f"set {key}: /abs/path in the plan")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise PlanError(f"{key} contains a control character", "choose a path without newlines or tabs")
    path = Path(value).expanduser()
    if not path.is_absolute():
        raise PlanError(f"{key} must be an absolute path, got {value!r}", f"write it as /abs/{value}")
    slurm_special = next((ch for ch in str(path) if ch in _SLURM_PATH_SPECIAL), None)
    if slurm_special:
        # Jobs run with --chdir=<project home> and --output/--error=logs/%x-%j.*:
        # Slurm reads % patterns and \ escapes in those, so the job would run
        # elsewhere or fail to open its log, and end with no log at all.
        what = "a backslash" if slurm_special == "\\" else repr(slurm_special)
        raise PlanError(f"{key} {str(path)!r} contains {what}, which Slurm expands in a job's "
                        "working directory and log paths (%j, %x, \\ escapes): the job would fail with no log at all",
                        "choose a path without % or \\ (rename the folder or use a link to it)")
    return path


def _check_name(key: str, value: Any, pattern: re.Pattern[str], what: str, optional: bool) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise PlanError(f"{key} has a bad value {value!r}", f"allowed: {what}")
    return value


def _check_resources(kind: str, value: Any, defaults: JobResources | None) -> JobResources:
    if value is None and defaults is not None:
        return defaults
    if not isinstance(value, dict):
        raise PlanError(f"{kind} must be a mapping", f"e.g. {kind}: {{partition: cpu, cpus: 4, mem: 16G, time: \"12:00:00\"}}")
    allowed = RESOURCE_KEYS + (TRAIN_ONLY_KEYS if kind == "train" else ())
    # A train-only key at its default anywhere is "not set" (a JobResources
    # turned into a dict carries segments: null and nodes: 1).
    unknown = first_unknown_key((k for k in value if not (k in TRAIN_ONLY_KEYS and value[k] == _TRAIN_ONLY_DEFAULTS[k])),
                                allowed)
    if unknown is not None:
        raise PlanError(f"unknown key {kind}.{unknown}", f"allowed keys: {', '.join(allowed)}")
    merged = asdict(defaults) if defaults else {}
    merged.update(value)
    merged["segments"] = _check_segments(kind, merged.get("segments"))
    merged["nodes"] = _check_nodes(kind, merged.get("nodes", 1))
    if "partition" not in merged:
        raise PlanError(f"{kind}.partition is missing", "name the Slurm partition (see `sinfo`)")
    _check_name(f"{kind}.partition", merged["partition"], _SLURM_NAME, "a Slurm partition name (letters, digits, _ . -)", False)
    for number in ("cpus", "gpus"):
        n = merged.get(number, 0 if number == "gpus" else 1)
        if isinstance(n, bool) or not isinstance(n, int) or n < (0 if number == "gpus" else 1) or n > 4096:
            low = 0 if number == "gpus" else 1
            raise PlanError(f"{kind}.{number} has a bad value {n!r}", f"allowed: a whole number from {low} to 4096")
        merged[number] = n
    mem = str(merged.get("mem", "4G")).upper()
    if not _MEMORY.fullmatch(mem):
        raise PlanError(f"{kind}.mem has a bad value {merged.get('mem')!r}", "allowed: a size like 16G, 500M or 1T")
    merged["mem"] = mem
    time = merged.get("time", "01:00:00")
    if not isinstance(time, str):
        # YAML reads an unquoted 12:00:00 as the number 43200 (base 60): the
        # job would ask 43200 minutes. Only text is unambiguous.
        raise PlanError(f"{kind}.time is the number {time!r}, not a time",
                        'quote it in YAML, e.g. time: "12:00:00" (unquoted, YAML reads 12:00:00 as 43200)')
    problem = time_limit_problem(time)
    if problem:
        raise PlanError(f"{kind}.time has a bad value {time!r}: {problem}",
                        "allowed: a Slurm time like 12:00:00, 2-00:00:00 or 90 (minutes), quoted in YAML")
    return JobResources(**merged)


def _check_nodes(kind: str, value: Any) -> int:
    """``train.nodes``: how many machines, each with ``train.gpus`` GPUs."""
    if value is None:
        return 1
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_NODES:
        raise PlanError(f"{kind}.nodes has a bad value {value!r}",
                        f"allowed: a whole number from 1 to {MAX_NODES} (machines; train.gpus is per node)")
    return value


def _check_segments(kind: str, value: Any) -> int | None:
    """``train.segments``: ``auto`` (None) or how many segments at most."""
    if value is None or value == "auto":
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_SEGMENTS:
        raise PlanError(f"{kind}.segments has a bad value {value!r}",
                        f"allowed: auto (the estimated need plus 50 %) or a whole number from 1 to {MAX_SEGMENTS} "
                        "(1: no continuation, the job ends at its time limit)")
    return value


def _check_notify(value: Any) -> str | None:
    """``notify: {mail: ADDRESS}``: the address, validated (it goes into an #SBATCH line)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise PlanError("notify must be a mapping", "e.g. notify: {mail: alice@example.org}")
    unknown = first_unknown_key(value, NOTIFY_KEYS)
    if unknown is not None:
        raise PlanError(f"unknown key notify.{unknown}", f"allowed keys: {', '.join(NOTIFY_KEYS)}")
    mail = value.get("mail")
    if mail is None:
        return None
    if not isinstance(mail, str) or len(mail) > 254 or not _MAIL.fullmatch(mail):
        raise PlanError(f"notify.mail has a bad value {mail!r}",
                        "allowed: one mail address like alice@example.org (letters, digits and . _ + - only) or null")
    return mail


def plan_from_dict(data: Any, *, recipe_names: tuple[str, ...] | None = None) -> Plan:
    """Validate plan data; raise :class:`PlanError` naming the first bad key."""
    if not isinstance(data, dict):
        raise PlanError("the plan must be a YAML mapping of keys to values", "see 'The plan file' in the README for the format, or let `hpcwizard` write one")
    unknown = first_unknown_key(data, PLAN_KEYS)
    if unknown is not None:
        raise PlanError(f"unknown key {unknown!r} in the plan", f"allowed keys: {', '.join(PLAN_KEYS)}")
    if data.get("recipe") is None:
        raise PlanError("the plan has no recipe", "add `recipe:` to the plan")
    # The recipe first: a mistyped one explains the other errors ("no setup").
    recipe = data["recipe"]
    if not isinstance(recipe, str) or (recipe_names is not None and recipe not in recipe_names):
        allowed = ", ".join(recipe_names) if recipe_names else "a recipe name"
        raise PlanError(f"recipe has a bad value {recipe!r}", f"allowed: {allowed}")
    for required in ("project_home", "data_root", "setup", "train"):
        if data.get(required) is None:
            raise PlanError(f"the plan has no {required}", f"add `{required}:` to the plan")
    variant = data.get("variant")
    if variant is not None and (not isinstance(variant, str) or not _VARIANT.fullmatch(variant)):
        raise PlanError(f"variant has a bad value {variant!r}", "write the variant's name, e.g. non-prompt")
    download = data.get("download", "job")
    if download not in DOWNLOAD_MODES:
        raise PlanError(f"download has a bad value {download!r}", f"allowed: {', '.join(DOWNLOAD_MODES)}")
    params = data.get("params") or {}
    if not isinstance(params, dict):
        raise PlanError("params must be a mapping of parameter names to values", "e.g. params: {learning_rate: 1e-5}")
    return Plan(
        recipe=recipe,
        variant=variant,
        project_home=_check_path("project_home", data["project_home"]),
        data_root=_check_path("data_root", data["data_root"]),
        hf_namespace=_check_name("hf_namespace", data.get("hf_namespace"), _HF_NAME,
                                 "a Hugging Face user or organisation name", True),
        download=download,
        setup=_check_resources("setup", data["setup"], None),
        train=_check_resources("train", data["train"], None),
        account=_check_name("account", data.get("account"), _SLURM_NAME, "a Slurm account name or null", True),
        qos=_check_name("qos", data.get("qos"), _SLURM_NAME, "a Slurm QoS name or null", True),
        params=dict(params),
        env_overrides=_check_env_overrides(data.get("env_overrides")),
        notify_mail=_check_notify(data.get("notify")),
        modules=_check_modules(data.get("modules")),
    )


# A module name as Lmod, Environment Modules and Spack write them:
# python/3.11.4, cuda/12.1, py-torch/2.1.0-cuda12 (no spaces, no shell).
_MODULE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+/@:-]*$")
#: a typo guard; a real plan loads a handful
MAX_MODULES = 32


def _check_modules(value: Any) -> tuple[str, ...]:
    """``modules``: names for ``module load``, in order."""
    if value is None:
        return ()
    if isinstance(value, str):
        value = value.split()  # "python/3.11 cuda/12.1" as one string is what people type
    if not isinstance(value, list) or len(value) > MAX_MODULES:
        raise PlanError("modules must be a list of module names",
                        f"e.g. modules: [python/3.11, cuda/12.1] (at most {MAX_MODULES})")
    for name in value:
        if not isinstance(name, str) or len(name) > 200 or not _MODULE.match(name):
            raise PlanError(f"modules has a bad name {name!r}",
                            "write it as `module load` takes it, e.g. python/3.11 (letters, digits, . _ + / @ : -)")
    return tuple(value)


# A pin as environment.yml and requirements files write it: name==version.
_PIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9,._-]+\])?\s*(==|===|~=|>=|<=|>|<|!=)\s*[A-Za-z0-9*+!._-]+$")


def _check_env_overrides(value: Any) -> dict[str, str]:
    """``env_overrides``: pin -> replacement requirement, both one line of text.

    A replacement goes into a requirements file, so it must not be a pip
    option (``--index-url`` would send every download elsewhere)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise PlanError("env_overrides must be a mapping of pins to replacements",
                        "e.g. env_overrides: {'clip==1.0': 'git+https://github.com/openai/CLIP.git'}")
    out: dict[str, str] = {}
    for pin, replacement in value.items():
        if not isinstance(pin, str) or not _PIN.match(pin.strip()):
            raise PlanError(f"env_overrides has a bad pin {pin!r}", "write the pin as environment.yml does, e.g. clip==1.0")
        if (not isinstance(replacement, str) or not replacement.strip() or replacement.strip().startswith("-")
                or any(ord(ch) < 32 for ch in replacement)):
            raise PlanError(f"env_overrides[{pin!r}] has a bad replacement {replacement!r}",
                            "give one requirement, e.g. clip @ git+https://github.com/openai/CLIP.git or clip==0.2.0 "
                            "(no pip options)")
        out[pin.strip()] = replacement.strip()
    return out


#: A plan is a few KB; anything past this is not one (a 100 MB file took
#: 26 s and 330 MB of memory before YAML said so).
MAX_PLAN_BYTES = 1024 * 1024


def read_plan_text(path: Path | str) -> str:
    """A plan file's text; missing, unreadable, too large or not UTF-8 is a
    :class:`PlanError` in one line (the size is checked before reading)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_PLAN_BYTES:
            raise PlanError(f"the plan {path} is {size / 1024 / 1024:.1f} MB: a plan file is a few KB "
                            f"(at most {MAX_PLAN_BYTES // 1024 // 1024} MB)",
                            "pass the YAML plan file `hpcwizard` wrote")
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PlanError(f"no plan file at {path}", "check the path, or run `hpcwizard` to create one") from None
    except OSError as exc:
        raise PlanError(f"cannot read the plan {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise PlanError(f"the plan {path} is not a text file (not UTF-8)",
                        "pass the YAML plan file; `hpcwizard` writes one") from None


def load_plan(path: Path | str, *, recipe_names: tuple[str, ...] | None = None) -> Plan:
    """Read and validate a plan file."""
    import yaml  # PyYAML when a plan is read, not when the wizard starts

    from hpcwizard.project.strict_yaml import DuplicateKey, PlanLoader

    path = Path(path)
    text = read_plan_text(path)
    try:
        data = yaml.load(text, Loader=PlanLoader)  # noqa: S506 - a SafeLoader
    except DuplicateKey as exc:
        raise PlanError(f"the plan {path} sets {exc.key!r} twice (lines {exc.first} and {exc.again})",
                        "keep one of them: YAML would silently use the last") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise PlanError(f"the plan {path} is not valid YAML{where}", "fix the syntax (indentation, quotes)") from None
    return plan_from_dict(data, recipe_names=recipe_names)

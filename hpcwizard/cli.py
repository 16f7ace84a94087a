"""Command line: argument parsing and the non-interactive commands.

Each command is a small function taking the parsed arguments and returning an
exit status. Expected failures are :class:`UserError`: one line on stderr, a
non-zero exit, no traceback.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpcwizard import __version__
from hpcwizard.errors import UserError
from hpcwizard.project.files import LOCAL_FILES, ProjectFiles
from hpcwizard.shell import LocalRunner, Runner

if TYPE_CHECKING:
    from hpcwizard.project.home import Project
    from hpcwizard.project.resolved import ResolvedPlan

INSTALL_HINT = ("install it there (`python3 -m pip install --user hpcwizard`, or pipx) "
                "or pass --remote-hpcwizard /abs/path/to/hpcwizard")


def _connection(args: argparse.Namespace, *, prompts: tuple[Any, Any] | None = None) -> Any:
    """The ONE SSH connection of this command (``--host``), made on first use
    and closed by :func:`main` at exit; None without ``--host``.

    ``prompts``: the TUI's ``(ask_host_key, passphrase)``; the connection is
    then made later, by the app's connect screen, where they can be asked.
    Otherwise the questions go to the terminal and it connects now."""
    if not getattr(args, "host", None):
        return None
    conn = getattr(args, "_ssh_connection", None)
    if conn is None:
        from hpcwizard.remote import SshConnection, terminal_prompts

        ask_host_key, passphrase = prompts or terminal_prompts()
        conn = SshConnection.from_spec(args.host, config_path=args.ssh_config,
                                       ask_host_key=ask_host_key, passphrase=passphrase)
        args._ssh_connection = conn
        if prompts is None:
            conn.connect()  # host key and login problems surface here, as one line
    return conn


def make_runner(args: argparse.Namespace) -> Runner:
    """The runner every command uses: this machine, or the login node of --host."""
    conn = _connection(args)
    if conn is None:
        return LocalRunner()
    from hpcwizard.remote import SshRunner

    return SshRunner(conn)


def make_files(args: argparse.Namespace) -> ProjectFiles:
    """Where project files live: this machine, or the login node of --host."""
    conn = _connection(args)
    if conn is None:
        return LOCAL_FILES
    from hpcwizard.project.files import SshFiles

    files = getattr(args, "_ssh_files", None)
    if files is None:
        files = args._ssh_files = SshFiles(conn)
    return files


def remote_hpcwizard(args: argparse.Namespace, runner: Runner) -> list[str]:
    """How jobs and downloads call hpcwizard on the login node:
    ``[its python, "-m", "hpcwizard"]``, the same shape as locally (the job
    scripts run small Python helpers with ``${HPCWIZARD[0]}``, so it must be
    the interpreter, not the console script). Found from ``--remote-hpcwizard``
    or ``command -v hpcwizard`` there, and checked to run."""
    path = getattr(args, "remote_hpcwizard", None) or runner.which("hpcwizard")
    where = args.host
    if not path:
        raise UserError(f"hpcwizard is not installed on {where} (jobs and downloads run it there)", INSTALL_HINT)
    if not path.startswith("/"):
        raise UserError(f"--remote-hpcwizard must be an absolute path on {where}, got {path!r}")
    try:
        probe = runner.run([path, "--print-python"], timeout=60)
    except UserError as exc:
        raise UserError(f"{path} does not run on {where}: {exc.message}", INSTALL_HINT) from None
    python = probe.stdout.strip()
    if not probe.ok or not python.startswith("/"):
        raise UserError(f"{path} does not run on {where} (or is not this version of hpcwizard): "
                        f"{(probe.stderr or probe.stdout).strip()[:200]}", INSTALL_HINT)
    return [python, "-m", "hpcwizard"]


def _planned_project(args: argparse.Namespace, files: ProjectFiles,
                     runner: Runner | None = None) -> tuple[Project, ResolvedPlan]:
    """The project the plan file of ``args`` is for (its home, through
    ``files``, with ``runner``), and the plan resolved once (its recipe,
    parameters, repos, paths) for everything the command does with it."""
    from hpcwizard.project.home import Project

    plan, recipe = _remote_plan(args, files)
    project = Project(plan.project_home, files, runner)  # the plan's, new or not
    return project, project.resolve(plan, recipe)


def _remote_plan(args: argparse.Namespace, files: ProjectFiles) -> tuple[Any, Any]:
    """Load the LOCAL plan file; in remote mode ``~`` in its paths means the
    login node's home (the plan describes folders there)."""
    from hpcwizard.project.recipe import fill_namespace, load_plan_for_recipe

    if files.remote:
        import tempfile

        import yaml

        from hpcwizard.project.files import expand_home
        from hpcwizard.project.plan import read_plan_text

        try:
            data = yaml.safe_load(read_plan_text(args.plan))  # too large, missing...: one line, before YAML
        except yaml.YAMLError:
            data = None  # load_plan_for_recipe says what is wrong
        if isinstance(data, dict) and any(str(data.get(k, "")).startswith("~") for k in ("project_home", "data_root")):
            for key in ("project_home", "data_root"):
                if isinstance(data.get(key), str):
                    data[key] = expand_home(files, data[key])
            with tempfile.NamedTemporaryFile("w", suffix=".yaml", encoding="utf-8") as tmp:
                yaml.safe_dump(data, tmp, sort_keys=False)
                tmp.flush()
                plan, recipe = load_plan_for_recipe(tmp.name)
            return fill_namespace(plan, recipe), recipe
    plan, recipe = load_plan_for_recipe(args.plan)
    return fill_namespace(plan, recipe), recipe


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def cmd_recipes(args: argparse.Namespace) -> int:
    from hpcwizard.project.recipe import all_recipes
    from hpcwizard.sizes import human_bytes

    recipes = all_recipes()
    if args.markdown:
        from hpcwizard.project.recipe_docs import recipes_markdown

        sys.stdout.write(recipes_markdown(list(recipes.values())))
        return 0
    if args.json:
        print_json({"recipes": [recipe_summary(r) for r in recipes.values()]})
        return 0
    for recipe in recipes.values():
        print(f"{recipe.name}: {recipe.title}")
        print(f"  {recipe.description}")
        if recipe.variants:
            print("  variants: " + ", ".join(v.name for v in recipe.variants))
        for repo in recipe.repos:
            flags = [f for f, on in (("gated", repo.gated), ("optional, not fetched by default", repo.optional)) if on]
            only = f" [{', '.join(repo.variants)} only]" if repo.variants else ""
            extra = f" ({', '.join(flags)})" if flags else ""
            print(f"  repo {repo.repo_type} {repo.repo_id}: ~{human_bytes(repo.size_bytes)}{extra}{only}")
        for param in recipe.parameters:
            print(f"  param {param.name} = {param.default!r}: {param.help} ({param.allowed()}; {param.target})")
        for job in recipe.jobs:
            res = recipe.defaults[job.resources]
            print(f"  job {job.name}: {job.description} (default {res.partition}: {res.describe()})")
        print()
    return 0


def recipe_summary(recipe: Any) -> dict[str, Any]:
    return {
        "name": recipe.name,
        "title": recipe.title,
        "description": recipe.description,
        "variants": [{"name": v.name, "description": v.description} for v in recipe.variants],
        "repos": [
            {"id": r.repo_id, "type": r.repo_type, "purpose": r.purpose, "size_bytes": r.size_bytes,
             "gated": r.gated, "optional": r.optional, "variants": list(r.variants)}
            for r in recipe.repos
        ],
        "jobs": [
            {"name": j.name, "description": j.description, "resources": j.resources,
             "defaults": vars(recipe.defaults[j.resources])}
            for j in recipe.jobs
        ],
        "parameters": [
            {"name": p.name, "type": p.type, "default": p.default, "help": p.help, "target": p.target,
             "min": p.minimum, "max": p.maximum, "multiple_of": p.multiple_of,
             "choices": list(p.choices) or None, "pattern": p.pattern,
             "allowed": p.allowed()}
            for p in recipe.parameters
        ],
    }


def cmd_render(args: argparse.Namespace) -> int:
    from hpcwizard.project.render import render

    if not args.out.strip():
        raise UserError("--out is empty", "name the folder to write the scripts into, e.g. --out scripts")
    files = make_files(args)
    project, resolved = _planned_project(args, files)
    command = None
    if files.remote:
        from hpcwizard.project.home import home_path

        out = home_path(args.out, files)  # relative to the remote home, as with scp
        command = remote_hpcwizard(args, make_runner(args))
    else:
        out = Path(args.out).absolute()
    rendering = render(project, resolved, out, hpcwizard_cmd=command)
    if not files.remote:  # the plan is a file of this machine: --out there may be its folder
        source = Path(args.plan).resolve()
        for file in rendering.files:
            if (out / file.name).resolve() == source:
                raise UserError(f"--out {args.out} would write over the plan {args.plan} (render writes its own "
                                f"normalised copy there as {file.name}); nothing was written",
                                "choose another --out folder")
    try:
        written = rendering.write(out, files)
    except OSError as exc:
        raise UserError(f"cannot write to {out}: {exc.strerror or exc}", "choose a writable --out folder") from None
    for path in written:
        print(path)
    return 0


# Where each preflight group runs in remote mode (the token stays on the laptop).
REMOTE_GROUP_PLACES = {"token": "laptop", "access": "laptop", "space": "login node",
                       "training": "login node", "slurm": "login node",
                       "environment": "login node; hub reachability from the laptop"}


def cmd_check(args: argparse.Namespace) -> int:
    from hpcwizard.checks.preflight import CheckResult, run_preflight, start_fresh

    files = make_files(args)
    runner = make_runner(args)
    project, resolved = _planned_project(args, files, runner)
    marks = {"ok": "ok   ", "warn": "WARN ", "block": "BLOCK"}
    command = remote_hpcwizard(args, runner) if files.remote else None
    shown: set[str] = set()
    moved = start_fresh(project, resolved) if args.start_fresh else []
    if args.start_fresh and not args.json:
        for move in moved:
            print(f"moved {move.source} to {move.target}")
        if not moved:
            print("no earlier checkpoints to move")

    def show(row: CheckResult) -> None:
        if args.json:
            return
        if files.remote and row.group not in shown:
            shown.add(row.group)
            place = REMOTE_GROUP_PLACES.get(row.group, "login node")
            print(f"-- {row.group}: ran on the {place}")
        detail = f" ({row.detail})" if row.detail else ""  # the wizard shows it on Enter; a terminal at once
        print(f"{marks[row.level.value]} {row.group:<11} {row.name}: {row.message}{detail}")
        if row.fix and row.level.value != "ok":
            print(f"{'':17} fix: {row.fix}")
        sys.stdout.flush()

    preflight = run_preflight(project, resolved, on_result=show, hpcwizard_cmd=command,
                              downloads_required=True, probe_network=args.probe)
    if args.json:
        data: dict[str, Any] = {"ok": not preflight.blocked, "counts": preflight.counts(),
                                "checks": [r.to_dict() for r in preflight.results]}
        if files.remote:
            data["host"] = files.where
            data["ran_on"] = REMOTE_GROUP_PLACES
        if args.start_fresh:
            data["moved"] = [{"from": str(m.source), "to": str(m.target)} for m in moved]
        print_json(data)
    else:
        counts = preflight.counts()
        verdict = "blocked: fix the BLOCK rows, then check again" if preflight.blocked else "ready to submit"
        print(f"\n{counts['ok']} ok, {counts['warn']} warnings, {counts['block']} blocking; {verdict}")
    return 1 if preflight.blocked else 0


def cmd_prepare(args: argparse.Namespace) -> int:
    """``prepare`` (and its alias ``download``)."""
    files = make_files(args)
    if files.remote:
        return remote_prepare(args, files)
    from hpcwizard.prepare import run_prepare_command

    # `download --in-job` is what setup scripts rendered before `prepare`
    # existed run: they build their environment themselves, so files only.
    return run_prepare_command(args.plan, in_job=args.in_job,
                               files_only=args.command == "download" and args.in_job)


def remote_prepare(args: argparse.Namespace, files: ProjectFiles) -> int:
    """``prepare --host``: ``hpcwizard prepare`` runs THERE (its network, its
    disk, its token file), its output streamed here (:func:`prepare_on_login_node`)."""
    from hpcwizard.prepare import prepare_on_login_node

    runner = make_runner(args)
    project, resolved = _planned_project(args, files, runner)
    command = remote_hpcwizard(args, runner)
    try:
        status = prepare_on_login_node(project, resolved.plan, command, sys.stdout)
    except KeyboardInterrupt:
        print(f"\nhpcwizard: interrupted; prepare on {files.where} resumes where it stopped "
              "when you run the same command again", file=sys.stderr)
        return 130
    return status if 0 <= status < 256 else 1


def _require_remote_project_home(args: argparse.Namespace) -> None:
    """With ``--host`` the project home cannot default to this folder: say so
    before connecting (and asking SSH's questions)."""
    if getattr(args, "host", None) and not args.project_home:
        raise UserError("--project-home is required with --host",
                        "pass the plan's project_home on the login node, e.g. --project-home ~/runs/demo")


def _project(args: argparse.Namespace, files: ProjectFiles, runner: Runner) -> Project:
    """The existing project of ``--project-home`` (the current folder by default)."""
    from hpcwizard.project.home import Project

    _require_remote_project_home(args)
    project = Project.at(args.project_home or ".", files, runner)
    if not project.is_initialised():
        where = f" on {files.where}" if files.remote else ""
        raise UserError(f"{project.home}{where} is not an hpcwizard project home (no hpcwizard/state.json)",
                        "pass --project-home DIR: the project_home of your plan")
    return project


def print_status_table(snapshot: Any) -> None:
    from hpcwizard.jobs.status import format_elapsed_limit
    from hpcwizard.slurm.models import JobState

    if snapshot.error:
        print(f"controller unreachable: {snapshot.error}")
    if not snapshot.jobs:
        print("no jobs submitted from this project yet")
        return
    print(f"{'JOBID':<9} {'NAME':<10} {'STATE':<17} {'PARTITION':<10} {'ELAPSED/LIMIT':<17} DETAIL")
    for job in snapshot.jobs:
        # The dashboard's format: "0:01 / ?" when accounting does not know the limit.
        used = format_elapsed_limit(job.elapsed, job.time_limit)
        if job.state is JobState.PENDING:
            detail = job.reason or ""
            if job.dependency:
                detail += f" ({job.dependency})"
            # A held job's estimate assumes a release that may never come.
            if job.start and not job.held and job.reason not in ("Dependency", "DependencyNeverSatisfied"):
                detail += f" start ~{job.start}"
        else:
            detail = f"exit {job.exit_code}" if job.exit_code else (job.reason or "")
        print(f"{job.job_id:<9} {job.name:<10} {job.state:<17} {job.partition:<10} {used:<17} {detail}".rstrip())


def note(line: str) -> None:
    """A one-line note on stderr (stdout stays the command's output, e.g. JSON)."""
    print(f"hpcwizard: {line}", file=sys.stderr, flush=True)


def settle_interrupted_submit(project: Project) -> list[str]:
    """Finish or undo a submit of ``project`` that was interrupted (its journal
    is left; see :mod:`hpcwizard.jobs.journal`), with the project's runner; the
    lines saying what was done. Runs at the start of ``status`` and of the
    wizard and dashboard."""
    if not project.files.exists(project.layout.submit_journal):
        return []  # nothing to settle: the journal's Slurm client is not even imported
    from hpcwizard.jobs.journal import reconcile

    return reconcile(project)


def cmd_status(args: argparse.Namespace) -> int:
    from hpcwizard.jobs.status import TrainingWatch, take_snapshot

    if args.json and not args.once:
        raise UserError("--json needs --once", "run `hpcwizard status --once --json`")
    if not args.once:
        return run_tui(args, "dashboard")
    _require_remote_project_home(args)  # before connecting: no host-key question for a command that cannot run
    files = make_files(args)
    runner = make_runner(args)
    project = _project(args, files, runner)
    for line in settle_interrupted_submit(project):
        note(line)
    state = project.load_state()
    snapshot = take_snapshot(project, state=state)
    watch = TrainingWatch(files)  # the dashboard's reading of the train logs: their tails only
    try:
        trainings = watch.update(snapshot, state)
    finally:
        watch.close()
    if args.json:
        data = snapshot.to_dict()
        data["trainings"] = [training.to_dict() for training in trainings.values()]
        if files.remote:
            data["host"] = files.where  # as `check --json` says it
        print_json(data)
    else:
        print_status_table(snapshot)
        for training in trainings.values():
            print(f"training {training.job_id}: {training_line(training)}")
    return 0


def training_line(training: Any) -> str:
    """``segment 2 of ~4 · step 660/1200 · ETA 3:36``: a train job as the dashboard's panel sums it up."""
    from hpcwizard.jobs.estimate import format_duration

    facts = training.to_dict()
    parts = [facts["summary"] or facts["segment"] or ("ended" if facts["ended"] else "running")]
    if facts["step"] is not None and facts["total_steps"]:
        parts.append(f"step {facts['step']}/{facts['total_steps']}")
    if facts["eta_seconds"] is not None:
        waits = training.waits_text
        parts.append(f"ETA {format_duration(facts['eta_seconds'])}" + (f" {waits}" if waits else ""))
    return " · ".join(str(p) for p in parts)


def cmd_submit(args: argparse.Namespace) -> int:
    from hpcwizard.jobs.submit import submit_chain

    files = make_files(args)
    runner = make_runner(args)
    project, resolved = _planned_project(args, files, runner)
    plan = resolved.plan
    command = None
    if files.remote:
        from hpcwizard.checks.hftoken import inspect_token_file

        command = remote_hpcwizard(args, runner)
        on_login_node = inspect_token_file(runner)
        if not on_login_node.present:
            raise UserError(
                f"no Hugging Face token file on {files.where} ({on_login_node.path}): "
                "the setup job reads it there; nothing was submitted",
                "store it with the wizard's token step (`hpcwizard --host ...`) or `hf auth login` there")
    elif plan.download == "job" and resolved.repos:
        from hpcwizard.checks.hub import token_file_path

        token_file = token_file_path()
        try:
            has_token = bool(token_file.read_text(encoding="utf-8").strip())
        except (OSError, UnicodeDecodeError):
            has_token = False
        if not has_token:
            raise UserError(
                f"no Hugging Face token file at {token_file}: the setup job downloads with it "
                "(HF_TOKEN is not passed into jobs); nothing was submitted",
                "save it with `hpcwizard` (its token step) or `hf auth login`; `hpcwizard check PLAN` checks the rest")
    if not files.remote:
        from hpcwizard.checks.preflight import Level, check_login_download

        downloaded = check_login_download(resolved, required=True)
        if downloaded is not None and downloaded.level is Level.BLOCK:
            raise UserError(f"{downloaded.message}: the setup job would fail; nothing was submitted", downloaded.fix)
    submission = submit_chain(project, resolved, force=args.force, hpcwizard_cmd=command, on_note=note)
    if args.json:
        print_json({
            "submitted_at": submission.submitted_at,
            "scripts_dir": submission.scripts_dir,
            "jobs": [
                {"name": j.name, "id": j.job_id, "slurm_name": j.slurm_name, "partition": j.partition,
                 "dependency": j.dependency[0] if j.dependency else None, "script": j.script}
                for j in submission.jobs
            ],
        })
    else:
        for job in submission.jobs:
            # "afterok:313" reads as Slurm syntax: say it in words.
            kind, _, parent = job.dependency[0].partition(":") if job.dependency else ("", "", "")
            after = f", starts after job {parent} {'succeeds' if kind == 'afterok' else 'ends'}" if parent else ""
            print(f"submitted {job.name}: job {job.job_id} on {job.partition}{after}")
        where = f" on {files.where}" if files.remote else ""
        print(f"scripts in {submission.scripts_dir}; logs in {plan.logs_dir}{where}")
    return 0


def add_remote_options(parser: argparse.ArgumentParser, *, top: bool = False) -> None:
    """``--host`` & co., accepted before the command and after it (users type
    ``hpcwizard status --host x``). After the command they default to
    SUPPRESS, so they never overwrite a value given before it."""
    default: Any = None if top else argparse.SUPPRESS
    group = parser.add_argument_group("remote mode (from a laptop)")
    group.add_argument("--host", metavar="[USER@]HOST[:PORT]", default=default,
                       help="run the Slurm and file side on this login node over SSH (~/.ssh/config applies)")
    group.add_argument("--ssh-config", metavar="PATH", default=default,
                       help="OpenSSH client config to read instead of ~/.ssh/config")
    group.add_argument("--remote-hpcwizard", metavar="PATH", default=default,
                       help="hpcwizard on the login node (default: `command -v hpcwizard` there)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hpcwizard",
        description="Launch and watch ML training on a Slurm cluster.",
    )
    parser.add_argument("--version", action="version", version=f"hpcwizard {__version__}")
    # For remote mode: which Python runs this installation (jobs call it).
    parser.add_argument("--print-python", action="version", version=sys.executable, help=argparse.SUPPRESS)
    parser.add_argument(
        "--project-home",
        metavar="DIR",
        help="project home of the wizard session to open or resume",
    )
    add_remote_options(parser, top=True)
    parser.set_defaults(handler=None)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    recipes = commands.add_parser("recipes", help="list recipes, their variants and what each needs")
    recipes.add_argument("--json", action="store_true", help="machine-readable output")
    recipes.add_argument("--markdown", action="store_true", help="the README's recipe sections")
    add_remote_options(recipes)
    recipes.set_defaults(handler=cmd_recipes)

    render = commands.add_parser("render", help="write the sbatch files of a plan; submit nothing")
    render.add_argument("plan", metavar="PLAN.yaml")
    render.add_argument("--out", required=True, metavar="DIR", help="folder to write the scripts into")
    add_remote_options(render)
    render.set_defaults(handler=cmd_render)

    check = commands.add_parser("check", help="preflight: token, gated access, space and quota, Slurm limits")
    check.add_argument("plan", metavar="PLAN.yaml")
    check.add_argument("--json", action="store_true", help="machine-readable output")
    check.add_argument("--probe", action="store_true",
                       help="probe the compute nodes' network again (a 2-minute job on the setup partition) "
                            "instead of using the cached result")
    check.add_argument("--start-fresh", action="store_true",
                       help="first move the checkpoints an earlier run left (and what was converted from them) "
                            "into a dated folder of the project home, so training starts from step 0; "
                            "nothing is deleted")
    add_remote_options(check)
    check.set_defaults(handler=cmd_check)

    for name, text in (("prepare", "on the login node: the plan's files, code and environment; resumable"),
                       ("download", "alias of prepare (kept for existing scripts)")):
        prepare = commands.add_parser(name, help=text)
        prepare.add_argument("plan", metavar="PLAN.yaml")
        prepare.add_argument("--in-job", action="store_true", help=argparse.SUPPRESS)
        add_remote_options(prepare)
        prepare.set_defaults(handler=cmd_prepare)

    status = commands.add_parser("status", help="the project's jobs: the dashboard, or one snapshot")
    status.add_argument("--project-home", metavar="DIR", help="the plan's project_home (default: this folder)")
    status.add_argument("--once", action="store_true", help="print one snapshot and exit")
    status.add_argument("--json", action="store_true", help="with --once: the snapshot as JSON")
    add_remote_options(status)
    status.set_defaults(handler=cmd_status)

    submit = commands.add_parser("submit", help="render a plan and submit its chain of jobs")
    submit.add_argument("plan", metavar="PLAN.yaml")
    submit.add_argument("--json", action="store_true", help="print the submitted jobs as JSON")
    submit.add_argument("--force", action="store_true", help="submit even if this plan was submitted before")
    add_remote_options(submit)
    submit.set_defaults(handler=cmd_submit)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.handler is None:
            return run_tui(args, "wizard")  # no command: the interactive wizard
        return int(args.handler(args) or 0)
    except UserError as exc:
        print(f"hpcwizard: {exc.one_line()}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("hpcwizard: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader (head, less) went away: not an error worth a traceback.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    finally:
        conn = getattr(args, "_ssh_connection", None)
        if conn is not None:
            conn.close()


def build_tui(args: argparse.Namespace, start_mode: str) -> Any:
    """The app for the wizard (``start_mode="wizard"``) or the dashboard.

    Locally, a second wizard on the same project home is refused here, before
    the TUI takes the terminal. With ``--host`` nothing touches the network
    yet: the app's connect screen connects (asking host-key and passphrase
    questions as modals), then finds the project home, takes its lock and
    the login node's hpcwizard, in a worker."""
    from hpcwizard.project.home import Project
    from hpcwizard.project.session import acquire_project_lock, check_folder
    from hpcwizard.tui.app import RemoteSetup, make_app

    if not args.host:
        runner: Runner = LocalRunner()
        project: Project | None = None
        if start_mode == "wizard":
            if args.project_home:
                project = Project.at(args.project_home, LOCAL_FILES, runner)
                # One that could never be written (or created) is said before the TUI.
                _, why = check_folder(str(project.home), LOCAL_FILES)
                if why is not None:
                    raise UserError(f"cannot write the project's files in {project.home} ({why})",
                                    "choose a folder you can write (--project-home, or project_home in the plan)")
            # A folder that does not exist yet is created (and locked) by the
            # wizard once the user goes on: quitting at once leaves nothing behind.
            if project is not None and project.home.exists():
                acquire_project_lock(project)
        else:
            project = _project(args, LOCAL_FILES, runner)
        if project is not None and project.home.exists():
            # Before the TUI takes the terminal: these lines stay on it
            # after the TUI quits.
            for line in settle_interrupted_submit(project):
                note(line)
        return make_app(project_home=project.home if project is not None else None, runner=runner,
                        start_mode=start_mode)

    _require_remote_project_home(args)
    from hpcwizard.remote.target import parse_host
    from hpcwizard.tui.screens.ssh_questions import TuiSshPrompts

    parse_host(args.host)  # a malformed --host is said before the TUI
    prompts = TuiSshPrompts()

    def connecting() -> RemoteSetup:
        # The SSH side (paramiko, the SSH config) is loaded here, in the
        # connect screen's worker: the screen shows without it.
        conn = _connection(args, prompts=(prompts.ask_host_key, prompts.passphrase))
        files, runner = make_files(args), make_runner(args)
        conn.connect()
        if start_mode != "wizard":
            project = _project(args, files, runner)
            args._settled = settle_interrupted_submit(project)
            return RemoteSetup(project.home, connection=conn, files=files, runner=runner)
        project = Project.at(args.project_home, files, runner)
        # One that could never be written (or created) is said first, in one line.
        _, why = check_folder(str(project.home), files)
        if why is not None:
            raise UserError(f"cannot write the project's files in {project.home} on {files.where} ({why})",
                            "choose a folder you can write there (--project-home)")
        # As in local mode, a new folder is created (and locked) only once
        # the user goes on from the welcome step.
        if files.exists(project.home):
            acquire_project_lock(project)
            args._settled = settle_interrupted_submit(project)
        return RemoteSetup(project.home, remote_hpcwizard(args, runner), connection=conn, files=files,
                           runner=runner)

    return make_app(start_mode=start_mode, connecting=connecting, connecting_to=args.host, ssh_prompts=prompts)


def run_tui(args: argparse.Namespace, start_mode: str) -> int:
    from hpcwizard.shell import stop_running_commands

    # What the start allocates lives as long as the process (modules,
    # classes): no collection walks it while it imports, and it is frozen
    # (below) so that none walks it later. Collections cost ~20 ms of the
    # first paint's ~300 ms.
    gc.disable()
    try:
        app = build_tui(args, start_mode)  # a bad project home or a second wizard: said first
    finally:
        gc.enable()
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        # Without a terminal Textual would spin on a closed input forever.
        what = "the dashboard" if start_mode == "dashboard" else "the wizard"
        raise UserError(f"{what} needs a terminal (stdin or stdout is not one)",
                        "in scripts use `hpcwizard check|render|submit|download PLAN` or `hpcwizard status --once`")
    gc.freeze()
    try:
        app.run()
    finally:
        # A refresh may still wait on a hung squeue: stop it rather than keep
        # the terminal until its timeout. (Remote commands end when main
        # closes the SSH connection.)
        stop_running_commands()
        # Remote mode settles an interrupted submit once connected, under
        # the TUI: say what it did once the terminal is back.
        for line in getattr(args, "_settled", None) or []:
            note(line)
    if isinstance(app.failure, UserError):
        raise app.failure  # printed as one line by main, with its exit code
    return app.return_code or 0

"""Command line: argument parsing and the non-interactive commands.

Each command is a small function taking the parsed arguments and returning an
exit status. Expected failures are :class:`UserError`: one line on stderr, a
non-zero exit, no traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hpcwizard import __version__
from hpcwizard.errors import UserError
from hpcwizard.shell import LocalRunner, Runner


def make_runner(args: argparse.Namespace) -> Runner:
    """The runner every command uses: this machine (SSH comes with --host)."""
    return LocalRunner()


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def cmd_recipes(args: argparse.Namespace) -> int:
    from hpcwizard.recipe import all_recipes
    from hpcwizard.sizes import human_bytes

    recipes = all_recipes()
    if args.markdown:
        from hpcwizard.recipe_docs import recipes_markdown

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
            gpus = f", {res.gpus} GPUs" if res.gpus else ""
            print(f"  job {job.name}: {job.description} "
                  f"(default {res.partition}, {res.cpus} CPUs{gpus}, {res.mem}, {res.time})")
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
    from hpcwizard.recipe import fill_namespace, load_plan_for_recipe
    from hpcwizard.render import render

    plan, recipe = load_plan_for_recipe(args.plan)
    plan = fill_namespace(plan, recipe)
    out = Path(args.out).absolute()
    rendering = render(plan, recipe, out)
    try:
        written = rendering.write(out)
    except OSError as exc:
        raise UserError(f"cannot write to {out}: {exc.strerror}", "choose a writable --out folder") from None
    for path in written:
        print(path)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from hpcwizard.preflight import CheckResult, run_preflight
    from hpcwizard.recipe import fill_namespace, load_plan_for_recipe

    plan, recipe = load_plan_for_recipe(args.plan)
    plan = fill_namespace(plan, recipe)
    marks = {"ok": "ok   ", "warn": "WARN ", "block": "BLOCK"}

    def show(row: CheckResult) -> None:
        if args.json:
            return
        print(f"{marks[row.level.value]} {row.group:<11} {row.name}: {row.message}")
        if row.fix and row.level.value != "ok":
            print(f"{'':17} fix: {row.fix}")
        sys.stdout.flush()

    preflight = run_preflight(plan, recipe, make_runner(args), on_result=show)
    if args.json:
        print_json({"ok": not preflight.blocked, "counts": preflight.counts(),
                    "checks": [r.to_dict() for r in preflight.results]})
    else:
        counts = preflight.counts()
        verdict = "blocked: fix the BLOCK rows, then check again" if preflight.blocked else "ready to submit"
        print(f"\n{counts['ok']} ok, {counts['warn']} warnings, {counts['block']} blocking; {verdict}")
    return 1 if preflight.blocked else 0


def cmd_download(args: argparse.Namespace) -> int:
    from hpcwizard.download import run_download_command

    return run_download_command(args.plan, in_job=args.in_job)


def _project_home(args: argparse.Namespace) -> Path:
    home = Path(args.project_home or ".").expanduser().absolute()
    if not (home / "hpcwizard" / "state.json").is_file():
        raise UserError(f"{home} is not an hpcwizard project home (no hpcwizard/state.json)",
                        "pass --project-home DIR: the project_home of your plan")
    return home


def print_status_table(snapshot: Any) -> None:
    from hpcwizard.sizes import human_duration

    if snapshot.error:
        print(f"controller unreachable: {snapshot.error}")
    if not snapshot.jobs:
        print("no jobs submitted from this project yet")
        return
    print(f"{'JOBID':<9} {'NAME':<10} {'STATE':<17} {'PARTITION':<10} {'ELAPSED/LIMIT':<17} DETAIL")
    for job in snapshot.jobs:
        elapsed = human_duration(job.elapsed) if job.elapsed is not None else "-"
        limit = human_duration(job.time_limit) if job.time_limit is not None else "-"
        if job.state == "PENDING":
            detail = job.reason or ""
            if job.dependency:
                detail += f" ({job.dependency})"
            if job.start and job.reason not in ("Dependency", "DependencyNeverSatisfied"):
                detail += f" start ~{job.start}"
        else:
            detail = f"exit {job.exit_code}" if job.exit_code else (job.reason or "")
        print(f"{job.job_id:<9} {job.name:<10} {job.state:<17} {job.partition:<10} {elapsed + '/' + limit:<17} {detail}".rstrip())


def cmd_status(args: argparse.Namespace) -> int:
    from hpcwizard.status import take_snapshot

    home = _project_home(args)
    if args.json and not args.once:
        raise UserError("--json needs --once", "run `hpcwizard status --once --json`")
    if not args.once:
        from hpcwizard.tui.app import make_app

        make_app(project_home=home, runner=make_runner(args), start_mode="dashboard").run()
        return 0
    snapshot = take_snapshot(home, make_runner(args))
    if args.json:
        print_json(snapshot.to_dict())
    else:
        print_status_table(snapshot)
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    from hpcwizard.recipe import fill_namespace, load_plan_for_recipe
    from hpcwizard.submit import submit_chain

    plan, recipe = load_plan_for_recipe(args.plan)
    plan = fill_namespace(plan, recipe)
    submission = submit_chain(plan, recipe, make_runner(args), force=args.force)
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
            after = f" after {job.dependency[0]}" if job.dependency else ""
            print(f"submitted {job.name}: job {job.job_id} on {job.partition}{after}")
        print(f"scripts in {submission.scripts_dir}; logs in {plan.logs_dir}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hpcwizard",
        description="Launch and watch ML training on a Slurm cluster.",
    )
    parser.add_argument("--version", action="version", version=f"hpcwizard {__version__}")
    parser.add_argument(
        "--project-home",
        metavar="DIR",
        help="project home of the wizard session to open or resume",
    )
    parser.set_defaults(handler=None)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    recipes = commands.add_parser("recipes", help="list recipes, their variants and what each needs")
    recipes.add_argument("--json", action="store_true", help="machine-readable output")
    recipes.add_argument("--markdown", action="store_true", help="the README's recipe sections")
    recipes.set_defaults(handler=cmd_recipes)

    render = commands.add_parser("render", help="write the sbatch files of a plan; submit nothing")
    render.add_argument("plan", metavar="PLAN.yaml")
    render.add_argument("--out", required=True, metavar="DIR", help="folder to write the scripts into")
    render.set_defaults(handler=cmd_render)

    check = commands.add_parser("check", help="preflight: token, gated access, space and quota, Slurm limits")
    check.add_argument("plan", metavar="PLAN.yaml")
    check.add_argument("--json", action="store_true", help="machine-readable output")
    check.set_defaults(handler=cmd_check)

    download = commands.add_parser("download", help="download the plan's repos now, resumable, with progress")
    download.add_argument("plan", metavar="PLAN.yaml")
    download.add_argument("--in-job", action="store_true", help=argparse.SUPPRESS)
    download.set_defaults(handler=cmd_download)

    status = commands.add_parser("status", help="the project's jobs: the dashboard, or one snapshot")
    status.add_argument("--project-home", metavar="DIR", help="the plan's project_home (default: this folder)")
    status.add_argument("--once", action="store_true", help="print one snapshot and exit")
    status.add_argument("--json", action="store_true", help="with --once: the snapshot as JSON")
    status.set_defaults(handler=cmd_status)

    submit = commands.add_parser("submit", help="render a plan and submit its chain of jobs")
    submit.add_argument("plan", metavar="PLAN.yaml")
    submit.add_argument("--json", action="store_true", help="print the submitted jobs as JSON")
    submit.add_argument("--force", action="store_true", help="submit even if this plan was submitted before")
    submit.set_defaults(handler=cmd_submit)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.handler is None:
            # No command: the interactive wizard. A second wizard on the same
            # project home is refused here, before the TUI takes the terminal.
            from hpcwizard.tui.app import make_app
            from hpcwizard.tui.screens.session import acquire_project_lock

            home = Path(args.project_home).expanduser().absolute() if args.project_home else None
            if home is not None:
                acquire_project_lock(home)
            make_app(project_home=home, runner=make_runner(args), start_mode="wizard").run()
            return 0
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

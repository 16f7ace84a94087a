"""Command line: argument parsing and the non-interactive commands.

Each command is a small function taking the parsed arguments and returning an
exit status. Expected failures are :class:`UserError`: one line on stderr, a
non-zero exit, no traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from hpcwizard import __version__
from hpcwizard.errors import UserError


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
    parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.handler is None:
            parser.print_help()
            return 0
        return int(args.handler(args) or 0)
    except UserError as exc:
        print(f"hpcwizard: {exc.one_line()}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("hpcwizard: interrupted", file=sys.stderr)
        return 130

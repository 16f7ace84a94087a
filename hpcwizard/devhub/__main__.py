"""``python -m hpcwizard.devhub --root DIR [--port N] [--port-file F]``: serve until SIGTERM.

Logs one line per request on stderr (never a token or header value). With
``--port-file`` the chosen port is written there (atomically) once the server
listens, so a script can start it with ``--port 0`` and wait for the file.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from hpcwizard.devhub.server import DevHub
from hpcwizard.devhub.store import LFS_THRESHOLD, HubConfigError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hpcwizard.devhub", description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, type=Path, help="folder with hub.yaml, models/ and datasets/")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 (default): any free port")
    parser.add_argument("--port-file", type=Path, help="write the port here once listening")
    parser.add_argument("--no-range", action="store_true", help="ignore Range headers (always 200)")
    parser.add_argument("--throttle", type=int, help="bytes per second for file bodies")
    parser.add_argument("--lfs-redirect", action="store_true", help="302 LFS files to a CDN-like URL (real Hub)")
    parser.add_argument("--lfs-threshold", type=int, default=LFS_THRESHOLD, help="bytes above which a file is LFS")
    parser.add_argument("--quiet", action="store_true", help="do not log requests")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s devhub %(message)s", stream=sys.stderr)
    if not args.root.is_dir():
        print(f"devhub: --root {args.root} is not a directory", file=sys.stderr)
        return 2
    hub = DevHub(
        args.root,
        host=args.host,
        port=args.port,
        range_support=not args.no_range,
        throttle=args.throttle,
        lfs_redirect=args.lfs_redirect,
        lfs_threshold=args.lfs_threshold,
        log_requests=not args.quiet,
    )
    try:
        hub.start()
    except (HubConfigError, OSError) as exc:
        print(f"devhub: {exc}", file=sys.stderr)
        return 2

    done = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: done.set())
    if args.port_file:
        tmp = args.port_file.with_name(args.port_file.name + ".tmp")
        tmp.write_text(f"{hub.port}\n")
        os.replace(tmp, args.port_file)
    logging.getLogger("hpcwizard.devhub").info("serving %s on %s", args.root, hub.url)
    while not done.wait(0.5):
        pass
    hub.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

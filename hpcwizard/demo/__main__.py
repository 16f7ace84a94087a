"""``python -m hpcwizard.demo prepare DIR``: lay out the demo (hub repos, token, plan).

Used by ``scripts/demo``. Prints shell ``export`` lines for the demo's
environment (HF_HOME, the plan path); the token itself is only written to
the 0600 token file and the local hub's configuration, never printed.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from hpcwizard.demo import build_demo_hub, write_token_file
from hpcwizard.project.recipe import get_recipe


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hpcwizard.demo")
    parser.add_argument("action", choices=["prepare"])
    parser.add_argument("dir", type=Path)
    args = parser.parse_args(argv)
    base = args.dir.absolute()
    hf_home = base / "hf-home"
    hub_root = base / "hub"
    token_file = hf_home / "token"
    if token_file.exists() and (hub_root / "hub.yaml").exists():
        token = token_file.read_text().strip()
        build_demo_hub(hub_root, token=token)
    else:
        built = build_demo_hub(hub_root)
        write_token_file(hf_home, built.token)
    project_home = base / "project"
    plan_file = base / "demo-plan.yaml"
    if not plan_file.exists():
        plan = get_recipe("demo").default_plan(project_home, base / "data", hf_namespace="demo")
        plan_file.write_text(plan.to_yaml())
    for name, value in (("HF_HOME", hf_home), ("HPCWIZARD_DEMO_HUB", hub_root),
                        ("HPCWIZARD_DEMO_PLAN", plan_file), ("HPCWIZARD_DEMO_PROJECT", project_home)):
        print(f"export {name}={shlex.quote(str(value))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

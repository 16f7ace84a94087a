"""Regenerate the wizard's screenshots (SVG and PNG) from the real app, headless.

Builds a throwaway world in a temp folder: the demo repos on a local Hub-protocol
server (DevHub), alice's token file, the local Slurm cluster (``scripts/local-slurm``),
then walks the wizard with Textual's pilot and saves each step at 100x30. PNGs are
made offline with ``rsvg-convert`` after swapping the SVG font for DejaVu Sans Mono.

    .venv/bin/python screenshots/make_screenshots.py [--out screenshots]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SIZE = (100, 30)


def slurm_conf() -> str:
    out = subprocess.run([str(REPO / "scripts" / "local-slurm"), "env"], capture_output=True, text=True, check=True)
    return out.stdout.strip().split("=", 1)[1].strip("'\"")


def to_png(svg: Path) -> Path:
    fixed = svg.with_suffix(".mono.svg")
    text = svg.read_text().replace("Fira Code", "DejaVu Sans Mono")
    # librsvg drops the no-break spaces that start a styled run ("1 MiBin");
    # plain spaces kept by xml:space="preserve" render as the terminal shows.
    text = text.replace("&#160;", " ").replace("<svg ", '<svg xml:space="preserve" ', 1)
    fixed.write_text(text)
    png = svg.with_suffix(".png")
    subprocess.run(["rsvg-convert", str(fixed), "-o", str(png)], check=True)
    fixed.unlink()
    return png


async def walk(out: Path, world: Path, hub_url: str, token: str) -> list[Path]:
    from hpcwizard.shell import LocalRunner
    from hpcwizard.tui.app import make_app

    app = make_app(project_home=world / "proj", runner=LocalRunner(), hf_endpoint=hub_url)
    saved: list[Path] = []

    async def until(condition, timeout=60.0):
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError(f"stuck on {type(app.screen).__name__}")
            await pilot.pause(0.05)

    def step() -> str:
        return getattr(app.screen, "STEP", "")

    async def shot(name: str) -> None:
        for widget in app.screen.query("Input, TextArea"):
            widget.cursor_blink = False
        await pilot.pause(0.3)
        svg = out / f"{name}.svg"
        app.save_screenshot(filename=svg.name, path=str(out))
        saved.append(svg)

    async with app.run_test(size=SIZE) as pilot:
        await until(lambda: step() == "welcome" and app.screen.saved is not None)
        await shot("01-welcome")
        await pilot.press("ctrl+n")
        await until(lambda: step() == "token")
        await pilot.press(*token, "enter")
        await until(lambda: app.screen.user is not None)
        await shot("02-token")
        await pilot.press("enter")
        await until(lambda: step() == "recipe")
        await shot("03-recipe")
        await pilot.press("ctrl+n")
        await until(lambda: step() == "params" and app.screen.rate_read)
        field = app.screen.query_one("#param-checkpoints_total_limit")
        field.focus()
        field.value = ""
        await pilot.press("3")
        await shot("04-params")
        await pilot.press("ctrl+n")
        await until(lambda: step() == "paths")
        await until(lambda: "free" in str(app.screen.query_one("#paths-data-info").render()))
        await pilot.click("#paths-download RadioButton", offset=(2, 1))
        await shot("05-paths")
        await pilot.press("ctrl+n")
        await until(lambda: step() == "slurm" and app.screen.loaded)
        await shot("06-slurm")
        await pilot.press("ctrl+n")
        await until(lambda: step() == "preflight" and not app.screen.running, 120)
        await shot("07-preflight")
        await pilot.press("ctrl+n")
        await until(lambda: step() == "review" and app.screen.ready)
        await shot("08-review")
        await pilot.press("ctrl+n")
        await until(lambda: step() == "download" and app.screen.finished)
        await shot("09-download")
        await pilot.press("ctrl+n")
        await until(lambda: step() == "submit")
        await pilot.press("enter")
        await until(lambda: app.screen.submission is not None)
        await shot("10-submit")
        ids = [job.job_id for job in app.screen.submission.jobs]
        # The dashboard, once the demo chain has finished, following the train job's log.
        await pilot.press("enter")
        await until(lambda: app.current_mode == "dashboard" and len(app.screen.table.rows) == len(ids))
        await until(lambda: app.screen.snapshot is not None
                    and [j.state for j in app.screen.snapshot.jobs] == ["COMPLETED"] * len(ids), 120)
        await pilot.press("down")
        await until(lambda: app.screen.selected_job is not None and app.screen.selected_job.job_id == ids[-1])
        await until(lambda: any("final weights" in line for line in app.screen.log_panel.shown_lines), 30)
        await shot("11-dashboard")
        app.exit()
    subprocess.run(["scancel", *ids], capture_output=True)
    return saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "screenshots"))
    args = parser.parse_args()
    out = Path(args.out).absolute()
    out.mkdir(parents=True, exist_ok=True)
    world = Path(tempfile.mkdtemp(prefix="hpcwizard-shots-"))
    os.environ.update(TEXTUAL_ANIMATIONS="none", HF_HOME=str(world / "hf"), SLURM_CONF=slurm_conf())
    for name in ("HF_TOKEN", "HF_TOKEN_PATH"):
        os.environ.pop(name, None)

    from hpcwizard.demo import build_demo_hub
    from hpcwizard.devhub import DevHub

    built = build_demo_hub(world / "hub", user="alice", token="hf_screenshots_alice_0001")
    try:
        with DevHub(world / "hub") as hub:
            os.environ["HF_ENDPOINT"] = hub.url
            saved = asyncio.run(walk(out, world, hub.url, built.token))
        for svg in saved:
            print(to_png(svg))
    finally:
        shutil.rmtree(world, ignore_errors=True)


if __name__ == "__main__":
    main()

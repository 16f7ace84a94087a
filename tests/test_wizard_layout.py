"""The wizard at the smallest supported size (80x24): whole messages and hints wrap rather
than being cut mid-word, bars read their percentage, Escape closes what is open first, and
the forms say plainly what they accept."""

from __future__ import annotations

import io
import time
from contextlib import asynccontextmanager

import pytest
from rich.console import Console

import test_wizard as tw
from devhub_fixtures import hf_home  # noqa: F401
from helpers import step_of
from hpcwizard.checks.preflight import CheckResult, Level, Preflight
from hpcwizard.download import DownloadProgress, DownloadSummary, FileState, FileStatus
from test_wizard import at_step, demo_plan, resume, saved_at, wait_for

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(180)]

# The fixtures of tests/test_wizard.py (imported by name, not its tests).
anyio_backend = tw.anyio_backend
_no_animations = tw._no_animations
hub = tw.hub
home = tw.home
make = tw.make

SMALL = (80, 24)


def screen_lines(app) -> list[str]:
    """The screen as plain text, one string per terminal row (what a user reads)."""
    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), force_terminal=True,
                      color_system="truecolor", record=True, legacy_windows=False, safe_box=False)
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens))
    return console.export_text(styles=False).splitlines()


def words(text: str) -> str:
    return " ".join(text.split())


def readable(app, sentence: str) -> bool:
    """``sentence`` is on screen whole: on one row, or wrapped over the rows that follow."""
    return words(sentence) in words(" ".join(screen_lines(app)))


def fits(app, widget) -> bool:
    return widget.region.right <= app.size.width and widget.region.bottom <= app.size.height


@asynccontextmanager
async def resumed_at(make, home, step, plan=None, size=SMALL):
    """The wizard reopened at ``step`` of a saved session: ``(pilot, the step's screen)``."""
    saved_at(home, step, plan or demo_plan(home))
    app = make(home)
    async with app.run_test(size=size) as pilot:
        await resume(pilot, step)
        yield pilot, app.screen


# -- A. preflight rows: one line each, the whole message and the fix on Enter -----------

BLOCK = CheckResult("access", "dataset demo/DiffuEraser-finetune-code", Level.BLOCK,
                    "not found, or no access with this token: the repo is private or its name is wrong [x]",
                    "check the name on the Hub, or ask its owner for access")
WARN = CheckResult("environment", "conda", Level.WARN,
                   "conda is not on PATH on the login node; environments will be built with venv instead",
                   "load your site's conda module first if the recipe needs conda")


def long_preflight(project, resolved, *, endpoint=None, on_result=None, **_):
    result = Preflight()
    rows = [CheckResult("token", "Hugging Face token", Level.OK, "valid for alice"), BLOCK, WARN]
    for row in rows:
        result.results.append(row)
        if on_result:
            on_result(row)
    return result


async def test_preflight_rows_are_one_line_each_and_enter_opens_the_whole_message_and_fix(make, home, monkeypatch):
    monkeypatch.setattr("hpcwizard.tui.screens.preflight_step.run_preflight", long_preflight)
    async with resumed_at(make, home, "preflight") as (pilot, screen):
        app = pilot.app
        await wait_for(pilot, lambda: not screen.running and len(screen.query("CheckRow")) == 3, 30, "preflight")
        await pilot.pause()
        # The hint says how to see a fix, on one line.
        assert any("Enter on a row shows its fix" in line for line in screen_lines(app))
        for title in screen.query("CheckRow CollapsibleTitle"):
            assert fits(app, title) and title.region.height == 1  # one line, never wrapped
        shown = screen_lines(app)
        block_line = next(line for line in shown if BLOCK.name in line)
        assert "✘" in block_line and block_line.rstrip().endswith("…")  # cut with …, not mid-screen
        assert "[x]" not in " ".join(shown)  # cut before it here; below, it is text, not markup
        block = screen.query_one("CheckRow.-block")
        assert block.collapsed
        await pilot.press("enter")  # the blocking row has the focus
        await wait_for(pilot, lambda: not block.collapsed)
        await pilot.pause()
        shown_words = words(" ".join(screen_lines(app)))
        # Open: the whole message once (the title keeps only the mark and name), the fix once.
        assert shown_words.count(words(BLOCK.message)) == 1
        assert shown_words.count(words(f"fix: {BLOCK.fix}")) == 1
        assert fits(app, screen.query_one("#step-next"))


# -- B. download bars read their percentage --------------------------------------------

FILES = (
    FileStatus("hpcwizard-demo/tiny-base-model", "pytorch_model.bin", 1024 * 1024, 2 * 1024 * 1024,
               512 * 1024, FileState.DOWNLOADING),
    FileStatus("alice/hpcwizard-demo-frames", "frames.tar", 65536, 65536, 0, FileState.DONE),
    FileStatus("alice/hpcwizard-demo-code", "code_base.tar.gz", 0, 8192, 0, FileState.QUEUED),
)


def still_download(resolved, *, token=None, endpoint=None, on_progress=None, cancel=None, **_):
    on_progress(DownloadProgress(FILES, 1024 * 1024 + 65536, 2 * 1024 * 1024 + 65536 + 8192, 1, 3,
                                 512 * 1024, 2.0, 3.0))
    deadline = time.monotonic() + 30
    while not cancel.is_set() and time.monotonic() < deadline:  # "running" until stopped
        time.sleep(0.05)
    return DownloadSummary(3, 3, 0, 0, 0, 1.0)


@pytest.mark.parametrize("size", [SMALL, (120, 30)])
async def test_download_bars_show_the_whole_percentage_and_the_hint_says_how_to_stop(make, home, monkeypatch, size):
    monkeypatch.setattr("hpcwizard.download.download_plan", still_download)
    async with resumed_at(make, home, "download", demo_plan(home, download="login"), size=size) as (pilot, screen):
        app = pilot.app
        await wait_for(pilot, lambda: len(screen.query("FileBar")) == 3, 20, "the file bars")
        await wait_for(pilot, lambda: "100%" in str(screen.query("FileBar PercentageStatus")[1].render()))
        await pilot.pause()
        rows = screen_lines(app)
        for name, shown in (("pytorch_mode", " 50% "), ("frames", "100% done"), ("code_bas", "  0% queued")):
            line = next(row for row in rows if name in row)
            assert shown in line, line
        for bar in screen.query("FileBar ProgressBar"):
            percent = bar.query_one("PercentageStatus")
            assert percent.region.width == 5 and percent.region.right <= bar.region.right
        assert readable(app, "c stops (partial files are kept), r resumes.")
        await pilot.press("c")
        await wait_for(pilot, lambda: not screen.running, 20, "stopped")


# -- C. one-line hints wrap ---------------------------------------------------------------

async def test_review_hint_wraps_and_the_scripts_keep_room_at_80x24(make, home):
    async with resumed_at(make, home, "review") as (pilot, screen):
        app = pilot.app
        await wait_for(pilot, lambda: screen.ready, 20, "scripts rendered")
        await pilot.pause()
        assert readable(app, "(nothing is submitted yet). Tab to the files, arrows to scroll.")
        assert fits(app, screen.query_one("#review-where"))
        assert screen.query_one("#review-tabs").region.height >= 10  # the script still has room
        assert fits(app, screen.query_one("#step-next"))


async def test_welcome_question_wraps_when_no_project_home_is_given(make, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    app = make(None)
    async with app.run_test(size=SMALL) as pilot:
        await at_step(pilot, "welcome")
        await pilot.pause()
        assert readable(app, "Where should this project live? Its scripts, logs, state and checkpoints go there.")
        assert fits(app, app.screen.query_one("#welcome-home-input"))
        assert fits(app, app.screen.query_one("#step-next"))


# -- D. Escape closes the folder picker first ---------------------------------------------

async def test_escape_in_the_folder_picker_closes_it_and_returns_to_the_input(make, home):
    async with resumed_at(make, home, "paths") as (pilot, screen):
        app = pilot.app
        picker = screen.query_one("#paths-data")
        screen.query_one("#paths-data-browse").focus()
        await pilot.press("enter")  # Browse
        await wait_for(pilot, lambda: picker.has_class("-browsing") and app.focused is screen.query_one("#paths-data-tree"))
        await pilot.press("escape")
        await wait_for(pilot, lambda: not picker.has_class("-browsing"), 5, "the picker closed")
        await pilot.pause()
        assert step_of(app) == "paths" and app.screen is screen
        assert not screen.query("#paths-data-tree")
        assert app.focused is screen.query_one("#paths-data-input")
        await pilot.press("escape")  # nothing open: Escape goes back a step as everywhere
        await at_step(pilot, "params")


# -- E. number fields refuse what only Python would read ----------------------------------

async def test_params_form_refuses_underscores_and_plus_and_says_how_to_write_a_number(make, home):
    async with resumed_at(make, home, "params") as (pilot, screen):
        field = screen.query_one("#param-max_train_steps")
        row = screen.query_one("#row-max_train_steps")
        for typed in ("12_3", "+6"):
            field.value = typed
            await wait_for(pilot, lambda: not row.ok, 5, f"{typed} refused")
            assert screen.query_one("#step-next").disabled
            assert row.error == (f"✘ {typed} is not allowed: a whole number from 1 to 1000; "
                                 "write digits only, like 123 (no _ or +)")
        field.value = "123"
        await wait_for(pilot, lambda: row.ok and row.value == 123, 5, "123 allowed")
        speed, speed_row = screen.query_one("#param-seconds_per_step"), screen.query_one("#row-seconds_per_step")
        speed.value = "0_5"
        await wait_for(pilot, lambda: not speed_row.ok, 5, "0_5 refused")
        assert "no _ or leading +" in speed_row.error
        speed.value = "5e-1"
        await wait_for(pilot, lambda: speed_row.ok and speed_row.value == 0.5, 5, "5e-1 allowed")


# -- F. the time field says how to write a time, once ------------------------------------

async def test_slurm_time_error_is_one_sentence_without_yaml(make, home):
    async with resumed_at(make, home, "slurm") as (pilot, screen):
        await wait_for(pilot, lambda: screen.loaded, 30, "partitions")
        screen.query_one("#train-time").value = "nonsense"
        verdict = screen.query_one("#slurm-verdict")
        await wait_for(pilot, lambda: "train.time" in str(verdict.render()), 5, "the time refused")
        said = str(verdict.render())
        assert said.strip() == ("✘ train.time has a bad value 'nonsense': "
                                "write it like 12:00:00, 2-00:00:00 or 90 (minutes)")
        assert "YAML" not in said and said.count("12:00:00") == 1
        screen.query_one("#train-time").value = "25:99"
        await wait_for(pilot, lambda: "25:99" in str(verdict.render()), 5, "25:99 refused")
        assert "up to 59" in str(verdict.render()) and "YAML" not in str(verdict.render())
        # Other fields keep the plan's hint: it says what is allowed.
        screen.query_one("#train-time").value = "01:00:00"
        screen.query_one("#train-mem").value = "lots"
        await wait_for(pilot, lambda: "train.mem" in str(verdict.render()), 5, "the memory refused")
        assert "allowed: a size like 16G" in str(verdict.render())


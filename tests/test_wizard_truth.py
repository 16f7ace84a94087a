"""The wizard tells the truth, at once (issue 14): driven like a user, at 80x24 and 100x30.

The preflight here is the real one (the local cluster, the local Hub-protocol
server); what it shows is read off the screen.
"""

from __future__ import annotations

import os
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

import test_wizard as tw
from devhub_fixtures import hf_home  # noqa: F401
from hpcwizard.demo import write_token_file
from hpcwizard.project import session
from hpcwizard.project.home import Project
from hpcwizard.project.resolved import resolve
from hpcwizard.tui.widgets.check_table import CheckRow, CheckSection, CheckTable, section_of
from test_wizard import TOKEN, demo_plan, resume, saved_at, wait_for
from test_wizard_layout import screen_lines, words

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(240)]

# The fixtures of tests/test_wizard.py (imported by name, not its tests).
anyio_backend = tw.anyio_backend
_no_animations = tw._no_animations
hub = tw.hub
home = tw.home
make = tw.make

SMALL, LARGE = (80, 24), (100, 30)


def shown(app) -> str:
    return words(" ".join(screen_lines(app)))


def with_token() -> None:
    write_token_file(Path(os.environ["HF_HOME"]), TOKEN)


def earlier_run(home: Path, stage1: int = 70, stage2: int | None = 70) -> None:
    """What a finished demo run leaves: checkpoints per stage and the converted weights."""
    for stage, latest in (("stage1", stage1), ("stage2", stage2)):
        if latest is not None:
            (home / "demo" / stage / f"checkpoint-{latest}").mkdir(parents=True)
    (home / "demo" / "converted_stage1").mkdir(parents=True)
    (home / "demo" / "converted_stage1" / "weights.json").write_text("{}\n")


async def preflight_done(pilot):
    await wait_for(pilot, lambda: not pilot.app.screen.running, 120, "preflight")
    await pilot.pause()


@asynccontextmanager
async def checked(make, home: Path, size):
    """The wizard reopened at the preflight of the demo plan (token saved), its checks done: the pilot."""
    with_token()
    saved_at(home, "preflight", demo_plan(home))
    app = make(home)
    async with app.run_test(size=size) as pilot:
        await resume(pilot, "preflight")
        await preflight_done(pilot)
        yield pilot


# -- 1. an earlier run's checkpoints: nothing would be trained -------------------------------

@pytest.mark.parametrize("size", [SMALL, LARGE])
async def test_params_step_says_nothing_would_be_trained_and_continue_raises_the_steps(make, home, size):
    earlier_run(home)
    saved_at(home, "params", demo_plan(home))
    app = make(home)
    async with app.run_test(size=size) as pilot:
        await resume(pilot, "params")
        screen = app.screen
        await wait_for(pilot, lambda: screen.earlier_read, 20, "checkpoints read")
        choices = screen.query_one("#params-earlier")
        assert choices.shown
        await pilot.pause()
        text = shown(app)
        assert "✘ nothing would be trained: the plan's 6 steps are done already" in text
        assert "Continue: max_train_steps 76" in text and "Start fresh…" in text
        await pilot.click("#earlier-continue")
        await wait_for(pilot, lambda: screen.query_one("#param-max_train_steps").value == "76")
        await wait_for(pilot, lambda: not choices.shown, 10, "the choices gone")
        assert "nothing would be trained" not in shown(app)


async def test_params_step_start_fresh_moves_the_checkpoints_after_asking(make, home):
    earlier_run(home)
    saved_at(home, "params", demo_plan(home))
    app = make(home)
    async with app.run_test(size=SMALL) as pilot:
        await resume(pilot, "params")
        screen = app.screen
        await wait_for(pilot, lambda: screen.earlier_read and screen.query_one("#params-earlier").shown)
        screen.query_one("#earlier-fresh").focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "ConfirmScreen", 10, "the question")
        assert (home / "demo" / "stage1" / "checkpoint-70").is_dir()  # nothing moves before the answer
        await pilot.press("y")
        # The folders move one after the other: wait for the last, not the first
        # (under load, stage1 was gone while converted_stage1 was still moving).
        moved = ("stage1", "stage2", "converted_stage1")
        await wait_for(pilot, lambda: not any((home / "demo" / name).exists() for name in moved), 20, "moved aside")
        await wait_for(pilot, lambda: not screen.query_one("#params-earlier").shown, 20, "the choices gone")
        [dated] = (home / "old-checkpoints").iterdir()
        assert (dated / "demo" / "stage1" / "checkpoint-70").is_dir()
        assert (dated / "demo" / "stage2" / "checkpoint-70").is_dir()
        assert (dated / "demo" / "converted_stage1" / "weights.json").is_file()


async def test_preflight_blocks_nothing_would_be_trained_and_start_fresh_lets_it_pass(make, home):
    earlier_run(home)
    async with checked(make, home, LARGE) as pilot:
        app = pilot.app
        screen = app.screen
        assert screen.blocked and screen.query_one("#step-next").disabled
        blocks = [r for r in screen.query(CheckRow) if r.row.level.value == "block"]
        assert len(blocks) == 1, [(r.row.name, r.row.message, r.row.fix) for r in blocks]
        [block] = blocks
        assert block.row.name == "earlier checkpoints" and "nothing would be trained" in block.row.message
        await pilot.press("enter")  # the blocking row has the focus: its fix opens
        await wait_for(pilot, lambda: not block.collapsed)
        await wait_for(pilot, lambda: "Start fresh…" in shown(app), 10, "the two choices")
        assert "Continue: max_train_steps 76" in shown(app)
        screen.query_one("#earlier-fresh").focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "ConfirmScreen", 10, "the question")
        await pilot.press("y")
        await wait_for(pilot, lambda: app.screen is screen and not (home / "demo" / "stage1").exists(), 20)
        await wait_for(pilot, lambda: not screen.running and not screen.blocked, 120, "checked again")
        assert (home / "old-checkpoints").is_dir()


async def test_preflight_continue_saves_the_raised_steps_and_checks_again(make, home):
    earlier_run(home)
    async with checked(make, home, SMALL) as pilot:
        app = pilot.app
        first = app.screen
        await pilot.press("enter")
        await wait_for(pilot, lambda: "Continue: max_train_steps 76" in shown(app), 10, "the choices")
        first.query_one("#earlier-continue").focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen is not first and getattr(app.screen, "STEP", "") == "preflight")
        assert session.read_session(Project(home)).plan.params == {"max_train_steps": 76}
        await preflight_done(pilot)
        assert not app.screen.blocked  # training resumes at 70 and trains 6 more steps
        earlier = [r.row for r in app.screen.query(CheckRow) if r.row.name == "earlier checkpoints"]
        assert earlier and earlier[0].level.value == "warn"


# -- 12. focus: on the report, so the first Enter shows a fix; visible on borderless inputs ---

@pytest.mark.parametrize("size", [SMALL, LARGE])
async def test_preflight_focus_starts_on_the_report_and_enter_opens_a_row(make, home, size):
    async with checked(make, home, size) as pilot:
        app = pilot.app
        screen = app.screen
        assert not screen.blocked
        table = screen.query_one(CheckTable)
        assert screen.focused is not None and table in screen.focused.ancestors
        assert "Enter on a row shows its fix" in shown(app)
        row = screen.focused.parent
        await pilot.press("enter")
        await wait_for(pilot, lambda: not row.collapsed, 10, "the row open")
        assert getattr(app.screen, "STEP", "") == "preflight"  # the first Enter did not leave the step
        await pilot.press("down")
        assert screen.focused is not row.query_one("CollapsibleTitle") and table in screen.focused.ancestors


async def test_focus_is_visible_on_the_borderless_inputs(make, home):
    saved_at(home, "slurm", demo_plan(home))
    app = make(home)
    async with app.run_test(size=SMALL) as pilot:
        await resume(pilot, "slurm")
        screen = app.screen
        cpus, gpus = screen.query_one("#train-cpus"), screen.query_one("#train-gpus")
        cpus.focus()
        await pilot.pause()
        focused_bg = cpus.background_colors[1]
        unfocused_bg = gpus.background_colors[1]
        # A clear difference, not the 5 % tint Textual gives a compact field.
        assert _distance(focused_bg, unfocused_bg) > 60
        assert cpus.has_focus and cpus.rich_style.bold


def _distance(a, b) -> float:
    return sum((x - y) ** 2 for x, y in zip(a.rgb, b.rgb)) ** 0.5


# -- 17. the preflight as a report taken in at a glance --------------------------------------

@pytest.mark.parametrize("size", [SMALL, LARGE])
async def test_preflight_is_a_report_grouped_under_headers_with_coloured_marks_and_a_space_gauge(make, home, size):
    async with checked(make, home, size) as pilot:
        app = pilot.app
        screen = app.screen
        table = screen.query_one(CheckTable)
        sections = [s for s in table.query(CheckSection) if s.rows]
        assert [s.header for s in sections] == ["Token and access", "Space and quota", "Slurm", "Environment"]
        for section in sections:  # each row under its own header, whatever order they arrived in
            assert all(section_of(row.row.group) == section.key for row in section.query(CheckRow))
            assert len(section.query(CheckRow)) == len(section.rows) > 0
        rows = list(screen.query(CheckRow))
        assert len(rows) == len(table.rows) >= 14
        for row in rows:  # one line each: the details wait for Enter
            assert row.collapsed and row.query_one("CollapsibleTitle").size.height == 1
        # Colour on the mark only: a warning's words are drawn like an ok row's.
        idle = [r for r in rows if not r.query_one("CollapsibleTitle").has_focus]  # focus recolours a row
        warn = next(r for r in idle if r.row.level.value == "warn")
        ok = next(r for r in idle if r.row.level.value == "ok")
        assert warn.query_one("CollapsibleTitle").rich_style.color == ok.query_one("CollapsibleTitle").rich_style.color
        title = warn.query_one("CollapsibleTitle").render()
        coloured = [span for span in title.spans if "$warning" in str(span.style)]
        assert [title.plain[span.start:span.end] for span in coloured] == ["!"]
        # Space as a gauge: needed against free.
        space = next(r for r in rows if r.row.name.startswith("space on "))
        gauge = space.row.gauge
        assert gauge is not None and 0 < gauge.need <= gauge.free
        space.query_one("CollapsibleTitle").scroll_visible(animate=False)
        await pilot.pause()
        line = next(line for line in screen_lines(app) if space.row.name in line)
        assert "█" in line and "needed" in line
        # No fact said twice ("quota on /: quota not checked: quota not found on this host: quota of ... not checked").
        quota = next(r for r in rows if r.row.name.startswith("quota on "))
        assert quota.row.message.count("not checked") == 1 and "quota of" not in quota.row.message
        assert quota.row.message.count("quota") <= 1
        # Counts in the headers: the glance tells where to look.
        assert "!" in str(next(s for s in sections if s.key == "space").query_one(".check-header").render())


# -- 6. the welcome sees chains submitted from the command line ---------------------------

async def test_welcome_sees_a_chain_submitted_from_the_cli_and_says_chains_and_jobs(tmp_path, make, home,
                                                                                   hub, slurm_runner, slurm_conf):
    """`scripts/demo --batch` submits with `hpcwizard submit` to the project home: the welcome
    said "Nothing saved here yet". It now shows the chain, counted as chains and jobs."""
    import subprocess
    import sys

    from hpcwizard.project.state import load_state
    from hpcwizard.slurm import SlurmClient

    with_token()
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text(demo_plan(home).to_yaml())
    env = {**os.environ, "SLURM_CONF": slurm_conf, "HF_ENDPOINT": hub.url}
    done = subprocess.run([sys.executable, "-m", "hpcwizard", "submit", str(plan_file)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    ids = load_state(home / "hpcwizard").submissions[0].job_ids
    try:
        assert load_state(home / "hpcwizard").wizard_step is None  # no wizard session at all
        app = make(home)
        async with app.run_test(size=SMALL) as pilot:
            await wait_for(pilot, lambda: app.screen.saved is not None, 20, "the project read")
            await pilot.pause()
            text = shown(app)
            assert "Nothing saved here yet" not in text
            assert "1 chain (2 jobs) was submitted from this project (not from this wizard)." in text
            assert "Open the dashboard" in text and "Start a new plan" in text
            await pilot.press("enter")  # the focused "Open the dashboard"
            await wait_for(pilot, lambda: app.current_mode == "dashboard", 20, "dashboard")
    finally:
        SlurmClient(slurm_runner).cancel(ids)


async def test_welcome_counts_chains_and_jobs_after_the_wizard_submitted(make, home):
    from hpcwizard.project.state import Submission, SubmittedJob, now_iso, update_state

    jobs = tuple(SubmittedJob(name, f"hw-{name}", str(100 + i), "cpu", "/x.sbatch") for i, name in
                 enumerate(("setup", "train")))
    for _ in range(2):
        update_state(home / "hpcwizard", lambda s: s.submissions.append(Submission("fp", now_iso(), "/r", jobs)))
    saved_at(home, session.DONE, demo_plan(home))
    app = make(home)
    async with app.run_test(size=SMALL) as pilot:
        await wait_for(pilot, lambda: app.screen.saved is not None, 20, "the project read")
        await pilot.pause()
        assert "2 chains (4 jobs) were submitted from this project." in shown(app)
        assert "in all" not in shown(app)


# -- 7. a data root that does not exist yet -----------------------------------------------

@pytest.mark.parametrize("size", [SMALL, LARGE])
async def test_a_data_root_that_does_not_exist_is_said_to_be_created_and_measured_at_its_parent(
        tmp_path, make, home, size):
    missing = tmp_path / "scratch" / "new" / "data"
    (tmp_path / "scratch").mkdir()
    saved_at(home, "paths", demo_plan(home, data_root=missing))
    app = make(home)
    async with app.run_test(size=size) as pilot:
        await resume(pilot, "paths")
        info = app.screen.query_one("#paths-data-info")
        await wait_for(pilot, lambda: "free of" in str(info.render()), 20, "measured")
        text = " ".join(str(info.render()).split())
        assert text.startswith(f"does not exist yet: it will be created; its nearest existing folder "
                               f"{tmp_path / 'scratch'} has ")
        assert not missing.exists()  # said, not done
        # Whole on screen, wrapped rather than cut (a long path folds: compare without spaces).
        assert "".join(text.split()) in "".join(shown(app).split())


# -- 14. wording -------------------------------------------------------------------------

@pytest.mark.parametrize("size", [SMALL, LARGE])
async def test_the_slurm_step_says_one_cpu_and_a_time_as_slurm_reads_it(make, home, size):
    saved_at(home, "slurm", demo_plan(home))
    app = make(home)
    async with app.run_test(size=size) as pilot:
        await resume(pilot, "slurm")
        screen = app.screen
        await wait_for(pilot, lambda: screen.loaded, 30, "partitions")
        verdict = screen.query_one("#slurm-verdict")
        assert "fits: 1 CPU, no GPU, 1G, 00:10:00" in str(verdict.render())
        screen.query_one("#train-time").value = "1"  # Slurm reads a bare 1 as one minute
        await wait_for(pilot, lambda: "train on cpu: fits: 1 CPU, no GPU, 1G, 00:01:00" in str(verdict.render()))
        screen.query_one("#train-time").value = "1-24:00:00"
        await wait_for(pilot, lambda: "hours up to 23 once days are given" in str(verdict.render()))
        await pilot.pause()
        assert "D-" not in shown(app) and "CPUs" not in str(verdict.render())


def test_still_to_write_never_says_in_0_files():
    from hpcwizard.checks.preflight import SpaceNeed, still_to_write

    checkpoints = SpaceNeed(Path("/p"), 1024 ** 2, 0, "checkpoints and final weights")
    assert still_to_write([checkpoints]).message == "1 MiB"
    frames = SpaceNeed(Path("/d"), 3 * 1024 ** 2, 1, "download of a/b")
    row = still_to_write([frames, checkpoints])
    assert row.message == "4 MiB in 1 file"
    assert row.detail == "download of a/b: 3 MiB; checkpoints and final weights: 1 MiB"
    assert still_to_write([]).message == "nothing left to download or unpack"


def test_a_login_plan_not_prepared_yet_says_so_once(home):
    from hpcwizard.checks.preflight import check_login_download

    plan = demo_plan(home, download="login")
    row = check_login_download(resolve(plan), required=False)
    assert row.name == "prepare on this node"
    assert row.message == "files and environment: the Prepare step does it next"  # the demo's code is a file
    assert "not downloaded yet" not in row.message + row.name and "not prepared yet" not in row.message


def test_the_hub_row_says_reachable_not_answers_http_401(hub):
    from hpcwizard.checks.preflight import check_environment
    from hpcwizard.shell import LocalRunner

    [row] = [r for r in check_environment(LocalRunner(), hub.url) if r.name == "hub"]
    assert row.level.value == "ok" and row.message == f"{hub.url} is reachable from this node"
    assert "401" not in row.message and "HTTP 401" in row.detail


# -- 15. nothing cut off at 80-100 columns -----------------------------------------------

def _whole(widget) -> bool:
    """The widget's text fits its width (a one-line label cut with … does not)."""
    text = str(widget.render())
    return len(text) <= widget.content_region.width and not text.endswith("…")


@pytest.mark.parametrize("size", [SMALL, LARGE])
async def test_the_slurm_table_header_is_whole(make, home, size):
    saved_at(home, "slurm", demo_plan(home))
    app = make(home)
    async with app.run_test(size=size) as pilot:
        await resume(pilot, "slurm")
        await wait_for(pilot, lambda: app.screen.loaded, 30, "partitions")
        await pilot.pause()
        table = app.screen.query_one("#slurm-partitions")
        assert table.virtual_size.width <= table.content_region.width  # no column past the edge
        header = next(line for line in screen_lines(app) if "partition" in line and "state" in line)
        assert header.rstrip().endswith("GPUs free")
        assert "(CPUs, mem and GPUs per node)" in shown(app)


@pytest.mark.parametrize("size", [SMALL, LARGE])
async def test_the_variant_labels_are_whole(make, home, size):
    from hpcwizard.project.recipe import get_recipe

    recipe = get_recipe("diffueraser")
    saved_at(home, "recipe", recipe.default_plan(home, hf_namespace="alice"))
    app = make(home)
    async with app.run_test(size=size) as pilot:
        await resume(pilot, "recipe")
        await pilot.pause(0.3)
        box = app.screen.query_one("#recipe-variants").content_region
        inside = words(" ".join(line[box.x:box.right] for line in screen_lines(app)[box.y:box.bottom]))
        for variant in recipe.variants:
            assert words(f"{variant.name}: {variant.description}") in inside, inside
        assert "…" not in inside


@pytest.mark.parametrize("size", [SMALL, LARGE])
async def test_the_review_status_is_whole_and_the_hint_says_the_rest(make, home, size):
    import dataclasses

    from hpcwizard.project.state import Submission, SubmittedJob, now_iso, update_state

    plan = demo_plan(home)
    plan = plan.with_changes(params={"seconds_per_step": 30}, train=dataclasses.replace(plan.train, time="00:02:00"))
    previous = home / "hpcwizard" / "runs" / "2026-01-01T00-00-00-a-long-run-folder-name"
    previous.mkdir(parents=True)
    (previous / "01_setup.sbatch").write_text("echo old setup\n")
    job = SubmittedJob("setup", "hw-setup", "1", "cpu", str(previous / "01_setup.sbatch"))
    update_state(home / "hpcwizard", lambda s: s.submissions.append(Submission("other", now_iso(), str(previous),
                                                                                (job,))))
    saved_at(home, "review", plan)
    app = make(home)
    async with app.run_test(size=size) as pilot:
        await resume(pilot, "review")
        await wait_for(pilot, lambda: app.screen.ready, 20)
        await pilot.pause()
        status = app.screen.query_one("#step-status")
        assert _whole(status) and str(status.render()) == "3 files; changes since the last run"
        text = "".join(shown(app).split())  # the long path folds: compared without spaces
        assert f"Comparedwith{previous}." in text
        assert "continuedacrossitslimitbyitself." in text

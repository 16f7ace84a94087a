"""The wizard, driven like a user: pilot tests per step, the whole flow on the real local
cluster with the local Hub, resume after quitting at each step, the project lock, and the
real terminal program under tmux."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from devhub_fixtures import hf_home  # noqa: F401
from helpers import pilot_wait_for, step_of
from hpcwizard.demo import build_demo_hub, write_token_file
from hpcwizard.devhub import DevHub
from hpcwizard.errors import CommandTimeout
from hpcwizard.project import session
from hpcwizard.project.home import Project
from hpcwizard.project.recipe import get_recipe
from hpcwizard.project.state import ProjectLock, Submission, SubmittedJob, load_state, now_iso, update_state
from hpcwizard.shell import LocalRunner
from hpcwizard.slurm import JobState, SlurmClient
from hpcwizard.tui.app import make_app
from hpcwizard.tui.screens.slurm_step import SlurmStep
from hpcwizard.tui.screens.wizard import WizardScreen

TOKEN = "hf_wizard_canary_0123456789abcdef"
SIZE = (100, 30)
REPO = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(180)]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _no_animations(monkeypatch):
    monkeypatch.setenv("TEXTUAL_ANIMATIONS", "none")


@pytest.fixture
def hub(tmp_path, hf_home, monkeypatch):  # noqa: F811
    root = tmp_path / "hub"
    build_demo_hub(root, user="alice", token=TOKEN)
    with DevHub(root) as served:
        monkeypatch.setenv("HF_ENDPOINT", served.url)
        yield served


@pytest.fixture
def home(tmp_path) -> Path:
    return tmp_path / "proj"


@pytest.fixture
def make(hub, slurm_runner):
    def build(project_home, runner=None):
        return make_app(project_home=project_home, runner=runner or slurm_runner, hf_endpoint=hub.url)

    return build


async def wait_for(pilot, condition, timeout=30.0, what="condition"):
    await pilot_wait_for(pilot, condition, timeout, what)


async def at_step(pilot, step, timeout=30.0):
    await wait_for(pilot, lambda: step_of(pilot.app) == step, timeout, f"step {step}")


def screen_text(app) -> str:
    """What the screen shows, as text (the SVG export, spaces normalised)."""
    return app.export_screenshot().replace("&#160;", " ").replace("\xa0", " ")


def demo_plan(home: Path, **changes):
    return get_recipe("demo").default_plan(home, hf_namespace="alice", **changes)


def saved_at(home: Path, step: str, plan=None) -> None:
    """A session quit at ``step``, as the wizard leaves it."""
    if plan is not None:
        session.save_plan(Project(plan.project_home), plan)
    session.save_step(Project(home), step)


# -- driving the steps ---------------------------------------------------------------

async def start_new(pilot):
    await wait_for(pilot, lambda: step_of(pilot.app) == "welcome" and pilot.app.screen.saved is not None)
    await pilot.press("ctrl+n")
    await at_step(pilot, "token")


async def resume(pilot, step):
    await wait_for(pilot, lambda: step_of(pilot.app) == "welcome" and pilot.app.screen.saved is not None)
    assert pilot.app.screen.saved.step == step
    await pilot.press("enter")  # the focused "Resume at ..." button
    await at_step(pilot, step)


async def do_token(pilot, token=TOKEN):
    app = pilot.app
    app.screen.query_one("#token-input").focus()
    await pilot.press(*token, "enter")
    await wait_for(pilot, lambda: app.screen.user is not None, 20, "token accepted")
    await pilot.press("enter")  # Next has the focus
    await at_step(pilot, "recipe")


async def do_recipe(pilot):
    app = pilot.app
    # From whoami: the token step's answer, or asked again when resuming here.
    await wait_for(pilot, lambda: app.screen.query_one("#recipe-namespace").value == "alice", 20, "namespace")
    assert app.screen.chosen == "demo"
    await pilot.press("ctrl+n")
    await at_step(pilot, "params")


async def do_params(pilot, **values):
    """Type ``values`` into the parameters form, then Next."""
    app = pilot.app
    for name, text in values.items():
        field = app.screen.query_one(f"#param-{name}")
        field.focus()
        field.value = ""
        await pilot.press(*text)
    await wait_for(pilot, lambda: not app.screen.query_one("#step-next").disabled, 10, "parameters allowed")
    await pilot.press("ctrl+n")
    await at_step(pilot, "paths")


async def do_paths(pilot, data_root: Path, download="login"):
    app = pilot.app
    field = app.screen.query_one("#paths-data-input")
    field.value = str(data_root)
    if download == "login":
        # Measures arriving for the new data root re-flow the step: click once it is settled and in view.
        await wait_for(pilot, lambda: app.screen.query_one("#paths-data-info").render().plain.strip("… "), 30,
                       "the data root measured")
        app.screen.query_one("#paths-download").scroll_visible(animate=False)
        await pilot.pause()
        await pilot.click("#paths-download RadioButton", offset=(2, 1))  # the mouse works too
        await wait_for(pilot, lambda: app.screen.query_one("#paths-download").pressed_index == 1)
    await pilot.press("ctrl+n")
    await at_step(pilot, "slurm")


async def do_slurm(pilot):
    await wait_for(pilot, lambda: pilot.app.screen.loaded, 30, "partitions")
    await pilot.press("ctrl+n")
    await at_step(pilot, "preflight")


async def do_preflight(pilot):
    app = pilot.app
    await wait_for(pilot, lambda: not app.screen.running, 90, "preflight")
    assert not app.screen.blocked, [r for r in app.screen.query_one("CheckTable").rows if r.level.value == "block"]
    await pilot.press("ctrl+n")
    await at_step(pilot, "review")


async def do_review(pilot, then):
    await wait_for(pilot, lambda: pilot.app.screen.ready, 20, "scripts rendered")
    await pilot.press("ctrl+n")
    await at_step(pilot, then)


# -- the whole flow ------------------------------------------------------------------

async def test_whole_flow_submits_the_demo_chain_and_it_completes(tmp_path, make, home, slurm_runner):
    app = make(home)
    ids: list[str] = []
    try:
        async with app.run_test(size=SIZE) as pilot:
            await start_new(pilot)
            await do_token(pilot)
            assert (Path(os.environ["HF_HOME"]) / "token").stat().st_mode & 0o777 == 0o600
            await do_recipe(pilot)
            await do_params(pilot, seconds_per_step="0.1")
            await do_paths(pilot, tmp_path / "data root")
            await do_slurm(pilot)
            await do_preflight(pilot)
            await do_review(pilot, "download")
            await wait_for(pilot, lambda: app.screen.finished, 60, "download")
            assert "files" in str(app.screen.query_one("#step-status").render())
            await pilot.press("ctrl+n")
            await at_step(pilot, "submit")
            await pilot.press("enter")
            await wait_for(pilot, lambda: app.screen.submission is not None, 60, "submission")
            ids = [job.job_id for job in app.screen.submission.jobs]
            shown = screen_text(app)
            assert all(f"job {job_id}" in shown for job_id in ids)
            # Then the dashboard (another module; it may poll: do not wait for its workers).
            await wait_for(pilot, lambda: app.current_mode == "dashboard", 10, "dashboard")
        # The plan is exactly the documented format.
        data = yaml.safe_load(session.plan_path(home).read_text())
        assert list(data) == ["recipe", "project_home", "data_root", "hf_namespace", "download",
                              "setup", "train", "account", "qos", "params"]
        assert data["recipe"] == "demo" and data["download"] == "login"
        assert data["params"] == {"seconds_per_step": 0.1}  # only what differs from the defaults
        assert data["data_root"] == str(tmp_path / "data root")
        state = load_state(home / "hpcwizard")
        assert state.wizard_step == session.DONE
        assert [s.job_ids for s in state.submissions] == [ids]
        assert "--seconds-per-step 0.1 " in (Path(state.submissions[0].scripts_dir) / "02_train.sbatch").read_text()
        # The chain runs to the end on the local cluster.
        slurm = SlurmClient(slurm_runner)
        deadline = time.monotonic() + 120
        states = {}
        while time.monotonic() < deadline:
            # squeue keeps finished jobs for a while (MinJobAge); sacct or scontrol after.
            queued = {e.job_id: e.state for e in slurm.queue(ids)}
            if all(queued.get(i, JobState.COMPLETED).is_finished for i in ids):
                gone = [i for i in ids if i not in queued]
                states = {**queued, **{f.job_id: f.state for f in slurm.finished(gone)}} if gone else queued
                break
            time.sleep(1)
        assert states == {ids[0]: JobState.COMPLETED, ids[1]: JobState.COMPLETED}, states
        # The token is nowhere but the token file.
        for path in home.rglob("*"):
            if path.is_file():
                assert TOKEN.encode() not in path.read_bytes(), path
    finally:
        if ids:
            SlurmClient(slurm_runner).cancel(ids)


# -- resume ---------------------------------------------------------------------------

async def test_quitting_at_each_step_resumes_there_with_every_answer(tmp_path, make, home):
    data_root = tmp_path / "data"

    async def session_from(step, advance):
        app = make(home)
        async with app.run_test(size=SIZE) as pilot:
            if step is None:
                await start_new(pilot)
            else:
                await resume(pilot, step)
            await advance(pilot)
            app.exit()

    await session_from(None, lambda pilot: pilot.pause())  # quit at the token step
    await session_from("token", do_token)
    await session_from("recipe", do_recipe)

    async def params_kept(pilot):
        await do_params(pilot, max_train_steps="9")

    await session_from("params", params_kept)
    assert yaml.safe_load(session.plan_path(home).read_text())["params"] == {"max_train_steps": 9}

    async def paths_kept(pilot):
        await do_paths(pilot, data_root, download="job")

    await session_from("paths", paths_kept)
    plan = yaml.safe_load(session.plan_path(home).read_text())
    assert plan["data_root"] == str(data_root)

    async def slurm_kept(pilot):
        # The answers of earlier steps are back: go back to Paths and look.
        await pilot.press("escape")
        await at_step(pilot, "paths")
        assert pilot.app.screen.query_one("#paths-data-input").value == str(data_root)
        await pilot.press("escape")
        await at_step(pilot, "params")
        assert pilot.app.screen.query_one("#param-max_train_steps").value == "9"
        await pilot.press("ctrl+n")
        await at_step(pilot, "paths")
        await pilot.press("ctrl+n")
        await at_step(pilot, "slurm")
        field = pilot.app.screen.query_one("#setup-time")
        field.value = "00:20:00"
        await do_slurm(pilot)

    await session_from("slurm", slurm_kept)
    assert yaml.safe_load(session.plan_path(home).read_text())["setup"]["time"] == "00:20:00"

    async def slurm_values_back(pilot):
        await pilot.press("escape")
        await at_step(pilot, "slurm")
        assert pilot.app.screen.query_one("#setup-time").value == "00:20:00"
        await do_slurm(pilot)
        await do_preflight(pilot)

    await session_from("preflight", slurm_values_back)
    await session_from("review", lambda pilot: do_review(pilot, "submit"))  # download: job skips a step
    assert load_state(home / "hpcwizard").wizard_step == "submit"
    assert load_state(home / "hpcwizard").submissions == []


async def test_start_over_forgets_the_answers(make, home):
    saved_at(home, "slurm", demo_plan(home))
    app = make(home)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: step_of(app) == "welcome" and app.screen.saved is not None)
        # The choices are mounted with the saved session: drawn a frame later.
        await wait_for(pilot, lambda: "Resume at Slurm resources" in screen_text(app).replace("\xa0", " "), 10,
                       "the choices drawn")
        await pilot.click("#welcome-new")
        await pilot.press("y")  # the Start over confirmation
        await at_step(pilot, "token")
    assert not session.plan_path(home).exists()
    assert load_state(home / "hpcwizard").wizard_step == "token"


def test_a_saved_plan_is_validated_against_its_recipe_before_resuming(home):
    """The saved plan is a file anyone may edit: a variant the recipe does not
    declare (here one that would inject a line into the scripts) is refused
    like in a plan file, and the wizard goes back to the recipe step."""
    plan = get_recipe("diffueraser").default_plan(home, hf_namespace="alice")
    session.save_plan(Project(plan.project_home), plan)
    session.save_step(Project(home), "review")
    path = session.plan_path(home)
    path.write_text(path.read_text().replace("variant: non-prompt", "variant: \"x\\nid > /tmp/pwned\\n#\""))
    saved = session.read_session(Project(home))
    assert saved.plan is None and saved.step == "recipe"
    assert "variant has a bad value" in saved.problem
    path.write_text(path.read_text().replace('"x\\nid > /tmp/pwned\\n#"', "no-such-variant"))
    saved = session.read_session(Project(home))
    assert saved.plan is None and "allowed: non-prompt, prompt" in saved.problem


# -- the lock -------------------------------------------------------------------------

async def test_a_second_wizard_on_the_same_project_is_refused(make, home):
    other = ProjectLock(home / "hpcwizard")
    other.acquire()
    try:
        app = make(home)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            assert isinstance(app.screen, WizardScreen)
            text = str(app.screen.query_one("#wizard-message").render())
            assert "already open in hpcwizard" in text
            await pilot.press("q")
    finally:
        other.release()


def test_cli_refuses_a_second_instance_before_starting_the_tui(home):
    lock = ProjectLock(home / "hpcwizard")
    lock.acquire()
    try:
        done = subprocess.run([sys.executable, "-m", "hpcwizard", "--project-home", str(home)],
                              capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    finally:
        lock.release()
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "already open in hpcwizard" in lines[0], done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    help_run = subprocess.run([sys.executable, "-m", "hpcwizard", "--help"], capture_output=True, text=True, timeout=60)
    assert help_run.returncode == 0 and "--project-home" in help_run.stdout


# -- single steps ---------------------------------------------------------------------

async def test_welcome_asks_for_the_project_home_when_none_is_given(tmp_path, make, monkeypatch):
    monkeypatch.chdir(tmp_path)
    app = make(None)
    async with app.run_test(size=SIZE) as pilot:
        await at_step(pilot, "welcome")
        field = app.screen.query_one("#welcome-home-input")
        assert field.value == str(tmp_path)
        field.value = "relative/path"
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert "use an absolute path" in str(app.screen.query_one("#welcome-home-info").render())
        field.value = str(tmp_path / "new project")
        await pilot.press("enter")
        await at_step(pilot, "token")
        wizard = next(s for s in app.screen_stack if isinstance(s, WizardScreen))
        assert wizard.project_home == tmp_path / "new project"
    assert load_state(tmp_path / "new project" / "hpcwizard").wizard_step == "token"


async def test_a_refused_token_is_explained_and_never_shown(make, home):
    app = make(home)
    async with app.run_test(size=SIZE) as pilot:
        await start_new(pilot)
        app.screen.query_one("#token-input").focus()
        wrong = "hf_not_a_real_token_999"
        await pilot.press(*wrong, "enter")
        await wait_for(pilot, lambda: "invalid or expired" in str(app.screen.query_one("#token-result").render()))
        assert app.screen.query_one("#step-next").disabled
        assert wrong not in screen_text(app)
        await pilot.press("ctrl+n")  # Next stays shut
        assert step_of(app) == "token"
    assert not (Path(os.environ["HF_HOME"]) / "token").exists()


async def test_an_existing_token_is_offered(make, home):
    write_token_file(Path(os.environ["HF_HOME"]), TOKEN)
    app = make(home)
    async with app.run_test(size=SIZE) as pilot:
        await start_new(pilot)
        assert "already set up" in str(app.screen.query_one("#token-found").render())
        await pilot.press("enter")  # "Use this token" has the focus
        await wait_for(pilot, lambda: app.screen.user == "alice")
        assert TOKEN not in screen_text(app)
        await pilot.press("enter")
        await at_step(pilot, "recipe")


async def test_a_data_root_that_will_not_do_keeps_the_paths_step(make, home, tmp_path):
    saved_at(home, "paths", demo_plan(home))
    app = make(home)
    a_file = tmp_path / "not-a-folder"
    a_file.write_text("x")
    async with app.run_test(size=SIZE) as pilot:
        await resume(pilot, "paths")
        app.screen.query_one("#paths-data-input").value = str(a_file / "data")
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: "will not do" in str(app.screen.query_one("#step-status").render()),
                       what="the refusal")
        assert step_of(app) == "paths"
        info = app.screen.query_one("#paths-data .dir-info")
        await wait_for(pilot, lambda: f"{a_file} is a file, not a folder" in str(info.render()), what="why")
        app.screen.query_one("#paths-data-input").value = str(tmp_path / "data")
        await pilot.press("ctrl+n")
        await at_step(pilot, "slurm")
    assert yaml.safe_load(session.plan_path(home).read_text())["data_root"] == str(tmp_path / "data")


async def test_slurm_limits_are_checked_as_you_type(make, home):
    saved_at(home, "slurm", demo_plan(home))
    app = make(home)
    async with app.run_test(size=SIZE) as pilot:
        await resume(pilot, "slurm")
        await wait_for(pilot, lambda: app.screen.loaded)
        screen = app.screen
        screen.query_one("#train-partition").value = "gpu"
        screen.query_one("#train-gpus").value = "3"
        await wait_for(pilot, lambda: "3 GPUs asked" in str(screen.query_one("#slurm-verdict").render()))
        assert screen.query_one("#step-next").disabled
        screen.query_one("#train-gpus").value = "2"
        screen.query_one("#train-time").value = "5:00:00"
        await wait_for(pilot, lambda: "MaxTime 04:00:00" in str(screen.query_one("#slurm-verdict").render()))
        screen.query_one("#train-time").value = "1:00:00"
        screen.query_one("#train-mem").value = "lots"
        await wait_for(pilot, lambda: "train.mem" in str(screen.query_one("#slurm-verdict").render()))
        screen.query_one("#train-mem").value = "1G"
        await wait_for(pilot, lambda: not screen.query_one("#step-next").disabled)
        await pilot.press("ctrl+n")
        await at_step(pilot, "preflight")
    plan = yaml.safe_load(session.plan_path(home).read_text())
    assert plan["train"] == {"partition": "gpu", "cpus": 1, "mem": "1G", "time": "1:00:00", "gpus": 2}


class HungSinfo(LocalRunner):
    """sinfo never answers: the runner's timeout ends it, as on a sick controller."""

    def run(self, argv, *, timeout=30.0, env=None, stdin=None):
        if argv[0] == "sinfo":
            time.sleep(timeout)
            raise CommandTimeout(f"sinfo did not answer within {timeout:g} s")
        return super().run(argv, timeout=timeout, env=env, stdin=stdin)


async def test_a_hung_sinfo_shows_a_spinner_then_a_retry(make, home, slurm_conf, monkeypatch):
    monkeypatch.setattr(SlurmStep, "SINFO_TIMEOUT", 2.0)
    saved_at(home, "slurm", demo_plan(home))
    runner = HungSinfo(extra_env={"SLURM_CONF": slurm_conf})
    app = make(home, runner)
    async with app.run_test(size=SIZE) as pilot:
        await resume(pilot, "slurm")
        assert app.screen.query_one("#slurm-busy").display  # the spinner while sinfo is asked
        await wait_for(pilot, lambda: app.screen.query_one("#slurm-error-row").display, 10, "timeout message")
        assert "did not answer" in str(app.screen.query_one("#slurm-error").render())
        app.context.runner = LocalRunner(extra_env={"SLURM_CONF": slurm_conf})  # the controller is back
        await pilot.click("#slurm-retry")
        await wait_for(pilot, lambda: app.screen.loaded, 30, "partitions after retry")
        assert app.screen.query_one("#slurm-partitions").row_count >= 2


async def test_a_blocking_check_keeps_next_shut_and_shows_its_fix(make, home):
    # No token anywhere: the token row blocks.
    saved_at(home, "preflight", demo_plan(home))
    app = make(home)
    async with app.run_test(size=SIZE) as pilot:
        await resume(pilot, "preflight")
        await wait_for(pilot, lambda: not app.screen.running, 90, "preflight")
        assert app.screen.blocked and app.screen.query_one("#step-next").disabled
        row = app.screen.query_one("CheckRow.-block")
        assert row.collapsed
        await pilot.press("enter")  # the first blocking row has the focus
        await wait_for(pilot, lambda: not row.collapsed)
        await wait_for(pilot, lambda: "fix:" in screen_text(app), 10, "the fix drawn")
        await pilot.press("ctrl+n")
        assert step_of(app) == "preflight"
        # Fix it and check again.
        write_token_file(Path(os.environ["HF_HOME"]), TOKEN)
        await pilot.press("r")
        await wait_for(pilot, lambda: app.screen.running is False and not app.screen.blocked, 90, "rerun")
        assert not app.screen.query_one("#step-next").disabled


async def test_review_shows_the_scripts_and_the_diff_with_the_previous_run(make, home):
    plan = demo_plan(home)
    previous = home / "hpcwizard" / "runs" / "old"
    previous.mkdir(parents=True)
    (previous / "01_setup.sbatch").write_text("#!/bin/bash\necho old setup\n")
    job = SubmittedJob("setup", "x-setup", "1", "cpu", str(previous / "01_setup.sbatch"))
    update_state(home / "hpcwizard", lambda s: s.submissions.append(
        Submission("other", now_iso(), str(previous), (job,))))
    saved_at(home, "review", plan)
    app = make(home)
    async with app.run_test(size=SIZE) as pilot:
        await resume(pilot, "review")
        await wait_for(pilot, lambda: app.screen.ready, 20)
        assert (home / "hpcwizard" / "preview" / "01_setup.sbatch").is_file()
        tabs = app.screen.query_one("#review-tabs")
        assert tabs.tab_count == 4  # 2 scripts, plan.yaml, changes
        assert tabs.active == "review-tab-0"
        diff = app.screen.query_one("#review-diff")
        assert "-echo old setup" in diff.text and "+#SBATCH" in diff.text


async def test_review_says_how_many_segments_a_long_training_takes(make, home):
    """6 steps × 2 stages at 30 s a step in a 2-minute train job: the review says
    the training continues across the limit, in how many segments."""
    plan = demo_plan(home)
    plan = plan.with_changes(params={"seconds_per_step": 30},
                             train=dataclasses.replace(plan.train, time="00:02:00"))
    saved_at(home, "review", plan)
    app = make(home)
    async with app.run_test(size=SIZE) as pilot:
        await resume(pilot, "review")
        await wait_for(pilot, lambda: app.screen.ready, 20)
        # In the hint, which wraps (the one-line status was cut at 80-100 columns).
        hint = str(app.screen.query_one("#review-where").render())
        assert re.search(r"Train: ~\d+ segments of 2m, continued across its limit by itself\.", hint), hint


async def test_download_stops_on_a_key_keeps_the_parts_and_resumes(make, home, hub):
    write_token_file(Path(os.environ["HF_HOME"]), TOKEN)
    saved_at(home, "download", demo_plan(home, download="login"))
    hub.throttle = 256 * 1024  # bytes/s: the 2 MiB weights take seconds
    app = make(home)
    async with app.run_test(size=SIZE) as pilot:
        await resume(pilot, "download")
        bars = app.screen.query_one("DownloadBars")
        await wait_for(pilot, lambda: len(bars.query("FileBar")) >= 1 and app.screen.running, 20, "first bars")
        await wait_for(pilot, lambda: any(home.rglob("*.part")), 20, "a partial file")
        await pilot.press("c")
        await wait_for(pilot, lambda: not app.screen.running, 20, "stopped")
        assert not app.screen.finished
        assert "partial files kept" in str(app.screen.query_one("#step-status").render())
        parts = list(home.rglob("*.part"))
        assert parts and parts[0].stat().st_size > 0
        app.exit()
    hub.throttle = None
    # Reopening resumes the download where it stopped.
    app = make(home)
    async with app.run_test(size=SIZE) as pilot:
        await resume(pilot, "download")
        await wait_for(pilot, lambda: app.screen.finished, 60, "download finished")
        assert not list(home.rglob("*.part"))
        assert (home / "weights" / "tiny-base-model" / "pytorch_model.bin").stat().st_size == 2 * 1024 * 1024


async def test_palette_jumps_to_a_step_already_reached_and_escape_goes_back(make, home):
    saved_at(home, "slurm", demo_plan(home))
    app = make(home)
    async with app.run_test(size=SIZE) as pilot:
        await resume(pilot, "slurm")
        await pilot.press("escape")
        await at_step(pilot, "paths")
        await pilot.press("escape")
        await at_step(pilot, "params")
        await pilot.press("escape")
        await at_step(pilot, "recipe")
        await pilot.press("ctrl+p")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "CommandPalette")
        await pilot.press(*"go to step 4", "enter")
        await at_step(pilot, "params")
        await pilot.press("ctrl+p")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "CommandPalette")
        await pilot.press(*"go to step 6", "enter")
        await at_step(pilot, "slurm")
        await pilot.press("ctrl+p")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "CommandPalette")
        await pilot.press(*"dashboard")
        # "dashboard" is highlighted: another span
        await wait_for(pilot, lambda: "Open the " in screen_text(app), 10, "the palette's match")
        await pilot.press("escape")


async def test_usable_at_80x24(make, home):
    saved_at(home, "slurm", demo_plan(home))
    app = make(home)
    async with app.run_test(size=(80, 24)) as pilot:
        await resume(pilot, "slurm")
        await wait_for(pilot, lambda: app.screen.loaded)
        nav = app.screen.query_one("#step-next").region
        assert nav.bottom <= 23 and nav.right <= 80
        train_time = app.screen.query_one("#train-time").region
        assert train_time.right <= 80 and train_time.height >= 1


# -- the real terminal program --------------------------------------------------------

def _tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=True).stdout


def _wait_pane(session_name: str, needle: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    pane = ""
    while time.monotonic() < deadline:
        pane = _tmux("capture-pane", "-p", "-t", session_name)
        if needle in pane:
            return pane
        time.sleep(0.2)
    raise AssertionError(f"{needle!r} not on the terminal within {timeout} s:\n{pane}")


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_the_terminal_program_under_tmux(tmp_path, hub, home, slurm_conf):
    exe = Path(sys.executable).parent / "hpcwizard"
    name = f"hpcwizard-test-{os.getpid()}"
    env = {"HF_HOME": os.environ["HF_HOME"], "HF_ENDPOINT": hub.url, "SLURM_CONF": slurm_conf,
           "TEXTUAL_ANIMATIONS": "none", "TERM": "xterm-256color"}
    exports = " ".join(f"{k}={v!s}" for k, v in env.items())
    _tmux("new-session", "-d", "-s", name, "-x", "100", "-y", "30",
          f"env {exports} {exe} --project-home {home}; sleep 30")
    try:
        # A new folder is only created when the user starts (quitting here leaves nothing).
        _wait_pane(name, "Nothing saved here yet" if home.exists() else "it is created when you start")
        _tmux("send-keys", "-t", name, "C-n")
        _wait_pane(name, "Token")
        _tmux("send-keys", "-t", name, "-l", TOKEN)
        pane = _tmux("capture-pane", "-p", "-t", name)
        assert TOKEN not in pane  # masked as it is typed
        _tmux("send-keys", "-t", name, "Enter")
        _wait_pane(name, "Logged in as alice")
        _tmux("send-keys", "-t", name, "Enter")
        _wait_pane(name, "Demo chain (CPU, seconds)")
        _tmux("send-keys", "-t", name, "C-n")
        _wait_pane(name, "step 4 of 10")
        _wait_pane(name, "checkpoints_total_limit")
        assert load_state(home / "hpcwizard").wizard_step == "params"
        _tmux("send-keys", "-t", name, "C-n")
        _wait_pane(name, "Data root")
        assert load_state(home / "hpcwizard").wizard_step == "paths"
        assert yaml.safe_load(session.plan_path(home).read_text())["recipe"] == "demo"
        # A second program on the same project is refused while this one runs.
        second = subprocess.run([str(exe), "--project-home", str(home)], capture_output=True, text=True,
                                timeout=60, stdin=subprocess.DEVNULL, env={**os.environ, **env})
        assert second.returncode == 2 and "already open" in second.stderr
        _tmux("send-keys", "-t", name, "C-q")
        time.sleep(0.5)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True)

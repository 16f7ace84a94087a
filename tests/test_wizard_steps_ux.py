"""Wizard steps as an exploratory tester used them: keys pressed fast while a step works,
edits left by Back or quitting, confirmations, and what the steps say."""

from __future__ import annotations

import time

import pytest
import yaml

import test_wizard as tw
from devhub_fixtures import hf_home  # noqa: F401
from helpers import step_of
from hpcwizard.project import session
from hpcwizard.project.state import Submission, SubmittedJob, load_state, now_iso, update_state
from hpcwizard.shell import LocalRunner
from hpcwizard.slurm import SlurmClient
from hpcwizard.tui.widgets.confirm import ConfirmScreen
from test_wizard import SIZE, at_step, demo_plan, resume, saved_at, screen_text, wait_for

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(180)]

# The fixtures of tests/test_wizard.py (imported by name, not its tests).
anyio_backend = tw.anyio_backend
_no_animations = tw._no_animations
hub = tw.hub
home = tw.home
make = tw.make


class SlowSbatch(LocalRunner):
    """sbatch answers after a pause, as on a busy controller: time to press keys meanwhile."""

    DELAY = 1.5

    def run(self, argv, *, timeout=30.0, env=None, stdin=None):
        if "sbatch" in argv:  # (run through env, without the shell's SBATCH_* variables)
            time.sleep(self.DELAY)
        return super().run(argv, timeout=timeout, env=env, stdin=stdin)


def _plan_file(home):
    return yaml.safe_load(session.plan_path(home).read_text())


# -- 1. submit: Back is shut while the chain is being submitted --------------------------

async def test_enter_and_escape_while_submitting_stay_on_the_submit_step(make, home, slurm_conf):
    saved_at(home, "submit", demo_plan(home))
    runner = SlowSbatch(extra_env={"SLURM_CONF": slurm_conf})
    app = make(home, runner)
    ids: list[str] = []
    try:
        async with app.run_test(size=SIZE) as pilot:
            await resume(pilot, "submit")
            screen = app.screen
            await pilot.press("enter")  # Submit
            await wait_for(pilot, lambda: screen.running, 5, "submitting")
            assert screen.query_one("#step-back").disabled
            assert app.focused is None or app.focused.id != "step-back"
            await pilot.press("enter", "escape")  # too fast: neither leaves the step
            await pilot.pause(0.2)
            assert app.screen is screen and step_of(app) == "submit"
            await wait_for(pilot, lambda: screen.submission is not None, 60, "submission")
            ids = [job.job_id for job in screen.submission.jobs]
            await wait_for(pilot, lambda: all(f"job {job_id}" in screen_text(app) for job_id in ids), 10,
                           "the job ids on screen")
            assert not screen.query_one("#step-back").disabled
            assert load_state(home / "hpcwizard").wizard_step == "submit"
            app.exit()
    finally:
        if ids:
            SlurmClient(runner).cancel(ids)


# -- 2. Back and quitting keep the step's valid edits ----------------------------------

async def slurm_loaded(pilot):
    await resume(pilot, "slurm")
    await wait_for(pilot, lambda: pilot.app.screen.loaded, 30, "partitions")


async def test_back_from_the_slurm_step_keeps_its_valid_edits(make, home):
    saved_at(home, "slurm", demo_plan(home))
    app = make(home)
    async with app.run_test(size=SIZE) as pilot:
        await slurm_loaded(pilot)
        screen = app.screen
        screen.query_one("#train-partition").value = "gpu"
        screen.query_one("#train-gpus").value = "1"
        screen.query_one("#train-mem").value = "2G"
        screen.query_one("#train-time").value = "nonsense"  # not valid: the saved time stays
        screen.query_one("#slurm-account").value = "acct1"
        await wait_for(pilot, lambda: "train.time" in str(screen.query_one("#slurm-verdict").render()))
        await pilot.press("escape")
        await at_step(pilot, "paths")
    plan = _plan_file(home)
    default = demo_plan(home).train
    assert plan["train"] == {"partition": "gpu", "cpus": default.cpus, "mem": "2G", "time": default.time, "gpus": 1}
    assert plan["account"] == "acct1"
    assert load_state(home / "hpcwizard").wizard_step == "paths"


async def test_the_slurm_step_takes_the_modules_to_load_and_refuses_a_bad_name(make, home):
    saved_at(home, "slurm", demo_plan(home))
    app = make(home)
    async with app.run_test(size=SIZE) as pilot:
        await slurm_loaded(pilot)
        screen = app.screen
        modules = screen.query_one("#slurm-modules")
        modules.value = "python/3.11 $(id)"
        await wait_for(pilot, lambda: "modules has a bad name" in str(screen.query_one("#slurm-verdict").render()))
        assert screen.query_one("#step-next").disabled
        modules.value = "python/3.11  cuda/12.1"
        await wait_for(pilot, lambda: not screen.query_one("#step-next").disabled, 10, "a valid form")
        await pilot.press("ctrl+n")
        await at_step(pilot, "preflight")
    assert _plan_file(home)["modules"] == ["python/3.11", "cuda/12.1"]


async def test_quitting_at_the_slurm_step_keeps_its_edits(make, home):
    saved_at(home, "slurm", demo_plan(home))
    app = make(home)
    async with app.run_test(size=SIZE) as pilot:
        await slurm_loaded(pilot)
        app.screen.query_one("#setup-time").value = "00:30:00"
        await wait_for(pilot, lambda: app.screen.kept is not None and app.screen.kept.setup.time == "00:30:00")
        await pilot.press("ctrl+q")
    assert _plan_file(home)["setup"]["time"] == "00:30:00"
    assert load_state(home / "hpcwizard").wizard_step == "slurm"


async def test_back_from_the_params_step_keeps_the_allowed_values(make, home):
    saved_at(home, "params", demo_plan(home, params={"seconds_per_step": 0.5}))
    app = make(home)
    async with app.run_test(size=SIZE) as pilot:
        await resume(pilot, "params")
        screen = app.screen
        screen.query_one("#param-max_train_steps").value = "9"
        screen.query_one("#param-seconds_per_step").value = "-"  # not allowed: 0.5 stays
        await wait_for(pilot, lambda: screen.query_one("#step-next").disabled, 10, "a value not allowed")
        await pilot.press("escape")
        await at_step(pilot, "recipe")
    assert _plan_file(home)["params"] == {"max_train_steps": 9, "seconds_per_step": 0.5}


async def test_back_from_the_paths_step_keeps_a_checked_data_root_and_the_download_choice(make, home, tmp_path):
    saved_at(home, "paths", demo_plan(home))
    scratch = tmp_path / "scratch"
    app = make(home)
    async with app.run_test(size=SIZE) as pilot:
        await resume(pilot, "paths")
        screen = app.screen
        screen.query_one("#paths-data-input").value = str(scratch)
        await wait_for(pilot, lambda: screen.kept is not None and screen.kept.data_root == scratch, 10,
                       "the new data root measured")
        screen.query_one("#paths-download").query("RadioButton").last().value = True
        await wait_for(pilot, lambda: screen.kept.download == "login", 5, "the download choice")
        # A data root that will not do is not saved: the checked one stays.
        screen.query_one("#paths-data-input").value = "relative/path"
        await wait_for(pilot, lambda: screen.query_one("#paths-data-info").has_class("-error"), 10, "the refusal")
        await pilot.press("escape")
        await at_step(pilot, "params")
    plan = _plan_file(home)
    assert plan["data_root"] == str(scratch)
    assert plan["download"] == "login"


async def test_quitting_at_the_recipe_step_keeps_a_new_namespace_of_the_same_recipe(make, home):
    saved_at(home, "recipe", demo_plan(home))
    app = make(home)
    async with app.run_test(size=SIZE) as pilot:
        await resume(pilot, "recipe")
        screen = app.screen
        screen.query_one("#recipe-namespace").value = "bob-lab"
        await wait_for(pilot, lambda: screen.kept is not None and screen.kept.hf_namespace == "bob-lab", 5,
                       "the namespace kept")
        screen.query_one("#recipe-namespace").value = "not a name!"  # not valid: bob-lab stays
        await pilot.pause()
        assert screen.kept.hf_namespace == "bob-lab"
        await pilot.press("ctrl+q")
    assert _plan_file(home)["hf_namespace"] == "bob-lab"
    assert load_state(home / "hpcwizard").wizard_step == "recipe"


async def test_typed_brackets_are_shown_as_typed_never_read_as_markup(make, home):
    """Labels read text as markup: a value typed as ``[/]`` stopped the wizard
    with a MarkupError, and ``[lab]`` in a path vanished from the message."""
    saved_at(home, "params", demo_plan(home))
    app = make(home)
    async with app.run_test(size=SIZE) as pilot:
        await resume(pilot, "params")
        screen = app.screen
        screen.query_one("#param-max_train_steps").value = "[/]"
        await wait_for(pilot, lambda: screen.query_one("#step-next").disabled, 10, "the refusal")
        assert "[/] is not allowed" in str(screen.query_one(".param-error").render())
        screen.query_one("#param-max_train_steps").value = "6"
        await wait_for(pilot, lambda: not screen.query_one("#step-next").disabled, 10, "allowed again")
        await pilot.press("ctrl+n")
        await at_step(pilot, "paths")
        paths = app.screen
        paths.query_one("#paths-data-input").value = "data/[lab]/x[/]"
        await wait_for(pilot, lambda: paths.query_one("#paths-data-info").has_class("-error"), 10, "the refusal")
        assert "data/[lab]/x[/]" in str(paths.query_one("#paths-data-info").render())
        assert app.is_running


# -- 3. welcome: Start over asks first --------------------------------------------------

async def test_start_over_asks_before_forgetting_the_saved_answers(make, home):
    saved_at(home, "slurm", demo_plan(home))
    app = make(home)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: step_of(app) == "welcome" and app.screen.saved is not None)
        await pilot.click("#welcome-new")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), 5, "the question")
        assert app.focused.id == "no"  # the safe answer is the default
        await pilot.press("enter")
        await wait_for(pilot, lambda: step_of(app) == "welcome", 5, "back at welcome")
        assert session.plan_path(home).exists()
        await pilot.click("#welcome-new")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), 5, "the question again")
        await pilot.press("y")
        await at_step(pilot, "token")
    assert not session.plan_path(home).exists()
    assert load_state(home / "hpcwizard").wizard_step == "token"


# -- 4. recipe: repo ids with the namespace filled in ----------------------------------

async def test_recipe_shows_repo_ids_with_the_known_namespace(make, home):
    saved_at(home, "recipe", demo_plan(home))  # hf_namespace: alice
    app = make(home)
    async with app.run_test(size=SIZE) as pilot:
        await resume(pilot, "recipe")
        details = app.screen.query_one("#recipe-details")

        def shown() -> str:
            return str(details.render())

        await wait_for(pilot, lambda: "alice/hpcwizard-demo-code" in shown(), 10, "resolved id")
        assert "{namespace}" not in shown()
        app.screen.query_one("#recipe-namespace").value = "bob"
        await wait_for(pilot, lambda: "bob/hpcwizard-demo-frames" in shown(), 10, "the typed namespace")
        app.screen.query_one("#recipe-namespace").value = ""
        await wait_for(pilot, lambda: "{namespace}/hpcwizard-demo-code" in shown(), 10, "unknown again")


# -- 5. submit: "already submitted" says what to do in the wizard -----------------------

async def test_already_submitted_says_what_to_do_without_a_force_flag(make, home):
    plan = demo_plan(home)
    job = SubmittedJob("setup", "x-setup", "1", "cpu", str(home / "x.sbatch"))
    update_state(home / "hpcwizard", lambda s: s.submissions.append(
        Submission(plan.fingerprint(), now_iso(), str(home / "runs"), (job,))))
    saved_at(home, "submit", plan)
    app = make(home)
    async with app.run_test(size=SIZE) as pilot:
        await resume(pilot, "submit")
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen.submission == "already", 30, "the refusal")
        shown = " ".join(str(app.screen.query_one("#submit-result").render()).split())
        assert "already submitted" in shown and "pass --force" not in shown
        assert f"hpcwizard submit {session.plan_path(home)} --force" in shown
        assert "change the plan" in shown
        app.exit()


# -- 6. slurm: time limits Slurm would round or refuse ----------------------------------

async def test_slurm_step_refuses_impossible_and_zero_time_limits(make, home):
    saved_at(home, "slurm", demo_plan(home))
    app = make(home)
    async with app.run_test(size=SIZE) as pilot:
        await slurm_loaded(pilot)
        screen = app.screen

        def verdict() -> str:
            return " ".join(str(screen.query_one("#slurm-verdict").render()).split())

        for bad in ("25:99", "99:99:99", "0", "00:00:00"):
            screen.query_one("#train-time").value = bad
            await wait_for(pilot, lambda: f"train.time has a bad value {bad!r}" in verdict(), 10, f"{bad} refused")
            assert "fits" not in verdict()
            assert screen.query_one("#step-next").disabled
        screen.query_one("#train-time").value = "00:05:00"
        await wait_for(pilot, lambda: not screen.query_one("#step-next").disabled, 10, "a good time")


# -- 7. params: a number field shows what was typed, and why it is not allowed ----------

async def test_a_decimal_point_in_an_int_field_is_refused_not_dropped(make, home):
    saved_at(home, "params", demo_plan(home))
    app = make(home)
    async with app.run_test(size=SIZE) as pilot:
        await resume(pilot, "params")
        field = app.screen.query_one("#param-max_train_steps")
        field.focus()
        field.value = ""
        await pilot.press(*"6.0")
        row = app.screen.query_one("#row-max_train_steps")
        await wait_for(pilot, lambda: not row.ok, 10, "6.0 refused")
        assert field.value == "6.0"
        assert "6.0 is not allowed: a whole number" in str(row.query_one(".param-error").render())
        assert app.screen.query_one("#step-next").disabled
        await pilot.press("backspace", "backspace")
        await wait_for(pilot, lambda: row.ok and row.value == 6, 10, "6 allowed")


# -- the one-line status at 80 columns ---------------------------------------------------

async def test_a_long_status_ends_with_an_ellipsis_at_80_columns(make, home):
    saved_at(home, "paths", demo_plan(home))
    app = make(home)
    async with app.run_test(size=(80, 24)) as pilot:
        await resume(pilot, "paths")
        app.screen.set_status("a status message far too long for the bar between the two buttons " * 2)
        await pilot.pause(0.2)
        label = app.screen.query_one("#step-status")
        line = "".join(segment.text for segment in label.render_line(0)).rstrip()
        assert line.endswith("…"), line
        assert label.region.height == 1

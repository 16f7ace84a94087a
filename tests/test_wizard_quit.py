"""Leaving steps: quitting (ctrl+q) while a step's worker is still filling the
screen (the answer that arrives after the widgets are gone is dropped, never a
traceback), and ctrl+n on a shut Next (it says what opens it)."""

from __future__ import annotations

import pytest

import test_wizard as tw
from devhub_fixtures import hf_home  # noqa: F401
from test_wizard import SIZE, demo_plan, saved_at, wait_for

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(180)]

anyio_backend = tw.anyio_backend
_no_animations = tw._no_animations
hub = tw.hub
home = tw.home
make = tw.make


@pytest.mark.parametrize("step", ["preflight", "review", "download"])
@pytest.mark.parametrize("delay", [0.0, 0.1, 0.3, 0.6])
async def test_quitting_while_a_step_fills_its_screen_is_clean(make, home, step, delay, slurm_conf):
    saved_at(home, step, demo_plan(home, download="login"))
    app = make(home)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: getattr(app.screen, "saved", None) is not None, 30, "welcome")
        await pilot.press("enter")  # resume at the step: its worker starts
        await wait_for(pilot, lambda: getattr(app.screen, "STEP", None) == step, 30, step)
        await pilot.pause(delay)
        await pilot.press("ctrl+q")
    assert app.return_code == 0, app._exception


async def test_ctrl_n_on_a_shut_next_says_what_opens_it(make, home):
    saved_at(home, "params", demo_plan(home))
    app = make(home)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: getattr(app.screen, "saved", None) is not None, 30, "welcome")
        await pilot.press("enter")
        await wait_for(pilot, lambda: getattr(app.screen, "STEP", None) == "params", 30, "params")
        app.screen.query_one("#param-max_train_steps").value = "0"
        await wait_for(pilot, lambda: app.screen.query_one("#step-next").disabled, 10, "Next shut")
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: any("fix the values marked ✘ first" in n.message
                                          for n in app._notifications), 5, "the notice")
        assert getattr(app.screen, "STEP", None) == "params"


async def test_open_wizard_from_a_dashboard_while_the_project_is_open_elsewhere(tmp_path):
    """A wizard open on this project in another terminal: "Open wizard" says so
    and the dashboard stays (it showed a dead end whose q quit the program)."""
    import subprocess
    import sys

    from hpcwizard.tui.app import make_app
    from hpcwizard.tui.screens.dashboard import DashboardScreen

    home = tmp_path / "proj"
    (home / "hpcwizard").mkdir(parents=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom hpcwizard.project.state import ProjectLock\n"
         f"lock = ProjectLock({str(home / 'hpcwizard')!r}); lock.acquire(); print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        app = make_app(project_home=home, start_mode="dashboard")
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), 30, "the dashboard")
            dashboard = app.screen
            await pilot.press("w")
            await wait_for(pilot, lambda: any("already open in hpcwizard" in n.message for n in app._notifications),
                           10, "the notice")
            assert app.screen is dashboard and app.current_mode == "dashboard"
    finally:
        holder.kill()
        holder.wait()


async def test_a_new_project_home_is_created_only_when_the_user_goes_on(make, tmp_path):
    """A mistyped --project-home used to leave <home>/hpcwizard/wizard.lock
    (and its parents) behind even when the user quit at once."""
    typo = tmp_path / "typo" / "deep" / "proj"
    app = make(typo)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: getattr(app.screen, "saved", None) is not None, 30, "welcome")
        assert "does not exist yet: it is created when you start" in str(
            app.screen.query_one("#welcome-session").render())
        await pilot.press("ctrl+q")
    assert not (tmp_path / "typo").exists()
    app = make(typo)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: getattr(app.screen, "saved", None) is not None, 30, "welcome")
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: getattr(app.screen, "STEP", None) == "token", 30, "token")
        assert (typo / "hpcwizard" / "wizard.lock").exists()

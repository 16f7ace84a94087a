"""The wizard's step registry (hpcwizard.project.wizard_steps): one entry a step,
read by the flow, the header, the palette, the welcome and the saved session.

No pilot here: the flow's rules are functions of a plan, and the session is
read and written on disk as the wizard does.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest

from hpcwizard.project import session, wizard_steps
from hpcwizard.project.home import Project
from hpcwizard.project.recipe import get_recipe
from hpcwizard.project.wizard_steps import (
    DONE,
    DOWNLOAD,
    PARAMS,
    RECIPE,
    REVIEW,
    STEPS,
    SUBMIT,
    TOKEN,
    WELCOME,
    step_after,
    step_before,
    step_index,
    step_to_show,
)
from hpcwizard.tui.screens.step import StepScreen

# What state.wizard_step holds on disk: a renamed or reordered key would send
# saved sessions back to the welcome step, or resume them at the wrong one.
SAVED_KEYS = ["welcome", "token", "recipe", "params", "paths", "slurm", "preflight", "review", "download", "submit"]


def demo_plan(home: Path, **changes):
    return get_recipe("demo").default_plan(home, hf_namespace="alice", **changes)


def test_the_keys_saved_sessions_hold_do_not_change():
    assert [step.key for step in STEPS] == SAVED_KEYS
    assert DONE == session.DONE == "done"
    assert [step_index(key) for key in SAVED_KEYS] == list(range(len(SAVED_KEYS)))
    assert step_index(DONE) == len(STEPS) and step_index("no-such-step") == 0 and step_index(None) == 0


def test_each_step_names_its_screen_and_the_screen_names_its_step():
    for step in STEPS:
        screen = getattr(importlib.import_module(step.screen_module), step.screen_class)
        assert issubclass(screen, StepScreen)
        assert screen.STEP == step.key, f"{step.screen} says it is step {screen.STEP!r}"
        assert step.title and step.next_shut
    # Every step screen of the package is in the registry (none shown by a side door).
    registered = {(step.screen_module, step.screen_class) for step in STEPS}
    for module in {step.screen_module for step in STEPS}:
        for name, value in vars(importlib.import_module(module)).items():
            if inspect.isclass(value) and issubclass(value, StepScreen) and value is not StepScreen \
                    and value.__module__ == module:
                assert (module, name) in registered


def test_what_opens_next_is_said_for_each_step():
    assert TOKEN.next_shut.startswith("check a token first")
    assert DOWNLOAD.next_shut == "preparing has not finished: r resumes it"
    assert RECIPE.next_shut == "finish this step first"  # no step of its own to wait for


def test_the_prepare_step_applies_only_when_the_login_node_prepares(tmp_path):
    on_login = demo_plan(tmp_path, download="login")
    in_job = demo_plan(tmp_path, download="job")
    assert DOWNLOAD.applies(on_login) and not DOWNLOAD.applies(in_job) and not DOWNLOAD.applies(None)
    assert step_after(REVIEW.key, on_login) is DOWNLOAD and step_after(REVIEW.key, in_job) is SUBMIT
    assert step_before(SUBMIT.key, on_login) is DOWNLOAD and step_before(SUBMIT.key, in_job) is REVIEW
    assert [s.key for s in wizard_steps.reachable_steps(len(STEPS), in_job)] == \
        [key for key in SAVED_KEYS[1:] if key != "download"]
    assert [s.key for s in wizard_steps.reachable_steps(len(STEPS), on_login)] == SAVED_KEYS[1:]


def test_steps_after_the_recipe_need_a_plan():
    assert [step.key for step in STEPS if step.applies(None)] == ["welcome", "token", "recipe"]
    assert step_after(TOKEN.key, None) is RECIPE
    assert step_before(TOKEN.key, None) is WELCOME and step_before(WELCOME.key, None) is WELCOME
    assert [s.key for s in wizard_steps.reachable_steps(len(STEPS), None)] == ["token", "recipe"]
    assert [s.key for s in wizard_steps.reachable_steps(step_index(PARAMS.key), None)] == ["token", "recipe"]
    assert step_to_show(PARAMS.key, None) == RECIPE.key
    assert step_to_show(TOKEN.key, None) == TOKEN.key
    assert step_to_show(DONE, None) == DONE


@pytest.mark.parametrize("key", SAVED_KEYS[1:] + [DONE])
def test_a_saved_session_resumes_at_its_step(tmp_path, key):
    home = tmp_path / "project"
    home.mkdir()
    session.save_plan(Project(home), demo_plan(home, download="login"))
    session.save_step(Project(home), key)
    saved = session.read_session(Project(home))
    assert saved.step == key and saved.resumable and saved.plan is not None


def test_a_session_without_a_plan_resumes_at_the_recipe(tmp_path):
    home = tmp_path / "project"
    home.mkdir()
    session.save_step(Project(home), "slurm")
    assert session.read_session(Project(home)).step == "recipe"
    session.save_step(Project(home), "token")
    assert session.read_session(Project(home)).step == "token"
    session.save_step(Project(home), "welcome")
    assert not session.read_session(Project(home)).resumable

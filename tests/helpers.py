"""Polling helpers shared by the test modules: wait for a condition, never sleep blindly."""

from __future__ import annotations

import contextlib
import fcntl
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest

T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 45.0, interval: float = 0.25) -> T:
    """Poll ``probe`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    value = None
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what} (last: {value!r})")
        time.sleep(interval)


def step_of(app) -> str:
    """The wizard step an app shows (its screen's STEP), or the screen's class name."""
    return getattr(app.screen, "STEP", type(app.screen).__name__)


async def pilot_wait_for(pilot, condition: Callable[[], object], timeout: float = 30.0, what: str = "condition") -> None:
    """Let a Textual pilot run until ``condition()`` holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await pilot.pause(0.05)
        if condition():
            return
    raise AssertionError(f"{what} not met within {timeout} s; on {step_of(pilot.app)}")


@contextlib.contextmanager
def machine_lock(name: str) -> Iterator[None]:
    """Hold /tmp/NAME.lock exclusively: for a test that must use a fixed path of
    this machine (a snapshot shows it), so two suites running at once on one
    machine take turns instead of removing each other's files."""
    with open(f"/tmp/{name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)

"""The hpcwizard App: a thin shell with two modes, ``wizard`` and ``dashboard``.

Build it with :func:`make_app` from explicit arguments (project home, runner,
clock, hub endpoint), so tests construct it without side effects. Screens
find these through ``self.app.context``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from datetime import datetime
from pathlib import Path

from textual.app import App
from textual.screen import Screen

from hpcwizard import __version__
from hpcwizard.files import LOCAL_FILES, ProjectFiles
from hpcwizard.shell import LocalRunner, Runner


@dataclass
class AppContext:
    """What every screen may use: where the project is and how to reach the cluster."""

    project_home: Path | None
    runner: Runner
    clock: Callable[[], datetime] = field(default=lambda: datetime.now().astimezone())
    hf_endpoint: str | None = None
    #: Project files: this machine, or the login node in remote mode (``--host``).
    files: ProjectFiles = field(default=LOCAL_FILES)
    #: The SSH connection in remote mode (the dashboard shows its reconnects).
    connection: Any = None
    #: How jobs call hpcwizard (remote mode: the login node's installation).
    hpcwizard_cmd: list[str] | None = None


def _wizard() -> Screen:
    from hpcwizard.tui.screens.wizard import WizardScreen

    return WizardScreen()


def _dashboard() -> Screen:
    from hpcwizard.tui.screens.dashboard import DashboardScreen

    return DashboardScreen()


class HpcWizardApp(App[int]):
    TITLE = "hpcwizard"
    SUB_TITLE = f"v{__version__}"
    CSS_PATH = "app.tcss"
    MODES = {"wizard": _wizard, "dashboard": _dashboard}

    def __init__(self, context: AppContext, *, start_mode: str = "wizard") -> None:
        super().__init__()
        self.context = context
        self.start_mode = start_mode

    def on_mount(self) -> None:
        self.switch_mode(self.start_mode)


def make_app(
    *,
    project_home: Path | None = None,
    runner: Runner | None = None,
    clock: Callable[[], datetime] | None = None,
    hf_endpoint: str | None = None,
    start_mode: str = "wizard",
    files: ProjectFiles | None = None,
    connection: Any = None,
    hpcwizard_cmd: list[str] | None = None,
) -> HpcWizardApp:
    """``files``/``connection``/``hpcwizard_cmd``: remote mode (``--host``);
    the project home is then a path of the login node, taken as given."""
    files = files or LOCAL_FILES
    home: Path | None = None
    if project_home:
        home = Path(project_home) if files.remote else Path(project_home).absolute()
    context = AppContext(
        project_home=home,
        runner=runner or LocalRunner(),
        hf_endpoint=hf_endpoint,
        files=files,
        connection=connection,
        hpcwizard_cmd=hpcwizard_cmd,
    )
    if clock is not None:
        context.clock = clock
    return HpcWizardApp(context, start_mode=start_mode)

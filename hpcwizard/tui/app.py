"""The hpcwizard App: a thin shell with two modes, ``wizard`` and ``dashboard``.

Build it with :func:`make_app` from explicit arguments (project home, runner,
clock, hub endpoint), so tests construct it without side effects. Screens
find these through ``self.app.context``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from textual.app import App
from textual.binding import Binding
from textual.screen import Screen

from hpcwizard import __version__
from hpcwizard.project.files import LOCAL_FILES, ProjectFiles
from hpcwizard.project.home import Project
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

    @property
    def project(self) -> Project:
        """The project of ``project_home`` (set once the wizard knows it)."""
        if self.project_home is None:
            raise RuntimeError("no project home yet: the wizard has not asked for it")
        return self.project_at(self.project_home)

    def project_at(self, home: Path) -> Project:
        """The project at ``home`` (a plan's ``project_home``), reached through this app's files and runner."""
        return Project(home, self.files, self.runner)


@dataclass(frozen=True)
class RemoteSetup:
    """What remote mode learns once connected (``connecting``'s answer): the
    connection and what works through it are made there, in the connect
    screen's worker, so that the app starts without the SSH library."""

    project_home: Path | None
    hpcwizard_cmd: list[str] | None = None
    connection: Any = None
    files: ProjectFiles | None = None
    runner: Runner | None = None


def _wizard() -> Screen:
    from hpcwizard.tui.screens.wizard import WizardScreen

    return WizardScreen()


def _dashboard() -> Screen:
    from hpcwizard.tui.screens.dashboard import DashboardScreen

    return DashboardScreen()


class HpcWizardApp(App[int]):
    TITLE = "hpcwizard"
    SUB_TITLE = f"v{__version__}"
    # The welcome step's CSS is read with the app's: a screen's own CSS_PATH,
    # read when the screen first shows, makes Textual parse every stylesheet
    # again (the welcome step would pay that before the first paint).
    CSS_PATH = ["app.tcss", "screens/welcome.tcss"]
    MODES = {"wizard": _wizard, "dashboard": _dashboard}
    # Shown in the wizard's footer: "quit any time" should not need the docs.
    # The dashboard hides it (its footer has q, and 80 columns are full).
    BINDINGS = [Binding("ctrl+q", "quit", "Quit", priority=True)]

    def __init__(self, context: AppContext, *, start_mode: str = "wizard",
                 connecting: Callable[[], RemoteSetup] | None = None, connecting_to: str | None = None,
                 ssh_prompts: Any = None) -> None:
        # The first screen is the start mode's own: no default screen first
        # and no switch to the mode (each switch re-parses all the CSS). Remote
        # mode starts on Textual's default screen, under the connect screen.
        self.DEFAULT_MODE = start_mode if connecting is None else App.DEFAULT_MODE  # type: ignore[misc]
        super().__init__()
        self.context = context
        self.start_mode = start_mode
        self.connecting = connecting
        #: The login node as the connect screen names it (``--host`` as typed).
        self.connecting_to = connecting_to
        self.ssh_prompts = ssh_prompts
        #: Why the app gave up before its first screen (printed by the CLI).
        self.failure: Exception | None = None

    def get_system_commands(self, screen: Screen):
        """Textual's palette commands, with one quit: "Quit hpcwizard",
        saying what is kept (the palette had both "Quit" and "Quit hpcwizard")."""
        from textual.app import SystemCommand

        for command in super().get_system_commands(screen):
            if command.title == "Quit":
                yield SystemCommand("Quit hpcwizard", "every answer and job is kept; run hpcwizard again to resume",
                                    self.exit)
            else:
                yield command

    def on_mount(self) -> None:
        if self.ssh_prompts is not None:
            self.ssh_prompts.bind(self)
        if self.connecting is None:
            return  # already in the start mode (DEFAULT_MODE)
        from hpcwizard.tui.screens.connect import ConnectScreen

        self.push_screen(ConnectScreen(self.connecting_to or "the login node"))

    def connected(self, setup: RemoteSetup) -> None:
        """Remote mode: the login node answered; open the real first screen."""
        self.context.project_home = setup.project_home
        self.context.hpcwizard_cmd = setup.hpcwizard_cmd
        if setup.connection is not None:
            self.context.connection = setup.connection
        if setup.files is not None:
            self.context.files = setup.files
        if setup.runner is not None:
            self.context.runner = setup.runner
        self.switch_mode(self.start_mode)

    def switch_mode(self, mode: str):
        if mode == "dashboard" and self.current_mode == "wizard":
            from hpcwizard.tui.screens.wizard import find_wizard

            # The wizard may have asked for the project home (none on the
            # command line): the dashboard watches that one.
            wizard = find_wizard(self)
            if wizard is not None and wizard.project_home is not None:
                self.context.project_home = wizard.project_home
            # A dashboard left for "Open wizard" still had the old chain selected
            # and its log open: a new one selects what the wizard just submitted.
            self.remove_mode("dashboard")
            self.add_mode("dashboard", _dashboard)
        return super().switch_mode(mode)

    async def open_wizard(self) -> None:
        """The dashboard's "Open wizard": a new wizard at its welcome step
        (resume, back to the last step, or a new plan) for the project home.

        The wizard mode's base screen runs its flow once, from ``on_mount``;
        after it handed over to the dashboard, switching back to that mode
        showed its idle "Starting the wizard…" box with only q to quit.
        Everything the wizard knew is saved, so a new one loses nothing."""
        if self.current_mode == "wizard":
            return
        if not self._project_free_for_wizard():
            return
        await self.remove_mode("wizard")  # its screens unmount: the project lock is released
        self.add_mode("wizard", _wizard)
        await self.switch_mode("wizard")

    def _project_free_for_wizard(self) -> bool:
        """A wizard open on this project elsewhere: say so and stay on the
        dashboard (the wizard showed "already open… Press q to quit", and q
        closed the whole program)."""
        from hpcwizard.errors import UserError
        from hpcwizard.project import session

        if self.context.project_home is None:
            return True
        project = self.context.project
        try:
            if session.acquire_project_lock(project):
                session.release_project_lock(project)  # the wizard takes it again in a moment
        except UserError as exc:
            self.notify(exc.one_line(), title="Wizard not opened", severity="warning", timeout=10, markup=False)
            return False
        return True

    def quit_with(self, failure: Exception | None) -> None:
        self.failure = failure
        self.exit(return_code=getattr(failure, "exit_code", 1) if failure is not None else 0)


def make_app(
    *,
    project_home: Path | None = None,
    runner: Runner | None = None,
    clock: Callable[[], datetime] | None = None,
    hf_endpoint: str | None = None,
    start_mode: str = "wizard",
    files: ProjectFiles = LOCAL_FILES,
    connection: Any = None,
    hpcwizard_cmd: list[str] | None = None,
    connecting: Callable[[], RemoteSetup] | None = None,
    connecting_to: str | None = None,
    ssh_prompts: Any = None,
) -> HpcWizardApp:
    """``files``/``connection``/``hpcwizard_cmd``: remote mode (``--host``);
    the project home is then a path of the login node, taken as given.

    ``connecting``: when given, the app first shows a connect screen (naming
    the login node ``connecting_to``) that runs it in a worker (SSH handshake,
    then what needs the login node) and takes the project home, hpcwizard
    command, connection, files and runner from its answer; ``ssh_prompts``
    (a :class:`~hpcwizard.tui.screens.ssh_questions.TuiSshPrompts`) asks the
    connection's host-key and passphrase questions as modals."""
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
    return HpcWizardApp(context, start_mode=start_mode, connecting=connecting, connecting_to=connecting_to,
                        ssh_prompts=ssh_prompts)

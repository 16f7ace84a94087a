"""Remote mode's first screen: connect to the login node, asking in the TUI.

``hpcwizard --host`` opens the app before any network traffic, so the host
key question and a key's passphrase are modals here (see
:mod:`~hpcwizard.tui.screens.ssh_questions`), not prompts on a bare terminal.
The connection and the set-up that needs it (the project home there, its lock,
the login node's hpcwizard) run in a worker; then the app switches to the
wizard or the dashboard. A failure is shown with Retry and Quit; quitting
exits non-zero and prints the same one-line error on the terminal.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Button, Footer, LoadingIndicator, Static
from textual.worker import Worker, WorkerState

from hpcwizard.errors import UserError

if TYPE_CHECKING:
    from textual import getters

    from hpcwizard.tui.app import HpcWizardApp


class ConnectScreen(Screen[None]):
    if TYPE_CHECKING:  # self.app is the HpcWizardApp (for the type checker only: no check at run time)
        app = getters.app(HpcWizardApp)

    CSS_PATH = "connect.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "retry", "Retry", show=False),
        Binding("q", "quit_with_error", "Quit", show=False),
    ]

    def __init__(self, where: str) -> None:
        super().__init__()
        self.where = where
        self.failure: UserError | None = None

    @property
    def wizard_app(self) -> HpcWizardApp:
        return self.app

    def compose(self) -> ComposeResult:
        with Vertical(id="connect-box"):
            yield Static(f"Connecting to {self.where}…", id="connect-title", markup=False)
            yield LoadingIndicator(id="connect-spinner")
            yield Static("", id="connect-error", markup=False)
            with Horizontal(id="connect-buttons"):
                yield Button("Quit (q)", id="connect-quit")
                yield Button("Retry (r)", id="connect-retry", variant="primary")
        yield Footer()

    def on_mount(self) -> None:
        self.start()

    def start(self) -> None:
        self.failure = None
        self.set_class(False, "-failed")
        self.query_one("#connect-error", Static).update("")
        self.query_one("#connect-title", Static).update(f"Connecting to {self.where}…")
        self.prepare()

    @work(thread=True, exclusive=True, group="connect", exit_on_error=False)
    def prepare(self) -> Any:
        """The blocking part: SSH handshake (and its questions), then set-up."""
        connecting = self.wizard_app.connecting
        if connecting is None:  # the app shows this screen only when it has one
            raise RuntimeError("the connect screen was shown without a connection to make")
        return connecting()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group != "connect":
            return
        if event.state is WorkerState.SUCCESS:
            setup = event.worker.result
            assert setup is not None  # connecting() returns a RemoteSetup or raises
            self.wizard_app.connected(setup)
        elif event.state is WorkerState.ERROR:
            error = event.worker.error
            if not isinstance(error, UserError):
                error = UserError(f"could not connect to {self.where}: {type(error).__name__}: {error}",
                                  "this is a bug in hpcwizard; please report it with this line")
            self.show_failure(error)

    def show_failure(self, error: UserError) -> None:
        self.failure = error
        self.set_class(True, "-failed")
        self.query_one("#connect-title", Static).update(f"Could not open the project on {self.where}")
        self.query_one("#connect-error", Static).update(error.one_line())
        self.query_one("#connect-retry", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "connect-retry":
            self.action_retry()
        else:
            self.action_quit_with_error()

    def action_retry(self) -> None:
        if self.failure is not None:
            self.start()

    def action_quit_with_error(self) -> None:
        self.wizard_app.quit_with(self.failure)

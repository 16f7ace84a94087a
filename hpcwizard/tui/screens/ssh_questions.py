"""SSH's two questions, asked in the TUI: an unknown host key, a key's passphrase.

:class:`TuiSshPrompts` gives :class:`~hpcwizard.remote.SshConnection` its
``ask_host_key`` and ``passphrase`` callbacks. The connection calls them from
a worker thread (connecting never runs on the UI thread); each call pushes a
modal and blocks that thread until the user answers. When no answer can be
had (the app is gone, or a caller on the UI thread), the safe answer is
returned: the host key is refused, the key skipped.
"""

from __future__ import annotations

from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static

if TYPE_CHECKING:
    from textual.app import App

T = TypeVar("T")


class HostKeyQuestion(ModalScreen[bool]):
    """OpenSSH's "authenticity of host ... can't be established", as a modal.

    No is focused: Enter on the default refuses. Accepting writes the key to
    known_hosts (the connection does it), so the question comes once per host.
    """

    CSS_PATH = "ssh_questions.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Trust this key"),
        Binding("n,escape", "answer(False)", "Refuse"),
    ]

    def __init__(self, hostname: str, key_type: str, fingerprint: str) -> None:
        super().__init__()
        self.hostname = hostname
        self.key_type = key_type
        self.fingerprint = fingerprint

    def compose(self) -> ComposeResult:
        # Asked by a connection, which has loaded paramiko: the module is not
        # imported before (hpcwizard --host starts without it).
        from hpcwizard.remote.connection import key_type_label

        with Vertical(classes="ssh-question"):
            yield Static(f"Unknown host key for {self.hostname}", classes="ssh-question-title", markup=False)
            yield Static(
                f"{key_type_label(self.key_type)} key fingerprint:\n{self.fingerprint}",
                id="host-key-fingerprint", markup=False,
            )
            yield Static(
                "This host has never been seen from this machine. Compare the fingerprint with "
                "your cluster's documentation (or ask its admins) before trusting it; once trusted "
                "it is saved to known_hosts.",
                classes="ssh-question-body",
            )
            with Horizontal(classes="ssh-question-buttons"):
                yield Button("Refuse (n)", id="no")
                yield Button("Trust this key (y)", id="yes", variant="warning")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "yes")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)


class PassphraseQuestion(ModalScreen["str | None"]):
    """A key file's passphrase: masked, Enter unlocks, Escape skips the key.

    The passphrase goes straight to paramiko; it is never stored, logged or
    shown. The unlocked key stays in memory for reconnects only.
    """

    CSS_PATH = "ssh_questions.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "skip", "Skip this key")]

    def __init__(self, path: str, retry: bool = False) -> None:
        super().__init__()
        self.path = path
        self.retry = retry  # the passphrase typed before was wrong

    def compose(self) -> ComposeResult:
        with Vertical(classes="ssh-question"):
            yield Static("SSH key passphrase", classes="ssh-question-title")
            question = (f"Wrong passphrase. Try again for {self.path}" if self.retry
                        else f"Enter the passphrase for {self.path}")
            yield Static(question, classes="ssh-question-body", markup=False)
            yield Input(password=True, placeholder="passphrase", id="passphrase")
            with Horizontal(classes="ssh-question-buttons"):
                yield Button("Skip this key (esc)", id="skip")
                yield Button("Unlock (enter)", id="unlock", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#passphrase", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(event.value or None)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "unlock":
            self.dismiss(self.query_one("#passphrase", Input).value or None)
        else:
            self.dismiss(None)

    def action_skip(self) -> None:
        self.dismiss(None)


class TuiSshPrompts:
    """The connection's prompt callbacks, answered by modals in a running app.

    Create it before the app (the connection needs the callbacks at
    construction) and :meth:`bind` it once the app runs.
    """

    #: How often a waiting thread checks that the app is still there.
    POLL_SECONDS = 0.25

    def __init__(self) -> None:
        self.app: App | None = None

    def bind(self, app: App) -> None:
        self.app = app

    def ask_host_key(self, hostname: str, key_type: str, fingerprint: str) -> bool:
        return bool(self._ask(lambda: HostKeyQuestion(hostname, key_type, fingerprint), False))

    def passphrase(self, path: str, retry: bool = False) -> str | None:
        return self._ask(lambda: PassphraseQuestion(path, retry), None)

    def _ask(self, make_screen, safe_answer: T) -> T:
        app = self.app
        if app is None:
            return safe_answer
        answer: Future = Future()

        def settle(value: Any) -> None:
            if not answer.done():
                answer.set_result(value)

        def push() -> None:
            app.push_screen(make_screen(), callback=settle)

        try:
            app.call_from_thread(push)
        except RuntimeError:  # not running, or called on the UI thread: nobody can answer
            return safe_answer
        while True:
            try:
                return answer.result(timeout=self.POLL_SECONDS)
            except FutureTimeout:
                if not app.is_running:  # quit while the question was open
                    return safe_answer

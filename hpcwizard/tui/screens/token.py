"""Step 2: the Hugging Face token, validated against the hub and stored 0600.

The token lives only in the masked Input and the worker that checks it; the
messages carry the user name, never the token, and the only file written is
the standard token file (``hub.store_token``).
"""

from __future__ import annotations

from collections.abc import Iterable

from textual import on, work
from textual.containers import Horizontal
from textual.widget import Widget
from textual.widgets import Button, Input, Label, LoadingIndicator, Static

from hpcwizard.checks import hub
from hpcwizard.errors import UserError
from hpcwizard.tui.messages import TokenChecked
from hpcwizard.tui.screens.step import StepScreen


class TokenStep(StepScreen):
    STEP = "token"
    CSS_PATH = "token.tcss"

    def __init__(self, *, reached: int | None = None) -> None:
        super().__init__(reached=reached)
        self.found = hub.find_token()
        self.user: str | None = None

    def compose_body(self) -> Iterable[Widget]:
        yield Static(
            "The jobs download models and data from the Hugging Face Hub with your token. It is stored "
            f"only in the standard token file ({hub.token_file_path()}, readable by you alone) and never "
            "appears in a script, a log or a command line. A 'read' token is enough: "
            f"{hub.TOKENS_PAGE}", id="token-intro")
        if self.found is not None:
            yield Label(f"A token is already set up ({self.found.source}).", id="token-found", markup=False)
            with Horizontal(id="token-found-row"):
                yield Button("Use this token", id="token-use", variant="primary", compact=True)
                yield Label("  or paste another one below", classes="hint")
        yield Label("Token", classes="section-title")
        yield Input(placeholder="hf_…", password=True, id="token-input")
        yield LoadingIndicator(id="token-busy")
        yield Label("", id="token-result", markup=False)

    def on_mount(self) -> None:
        self.query_one("#token-busy").display = False
        self.allow_next(False)
        if self.found is not None:
            self.query_one("#token-use", Button).focus()
        else:
            self.query_one("#token-input", Input).focus()

    def _busy(self, busy: bool) -> None:
        self.query_one("#token-busy").display = busy
        self.query_one("#token-input", Input).disabled = busy
        for button in self.query("#token-use"):
            button.disabled = busy

    @on(Button.Pressed, "#token-use")
    def _use_found(self, event: Button.Pressed) -> None:
        event.stop()
        self._busy(True)
        self.set_status("checking the token with the hub…")
        self.check(None)

    @on(Input.Submitted, "#token-input")
    def _pasted(self, event: Input.Submitted) -> None:
        event.stop()
        if self.user is not None and not event.value.strip():
            self.action_next()
            return
        if not event.value.strip():
            self.set_status("paste a token first", error=True)
            return
        self._busy(True)
        self.set_status("checking the token with the hub…")
        self.check(event.value)

    @on(Input.Changed, "#token-input")
    def _typed(self, event: Input.Changed) -> None:
        if event.value.strip() and self.user is not None:
            self.user = None
            self.allow_next(False)
            self.query_one("#token-result", Label).update("")

    @work(thread=True, exclusive=True, group="hub-token", exit_on_error=False)
    def check(self, typed: str | None) -> None:
        endpoint = self.context.hf_endpoint
        try:
            if typed is None:
                source = hub.find_token()
                if source is None:
                    raise UserError("the token found earlier is gone", "paste a token below")
                token = source.token
                user = hub.validate_token(token, endpoint)
                saved = str(hub.keep_private(source.path)) if source.path else None
                if source.path is None:  # from HF_TOKEN only: jobs read the token file
                    saved = str(hub.store_token(source.token, endpoint))
            else:
                token = typed
                user = hub.validate_token(typed, endpoint)
                saved = str(hub.store_token(typed, endpoint))
            if self.context.files.remote:
                # A token typed now replaces the login node's (it may be the
                # expired one being fixed); a found one keeps what is there.
                remote = self._store_on_login_node(token, replace=typed is not None)
                if remote:
                    saved = f"{saved} and {remote}"
        except UserError as exc:
            self.post_message(TokenChecked(None, error=exc.one_line()))
            return
        except Exception as exc:  # never show the exception text: it could quote the token
            self.post_message(TokenChecked(None, error=f"the token could not be checked ({type(exc).__name__})"))
            return
        self.post_message(TokenChecked(user.name, saved_to=saved))

    def _store_on_login_node(self, token: str, *, replace: bool = False) -> str | None:
        """Remote mode: the jobs read ``$HF_HOME/token`` ON THE CLUSTER. When
        the login node has none, or ``replace`` (a token typed now), store
        this (validated) token there: on the
        command's stdin, into a file created 0600 in a private folder; never
        in argv or env."""
        from hpcwizard.checks.preflight import make_remote_token_private, remote_token_status, store_remote_token

        files, runner = self.context.files, self.context.runner
        existing = remote_token_status(runner)
        if replace or not existing.path:
            return f"{files.where}:{store_remote_token(runner, token)}"
        if existing.loose:
            make_remote_token_private(runner, existing.path)
            return f"{files.where}:{existing.path} (already there, kept; made private, it was mode {existing.mode})"
        return f"{files.where}:{existing.path} (already there, kept)"

    def on_token_checked(self, message: TokenChecked) -> None:
        self._busy(False)
        result = self.query_one("#token-result", Label)
        if message.user is None:
            self.user = None
            result.update(message.error or "")
            result.set_class(True, "error")
            self.set_status("the token was not accepted", error=True)
            self.allow_next(False)
            self.query_one("#token-input", Input).focus()
            return
        self.user = message.user
        self.query_one("#token-input", Input).value = ""
        result.set_class(False, "error")
        result.update(f"✔ Logged in as {message.user}. Token saved (mode 0600) in {message.saved_to}.")
        self.set_status(f"logged in as {message.user}")
        self.allow_next(True)
        self.query_one("#step-next", Button).focus()

    def submit(self) -> None:
        if self.user is not None:
            self.dismiss(self.user)

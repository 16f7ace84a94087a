"""Step 2: the Hugging Face token, validated against the hub and stored 0600.

The token lives only in the masked Input and the worker that checks it; the
messages carry the user name, never the token, and the only file written is
the standard token file (:func:`hpcwizard.checks.hftoken.store_token`; in
remote mode the login node's too).
"""

from __future__ import annotations

from collections.abc import Iterable

from textual import on, work
from textual.containers import Horizontal
from textual.widget import Widget
from textual.widgets import Button, Input, Label, LoadingIndicator, Static

from hpcwizard.checks import hub
from hpcwizard.errors import UserError
from hpcwizard.project.wizard_steps import TOKEN
from hpcwizard.tui.messages import TokenChecked
from hpcwizard.tui.screens.step import StepScreen


class TokenStep(StepScreen):
    STEP = TOKEN.key
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
        from hpcwizard.checks import hftoken
        from hpcwizard.shell import LocalRunner

        endpoint = self.context.hf_endpoint
        here = LocalRunner()  # this machine's token file (the laptop's, in remote mode)
        warnings: list[str] = []
        try:
            if typed is None:
                source = hub.find_token()
                if source is None:
                    raise UserError("the token found earlier is gone", "paste a token below")
                token = source.token
                user = hub.validate_token(token, endpoint)
                if source.path is not None:  # the user's own file: kept where it is, made private
                    found = hftoken.inspect_token_file(here)
                    if found.loose:
                        hftoken.make_private(found.path, here)
                    saved, warning = found.path, found.warning
                else:  # from HF_TOKEN only: jobs read the token file
                    stored = hftoken.store_token(token, here)
                    saved, warning = stored.path, stored.warning
            else:
                token = typed
                user = hub.validate_token(token, endpoint)  # once: storing does not ask the hub again
                stored = hftoken.store_token(token, here)
                saved, warning = stored.path, stored.warning
            warnings += [warning] if warning else []
            if self.context.files.remote:
                # A token typed now replaces the login node's (it may be the
                # expired one being fixed); a found one keeps what is there.
                remote, warning = self._store_on_login_node(token, replace=typed is not None)
                saved = f"{saved} and {remote}"
                warnings += [warning] if warning else []
        except UserError as exc:
            self.post_message(TokenChecked(None, error=exc.one_line()))
            return
        except Exception as exc:  # never show the exception text: it could quote the token
            self.post_message(TokenChecked(None, error=f"the token could not be checked ({type(exc).__name__})"))
            return
        notes = "".join(f" Note: {text}; {hftoken.FOLDER_FIX}." for text in warnings)
        self.post_message(TokenChecked(user.name, saved_to=f"{saved}.{notes}"))

    def _store_on_login_node(self, token: str, *, replace: bool = False) -> tuple[str, str | None]:
        """Remote mode: the jobs read the token file ON THE CLUSTER, where
        the login node's environment puts it. When it has none, or
        ``replace`` (a token typed now), store this (validated) token there:
        on the command's stdin, into a file created 0600; never in argv or
        env. Where, and a warning about its folder (or None)."""
        from hpcwizard.checks import hftoken

        files, runner = self.context.files, self.context.runner
        existing = hftoken.inspect_token_file(runner)
        if replace or not existing.present:
            stored = hftoken.store_token(token, runner, existing.path)
            return f"{files.where}:{stored.path}", stored.warning
        if existing.loose:
            hftoken.make_private(existing.path, runner)
            return (f"{files.where}:{existing.path} (already there, kept; made private, it was mode "
                    f"{existing.mode:o})", existing.warning)
        return f"{files.where}:{existing.path} (already there, kept)", existing.warning

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
        result.update(f"✔ Logged in as {message.user}. Token saved (mode 0600) in {message.saved_to}")
        self.set_status(f"logged in as {message.user}")
        self.allow_next(True)
        self.query_one("#step-next", Button).focus()

    def submit(self) -> None:
        if self.user is not None:
            self.dismiss(self.user)

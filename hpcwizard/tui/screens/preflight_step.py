"""Step 7: the preflight table, filled row by row; a blocking row keeps Next disabled."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from textual import on, work
from textual.binding import Binding
from textual.widget import Widget
from textual.widgets import Button, Label, LoadingIndicator
from textual.worker import get_current_worker

from hpcwizard.checks.preflight import run_preflight
from hpcwizard.project import session
from hpcwizard.project.plan import Plan
from hpcwizard.tui.messages import CheckArrived, PreflightDone
from hpcwizard.tui.screens.step import StepScreen
from hpcwizard.tui.widgets.check_table import CheckTable


class PreflightStep(StepScreen):
    STEP = "preflight"
    CSS_PATH = "preflight_step.tcss"
    BINDINGS = [Binding("r", "rerun", "Check again")]

    def __init__(self, plan: Plan, *, reached: int | None = None) -> None:
        super().__init__(reached=reached)
        self.plan = plan
        self.running = False
        self.blocked = True

    def compose_body(self) -> Iterable[Widget]:
        yield Label("Token, gated access, space and quota, Slurm limits, environment. "
                    "Enter on a row shows its fix.", classes="hint")
        yield CheckTable(id="preflight-table")
        yield LoadingIndicator(id="preflight-busy")

    def on_mount(self) -> None:
        self.action_rerun()

    def action_rerun(self) -> None:
        if self.running:
            return
        self.running = True
        self.blocked = True
        self.allow_next(False)
        self.query_one(CheckTable).clear_rows()
        self.query_one("#preflight-busy").display = True
        self.set_status("checking…")
        self.check()

    @work(thread=True, exclusive=True, group="preflight", exit_on_error=False)
    def check(self) -> None:
        worker = get_current_worker()  # cancelled when the step goes away: the network probe stops waiting
        try:
            # Only remote mode passes the remote extras (keeps run_preflight's
            # local call exactly as it was).
            remote: dict[str, Any] = ({"files": self.context.files, "hpcwizard_cmd": self.context.hpcwizard_cmd}
                                      if self.context.files.remote else {})
            result = run_preflight(self.plan, session.recipe_of(self.plan), self.context.runner,
                                   endpoint=self.context.hf_endpoint,
                                   on_result=lambda row: self.post_message(CheckArrived(row)),
                                   cancelled=lambda: worker.is_cancelled, **remote)
        except Exception as exc:  # the preflight itself failed: say so, keep Next closed
            self.post_message(PreflightDone(True, error=f"the checks could not run: {exc}"))
            return
        self.post_message(PreflightDone(result.blocked))

    def on_check_arrived(self, message: CheckArrived) -> None:
        self.query_one(CheckTable).add_row(message.row)

    def on_preflight_done(self, message: PreflightDone) -> None:
        self.running = False
        self.query_one("#preflight-busy").display = False
        table = self.query_one(CheckTable)
        counts = table.counts()
        self.blocked = message.blocked or table.blocked
        if message.error:
            self.set_status(message.error, error=True)
        elif self.blocked:
            self.set_status(f"{counts['block']} blocking: fix them, then press r to check again", error=True)
            # The rows may not have composed yet: focus once they have.
            self.call_after_refresh(self._focus_first_block)
        else:
            self.set_status(f"{counts['ok']} ok, {counts['warn']} warnings: ready")
            self.query_one("#step-next", Button).focus()
        self.allow_next(not self.blocked)

    def _focus_first_block(self) -> None:
        for title in self.query("CheckRow.-block CollapsibleTitle"):
            title.focus()
            return

    @on(Button.Pressed, "#preflight-rerun")
    def _rerun(self) -> None:
        self.action_rerun()

    def submit(self) -> None:
        if not self.blocked and not self.running:
            self.dismiss(True)

"""Step 7: the preflight report, filled row by row under its headers; a blocking row keeps Next disabled.

Focus starts on the report (Enter on a row shows its fix), never on Next: the
first Enter must not leave the step. When an earlier run's checkpoints leave
nothing to train, that row's fix offers continue (raise the steps: the
wizard saves them and checks again) or start fresh (move the old checkpoints
into a dated folder, then check again).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from textual import on, work
from textual.binding import Binding
from textual.widget import Widget
from textual.widgets import Button, Label, LoadingIndicator
from textual.worker import get_current_worker

from hpcwizard.checks.preflight import EARLIER_CHECKPOINTS, CheckResult, Level, run_preflight
from hpcwizard.errors import UserError
from hpcwizard.project.home import Project
from hpcwizard.project.plan import Plan
from hpcwizard.project.resolved import resolve
from hpcwizard.project.wizard_steps import PREFLIGHT
from hpcwizard.tui.choices import ParamsChoice
from hpcwizard.tui.messages import CheckArrived, CheckpointsMovedAside, EarlierCheckpointsRead, PreflightDone
from hpcwizard.tui.screens.step import StepScreen
from hpcwizard.tui.widgets.check_table import CheckTable
from hpcwizard.tui.widgets.earlier_run import EarlierRunChoices


class PreflightStep(StepScreen):
    STEP = PREFLIGHT.key
    CSS_PATH = "preflight_step.tcss"
    BINDINGS = [Binding("r", "rerun", "Check again")]

    def __init__(self, plan: Plan, *, reached: int | None = None) -> None:
        super().__init__(reached=reached)
        self.plan = plan
        self.running = False
        self.blocked = True

    def compose_body(self) -> Iterable[Widget]:
        # The headers name what is checked; the hint says how to read more (one line at 80 columns).
        yield Label("Enter on a row shows its fix and details; r checks again.", classes="hint")
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

    def _plan_project(self) -> Project:
        """The project of the plan checked: its files and runner are the app's."""
        return self.context.project_at(self.plan.project_home)

    @work(thread=True, exclusive=True, group="preflight", exit_on_error=False)
    def check(self) -> None:
        worker = get_current_worker()  # cancelled when the step goes away: the network probe stops waiting
        try:
            # Only remote mode passes the remote extras (keeps run_preflight's
            # local call exactly as it was).
            remote: dict[str, Any] = ({"hpcwizard_cmd": self.context.hpcwizard_cmd}
                                      if self.context.files.remote else {})
            result = run_preflight(self._plan_project(), resolve(self.plan),
                                   endpoint=self.context.hf_endpoint,
                                   on_result=lambda row: self.post_message(CheckArrived(row)),
                                   cancelled=lambda: worker.is_cancelled, **remote)
        except Exception as exc:  # the preflight itself failed: say so, keep Next closed
            self.post_message(PreflightDone(True, error=f"the checks could not run: {exc}"))
            return
        self.post_message(PreflightDone(result.blocked))

    def on_check_arrived(self, message: CheckArrived) -> None:
        row: CheckResult = message.row
        table = self.query_one(CheckTable)
        if row.name == EARLIER_CHECKPOINTS and row.level is Level.BLOCK:
            table.add_row(row, EarlierRunChoices(id="preflight-earlier", say=False))
            self.read_checkpoints()
        else:
            table.add_row(row)
        # The report has the focus from its first row on (Enter shows a fix), unless the user moved it.
        if self.focused is None or self.focused.id in ("step-next", "step-back"):
            self.call_after_refresh(table.focus_row)

    def on_preflight_done(self, message: PreflightDone) -> None:
        self.running = False
        self.query_one("#preflight-busy").display = False
        table = self.query_one(CheckTable)
        counts = table.counts()
        self.blocked = message.blocked or table.blocked
        if message.error:
            self.set_status(message.error, error=True)
        elif self.blocked:
            self.set_status(f"{counts['block']} blocking: fix {'it' if counts['block'] == 1 else 'them'}, "
                            "then r checks again", error=True)
            # The rows may not have composed yet: focus once they have.
            self.call_after_refresh(table.focus_row, Level.BLOCK)
        else:
            self.set_status(f"{counts['ok']} ok, {counts['warn']} warnings: ready (ctrl+n or Next goes on)")
        self.allow_next(not self.blocked)

    # -- nothing would be trained: continue or start fresh -------------------------

    @work(thread=True, exclusive=True, group="preflight-checkpoints", exit_on_error=False)
    def read_checkpoints(self) -> None:
        from hpcwizard.checks.preflight import find_earlier_checkpoints

        try:
            found = find_earlier_checkpoints(self._plan_project(), resolve(self.plan))
        except (UserError, OSError):
            found = []
        self.post_message(EarlierCheckpointsRead(found))

    def on_earlier_checkpoints_read(self, message: EarlierCheckpointsRead) -> None:
        for choices in self.query(EarlierRunChoices):
            choices.show(self.plan, message.found)

    def on_earlier_run_choices_continue_chosen(self, message: EarlierRunChoices.ContinueChosen) -> None:
        # The wizard saves the raised steps and shows this step again: it checks anew.
        self.dismiss(ParamsChoice({**self.plan.params, **message.raised}))

    def on_checkpoints_moved_aside(self, message: CheckpointsMovedAside) -> None:
        if message.error:
            self.notify(message.error, title="Not moved", severity="error", timeout=10, markup=False)
            return
        if message.moved:
            self.notify(f"{len(message.moved)} folder(s) moved into {message.moved[0].into}",
                        title="Start fresh", markup=False)
        self.action_rerun()

    @on(Button.Pressed, "#preflight-rerun")
    def _rerun(self) -> None:
        self.action_rerun()

    def submit(self) -> None:
        if not self.blocked and not self.running:
            self.dismiss(True)

"""Step 10: submit the chain, all or nothing, then open the dashboard."""

from __future__ import annotations

from collections.abc import Iterable

from rich.text import Text
from textual import on, work
from textual.widget import Widget
from textual.widgets import Button, LoadingIndicator, Static
from textual.worker import Worker, WorkerState

from hpcwizard.errors import UserError
from hpcwizard.jobs.submit import AlreadySubmitted, submit_chain
from hpcwizard.project import session
from hpcwizard.project.plan import Plan
from hpcwizard.project.wizard_steps import SUBMIT
from hpcwizard.tui.messages import ChainSubmitted
from hpcwizard.tui.screens.step import StepScreen


class SubmitStep(StepScreen):
    STEP = SUBMIT.key
    CSS_PATH = "submit_step.tcss"
    NEXT_LABEL = "Submit"
    AUTO_DASHBOARD = 3.0  # seconds showing the job ids before the dashboard opens

    def __init__(self, plan: Plan, *, reached: int | None = None) -> None:
        super().__init__(reached=reached)
        self.plan = plan
        self.submission: object | None = None
        self.running = False

    def compose_body(self) -> Iterable[Widget]:
        recipe = session.recipe_of(self.plan)
        text = Text()
        text.append("The chain, each job after the previous one succeeded:\n", style="bold")
        for i, job in enumerate(recipe.jobs, start=1):
            res = getattr(self.plan, job.resources)
            text.append(f"  {i}. {job.name}", style="bold")
            text.append(f" on {res.partition}: {res.describe()}\n")  # "1 CPU", a time as Slurm reads it
        text.append(f"\nLogs go to {self.plan.logs_dir}. All or nothing: if Slurm refuses one job, "
                    "none stays queued.")
        yield Static(text, id="submit-chain", markup=False)
        yield LoadingIndicator(id="submit-busy")
        yield Static("", id="submit-result", markup=False)

    def on_mount(self) -> None:
        self.query_one("#submit-busy").display = False
        self.query_one("#step-next", Button).focus()

    def submit(self) -> None:
        if self.submission is not None:
            self.dismiss(self.submission)
            return
        if self.running:
            return
        self.running = True
        # Back shuts first: Next losing the focus would hand it to Back, and a
        # second Enter would leave the step while the chain is submitted behind it.
        self.query_one("#step-back", Button).disabled = True
        self.allow_next(False)
        self.query_one("#submit-busy").display = True
        self.set_status("submitting…")
        self.send()

    @work(thread=True, exclusive=True, group="submit", exit_on_error=False)
    def send(self) -> None:
        # Settling an interrupted earlier submit comes first; its lines are shown with the answer.
        notes: list[str] = []
        try:
            session.ensure_writable(self.plan.project_home)  # read-only after losing the project: no submit
            project = self.context.project_at(self.plan.project_home)
            submission = submit_chain(project, project.resolve(self.plan), hf_endpoint=self.context.hf_endpoint,
                                      hpcwizard_cmd=self.context.hpcwizard_cmd, on_note=notes.append)
        except AlreadySubmitted as exc:
            # The library's hint names the CLI's --force, which the wizard does not have.
            files = self.context.files
            where = f" on {files.where}" if files.remote else ""
            plan_file = session.plan_path(self.plan.project_home)
            self.post_message(ChainSubmitted(None, error=(
                f"{exc.message}. The dashboard (Next) shows its jobs. To submit again, change the plan "
                f"(← Back), or run `hpcwizard submit {plan_file} --force`{where} from a shell"), already=True,
                notes=tuple(notes)))
            return
        except UserError as exc:
            self.post_message(ChainSubmitted(None, error=exc.one_line(), notes=tuple(notes)))
            return
        self.post_message(ChainSubmitted(submission, notes=tuple(notes)))

    def action_back(self) -> None:
        if not self.running:  # leaving mid-submit would lose the job ids of a chain that is queued
            super().action_back()

    def jump(self, step: str) -> None:
        if not self.running:
            super().jump(step)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        # A crash in the worker posts no ChainSubmitted: say so rather than stay "submitting…" with Back shut.
        if event.worker.group == "submit" and event.state is WorkerState.ERROR and self.running:
            self.post_message(ChainSubmitted(None, error=f"the submission failed: {event.worker.error}"))

    def on_chain_submitted(self, message: ChainSubmitted) -> None:
        self.running = False
        self.query_one("#step-back", Button).disabled = False
        self.query_one("#submit-busy").display = False
        result = self.query_one("#submit-result", Static)
        next_button = self.query_one("#step-next", Button)
        # An interrupted earlier submit settled first (cancelled orphans, an adopted chain): said before the answer.
        text = Text("".join(f"ⓘ {line}\n" for line in message.notes), style="yellow")
        if message.submission is None:
            text.append(f"✘ {message.error}", style="red")
            result.update(text)
            if message.already:
                # Nothing to submit again from the wizard: the dashboard shows those jobs.
                self.submission = "already"
                next_button.label = "Dashboard →"
                self.set_status("already submitted")
            else:
                next_button.label = "Submit again →"
                self.set_status("nothing was submitted", error=True)
            self.allow_next(True)
            next_button.focus()
            return
        self.submission = message.submission
        text.append("✔ Submitted:\n", style="green bold")
        for job in message.submission.jobs:
            after = f" (after {job.dependency[0].split(':', 1)[1]})" if job.dependency else ""
            text.append(f"  {job.name}: job {job.job_id} on {job.partition}{after}\n")
        text.append(f"Scripts in {message.submission.scripts_dir}")
        result.update(text)
        next_button.label = "Dashboard →"
        self.allow_next(True)
        next_button.focus()
        if message.notes:  # lines to read: the dashboard waits for Enter
            self.set_status("submitted; Enter opens the dashboard")
            return
        self.set_status(f"submitted; the dashboard opens in {self.AUTO_DASHBOARD:g} s (Enter: now)")
        self.set_timer(self.AUTO_DASHBOARD, self._auto_dashboard)

    def _auto_dashboard(self) -> None:
        if self.is_current and self.submission is not None:
            self.dismiss(self.submission)

    @on(Button.Pressed, "#submit-dashboard")
    def _dashboard(self) -> None:
        self.action_next()

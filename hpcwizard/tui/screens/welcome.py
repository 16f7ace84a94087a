"""Step 1: where the project lives, and whether to resume an unfinished session there."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from textual import on, work
from textual.containers import Horizontal
from textual.widget import Widget
from textual.widgets import Button, Input, Label, Static

from hpcwizard.project import session
from hpcwizard.project.plan import count_of
from hpcwizard.project.wizard_steps import WELCOME, step_index, step_named
from hpcwizard.tui.choices import WelcomeChoice
from hpcwizard.tui.messages import SessionRead
from hpcwizard.tui.screens.step import StepScreen
from hpcwizard.tui.widgets.confirm import ConfirmScreen
from hpcwizard.tui.widgets.dir_picker import DirPicker

INTRO = (
    "hpcwizard prepares and submits a training run on this Slurm cluster: your Hugging Face "
    "token, a recipe, the folders, the Slurm resources, checks that catch what would fail hours "
    "into a job, the generated sbatch scripts, then the chain of jobs and a live dashboard.\n"
    "Every answer is saved as you go: quit any time (ctrl+q) and run hpcwizard again to resume."
)


def submitted_text(saved: session.SavedSession) -> str:
    """``2 chains (4 jobs) were submitted``: chains and jobs said, never a bare "4 in all"."""
    chains = f"{saved.submitted} chain{'s' if saved.submitted != 1 else ''}"
    jobs = f"{saved.jobs_submitted} job{'s' if saved.jobs_submitted != 1 else ''}"
    return f"{chains} ({jobs}) {'was' if saved.submitted == 1 else 'were'} submitted"


class WelcomeStep(StepScreen):
    STEP = WELCOME.key
    CSS_PATH = "welcome.tcss"
    NEXT_LABEL = "Start"

    def __init__(self, project_home: Path | None, *, error: str | None = None, reached: int | None = None) -> None:
        super().__init__(reached=reached)
        self.project_home = project_home
        self.error = error
        self.saved: session.SavedSession | None = None
        self.asking = project_home is None

    def compose_body(self) -> Iterable[Widget]:
        yield Static(INTRO, id="welcome-intro")
        if self.asking:
            yield Label("Where should this project live? Its scripts, logs, state and checkpoints go there.",
                        classes="hint")
            yield DirPicker("Project home", str(Path.cwd()), id="welcome-home")
        yield Static("", id="welcome-session", markup=False)
        yield Horizontal(id="welcome-choices")

    def on_mount(self) -> None:
        if self.error:
            self.set_status(self.error, error=True)
        if self.asking:
            self.query_one("#welcome-home-input", Input).focus()
        else:
            assert self.project_home is not None
            self.read(str(self.project_home))

    @work(thread=True, exclusive=True, group="welcome-session", exit_on_error=False)
    def read(self, text: str) -> None:
        home, why = session.check_folder(text, self.context.files)
        if home is None:
            self.post_message(SessionRead(why))
            return
        self.post_message(SessionRead(session.read_session(self.context.project_at(home))))

    def on_session_read(self, message: SessionRead) -> None:
        if isinstance(message.session, str) or message.session is None:
            self.query_one(DirPicker).show_info(str(message.session), error=True)
            self.allow_next(True)
            return
        saved: session.SavedSession = message.session
        self.saved = saved
        self.project_home = saved.project_home
        if self.asking:
            self.query_one(DirPicker).show_info("")  # the session text below names the folder
        if self.asking and not saved.resumable and self._pending_start:
            self.dismiss(self._choice(resume=False))
            return
        self._show_saved(saved)

    _pending_start = False

    def _show_saved(self, saved: session.SavedSession) -> None:
        text = self.query_one("#welcome-session", Static)
        choices = self.query_one("#welcome-choices", Horizontal)
        choices.remove_children()
        lines = [f"Project home: {saved.project_home}"]
        buttons: list[Button] = []
        if saved.step == session.DONE:
            lines.append(f"{submitted_text(saved)} from this project.")
            buttons = [Button("Open the dashboard", id="welcome-dashboard", variant="primary", compact=True),
                       Button("Back to the last step", id="welcome-resume", compact=True),
                       Button("Start a new plan", id="welcome-new", compact=True)]
        elif saved.submitted and not saved.resumable:
            # Submitted from the command line (`hpcwizard submit`, scripts/demo --batch): no wizard
            # session, but jobs to watch ("Nothing saved here yet" hid them).
            lines.append(f"{submitted_text(saved)} from this project (not from this wizard).")
            buttons = [Button("Open the dashboard", id="welcome-dashboard", variant="primary", compact=True),
                       Button("Start a new plan", id="welcome-new", compact=True)]
        elif saved.resumable:
            stopped = step_named(saved.step)
            lines.append(f"An unfinished session stopped at step {step_index(saved.step) + 1}: "
                         f"{stopped.title if stopped else saved.step}.")
            if saved.plan is not None:
                plan = saved.plan
                variant = f" ({plan.variant})" if plan.variant else ""
                gpus = count_of(plan.train.gpus, "GPU") if plan.train.gpus else "no GPU"
                lines.append(f"Recipe {plan.recipe}{variant}, data in {plan.data_root}, "
                             f"train on {plan.train.partition} with {gpus} for {plan.train.time_text()}.")
            buttons = [Button(f"Resume at {stopped.title if stopped else ''}", id="welcome-resume",
                              variant="primary", compact=True),
                       Button("Start over", id="welcome-new", compact=True)]
            if saved.submitted:
                lines.append(f"Earlier: {submitted_text(saved)[0].lower()}{submitted_text(saved)[1:]}.")
        elif not saved.exists:
            # Said, not done: a mistyped --project-home must not leave folders behind.
            lines.append("This folder does not exist yet: it is created when you start.")
        else:
            lines.append("Nothing saved here yet: a new session starts.")
        if saved.problem:
            lines.append(f"Note: {saved.problem}")
        text.update("\n".join(lines))
        if buttons:
            choices.mount_all(buttons)
            buttons[0].focus()
            # At 80x24 with a long path the choices start below the fold: bring them into view.
            self.call_after_refresh(choices.scroll_visible, animate=False)
            self.query_one("#step-next", Button).label = "Continue →"

    def _choice(self, *, resume: bool, dashboard: bool = False) -> object:
        assert self.saved is not None
        return WelcomeChoice(self.saved.project_home, resume, self.saved, open_dashboard=dashboard)

    def submit(self) -> None:
        if self.asking:
            typed = self.query_one(DirPicker).value
            home, why = session.check_folder(typed, self.context.files)
            if home is None:
                self.query_one(DirPicker).show_info(why or "", error=True)
                return
            if self.saved is None or self.saved.project_home != home:
                self._pending_start = True
                self.read(str(home))
                return
        if self.saved is None:
            return  # still reading
        if self.saved.step == session.DONE or (self.saved.submitted and not self.saved.resumable):
            self.dismiss(self._choice(resume=False, dashboard=True))
            return
        self.dismiss(self._choice(resume=self.saved.resumable))

    @on(Input.Submitted)
    def _enter(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_next()

    @on(Button.Pressed, "#welcome-resume")
    def _resume(self) -> None:
        self.dismiss(self._choice(resume=True))

    @on(Button.Pressed, "#welcome-new")
    def _new(self) -> None:
        # Starting over deletes the saved plan: ask first, No by default.
        assert self.saved is not None
        if not self.saved.resumable and self.saved.step != session.DONE:
            self.dismiss(self._choice(resume=False))  # no saved answers to lose (chains from the CLI)
            return
        where = f"step {step_index(self.saved.step) + 1}" if self.saved.step != session.DONE \
            else "the submitted plan"
        body = (f"The answers saved in {session.plan_path(self.saved.project_home)} (up to {where}) are "
                "deleted and the wizard starts again at the token step. Submitted jobs and their "
                "files are not touched.")
        self.app.push_screen(ConfirmScreen("Start over and forget the saved answers?", body,
                                           yes="Start over", no="Keep them"), self._start_over)

    def _start_over(self, confirmed: bool | None) -> None:
        if confirmed:
            self.dismiss(self._choice(resume=False))

    @on(Button.Pressed, "#welcome-dashboard")
    def _dashboard(self) -> None:
        self.dismiss(self._choice(resume=False, dashboard=True))

"""Step 8: the generated sbatch files, read-only and highlighted, and what changed since the last run."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path

from textual import work
from textual.widget import Widget
from textual.widgets import Label, LoadingIndicator, TabbedContent, TabPane

from hpcwizard.errors import UserError
from hpcwizard.jobs.continuation import Continuation, load_continuation, segments_text
from hpcwizard.project.files import ProjectFiles
from hpcwizard.project.plan import Plan
from hpcwizard.project.render import render
from hpcwizard.project.wizard_steps import REVIEW
from hpcwizard.tui.messages import PreviewRendered
from hpcwizard.tui.screens.step import StepScreen
from hpcwizard.tui.widgets.code_view import code_view


def language_for(name: str) -> str | None:
    if name.endswith((".sbatch", ".sh")):
        return "bash"
    if name.endswith((".yaml", ".yml")):
        return "yaml"
    if name.endswith(".json"):
        return "json"
    return None


def diff_against(previous: Path, files: list[tuple[str, str]], where: ProjectFiles) -> str:
    """A unified diff of every file against the same name in ``previous`` (a run folder of ``where``)."""
    chunks: list[str] = []
    for name, text in files:
        try:
            before = where.read_text(previous / name)
        except OSError:
            before = ""
        chunks.extend(difflib.unified_diff(before.splitlines(keepends=True), text.splitlines(keepends=True),
                                           fromfile=f"previous/{name}", tofile=f"now/{name}"))
    return "".join(chunks)


class ReviewStep(StepScreen):
    STEP = REVIEW.key
    CSS_PATH = "review.tcss"

    def __init__(self, plan: Plan, *, reached: int | None = None) -> None:
        super().__init__(reached=reached)
        self.plan = plan
        self.ready = False
        self.where_text = (f"Rendered into {plan.layout.preview_dir} (nothing is submitted yet). "
                           "Tab to the files, arrows to scroll.")

    def compose_body(self) -> Iterable[Widget]:
        yield Label(self.where_text, classes="hint", id="review-where", markup=False)
        yield LoadingIndicator(id="review-busy")
        yield TabbedContent(id="review-tabs")

    def on_mount(self) -> None:
        self.allow_next(False)
        self.set_status("rendering…")
        self.build()

    @work(thread=True, exclusive=True, group="review-render", exit_on_error=False)
    def build(self) -> None:
        project = self.context.project_at(self.plan.project_home)
        out = project.layout.preview_dir
        try:
            resolved = project.resolve(self.plan)
            continuation = load_continuation(project, resolved)  # once: the scripts and the segments line
            rendering = render(project, resolved, out, hf_endpoint=self.context.hf_endpoint,
                               hpcwizard_cmd=self.context.hpcwizard_cmd, continuation=continuation)
            rendering.write(out, project.files)
        except (UserError, OSError) as exc:
            text = exc.one_line() if isinstance(exc, UserError) else str(exc)
            self.post_message(PreviewRendered([], "", error=text))
            return
        files = [(f.name, f.text) for f in rendering.files]
        # Scripts first: they are what runs.
        files.sort(key=lambda item: (not item[0].endswith(".sbatch"), item[0]))
        previous = None
        try:
            latest = project.load_state().latest_submission
        except UserError:
            latest = None
        diff = ""
        if latest is not None and project.files.is_dir(latest.scripts_dir):
            previous = latest.scripts_dir
            diff = diff_against(Path(previous), files, project.files)
        self.post_message(PreviewRendered(files, diff, previous, segments=_segments(continuation)))

    async def on_preview_rendered(self, message: PreviewRendered) -> None:
        self.query_one("#review-busy").display = False
        if message.error:
            self.set_status(message.error, error=True)
            return
        tabs = self.query_one("#review-tabs", TabbedContent)
        for i, (name, text) in enumerate(message.files):
            editor = code_view(text, language_for(name), id=f"review-file-{i}")
            await tabs.add_pane(TabPane(name, editor, id=f"review-tab-{i}"))
        if message.previous is not None:
            body = message.diff or "no change since the previous run\n"
            changes = code_view(body, "diff", id="review-diff")
            await tabs.add_pane(TabPane("changes", changes, id="review-tab-diff"))
        self.ready = True
        self.allow_next(True)
        # The one-line status was cut at 80-100 columns (a run folder's path is long): it says
        # what there is; the hint above, which wraps, says against what and how long training takes.
        against = "; changes since the last run" if message.previous else ""
        self.set_status(f"{len(message.files)} files{against}")
        more = [f"Compared with {message.previous}." if message.previous else "",
                f"{message.segments[0].upper()}{message.segments[1:]}." if message.segments else ""]
        if any(more):
            self.query_one("#review-where", Label).update(" ".join([self.where_text, *(m for m in more if m)]))

    def submit(self) -> None:
        if self.ready:
            self.dismiss(True)


def _segments(continuation: Continuation) -> str:
    """How many segments the training takes, when more than one job's time (issue: long trainings)."""
    if not continuation.enabled or (continuation.expected_segments or 0) <= 1:
        return ""
    return f"train: {segments_text(continuation)}, continued across its limit by itself"

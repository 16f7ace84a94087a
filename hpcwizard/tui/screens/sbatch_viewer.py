"""Read-only view of a job's sbatch file, with bash highlighting.

Rich's Syntax (Pygments) rather than ``TextArea.code_editor``: TextArea
highlights only with the optional tree-sitter packages, Pygments ships with
Rich.
"""

from __future__ import annotations

from typing import ClassVar

from rich.syntax import Syntax
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Static

from hpcwizard.errors import UserError
from hpcwizard.project.files import LOCAL_FILES, ProjectFiles


class SbatchViewer(ModalScreen[None]):
    DEFAULT_CSS = """
    SbatchViewer {
        align: center middle;
    }
    SbatchViewer > Vertical {
        width: 95%;
        height: 90%;
        border: thick $primary;
        background: $panel;
    }
    SbatchViewer #sbatch-title {
        height: 1;
        background: $boost;
        text-style: bold;
    }
    SbatchViewer VerticalScroll {
        height: 1fr;
    }
    SbatchViewer #sbatch-text {
        width: auto;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q,v", "dismiss_viewer", "Close")]

    def __init__(self, path: str, files: ProjectFiles = LOCAL_FILES) -> None:
        super().__init__()
        self.path = path
        self.files = files  # the login node's in remote mode

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(f"{self.path} (read-only)", id="sbatch-title", markup=False)
            with VerticalScroll(id="sbatch-scroll", can_focus=True):
                yield Static("loading…", id="sbatch-text")
        yield Footer()

    def on_mount(self) -> None:
        self._load()

    @work(thread=True, exit_on_error=False)
    def _load(self) -> None:
        try:
            text = self.files.read_text(self.path)
        except (OSError, UnicodeDecodeError, UserError) as exc:
            why = exc.one_line() if isinstance(exc, UserError) else getattr(exc, "strerror", None) or str(exc)
            text = f"# cannot read {self.path}: {why}\n"
        self.app.call_from_thread(self._show, text)

    def _show(self, text: str) -> None:
        self.text = text
        self.query_one("#sbatch-text", Static).update(
            Syntax(text, "bash", line_numbers=True, word_wrap=False, theme="monokai"))
        self.query_one("#sbatch-scroll").focus()

    text: str | None = None  # the file as loaded (tests read it)

    def action_dismiss_viewer(self) -> None:
        self.dismiss(None)

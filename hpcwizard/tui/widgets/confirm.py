"""A yes/no question in a modal: every destructive action goes through it."""

from __future__ import annotations

from typing import ClassVar, Optional

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class ConfirmScreen(ModalScreen[bool]):
    """Dismisses True when confirmed (y / Enter on the button), False otherwise."""

    DEFAULT_CSS = """
    ConfirmScreen {
        align: center middle;
    }
    ConfirmScreen > Vertical {
        width: 72;
        max-width: 95%;
        height: auto;
        max-height: 90%;
        border: thick $warning;
        background: $panel;
        padding: 1 2;
    }
    ConfirmScreen #confirm-title {
        text-style: bold;
        margin-bottom: 1;
    }
    /* The buttons are docked: a long body scrolls between the title and
       them, so they always show (at 80x24 they were cut off). */
    ConfirmScreen #confirm-body {
        height: auto;
        max-height: 50vh;
    }
    ConfirmScreen #confirm-buttons {
        dock: bottom;
        height: auto;
        margin-top: 1;
        align-horizontal: right;
    }
    ConfirmScreen Button {
        margin-left: 2;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, title: str, body: str = "", *, yes: str = "Yes", no: str = "No",
                 danger: bool = True) -> None:
        super().__init__()
        self.title_text = title
        self.body_text = body
        self.yes_label = yes
        self.no_label = no
        self.danger = danger

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.title_text, id="confirm-title", markup=False)
            with Horizontal(id="confirm-buttons"):
                yield Button(f"{self.no_label} (n)", id="no")
                yield Button(f"{self.yes_label} (y)", id="yes", variant="error" if self.danger else "primary")
            if self.body_text:
                with VerticalScroll(id="confirm-body"):
                    yield Static(self.body_text, markup=False)

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()  # the safe answer is the default

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "yes")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)


class ChoiceScreen(ModalScreen[Optional[str]]):  # a base class is evaluated at run time: no `|` on 3.9
    """Several answers (the doctor: resubmit / cancel / close); dismisses the
    chosen id, or None."""

    DEFAULT_CSS = ConfirmScreen.DEFAULT_CSS.replace("ConfirmScreen", "ChoiceScreen")

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "close", "Close")]

    def __init__(self, title: str, body: str, choices: list[tuple[str, str, str]]) -> None:
        """``choices``: (id, label, key) triples; the key answers directly."""
        super().__init__()
        self.title_text = title
        self.body_text = body
        self.choices = choices

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.title_text, id="confirm-title", markup=False)
            with Horizontal(id="confirm-buttons"):
                yield Button("Close (esc)", id="close")
                for choice_id, label, key in self.choices:
                    yield Button(f"{label} ({key})", id=f"choice-{choice_id}",
                                 variant="primary" if choice_id == "resubmit" else "error")
            with VerticalScroll(id="confirm-body"):
                yield Static(self.body_text, markup=False)

    def on_mount(self) -> None:
        self.query_one("#close", Button).focus()

    def on_key(self, event) -> None:
        for choice_id, _, key in self.choices:
            if event.key == key:
                event.stop()
                self.dismiss(choice_id)
                return

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        button_id = event.button.id or ""
        self.dismiss(button_id.removeprefix("choice-") if button_id.startswith("choice-") else None)

    def action_close(self) -> None:
        self.dismiss(None)

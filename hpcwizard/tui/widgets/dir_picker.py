"""A folder input with a directory tree to pick from (folders only)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, DirectoryTree, Input, Label


class FolderTree(DirectoryTree):
    """A DirectoryTree that lists folders only, hidden ones last-resort excluded."""

    def filter_paths(self, paths: Iterable[Path]) -> Iterable[Path]:
        return [p for p in paths if not p.name.startswith(".") and _is_dir(p)]


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:
        return False


def nearest_existing(text: str) -> Path:
    path = Path(os.path.expanduser(text or "~")).absolute() if text.strip() else Path.home()
    while not _is_dir(path) and path.parent != path:
        path = path.parent
    return path


class DirPicker(Vertical):
    """``label [ /path/typed            ] [Browse]``, the tree below when browsing."""

    DEFAULT_CSS = """
    DirPicker { height: auto; }
    DirPicker > Horizontal { height: auto; }
    DirPicker .dir-label { width: 14; padding: 0 1 0 0; content-align: left middle; height: 1; margin-top: 0; }
    DirPicker Input { width: 1fr; }
    DirPicker Button { min-width: 10; margin-left: 1; }
    DirPicker FolderTree { height: 8; display: none; border: round $primary; }
    DirPicker.-browsing FolderTree { display: block; }
    DirPicker .dir-info { padding: 0 0 0 15; width: 1fr; height: auto; color: $text-muted; }
    DirPicker .dir-info.-error { color: $error; }
    DirPicker .dir-info.-warn { color: $warning; }
    """

    # Escape while the tree is open closes it (the step's Escape goes back a whole step);
    # check_action lets Escape through to the step when the tree is closed.
    BINDINGS = [Binding("escape", "close_browse", "Close folders")]

    def __init__(self, label: str, value: str, *, id: str, placeholder: str = "/abs/path") -> None:
        super().__init__(id=id)
        self.label = label
        self.initial = value
        self.placeholder = placeholder

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield Label(self.label, classes="dir-label")
            yield Input(self.initial, placeholder=self.placeholder, id=f"{self.id}-input")
            yield Button("Browse", id=f"{self.id}-browse", compact=True)
        yield Label("", classes="dir-info", id=f"{self.id}-info", markup=False)

    @property
    def input(self) -> Input:
        return self.query_one(Input)

    @property
    def value(self) -> str:
        return self.input.value

    def show_info(self, text: str, *, error: bool = False, warn: bool = False) -> None:
        info = self.query_one(".dir-info", Label)
        info.update(text)
        info.set_class(error, "-error")
        info.set_class(warn and not error, "-warn")

    @property
    def browsing(self) -> bool:
        return self.has_class("-browsing")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "close_browse":
            return self.browsing
        return True

    def action_close_browse(self) -> None:
        self.remove_class("-browsing")
        self.query(FolderTree).remove()
        self.refresh_bindings()  # the footer's Escape is Back again
        self.input.focus()

    @on(Button.Pressed)
    def _toggle_browse(self, event: Button.Pressed) -> None:
        event.stop()
        if self.browsing:
            self.action_close_browse()
            return
        root = nearest_existing(self.value)
        if root.parent != root:
            root = root.parent
        tree = FolderTree(root, id=f"{self.id}-tree")
        self.add_class("-browsing")
        self.refresh_bindings()
        self.mount(tree, after=self.query_one(Horizontal))
        tree.focus()

    @on(DirectoryTree.DirectorySelected)
    def _picked(self, event: DirectoryTree.DirectorySelected) -> None:
        event.stop()
        self.input.value = str(event.path)

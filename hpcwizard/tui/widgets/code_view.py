"""A read-only, highlighted view of a generated file.

``TextArea.code_editor`` highlights only when tree-sitter and the language's
grammar are installed (``textual[syntax]``); without them it shows plain text,
so the view falls back to Rich's Pygments-based ``Syntax`` in a scrollable box.
"""

from __future__ import annotations

from rich.syntax import Syntax
from textual.containers import ScrollableContainer
from textual.widget import Widget
from textual.widgets import Static, TextArea


def tree_sitter_has(language: str | None) -> bool:
    if language is None:
        return True
    try:
        from textual._tree_sitter import get_language
    except ImportError:  # pragma: no cover - private module moved
        return False
    return get_language(language) is not None


class SyntaxView(ScrollableContainer):
    """Highlighted text in a focusable box: arrows, PgUp/PgDn and the mouse scroll it."""

    DEFAULT_CSS = """
    SyntaxView { height: 1fr; background: $surface; }
    SyntaxView > Static { width: auto; }
    """

    def __init__(self, text: str, lexer: str, *, id: str | None = None) -> None:
        super().__init__(Static(Syntax(text, lexer, line_numbers=True, theme="monokai", word_wrap=False,
                                       background_color="default")), id=id)
        self.text = text


def code_view(text: str, language: str | None, *, id: str | None = None) -> Widget:
    """The best read-only highlighted view this installation can offer."""
    if tree_sitter_has(language):
        return TextArea.code_editor(text, language=language, read_only=True, id=id)
    return SyntaxView(text, language or "text", id=id)

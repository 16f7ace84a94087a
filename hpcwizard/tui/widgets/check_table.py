"""Preflight rows as they arrive: each row's whole message, wrapped; a row with a fix expands to it."""

from __future__ import annotations

from textual.containers import VerticalScroll
from textual.content import Content
from textual.widgets import Collapsible, Static

from hpcwizard.checks.preflight import CheckResult, Level

MARKS = {Level.OK: ("✔", "green"), Level.WARN: ("!", "yellow"), Level.BLOCK: ("✘", "red")}


class CheckRow(Collapsible):
    """A check; Enter or a click on its title shows how to fix it."""

    # The title is the check's whole message: it wraps like the ok rows (Collapsible's
    # own width: auto cut it at the edge, mid-word, and expanding showed only the fix).
    DEFAULT_CSS = """
    CheckRow { border: none; padding: 0; margin: 0; background: transparent; }
    CheckRow CollapsibleTitle { width: 1fr; }
    CheckRow > Contents { padding: 0 0 0 4; }
    CheckRow.-block CollapsibleTitle { color: $error; }
    CheckRow.-warn CollapsibleTitle { color: $warning; }
    /* Focused, the title spans the row: red or yellow on the cursor's blue was hard to read. */
    CheckRow.-block CollapsibleTitle:focus, CheckRow.-warn CollapsibleTitle:focus { color: $block-cursor-foreground; }
    """

    def __init__(self, row: CheckResult) -> None:
        mark, _ = MARKS[row.level]
        # Content, not a str: Collapsible reads a str title as markup, and a message
        # may quote Slurm or the Hub ("[x]" would vanish, "[/]" would stop the wizard).
        title = Content(f"{mark} {row.group:<11} {row.name}: {row.message}")
        fix = f"fix: {row.fix}" if row.fix else "nothing to fix"
        super().__init__(Static(fix, markup=False, classes="check-fix"), title=title,  # type: ignore[arg-type]
                         collapsed=True, classes=f"-{row.level.value}")
        self.row = row


class CheckTable(VerticalScroll):
    """Rows appended in arrival order; counts kept for the verdict."""

    DEFAULT_CSS = """
    CheckTable { height: 1fr; }
    CheckTable > .check-ok { padding: 0 0 0 1; color: $success; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.rows: list[CheckResult] = []

    def clear_rows(self) -> None:
        self.rows.clear()
        self.remove_children()

    def add_row(self, row: CheckResult) -> None:
        self.rows.append(row)
        if row.level is Level.OK and not row.fix:
            mark, _ = MARKS[row.level]
            self.mount(Static(f"{mark} {row.group:<11} {row.name}: {row.message}", markup=False,
                              classes="check-ok"))
        else:
            self.mount(CheckRow(row))

    @property
    def blocked(self) -> bool:
        return any(r.level is Level.BLOCK for r in self.rows)

    def counts(self) -> dict[str, int]:
        counts = {level.value: 0 for level in Level}
        for row in self.rows:
            counts[row.level.value] += 1
        return counts

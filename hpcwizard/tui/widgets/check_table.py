"""The preflight as a report taken in at a glance.

Rows sit under a header each (token and access, space and quota, Slurm,
environment), whatever order they arrive in. A row is one line: its mark in
colour (only the mark), its name, its message cut with … when it is longer
than the screen; space rows draw a gauge (what is used, what the plan needs,
what stays free). Enter (or a click) on a row opens it: the whole message,
the details and the fix. Up and down move between rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.content import Content
from textual.widget import Widget
from textual.widgets import Collapsible, Label, Static

from hpcwizard.checks.preflight import CheckResult, Level
from hpcwizard.checks.space import Gauge
from hpcwizard.sizes import human_bytes

MARKS = {Level.OK: ("✔", "$success"), Level.WARN: ("!", "$warning"), Level.BLOCK: ("✘", "$error")}

#: The report's sections: (key, header, the check groups it holds).
SECTIONS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("access", "Token and access", ("token", "access")),
    ("space", "Space and quota", ("space", "training")),
    ("slurm", "Slurm", ("slurm",)),
    ("environment", "Environment", ("environment",)),
)
GAUGE_CELLS = 10


def section_of(group: str) -> str:
    for key, _, groups in SECTIONS:
        if group in groups:
            return key
    return "environment"  # a group added later still shows, last


def gauge_bar(gauge: Gauge, level: Level, cells: int = GAUGE_CELLS) -> Content:
    """``███▓░░░░░░``: used (dim), needed (in the row's colour, at least one cell), free."""
    total = max(gauge.total, 1)
    used = min(cells, round(cells * gauge.used / total))
    need = min(cells - used, max(1 if gauge.need else 0, -(-cells * gauge.need // total)))
    if gauge.used + gauge.need > gauge.total:  # does not fit: the bar is full, in red or yellow
        need = cells - used
    colour = MARKS[level][1]
    return Content.assemble(("█" * used, "$text-muted"), ("█" * need, colour), ("░" * (cells - used - need), "$text-muted"))


def row_title(row: CheckResult, *, open_: bool = False) -> Content:
    """The one line of a row; open, only its mark and name (the body says the rest, once)."""
    mark, colour = MARKS[row.level]
    parts: list[Content | tuple[str, str] | str] = [(mark, colour), " ", (row.name, "bold")]
    if not open_:
        parts.append("  ")
        if row.gauge is not None:
            parts += [gauge_bar(row.gauge, row.level), " "]
        parts.append(row.message)  # Content: a message may quote "[x]" from Slurm or the Hub
    return Content.assemble(*parts)


def row_body(row: CheckResult, *, fix_shown_below: bool = False) -> str:
    """The open row: the whole message, the details, and the fix (unless widgets below offer it)."""
    lines = [row.message]
    if row.detail:
        lines.append(row.detail)
    if row.gauge is not None:
        g = row.gauge
        lines.append(f"used {human_bytes(g.used)}, needed {human_bytes(g.need)}, of {human_bytes(g.total)}")
    if not fix_shown_below:
        lines.append(f"fix: {row.fix}" if row.fix else "nothing to fix")
    return "\n".join(lines)


class CheckRow(Collapsible):
    """A check on one line; Enter or a click opens its details and fix."""

    DEFAULT_CSS = """
    CheckRow { border: none; padding: 0; margin: 0; background: transparent; }
    /* One line, cut with … at the edge: the whole message is one Enter away. */
    CheckRow CollapsibleTitle { width: 1fr; height: 1; text-wrap: nowrap; text-overflow: ellipsis; }
    CheckRow > Contents { padding: 0 0 0 4; height: auto; }
    CheckRow .check-body { width: 1fr; height: auto; }
    """

    def __init__(self, row: CheckResult, *extra: Widget) -> None:
        # ``extra``: widgets that ARE the fix (buttons), shown instead of its words.
        body = Static(row_body(row, fix_shown_below=bool(extra)), markup=False, classes="check-body")
        # Collapsible shows a Content title as it is, though its signature says str.
        super().__init__(body, *extra, title=row_title(row), collapsed=True,  # type: ignore[arg-type]
                         classes=f"-{row.level.value}")
        self.row = row

    def on_collapsible_expanded(self, event: Collapsible.Expanded) -> None:
        if event.collapsible is self:
            self.title = row_title(self.row, open_=True)  # type: ignore[assignment]  # Content, as above

    def on_collapsible_collapsed(self, event: Collapsible.Collapsed) -> None:
        if event.collapsible is self:
            self.title = row_title(self.row)  # type: ignore[assignment]  # Content, as above


class CheckSection(Vertical):
    """A header (with its marks counted) and the rows of its groups."""

    DEFAULT_CSS = """
    CheckSection { height: auto; display: none; }
    CheckSection.-has-rows { display: block; }
    CheckSection > .check-header { width: 1fr; height: 1; margin-top: 1; text-style: bold; }
    CheckSection:first-of-type > .check-header { margin-top: 0; }
    """

    def __init__(self, key: str, header: str) -> None:
        super().__init__(id=f"checks-{key}")
        self.key = key
        self.header = header
        self.rows: list[CheckResult] = []

    def compose(self) -> ComposeResult:
        yield Label(self.header, classes="check-header")

    def add(self, row: CheckResult, *extra: Widget) -> CheckRow:
        self.rows.append(row)
        self.add_class("-has-rows")
        widget = CheckRow(row, *extra)
        self.mount(widget)
        self.query_one(".check-header", Label).update(self.header_text())
        return widget

    def header_text(self) -> Content:
        parts: list[Content | tuple[str, str] | str] = [(self.header, "bold")]
        for level in (Level.BLOCK, Level.WARN, Level.OK):
            n = sum(1 for r in self.rows if r.level is level)
            if n:
                mark, colour = MARKS[level]
                parts += ["  ", (mark, colour), f" {n}"]
        return Content.assemble(*parts)


class CheckTable(VerticalScroll, can_focus=False):
    """The sections, rows added as they arrive; counts kept for the verdict."""

    DEFAULT_CSS = """
    CheckTable { height: 1fr; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("down", "move(1)", "Next row", show=False),
        Binding("up", "move(-1)", "Previous row", show=False),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.rows: list[CheckResult] = []

    def compose(self) -> ComposeResult:
        for key, header, _ in SECTIONS:
            yield CheckSection(key, header)

    def clear_rows(self) -> None:
        self.rows.clear()
        for section in self.query(CheckSection):
            section.rows.clear()
            section.remove_class("-has-rows")
            section.query(CheckRow).remove()

    def add_row(self, row: CheckResult, *extra: Widget) -> CheckRow:
        """Add ``row`` under its header; ``extra`` widgets go in its open body (below the fix)."""
        self.rows.append(row)
        return self.query_one(f"#checks-{section_of(row.group)}", CheckSection).add(row, *extra)

    def titles(self) -> list[Widget]:
        """The rows' focusable titles, top to bottom."""
        return list(self.query("CheckRow CollapsibleTitle"))

    def focus_row(self, level: Level | None = None) -> bool:
        """Focus the first row (of ``level``, when given); False when there is none."""
        for section in self.query(CheckSection):
            for widget in section.query(CheckRow):
                if level is None or widget.row.level is level:
                    title = widget.query("CollapsibleTitle")
                    if title:
                        title.first().focus()
                    else:  # just mounted: its title composes on the next refresh
                        self.call_after_refresh(self.focus_row, level)
                    return True
        return False

    def action_move(self, step: int) -> None:
        titles = self.titles()
        focused = self.screen.focused
        if not titles:
            return
        index = titles.index(focused) if focused in titles else (-1 if step > 0 else len(titles))
        target = titles[max(0, min(len(titles) - 1, index + step))]
        target.focus()
        target.scroll_visible(animate=False)

    @property
    def blocked(self) -> bool:
        return any(r.level is Level.BLOCK for r in self.rows)

    def counts(self) -> dict[str, int]:
        counts = {level.value: 0 for level in Level}
        for row in self.rows:
            counts[row.level.value] += 1
        return counts

    def rows_in(self, key: str) -> Iterable[CheckResult]:
        return self.query_one(f"#checks-{key}", CheckSection).rows

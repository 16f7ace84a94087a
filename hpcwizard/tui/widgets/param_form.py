"""One row of the parameters form: name, an editor suited to the type, default, reset, help, target.

A :class:`ParamRow` validates its value as it changes with
:meth:`hpcwizard.project.recipe.Parameter.convert`, shows what is allowed inline when
the value is not, and posts :class:`ParamRow.Edited` so the screen can update
Next and the estimate.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.validation import Function
from textual.widget import Widget
from textual.widgets import Button, Checkbox, Input, Label, Select, Static

from hpcwizard.project.recipe import Parameter

_STAGE_PREFIX = re.compile(r"^stage(\d+)_")
GENERAL = "General"


def group_of(param: Parameter) -> str:
    """``Stage N`` for a ``stageN_`` parameter, else :data:`GENERAL`."""
    match = _STAGE_PREFIX.match(param.name)
    return f"Stage {match.group(1)}" if match else GENERAL


def grouped(parameters: Iterable[Parameter]) -> list[tuple[str, list[Parameter]]]:
    """The parameters by group, general first, groups and rows in recipe order."""
    groups: dict[str, list[Parameter]] = {}
    for param in parameters:
        groups.setdefault(group_of(param), []).append(param)
    order = sorted(groups, key=lambda name: name != GENERAL)  # stable: stages keep their order
    return [(name, groups[name]) for name in order]


def as_text(value: Any) -> str:
    """A value as the form (and the plan file) writes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _accepts(param: Parameter, text: str) -> bool:
    try:
        param.convert(text.strip())
    except (ValueError, TypeError):
        return False
    return True


class ParamRow(Vertical):
    """A parameter's editor with its default, reset button, help, target and inline error."""

    DEFAULT_CSS = """
    ParamRow { height: auto; margin-bottom: 1; }
    ParamRow:last-child { margin-bottom: 0; }
    ParamRow .param-line { height: 1; }
    ParamRow .param-name { width: 31; }
    ParamRow.-changed .param-name { text-style: bold; color: $accent; }
    ParamRow .param-editor { width: 16; }
    ParamRow Input.param-editor.-invalid { color: $error; }
    ParamRow Checkbox.param-editor { padding: 0; }
    ParamRow .param-reset { width: 3; min-width: 3; margin: 0 1; }
    ParamRow .param-default { width: 1fr; color: $text-muted; }
    ParamRow .param-help { padding-left: 2; color: $text-muted; height: auto; }
    ParamRow .param-error { padding-left: 2; color: $error; height: auto; display: none; }
    ParamRow.-invalid .param-error { display: block; }
    """

    class Edited(Message):
        """The row's value changed (``ok``: it is allowed)."""

        def __init__(self, row: ParamRow) -> None:
            super().__init__()
            self.row = row

        @property
        def control(self) -> ParamRow:
            return self.row

    def __init__(self, param: Parameter, value: Any) -> None:
        super().__init__(id=f"row-{param.name}")
        self.param = param
        self.initial = value
        self.ok = True
        self.value: Any = value
        self.error: str | None = None

    @property
    def editor_id(self) -> str:
        return f"param-{self.param.name}"

    def compose(self) -> ComposeResult:
        param = self.param
        with Horizontal(classes="param-line"):
            yield Label(param.name, classes="param-name")
            yield self._editor()
            yield Button("↺", classes="param-reset", compact=True, tooltip="reset to the default (ctrl+r)")
            yield Label(f"default {as_text(param.default)}", classes="param-default")
        help_text = Text(param.help)
        if param.target:
            help_text.append(f"  → {param.target}", style="italic")
        yield Static(help_text, classes="param-help")
        yield Label("", classes="param-error", markup=False)

    def _editor(self) -> Widget:
        param, value, ident = self.param, self.initial, self.editor_id
        if param.type == "bool":
            checked = value if isinstance(value, bool) else param.default
            return Checkbox(as_text(checked), checked, compact=True, id=ident, classes="param-editor")
        if param.type == "choice":
            current = value if value in param.choices else param.default
            return Select([(as_text(c), c) for c in param.choices], value=current, allow_blank=False,
                          compact=True, id=ident, classes="param-editor")
        # A text Input for numbers too: type="integer" silently drops what it does not
        # accept (6.0 became 60); here every key lands and the row says what is allowed.
        return Input(as_text(value), compact=True, id=ident, classes="param-editor",
                     validators=[Function(lambda text: _accepts(param, text), param.allowed())],
                     tooltip=param.allowed())

    def on_mount(self) -> None:
        self.check()

    # -- value ---------------------------------------------------------------------

    def raw(self) -> Any:
        editor = self.query_one(f"#{self.editor_id}")
        if isinstance(editor, Checkbox):
            return editor.value
        if isinstance(editor, Select):
            return editor.value
        assert isinstance(editor, Input)
        return editor.value.strip()

    @property
    def is_default(self) -> bool:
        return self.ok and self.value == self.param.convert(self.param.default)

    def check(self) -> bool:
        """Validate the editor's value; show what is allowed when it is not."""
        raw = self.raw()
        try:
            self.value = self.param.convert(raw)
        except (ValueError, TypeError):
            self.ok = False
            # "12_3" or "+6" looks like a number: say how to write one, not only the range.
            spelling = self.param.spelling_problem(raw)
            how = f"; {spelling}" if spelling else ""
            self.error = f"✘ {as_text(raw) or 'empty'} is not allowed: {self.param.allowed()}{how}"
        else:
            self.ok = True
            self.error = None
        self.set_class(not self.ok, "-invalid")
        self.set_class(not self.is_default, "-changed")
        self.query_one(".param-error", Label).update(self.error or "")
        self.query_one(".param-reset", Button).disabled = self.ok and self.is_default
        return self.ok

    def reset(self) -> None:
        """Put the default back in the editor (its change event re-validates)."""
        editor = self.query_one(f"#{self.editor_id}")
        default = self.param.default
        if isinstance(editor, Input):
            editor.value = as_text(default)
        elif isinstance(editor, (Checkbox, Select)):
            editor.value = default
        self.refresh_state()

    def refresh_state(self) -> None:
        self.check()
        self.post_message(self.Edited(self))

    # -- events --------------------------------------------------------------------

    @on(Input.Changed)
    @on(Select.Changed)
    def _changed(self, event: Message) -> None:
        event.stop()
        self.refresh_state()

    @on(Checkbox.Changed)
    def _toggled(self, event: Checkbox.Changed) -> None:
        event.stop()
        event.checkbox.label = as_text(event.value)
        self.refresh_state()

    @on(Button.Pressed, ".param-reset")
    def _reset(self, event: Button.Pressed) -> None:
        event.stop()
        self.reset()
        self.query_one(f"#{self.editor_id}").focus()

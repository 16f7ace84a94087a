"""Step 4: the recipe's training parameters, validated as you type, and what the choices cost.

One row per parameter of the chosen recipe (grouped by ``stageN_`` prefix),
an editor suited to its type, the default and a reset, the help and where the
value goes. Below the form, the estimate: disk for checkpoints and final
weights from the recipe, and training time from the rate a train job of this
project printed in its log (read in a worker), against the plan's train time
limit. Only values that differ from the defaults go into ``plan.params``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.text import Text
from textual import on, work
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.dom import DOMNode
from textual.widget import Widget
from textual.widgets import Input, Static

from hpcwizard.errors import UserError
from hpcwizard.jobs.estimate import (
    Estimate,
    MeasuredRate,
    estimate,
    format_duration,
    measured_rate,
    stage_number,
)
from hpcwizard.project import session
from hpcwizard.project.plan import Plan
from hpcwizard.project.resolved import resolve
from hpcwizard.project.wizard_steps import PARAMS
from hpcwizard.sizes import human_bytes
from hpcwizard.slurm import format_slurm_duration
from hpcwizard.tui.choices import ParamsChoice
from hpcwizard.tui.messages import CheckpointsMovedAside, EarlierCheckpointsRead, TrainingRateRead
from hpcwizard.tui.screens.step import StepScreen
from hpcwizard.tui.widgets.earlier_run import EarlierRunChoices
from hpcwizard.tui.widgets.param_form import GENERAL, ParamRow, grouped


class ParamsStep(StepScreen):
    STEP = PARAMS.key
    CSS_PATH = "params_step.tcss"
    BINDINGS = [Binding("ctrl+r", "reset", "Reset to default")]

    def __init__(self, plan: Plan, *, reached: int | None = None) -> None:
        super().__init__(reached=reached)
        self.plan = plan
        self.recipe = session.recipe_of(plan)
        self.rate: MeasuredRate | None = None
        self.rate_read = False
        self.earlier: list[Any] = []  # EarlierCheckpoints an earlier run left (read in a worker)
        self.earlier_read = False
        known = {p.name for p in self.recipe.parameters}
        self.dropped = sorted(set(plan.params) - known)  # hand-edited keys this recipe does not have

    def compose_body(self) -> Iterable[Widget]:
        groups = grouped(self.recipe.parameters)
        with VerticalScroll(id="params-form"):
            if not groups:
                yield Static(f"{self.recipe.name} has no tunable parameters.", classes="hint")
            for name, params in groups:
                with Vertical(classes="param-group") as group:
                    group.border_title = "Parameters" if len(groups) == 1 and name == GENERAL else name
                    for param in params:
                        yield ParamRow(param, self.plan.params.get(param.name, param.default))
        yield EarlierRunChoices(id="params-earlier")
        yield Static("", id="params-estimate")

    def on_mount(self) -> None:
        rows = list(self.query(ParamRow))
        if rows:
            self.query_one(f"#{rows[0].editor_id}").focus()
        self.update_estimate()
        self.read_rate()
        self.read_checkpoints()

    # -- the values ----------------------------------------------------------------

    @property
    def rows(self) -> list[ParamRow]:
        return list(self.query(ParamRow))

    def changed_params(self) -> dict[str, Any] | None:
        """The values that differ from the defaults (None while one is not allowed)."""
        rows = self.rows
        if not all(row.ok for row in rows):
            return None
        return {row.param.name: row.value for row in rows if not row.is_default}

    def keepable(self) -> dict[str, Any]:
        """What Back and quitting save: the allowed values that differ from the defaults;
        a parameter not allowed as typed keeps its saved value."""
        kept: dict[str, Any] = {}
        for row in self.rows:
            name = row.param.name
            if row.ok and not row.is_default:
                kept[name] = row.value
            elif not row.ok and name in self.plan.params:
                kept[name] = self.plan.params[name]
        return kept

    def on_param_row_edited(self, event: ParamRow.Edited) -> None:
        self.update_estimate()

    @on(Input.Submitted)
    def _enter(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_next()

    def action_reset(self) -> None:
        """Reset the parameter whose editor has the focus."""
        node: DOMNode | None = self.focused
        while node is not None and not isinstance(node, ParamRow):
            node = node.parent
        if isinstance(node, ParamRow):
            node.reset()

    # -- the estimate --------------------------------------------------------------

    @work(thread=True, exclusive=True, group="params-rate", exit_on_error=False)
    def read_rate(self) -> None:
        project = self.context.project_at(self.plan.project_home)
        self.post_message(TrainingRateRead(measured_rate(project, self.recipe)))

    # -- an earlier run's checkpoints (nothing would be trained) -------------------

    @work(thread=True, exclusive=True, group="params-checkpoints", exit_on_error=False)
    def read_checkpoints(self) -> None:
        from hpcwizard.checks.preflight import find_earlier_checkpoints

        try:
            project = self.context.project_at(self.plan.project_home)
            found = find_earlier_checkpoints(project, resolve(self.plan, self.recipe))
        except (UserError, OSError):
            found = []  # only advice here: the preflight checks again
        self.post_message(EarlierCheckpointsRead(found))

    def on_earlier_checkpoints_read(self, message: EarlierCheckpointsRead) -> None:
        self.earlier = message.found
        self.earlier_read = True
        self.update_estimate()

    def on_earlier_run_choices_continue_chosen(self, message: EarlierRunChoices.ContinueChosen) -> None:
        for row in self.rows:
            if row.param.name in message.raised:
                editor = row.query_one(f"#{row.editor_id}", Input)
                editor.value = str(message.raised[row.param.name])  # its change re-validates, the choices go
                editor.focus()

    def on_checkpoints_moved_aside(self, message: CheckpointsMovedAside) -> None:
        if message.error:
            self.notify(message.error, title="Not moved", severity="error", timeout=10, markup=False)
            return
        if message.moved:
            self.notify(f"{len(message.moved)} folder(s) moved into {message.moved[0].into}", title="Start fresh",
                        markup=False)
        self.read_checkpoints()

    def _show_earlier(self, params: dict[str, Any]) -> None:
        from hpcwizard.checks.preflight import against_plan

        choices = self.query_one(EarlierRunChoices)
        if not self.earlier:
            choices.show(self.plan, [])
            return
        candidate = self.plan.with_changes(params=params)
        choices.show(candidate, against_plan(self.earlier, resolve(candidate, self.recipe)))

    def on_training_rate_read(self, message: TrainingRateRead) -> None:
        self.rate = message.rate
        self.rate_read = True
        self.update_estimate()

    def update_estimate(self) -> None:
        """Next, the status line and the estimate, from the form as it is now."""
        panel = self.query_one("#params-estimate", Static)
        params = self.changed_params()
        self.kept = ParamsChoice(self.keepable())
        self.allow_next(params is not None)
        if params is None:
            bad = [row.param.name for row in self.rows if not row.ok]
            self.set_status(f"not allowed: {', '.join(bad)}", error=True)
            panel.update(Text("Estimate: fix the values marked ✘ first.", style="dim"))
            return
        changed = f"{len(params)} changed from the defaults" if params else "all defaults"
        dropped = f"; params.{', params.'.join(self.dropped)} unknown to {self.recipe.name}: dropped" \
            if self.dropped else ""
        self.set_status(f"{self.recipe.name}: {changed}{dropped}")
        self._show_earlier(params)
        try:
            cost = estimate(resolve(self.plan.with_changes(params=params), self.recipe),
                            self.rate.rate_its if self.rate else None,
                            self.rate.stage_rates if self.rate else None,
                            measured_with=self.rate.settings if self.rate else None)
        except (UserError, ValueError) as exc:  # a bad train time limit in a hand-edited plan
            panel.update(Text(f"Estimate unavailable: {exc}", style="dim"))
            return
        panel.update(self.describe(cost))

    def describe(self, cost: Estimate) -> Text:
        text = Text()
        text.append("Disk  ", style="bold")
        kept = cost.checkpoints_kept
        text.append(f"{human_bytes(cost.disk_bytes)}", style="bold")
        parts = []
        if self.recipe.checkpoint_bytes:
            stages = self.recipe.training_stages
            each = f" ({stages} stages × {kept // stages})" if stages > 1 else ""
            parts.append(f"{kept} checkpoint{'s' if kept != 1 else ''}{each} × {human_bytes(self.recipe.checkpoint_bytes)}")
        if self.recipe.final_bytes:
            parts.append(f"final weights {human_bytes(self.recipe.final_bytes)}")
        if parts:
            text.append(f" in the project home: {' + '.join(parts)}")
        text.append("\nTime  ", style="bold")
        limit = format_slurm_duration(cost.time_limit_seconds)
        if not cost.stages:
            text.append("not estimated: this recipe declares no step count", style="dim")
            return text
        if cost.seconds is None:
            steps = " + ".join(f"{s.steps:,}" for s in cost.stages)
            if not self.rate_read:
                text.append("reading the last training run's log…", style="dim")
            else:
                text.append(f"{steps} steps; the time appears after a first training run "
                            "of this project (read from its log)", style="dim")
            return text
        source = f"job {self.rate.job_id if self.rate else '?'}'s log"
        text.append(f"≈ {format_duration(cost.seconds)}", style="bold")
        if len(cost.stages) == 1:
            text.append(f" ({cost.stages[0].steps:,} steps) at {cost.stages[0].rate_its or 0:.3g} it/s from {source}")
        elif len({f"{s.rate_its:.3g}" for s in cost.stages}) == 1:  # one speed for all stages
            per_stage = " + ".join(f"{s.name} {s.steps:,} steps {format_duration(s.seconds or 0)}"
                                   for s in cost.stages)
            text.append(f" ({per_stage}) at {cost.stages[0].rate_its or 0:.3g} it/s from {source}")
        else:  # each stage at its own measured speed
            per_stage = " + ".join(
                f"{s.name} {s.steps:,} steps {format_duration(s.seconds or 0)} at {s.rate_its or 0:.3g} it/s"
                + ("" if s.own_rate else " (not measured: the job's overall rate)") for s in cost.stages)
            text.append(f" ({per_stage}) from {source}")
        if not cost.settings_known:
            text.append("\n      the measured run's settings are not known: an estimate, not a promise", style="yellow")
        elif cost.differences:
            # Each differing setting once, with what the estimate did about it.
            scaled = {s.name: s for s in cost.scaled}
            said = [f"{d} (scaled to {scaled[d.split()[0]].planned:g})" if d.split()[0] in scaled else d
                    for d in cost.differences]
            text.append(f"\n      measured with {', '.join(said)}: an estimate, not a promise", style="yellow")
        text.append("\n")
        if cost.fits_time_limit:
            # ✔ only for an estimate built on the very settings measured (steps aside).
            if cost.exact:
                text.append(f"      ✔ fits the train time limit {limit}", style="green")
            else:
                text.append(f"      ≈ within the train time limit {limit}, if the estimate holds", style="yellow")
            return text
        from hpcwizard.jobs.continuation import plan_continuation, segments_text
        from hpcwizard.project.resolved import resolve

        # The rates this estimate used (scaled), so the segments count agrees with the time shown.
        total_steps = sum(s.steps for s in cost.stages)
        stage_rates = {number: s.rate_its for s in cost.stages
                       if (number := stage_number(s.name)) is not None and s.rate_its}
        try:
            cont = plan_continuation(resolve(self.plan.with_changes(params=self.changed_params() or {}), self.recipe),
                                     rate=total_steps / cost.seconds if cost.seconds else None,
                                     stage_rates=stage_rates or None)
        except (UserError, ValueError):
            cont = None
        if cont is not None and cont.enabled and (cont.expected_segments or 0) <= cont.max_segments:
            # Longer than one job may run is no problem: the train job continues by itself.
            text.append(f"      → {segments_text(cont)}: the train job continues across its limit by itself",
                        style="green")
        else:
            text.append(f"      ✘ longer than the train time limit {limit}: raise it at the Slurm step, "
                        "allow more train.segments, or train fewer steps", style="yellow")
        return text

    # -- answer --------------------------------------------------------------------

    def submit(self) -> None:
        params = self.changed_params()
        if params is None:
            self.set_status("fix the values marked ✘ first", error=True)
            return
        self.dismiss(ParamsChoice(params))

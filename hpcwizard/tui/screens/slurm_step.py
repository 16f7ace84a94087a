"""Step 6: partitions from sinfo, and the jobs' resources checked against their limits as you type."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from rich.text import Text
from textual import on, work
from textual.containers import Horizontal, Vertical
from textual.widget import Widget
from textual.widgets import Button, DataTable, Input, Label, LoadingIndicator, Select, Static

from hpcwizard.checks.preflight import job_limits
from hpcwizard.checks.space import Level
from hpcwizard.errors import UserError
from hpcwizard.project.plan import Plan, PlanError, plan_from_dict
from hpcwizard.project.wizard_steps import SLURM
from hpcwizard.slurm import PartitionInfo, SlurmClient, format_slurm_duration
from hpcwizard.tui.choices import SlurmChoice
from hpcwizard.tui.messages import PartitionsLoaded
from hpcwizard.tui.screens.step import StepScreen

FIELDS = {"setup": ("partition", "cpus", "mem", "time"), "train": ("partition", "gpus", "cpus", "mem", "time")}
LABELS = {"cpus": "CPUs", "gpus": "GPUs", "mem": "mem", "time": "time"}
# Whole numbers typed into the form (the plan refuses anything else, naming it).
NUMBERS = ("cpus", "gpus", "nodes")
_TIME_FIELD = re.compile(r"(setup|train)\.time has a bad value ")


def _limit(value: int | None) -> str:
    return "unlimited" if value is None else format_slurm_duration(value)


def _form_message(exc: PlanError) -> str:
    """The plan's complaint as the form says it. A bad time's message already says how to
    write one; its hint repeats that for plan files ("quoted in YAML"), which the form is not."""
    if _TIME_FIELD.match(exc.message):
        return " ".join(exc.message.split())
    return exc.one_line()


class SlurmStep(StepScreen):
    STEP = SLURM.key
    CSS_PATH = "slurm_step.tcss"
    SINFO_TIMEOUT = 15.0  # seconds before a hung sinfo is reported

    def __init__(self, plan: Plan, *, reached: int | None = None) -> None:
        super().__init__(reached=reached)
        self.plan = plan
        self.partitions: dict[str, PartitionInfo] = {}
        self.loaded = False
        self.candidate: Plan | None = plan

    def compose_body(self) -> Iterable[Widget]:
        yield Label("Partitions (CPUs, mem and GPUs per node)", classes="section-title")
        yield LoadingIndicator(id="slurm-busy")
        with Horizontal(id="slurm-error-row"):
            yield Button("Retry", id="slurm-retry", compact=True)
            yield Label("", id="slurm-error", markup=False)
        yield DataTable(id="slurm-partitions", cursor_type="row", zebra_stripes=True)
        with Vertical(id="slurm-form"):
            for kind, fields in FIELDS.items():
                res = getattr(self.plan, kind)
                with Horizontal(classes="slurm-row"):
                    yield Label(kind, classes="slurm-kind")
                    yield Select([(res.partition, res.partition)], value=res.partition, allow_blank=False,
                                 compact=True, id=f"{kind}-partition")
                    for name in fields[1:]:
                        yield Label(LABELS[name], classes="slurm-field-label")
                        yield Input(str(getattr(res, name)), compact=True, id=f"{kind}-{name}",
                                    classes=f"slurm-{name}")
            # Its own row: the train row is full at 80 columns.
            with Horizontal(classes="slurm-row"):
                yield Label("", classes="slurm-kind")
                yield Label("nodes", classes="slurm-field-label")
                yield Input(str(self.plan.train.nodes), compact=True, id="train-nodes", classes="slurm-nodes")
                yield Label("machines; GPUs, CPUs and mem are per node", classes="slurm-hint")
            with Horizontal(classes="slurm-row"):
                yield Label("account", classes="slurm-kind")
                yield Input(self.plan.account or "", placeholder="default", compact=True, id="slurm-account")
                yield Label("QoS", classes="slurm-field-label")
                yield Input(self.plan.qos or "", placeholder="default", compact=True, id="slurm-qos")
            with Horizontal(classes="slurm-row"):
                yield Label("modules", classes="slurm-kind")
                yield Input(" ".join(self.plan.modules), placeholder="none, e.g. python/3.11", compact=True,
                            id="slurm-modules")
                yield Label("module load before the build and every job", classes="slurm-hint")
        yield Static("", id="slurm-verdict", markup=False)

    def on_mount(self) -> None:
        table = self.query_one("#slurm-partitions", DataTable)
        # Short headers ("per node" is said once, in the title): at 80 columns the last one read "GPUs fre".
        table.add_columns("partition", "state", "max time", "nodes", "CPUs", "mem", "GPUs", "GPUs free")
        self.query_one("#slurm-error-row").display = False
        self.query_one("#train-gpus", Input).focus()
        self.load()

    def key_r(self) -> None:
        if not self.loaded:
            self.load()

    @on(Button.Pressed, "#slurm-retry")
    def _retry(self, event: Button.Pressed) -> None:
        event.stop()
        self.load()

    def load(self) -> None:
        self.query_one("#slurm-busy").display = True
        self.query_one("#slurm-error-row").display = False
        self.set_status("asking sinfo for the partitions…")
        self.fetch_partitions()

    @work(thread=True, exclusive=True, group="slurm-sinfo", exit_on_error=False)
    def fetch_partitions(self) -> None:
        try:
            parts = SlurmClient(self.context.runner, timeout=self.SINFO_TIMEOUT).partitions()
        except UserError as exc:
            self.post_message(PartitionsLoaded(None, error=exc.one_line()))
            return
        self.post_message(PartitionsLoaded(parts))

    def on_partitions_loaded(self, message: PartitionsLoaded) -> None:
        self.query_one("#slurm-busy").display = False
        if message.partitions is None:
            self.query_one("#slurm-error-row").display = True
            self.query_one("#slurm-error", Label).update(f"  {message.error}")
            self.set_status("no partition list: press Retry (r), or go on and let preflight check", error=True)
            self.validate()
            return
        self.loaded = True
        self.partitions = {p.name: p for p in message.partitions}
        table = self.query_one("#slurm-partitions", DataTable)
        table.clear()
        for p in message.partitions:
            free = "?" if p.gpus_free is None else str(p.gpus_free)
            table.add_row(f"{p.name}{'*' if p.is_default else ''}", str(p.state), _limit(p.max_time),
                          str(p.node_count), str(p.cpus_per_node), f"{p.memory_mb_per_node // 1024}G",
                          str(p.gpus_per_node), free if p.gpus_per_node else "-", key=p.name)
        names = list(self.partitions)
        for kind in FIELDS:
            select = self.query_one(f"#{kind}-partition", Select)
            current = select.value
            options = names + ([str(current)] if current not in names else [])
            with select.prevent(Select.Changed):
                select.set_options([(n, n) for n in options])
                select.value = current
        self.set_status(f"{len(names)} partitions")
        self.validate()

    @on(Input.Changed)
    @on(Select.Changed)
    def _changed(self, event: Any) -> None:
        self.validate()

    @on(Input.Submitted)
    def _enter(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_next()

    def draft(self) -> dict[str, Any]:
        """The plan's data with this form's values; numbers left as typed when they are not numbers."""
        data = self.plan.to_dict()
        for kind, fields in FIELDS.items():
            section = dict(data[kind])
            for name in fields:
                widget = self.query_one(f"#{kind}-{name}")
                value: Any = widget.value if isinstance(widget, (Input, Select)) else None
                if name in NUMBERS:
                    text = str(value).strip()
                    value = int(text) if text.isdigit() else text
                section[name] = value
            data[kind] = section
        nodes = self.query_one("#train-nodes", Input).value.strip()
        data["train"] = {**data["train"], "nodes": int(nodes) if nodes.isdigit() else nodes}
        data["account"] = self.query_one("#slurm-account", Input).value.strip() or None
        data["qos"] = self.query_one("#slurm-qos", Input).value.strip() or None
        data["modules"] = self.query_one("#slurm-modules", Input).value.strip() or None
        return data

    def keepable(self, draft: dict[str, Any]) -> Plan:
        """The plan with each field of ``draft`` that is valid on its own (Back and
        quitting keep those; a field that is not keeps its saved value)."""
        data = self.plan.to_dict()
        changes: list[tuple[str | None, str]] = [(kind, name) for kind, fields in FIELDS.items() for name in fields]
        changes += [("train", "nodes"), (None, "account"), (None, "qos"), (None, "modules")]
        for kind, name in changes:
            if kind is None:
                trial = {**data, name: draft[name]}
            else:
                trial = {**data, kind: {**data[kind], name: draft[kind][name]}}
            try:
                plan_from_dict(trial)
            except PlanError:
                continue
            data = trial
        return plan_from_dict(data)

    def validate(self) -> bool:
        verdict = self.query_one("#slurm-verdict", Static)
        draft = self.draft()
        try:
            candidate = plan_from_dict(draft)
        except PlanError as exc:
            kept = self.keepable(draft)
            self.kept = SlurmChoice(kept.setup, kept.train, kept.account, kept.qos, kept.modules)
            self.candidate = None
            verdict.update(Text(f"✘ {_form_message(exc)}", style="red"))
            self.allow_next(False)
            return False
        self.candidate = candidate
        # Over a partition's limits is still a valid plan: kept, and the preflight says why it blocks.
        self.kept = SlurmChoice(candidate.setup, candidate.train, candidate.account, candidate.qos, candidate.modules)
        if not self.partitions:
            verdict.update(Text("limits not checked yet (no partition list)", style="dim"))
            self.allow_next(True)
            return True
        lines = Text()
        blocked = False
        for kind in FIELDS:
            res = getattr(candidate, kind)
            part = self.partitions.get(res.partition)
            if part is None:
                blocked = True
                lines.append(f"✘ {kind}: partition {res.partition} does not exist here\n", style="red")
                continue
            for row in job_limits(kind, res, part, candidate):
                mark, style = ("✔", "green") if row.level is Level.OK else ("✘", "red")
                blocked = blocked or row.level is Level.BLOCK
                fix = f" → {row.fix}" if row.fix else ""
                lines.append(f"{mark} {row.name}: {row.message}{fix}\n", style=style)
        verdict.update(lines)
        self.allow_next(not blocked)
        return not blocked

    def submit(self) -> None:
        if not self.validate() or self.candidate is None:
            self.set_status("fix the resources first", error=True)
            return
        c = self.candidate
        self.dismiss(SlurmChoice(c.setup, c.train, c.account, c.qos, c.modules))

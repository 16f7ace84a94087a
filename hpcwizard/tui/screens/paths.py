"""Step 5: where the data goes, where downloads happen; free space and quota shown as you type."""

from __future__ import annotations

import posixpath
from collections.abc import Iterable
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.timer import Timer
from textual.widget import Widget
from textual.widgets import Input, Label, RadioButton, RadioSet, Static

from hpcwizard.checks.quota import probe_quota
from hpcwizard.checks.space import free_space
from hpcwizard.errors import UserError
from hpcwizard.project import session
from hpcwizard.project.plan import Plan
from hpcwizard.project.wizard_steps import PATHS
from hpcwizard.shell import Runner
from hpcwizard.sizes import human_bytes
from hpcwizard.tui.choices import PathsChoice
from hpcwizard.tui.messages import DataRootChecked, FolderMeasured, NetworkProbeRead
from hpcwizard.tui.screens.step import StepScreen
from hpcwizard.tui.widgets.dir_picker import DirPicker

DEBOUNCE = 0.4  # seconds of quiet typing before measuring


def measure(runner: Runner, path: Path, need: int) -> tuple[str, bool]:
    """``(summary, warn)``: free space and quota where ``path`` lives (disk and commands: a worker's job)."""
    free = free_space(runner, str(path))
    fs = f"{free.mount} ({free.fstype})" if free.fstype else free.mount
    parts = [f"{human_bytes(free.bytes_free)} free of {human_bytes(free.bytes_total)} on {fs}"]
    if free.existing and posixpath.normpath(free.existing) != posixpath.normpath(str(path)):
        # Not there yet: measured where it will be made (the free space of "/" said nothing of that).
        parts[0] = (f"does not exist yet: it will be created; its nearest existing folder {free.existing} has "
                    + parts[0])
    warn = free.bytes_free < need
    quota = probe_quota(runner, str(path), free=free, site_wrappers=False)
    if quota.entries and quota.bytes_free is not None:
        parts.append(f"quota: {human_bytes(quota.bytes_free)} left")
        warn = warn or quota.bytes_free < need or quota.over_quota
    elif quota.checked:
        parts.append("quota: no limit")
    else:
        parts.append("quota: not known" + (f" ({quota.warnings[0]})" if quota.warnings else ""))
    if need:
        parts.append(f"the recipe needs about {human_bytes(need)}")
    return "; ".join(parts), warn


class PathsStep(StepScreen):
    STEP = PATHS.key
    CSS_PATH = "paths.tcss"

    def __init__(self, plan: Plan, *, reached: int | None = None) -> None:
        super().__init__(reached=reached)
        self.plan = plan
        recipe = session.recipe_of(plan)
        repos = recipe.repos_for(plan)
        self.need_data = sum(r.size_bytes for r in repos) + sum(a.unpacked_bytes for r in repos for a in r.archives)
        self.need_home = recipe.output_bytes_for(plan)
        self._debounce: dict[str, Timer] = {}
        self.network_read = False  # the cached network probe was read (tests wait for it)

    def compose_body(self) -> Iterable[Widget]:
        yield Label("Project home", classes="section-title")
        # Text, not markup: a folder may be called "[lab]".
        yield Static(Text.assemble(f"{self.plan.project_home}\n", (
            "scripts, logs, state, environments and checkpoints; chosen when the wizard started "
            "(run `hpcwizard --project-home DIR` for another)", "dim")), id="paths-home")
        yield Label("…", id="paths-home-info", classes="hint", markup=False)
        yield Label("Data root", classes="section-title")
        yield Label("Datasets are unpacked here; it may be a larger scratch filesystem.", classes="hint")
        yield DirPicker("Data root", str(self.plan.data_root), id="paths-data")
        yield Label("Prepare the files, code and environment", classes="section-title")
        with RadioSet(id="paths-download"):
            yield RadioButton("in the setup job (compute nodes reach the internet)", name="job",
                              value=self.plan.download == "job")
            yield RadioButton("now, on this login node, with progress here (jobs run offline)", name="login",
                              value=self.plan.download == "login")

    def on_mount(self) -> None:
        self.query_one("#paths-data-input", Input).focus()
        self.measure_folder("home", str(self.plan.project_home), self.need_home)
        self.measure_folder("data", str(self.plan.data_root), self.need_data)
        self.read_network_probe()

    @on(Input.Changed, "#paths-data-input")
    def _typed(self, event: Input.Changed) -> None:
        # Debounce: measure once typing pauses, never per keystroke.
        if "data" in self._debounce:
            self._debounce["data"].stop()
        self.query_one("#paths-data", DirPicker).show_info("…")
        self._debounce["data"] = self.set_timer(
            DEBOUNCE, lambda: self.measure_folder("data", event.value, self.need_data))

    @on(Input.Submitted, "#paths-data-input")
    def _enter(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_next()

    def measure_folder(self, field: str, text: str, need: int) -> None:
        if field == "home":
            self.measure_home(text, need)
        else:
            self.measure_data(text, need)

    # One group per field: a new measure of the data root replaces the last
    # one, never the project home's.
    @work(thread=True, exclusive=True, group="paths-home", exit_on_error=False)
    def measure_home(self, text: str, need: int) -> None:
        self._measure("home", text, need)

    @work(thread=True, exclusive=True, group="paths-data", exit_on_error=False)
    def measure_data(self, text: str, need: int) -> None:
        self._measure("data", text, need)

    def _measure(self, field: str, text: str, need: int) -> None:
        path, why = session.check_folder(text, self.context.files)
        if path is None:
            self.post_message(FolderMeasured(field, text, error=why))
            return
        try:
            summary, warn = measure(self.context.runner, path, need)
        except Exception as exc:  # a measure that fails is information, not a crash
            self.post_message(FolderMeasured(field, text, error=f"could not measure: {exc}", warn=True))
            return
        self.post_message(FolderMeasured(field, text, summary=summary, warn=warn, resolved=path))

    def on_folder_measured(self, message: FolderMeasured) -> None:
        if message.field == "home":
            label = self.query_one("#paths-home-info", Label)
            label.update(message.summary or message.error or "")
            label.set_class(message.warn, "warning")
            return
        picker = self.query_one("#paths-data", DirPicker)
        if message.path != picker.value:
            return  # a late answer for text since changed
        if message.error:
            picker.show_info(message.error, error=not message.warn, warn=message.warn)
        else:
            picker.show_info(message.summary or "", warn=message.warn)
        self._keep(message.resolved)

    # -- the compute nodes' network, as an earlier preflight probed it ---------------

    @work(thread=True, exclusive=True, group="paths-netprobe", exit_on_error=False)
    def read_network_probe(self) -> None:
        """The project's cached probe (no new job, no Slurm call without a cache)."""
        from hpcwizard.checks.netprobe import cached_offline, needed_kinds

        recipe = session.recipe_of(self.plan)
        project = self.context.project_at(self.plan.project_home)
        try:
            offline = cached_offline(project, self.plan, recipe, self.context.runner)
        except Exception:  # only a suggestion: without it the choice stays as saved
            offline = None
        missing = offline.unreachable(needed_kinds(recipe)) if offline is not None else []
        self.post_message(NetworkProbeRead(offline, " or ".join(t.describe() for t in missing)))

    def on_network_probe_read(self, message: NetworkProbeRead) -> None:
        """Offline compute nodes: preparing on the login node is the initial
        choice (a download job would be blocked by the preflight). Only while
        the choice is still the saved one: the user's own click wins."""
        self.network_read = True
        if message.offline is None:
            return
        radios = self.query_one("#paths-download", RadioSet)
        pressed = radios.pressed_button
        login = next(b for b in radios.query(RadioButton) if b.name == "login")
        if pressed is not None and pressed.name == "job" and self.plan.download == "job":
            login.value = True
        advice = "preparing on this login node is chosen" if login.value else "prepare on this login node instead"
        note = Label(f"Compute nodes of partition {message.offline.partition} cannot reach {message.what} "
                     f"(probed {message.offline.date}): {advice}.",
                     id="paths-netprobe", classes="hint", markup=False)
        if not self.query("#paths-netprobe"):
            self.query_one("#step-body").mount(note, after=radios)

    def _download(self) -> str:
        pressed = self.query_one("#paths-download", RadioSet).pressed_button
        return pressed.name if pressed is not None and pressed.name else "job"

    def _keep(self, data_root: Path | None) -> None:
        """What Back, a jump or quitting saves: a data root that was checked and
        will do (else the saved one stays), and the download choice."""
        if data_root is None:
            data_root = self.kept.data_root if self.kept is not None else self.plan.data_root
        self.kept = PathsChoice(data_root, self._download())

    @on(RadioSet.Changed, "#paths-download")
    def _download_changed(self, event: RadioSet.Changed) -> None:
        self._keep(None)

    def submit(self) -> None:
        picker = self.query_one("#paths-data", DirPicker)
        self.set_status("checking the data root…")
        self.check_data_root(picker.value, self._download())

    @work(thread=True, exclusive=True, group="paths-submit", exit_on_error=False)
    def check_data_root(self, text: str, download: str) -> None:
        try:
            path, why = session.check_folder(text, self.context.files)
        except UserError as exc:  # the login node went away mid-check
            path, why = None, exc.one_line()
        self.post_message(DataRootChecked(path, why, download))

    def on_data_root_checked(self, message: DataRootChecked) -> None:
        if message.path is None:
            picker = self.query_one("#paths-data", DirPicker)
            picker.show_info(message.why or "", error=True)
            self.set_status("the data root will not do", error=True)
            picker.input.focus()
            return
        self.dismiss(PathsChoice(message.path, message.download))

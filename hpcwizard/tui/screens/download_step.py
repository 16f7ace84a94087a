"""Step 9 (``download: login`` only): prepare on the login node, stop with c, resume with r.

The parts of ``hpcwizard prepare``: the files (live bars), the code and the
training environment (git's, pip's and conda's last lines). Stopping keeps
the ``.part`` files; the next start (or the next hpcwizard) continues at the
byte it reached, and skips every part already done.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from textual import work
from textual.binding import Binding
from textual.widget import Widget
from textual.widgets import Button, Label

from hpcwizard.checks import hub
from hpcwizard.errors import UserError
from hpcwizard.project.plan import Plan
from hpcwizard.project.resolved import resolve
from hpcwizard.project.wizard_steps import DOWNLOAD
from hpcwizard.tui.messages import DownloadEnded, DownloadProgressed
from hpcwizard.tui.screens.step import StepScreen
from hpcwizard.tui.widgets.download_bars import DownloadBars


class _LastLines:
    """A :class:`~hpcwizard.project.files.TextSink` keeping the streamed
    output's last lines (a progress bar's ``\r`` redraws as new lines) and
    showing the last three through ``show``."""

    def __init__(self, show: Callable[[str], object]) -> None:
        self.show = show
        self.text = ""

    def write(self, chunk: str) -> None:
        self.text = (self.text + chunk.replace("\r", "\n"))[-4000:]
        self.show("\n".join([line for line in self.text.splitlines() if line.strip()][-3:]))

    def flush(self) -> None:
        pass


class DownloadStep(StepScreen):
    STEP = DOWNLOAD.key
    CSS_PATH = "download_step.tcss"
    BINDINGS = [Binding("c", "stop", "Stop"), Binding("r", "start", "Resume")]

    def __init__(self, plan: Plan, *, reached: int | None = None) -> None:
        super().__init__(reached=reached)
        self.plan = plan
        self.cancel = threading.Event()
        self.running = False
        self.finished = False

    def compose_body(self) -> Iterable[Widget]:
        yield Label("Preparing on this login node: the files, the code and the training environment; "
                    "the setup job will only verify them. c stops (partial files are kept), r resumes.",
                    classes="hint")
        yield DownloadBars(id="download-bars")
        yield Label("", id="download-notes", markup=False)

    def on_mount(self) -> None:
        self.allow_next(False)
        self.action_start()

    def action_start(self) -> None:
        if self.running or self.finished:
            return
        self.running = True
        self.cancel = threading.Event()
        self.set_status("preparing… (c to stop)")
        self.fetch(self.cancel)

    def action_stop(self) -> None:
        if self.running:
            self.cancel.set()
            self.set_status("stopping at the next chunk…")

    def on_unmount(self) -> None:
        self.cancel.set()  # quitting mid-download: stop at the next chunk, keep the parts

    def action_back(self) -> None:
        self.cancel.set()
        super().action_back()

    @work(thread=True, exclusive=True, group="download", exit_on_error=False)
    def fetch(self, cancel: threading.Event) -> None:
        from hpcwizard.prepare import PrepareCancelled, prepare_plan

        if self.context.files.remote:
            self._fetch_on_login_node(cancel)
            return

        source = hub.find_token()
        recent: list[str] = []

        def show_line(part: str, line: str) -> None:
            recent.append(line if line.startswith(part + ":") else f"{part}: {line}")
            del recent[:-3]
            self.app.call_from_thread(self.query_one("#download-notes", Label).update, "\n".join(recent))

        try:
            summary = prepare_plan(resolve(self.plan), token=source.token if source else None,
                                   endpoint=self.context.hf_endpoint,
                                   on_progress=lambda p: self.post_message(DownloadProgressed(p)),
                                   on_line=show_line, cancel=cancel)
        except PrepareCancelled:
            self.post_message(DownloadEnded(cancelled=True))
            return
        except UserError as exc:
            self.post_message(DownloadEnded(error=exc.one_line(), cancelled=cancel.is_set()))
            return
        except Exception as exc:
            self.post_message(DownloadEnded(error=f"preparing failed: {type(exc).__name__}: {exc}"))
            return
        self.post_message(DownloadEnded(summary=summary.one_line()))

    def _fetch_on_login_node(self, cancel: threading.Event) -> None:
        """Remote mode: ``hpcwizard prepare`` runs ON the login node (its disk,
        network and token file; :func:`~hpcwizard.prepare.prepare_on_login_node`,
        as ``hpcwizard prepare --host`` runs it), its last lines shown here."""
        from hpcwizard.prepare import prepare_on_login_node

        files, context = self.context.files, self.context
        lines = _LastLines(lambda text: self.app.call_from_thread(self.query_one("#download-notes", Label).update,
                                                                  text))
        try:
            if not context.hpcwizard_cmd:
                raise UserError(f"hpcwizard was not found on {files.where}", "install it there, then reopen the wizard")
            status = prepare_on_login_node(context.project_at(self.plan.project_home), self.plan,
                                           context.hpcwizard_cmd, lines, endpoint=context.hf_endpoint, cancel=cancel)
        except UserError as exc:
            self.post_message(DownloadEnded(error=exc.one_line(), cancelled=cancel.is_set()))
            return
        except Exception as exc:
            self.post_message(DownloadEnded(error=f"preparing on {files.where} failed: {type(exc).__name__}: {exc}"))
            return
        if cancel.is_set():
            self.post_message(DownloadEnded(cancelled=True))
        elif status != 0:
            last = lines.text.strip().splitlines()[-1:] or [f"exit {status}"]
            self.post_message(DownloadEnded(error=f"preparing on {files.where} failed: {last[0]}"))
        else:
            last = lines.text.strip().splitlines()[-1:] or ["done"]
            self.post_message(DownloadEnded(summary=f"on {files.where}: {last[0]}"))

    def on_download_progressed(self, message: DownloadProgressed) -> None:
        self.query_one(DownloadBars).show(message.progress)
        if message.progress.notes:
            self.query_one("#download-notes", Label).update("\n".join(message.progress.notes[-3:]))

    def on_download_ended(self, message: DownloadEnded) -> None:
        self.running = False
        if message.cancelled or message.error:
            self.query_one(DownloadBars).stopped()  # no rate, no time left
        if message.cancelled:
            self.set_status("stopped; partial files kept. r resumes where it stopped", error=True)
            return
        if message.error:
            self.set_status(message.error, error=True)
            return
        self.finished = True
        self.set_status(message.summary or "done")
        self.allow_next(True)
        self.query_one("#step-next", Button).focus()

    def submit(self) -> None:
        if self.finished:
            self.dismiss(True)

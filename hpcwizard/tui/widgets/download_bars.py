"""Live download bars: the total, then one bar per file still moving."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Label, ProgressBar

from hpcwizard.download import DownloadProgress, FileState, FileStatus
from hpcwizard.sizes import human_bytes, human_duration

_STATE_WORDS = {
    FileState.QUEUED: "queued", FileState.CHECKING: "checking", FileState.DOWNLOADING: "",
    FileState.RETRYING: "retrying", FileState.VERIFYING: "verifying", FileState.DONE: "done",
    FileState.SKIPPED: "already here", FileState.FAILED: "FAILED",
}


def _file_id(index: int) -> str:
    return f"file-{index}"


class FileBar(Horizontal):
    # The bar shrinks inside its fixed width so the percentage keeps its 5 cells: a 32-cell
    # Bar (Textual's default) plus "100%" did not fit in 34 and the percentage read "1".
    # A long file name ends with … and a space before the bar, rather than running into it.
    DEFAULT_CSS = """
    FileBar { height: 1; }
    FileBar .file-name { width: 1fr; min-width: 20; padding-right: 1; text-wrap: nowrap; text-overflow: ellipsis; }
    FileBar ProgressBar { width: 34; }
    FileBar ProgressBar Bar { width: 1fr; }
    FileBar .file-state { width: 14; padding-left: 1; }
    """

    def __init__(self, status: FileStatus, *, id: str) -> None:
        super().__init__(id=id)
        self.status = status
        self.stopped = False
        self._paint_pending = False

    def compose(self) -> ComposeResult:
        yield Label(f"{self.status.repo.split('/')[-1]}/{self.status.path}", classes="file-name", markup=False)
        yield ProgressBar(total=max(self.status.size, 1), show_eta=False)
        yield Label("", classes="file-state")

    def show(self, status: FileStatus, *, stopped: bool = False) -> None:
        """Show ``status``; before the bar is composed, remember it and paint
        the LATEST status once composed (a fast download sends its final
        statuses while the bars it just mounted are not there yet: painting
        each one later in turn left the first, "queued", on screen)."""
        self.status, self.stopped = status, stopped
        if not self.query(ProgressBar):  # mounted a moment ago, not composed yet
            if not self._paint_pending:
                self._paint_pending = True
                self.call_after_refresh(self._paint_latest)
            return
        self._paint()

    def _paint_latest(self) -> None:
        self._paint_pending = False
        self.show(self.status, stopped=self.stopped)

    def _paint(self) -> None:
        status, stopped = self.status, self.stopped
        self.query_one(ProgressBar).update(total=max(status.size, 1), progress=status.done)
        word = _STATE_WORDS.get(status.state, status.state.value)
        if stopped and status.state.active:  # a queued file stays "queued"
            word = "stopped"  # not a rate it no longer has
        elif status.state is FileState.DOWNLOADING and status.rate:
            word = f"{human_bytes(status.rate)}/s"
        self.query_one(".file-state", Label).update(word)


class DownloadBars(Vertical):
    """The total bar with sizes, rate and ETA, and a bar per file."""

    DEFAULT_CSS = """
    DownloadBars { height: 1fr; }
    DownloadBars #download-total-line { height: 1; }
    DownloadBars #download-total { width: 1fr; }
    DownloadBars #download-files { height: 1fr; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._bars: dict[tuple[str, str], FileBar] = {}
        self._last: DownloadProgress | None = None

    def compose(self) -> ComposeResult:
        with Horizontal(id="download-total-line"):
            yield ProgressBar(total=None, show_eta=False, id="download-total")
        yield Label("waiting for the file list…", id="download-summary")
        yield VerticalScroll(id="download-files")

    def stopped(self) -> None:
        """The download stopped (cancelled, failed): sizes and files stay as
        they were; the rate and the time left go (they would never come true)."""
        if self._last is not None:
            self.show(self._last, stopped=True)

    def show(self, progress: DownloadProgress, *, stopped: bool = False) -> None:
        self._last = progress
        total = self.query_one("#download-total", ProgressBar)
        total.update(total=max(progress.bytes_total, 1), progress=progress.bytes_done)
        live = not progress.finished and not stopped
        eta = f", {human_duration(progress.eta)} left" if progress.eta is not None and live else ""
        rate = f" at {human_bytes(progress.rate)}/s" if progress.rate and live else ""
        self.query_one("#download-summary", Label).update(
            f"{human_bytes(progress.bytes_done)} of {human_bytes(progress.bytes_total)}, "
            f"{progress.files_done}/{progress.files_total} files{rate}{eta}" + (" · stopped" if stopped else ""))
        files = self.query_one("#download-files", VerticalScroll)
        with self.app.batch_update():
            for status in progress.files:
                key = (status.repo, status.path)
                bar = self._bars.get(key)
                if bar is None:
                    # Kept by key, not queried back: a bar mounted a moment
                    # ago is not in the DOM yet, and its updates must not be lost.
                    bar = self._bars[key] = FileBar(status, id=_file_id(len(self._bars)))
                    files.mount(bar)
                bar.show(status, stopped=stopped)

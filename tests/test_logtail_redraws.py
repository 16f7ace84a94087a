"""tqdm's redraws collapse as a terminal shows them, while the log grows.

A training bar with a nested validation bar (tqdm ``position`` 1, or any bar
opened while another runs) writes every update of the inner bar as a line of
its own in a file: newline, bar, cursor up (``ESC[A``). A 48 h training log
holds millions of them; a terminal shows two rows. The real tqdm writes the
log here, in a process of its own, while a follower reads it poll by poll;
the panel then searches it and jumps to its first error.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hpcwizard.jobs.logtail import LocalFileSource, LogFollower, TerminalRows
from test_dashboard import PanelApp, anyio_backend, job_row, until  # noqa: F401 (a fixture)

# What a diffusers/accelerate training does: a training bar, a validation
# bar inside it every step, a log line per step through tqdm.write, then a crash.
TRAINER = r"""
import sys, time
from tqdm import tqdm

out = open(sys.argv[1], "w")
print("starting", file=out, flush=True)
bar = tqdm(total=STEPS, desc="Steps", file=out, mininterval=0, ascii=True, ncols=70)
for step in range(STEPS):
    for _ in tqdm(range(25), desc="validation", file=out, mininterval=0, leave=False, ascii=True, ncols=70):
        time.sleep(0.002)
    bar.update(1)
    bar.set_postfix(loss=f"0.{step:03d}")
    tqdm.write(f"step {step} loss=0.{step:03d}", file=out)
    out.flush()
bar.close()
print("Traceback (most recent call last):", file=out)
print("RuntimeError: CUDA error: device-side assert triggered", file=out, flush=True)
"""
STEPS = 30


def run_trainer(log: Path) -> subprocess.Popen:
    script = log.with_suffix(".py")
    script.write_text(TRAINER.replace("STEPS", str(STEPS)))
    return subprocess.Popen([sys.executable, str(script), str(log)])


def test_a_nested_bars_updates_show_once_as_a_terminal_leaves_them_while_the_log_grows(tmp_path):
    log = tmp_path / "train.out"
    trainer = run_trainer(log)
    follower = LogFollower(LocalFileSource(str(log)))
    lines: list[str] = []
    partials: list[str] = []
    try:
        while trainer.poll() is None:
            update = follower.poll()
            lines += update.lines
            if update.partial:
                partials.append(update.partial)
            time.sleep(0.01)
        for _ in range(2):  # what the end wrote, then the rows kept back (nothing new: final)
            lines += follower.poll().lines
    finally:
        trainer.wait(timeout=30)
    raw_lines = log.read_bytes().count(b"\n")
    assert raw_lines > 25 * STEPS  # a line per validation update in the file…
    assert not [line for line in lines if "validation" in line], lines  # …none on screen
    assert [line for line in lines if line.startswith("step ")] == [f"step {s} loss=0.{s:03d}" for s in range(STEPS)]
    assert lines[-3].startswith("Steps: 100%|") and lines[-3].rstrip().endswith("loss=0.029]")
    assert lines[-2:] == ["Traceback (most recent call last):",
                          "RuntimeError: CUDA error: device-side assert triggered"]
    assert len(lines) < 2 * STEPS, lines  # the training bar's first state may show once, not 750 updates
    # While it ran, the live rows (training and validation bars) showed under the lines.
    assert any("Steps:" in p and "validation:" in p for p in partials), partials[-5:]

    # Opened afterwards (the panel's tail, a scroll back): the same rows.
    opened = LogFollower(LocalFileSource(str(log))).open_tail(100)
    assert not [line for line in opened if "validation" in line] and opened[-2:] == lines[-2:]
    assert [line.text for line in follower.read_lines_before(os.path.getsize(log), 3)] == lines[-3:]

    # Search and the first error still find their lines, by offset.
    match = follower.search("step 12 loss", "forward")
    assert match is not None
    assert follower.read_lines(match.offset, 1)[0].text == "step 12 loss=0.012"
    error = follower.search("Traceback", "forward")
    assert error is not None and follower.read_lines(error.offset, 1)[0].text == "Traceback (most recent call last):"


def test_terminal_rows_keep_plain_lines_as_they_were():
    rows = TerminalRows()
    lines: list[str] = []
    offsets: list[int] = []
    for offset, text in ((0, "plain"), (6, "bar 1\rbar 2"), (18, "done\r")):
        rows.feed(text, offset, offset + len(text) + 1, lines, offsets)
    assert (lines, offsets) == (["plain", "bar 2", "done"], [0, 6, 18])
    assert not rows.rows  # nothing kept back: no redraw from below


@pytest.mark.anyio
async def test_the_panel_shows_the_collapsed_log_and_jumps_to_its_first_error(tmp_path):
    from hpcwizard.slurm import JobState
    from hpcwizard.tui.widgets.log_panel import LogPanel

    home = tmp_path
    (home / "logs").mkdir()
    row = job_row(home, state=JobState.FAILED)
    log = Path(row.log_out)
    trainer = run_trainer(log)
    trainer.wait(timeout=60)
    app = PanelApp(LocalFileSource)
    async with app.run_test(size=(100, 40)) as pilot:
        panel = app.query_one(LogPanel)
        panel.follow(row)
        await until(pilot, "the log's end", lambda: panel.shown_lines[-1:] == [
            "RuntimeError: CUDA error: device-side assert triggered"])
        assert not [line for line in panel.shown_lines if "validation" in line]
        assert "step 29 loss=0.029" in panel.shown_lines
        assert panel.jump_to_first_error() in ("first error", "looking for the first error…")
        await until(pilot, "the first error", lambda: panel.status_note == "first error")
        assert panel.shown_lines[panel.highlighted_index] == "Traceback (most recent call last):"

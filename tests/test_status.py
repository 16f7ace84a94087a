"""The status layer: what a snapshot says about each job, and how the job
table and ``hpcwizard status --once`` print it (they print times alike)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from helpers import wait_for
from test_resubmit import all_ids, submit_test_chain

from hpcwizard.cli import print_status_table
from hpcwizard.slurm import SlurmClient
from hpcwizard.status import (
    JobRow,
    StatusSnapshot,
    current_reason,
    format_elapsed_limit,
    take_snapshot,
)
from hpcwizard.tui.widgets.job_table import format_start, row_cells

pytestmark = pytest.mark.timeout(120)


def a_row(**changes) -> JobRow:
    row = JobRow(job_id="7", name="train", slurm_name="hw-proj-train", state="RUNNING", reason=None,
                 dependency=None, partition="gpu", elapsed=10, time_limit=60, start="2026-12-02T18:00:00",
                 exit_code=None, source="squeue", log_out="/p/logs/hw-proj-train-7.out",
                 log_err="/p/logs/hw-proj-train-7.err")
    return replace(row, **changes)


def test_an_ended_job_keeps_only_a_reason_that_explains_its_end():
    assert current_reason("PENDING", "Resources") == "Resources"
    assert current_reason("PENDING", "Dependency") == "Dependency"
    # squeue keeps a cancelled job's last pending reason: stale news.
    assert current_reason("CANCELLED", "Resources") is None
    assert current_reason("CANCELLED", "Dependency") is None
    assert current_reason("CANCELLED", "JobHeldUser") is None
    # Reasons that say why it ended, or why it never ran, stay.
    assert current_reason("FAILED", "NonZeroExitCode") == "NonZeroExitCode"
    assert current_reason("TIMEOUT", "TimeLimit") == "TimeLimit"
    assert current_reason("CANCELLED", "DependencyNeverSatisfied") == "DependencyNeverSatisfied"


def test_a_held_job_shows_held_not_an_estimate_and_a_job_that_never_started_no_start():
    held = a_row(state="PENDING", reason="JobHeldUser", start="2026-12-02T18:00:00")
    assert held.held and format_start(held) == "held"
    assert format_start(a_row(state="PENDING", reason="JobHeldAdmin")) == "held"
    assert format_start(a_row(state="PENDING", reason="Resources")) == "~12-02 18:00"
    assert format_start(a_row(state="CANCELLED", start=None)) == "-"
    assert format_start(a_row()) == "12-02 18:00"


def test_elapsed_and_limit_read_the_same_in_the_table_and_the_cli(capsys):
    assert format_elapsed_limit(1, None) == "0:01 / ?"  # sacct does not say the limit
    assert format_elapsed_limit(65, 3600) == "1:05 / 1:00:00"
    assert format_elapsed_limit(None, None) == "-"
    rows = [a_row(job_id="5", elapsed=1, time_limit=None, state="COMPLETED", source="sacct"),
            a_row(job_id="6", state="PENDING", reason="JobHeldUser", elapsed=0, time_limit=120)]
    assert [row_cells(r)[5].plain for r in rows] == ["0:01 / ?", "0:00 / 2:00"]
    print_status_table(StatusSnapshot("/p", "now", tuple(rows)))
    out = capsys.readouterr().out
    assert "0:01 / ?" in out and "0:00 / 2:00" in out
    assert "start ~" not in out  # a held job's estimate assumes a release


def test_a_job_cancelled_while_pending_shows_no_reason_and_no_start(tmp_path: Path, slurm_runner):
    """On the real cluster: squeue keeps the cancelled job's "Dependency"
    reason and gives it a start time (the moment it was cancelled)."""
    home = tmp_path / "proj"
    submission = submit_test_chain(home, slurm_runner, [("blocker", "sleep 60"), ("waiter", "echo never")])
    blocker, waiter = submission.job_ids
    slurm = SlurmClient(slurm_runner)
    try:
        wait_for("the blocker to run", lambda: slurm.queue([blocker])[0].state.value == "RUNNING", 60)
        slurm.cancel([waiter])

        def cancelled():
            rows = {r.job_id: r for r in take_snapshot(home, slurm_runner).jobs}
            return rows if rows.get(waiter) and rows[waiter].state == "CANCELLED" else None

        rows = wait_for("the waiter cancelled", cancelled, 60)
        row = rows[waiter]
        assert row.reason is None and row.start is None
        cells = [cell.plain for cell in row_cells(row)]
        assert cells[3] == "" and cells[6] == "-"
        # The job that runs keeps its real start.
        assert rows[blocker].start is not None and row_cells(rows[blocker])[6].plain != "-"
    finally:
        slurm.cancel(all_ids(home))

"""A job on several nodes in the dashboard: the Nodes column, the key that
switches the log panel between the nodes' logs (here and over SSH), and
triage of the node logs naming the node a rank that never joined, or an NCCL
failure, came from; and a real two-node demo job whose rank 1 cannot join,
on the two-node local cluster (fixture ``two_node_slurm_conf``)."""

from __future__ import annotations

import json
import os
import re
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest
from textual.app import App
from textual.geometry import Region

from hpcwizard.jobs.logtail import LocalFileSource
from hpcwizard.jobs.nodelogs import NodeLogWatch, node_trouble
from hpcwizard.jobs.status import JobRow
from hpcwizard.jobs.triage import Kind, Severity, Triage, classify_line, node_findings
from hpcwizard.project.files import LOCAL_FILES
from hpcwizard.project.resolved import resolve
from hpcwizard.slurm.parse import expand_hostlist
from hpcwizard.tui.widgets.job_table import JobTable
from hpcwizard.tui.widgets.log_panel import LogPanel
from test_dashboard import anyio_backend, until  # noqa: F401 (a fixture)

pytestmark = [pytest.mark.timeout(300), pytest.mark.anyio]

TODAY = datetime(2026, 1, 2, 3, 4, 5)


def a_row(home: Path, job_id: str = "4102", name: str = "train", **changes) -> JobRow:
    stem = home / "logs" / f"hw-proj-{name}-{job_id}"
    row = JobRow(job_id=job_id, name=name, slurm_name=f"hw-proj-{name}", state="RUNNING", reason=None,
                 dependency=None, partition="gpu", elapsed=2458, time_limit=4 * 3600, start="2026-01-02T02:00:07",
                 exit_code=None, source="squeue", log_out=f"{stem}.out", log_err=f"{stem}.err")
    return replace(row, **changes)


def two_nodes(row: JobRow, nodelist: str = "gpu[01-02]") -> JobRow:
    stem = row.log_out.removesuffix(".out")
    return replace(row, node_count=2, nodelist=nodelist, node_logs=(f"{stem}.node0.out", f"{stem}.node1.out"))


# ---------------------------------------------------------------- node lists


def test_a_node_list_expands_in_slurm_order():
    assert expand_hostlist("node[1-2]") == ["node1", "node2"]
    assert expand_hostlist("gpu[01-02,07],cpu5") == ["gpu01", "gpu02", "gpu07", "cpu5"]
    assert expand_hostlist("rack[1-2]-n[1-2]") == ["rack1-n1", "rack1-n2", "rack2-n1", "rack2-n2"]
    assert expand_hostlist("x[9-11]") == ["x9", "x10", "x11"]
    for nothing in ("", None, "None assigned", "(null)"):
        assert expand_hostlist(nothing) == []
    for bad in ("a[1-", "a[x]", "a[3-1]", "a]1[", "n[1-999999]"):
        with pytest.raises(ValueError):
            expand_hostlist(bad)
    assert a_row(Path("/p"), nodelist="gpu[01-02]").hosts == ["gpu01", "gpu02"]
    assert a_row(Path("/p"), nodelist="gpu[").hosts == []  # unreadable: no names, no crash


# ---------------------------------------------------------------- triage of node logs
#
# Lines as torch, accelerate, NCCL and the demo trainer print them (the torch
# and NCCL ones as they appear in public reports of failed multi-node runs).

DEMO_RANK0 = "error: rendezvous timed out after 10 s: rank 1 of 2 never joined main at 10.232.61.2:21230"
DEMO_RANK1 = "error: rank 1 of 2 could not join main at 10.232.61.2:21231 within 11 s (Connection refused)"
TORCH_CLIENT = ("[rank1]:[E728 15:01:59.561275187 socket.cpp:1028] [c10d] The client socket has timed out after "
                "600000ms while trying to connect to (10.10.12.11, 25000).")
TORCH_NETWORK = ("torch.distributed.DistNetworkError: The client socket has timed out after 600000ms while trying "
                 "to connect to (172.17.0.9, 46229).")
STORE_BARRIER = ("RuntimeError: Timed out initializing process group in store based barrier on rank: 0, for key: "
                 "store_based_barrier_key:1 (world_size=8, worker_count=1, timeout=0:30:00)")
STORE_CLIENTS = "torch.distributed.DistStoreError: Timed out after 301 seconds waiting for clients. 1/2 clients joined."
ELASTIC = "torch.distributed.elastic.rendezvous.api.RendezvousTimeoutError"
WATCHDOG = ("[rank1]:[E810 03:04:11.061727749 ProcessGroupNCCL.cpp:683] [Rank 1] Watchdog caught collective "
            "operation timeout: WorkNCCL(SeqNum=78, OpType=BROADCAST, NumelIn=80, NumelOut=80, "
            "Timeout(ms)=600000) ran for 600096 milliseconds before timing out.")
NCCL_ERROR = ("torch.distributed.DistBackendError: NCCL error in: ../torch/csrc/distributed/c10d/"
              "ProcessGroupNCCL.cpp:1970, unhandled system error (run with NCCL_DEBUG=INFO for details), "
              "NCCL version 2.20.5")
NCCL_INTERNAL = "ncclInternalError: Internal check failed."
NCCL_WARN = "gpu02:12345:12399 [0] NCCL WARN NET/Socket : Connect to 10.0.0.1<45678> failed : Connection refused"
HEALTHY = [
    "rank 0 of 2 joined main at 10.232.61.2:21234",
    "gpu01:12345:12399 [0] NCCL INFO Bootstrap : Using eth0:10.0.0.1<0>",
    "Steps:  50%|##########          | 3/6 [00:00<00:00,  4.98it/s, loss=0.2031]",
    "the demo timed its 6 steps",
]


@pytest.mark.parametrize(("line", "seen_on", "expected"), [
    # rank 0 names the rank that never came: that rank's node, said by node 0.
    (DEMO_RANK0, 0, "node 1 (gpu02): rank 1 never joined main at 10.232.61.2:21230 (rendezvous timeout) "
                    "[node 0's log]"),
    (DEMO_RANK1, 1, "node 1 (gpu02): rank 1 never joined main at 10.232.61.2:21231 (rendezvous timeout: "
                    "Connection refused)"),
    (TORCH_CLIENT, 1, "node 1 (gpu02): rank 1 never reached main at 10.10.12.11:25000 (rendezvous timeout after "
                      "600000ms)"),
    (TORCH_NETWORK, 1, "node 1 (gpu02): a rank never reached main at 172.17.0.9:46229 (rendezvous timeout after "
                       "600000ms)"),
    (STORE_BARRIER, 0, "node 0 (gpu01): rank 0 timed out initializing the process group (1 of 8 joined, "
                       "rendezvous timeout)"),
    (STORE_CLIENTS, 0, "node 0 (gpu01): main waited 301 s for the other ranks: 1 of 2 joined (rendezvous timeout)"),
    (ELASTIC, 1, "node 1 (gpu02): rendezvous timeout (RendezvousTimeoutError)"),
    (WATCHDOG, 1, "node 1 (gpu02): rank 1: NCCL BROADCAST timed out after 600.096 s (watchdog)"),
    (NCCL_ERROR, 0, "node 0 (gpu01): NCCL error: unhandled system error (run with NCCL_DEBUG=INFO for details)"),
    (NCCL_INTERNAL, 0, "node 0 (gpu01): NCCL error: ncclInternalError: Internal check failed."),
    (NCCL_WARN, 1, "node 1 (gpu02): NCCL warning: NET/Socket : Connect to 10.0.0.1<45678> failed : "
                   "Connection refused"),
])
def test_node_trouble_is_said_with_the_node_it_came_from(line, seen_on, expected):
    [finding] = node_findings(line, seen_on=seen_on, nodes=2, hosts=["gpu01", "gpu02"])
    assert finding.text == expected
    assert finding.seen_on == seen_on and finding.line in line
    kind = Kind.NCCL if "NCCL" in expected else Kind.RENDEZVOUS
    assert finding.kind is kind and classify_line(line) is kind
    # A warning is worth a look; the rest ended the run.
    assert finding.severity is (Severity.MEDIUM if line is NCCL_WARN else Severity.HIGH)


def test_healthy_lines_and_unknown_node_names_and_several_missing_ranks():
    for line in HEALTHY:
        assert node_findings(line, seen_on=0, nodes=2) == [] and classify_line(line) is None, line
    # Before Slurm says the nodes' names: the node number alone.
    [unnamed] = node_findings(DEMO_RANK1, seen_on=1, nodes=2)
    assert unnamed.text.startswith("node 1: rank 1 never joined")
    # Three nodes, two never came: one finding each, about their own nodes.
    line = "error: rendezvous timed out after 30 s: rank 1, 2 of 3 never joined main at 10.0.0.1:29500"
    assert [f.text for f in node_findings(line, seen_on=0, nodes=3, hosts=["a", "b", "c"])] == [
        "node 1 (b): rank 1 never joined main at 10.0.0.1:29500 (rendezvous timeout) [node 0's log]",
        "node 2 (c): rank 2 never joined main at 10.0.0.1:29500 (rendezvous timeout) [node 0's log]",
    ]
    # "rank R of N" of another count is a process rank, not a node: the node that says it.
    [other] = node_findings("rank 5 of 8 could not join main at h:1 within 9 s (timed out)", seen_on=1, nodes=2)
    assert other.node == 1 and other.text.startswith("node 1: rank 5 never joined")


def test_the_log_panel_triage_counts_rendezvous_and_nccl_findings():
    triage = Triage()
    triage.feed_lines([*HEALTHY, DEMO_RANK0, NCCL_WARN, WATCHDOG])
    assert triage.counts == {Kind.RENDEZVOUS: 1, Kind.NCCL: 2}
    assert triage.first_error().text == DEMO_RANK0.strip()


def test_node_logs_are_followed_and_read_once_more(tmp_path):
    """The watch reads each node log's tail, then only what it appended; a
    node log that is not there yet is read when it appears."""
    row = two_nodes(a_row(tmp_path))
    (tmp_path / "logs").mkdir()
    Path(row.node_logs[0]).write_text("rank 0 of 2 joined main at 10.232.61.2:21230\n" + DEMO_RANK0 + "\n")
    watch = NodeLogWatch(row)
    try:
        first = watch.update()
        assert [f.text for f in first] == [
            "node 1 (gpu02): rank 1 never joined main at 10.232.61.2:21230 (rendezvous timeout) [node 0's log]"]
        Path(row.node_logs[1]).write_text(DEMO_RANK1 + "\n")
        with open(row.node_logs[0], "a") as log:
            log.write(DEMO_RANK0 + "\n")  # said again: said once
        found = watch.update()
        assert [f.seen_on for f in found] == [0, 1] and found[1].node == 1
        with open(row.node_logs[1], "a") as log:
            log.write(NCCL_WARN + "\n")
        assert watch.update()[-1].text.startswith("node 1 (gpu02): NCCL warning: NET/Socket")
    finally:
        watch.close()
    assert [f.text for f in node_trouble(row)] == [f.text for f in found] + [
        "node 1 (gpu02): NCCL warning: NET/Socket : Connect to 10.0.0.1<45678> failed : Connection refused"]
    assert node_trouble(a_row(tmp_path)) == []  # one node: no node logs


# ---------------------------------------------------------------- the Nodes column


class TableApp(App):
    def compose(self):
        yield JobTable(clock=lambda: TODAY)


def chain(home: Path, *, nodes: int) -> list[JobRow]:
    setup = a_row(home, "4101", "setup", state="COMPLETED", partition="cpu", elapsed=312, time_limit=None,
                  start="2026-01-02T01:54:55", source="sacct", node_count=1, nodelist="cpu01")
    train = a_row(home, "4102", "train", node_count=1, nodelist="gpu01")
    convert = a_row(home, "4103", "convert", state="PENDING", reason="Dependency",
                    dependency="afterok:4102(unfulfilled)", partition="cpu", elapsed=0, time_limit=1800,
                    start="2026-01-02T06:00:07", node_count=1)
    return [setup, two_nodes(train) if nodes == 2 else train, convert]


def drawn_rows(table: JobTable) -> list[str]:
    return [table.render_lines(Region(0, y, table.size.width, 1))[0].text for y in range(table.row_count + 1)]


async def test_the_nodes_column_shows_while_a_job_runs_on_several_nodes_and_fits_80_columns(tmp_path):
    app = TableApp()
    async with app.run_test(size=(80, 24)) as pilot:
        table = app.query_one(JobTable)

        async def showing(rows):
            table.apply(rows)
            await until(pilot, "the columns measured", lambda: not table._require_update_dimensions)
            await pilot.pause()

        def labels():
            return [column.label.plain for column in table.ordered_columns]

        await showing(chain(tmp_path, nodes=1))
        # One node each: a column of 1s says nothing.
        assert "Nodes" not in labels() and not table.nodes_shown
        table.move_cursor(row=table.get_row_index("4102"))
        await showing(chain(tmp_path, nodes=2))
        assert labels() == ["Job", "Name", "State", "Reason", "Part.", "Nodes", "Elapsed/Limit", "Start"]
        assert table.selected_job_id == "4102"  # built again, the selection kept
        widths = {column.label.plain: column.get_render_width(table) for column in table.ordered_columns}
        assert sum(widths.values()) <= 80, widths
        header, setup, train, convert = drawn_rows(table)
        assert re.search(r"Part\.\s+Nodes\s+Elapsed/Limit\s+Start", header)
        assert re.search(r"\bgpu\s+2\s+40:58 / 4:00:00\s+02:00\s*$", train), train
        assert re.search(r"\bcpu\s+1\s+5:12 / \?\s+01:54\s*$", setup), setup
        # Today's date goes (the app's clock): the dependency and the estimate stay whole.
        assert "afterok:4102" in convert and convert.rstrip().endswith("~06:00") and "…" not in convert
        # A count nobody knows reads "-"; another day keeps its date.
        rows = chain(tmp_path, nodes=2)
        rows[0] = replace(rows[0], node_count=None, start="2026-01-01T22:10:00")
        await showing(rows)
        assert table._shown["4101"][5:] == ("-", "5:12 / ?", "01-01 22:10")
        # The multi-node job gone: the column goes.
        await showing([rows[0], rows[2]])
        assert "Nodes" not in labels() and len(drawn_rows(table)) == 3


# ---------------------------------------------------------------- the key


NODE0_LOG = "2 nodes (gpu[01-02]), 2 GPU(s) each: main process at 10.232.61.2:21230\n" + "node 0 step\n" * 3
NODE1_LOG = "node 1 is up\n" + DEMO_RANK1 + "\n"


class PanelApp(App):
    """The dashboard's log panel and its key (``m``, the dashboard's binding too)."""

    BINDINGS = [("m", "next_node", "next node"), ("o", "toggle_stream", "out/err")]

    def __init__(self, source_factory=LocalFileSource) -> None:
        super().__init__()
        self.source_factory = source_factory
        self.notes: list[str] = []

    def compose(self):
        yield LogPanel(source_factory=self.source_factory)

    def action_next_node(self) -> None:
        self.notes.append(self.query_one(LogPanel).next_node())

    def action_toggle_stream(self) -> None:
        self.query_one(LogPanel).toggle_stream()


def write_logs(home: Path) -> JobRow:
    row = two_nodes(a_row(home, state="FAILED", exit_code="1:0"))
    (home / "logs").mkdir(parents=True, exist_ok=True)
    Path(row.log_out).write_text(NODE0_LOG)
    Path(row.log_err).write_text("srun: error: gpu01: task 0: Exited with exit code 1\n")
    Path(row.node_logs[0]).write_text(NODE0_LOG + DEMO_RANK0 + "\n")
    Path(row.node_logs[1]).write_text(NODE1_LOG)
    return row


async def switch_between_nodes(pilot, row: JobRow, *, appended: Path | None = None) -> None:
    panel = pilot.app.query_one(LogPanel)

    def header() -> str:
        return str(panel.query_one("#log-header").render())

    def trouble() -> str:
        return str(panel.query_one("#log-nodes").render())

    panel.follow(row)
    await until(pilot, "the job log", lambda: panel.shown_lines and panel.shown_lines[-1] == "node 0 step")
    assert panel.path == row.log_out and header().startswith("node 0 of 2 (gpu01) · stdout logs/")
    # Its node logs, read for trouble: the node a rank never came from.
    await until(pilot, "the node trouble", lambda: panel.node_findings and panel.query_one("#log-nodes").display)
    assert trouble().startswith("⚠ node 1 (gpu02): rank 1 never joined main at 10.232.61.2:2123")
    assert "(+1 more)" in trouble() and trouble().endswith("m: next node's log")

    await pilot.press("m")
    await until(pilot, "node 1's log", lambda: panel.path == row.node_logs[1] and panel.shown_lines)
    assert panel.shown_lines == NODE1_LOG.splitlines()
    assert header().startswith("node 1 of 2 (gpu02) logs/hw-proj-train-4102.node1.out · ")
    assert pilot.app.notes[-1] == "node 1 of 2 (gpu02)'s log"
    if appended is not None:  # followed like any log
        with open(appended, "a") as log:
            log.write("node 1 says more\n")
        await until(pilot, "the appended line", lambda: panel.shown_lines[-1:] == ["node 1 says more"])
    # e on a node log: its own first error (it holds stderr too), no stderr fallback.
    panel.jump_to_first_error()
    await until(pilot, "the first error", lambda: panel.status_note == "first error")
    assert panel.path == row.node_logs[1] and panel.shown_lines[panel.highlighted_index] == DEMO_RANK1

    await pilot.press("m")  # after the last node: the job log again
    await until(pilot, "node 0 again", lambda: panel.path == row.log_out and panel.node == 0)
    await pilot.press("m", "o")  # o on a node log: back to the job log's own
    await until(pilot, "the job log again", lambda: panel.path == row.log_out and panel.stream == "out")
    # Another job: its job log, node 0; one node has no node logs.
    single = a_row(Path(row.log_out).parent.parent, "4200", "setup")
    panel.follow(single)
    assert panel.node == 0 and not panel.query_one("#log-nodes").display
    assert panel.next_node() == "job 4200 runs on one node: its log is the job log"
    panel.follow(row)
    await until(pilot, "the same node trouble again", lambda: panel.node_findings)


async def test_a_key_switches_the_log_panel_between_the_nodes_logs(tmp_path):
    row = write_logs(tmp_path / "proj")
    async with PanelApp().run_test(size=(80, 24)) as pilot:
        await switch_between_nodes(pilot, row, appended=Path(row.node_logs[1]))


async def test_the_nodes_logs_over_ssh(tmp_path, sshd):
    """The panel reads through the project's files (the dashboard's
    ``ProjectFiles``): over SSH, SFTP."""
    from hpcwizard.project.files import SshFiles
    from test_remote import make_connection

    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(sshd.known_hosts_line)
    connection = make_connection(sshd, known_hosts)
    try:
        row = write_logs(tmp_path / "proj")  # on the "login node" (this machine, reached over SSH)
        async with PanelApp(SshFiles(connection).open_source).run_test(size=(80, 24)) as pilot:
            await switch_between_nodes(pilot, row, appended=Path(row.node_logs[1]))
    finally:
        connection.close()


# ---------------------------------------------------------------- a real two-node job whose rank 1 cannot join


def _submit_demo_whose_rank_1_cannot_join(tmp_path: Path, conf: str) -> tuple[Path, list[str], int]:
    """The demo chain with train.nodes: 2, prepared as the demo is (the nodes
    have no network); its train script as rendered, but for the main port:
    each node's launcher gets its own (``...0`` on node 0, where rank 0
    listens, ``...1`` on node 1), so rank 1 knocks at a closed port. Rank 0
    waits 5 s for it (``05``), rank 1 would try for 15 s. Submitted and recorded as
    hpcwizard submits a chain. The project home, the job ids, rank 0's port."""
    from hpcwizard.demo import build_demo_hub, write_token_file
    from hpcwizard.devhub import DevHub
    from hpcwizard.project.home import Project
    from hpcwizard.project.plan import plan_from_dict
    from hpcwizard.project.recipe import get_recipe
    from hpcwizard.project.render import render
    from hpcwizard.project.state import Submission, SubmittedJob, now_iso
    from hpcwizard.shell import LocalRunner
    from hpcwizard.slurm import SlurmClient
    from test_multinode import TOKEN, _hpcwizard

    build_demo_hub(tmp_path / "hub", user="alice", token=TOKEN)
    recipe = get_recipe("demo")
    home = tmp_path / "proj"
    data = recipe.default_plan(home, tmp_path / "data", hf_namespace="alice", download="login").to_dict()
    data["train"] = {**data["train"], "nodes": 2}
    plan = plan_from_dict(data)
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text(plan.to_yaml())
    write_token_file(tmp_path / "hf-home", TOKEN)
    with DevHub(tmp_path / "hub") as hub:
        env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
        env.update(HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "hf-home"), SLURM_CONF=conf)
        prepared = _hpcwizard(env, "prepare", str(plan_file))
    assert prepared.returncode == 0, prepared.stderr

    project = Project(home)
    scripts_dir = project.layout.runs_dir / "rank-1-cannot-join"
    rendering = render(Project(plan.project_home), resolve(plan, recipe), scripts_dir)
    rendering.write(scripts_dir, LOCAL_FILES)
    train = next(job for job in rendering.jobs if job.name == "train")
    script = scripts_dir / train.script
    text = script.read_text()
    flags = '--main_process_port "$MAIN_PORT"'
    assert flags in text and "@NODE_RANK@" in text
    script.write_text(text.replace(flags, '--main_process_port "$((MAIN_PORT / 10))@NODE_RANK@" '
                                          "--rendezvous_timeout @NODE_RANK@5"))
    slurm = SlurmClient(LocalRunner(extra_env={"SLURM_CONF": conf}))
    jobs: list[SubmittedJob] = []
    for job in rendering.jobs:
        after = (jobs[-1].job_id,) if jobs else ()
        job_id = slurm.submit(str(scripts_dir / job.script), dependency=list(after) or None, workdir=str(home))
        jobs.append(SubmittedJob(job.name, job.slurm_name, job_id, job.resources.partition,
                                 str(scripts_dir / job.script), tuple(f"afterok:{a}" for a in after),
                                 job.resources.time_seconds()))
    project.update_state(lambda state: state.submissions.append(
        Submission(plan.fingerprint(), now_iso(), str(scripts_dir), tuple(jobs))))
    train_id = jobs[-1].job_id
    return home, [job.job_id for job in jobs], (20000 + int(train_id) % 20000) // 10 * 10


async def test_a_two_node_job_whose_rank_1_cannot_join_names_node_1(tmp_path, two_node_slurm_conf):
    """On the two-node cluster: the train job fails at its rendezvous; the
    dashboard shows it on 2 nodes, its log panel says which node never
    joined, m shows that node's log, and the doctor lists it."""
    from hpcwizard.shell import LocalRunner
    from hpcwizard.slurm import JobState, SlurmClient
    from hpcwizard.tui.app import make_app
    from hpcwizard.tui.screens.dashboard import DashboardScreen
    from hpcwizard.tui.widgets.confirm import ChoiceScreen
    from test_multinode import _node_addr

    home, ids, port = _submit_demo_whose_rank_1_cannot_join(tmp_path, two_node_slurm_conf)
    setup_id, train_id = ids
    main = f"{_node_addr(two_node_slurm_conf, 'node1')}:{port}"
    runner = LocalRunner(extra_env={"SLURM_CONF": two_node_slurm_conf})
    app = make_app(project_home=home, runner=runner, start_mode="dashboard", clock=datetime.now)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await until(pilot, "the dashboard",
                                 lambda: isinstance(app.screen, DashboardScreen) and app.screen)
            table = screen.table

            def train_row():
                return table.rows_by_id.get(train_id)

            await until(pilot, "the train job to fail",
                        lambda: train_row() is not None and train_row().state is JobState.FAILED, timeout=180)
            row = train_row()
            assert row.node_count == 2 and row.hosts == ["node1", "node2"], row
            assert [Path(p).name for p in row.node_logs] == [
                f"{row.slurm_name}-{train_id}.node0.out", f"{row.slurm_name}-{train_id}.node1.out"]
            assert table.nodes_shown and table._shown[train_id][5] == "2"
            assert table._shown[setup_id][5] == "1" and table.rows_by_id[setup_id].state is JobState.COMPLETED
            widths = sum(column.get_render_width(table) for column in table.ordered_columns)
            assert widths <= 80, [(c.label.plain, c.get_render_width(table)) for c in table.ordered_columns]

            table.move_cursor(row=table.get_row_index(train_id))
            panel = screen.log_panel
            expected = f"node 1 (node2): rank 1 never joined main at {main} (rendezvous timeout) [node 0's log]"
            await until(pilot, "the node trouble", lambda: panel.node_findings, timeout=30)
            # (Rank 1's own line may follow, if srun had not stopped it yet.)
            assert expected in [f.text for f in panel.node_findings], [f.text for f in panel.node_findings]
            assert {f.node for f in panel.node_findings} == {1}
            shown = str(panel.query_one("#log-nodes").render())
            assert shown.startswith("⚠ node 1 (node2): rank 1 never joined main at "), shown
            assert str(panel.query_one("#log-header").render()).startswith("node 0 of 2 (node1) · stdout logs/")

            await pilot.press("m")
            await until(pilot, "node 1's log", lambda: panel.path == row.node_logs[1])
            assert str(panel.query_one("#log-header").render()).startswith(
                f"node 1 of 2 (node2) logs/{row.slurm_name}-{train_id}.node1.out")
            node0 = Path(row.node_logs[0]).read_text()
            assert f"rendezvous timed out after 5 s: rank 1 of 2 never joined main at {main}" in node0, node0

            await pilot.press("d")
            doctor = await until(pilot, "the doctor", lambda: isinstance(app.screen, ChoiceScreen) and app.screen)
            assert "Its node logs say:\n  node 1 (node2): rank 1 never joined main at " in doctor.body_text
            assert expected in doctor.body_text, doctor.body_text
    finally:
        SlurmClient(runner).cancel(ids)
    # What the status JSON says of it: the node count and each node's log.
    from hpcwizard.jobs.status import take_snapshot
    from hpcwizard.project.home import Project

    snapshot = take_snapshot(Project(home, runner=runner))
    [train] = [job for job in snapshot.to_dict()["jobs"] if job["job_id"] == train_id]
    assert train["node_count"] == 2 and train["nodelist"] == "node[1-2]" and len(train["node_logs"]) == 2
    json.dumps(train)

"""The node logs of a job on several nodes, read for trouble between nodes.

A job with ``train.nodes: N`` runs one launcher per node; each node's output
(stdout and stderr together) goes to ``logs/<job name>-<job id>.node<K>.out``
(:attr:`~hpcwizard.jobs.status.JobRow.node_logs`, K its ``$SLURM_NODEID``).
A rank that never joined the others, or an NCCL failure, shows there, on the
node it happened on; :class:`NodeLogWatch` follows those files (their tail
first, then only what is appended, through the project's files: this machine
or the login node over SSH) and keeps what triage finds, each with its node.
No Textual here; one worker at a time owns a watch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from hpcwizard.jobs.logtail import FileSource, LocalFileSource, LogFollower, LogUpdate
from hpcwizard.jobs.triage import CANDIDATE, NodeFinding, node_findings
from hpcwizard.project.files import LOCAL_FILES, ProjectFiles

if TYPE_CHECKING:
    from hpcwizard.jobs.status import JobRow

#: Lines read from the end of a node log when it is first read (the failure
#: that ended a job is near its end; a hang's last words too).
NODE_TAIL_LINES = 400
#: Findings kept per job: the first ones say what went wrong first.
MAX_FINDINGS = 20


class NodeLogWatch:
    """The node logs of one job, followed from read to read. ``open_source``
    opens a file where the project's files are (``ProjectFiles.open_source``)."""

    def __init__(self, job: JobRow, open_source: Callable[[str], FileSource] = LocalFileSource, *,
                 tail_lines: int = NODE_TAIL_LINES) -> None:
        self.job_id = job.job_id
        self.paths = tuple(job.node_logs)
        self.open_source = open_source
        self.tail_lines = tail_lines
        self.hosts: list[str] = job.hosts
        self.findings: list[NodeFinding] = []
        self._seen: set[str] = set()
        self._followers: dict[int, LogFollower] = {}

    def update(self, job: JobRow | None = None) -> list[NodeFinding]:
        """Read what each node log appended (a log not there yet is skipped:
        it appears when its node starts) and return every finding so far.
        ``job``: the job's newest row (its node names once it has nodes)."""
        if job is not None and job.hosts:
            self.hosts = job.hosts
        for node, path in enumerate(self.paths):
            follower = self._followers.get(node)
            try:
                if follower is None:
                    follower = LogFollower(self.open_source(path))
                    update = follower.open_tail_update(self.tail_lines)
                    if update.missing:
                        follower.close()
                        continue
                    self._followers[node] = follower
                else:
                    update = follower.poll()
            except OSError:
                continue  # unreadable now (an SSH hiccup): read it again next time
            self._take(node, update)
        return list(self.findings)

    def _take(self, node: int, update: LogUpdate) -> None:
        for line in update.lines:
            if not CANDIDATE.search(line):
                continue
            for finding in node_findings(line, seen_on=node, nodes=len(self.paths), hosts=self.hosts):
                if finding.text not in self._seen and len(self.findings) < MAX_FINDINGS:
                    self._seen.add(finding.text)
                    self.findings.append(finding)

    def close(self) -> None:
        for follower in self._followers.values():
            follower.close()
        self._followers.clear()


def node_trouble(job: JobRow, files: ProjectFiles = LOCAL_FILES) -> list[NodeFinding]:
    """What the node logs of ``job`` say went wrong between its nodes, read once."""
    if len(job.node_logs) < 2:
        return []
    watch = NodeLogWatch(job, files.open_source)
    try:
        return watch.update()
    finally:
        watch.close()

"""The write probe of the checks (project home and data root can be written)
when the SSH connection to the login node drops: a warning that says what to
do, never a traceback. It once called ``_warn()`` without its ``fix``, so a
drop there became a TypeError that ended the whole check.

The drop is real: the client reaches the local sshd through a TCP relay that
the test pulls out, closing both sides, so the next command finds the
connection gone and its reconnect is refused.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import Sshd
from hpcwizard.checks.preflight import check_folders
from hpcwizard.checks.space import Level
from hpcwizard.project.recipe import get_recipe
from hpcwizard.remote import SshConnection, SshRunner, resolve

pytestmark = pytest.mark.timeout(120)


class Relay:
    """127.0.0.1:``port`` relayed to ``target``, until :meth:`pull` cuts every
    relayed connection and stops listening."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:  # pulled
                return
            server = socket.create_connection(("127.0.0.1", self.target))
            self.sockets += [client, server]
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
        except OSError:
            pass
        with_shutdown(sink)

    def pull(self) -> None:
        with_shutdown(self.listener)  # wakes the accept() above; close() alone would not
        self.listener.close()
        for sock in self.sockets:
            with_shutdown(sock)
            sock.close()


def with_shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:  # already closed or never connected
        pass


@pytest.fixture
def relay(sshd: Sshd) -> Iterator[Relay]:
    cable = Relay(sshd.port)
    try:
        yield cable
    finally:
        cable.pull()


@pytest.fixture
def conn(tmp_path: Path, sshd: Sshd, relay: Relay) -> Iterator[SshConnection]:
    """A connection to the local sshd through the relay (its host key pinned for the relay's port)."""
    known = tmp_path / "known_hosts"
    known.write_text(sshd.known_hosts_line.replace(f"[127.0.0.1]:{sshd.port} ", f"[127.0.0.1]:{relay.port} ", 1))
    host = replace(resolve(f"root@127.0.0.1:{relay.port}", config_path=os.devnull), identity_files=(sshd.key,))
    connection = SshConnection(host, known_hosts=known, use_agent=False, system_known_hosts=(),
                               identity_dir="/nonexistent", connect_timeout=5, reconnect_attempts=2,
                               backoff_initial=0.1)

    try:
        yield connection
    finally:
        connection.close()


def test_a_connection_that_drops_before_the_write_probe_is_a_warning_with_a_fix(tmp_path, conn, relay):
    plan = get_recipe("demo").default_plan(tmp_path / "proj", hf_namespace="alice")
    runner = SshRunner(conn)
    # Through the relay, the probe works: both folders can be written on the login node.
    assert [(r.name, r.level) for r in check_folders(plan, runner)] == [
        ("project home writable", Level.OK), ("data root writable", Level.OK)]

    relay.pull()
    deadline = time.monotonic() + 30
    while conn.connected:  # paramiko's reader sees the end of the stream
        assert time.monotonic() < deadline, "the client never noticed the dropped connection"
        time.sleep(0.05)

    rows = check_folders(plan, runner)
    assert [(r.group, r.name, r.level) for r in rows] == [
        ("space", "project home writable", Level.WARN), ("space", "data root writable", Level.WARN)]
    for row, path in zip(rows, (plan.project_home, plan.data_root)):
        assert row.message.startswith(f"could not test {path}: "), row.message
        assert f"127.0.0.1 port {relay.port}" in row.message, row.message
        assert row.fix == "check the connection to the login node, then check again"

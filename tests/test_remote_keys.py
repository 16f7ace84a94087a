"""An encrypted key's passphrase is asked once per run: reconnects reuse the unlocked key.

The TUI owns the terminal after the first connect, so a reconnect that asked
again would have nowhere to ask.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import replace

from hpcwizard.remote import SshConnection, SshRunner
from hpcwizard.remote.target import resolve


def test_reconnect_does_not_ask_for_the_passphrase_again(sshd, tmp_path):
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(sshd.known_hosts_line)
    key = tmp_path / "id_locked"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "s3cret", "-f", str(key)], check=True)
    original = sshd.authorized.read_text()
    sshd.authorized.write_text(original + (tmp_path / "id_locked.pub").read_text())
    asked: list[str] = []

    def passphrase(path: str) -> str:
        asked.append(path)
        return "s3cret"

    host = replace(resolve(f"root@127.0.0.1:{sshd.port}", config_path=os.devnull), identity_files=(str(key),))
    try:
        with SshConnection(host, known_hosts=known_hosts, use_agent=False, system_known_hosts=(),
                           identity_dir="/nonexistent", passphrase=passphrase, backoff_initial=0.05) as conn:
            runner = SshRunner(conn)
            assert runner.run(["echo", "one"]).check().stdout == "one\n"
            conn.transport().close()  # the link drops
            assert runner.run(["echo", "two"]).check().stdout == "two\n"
            assert conn.reconnects == 1
        assert asked == [str(key)]
    finally:
        sshd.authorized.write_text(original)

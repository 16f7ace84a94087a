"""Terminal prompts for the CLI: host-key confirmation and key passphrases.

The TUI supplies its own callbacks (a modal screen); the CLI uses these. With
no terminal on stdin, :func:`terminal_prompts` returns ``None`` for both, and
the connection refuses unknown host keys / encrypted keys with a one-line
error saying what to run instead.
"""

from __future__ import annotations

import getpass
import sys
from typing import TextIO

from hpcwizard.remote.connection import HostKeyPrompt, PassphrasePrompt, key_type_label


def ask_host_key_on_terminal(
    hostname: str, key_type: str, fingerprint: str, *, stdin: TextIO | None = None, stderr: TextIO | None = None
) -> bool:
    """OpenSSH's question; only ``yes`` (or the fingerprint itself) accepts."""
    stdin = stdin or sys.stdin
    stderr = stderr or sys.stderr
    stderr.write(
        f"The authenticity of host '{hostname}' can't be established.\n"
        f"{key_type_label(key_type)} key fingerprint is {fingerprint}.\n"
        "Are you sure you want to continue connecting (yes/no/[fingerprint])? "
    )
    stderr.flush()
    answer = stdin.readline()
    if not answer:  # EOF
        stderr.write("\n")
        return False
    answer = answer.strip()
    return answer.lower() == "yes" or answer == fingerprint


def ask_passphrase_on_terminal(path: str, retry: bool = False) -> str | None:
    """getpass for a key's passphrase; an empty answer skips the key.
    ``retry``: the one typed before was wrong (OpenSSH's wording)."""
    question = "Bad passphrase, try again for" if retry else "Enter passphrase for key"
    passphrase = getpass.getpass(f"{question} '{path}': ")
    return passphrase or None


def terminal_prompts(stdin: TextIO | None = None) -> tuple[HostKeyPrompt | None, PassphrasePrompt | None]:
    """``(ask_host_key, passphrase)`` for :class:`SshConnection`: terminal
    prompts when stdin is a TTY, else ``(None, None)`` (refuse, never guess)."""
    stream = stdin or sys.stdin
    try:
        interactive = stream.isatty()
    except (AttributeError, ValueError):
        interactive = False
    if not interactive:
        return None, None
    return ask_host_key_on_terminal, ask_passphrase_on_terminal

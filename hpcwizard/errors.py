"""Errors users are expected to hit.

Every expected failure is a :class:`UserError`: the CLI prints its one-line
message (what is wrong, then how to fix it) on stderr and exits non-zero,
never with a traceback. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Iterable


class UserError(Exception):
    """An expected failure with a message fit for the person at the terminal."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        """``what is wrong; what to do`` on one line."""
        text = self.message.rstrip(". ")
        if self.hint:
            text = f"{text}; {self.hint}"
        return " ".join(text.split())

    def __str__(self) -> str:
        return self.one_line()


class CommandFailed(UserError):
    """An external command (sbatch, squeue, tar...) could not run or failed."""


class CommandTimeout(CommandFailed):
    """An external command did not finish within its timeout."""


class TransportUnavailable(CommandFailed):
    """The machine commands run on cannot be reached right now (a dropped SSH
    connection, an unreachable login node): transient, worth retrying later."""


def first_unknown_key(keys: Iterable[object], allowed: Iterable[str]) -> str | None:
    """The first of ``keys`` (sorted, so the message never changes between
    runs) that ``allowed`` lacks; None when every key is known.

    Every file hpcwizard reads (plan, recipe) refuses an unknown key, because
    a misspelt key silently ignored is a setting the user believes in and
    the job never gets. Callers word the error: where the key was and which
    keys are allowed."""
    unknown = sorted(str(key) for key in set(keys) - set(allowed))
    return unknown[0] if unknown else None

"""The names atomic writes give their temporary files, here and over SFTP,
and which leftovers of killed writes are old enough to remove.

One leaf module for both sides (:func:`hpcwizard.project.files.atomic_write`
here, :meth:`hpcwizard.remote.files.RemoteFiles.write_bytes_atomic` on the
login node): each side's cleanup must recognise both names, and neither side's
module should import the other's for it.
"""

from __future__ import annotations

import re
import secrets

#: A temporary file of an atomic write older than this was left by a save
#: that was killed (a save takes milliseconds): the next save removes it.
STALE_TEMP_AGE = 600.0


def local_temp_affixes(name: str) -> tuple[str, str]:
    """``mkstemp``'s prefix and suffix for a write of ``name`` here:
    ``.NAME.<8 of mkstemp's>.tmp``."""
    return f".{name}.", ".tmp"


def sftp_temp_name(name: str) -> str:
    """The temporary name of a write of ``name`` over SFTP: ``.NAME.tmp-<12 hex>``."""
    return f".{name}.tmp-{secrets.token_hex(6)}"


def is_stale_temp(name: str, target: str, age: float) -> bool:
    """Whether ``name`` is an old temporary file of an atomic write of ``target``
    (either form above), ``age`` seconds old."""
    if age < STALE_TEMP_AGE or not name.startswith(f".{target}."):
        return False
    rest = name[len(target) + 2:]
    return bool(re.fullmatch(r"[A-Za-z0-9_]{8}\.tmp|tmp-[0-9a-f]{12}", rest))

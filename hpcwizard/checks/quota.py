"""Read the user's disk quota from the tool of the filesystem that holds a path.

``psutil.disk_usage`` on Lustre or GPFS reports petabytes free while the user
may have 3 GiB of quota left, so the preflight asks the quota tool itself:
``lfs quota`` (Lustre), ``mmlsquota`` (GPFS / Spectrum Scale), ``beegfs-ctl``
(BeeGFS) or ``quota`` (quota-tools: NFS, ext4, xfs). Formats are described in
``notes/quota-formats.md``; recorded outputs live in ``tests/data/quota``.

Two layers:

* :func:`parse` turns one tool's text into :class:`QuotaEntry` values and
  raises :class:`ValueError` on text it cannot read. It never guesses.
* :func:`probe_quota` runs the right tool through a :class:`Runner` and never
  raises: a missing, failing, slow or unreadable tool becomes a warning in the
  :class:`QuotaReport`, with the raw text kept so the user can read it.

Which rows ``parse`` returns when a text holds several kinds (user, group,
fileset/project): the user's own rows when there are any, otherwise every row.
The wizard asks about the user (``-u USER``), and a group or fileset row
without the user's rows only appears when someone asked for it explicitly.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from hpcwizard.checks.freespace import FreeSpace, free_space
from hpcwizard.errors import CommandFailed
from hpcwizard.shell import Runner

__all__ = [
    "QuotaEntry",
    "QuotaReport",
    "SiteOutput",
    "TOOLS",
    "SITE_WRAPPERS",
    "parse",
    "probe_quota",
    "quota_command",
]

KIB = 1024
TOOLS = ("quota", "lfs", "mmlsquota", "beegfs")
SITE_WRAPPERS = ("myquota", "checkquota", "showquota", "diskusage_report")

# mmlsquota often lives outside PATH; sites rarely add it for users.
GPFS_BIN = "/usr/lpp/mmfs/bin/mmlsquota"
QUOTA_TIMEOUT = 30.0
WRAPPER_TIMEOUT = 20.0


@dataclass(frozen=True)
class QuotaEntry:
    """Usage and limits of one user on one filesystem (or storage pool).

    Sizes are bytes, counts are files (inodes). A limit is None when none is
    set: the tools print 0 (or ``unlimited``) for "no limit", never for "no
    space allowed".
    """

    filesystem: str
    bytes_used: int
    bytes_soft: int | None
    bytes_hard: int | None
    files_used: int
    files_soft: int | None
    files_hard: int | None

    @property
    def bytes_limit(self) -> int | None:
        """The limit that stops writes: hard, or soft when only soft is set."""
        return self.bytes_hard if self.bytes_hard is not None else self.bytes_soft

    @property
    def files_limit(self) -> int | None:
        return self.files_hard if self.files_hard is not None else self.files_soft

    @property
    def bytes_free(self) -> int | None:
        """Bytes left before the hard limit (soft when no hard); None: unlimited."""
        limit = self.bytes_limit
        return None if limit is None else max(0, limit - self.bytes_used)

    @property
    def files_free(self) -> int | None:
        limit = self.files_limit
        return None if limit is None else max(0, limit - self.files_used)

    @property
    def over_soft(self) -> bool:
        """Usage above a soft limit: writes still work until the grace runs out."""
        return (self.bytes_soft is not None and self.bytes_used > self.bytes_soft) or (
            self.files_soft is not None and self.files_used > self.files_soft
        )

    @property
    def over_hard(self) -> bool:
        """Usage at or above a hard limit: writes fail now."""
        return (self.bytes_hard is not None and self.bytes_used >= self.bytes_hard) or (
            self.files_hard is not None and self.files_used >= self.files_hard
        )

    @property
    def over_quota(self) -> bool:
        return self.over_soft or self.over_hard

    @property
    def has_limits(self) -> bool:
        return any(
            v is not None for v in (self.bytes_soft, self.bytes_hard, self.files_soft, self.files_hard)
        )


# --------------------------------------------------------------------------
# numbers


def _limit(value: int) -> int | None:
    """0 means "no limit" in every one of these tools."""
    return value if value > 0 else None


_BINARY = {"": 1, "B": 1, "K": KIB, "M": KIB**2, "G": KIB**3, "T": KIB**4, "P": KIB**5, "E": KIB**6}
_DECIMAL = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15}
# ASCII digits only: re's \d also takes other scripts' digits, which no tool prints.
_NUMBER = re.compile(r"^(?P<num>[0-9]+(?:\.[0-9]+)?(?:e[+-]?[0-9]+)?)(?P<unit>[A-Za-z]?)$")


def _clean(token: str) -> str:
    """Drop the over-quota ``*`` and the inaccurate-value ``[...]`` (lfs, quota)."""
    token = token.strip().rstrip("*")
    if token.startswith("[") and token.endswith("]"):
        token = token[1:-1]
    return token.rstrip("*")


#: No filesystem counts past 64-bit KiB blocks or inodes; a larger number is
#: not a reading (and would overflow the float arithmetic of the verdict).
MAX_VALUE = 2**80


def _scaled(number: str, scale: int, what: str, token: str) -> int:
    """``number`` (digits, a decimal or ``1.5e3``) times ``scale``, as an int.

    Raises ValueError, never OverflowError: ``1e400`` is infinite as a float,
    and a value above :data:`MAX_VALUE` is no filesystem's.
    """
    try:
        if number.isdigit():
            value = int(number) * scale  # int() refuses > 4300 digits with ValueError
        else:
            product = float(number) * scale
            if not math.isfinite(product):
                raise ValueError(f"{what}: {token!r} is not a finite number")
            value = int(round(product))
    except OverflowError:  # defensive: float() of a huge decimal string
        raise ValueError(f"{what}: {token!r} is out of range") from None
    if not 0 <= value <= MAX_VALUE:
        raise ValueError(f"{what}: {token!r} is out of range")
    return value


def _kib_size(token: str, what: str) -> int:
    """A size in 1 KiB blocks, or with a binary unit (``3.547M``, ``0k``, ``100G``).

    lfs ``-h`` and quota ``-s`` both count from KiB: ``k``/``K`` is KiB, ``M``
    is MiB and so on; a bare number is a count of 1 KiB blocks.
    """
    match = _NUMBER.match(_clean(token))
    if not match:
        raise ValueError(f"{what}: {token!r} is not a size")
    unit = match["unit"].upper()
    if unit == "":
        return _scaled(match["num"], KIB, what, token)
    if unit not in _BINARY or unit == "B":
        raise ValueError(f"{what}: unknown unit in {token!r}")
    return _scaled(match["num"], _BINARY[unit], what, token)


def _count(token: str, what: str) -> int:
    """A file count, possibly with a decimal unit (quota ``-s``: ``400k``, ``5m``)."""
    match = _NUMBER.match(_clean(token).rstrip("+"))
    if not match:
        raise ValueError(f"{what}: {token!r} is not a file count")
    unit = match["unit"].upper()
    if unit not in _DECIMAL or unit == "B":
        raise ValueError(f"{what}: unknown unit in {token!r}")
    return _scaled(match["num"], _DECIMAL[unit], what, token)


def _looks_like_size(token: str) -> bool:
    return bool(_NUMBER.match(_clean(token)))


# --------------------------------------------------------------------------
# quota (quota-tools) and lfs quota: the same table shape

_TITLE = re.compile(r"^Disk quotas for (?P<kind>\w+) (?P<name>.*?) \((?P<idkind>\w+) (?P<id>\d+)\):(?P<tag>.*)$")
# Lines lfs prints around its table; they carry no numbers we need.
_LFS_NOTES = (
    re.compile(r"^[ugp]id \d+ is using default (block|file) quota setting$"),
    re.compile(r"^Some errors happened when getting quota info"),
    re.compile(r"^Total allocated inode limit"),
    re.compile(r"^(Block|Inode) grace time"),
)
_USER_KINDS = {"user", "usr"}


def _is_header(tokens: list[str]) -> bool:
    return len(tokens) >= 5 and tokens[0] == "Filesystem" and "quota" in tokens and "limit" in tokens


def _table_rows(text: str, tool: str) -> list[tuple[str, str, list[str]]]:
    """(kind, filesystem, value tokens) for each row; kind is "" before any title.

    A filesystem name longer than 15 characters sits alone on its line and the
    numbers follow on the next one (quota without ``-w``; lfs always).
    """
    rows: list[tuple[str, str, list[str]]] = []
    kind = ""
    pending: str | None = None
    saw_table = False
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        title = _TITLE.match(line)
        if title:
            kind = title["kind"].lower()
            saw_table = True
            tag = title["tag"].strip()
            if tag and tag not in ("none", "no limited resources used"):
                raise ValueError(f"{tool}: unexpected text after the title: {tag!r}")
            pending = None
            continue
        tokens = line.split()
        if _is_header(tokens):
            saw_table = True
            continue
        if tool == "lfs" and any(p.match(line) for p in _LFS_NOTES):
            continue
        if pending is not None:
            rows.append((kind, pending, tokens))
            pending = None
            continue
        if len(tokens) == 1:
            pending = tokens[0]
            continue
        rows.append((kind, tokens[0], tokens[1:]))
    if pending is not None:
        raise ValueError(f"{tool}: filesystem {pending!r} has no numbers after it")
    if not saw_table and not rows:
        raise ValueError(f"{tool}: no quota table in the text")
    return rows


def _keep_user_rows(rows: list[tuple[str, QuotaEntry]]) -> list[QuotaEntry]:
    """The user's own rows when there are any, otherwise every row (see module doc)."""
    mine = [entry for kind, entry in rows if kind in _USER_KINDS]
    return mine if mine else [entry for _, entry in rows]


def _quota_values(fs: str, values: list[str]) -> QuotaEntry:
    """One quota-tools row: used soft hard [grace] files soft hard [grace].

    A grace column is blank unless that resource is over its soft limit,
    except with ``-p`` where it is always a number (0 when not in grace). So a
    row has 6, 7 or 8 values; with 7 the grace belongs to whichever side is
    not a plain size at position 3.
    """
    n = len(values)
    if n == 8:
        block, files = values[0:3], values[4:7]
    elif n == 6:
        block, files = values[0:3], values[3:6]
    elif n == 7:
        if not _looks_like_size(values[3]):
            block, files = values[0:3], values[4:7]
        else:
            block, files = values[0:3], values[3:6]
    else:
        raise ValueError(f"quota: row for {fs!r} has {n} values, expected 6 to 8")
    return QuotaEntry(
        filesystem=fs,
        bytes_used=_kib_size(block[0], "quota"),
        bytes_soft=_limit(_kib_size(block[1], "quota")),
        bytes_hard=_limit(_kib_size(block[2], "quota")),
        files_used=_count(files[0], "quota"),
        files_soft=_limit(_count(files[1], "quota")),
        files_hard=_limit(_count(files[2], "quota")),
    )


def _parse_quota(text: str) -> list[QuotaEntry]:
    rows = _table_rows(text, "quota")
    return _keep_user_rows([(kind, _quota_values(fs, values)) for kind, fs, values in rows])


def _lfs_values(fs: str, values: list[str]) -> QuotaEntry:
    """One lfs row: used soft hard grace files soft hard grace (grace ``-`` when none)."""
    if len(values) != 8:
        raise ValueError(f"lfs: row for {fs!r} has {len(values)} values, expected 8")
    return QuotaEntry(
        filesystem=fs,
        bytes_used=_kib_size(values[0], "lfs"),
        bytes_soft=_limit(_kib_size(values[1], "lfs")),
        bytes_hard=_limit(_kib_size(values[2], "lfs")),
        files_used=_count(values[4], "lfs"),
        files_soft=_limit(_count(values[5], "lfs")),
        files_hard=_limit(_count(values[6], "lfs")),
    )


def _parse_lfs(text: str) -> list[QuotaEntry]:
    rows = []
    for kind, fs, values in _table_rows(text, "lfs"):
        # `lfs quota -v` adds one row per MDT/OST (named ...-OST0003_UUID) with
        # "-" in the columns it does not track; the totals row is the answer.
        if fs.endswith("_UUID"):
            continue
        rows.append((kind, _lfs_values(fs, values)))
    return _keep_user_rows(rows)


# --------------------------------------------------------------------------
# mmlsquota (GPFS / Spectrum Scale)

_GPFS_REQUIRED = (
    "filesystemname",
    "quotatype",
    "blockusage",
    "blockquota",
    "blocklimit",
    "filesusage",
    "filesquota",
    "fileslimit",
)
_GPFS_KINDS = {"USR": "user", "GRP": "group", "FILESET": "fileset"}


def _int_field(row: dict[str, str], key: str, scale: int = 1) -> int:
    value = row.get(key, "").strip()
    if not re.fullmatch(r"[0-9]+", value):
        raise ValueError(f"mmlsquota: {key} is {value!r}, not a number")
    return _scaled(value, scale, "mmlsquota", value)


def _parse_mmlsquota_y(text: str) -> list[QuotaEntry]:
    """``-Y``: colon-separated, a HEADER row names the columns (the set varies by
    release, some spell them in lower case), values in KiB, text percent-encoded.
    """
    headers: dict[str, list[str]] = {}
    rows: list[tuple[str, QuotaEntry]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if not line.startswith("mmlsquota:"):
            # Diagnostics ("No quota enabled file system found.") are not rows.
            raise ValueError(f"mmlsquota: unexpected line {line[:60]!r}")
        fields = line.split(":")
        if len(fields) < 3:
            raise ValueError(f"mmlsquota: short line {line[:60]!r}")
        section = fields[1]
        if fields[2] == "HEADER":
            headers[section] = [f.lower() for f in fields]
            missing = [k for k in _GPFS_REQUIRED if k not in headers[section]]
            if missing:
                raise ValueError(f"mmlsquota: header lacks {', '.join(missing)}")
            continue
        names = headers.get(section)
        if names is None:
            raise ValueError("mmlsquota: data row before its HEADER row")
        row = {name: unquote(value) for name, value in zip(names, fields)}  # shorter rows: checked below
        short = [k for k in _GPFS_REQUIRED if k not in row]
        if short:
            # A row shorter than its HEADER (a cut line) lacks these columns.
            raise ValueError(f"mmlsquota: row without {', '.join(short)}: {line[:60]!r}")
        qtype = row["quotatype"].strip().upper()
        entry = QuotaEntry(
            filesystem=row["filesystemname"],
            bytes_used=_int_field(row, "blockusage", KIB),
            bytes_soft=_limit(_int_field(row, "blockquota", KIB)),
            bytes_hard=_limit(_int_field(row, "blocklimit", KIB)),
            files_used=_int_field(row, "filesusage"),
            files_soft=_limit(_int_field(row, "filesquota")),
            files_hard=_limit(_int_field(row, "fileslimit")),
        )
        rows.append((_GPFS_KINDS.get(qtype, qtype.lower()), entry))
    if not headers:
        raise ValueError("mmlsquota: no HEADER row (is this -Y output?)")
    return _keep_user_rows(rows)


_GPFS_UNITS = {"KB": KIB, "MB": KIB**2, "GB": KIB**3, "TB": KIB**4, "PB": KIB**5}


def _gpfs_size(token: str, unit: int | None) -> int:
    """A size column: in the header's unit, or with a suffix (``--block-size auto``)."""
    if unit is not None and re.fullmatch(r"[0-9]+", token):
        return _scaled(token, unit, "mmlsquota", token)
    return _kib_size(token, "mmlsquota")


def _parse_mmlsquota_human(text: str) -> list[QuotaEntry]:
    """The table form: ``Filesystem [Fileset] type KB|blocks quota limit in_doubt
    grace | files quota limit in_doubt grace Remarks``; a row may read ``no limits``.
    """
    unit: int | None = None
    type_col: int | None = None
    rows: list[tuple[str, QuotaEntry]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("Block Limits"):
            continue
        tokens = line.split()
        if tokens[0] == "Filesystem" and "|" in line:
            left = line.split("|", 1)[0].split()
            if "type" not in left or len(left) < left.index("type") + 4:
                raise ValueError("mmlsquota: header has no type/usage columns")
            type_col = left.index("type")
            unit_name = left[type_col + 1]
            # "blocks" means --block-size auto: every value carries its unit.
            unit = None if unit_name == "blocks" else _GPFS_UNITS.get(unit_name.upper())
            if unit is None and unit_name != "blocks":
                raise ValueError(f"mmlsquota: unknown block unit {unit_name!r}")
            continue
        if type_col is None:
            raise ValueError(f"mmlsquota: unexpected line {line[:60]!r}")
        if len(tokens) <= type_col:
            raise ValueError(f"mmlsquota: short row {line[:60]!r}")
        qtype = tokens[type_col].upper()
        kind = _GPFS_KINDS.get(qtype)
        if kind is None:
            raise ValueError(f"mmlsquota: unknown quota type {tokens[type_col]!r}")
        fs = tokens[0]
        rest = " ".join(tokens[type_col + 1 :])
        if rest.lower().startswith("no limits"):
            # Nothing limits this user here; usage is not printed, and nothing
            # is compared against it without a limit.
            rows.append((kind, QuotaEntry(fs, 0, None, None, 0, None, None)))
            continue
        if "|" not in line:
            raise ValueError(f"mmlsquota: row without the File Limits part: {line[:60]!r}")
        left_part, right_part = line.split("|", 1)
        block = left_part.split()[type_col + 1 : type_col + 4]
        files = right_part.split()[:3]
        if len(block) < 3 or len(files) < 3:
            raise ValueError(f"mmlsquota: short row {line[:60]!r}")
        rows.append(
            (
                kind,
                QuotaEntry(
                    filesystem=fs,
                    bytes_used=_gpfs_size(block[0], unit),
                    bytes_soft=_limit(_gpfs_size(block[1], unit)),
                    bytes_hard=_limit(_gpfs_size(block[2], unit)),
                    files_used=_count(files[0], "mmlsquota"),
                    files_soft=_limit(_count(files[1], "mmlsquota")),
                    files_hard=_limit(_count(files[2], "mmlsquota")),
                ),
            )
        )
    if type_col is None:
        raise ValueError("mmlsquota: no 'Filesystem ... | files' header")
    return _keep_user_rows(rows)


def _parse_mmlsquota(text: str) -> list[QuotaEntry]:
    if any(line.startswith("mmlsquota:") for line in text.splitlines()):
        return _parse_mmlsquota_y(text)
    return _parse_mmlsquota_human(text)


# --------------------------------------------------------------------------
# beegfs-ctl --getquota

_POOL = re.compile(r"^Quota information for storage pool (?P<name>.+?) \(ID: (?P<id>\d+)\):$")
_BEEGFS_CSV_HEADER = "name,id,size,hard,files,hard"
_BEEGFS_UNITS = {
    "byte": 1, "b": 1,
    "kib": KIB, "mib": KIB**2, "gib": KIB**3, "tib": KIB**4, "pib": KIB**5, "eib": KIB**6,
    # old releases print KB/MB/... but still count in 1024s
    "kb": KIB, "mb": KIB**2, "gb": KIB**3, "tb": KIB**4, "pb": KIB**5, "eb": KIB**6,
}  # fmt: skip


def _beegfs_bytes(token: str, table: bool) -> int | None:
    """A size: bytes in --csv, ``601.03 GiB`` in the table; None for unlimited."""
    token = token.strip()
    if token.lower() == "unlimited":
        return None
    if not table:
        if not re.fullmatch(r"[0-9]+", token):
            raise ValueError(f"beegfs: {token!r} is not a byte count")
        return _scaled(token, 1, "beegfs", token)
    match = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]+)", token)
    if not match or match[2].lower() not in _BEEGFS_UNITS:
        raise ValueError(f"beegfs: {token!r} is not a size")
    return _scaled(match[1], _BEEGFS_UNITS[match[2].lower()], "beegfs", token)


def _beegfs_files(token: str) -> int | None:
    """Chunk files; ``-`` when the storage targets cannot count inodes (→ 0),
    ``N+`` when only some can (a lower bound)."""
    token = token.strip()
    if token.lower() == "unlimited":
        return None
    if token == "-":
        return 0
    if not re.fullmatch(r"[0-9]+\+?", token):
        raise ValueError(f"beegfs: {token!r} is not a file count")
    return _scaled(token.rstrip("+"), 1, "beegfs", token)


def _parse_beegfs(text: str) -> list[QuotaEntry]:
    """``--csv`` (bytes) or the plain table; one block per storage pool.

    BeeGFS has only hard limits, so the soft fields stay None. The
    filesystem field names the storage pool (``Default``), or ``beegfs`` when
    the release prints no pool line.
    """
    entries: list[QuotaEntry] = []
    pool = "beegfs"
    mode: str | None = None  # "csv" or "table" once a header was seen
    saw_header = False
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        match = _POOL.match(line)
        if match:
            pool, mode = match["name"], None
            continue
        if line.replace(" ", "") == _BEEGFS_CSV_HEADER:
            mode, saw_header = "csv", True
            continue
        if "user/group" in line and "||" in line:
            mode, saw_header = "table", True
            continue
        if mode == "table" and (set(line) <= set("-|") or line.replace(" ", "").startswith("name|id||")):
            continue
        if mode == "csv":
            fields = line.split(",")
            if len(fields) != 6:
                raise ValueError(f"beegfs: csv row has {len(fields)} fields: {line[:60]!r}")
            size, size_hard, files, files_hard = fields[2], fields[3], fields[4], fields[5]
            table = False
        elif mode == "table":
            parts = line.split("||")
            if len(parts) != 3:
                raise ValueError(f"beegfs: unexpected table row {line[:60]!r}")
            size_cells, file_cells = parts[1].split("|"), parts[2].split("|")
            if len(size_cells) != 2 or len(file_cells) != 2:
                raise ValueError(f"beegfs: unexpected table row {line[:60]!r}")
            (size, size_hard), (files, files_hard) = size_cells, file_cells
            table = True
        else:
            raise ValueError(f"beegfs: unexpected line {line[:60]!r}")
        used = _beegfs_bytes(size, table)
        files_used = _beegfs_files(files)
        if used is None or files_used is None:
            raise ValueError(f"beegfs: usage reads 'unlimited' in {line[:60]!r}")
        hard = _beegfs_bytes(size_hard, table)
        fhard = _beegfs_files(files_hard)
        entries.append(
            QuotaEntry(
                filesystem=pool,
                bytes_used=used,
                bytes_soft=None,
                bytes_hard=None if hard is None else _limit(hard),
                files_used=files_used,
                files_soft=None,
                files_hard=None if fhard is None else _limit(fhard),
            )
        )
    if not saw_header:
        raise ValueError("beegfs: no quota header (name,id,size,hard,files,hard)")
    return entries


_PARSERS = {
    "quota": _parse_quota,
    "lfs": _parse_lfs,
    "mmlsquota": _parse_mmlsquota,
    "beegfs": _parse_beegfs,
}


def parse(tool: str, text: str) -> list[QuotaEntry]:
    """Parse the output of ``tool`` (one of :data:`TOOLS`) into quota entries.

    An empty list means the tool answered "no limits" (quota's ``none``). Text
    that is not that tool's output raises :class:`ValueError` with a reason.
    The exit status is not the parser's business: ``quota`` exits 1 when the
    user is over quota and its table is still the answer.
    """
    try:
        parser = _PARSERS[tool]
    except KeyError:
        raise ValueError(f"unknown quota tool {tool!r}; expected one of {', '.join(TOOLS)}") from None
    if not text or not text.strip():
        raise ValueError(f"{tool}: empty output")
    return parser(text)


# --------------------------------------------------------------------------
# probing a runner


@dataclass(frozen=True)
class SiteOutput:
    """What a site's own quota wrapper printed, shown as-is (formats differ per site)."""

    program: str
    returncode: int | None
    text: str


@dataclass(frozen=True)
class QuotaReport:
    """What the quota probe found for one path.

    ``entries`` are the rows that apply to the path's filesystem (all rows
    when the tool's names cannot be matched to it). ``checked`` is False when
    no tool gave a readable answer; ``warnings`` say why, and ``raw`` holds
    the tool's own text for display.
    """

    path: str
    fstype: str | None = None
    mount: str | None = None
    tool: str | None = None
    command: tuple[str, ...] = ()
    entries: tuple[QuotaEntry, ...] = ()
    checked: bool = False
    warnings: tuple[str, ...] = ()
    raw: str = ""
    site_outputs: tuple[SiteOutput, ...] = field(default_factory=tuple)

    @property
    def over_quota(self) -> bool:
        return any(e.over_quota for e in self.entries)

    @property
    def bytes_free(self) -> int | None:
        """The smallest byte headroom of any applicable entry; None: no limit known."""
        values = [e.bytes_free for e in self.entries if e.bytes_free is not None]
        return min(values) if values else None

    @property
    def files_free(self) -> int | None:
        values = [e.files_free for e in self.entries if e.files_free is not None]
        return min(values) if values else None


def _normal_fstype(fstype: str | None) -> str:
    fstype = (fstype or "").lower()
    if fstype in ("fhgfs", "beegfs") or fstype.startswith("beegfs"):
        return "beegfs"
    if fstype.startswith("lustre"):
        return "lustre"
    if fstype in ("gpfs", "mmfs"):
        return "gpfs"
    return fstype


def quota_command(fstype: str | None, user: str, path: str, mount: str | None = None) -> tuple[str, tuple[str, ...]]:
    """(parser name, argv) of the quota tool for a filesystem type.

    Flags: ``lfs quota -u USER PATH`` prints KiB (exact, unlike ``-h``);
    ``mmlsquota -u USER -Y`` is the machine-readable form; ``beegfs-ctl
    --getquota --uid USER --csv`` prints bytes, ``--mount`` picks the BeeGFS
    instance holding the path; ``quota -w -p -u USER`` never wraps a row and
    always fills both grace columns, so rows have a fixed shape, and ``-v``
    lists filesystems where the user stores nothing yet (the data root is
    often such a place), so the path's own row is there to be found.
    """
    kind = _normal_fstype(fstype)
    if kind == "lustre":
        return "lfs", ("lfs", "quota", "-u", user, path)
    if kind == "gpfs":
        return "mmlsquota", ("mmlsquota", "-u", user, "-Y")
    if kind == "beegfs":
        argv = ["beegfs-ctl", "--getquota", "--uid", user, "--csv"]
        if mount:
            argv.append(f"--mount={mount}")
        return "beegfs", tuple(argv)
    return "quota", ("quota", "-v", "-w", "-p", "-u", user)


def _current_user(runner: Runner) -> str | None:
    try:
        result = runner.run(["id", "-un"], timeout=10, env={"LC_ALL": "C"})
    except (CommandFailed, OSError):
        return None
    name = result.stdout.strip()
    return name if result.ok and name else None


def _show(result_text: str, limit: int = 4000) -> str:
    return result_text if len(result_text) <= limit else result_text[:limit] + "\n[...]"


def _applicable(
    entries: list[QuotaEntry], parser: str, mount: str | None, device: str | None
) -> tuple[list[QuotaEntry], str | None]:
    """Rows that concern the path's filesystem, and a warning when none does.

    lfs and beegfs-ctl were asked about the path itself. quota and mmlsquota
    list every filesystem with a quota: keep the rows named after the path's
    device or mount point. When none matches, the path's filesystem has no
    quota for this user (or names differ, e.g. NFSv4 paths): applying another
    filesystem's limit would block for nothing, so none is applied and the
    report says so; the raw text stays available for display.
    """
    if parser in ("lfs", "beegfs") or not entries or not (mount or device):
        return entries, None
    names = {n for n in (mount, device) if n}
    if device:
        # df shows a GPFS device as "gpfs1" or "/dev/gpfs1".
        names.add(device.rsplit("/", 1)[-1])
    matching = [e for e in entries if e.filesystem in names]
    if matching:
        return matching, None
    listed = ", ".join(sorted({e.filesystem for e in entries}))
    where = device or mount
    return [], f"{parser} lists no quota for {where} (only for {listed}); assuming none applies there"


def _run_site_wrappers(runner: Runner, timeout: float) -> tuple[SiteOutput, ...]:
    outputs = []
    for program in SITE_WRAPPERS:
        if not runner.which(program):
            continue
        try:
            result = runner.run([program], timeout=timeout, env={"LC_ALL": "C"})
        except (CommandFailed, OSError) as exc:
            outputs.append(SiteOutput(program, None, str(exc)))
            continue
        text = (result.stdout + ("\n" + result.stderr if result.stderr.strip() else "")).strip()
        outputs.append(SiteOutput(program, result.returncode, _show(text)))
    return tuple(outputs)


def probe_quota(
    runner: Runner,
    path: str,
    user: str | None = None,
    *,
    free: FreeSpace | None = None,
    timeout: float = QUOTA_TIMEOUT,
    site_wrappers: bool = True,
) -> QuotaReport:
    """Ask the quota tool of the filesystem holding ``path``; never raises.

    ``free`` is a :class:`hpcwizard.checks.freespace.FreeSpace` already measured for
    ``path`` (saves a ``df``); without it the probe measures one itself.
    """
    try:
        return _probe_quota(runner, path, user, free=free, timeout=timeout, site_wrappers=site_wrappers)
    except Exception as exc:  # noqa: BLE001 - the promise: a report, whatever broke
        # Expected failures are warnings below already; this is a bug (or a
        # runner failing in a way nobody foresaw), and still must not end
        # the preflight with a traceback.
        return QuotaReport(path=path, warnings=(f"quota not checked: {type(exc).__name__}: {exc}",))


def _probe_quota(
    runner: Runner,
    path: str,
    user: str | None,
    *,
    free: FreeSpace | None,
    timeout: float,
    site_wrappers: bool,
) -> QuotaReport:
    warnings: list[str] = []
    if free is None:
        try:
            free = free_space(runner, path)
        except (OSError, ValueError, CommandFailed) as exc:
            warnings.append(f"could not tell which filesystem holds {path}: {exc}")
            free = None
    fstype = getattr(free, "fstype", None)
    mount = getattr(free, "mount", None)
    device = getattr(free, "device", None)
    existing = getattr(free, "existing", None) or path
    sites = _run_site_wrappers(runner, min(timeout, WRAPPER_TIMEOUT)) if site_wrappers else ()
    base: dict[str, Any] = dict(path=path, fstype=fstype, mount=mount, site_outputs=sites)  # every report's start

    if user is None:
        user = _current_user(runner)
    if not user:
        warnings.append("could not tell the user name (`id -un` failed); quota not checked")
        return QuotaReport(**base, warnings=tuple(warnings))

    parser, argv = quota_command(fstype, user, existing, mount)
    program = argv[0]
    found = runner.which(program)
    if not found and program == "mmlsquota":
        found = runner.which(GPFS_BIN)
    if not found:
        # Said once: the row already names the filesystem ("quota on /: not checked: ...").
        warnings.append(f"no {program} command on this host")
        return QuotaReport(**base, tool=parser, command=argv, warnings=tuple(warnings))
    argv = (found,) + argv[1:] if program == "mmlsquota" else argv

    try:
        result = runner.run(argv, timeout=timeout, env={"LC_ALL": "C"})
    except CommandFailed as exc:  # includes CommandTimeout
        warnings.append(f"{program} did not answer: {exc.one_line()}")
        return QuotaReport(**base, tool=parser, command=argv, warnings=tuple(warnings))
    except OSError as exc:  # a transport (SSH) failure must not end the preflight
        warnings.append(f"{program} could not be run: {exc}")
        return QuotaReport(**base, tool=parser, command=argv, warnings=tuple(warnings))

    raw = result.stdout + (("\n" + result.stderr) if result.stderr.strip() else "")
    try:
        entries = parse(parser, result.stdout)
    except ValueError as exc:
        detail = result.stderr.strip().splitlines()
        if result.ok:
            warnings.append(f"{program} output not understood: {exc}")
        else:
            why = detail[-1] if detail else str(exc)
            warnings.append(f"{program} failed (exit status {result.returncode}): {why}")
        return QuotaReport(**base, tool=parser, command=argv, warnings=tuple(warnings), raw=_show(raw))
    if not result.ok and not entries:
        # quota exits 1 when over quota, with a table; an error without one
        # (no rquotad, permission denied) is not an answer.
        detail = (result.stderr.strip() or result.stdout.strip()).splitlines()
        why = detail[-1] if detail else f"exit status {result.returncode}"
        warnings.append(f"{program} failed: {why}")
        return QuotaReport(**base, tool=parser, command=argv, warnings=tuple(warnings), raw=_show(raw))

    applicable, unmatched = _applicable(entries, parser, mount, device)
    if unmatched:
        warnings.append(unmatched)
    return QuotaReport(
        **base,
        tool=parser,
        command=argv,
        entries=tuple(applicable),
        checked=True,
        warnings=tuple(warnings),
        raw=_show(raw),
    )

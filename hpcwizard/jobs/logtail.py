"""Follow Slurm log files cheaply, however big they grow.

Training jobs write ``logs/%x-%j.out`` / ``.err`` that reach several GB. The
dashboard must open one in milliseconds and follow it for days, so nothing
here ever reads a whole file: we keep byte offsets, read the end backwards in
small chunks to open, then read only what was appended (``os.pread``, the
toolong approach). Each call is synchronous and meant to run in a worker
thread; nothing here imports Textual.

Files are reached through a :class:`FileSource` (``stat`` + ``read_at``) so the
same follower works over SFTP later: a paramiko version is ``sftp.stat`` and
``file.seek`` + ``file.read`` in twenty lines.

Text rules, applied per complete line only (so a multibyte UTF-8 character or
an ANSI colour sequence split across two reads is never cut in half):

* bytes are decoded as UTF-8 with ``errors="replace"``;
* a line holding carriage returns (a tqdm bar redrawn in place) keeps only its
  final state, the last non-empty ``\\r`` segment;
* lines redrawn from below, as a terminal shows them (:class:`TerminalRows`):
  tqdm's nested bars (a validation bar under the training bar) write each
  update as ``\\n`` + bar + cursor-up (``ESC[A``), one line per update in a
  file (millions in a long training); the rows they redraw are kept back a
  moment and shown once, in their last state;
* ANSI SGR colour sequences stay as they are (the TUI feeds lines to
  ``rich.text.Text.from_ansi``); :func:`strip_ansi` removes them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

# Opening reads backwards in small chunks: 200 lines of a training log are
# ~20-40 KB, so one or two reads usually suffice.
BACKWARD_CHUNK = 64 * 1024
# Following and searching read forwards in bigger chunks: fewer syscalls (and
# SFTP round trips) per megabyte.
FORWARD_CHUNK = 1024 * 1024
# One poll never returns more than this; beyond it we jump to the tail and say
# how much was skipped (a runaway job can append 500 MB between two polls).
DEFAULT_MAX_TAIL_BYTES = 4 * 1024 * 1024
# A "line" longer than this (binary junk, a giant JSON dump) is cut so the
# held partial line cannot grow without bound.
DEFAULT_MAX_LINE_BYTES = 1024 * 1024
# How far back :meth:`LogFollower.last_markers` looks for a line that is
# printed rarely (a training segment or stage starting): a bound, so a log
# without such a line is never read whole to find that out.
MARKER_SCAN_BYTES = 8 * 1024 * 1024


# --------------------------------------------------------------------------
# File sources


@dataclass(frozen=True)
class FileStat:
    """What the follower needs to know about a file, without reading it.

    ``identity`` tells "same file" from "a new file at the same path"
    (``(st_dev, st_ino)`` locally). A source that cannot tell (some SFTP
    servers) returns ``None`` and rotation is then simply not detected.
    """

    size: int
    identity: object | None
    mtime: float


class FileSource(Protocol):
    """A readable file somewhere (local disk now, an SFTP server later)."""

    def stat(self) -> FileStat:
        """Current size and identity; raises FileNotFoundError if absent."""
        ...

    def read_at(self, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes at ``offset`` (fewer at end of file)."""
        ...


class LocalFileSource:
    """A local file read with ``os.pread``: no shared file position, so a
    search in one thread and a poll in another cannot disturb each other.

    The descriptor stays open between reads (cheap polls) and is reopened
    when :meth:`stat` sees a different file at the path (rotation, or a
    requeued job recreating its log).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._fd: int | None = None
        self._fd_identity: tuple[int, int] | None = None

    def stat(self) -> FileStat:
        st = os.stat(self.path)
        identity = (st.st_dev, st.st_ino)
        if self._fd is not None and identity != self._fd_identity:
            self.close()
        return FileStat(size=st.st_size, identity=identity, mtime=st.st_mtime)

    def read_at(self, offset: int, length: int) -> bytes:
        if self._fd is None:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            st = os.fstat(fd)
            self._fd, self._fd_identity = fd, (st.st_dev, st.st_ino)
        return os.pread(self._fd, length, offset)

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def __enter__(self) -> LocalFileSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # a forgotten follower must not leak descriptors
        try:
            self.close()
        except Exception:
            pass


# --------------------------------------------------------------------------
# Text helpers

# CSI sequences (colours, cursor moves), OSC sequences (titles, hyperlinks)
# and the two-byte escapes; what a terminal would swallow.
_ANSI_RE = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"
    r"|\x1b[@-Z\\-_]"
)
_SGR_RE = re.compile(r"\x1b\[([0-9;:]*)m")
# An escape sequence that has started but not finished at the end of a text.
_INCOMPLETE_ANSI_TAIL = re.compile(r"\x1b(?:\[[0-?]*[ -/]*|\][^\x07\x1b]*)?\Z")


def strip_ansi(text: str) -> str:
    """``text`` without ANSI escape sequences (for search and triage)."""
    if "\x1b" not in text:
        return text
    return _ANSI_RE.sub("", text)


def collapse_cr(text: str) -> str:
    """The final state of a line redrawn with carriage returns.

    tqdm writes ``\\r`` + bar on every update; a terminal shows only the last
    one. We keep the last non-empty segment (so ``"done\\r"`` and Windows
    ``"\\r\\n"`` endings keep their text).
    """
    if "\r" not in text:
        return text
    for segment in reversed(text.split("\r")):
        if segment:
            return segment
    return ""


@dataclass(frozen=True)
class AnsiSpan:
    """A run of text and the SGR parameters in force for it (``"1;31"``)."""

    text: str
    sgr: str


def ansi_spans(text: str) -> list[AnsiSpan]:
    """Split ``text`` into runs of equal SGR state, other escapes dropped.

    Deliberately uninterpreted (the TUI uses Rich's own ANSI decoder); this is
    for plain consumers such as an HTML export or tests. A reset (``0`` or an
    empty parameter list) clears the state; other codes accumulate.
    """
    spans: list[AnsiSpan] = []
    active: list[str] = []
    pos = 0
    for match in _SGR_RE.finditer(text):
        chunk = strip_ansi(text[pos : match.start()])
        if chunk:
            spans.append(AnsiSpan(chunk, ";".join(active)))
        for param in re.split(r"[;:]", match.group(1)):
            if param in ("", "0"):  # ESC[m and ESC[0m both reset
                active = []
            else:
                active.append(param)
        pos = match.end()
    rest = strip_ansi(text[pos:])
    if rest:
        spans.append(AnsiSpan(rest, ";".join(active)))
    return spans


def _utf8_complete_prefix(data: bytes) -> int:
    """Length of ``data`` without a trailing, still incomplete UTF-8 char."""
    # Look at most 3 bytes back for the lead byte of the last character.
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 == 0x80:  # continuation byte: keep looking
            continue
        if byte < 0x80:
            return len(data)
        needed = 2 if byte >> 5 == 0b110 else 3 if byte >> 4 == 0b1110 else 4 if byte >> 3 == 0b11110 else 1
        return len(data) if back >= needed else len(data) - back
    return len(data)


# Cursor movements a progress display uses to redraw lines above: tqdm's
# nested bars write ESC[A (and "\n" to come back down); rich and pip use
# ESC[nA and ESC[nF. ESC[K / ESC[2K erase (to the end of) the line.
_CURSOR_UP = re.compile(r"\x1b\[(\d*)[AF]")
_CURSOR_UP_BYTES = re.compile(rb"\x1b\[\d*[AF]")
_ERASE_LINE = re.compile(r"\x1b\[[0-2]?K")
#: Rows a redraw may reach above the cursor, at most (tqdm draws at most 20).
MAX_REDRAWN_ROWS = 20
#: Lines without a cursor-up after which rows kept back are final again (a
#: validation bar every few hundred steps keeps the training bar's row back).
CALM_LINES = 1000


class TerminalRows:
    """Lines as a terminal leaves them, for logs that redraw lines above.

    Fed complete lines (their text with escapes, their byte range), it
    writes them on rows the way a terminal would (``\\r`` back to the
    start, ``ESC[nA`` up, the newline down, ``ESC[K`` erases) and gives out
    a row once no redraw can reach it any more: rows within the deepest
    cursor-up seen so far are kept back (while redraws go on), so a nested
    bar's thousand updates become its one last state. Lines that never move
    the cursor up go straight through (``collapse_cr``), unchanged.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.rows: list[list] = []  # [offset, text] kept back; the cursor row among them
        self.cursor = 0
        self.depth = 0
        self.calm = 0

    def feed(self, text: str, offset: int, end: int, lines: list[str], offsets: list[int]) -> None:
        """One complete line (``text`` without its newline) at ``offset``;
        ``end`` is where the next line starts. Rows that became final are
        appended to ``lines``/``offsets``."""
        moves = "\x1b[" in text and _CURSOR_UP.search(text) is not None
        if not self.rows and not moves:
            lines.append(collapse_cr(text))
            offsets.append(offset)
            return
        if not self.rows:
            self.rows, self.cursor = [[offset, ""]], 0
        self._write_moving(text)
        self.calm = 0 if moves else self.calm + 1
        self.cursor += 1  # the newline
        if self.cursor == len(self.rows):
            self.rows.append([end, ""])
        keep = self.depth if self.calm < CALM_LINES else 0
        self._give_out(self.cursor - keep, lines, offsets)
        if not keep and self.cursor == len(self.rows) - 1 and not self.rows[-1][1]:
            self.reset()  # calm again: straight through

    def flush(self, lines: list[str], offsets: list[int]) -> None:
        """Give out every row kept back (the end of a read)."""
        rows = self.rows
        if rows and not rows[-1][1] and self.cursor == len(rows) - 1:
            rows = rows[:-1]  # the empty row after the last newline
        for offset, text in rows:
            lines.append(text.rstrip())
            offsets.append(offset)
        self.reset()

    def preview(self, text: str) -> str | None:
        """The rows kept back, with ``text`` (an unfinished line) written at
        the cursor, on one line: what the panel shows under the last full line."""
        if not self.rows and not ("\x1b[" in text and _CURSOR_UP.search(text)):
            return collapse_cr(text) or None
        saved = ([row[:] for row in self.rows], self.cursor, self.depth)
        if not self.rows:
            self.rows, self.cursor = [[0, ""]], 0
        self._write_moving(text)
        shown = " · ".join(text.strip() for _, text in self.rows if text.strip())
        self.rows, self.cursor, self.depth = saved
        return shown or None

    def _write_moving(self, text: str) -> None:
        pieces = _CURSOR_UP.split(text)  # text, count, text, count, text...
        self._write(pieces[0])
        for index in range(1, len(pieces), 2):
            up = min(int(pieces[index] or 1), MAX_REDRAWN_ROWS)
            self.depth = max(self.depth, up)
            self.cursor = max(0, self.cursor - up)  # rows already given out stay as they are
            self._write(pieces[index + 1])

    def _write(self, piece: str) -> None:
        if not piece:
            return
        row = self.rows[self.cursor]
        text, column = row[1], 0
        for number, segment in enumerate(piece.split("\r")):
            if number:
                column = 0
            for part_number, part in enumerate(_ERASE_LINE.split(segment)):
                if part_number:
                    text = text[:column]
                text = text[:column] + part + text[column + len(part):]
                column += len(part)
        row[1] = text

    def _give_out(self, upto: int, lines: list[str], offsets: list[int]) -> None:
        if upto <= 0:
            return
        for offset, text in self.rows[:upto]:
            lines.append(text.rstrip())
            offsets.append(offset)
        del self.rows[:upto]
        self.cursor -= upto


def decode_line(raw: bytes) -> str:
    """One complete line (without its ``\\n``) as display text."""
    return collapse_cr(raw.decode("utf-8", errors="replace"))


def _keep_last_cr_state(buf: bytes | bytearray) -> bytes | bytearray:
    """Drop the part of an unfinished line that carriage returns overwrote.

    A tqdm bar in a ``.err`` file is one "line" that may grow for days
    without a newline; holding only its last state keeps memory flat.
    """
    # A cursor-up moves to another row: what came before it is not overwritten.
    moved = [match.end() for match in _CURSOR_UP_BYTES.finditer(buf)] if b"\x1b[" in buf else []
    start = moved[-1] if moved else 0
    end = len(buf)
    while end > start and buf[end - 1] == 0x0D:  # trailing \r: keep the segment before
        end -= 1
    cut = buf.rfind(b"\r", start, end)
    return buf[:start] + buf[cut + 1 :] if cut >= 0 else buf


# --------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class LogLine:
    """One complete line and the byte offset where it starts."""

    offset: int
    text: str


@dataclass(frozen=True)
class LogUpdate:
    """What changed since the previous poll.

    ``lines`` and ``line_offsets`` are parallel lists (the offsets let the
    panel jump back to a line later). ``partial`` is the unfinished last line
    (a live progress bar) or None; it is repeated on every poll until its
    newline arrives, then shows up in ``lines``.
    """

    lines: list[str] = field(default_factory=list)
    line_offsets: list[int] = field(default_factory=list)
    partial: str | None = None
    missing: bool = False  # no file yet: a pending job, not an error
    truncated: bool = False  # the file shrank; we restarted from byte 0
    rotated: bool = False  # another file now lives at the path; reopened
    skipped_bytes: int = 0  # bytes jumped over because too much arrived at once
    size: int = 0  # file size seen by this poll
    offset: int = 0  # bytes consumed (== size unless the file grew meanwhile)
    first_line_no: int | None = None  # 1-based number of lines[0], if known

    @property
    def changed(self) -> bool:
        return bool(self.lines or self.truncated or self.rotated or self.skipped_bytes)


@dataclass(frozen=True)
class SearchMatch:
    """A search hit: the matching line, where it starts, and the match span
    within the displayed text (ANSI stripped, ``\\r`` collapsed)."""

    offset: int
    end_offset: int  # offset just after the line's newline: resume from here
    text: str
    span: tuple[int, int]


@dataclass(frozen=True)
class LineMarker:
    """A kind of line to find with :meth:`LogFollower.last_markers`: a regex
    on the displayed text and a literal (bytes) that every such line holds."""

    pattern: re.Pattern[str]
    needle: bytes


# --------------------------------------------------------------------------
# The follower


class LogFollower:
    """Open the tail of a log, then return what gets appended, poll by poll.

    Not thread-safe: one worker owns a follower. :meth:`search` and the
    ``read_*`` methods do not touch the follow state, so they may run on a
    second follower over the same path.
    """

    def __init__(
        self,
        source: FileSource,
        *,
        max_tail_bytes: int = DEFAULT_MAX_TAIL_BYTES,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        chunk_size: int = FORWARD_CHUNK,
    ) -> None:
        if max_tail_bytes <= 0 or max_line_bytes <= 0 or chunk_size <= 0:
            raise ValueError("byte limits must be positive")
        self.source = source
        self.max_tail_bytes = max_tail_bytes
        self.max_line_bytes = max_line_bytes
        self.chunk_size = chunk_size
        self._identity: object | None = None
        self._offset = 0  # next byte to read
        self._line_start = 0  # where the held partial line starts
        self._partial = bytearray()  # unfinished last line (\r-compacted)
        self._line_no: int | None = 0  # complete lines before _line_start, if known
        self._missing = False
        self._rows = TerminalRows()  # lines redrawn from below, kept back until final

    # -- state ---------------------------------------------------------------

    @property
    def offset(self) -> int:
        """Bytes of the file consumed so far."""
        return self._offset

    @property
    def partial(self) -> str | None:
        """The unfinished last line as display text, or None."""
        if not self._partial and not self._rows.rows:
            return None
        raw = bytes(self._partial)
        raw = raw[: _utf8_complete_prefix(raw)]
        # With the rows kept back (nested bars), as they stand now.
        text = self._rows.preview(raw.decode("utf-8", errors="replace")) or ""
        # A colour sequence cut by the end of the data would print as junk.
        return _INCOMPLETE_ANSI_TAIL.sub("", text) or None

    def _restart(self, offset: int, line_no: int | None) -> None:
        self._offset = self._line_start = offset
        self._partial = bytearray()
        self._line_no = line_no
        self._rows.reset()

    def close(self) -> None:
        close = getattr(self.source, "close", None)
        if close is not None:
            close()

    # -- opening -------------------------------------------------------------

    def open_tail(self, lines: int = 200) -> list[str]:
        """The last ``lines`` complete lines; following continues after them."""
        return self.open_tail_update(lines).lines

    def open_tail_update(self, lines: int = 200) -> LogUpdate:
        """:meth:`open_tail` with offsets, the partial line and the flags."""
        try:
            st = self.source.stat()
        except FileNotFoundError:
            self._identity, self._missing = None, True
            self._restart(0, 0)
            return LogUpdate(missing=True)
        self._identity, self._missing = st.identity, False
        # As a terminal shows them: redrawn rows once, the last ones kept
        # back. Nested bars redraw ~25 raw lines per shown one: read further
        # back (within the byte budget) until ``lines`` show.
        wanted = lines
        for _ in range(4):
            found, start, tail, complete = _read_lines_backward(
                self.source, st.size, wanted, budget=self.max_tail_bytes, chunk=BACKWARD_CHUNK, decode=_raw_text
            )
            self._rows.reset()
            shown: list[str] = []
            shown_offsets: list[int] = []
            for number, line in enumerate(found):
                end = found[number + 1].offset if number + 1 < len(found) else st.size - len(tail)
                self._rows.feed(line.text, line.offset, end, shown, shown_offsets)
            have = len(shown) + len(self._rows.rows)
            if have >= lines or len(found) < wanted or start == 0:
                break
            # As many raw lines per shown one as this read had, and a margin.
            wanted = max(wanted * 2, int(len(found) * lines / max(have, 1) * 1.5))
        if len(shown) > lines:
            shown, shown_offsets = shown[-lines:], shown_offsets[-lines:]
        # Lines are numbered only when the read reached the first byte (a
        # short file); counting the newlines of a big one would mean reading it.
        line_no: int | None = None
        first_no: int | None = None
        if start == 0:
            line_no = complete
            first_no = complete - len(found) + 1 if found and len(shown) == len(found) else None
        self._offset = st.size
        self._line_start = st.size - len(tail)
        self._partial = bytearray(_keep_last_cr_state(tail))
        self._line_no = line_no
        self._settle(shown, shown_offsets)
        self._cap_partial([], [])  # a giant unterminated tail is cut like any line
        return LogUpdate(
            lines=shown,
            line_offsets=shown_offsets,
            partial=self.partial,
            size=st.size,
            offset=st.size,
            first_line_no=first_no,
        )

    # -- following -----------------------------------------------------------

    def poll(self) -> LogUpdate:
        """Complete lines appended since the last call, plus what happened."""
        try:
            st = self.source.stat()
        except FileNotFoundError:
            # Pending job (or log deleted): keep quiet and wait for it.
            self._missing = True
            return LogUpdate(missing=True, offset=self._offset)
        rotated = truncated = False
        came_back = self._missing and self._identity is not None
        if came_back or (self._identity is not None and st.identity is not None and st.identity != self._identity):
            # A new file: read it from its start. One that reappears after
            # vanishing is new even if the filesystem reused the inode.
            rotated = True
            self._restart(0, 0)
        elif st.size < self._offset:
            truncated = True  # e.g. a requeued job reopening its log with O_TRUNC
            self._restart(0, 0)
        self._identity, self._missing = st.identity, False

        lines: list[str] = []
        offsets: list[int] = []
        first_line_no = None if self._line_no is None else self._line_no + 1
        skipped = 0
        end = st.size
        pos = self._offset
        if end - pos > self.max_tail_bytes:
            # Too much at once: show the newest max_tail_bytes, starting at a
            # line boundary, and report the jump.
            jump_to = end - self.max_tail_bytes
            skipped = jump_to - pos
            self._restart(jump_to, None)
            first_line_no = None
            pos, skipped = self._skip_to_line_start(jump_to, end, skipped)
        quiet = pos >= end
        while pos < end:
            chunk = self.source.read_at(pos, min(self.chunk_size, end - pos))
            if not chunk:  # shrank under our feet; the next poll will see it
                break
            self._take(chunk, pos, lines, offsets)
            pos += len(chunk)
            self._offset = pos
        if quiet:
            self._settle(lines, offsets)
        if not lines:
            first_line_no = None
        return LogUpdate(
            lines=lines,
            line_offsets=offsets,
            partial=self.partial,
            truncated=truncated,
            rotated=rotated,
            skipped_bytes=skipped,
            size=st.size,
            offset=self._offset,
            first_line_no=first_line_no,
        )

    def _skip_to_line_start(self, pos: int, end: int, skipped: int) -> tuple[int, int]:
        """Move past the line fragment at ``pos`` after a jump.

        If the whole window holds no newline (a tqdm bar redrawn for hours
        with ``\\r`` only), nothing is skipped: its last state still shows.
        """
        probe = pos
        while probe < end:
            chunk = self.source.read_at(probe, min(self.chunk_size, end - probe))
            if not chunk:
                break
            newline = chunk.find(b"\n")
            if newline >= 0:
                resume = probe + newline + 1
                self._restart(resume, None)
                return resume, skipped + (resume - pos)
            probe += len(chunk)
        return pos, skipped

    def _take(self, data: bytes, data_offset: int, lines: list[str], offsets: list[int]) -> None:
        """Split freshly read bytes into complete lines; hold the remainder."""
        parts = data.split(b"\n")
        if len(parts) > 1:
            first = bytes(self._partial) + parts[0] if self._partial else parts[0]
            self._emit(first, self._line_start, lines, offsets)
            pos = data_offset + len(parts[0]) + 1
            for raw in parts[1:-1]:
                self._emit(raw, pos, lines, offsets)
                pos += len(raw) + 1
            self._partial = bytearray(parts[-1])
            self._line_start = pos
        else:
            self._partial += data
        if b"\r" in self._partial:
            self._partial = bytearray(_keep_last_cr_state(self._partial))
        self._cap_partial(lines, offsets)

    def _cap_partial(self, lines: list[str], offsets: list[int]) -> None:
        """Cut an unterminated line that outgrew ``max_line_bytes``."""
        while len(self._partial) > self.max_line_bytes:
            head = bytes(self._partial[: self.max_line_bytes])
            head = head[: _utf8_complete_prefix(head)] or head
            self._emit(head, self._line_start, lines, offsets)
            del self._partial[: len(head)]
            self._line_start += len(head)

    def _settle(self, lines: list[str], offsets: list[int]) -> None:
        """Nothing new, nothing half-written: the rows kept back for redraws
        are final (a finished log's last lines, the end marker among them)."""
        if self._rows.rows and not self._partial:
            before = len(lines)
            self._rows.flush(lines, offsets)
            if self._line_no is not None:
                self._line_no += len(lines) - before

    def _emit(self, raw: bytes, offset: int, lines: list[str], offsets: list[int]) -> None:
        before = len(lines)
        self._rows.feed(_raw_text(raw), offset, offset + len(raw) + 1, lines, offsets)
        if self._line_no is not None:
            self._line_no += len(lines) - before

    # -- random access (the panel's scrollback and "jump to") ----------------

    def read_lines(self, offset: int, count: int) -> list[LogLine]:
        """Up to ``count`` complete lines starting at the line containing
        ``offset``... precisely: at the first line starting at or after it."""
        size = self.source.stat().size
        start = _next_line_start(self.source, offset, size, self.chunk_size)
        rows = TerminalRows()  # as displayed: redrawn rows once
        lines: list[str] = []
        offsets: list[int] = []
        for line_offset, raw in _iter_lines_forward(
            self.source, start, size, self.chunk_size, self.max_line_bytes
        ):
            rows.feed(_raw_text(raw), line_offset, line_offset + len(raw) + 1, lines, offsets)
            if len(lines) >= count:
                break
        rows.flush(lines, offsets)
        return [LogLine(o, text) for o, text in zip(offsets[:count], lines[:count])]

    def read_lines_before(self, offset: int, count: int) -> list[LogLine]:
        """Up to ``count`` complete lines ending at or before ``offset``
        (scrolling up through the file without reading it whole)."""
        size = self.source.stat().size
        found, _, _, _ = _read_lines_backward(
            self.source, min(offset, size), count, budget=self.max_tail_bytes, chunk=BACKWARD_CHUNK,
            decode=_raw_text,
        )
        rows = TerminalRows()  # as displayed: redrawn rows once
        lines: list[str] = []
        offsets: list[int] = []
        for number, line in enumerate(found):
            end = found[number + 1].offset if number + 1 < len(found) else min(offset, size)
            rows.feed(line.text, line.offset, end, lines, offsets)
        rows.flush(lines, offsets)
        return [LogLine(o, text) for o, text in zip(offsets[-count:], lines[-count:])] if count > 0 else []

    # -- search --------------------------------------------------------------

    def search(
        self,
        pattern: str | re.Pattern[str],
        direction: Literal["forward", "backward"] = "forward",
        from_offset: int | None = None,
        *,
        ignore_case: bool = False,
        regex: bool = False,
        should_stop: Callable[[], bool] | None = None,
    ) -> SearchMatch | None:
        """The next line matching ``pattern``, in bounded memory.

        Forward: the first match among lines starting at or after
        ``from_offset`` (default: the start). Backward: the last match among
        lines starting before ``from_offset`` (default: the end). For "next"
        pass ``match.offset + 1``; for "previous" pass ``match.offset``.
        Lines are matched as displayed (ANSI stripped, ``\\r`` collapsed).
        ``should_stop`` lets a cancelled worker abandon a long scan.
        """
        compiled = _compile(pattern, ignore_case=ignore_case, regex=regex)
        prefilter = _bytes_prefilter(pattern, ignore_case=ignore_case, regex=regex)
        size = self.source.stat().size
        if direction == "forward":
            start = 0 if from_offset is None else max(0, min(from_offset, size))
            blocks = _line_blocks_forward(self.source, start, size, self.chunk_size, self.max_line_bytes)
            for block_offset, block in blocks:
                if should_stop is not None and should_stop():
                    return None
                hits = _match_block(block, block_offset, compiled, prefilter)
                if hits:
                    return hits[0]
            return None
        if direction != "backward":
            raise ValueError(f"direction must be 'forward' or 'backward', not {direction!r}")
        before = size if from_offset is None else max(0, min(from_offset, size))
        if before == 0:
            return None
        # Include the whole line that starts just before `before`.
        end = _line_end(self.source, before - 1, size, self.chunk_size, self.max_line_bytes)
        for block_offset, block in _line_blocks_backward(self.source, end, self.chunk_size):
            if should_stop is not None and should_stop():
                return None
            hits = [m for m in _match_block(block, block_offset, compiled, prefilter) if m.offset < before]
            if hits:
                return hits[-1]
        return None

    def last_markers(
        self,
        markers: Mapping[str, LineMarker],
        *,
        end: int | None = None,
        not_before: int = 0,
        max_bytes: int = MARKER_SCAN_BYTES,
    ) -> dict[str, SearchMatch]:
        """The last line matching each marker, in ONE bounded backward pass.

        Scans lines starting in ``[not_before, end)`` (``end`` defaults to
        the size), newest first, and stops once every marker was found or
        ``max_bytes`` were read: a marker printed further back than that is
        simply not found, however big the log. A marker's ``needle`` (a
        literal every matching line holds) rejects whole blocks at C speed.
        """
        size = self.source.stat().size
        end = size if end is None else max(0, min(end, size))
        found: dict[str, SearchMatch] = {}
        if end <= not_before:
            return found
        # Read from one byte before not_before: a newline there says a line starts at it.
        lowest = max(0, not_before - 1, end - max_bytes)
        # A last line without its newline is still being written: not a
        # marker yet (end_offset > end below), it may be cut.
        for block_offset, block in _line_blocks_backward(self.source, end, self.chunk_size, lowest):
            for name, marker in markers.items():
                if name in found or marker.needle not in block:
                    continue
                hits = [m for m in _match_block(block, block_offset, marker.pattern, None)
                        if m.offset >= not_before and m.end_offset <= end]
                if hits:
                    found[name] = hits[-1]
            if len(found) == len(markers):
                break
        return found


# --------------------------------------------------------------------------
# Chunked readers shared by opening, scrollback and search


def _raw_text(raw: bytes) -> str:
    """A line's text with its ``\\r`` and escapes, for :class:`TerminalRows`."""
    return raw.decode("utf-8", errors="replace")


def _read_lines_backward(
    source: FileSource, end: int, count: int, *, budget: int, chunk: int,
    decode: Callable[[bytes], str] = decode_line,
) -> tuple[list[LogLine], int, bytes, int]:
    """The last ``count`` complete lines of ``source[:end]``.

    Returns the lines, the offset of the first byte read, the unterminated
    tail after the last newline (the partial line) and the number of newlines
    read (all the file's complete lines when the offset is 0). Reads
    backwards until ``count + 1`` newlines were seen (the extra one proves the
    first line is whole), the file start, or ``budget`` bytes.
    """
    pieces: list[bytes] = []
    pos = end
    newlines = 0
    while pos > 0 and end - pos < budget:
        length = min(chunk, pos, budget - (end - pos))
        data = source.read_at(pos - length, length)
        if len(data) != length:  # truncated meanwhile: give what is whole
            break
        pos -= length
        pieces.append(data)
        newlines += data.count(b"\n")
        if newlines > count:
            break
    blob = b"".join(reversed(pieces))
    last_newline = blob.rfind(b"\n")
    if last_newline < 0:
        return [], pos, blob, 0
    parts = blob[:last_newline].split(b"\n")
    offsets = []
    at = pos
    for raw in parts:
        offsets.append(at)
        at += len(raw) + 1
    if pos > 0:  # the first part may be the end of a longer line
        parts, offsets = parts[1:], offsets[1:]
    if count <= 0:
        parts, offsets = [], []
    else:
        parts, offsets = parts[-count:], offsets[-count:]
    found = [LogLine(o, decode(raw)) for o, raw in zip(offsets, parts)]
    return found, pos, blob[last_newline + 1 :], newlines


def _next_line_start(source: FileSource, offset: int, size: int, chunk: int) -> int:
    """``offset`` if a line starts there, else the start of the next line."""
    if offset <= 0:
        return 0
    if offset >= size:
        return size
    if source.read_at(offset - 1, 1) == b"\n":
        return offset
    pos = offset
    while pos < size:
        data = source.read_at(pos, min(chunk, size - pos))
        if not data:
            break
        newline = data.find(b"\n")
        if newline >= 0:
            return pos + newline + 1
        pos += len(data)
    return size


def _line_end(source: FileSource, offset: int, size: int, chunk: int, max_line: int) -> int:
    """Offset just after the newline ending the line that holds ``offset``
    (or the file size for the last, unterminated line)."""
    pos = offset
    while pos < size and pos - offset <= max_line:
        data = source.read_at(pos, min(chunk, size - pos))
        if not data:
            break
        newline = data.find(b"\n")
        if newline >= 0:
            return pos + newline + 1
        pos += len(data)
    return min(pos, size)


def _line_blocks_forward(
    source: FileSource, start: int, size: int, chunk: int, max_line: int
):
    """Yield ``(offset, bytes)`` blocks of whole lines from the first line
    starting at or after ``start`` up to ``size``; the last block may end
    with an unterminated line. Memory: one chunk plus one line."""
    pos = _next_line_start(source, start, size, chunk)
    carry = b""
    carry_offset = pos
    while pos < size:
        data = source.read_at(pos, min(chunk, size - pos))
        if not data:
            break
        pos += len(data)
        buf = carry + data if carry else data
        cut = buf.rfind(b"\n") + 1
        if cut == 0 and len(buf) > max_line:
            cut = len(buf)  # a monster line: search it in pieces
        if cut:
            yield carry_offset, buf[:cut]
            carry, carry_offset = buf[cut:], carry_offset + cut
        else:
            carry = buf
    if carry:
        yield carry_offset, carry


def _line_blocks_backward(source: FileSource, end: int, chunk: int, lowest: int = 0):
    """Yield ``(offset, bytes)`` blocks of whole lines going backwards from
    ``end`` (which must be a line boundary) to the start of the file, or to
    ``lowest``: no byte before it is read, and the line it cuts is left out."""
    pos = end
    carry = b""  # start of a line whose beginning lies in an earlier chunk
    while pos > lowest:
        length = min(chunk, pos - lowest)
        pos -= length
        data = source.read_at(pos, length)
        buf = data + carry if carry else data
        if pos == 0:
            yield 0, buf
            return
        if pos <= lowest:
            newline = data.find(b"\n")
            if newline >= 0:
                yield pos + newline + 1, buf[newline + 1:]
            return
        # Only a newline in the new data starts a line: the carry ends with
        # the newline before it, which would cut nothing (an empty block
        # while the carry grew by a chunk per read, for ever, above a line
        # longer than a chunk: a sparse or binary log).
        first_newline = data.find(b"\n")
        if first_newline < 0 and len(buf) <= 4 * chunk:
            carry = buf
            continue
        cut = first_newline + 1 if first_newline >= 0 else len(buf) // 2
        yield pos + cut, buf[cut:]
        carry = buf[:cut]


def _iter_lines_forward(source: FileSource, start: int, size: int, chunk: int, max_line: int):
    """Yield ``(offset, raw line)`` for complete lines from ``start``."""
    for block_offset, block in _line_blocks_forward(source, start, size, chunk, max_line):
        at = block_offset
        parts = block.split(b"\n")
        for raw in parts[:-1]:
            yield at, raw
            at += len(raw) + 1


def _compile(pattern: str | re.Pattern[str], *, ignore_case: bool, regex: bool) -> re.Pattern[str]:
    if isinstance(pattern, re.Pattern):
        return pattern
    flags = re.IGNORECASE if ignore_case else 0
    return re.compile(pattern if regex else re.escape(pattern), flags)


# The same escapes as _ANSI_RE, on bytes, never crossing a line or a \r
# segment (the text version only ever sees one segment of one line).
_ANSI_BYTES_RE = re.compile(
    rb"\x1b\[[0-?]*[ -/]*[@-~]"
    rb"|\x1b\][^\x07\x1b\r\n]*(?:\x07|\x1b\\)"
    rb"|\x1b[@-Z\\-_]"
)
# Non-ASCII letters that Unicode case folding matches to ASCII ones, as
# UTF-8: Kelvin sign (k), long s (s), dotted and dotless I (i).
_ASCII_CASE_TWINS = {"k": (b"\xe2\x84\xaa",), "s": (b"\xc5\xbf",), "i": (b"\xc4\xb0", b"\xc4\xb1")}


@dataclass(frozen=True)
class _Prefilter:
    """Rejects whole chunks with plain substring scans (C speed, ~1 GB/s).

    Built only for literal searches of ASCII text, where a bytes needle finds
    exactly what the text pattern finds on UTF-8: a line's displayed text is
    one of its \r segments with escapes removed, so a match in it is a match
    in the block once escapes are removed there too (a search for
    "10:00 | INFO" must find it across a colour reset).
    """

    needle: bytes  # lower-cased when ignore_case
    ignore_case: bool
    twins: tuple[bytes, ...]  # UTF-8 of non-ASCII letters folding onto the needle's

    def rules_out(self, block: bytes) -> bool:
        if any(twin in block for twin in self.twins):
            return False
        hay = block.lower() if self.ignore_case else block  # bytes.lower is ASCII-only
        if self.needle in hay:
            return False
        if b"\x1b" not in hay:
            return True
        return self.needle not in _ANSI_BYTES_RE.sub(b"", hay)


def _bytes_prefilter(pattern: str | re.Pattern[str], *, ignore_case: bool, regex: bool) -> _Prefilter | None:
    if regex or not isinstance(pattern, str) or not pattern.isascii() or not pattern:
        return None  # \w, '.' and friends differ between bytes and text
    needle = pattern.encode("ascii")
    if not ignore_case:
        return _Prefilter(needle, False, ())
    lowered = needle.lower()
    twins = tuple(
        utf8 for letter, forms in _ASCII_CASE_TWINS.items() if letter.encode() in lowered for utf8 in forms
    )
    return _Prefilter(lowered, True, twins)


def _match_block(
    block: bytes, block_offset: int, compiled: re.Pattern[str], prefilter: _Prefilter | None
) -> list[SearchMatch]:
    """All matching lines in a block of whole lines."""
    if prefilter is not None and prefilter.rules_out(block):
        return []
    hits: list[SearchMatch] = []
    at = block_offset
    for raw in block.split(b"\n"):
        line_end = at + len(raw) + 1
        if raw:
            text = strip_ansi(decode_line(raw))
            found = compiled.search(text)
            if found is not None:
                hits.append(SearchMatch(at, line_end, text, found.span()))
        at = line_end
    return hits

"""LogFollower against real files, a real appending writer and big sparse files."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from hpcwizard.jobs.logtail import (
    AnsiSpan,
    FileStat,
    LocalFileSource,
    LogFollower,
    ansi_spans,
    collapse_cr,
    strip_ansi,
)


class CountingSource:
    """Wraps a source and counts the bytes actually read."""

    def __init__(self, inner: LocalFileSource) -> None:
        self.inner = inner
        self.bytes_read = 0
        self.reads = 0

    def stat(self) -> FileStat:
        return self.inner.stat()

    def read_at(self, offset: int, length: int) -> bytes:
        data = self.inner.read_at(offset, length)
        self.bytes_read += len(data)
        self.reads += 1
        return data

    def close(self) -> None:
        self.inner.close()


def follower(path: Path, **kwargs) -> LogFollower:
    return LogFollower(LocalFileSource(path), **kwargs)


def append(path: Path, data: bytes | str) -> None:
    with open(path, "ab") as fh:
        fh.write(data.encode() if isinstance(data, str) else data)


def test_missing_file_is_pending_then_followed(tmp_path: Path) -> None:
    log = tmp_path / "train-1.out"
    f = follower(log)
    assert f.open_tail(200) == []
    update = f.poll()
    assert update.missing and not update.lines and not update.changed
    log.write_text("starting\nepoch 1\n")
    update = f.poll()
    assert not update.missing
    assert update.lines == ["starting", "epoch 1"]
    assert update.line_offsets == [0, 9]
    assert update.first_line_no == 1
    assert f.poll().lines == []


def test_open_tail_returns_last_lines_and_follows_after_them(tmp_path: Path) -> None:
    log = tmp_path / "a.out"
    log.write_text("".join(f"line {i}\n" for i in range(1000)))
    f = follower(log)
    tail = f.open_tail(200)
    assert tail == [f"line {i}" for i in range(800, 1000)]
    assert f.poll().lines == []
    append(log, "line 1000\n")
    update = f.poll()
    assert update.lines == ["line 1000"]
    assert update.line_offsets == [log.stat().st_size - len("line 1000\n")]


def test_open_tail_on_short_file_and_line_numbers(tmp_path: Path) -> None:
    log = tmp_path / "a.out"
    log.write_text("a\nb\nc\n")
    f = follower(log)
    update = f.open_tail_update(2)
    assert update.lines == ["b", "c"]
    assert update.first_line_no == 2
    append(log, "d\n")
    assert f.poll().first_line_no == 4


def test_follows_a_real_writer(tmp_path: Path) -> None:
    log = tmp_path / "live.out"
    f = follower(log)
    f.open_tail()
    writer = subprocess.Popen(
        ["bash", "-c", 'for i in $(seq 1 40); do echo "line $i"; sleep 0.05; done >> "$1"', "_", str(log)]
    )
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 20
        while len(seen) < 40 and time.monotonic() < deadline:
            seen.extend(f.poll().lines)
            time.sleep(0.02)
    finally:
        writer.wait(timeout=20)
    seen.extend(f.poll().lines)
    assert seen == [f"line {i}" for i in range(1, 41)]


def test_partial_line_is_held_and_shown_until_completed(tmp_path: Path) -> None:
    log = tmp_path / "a.err"
    log.write_text("")
    f = follower(log)
    f.open_tail()
    append(log, "loading")
    update = f.poll()
    assert update.lines == [] and update.partial == "loading"
    assert f.poll().partial == "loading"  # still shown while nothing arrives
    append(log, " done\nnext")
    update = f.poll()
    assert update.lines == ["loading done"]
    assert update.line_offsets == [0]
    assert update.partial == "next"


def test_open_tail_keeps_the_trailing_partial(tmp_path: Path) -> None:
    log = tmp_path / "a.err"
    log.write_text("one\ntwo\n 50%|█████     | 5/10")
    f = follower(log)
    update = f.open_tail_update(10)
    assert update.lines == ["one", "two"]
    assert update.partial == " 50%|█████     | 5/10"
    append(log, "\n")
    assert f.poll().lines == [" 50%|█████     | 5/10"]


def test_truncation_restarts_from_zero(tmp_path: Path) -> None:
    log = tmp_path / "a.out"
    log.write_text("".join(f"old {i}\n" for i in range(50)))
    f = follower(log)
    f.open_tail(10)
    log.write_text("new 0\n")  # same inode, shorter (O_TRUNC)
    update = f.poll()
    assert update.truncated and not update.rotated
    assert update.lines == ["new 0"]
    assert update.first_line_no == 1


def test_rotation_reopens_the_new_file(tmp_path: Path) -> None:
    log = tmp_path / "a.out"
    log.write_text("old 1\nold 2\n")
    f = follower(log)
    f.open_tail()
    log.rename(tmp_path / "a.out.1")
    assert f.poll().missing
    log.write_text("fresh 1\nfresh 2\nfresh 3\n")  # longer than before: not a truncation
    update = f.poll()
    assert update.rotated and not update.truncated
    assert update.lines == ["fresh 1", "fresh 2", "fresh 3"]
    append(log, "fresh 4\n")
    assert f.poll().lines == ["fresh 4"]


def test_rotation_without_missing_window(tmp_path: Path) -> None:
    log = tmp_path / "a.out"
    log.write_text("old\n")
    f = follower(log)
    f.open_tail()
    replacement = tmp_path / "tmp"
    replacement.write_text("brand new\n")
    os.replace(replacement, log)
    update = f.poll()
    assert update.rotated and update.lines == ["brand new"]


def test_carriage_return_progress_keeps_final_state(tmp_path: Path) -> None:
    log = tmp_path / "a.err"
    log.write_bytes(b"")
    f = follower(log)
    f.open_tail()
    append(log, "\r 10%|#  | 1/10\r 20%|## | 2/10")
    assert f.poll().partial == " 20%|## | 2/10"
    append(log, "\r100%|###| 10/10\n")
    assert f.poll().lines == ["100%|###| 10/10"]
    append(log, "windows line\r\n")
    assert f.poll().lines == ["windows line"]


def test_endless_carriage_return_line_stays_small(tmp_path: Path) -> None:
    """A tqdm bar redrawn for hours without a newline must not pile up."""
    log = tmp_path / "a.err"
    log.write_bytes(b"")
    f = follower(log, max_line_bytes=4096)
    f.open_tail()
    for step in range(0, 20000, 1000):
        append(log, "".join(f"\rSteps: {i}/20000" for i in range(step, step + 1000)))
        update = f.poll()
        assert update.lines == []  # no forced cut: \r states were dropped
    assert update.partial == "Steps: 19999/20000"
    assert len(f._partial) < 100


def test_utf8_char_split_across_chunk_boundary(tmp_path: Path) -> None:
    log = tmp_path / "a.out"
    text = "ab€cd\nzé\n"  # € is 3 bytes: a chunk of 4 cuts it in the middle
    log.write_bytes(text.encode())
    f = follower(log, chunk_size=4)
    assert f.poll().lines == ["ab€cd", "zé"]
    # and between two polls: the writer flushed half a character
    raw = "naïve ✓\n".encode()
    cut = raw.index("✓".encode()) + 1
    append(log, raw[:cut])
    update = f.poll()
    assert update.lines == [] and update.partial == "naïve "
    append(log, raw[cut:])
    assert f.poll().lines == ["naïve ✓"]


def test_ansi_split_between_polls_is_never_decoded_half(tmp_path: Path) -> None:
    log = tmp_path / "a.out"
    log.write_bytes(b"")
    f = follower(log)
    f.open_tail()
    append(log, "\x1b[3")
    assert f.poll().partial is None  # nothing displayable yet
    append(log, "1mred\x1b[0m\n")
    assert f.poll().lines == ["\x1b[31mred\x1b[0m"]


def test_open_tail_backwards_with_tiny_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import hpcwizard.jobs.logtail as logtail

    monkeypatch.setattr(logtail, "BACKWARD_CHUNK", 7)
    log = tmp_path / "a.out"
    lines = [f"é{i}" * (i % 5 + 1) for i in range(100)]
    log.write_text("\n".join(lines) + "\n")
    assert follower(log).open_tail(30) == lines[-30:]


def test_big_append_jumps_to_tail_and_reports_skip(tmp_path: Path) -> None:
    log = tmp_path / "a.out"
    log.write_text("first\n")
    f = follower(log, max_tail_bytes=64 * 1024)
    f.open_tail()
    block = "".join(f"row {i:07d}\n" for i in range(100_000))  # 1.2 MB
    append(log, block)
    update = f.poll()
    total = len(block)
    assert update.skipped_bytes > total - 64 * 1024
    assert update.lines[-1] == "row 0099999"
    assert all(line.startswith("row ") and len(line) == 11 for line in update.lines)  # no fragment
    assert update.skipped_bytes + sum(len(x) + 1 for x in update.lines) == total
    assert update.first_line_no is None
    append(log, "after\n")
    assert f.poll().lines == ["after"]


def test_two_gigabyte_file_opens_without_reading_it(tmp_path: Path) -> None:
    log = tmp_path / "huge.out"
    size = 2 * 1024**3
    tail = "".join(f"step {i} loss 0.{i:04d}\n" for i in range(300)).encode()
    with open(log, "wb") as fh:  # sparse: costs no disk
        fh.truncate(size - len(tail))
        fh.seek(size - len(tail))
        fh.write(tail)
    source = CountingSource(LocalFileSource(log))
    f = LogFollower(source)
    lines = f.open_tail(200)
    assert lines == [f"step {i} loss 0.{i:04d}" for i in range(100, 300)]
    assert source.bytes_read < 1024 * 1024
    assert f.poll().lines == []
    assert source.bytes_read < 1024 * 1024
    # A follower that never opened the tail still caps one poll.
    source2 = CountingSource(LocalFileSource(log))
    g = LogFollower(source2, max_tail_bytes=256 * 1024)
    update = g.poll()
    assert update.skipped_bytes >= size - 256 * 1024
    assert update.lines[-1] == "step 299 loss 0.0299"
    assert source2.bytes_read < 1024 * 1024
    f.close()
    g.close()


def test_search_forward_backward_and_next(tmp_path: Path) -> None:
    log = tmp_path / "a.out"
    lines = [f"step {i}" for i in range(5000)]
    lines[10] = "\x1b[31mERROR\x1b[0m: disk"
    lines[3000] = "ERROR: again"
    lines[4990] = "Error: lower case"
    log.write_text("\n".join(lines) + "\n")
    f = follower(log, chunk_size=4096)  # many chunks
    first = f.search("ERROR")
    assert first is not None and first.text == "ERROR: disk" and first.span == (0, 5)
    assert f.read_lines(first.offset, 1)[0].text == "\x1b[31mERROR\x1b[0m: disk"
    second = f.search("ERROR", from_offset=first.offset + 1)
    assert second is not None and second.text == "ERROR: again"
    assert f.search("ERROR", from_offset=second.offset + 1) is None
    assert f.search("error", from_offset=second.offset + 1, ignore_case=True).text == "Error: lower case"
    last = f.search("ERROR", "backward")
    assert last is not None and last.offset == second.offset
    previous = f.search("ERROR", "backward", from_offset=last.offset)
    assert previous is not None and previous.offset == first.offset
    assert f.search("ERROR", "backward", from_offset=first.offset) is None
    assert f.search(r"step 49\d\d$", regex=True, from_offset=0).text == "step 4900"
    assert f.search("not there") is None
    # from the middle of a line: that line is not a candidate going forward
    assert f.search("step 11", from_offset=first.offset + 3).text == "step 11"


def test_search_with_tiny_chunks_is_exact(tmp_path: Path) -> None:
    log = tmp_path / "a.out"
    lines = [f"línea {i} {'x' * (i % 13)}" for i in range(400)]
    log.write_text("\n".join(lines) + "\n")
    f = follower(log, chunk_size=5)
    offsets = []
    at = None
    while (match := f.search("línea 3", from_offset=None if at is None else at + 1)) is not None:
        offsets.append(match.offset)
        at = match.offset
    expected = [m for m, text in zip(_offsets(lines), lines) if "línea 3" in text]
    assert offsets == expected
    backwards = []
    at = None
    while (match := f.search("línea 3", "backward", from_offset=at)) is not None:
        backwards.append(match.offset)
        at = match.offset
    assert backwards == expected[::-1]


def _offsets(lines: list[str]) -> list[int]:
    out, at = [], 0
    for line in lines:
        out.append(at)
        at += len(line.encode()) + 1
    return out


def test_read_lines_before_scrolls_back(tmp_path: Path) -> None:
    log = tmp_path / "a.out"
    lines = [f"l{i}" for i in range(100)]
    log.write_text("\n".join(lines) + "\n")
    f = follower(log)
    offsets = _offsets(lines)
    before = f.read_lines_before(offsets[50], 5)
    assert [x.text for x in before] == lines[45:50]
    assert [x.offset for x in before] == offsets[45:50]
    assert [x.text for x in f.read_lines(offsets[50] + 1, 2)] == ["l51", "l52"]


def test_text_helpers() -> None:
    assert strip_ansi("\x1b[1;31mred\x1b[0m plain \x1b]8;;http://x\x07link\x1b]8;;\x07") == "red plain link"
    assert collapse_cr("a\rb\rc") == "c"
    assert collapse_cr("done\r") == "done"
    assert collapse_cr("plain") == "plain"
    assert ansi_spans("a\x1b[1;31mb\x1b[32mc\x1b[0md") == [
        AnsiSpan("a", ""),
        AnsiSpan("b", "1;31"),
        AnsiSpan("c", "1;31;32"),
        AnsiSpan("d", ""),
    ]


def test_local_source_reports_missing_and_identity(tmp_path: Path) -> None:
    path = tmp_path / "x"
    source = LocalFileSource(path)
    with pytest.raises(FileNotFoundError):
        source.stat()
    path.write_bytes(b"hello")
    st = source.stat()
    assert st.size == 5 and st.identity is not None
    assert source.read_at(1, 3) == b"ell"
    assert source.read_at(10, 3) == b""
    source.close()


def test_search_sees_displayed_text(tmp_path: Path) -> None:
    """Matches across a colour reset, in a \\r-collapsed bar, and Unicode case
    folding all behave as on the displayed line (the fast byte prefilter must
    never hide them)."""
    log = tmp_path / "a.out"
    lines = ["filler"] * 50 + [
        "\x1b[32m10:00:00\x1b[0m | INFO | started",
        "old state\rnew state",
        "\u212aelvin temperature",
        "plain line",
    ]
    log.write_text("\n".join(lines) + "\n")
    f = follower(log, chunk_size=64)
    assert f.search("10:00:00 | INFO").text == "10:00:00 | INFO | started"
    assert f.search("INFO | STARTED", ignore_case=True) is not None
    assert f.search("new state").text == "new state"
    assert f.search("old state") is None  # overwritten by \r: not displayed
    assert f.search("kelvin", ignore_case=True).text == "\u212aelvin temperature"
    assert f.search("kelvin") is None
    assert f.search(re.compile("PLAIN", re.IGNORECASE)).text == "plain line"


def test_file_deleted_and_recreated_is_read_from_start(tmp_path: Path) -> None:
    log = tmp_path / "a.out"
    log.write_text("one\ntwo\n")
    f = follower(log)
    f.open_tail()
    log.unlink()
    assert f.poll().missing
    log.write_text("first\nsecond\nthird\n")  # the inode may well be reused
    update = f.poll()
    assert update.rotated and update.lines == ["first", "second", "third"]


def test_last_markers_finds_each_newest_line_in_one_bounded_backward_pass(tmp_path: Path) -> None:
    from hpcwizard.jobs.logtail import LineMarker

    markers = {
        "segment": LineMarker(re.compile(r"\[hpcwizard\] segment \d"), b"[hpcwizard] segment "),
        "stage": LineMarker(re.compile(r"^\[[^\]]*\] stage \d+$"), b"] stage "),
    }
    log = tmp_path / "train.out"
    lines = ["[t] [hpcwizard] segment 1 of ~3, starting", "[t] stage 1"]
    lines += [f"Steps: {i}/5000 loss=0.1" for i in range(3000)]
    lines += ["[t] [hpcwizard] segment 2 of ~3, resumed from checkpoint-3000"]
    lines += [f"Steps: {i}/5000 loss=0.1" for i in range(3000, 5000)]
    log.write_text("\n".join(lines) + "\n[t] stage 2")  # a stage line still being written
    source = CountingSource(LocalFileSource(log))
    found = LogFollower(source, chunk_size=4096).last_markers(markers)
    assert found["segment"].text.endswith("segment 2 of ~3, resumed from checkpoint-3000")
    assert found["stage"].text == "[t] stage 1"  # the unfinished "stage 2" line is no marker yet
    assert log.read_bytes()[found["stage"].offset:].startswith(b"[t] stage 1\n")
    # Bounded: a budget that does not reach the first lines finds only what it reached.
    source.bytes_read = 0
    near = LogFollower(source, chunk_size=4096).last_markers(markers, max_bytes=60_000)
    assert set(near) == {"segment"} and source.bytes_read < 60_000 + 2 * 4096
    # Only lines from not_before on; nothing at all in an empty range.
    after = LogFollower(source, chunk_size=4096).last_markers(markers, not_before=found["segment"].offset + 1)
    assert after == {}
    assert LogFollower(source).last_markers(markers, end=0) == {}


def test_backward_reads_end_above_a_line_longer_than_a_chunk(tmp_path: Path) -> None:
    """A line longer than a chunk above the lines read (a sparse or binary
    log) made the backward reader yield empty blocks for ever, its carry
    growing by a chunk per read: search and the marker scan never returned."""
    from hpcwizard.jobs.logtail import LineMarker

    log = tmp_path / "sparse.out"
    with open(log, "wb") as handle:
        handle.truncate(64 * 1024)  # no newline in 64 KB
    append(log, "\n[t] stage 1\nlast line\n")
    source = CountingSource(LocalFileSource(log))
    reader = LogFollower(source, chunk_size=1024)
    assert reader.search("last", "backward").text == "last line"
    assert reader.search("stage", "backward").text == "[t] stage 1"
    assert reader.search("nowhere", "backward") is None  # it ends
    source.bytes_read = 0
    markers = {"stage": LineMarker(re.compile(r"stage \d"), b"stage "),
               "other": LineMarker(re.compile("never"), b"never")}
    assert set(reader.last_markers(markers, max_bytes=8 * 1024)) == {"stage"}
    assert source.bytes_read <= 8 * 1024  # the budget is a bound on what is read

"""Triage: failure kinds, first occurrences, training progress and loss history."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpcwizard.jobs.logtail import LocalFileSource, LogFollower
from hpcwizard.jobs.triage import (
    Kind,
    LossHistory,
    SegmentEvent,
    Severity,
    TrainingProgress,
    Triage,
    classify_line,
    downsample,
    overall_progress,
    parse_progress,
    parse_segment_line,
    parse_stage_start,
)


@pytest.mark.parametrize(
    ("line", "kind"),
    [
        ("Traceback (most recent call last):", Kind.TRACEBACK),
        ("[rank3]: Traceback (most recent call last):", Kind.TRACEBACK),
        ("torch.cuda.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB", Kind.CUDA_OOM),
        ("RuntimeError: CUDA out of memory. Tried to allocate 20.00 MiB", Kind.CUDA_OOM),
        ("torch.distributed.DistBackendError: NCCL error in: ProcessGroupNCCL.cpp:1275", Kind.NCCL),
        ("RuntimeError: ncclInternalError: Internal check failed.", Kind.NCCL),
        ("node1:1234:1290 [0] NCCL WARN Call to connect returned Connection refused", Kind.NCCL),
        (
            "[Rank 0] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=1, OpType=ALLREDUCE)",
            Kind.NCCL,
        ),
        ("/var/spool/slurmd/job42/slurm_script: line 12:  4242 Killed    python train.py", Kind.OOM_KILL),
        ("Killed", Kind.OOM_KILL),
        ("slurmstepd: error: Detected 1 oom_kill event in StepId=42.batch.", Kind.OOM_KILL),
        ("[12345.6] Out Of Memory: Killed process 4242 (python)", Kind.OOM_KILL),
        ("kernel: python invoked oom-killer", Kind.OOM_KILL),
        (
            "slurmstepd: error: *** JOB 42 ON node1 CANCELLED AT 2024-05-01T10:00:00 DUE TO TIME LIMIT ***",
            Kind.TIME_LIMIT,
        ),
        ("slurmstepd: error: *** JOB 42 ON node1 CANCELLED AT 2024-05-01T10:00:00 ***", Kind.CANCELLED),
        ("2024-05-01 10:00:00 ERROR could not save checkpoint", Kind.ERROR),
        ("\x1b[31mError\x1b[0m: bad config value", Kind.ERROR),
        ("Steps:  12%|█▏  | 1200/10000 [10:00<1:13:20,  2.00it/s, loss=0.123]", None),
        ("no errors found, 0 killed processes", None),
        ("ValueError is raised when...", None),
    ],
)
def test_classify_line(line: str, kind: Kind | None) -> None:
    assert classify_line(line) is kind


TRACEBACK_LOG = """\
epoch 1
Traceback (most recent call last):
  File "train.py", line 10, in <module>
    main()
  File "train.py", line 5, in main
    loss.backward()

ValueError: bad shape (3, 4)
after
Traceback (most recent call last):
  File "train.py", line 12, in <module>
    step()
KeyError: 'x'

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "train.py", line 14, in <module>
    raise RuntimeError("boom")
torch.cuda.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB
"""


def test_traceback_and_final_exception_line() -> None:
    t = Triage()
    t.feed_lines(TRACEBACK_LOG.splitlines())
    assert t.counts[Kind.TRACEBACK] == 3
    assert t.counts[Kind.EXCEPTION] == 3
    assert t.first[Kind.EXCEPTION].text == "ValueError: bad shape (3, 4)"
    assert t.last_exception is not None
    assert t.last_exception.text.startswith("torch.cuda.OutOfMemoryError")
    assert t.counts[Kind.CUDA_OOM] == 1
    assert Kind.ERROR not in t.counts  # "main()" and "after" are not exception lines


def test_indented_or_unrelated_lines_are_not_exceptions() -> None:
    t = Triage()
    t.feed_lines(["Traceback (most recent call last):", "  File 'x', line 1", "    ok = 1", "[rank1]: frame"])
    assert Kind.EXCEPTION not in t.counts
    t.feed_lines(["Exception: later"])  # the traceback ended with the previous line
    assert Kind.EXCEPTION not in t.counts
    t.feed_lines(["Traceback (most recent call last):", '  File "x", line 1', "KeyboardInterrupt"])
    assert t.counts[Kind.EXCEPTION] == 1


def test_rank_prefixed_traceback() -> None:
    t = Triage()
    t.feed_lines(
        [
            "[rank0]: Traceback (most recent call last):",
            '[rank0]:   File "train.py", line 3, in <module>',
            "[rank0]: RuntimeError: NCCL error in: ProcessGroupNCCL.cpp",
        ]
    )
    assert t.counts == {Kind.TRACEBACK: 1, Kind.EXCEPTION: 1, Kind.NCCL: 1}


def test_first_occurrence_with_offsets_from_a_followed_file(tmp_path: Path) -> None:
    log = tmp_path / "job.err"
    lines = [
        "starting",
        "WARNING: Error rate high",  # low severity first
        "node1 NCCL WARN retrying",  # medium
        "ok",
        "Traceback (most recent call last):",
        '  File "a.py", line 1',
        "RuntimeError: boom",
        "Traceback (most recent call last):",
        "KeyError: 1",
    ]
    log.write_text("\n".join(lines) + "\n")
    follower = LogFollower(LocalFileSource(log))
    t = Triage()
    t.feed(follower.poll())
    first = t.first_error()
    assert first is not None and first.kind is Kind.TRACEBACK
    assert first.line_no == 5
    assert follower.read_lines(first.offset, 1)[0].text == "Traceback (most recent call last):"
    assert t.first_error(Severity.LOW).text == "WARNING: Error rate high"
    assert t.first_error(Severity.MEDIUM).kind is Kind.NCCL
    assert t.first[Kind.TRACEBACK].line_no == 5
    assert t.last[Kind.TRACEBACK].line_no == 8
    assert t.counts[Kind.TRACEBACK] == 2
    assert t.worst is Severity.HIGH
    # the log is replaced (requeue): triage starts over
    log.write_text("fresh\n")
    t.feed(follower.poll())
    assert t.counts == {} and t.first_error() is None


def test_tqdm_progress() -> None:
    sample = parse_progress("Steps:  12%|█▏  | 1200/10000 [10:00<1:13:20,  2.00it/s, loss=0.123, lr=1e-05]")
    assert sample is not None
    assert (sample.step, sample.max_steps, sample.loss, sample.rate_its) == (1200, 10000, 0.123, 2.0)
    assert sample.eta_seconds == 1 * 3600 + 13 * 60 + 20
    assert sample.bar == "Steps"


def test_tqdm_seconds_per_iteration_and_step_loss() -> None:
    sample = parse_progress("Steps:   1%|          | 12/1000 [01:00<1:22:20,  4.00s/it, step_loss=0.5, lr=1e-4]")
    assert sample is not None
    assert sample.rate_its == pytest.approx(0.25)
    assert sample.loss == 0.5
    assert sample.step == 12 and sample.max_steps == 1000


def test_tqdm_without_total_and_unit_scale() -> None:
    sample = parse_progress("Steps: 1200it [10:00,  2.00it/s, loss=0.1]")
    assert sample is not None and (sample.step, sample.max_steps, sample.loss) == (1200, None, 0.1)
    scaled = parse_progress("train: 50%|#####     | 1.2k/2.4k [00:10<00:10, 120.00it/s]")
    assert scaled is not None and (scaled.step, scaled.max_steps) == (1200, 2400)


def test_hf_trainer_dict_line() -> None:
    sample = parse_progress("{'loss': 0.1234, 'grad_norm': 1.5, 'learning_rate': 1e-05, 'epoch': 0.5}")
    assert sample is not None and sample.loss == 0.1234 and sample.epoch == 0.5
    quoted = parse_progress("{'loss': '0.4321', 'learning_rate': '1e-05', 'epoch': '1.0'}")
    assert quoted is not None and quoted.loss == 0.4321
    assert parse_progress("{'train_runtime': 100.0, 'train_loss': 0.2, 'epoch': 3.0}") is None


@pytest.mark.parametrize(
    ("line", "step", "max_steps", "loss"),
    [
        ("Step 1200/10000 loss 0.123", 1200, 10000, 0.123),
        ("step: 50/100, step_loss=0.25", 50, 100, 0.25),
        ("[rank0]: Step 7/70 | loss: 1.5e-02 | 3.00 it/s", 7, 70, 0.015),
        ("global_step=300 loss=nan", 300, None, float("nan")),
    ],
)
def test_free_form_progress(line: str, step: int, max_steps: int | None, loss: float) -> None:
    sample = parse_progress(line)
    assert sample is not None
    assert (sample.step, sample.max_steps) == (step, max_steps)
    assert sample.loss == pytest.approx(loss, nan_ok=True)


def test_lines_that_are_not_progress() -> None:
    for line in ["saving checkpoint at step 500", "loss_weight: 1.0", "Loading model", "eval_loss 0.3"]:
        assert parse_progress(line) is None, line


def test_eta_from_rate_when_not_printed() -> None:
    t = Triage()
    t.feed_line("Step 100/1000 loss 0.5 2.0 it/s")
    assert t.progress is not None
    assert t.progress.eta_seconds == pytest.approx(450.0)
    assert t.progress.fraction == pytest.approx(0.1)


def test_progress_merges_hf_bar_and_dict_lines() -> None:
    t = Triage()
    t.feed_partial(" 10%|█         | 100/1000 [00:50<07:30,  2.00it/s]")
    t.feed_line("{'loss': 0.9, 'learning_rate': 1e-05, 'epoch': 0.1}")
    t.feed_partial(" 20%|██        | 200/1000 [01:40<06:40,  2.00it/s]")
    assert t.progress is not None
    assert (t.progress.step, t.progress.max_steps, t.progress.loss, t.progress.epoch) == (200, 1000, 0.9, 0.1)
    assert t.progress.eta_seconds == 400
    assert t.counts == {}  # partial lines are never findings


def test_other_bars_do_not_hijack_training_progress() -> None:
    t = Triage()
    t.feed_line("Loading checkpoint shards: 100%|██████████| 3/3 [00:02<00:00,  1.20it/s]")
    t.feed_partial("Steps:   0%|          | 10/10000 [00:05<1:23:00,  2.00it/s, loss=1.0]")
    t.feed_line("Validation:  50%|█████     | 5/10 [00:01<00:01,  5.00it/s]")
    assert t.progress is not None and (t.progress.step, t.progress.max_steps) == (10, 10000)
    t.feed_partial("Steps:   0%|          | 20/10000 [00:10<1:23:00,  2.00it/s, loss=0.9]")
    assert t.progress.step == 20 and t.progress.loss == 0.9


def test_repeated_partial_does_not_repeat_history() -> None:
    t = Triage()
    bar = "Steps:   1%|          | 100/10000 [00:50<1:22:30,  2.00it/s, loss=0.5]"
    for _ in range(5):
        t.feed_partial(bar)
    t.feed_line(bar)
    assert t.losses.recent() == [0.5]


def test_loss_history_is_bounded_and_downsampled() -> None:
    history = LossHistory(capacity=16)
    for step in range(1000):
        history.add(float(step), step=step)
    history.add(float("nan"), step=1000)
    assert history.count == 1000 and history.non_finite == 1
    assert history.recent() == [float(v) for v in range(984, 1000)]
    overview = history.overview()
    assert len(overview) <= 17
    assert overview == sorted(overview)  # a rising series stays rising
    assert overview[0] < 100 and overview[-1] > 900  # covers the whole run
    assert len(history.sparkline_values(8)) == 8
    assert len(history.sparkline_values(8, whole_run=True)) == 8


def test_downsample() -> None:
    assert downsample([1.0, 2.0, 3.0], 5) == [1.0, 2.0, 3.0]
    assert downsample([1.0, 3.0, 5.0, 7.0], 2) == [2.0, 6.0]
    assert downsample([1.0], 0) == []


def test_the_demo_trainer_prints_a_real_remaining_time(tmp_path: Path):
    """It printed "<00:00" on every step, so the dashboard said "ETA 0:00"
    at 2%; now its lines carry tqdm's estimate, which parse_progress reads."""
    import subprocess
    import sys

    import hpcwizard.demo

    trainer = Path(hpcwizard.demo.__file__).parent / "code_base" / "train.py"
    (tmp_path / "frames").mkdir()
    (tmp_path / "frames" / "f.png").write_text("x")
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "config.json").write_text('{"model_type": "tiny"}')
    (tmp_path / "base" / "pytorch_model.bin").write_bytes(b"0" * 10)
    done = subprocess.run(
        [sys.executable, str(trainer), "--stage", "1", "--frames", str(tmp_path / "frames"),
         "--base-model", str(tmp_path / "base"), "--output-dir", str(tmp_path / "out"),
         "--max-steps", "5", "--seconds-per-step", "0.6", "--checkpointing-steps", "100"],
        capture_output=True, text=True, env={"HF_HUB_OFFLINE": "1"}, check=True, timeout=60)
    samples = [parse_progress(line) for line in done.stdout.splitlines() if "%|" in line]
    assert [s.step for s in samples] == [1, 2, 3, 4, 5] and all(s.max_steps == 5 for s in samples)
    # 4 steps of 0.6 s left after the first: about 2 s (tqdm's clock has whole seconds).
    assert samples[0].eta_seconds is not None and 1 <= samples[0].eta_seconds <= 3
    assert samples[-1].eta_seconds == 0
    assert all(s.rate_its is not None and 1.2 < s.rate_its < 1.8 for s in samples)


# --------------------------------------------------------------------------
# Segments and stages of a training that continues across its time limit


@pytest.mark.parametrize(
    ("line", "segment", "of", "event", "checkpoint"),
    [
        ("[hpcwizard] segment 1 of ~4, starting", 1, 4, SegmentEvent.STARTED, None),
        ("[2026-01-02 03:04:05] [hpcwizard] segment 2 of ~4, resumed from checkpoint-1400",
         2, 4, SegmentEvent.RESUMED, "checkpoint-1400"),
        ("[2026-01-02 03:04:05] [hpcwizard] segment 2 stopped at the time limit; requeued to continue from "
         "checkpoint-2800", 2, None, SegmentEvent.REQUEUED, "checkpoint-2800"),
        ("[hpcwizard] segment 3 saved no new checkpoint (still checkpoint-2800): not continuing",
         3, None, SegmentEvent.STOPPED, "checkpoint-2800"),
        ("\x1b[32m[hpcwizard] segment 12 of ~12, resumed from checkpoint-99.\x1b[0m",
         12, 12, SegmentEvent.RESUMED, "checkpoint-99"),
        ("[hpcwizard] segment 1 saved no new checkpoint (still no checkpoint): not continuing",
         1, None, SegmentEvent.STOPPED, None),
        ("[hpcwizard] segment 4 stopped at the time limit; train.segments allows 4: not continuing",
         4, None, SegmentEvent.STOPPED, None),
        ("[hpcwizard] segment 3 finished the training", 3, None, SegmentEvent.FINISHED, None),
        ("[hpcwizard] segment 3 did something new", 3, None, SegmentEvent.OTHER, None),
    ],
)
def test_segment_separators_are_read_anywhere_in_a_line(line, segment, of, event, checkpoint) -> None:
    mark = parse_segment_line(line)
    assert mark is not None
    assert (mark.segment, mark.of, mark.event, mark.checkpoint) == (segment, of, event, checkpoint)
    assert mark.text.startswith(f"segment {segment}")
    assert classify_line(line) is None  # a separator is no finding
    if event is SegmentEvent.STOPPED:
        assert mark.why_not_continuing == mark.text.removesuffix(": not continuing")
    else:
        assert mark.why_not_continuing is None


def test_lines_that_are_not_separators_or_stage_starts() -> None:
    for line in ["segment 2 of ~4, starting", "[hpcwizard] segments: auto", "Steps: 10/20 segment"]:
        assert parse_segment_line(line) is None, line
    assert parse_stage_start("[2026-01-02 03:04:05] stage 2") == 2
    assert parse_stage_start("[2026-01-02 03:04:05] stage 1: 1000 steps, nframes 10, 8 GPU(s)") == 1
    assert parse_stage_start("[2026-01-02 03:04:05] stage 1: resuming from checkpoint-400") == 1
    for line in ["[2026-01-02 03:04:05] stage 1 already trained and converted with these settings; skipping it",
                 "[2026-01-02 03:04:05] stage 1 not run (params.stages = stage2)",
                 "stage 2: 4 frames, base model tiny, steps 0->600", "stage 1 finished"]:
        assert parse_stage_start(line) is None, line


def test_slurms_requeue_note_is_not_a_cancellation() -> None:
    assert classify_line("slurmstepd: error: *** JOB 716 ON vm CANCELLED AT 2026-12-04T15:26:49 DUE TO JOB "
                         "REQUEUE ***") is None
    assert classify_line("slurmstepd: error: *** JOB 716 ON vm CANCELLED AT 2026-12-04T15:26:49 ***") is Kind.CANCELLED


def test_triage_follows_segments_and_stages_and_keeps_the_total_of_segments() -> None:
    t = Triage()
    t.feed_lines([
        "[2026-01-02 01:00:00] [hpcwizard] segment 1 of ~3, starting",
        "[2026-01-02 01:00:01] stage 1",
        "Steps:  50%|#####     | 300/600 [02:00<02:00,  2.50it/s, loss=0.1]",
        "[2026-01-02 01:02:00] [hpcwizard] segment 1 stopped at the time limit; requeued to continue from checkpoint-300",
    ])
    assert t.stage == 1 and t.segment is not None
    assert (t.segment.segment, t.segment.of, t.segment.waiting_for_next) == (1, 3, True)
    assert t.segment.of_text(t.segment.next_segment) == "segment 2 of ~3"
    t.feed_lines([
        "[2026-01-02 01:04:00] [hpcwizard] segment 2 of ~3, resumed from checkpoint-300",
        "[2026-01-02 01:04:00] stage 1",
        "Resuming from checkpoint /p/demo/stage1/checkpoint-300",
        "Steps: 100%|##########| 600/600 [02:00<00:00,  2.50it/s, loss=0.05]",
        "[2026-01-02 01:06:00] stage 2",
    ])
    assert t.stage == 2 and t.segment.event is SegmentEvent.RESUMED
    # A new stage counts from 0: the last stage's 600/600 is not this stage's.
    assert t.progress is not None and (t.progress.step, t.progress.max_steps, t.progress.eta_seconds) == (0, None, None)
    t.feed_line("Steps:  10%|#         | 60/600 [00:24<03:36,  2.50it/s, loss=0.2]")
    assert (t.progress.step, t.progress.max_steps) == (60, 600)
    # Past the estimate: no "segment 4 of ~3".
    t.feed_line("[hpcwizard] segment 4 of ~3, resumed from checkpoint-500")
    assert t.segment.of_text() == "segment 4"


def test_a_seeded_separator_gives_its_total_to_a_later_requeue_line() -> None:
    t = Triage()
    t.seed(parse_segment_line("[hpcwizard] segment 2 of ~5, resumed from checkpoint-10"), 2)
    t.feed_line("[hpcwizard] segment 2 stopped at the time limit; requeued to continue from checkpoint-20")
    assert t.stage == 2 and (t.segment.segment, t.segment.of, t.segment.checkpoint) == (2, 5, "checkpoint-20")
    # A seed never overrides what the lines said.
    t.seed(parse_segment_line("[hpcwizard] segment 1 of ~5, starting"), 1)
    assert t.segment.segment == 2 and t.stage == 2


def test_overall_progress_covers_every_stage() -> None:
    outline = [("stage 1", 600), ("stage 2", 600)]
    stage1 = TrainingProgress(step=300, max_steps=600, rate_its=2.0, eta_seconds=150.0)
    overall = overall_progress(outline, 1, stage1)
    assert overall is not None
    assert (overall.step, overall.total, overall.stage, overall.stages) == (300, 1200, 1, 2)
    assert overall.fraction == pytest.approx(0.25)
    assert overall.eta_seconds == pytest.approx(150 + 600 / 2.0)  # this stage's rest, then stage 2
    stage2 = TrainingProgress(step=60, max_steps=600, rate_its=2.0, eta_seconds=270.0)
    overall = overall_progress(outline, 2, stage2)
    assert (overall.step, overall.total, overall.eta_seconds) == (660, 1200, 270.0)
    # The ETA from the rate when the bar does not print one.
    overall = overall_progress(outline, 1, TrainingProgress(step=100, max_steps=600, rate_its=4.0))
    assert overall.eta_seconds == pytest.approx(500 / 4 + 600 / 4)
    # No rate: no ETA beyond the stage.
    assert overall_progress(outline, 1, TrainingProgress(step=1, max_steps=600, eta_seconds=9.0)).eta_seconds is None
    # One stage needs no stage line; several without one cannot be placed.
    assert overall_progress([("training", 1000)], None, stage1).total == 600  # the bar's own total wins
    assert overall_progress(outline, None, stage1) is None
    assert overall_progress(outline, 1, None) is None
    assert overall_progress([], 1, stage1) is None
    # A plan running stage 2 only: its one stage.
    assert overall_progress([("stage 2", 600)], 2, stage2).step == 60

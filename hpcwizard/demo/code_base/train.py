"""A stand-in training loop for the demo recipe: same shape, seconds on CPU.

It reads the frames and the base model fetched by the setup job, "trains" for
--max-steps steps, writes checkpoint-N folders every --checkpointing-steps
(keeping --checkpoints-total-limit of them) and resumes from the latest one,
printing a tqdm-style progress line per step like real training scripts do.

SIGTERM and SIGUSR1 (the train job forwards the time-limit warning) make it
finish the current step, save a checkpoint there and exit with status
STOPPED (75), so the next segment resumes exactly where this one stopped.
--no-signal-handling leaves both signals at Python's default, like upstream
trainers without a handler: the signal ends it at once, unsaved.
"""

import argparse
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

#: Exit status after a stop signal: the checkpoint of the last step is saved
#: (EX_TEMPFAIL: "try again later", which the next segment does).
STOPPED = 75
_stop_requested = []


def _request_stop(signum, _frame):
    # Only note it: the training loop saves at the end of the current step.
    _stop_requested.append(signum)

from tqdm import tqdm  # from the demo environment (requirements.txt), as real trainers use it


def latest_checkpoint(output_dir: Path):
    steps = []
    for child in output_dir.glob("checkpoint-*"):
        suffix = child.name.split("-", 1)[1]
        if child.is_dir() and suffix.isdigit():
            steps.append((int(suffix), child))
    return max(steps)[1] if steps else None


def tqdm_rate(steps_per_second: float) -> str:
    """tqdm's rate: ``4.98it/s``, or ``2.50s/it`` below one step a second."""
    if steps_per_second >= 1 or steps_per_second <= 0:
        return f"{steps_per_second:.2f}it/s"
    return f"{1 / steps_per_second:.2f}s/it"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stage", type=int, required=True)
    parser.add_argument("--frames", type=Path, required=True)
    parser.add_argument("--base-model", type=Path, required=True)
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument("--pretrained-stage1", type=Path)
    parser.add_argument("--max-steps", type=int, default=6)
    parser.add_argument("--checkpointing-steps", type=int, default=2)
    parser.add_argument("--checkpoints-total-limit", type=int, default=2)
    parser.add_argument("--resume-from-checkpoint", default=None)
    parser.add_argument("--seconds-per-step", type=float, default=0.2)
    parser.add_argument("--no-signal-handling", action="store_true",
                        help="leave SIGTERM/SIGUSR1 at their default: the signal ends training unsaved")
    args = parser.parse_args()
    if not args.no_signal_handling:
        signal.signal(signal.SIGTERM, _request_stop)
        signal.signal(signal.SIGUSR1, _request_stop)

    if os.environ.get("HF_HUB_OFFLINE") != "1":
        print("warning: HF_HUB_OFFLINE is not set; training should not need the network", file=sys.stderr)
    frames = sorted(p for p in args.frames.rglob("*") if p.is_file())
    if not frames:
        print(f"error: no frames under {args.frames}", file=sys.stderr)
        return 1
    config = json.loads((args.base_model / "config.json").read_text())
    weight = (args.base_model / "pytorch_model.bin").stat().st_size
    if args.stage == 2:
        if args.pretrained_stage1 is None:
            print("error: stage 2 needs --pretrained-stage1", file=sys.stderr)
            return 1
        weight += json.loads((args.pretrained_stage1 / "weights.json").read_text())["value"]

    args.output_dir.mkdir(parents=True, exist_ok=True)
    start, value = 0, float(weight % 997)
    if args.resume_from_checkpoint == "latest":
        found = latest_checkpoint(args.output_dir)
        if found is not None:
            state = json.loads((found / "state.json").read_text())
            start, value = state["step"], state["value"]
            print(f"Resuming from checkpoint {found}")
    print(f"stage {args.stage}: {len(frames)} frames, base model {config.get('model_type')}, steps {start}->{args.max_steps}")
    began = time.monotonic()
    for step in range(start + 1, args.max_steps + 1):
        # time.sleep resumes after a signal handler ran (PEP 475): the step
        # always completes before a stop takes effect.
        time.sleep(args.seconds_per_step)
        loss = 1.0 / (step + args.stage)
        value += loss
        done = int(20 * step / args.max_steps)
        # As tqdm does: elapsed and rate over the steps of this run (a resumed
        # run counts from its checkpoint), remaining = steps left / that rate.
        # The dashboard's ETA is read from the "<remaining" field.
        elapsed = time.monotonic() - began
        rate = (step - start) / elapsed if elapsed > 0 else 1 / args.seconds_per_step
        remaining = (args.max_steps - step) / rate
        print(f"Steps: {100 * step // args.max_steps:3d}%|{'#' * done}{' ' * (20 - done)}| {step}/{args.max_steps} "
              f"[{tqdm.format_interval(elapsed)}<{tqdm.format_interval(remaining)}, {tqdm_rate(rate)}, loss={loss:.4f}]", flush=True)
        if step % args.checkpointing_steps == 0 or step == args.max_steps or _stop_requested:
            save_checkpoint(args.output_dir, step, value, args.stage, args.checkpoints_total_limit)
        if _stop_requested and step < args.max_steps:
            name = signal.Signals(_stop_requested[0]).name
            print(f"stage {args.stage}: {name} received; saved checkpoint-{step} and stopped", flush=True)
            return STOPPED
    print(f"stage {args.stage} finished")
    return 0


def save_checkpoint(output_dir: Path, step: int, value: float, stage: int, keep: int) -> None:
    """checkpoint-<step>/state.json, written atomically (state.json marks a complete
    checkpoint), then the oldest beyond ``keep`` removed."""
    ckpt = output_dir / f"checkpoint-{step}"
    ckpt.mkdir(exist_ok=True)
    tmp = ckpt / "state.json.tmp"
    tmp.write_text(json.dumps({"step": step, "value": value, "stage": stage}))
    os.replace(tmp, ckpt / "state.json")
    kept = sorted(output_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    for old in kept[:-keep]:
        shutil.rmtree(old)


if __name__ == "__main__":
    sys.exit(main())

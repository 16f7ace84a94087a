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

Several machines (--num_machines N, --machine_rank R, --main_process_ip HOST,
--main_process_port PORT, as accelerate launch takes them): one process per
machine, joined by a real rendezvous over TCP without torch. Rank 0 listens on
PORT (on all its addresses, HOST among them); the others connect to HOST:PORT,
retrying until --rendezvous_timeout; every rank prints "rank R of N joined main
at HOST:PORT". Each step every rank computes its own loss and the ranks average
them through rank 0 (an all-reduce), so all print the same loss; only rank 0
writes checkpoints (--output-dir is shared, as on a cluster); a stop signal on
any rank stops all at the same step; at the end the ranks say goodbye before
closing. A rank that cannot join, or loses the others, stops with one line
naming the main address. With one machine (the default) nothing touches the
network and the output is as it always was.
"""

import argparse
import json
import os
import shutil
import signal
import socket
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


class RendezvousError(Exception):
    """The ranks could not join, or lost each other; the message is one line."""


def host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _Link:
    """One TCP connection carrying JSON messages, one a line."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # a message a step: no Nagle delay
        self.sock = sock
        self._buffer = b""

    def send(self, message: dict) -> None:
        self.sock.settimeout(60)  # a few bytes: only a peer that stopped reading long ago blocks this
        self.sock.sendall(json.dumps(message).encode() + b"\n")

    def receive(self, deadline: float):
        """The next message; None when the other side closed; socket.timeout at the deadline."""
        while b"\n" not in self._buffer:
            self.sock.settimeout(max(deadline - time.monotonic(), 0.001))
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def close(self) -> None:
        self.sock.close()


class Rendezvous:
    """The machines of one training, joined at rank 0's main address.

    Every collective is a gather at rank 0 and one reply to all: each rank
    sends its message, rank 0 reduces them in rank order and answers every
    rank with the same reply, so all ranks continue with identical values.
    A failure on rank 0 is passed on to the other ranks in that reply.
    """

    def __init__(self, num_machines: int, machine_rank: int, host: str, port: int, timeout: float) -> None:
        self.num_machines, self.rank, self.timeout = num_machines, machine_rank, timeout
        self.main = host_port(host, port)
        self._host, self._port = host, port
        self._peers = {}  # rank 0: rank -> _Link
        self._main = None  # other ranks: the link to rank 0

    # -- joining

    def join(self) -> None:
        deadline = time.monotonic() + self.timeout
        if self.rank == 0:
            self._accept_all(deadline)
        else:
            self._connect(deadline)
        print(f"rank {self.rank} of {self.num_machines} joined main at {self.main}", flush=True)

    def _accept_all(self, deadline: float) -> None:
        # On every address of this machine, as torch's TCPStore listens: a node's
        # own name may resolve to 127.0.1.1 there, and the other ranks come from
        # outside. SO_REUSEADDR (create_server's default): a restart rebinds at once.
        try:
            if socket.has_dualstack_ipv6():
                server = socket.create_server(("", self._port), family=socket.AF_INET6, dualstack_ipv6=True)
            else:
                server = socket.create_server(("", self._port))
        except OSError as exc:
            raise RendezvousError(f"rank 0 cannot listen on port {self._port} (main {self.main}): "
                                  f"{exc.strerror or exc}") from None
        try:
            while len(self._peers) < self.num_machines - 1:
                server.settimeout(max(deadline - time.monotonic(), 0.001))
                try:
                    sock, _ = server.accept()
                except socket.timeout:
                    missing = [str(r) for r in range(1, self.num_machines) if r not in self._peers]
                    self._fail(f"rendezvous timed out after {self.timeout:g} s: rank {', '.join(missing)} of "
                               f"{self.num_machines} never joined main at {self.main}")
                self._admit(_Link(sock), deadline)
        finally:
            server.close()
        self._send_all({"welcome": self.num_machines}, "the rendezvous")

    def _admit(self, link: _Link, deadline: float) -> None:
        try:
            hello = link.receive(deadline)
        except (socket.timeout, OSError, ValueError):
            hello = None
        if not isinstance(hello, dict) or "rank" not in hello:
            link.close()  # not one of ours (or gone): keep waiting for the ranks
            return
        rank, machines = hello.get("rank"), hello.get("num_machines")
        problem = None
        if machines != self.num_machines:
            problem = f"rank {rank} was started for {machines} machines, rank 0 for {self.num_machines}"
        elif not isinstance(rank, int) or not 0 < rank < self.num_machines:
            problem = f"a rank {rank} joined main at {self.main}, but the ranks of {self.num_machines} machines are 0-{self.num_machines - 1}"
        elif rank in self._peers:
            problem = f"rank {rank} joined main at {self.main} twice (two machines with the same --machine_rank)"
        if problem:
            try:
                link.send({"error": problem})
            except OSError:
                pass
            link.close()
            self._fail(problem)
        self._peers[rank] = link

    def _connect(self, deadline: float) -> None:
        reason = "no answer"
        while True:
            try:
                sock = socket.create_connection((self._host, self._port),
                                                timeout=max(min(deadline - time.monotonic(), 5.0), 0.001))
                break
            except OSError as exc:  # refused (rank 0 not listening yet), unreachable, unresolvable, timed out
                reason = exc.strerror or str(exc) or type(exc).__name__
            if time.monotonic() >= deadline:
                raise RendezvousError(f"rank {self.rank} of {self.num_machines} could not join main at {self.main} "
                                      f"within {self.timeout:g} s ({reason})")
            time.sleep(min(0.2, max(deadline - time.monotonic(), 0)))
        self._main = _Link(sock)
        self._main.send({"rank": self.rank, "num_machines": self.num_machines})
        # Rank 0 welcomes all ranks at once, or says why not: wait a little past
        # our own deadline for its verdict.
        self._reply("the rendezvous", deadline + 10)

    # -- collectives

    def _reply(self, during: str, deadline: float) -> dict:
        try:
            reply = self._main.receive(deadline)
        except socket.timeout:
            raise RendezvousError(f"rank {self.rank}: main at {self.main} sent nothing for {self.timeout:g} s "
                                  f"during {during}") from None
        except OSError as exc:
            reply, during = None, f"{during} ({exc.strerror or exc})"
        if reply is None:
            raise RendezvousError(f"rank {self.rank}: main at {self.main} closed the connection during {during}")
        if "error" in reply:
            raise RendezvousError(f"rank {self.rank}: {reply['error']}")
        return reply

    def _gather(self, message: dict, during: str, reduce) -> dict:
        deadline = time.monotonic() + self.timeout
        if self.rank != 0:
            try:
                self._main.send(message)
            except OSError as exc:
                raise RendezvousError(f"rank {self.rank}: lost main at {self.main} during {during} "
                                      f"({exc.strerror or exc})") from None
            return self._reply(during, deadline)
        messages = [message]
        for rank in sorted(self._peers):
            try:
                got = self._peers[rank].receive(deadline)
            except socket.timeout:
                self._fail(f"rank {rank} sent nothing for {self.timeout:g} s during {during} (main at {self.main})")
            except OSError:  # reset: it is gone as much as when it closed
                got = None
            if got is None:
                self._fail(f"rank {rank} left during {during} (main at {self.main})")
            messages.append(got)
        try:
            reply = reduce(messages)
        except RendezvousError as exc:
            self._fail(str(exc))
        self._send_all(reply, during)
        return reply

    def _send_all(self, message: dict, during: str) -> None:
        """Rank 0: one message to every other rank; a rank that is gone ends the training."""
        for rank, link in sorted(self._peers.items()):
            try:
                link.send(message)
            except OSError:
                self._fail(f"rank {rank} left during {during} (main at {self.main})")

    def agree_on_start(self, start: int) -> None:
        """Every rank resumes from the same step (its own read of the shared --output-dir)."""
        def same(messages):
            starts = [m["start"] for m in messages]
            if len(set(starts)) > 1:
                found = ", ".join(f"rank {r}: step {s}" for r, s in enumerate(starts))
                raise RendezvousError(f"the ranks resume from different steps ({found}): "
                                      "--output-dir must be the same shared folder on every machine")
            return {"start": starts[0]}
        self._gather({"start": start}, "the resume check", same)

    def all_reduce_loss(self, step: int, loss: float, stop):
        """The mean of every rank's loss of this step (summed in rank order at
        rank 0), and the stop signal's name when any rank got one (else None):
        all ranks stop at the same step."""
        def mean(messages):
            steps = {m["step"] for m in messages}
            if steps != {step}:
                raise RendezvousError(f"the ranks are at different steps ({sorted(steps)})")
            total = 0.0
            for m in messages:
                total += m["loss"]
            return {"loss": total / len(messages), "stop": next((m["stop"] for m in messages if m["stop"]), None)}
        reply = self._gather({"step": step, "loss": loss, "stop": stop}, f"step {step}", mean)
        return reply["loss"], reply["stop"]

    def close(self) -> None:
        """Goodbye from every rank, then close: nobody leaves while another still waits."""
        try:
            self._gather({"bye": self.rank}, "the goodbye", lambda messages: {"bye": True})
        finally:
            self._close_links()

    def _fail(self, problem: str):
        """Rank 0: tell the other ranks what went wrong, close, raise."""
        for link in self._peers.values():
            try:
                link.send({"error": problem})
            except OSError:
                pass
        self._close_links()
        raise RendezvousError(problem)

    def _close_links(self) -> None:
        for link in [*self._peers.values(), *([self._main] if self._main else [])]:
            link.close()
        self._peers, self._main = {}, None


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
    machines = parser.add_argument_group("several machines (as accelerate launch names them)")
    machines.add_argument("--num_machines", type=int, default=1, help="machines taking part, one process each")
    machines.add_argument("--machine_rank", type=int, default=0, help="this machine's rank, 0 to num_machines-1")
    machines.add_argument("--main_process_ip", help="address of the machine of rank 0 (needed with several machines)")
    machines.add_argument("--main_process_port", type=int, default=29500, help="port rank 0 listens on (default 29500)")
    machines.add_argument("--rendezvous_timeout", type=float, default=300.0,
                          help="seconds to wait for all machines to join, and for each exchange (default 300)")
    args = parser.parse_args()
    if args.num_machines < 1:
        parser.error(f"--num_machines must be 1 or more, not {args.num_machines}")
    if not 0 <= args.machine_rank < args.num_machines:
        parser.error(f"--machine_rank must be 0 to {args.num_machines - 1} with --num_machines {args.num_machines}, "
                     f"not {args.machine_rank}")
    if args.num_machines > 1 and not args.main_process_ip:
        parser.error(f"--num_machines {args.num_machines} needs --main_process_ip (the address of rank 0's machine)")
    if not 0 < args.main_process_port < 65536:
        parser.error(f"--main_process_port must be 1 to 65535, not {args.main_process_port}")
    if args.rendezvous_timeout <= 0:
        parser.error("--rendezvous_timeout must be more than 0 seconds")
    if not args.no_signal_handling:
        signal.signal(signal.SIGTERM, _request_stop)
        signal.signal(signal.SIGUSR1, _request_stop)

    rendezvous = None
    if args.num_machines > 1:
        rendezvous = Rendezvous(args.num_machines, args.machine_rank, args.main_process_ip,
                                args.main_process_port, args.rendezvous_timeout)
    try:
        return train(args, rendezvous)
    except RendezvousError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1


def train(args, rendezvous) -> int:
    """The training loop; with a rendezvous, one rank of several machines."""
    rank = args.machine_rank
    if rendezvous is not None:
        rendezvous.join()
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
    if rendezvous is not None:
        rendezvous.agree_on_start(start)
    print(f"stage {args.stage}: {len(frames)} frames, base model {config.get('model_type')}, steps {start}->{args.max_steps}")
    began = time.monotonic()
    for step in range(start + 1, args.max_steps + 1):
        # time.sleep resumes after a signal handler ran (PEP 475): the step
        # always completes before a stop takes effect.
        time.sleep(args.seconds_per_step)
        # Each rank's own loss (rank 0's is the single machine's); with several
        # machines every rank continues with their mean.
        loss = 1.0 / (step + args.stage + rank)
        stop = signal.Signals(_stop_requested[0]).name if _stop_requested else None
        if rendezvous is not None:
            loss, stop = rendezvous.all_reduce_loss(step, loss, stop)
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
        # Only rank 0 writes: every machine sees the same shared --output-dir.
        if rank == 0 and (step % args.checkpointing_steps == 0 or step == args.max_steps or stop):
            save_checkpoint(args.output_dir, step, value, args.stage, args.checkpoints_total_limit)
        if stop and step < args.max_steps:
            saved = f"saved checkpoint-{step}" if rank == 0 else f"rank 0 saved checkpoint-{step}"
            print(f"stage {args.stage}: {stop} received; {saved} and stopped", flush=True)
            if rendezvous is not None:
                rendezvous.close()
            return STOPPED
    if rendezvous is not None:
        rendezvous.close()
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

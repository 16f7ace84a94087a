"""SlurmClient: every Slurm command hpcwizard runs, through one Runner.

The runner decides where commands run (this machine, or a login node over
SSH); this module only builds argv lists, applies timeouts and turns output
into dataclasses (:mod:`.parse`) and failures into user errors (:mod:`.errors`).
Queries are cheap and batched: one squeue per refresh for all jobs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, timedelta

from hpcwizard.errors import CommandTimeout, TransportUnavailable
from hpcwizard.shell import CommandResult, Runner
from hpcwizard.slurm import parse
from hpcwizard.slurm.errors import (
    SlurmCommandError,
    SlurmRefused,
    is_controller_unreachable,
    refusal_from_stderr,
    slurm_error_line,
    unavailable,
)
from hpcwizard.slurm.models import (
    Association,
    FinishedJob,
    FinishedSource,
    JobState,
    PartitionInfo,
    QueueEntry,
    TestOnlyResult,
)

#: Seconds a query may take. A healthy controller answers in well under a
#: second; clients give up on an unreachable one after ~10 s by themselves.
QUERY_TIMEOUT = 20.0
#: sbatch may wait on a busy controller longer than a query; a submission
#: that times out is reported, never retried blindly (it may have succeeded).
SUBMIT_TIMEOUT = 60.0
#: How far back sacct --completion reads the jobcomp file. Training chains
#: last days, not months.
COMPLETION_LOOKBACK = timedelta(days=60)

_FORGOTTEN_JOB = "Invalid job id specified"

#: sbatch's input environment variables for what a plan decides. sbatch ranks
#: them ABOVE the script's #SBATCH lines, so an ``export SBATCH_PARTITION=debug``
#: or ``SBATCH_TIMELIMIT`` left in a user's ~/.bashrc would silently move or
#: shorten every job, ``SBATCH_OUTPUT`` hide its log, ``SBATCH_EXPORT=NONE``
#: drop HF_HOME, ``SBATCH_WAIT`` hang the submit: sbatch runs without them.
#: (Site policy such as SBATCH_CONSTRAINT or SBATCH_RESERVATION is kept.)
PLAN_DECIDES_ENV = tuple(f"SBATCH_{name}" for name in (
    "ACCOUNT", "QOS", "JOB_NAME", "PARTITION", "TIMELIMIT", "MEM_PER_NODE", "MEM_PER_CPU", "MEM_PER_GPU",
    "GRES", "GPUS", "GPUS_PER_NODE", "GPUS_PER_TASK", "CPUS_PER_GPU", "OUTPUT", "ERROR", "INPUT", "OPEN_MODE",
    "SIGNAL", "REQUEUE", "NO_REQUEUE", "EXPORT", "ARRAY_INX", "WAIT", "WAIT_ALL_NODES",
))
#: ``sbatch`` run through ``env`` without them (a constant prefix: no user value).
_SBATCH = ("env", *(arg for name in PLAN_DECIDES_ENV for arg in ("-u", name)), "sbatch")
_ACCOUNTING_DISABLED = ("accounting storage is disabled", "not running a supported accounting_storage")


def _job_list(job_ids: Iterable[str | int]) -> list[str]:
    ids = [str(j).strip() for j in job_ids if str(j).strip()]
    for job_id in ids:
        # Ids reach argv only, never a shell; still, refuse anything that
        # could be read as an option.
        if job_id.startswith("-"):
            raise ValueError(f"not a job id: {job_id!r}")
    return ids


class SlurmClient:
    """Runs Slurm commands through ``runner`` and returns parsed results."""

    def __init__(self, runner: Runner, *, timeout: float = QUERY_TIMEOUT,
                 submit_timeout: float = SUBMIT_TIMEOUT) -> None:
        self.runner = runner
        self.timeout = timeout
        self.submit_timeout = submit_timeout
        # Which source of finished-job facts works here; found once, then reused
        # so each refresh costs at most one sacct.
        self._finished_source: FinishedSource | None = None
        self._user: str | None = None

    # --- plumbing ------------------------------------------------------------

    def _run(self, argv: Sequence[str], *, timeout: float | None = None) -> CommandResult:
        """Run a Slurm command; an unreachable controller becomes SlurmUnavailable."""
        command = argv[len(_SBATCH) - 1] if tuple(argv[:len(_SBATCH)]) == _SBATCH else argv[0]
        try:
            result = self.runner.run(list(argv), timeout=timeout or self.timeout)
        except CommandTimeout as exc:
            raise unavailable(command, f"no answer within {timeout or self.timeout:g} s") from exc
        except TransportUnavailable as exc:
            # A dropped SSH connection looks like a controller that is away:
            # the dashboard backs off and retries. Host-key and authentication
            # errors are not TransportUnavailable and stay loud.
            raise unavailable(command, exc.one_line()) from exc
        if not result.ok and is_controller_unreachable(result.stderr):
            raise unavailable(command, slurm_error_line(result.stderr))
        return result

    def _query(self, argv: Sequence[str]) -> str:
        """Run a query that must succeed; return its stdout."""
        result = self._run(argv)
        if not result.ok:
            raise SlurmCommandError(
                f"{argv[0]} failed: {slurm_error_line(result.stderr) or f'exit status {result.returncode}'}",
                "check that Slurm works here (`sinfo`)",
            )
        return result.stdout

    def user(self) -> str:
        """The user name Slurm sees for the runner (cached)."""
        if self._user is None:
            self._user = self.runner.run(["id", "-un"], timeout=self.timeout).check().stdout.strip()
        return self._user

    # --- partitions ----------------------------------------------------------

    def partitions(self, *, free_gpus: bool = True) -> list[PartitionInfo]:
        """Every partition with its limits; ``free_gpus`` costs one more sinfo.

        A sinfo line that cannot be read is skipped (scontrol still describes
        its partition), not a reason to show no partition at all."""
        sinfo = parse.parse_sinfo(self._query(["sinfo", "--noheader", "-o", parse.SINFO_FORMAT]),
                                  strict=False)
        scontrol = parse.parse_scontrol_partitions(
            self._query(["scontrol", "show", "partition", "-o"])
        )
        usage = self._free_gpus() if free_gpus else None
        return parse.merge_partitions(sinfo, scontrol, usage)

    def partition(self, name: str) -> PartitionInfo | None:
        return next((p for p in self.partitions() if p.name == name), None)

    def _free_gpus(self) -> dict[str, int] | None:
        # Optional extra: an old sinfo without GresUsed just means "unknown".
        result = self._run(["sinfo", "--noheader", "-N", "-O", parse.SINFO_GRES_USAGE_FORMAT])
        if not result.ok:
            return None
        return parse.parse_gres_usage(result.stdout, strict=False)

    # --- submission ----------------------------------------------------------

    @staticmethod
    def _sbatch_options(
        dependency: Sequence[str | int] | None,
        dependency_type: str,
        hold: bool,
        extra_args: Sequence[str],
        workdir: str | None,
    ) -> list[str]:
        options: list[str] = []
        parents = _job_list(dependency or ())
        if parents:
            options.append(f"--dependency={dependency_type}:" + ":".join(parents))
        if hold:
            options.append("--hold")
        if workdir is not None:
            options.append(f"--chdir={workdir}")
        options.extend(str(a) for a in extra_args)
        return options

    def submit(
        self,
        script_path: str,
        *,
        dependency: Sequence[str | int] | None = None,
        dependency_type: str = "afterok",
        hold: bool = False,
        extra_args: Sequence[str] = (),
        workdir: str | None = None,
    ) -> str:
        """Submit a batch script; return its job id. Raises a SlurmRefused subclass."""
        options = self._sbatch_options(dependency, dependency_type, hold, extra_args, workdir)
        result = self._run([*_SBATCH, "--parsable", *options, str(script_path)],
                           timeout=self.submit_timeout)
        if not result.ok:
            raise refusal_from_stderr(result.stderr)
        try:
            return parse.parse_sbatch_parsable(result.stdout)
        except ValueError as exc:
            raise SlurmCommandError(
                f"sbatch answered without a job id: {result.stdout.strip()!r}",
                "check the queue (`squeue --me`) before submitting again",
            ) from exc

    def test_only(
        self,
        script_path: str,
        *,
        dependency: Sequence[str | int] | None = None,
        dependency_type: str = "afterok",
        extra_args: Sequence[str] = (),
        workdir: str | None = None,
    ) -> TestOnlyResult:
        """Ask sbatch when and where the script would run; submits nothing."""
        options = self._sbatch_options(dependency, dependency_type, False, extra_args, workdir)
        result = self._run([*_SBATCH, "--test-only", *options, str(script_path)],
                           timeout=self.submit_timeout)
        if not result.ok:
            raise refusal_from_stderr(result.stderr)
        prediction = parse.parse_test_only(result.stderr)
        if prediction is None:
            raise SlurmCommandError(
                f"sbatch --test-only gave no prediction: {slurm_error_line(result.stderr)!r}",
            )
        return prediction

    def cancel(self, job_ids: Iterable[str | int]) -> None:
        """scancel; unknown or finished jobs are fine (nothing left to cancel)."""
        ids = _job_list(job_ids)
        if not ids:
            return
        result = self._run(["scancel", *ids])
        if not result.ok and not _only_finished_job_errors(result.stderr):
            raise refusal_from_stderr(result.stderr, command="scancel")

    def hold(self, job_ids: Iterable[str | int]) -> None:
        self._scontrol_jobs("hold", job_ids)

    def release(self, job_ids: Iterable[str | int]) -> None:
        self._scontrol_jobs("release", job_ids)

    def _scontrol_jobs(self, action: str, job_ids: Iterable[str | int]) -> None:
        ids = _job_list(job_ids)
        if not ids:
            return
        result = self._run(["scontrol", action, ",".join(ids)])
        if not result.ok:
            error = refusal_from_stderr(result.stderr, command=f"scontrol {action}")
            if isinstance(error, SlurmRefused) and error.cause == "unknown":
                line = slurm_error_line(result.stderr)
                raise SlurmRefused(
                    f"Slurm could not {action} job(s) {', '.join(ids)}: {line}",
                    "a job that already started or finished cannot be held or released",
                    slurm_message=line,
                )
            raise error

    # --- queue ---------------------------------------------------------------

    def queue(
        self,
        job_ids: Iterable[str | int] | None = None,
        *,
        me: bool = False,
        name_prefix: str | None = None,
        all_states: bool = False,
    ) -> list[QueueEntry]:
        """One squeue call. With ``job_ids`` or ``all_states``, recently finished
        jobs are included (``-t all``); ids Slurm has forgotten are simply absent."""
        argv = ["squeue", "--noheader", "-o", parse.SQUEUE_FORMAT]
        ids = _job_list(job_ids) if job_ids is not None else None
        if ids is not None:
            if not ids:
                return []
            argv += ["-t", "all", "-j", ",".join(ids)]
        elif all_states:
            argv += ["-t", "all"]
        if me:
            argv.append("--me")
        result = self._run(argv)
        if not result.ok:
            if ids is not None and _FORGOTTEN_JOB in result.stderr:
                # squeue fails when EVERY listed id is unknown (purged after MinJobAge).
                return []
            raise SlurmCommandError(
                f"squeue failed: {slurm_error_line(result.stderr) or f'exit status {result.returncode}'}",
                "check that Slurm works here (`squeue --me`)",
            )
        # A line squeue prints that hpcwizard cannot read (a new time word, a
        # cut line) drops that job from this refresh, not the whole queue.
        entries = parse.parse_squeue(result.stdout, strict=False)
        if name_prefix:
            entries = [e for e in entries if e.name.startswith(name_prefix)]
        return entries

    # --- finished jobs -------------------------------------------------------

    def finished(self, job_ids: Iterable[str | int]) -> list[FinishedJob]:
        """State, exit code and times of jobs, in the order asked.

        Tries sacct (slurmdbd), then ``sacct --completion`` (jobcomp plugin),
        then ``scontrol show job`` (only while the controller remembers the job).
        The first source that works is remembered for the next calls.
        """
        ids = _job_list(job_ids)
        if not ids:
            return []
        found: dict[str, FinishedJob] = {}
        order = [FinishedSource.SACCT, FinishedSource.SACCT_COMPLETION]
        if self._finished_source is not None:
            order = [self._finished_source] if self._finished_source in order else []
        for source in order:
            jobs = self._sacct(source, ids)
            if jobs is None:
                continue
            self._finished_source = source
            found = {job.job_id: job for job in jobs}
            break
        else:
            self._finished_source = FinishedSource.SCONTROL
        results = []
        for job_id in ids:
            job = found.get(job_id)
            if job is None or job.state is JobState.UNKNOWN:
                # jobcomp/filetxt mangles job names with spaces (its lines are
                # space-separated key=value), leaving no state; ask scontrol.
                job = self._scontrol_job(job_id) or job
            if job is None:
                job = FinishedJob(job_id, JobState.FINISHED_UNKNOWN, None, None, None, None,
                                  FinishedSource.NONE)
            results.append(job)
        return results

    def _sacct(self, source: FinishedSource, ids: Sequence[str]) -> list[FinishedJob] | None:
        """Jobs from sacct, or None when this sacct mode does not work here."""
        argv = ["sacct", "--noheader", "-X", "-P", f"--delimiter={parse.FIELD_SEPARATOR}"]
        if source is FinishedSource.SACCT_COMPLETION:
            since = date.today() - COMPLETION_LOOKBACK
            argv += ["--completion", "-S", since.isoformat()]
        argv += ["-j", ",".join(ids), "-o", parse.SACCT_FORMAT]
        try:
            result = self._run(argv)
        except SlurmCommandError:
            return None
        if not result.ok or any(text in result.stderr for text in _ACCOUNTING_DISABLED):
            return None
        # An unreadable line leaves its job to scontrol (see finished()); no
        # readable line at all means this mode does not answer in our format.
        jobs = parse.parse_sacct(result.stdout, source, strict=False)
        if not jobs and result.stdout.strip():
            return None
        return jobs

    def _scontrol_job(self, job_id: str) -> FinishedJob | None:
        result = self._run(["scontrol", "show", "job", "-o", job_id])
        if not result.ok:
            return None
        return parse.parse_scontrol_job(result.stdout)

    # --- accounts ------------------------------------------------------------

    def associations(self, user: str | None = None) -> list[Association] | None:
        """The user's account/QoS associations; None when sacctmgr cannot say
        (no slurmdbd, no sacctmgr, any error): unknown, not "none"."""
        try:
            name = user or self.user()
            result = self.runner.run(
                ["sacctmgr", "--noheader", "--parsable2", "show", "associations",
                 f"where user={name}", "format=" + ",".join(parse.SACCTMGR_ASSOC_FIELDS)],
                timeout=self.timeout,
            )
        except Exception:  # noqa: BLE001 - any failure here only means "unknown"
            return None
        if not result.ok or any(text in result.stderr for text in _ACCOUNTING_DISABLED):
            return None
        try:
            return parse.parse_sacctmgr_associations(result.stdout)
        except ValueError:
            return None

    def default_account(self, user: str | None = None) -> str | None:
        """The user's default account per sacctmgr; None when unknown."""
        try:
            name = user or self.user()
            result = self.runner.run(
                ["sacctmgr", "--noheader", "--parsable2", "show", "user", name,
                 "format=DefaultAccount"],
                timeout=self.timeout,
            )
        except Exception:  # noqa: BLE001 - any failure here only means "unknown"
            return None
        if not result.ok:
            return None
        lines = [line.strip() for line in result.stdout.splitlines() if line.strip()]
        return lines[0] if lines else None


def _only_finished_job_errors(stderr: str) -> bool:
    """True when every scancel error is about a job that is already gone."""
    errors = [line for line in stderr.splitlines() if "error" in line.lower()]
    benign = ("already completing or completed", _FORGOTTEN_JOB, "Job has already finished")
    return all(any(text in line for text in benign) for line in errors)

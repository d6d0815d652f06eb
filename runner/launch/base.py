"""The launcher interface (start / observe / stop, and the defaults of everything else the
scheduler asks), the state a launcher reports of a job, and the trainer's command line and
environment, which every launcher uses."""

from __future__ import annotations

import contextlib
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from runner.ledger.attempts import Placement, Usage

# A job's phase, as its launcher sees it:
PENDING = "pending"  # waiting for machines, provisioning, starting: not judged by any lease
RUNNING = "running"  # its trainer should be heard from: leases and start-up grace apply
RECOVERING = "recovering"  # the platform is moving it to new machines (a spot preemption)
EXITED = "exited"  # its trainer ended, with `code`
UNKNOWN = "unknown"  # not this launcher's to watch (an earlier service started it): the lease


@dataclass(frozen=True)
class JobState:
    phase: str
    code: int | None = None  # when EXITED
    recoveries: int = 0  # times the platform recovered the job onto new machines
    usage: Usage | None = None  # what it runs on, and how long it has run, when known
    ended_outside: bool = False  # cancelled by someone other than pax (a user, in the cloud)
    detail: str | None = None  # the platform's own words (a failure reason)
    prior_seconds: float | None = None  # running time before the last recovery (SkyPilot)
    # the platform's account of a failure that was not the trainer's (no capacity, a failed
    # set-up), said instead of "trainer crashed"
    cause: str | None = None
    never_ran: bool = False  # the platform found no machines: a launch to retry, not a crash
    # a launch that finished off the scheduler's tick: the platform's id of the job it became
    # (the ledger renames the run's provisional backend id), or the error it met
    job_id: str | None = None
    launch_error: LaunchError | None = None


@dataclass(frozen=True)
class LaunchError:
    """What a failed start() means: `passes` (no capacity, a quota, the network) is retried
    with back-off; otherwise a user must fix something (the sweep pauses with `reason`)."""

    passes: bool
    reason: str


ALIVE = JobState(RUNNING)
NOT_OURS = JobState(UNKNOWN)


@dataclass(frozen=True)
class LaunchSpec:
    run_id: int
    attempt: int
    run_dir: Path
    config_path: Path
    env: dict[str, str]


# What of the launcher's own environment a trainer may see: how to run Python and find its
# code, the locale and temp dir, and the accelerator and threading knobs. Never the service's
# tokens or anything else; a deployment adds names it needs (PAX_TRAINER_ENV, e.g. WANDB_API_KEY).
PASS_NAMES = {
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "TERM", "TZ", "TMPDIR", "LANG", "LANGUAGE",
    "PYTHONPATH", "PYTHONHASHSEED", "VIRTUAL_ENV", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
    "PAX_CACHE_DIR", "PAX_DATA_MIRROR", "PAX_GIT_SHA", "HF_HOME",
}  # fmt: skip
PASS_PREFIXES = (
    "LC_", "CUDA_", "NCCL_", "TORCH_", "PYTORCH_", "TORCHINDUCTOR_", "TRITON_", "NVIDIA_",
)  # fmt: skip


def trainer_env(run_env: dict[str, str], passthrough=(), source=None) -> dict[str, str]:
    """A trainer's environment: the allowed part of `source` (os.environ), the names a
    deployment passes through, then the run's own variables (PAX_RUNNER_URL, PAX_RUN_ID,
    PAX_RUN_TOKEN, PAX_HEARTBEAT_S)."""
    import os

    source = os.environ if source is None else source
    keep = {
        k: v
        for k, v in source.items()
        if k in PASS_NAMES or k.startswith(PASS_PREFIXES) or k in set(passthrough)
    }
    return {**keep, **run_env, "PYTHONUNBUFFERED": "1"}


def run_dir_under(root: Path, run_id: int, name: str) -> Path:
    """<root>/<id>-<name>, resolved and checked to lie under `root`: a name from the ledger
    never reaches outside it (names are validated at submission; this is the second lock)."""
    root = Path(root).resolve()
    named = root / f"{int(run_id):06d}-{name}"
    if named.is_symlink():
        raise ValueError(
            f"{named} is a symbolic link: a run's folder is a real folder under {root}; "
            "remove the link and requeue the run"
        )
    path = named.resolve()
    if path.parent != root:
        raise ValueError(f"run name {name!r} would leave {root}; refusing to use it")
    return path


def trainer_args(config_path: Path | str, run_dir: Path | str) -> list[str]:
    """`pax train`'s arguments for a launched run: no progress bar (logs), and a wait for the
    run directory's lock, which a previous attempt may hold for a moment while it exits."""
    return [
        "train",
        "--config",
        str(config_path),
        "--run-dir",
        str(run_dir),
        "--no-progress",
        "--lock-wait",
        "120",
    ]


class Launcher(ABC):
    """What the scheduler uses of a launcher. Each launcher starts, observes and stops its own
    jobs; everything else has a default here that a launcher overrides when it differs."""

    name: str  # what the ledger records as the run's launcher
    kinds: tuple[str, ...]  # the `launcher` values of the runs it takes ("local", "skypilot")
    takes_unassigned: bool = False  # and runs that ask for none (the service's default launcher)
    # alive() / exited() know its trainers (local processes, containers); a launcher that does
    # not track them has a run cancelled in the ledger cancelled where its job runs instead
    tracks_processes: bool = False
    # its trainers may not reach the service (a cloud job without inbound access): their
    # folders are read each time its jobs are observed, heartbeats included
    heard_through_files: bool = False
    # its jobs are observed (and judged) at most this often: a cloud's API and its bucket are
    # not asked every 0.5 s tick (0: every tick)
    poll_s: float = 0.0

    @abstractmethod
    def start(self, spec: LaunchSpec) -> str:
        """Start the trainer; return the backend id (pid, container id, job id)."""

    @abstractmethod
    def observe(self, backend_ids: list[str]) -> dict[str, JobState]:
        """The state of each job, in one call (a cloud is asked once for all its jobs)."""

    @abstractmethod
    def stop(self, backend_id: str, grace_s: float) -> None:
        """Ask the trainer to stop (SIGTERM: it checkpoints), force it after `grace_s`."""

    # its jobs wait for machines after start() (a cloud): the run stays `launching` until
    # observe() says RUNNING
    starts_pending: bool = False

    def launch_error(self, e: Exception) -> LaunchError:
        """What an exception from start() means. Only a network error passes by itself here;
        anything else (a missing program, an unusable image) waits for a user."""
        passes = isinstance(e, (ConnectionError, TimeoutError))
        return LaunchError(passes, f"the {self.name} launcher could not start the trainer: {e}")

    def placement(self) -> Placement:
        """Where its runs train, as far as it knows before launching (GPU, spot, share)."""
        return Placement()

    @property
    def capacity(self) -> int | None:
        """Runs at once that it can hold itself (None: the service's PAX_CONCURRENCY)."""
        return None

    def alive(self) -> list[str]:
        """Backend ids this launcher tracks that still run ([] when it tracks none)."""
        return []

    def exited(self) -> list[str]:
        """Backend ids this launcher tracks that have exited but were not polled yet."""
        return []

    def costliest(self) -> str | None:
        """The dearest GPU a run might get, for budget caps (None: its placement's)."""
        return None

    def device_of(self, backend_id: str) -> str | None:
        """host:gpuN of a job that shares a GPU with others (its cost is split by time)."""
        return None

    def run_dir_url(self, run_id: int, local: Path) -> str:
        """Where the service reads the run's folder (a local path, or a bucket's URL)."""
        return str(local)


def hand_over(run_dir, uid: int, gid: int) -> None:
    """The run folder and everything in it owned by the trainer's user (a resumed run's
    checkpoints too), never following a link."""
    for root, dirs, files in os.walk(run_dir):
        for name in [*dirs, *files]:
            with contextlib.suppress(FileNotFoundError):
                os.chown(os.path.join(root, name), uid, gid, follow_symlinks=False)
    os.chown(run_dir, uid, gid, follow_symlinks=False)

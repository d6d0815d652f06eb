"""The launcher interface: start / poll / stop (plus alive / exited for launchers that track
processes), and the trainer's command line, which every launcher runs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

# poll() answers: an exit code, RUNNING, or UNKNOWN (e.g. a process started by an earlier
# service instance; the heartbeat lease then decides).
RUNNING = None
UNKNOWN = "unknown"


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
    path = (root / f"{int(run_id):06d}-{name}").resolve()
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


class Launcher(Protocol):
    name: str

    def start(self, spec: LaunchSpec) -> str:
        """Start the trainer; return the backend id (pid, container id, job id)."""

    def poll(self, backend_id: str) -> int | str | None:
        """Exit code when finished, RUNNING (None) while alive, UNKNOWN when not tracked."""

    def stop(self, backend_id: str, grace_s: float) -> None:
        """Ask the trainer to stop (SIGTERM: it checkpoints), force it after `grace_s`."""

    def alive(self) -> list[str]:
        """Backend ids this launcher tracks that still run ([] when it tracks none)."""

    def exited(self) -> list[str]:
        """Backend ids this launcher tracks that have exited but were not polled yet."""

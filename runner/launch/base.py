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

"""The launcher interface: start / poll / stop. Local processes now; Docker and SkyPilot plug in
beside it with the same three calls."""

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


class Launcher(Protocol):
    name: str

    def start(self, spec: LaunchSpec) -> str:
        """Start the trainer; return the backend id (pid, container id, job id)."""

    def poll(self, backend_id: str) -> int | str | None:
        """Exit code when finished, RUNNING (None) while alive, UNKNOWN when not tracked."""

    def stop(self, backend_id: str, grace_s: float) -> None:
        """Ask the trainer to stop (SIGTERM: it checkpoints), force it after `grace_s`."""

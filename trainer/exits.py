"""Exit codes of `pax train`: the one source for the trainer, the launchers and the scheduler."""

from __future__ import annotations

EXIT_OK = 0  # done: trained and evaluated (or already done)
EXIT_CRASH = 1  # an unexpected error; the latest checkpoint is intact, rerun to resume
EXIT_BAD_CONFIG = 2  # bad config or input: nothing was trained; the message names the fix
EXIT_KILLED = 3  # the runner's kill rule asked to stop; checkpoint and metrics.json written
EXIT_PREEMPTED = 75  # SIGTERM/SIGINT; checkpoint written, rerun the same command to resume

MEANING = {
    EXIT_OK: "done",
    EXIT_CRASH: "crashed",
    EXIT_BAD_CONFIG: "bad config or input",
    EXIT_KILLED: "killed by rule",
    EXIT_PREEMPTED: "preempted",
}

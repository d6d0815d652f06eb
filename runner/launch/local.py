"""Local launcher: `pax train` as a subprocess in its own session, logging to the run dir."""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import socket
import subprocess
import sys
import threading
import time

from runner.launch.base import (
    ALIVE,
    EXITED,
    NOT_OURS,
    JobState,
    Launcher,
    LaunchSpec,
    hand_over,
    trainer_args,
    trainer_env,
)
from runner.ledger.attempts import Placement


class LocalLauncher(Launcher):
    name = "local"
    kinds = ("local",)
    takes_unassigned = True
    tracks_processes = True  # alive() / exited() know its trainers

    def __init__(
        self,
        python: str = sys.executable,
        passthrough=(),
        place: Placement = Placement(),
        gpus: int = 0,
        slots_per_gpu: int = 1,
        user: str | None = None,
        mps=None,
    ):
        self.account = trainer_account(user)  # (uid, gid), or None: the service's own user
        self.python = python
        self.passthrough = tuple(passthrough)
        self.place = place  # the service's own GPU (PAX_ACCELERATOR), or the CPU
        self.gpus = gpus  # 0: trainers are not placed on GPUs by index
        self.slots_per_gpu = slots_per_gpu
        self.host = socket.gethostname()
        self.procs: dict[str, subprocess.Popen] = {}
        self.gpu_of: dict[str, int] = {}  # backend id -> GPU index, for placed trainers
        self.lock = threading.Lock()
        self.mps = mps  # runner.launch.mps.Mps: its folders go to every trainer while it serves

    @property
    def capacity(self) -> int | None:
        """Trainers at once when placed on GPUs (None: PAX_CONCURRENCY decides)."""
        return self.gpus * self.slots_per_gpu if self.gpus else None

    def _free_gpu(self) -> int | None:
        """The least busy GPU with a free slot (spreads runs over GPUs, then stacks them)."""
        busy = [0] * self.gpus
        for backend_id, gpu in self.gpu_of.items():
            proc = self.procs.get(backend_id)
            if proc is not None and proc.poll() is None:
                busy[gpu] += 1
        best = min(range(self.gpus), key=lambda i: busy[i])
        return best if busy[best] < self.slots_per_gpu else None

    def device_of(self, backend_id: str) -> str | None:
        """host:gpuN of a placed trainer (the ledger splits that GPU's cost by time)."""
        gpu = self.gpu_of.get(backend_id)
        return None if gpu is None else f"{self.host}:gpu{gpu}"

    def placement(self) -> Placement:
        return self.place

    def command(self, spec: LaunchSpec) -> list[str]:
        return [self.python, "-m", "pax.cli", *trainer_args(spec.config_path, spec.run_dir)]

    def start(self, spec: LaunchSpec) -> str:
        spec.run_dir.mkdir(parents=True, exist_ok=True)
        log = open(spec.run_dir / "train.log", "ab")  # noqa: SIM115 - handed to the child
        log.write(f"\n=== attempt {spec.attempt} ===\n".encode())
        log.flush()
        env = trainer_env(spec.env, self.passthrough)
        if self.mps is not None:
            env.update(self.mps.trainer_env())
        gpu = None
        if self.gpus:
            with self.lock:
                gpu = self._free_gpu()
            if gpu is None:
                log.close()
                raise RuntimeError(
                    f"every GPU holds {self.slots_per_gpu} trainers (PAX_GPU_SLOTS); raise "
                    "PAX_GPU_SLOTS or PAX_GPUS"
                )
            env["CUDA_VISIBLE_DEVICES"] = str(gpu)
        as_user = {}
        if self.account is not None:
            uid, gid = self.account
            hand_over(spec.run_dir, uid, gid)  # its folder is the trainer's to write
            env["HOME"] = str(spec.run_dir)  # caches go there, not into the service's home
            as_user = {"user": uid, "group": gid, "extra_groups": []}
        # its own session: a signal to the service's process group does not reach training,
        # and stop() can signal the trainer's whole group
        proc = subprocess.Popen(
            self.command(spec),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
            **as_user,
        )
        log.close()
        with self.lock:
            self.procs[str(proc.pid)] = proc
            if gpu is not None:
                self.gpu_of[str(proc.pid)] = gpu
        return str(proc.pid)

    def observe(self, backend_ids: list[str]) -> dict[str, JobState]:
        return {b: self.poll(b) for b in backend_ids}

    def poll(self, backend_id: str) -> JobState:
        """The process's state; an exited one is reported once and forgotten."""
        with self.lock:
            proc = self.procs.get(backend_id)
        if proc is None:
            return NOT_OURS
        code = proc.poll()
        if code is None:
            return ALIVE
        with self.lock:
            self.procs.pop(backend_id, None)
            self.gpu_of.pop(backend_id, None)
        return JobState(EXITED, code=code)

    def stop(self, backend_id: str, grace_s: float) -> None:
        with self.lock:
            proc = self.procs.get(backend_id)
        pid = proc.pid if proc is not None else int(backend_id)

        def _stop():
            try:
                os.killpg(pid, signal.SIGTERM)
                os.killpg(pid, signal.SIGCONT)  # a stopped trainer must wake to checkpoint
            except (ProcessLookupError, PermissionError):
                return
            deadline = time.time() + grace_s
            while time.time() < deadline:
                if proc is not None and proc.poll() is not None:
                    return
                if proc is None and not _alive(pid):
                    return
                time.sleep(0.1)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)

        threading.Thread(target=_stop, daemon=True, name=f"stop-{pid}").start()

    def alive(self) -> list[str]:
        with self.lock:
            return [b for b, p in self.procs.items() if p.poll() is None]

    def exited(self) -> list[str]:
        """Tracked processes that have exited (poll() reports and forgets them)."""
        with self.lock:
            return [b for b, p in self.procs.items() if p.poll() is not None]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def trainer_account(user: str | None) -> tuple[int, int] | None:
    """(uid, gid) of the user trainers run as, checked now: it exists, and this process may
    start processes as it (it runs as root). ValueError naming the fix otherwise."""
    if not user:
        return None
    try:
        pw = pwd.getpwnam(user) if not user.isdigit() else pwd.getpwuid(int(user))
    except KeyError:
        raise ValueError(f"PAX_TRAINER_USER={user!r}: no such user on this machine") from None
    if os.geteuid() != 0 and pw.pw_uid != os.geteuid():
        raise ValueError(
            f"PAX_TRAINER_USER={user!r}: only a service started as root may run trainers as "
            "another user; start it as root, or leave PAX_TRAINER_USER unset"
        )
    return pw.pw_uid, pw.pw_gid

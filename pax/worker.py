"""`pax worker`: turn any machine into capacity. Claims queued runs from the service over HTTP
(with the worker token, which can do nothing else), trains each in a local run directory, and
reports its exit; the trainer streams metrics and heartbeats with the run's own token.

- Slots: `--slots N` trains N runs at once on this machine (a 10M-parameter run leaves most of
  a GPU idle). Each slot gets its own GPU while there are GPUs to go round
  (CUDA_VISIBLE_DEVICES), else they share; each GPU's time is split between the runs on it
  (the claim names the device), so a run alone pays the whole GPU and two together half each.
- Resume anywhere: with `--checkpoint-url` (a folder, or s3://, gs:// through fsspec) every
  checkpoint a trainer writes is copied there, with best.pt each time it improves, and a run
  requeued to another worker starts from its last one, its best dev model with it.
- Stopping: SIGTERM (docker stop, a preemption) is passed to every trainer, which checkpoints
  and exits 75; the exits are reported (the runs are requeued) before the worker leaves.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import fsspec
import yaml

from pax.client import Client, ServiceError, Unreachable
from runner.launch.base import run_dir_under, trainer_args, trainer_env
from runner.launch.mps import Mps, for_packed_runs
from trainer.runs import BEST

SYNC_S = 2.0  # how often a running trainer's new checkpoints are looked for and copied out


def default_name() -> str:
    """host-pid, made a valid name (letters, digits, '_', '.', '-')."""
    host = re.sub(r"[^A-Za-z0-9_.-]+", "-", socket.gethostname()).strip("-.") or "worker"
    return f"{host[:80]}-{os.getpid()}"


def gpu_count() -> int:
    """GPUs this machine has (nvidia-smi), without importing torch."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return 0
    try:
        out = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(line.startswith("GPU ") for line in out.stdout.splitlines())


def slot_devices(slots: int, gpus: int) -> list[tuple[str | None, float]]:
    """(CUDA_VISIBLE_DEVICES, GPU share) per slot: one GPU each while they go round, else
    slots share them evenly."""
    if gpus == 0:
        return [(None, 1.0)] * slots
    share = min(1.0, gpus / slots)
    return [(str(i % gpus), share) for i in range(slots)]


class CheckpointStore:
    """A run's checkpoints kept outside any one worker: <url>/runs/<run id>/checkpoints/."""

    def __init__(self, url: str):
        self.fs, self.base = fsspec.core.url_to_fs(str(url).rstrip("/"))

    def remote(self, run_id: int) -> str:
        return f"{self.base}/runs/{run_id}/checkpoints"

    def fetch(self, run_id: int, run_dir: Path) -> str | None:
        """Copy the run's newest complete checkpoint here (weights first, its metadata last, as
        the trainer writes them); its name, or None when there is none yet."""
        try:
            metas = sorted(self.fs.glob(f"{self.remote(run_id)}/step_*.json"))
        except (FileNotFoundError, OSError):
            return None
        local = run_dir / "checkpoints"
        for meta in reversed(metas):
            weights = meta[: -len(".json")] + ".pt"
            if not self.fs.exists(weights):
                continue
            local.mkdir(parents=True, exist_ok=True)
            stem = Path(meta).stem
            self.fs.get(weights, str(local / f"{stem}.pt"))
            self.fs.get(meta, str(local / f"{stem}.json"))
            best = f"{self.remote(run_id)}/{BEST}"
            if self.fs.exists(best):  # the best dev model so far: `final_model: best` needs it
                self.fs.get(best, str(local / BEST))
            return stem
        return None

    def push(self, run_id: int, run_dir: Path, sent: set[str]) -> None:
        """Copy out the complete checkpoints not sent yet (weights, then metadata: a
        checkpoint counts only once its metadata is there, here as in the run directory)."""
        local = run_dir / "checkpoints"
        for meta in sorted(local.glob("step_*.json")) if local.is_dir() else []:
            weights = meta.with_suffix(".pt")
            if meta.name in sent or not weights.is_file():
                continue
            self.fs.makedirs(self.remote(run_id), exist_ok=True)
            try:
                self.fs.put(str(weights), f"{self.remote(run_id)}/{weights.name}")
                self.fs.put(str(meta), f"{self.remote(run_id)}/{meta.name}")
            except FileNotFoundError:  # pruned by the trainer meanwhile: a newer one follows
                continue
            sent.add(meta.name)
        self._push_best(run_id, local, sent)

    def _push_best(self, run_id: int, local: Path, sent: set[str]) -> None:
        """best.pt is replaced in place at each better dev evaluation: copied out again each
        time it changed, under a temporary name first so the store never holds half of one."""
        best = local / BEST
        try:
            st = best.stat()
        except FileNotFoundError:
            return
        version = f"{BEST}@{st.st_mtime_ns}:{st.st_size}"
        if version in sent:
            return
        remote = self.remote(run_id)
        self.fs.makedirs(remote, exist_ok=True)
        try:
            self.fs.put(str(best), f"{remote}/{BEST}.part")
        except FileNotFoundError:  # replaced meanwhile: the next push sends the newer one
            return
        self.fs.mv(f"{remote}/{BEST}.part", f"{remote}/{BEST}")
        sent.add(version)


class Worker:
    def __init__(
        self,
        url: str,
        token: str,
        *,
        name: str | None = None,
        runs_root: Path = Path("var/worker-runs"),
        poll_s: float = 5.0,
        max_runs: int = 0,
        idle_exit_s: float = 0,
        slots: int = 1,
        gpus: int | None = None,
        accelerator: str | None = None,
        spot: bool = False,
        checkpoint_url: str | None = None,
        passthrough=(),
        alive_file: Path | None = None,
        mps: bool = True,
        log=lambda m: print(m, file=sys.stderr, flush=True),
    ):
        self.url = url
        self.token = token
        self.name = name or default_name()
        self.runs_root = Path(runs_root)
        self.poll_s = poll_s
        self.max_runs = max_runs
        self.idle_exit_s = idle_exit_s
        self.slots = max(1, slots)
        self.gpus = gpus  # None: as many as nvidia-smi lists
        self.accelerator = accelerator
        self.spot = spot
        self.store = CheckpointStore(checkpoint_url) if checkpoint_url else None
        self.passthrough = tuple(passthrough)
        self.alive_file = Path(alive_file) if alive_file else None
        self.mps_enabled = mps
        self.mps: Mps | None = None  # started in run() when slots share a GPU
        self.log = log
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.done = 0
        self.claimed = 0
        self.trainers: dict[int, subprocess.Popen] = {}
        self.failure: int = 0
        # The worker is idle as a whole: slots in a claim or a run, and since when none has been.
        # A slot alone never leaves (an idle slot beside a busy one would be a lost slot for the
        # rest of the VM's life: the finalists after a long last ranking run would get fewer).
        self.busy = 0  # slots claiming or training
        self.idle_since = time.monotonic()  # the start, or the end of the last run
        self.leaving = False

    # ------------------------------------------------------------ the loop

    def run(self) -> int:
        """Slots work until max_runs are claimed (0 = forever), the queue stays empty (or the
        service unreachable) for idle_exit_s, or SIGTERM arrives."""
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, self._on_signal)
        self.alive()
        gpus = gpu_count() if self.gpus is None else self.gpus
        devices = slot_devices(self.slots, gpus)
        self.mps = for_packed_runs(
            self.runs_root / "mps", gpus=gpus, slots=self.slots, enabled=self.mps_enabled,
            other_user=False,
        )  # fmt: skip
        state = self.mps.start()
        if self.mps.wanted:
            self.log(f"worker {self.name}: MPS {state['state']}: {state['why']}")
        threads = [
            threading.Thread(target=self._slot, args=(i, *devices[i]), name=f"slot-{i}")
            for i in range(self.slots)
        ]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            for t in threads:
                t.join(timeout=0.5)  # short joins: the main thread keeps taking signals
        self.mps.stop()
        if self.leaving:
            self.log(f"worker {self.name}: every slot idle for {self.idle_exit_s:g}s: leaving")
        self.log(f"worker {self.name}: {self.done} runs done")
        return self.failure

    def _on_signal(self, signum, frame) -> None:
        self.log(f"worker {self.name}: {signal.Signals(signum).name}: stopping the trainers")
        self.stopping.set()
        with self.lock:
            trainers = list(self.trainers.values())
        for proc in trainers:  # each checkpoints and exits 75; its exit is reported
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)

    def alive(self) -> None:
        """Touch the alive file (a container's healthcheck reads its age): at start, at every
        answer from the service, and while trainers run."""
        if self.alive_file is not None:
            with contextlib.suppress(OSError):
                self.alive_file.touch()

    def _take(self) -> bool:
        """A slot may ask for a run: not past max_runs, and the worker is not leaving."""
        with self.lock:
            if self.leaving or (self.max_runs and self.claimed >= self.max_runs):
                return False
            self.claimed += 1
            self.busy += 1
            return True

    def _untake(self) -> None:
        """The claim brought nothing: this slot is idle again (an empty claim is not work, so
        the worker's idle time runs on)."""
        with self.lock:
            self.claimed -= 1
            self.busy -= 1

    def _ran(self) -> None:
        """A run ended in this slot: the worker's idle time counts from now."""
        with self.lock:
            self.busy -= 1
            self.done += 1
            self.idle_since = time.monotonic()

    def _idle_out(self) -> bool:
        """Whether the worker leaves: every slot idle for idle_exit_s. Decided once, under the
        lock, so that no slot is claiming while the others go; then all slots leave."""
        with self.lock:
            if self.leaving:
                return True
            if not self.idle_exit_s or self.busy:
                return False
            self.leaving = time.monotonic() - self.idle_since > self.idle_exit_s
            return self.leaving

    def _slot(self, index: int, device: str | None, share: float) -> None:
        me = self.name if self.slots == 1 else f"{self.name}-s{index}"
        with Client(self.url, self.token, timeout=60) as c:
            while not self.stopping.is_set():
                if not self._take():
                    return
                body = {"worker": me, "spot": self.spot, "gpus": share if self.accelerator else 1.0}
                if self.accelerator:
                    body["accelerator"] = self.accelerator
                    # the GPU by name: the ledger splits its cost between the runs on it by time
                    body["device"] = f"{self.name}:gpu{device or 0}"
                try:
                    claim = c.claim(body)
                except Unreachable as e:
                    self._untake()
                    # nothing to train and no service for as long as idle: leave, or a cloud
                    # VM whose service is gone for good would be paid for forever
                    if self._idle_out():
                        self.log(
                            f"worker {me}: the service has been unreachable for over "
                            f"{self.idle_exit_s:.0f}s with nothing to train: leaving ({e})"
                        )
                        return
                    self.log(f"worker {me}: {e}; retrying in {self.poll_s:.0f}s")
                    self.stopping.wait(self.poll_s)
                    continue
                except ServiceError as e:
                    self._untake()
                    self.log(f"worker {me}: claim refused ({e})")
                    self.failure = 2
                    self.stopping.set()
                    return
                self.alive()  # the service answered
                if claim is None:
                    self._untake()
                    if self._idle_out():
                        return
                    self.stopping.wait(self.poll_s)
                    continue
                try:
                    code = self.train(claim, device)
                    self._report(c, claim, code)
                finally:
                    self._ran()

    def _report(self, c: Client, claim: dict, code: int) -> None:
        for _ in range(10):  # the service may be restarting: the exit must arrive
            try:
                c.report_exit(claim["run_id"], code, run_token=claim["run_token"])
                return
            except Unreachable:
                time.sleep(self.poll_s)
            except ServiceError as e:  # refused (a finished run's late exit): said, not retried
                self.log(f"worker: the exit of run {claim['run_id']} was refused ({e})")
                return

    # ------------------------------------------------------------ one run

    def train(self, claim: dict, device: str | None = None) -> int:
        run_id = claim["run_id"]
        run_dir = run_dir_under(self.runs_root, run_id, claim["name"])
        run_dir.mkdir(parents=True, exist_ok=True)
        if self.store is not None and (got := self.store.fetch(run_id, run_dir)):
            self.log(f"worker: run {run_id} resumes from {got} (from {self.store.base})")
        spec = run_dir / "spec.yaml"
        spec.write_text(yaml.safe_dump({"base": claim["config"]}))
        run_env = {
            "PAX_RUNNER_URL": self.url,
            "PAX_RUN_ID": str(run_id),
            "PAX_RUN_TOKEN": claim["run_token"],  # the run's own token, never the worker's
            "PAX_HEARTBEAT_S": str(claim["heartbeat_s"]),
        }
        if device is not None:
            run_env["CUDA_VISIBLE_DEVICES"] = device
        if self.mps is not None:
            run_env.update(self.mps.trainer_env())
        env = trainer_env(run_env, self.passthrough)
        self.log(
            f"worker: run {run_id} ({claim['name']}, attempt {claim['attempt']}) in {run_dir}"
            + (f" on GPU {device}" if device is not None else "")
        )
        sent: set[str] = set()
        with open(run_dir / "train.log", "ab") as out:
            out.write(f"\n=== attempt {claim['attempt']} (worker {self.name}) ===\n".encode())
            out.flush()
            proc = subprocess.Popen(
                [sys.executable, "-m", "pax.cli", *trainer_args(spec, run_dir)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
            )
            with self.lock:
                self.trainers[run_id] = proc
            if self.stopping.is_set():  # a SIGTERM that came while it started
                proc.send_signal(signal.SIGTERM)
            while proc.poll() is None:
                try:
                    proc.wait(timeout=SYNC_S)
                except subprocess.TimeoutExpired:
                    self.alive()
                    if self.store is not None:
                        self.store.push(run_id, run_dir, sent)
            with self.lock:
                self.trainers.pop(run_id, None)
        if self.store is not None:
            self.store.push(run_id, run_dir, sent)  # the final (or preempted) state too
        return proc.returncode


def run_worker(url: str, token: str, **kw) -> int:
    return Worker(url, token, **kw).run()

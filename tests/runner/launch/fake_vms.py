"""A fake SkyPilot adapter whose "VMs" are real `pax worker` processes (PAX_SKY_ADAPTER=
tests.runner.launch.fake_vms:FakeVMs, loaded by a real `pax serve`). Only the cloud is fake:
launch takes the real sky.Task the pool built and runs its last line (`exec pax worker`) with
the task's own envs and secrets, as the VM would; the bucket mount /pax is a local folder and the
public runner URL reaches the local service, as a tunnel would. A worker killed by SIGKILL is a
preemption: the job is recovered onto a new "VM" (a new worker process), as SkyPilot does.

Set by the test: PAX_FAKE_VM_DIR (the bucket, the VMs' disks, their logs, jobs.json: every job's
VM time as the cloud would bill it), PAX_FAKE_VM_URL (the local service), PAX_FAKE_NO_CAPACITY
(how many launches first find no capacity)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path


class FakeVMs:
    def __init__(self):
        self.dir = Path(os.environ["PAX_FAKE_VM_DIR"])
        self.url = os.environ["PAX_FAKE_VM_URL"]
        self.no_capacity = int(os.environ.get("PAX_FAKE_NO_CAPACITY", "0"))
        self.jobs: dict[int, dict] = {}
        self.lock = threading.Lock()

    # ------------------------------------------------------------ the cloud's API

    def enabled_clouds(self) -> list[str]:
        return ["AWS"]

    def launch(self, task, name: str) -> int:
        import sky.exceptions

        with self.lock:
            if self.no_capacity > 0:
                self.no_capacity -= 1
                raise sky.exceptions.ResourcesUnavailableError(
                    f"Failed to acquire resources for {name} in all zones (fake)"
                )
            job = 1 + len(self.jobs)
            secrets = {
                k: getattr(v, "get_secret_value", lambda v=v: v)() for k, v in task.secrets.items()
            }
            env = {**task.envs, **secrets}
            self.jobs[job] = {"name": name, "env": env, "recovery_count": 0, "cancelled": False}
            self._boot(job)
            return job

    def queue(self, job_ids: list[int]) -> list[dict]:
        out = []
        with self.lock:
            for j in job_ids:
                if j in self.jobs:
                    out.append(self._record(j))
            self._save()
        return out

    def cancel(self, job_id: int) -> None:
        with self.lock:
            job = self.jobs[job_id]
            job["cancelled"] = True
            if job["proc"].poll() is None:
                os.killpg(job["proc"].pid, signal.SIGTERM)

    def job_log(self, job_id: int, tail: int) -> str:
        log = self.dir / "logs" / f"job{job_id}.log"
        return "\n".join(log.read_text().splitlines()[-tail:])

    # ------------------------------------------------------------ the "VMs"

    def _boot(self, job: int) -> None:
        """A VM comes up and runs the task's `exec pax worker` with the task's envs."""
        j = self.jobs[job]
        env = dict(j["env"])
        env["PAX_RUNNER_URL"] = self.url  # the tunnel
        bucket = self.dir / "bucket"
        env["PAX_CHECKPOINT_URL"] = env["PAX_CHECKPOINT_URL"].replace("/pax", str(bucket), 1)
        disk = self.dir / "vms" / f"job{job}-{j['recovery_count']}"
        env["PAX_WORKER_RUNS_ROOT"] = str(disk / "runs")
        env["PAX_WORKER_POLL_S"] = "0.2"
        disk.mkdir(parents=True, exist_ok=True)
        (self.dir / "logs").mkdir(exist_ok=True)
        log = open(self.dir / "logs" / f"job{job}.log", "ab")  # noqa: SIM115 - the VM's
        j["proc"] = subprocess.Popen(
            [sys.executable, "-m", "pax.cli", "worker"],
            env={**os.environ, **env},
            cwd=disk,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # the VM: the worker and its trainers, one process group
        )
        j.setdefault("start_at", time.time())
        if j["recovery_count"]:
            j["last_recovered_at"] = time.time()
        (self.dir / "pids").mkdir(exist_ok=True)
        (self.dir / "pids" / f"job{job}").write_text(str(j["proc"].pid))

    def _record(self, job: int) -> dict:
        j = self.jobs[job]
        code = j["proc"].poll()
        if code == -signal.SIGKILL and not j["cancelled"]:  # the VM was lost: recovered
            j["recovery_count"] += 1
            self._boot(job)
            code = None
        if code is None:
            status = "RUNNING"
        else:
            j.setdefault("end_at", time.time())
            status = "CANCELLED" if j["cancelled"] else ("SUCCEEDED" if code == 0 else "FAILED")
        return {
            "job_id": job,
            "job_name": j["name"],
            "status": status,
            "recovery_count": j["recovery_count"],
            "start_at": j["start_at"],
            "end_at": j.get("end_at"),
            "last_recovered_at": j.get("last_recovered_at"),
            "accelerators": {j["env"]["PAX_ACCELERATOR"]: 1},
            "cloud": "AWS",
            "region": "us-east-1",
            "now": time.time(),
        }

    def _save(self) -> None:
        """Every job's VM time as the cloud bills it (what the test checks the bill against)."""
        doc = {
            str(k): {
                "name": j["name"],
                "start_at": j["start_at"],
                "end_at": j.get("end_at"),
                "recovery_count": j["recovery_count"],
                "pid": j["proc"].pid,
            }
            for k, j in self.jobs.items()
        }
        tmp = self.dir / "jobs.json.tmp"
        tmp.write_text(json.dumps(doc))
        tmp.replace(self.dir / "jobs.json")

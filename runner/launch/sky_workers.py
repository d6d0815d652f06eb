"""Warm GPU workers on SkyPilot (`pax cloud up/down/status`): a few managed spot jobs, each
running `pax worker --slots N` on one GPU, that claim a study's runs from the ledger (runs with
`launcher: worker`) and stay up while the queue has work.

Why this shape (docs/deploy.md compares it with SkyPilot pools): it reuses pax's own claim, lease,
slot packing, per-device cost split and checkpoint store as they are tested on local workers;
SkyPilot does what it is good at (finding a spot GPU, recovering a preempted VM, tearing it down
when the worker exits). A preempted worker's runs lose their lease, are requeued and resume on any
worker from the checkpoints in the bucket.

The pool never blocks the scheduler: launches run in a thread pool and are collected on later
steps (a launch call that outlives `call_timeout_s` is reported, and collected when it returns);
SkyPilot's records are read once per `poll_s` in the pool's own thread. A launch error that
passes (no capacity, a quota) is retried with the runs' back-off; one a user must fix ends that
worker with the fix in its reason.
"""

from __future__ import annotations

import concurrent.futures as cf
import copy
import logging
import threading
import time
import traceback
from importlib import resources

import yaml
from sqlalchemy.engine import Engine

from runner.launch.retries import back_off
from runner.launch.sky_errors import classify, failure_cause
from runner.launch.skypilot import SkyOptions, validate_options
from runner.ledger import cloud_workers as cw
from runner.ledger.runs import waiting_for
from runner.settings import Settings

log = logging.getLogger("pax.cloud")
TEMPLATE = resources.files("runner.launch") / "sky_worker.yaml"
NEEDS_INBOUND = (
    "cloud workers claim runs over HTTP: set PAX_SKY_RUNNER_URL to the service's public https "
    "URL (a reverse proxy or a tunnel: docs/deploy.md). Without inbound access, launch one "
    "managed job per run instead (`pax sky launch`)"
)
# SkyPilot's managed-job states, as a worker's row keeps them
STATUS = {
    "PENDING": "pending",
    "SUBMITTED": "pending",
    "STARTING": "pending",
    "RUNNING": "running",
    "RECOVERING": "recovering",
    "CANCELLING": "running",
    "WINDING_DOWN": "running",
    "SUCCEEDED": "ended",
    "CANCELLED": "cancelled",
}
VM_UP = ("STARTING", "RUNNING", "RECOVERING", "CANCELLING", "WINDING_DOWN")


def vacant(w) -> bool:
    """A place in the pool that a refill may take: a worker that left idle (the queue had
    nothing for it), not taken down, not yet replaced."""
    return w.status == "ended" and not w.down_requested and w.replaced_by is None


def worker_task_config(
    opts: SkyOptions,
    *,
    name: str,
    accelerator: str,
    slots: int,
    idle_exit_s: float,
    worker_token: str,
    pricing=None,
    login: dict | None = None,
) -> dict:
    """The task's YAML for one worker (the worker token and a registry login as secrets)."""
    validate_options(opts, pricing)
    if not opts.runner_url:
        raise ValueError(NEEDS_INBOUND)
    doc = copy.deepcopy(yaml.safe_load(TEMPLATE.read_text()))
    doc["name"] = name
    res = doc["resources"]
    res["accelerators"] = f"{accelerator}:1"
    res.update({k: v for k, v in (("cloud", opts.cloud), ("region", opts.region)) if v})
    res["use_spot"] = opts.use_spot
    res["image_id"] = opts.image
    doc["file_mounts"]["/pax"]["name"] = opts.bucket
    if opts.store:
        doc["file_mounts"]["/pax"]["store"] = opts.store
    doc["envs"].update(
        {
            "PAX_RUNNER_URL": opts.runner_url,
            "PAX_WORKER_NAME": name,
            "PAX_WORKER_SLOTS": str(slots),
            "PAX_WORKER_IDLE_EXIT_S": f"{idle_exit_s:g}",
            "PAX_ACCELERATOR": accelerator,
            "PAX_SPOT": "true" if opts.use_spot else "false",
            "PAX_VOCABS": opts.vocabs,
            **opts.extra_envs,
        }
    )
    doc["secrets"] = {"PAX_WORKER_TOKEN": worker_token, **(login or {})}
    return doc


def build_worker_task(doc: dict):
    """A real sky.Task from a worker's YAML (secrets added after parsing, never in its text)."""
    import sky

    doc = dict(doc)
    secrets = doc.pop("secrets")
    task = sky.Task.from_yaml_config(doc)
    task.update_secrets(secrets)
    return task


class CloudPool:
    """The service's warm workers: `up` asks for them, `step` launches, observes and tears
    down, `bill` says what they cost. One instance per service, its own thread."""

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        opts: SkyOptions,
        adapter,
        pricing,
        worker_token: str,
        *,
        login: dict | None = None,
        clock=time.time,
        call_timeout_s: float = 120.0,
        leading=lambda: True,
    ):
        self.engine = engine
        self.settings = settings
        self.opts = opts
        self.adapter = adapter
        self.pricing = pricing
        self.worker_token = worker_token
        self.login = login or {}
        self.clock = clock
        self.call_timeout_s = call_timeout_s
        self.leading = leading  # one of several replicas: only the scheduler's leader steps
        self.calls = cf.ThreadPoolExecutor(max_workers=4, thread_name_prefix="sky-call")
        self.launching: dict[int, tuple[cf.Future, float]] = {}  # worker id -> (call, since)
        self.cancelled: set[int] = set()  # workers whose cancel SkyPilot took
        self.stop_event = threading.Event()
        self.thread: threading.Thread | None = None

    # ------------------------------------------------------------ asking

    def up(self, *, accelerator: str, workers: int, slots: int, idle_exit_s: float) -> list:
        """Rows for `workers` new workers; their launches start at the next step. Refuses (a
        ValueError naming the field and the fix) what could never run."""
        if 0 < idle_exit_s < 2 * self.settings.lease_s:
            raise ValueError(
                f"idle_exit_s={idle_exit_s:g} is under twice PAX_LEASE_S ({self.settings.lease_s:g}"
                " s): a preempted worker's runs wait one lease before they are requeued, and "
                "workers that left by then must be launched again for them (minutes of start-up "
                f"on a new VM); use 0 (never) or at least {2 * self.settings.lease_s:g}"
            )
        opts = SkyOptions(**{**self.opts.__dict__, "accelerators": (accelerator,)})
        worker_task_config(  # the whole task checked before anything is recorded
            opts,
            name="pax-w0",
            accelerator=accelerator,
            slots=slots,
            idle_exit_s=idle_exit_s,
            worker_token=self.worker_token,
            pricing=self.pricing,
        )
        price = self.pricing.price_for(accelerator, self.opts.use_spot)
        return cw.add_workers(
            self.engine,
            accelerator=accelerator,
            spot=self.opts.use_spot,
            count=workers,
            slots=slots,
            idle_exit_s=idle_exit_s,
            price=price,
        )

    def down(self) -> int:
        """Every live worker told to go: launched ones are cancelled at the next step (their
        trainers checkpoint and their runs are requeued), unlaunched ones simply end. Workers
        that left idle are closed too: the pool no longer refills their places."""
        n = 0
        for w in cw.workers(self.engine):
            if w.status in cw.LIVE:
                n += 1
            elif not vacant(w):
                continue
            cw.update_worker(self.engine, worker_id=w.id, down_requested=True)
        return n

    # ------------------------------------------------------------ one step

    def step(self) -> None:
        now = self.clock()
        self._collect(now)
        live = cw.workers(self.engine, live_only=True)
        for w in live:
            if w.down_requested and w.backend_id is None and w.id not in self.launching:
                cw.update_worker(
                    self.engine, worker_id=w.id, status="cancelled", reason="pax cloud down",
                    ended_at=now,
                )  # fmt: skip
            elif w.down_requested and w.backend_id is not None and w.id not in self.cancelled:
                try:
                    self._call(self.adapter.cancel, int(w.backend_id))
                    self.cancelled.add(w.id)
                except Exception as e:  # asked again at the next step
                    log.warning("could not cancel %s (%s)", w.name, e)
            elif (
                w.backend_id is None
                and w.id not in self.launching
                and (w.not_before is None or w.not_before <= now)
            ):
                self._launch(w, now)
        launched = [w for w in live if w.backend_id is not None]
        if launched:
            self._observe(launched, now)
        self._refill(now)

    def _call(self, fn, *args):
        """A SkyPilot call with a deadline (the pool's thread never waits longer)."""
        return self.calls.submit(fn, *args).result(timeout=self.call_timeout_s)

    def _launch(self, w, now: float) -> None:
        opts = SkyOptions(**{**self.opts.__dict__, "accelerators": (w.accelerator,)})
        try:
            doc = worker_task_config(
                opts,
                name=w.name,
                accelerator=w.accelerator,
                slots=w.slots,
                idle_exit_s=w.idle_exit_s,
                worker_token=self.worker_token,
                pricing=self.pricing,
                login=self.login,
            )
            task = build_worker_task(doc)  # needs SkyPilot installed
        except Exception as e:  # SkyPilot missing, a set-up that cannot launch: said, not raised
            self._launch_error(w.id, classify(e), now)
            return
        self.launching[w.id] = (self.calls.submit(self.adapter.launch, task, w.name), now)

    def _collect(self, now: float) -> None:
        """Launches that returned: a job id, or an error that waits or ends the worker."""
        for wid, (fut, since) in list(self.launching.items()):
            if not fut.done():
                if now - since > self.call_timeout_s:
                    cw.update_worker(
                        self.engine,
                        worker_id=wid,
                        reason=f"SkyPilot's launch call has not returned after "
                        f"{now - since:.0f} s; still waiting for it",
                    )
                continue
            del self.launching[wid]
            try:
                job = fut.result()
            except Exception as e:
                self._launch_error(wid, classify(e), now)
                continue
            cw.update_worker(
                self.engine,
                worker_id=wid,
                backend_id=str(job),
                status="pending",
                reason=f"managed job {job} submitted",
                launch_errors=0,
                not_before=None,
            )

    def _launch_error(self, wid: int, err, now: float) -> None:
        w = next((x for x in cw.workers(self.engine) if x.id == wid), None)
        if w is None:
            return
        if err.passes:
            wait = back_off(self.settings, w.launch_errors)
            cw.update_worker(
                self.engine,
                worker_id=wid,
                launch_errors=w.launch_errors + 1,
                not_before=now + wait,
                reason=f"{err.reason}; launch retried in {wait:.0f} s",
                note=f"{err.reason}; launch retried in {wait:.0f} s",
            )
        else:
            cw.update_worker(
                self.engine, worker_id=wid, status="failed", reason=err.reason, ended_at=now
            )

    def _observe(self, launched: list, now: float) -> None:
        try:
            records = self._call(self.adapter.queue, [int(w.backend_id) for w in launched])
        except Exception as e:  # asked again at the next poll
            log.warning("could not read the cloud workers' jobs (%s)", e)
            return
        by_id = {str(r["job_id"]): r for r in records}
        for w in launched:
            rec = by_id.get(w.backend_id)
            if rec is not None:
                self._seen(w, rec, now)

    def _seen(self, w, rec: dict, now: float) -> None:
        """What SkyPilot's record says of one worker, kept: its state, recoveries and VM time
        (from the first sight of its VM to the job's end; conservative: the minutes between a
        preemption and the next VM count too)."""
        status = str(rec.get("status") or "").split(".")[-1]
        fields: dict = {"recoveries": int(rec.get("recovery_count") or 0)}
        seen_at = float(rec.get("now") or now)
        provisioned = w.provisioned_at
        if provisioned is None and status in VM_UP:
            provisioned = seen_at  # the first sight of its VM, if SkyPilot says no earlier
        start = rec.get("start_at")  # and provisioning began at submitted_at (STARTING)
        asked = rec.get("submitted_at") if (start or status in VM_UP) else None
        for t in (asked, start):
            if t and (provisioned is None or float(t) < provisioned):
                provisioned = float(t)
        if provisioned is not None:
            fields["provisioned_at"] = provisioned
        end = rec.get("end_at")
        if provisioned is not None:
            fields["vm_seconds"] = max(0.0, float(end or seen_at) - provisioned)
        to = STATUS.get(status)
        if status.startswith("FAILED"):
            to = "failed"
            cause = failure_cause(status, rec, (w.accelerator,), w.spot)
            fields["reason"] = cause or (
                f"the worker exited with an error; see `sky jobs logs {w.backend_id}`"
            )
            if status == "FAILED_NO_RESOURCE" and not w.down_requested and w.status in cw.LIVE:
                fields["reason"] += f"; replaced by {self._replace(w, cause, now)}"
        elif to == "ended":
            fields["reason"] = "the queue had nothing for it: the worker left, its VM torn down"
        elif to == "cancelled":
            fields["reason"] = "pax cloud down" if w.down_requested else "cancelled in SkyPilot"
        if to in cw.ENDED:
            fields["ended_at"] = float(end or seen_at)
        if to is not None:
            fields["status"] = to
        cw.update_worker(self.engine, worker_id=w.id, **fields)

    def _replace(self, w, cause: str, now: float) -> str:
        """A worker whose job found no capacity (SkyPilot gave up: FAILED_NO_RESOURCE) is a
        launch that waits, not a worker lost for good: a new one asks again after the back-off."""
        wait = back_off(self.settings, w.launch_errors)
        return self._respawn(
            w,
            reason=f"replaces {w.name}: {cause}; launch retried in {wait:.0f} s",
            note=f"replaces {w.name}; launch retried in {wait:.0f} s",
            launch_errors=w.launch_errors + 1,
            not_before=now + wait,
        )

    def _refill(self, now: float) -> None:
        """The pool keeps the size `up` asked for while work waits. A worker that left idle is
        launched again (a new row in its place) when runs for workers have waited over
        PAX_CLOUD_REFILL_S with no live worker taking them: the live ones are busy, or there
        are none. Without it, runs queued after the others left (a preempted worker's runs,
        requeued after their lease; finalists promoted after a long last ranking run) wait
        forever, and the sweep never finishes. One worker per `slots` waiting runs, less the
        workers still starting."""
        vacancies = [w for w in cw.workers(self.engine) if vacant(w)]
        if not vacancies:
            return
        waited = [
            t for t in waiting_for(self.engine, kind="worker", t=now)
            if now - t > self.settings.cloud_refill_s
        ]  # fmt: skip
        if not waited:
            return
        # still starting: no VM yet, or up but not yet claiming (SkyPilot says RUNNING when the
        # task starts; the worker claims seconds later). Counted, or each step adds another.
        live = cw.workers(self.engine, live_only=True)
        up = [w.name for w in live if w.status == "running"]
        starting = len(live) - len(cw.have_claimed(self.engine, up))
        need = -(-len(waited) // max(1, vacancies[0].slots)) - starting
        for w in vacancies[: max(0, need)]:
            self._respawn(
                w,
                reason=f"replaces {w.name}, which left idle: {len(waited)} "
                f"run{'s' if len(waited) > 1 else ''} for workers waited over "
                f"{self.settings.cloud_refill_s:g} s with no worker taking them",
            )

    def _respawn(self, w, *, reason: str, note: str | None = None, **fields) -> str:
        """A new worker in `w`'s place, as `w` was asked (GPU, slots, idle exit, price). A new
        row, so that each keeps its own VM time and the gap between them is never billed."""
        (new,) = cw.add_workers(
            self.engine,
            accelerator=w.accelerator,
            spot=w.spot,
            count=1,
            slots=w.slots,
            idle_exit_s=w.idle_exit_s,
            price=(w.price_per_hour or 0.0, w.price_source or ""),
        )
        cw.update_worker(
            self.engine, worker_id=new.id, reason=reason, note=note or reason, **fields
        )
        cw.update_worker(self.engine, worker_id=w.id, replaced_by=new.name)
        return new.name

    # ------------------------------------------------------------ the thread

    def start(self) -> None:
        self.thread = threading.Thread(target=self._loop, name="cloud-pool", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self.stop_event.is_set():
            try:
                if self.leading():
                    self.step()
            except Exception:  # the loop must survive anything one step meets
                log.error("cloud pool step failed:\n%s", traceback.format_exc())
            self.stop_event.wait(max(0.2, self.settings.sky_poll_s))

    def shutdown(self) -> None:
        self.stop_event.set()
        if self.thread is not None:
            self.thread.join(timeout=5)
        self.calls.shutdown(wait=False, cancel_futures=True)

    def status(self, *, ledger_id: str | None) -> dict:
        return {
            "ledger_id": ledger_id,
            "bucket": self.opts.bucket,
            "runner_url": self.opts.runner_url,
            "image": self.opts.image,
            **cw.bill(self.engine, controller=self.pricing.controller(), t=self.clock()),
        }

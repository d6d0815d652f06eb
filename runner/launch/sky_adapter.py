"""The only module that calls SkyPilot's cloud API (sky.jobs.launch/queue_v2/cancel, sky.launch,
sky.job_status, sky.down, sky.jobs.tail_logs, enabled_clouds, sky.get). Tests replace this
adapter and nothing else."""

from __future__ import annotations

import time

QUEUE_FIELDS = [
    "job_id", "job_name", "status", "recovery_count", "job_duration", "submitted_at",
    "start_at", "end_at", "last_recovered_at", "accelerators", "cloud", "region",
    "cluster_resources", "failure_reason", "details",
]  # fmt: skip


def _record(rec) -> dict:
    """A queue record as a plain dict (SkyPilot returns pydantic records or dicts)."""
    if hasattr(rec, "model_dump"):
        rec = rec.model_dump()
    return {k: rec.get(k) for k in QUEUE_FIELDS} | {"now": time.time()}


def load_adapter(spec: str):
    """The adapter named by PAX_SKY_ADAPTER ("module:Class"), built."""
    import importlib

    module, _, cls = spec.partition(":")
    return getattr(importlib.import_module(module), cls)()


class SkyAdapter:
    def enabled_clouds(self) -> list[str]:
        """The clouds `sky check` enabled (SkyPilot's API server answers; it starts one
        locally when none is configured)."""
        from sky.client import sdk

        return [str(c) for c in sdk.get(sdk.enabled_clouds())]

    def launch(self, task, name: str) -> int:
        import sky

        job_ids, _handle = sky.get(sky.jobs.launch(task, name=name))
        return int(job_ids[0])

    def queue(self, job_ids: list[int]) -> list[dict]:
        """Every listed managed job's record, in one request."""
        import sky

        got = sky.get(sky.jobs.queue_v2(refresh=False, job_ids=job_ids, fields=QUEUE_FIELDS))
        records = got[0] if isinstance(got, tuple) else got
        return [_record(r) for r in records]

    def job_log(self, job_id: int, tail: int) -> str:
        """The last `tail` lines of a managed job's log (`sky jobs logs N --no-follow`)."""
        import io

        import sky

        out = io.StringIO()
        sky.jobs.tail_logs(job_id=job_id, follow=False, tail=tail, output_stream=out)
        return out.getvalue()

    def cancel(self, job_id: int) -> None:
        import sky

        sky.get(sky.jobs.cancel(job_ids=[job_id]))

    def down(self, cluster: str) -> None:
        import sky

        sky.get(sky.down(cluster))

    def launch_cluster(self, task, cluster: str, idle_minutes: int) -> int:
        """A plain (unmanaged) cluster that stops and tears itself down when idle."""
        import sky

        job_id, _handle = sky.get(
            sky.launch(task, cluster_name=cluster, idle_minutes_to_autostop=idle_minutes, down=True)
        )
        return int(job_id)

    def cluster_job_status(self, cluster: str, job_id: int) -> str | None:
        import sky

        status = sky.get(sky.job_status(cluster, [job_id])).get(job_id)
        return None if status is None else str(status).split(".")[-1]

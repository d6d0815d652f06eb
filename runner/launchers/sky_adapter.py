"""The only module that calls SkyPilot's cloud API (sky.jobs.launch/queue/cancel, sky.down,
sky.get). Tests replace this adapter and nothing else."""

from __future__ import annotations


class SkyAdapter:
    def launch(self, task, name: str) -> int:
        import sky

        job_ids, _handle = sky.get(sky.jobs.launch(task, name=name))
        return int(job_ids[0])

    def status(self, job_id: int) -> str | None:
        """The managed job's status name (e.g. RUNNING, RECOVERING, SUCCEEDED), or None."""
        import sky

        for job in sky.get(sky.jobs.queue(refresh=True, job_ids=[job_id])):
            if int(job["job_id"]) == job_id:
                return str(job["status"]).split(".")[-1]
        return None

    def cancel(self, job_id: int) -> None:
        import sky

        sky.get(sky.jobs.cancel(job_ids=[job_id]))

    def down(self, cluster: str) -> None:
        import sky

        sky.get(sky.down(cluster))

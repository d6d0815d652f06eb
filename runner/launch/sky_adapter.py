"""The only module that calls SkyPilot's cloud API (sky.jobs.launch/queue/cancel, sky.launch,
sky.job_status, sky.down, sky.get). Tests replace this adapter and nothing else."""

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

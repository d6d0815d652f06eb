"""What SkyPilot's errors and failure states mean for a run: a launch error that can pass by
itself (no capacity, a quota, the network) is retried with back-off; one that cannot (SkyPilot
missing, no cloud enabled, a bad credential, a bucket that does not exist) pauses the sweep
with the fix. A job that ended FAILED_NO_RESOURCE never ran: it is a launch that waits, not a
crash. Exceptions are told apart by their class names (and, for a cloud's own error, its
words), so this module needs no SkyPilot to import."""

from __future__ import annotations

from runner.launch.base import LaunchError

# exception classes (SkyPilot's, Python's, requests') whose cause passes by itself
PASSING = {
    "ResourcesUnavailableError", "ProvisionPrechecksError", "NetworkError",
    "ApiServerConnectionError", "ServerTemporarilyUnavailableError", "ExecutionRetryableError",
    "ConcurrentWorkerExhaustedError", "RequestInterruptedError", "ClusterStatusFetchingError",
    "FetchClusterInfoError", "KubeAPIUnreachableError", "AWSAzFetchingError",
    "ConnectionError", "TimeoutError", "Timeout", "ReadTimeout", "ConnectTimeout",
}  # fmt: skip
# ... and whose cause a user must fix
NO_ACCESS = {
    "NoCloudAccessError", "InvalidCloudCredentials", "CloudUserIdentityError",
    "PermissionDeniedError", "ApiServerAuthenticationError", "InvalidCloudConfigs",
    "InvalidSkyPilotConfigError", "NoWorkspaceAccessError",
}  # fmt: skip
# a cloud's own error (CloudError) passes when it says so
PASSING_WORDS = (
    "capacity", "quota", "insufficient", "unavailable", "throttl", "rate limit", "rate exceeded",
    "timed out", "timeout", "temporar", "try again", "stockout", "out of stock",
)  # fmt: skip
FIX_ACCESS = (
    "run `sky check` on the service's host to see which cloud lacks what, fix it, then "
    "`pax sweep resume <sweep id>`"
)


def _names(e: BaseException) -> set[str]:
    return {c.__name__ for c in type(e).__mro__}


def classify(e: BaseException) -> LaunchError:
    """A failed `sky.jobs.launch` as the scheduler acts on it."""
    names = _names(e)
    said = f"{type(e).__name__}: {e}"
    if "ImportError" in names:
        return LaunchError(
            False,
            f"SkyPilot is not installed where the service runs ({e}): "
            "pip install 'pax[cloud]', then `sky check`, then `pax sweep resume <sweep id>`",
        )
    if names & NO_ACCESS:
        return LaunchError(False, f"SkyPilot has no access to a cloud ({said}): {FIX_ACCESS}")
    if any(n.startswith("Storage") for n in names):
        return LaunchError(
            False,
            f"SkyPilot could not use the checkpoint bucket ({said}): check PAX_SKY_BUCKET and "
            "PAX_SKY_BUCKET_PATH name the same bucket and the cloud's credential may write "
            "it, then `pax sweep resume <sweep id>`",
        )
    if names & PASSING:
        return LaunchError(True, f"SkyPilot could not launch now ({said})")
    if "CloudError" in names and any(w in str(e).lower() for w in PASSING_WORDS):
        return LaunchError(True, f"the cloud refused for now ({said})")
    if "ValueError" in names:  # pax's own checks (a GPU without a price): the set-up is wrong
        return LaunchError(False, f"the SkyPilot set-up cannot launch this run: {e}")
    return LaunchError(False, f"SkyPilot could not launch the job ({said}); {FIX_ACCESS}")


def failure_cause(status: str, rec: dict, accelerators, use_spot: bool) -> str | None:
    """SkyPilot's own account of a job that ended in one of its FAILED_* states (None for a
    plain FAILED: the trainer's exit, whose log is in the run folder)."""
    words = rec.get("failure_reason") or rec.get("details") or "no reason given"
    job = rec.get("job_id")
    logs = f"`sky jobs logs {job}`" if job is not None else "`sky jobs logs`"
    where = rec.get("region") or rec.get("cloud") or "any region the task allows"
    kind = "spot" if use_spot else "on-demand"
    if status == "FAILED_NO_RESOURCE":
        return f"no capacity for {'/'.join(accelerators)} {kind} in {where} (SkyPilot: {words})"
    if status == "FAILED_SETUP":
        return f"the job's set-up failed on the VM (SkyPilot FAILED_SETUP: {words}); see {logs}"
    if status == "FAILED_PRECHECKS":
        return f"SkyPilot refused the task before launching (FAILED_PRECHECKS: {words})"
    if status == "FAILED_CONTROLLER":
        return f"SkyPilot's jobs controller failed (FAILED_CONTROLLER: {words}); see {logs}"
    return None

"""The cloud set-up checked by calling it, at `pax serve`, before anything is launched: SkyPilot
imports, `sky check` enabled a cloud, and the checkpoint bucket takes a write and a read where
this host reads it. Each refusal is one line with the fix. (The options that need no call, an
image pinned by digest, a GPU with a price, a reachable runner URL, are checked in
runner/app.py's check_sky.) Before these checks a study's 20 runs could all fail in seconds."""

from __future__ import annotations

import concurrent.futures
import secrets
import time
from urllib.parse import urlparse

# fsspec's schemes for the stores SkyPilot mounts, and SkyPilot's names for them
STORES = {"s3": "s3", "gs": "gcs", "gcs": "gcs", "r2": "r2"}


class ProbeError(RuntimeError):
    """The cloud set-up cannot work; the message says why and what to do."""


def store_of(bucket_path: str | None) -> str | None:
    """SkyPilot's store for the bucket this host reads at `bucket_path` (s3://, gs://), so the
    jobs mount the same bucket on the same cloud; None for a local mount (SkyPilot picks)."""
    if not bucket_path or "://" not in bucket_path:
        return None
    return STORES.get(urlparse(bucket_path).scheme)


def check_bucket_names(bucket: str, bucket_path: str | None) -> None:
    """The bucket the jobs mount and the one this host reads must be the same one."""
    if not bucket_path or "://" not in bucket_path:
        return
    u = urlparse(bucket_path)
    if u.scheme not in STORES and u.scheme != "file":
        raise ProbeError(
            f"PAX_SKY_BUCKET_PATH={bucket_path!r}: use s3://, gs:// or r2:// (or a mounted "
            "folder): the jobs' bucket is on a cloud store"
        )
    if u.scheme in STORES and u.netloc != bucket:
        raise ProbeError(
            f"PAX_SKY_BUCKET_PATH={bucket_path!r} reads bucket {u.netloc!r}, but the jobs write "
            f"bucket {bucket!r}: set PAX_SKY_BUCKET={u.netloc} or "
            f"PAX_SKY_BUCKET_PATH={u.scheme}://{bucket}"
        )


def _write_read(bucket_path: str) -> float:
    """Write, read back and remove a small file under the bucket path; the seconds taken."""
    import fsspec

    t0 = time.monotonic()
    fs, root = fsspec.core.url_to_fs(bucket_path)
    probe = f"{root.rstrip('/')}/.pax-probe-{secrets.token_hex(8)}"
    body = secrets.token_hex(16).encode()
    fs.pipe_file(probe, body)
    try:
        if fs.cat_file(probe) != body:
            raise OSError("the file read back differs from the one written")
    finally:
        fs.rm_file(probe)
    return time.monotonic() - t0


def _within(fn, timeout_s: float, what: str):
    pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="pax-sky-probe")
    try:
        return pool.submit(fn).result(timeout=timeout_s)
    except concurrent.futures.TimeoutError:
        raise ProbeError(
            f"{what} did not answer in {timeout_s:.0f} s (PAX_SKY_PROBE_TIMEOUT_S): is SkyPilot's "
            "API server up (`sky api info`)?"
        ) from None
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def probe(adapter, *, bucket: str, bucket_path: str | None, timeout_s: float) -> list[str]:
    """Check the set-up by calling it; the lines to show the user. ProbeError with the fix."""
    try:
        import sky
    except ImportError as e:
        raise ProbeError(
            f"SkyPilot is not installed here ({e}): pip install 'pax[cloud]', then `sky check`"
        ) from None
    said = [f"SkyPilot {getattr(sky, '__version__', '?')}"]
    try:
        clouds = _within(adapter.enabled_clouds, timeout_s, "SkyPilot's `enabled_clouds`")
    except ProbeError:
        raise
    except Exception as e:  # an API server that refuses, a broken config
        raise ProbeError(
            f"SkyPilot could not say which clouds it may use ({type(e).__name__}: {e}): run "
            "`sky check` and fix what it names"
        ) from None
    if not clouds:
        raise ProbeError(
            "SkyPilot has no cloud enabled: run `sky check`, give it a credential it accepts "
            "(docs/deploy.md, Cloud), then start again"
        )
    said.append(f"clouds enabled: {', '.join(sorted(clouds))}")
    check_bucket_names(bucket, bucket_path)
    where = f"bucket {bucket}" + (f" ({store_of(bucket_path)})" if store_of(bucket_path) else "")
    if not bucket_path:
        said.append(f"{where}: not read from here (PAX_SKY_BUCKET_PATH unset)")
        return said
    try:
        took = _within(lambda: _write_read(bucket_path), timeout_s, f"the bucket at {bucket_path}")
    except ProbeError:
        raise
    except ImportError as e:
        raise ProbeError(
            f"PAX_SKY_BUCKET_PATH={bucket_path!r} needs {e.name or e}: pip install 'pax[cloud]'"
        ) from None
    except Exception as e:
        raise ProbeError(
            f"the bucket at PAX_SKY_BUCKET_PATH={bucket_path!r} took no write and read "
            f"({type(e).__name__}: {e}): create bucket {bucket} (or mount it there) and give "
            "this host's credential read and write on it"
        ) from None
    said.append(f"{where} at {bucket_path}: write and read ok ({took:.1f} s)")
    return said

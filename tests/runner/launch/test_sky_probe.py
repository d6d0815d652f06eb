"""`pax serve` checks the cloud set-up by calling it before anything is launched (issue 27):
start-up never checked SkyPilot, so a missing credential ended a study in seconds. SkyPilot
must import, `sky check` must have enabled a cloud, and the bucket must take a write and a
read where this host reads it, under the same name the jobs mount; each refusal names the fix.
The adapter is the only fake (tests/runner/launch/fake_sky.py); the bucket is a real folder."""

import os
import subprocess
import sys

import pytest
import yaml

from runner.launch.sky_probe import ProbeError, check_bucket_names, probe, store_of
from tests.conftest import ROOT
from tests.runner.conftest import free_port
from tests.runner.launch.fake_sky import (
    IMAGE,
    CloudsEnabled,
    NoClouds,
    sky_home,  # noqa: F401 (an autouse fixture)
)


def test_a_working_set_up_says_what_it_found_and_leaves_nothing(tmp_path):
    bucket = tmp_path / "bucket"
    bucket.mkdir()
    said = probe(CloudsEnabled(), bucket="pax-abc", bucket_path=str(bucket), timeout_s=30)
    text = "; ".join(said)
    assert "SkyPilot 0.14" in text and "clouds enabled: aws, gcp" in text
    assert f"bucket pax-abc at {bucket}: write and read ok" in text
    assert list(bucket.rglob("*.*")) == []  # the probe file is removed


def test_no_cloud_enabled_is_refused_with_sky_check(tmp_path):
    with pytest.raises(ProbeError, match="no cloud enabled: run `sky check`"):
        probe(NoClouds(), bucket="pax-abc", bucket_path=str(tmp_path), timeout_s=30)


def test_skypilot_missing_is_refused_with_the_install_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "sky", None)  # `import sky` raises ImportError
    with pytest.raises(ProbeError, match=r"pip install 'pax\[cloud\]'"):
        probe(CloudsEnabled(), bucket="pax-abc", bucket_path=str(tmp_path), timeout_s=30)


def test_an_unusable_bucket_is_refused(tmp_path):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    with pytest.raises(ProbeError, match="took no write and read.*create bucket pax-abc"):
        probe(CloudsEnabled(), bucket="pax-abc", bucket_path=str(not_a_folder), timeout_s=30)


def test_an_adapter_that_hangs_is_refused_after_the_timeout(tmp_path):
    import threading

    release = threading.Event()

    class Hangs(CloudsEnabled):
        def enabled_clouds(self):
            release.wait(30)
            return ["aws"]

    try:
        with pytest.raises(ProbeError, match="did not answer in 1 s"):
            probe(Hangs(), bucket="pax-abc", bucket_path=str(tmp_path), timeout_s=1)
    finally:
        release.set()


def test_bucket_name_and_path_must_name_the_same_bucket():
    check_bucket_names("pax-abc", "s3://pax-abc")
    check_bucket_names("pax-abc", "/mnt/pax")  # a mount: its name is not in the path
    with pytest.raises(ProbeError, match="reads bucket 'pax-old'.*PAX_SKY_BUCKET=pax-old"):
        check_bucket_names("pax-abc", "s3://pax-old/x")
    with pytest.raises(ProbeError, match="s3://, gs:// or r2://"):
        check_bucket_names("pax-abc", "ftp://pax-abc")
    assert (store_of("s3://b"), store_of("gs://b"), store_of("/mnt/b")) == ("s3", "gcs", None)


def test_the_task_mounts_the_bucket_from_the_store_this_host_reads(tmp_path):
    from runner.launch.base import LaunchSpec
    from runner.launch.skypilot import SkyOptions, build_task, task_config
    from runner.settings import Settings

    s = Settings(db=tmp_path / "pax.db", sky_image=IMAGE, sky_bucket_path="gs://pax-abc")
    opts = SkyOptions.from_settings(s, "pax-abc")
    cfg = tmp_path / "spec.yaml"
    cfg.write_text(yaml.safe_dump({"base": {"name": "r"}}))
    spec = LaunchSpec(
        run_id=3, attempt=1, run_dir=tmp_path, config_path=cfg, env={"PAX_RUN_TOKEN": "t" * 32}
    )
    mount = task_config(spec, {"name": "r"}, opts)["file_mounts"]["/pax"]
    assert mount["name"] == "pax-abc" and mount["store"] == "gcs"
    storage = build_task(spec, {"name": "r"}, opts).storage_mounts["/pax"]  # SkyPilot parses it
    assert storage.name == "pax-abc" and [s.value for s in storage.stores] == ["GCS"]


def _serve(tmp_path, **env):
    return subprocess.run(
        [sys.executable, "-m", "pax.cli", "serve", "--port", str(free_port())],
        cwd=tmp_path,
        env={
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "PAX_DB": str(tmp_path / "pax.db"),
            "PAX_SKY": "true",
            "PAX_SKY_IMAGE": IMAGE,
            "PAX_SKY_ACCELERATORS": '["L4"]',
            "PAX_SKY_BUCKET": "pax-abc",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_pax_serve_refuses_a_cloud_set_up_that_cannot_launch(tmp_path):
    r = _serve(
        tmp_path,
        PAX_SKY_BUCKET_PATH=str(tmp_path),
        PAX_SKY_ADAPTER="tests.runner.launch.fake_sky:NoClouds",
    )
    assert r.returncode != 0 and "no cloud enabled: run `sky check`" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and "PAX_SKY_PROBE=false" in r.stderr
    mismatch = _serve(
        tmp_path,
        PAX_SKY_BUCKET_PATH="s3://pax-other",
        PAX_SKY_ADAPTER="tests.runner.launch.fake_sky:CloudsEnabled",
    )
    assert mismatch.returncode != 0 and "reads bucket 'pax-other'" in mismatch.stderr

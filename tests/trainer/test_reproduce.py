"""`pax reproduce` takes a bundle from anyone: it writes only under its work folder, checks
every hash it is given (and refuses what it is not given), and refuses bombs before they land
(issue 25)."""

import io
import json
import tarfile
from pathlib import Path

import pytest

from trainer.reproduce import (
    INDEX,
    MANIFEST,
    ReproduceError,
    _check,
    manifest_lines,
    reproduce,
    unpack,
)


def add(tar: tarfile.TarFile, name: str, data: bytes = b"", **kw) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for k, v in kw.items():
        setattr(info, k, v)
    tar.addfile(info, io.BytesIO(data) if data else None)


def bundle_of(path: Path, files: dict[str, bytes], extra=()) -> Path:
    """A gzipped bundle whose manifest matches `files` (under pax-bundle/), plus `extra`
    members added as they are."""
    stage = path.parent / (path.name + ".stage") / "pax-bundle"
    for rel, data in files.items():
        (stage / rel).parent.mkdir(parents=True, exist_ok=True)
        (stage / rel).write_bytes(data)
    (stage / MANIFEST).write_text(manifest_lines(stage))
    with tarfile.open(path, "w:gz") as tar:
        tar.add(stage, arcname="pax-bundle")
        for member in extra:
            member(tar)
    return path


def left_in(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_a_symlink_in_a_bundle_is_refused_and_nothing_is_left(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    b = bundle_of(
        tmp_path / "b.tar.gz",
        {"bundle.json": b"{}"},
        extra=[lambda t: add(t, "pax-bundle/s", type=tarfile.SYMTYPE, linkname=str(outside))],
    )
    work = tmp_path / "work"
    with pytest.raises(ReproduceError, match="is a link"):
        unpack(b, work)
    assert left_in(work) == [] and left_in(outside) == []


@pytest.mark.parametrize("name", ["/abs/evil", "pax-bundle/../../evil", "../evil"])
def test_members_that_climb_out_are_refused(tmp_path, name):
    b = bundle_of(tmp_path / "b.tar.gz", {"bundle.json": b"{}"}, [lambda t: add(t, name, b"x")])
    with pytest.raises(ReproduceError, match="outside the work folder"):
        unpack(b, tmp_path / "work")
    assert not (tmp_path / "evil").exists() and left_in(tmp_path / "work") == []


def test_a_run_dir_from_the_bundle_never_leaves_the_work_folder(tmp_path):
    """bundle.json's runs[].dir with a climbing path (and, before, an in-bundle symlink) had the
    trainer write its config, metrics and checkpoints into any folder."""
    target = tmp_path / "victim"
    target.mkdir()
    index = {"runs": [{"id": 1, "name": "x", "dir": "s/" + "../" * 20 + str(target),
                       "status": "succeeded", "tokens_seen": 1}]}  # fmt: skip
    b = bundle_of(tmp_path / "b.tar.gz", {INDEX: json.dumps(index).encode()})
    with pytest.raises(ReproduceError, match="not a run folder's name"):
        reproduce(b, "x", tmp_path / "work")
    assert left_in(target) == []


@pytest.mark.parametrize("want", [None, "", "null", "0" * 63])
def test_a_missing_hash_is_a_refusal_not_a_pass(want):
    with pytest.raises(ReproduceError, match="gives no SHA-256"):
        _check("WikiText-2 train split", want, "a" * 64)


def test_a_manifest_line_without_a_hash_is_refused(tmp_path):
    b = bundle_of(tmp_path / "b.tar.gz", {INDEX: b"{}"})
    root = tmp_path / "w"
    unpack(b, root)  # the honest bundle unpacks
    stage = tmp_path / "b.tar.gz.stage" / "pax-bundle"
    (stage / MANIFEST).write_text(f"null  {INDEX}\n")
    with tarfile.open(tmp_path / "c.tar.gz", "w:gz") as tar:
        tar.add(stage, arcname="pax-bundle")
    with pytest.raises(ReproduceError, match="without a hash"):
        unpack(tmp_path / "c.tar.gz", tmp_path / "w2")


def test_a_tar_bomb_is_refused_from_its_headers_before_a_byte_lands(tmp_path):
    """A 1 MB .tar.gz once wrote 1,025 MB before it was refused, and left it on disk."""
    big = 64 * 2**20  # 64 MiB of zeros: about 64 KiB gzipped
    b = bundle_of(
        tmp_path / "b.tar.gz", {INDEX: b"{}"}, [lambda t: add(t, "pax-bundle/z", bytes(big))]
    )
    assert b.stat().st_size < 2**20
    work = tmp_path / "work"
    with pytest.raises(ReproduceError, match="over the 8,388,608 allowed"):
        unpack(b, work, max_bytes=8 * 2**20)
    assert left_in(work) == []


def test_too_many_members_are_refused_and_nothing_is_left(tmp_path):
    """A 20,000-file tar left its files behind."""
    members = [lambda t, i=i: add(t, f"pax-bundle/f{i}", b"x") for i in range(2_100)]
    b = bundle_of(tmp_path / "b.tar.gz", {INDEX: b"{}"}, members)
    work = tmp_path / "work"
    with pytest.raises(ReproduceError, match="more than 2,000 members"):
        unpack(b, work, max_members=2_000)
    assert left_in(work) == []


def test_an_honest_bundle_unpacks_again_over_an_earlier_unpack(tmp_path):
    b = bundle_of(tmp_path / "b.tar.gz", {INDEX: b"{}", "runs/000001-x/config.json": b"{}"})
    for _ in range(2):
        root = unpack(b, tmp_path / "work")
    assert (root / INDEX).read_bytes() == b"{}"

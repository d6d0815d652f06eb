"""The release commands refuse bad input with the field and the fix, before touching anything."""

from __future__ import annotations

import tarfile

from typer.testing import CliRunner

from pax.cli import app

cli = CliRunner()


def run(*args: str):
    return cli.invoke(app, list(args))


def test_release_refuses_a_tag_that_is_not_a_version(tmp_path):
    r = run("release", "--sweep", "1", "--tag", "latest", "--db", str(tmp_path / "x.db"))
    assert r.exit_code == 2 and "--tag latest: must look like v1.2.3" in r.output
    assert not (tmp_path / "x.db").exists()


def test_commands_name_a_missing_ledger(tmp_path):
    for cmd in (["report"], ["bundle"], ["release", "--tag", "v1.0.0"]):
        r = run(*cmd, "--sweep", "1", "--db", str(tmp_path / "none.db"))
        assert r.exit_code == 2 and "no ledger there" in r.output, (cmd, r.output)
    assert not (tmp_path / "none.db").exists()  # never created by asking


def test_export_refuses_an_unknown_format_and_a_non_run(tmp_path):
    r = run("export", "--run", str(tmp_path), "--format", "onnx", str(tmp_path / "out"))
    assert r.exit_code == 2 and "--format onnx: the only format is hf" in r.output
    r = run("export", "--run", str(tmp_path), str(tmp_path / "out"))
    assert r.exit_code == 2 and "a run directory?" in r.output


def test_reproduce_refuses_what_is_not_a_bundle(tmp_path):
    r = run("reproduce", str(tmp_path / "missing.tar.gz"), "--run", "x")
    assert r.exit_code == 2 and "no such bundle" in r.output
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not a tarball")
    r = run("reproduce", str(junk), "--run", "x", "--workdir", str(tmp_path / "w"))
    assert r.exit_code == 2 and "not a readable bundle" in r.output
    empty = tmp_path / "empty.tar.gz"
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.txt").write_text("a")
    with tarfile.open(empty, "w:gz") as tar:
        tar.add(tmp_path / "d", arcname="d")
    r = run("reproduce", str(empty), "--run", "x", "--workdir", str(tmp_path / "w2"))
    assert r.exit_code == 2 and "is it a pax bundle?" in r.output

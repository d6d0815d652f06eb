"""The GitHub Actions workflows, checked here since no runner can run them: each is valid
against a schema of the workflow syntax we use, every `needs` names a job, every `make`
target and script it runs exists, and the release workflow does what `pax release` promises
(tests, wheel, image, the demo's report, bundle and static page attached to the release)."""

from __future__ import annotations

import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from tests.conftest import ROOT

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))

STEP = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "id": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_-]*$"},
        "uses": {"type": "string", "pattern": r"^[\w.-]+/[\w./-]+@[\w.-]+$"},
        "run": {"type": "string", "minLength": 1},
        "with": {"type": "object"},
        "env": {
            "type": "object",
            "additionalProperties": {"type": ["string", "number", "boolean"]},
        },
        "if": {"type": "string"},
        "shell": {"type": "string"},
        "working-directory": {"type": "string"},
        "timeout-minutes": {"type": "number"},
        "continue-on-error": {"type": "boolean"},
    },
    "additionalProperties": False,
    "oneOf": [{"required": ["uses"]}, {"required": ["run"]}],
}
SCHEMA = {
    "type": "object",
    "required": ["name", "on", "jobs"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string"},
        "on": {
            "type": "object",
            "propertyNames": {"enum": ["push", "pull_request", "workflow_dispatch", "schedule"]},
        },
        "permissions": {
            "type": "object",
            "additionalProperties": {"enum": ["read", "write", "none"]},
        },
        "env": {"type": "object"},
        "jobs": {
            "type": "object",
            "minProperties": 1,
            "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_-]*$"},
            "additionalProperties": {
                "type": "object",
                "required": ["runs-on", "steps"],
                "additionalProperties": False,
                "properties": {
                    "runs-on": {"type": "string"},
                    "needs": {"type": "array", "items": {"type": "string"}},
                    "if": {"type": "string"},
                    "timeout-minutes": {"type": "number"},
                    "permissions": {"type": "object"},
                    "strategy": {"type": "object", "required": ["matrix"]},
                    "env": {"type": "object"},
                    "steps": {"type": "array", "minItems": 1, "items": STEP},
                },
            },
        },
    },
}


def load(path: Path) -> dict:
    doc = yaml.safe_load(path.read_text())
    doc["on"] = doc.pop(True, doc.get("on"))  # YAML 1.1 reads the key `on` as true
    return doc


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_is_valid(path):
    doc = load(path)
    jsonschema.validate(doc, SCHEMA)
    jobs = doc["jobs"]
    for name, job in jobs.items():
        for need in job.get("needs", []):
            assert need in jobs, f"{path.name}: job {name} needs unknown job {need}"
        for step in job["steps"]:
            run = step.get("run", "")
            assert run.count("${{") == run.count("}}"), f"{path.name}: unbalanced ${{{{ }}}}"
            for target in re.findall(r"\bmake ([a-z][a-z-]*)", run):
                assert re.search(rf"^{target}:", (ROOT / "Makefile").read_text(), re.M), target


def test_the_schema_refuses_a_broken_workflow():
    doc = load(ROOT / ".github" / "workflows" / "release.yml")
    doc["jobs"]["test"]["steps"].append({"uses": "actions/checkout@v4", "run": "make test"})
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, SCHEMA)
    doc = load(ROOT / ".github" / "workflows" / "release.yml")
    doc["jobs"]["test"]["runs_on"] = doc["jobs"]["test"].pop("runs-on")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, SCHEMA)


def test_release_workflow_runs_on_tags_and_attaches_the_demo_release():
    doc = load(ROOT / ".github" / "workflows" / "release.yml")
    assert doc["on"] == {"push": {"tags": ["v*"]}}
    assert doc["permissions"]["contents"] == "write"  # to create the release
    runs = {
        name: "\n".join(s.get("run", "") for s in j["steps"]) for name, j in doc["jobs"].items()
    }
    uses = {name: [s.get("uses", "") for s in j["steps"]] for name, j in doc["jobs"].items()}
    assert "make test" in runs["test"]
    assert "python -m build" in runs["wheel"]
    assert any(u.startswith("docker/build-push-action") for u in uses["image"])
    assert "make demo" in runs["demo"]
    assert set(doc["jobs"]["release"]["needs"]) == {"test", "wheel", "image", "demo"}
    publish = runs["release"]
    assert "gh release create" in publish and "--notes-from-tag" in publish
    # what it attaches is what the demo writes (pax.demo.release_files, runner.release)
    for name in ("RESULTS.html", "pax-bundle-sweep-0001.tar.gz", "report.tar.gz", "dist/"):
        assert name in publish, name
    assert "git push" not in "\n".join(runs.values())  # the tag comes from `pax release`

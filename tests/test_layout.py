"""The house rules of ARCHITECTURE.md, checked: imports point down, data folders stay data."""

import ast

import pytest

from tests.conftest import ROOT

FLOORS = {"trainer": 0, "runner": 1, "web": 2, "pax": 3}


def imported_packages(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module.split(".")[0]


@pytest.mark.parametrize("package", sorted(FLOORS))
def test_imports_only_point_down(package):
    for path in (ROOT / package).rglob("*.py"):
        for name in imported_packages(path):
            if name in FLOORS:
                assert FLOORS[name] <= FLOORS[package], f"{path} imports {name} (a floor up)"


@pytest.mark.parametrize("folder", ["sky", "docker"])
def test_data_folders_are_not_packages(folder):
    assert not list((ROOT / folder).rglob("__init__.py")), (
        f"{folder}/ must not be a Python package: it would shadow the `{folder}` library"
    )

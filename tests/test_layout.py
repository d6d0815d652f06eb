"""The house rules of ARCHITECTURE.md, checked: imports point down (and the dashboard never
reaches the trainer), no import circles, SQL only in the ledger, no module globals holding state,
data folders stay data."""

import ast
import re
from pathlib import Path

import pytest

from tests.conftest import ROOT

FLOORS = {"trainer": 0, "runner": 1, "web": 2, "pax": 3}
PACKAGES = sorted(FLOORS)
LEDGER = ROOT / "runner" / "ledger"


def modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


MODULES = modules()


def imports_of(path: Path) -> list[str]:
    """Every module a file imports (function-level imports included: a lazy import still ties
    two modules together), resolved to project modules where they are ours."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:  # `from pkg import mod` imports the module pkg.mod
                sub = f"{node.module}.{a.name}"
                out.append(sub if sub in MODULES else node.module)
    return out


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_only_point_down(package):
    for path in (ROOT / package).rglob("*.py"):
        for name in imports_of(path):
            top = name.split(".")[0]
            if top in FLOORS:
                assert FLOORS[top] <= FLOORS[package], f"{path} imports {name} (a floor up)"


def test_the_dashboard_never_imports_the_trainer():
    """web/ reads a run's plan from the ledger; it never runs the planner itself."""
    for path in (ROOT / "web").rglob("*.py"):
        bad = [n for n in imports_of(path) if n.split(".")[0] == "trainer"]
        assert not bad, f"{path} imports {bad}"


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_circles():
    graph = {
        name: {m for m in imports_of(path) if m in MODULES and m != name}
        for name, path in MODULES.items()
    }
    assert cycles(graph) == []


def test_the_circle_finder_finds_circles():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


SQL_TEXT = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|CREATE|PRAGMA)\s", re.IGNORECASE)
QUERY_BUILDERS = {"text", "select", "insert", "update", "delete", "Session"}


def sql_uses(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute) and node.attr in ("exec_driver_sql", "execute"):
            found.append(f"line {node.lineno}: .{node.attr}(")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in (
            "sqlalchemy",
            "sqlmodel",
            "sqlite3",
        ):
            found += [
                f"line {node.lineno}: imports {a.name}"
                for a in node.names
                if a.name in QUERY_BUILDERS
            ]
        elif isinstance(node, ast.Import) and any(a.name == "sqlite3" for a in node.names):
            found.append(f"line {node.lineno}: imports sqlite3")
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and SQL_TEXT.match(node.value)
        ):
            found.append(f"line {node.lineno}: SQL text {node.value[:40]!r}")
    return found


def test_sql_only_in_the_ledger():
    """Only runner/ledger/ speaks SQL; everyone else calls its named functions."""
    for path in MODULES.values():
        if not path.is_relative_to(LEDGER):
            assert sql_uses(path) == [], f"{path} speaks SQL"


def test_the_sql_finder_finds_sql(tmp_path):
    f = tmp_path / "x.py"
    f.write_text('conn.exec_driver_sql("x")\nq = "SELECT 1"\nfrom sqlmodel import Session\n')
    assert len(sql_uses(f)) == 3


MUTATORS = {
    "append",
    "extend",
    "insert",
    "update",
    "setdefault",
    "pop",
    "popitem",
    "clear",
    "add",
    "discard",
    "remove",
}
CONTAINERS = {"dict", "list", "set", "defaultdict", "OrderedDict", "Lock", "RLock", "deque"}


def module_state(path: Path) -> list[str]:
    """Module-level names that hold changing state: containers mutated after import, `global`
    rebinding, and module-level function caches."""
    tree = ast.parse(path.read_text())
    containers = {}
    for node in tree.body:
        targets = (
            node.targets
            if isinstance(node, ast.Assign)
            else ([node.target] if isinstance(node, ast.AnnAssign) and node.value else [])
        )
        value = getattr(node, "value", None)
        mutable = isinstance(value, (ast.Dict, ast.List, ast.Set)) or (
            isinstance(value, ast.Call)
            and getattr(value.func, "attr", getattr(value.func, "id", None)) in CONTAINERS
        )
        for t in targets:
            if isinstance(t, ast.Name) and mutable:
                containers[t.id] = node.lineno
    found = []
    for fn in [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]:
        for d in fn.decorator_list if fn in tree.body else []:
            name = (
                getattr(d, "id", None)
                or getattr(getattr(d, "func", None), "id", None)
                or (getattr(d, "attr", None) or getattr(getattr(d, "func", None), "attr", None))
            )
            if name in ("lru_cache", "cache"):
                found.append(f"{fn.name}: a module-level cache (@{name})")
        for node in ast.walk(fn):
            if isinstance(node, ast.Global):
                found.append(f"{fn.name}: global {', '.join(node.names)}")
            target = None
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                if node.func.attr in MUTATORS and isinstance(node.func.value, ast.Name):
                    target = node.func.value.id
            elif isinstance(node, (ast.Assign, ast.AugAssign, ast.Delete)):
                for t in getattr(node, "targets", None) or [getattr(node, "target", None)]:
                    if isinstance(t, ast.Subscript) and isinstance(t.value, ast.Name):
                        target = t.value.id
            if target in containers and target not in _locals(fn):
                found.append(
                    f"{fn.name}: changes module-level {target} (line {containers[target]})"
                )
    return found


def _locals(fn) -> set[str]:
    names = {a.arg for a in fn.args.args + fn.args.kwonlyargs}
    for node in ast.walk(fn):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
    return names


def test_no_module_globals_holding_state():
    """State lives on objects that are passed in (the app's engine, pricing, caches)."""
    for path in MODULES.values():
        assert module_state(path) == [], f"{path} keeps state in module globals"


def test_the_state_finder_finds_state(tmp_path):
    f = tmp_path / "x.py"
    f.write_text(
        "import functools\nCACHE = {}\nPRICING = dict(a=1)\n"
        "def put(k, v):\n    CACHE[k] = v\n"
        "def conf():\n    PRICING.update(b=2)\n"
        "@functools.lru_cache\ndef f():\n    return 1\n"
        "def g():\n    global X\n    X = 1\n"
        "CONST = {'a': 1}\ndef read():\n    return CONST['a']\n"
    )
    found = module_state(f)
    assert len(found) == 4, found


@pytest.mark.parametrize("folder", ["sky", "docker"])
def test_data_folders_are_not_packages(folder):
    assert not list((ROOT / folder).rglob("__init__.py")), (
        f"{folder}/ must not be a Python package: it would shadow the `{folder}` library"
    )


def test_the_readme_is_a_front_door_whose_layout_is_true():
    """At most about 150 lines, and every file or folder its layout tree names exists."""
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 150
    tree = text.split("## Layout", 1)[1].split("```")[1]
    parent = None
    for line in tree.splitlines():
        indent = len(line) - len(line.lstrip())
        if not line.strip() or indent > 4:  # blank, or a description's continuation
            continue
        first = line.split()[0]
        names = [n.strip(",") for n in line.strip().split("  ")[0].split()] if indent else [first]
        for name in names:
            if not re.fullmatch(r"[\w./-]+", name) or name.startswith("("):
                continue
            path = (ROOT / parent / name) if indent and parent else ROOT / name
            if indent == 0 and name.endswith("/"):
                parent = name
            assert path.exists(), f"README's layout names {path.relative_to(ROOT)}"
    for link in re.findall(r"\]\((docs/[^)]+)\)", text):
        assert (ROOT / link).is_file(), link


# runner's inner order: ledger < study < launch < api / release. auth and settings are leaves
# every part may use; cost sits on the ledger and serves the rest; startup opens the ledger; app
# assembles everything.
RUNNER_RANKS = {
    "auth": 0,
    "settings": 0,
    "ledger": 1,
    "cost": 2,
    "startup": 2,
    "study": 3,
    "launch": 4,
    "api": 5,
    "release": 5,
    "app": 6,
}


def runner_part(name: str) -> str:
    return name.split(".")[1]


def test_runner_parts_import_only_those_before_them():
    for name, path in MODULES.items():
        if not name.startswith("runner.") or name == "runner":
            continue
        mine = RUNNER_RANKS[runner_part(name)]
        for m in imports_of(path):
            if m.startswith("runner.") and m in MODULES:
                theirs = RUNNER_RANKS[runner_part(m)]
                assert theirs <= mine, f"{name} imports {m} (runner's inner order)"


def test_every_runner_part_has_a_rank():
    parts = {runner_part(n) for n in MODULES if n.startswith("runner.")}
    assert parts <= set(RUNNER_RANKS), parts - set(RUNNER_RANKS)


MAX_LINES = 450


@pytest.mark.parametrize("package", PACKAGES)
def test_no_module_is_over_450_lines(package):
    """Small files with one job: a module past this has two."""
    for path in (ROOT / package).rglob("*.py"):
        n = len(path.read_text().splitlines())
        assert n <= MAX_LINES, f"{path.relative_to(ROOT)} has {n} lines (> {MAX_LINES})"


LIFECYCLE = LEDGER / "lifecycle.py"


def status_writes(path: Path) -> list[str]:
    """Assignments to a `.status` attribute, and SQL that sets a run's status."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        targets = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        for t in targets:
            for el in t.elts if isinstance(t, ast.Tuple) else [t]:
                if isinstance(el, ast.Attribute) and el.attr == "status":
                    found.append(f"line {node.lineno}: {ast.unparse(el)} =")
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and re.search(r"UPDATE\s+runs\s+SET[^;]*\bstatus\s*=", node.value, re.I)
        ):
            found.append(f"line {node.lineno}: SQL sets a run's status")
    return found


def test_a_runs_status_changes_only_in_the_lifecycle():
    """ledger/lifecycle.py is the one place a run's status changes (a sweep's own status is
    the ledger's sweeps module's)."""
    for path in MODULES.values():
        if path in (LIFECYCLE, LEDGER / "sweeps.py"):
            continue
        assert status_writes(path) == [], f"{path} changes a status"
    sweeps = status_writes(LEDGER / "sweeps.py")
    assert all("sw.status" in f for f in sweeps), sweeps


def test_the_status_finder_finds_status_writes(tmp_path):
    f = tmp_path / "x.py"
    f.write_text(
        'run.status = "x"\nr.phase, r.status = 1, 2\nq = "UPDATE runs SET a = 1, status = 2"\n'
    )
    assert len(status_writes(f)) == 3


HTTP_LIBRARIES = {"httpx", "requests", "urllib.request", "http.client", "aiohttp", "urllib3"}
# the trainer reaches the service through its own reporter (a floor below pax/, it can't use
# the client), and fetches data sets from their publishers
HTTP_ALLOWED = {
    ROOT / "pax" / "client.py",
    ROOT / "trainer" / "reporting" / "http.py",
    ROOT / "trainer" / "prep" / "fetch.py",
    ROOT / "trainer" / "prep" / "wikitext.py",
}


def test_http_to_the_service_goes_through_the_client():
    """No hand-built HTTP outside pax/client.py (tests and benches excepted)."""
    for path in MODULES.values():
        if path in HTTP_ALLOWED:
            continue
        used = {
            m for m in imports_of(path) if m in HTTP_LIBRARIES or m.split(".")[0] in HTTP_LIBRARIES
        }
        assert not used, f"{path.relative_to(ROOT)} imports {sorted(used)}: use pax/client.py"


def test_the_sky_task_has_one_source():
    """sky/task.yaml is a link to the task the wheel ships, never a copy."""
    link = ROOT / "sky" / "task.yaml"
    assert link.is_symlink()
    assert link.resolve() == (ROOT / "runner" / "launch" / "sky_task.yaml").resolve()


def test_migrations_ship_as_their_own_package():
    """migrations/ at the top (as the design lists it), a package the wheel carries."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    found = project["tool"]["setuptools"]["packages"]["find"]["include"]
    assert "migrations*" in found and (ROOT / "migrations" / "env.py").is_file()
    assert not (LEDGER / "migrations").exists()

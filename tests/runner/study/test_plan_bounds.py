"""A plan can't explode: YAML aliases are refused, and the plan's size is bounded (values,
depth, cells, overrides) before anything is built; each refusal is a 422 naming the bound
(issue 25: a 614-byte plan with aliased overrides took 23.7 s, 2.5 GB of server memory and
277 MB of ledger; a recursive anchor was a 500)."""

import time

import psutil
import pytest

from tests.helpers import submit

BOMB = """name: bomb
a: &a [x, x, x, x, x, x, x, x, x, x]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]
controls: [{name: boom, overrides: {x: *f}}]
"""


def test_an_alias_bomb_is_refused_at_once_without_growing_the_server(service):
    rss = psutil.Process().memory_info().rss  # the in-process service
    t0 = time.monotonic()
    r = submit(service, BOMB)
    assert r.status_code == 422 and "aliases" in r.json()["detail"], r.text
    assert time.monotonic() - t0 < 5
    assert psutil.Process().memory_info().rss - rss < 50 * 2**20
    assert service.get("/sweeps").json() == []


def test_a_recursive_anchor_is_a_422_not_a_500(service):
    r = submit(service, "name: loop\nbase: &a {x: *a}\n")
    assert r.status_code == 422 and "aliases" in r.json()["detail"]


def test_a_deep_or_huge_plan_names_its_bound(service):
    r = submit(service, "name: deep\nbase: " + "{a: " * 60 + "1" + "}" * 60 + "\n")
    assert r.status_code == 422 and "nested deeper than 40" in r.json()["detail"]
    many = ",".join("1" * 60_000)  # 120 KB: under the body limit, over the node bound
    r = submit(service, f"name: many\nbase: {{x: [{many}]}}\n")
    assert r.status_code == 422 and "more than 50,000 values" in r.json()["detail"]


@pytest.mark.parametrize(
    "plan,fragment",
    [
        ("ranking: {embedding_ratio: [" + ", ".join(["0.3"] * 17) + "]}", "embedding_ratio"),
        ("controls: [" + ", ".join(f"{{name: c{i}, overrides: {{}}}}" for i in range(21)) + "]",
         "controls"),
        ("controls: [{name: big, overrides: {x: '" + "y" * 20_000 + "'}}]", "16,384"),
        ("ranking: {seeds: [1, 2]}\nablation: {vocab_sizes: ["
         + ", ".join(str(1000 * i) for i in range(1, 17)) + "], embedding_ratio: ["
         + ", ".join(f"0.{i:02d}" for i in range(10, 26)) + "]}", "at most 400"),
    ],
)  # fmt: skip
def test_cells_and_overrides_are_bounded(service, plan, fragment):
    r = submit(service, "name: big\n" + plan + "\n")
    assert r.status_code == 422 and fragment in r.json()["detail"], r.text

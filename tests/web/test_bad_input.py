"""The dashboard under bad URLs and partial documents."""

import pytest

from tests.helpers import tiny_raw
from tests.runner.conftest import post_run


@pytest.mark.parametrize(
    "path",
    [
        "/?sweep=%C2%B2",
        "/runs/99999999999999999999",
        "/sweeps/99999999999999999999",
        "/fragments/runs/99999999999999999999",
        "/fragments/runs?sweep=99999999999999999999",
    ],
)
def test_dashboard_urls_with_bad_ids_are_4xx_or_ignored(service, path):
    assert service.page(path).status_code in (200, 404, 422)


def test_a_partial_result_renders_on_the_run_page(service, tokenized_dir):
    run = post_run(service, tiny_raw(tokenized_dir.parent))
    doc = {"run": {"status": "failed", "exit_code": 1}, "training": {"tokens_seen": 512}}
    assert service.post(f"/runs/{run['id']}/result", json=doc).status_code == 200
    page = service.page(f"/runs/{run['id']}")
    assert page.status_code == 200 and "Final metrics" in page.text

"""The API against its own OpenAPI document, with schemathesis: generated requests (valid and
invalid), the admin token, a fixed seed. No server error, and every answer documented: its
status code, content type and body schema."""

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.runner.conftest import ADMIN, start_service

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
EXAMPLES = 60  # per operation: about 1,000 cases over the API's operations


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("schemathesis")
    svc = start_service(tmp, tmp / "pax.db", concurrency=0)
    seed = {
        "name": "seed",
        "max_tokens": 4096,
        "model": {"total_params": 60000, "vocab_size": 512},
        "data": {"seq_len": 64, "batch_size": 8},
    }
    # for a worker: no data here, and a local launch would be refused at submission
    svc.post("/runs", json={"config": seed, "launcher": "worker"}).raise_for_status()
    yield svc
    svc.proc.terminate()
    svc.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def api_schema(live):
    return schemathesis.openapi.from_url(live.url + "/openapi.json")


def operations(schema) -> list:
    return [result.ok() for result in schema.get_all_operations()]


@pytest.mark.slow
def test_the_api_conforms_to_its_openapi_document(api_schema, live):
    """Driven through schemathesis's strategies with hypothesis directly (its pytest plugin
    does not load under this pytest): valid and invalid cases for every operation."""
    counts = {"cases": 0, "operations": 0}
    for op in operations(api_schema):
        counts["operations"] += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=op.as_strategy(generation_mode=mode))
            @settings(
                max_examples=EXAMPLES // 2,
                deadline=None,
                derandomize=True,  # a fixed seed: the same cases every run
                suppress_health_check=list(HealthCheck),
                database=None,
            )
            def check(case):
                counts["cases"] += 1
                case.call_and_validate(
                    base_url=live.url, headers={"Authorization": f"Bearer {ADMIN}"}, checks=CHECKS
                )

            try:
                check()
            except Unsatisfiable:  # nothing to break (an operation without inputs)
                assert mode is GenerationMode.NEGATIVE, op.label
    assert counts["operations"] >= 15 and counts["cases"] >= 500, counts

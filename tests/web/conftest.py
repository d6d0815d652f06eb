"""The dashboard is served by the same app: reuse the runner's service fixtures (in process, and
a real `pax serve` for the browser)."""

from tests.runner.conftest import service, service_factory  # noqa: F401

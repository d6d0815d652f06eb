"""The dashboard is served by the same service: reuse the runner's real-service fixtures."""

from tests.runner.conftest import service, service_factory  # noqa: F401

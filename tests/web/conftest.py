"""The dashboard is served by the same app: reuse the runner's service fixtures (in process, and
a real `pax serve` for the browser)."""

from tests.runner.conftest import backend, ledger, postgres, service, service_factory  # noqa: F401

"""What a ledger function refuses with; the API turns each into its status (runner.api.errors)."""


class NotFound(LookupError):
    """-> 404: the run or sweep does not exist."""


class Conflict(RuntimeError):
    """-> 409: the request is valid but the ledger's state forbids it now."""

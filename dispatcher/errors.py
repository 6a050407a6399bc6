"""The library's one exception hierarchy.

Each error carries the HTTP status the API answers with; the HTTP layer maps
them to `{"error": message, "code": status}` in one place.
"""

from __future__ import annotations


class DispatcherError(Exception):
    status = 500

    def __init__(self, message: str, *, status: int | None = None, headers: dict | None = None):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        self.headers = headers or {}


class ConfigurationError(DispatcherError):
    status = 500


class ValidationError(DispatcherError):
    status = 400


class NotFound(DispatcherError):
    status = 404


class Unauthorized(DispatcherError):
    status = 401


class NoCapacity(DispatcherError):
    """Nothing free and the caller asked not to wait (useapi's 429)."""

    status = 429

    def __init__(self, message: str, *, accounts: dict | None = None, retry_after: int = 10):
        super().__init__(message, headers={"Retry-After": str(retry_after)})
        self.accounts = accounts or {}
        self.retry_after = retry_after


class UpstreamError(DispatcherError):
    """An upstream answered with an error; `status` is what it answered."""

    status = 502

    def __init__(self, message: str, *, status: int = 502, retry_after: float | None = None):
        super().__init__(message, status=status)
        self.retry_after = retry_after


class LoginFailed(UpstreamError):
    """The upstream refused the credentials (wrong password, suspended, bad cookie)."""

    def __init__(self, message: str, *, status: int = 401):
        super().__init__(message, status=status)


class StoreUnavailable(DispatcherError):
    """Redis cannot be reached: fail closed."""

    status = 503


class StoreFull(StoreUnavailable):
    """Redis refused a write: it reached `maxmemory` (policy noeviction). Nothing was evicted
    and the refused write changed nothing."""

    status = 507

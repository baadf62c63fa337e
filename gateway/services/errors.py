"""Domain errors raised by the services; one handler maps them to the API's error format.

Error tree::

    ServiceError(code, message, status)      # {"error": {"code", "message", "status"}}
      ├─ NotFound                  404  trunk_not_found, call_not_found, api_key_not_found
      ├─ Conflict                  409  conflict
      ├─ InvalidRequest            400  missing_required_field, invalid_*, unknown_field
      ├─ Unauthorized              401  unauthorized, invalid_provider_credentials
      ├─ Forbidden                 403  insufficient_scope
      └─ RateLimited               429  rate_limited (carries Retry-After)
"""

from __future__ import annotations


class ServiceError(Exception):
    """A failure the API reports as ``{"error": {"code", "message", "status"}}``."""

    status = 400

    def __init__(self, code: str, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.headers = headers or {}

    def to_dict(self) -> dict[str, object]:
        """The seed's error object."""
        return {"error": {"code": self.code, "message": self.message, "status": self.status}}


class InvalidRequest(ServiceError):
    """The request is malformed or names values Telepath refuses."""

    status = 400


class Unauthorized(ServiceError):
    """Missing or wrong credentials."""

    status = 401


class Forbidden(ServiceError):
    """The key may not do this."""

    status = 403


class NotFound(ServiceError):
    """No such object in the caller's account."""

    status = 404


class Conflict(ServiceError):
    """The request clashes with existing state (e.g. a taken SIP username)."""

    status = 409


class RateLimited(ServiceError):
    """Too many requests for this key in the current window."""

    status = 429

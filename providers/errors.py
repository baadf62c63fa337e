"""What can go wrong with an AI provider, as exceptions the bridge can classify.

Error tree::

    ProviderError(category, message, status)        # every failure of an adapter
      ├─ ProviderAuthError            category=auth
      ├─ ProviderRateLimitError       category=rate_limit / quota
      ├─ ProviderConnectError         category=connectivity
      ├─ ProviderProtocolError        category=protocol (a message we cannot understand)
      └─ ProviderConfigError          category=config (e.g. OpenAI's beta shape refused)

Re-exported by ``providers.base``. Interpreted: adapters and tests subclass these.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "ErrorCategory",
    "ProviderAuthError",
    "ProviderConfigError",
    "ProviderConnectError",
    "ProviderError",
    "ProviderProtocolError",
    "ProviderRateLimitError",
]


class ErrorCategory(StrEnum):
    """Provider failure categories; they become the call's disconnect reason and blame."""

    AUTH = "auth"
    RATE_LIMIT = "rate_limit"
    QUOTA = "quota"
    CONNECTIVITY = "connectivity"
    PROTOCOL = "protocol"
    PROVIDER = "provider"
    CONFIG = "config"


class ProviderError(Exception):
    """A failure of an AI provider, with what the caller needs to classify it."""

    category: ErrorCategory = ErrorCategory.PROVIDER

    def __init__(
        self,
        message: str,
        *,
        category: ErrorCategory | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if category is not None:
            self.category = category
        self.status = status


class ProviderAuthError(ProviderError):
    """The provider refused our credentials."""

    category = ErrorCategory.AUTH


class ProviderRateLimitError(ProviderError):
    """The provider throttled us or the account is out of quota."""

    category = ErrorCategory.RATE_LIMIT


class ProviderConnectError(ProviderError):
    """The provider could not be reached, timed out or dropped the connection."""

    category = ErrorCategory.CONNECTIVITY


class ProviderProtocolError(ProviderError):
    """The provider sent something we could not understand."""

    category = ErrorCategory.PROTOCOL


class ProviderConfigError(ProviderError):
    """The trunk's provider configuration cannot work (wrong API shape, missing agent id …)."""

    category = ErrorCategory.CONFIG

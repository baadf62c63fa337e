"""Tortoise ORM models: persistence only, no network I/O in model methods.

Imported only by ``gateway.services`` (and the CLI's database set-up). Migrations live in
``models.migrations`` and run on SQLite and PostgreSQL alike.
"""

from models.tables import Account, ApiKey, Call, CallEvent, Trunk, WebhookDelivery

MODELS_MODULE = "models.tables"

__all__ = ["MODELS_MODULE", "Account", "ApiKey", "Call", "CallEvent", "Trunk", "WebhookDelivery"]

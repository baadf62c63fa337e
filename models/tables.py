"""The tables.

Secrets never appear here in plaintext: provider credentials are one AES-256-GCM
ciphertext per trunk (the trunk secrets column), SIP passwords only as digest HA1 values, API keys
only as SHA-256 hashes. Ids are prefixed, time-sortable strings made by the services.
"""

from __future__ import annotations

from typing import Any

from tortoise import fields
from tortoise.models import Model


class Account(Model):
    """A tenant: owns API keys, trunks and calls."""

    id = fields.CharField(max_length=40, primary_key=True)
    name = fields.CharField(max_length=200, unique=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "accounts"


class ApiKey(Model):
    """An API key, stored as its SHA-256 hash, with a short prefix for lists."""

    # Set by Tortoise from the foreign key; declared for the type checker.
    account_id: str
    id = fields.CharField(max_length=40, primary_key=True)
    account: fields.ForeignKeyRelation[Account] = fields.ForeignKeyField(
        "models.Account", related_name="api_keys", on_delete=fields.CASCADE
    )
    name = fields.CharField(max_length=200)
    key_hash = fields.CharField(max_length=64, unique=True)
    prefix = fields.CharField(max_length=20)
    scopes: fields.JSONField[list[str]] = fields.JSONField(default=list)
    created_at = fields.DatetimeField(auto_now_add=True)
    last_used_at = fields.DatetimeField(null=True)
    revoked_at = fields.DatetimeField(null=True)

    class Meta:
        table = "api_keys"


class Trunk(Model):
    """A connection: a SIP identity linked to an AI agent configuration."""

    # Set by Tortoise from the foreign key; declared for the type checker.
    account_id: str
    id = fields.CharField(max_length=40, primary_key=True)
    account: fields.ForeignKeyRelation[Account] = fields.ForeignKeyField(
        "models.Account", related_name="trunks", on_delete=fields.CASCADE
    )
    name = fields.CharField(max_length=200)
    status = fields.CharField(max_length=16, default="active")
    status_reason = fields.CharField(max_length=1000, null=True)
    ai_provider = fields.CharField(max_length=16)
    sip_username = fields.CharField(max_length=30)
    # Routing is case-insensitive (the Request-URI user picks the trunk): unique lower-case key.
    sip_username_key = fields.CharField(max_length=30, unique=True)
    sip_realm = fields.CharField(max_length=255)
    ha1_md5 = fields.CharField(max_length=32)
    ha1_sha256 = fields.CharField(max_length=64)
    auth_mode = fields.CharField(max_length=8, default="digest")
    provider_config: fields.JSONField[dict[str, Any]] = fields.JSONField(default=dict)
    system_prompt = fields.CharField(max_length=20000, null=True)
    custom_endpoint = fields.CharField(max_length=2000, null=True)
    # AES-256-GCM ciphertext (with key id) of a JSON object of every secret of the trunk.
    secrets = fields.CharField(max_length=200000, null=True)
    inbound_numbers: fields.JSONField[list[str]] = fields.JSONField(default=list)
    allowed_ips: fields.JSONField[list[str]] = fields.JSONField(default=list)
    webhook_url = fields.CharField(max_length=2000, null=True)
    # Status-webhook events sent besides the end of a call: call.started, call.answered.
    webhook_events: fields.JSONField[list[str]] = fields.JSONField(null=True)
    credentials_verified = fields.BooleanField(null=True)
    max_concurrent_calls = fields.IntField(null=True)
    max_call_duration = fields.IntField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "trunks"


class Call(Model):
    """The record of one call, filled in as the call goes."""

    # Set by Tortoise from the foreign key; declared for the type checker.
    account_id: str
    id = fields.CharField(max_length=40, primary_key=True)
    account: fields.ForeignKeyRelation[Account] = fields.ForeignKeyField(
        "models.Account", related_name="calls", on_delete=fields.CASCADE
    )
    trunk_id = fields.CharField(max_length=40, null=True, db_index=True)
    sip_call_id = fields.CharField(max_length=255, db_index=True)
    direction = fields.CharField(max_length=8, default="inbound")
    from_number = fields.CharField(max_length=64, null=True)
    to_number = fields.CharField(max_length=64, null=True)
    carrier = fields.CharField(max_length=32, default="sip")
    transport = fields.CharField(max_length=16, null=True)
    codec = fields.CharField(max_length=32, null=True)
    status = fields.CharField(max_length=16, default="ringing", db_index=True)
    start_time = fields.DatetimeField(db_index=True)
    answer_time = fields.DatetimeField(null=True)
    end_time = fields.DatetimeField(null=True)
    duration = fields.FloatField(null=True)
    billable_duration = fields.FloatField(null=True)
    disconnect_reason = fields.CharField(max_length=32, null=True)
    disconnect_explanation = fields.CharField(max_length=1000, null=True)
    blame = fields.CharField(max_length=16, null=True)
    sip_status = fields.IntField(null=True)
    ai_latency = fields.FloatField(null=True)
    jitter_max = fields.FloatField(null=True)
    # Columns the analytics read for every call of a window (the rest stays in metrics).
    jitter_mean = fields.FloatField(null=True)
    carrier_lag = fields.FloatField(null=True)
    # Everything else measured (latency percentiles and turns, media statistics, X- headers).
    metrics: fields.JSONField[dict[str, Any]] = fields.JSONField(default=dict)
    node = fields.CharField(max_length=64, null=True)

    class Meta:
        table = "calls"


class CallEvent(Model):
    """One timeline entry of a call, at offset_ms from its start."""

    # Set by Tortoise from the foreign key; declared for the type checker.
    call_id: str
    id = fields.BigIntField(primary_key=True)
    call: fields.ForeignKeyRelation[Call] = fields.ForeignKeyField(
        "models.Call", related_name="events", on_delete=fields.CASCADE
    )
    offset_ms = fields.IntField()
    name = fields.CharField(max_length=64)
    detail: fields.JSONField[dict[str, Any]] = fields.JSONField(default=dict)

    class Meta:
        table = "call_events"


class WebhookDelivery(Model):
    """A status-webhook delivery and its attempts."""

    # Set by Tortoise from the foreign key; declared for the type checker.
    call_id: str
    id = fields.CharField(max_length=40, primary_key=True)
    call: fields.ForeignKeyRelation[Call] = fields.ForeignKeyField(
        "models.Call", related_name="deliveries", on_delete=fields.CASCADE
    )
    event = fields.CharField(max_length=32)
    url = fields.TextField()
    payload = fields.TextField()
    status = fields.CharField(max_length=16, default="pending", db_index=True)
    attempts: fields.JSONField[list[dict[str, Any]]] = fields.JSONField(default=list)
    next_attempt_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "webhook_deliveries"

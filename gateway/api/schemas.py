"""Request and response schemas of the REST API.

The same pydantic models validate requests and generate ``/v1/openapi.json``, so the
document cannot drift from what the server accepts. Validation failures carry the API's
own error codes (``PydanticCustomError`` types), which ``validation_error`` turns into a
``ServiceError``.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
)
from pydantic_core import PydanticCustomError

from gateway.services.errors import InvalidRequest
from gateway.services.sip_credentials import password_problem

Provider = Literal["openai", "elevenlabs", "custom", "echo"]
TrunkStatus = Literal["active", "inactive"]
AuthMode = Literal["digest", "ip", "either"]

SIP_USERNAME_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{1,28})[A-Za-z0-9]$")
E164_RE = re.compile(r"^\+[1-9][0-9]{6,14}$")
HEADER_NAME_RE = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$")


def _sip_username(value: str) -> str:
    if not SIP_USERNAME_RE.fullmatch(value):
        raise PydanticCustomError(
            "invalid_sip_username",
            "sip_username must be 3-30 characters: letters, digits and hyphens, not starting or ending with a hyphen",
        )
    return value


def _sip_password(value: str) -> str:
    problem = password_problem(value)
    if problem:
        raise PydanticCustomError("invalid_sip_password", problem)
    return value


def _e164(value: str) -> str:
    if not E164_RE.fullmatch(value):
        raise PydanticCustomError(
            "invalid_phone_number",
            "{value} is not an E.164 number such as +14155550100",
            {"value": value[:40]},
        )
    return value


def _cidr(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value.strip(), strict=False))
    except ValueError:
        raise PydanticCustomError(
            "invalid_ip_range", "{value} is not an IP address or CIDR", {"value": value[:60]}
        ) from None


def _ws_url(value: str) -> str:
    if not re.fullmatch(r"wss?://[^\s/?#]+[^\s]*", value) or len(value) > 2000:
        raise PydanticCustomError("invalid_url", "custom_endpoint must be a ws:// or wss:// URL")
    return value


def _http_url(value: str) -> str:
    if not re.fullmatch(r"https?://[^\s/?#]+[^\s]*", value) or len(value) > 2000:
        raise PydanticCustomError("invalid_url", "webhook_url must be an http:// or https:// URL")
    return value


def _ed25519_public_key(value: str) -> str:
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise PydanticCustomError(
            "invalid_public_key",
            "telnyx_public_key must be the base64 Ed25519 public key from the Telnyx portal",
        )
    return value.strip()


def _headers(value: dict[str, str]) -> dict[str, str]:
    if len(value) > 20:
        raise PydanticCustomError("invalid_headers", "at most 20 custom headers")
    for name, header_value in value.items():
        if (
            not HEADER_NAME_RE.fullmatch(name)
            or "\r" in header_value
            or "\n" in header_value
            or len(header_value) > 4000
        ):
            raise PydanticCustomError(
                "invalid_headers",
                "custom header {name} is not a valid HTTP header",
                {"name": name[:60]},
            )
    return value


SipUsername = Annotated[
    str,
    Field(min_length=3, max_length=30, pattern=SIP_USERNAME_RE.pattern),
    AfterValidator(_sip_username),
]
SipPassword = Annotated[str, Field(min_length=8, max_length=128), AfterValidator(_sip_password)]
PhoneNumber = Annotated[
    str, Field(pattern=E164_RE.pattern, examples=["+14155550100"]), AfterValidator(_e164)
]
IpRange = Annotated[str, Field(max_length=64, examples=["203.0.113.0/24"]), AfterValidator(_cidr)]
WsUrl = Annotated[
    str,
    Field(max_length=2000, pattern=r"^wss?://", examples=["wss://agent.example.com/voice"]),
    AfterValidator(_ws_url),
]
HttpUrl = Annotated[
    str,
    Field(max_length=2000, pattern=r"^https?://", examples=["https://example.com/hooks/calls"]),
    AfterValidator(_http_url),
]
Secret = Annotated[str, Field(min_length=1, max_length=4000)]
Name = Annotated[str, Field(min_length=1, max_length=200)]
Headers = Annotated[dict[str, Annotated[str, Field(max_length=4000)]], AfterValidator(_headers)]
TwilioAccountSid = Annotated[
    str, Field(pattern=r"^AC[0-9a-fA-F]{32}$", examples=["AC0123456789abcdef0123456789abcdef"])
]
TelnyxPublicKey = Annotated[str, Field(max_length=100), AfterValidator(_ed25519_public_key)]
TelnyxMode = Literal["texml", "call_control"]


class ProviderConfig(BaseModel):
    """Provider settings that are not secret (the seed's ``provider_config``)."""

    model_config = ConfigDict(extra="forbid")

    model: Annotated[str, Field(max_length=100)] | None = Field(
        None, description="OpenAI model, default gpt-realtime"
    )
    voice: Annotated[str, Field(max_length=100)] | None = None
    greeting: Annotated[str, Field(max_length=2000)] | None = Field(
        None, description="What the agent says first, at answer"
    )
    turn_detection: Literal["server_vad", "semantic_vad", "none"] | None = None
    vad_threshold: Annotated[float, Field(ge=0, le=1)] | None = None
    prefix_padding_ms: Annotated[int, Field(ge=0, le=5000)] | None = None
    silence_duration_ms: Annotated[int, Field(ge=0, le=10000)] | None = None
    eagerness: Literal["low", "medium", "high", "auto"] | None = None
    interrupt_response: bool | None = None
    idle_timeout_ms: Annotated[int, Field(ge=5000, le=30000)] | None = None
    create_response: bool | None = None
    transcription_model: Annotated[str, Field(max_length=100)] | None = Field(
        None, description="OpenAI input transcription model, or none"
    )
    dtmf_response: bool | None = Field(
        None, description="OpenAI: ask for a response after a key press"
    )
    noise_reduction: Literal["near_field", "far_field", "none"] | None = None
    language: Annotated[str, Field(max_length=20)] | None = None
    dtmf_template: Annotated[str, Field(max_length=500)] | None = None
    enable_end_call: bool | None = None
    enable_transfer: bool | None = None
    transfer_target: Annotated[str, Field(max_length=300)] | None = None
    agent_id: Annotated[str, Field(max_length=200)] | None = Field(
        None, description="ElevenLabs agent id"
    )
    voice_id: Annotated[str, Field(max_length=200)] | None = Field(
        None, description="ElevenLabs voice id"
    )
    first_message: Annotated[str, Field(max_length=2000)] | None = None
    dialect: Literal["telepath", "twilio"] | None = Field(
        None, description="Custom agents: wire protocol"
    )
    binary_audio: bool | None = None
    vad_events: bool | None = None
    accept_timeout: Annotated[float, Field(gt=0, le=10)] | None = Field(
        None, description="Custom agents: seconds to wait for accept"
    )
    send_queue_frames: Annotated[int, Field(ge=1, le=3000)] | None = None
    max_payload_bytes: Annotated[int, Field(ge=160, le=4 * 1024 * 1024)] | None = None
    max_pending_marks: Annotated[int, Field(ge=1, le=100000)] | None = None
    max_protocol_errors: Annotated[int, Field(ge=0, le=100000)] | None = None
    account_sid: Annotated[str, Field(pattern=r"^AC[0-9a-f]{32}$")] | None = Field(
        None, description="Custom agents, twilio dialect: the accountSid reported"
    )
    delay_ms: Annotated[int, Field(ge=0, le=10000)] | None = Field(
        None, description="Echo agent delay"
    )
    base_url: WsUrl | None = Field(
        None, description="Override of the provider's WebSocket endpoint"
    )
    codecs: list[Literal["pcmu", "pcma", "g722"]] | None = Field(
        None, description="SIP codec preference"
    )
    early_media: bool | None = Field(
        None, description="SIP: 183 Session Progress with the SDP answer instead of 180 Ringing"
    )


class TrunkFields(BaseModel):
    """Fields shared by create and update, in the flat and the nested shape."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    ai_provider: Provider | None = None
    provider: Provider | None = Field(
        None, description="Alias of ai_provider (the seed's nested shape)"
    )
    sip_username: SipUsername | None = None
    sip_password: SipPassword | None = None
    openai_api_key: Secret | None = None
    elevenlabs_api_key: Secret | None = None
    elevenlabs_agent_id: Annotated[str, Field(max_length=200)] | None = None
    elevenlabs_voice_id: Annotated[str, Field(max_length=200)] | None = None
    custom_endpoint: WsUrl | None = None
    custom_headers: Headers | None = None
    system_prompt: Annotated[str, Field(max_length=20000)] | None = None
    provider_config: ProviderConfig | None = None
    provider_credential: Secret | None = Field(
        None, description="The provider's API key (nested shape)"
    )
    inbound_numbers: Annotated[list[PhoneNumber], Field(max_length=1000)] | None = None
    allowed_ips: Annotated[list[IpRange], Field(max_length=100)] | None = None
    webhook_url: HttpUrl | None = None
    webhook_secret: Annotated[str, Field(min_length=1, max_length=500)] | None = None
    webhook_events: (
        Annotated[
            list[Literal["call.started", "call.answered"]],
            Field(max_length=10),
            AfterValidator(lambda events: list(dict.fromkeys(events))),
        ]
        | None
    ) = Field(
        None,
        description="Status-webhook events sent besides call.ended (always sent): "
        "call.started, call.answered",
    )
    status: TrunkStatus | None = None
    auth_mode: AuthMode | None = Field(
        None, description="digest (default), ip (allowed_ips only) or either"
    )
    max_concurrent_calls: Annotated[int, Field(ge=1, le=100000)] | None = None
    max_call_duration: Annotated[int, Field(ge=10, le=86400)] | None = Field(
        None, description="seconds"
    )
    twilio_account_sid: TwilioAccountSid | None = Field(
        None, description="Twilio account SID (AC…), for the REST hang-up"
    )
    twilio_auth_token: Secret | None = Field(
        None, description="Twilio auth token: checks X-Twilio-Signature, authorises hang-ups"
    )
    telnyx_api_key: Secret | None = Field(
        None, description="Telnyx API key (Call Control answer/streaming/hang-up)"
    )
    telnyx_public_key: TelnyxPublicKey | None = Field(
        None, description="Telnyx Ed25519 public key (base64) that signs its webhooks"
    )
    telnyx_mode: TelnyxMode | None = Field(
        None, description="How the Telnyx number reaches Telepath: texml (default) or call_control"
    )


class TrunkCreate(TrunkFields):
    """``POST /v1/trunks``: ``sip_username`` and ``ai_provider`` (or ``provider``) are required."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"required": ["sip_username"]})


class TrunkUpdate(TrunkFields):
    """``PATCH /v1/trunks/{id}``: only the fields sent change; ``null`` clears a field."""


class CarrierWebhookUrls(BaseModel):
    """Where a Twilio or Telnyx number's webhooks must point (built from ``--public-url``)."""

    twilio_voice: str
    twilio_status: str
    telnyx_voice: str


class TrunkOut(BaseModel):
    """A trunk as the API shows it: secrets masked, the password never."""

    id: str
    object: Literal["trunk"] = "trunk"
    name: str
    status: Literal["active", "inactive", "error"]
    status_reason: str | None
    ai_provider: Provider
    provider: Provider
    sip_username: str
    sip_password: str = Field(description="The password on create/rotate; afterwards masked")
    sip_endpoint: str
    origination_uri: str
    sip_realm: str
    auth_mode: AuthMode
    inbound_numbers: list[str]
    allowed_ips: list[str]
    webhook_url: str | None
    webhook_secret: str | None
    system_prompt: str | None
    custom_endpoint: str | None
    custom_headers: dict[str, str] | None
    openai_api_key: str | None
    elevenlabs_api_key: str | None
    elevenlabs_agent_id: str | None
    elevenlabs_voice_id: str | None
    provider_credential: str | None
    provider_config: dict[str, Any]
    credentials_verified: bool | None
    max_concurrent_calls: int | None
    max_call_duration: int | None
    webhook_events: list[str] = Field(default_factory=list)
    total_calls: int = 0
    last_call_at: str | None = None
    avg_latency: float | None = Field(None, description="Mean ai_latency of its calls, ms")
    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = Field(None, description="Masked")
    telnyx_api_key: str | None = Field(None, description="Masked")
    telnyx_public_key: str | None = None
    telnyx_mode: TelnyxMode = "texml"
    webhook_urls: CarrierWebhookUrls | None = Field(
        None, description="Paste these into the Twilio/Telnyx number's voice settings"
    )
    created_at: str
    updated_at: str


class TrunkList(BaseModel):
    """A page of trunks."""

    data: list[TrunkOut]
    next_cursor: str | None
    has_more: bool


class GeneratedCredentials(BaseModel):
    """``POST /v1/credentials/generate``."""

    sip_username: str
    sip_password: str


class RotatedPassword(BaseModel):
    """``POST /v1/trunks/{id}/rotate-sip-password``."""

    id: str
    sip_username: str
    sip_password: str


class Deleted(BaseModel):
    """``DELETE`` answers."""

    id: str
    object: str
    deleted: bool


class ErrorBody(BaseModel):
    """The error object."""

    code: str
    message: str
    status: int


class ErrorOut(BaseModel):
    """Every error response: ``{"error": {"code", "message", "status"}}``."""

    error: ErrorBody


_FIELD_CODES = {
    "sip_username": "invalid_sip_username",
    "sip_password": "invalid_sip_password",
    "inbound_numbers": "invalid_phone_number",
    "custom_endpoint": "invalid_url",
    "webhook_url": "invalid_url",
    "base_url": "invalid_url",
    "allowed_ips": "invalid_ip_range",
    "custom_headers": "invalid_headers",
    "twilio_account_sid": "invalid_field",
    "telnyx_public_key": "invalid_public_key",
}

_PYDANTIC_TO_CODE = {
    "missing": "missing_required_field",
    "extra_forbidden": "unknown_field",
}


def validation_error(exc: ValidationError) -> InvalidRequest:
    """The API error for the first problem pydantic found."""
    first = exc.errors(include_url=False)[0]
    field = ".".join(str(p) for p in first["loc"]) or "body"
    kind = first["type"]
    code = _PYDANTIC_TO_CODE.get(kind, kind if kind.startswith("invalid_") else "invalid_field")
    if kind == "missing":
        return InvalidRequest(code, f"{field} is required")
    if kind == "extra_forbidden":
        return InvalidRequest(code, f"Unknown field {field!r}")
    if not kind.startswith("invalid_"):
        # Pattern and length constraints mirror the custom validators for OpenAPI; report
        # them under the field's own error code.
        code = _FIELD_CODES.get(
            field.split(".")[-1] if field.startswith("provider_config") else field.split(".")[0],
            "invalid_field",
        )
    return InvalidRequest(code, f"{field}: {first['msg']}")


M = TypeVar("M", bound=BaseModel)


def parse_model(model: type[M], data: Any) -> M:
    """Validate a decoded JSON body against ``model``; raise the API's own errors."""
    if not isinstance(data, dict):
        raise InvalidRequest("invalid_json", "The request body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc) from None

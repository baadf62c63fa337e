"""The call context handed from an ingress, through the bridge, to the agent."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class CallContext:
    """What Telepath knows about a call when it reaches the agent.

    ``headers`` holds every ``X-`` header of the INVITE with its name as sent, plus
    ``X-SIP-Call-ID`` (the carrier's Call-ID); media-stream calls carry the carrier's
    ids there too. ``custom_parameters`` are Twilio/Telnyx stream parameters.
    """

    call_id: str
    trunk_id: str
    sip_call_id: str
    from_number: str
    to_number: str
    direction: str = "inbound"
    carrier: str = "sip"
    transport: str = "udp"
    source_address: str = ""
    request_uri: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    custom_parameters: dict[str, str] = field(default_factory=dict)

"""Carrier media streams: Twilio and Telnyx numbers through their voice webhooks.

The asyncio and HTTP side of ``ingress.media_streams`` (whose pure codecs, TwiML/TeXML
builders and signature checks it drives). docs/media-streams.md describes the flow.

Modules::

    urls.py         the webhook URLs a trunk shows (``--public-url`` + path)
    tokens.py       one-time call tokens: webhook → WebSocket (in memory, or in Redis across nodes)
    carrier_api.py  REST: hang up (Twilio, Telnyx CC/TeXML), Call Control answer + stream
    leg.py          MediaStreamLeg (a CallLeg over the socket) and OutboundPacer (sans-I/O)
    session.py      the WebSocket loop of one stream; MediaStreamHub (per-process state)
    webhooks.py     the voice/status webhooks as plain values in, a reply out
    records.py      carrier status reports → the call record
    routes.py       the Quart blueprint (outside the /v1 API-key authentication)

Errors: the carriers' input raises the ``ingress.media_streams.errors`` tree
(``MediaStreamProtocolError`` → 400 / close 1008 with a carrier-blamed end;
``SignatureError`` → 403 / close 1008). Carrier REST failures raise
``carrier_api.CarrierApiError`` (carrier, HTTP status, carrier code), which the callers
log: a hang-up that fails never breaks the call's teardown.
"""

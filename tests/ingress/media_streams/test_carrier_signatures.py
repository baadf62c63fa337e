"""Webhook / WS-upgrade signatures, made with the carriers' own algorithms."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from twilio.request_validator import RequestValidator

from ingress.media_streams.errors import (
    MalformedSignatureError,
    SignatureError,
    SignatureMismatchError,
    StaleTimestampError,
)
from ingress.media_streams.signatures import (
    TelnyxWebhookVerifier,
    check_stream_auth_token,
    twilio_public_url,
    twilio_url_candidates,
    verify_telnyx_signature,
    verify_twilio_signature,
)

AUTH_TOKEN = "0123456789abcdef0123456789abcdef"  # a made-up Twilio auth token
FORM = {
    "CallSid": "CA00000000000000000000000000000002",
    "AccountSid": "AC00000000000000000000000000000003",
    "From": "+15550100001",
    "To": "+15550100002",
    "CallStatus": "ringing",
}


class TestTwilioPublicUrl:
    def test_webhook_with_query(self) -> None:
        url = twilio_public_url("https://gw.example.com", "/v1/webhooks/twilio/voice", "trunk=t1")
        assert url == "https://gw.example.com/v1/webhooks/twilio/voice?trunk=t1"

    def test_websocket_scheme_port_and_prefix(self) -> None:
        url = twilio_public_url(
            "https://gw.example.com:8443/tp/", "v1/media/twilio/abc", websocket=True
        )
        assert url == "wss://gw.example.com:8443/tp/v1/media/twilio/abc"

    @pytest.mark.parametrize(
        "base", ["gw.example.com", "ftp://gw.example.com", "https://gw.example.com:x"]
    )
    def test_bad_base(self, base: str) -> None:
        with pytest.raises(MalformedSignatureError):
            twilio_public_url(base, "/x")

    def test_candidates_add_and_remove_default_ports(self) -> None:
        assert twilio_url_candidates("wss://gw.example.com/a") == [
            "wss://gw.example.com/a",
            "wss://gw.example.com:443/a",
        ]
        assert twilio_url_candidates("https://gw.example.com:443/a?b=1") == [
            "https://gw.example.com:443/a?b=1",
            "https://gw.example.com/a?b=1",
        ]
        assert twilio_url_candidates("wss://gw.example.com:8443/a") == [
            "wss://gw.example.com:8443/a"
        ]
        assert twilio_url_candidates("wss://[2001:db8::1]/a")[1] == "wss://[2001:db8::1]:443/a"


class TestTwilioSignature:
    def test_documented_vector(self) -> None:
        """TW-SEC worked example (twilio-python tests; carriers.md §1.10)."""
        params = {
            "CallSid": "CA1234567890ABCDE",
            "Caller": "+14158675309",
            "Digits": "1234",
            "From": "+14158675309",
            "To": "+18005551212",
        }
        url = "https://mycompany.com/myapp.php?foo=1&bar=2"
        verify_twilio_signature("12345", url, params, "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
        with pytest.raises(SignatureMismatchError):
            verify_twilio_signature("12346", url, params, "RSOYDt4T1cUTdK1PDd93/VVr8B8=")

    def test_webhook_form_post(self) -> None:
        url = twilio_public_url("https://gw.example.com", "/v1/webhooks/twilio/voice")
        signature = RequestValidator(AUTH_TOKEN).compute_signature(url, FORM)
        verify_twilio_signature(AUTH_TOKEN, url, FORM, signature)

    @pytest.mark.parametrize(
        ("what", "url", "form", "token"),
        [
            (
                "tampered body",
                "https://gw.example.com/v1/webhooks/twilio/voice",
                {**FORM, "To": "+15550100009"},
                AUTH_TOKEN,
            ),
            (
                "extra field",
                "https://gw.example.com/v1/webhooks/twilio/voice",
                {**FORM, "Digits": "1"},
                AUTH_TOKEN,
            ),
            ("tampered url", "https://gw.example.com/v1/webhooks/twilio/other", FORM, AUTH_TOKEN),
            (
                "tampered host",
                "https://evil.example.com/v1/webhooks/twilio/voice",
                FORM,
                AUTH_TOKEN,
            ),
            ("wrong token", "https://gw.example.com/v1/webhooks/twilio/voice", FORM, "f" * 32),
        ],
    )
    def test_tampering_is_rejected(
        self, what: str, url: str, form: dict[str, str], token: str
    ) -> None:
        signed_url = "https://gw.example.com/v1/webhooks/twilio/voice"
        signature = RequestValidator(AUTH_TOKEN).compute_signature(signed_url, FORM)
        with pytest.raises(SignatureMismatchError):
            verify_twilio_signature(token, url, form, signature)

    def test_repeated_form_fields(self) -> None:
        url = "https://gw.example.com/v1/webhooks/twilio/status"
        pairs = [
            ("CallSid", "CA1"),
            ("StatusCallbackEvent", "answered"),
            ("StatusCallbackEvent", "completed"),
        ]
        signing_string = url + "CallSidCA1StatusCallbackEventansweredStatusCallbackEventcompleted"
        signature = RequestValidator(AUTH_TOKEN).compute_signature(signing_string, {})
        verify_twilio_signature(AUTH_TOKEN, url, pairs, signature)
        with pytest.raises(SignatureMismatchError):
            verify_twilio_signature(AUTH_TOKEN, url, pairs[:2], signature)

    def test_websocket_upgrade_signed_with_and_without_port(self) -> None:
        """The upgrade is a GET without a body: the signed string is the wss:// URL alone.
        Twilio's own validator pads wss with :80, so a :443 spelling needs our candidates."""
        url = twilio_public_url("https://gw.example.com", "/v1/media/twilio/tok", websocket=True)
        validator = RequestValidator(AUTH_TOKEN)
        for signed in (url, "wss://gw.example.com:443/v1/media/twilio/tok"):
            verify_twilio_signature(AUTH_TOKEN, url, None, validator.compute_signature(signed, {}))
        with pytest.raises(SignatureMismatchError):
            verify_twilio_signature(
                AUTH_TOKEN,
                url,
                None,
                validator.compute_signature("wss://gw.example.com/v1/media/twilio/other", {}),
            )

    def test_query_secret_would_be_lost(self) -> None:
        """Twilio strips <Stream url> queries, so a signature over the URL without it
        does not validate a URL with it (why the token lives in the path)."""
        validator = RequestValidator(AUTH_TOKEN)
        signature = validator.compute_signature("wss://gw.example.com/v1/media/twilio", {})
        with pytest.raises(SignatureMismatchError):
            verify_twilio_signature(
                AUTH_TOKEN, "wss://gw.example.com/v1/media/twilio?token=x", None, signature
            )

    def test_sha256_shared_key_algorithm(self) -> None:
        url = "https://gw.example.com/v1/webhooks/twilio/voice"
        signature = RequestValidator(AUTH_TOKEN).compute_signature(url, FORM, "HMAC_SHA256")
        verify_twilio_signature(AUTH_TOKEN, url, FORM, signature, algorithm="HMAC_SHA256")
        with pytest.raises(SignatureMismatchError):
            verify_twilio_signature(AUTH_TOKEN, url, FORM, signature)

    @pytest.mark.parametrize(
        ("token", "signature"),
        [("", "abc="), (AUTH_TOKEN, ""), (AUTH_TOKEN, None), (AUTH_TOKEN, "a" * 600)],
    )
    def test_malformed(self, token: str, signature: str | None) -> None:
        with pytest.raises(MalformedSignatureError):
            verify_twilio_signature(token, "https://gw.example.com/x", FORM, signature)


def _key_pair() -> tuple[Ed25519PrivateKey, str]:
    private = Ed25519PrivateKey.generate()
    public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return private, base64.b64encode(public).decode()  # as the Telnyx portal shows it


def _sign(private: Ed25519PrivateKey, timestamp: str, body: bytes) -> str:
    """Telnyx: Ed25519 over f"{telnyx-timestamp}|{raw body}", base64 (carriers.md §2.6)."""
    return base64.b64encode(private.sign(timestamp.encode() + b"|" + body)).decode()


BODY = b'{"data":{"event_type":"call.initiated","id":"00000000-0000-4000-8000-000000000001"}}'
NOW = 1_763_730_000.0


class TestTelnyxSignature:
    def test_valid(self) -> None:
        private, public = _key_pair()
        timestamp = str(int(NOW) - 10)
        assert (
            verify_telnyx_signature(
                BODY, _sign(private, timestamp, BODY), timestamp, public, now=NOW
            )
            == int(NOW) - 10
        )

    def test_verifier_reuses_the_key(self) -> None:
        private, public = _key_pair()
        verifier = TelnyxWebhookVerifier(public)
        for body in (
            BODY,
            b"AccountSid=a&CallSid=v3%3Ab&CallStatus=ringing",
        ):  # JSON and TeXML forms
            timestamp = str(int(NOW))
            verifier.verify(body, _sign(private, timestamp, body), timestamp, now=NOW)

    @pytest.mark.parametrize(
        "tamper",
        ["body", "timestamp", "key", "signature"],
    )
    def test_tampering_is_rejected(self, tamper: str) -> None:
        private, public = _key_pair()
        timestamp = str(int(NOW))
        signature = _sign(private, timestamp, BODY)
        body = BODY
        if tamper == "body":
            body = BODY.replace(b"initiated", b"answered!")
        elif tamper == "timestamp":
            timestamp = str(int(NOW) + 1)
        elif tamper == "key":
            public = _key_pair()[1]
        else:
            raw = bytearray(base64.b64decode(signature))
            raw[0] ^= 1
            signature = base64.b64encode(bytes(raw)).decode()
        with pytest.raises(SignatureMismatchError):
            verify_telnyx_signature(body, signature, timestamp, public, now=NOW)

    @pytest.mark.parametrize("offset", [-301, 301, -86_400])
    def test_stale_timestamp(self, offset: int) -> None:
        private, public = _key_pair()
        timestamp = str(int(NOW) + offset)
        with pytest.raises(StaleTimestampError) as info:
            verify_telnyx_signature(
                BODY, _sign(private, timestamp, BODY), timestamp, public, now=NOW
            )
        assert info.value.timestamp == int(NOW) + offset

    @pytest.mark.parametrize("offset", [-300, 300])
    def test_tolerance_edge_is_accepted(self, offset: int) -> None:
        private, public = _key_pair()
        timestamp = str(int(NOW) + offset)
        verify_telnyx_signature(BODY, _sign(private, timestamp, BODY), timestamp, public, now=NOW)

    @pytest.mark.parametrize(
        ("signature", "timestamp"),
        [
            (None, "1763730000"),
            ("", "1763730000"),
            ("@@@not-base64@@@", "1763730000"),
            (base64.b64encode(b"x" * 63).decode(), "1763730000"),  # Ed25519 signatures are 64 bytes
            ("A" * 600, "1763730000"),
            ("c2ln", None),
            ("c2ln", ""),
            ("c2ln", "-5"),
            ("c2ln", "1.5e9"),
            ("c2ln", "١٧٦٣٧٣٠٠٠٠"),  # Arabic-Indic digits are digits to str.isdigit
            ("c2ln", "9" * 40),
        ],
    )
    def test_malformed_headers(self, signature: str | None, timestamp: str | None) -> None:
        _, public = _key_pair()
        with pytest.raises(MalformedSignatureError):
            verify_telnyx_signature(BODY, signature, timestamp, public, now=NOW)

    @pytest.mark.parametrize(
        "key",
        [
            "",
            "not base64!",
            base64.b64encode(b"k" * 31).decode(),
            base64.b64encode(b"k" * 33).decode(),
            "A" * 200,
        ],
    )
    def test_malformed_key(self, key: str) -> None:
        with pytest.raises(MalformedSignatureError):
            TelnyxWebhookVerifier(key)


class TestStreamAuthToken:
    def test_header_and_bearer_forms(self) -> None:
        check_stream_auth_token("per-call-secret", "per-call-secret")
        check_stream_auth_token("per-call-secret", "Bearer per-call-secret")

    @pytest.mark.parametrize(
        ("expected", "presented", "error"),
        [
            ("secret", "secreT", SignatureMismatchError),
            ("secret", "Bearer other", SignatureMismatchError),
            ("secret", "secret\udcff", SignatureMismatchError),
            ("secret", None, MalformedSignatureError),
            ("secret", "", MalformedSignatureError),
            ("secret", "x" * 5000, MalformedSignatureError),
            ("", "secret", MalformedSignatureError),
        ],
    )
    def test_rejected(
        self, expected: str, presented: str | None, error: type[SignatureError]
    ) -> None:
        with pytest.raises(error):
            check_stream_auth_token(expected, presented)

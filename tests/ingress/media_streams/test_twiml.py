"""TwiML / TeXML responses and Telnyx Call Control bodies, parsed back and checked."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from urllib.parse import urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingress.media_streams.errors import MediaStreamConfigError
from ingress.media_streams.events import Carrier
from ingress.media_streams.telnyx import (
    decode_client_state,
    telnyx_answer_body,
    telnyx_streaming_start_body,
)
from ingress.media_streams.twiml import (
    XML_DECLARATION,
    check_stream_url,
    media_stream_url,
    texml_connect_stream,
    texml_reject,
    twilio_connect_stream,
    twilio_reject,
)
from media import G722_16K, L16_16K, PCMA, PCMU

TOKEN = "q0Wm3nV1yX7-bZ_4kLp9aA"
TWILIO_URL = f"wss://gw.example.com/v1/media/twilio/{TOKEN}"
TELNYX_URL = f"wss://gw.example.com/v1/media/telnyx/{TOKEN}"
# XML 1.0 §2.2 Char: every code point except C0 controls other than tab/LF/CR, surrogates
# and U+FFFE/U+FFFF.
XML_CHARS = st.characters(
    exclude_categories=["Cs"],
    exclude_characters=[chr(c) for c in range(0x20) if chr(c) not in "\t\n\r"]
    + ["\ufffe", "\uffff"],
)


def _parse(xml: str) -> ET.Element:
    assert xml.startswith(XML_DECLARATION)
    return ET.fromstring(xml.removeprefix(XML_DECLARATION))


class TestMediaStreamUrl:
    def test_token_is_a_path_segment(self) -> None:
        url = media_stream_url("https://gw.example.com", Carrier.TWILIO, TOKEN)
        assert url == TWILIO_URL
        assert urlsplit(url).query == ""

    def test_port_and_prefix_are_kept(self) -> None:
        url = media_stream_url("https://gw.example.com:8443/telepath/", Carrier.TELNYX, TOKEN)
        assert url == f"wss://gw.example.com:8443/telepath/v1/media/telnyx/{TOKEN}"

    @pytest.mark.parametrize(
        ("base", "token"),
        [
            ("http://gw.example.com", TOKEN),  # carriers only connect to wss
            ("https://gw.example.com/?k=v", TOKEN),
            ("https://gw.example.com", "short"),
            ("https://gw.example.com", "has/slash" + "a" * 16),
            ("https://gw.example.com", "a" * 16 + "?x=1"),
            ("https://gw.example.com:99999", TOKEN),
        ],
    )
    def test_refused(self, base: str, token: str) -> None:
        with pytest.raises(MediaStreamConfigError):
            media_stream_url(base, Carrier.TWILIO, token)


class TestStreamUrlCheck:
    @pytest.mark.parametrize(
        "url",
        [
            "https://gw.example.com/ws",  # Twilio error 31922
            "ws://gw.example.com/ws",
            "wss:///path",
            f"wss://gw.example.com/v1/media/twilio?token={TOKEN}",  # Twilio drops queries
            "wss://gw.example.com/ws?",
            "wss://gw.example.com/ws#frag",
            "wss://user:secret@gw.example.com/ws",
            "wss://gw.example.com/ws\x00",
            "wss://[::1/ws",
        ],
    )
    def test_refused(self, url: str) -> None:
        with pytest.raises(MediaStreamConfigError):
            check_stream_url(url)


class TestTwilioConnectStream:
    def test_structure(self) -> None:
        params = {"telepath_call_id": "call_0001", "from": "+15550100001"}
        root = _parse(twilio_connect_stream(TWILIO_URL, params))
        assert root.tag == "Response"
        (connect,) = list(root)
        assert connect.tag == "Connect"
        assert connect.attrib == {}
        (stream,) = list(connect)
        assert stream.tag == "Stream"
        # TW-STREAM: bidirectional streams only receive the inbound track; no track attribute
        assert stream.attrib == {"url": TWILIO_URL}
        assert [(p.tag, p.attrib) for p in stream] == [
            ("Parameter", {"name": "telepath_call_id", "value": "call_0001"}),
            ("Parameter", {"name": "from", "value": "+15550100001"}),
        ]

    def test_status_callback_and_action(self) -> None:
        root = _parse(
            twilio_connect_stream(
                TWILIO_URL,
                status_callback="https://gw.example.com/v1/webhooks/twilio/stream-status",
                connect_action="https://gw.example.com/v1/webhooks/twilio/connect-ended",
            )
        )
        connect = root.find("Connect")
        assert connect is not None
        assert connect.get("action") == "https://gw.example.com/v1/webhooks/twilio/connect-ended"
        stream = connect.find("Stream")
        assert stream is not None
        assert (
            stream.get("statusCallback")
            == "https://gw.example.com/v1/webhooks/twilio/stream-status"
        )

    @given(
        st.dictionaries(
            st.text(XML_CHARS, min_size=1, max_size=20),
            st.text(XML_CHARS, max_size=40),
            max_size=8,
        )
    )
    def test_parameters_are_escaped(self, params: dict[str, str]) -> None:
        root = _parse(twilio_connect_stream(TWILIO_URL, params))
        stream = root.find("Connect/Stream")
        assert stream is not None
        assert {p.get("name"): p.get("value") for p in stream.iter("Parameter")} == params

    def test_secret_in_query_is_refused(self) -> None:
        with pytest.raises(MediaStreamConfigError):
            twilio_connect_stream(TWILIO_URL + "?auth=secret")

    def test_control_characters_are_refused(self) -> None:
        with pytest.raises(MediaStreamConfigError):
            twilio_connect_stream(TWILIO_URL, {"a": "b\x07"})

    def test_too_many_parameters(self) -> None:
        with pytest.raises(MediaStreamConfigError):
            twilio_connect_stream(TWILIO_URL, {f"p{i}": "v" for i in range(65)})


class TestReject:
    def test_twilio(self) -> None:
        assert [(e.tag, e.attrib) for e in _parse(twilio_reject())] == [("Reject", {})]
        assert [(e.tag, e.attrib) for e in _parse(twilio_reject("rejected"))] == [
            ("Reject", {"reason": "rejected"})
        ]
        assert _parse(twilio_reject("busy"))[0].get("reason") == "busy"

    def test_texml(self) -> None:
        assert [(e.tag, e.attrib) for e in _parse(texml_reject())] == [("Reject", {})]
        assert _parse(texml_reject("rejected"))[0].attrib == {"reason": "rejected"}


class TestTexmlConnectStream:
    def test_bidirectional_rtp(self) -> None:
        root = _parse(texml_connect_stream(TELNYX_URL, {"telepath_call_id": "call_0001"}))
        stream = root.find("Connect/Stream")
        assert stream is not None
        assert stream.attrib == {
            "url": TELNYX_URL,
            "track": "inbound_track",
            # TX-TEXML-STREAM: the default is mp3, which would not play streamed audio
            "bidirectionalMode": "rtp",
            "bidirectionalCodec": "PCMU",
            "bidirectionalSamplingRate": "8000",
        }
        assert [p.attrib for p in stream] == [{"name": "telepath_call_id", "value": "call_0001"}]

    def test_codecs(self) -> None:
        def attrs(fmt: object) -> dict[str, str]:
            stream = _parse(texml_connect_stream(TELNYX_URL, codec=fmt)).find("Connect/Stream")  # type: ignore[arg-type]
            assert stream is not None
            return stream.attrib

        assert attrs(PCMA)["bidirectionalCodec"] == "PCMA"
        g722 = attrs(G722_16K)
        assert g722["bidirectionalCodec"] == "G722"
        assert "bidirectionalSamplingRate" not in g722
        with pytest.raises(MediaStreamConfigError):
            texml_connect_stream(TELNYX_URL, codec=L16_16K)  # Call Control only

    @given(st.text(XML_CHARS, max_size=60))
    def test_parameter_values_are_escaped(self, value: str) -> None:
        xml = texml_connect_stream(
            TELNYX_URL, {"k": value}, status_callback="https://gw.example.com/s?a=1&b=2"
        )
        stream = _parse(xml).find("Connect/Stream")
        assert stream is not None
        assert stream.get("statusCallback") == "https://gw.example.com/s?a=1&b=2"
        parameter = stream.find("Parameter")
        assert parameter is not None
        assert parameter.get("value") == value

    def test_query_string_refused(self) -> None:
        with pytest.raises(MediaStreamConfigError):
            texml_connect_stream(TELNYX_URL + "?token=secret")


class TestCallControlBodies:
    def test_streaming_start(self) -> None:
        body = telnyx_streaming_start_body(
            TELNYX_URL, auth_token="per-call-secret", client_state="call_0001", command_id="cmd-1"
        )
        client_state = body.pop("client_state")
        assert isinstance(client_state, str)
        assert decode_client_state(client_state) == "call_0001"
        # carriers.md §2.3 / TX-SS example request
        assert body == {
            "stream_url": TELNYX_URL,
            "stream_track": "inbound_track",
            "stream_bidirectional_mode": "rtp",
            "stream_bidirectional_codec": "PCMU",
            "stream_bidirectional_target_legs": "self",
            "stream_auth_token": "per-call-secret",
            "command_id": "cmd-1",
        }

    def test_answer_with_l16_and_parameters(self) -> None:
        body = telnyx_answer_body(
            TELNYX_URL,
            auth_token="t",
            codec=L16_16K,
            target_legs=None,
            custom_parameters={"a": "1"},
        )
        assert body["stream_bidirectional_codec"] == "L16"
        assert body["stream_bidirectional_sampling_rate"] == 16000
        assert body["custom_parameters"] == [{"name": "a", "value": "1"}]
        assert "stream_bidirectional_target_legs" not in body
        assert "client_state" not in body

    @pytest.mark.parametrize(
        ("url", "token"),
        [
            ("https://gw.example.com/x", "t"),
            (TELNYX_URL + "?t=1", "t"),
            (TELNYX_URL, ""),
            (TELNYX_URL, "t" * 4001),
        ],
    )
    def test_refused(self, url: str, token: str) -> None:
        with pytest.raises(MediaStreamConfigError):
            telnyx_answer_body(url, auth_token=token)

    def test_pcmu_format_default(self) -> None:
        assert (
            telnyx_answer_body(TELNYX_URL, auth_token="t", codec=PCMU)["stream_bidirectional_codec"]
            == "PCMU"
        )

"""The SDP offer/answer model (RFC 3264) for one audio stream.

:class:`SdpSession` is the per-call state: it answers offers (initial INVITE and
re-INVITEs: hold, resume, codec or address changes), makes an offer when an INVITE came
without SDP (the answer then arrives in the ACK), and keeps the ``o=`` session id and
version, incrementing the version only when our description changes (RFC 3264 §8).

Codec choice: one of PCMU (PT 0), PCMA (PT 8) or G.722 (PT 9), also under dynamic
payload types found by ``rtpmap`` name, in the caller's order unless the trunk gives a
preference; plus ``telephone-event`` (RFC 4733) at the offered payload type. Sample rate
and RTP clock rate are separate fields: G.722 carries 16 kHz audio on an 8 kHz RTP clock
(RFC 3551 §4.5.2).

Errors: see the tree in :mod:`ingress.sip.sdp`; :class:`IncompatibleMedia` adds the
RFC 3261 §20.43 warning (code 305, "Incompatible media format") for the 488 response.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

from ingress.sip.sdp import (
    Attribute,
    Connection,
    MalformedSdp,
    MediaSection,
    Origin,
    SdpError,
    SdpLimits,
    SessionDescription,
    is_number,
    parse_sdp,
)
from media.frames import G722_16K, PCMA, PCMU, AudioFormat

__all__ = [
    "Answered",
    "Codec",
    "Direction",
    "IncompatibleMedia",
    "NegotiatedMedia",
    "OfferAnswerError",
    "SdpSession",
    "SUPPORTED_CODECS",
]


class IncompatibleMedia(SdpError):
    """Valid SDP but no stream we can accept: answer 488 with ``warning``."""

    status_hint = 488

    def __init__(self, message: str, *, warn_agent: str = "telepath") -> None:
        super().__init__(message)
        # RFC 3261 §20.43: warn-code 305 "Incompatible media format".
        self.warning = f'305 {warn_agent} "Incompatible media format"'


class OfferAnswerError(SdpError):
    """Local misuse of :class:`SdpSession` (e.g. an answer with no offer outstanding)."""

    status_hint = 500


class Direction(StrEnum):
    """RFC 3264 §5.1 stream directions, always from the describing party's viewpoint."""

    SENDRECV = "sendrecv"
    SENDONLY = "sendonly"
    RECVONLY = "recvonly"
    INACTIVE = "inactive"

    @property
    def sends(self) -> bool:
        return self in (Direction.SENDRECV, Direction.SENDONLY)

    @property
    def receives(self) -> bool:
        return self in (Direction.SENDRECV, Direction.RECVONLY)

    def reversed(self) -> Direction:
        """The direction the other party describes for the same stream (RFC 3264 §6.1)."""
        return _REVERSE[self]

    @classmethod
    def of(cls, sends: bool, receives: bool) -> Direction:
        if sends and receives:
            return cls.SENDRECV
        if sends:
            return cls.SENDONLY
        if receives:
            return cls.RECVONLY
        return cls.INACTIVE


_REVERSE = {
    Direction.SENDRECV: Direction.SENDRECV,
    Direction.SENDONLY: Direction.RECVONLY,
    Direction.RECVONLY: Direction.SENDONLY,
    Direction.INACTIVE: Direction.INACTIVE,
}


@dataclass(frozen=True, slots=True)
class Codec:
    """An audio codec as RTP carries it: static payload type, rtpmap name, clock rate."""

    format: AudioFormat
    static_payload_type: int
    rtp_name: str
    clock_rate: int


# RFC 3551 §6 table 4. G.722's clock rate is 8000 although it samples at 16 kHz
# (RFC 3551 §4.5.2, "for historical reasons").
SUPPORTED_CODECS: tuple[Codec, ...] = (
    Codec(PCMU, 0, "PCMU", 8000),
    Codec(PCMA, 8, "PCMA", 8000),
    Codec(G722_16K, 9, "G722", 8000),
)
_BY_FORMAT = {c.format: c for c in SUPPORTED_CODECS}
_ACCEPTED_PROTOS = ("RTP/AVP", "RTP/AVPF")  # no SRTP: RTP/SAVP(F) streams are refused
_PTIMES = (10, 20, 30, 40, 60)
DEFAULT_TELEPHONE_EVENT_PT = 101
DEFAULT_COMFORT_NOISE_PT = 13


@dataclass(frozen=True, slots=True)
class NegotiatedMedia:
    """The outcome of one offer/answer exchange for the audio stream.

    ``direction`` is *ours*: ``SENDRECV`` normally, ``RECVONLY`` while the caller holds
    us with ``sendonly`` (we must not send), ``INACTIVE`` for ``inactive`` or an RFC 2543
    ``c=0.0.0.0`` hold of a ``recvonly`` stream. ``clock_rate`` is the RTP clock rate of
    ``codec`` (8000 for G.722); ``codec.sample_rate`` is the audio's.
    """

    remote_address: str
    remote_port: int
    payload_type: int
    codec: AudioFormat
    clock_rate: int
    ptime: int
    direction: Direction
    rtcp_mux: bool
    remote_rtcp_address: str
    remote_rtcp_port: int
    telephone_event_pt: int | None = None
    telephone_event_clock_rate: int | None = None
    comfort_noise_pt: int | None = None

    @property
    def on_hold(self) -> bool:
        """The caller has held the stream (we may not send, or nothing flows at all)."""
        return self.direction is not Direction.SENDRECV

    @property
    def samples_per_packet(self) -> int:
        """RTP timestamp increment per packet (in clock-rate units, not audio samples)."""
        return self.clock_rate * self.ptime // 1000


@dataclass(frozen=True, slots=True)
class _Offered:
    payload_type: int
    codec: Codec


@dataclass(frozen=True, slots=True)
class _Event:
    payload_type: int
    clock_rate: int


def _offered_codecs(section: MediaSection) -> list[_Offered]:
    """The offered formats we support, in the offer's order (RFC 3264 §5.1)."""
    rtpmaps = section.rtpmaps()
    out: list[_Offered] = []
    for fmt in section.formats:
        if not is_number(fmt) or len(fmt) > 3:
            continue
        pt = int(fmt)
        rtpmap = rtpmaps.get(pt)
        for codec in SUPPORTED_CODECS:
            if rtpmap is not None:
                # A dynamic PT, or a static one restated: match by name and clock rate.
                if (
                    rtpmap.encoding.upper() == codec.rtp_name
                    and rtpmap.clock_rate == codec.clock_rate
                    and rtpmap.channels == 1
                ):
                    out.append(_Offered(pt, codec))
                    break
            elif pt == codec.static_payload_type:
                out.append(_Offered(pt, codec))
                break
    return out


def _offered_events(section: MediaSection) -> list[_Event]:
    rtpmaps = section.rtpmaps()
    out: list[_Event] = []
    for fmt in section.formats:
        if is_number(fmt) and len(fmt) <= 3:
            rtpmap = rtpmaps.get(int(fmt))
            if (
                rtpmap is not None
                and rtpmap.encoding.lower() == "telephone-event"
                and rtpmap.clock_rate in (8000, 16000, 48000)
            ):
                out.append(_Event(int(fmt), rtpmap.clock_rate))
    return out


def _offered_comfort_noise(section: MediaSection, clock_rate: int) -> int | None:
    rtpmaps = section.rtpmaps()
    for fmt in section.formats:
        if not is_number(fmt) or len(fmt) > 3:
            continue
        pt = int(fmt)
        rtpmap = rtpmaps.get(pt)
        if rtpmap is None and pt == DEFAULT_COMFORT_NOISE_PT and clock_rate == 8000:
            return pt
        if (
            rtpmap is not None
            and rtpmap.encoding.upper() == "CN"
            and rtpmap.clock_rate == clock_rate
        ):
            return pt
    return None


def _direction(section: MediaSection, session: SessionDescription) -> Direction:
    """The direction the describing party states; RFC 3264 §5.1 default is sendrecv."""
    for attrs in (section.attributes, session.attributes):
        for attr in attrs:
            if attr.value is None:
                try:
                    return Direction(attr.name.lower())
                except ValueError:
                    continue
    return Direction.SENDRECV


def _choose_ptime(section: MediaSection, default: int) -> int:
    """Honour the offered ``ptime``/``maxptime`` where we can (RFC 4566 §6)."""
    ptime = section.int_attribute("ptime")
    maxptime = section.int_attribute("maxptime")
    chosen = ptime if ptime in _PTIMES else default
    if maxptime is not None and maxptime > 0 and chosen > maxptime:
        fitting = [p for p in _PTIMES if p <= maxptime]
        chosen = max(fitting) if fitting else min(_PTIMES)
    return chosen


def _parse_rtcp_attr(value: str | None, fallback_addr: str, rtp_port: int) -> tuple[str, int]:
    """``a=rtcp:<port> [IN IP4 <addr>]`` (RFC 3605); default RTP port + 1 (RFC 3550 §11)."""
    if value:
        parts = value.split()
        if parts and is_number(parts[0]) and 0 < int(parts[0]) <= 65535:
            addr = parts[3] if len(parts) >= 4 else fallback_addr
            return addr, int(parts[0])
    return fallback_addr, rtp_port + 1 if rtp_port else 0


def _addrtype(address: str) -> str:
    return "IP6" if ":" in address else "IP4"


@dataclass(frozen=True, slots=True)
class Answered:
    """``SdpSession.receive_offer`` result: the negotiated media and our answer body."""

    media: NegotiatedMedia
    answer: bytes


class SdpSession:
    """Per-call SDP state: ``o=`` identity, the last description we sent, the codec in use.

    ``public_address`` goes into ``o=`` and ``c=``; ``rtp_port`` is our RTP port.
    ``supported`` restricts the codecs (e.g. to what the agent can take cheaply);
    ``preference`` reorders the choice (e.g. ``[G722_16K]`` for HD voice) instead of the
    caller's order. ``rand_bits(k)`` supplies the random session id (e.g.
    ``secrets.randbits``).
    """

    def __init__(
        self,
        public_address: str,
        rtp_port: int,
        *,
        rand_bits: Callable[[int], int],
        supported: Sequence[AudioFormat] = (PCMU, PCMA, G722_16K),
        preference: Sequence[AudioFormat] = (),
        default_ptime: int = 20,
        telephone_event: bool = True,
        comfort_noise: bool = False,
        offer_rtcp_mux: bool = False,
        session_name: str = "Telepath",
        limits: SdpLimits | None = None,
    ) -> None:
        self.public_address = public_address
        self.rtp_port = rtp_port
        self._codecs = [_BY_FORMAT[f] for f in supported if f in _BY_FORMAT]
        if not self._codecs:
            raise ValueError("SdpSession needs at least one supported codec")
        self._preference = [f for f in preference if f in _BY_FORMAT]
        self._default_ptime = default_ptime
        self._telephone_event = telephone_event
        self._comfort_noise = comfort_noise
        self._offer_rtcp_mux = offer_rtcp_mux
        self._session_name = session_name
        self._limits = limits or SdpLimits()
        # RFC 4566 §5.2: sess-id is a numeric string; 62 bits keeps it well inside int64.
        self._session_id = rand_bits(62)
        self._version = 0
        self._last_body: str | None = None  # what we last sent, o= line excluded
        self._pending_offer: SessionDescription | None = None
        self.media: NegotiatedMedia | None = None

    @property
    def session_version(self) -> int:
        return self._version

    @property
    def awaiting_answer(self) -> bool:
        """We sent an offer (e.g. in a 200 OK to an INVITE without SDP) and await the ACK's."""
        return self._pending_offer is not None

    # -- answering ---------------------------------------------------------------------

    def receive_offer(self, body: bytes | str) -> Answered:
        """Answer an offer (INVITE or re-INVITE). Raises ``MalformedSdp`` (400) or
        ``IncompatibleMedia`` (488); on error the session state is unchanged."""
        offer = parse_sdp(body, self._limits)
        if not offer.media:
            raise IncompatibleMedia("offer has no media streams")
        chosen_index: int | None = None
        chosen: NegotiatedMedia | None = None
        answer_sections: list[MediaSection] = []
        for index, section in enumerate(offer.media):
            negotiated = None
            if chosen is None and section.media.lower() == "audio" and section.port != 0:
                negotiated = self._negotiate(offer, section)
            if negotiated is not None:
                chosen_index, chosen = index, negotiated
                answer_sections.append(self._answer_section(section, negotiated))
            else:
                answer_sections.append(_rejected(section))
        if chosen is None or chosen_index is None:
            raise IncompatibleMedia("no common audio codec in the offer")
        self._pending_offer = None
        self.media = chosen
        return Answered(chosen, self._finish(answer_sections))

    def _negotiate(
        self, offer: SessionDescription, section: MediaSection
    ) -> NegotiatedMedia | None:
        if section.proto.upper() not in _ACCEPTED_PROTOS:
            return None
        offered = [o for o in _offered_codecs(section) if o.codec in self._codecs]
        if not offered:
            return None
        pick = self._pick(offered)
        conn = offer.connection_for(section)
        if conn is None:
            raise MalformedSdp("audio stream without a connection address (c=)")
        offer_dir = _direction(section, offer)
        if conn.is_hold_address:
            # RFC 3264 §8.4: c=0.0.0.0 is the old way to say "do not send to me".
            offer_dir = Direction.of(offer_dir.sends, False)
        return self._media_from(section, conn, pick, offer_dir.reversed(), section)

    def _pick(self, offered: list[_Offered]) -> _Offered:
        # Keep the codec in use across re-INVITEs when it is still offered: switching
        # codecs mid-call buys nothing and breaks converters already set up.
        if self.media is not None:
            for o in offered:
                if o.codec.format == self.media.codec:
                    return o
        for fmt in self._preference:
            for o in offered:
                if o.codec.format == fmt:
                    return o
        return offered[0]

    def _media_from(
        self,
        section: MediaSection,
        conn: Connection,
        pick: _Offered,
        our_direction: Direction,
        events_from: MediaSection,
    ) -> NegotiatedMedia:
        te_pt: int | None = None
        te_rate: int | None = None
        if self._telephone_event:
            events = _offered_events(events_from)
            # RFC 4733 §2.1: the event clock SHOULD be the audio stream's; prefer a match.
            matching = [e for e in events if e.clock_rate == pick.codec.clock_rate] or events
            if matching:
                te_pt, te_rate = matching[0].payload_type, matching[0].clock_rate
        cn_pt = None
        if self._comfort_noise:
            cn_pt = _offered_comfort_noise(events_from, pick.codec.clock_rate)
        rtcp_mux = section.has("rtcp-mux")
        rtcp_addr, rtcp_port = _parse_rtcp_attr(section.attribute("rtcp"), conn.host, section.port)
        if rtcp_mux:
            rtcp_addr, rtcp_port = conn.host, section.port
        return NegotiatedMedia(
            remote_address=conn.host,
            remote_port=section.port,
            payload_type=pick.payload_type,
            codec=pick.codec.format,
            clock_rate=pick.codec.clock_rate,
            ptime=_choose_ptime(section, self._default_ptime),
            direction=our_direction,
            rtcp_mux=rtcp_mux,
            remote_rtcp_address=rtcp_addr,
            remote_rtcp_port=rtcp_port,
            telephone_event_pt=te_pt,
            telephone_event_clock_rate=te_rate,
            comfort_noise_pt=cn_pt,
        )

    def _answer_section(self, offered: MediaSection, media: NegotiatedMedia) -> MediaSection:
        codec = _BY_FORMAT[media.codec]
        formats = [str(media.payload_type)]
        attrs = [Attribute("rtpmap", f"{media.payload_type} {codec.rtp_name}/{codec.clock_rate}")]
        if media.telephone_event_pt is not None:
            formats.append(str(media.telephone_event_pt))
            attrs.append(
                Attribute(
                    "rtpmap",
                    f"{media.telephone_event_pt} telephone-event/{media.telephone_event_clock_rate}",
                )
            )
            attrs.append(Attribute("fmtp", f"{media.telephone_event_pt} 0-16"))
        if media.comfort_noise_pt is not None:
            formats.append(str(media.comfort_noise_pt))
            attrs.append(Attribute("rtpmap", f"{media.comfort_noise_pt} CN/{media.clock_rate}"))
        attrs.append(Attribute("ptime", str(media.ptime)))
        if offered.has("maxptime"):
            attrs.append(Attribute("maxptime", str(max(media.ptime, 20))))
        if media.rtcp_mux:
            attrs.append(Attribute("rtcp-mux"))  # RFC 5761 §5.1.1
        attrs.append(Attribute(media.direction.value))
        return MediaSection(
            media="audio",
            port=self.rtp_port,
            proto=offered.proto,
            formats=tuple(formats),
            connection=None,
            attributes=tuple(attrs),
        )

    # -- offering ----------------------------------------------------------------------

    def create_offer(self) -> bytes:
        """Our offer, for the 200 OK to an INVITE (or re-INVITE) that carried no SDP.

        The answer is then expected in the ACK: pass it to :meth:`receive_answer`.
        """
        codecs = list(self._codecs)
        order = ([self.media.codec] if self.media is not None else []) + self._preference
        for fmt in reversed(order):
            for codec in codecs:
                if codec.format == fmt:
                    codecs.remove(codec)
                    codecs.insert(0, codec)
                    break
        formats = [str(c.static_payload_type) for c in codecs]
        attrs = [
            Attribute("rtpmap", f"{c.static_payload_type} {c.rtp_name}/{c.clock_rate}")
            for c in codecs
        ]
        if self._telephone_event:
            te = DEFAULT_TELEPHONE_EVENT_PT
            formats.append(str(te))
            attrs.append(Attribute("rtpmap", f"{te} telephone-event/8000"))
            attrs.append(Attribute("fmtp", f"{te} 0-16"))
        if self._comfort_noise:
            formats.append(str(DEFAULT_COMFORT_NOISE_PT))
            attrs.append(Attribute("rtpmap", f"{DEFAULT_COMFORT_NOISE_PT} CN/8000"))
        attrs.append(Attribute("ptime", str(self._default_ptime)))
        if self._offer_rtcp_mux:
            attrs.append(Attribute("rtcp-mux"))
        attrs.append(Attribute(Direction.SENDRECV.value))
        section = MediaSection(
            "audio", self.rtp_port, "RTP/AVP", tuple(formats), attributes=tuple(attrs)
        )
        body = self._finish([section])
        self._pending_offer = parse_sdp(body)
        return body

    def receive_answer(self, body: bytes | str) -> NegotiatedMedia:
        """Take the answer to :meth:`create_offer` (from the ACK or a 2xx)."""
        if self._pending_offer is None:
            raise OfferAnswerError("no offer of ours is awaiting an answer")
        answer = parse_sdp(body, self._limits)
        audio = next((s for s in answer.media if s.media.lower() == "audio" and s.port != 0), None)
        if audio is None:
            raise IncompatibleMedia("the answer rejected our audio stream")
        if audio.proto.upper() not in _ACCEPTED_PROTOS:
            raise IncompatibleMedia(f"the answer uses {audio.proto}")
        offered = [o for o in _offered_codecs(audio) if o.codec in self._codecs]
        if not offered:
            raise IncompatibleMedia("the answer holds none of the codecs we offered")
        conn = answer.connection_for(audio)
        if conn is None:
            raise MalformedSdp("audio stream without a connection address (c=)")
        their_dir = _direction(audio, answer)
        if conn.is_hold_address:
            their_dir = Direction.of(their_dir.sends, False)
        media = self._media_from(audio, conn, offered[0], their_dir.reversed(), audio)
        if not self._offer_rtcp_mux:
            media = replace(media, rtcp_mux=False)
        self._pending_offer = None
        self.media = media
        return media

    # -- shared ------------------------------------------------------------------------

    def _finish(self, sections: list[MediaSection]) -> bytes:
        """Wrap sections in a session; bump ``o=`` version only if the body changed."""
        addrtype = _addrtype(self.public_address)
        sdp = SessionDescription(
            origin=Origin(
                "-", self._session_id, self._version, self.public_address, "IN", addrtype
            ),
            session_name=self._session_name,
            connection=Connection(self.public_address, "IN", addrtype),
            timing=("0 0",),
            media=tuple(sections),
        )
        text = str(sdp)
        body_without_origin = text.split("\r\n", 2)[2]
        if self._last_body is not None and body_without_origin != self._last_body:
            # RFC 3264 §8: "the version number MUST be incremented" when anything changed,
            # and must stay the same when nothing did (RFC 4566 §5.2).
            self._version += 1
            sdp = sdp.with_version(self._version)
            text = str(sdp)
        self._last_body = body_without_origin
        return text.encode("utf-8")


def _rejected(section: MediaSection) -> MediaSection:
    """RFC 3264 §6: a declined stream is answered with port 0 (and at least one format)."""
    formats = section.formats[:1] or ("0",)
    return MediaSection(section.media, 0, section.proto, formats)

"""The native SIP ingress, wired to the gateway: listeners, auth, policy, call running.

``SipService(settings, services)`` builds the SIP stack from ``Settings`` (UDP and TCP on
``--sip``, TLS on ``--sip-tls``, RTP ports from ``--rtp-ports``, ``--public-address`` in
Contact/SDP, the digest realm = ``--sip-domain``) and answers every new INVITE the UAS
core offers:

1. the Request-URI user picks the trunk (``TrunkService.find_by_username``);
2. authentication by the trunk's ``auth_mode``: source address (``ip``/``either``) or digest
   (401 challenge; an unknown user is challenged and refused exactly like a wrong password,
   with the same work done; 20 failures a minute block the source: one 403, then its new
   INVITEs are dropped unanswered for the cool-off);
3. policy (``ingress.sip.policy.admit``): inactive → 480, source/number not allowed → 403,
   the process at ``--max-calls`` → 503 with Retry-After (the UAS core refuses new INVITEs
   beyond it before any work), the trunk at its cap → 486;
4. RTP ports and the SDP answer (no port → 503, no common codec → 488 with Warning);
5. 180 Ringing (183 with the SDP answer when the trunk's ``provider_config.early_media``
   is set), then ``services.runner.run`` opens the agent while it rings and answers (200)
   when the agent is ready, or refuses (503 with a ``Reason`` header).

Each refusal is logged once at INFO (user, source, reason, status); refusals of a known
trunk after authentication are recorded as calls (``runner.record_rejected``). Passwords,
HA1 values and Authorization headers are never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

from gateway.ids import new_id
from gateway.logs import call_id_var
from gateway.services import Services
from gateway.services.trunks import TrunkState
from gateway.settings import Settings
from ingress.sip.call import SipCallLeg
from ingress.sip.digest import Algorithm, AuthDecision, AuthResult, DigestAuthenticator
from ingress.sip.message import Peer, Request, TransportKind
from ingress.sip.offer_answer import IncompatibleMedia, SdpSession
from ingress.sip.policy import (
    AuthRoute,
    Refusal,
    TrunkPolicy,
    admit,
    authentication_route,
    call_context_fields,
    client_origin,
    route_user,
)
from ingress.sip.sdp import SdpError
from ingress.sip.transport.endpoint import SipEndpoint
from ingress.sip.transport.media import MediaConfig
from ingress.sip.transport.port_pool import PortsExhausted, RtpPortPool
from ingress.sip.transport.rtp import RtpSocketPair, open_rtp_socket_pair
from ingress.sip.transport.tcp import server_tls_context
from ingress.sip.uas import CallState, UasConfig, UserAgentServer
from ingress.sip.uas_events import CallOffered, RequestRefused, UasEvent
from media import G722_16K, PCMA, PCMU, AudioFormat, Blame, CallContext, CallEnd, DisconnectReason

__all__ = ["SipService", "trunk_policy"]

logger = logging.getLogger(__name__)

_CODECS: dict[str, AudioFormat] = {"pcmu": PCMU, "pcma": PCMA, "g722": G722_16K}
_NONCE_LABEL = b"telepath sip digest nonce v1"
_BLOCKED = "too many failed authentications"
_CHALLENGES_REMEMBERED = 10_000
_CHALLENGE_TTL = 60.0


def trunk_policy(state: TrunkState) -> TrunkPolicy:
    """The policy's plain snapshot of a trunk."""
    trunk = state.trunk
    return TrunkPolicy(
        trunk_id=trunk.id,
        username=trunk.sip_username,
        active=trunk.status == "active",
        auth_mode=trunk.auth_mode or "digest",
        allowed_ips=tuple(trunk.allowed_ips or ()),
        inbound_numbers=tuple(trunk.inbound_numbers or ()),
        max_concurrent_calls=trunk.max_concurrent_calls,
    )


def _preference(state: TrunkState) -> tuple[AudioFormat, ...]:
    names = (state.trunk.provider_config or {}).get("codecs") or ()
    if not isinstance(names, list | tuple):
        return ()
    return tuple(_CODECS[n] for n in names if isinstance(n, str) and n in _CODECS)


@dataclass(frozen=True, slots=True)
class _Refused:
    status: int
    reason: str
    end: CallEnd | None  # recorded when the trunk is known
    headers: tuple[tuple[str, str], ...] = ()


def _refusal_end(refusal: Refusal) -> CallEnd:
    if refusal.status == 486:
        return CallEnd(DisconnectReason.BUSY, Blame.SYSTEM, f"Refused: {refusal.reason}", 486)
    blame = Blame.SYSTEM if refusal.status in (480, 503) else Blame.CARRIER
    return CallEnd(DisconnectReason.REJECTED, blame, f"Refused: {refusal.reason}", refusal.status)


class SipService:
    """The SIP stack of one process; ``start()``/``stop()`` from ``run_server``."""

    def __init__(self, settings: Settings, services: Services) -> None:
        self.settings = settings
        self.services = services
        self.endpoint: SipEndpoint | None = None
        self.pool = RtpPortPool(*settings.rtp_ports)
        # Caller audio goes to the agent as it arrives unless the operator wants it
        # smoothed first (ingress.sip.rtp.reorder says why that is the default).
        self.media_config = MediaConfig(jitter_buffer=settings.jitter_buffer)
        self._secret = hmac.new(services.keyring.current, _NONCE_LABEL, hashlib.sha256).digest()
        self._authenticators: dict[str, DigestAuthenticator] = {}
        self._lookup_state: TrunkState | None = None
        self._legs: dict[str, SipCallLeg] = {}
        # Call-ID -> (first INVITE, 401 sent) on the loop clock, for the call's timeline.
        self._challenged: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._tasks: set[asyncio.Task[None]] = set()

    # -- addresses ----------------------------------------------------------------------------
    @property
    def public_address(self) -> str:
        if self.settings.public_address:
            return self.settings.public_address
        host = self.settings.sip.host
        return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host

    @property
    def rtp_host(self) -> str:
        host = self.settings.sip.host
        return "0.0.0.0" if host in ("", "::") else host

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> SipEndpoint:
        """Bind the listeners. Raises ``OSError`` when an address is taken."""
        settings = self.settings
        ports = {TransportKind.UDP: settings.sip.port, TransportKind.TCP: settings.sip.port}
        tls = None
        if settings.sip_tls is not None and settings.tls_cert and settings.tls_key:
            ports[TransportKind.TLS] = settings.sip_tls.port
            context = server_tls_context(settings.tls_cert, settings.tls_key)
            tls = (settings.sip_tls.host, settings.sip_tls.port, context)
        uas = UserAgentServer(
            UasConfig(
                public_address=self.public_address, ports=ports, max_calls=settings.max_calls
            ),
            random=secrets.token_bytes,
        )
        endpoint = SipEndpoint(uas, on_event=self._on_event)
        address = (settings.sip.host, settings.sip.port)
        await endpoint.start(udp=address, tcp=address, tls=tls)
        self.endpoint = endpoint
        if not settings.public_address and settings.sip.host in ("0.0.0.0", "::", ""):
            logger.warning(
                "no --public-address: SDP and Contact advertise %s; callers on other machines "
                "need --public-address set to an address they can reach",
                self.public_address,
            )
        # Draining: OPTIONS probes and new INVITEs get 503 from the core itself, so the SIP
        # load balancer takes this node out of rotation at once (docs/deployment.md).
        self.services.drain.on_begin(
            lambda drain, now: endpoint.act(lambda _: uas.set_draining(drain.retry_after(now)))
        )
        for kind, (host, port) in endpoint.addresses.items():
            logger.info("SIP listening on %s %s:%s", kind.value, host, port)
        return endpoint

    async def stop(self) -> None:
        """End the running SIP calls (BYE), then close the listeners."""
        shutdown = CallEnd(DisconnectReason.SHUTDOWN, Blame.SYSTEM, "Telepath is shutting down")
        for leg in list(self._legs.values()):
            self.services.runner.end_call(leg.context.call_id, shutdown)
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=5)
        for task in list(self._tasks):
            task.cancel()
        if self.endpoint is not None:
            await self.endpoint.close()

    # -- events ----------------------------------------------------------------------------
    def _on_event(self, event: UasEvent) -> None:
        if isinstance(event, CallOffered):
            task = asyncio.get_running_loop().create_task(self._invite(event))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        if isinstance(event, RequestRefused):
            if event.method == "INVITE" and not event.call and event.status == 503:
                # The core refused a new INVITE by itself: the node drains, or the
                # --max-calls cap is reached.
                logger.info(
                    "SIP INVITE refused: user=None source=%s:%s transport=%s reason=%s status=503",
                    event.source.host,
                    event.source.port,
                    event.source.transport.value,
                    "draining" if self.services.drain.draining else "gateway at capacity",
                )
            elif logger.isEnabledFor(logging.DEBUG):
                logger.debug(
                    "SIP %s from %s:%s answered %s (%s)",
                    event.method,
                    event.source.host,
                    event.source.port,
                    event.status,
                    event.reason,
                )
            return
        leg = self._legs.get(event.call)
        if leg is not None:
            leg.on_signal(event)

    # -- digest --------------------------------------------------------------------------------
    def _authenticator(self, realm: str) -> DigestAuthenticator:
        found = self._authenticators.get(realm)
        if found is None:
            found = DigestAuthenticator(
                realm=realm,
                secret=self._secret,
                lookup=self._lookup,
                random=secrets.token_bytes,
                algorithms=tuple(Algorithm.from_name(n) for n in self.settings.digest_algorithms),
                max_failures=self.settings.auth_failure_limit,
                block_seconds=self.settings.auth_block_seconds,
            )
            self._authenticators[realm] = found
        return found

    def _lookup(self, username: str) -> tuple[str, str] | None:
        """HA1s of the trunk the Request-URI named, if the digest username is its user."""
        state = self._lookup_state
        if state is None or username.lower() != state.trunk.sip_username.lower():
            return None
        return state.trunk.ha1_md5, state.trunk.ha1_sha256

    def _verify(self, state: TrunkState | None, request: Request, source: Peer) -> AuthResult:
        realm = self.settings.sip_domain
        if state is not None and state.trunk.sip_realm:
            realm = state.trunk.sip_realm
        self._lookup_state = state  # the lookup runs synchronously inside verify()
        try:
            return self._authenticator(realm).verify(request, source=source.host, now=time.time())
        finally:
            self._lookup_state = None

    # -- one INVITE ----------------------------------------------------------------------------
    def _ended(self, call: str) -> bool:
        assert self.endpoint is not None
        return self.endpoint.uas.call_state(call) is CallState.ENDED

    def _reject(self, call: str, refused: _Refused, user: str | None, source: Peer) -> None:
        assert self.endpoint is not None
        uas = self.endpoint.uas
        self.endpoint.act(lambda now: uas.reject(call, refused.status, now, extra=refused.headers))
        if refused.status != 401 or refused.reason != "challenge":
            logger.info(
                "SIP INVITE refused: user=%r source=%s:%s transport=%s reason=%s status=%s",
                (user or "")[:64],  # peer-controlled: quoted and bounded
                source.host,
                source.port,
                source.transport.value,
                refused.reason,
                refused.status,
            )

    def _refuse_blocked(self, call: str, refused: _Refused, user: str | None, source: Peer) -> None:
        """Issue 4: "403 and silent drops for a cool-off". The first INVITE after the
        block gets 403 and silences the source in the core (its new INVITEs are dropped
        before any transaction); INVITEs already in flight are dropped unanswered."""
        assert self.endpoint is not None
        uas = self.endpoint.uas

        def decide(now: float) -> bool:
            if uas.is_silenced(source.host, now):
                return uas.drop(call, now)
            uas.silence(source.host, now + self.settings.auth_block_seconds)
            return False

        if self.endpoint.act(decide):
            logger.debug("SIP INVITE from %s dropped (source blocked)", source.host)
        else:
            self._reject(call, refused, user, source)

    async def _invite(self, offered: CallOffered) -> None:
        assert self.endpoint is not None
        loop = asyncio.get_running_loop()
        t_invite = loop.time()
        call, request = offered.call, offered.request
        # Behind a trusted SIP proxy the caller is the proxy's Via below (policy.client_origin):
        # address checks, failed-auth limits, the call context and logs use that.
        source = client_origin(request, offered.source, self.settings.is_trusted_sip_proxy)
        user = route_user(request)
        shed = self.services.new_call_refusal(loop.time())
        if shed is not None:
            # Draining or overloaded: RFC 3261 §21.5.4 503 with Retry-After; the SIP load
            # balancer (Kamailio's dispatcher) sends the INVITE to another node, a carrier
            # retries after Retry-After.
            reason, retry = shed
            self._reject(
                call, _Refused(503, reason, None, (("Retry-After", str(retry)),)), user, source
            )
            return
        try:
            state = await self.services.trunks.find_by_username(user) if user else None
        except Exception:
            logger.exception("SIP INVITE: trunk lookup failed")
            self._reject(
                call,
                _Refused(503, "trunk lookup failed", None, (("Retry-After", "5"),)),
                user,
                source,
            )
            return
        if self._ended(call):
            return
        fields = call_context_fields(request, source)
        context = CallContext(
            call_id=new_id("call"),
            trunk_id=state.trunk.id if state else "",
            sip_call_id=fields.sip_call_id,
            from_number=fields.from_number,
            to_number=fields.to_number,
            carrier=fields.carrier,
            transport=fields.transport,
            source_address=fields.source_address,
            request_uri=fields.request_uri,
            headers=fields.headers,
        )
        call_id_var.set(context.call_id)  # this INVITE's log lines carry the call's id
        timeline: list[tuple[str, Mapping[str, object]]] = [
            ("invite", {"at": t_invite, "transport": source.transport.value.lower()})
        ]
        refused = self._authenticate(state, request, source)
        if refused is None and state is not None:
            policy = trunk_policy(state)
            runner = self.services.runner
            refusal = admit(
                policy,
                request,
                source,
                active_calls=runner.active_calls(),
                trunk_calls=await runner.cluster_trunk_calls(policy.trunk_id),  # all nodes
                max_calls=self.settings.max_calls,
            )
            if refusal is not None:
                refused = _Refused(
                    refusal.status, refusal.reason, _refusal_end(refusal), refusal.headers
                )
        if refused is not None and refused.reason == _BLOCKED:
            self._refuse_blocked(call, refused, user, source)
            return
        if refused is not None and refused.status == 401 and request.call_id:
            # Most user agents resend the INVITE with credentials under the same Call-ID:
            # the call that follows gets this challenge in its timeline.
            self._challenged[request.call_id] = (t_invite, loop.time())
            while len(self._challenged) > _CHALLENGES_REMEMBERED:
                self._challenged.popitem(last=False)
        if refused is not None:
            self._reject(call, refused, user, source)
            if refused.end is not None and state is not None:
                await self.services.runner.record_rejected(
                    trunk=state,
                    account_id=None,
                    context=context,
                    end=refused.end,
                    transport=source.transport.value.lower(),
                    timeline=timeline,
                )
            return
        assert state is not None  # authenticated or address-allowed implies a trunk
        challenged = self._challenged.pop(request.call_id or "", None)
        if challenged is not None and loop.time() - challenged[1] < _CHALLENGE_TTL:
            first_invite, challenge = challenged
            timeline[0] = ("invite", {**timeline[0][1], "at": first_invite})
            timeline.append(("challenge", {"at": challenge}))
        timeline.append(("authenticated", {}))
        await self._connect(call, state, context, source, timeline, user)

    def _authenticate(
        self, state: TrunkState | None, request: Request, source: Peer
    ) -> _Refused | None:
        if state is not None:
            route = authentication_route(trunk_policy(state), source)
            if route is AuthRoute.SOURCE_ALLOWED:
                return None
            if route is AuthRoute.SOURCE_FORBIDDEN:
                end = CallEnd(
                    DisconnectReason.AUTH_FAILED,
                    Blame.CARRIER,
                    "Source address not in the trunk's allowed IPs",
                    403,
                )
                return _Refused(403, "source address not allowed", end)
        result = self._verify(state, request, source)
        decision = result.decision
        if decision is AuthDecision.AUTHENTICATED and state is not None:
            return None
        if decision is AuthDecision.BLOCKED:
            return _Refused(403, _BLOCKED, None)
        if decision is AuthDecision.BAD_REQUEST:
            return _Refused(400, "malformed credentials", None)
        offered = _challenge_quirks(request, result.challenges)
        challenges = tuple(("WWW-Authenticate", c) for c in offered)
        if result.reason == "wrong credentials" and state is not None:
            # A failed call the operator should see (issue 7: reason auth_failed): the
            # carrier is configured with a wrong password for this trunk. A first INVITE
            # without credentials, or a stale nonce, is the normal challenge and no failure.
            end = CallEnd(
                DisconnectReason.AUTH_FAILED,
                Blame.CARRIER,
                "Digest authentication failed: the carrier sent a wrong password for this trunk",
                401,
            )
            return _Refused(401, "wrong credentials", end, challenges)
        has_credentials = "Authorization" in request.headers
        reason = "credentials refused" if has_credentials else "challenge"
        return _Refused(401, reason, None, challenges)

    async def _connect(
        self,
        call: str,
        state: TrunkState,
        context: CallContext,
        source: Peer,
        timeline: list[tuple[str, Mapping[str, object]]],
        user: str | None,
    ) -> None:
        assert self.endpoint is not None
        endpoint, uas = self.endpoint, self.endpoint.uas
        transport = source.transport.value.lower()
        try:
            sockets: RtpSocketPair = await open_rtp_socket_pair(self.pool, self.rtp_host)
        except (PortsExhausted, OSError):
            refused = _Refused(503, "no RTP port free", None, (("Retry-After", "5"),))
            self._reject(call, refused, user, source)
            end = CallEnd(DisconnectReason.SYSTEM_ERROR, Blame.SYSTEM, "No RTP port free", 503)
            await self.services.runner.record_rejected(
                trunk=state,
                account_id=None,
                context=context,
                end=end,
                transport=transport,
                timeline=timeline,
            )
            return
        if self._ended(call):  # cancelled while the ports were bound
            sockets.close()
            return
        preference = _preference(state)
        late_offer = not uas.call_request(call).body
        # An INVITE without SDP: we offer in the 200 OK, only the codec the leg will use
        # (its format is fixed before the answer arrives in the ACK).
        session = SdpSession(
            self.public_address,
            sockets.port,
            rand_bits=secrets.randbits,
            preference=preference,
            supported=(preference[0] if preference else PCMU,)
            if late_offer
            else (PCMU, PCMA, G722_16K),
        )
        try:
            media = endpoint.act(lambda now: uas.set_offer(call, session))
        except IncompatibleMedia as error:
            sockets.close()
            self._reject(
                call,
                _Refused(488, "no common codec", None, (("Warning", error.warning),)),
                user,
                source,
            )
            end = CallEnd(
                DisconnectReason.REJECTED,
                Blame.CARRIER,
                "No codec in common with the caller's offer",
                488,
            )
            await self.services.runner.record_rejected(
                trunk=state,
                account_id=None,
                context=context,
                end=end,
                transport=transport,
                timeline=timeline,
            )
            return
        except SdpError:
            sockets.close()
            self._reject(call, _Refused(400, "malformed SDP", None), user, source)
            return
        except Exception:
            sockets.close()  # the caller cancelled meanwhile (LocalProtocolError)
            if not self._ended(call):
                raise
            return
        audio = media.codec if media is not None else (preference[0] if preference else PCMU)
        early = bool((state.trunk.provider_config or {}).get("early_media"))
        rung = endpoint.act(
            lambda now: uas.ring(call, now, status=183 if early else 180, early_media=early)
        )
        if not rung:
            sockets.close()
            return
        timeline.append(("ringing", {"status": 183 if early else 180, "codec": str(audio)}))
        leg = SipCallLeg(
            endpoint=endpoint,
            call=call,
            context=context,
            media=media,
            audio_format=audio,
            sockets=sockets,
            media_config=self.media_config,
        )
        self._legs[call] = leg
        try:
            await self.services.runner.run(
                trunk=state,
                leg=leg,
                transport=transport,
                codec=str(audio),
                timeline=timeline,
                call_id=context.call_id,
                media_stats=leg.media_stats,
                leg_timeline=leg.timeline,
            )
        finally:
            self._legs.pop(call, None)
            with contextlib.suppress(Exception):
                await leg.hangup(CallEnd(DisconnectReason.SHUTDOWN, Blame.SYSTEM, "call over"))


def _challenge_quirks(request: Request, challenges: tuple[str, ...]) -> tuple[str, ...]:
    """Drop challenges a known user agent cannot survive.

    libre, the SIP stack of baresip 1.x, walks every ``WWW-Authenticate`` of a 401 and
    gives up the whole call (ENOSYS, "Function not implemented") when one of them names an
    algorithm other than MD5, instead of picking the one it supports (RFC 8760 §2.4
    expects it to skip unknown ones). Such agents get the MD5 challenge alone.
    """
    agent = (request.headers.get("User-Agent") or "").lower()
    if agent.startswith("baresip"):
        md5 = tuple(c for c in challenges if "algorithm=MD5" in c)
        return md5 or challenges
    return challenges

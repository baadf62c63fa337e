"""SIP digest authentication (RFC 3261 §22, RFC 7616, RFC 8760), sans-I/O.

Pure functions named after RFC 7616 §3.4.1-§3.4.3: ``H``, ``KD``, ``A1``, ``A2``, ``ha1`` and
``compute_response``, for ``qop=auth`` with MD5 or SHA-256 (the ``-sess`` variants and
``auth-int`` are not offered).

:class:`DigestAuthenticator` is the UAS side. Calling contract:

* ``auth.verify(request, source=host, now=wall_clock)`` for every request to protect. It
  returns an :class:`AuthResult`; map its ``decision``:
  ``AUTHENTICATED`` → go on (``username`` is set); ``CHALLENGE`` → 401 with one
  ``WWW-Authenticate`` per item of ``challenges`` (407/``Proxy-Authenticate`` if you act as a
  proxy); ``BLOCKED`` → 403 or a silent drop; ``BAD_REQUEST`` → 400.
* ``now`` must be a wall clock shared by the cluster (``time.time()``), because nonces
  carry their own expiry and any node that knows ``secret`` can verify them.
* It never raises on peer input and never logs; ``reason`` is safe to log (no password,
  HA1, nonce or header value in it).

Security properties: the response is compared in constant time; an unknown user is
computed against a dummy HA1 and answered exactly like a wrong password; nonce counts are
remembered per nonce (bounded LRU) to stop replays; failures are counted per source and
block it for ``block_seconds`` after ``max_failures`` within ``failure_window`` seconds.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import re
import struct
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

from .errors import DigestError
from .message import RandomSource, Request

__all__ = [
    "A1",
    "A2",
    "H",
    "KD",
    "Algorithm",
    "AuthDecision",
    "AuthResult",
    "DigestAuthenticator",
    "HA1Lookup",
    "authorization",
    "compute_response",
    "ha1",
    "parse_digest_params",
]


class Algorithm(enum.Enum):
    """Digest algorithms (RFC 7616 §3.2, RFC 8760 §2)."""

    MD5 = "MD5"
    SHA256 = "SHA-256"

    @classmethod
    def from_name(cls, name: str) -> Algorithm:
        """Parse an ``algorithm=`` value (case-insensitive). Raises ``DigestError``."""
        for member in cls:
            if member.value.lower() == name.lower():
                return member
        raise DigestError(f"unsupported digest algorithm {name[:20]!r}")


_HASHES: Final = {Algorithm.MD5: hashlib.md5, Algorithm.SHA256: hashlib.sha256}


def H(data: str, algorithm: Algorithm) -> str:  # noqa: N802 - RFC 7616 §3.4 name
    """``H(data)``: the lower-case hex digest of the UTF-8 bytes of ``data``."""
    return _HASHES[algorithm](data.encode("utf-8")).hexdigest()


def KD(secret: str, data: str, algorithm: Algorithm) -> str:  # noqa: N802 - RFC name
    """``KD(secret, data) = H(concat(secret, ":", data))`` (RFC 7616 §3.4.1)."""
    return H(f"{secret}:{data}", algorithm)


def A1(username: str, realm: str, password: str) -> str:  # noqa: N802 - RFC name
    """``A1 = unq(username) ":" unq(realm) ":" passwd`` (RFC 7616 §3.4.2, non-sess)."""
    return f"{username}:{realm}:{password}"


def A2(method: str, uri: str) -> str:  # noqa: N802 - RFC name
    """``A2 = Method ":" request-uri`` for ``qop=auth`` (RFC 7616 §3.4.3)."""
    return f"{method}:{uri}"


def ha1(username: str, realm: str, password: str, algorithm: Algorithm) -> str:
    """``H(A1)``: what a server stores instead of the password."""
    return H(A1(username, realm, password), algorithm)


def response_from_ha1(
    ha1_hex: str,
    *,
    algorithm: Algorithm,
    method: str,
    uri: str,
    nonce: str,
    nc: str,
    cnonce: str,
    qop: str = "auth",
) -> str:
    """``KD(H(A1), nonce:nc:cnonce:qop:H(A2))`` (RFC 7616 §3.4.1)."""
    return KD(ha1_hex, f"{nonce}:{nc}:{cnonce}:{qop}:{H(A2(method, uri), algorithm)}", algorithm)


def compute_response(
    *,
    algorithm: Algorithm,
    username: str,
    realm: str,
    password: str,
    method: str,
    uri: str,
    nonce: str,
    nc: str,
    cnonce: str,
    qop: str = "auth",
) -> str:
    """The ``response`` value a client sends (RFC 7616 §3.4.1)."""
    return response_from_ha1(
        ha1(username, realm, password, algorithm),
        algorithm=algorithm,
        method=method,
        uri=uri,
        nonce=nonce,
        nc=nc,
        cnonce=cnonce,
        qop=qop,
    )


_PARAM: Final = re.compile(
    r"[ \t]*([A-Za-z0-9\-_.!%*+`'~]+)[ \t]*=[ \t]*(\"(?:[^\"\\]|\\.)*\"|[^ \t,\"]+)[ \t]*(?:,|\Z)"
)


def parse_digest_params(value: str) -> dict[str, str]:
    """Parse ``Digest k=v, k="v"`` into lower-cased keys and unquoted values.

    Raises:
        DigestError: the scheme is not Digest, or the parameter list is malformed.
    """
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        raise DigestError("not a Digest header")
    params: dict[str, str] = {}
    pos = 0
    rest = rest.strip()
    while pos < len(rest):
        found = _PARAM.match(rest, pos)
        if not found or len(params) >= 32:
            raise DigestError("malformed digest parameters")
        raw = found.group(2)
        if raw.startswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        key = found.group(1).lower()
        if key in params:
            raise DigestError("repeated digest parameter")
        params[key] = raw
        pos = found.end()
    return params


def authorization(
    challenge: str,
    *,
    username: str,
    password: str,
    method: str,
    uri: str,
    cnonce: str,
    nc: int = 1,
) -> str:
    """A UAC's ``Authorization`` value answering one ``WWW-Authenticate`` ``challenge``.

    Raises:
        DigestError: the challenge is malformed or uses an unsupported algorithm/qop.
    """
    params = parse_digest_params(challenge)
    algorithm = Algorithm.from_name(params.get("algorithm", "MD5"))
    if "auth" not in [q.strip() for q in params.get("qop", "auth").split(",")]:
        raise DigestError("challenge without qop=auth")
    realm, nonce, nc_text = params.get("realm", ""), params.get("nonce", ""), f"{nc:08x}"
    response = compute_response(
        algorithm=algorithm,
        username=username,
        realm=realm,
        password=password,
        method=method,
        uri=uri,
        nonce=nonce,
        nc=nc_text,
        cnonce=cnonce,
    )
    text = (
        f'Digest username="{username}", realm="{realm}", nonce="{nonce}", uri="{uri}", '
        f'response="{response}", algorithm={algorithm.value}, cnonce="{cnonce}", '
        f"qop=auth, nc={nc_text}"
    )
    if "opaque" in params:
        text += f', opaque="{params["opaque"]}"'
    return text


class AuthDecision(enum.Enum):
    """What the UAS should do with a request after digest verification."""

    AUTHENTICATED = "authenticated"
    CHALLENGE = "challenge"  # 401 with ``challenges``
    BLOCKED = "blocked"  # too many failures from this source: 403 or drop
    BAD_REQUEST = "bad_request"  # malformed credentials: 400


@dataclass(frozen=True, slots=True)
class AuthResult:
    """The outcome of :meth:`DigestAuthenticator.verify`."""

    decision: AuthDecision
    reason: str
    username: str | None = None
    challenges: tuple[str, ...] = field(default=())


#: ``username -> (ha1_md5, ha1_sha256)`` or ``None`` for an unknown user.
HA1Lookup = Callable[[str], "tuple[str, str] | None"]

_NONCE_RANDOM: Final = 16
_NONCE_MAC: Final = 16
_NC: Final = re.compile(r"[0-9a-fA-F]{8}\Z")


class DigestAuthenticator:
    """Challenges and verifies digest credentials for one realm (the SIP domain)."""

    def __init__(
        self,
        *,
        realm: str,
        secret: bytes,
        lookup: HA1Lookup,
        random: RandomSource,
        algorithms: Sequence[Algorithm] = (Algorithm.MD5, Algorithm.SHA256),
        nonce_lifetime: float = 300.0,
        max_failures: int = 20,
        failure_window: float = 60.0,
        block_seconds: float = 300.0,
        max_nonces: int = 10_000,
        max_sources: int = 10_000,
    ) -> None:
        """Configure the authenticator.

        Args:
            realm: the realm offered and required (the SIP domain).
            secret: HMAC key for nonces; share it across the nodes of a cluster.
            lookup: returns the stored HA1 pair for a username, or ``None``.
            random: source of random bytes for nonces.
            algorithms: challenge order; MD5 first by default because sipp 3.6 takes the
                first challenge and only does MD5.
        """
        if len(secret) < 16:
            raise ValueError("secret must be at least 16 bytes")
        self.realm = realm
        self._secret = secret
        self._lookup = lookup
        self._random = random
        self._algorithms = tuple(algorithms)
        self._lifetime = nonce_lifetime
        self._max_failures = max_failures
        self._window = failure_window
        self._block = block_seconds
        self._max_nonces = max_nonces
        self._max_sources = max_sources
        self._nonce_counts: OrderedDict[str, int] = OrderedDict()
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._blocked: OrderedDict[str, float] = OrderedDict()

    # -- challenges ------------------------------------------------------------------
    def challenges(self, now: float, *, stale: bool = False) -> tuple[str, ...]:
        """``WWW-Authenticate`` values, one per algorithm, sharing one fresh nonce."""
        nonce = self._new_nonce(now)
        suffix = ", stale=true" if stale else ""
        return tuple(
            f'Digest realm="{self.realm}", nonce="{nonce}", algorithm={a.value}, qop="auth"{suffix}'
            for a in self._algorithms
        )

    def _mac(self, payload: bytes) -> bytes:
        digest = hmac.new(self._secret, self.realm.encode() + b"\0" + payload, hashlib.sha256)
        return digest.digest()[:_NONCE_MAC]

    def _new_nonce(self, now: float) -> str:
        payload = struct.pack(">Q", int((now + self._lifetime) * 1000)) + self._random(
            _NONCE_RANDOM
        )
        return base64.urlsafe_b64encode(payload + self._mac(payload)).decode().rstrip("=")

    def _nonce_expiry(self, nonce: str) -> float | None:
        """The nonce's expiry if it is ours (MAC valid), else ``None``."""
        if len(nonce) > 64:
            return None
        try:
            raw = base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4))
        except (binascii.Error, ValueError):
            return None
        if len(raw) != 8 + _NONCE_RANDOM + _NONCE_MAC:
            return None
        payload, mac = raw[:-_NONCE_MAC], raw[-_NONCE_MAC:]
        if not hmac.compare_digest(mac, self._mac(payload)):
            return None
        expiry_ms: int = struct.unpack(">Q", payload[:8])[0]
        return float(expiry_ms) / 1000.0

    # -- verification -------------------------------------------------------------------
    def verify(
        self, request: Request, *, source: str, now: float, header: str = "Authorization"
    ) -> AuthResult:
        """Check ``request``'s credentials; see the module docstring for the decisions."""
        if self._is_blocked(source, now):
            return AuthResult(AuthDecision.BLOCKED, "source blocked after repeated failures")
        candidates: list[dict[str, str]] = []
        for value in request.headers.get_all(header):
            if value.split(" ", 1)[0].lower() != "digest":
                continue  # RFC 4475 §3.3.7: other schemes are ignored
            try:
                params = parse_digest_params(value)
            except DigestError:
                return self._fail(source, now, AuthDecision.BAD_REQUEST, "malformed credentials")
            if params.get("realm") == self.realm:
                candidates.append(params)
        if not candidates:
            return self._challenge(now, "no credentials for this realm")
        params = candidates[0]
        needed = ("username", "nonce", "uri", "response", "qop", "nc", "cnonce")
        if any(k not in params for k in needed) or not _NC.match(params["nc"]):
            return self._fail(source, now, AuthDecision.BAD_REQUEST, "incomplete credentials")
        try:
            algorithm = Algorithm.from_name(params.get("algorithm", "MD5"))
        except DigestError:
            return self._challenge(now, "unsupported algorithm")
        if algorithm not in self._algorithms or params["qop"].lower() != "auth":
            return self._challenge(now, "unsupported algorithm or qop")
        nonce, nc = params["nonce"], int(params["nc"], 16)
        expiry = self._nonce_expiry(nonce)
        if expiry is None:
            return self._fail(source, now, AuthDecision.CHALLENGE, "nonce not issued by us")
        if expiry <= now:
            return self._challenge(now, "stale nonce", stale=True)
        last = self._nonce_counts.get(nonce)
        if last is None and nc != 1:
            # Forgotten (evicted, restarted or another node's) nonce: ask for a fresh one.
            return self._challenge(now, "unknown nonce count", stale=True)
        if last is not None and nc <= last:
            return self._fail(source, now, AuthDecision.CHALLENGE, "nonce count replayed")
        stored = self._lookup(params["username"])
        if stored is None:
            # No user enumeration: do the same work against a dummy HA1 and fail alike.
            known = self._dummy_ha1(params["username"], algorithm)
        else:
            known = stored[0] if algorithm is Algorithm.MD5 else stored[1]
        # sipp sends uri=sip:HOST:PORT, not the Request-URI: compute with the client's uri.
        expected = response_from_ha1(
            known.lower(),
            algorithm=algorithm,
            method=request.method,
            uri=params["uri"],
            nonce=nonce,
            nc=params["nc"],
            cnonce=params["cnonce"],
        )
        match = hmac.compare_digest(expected.encode(), params["response"].lower().encode())
        if not match or stored is None:
            return self._fail(source, now, AuthDecision.CHALLENGE, "wrong credentials")
        self._remember_nc(nonce, nc)
        return AuthResult(AuthDecision.AUTHENTICATED, "authenticated", params["username"])

    def _dummy_ha1(self, username: str, algorithm: Algorithm) -> str:
        digest = hmac.new(self._secret, b"dummy\0" + username.encode(), _HASHES[algorithm])
        return digest.hexdigest()

    def _challenge(self, now: float, reason: str, *, stale: bool = False) -> AuthResult:
        return AuthResult(AuthDecision.CHALLENGE, reason, None, self.challenges(now, stale=stale))

    def _remember_nc(self, nonce: str, nc: int) -> None:
        self._nonce_counts[nonce] = nc
        self._nonce_counts.move_to_end(nonce)
        while len(self._nonce_counts) > self._max_nonces:
            self._nonce_counts.popitem(last=False)

    # -- rate limiting ----------------------------------------------------------------
    def _is_blocked(self, source: str, now: float) -> bool:
        until = self._blocked.get(source)
        if until is None:
            return False
        if until > now:
            return True
        del self._blocked[source]
        return False

    def _fail(self, source: str, now: float, decision: AuthDecision, reason: str) -> AuthResult:
        times = self._failures.pop(source, None) or deque(maxlen=self._max_failures)
        times.append(now)
        while times and times[0] <= now - self._window:
            times.popleft()
        if len(times) >= self._max_failures:
            self._blocked[source] = now + self._block
            while len(self._blocked) > self._max_sources:
                self._blocked.popitem(last=False)
            return AuthResult(AuthDecision.BLOCKED, "too many failures: source blocked")
        self._failures[source] = times
        while len(self._failures) > self._max_sources:
            self._failures.popitem(last=False)
        if decision is AuthDecision.CHALLENGE:
            return self._challenge(now, reason)
        return AuthResult(decision, reason)

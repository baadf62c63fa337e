"""Digest authentication: RFC 7616 §3.9.1 worked examples, and the UAS authenticator
against a real sipp 3.6.1 Authorization (recorded in tests/data/sip, see test_message.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from ingress.sip.digest import (
    A1,
    A2,
    KD,
    Algorithm,
    AuthDecision,
    DigestAuthenticator,
    H,
    authorization,
    compute_response,
    ha1,
    parse_digest_params,
)
from ingress.sip.errors import DigestError
from ingress.sip.headers import Headers
from ingress.sip.message import Request
from ingress.sip.parser import parse_message

DATA = Path(__file__).resolve().parents[2] / "data" / "sip"

# RFC 7616 §3.9.1
RFC = {
    "username": "Mufasa",
    "realm": "http-auth@example.org",
    "password": "Circle of Life",
    "method": "GET",
    "uri": "/dir/index.html",
    "nonce": "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
    "nc": "00000001",
    "cnonce": "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
}


class TestRfc7616WorkedExamples:
    """RFC 7616 §3.9.1."""

    def test_md5(self) -> None:
        assert (
            compute_response(algorithm=Algorithm.MD5, **RFC) == "8ca523f5e9506fed4657c9700eebdbec"
        )

    def test_sha256(self) -> None:
        assert (
            compute_response(algorithm=Algorithm.SHA256, **RFC)
            == "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        )

    def test_the_pieces(self) -> None:
        assert A1("Mufasa", "r", "pw") == "Mufasa:r:pw"
        assert A2("GET", "/dir/index.html") == "GET:/dir/index.html"
        assert H("", Algorithm.MD5) == "d41d8cd98f00b204e9800998ecf8427e"
        assert KD("a", "b", Algorithm.SHA256) == H("a:b", Algorithm.SHA256)
        assert ha1("Mufasa", RFC["realm"], RFC["password"], Algorithm.MD5) == H(
            f"Mufasa:{RFC['realm']}:Circle of Life", Algorithm.MD5
        )


def test_parse_digest_params() -> None:
    params = parse_digest_params('Digest realm="a\\"b", qop="auth,auth-int", nc=00000001')
    assert params == {"realm": 'a"b', "qop": "auth,auth-int", "nc": "00000001"}
    for bad in ("Basic abc", 'Digest realm="x', "Digest a=1,,b=2", "Digest a=1, a=2"):
        with pytest.raises(DigestError):
            parse_digest_params(bad)


# -- the authenticator -------------------------------------------------------------------

SECRET = b"telepath-test-secret-0123456789"
NOW = 1_800_000_000.0  # the recording's challenge time
USERS = {
    "alice": (
        ha1("alice", "127.0.0.1", "s3cret-pass", Algorithm.MD5),
        ha1("alice", "127.0.0.1", "s3cret-pass", Algorithm.SHA256),
    )
}


def counter_random() -> Callable[[int], bytes]:
    state = {"n": 0}

    def random(n: int) -> bytes:
        state["n"] += 1
        return (state["n"].to_bytes(4, "big") * n)[:n]

    return random


def make_auth(**kwargs: object) -> DigestAuthenticator:
    options: dict[str, object] = {
        "realm": "127.0.0.1",
        "secret": SECRET,
        "lookup": USERS.get,
        "random": lambda n: bytes(range(n)),
    }
    options.update(kwargs)
    return DigestAuthenticator(**options)  # type: ignore[arg-type]


def sipp_invite() -> Request:
    message = parse_message((DATA / "sipp_auth_invite_md5.sip").read_bytes())
    assert isinstance(message, Request)
    return message


def with_authorization(value: str, method: str = "INVITE") -> Request:
    base = sipp_invite()
    return Request(method, base.uri, base.headers.replace("Authorization", value))


def client_answer(
    challenge: str, *, password: str = "s3cret-pass", user: str = "alice", nc: int = 1
) -> Request:
    value = authorization(
        challenge,
        username=user,
        password=password,
        method="INVITE",
        uri="sip:127.0.0.1:5994",
        cnonce="c0ffee",
        nc=nc,
    )
    return with_authorization(value)


def test_challenges_one_per_algorithm_md5_first_for_sipp() -> None:
    recorded = parse_message((DATA / "telepath_401_challenge.sip").read_bytes())
    challenges = recorded.headers.get_all("WWW-Authenticate")
    assert make_auth().challenges(NOW) == tuple(challenges)
    assert [parse_digest_params(c)["algorithm"] for c in challenges] == ["MD5", "SHA-256"]
    assert all(parse_digest_params(c)["qop"] == "auth" for c in challenges)
    order = make_auth(algorithms=(Algorithm.SHA256, Algorithm.MD5)).challenges(NOW)
    assert [parse_digest_params(c)["algorithm"] for c in order] == ["SHA-256", "MD5"]


def test_real_sipp_credentials_are_accepted() -> None:
    """sipp computes with uri=sip:HOST:PORT, not the Request-URI; we verify what it sent."""
    request = sipp_invite()
    assert 'uri="sip:127.0.0.1:5994"' in (request.headers.get("Authorization") or "")
    result = make_auth().verify(request, source="127.0.0.1", now=NOW + 10)
    assert result.decision is AuthDecision.AUTHENTICATED and result.username == "alice"


def test_another_node_with_the_same_secret_accepts_the_nonce() -> None:
    other = make_auth(random=lambda n: b"\xff" * n)
    assert other.verify(sipp_invite(), source="h", now=NOW + 1).decision is (
        AuthDecision.AUTHENTICATED
    )
    wrong_secret = make_auth(secret=b"another-secret-of-enough-length")
    result = wrong_secret.verify(sipp_invite(), source="h", now=NOW + 1)
    assert result.decision is AuthDecision.CHALLENGE and result.reason == "nonce not issued by us"


def test_sha256_credentials() -> None:
    auth = make_auth()
    sha = auth.challenges(NOW)[1]
    result = auth.verify(client_answer(sha), source="h", now=NOW)
    assert result.decision is AuthDecision.AUTHENTICATED


def test_replayed_nonce_count_is_refused_and_a_higher_one_accepted() -> None:
    auth = make_auth()
    assert auth.verify(sipp_invite(), source="h", now=NOW).decision is AuthDecision.AUTHENTICATED
    replay = auth.verify(sipp_invite(), source="h", now=NOW)
    assert replay.decision is AuthDecision.CHALLENGE and replay.reason == "nonce count replayed"
    challenge = make_auth().challenges(NOW)[0]  # same nonce (same fake random)
    assert auth.verify(client_answer(challenge, nc=2), source="h", now=NOW).decision is (
        AuthDecision.AUTHENTICATED
    )


def test_stale_nonce_gets_stale_true() -> None:
    result = make_auth().verify(sipp_invite(), source="h", now=NOW + 301)
    assert result.decision is AuthDecision.CHALLENGE and result.reason == "stale nonce"
    assert all(c.endswith(", stale=true") for c in result.challenges)


def test_unknown_user_is_answered_exactly_like_a_wrong_password() -> None:
    auth = make_auth()
    challenge = auth.challenges(NOW)[0]
    wrong = auth.verify(client_answer(challenge, password="nope"), source="a", now=NOW)
    unknown = auth.verify(client_answer(challenge, user="mallory"), source="b", now=NOW)
    assert wrong.decision is unknown.decision is AuthDecision.CHALLENGE
    assert wrong.reason == unknown.reason == "wrong credentials"
    assert wrong.challenges == unknown.challenges
    assert wrong.username is unknown.username is None


def test_no_credentials_or_other_scheme_or_realm_is_a_plain_challenge() -> None:
    auth = make_auth()
    bare = parse_message((DATA / "sipp_auth_invite_unauthenticated.sip").read_bytes())
    assert isinstance(bare, Request)
    for request in (
        bare,
        with_authorization("NoOneKnowsThisScheme opaque-data=here"),  # RFC 4475 §3.3.7
        with_authorization(
            'Digest username="alice", realm="elsewhere", nonce="n", uri="u", response="r"'
        ),
    ):
        result = auth.verify(request, source="h", now=NOW)
        assert result.decision is AuthDecision.CHALLENGE and len(result.challenges) == 2
        assert result.reason == "no credentials for this realm"


def test_malformed_credentials_are_a_bad_request() -> None:
    auth = make_auth()
    for value in ('Digest realm="127.0.0.1", username="alice', 'Digest realm="127.0.0.1"'):
        result = auth.verify(with_authorization(value), source="h", now=NOW)
        assert result.decision is AuthDecision.BAD_REQUEST


def test_failures_block_the_source_then_the_block_expires() -> None:
    auth = make_auth(max_failures=3, failure_window=60.0, block_seconds=300.0)
    challenge = auth.challenges(NOW)[0]
    bad = client_answer(challenge, password="guess")
    decisions = [auth.verify(bad, source="10.0.0.9", now=NOW + i).decision for i in range(3)]
    assert decisions == [AuthDecision.CHALLENGE, AuthDecision.CHALLENGE, AuthDecision.BLOCKED]
    # Even the right password is refused while blocked; other sources are unaffected.
    assert auth.verify(sipp_invite(), source="10.0.0.9", now=NOW + 5).decision is (
        AuthDecision.BLOCKED
    )
    assert auth.verify(sipp_invite(), source="10.0.0.8", now=NOW + 5).decision is (
        AuthDecision.AUTHENTICATED
    )
    # Blocked at NOW+2 for 300 s: from NOW+302 the source may try again.
    fresh = auth.challenges(NOW + 303)[0]
    later = auth.verify(client_answer(fresh), source="10.0.0.9", now=NOW + 303)
    assert later.decision is AuthDecision.AUTHENTICATED


def test_failures_outside_the_window_do_not_add_up() -> None:
    auth = make_auth(max_failures=3, failure_window=60.0)
    bad = client_answer(auth.challenges(NOW)[0], password="guess")
    for i in range(10):
        assert auth.verify(bad, source="s", now=NOW + 40 * i).decision is AuthDecision.CHALLENGE


def test_nonce_memory_is_bounded() -> None:
    auth = make_auth(max_nonces=2, random=counter_random())
    nonces = [auth.challenges(NOW)[0] for _ in range(3)]
    for challenge in nonces:
        result = auth.verify(client_answer(challenge), source="s", now=NOW)
        assert result.decision is AuthDecision.AUTHENTICATED
    # The first nonce was forgotten: nc=2 on it asks for a fresh nonce (stale), no replay.
    result = auth.verify(client_answer(nonces[0], nc=2), source="s", now=NOW)
    assert result.reason == "unknown nonce count" and result.challenges[0].endswith("stale=true")


def test_reasons_never_contain_secrets() -> None:
    auth = make_auth()
    challenge = auth.challenges(NOW)[0]
    result = auth.verify(client_answer(challenge, password="hunter2"), source="s", now=NOW)
    text = repr(result)
    for secret in ("hunter2", USERS["alice"][0], USERS["alice"][1], "c0ffee"):
        assert secret not in text


def test_uac_authorization_rejects_unusable_challenges() -> None:
    for challenge in (
        'Digest realm="r", nonce="n", algorithm=SHA-512-256',
        'Digest qop="auth-int"',
    ):
        with pytest.raises(DigestError):
            authorization(
                challenge, username="u", password="p", method="BYE", uri="sip:x", cnonce="c"
            )


def test_short_secret_is_refused() -> None:
    with pytest.raises(ValueError):
        make_auth(secret=b"short")


def test_headers_without_authorization_are_untouched() -> None:
    assert "Authorization" not in Headers.of(("Via", "SIP/2.0/UDP a"))


def test_unsupported_algorithms_and_qops_are_rechallenged() -> None:
    auth = make_auth()
    challenge = auth.challenges(NOW)[0]
    good = client_answer(challenge).headers.get("Authorization") or ""
    for old, new in (("algorithm=MD5", "algorithm=SHA-512"), ("qop=auth", "qop=auth-int")):
        result = auth.verify(with_authorization(good.replace(old, new)), source="h", now=NOW)
        assert result.decision is AuthDecision.CHALLENGE and len(result.challenges) == 2
    only_md5 = make_auth(algorithms=(Algorithm.MD5,))
    sha = client_answer(auth.challenges(NOW)[1])
    result = only_md5.verify(sha, source="h", now=NOW)
    assert result.reason == "unsupported algorithm or qop"


def test_forged_nonces_are_failures() -> None:
    auth = make_auth()
    good = sipp_invite().headers.get("Authorization") or ""
    nonce = parse_digest_params(good)["nonce"]
    flipped = nonce[:30] + ("B" if nonce[30] != "B" else "C") + nonce[31:]
    for forged in ("!!!", "A" * 80, "AAAA", flipped):
        result = auth.verify(with_authorization(good.replace(nonce, forged)), source="h", now=NOW)
        assert result.reason == "nonce not issued by us"


def test_source_memory_is_bounded() -> None:
    auth = make_auth(max_sources=2, max_failures=2)
    bad = client_answer(auth.challenges(NOW)[0], password="x")
    for source in ("a", "b", "c", "a", "b", "c", "d"):
        auth.verify(bad, source=source, now=NOW)
    assert len(auth._failures) <= 2 and len(auth._blocked) <= 2


def test_uac_authorization_carries_opaque() -> None:
    value = authorization(
        'Digest realm="r", nonce="n", opaque="op", qop="auth"',
        username="u",
        password="p",
        method="BYE",
        uri="sip:x",
        cnonce="c",
    )
    params = parse_digest_params(value)
    assert params["opaque"] == "op" and params["nc"] == "00000001"
    assert params["response"] == compute_response(
        algorithm=Algorithm.MD5,
        username="u",
        realm="r",
        password="p",
        method="BYE",
        uri="sip:x",
        nonce="n",
        nc="00000001",
        cnonce="c",
    )

"""SIP credentials: password rules, generated credentials, and the digest HA1 values we store.

SIP passwords are never stored. What digest authentication needs is H(A1) =
H(username ":" realm ":" password) for MD5 and for SHA-256 (RFC 7616 §3.4.2, RFC 8760),
with realm = the SIP domain; that is what the trunk row keeps.
"""

from __future__ import annotations

import re
import secrets
import string
from dataclasses import dataclass

from ingress.sip.digest import Algorithm, ha1

# The most common passwords of public breach corpora (lower-cased), refused outright.
_COMMON = frozenset(
    [
        "password",
        "password1",
        "password12",
        "password123",
        "password1234",
        "passw0rd",
        "p@ssword",
        "p@ssw0rd",
        "123456789",
        "1234567890",
        "12345678",
        "87654321",
        "11111111",
        "00000000",
        "123123123",
        "qwertyuiop",
        "qwerty123",
        "qwertyui",
        "1q2w3e4r",
        "1qaz2wsx",
        "zaq12wsx",
        "abcd1234",
        "abc12345",
        "iloveyou",
        "sunshine",
        "princess",
        "football",
        "baseball",
        "welcome1",
        "welcome123",
        "letmein1",
        "letmein123",
        "trustno1",
        "dragon123",
        "monkey123",
        "superman",
        "batman123",
        "master123",
        "shadow123",
        "michael1",
        "jennifer",
        "charlie1",
        "computer",
        "internet",
        "starwars",
        "whatever",
        "freedom1",
        "passport",
        "changeme",
        "changeme1",
        "default1",
        "admin123",
        "administrator",
        "adminadmin",
        "rootroot",
        "secret123",
        "sipsecret",
        "voip1234",
        "asterisk",
        "freeswitch",
        "telepath",
        "telepath1",
        "mypassword",
        "mypassword1",
        "test1234",
        "testtest",
        "guest123",
        "access14",
    ]
)
_SEQUENCES = ("0123456789", "abcdefghijklmnopqrstuvwxyz", "qwertyuiopasdfghjklzxcvbnm")
_ALPHABET = string.ascii_letters + string.digits


def password_problem(password: str) -> str | None:
    """Why ``password`` is refused as a SIP password, or None if it is acceptable."""
    if len(password) < 8:
        return "sip_password must be at least 8 characters (12 or more recommended)"
    if len(password) > 128:
        return "sip_password must be at most 128 characters"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in password):
        return "sip_password must not contain control characters"
    lowered = password.lower()
    if lowered in _COMMON:
        return "sip_password is one of the most common passwords; choose another"
    if len(set(password)) <= 2:
        return "sip_password is too repetitive; choose another"
    if any(lowered in seq or lowered in seq[::-1] for seq in _SEQUENCES):
        return "sip_password is a keyboard or alphabet sequence; choose another"
    if re.fullmatch(r"(.{1,4})\1+", password):
        return "sip_password repeats a short pattern; choose another"
    return None


def generate_password() -> str:
    """A random 24-character password (~143 bits)."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(24))


def generate_username() -> str:
    """A random SIP username: ``tp-`` and 12 lower-case letters and digits."""
    alphabet = string.ascii_lowercase + string.digits
    return "tp-" + "".join(secrets.choice(alphabet) for _ in range(12))


@dataclass(frozen=True, slots=True)
class DigestSecrets:
    """What is stored for digest authentication instead of a password."""

    realm: str
    ha1_md5: str
    ha1_sha256: str


def digest_secrets(username: str, realm: str, password: str) -> DigestSecrets:
    """HA1 for MD5 and SHA-256 of ``username`` at ``realm``."""
    return DigestSecrets(
        realm,
        ha1(username, realm, password, Algorithm.MD5),
        ha1(username, realm, password, Algorithm.SHA256),
    )

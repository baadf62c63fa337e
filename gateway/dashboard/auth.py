"""Dashboard sign-in, the session cookie and CSRF protection.

An operator signs in with an API key. The key itself never goes into the cookie: the
session (signed with a key derived from the deployment's master key, never encrypted, so
it holds nothing secret) names the key's id and account, and every request checks that the
key still exists and is not revoked, so revoking a key ends its dashboard sessions at once.
The dashboard is scoped exactly like the API: the signed-in key's account, and its scopes
(a ``read``-only key sees everything and changes nothing).

The cookie is ``HttpOnly``, ``SameSite=Strict``, limited to ``/dashboard`` and ``Secure``
whenever the request came over HTTPS (directly, or through a trusted proxy's
``X-Forwarded-Proto``). Every state-changing request must carry the session's CSRF token,
in the ``csrf_token`` form field or the ``X-CSRF-Token`` header (OWASP "synchronizer token
pattern"); the token is replaced at sign-in so a token planted before it is worthless.

Errors raised here are the services' own (``gateway.services.errors``)::

    ServiceError
      ├─ Unauthorized   401  unauthorized (bad key; session_expired)
      └─ Forbidden      403  csrf_failed, insufficient_scope
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta

from quart import Quart, Request, request, session
from quart.sessions import SecureCookieSessionInterface

from gateway.secret_box import Keyring
from gateway.services import Services
from gateway.services.errors import Forbidden, Unauthorized
from gateway.settings import Settings

SESSION_COOKIE = "telepath_dashboard"
SESSION_LIFETIME = timedelta(hours=12)
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
_UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def session_secret(keyring: Keyring) -> bytes:
    """The cookie-signing key: HMAC-SHA256(master key, "dashboard-session").

    Derived, so the master key itself never signs anything but its own purpose; rotating
    the master key signs everyone out.
    """
    return hmac.new(keyring.current, b"dashboard-session", hashlib.sha256).digest()


def came_over_https(req: Request, settings: Settings) -> bool:
    """Whether the browser reached us over HTTPS (a trusted proxy may say so)."""
    forwarded = req.headers.get("X-Forwarded-Proto")
    if forwarded and settings.is_trusted_proxy(req.remote_addr or ""):
        return forwarded.split(",")[0].strip().lower() == "https"
    return req.scheme in ("https", "wss")


class DashboardSessionInterface(SecureCookieSessionInterface):
    """Quart's signed-cookie session, with ``Secure`` decided per request."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def get_cookie_secure(self, app: Quart) -> bool:
        """``Secure`` under HTTPS (and always when the deployment requires HTTPS)."""
        if self.settings.require_https:
            return True
        try:
            return came_over_https(request, self.settings)
        except RuntimeError:  # no request context: be strict
            return True


def configure_sessions(app: Quart, services: Services) -> None:
    """Give ``app`` the dashboard's session cookie settings and signing key."""
    app.secret_key = session_secret(services.keyring)
    app.config.update(
        SESSION_COOKIE_NAME=SESSION_COOKIE,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_PATH="/dashboard",
        PERMANENT_SESSION_LIFETIME=SESSION_LIFETIME,
        SESSION_REFRESH_EACH_REQUEST=False,
    )
    app.session_interface = DashboardSessionInterface(services.settings)


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who is looking at the dashboard: an account through one of its API keys."""

    account_id: str
    account_name: str
    key_id: str
    key_name: str
    key_prefix: str
    scopes: frozenset[str]

    @property
    def can_write(self) -> bool:
        """Whether this key may change anything."""
        return "write" in self.scopes


def csrf_token() -> str:
    """The session's CSRF token (made on first use, e.g. on the sign-in form)."""
    token = session.get("csrf")
    if not isinstance(token, str) or len(token) < 32:
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return token


def check_csrf(sent: str | None) -> None:
    """Refuse a state-changing request whose token does not match the session's."""
    expected = session.get("csrf")
    if (
        not isinstance(expected, str)
        or not sent
        or not hmac.compare_digest(sent.encode(), expected.encode())
    ):
        raise Forbidden(
            "csrf_failed",
            "This form has expired or did not come from the dashboard. Reload the page and try again.",
        )


def is_unsafe(method: str) -> bool:
    """Whether ``method`` changes state (and so needs the CSRF token)."""
    return method.upper() in _UNSAFE_METHODS


async def sign_in(services: Services, secret: str) -> Viewer:
    """Check an API key and start a fresh session for it (``Unauthorized`` if bad)."""
    principal = await services.api_keys.authenticate(secret.strip())
    viewer = await _load_viewer(services, principal.account_id, principal.key_id)
    if viewer is None:
        raise Unauthorized("unauthorized", "Invalid or revoked API key")
    # A new session (and CSRF token) at every sign-in: nothing set before it survives.
    session.clear()
    session.permanent = True
    session["account_id"] = viewer.account_id
    session["key_id"] = viewer.key_id
    session["since"] = int(time.time())
    session["csrf"] = secrets.token_urlsafe(32)
    return viewer


def sign_out() -> None:
    """End the session (the cookie is deleted on the response)."""
    session.clear()


async def current_viewer(services: Services) -> Viewer | None:
    """The signed-in viewer, or ``None`` (no session, expired, or key revoked)."""
    account_id = session.get("account_id")
    key_id = session.get("key_id")
    since = session.get("since")
    if not isinstance(account_id, str) or not isinstance(key_id, str):
        return None
    if not isinstance(since, int) or time.time() - since > SESSION_LIFETIME.total_seconds():
        session.clear()
        return None
    viewer = await _load_viewer(services, account_id, key_id)
    if viewer is None:
        session.clear()
    return viewer


async def _load_viewer(services: Services, account_id: str, key_id: str) -> Viewer | None:
    for key in await services.api_keys.list(account_id):
        if key.id == key_id:
            if key.revoked_at is not None:
                return None
            return Viewer(
                account_id=account_id,
                account_name=key.account.name,
                key_id=key.id,
                key_name=key.name,
                key_prefix=key.prefix,
                scopes=frozenset(key.scopes),
            )
    return None

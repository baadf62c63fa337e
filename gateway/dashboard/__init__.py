"""The web dashboard at ``/dashboard``: server-rendered pages over the same services as the API.

``install(app, services)`` gives the app the dashboard's session settings and registers
the blueprint. Modules: ``auth`` (sign-in, session cookie, CSRF), ``routes`` (the pages),
``forms`` (form fields → API request bodies), ``records`` (call logs and analytics),
``views`` (display shapes), ``charts`` (inline SVG).
"""

from __future__ import annotations

from quart import Quart

from gateway.dashboard.auth import configure_sessions
from gateway.dashboard.routes import dashboard
from gateway.services import Services


def install(app: Quart, services: Services) -> None:
    """Serve the dashboard on ``app`` (call once, from ``create_app``)."""
    configure_sessions(app, services)
    app.register_blueprint(dashboard)


__all__ = ["dashboard", "install"]

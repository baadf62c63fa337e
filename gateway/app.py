"""``create_app``: the Quart application over the services."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from quart import Quart, Response
from quart.json.provider import DefaultJSONProvider

from gateway.api import api, register_error_handlers
from gateway.pages import pages
from gateway.services import Services

MAX_BODY_BYTES = 1024 * 1024


def create_app(services: Services) -> Quart:
    """The HTTP application: API under /v1, docs, health. Routes stay thin over ``services``."""
    # Importing the route modules registers their routes on the blueprints.
    from gateway.api import analytics, calls, openapi, trunks  # noqa: F401

    app = Quart(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.config["JSON_SORT_KEYS"] = False
    if isinstance(app.json, DefaultJSONProvider):
        app.json.sort_keys = False  # keep fields in schema order
    app.extensions["telepath"] = services
    app.register_blueprint(api)
    app.register_blueprint(pages)
    # The web dashboard at /dashboard (session cookie signed with a key derived from the
    # master key; gateway.dashboard.auth).
    from gateway.dashboard import install as install_dashboard

    install_dashboard(app, services)
    # Carrier webhooks and media-stream sockets: their own blueprint, outside the API key
    # check (the carriers authenticate with signatures and one-time call tokens).
    from gateway.media_streams.routes import register_media_streams

    register_media_streams(app, services)
    app.add_url_rule("/metrics", "metrics", _metrics_endpoint(services))
    register_error_handlers(app)
    return app


def _metrics_endpoint(services: Services) -> Callable[[], Awaitable[Response]]:
    """Prometheus ``/metrics`` (the exposition format; no API key, like ``/healthz``)."""

    async def metrics() -> Response:
        body, content_type = services.metrics.render()
        return Response(body, content_type=content_type)

    return metrics

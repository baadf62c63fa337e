"""``create_app``: the Quart application over the services."""

from __future__ import annotations

from quart import Quart

from gateway.api import api, register_error_handlers
from gateway.pages import pages
from gateway.services import Services

MAX_BODY_BYTES = 1024 * 1024


def create_app(services: Services) -> Quart:
    """The HTTP application: API under /v1, docs, health. Routes stay thin over ``services``."""
    # Importing the route modules registers their routes on the blueprints.
    from gateway.api import openapi, trunks  # noqa: F401

    app = Quart(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.config["JSON_SORT_KEYS"] = False
    app.json.sort_keys = False  # type: ignore[attr-defined]  # Quart's DefaultJSONProvider has it
    app.extensions["telepath"] = services
    app.register_blueprint(api)
    app.register_blueprint(pages)
    register_error_handlers(app)
    return app

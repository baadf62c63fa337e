"""Pages outside the API: the API reference at ``/docs`` and the health endpoints."""

from __future__ import annotations

from pathlib import Path

from quart import Blueprint, Response, current_app, jsonify
from tortoise import Tortoise

from gateway.native import compiled
from gateway.runtime import frozen_objects, running_event_loop

pages = Blueprint("pages", __name__)

_DOCS = (Path(__file__).parent / "static" / "docs.html").read_bytes()


@pages.get("/docs")
async def docs() -> Response:
    """The API reference; it renders /v1/openapi.json with no request to any other host."""
    return Response(_DOCS, content_type="text/html; charset=utf-8")


@pages.get("/healthz")
async def healthz() -> Response:
    """Alive, with the process-level runtime an operator may want to check (gateway.runtime)."""
    return jsonify(
        {
            "status": "ok",
            "event_loop": running_event_loop(),
            "gc_frozen_objects": frozen_objects(),
            # How many frame-path modules run compiled (gateway/native.py): the
            # figures in docs/performance.md are for all of them.
            "compiled_modules": len(compiled()),
        }
    )


@pages.get("/readyz")
async def readyz() -> tuple[Response, int]:
    """Ready: the database answers and the node is not draining (gateway.drain)."""
    services = current_app.extensions.get("telepath")
    if services is not None and services.drain.draining:
        return jsonify({"status": "unready", "reason": "draining"}), 503
    try:
        await Tortoise.get_connection("default").execute_query("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - any database failure means "not ready"
        return jsonify({"status": "unready", "reason": type(exc).__name__}), 503
    return jsonify({"status": "ready"}), 200

"""The REST API under ``/v1``: authentication, rate limits, errors, and the blueprints."""

from __future__ import annotations

import json
import logging
from typing import Any

from quart import Blueprint, Quart, Response, current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException, InternalServerError

from gateway.services import Services
from gateway.services.api_keys import Principal
from gateway.services.errors import (
    Forbidden,
    InvalidRequest,
    RateLimited,
    ServiceError,
    Unauthorized,
)

logger = logging.getLogger(__name__)

api = Blueprint("api", __name__, url_prefix="/v1")

# Routes anyone may read without a key.
_PUBLIC_ENDPOINTS = {"api.openapi_document"}


def get_services(app: Quart | None = None) -> Services:
    """The services stored on the app at start-up."""
    services = (app or current_app).extensions["telepath"]
    if not isinstance(services, Services):
        raise RuntimeError("Telepath services are not configured on this app")
    return services


def principal() -> Principal:
    """The authenticated caller of the current API request."""
    who = g.get("principal")
    if not isinstance(who, Principal):
        raise Unauthorized("unauthorized", "Missing API key")
    return who


def require_scope(scope: str) -> Principal:
    """The caller, if its key carries ``scope``; else 403 ``insufficient_scope``."""
    who = principal()
    if scope not in who.scopes:
        raise Forbidden("insufficient_scope", f"This API key lacks the {scope!r} scope")
    return who


async def json_body() -> dict[str, Any]:
    """The request's JSON object, or ``invalid_json``."""
    raw = await request.get_data(cache=False)
    if not raw:
        raise InvalidRequest("invalid_json", "The request body must be a JSON object")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest("invalid_json", "The request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise InvalidRequest("invalid_json", "The request body must be a JSON object")
    return data


def _came_over_https() -> bool:
    services = get_services()
    remote = request.remote_addr or ""
    forwarded = request.headers.get("X-Forwarded-Proto")
    if forwarded and services.settings.is_trusted_proxy(remote):
        return forwarded.split(",")[0].strip().lower() == "https"
    return request.scheme in ("https", "wss")


@api.before_request
async def authenticate() -> None:
    """HTTPS policy, API key, then the key's rate limit."""
    services = get_services()
    if services.settings.require_https and not _came_over_https():
        raise InvalidRequest("https_required", "The API is only served over HTTPS")
    if request.endpoint in _PUBLIC_ENDPOINTS:
        return
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("unauthorized", "Send your API key as 'Authorization: Bearer sk_live_…'")
    who = await services.api_keys.authenticate(token.strip())
    g.principal = who
    decision = await services.rate_limiter.hit(who.key_id)
    g.rate_headers = decision.headers()
    if not decision.allowed:
        raise RateLimited(
            "rate_limited", f"Rate limit of {decision.limit} requests per minute exceeded"
        )


@api.after_request
async def add_rate_headers(response: Response) -> Response:
    """``X-RateLimit-*`` on every authenticated response."""
    for name, value in (g.get("rate_headers") or {}).items():
        response.headers[name] = value
    return response


def error_response(error: ServiceError) -> Response:
    """The seed's error body with the error's status and headers."""
    response = jsonify(error.to_dict())
    response.status_code = error.status
    for name, value in error.headers.items():
        response.headers[name] = value
    for name, value in (g.get("rate_headers") or {}).items():
        response.headers[name] = value
    return response


_HTTP_CODES = {
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    400: "invalid_request",
}


def register_error_handlers(app: Quart) -> None:
    """Map domain errors (and HTTP errors under /v1) to the API's error format."""

    @app.errorhandler(ServiceError)
    async def _service_error(error: ServiceError) -> Response:
        return error_response(error)

    @app.errorhandler(Exception)
    async def _unexpected(error: Exception) -> Response | HTTPException:
        if isinstance(error, HTTPException):
            return error
        if not request.path.startswith("/v1"):
            logger.exception("unhandled error on %s %s", request.method, request.path)
            return InternalServerError()
        logger.exception("unhandled error on %s %s", request.method, request.path)
        failure = ServiceError(
            "internal_error", "Telepath hit an internal error; it has been logged"
        )
        failure.status = 500
        return error_response(failure)

    @app.errorhandler(HTTPException)
    async def _http_error(error: HTTPException) -> Response | HTTPException:
        if not request.path.startswith("/v1"):
            return error
        code = error.code or 500
        failure = ServiceError(_HTTP_CODES.get(code, "http_error"), error.description or error.name)
        failure.status = code
        return error_response(failure)

"""``/v1/openapi.json``: the OpenAPI 3.1 document, built from the schemas that validate requests."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from quart import Response, jsonify

from gateway.api import api
from gateway.api.schemas import (
    Deleted,
    ErrorOut,
    GeneratedCredentials,
    RotatedPassword,
    TrunkCreate,
    TrunkList,
    TrunkOut,
    TrunkUpdate,
)

_REF = "#/components/schemas/{model}"
_MODELS: list[type[BaseModel]] = [
    TrunkCreate,
    TrunkUpdate,
    TrunkOut,
    TrunkList,
    GeneratedCredentials,
    RotatedPassword,
    Deleted,
    ErrorOut,
]
# Extra schemas that other areas register (calls, analytics …) with their paths.
_EXTRA_MODELS: list[type[BaseModel]] = []
_EXTRA_PATHS: dict[str, dict[str, Any]] = {}


def register(models: list[type[BaseModel]], paths: dict[str, dict[str, Any]]) -> None:
    """Add another area's schemas and paths to the document."""
    _EXTRA_MODELS.extend(models)
    _EXTRA_PATHS.update(paths)


def ref(model: type[BaseModel] | str) -> dict[str, str]:
    """A ``$ref`` to a component schema."""
    name = model if isinstance(model, str) else model.__name__
    return {"$ref": _REF.format(model=name)}


def json_content(model: type[BaseModel] | str) -> dict[str, Any]:
    """An ``application/json`` content object."""
    return {"application/json": {"schema": ref(model)}}


def errors(*codes: int) -> dict[str, Any]:
    """Error responses with the seed's error body."""
    text = {
        400: "Invalid request",
        401: "Missing or invalid API key",
        403: "The key lacks the scope",
        404: "Not found",
        409: "Conflict",
        429: "Rate limited",
    }
    return {str(c): {"description": text[c], "content": json_content(ErrorOut)} for c in codes}


def ok(model: type[BaseModel], status: int = 200, description: str = "OK") -> dict[str, Any]:
    """A success response."""
    return {str(status): {"description": description, "content": json_content(model)}}


_ID = {
    "name": "trunk_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "maxLength": 64},
}
_AUTH_ERRORS = (401, 403, 429)


def _trunk_paths() -> dict[str, dict[str, Any]]:
    body = {"required": True}
    return {
        "/v1/trunks": {
            "post": {
                "operationId": "createTrunk",
                "summary": "Create a trunk (connection)",
                "requestBody": {**body, "content": json_content(TrunkCreate)},
                "responses": {**ok(TrunkOut, 201, "Created"), **errors(400, 409, *_AUTH_ERRORS)},
            },
            "get": {
                "operationId": "listTrunks",
                "summary": "List trunks, newest first",
                "parameters": [
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 100},
                    },
                    {"name": "cursor", "in": "query", "schema": {"type": "string"}},
                    {
                        "name": "status",
                        "in": "query",
                        "schema": {"enum": ["active", "inactive", "error"]},
                    },
                    {
                        "name": "sort",
                        "in": "query",
                        "schema": {"enum": ["created_at", "-created_at"]},
                    },
                ],
                "responses": {**ok(TrunkList), **errors(400, *_AUTH_ERRORS)},
            },
        },
        "/v1/trunks/{trunk_id}": {
            "parameters": [_ID],
            "get": {
                "operationId": "getTrunk",
                "responses": {**ok(TrunkOut), **errors(404, *_AUTH_ERRORS)},
            },
            "patch": {
                "operationId": "updateTrunk",
                "summary": "Update a trunk; null clears a field",
                "requestBody": {**body, "content": json_content(TrunkUpdate)},
                "responses": {**ok(TrunkOut), **errors(400, 404, 409, *_AUTH_ERRORS)},
            },
            "delete": {
                "operationId": "deleteTrunk",
                "responses": {**ok(Deleted), **errors(404, *_AUTH_ERRORS)},
            },
        },
        "/v1/trunks/{trunk_id}/rotate-sip-password": {
            "parameters": [_ID],
            "post": {
                "operationId": "rotateSipPassword",
                "responses": {**ok(RotatedPassword), **errors(404, *_AUTH_ERRORS)},
            },
        },
        "/v1/trunks/{trunk_id}/activate": {
            "parameters": [_ID],
            "post": {
                "operationId": "activateTrunk",
                "responses": {**ok(TrunkOut), **errors(404, *_AUTH_ERRORS)},
            },
        },
        "/v1/trunks/{trunk_id}/deactivate": {
            "parameters": [_ID],
            "post": {
                "operationId": "deactivateTrunk",
                "responses": {**ok(TrunkOut), **errors(404, *_AUTH_ERRORS)},
            },
        },
        "/v1/credentials/generate": {
            "post": {
                "operationId": "generateCredentials",
                "responses": {**ok(GeneratedCredentials), **errors(*_AUTH_ERRORS)},
            },
        },
    }


def build_document(server_url: str | None = None) -> dict[str, Any]:
    """The whole OpenAPI 3.1 document."""
    # The areas register their schemas and paths when imported; import them all so the
    # document is complete whatever was imported before.
    from gateway.api import analytics, calls, trunks  # noqa: F401

    models = [*_MODELS, *_EXTRA_MODELS]
    _, schema = models_json_schema(
        [(m, "validation" if m in (TrunkCreate, TrunkUpdate) else "serialization") for m in models],
        ref_template=_REF,
    )
    components = schema.get("$defs", {})
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "Telepath API",
            "version": "1.0.0",
            "description": "Trunks (connections), calls and analytics of a Telepath gateway. "
            "Authenticate with 'Authorization: Bearer sk_live_…'.",
        },
        "servers": [{"url": server_url or "/"}],
        "security": [{"bearerAuth": []}],
        "paths": {**_trunk_paths(), **_EXTRA_PATHS},
        "components": {
            "schemas": components,
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
        },
    }
    return document


@api.get("/openapi.json")
async def openapi_document() -> Response:
    """The OpenAPI document (public: it holds no data)."""
    return jsonify(build_document())

"""Property-based testing of the API against the /v1/openapi.json it serves (schemathesis).

Hypothesis generates requests for every documented operation, valid and invalid; every
answer must be a documented status with a body that matches its schema, and never a 5xx.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from gateway.api.openapi import build_document
from tests.support.live_server import LiveServer, live_server


@pytest.fixture(scope="module")
def prop_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    path: Path = tmp_path_factory.mktemp("props") / "t.db"
    with live_server(f"sqlite://{path}", args=["--rate-limit", "1000000"]) as server:
        yield server


@pytest.fixture(scope="module")
def prop_key(prop_server: LiveServer) -> str:
    return prop_server.api_key(account="schemathesis")


# The served document is build_document() (checked below); loading it at import time lets
# schemathesis parametrize the test per operation.
schema = schemathesis.openapi.from_dict(build_document())


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_conforms(
    case: schemathesis.Case, prop_server: LiveServer, prop_key: str
) -> None:
    response = case.call(
        base_url=prop_server.url, headers={"Authorization": f"Bearer {prop_key}"}, timeout=15
    )
    case.validate_response(
        response,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )


def test_the_document_is_openapi_31_and_covers_the_trunk_api(prop_server: LiveServer) -> None:
    document = requests.get(prop_server.url + "/v1/openapi.json", timeout=10).json()
    assert document == build_document()
    assert document["openapi"] == "3.1.0"
    for path in (
        "/v1/trunks",
        "/v1/trunks/{trunk_id}",
        "/v1/trunks/{trunk_id}/rotate-sip-password",
        "/v1/credentials/generate",
    ):
        assert path in document["paths"]
    create = document["components"]["schemas"]["TrunkCreate"]
    assert create["additionalProperties"] is False
    docs = requests.get(prop_server.url + "/docs", timeout=10)
    assert docs.status_code == 200 and "openapi.json" in docs.text
    assert "http" not in docs.text.split("<script>")[1].replace(
        "/v1/openapi.json", ""
    )  # no external fetches

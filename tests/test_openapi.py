"""web/openapi.py: the OpenAPI document is valid, covers the app, and the live service keeps it.

schemathesis generates requests for every operation from the document and
checks each answer against it (no 5xx; documented statuses, content types,
headers and schemas), against the app served on 127.0.0.1, bounded in
examples and time.
"""

from __future__ import annotations

import re

import pytest
import schemathesis
from helpers import served_in_thread
from hypothesis import HealthCheck, settings
from openapi_spec_validator import validate
from schemathesis.config import SchemathesisConfig

from app import create_app
from web.errors import ERROR_CODES
from web.openapi import api_document

AUTOMATIC_METHODS = {"HEAD", "OPTIONS"}  # Flask answers these for every route itself


def openapi_path(rule: str) -> str:
    """A Flask rule (``/docs/assets/<path:filename>``) as an OpenAPI path (``{filename}``)."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def error_codes_in(node) -> set[str]:
    """Every error code an error schema of the document allows."""
    found = set()
    if isinstance(node, dict):
        code = node.get("properties", {}).get("error", {}).get("properties", {}).get("code", {})
        found.update(code.get("enum", []) if isinstance(code, dict) else [])
        for child in node.values():
            found |= error_codes_in(child)
    elif isinstance(node, list):
        for child in node:
            found |= error_codes_in(child)
    return found


def test_the_document_is_valid_openapi_3_1():
    document = api_document()
    assert document["openapi"].startswith("3.1")
    validate(document)


def test_the_document_is_served(client):
    answer = client.get("/openapi.json")
    assert answer.status_code == 200
    assert answer.json == api_document()


def test_every_route_is_documented_with_its_methods(app):
    paths = api_document()["paths"]
    routes = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        methods = routes.setdefault(openapi_path(rule.rule), set())
        methods |= {method.lower() for method in rule.methods - AUTOMATIC_METHODS}
    documented = {path: set(operations) for path, operations in paths.items()}
    assert documented == routes


def test_every_error_code_is_documented():
    operations = api_document()["paths"]
    in_operations = error_codes_in(operations)
    # 404 and 405 can answer any path; the rest are each some operation's answer.
    general = {"not_found", "method_not_allowed"}
    assert in_operations | general == set(ERROR_CODES)
    assert error_codes_in(api_document()["components"]["responses"]) == general


def test_an_error_answer_names_its_documented_status():
    predict_413 = api_document()["paths"]["/predict"]["post"]["responses"]["413"]
    (narrowing,) = [part for part in
                    predict_413["content"]["application/json"]["schema"]["allOf"]
                    if "properties" in part]
    codes = narrowing["properties"]["error"]["properties"]["code"]["enum"]
    assert sorted(codes) == ["image_too_large", "payload_too_large", "too_many_files"]
    assert all(ERROR_CODES[code][0] == 413 for code in codes)


# ---- The live service against the document ----------------------------------------

# The document cannot say "an image that holds a digit" or "a weights file that exists", so a
# request that fits it may still be refused for its content (400 not_an_image, 413
# image_too_large, 422 no_digit_found or invalid_weights): those count as accepting it.
CONFIG = SchemathesisConfig.from_dict({
    "generation": {"max-examples": 25},
    "checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", "400", "413", "422"]}},
})
schema = schemathesis.openapi.from_dict(api_document(), config=CONFIG)


@pytest.fixture(scope="module")
def live_server():
    """The app on 127.0.0.1; eager mode, so that schemathesis's reloads take milliseconds."""
    app = create_app({"DEVICE": "cpu", "BACKEND": "eager", "MAX_CONTENT_LENGTH": 256 * 1024})
    with served_in_thread(app) as url:
        yield url


@pytest.mark.slow  # hundreds of requests
@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_live_service_answers_as_documented(case, live_server):
    case.call_and_validate(base_url=live_server, timeout=30)

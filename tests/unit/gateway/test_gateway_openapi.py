"""The OpenAPI document and the method answers, without a database: every operation declares the
error statuses its shape allows with the one error body; a wrong method or OPTIONS names exactly
the methods served at the path."""
from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from libs import imageref
from libs.settings import CommonSettings, GatewaySettings, HttpSettings
from services.gateway.app import create_app

SETTINGS = GatewaySettings(common=CommonSettings(), http=HttpSettings())
ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(SETTINGS, pool=None, nc=None, relay=None)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c:
        yield c


@pytest.fixture
async def document(client: httpx.AsyncClient) -> dict[str, Any]:
    return (await client.get("/openapi.json")).json()


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(m.upper(), p, op) for p, ops in document["paths"].items() for m, op in ops.items()]


async def test_every_error_status_has_the_error_body(document: dict[str, Any]) -> None:
    for method, path, op in _operations(document):
        for code, answer in op["responses"].items():
            if code.startswith(("4", "5")):
                assert answer["content"]["application/json"]["schema"] == ERROR_REF, (method, path, code)
    assert "HTTPValidationError" not in document["components"]["schemas"]


@pytest.mark.parametrize(("method", "path", "codes"), [
    pytest.param("GET", "/v1/apps", {"401", "403", "503"}, id="list"),
    pytest.param("POST", "/v1/apps", {"400", "401", "403", "409", "413", "422", "503"}, id="create"),
    pytest.param("POST", "/v1/apps/bulk", {"400", "409", "413", "422"}, id="bulk"),
    pytest.param("PUT", "/v1/apps/{app_id}", {"400", "404", "413", "422", "503"}, id="replace"),
    pytest.param("PATCH", "/v1/apps/{app_id}", {"400", "404", "413", "422"}, id="scale"),
    pytest.param("GET", "/v1/instances/{instance_id}", {"404"}, id="instance"),
    pytest.param("POST", "/v1/apps/{app_id}/deployment/pause", {"404", "409"}, id="pause"),
    pytest.param("POST", "/v1/hosts/{host_id}/drain", {"404", "503"}, id="drain"),
    pytest.param("GET", "/v1/dead-letters", {"422", "503"}, id="dead-letters"),
])
async def test_operations_declare_their_errors(document: dict[str, Any], method: str, path: str,
                                               codes: set[str]) -> None:
    declared = set(document["paths"][path][method.lower()]["responses"])
    assert codes <= declared, codes - declared
    if "{" not in path:
        assert "404" not in declared
    if method == "GET":
        assert not {"400", "413"} & declared


async def test_ids_and_image_are_bounded_in_the_document(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    for path, name, length in [("/v1/apps/{app_id}", "app_id", 63), ("/v1/instances/{instance_id}", "instance_id", 76),
                               ("/v1/hosts/{host_id}/cordon", "host_id", 63)]:
        [param] = [p for op in document["paths"][path].values() for p in op["parameters"] if p["name"] == name][:1]
        assert param["schema"]["maxLength"] == length and param["schema"]["pattern"]
    assert schemas["AppSpec"]["properties"]["id"]["maxLength"] == 63
    assert schemas["AppSpec"]["properties"]["image"]["pattern"] == imageref.PATTERN
    assert schemas["KillRequest"]["properties"]["instances"]["items"]["maxLength"] == 76


@pytest.mark.parametrize(("path", "allow"), [
    pytest.param("/v1/apps", "GET, POST, OPTIONS", id="apps"),
    pytest.param("/v1/apps/web", "GET, PUT, PATCH, DELETE, OPTIONS", id="one-app"),
    pytest.param("/v1/hosts/h1/drain", "POST, DELETE, OPTIONS", id="drain"),
    pytest.param("/v1/instances/web-1", "GET, OPTIONS", id="instance"),
])
async def test_options_and_wrong_methods_name_every_method_of_the_path(client: httpx.AsyncClient, path: str,
                                                                       allow: str) -> None:
    r = await client.options(path)
    assert (r.status_code, r.headers["allow"], r.content) == (204, allow, b"")
    r = await client.request("TRACE", path)
    assert (r.status_code, r.headers["allow"]) == (405, allow)
    assert r.json() == {"error": "method not allowed"}


async def test_options_on_an_unknown_path_is_404(client: httpx.AsyncClient) -> None:
    r = await client.options("/v2/nothing")
    assert r.status_code == 404 and "allow" not in r.headers


SAMPLE_IDS = {"app_id": "web", "host_id": "h1", "instance_id": "web-0123456789ab", "name": "ci"}


def _documented_methods(document: dict[str, Any], path: str) -> set[str]:
    """Methods of every path template of the document that ``path`` matches (``/v1/apps/bulk`` is
    also ``/v1/apps/{app_id}``: an app may be called "bulk")."""
    out = set()
    for template, ops in document["paths"].items():
        if re.fullmatch(re.sub(r"\{[^}]+\}", "[^/]+", template), path):
            out |= {m.upper() for m in ops}
    return out


async def test_allow_agrees_with_the_document_on_every_path(client: httpx.AsyncClient,
                                                            document: dict[str, Any]) -> None:
    for template in document["paths"]:
        path = template.format(**SAMPLE_IDS)
        expected = _documented_methods(document, path) | {"OPTIONS"}
        r = await client.options(path)
        assert r.status_code == 204 and set(r.headers["allow"].split(", ")) == expected, (path, r.headers)
        r = await client.request("TRACE", path)
        assert r.status_code == 405 and set(r.headers["allow"].split(", ")) == expected, (path, r.headers)

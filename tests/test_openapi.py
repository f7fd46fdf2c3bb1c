"""The OpenAPI document (collab/api/openapi.yaml) against the running server.

These checks keep the document true:

* it is a valid OpenAPI 3.1 document;
* it names exactly the (method, path) pairs the router serves, and each
  operation lists the errors every route of its kind can give (401, 403
  csrf_failed, 400/413/415 for JSON bodies, 500);
* its request schemas carry the same fields and limits as the msgspec structs
  the routes parse bodies and queries into;
* every response the real app gives in a scenario that calls every documented
  operation has a status the document lists for that operation, and a body
  that its schema accepts. For that check every object schema with
  ``properties`` is closed (``additionalProperties: false``), so a member the
  server sends but the document does not mention fails the test, while the
  published document stays open for additions. An error's ``code`` must be
  named in the description of the documented response.
"""

from __future__ import annotations

import asyncio
import copy
import io
import json
import re
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec
import openapi_spec_validator
import pytest
from aiohttp import ClientWebSocketResponse, web
from aiohttp.test_utils import TestClient, TestServer
from multidict import CIMultiDictProxy
from openapi_schema_validator import OAS31Validator, oas31_format_checker
from PIL import Image
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from collab.accounts.passwords import Passwords
from collab.api.body import StrictBody
from collab.api.openapi import load_spec
from collab.app import create_app
from collab.appkeys import ACCOUNTS
from collab.config import Config
from collab.search.service import SearchQuery
from collab.webhooks.http import WebhookCreate, WebhookPost

HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
SPEC_URI = "urn:collab:openapi"
JSON = "application/json"

ADMIN_PASSWORD = "root-password-1"
MEMBER_PASSWORD = "mia-password-1"
GUEST_PASSWORD = "gus-password-1"


@pytest.fixture
def app(tmp_path: Path, fast_passwords: Passwords) -> web.Application:
    # Small upload limits, so the scenario can reach them with small files.
    config = Config(data_dir=tmp_path, upload_max_mb=1, user_quota_mb=1, calendar_max_kb=1)
    return create_app(config, passwords=fast_passwords, announce_first_run=False)


@pytest.fixture
def spec() -> dict[str, Any]:
    return copy.deepcopy(load_spec())


# -- the document and the router ----------------------------------------------


def test_document_is_valid_openapi_31(spec: dict[str, Any]) -> None:
    assert spec["openapi"].startswith("3.1")
    openapi_spec_validator.validate(spec)


def documented_operations(spec: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in spec["paths"].items()
        for method in HTTP_METHODS
        if method in item
    }


def routed_operations(app: web.Application) -> set[tuple[str, str]]:
    """(METHOD, path template) for every route but the implicit HEADs, static files and /."""
    found = set()
    for route in app.router.routes():
        resource = route.resource
        if route.method == "HEAD" or resource is None:
            continue
        if isinstance(resource, web.StaticResource) or resource.canonical == "/":
            continue
        found.add((route.method, resource.canonical))
    return found


def test_document_and_router_have_the_same_routes(
    app: web.Application, spec: dict[str, Any]
) -> None:
    routed = routed_operations(app)
    documented = documented_operations(spec)
    assert routed, "the router has no routes; is create_app still adding them?"

    def listing(pairs: set[tuple[str, str]]) -> str:
        return "".join(f"\n    {method} {path}" for method, path in sorted(pairs)) or " none"

    assert routed == documented, (
        "the OpenAPI document and the router disagree."
        f"\n  served but not documented:{listing(routed - documented)}"
        f"\n  documented but not served:{listing(documented - routed)}"
    )


def test_every_operation_is_fully_described(spec: dict[str, Any]) -> None:
    problems = []
    operation_ids: list[str] = []
    for method, path in sorted(documented_operations(spec)):
        operation = spec["paths"][path][method.lower()]
        where = f"{method} {path}"
        operation_ids.append(operation.get("operationId", ""))
        for key in ("operationId", "summary", "responses"):
            if not operation.get(key):
                problems.append(f"{where}: no {key}")
        statuses = set(operation.get("responses", {}))
        if "500" not in statuses:
            problems.append(f"{where}: does not list 500 (any route can give it)")
        if not any(status.startswith(("1", "2")) for status in statuses):
            problems.append(f"{where}: lists no success response")
        if path.startswith("/api/") and "401" not in statuses:
            problems.append(f"{where}: does not list 401 (a bad bearer token gives it)")
        if "requestBody" in operation:
            if method not in UNSAFE_METHODS:
                problems.append(f"{where}: a body on a safe method")
            # Other bodies (an upload, a calendar file) list what their route gives.
            if JSON in operation["requestBody"]["content"]:
                for status in ("400", "413", "415"):
                    if status not in statuses:
                        problems.append(f"{where}: reads a JSON body but does not list {status}")
        public = operation.get("security") == []
        if method in UNSAFE_METHODS and path.startswith("/api/") and "403" not in statuses:
            problems.append(f"{where}: unsafe but does not list 403 (csrf_failed)")
        if not public and path.startswith("/api/") and method in UNSAFE_METHODS:
            schemes = [set(requirement) for requirement in operation.get("security", [])]
            if {"sessionCookie", "csrfToken"} not in schemes:
                problems.append(f"{where}: unsafe, so the cookie needs the csrfToken scheme")
    duplicates = sorted({name for name in operation_ids if operation_ids.count(name) > 1})
    if duplicates:
        problems.append(f"operationIds used twice: {duplicates}")
    assert not problems, "\n".join(problems)


# -- request schemas against the msgspec structs --------------------------------


LIMITS = ("minLength", "maxLength", "minimum", "maximum", "minItems", "maxItems")

# Structs read from the query string rather than the body: (path, method) of the
# operation whose query parameters they describe.
QUERY_STRUCTS = {
    "UserListQuery": ("/api/v1/users", "get"),
    "HistoryQuery": ("/api/v1/rooms/{id}/messages", "get"),
    "ChannelQuery": ("/api/v1/channels", "get"),
    "SearchQuery": ("/api/v1/search", "get"),
    "LookupQuery": ("/api/v1/presence", "get"),
    "CallLogQuery": ("/api/v1/rooms/{id}/calls", "get"),
}


def _facts(schema: dict[str, Any]) -> dict[str, Any]:
    """The parts of a property schema both sides must agree on."""
    variants = schema.get("anyOf", [schema])
    types: set[str] = set()
    limits: dict[str, Any] = {}
    for variant in variants:
        kind = variant.get("type")
        types.update(kind if isinstance(kind, list) else [kind])
        for key in LIMITS:
            if key in variant:
                limits[key] = variant[key]
        if "items" in variant:
            limits["items"] = _facts(variant["items"])
    for key in LIMITS:
        if key in schema:
            limits[key] = schema[key]
    if schema.get("default") is not None:
        limits["default"] = schema["default"]
    return {"types": types, **limits}


def _compare_object(name: str, expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    problems = []
    if set(expected["properties"]) != set(actual.get("properties", {})):
        problems.append(
            f"{name}: fields {sorted(actual.get('properties', {}))}, "
            f"struct has {sorted(expected['properties'])}"
        )
    if set(expected.get("required", [])) != set(actual.get("required", [])):
        problems.append(
            f"{name}: required {sorted(actual.get('required', []))}, "
            f"struct requires {sorted(expected.get('required', []))}"
        )
    for field, prop in expected["properties"].items():
        if field in actual.get("properties", {}):
            want, got = _facts(prop), _facts(actual["properties"][field])
            if want != got:
                problems.append(f"{name}.{field}: document says {got}, struct says {want}")
    return problems


def _request_structs() -> list[type[msgspec.Struct]]:
    """Every struct a route parses a request into: accounts, chat, presence, search and
    webhooks."""
    return [
        *StrictBody.__subclasses__(),  # accounts, chat and presence bodies and queries
        SearchQuery,
        WebhookCreate,
        WebhookPost,
    ]


def test_request_schemas_match_the_structs(spec: dict[str, Any]) -> None:
    structs = [kind for kind in _request_structs() if kind.__name__ not in QUERY_STRUCTS]
    _, components = msgspec.json.schema_components(structs)
    schemas = spec["components"]["schemas"]
    problems = []
    for kind in structs:
        name = kind.__name__
        if name not in schemas:
            problems.append(f"{name}: no schema of that name in components/schemas")
            continue
        if schemas[name].get("additionalProperties") is not False:
            problems.append(f"{name}: unknown fields are refused, so additionalProperties: false")
        problems += _compare_object(name, components[name], schemas[name])
    referenced = set()
    for method, path in documented_operations(spec):
        body = spec["paths"][path][method.lower()].get("requestBody")
        if body and JSON in body["content"]:  # not the multipart file upload
            referenced.add(body["content"][JSON]["schema"]["$ref"].rsplit("/", 1)[1])
    unused = {kind.__name__ for kind in structs} - referenced
    if unused:
        problems.append(f"request schemas no operation uses: {sorted(unused)}")
    assert not problems, "\n".join(problems)


def test_every_query_struct_is_checked() -> None:
    structs = {kind.__name__ for kind in _request_structs()}
    assert {name for name in structs if name.endswith("Query")} == set(QUERY_STRUCTS)


@pytest.mark.parametrize("name", sorted(QUERY_STRUCTS))
def test_query_parameters_match_their_struct(spec: dict[str, Any], name: str) -> None:
    kind = next(k for k in _request_structs() if k.__name__ == name)
    _, components = msgspec.json.schema_components([kind])
    expected = copy.deepcopy(components[name])
    for prop in expected["properties"].values():
        # A query parameter left out is the struct's None; it cannot be null itself.
        if "anyOf" in prop:
            prop["anyOf"] = [v for v in prop["anyOf"] if v.get("type") != "null"]
    path, method = QUERY_STRUCTS[name]
    operation = spec["paths"][path][method]
    parameters = [p for p in operation["parameters"] if p.get("in") == "query"]
    actual = {
        "properties": {p["name"]: p["schema"] for p in parameters},
        "required": [p["name"] for p in parameters if p.get("required")],
    }
    problems = _compare_object(f"{operation['operationId']} query", expected, actual)
    assert not problems, "\n".join(problems)


# -- responses of the running app against the document -------------------------


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _close_objects(node: Any) -> None:
    """additionalProperties: false on every object schema that lists properties."""
    if isinstance(node, dict):
        props = node.get("properties")
        if (
            isinstance(props, dict)
            and "additionalProperties" not in node
            and "unevaluatedProperties" not in node
        ):
            node["additionalProperties"] = False
        for value in node.values():
            _close_objects(value)
    elif isinstance(node, list):
        for value in node:
            _close_objects(value)


class Contract:
    """Looks up what the document promises for a response and checks it."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        strict = copy.deepcopy(spec)
        _close_objects(strict)
        self.registry: Registry = Registry().with_resource(
            SPEC_URI, DRAFT202012.create_resource(strict)
        )
        self.seen: set[tuple[str, str, str]] = set()
        # Literal paths before templated ones, so /a/b never matches /a/{x}.
        self.templates = sorted(
            ((path, self._pattern(path)) for path in spec["paths"]),
            key=lambda pair: pair[0].count("{"),
        )

    @staticmethod
    def _pattern(template: str) -> re.Pattern[str]:
        parts = re.split(r"(\{[^}]+\})", template)
        regex = "".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts)
        return re.compile(f"^{regex}$")

    def template_for(self, path: str) -> str:
        bare = path.split("?", 1)[0]
        for template, pattern in self.templates:
            if pattern.match(bare):
                return template
        raise AssertionError(f"no path in the document matches {bare}")

    def _get(self, pointer: str) -> Any:
        node: Any = self.spec
        for token in pointer.lstrip("/").split("/"):
            node = node[token.replace("~1", "/").replace("~0", "~")]
        return node

    def response(self, method: str, template: str, status: str) -> tuple[str, dict[str, Any], str]:
        """(JSON pointer, response object, description) with $refs followed."""
        pointer = f"/paths/{_escape(template)}/{method.lower()}/responses/{status}"
        node = self._get(pointer)
        description = node.get("description")
        while "$ref" in node:
            pointer = node["$ref"].removeprefix("#")
            node = self._get(pointer)
            description = description or node.get("description")
        return pointer, node, description or ""

    def validate(self, pointer: str, instance: Any, where: str) -> None:
        validator = OAS31Validator(
            {"$ref": f"{SPEC_URI}#{pointer}"},
            registry=self.registry,
            format_checker=oas31_format_checker,
        )
        errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
        if errors:
            details = "".join(
                f"\n  at {'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
                for e in errors
            )
            raise AssertionError(
                f"{where}: the body does not match the document{details}\n"
                f"  body: {json.dumps(instance)[:500]}"
            )

    def check(
        self,
        method: str,
        path: str,
        status: int,
        headers: CIMultiDictProxy[str] | None,
        raw: bytes,
    ) -> Any:
        """Check one response; returns the decoded body (JSON, text, bytes or None)."""
        template = self.template_for(path)
        where = f"{method} {path} -> {status}"
        # HEAD is answered as GET without the body (aiohttp adds it to every GET route).
        method = "GET" if method.upper() == "HEAD" else method
        operation = self.spec["paths"][template].get(method.lower())
        assert operation is not None, f"{method} {template} is not in the document"
        documented = sorted(operation["responses"])
        assert str(status) in operation["responses"], (
            f"{where}: {operation['operationId']} does not document status {status} "
            f"(it documents {documented}); body: {raw[:300]!r}"
        )
        pointer, response, description = self.response(method, template, str(status))
        self.seen.add((method.upper(), template, str(status)))
        if headers is not None:
            for name in response.get("headers", {}):
                assert name in headers, f"{where}: documented header {name} is missing"
        content = response.get("content")
        if not content:
            assert not raw, f"{where}: documented without a body, but one came: {raw[:200]!r}"
            return None
        assert headers is not None
        mimetype = headers.get("Content-Type", "").split(";", 1)[0].strip()
        assert mimetype in content, f"{where}: Content-Type {mimetype}, documented {list(content)}"
        if mimetype != JSON:
            binary = content[mimetype].get("schema", {}).get("format") == "binary"
            return raw if binary else raw.decode()
        body = json.loads(raw)
        self.validate(f"{pointer}/content/{_escape(JSON)}/schema", body, where)
        if status >= 400:
            code = body["error"]["code"]
            assert f"`{code}`" in description, (
                f"{where}: error code {code!r} is not named in the documented response "
                f"({description!r})"
            )
        return body


_NO_JSON = object()


class Actor:
    """One browser or script: its own cookie jar, CSRF token and bearer token."""

    def __init__(self, client: TestClient, contract: Contract) -> None:
        self.client = client
        self.contract = contract
        self.csrf: str | None = None
        self.bearer: str | None = None
        self.headers: CIMultiDictProxy[str] | None = None  # of the last response

    async def call(
        self,
        method: str,
        path: str,
        expect: int,
        *,
        json: Any = _NO_JSON,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
        csrf: bool = True,
        code: str | None = None,
    ) -> Any:
        sent = dict(headers or {})
        if self.bearer:
            sent["Authorization"] = f"Bearer {self.bearer}"
        if csrf and self.csrf and method in UNSAFE_METHODS:
            sent.setdefault("X-CSRF-Token", self.csrf)
        extra: dict[str, Any] = {}
        if json is not _NO_JSON:
            extra["json"] = json
        if data is not None:
            extra["data"] = data
        async with self.client.request(method, path, headers=sent, **extra) as response:
            raw = await response.read()
            status, received = response.status, response.headers
        self.headers = received
        assert status == expect, f"{method} {path}: expected {expect}, got {status}: {raw[:300]!r}"
        body = self.contract.check(method, path, status, received, raw)
        if code is not None:
            assert body["error"]["code"] == code, f"{method} {path}: {body}"
        if status == 429:
            assert received["Retry-After"] == str(body["error"]["retry_after"])
        return body

    async def sign_in(self, username: str, password: str) -> dict[str, Any]:
        body = await self.call(
            "POST", "/api/v1/login", 200, json={"username": username, "password": password}
        )
        self.csrf = body["csrf_token"]
        return body


ClientFactory = Callable[..., Awaitable[TestClient]]
ServerFactory = Callable[..., Awaitable[TestServer]]


async def _frames_until(
    socket: ClientWebSocketResponse, last: Callable[[dict[str, Any]], bool]
) -> list[dict[str, Any]]:
    """Frames from the socket up to and including the first one ``last`` accepts."""
    frames = [await socket.receive_json(timeout=5)]
    while not last(frames[-1]):
        frames.append(await socket.receive_json(timeout=5))
    return frames


async def _chat_scenario(
    app: web.Application,
    new_actor: Callable[[], Awaitable[Actor]],
    admin: Actor,
    mia: Actor,
    gus: Actor,
) -> int:
    """Every chat operation, its happy path and its main refusals; returns a channel's id.

    On entry root (admin), mia (member) and gus (guest) are signed in.
    """
    accounts = app[ACCOUNTS]
    crowd = [f"p{i}" for i in range(7)]
    for name in ("noa", "old", *crowd):
        await accounts.create_user(username=name, password=MEMBER_PASSWORD, role="member")
    await admin.call("PATCH", "/api/v1/users/old", 200, json={"active": False})
    noa = await new_actor()
    await noa.sign_in("noa", MEMBER_PASSWORD)

    # Creating rooms.
    rooms = "/api/v1/rooms"
    made = await mia.call(
        "POST",
        rooms,
        201,
        json={"kind": "channel", "name": "General", "topic": "All things", "members": ["ROOT"]},
    )
    general = made["room"]
    assert (general["kind"], general["member_count"], general["members"]) == ("channel", 2, None)
    channel = {"kind": "channel", "name": "x"}
    await mia.call("POST", rooms, 403, json=channel, csrf=False, code="csrf_failed")
    await mia.call("POST", rooms, 400, json={**channel, "colour": "red"}, code="unknown_field")
    await mia.call("POST", rooms, 400, json={**channel, "kind": "lounge"}, code="invalid_field")
    await mia.call("POST", rooms, 400, json={"kind": "channel"}, code="missing_field")
    await mia.call("POST", rooms, 400, json={**channel, "name": "x" * 81}, code="too_long")
    taken = {**channel, "name": "general"}
    await mia.call("POST", rooms, 409, json=taken, code="name_taken")
    with_guest = {**channel, "members": ["gus"]}
    await mia.call("POST", rooms, 400, json=with_guest, code="guest_not_allowed")
    strangers = {"kind": "group", "members": ["noa", "nobody"]}
    body = await mia.call("POST", rooms, 404, json=strangers, code="user_not_found")
    assert body["error"]["users"] == ["nobody"]
    inactive = {"kind": "dm", "members": ["old"]}
    await mia.call("POST", rooms, 400, json=inactive, code="user_inactive")
    too_many = {"kind": "group", "members": ["noa", "root", *crowd]}
    await mia.call("POST", rooms, 400, json=too_many, code="too_many_members")
    await gus.call("POST", rooms, 403, json={"kind": "dm", "members": ["mia"]}, code="forbidden")
    dm = (await mia.call("POST", rooms, 201, json={"kind": "dm", "members": ["noa"]}))["room"]
    assert [u["username"] for u in dm["members"]] == ["mia", "noa"]
    again = await mia.call("POST", rooms, 200, json={"kind": "dm", "members": ["Noa"]})
    assert again["room"]["id"] == dm["id"]
    private = {"kind": "private", "name": "Backstage", "members": ["gus"]}
    backstage = (await mia.call("POST", rooms, 201, json=private))["room"]
    retired = (await mia.call("POST", rooms, 201, json={**channel, "name": "retired"}))["room"]
    await mia.call("PATCH", f"{rooms}/{retired['id']}", 200, json={"archived": True})

    # Finding rooms.
    listed = await mia.call("GET", rooms, 200)
    assert [s["room"]["id"] for s in listed["rooms"]] == sorted(
        [general["id"], dm["id"], backstage["id"], retired["id"]]
    )
    found = await noa.call("GET", "/api/v1/channels?q=GEN&limit=10", 200)
    assert [(c["id"], c["joined"]) for c in found["channels"]] == [(general["id"], False)]
    await noa.call("GET", "/api/v1/channels?limit=0", 400, code="invalid_field")
    await noa.call("GET", "/api/v1/channels?sort=name", 400, code="unknown_field")
    await gus.call("GET", "/api/v1/channels", 403, code="forbidden")
    room = f"{rooms}/{general['id']}"
    secret = f"{rooms}/{backstage['id']}"
    missing = f"{rooms}/999999"
    assert (await mia.call("GET", room, 200))["room"]["topic"] == "All things"
    await noa.call("GET", room, 403, code="not_a_member")
    await noa.call("GET", secret, 404, code="room_not_found")
    await noa.call("GET", f"{rooms}/abc", 400, code="invalid_field")

    # Joining, members.
    await gus.call("POST", f"{room}/join", 403, code="forbidden")
    await noa.call("POST", f"{secret}/join", 404, code="room_not_found")
    await noa.call("POST", f"{rooms}/{retired['id']}/join", 403, code="archived")
    await noa.call("POST", f"{rooms}/x/join", 400, code="invalid_field")
    await noa.call("GET", f"{room}/members", 403, code="not_a_member")
    assert (await noa.call("POST", f"{room}/join", 200))["room"]["member_count"] == 3
    members = await noa.call("GET", f"{room}/members", 200)
    roles = [(m["username"], m["role"]) for m in members["members"]]
    assert roles == [("mia", "owner"), ("noa", "member"), ("root", "member")]
    await noa.call("GET", f"{missing}/members", 404, code="room_not_found")
    await noa.call("GET", f"{rooms}/x/members", 400, code="invalid_field")
    added = await mia.call("POST", f"{secret}/members", 200, json={"username": "Noa"})
    assert added["room"]["member_count"] == 3
    noa_again = {"username": "noa"}
    await mia.call("POST", f"{secret}/members", 409, json=noa_again, code="already_member")
    nobody = {"username": "nobody"}
    await mia.call("POST", f"{secret}/members", 404, json=nobody, code="user_not_found")
    inactive_user = {"username": "old"}
    await mia.call("POST", f"{secret}/members", 400, json=inactive_user, code="user_inactive")
    await mia.call("POST", f"{secret}/members", 400, json={}, code="missing_field")
    guest = {"username": "gus"}
    await mia.call("POST", f"{room}/members", 400, json=guest, code="guest_not_allowed")
    dm_path = f"{rooms}/{dm['id']}"
    p0 = {"username": "p0"}
    await mia.call("POST", f"{dm_path}/members", 400, json=p0, code="fixed_membership")
    await gus.call("POST", f"{room}/members", 403, json=p0, code="not_a_member")
    await noa.call("POST", f"{missing}/members", 404, json=p0, code="room_not_found")
    await mia.call("POST", f"{rooms}/{retired['id']}/members", 403, json=p0, code="archived")
    await noa.call("DELETE", f"{secret}/members/gus", 403, code="forbidden")
    await gus.call("DELETE", f"{room}/members/noa", 403, code="not_a_member")
    await mia.call("DELETE", f"{secret}/members/nobody", 404, code="member_not_found")
    await mia.call("DELETE", f"{missing}/members/noa", 404, code="room_not_found")
    await mia.call("DELETE", f"{dm_path}/members/noa", 400, code="fixed_membership")
    await mia.call("DELETE", f"{rooms}/x/members/noa", 400, code="invalid_field")
    await mia.call("DELETE", f"{secret}/members/NOA", 204)

    # Changing a room.
    topic = await noa.call("PATCH", room, 200, json={"topic": "Plans for Q3"})
    assert topic["room"]["topic"] == "Plans for Q3"
    await noa.call("PATCH", room, 403, json={"name": "Mine"}, code="forbidden")
    await gus.call("PATCH", room, 403, json={"topic": "x"}, code="not_a_member")
    await noa.call("PATCH", secret, 404, json={"topic": "x"}, code="room_not_found")
    # Only public channels' names are unique: a private room's cannot be probed.
    await mia.call("PATCH", room, 409, json={"name": "RETIRED"}, code="name_taken")
    await mia.call("PATCH", room, 400, json={"name": "  "}, code="missing_field")
    await mia.call("PATCH", room, 400, json={"topic": "t" * 251}, code="too_long")
    await mia.call("PATCH", room, 400, json={"title": "x"}, code="unknown_field")
    await mia.call("PATCH", dm_path, 400, json={"name": "us"}, code="invalid_field")
    await mia.call("PATCH", f"{rooms}/{retired['id']}", 403, json={"topic": "x"}, code="archived")
    renamed = await mia.call("PATCH", room, 200, json={"name": "general"})
    assert renamed["room"]["name"] == "general"

    # Messages.
    messages = f"{room}/messages"
    hello = {"body": "Morning @root @all", "client_msg_id": "mia-1"}
    first = (await mia.call("POST", messages, 201, json=hello))["message"]
    assert (first["mentions"], first["mentions_room"]) == (["root"], True)
    assert (first["kind"], first["change"], first["client_msg_id"]) == ("user", 0, "mia-1")
    replay = await mia.call("POST", messages, 200, json=hello)
    assert replay["message"]["id"] == first["id"]
    await mia.call("POST", f"{secret}/messages", 409, json=hello, code="client_msg_id_reused")
    await mia.call("POST", messages, 400, json={"body": "  "}, code="empty_message")
    await mia.call("POST", messages, 400, json={"body": "x" * 10_001}, code="too_long")
    await mia.call("POST", messages, 400, json={"text": "x"}, code="unknown_field")
    bad_id = {"body": "x", "client_msg_id": "no spaces"}
    await mia.call("POST", messages, 400, json=bad_id, code="invalid_field")
    bad_reply = {"body": "x", "reply_to": 999999}
    await mia.call("POST", messages, 400, json=bad_reply, code="invalid_field")
    bad_files = {"body": "x", "files": [999999]}
    await mia.call("POST", messages, 400, json=bad_files, code="invalid_field")
    await mia.call("POST", f"{missing}/messages", 404, json={"body": "x"}, code="room_not_found")
    await gus.call("POST", messages, 403, json={"body": "x"}, code="not_a_member")
    reply = {"body": "On it", "reply_to": first["id"]}
    answered = (await admin.call("POST", messages, 201, json=reply))["message"]
    assert answered["seq"] == first["seq"] + 1
    assert answered["reply_to"]["id"] == first["id"]
    hidden = (await mia.call("POST", f"{secret}/messages", 201, json={"body": "Quiet"}))["message"]
    note = (await noa.call("POST", messages, 201, json={"body": "Noted"}))["message"]
    extra = (await noa.call("POST", messages, 201, json={"body": "Oops"}))["message"]

    # History and the read marker.
    page = await noa.call("GET", f"{messages}?limit=1", 200)
    assert page["more"] is True
    assert [m["id"] for m in page["messages"]] == [extra["id"]]
    forward = await noa.call("GET", f"{messages}?after={first['seq'] - 1}&limit=200", 200)
    assert [m["seq"] for m in forward["messages"]] == list(range(first["seq"], extra["seq"] + 1))
    assert forward["more"] is False
    await noa.call("GET", f"{messages}?after=5&before=3", 400, code="invalid_field")
    await noa.call("GET", f"{messages}?page=2", 400, code="unknown_field")
    await gus.call("GET", messages, 403, code="not_a_member")
    await noa.call("GET", f"{missing}/messages", 404, code="room_not_found")
    read = f"{room}/read"
    assert (await noa.call("POST", read, 200, json={"seq": 10**6}))["seq"] == extra["seq"]
    assert (await noa.call("POST", read, 200, json={"seq": 1}))["seq"] == extra["seq"]
    await noa.call("POST", read, 400, json={"seq": -1}, code="invalid_field")
    await noa.call("POST", read, 400, json={}, code="missing_field")
    await gus.call("POST", read, 403, json={"seq": 1}, code="not_a_member")
    await noa.call("POST", f"{missing}/read", 404, json={"seq": 1}, code="room_not_found")
    summaries = (await noa.call("GET", rooms, 200))["rooms"]
    [summary] = [s for s in summaries if s["room"]["id"] == general["id"]]
    assert (summary["unread"], summary["last_read_seq"]) == (0, extra["seq"])
    assert summary["last_message"]["id"] == extra["id"]

    # Editing.
    one = f"/api/v1/messages/{first['id']}"
    quiet = f"/api/v1/messages/{hidden['id']}"
    edited = (await mia.call("PATCH", one, 200, json={"body": "Morning @noa"}))["message"]
    assert edited["edited_at"] is not None and edited["mentions"] == ["noa"]
    assert edited["change"] > 0
    await noa.call("PATCH", one, 403, json={"body": "mine now"}, code="forbidden")
    # A message in a room the caller is not in is not told apart from a missing one.
    await gus.call("PATCH", one, 404, json={"body": "x"}, code="message_not_found")
    await noa.call("PATCH", quiet, 404, json={"body": "x"}, code="message_not_found")
    await mia.call("PATCH", one, 400, json={"body": " "}, code="empty_message")
    await mia.call("PATCH", one, 400, json={"body": "x" * 10_001}, code="too_long")
    await mia.call("PATCH", one, 400, json={}, code="missing_field")
    await mia.call("PATCH", "/api/v1/messages/x", 400, json={"body": "x"}, code="invalid_field")
    nowhere = "/api/v1/messages/999999"
    await mia.call("PATCH", nowhere, 404, json={"body": "x"}, code="message_not_found")

    # Reactions.
    thumbs = f"{one}/reactions/%F0%9F%91%8D"
    reacted = (await noa.call("PUT", thumbs, 200))["message"]
    assert reacted["reactions"] == [{"emoji": "\N{THUMBS UP SIGN}", "count": 1, "users": ["noa"]}]
    assert reacted["change"] > edited["change"]
    for verb in ("PUT", "DELETE"):
        await noa.call(verb, f"{one}/reactions/a%20b", 400, code="invalid_field")
        await noa.call(verb, f"{nowhere}/reactions/x", 404, code="message_not_found")
        await noa.call(verb, f"{quiet}/reactions/x", 404, code="message_not_found")
        await gus.call(verb, f"{one}/reactions/x", 404, code="message_not_found")
    for i in range(49):
        await noa.call("PUT", f"{one}/reactions/e{i}", 200)
    await noa.call("PUT", f"{one}/reactions/e49", 400, code="too_many_reactions")
    unreacted = (await noa.call("DELETE", thumbs, 200))["message"]
    assert "\N{THUMBS UP SIGN}" not in {r["emoji"] for r in unreacted["reactions"]}

    # Deleting.
    await noa.call("DELETE", one, 403, code="forbidden")
    await gus.call("DELETE", one, 404, code="message_not_found")
    await noa.call("DELETE", quiet, 404, code="message_not_found")
    await mia.call("DELETE", nowhere, 404, code="message_not_found")
    await mia.call("DELETE", "/api/v1/messages/x", 400, code="invalid_field")
    deleted = (await mia.call("DELETE", one, 200))["message"]
    assert (deleted["deleted"], deleted["body"], deleted["reactions"]) == (True, "", [])
    await mia.call("PATCH", one, 409, json={"body": "back"}, code="message_deleted")
    await noa.call("PUT", thumbs, 409, code="message_deleted")
    await noa.call("DELETE", thumbs, 409, code="message_deleted")
    moderated = await admin.call("DELETE", f"/api/v1/messages/{extra['id']}", 200)
    assert moderated["message"]["deleted"] is True

    # Archiving.
    await noa.call("PATCH", room, 403, json={"archived": True}, code="forbidden")
    archived = await mia.call("PATCH", room, 200, json={"archived": True})
    assert archived["room"]["archived"] is True
    await noa.call("POST", messages, 403, json={"body": "x"}, code="archived")
    mine = f"/api/v1/messages/{note['id']}"
    await noa.call("PATCH", mine, 403, json={"body": "x"}, code="archived")
    await noa.call("DELETE", mine, 403, code="archived")
    await noa.call("PUT", f"{mine}/reactions/x", 403, code="archived")
    await noa.call("DELETE", f"{mine}/reactions/x", 403, code="archived")
    await mia.call("POST", f"{room}/members", 403, json=p0, code="archived")
    await mia.call("DELETE", f"{room}/members/noa", 403, code="archived")
    await noa.call("POST", f"{room}/leave", 403, code="archived")
    await mia.call("PATCH", room, 200, json={"archived": False})

    # Leaving.
    await mia.call("POST", f"{dm_path}/leave", 400, code="fixed_membership")
    await noa.call("POST", f"{secret}/leave", 404, code="room_not_found")
    await noa.call("POST", f"{rooms}/x/leave", 400, code="invalid_field")
    await noa.call("POST", f"{room}/leave", 204)
    await noa.call("POST", f"{room}/leave", 403, code="not_a_member")
    left = (await noa.call("GET", rooms, 200))["rooms"]
    assert [s["room"]["id"] for s in left] == [dm["id"]]
    return int(general["id"])


BOUNDARY = "collab-openapi-boundary"
FORM = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


def _form(data: bytes, filename: str, field: str = "file") -> bytes:
    """A multipart/form-data body with one part, as a browser sends a file."""
    head = (
        f"--{BOUNDARY}\r\n"
        f'Content-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    return head + data + f"\r\n--{BOUNDARY}--\r\n".encode()


def _png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), "teal").save(out, "PNG")
    return out.getvalue()


FILE_HEADERS = {
    "Content-Security-Policy": "sandbox",
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "private, no-cache",
}


def _served_safely(actor: Actor, content_type: str, disposition: str) -> None:
    headers = actor.headers
    assert headers is not None
    assert headers["Content-Type"] == content_type
    assert headers["Content-Disposition"].startswith(f"{disposition}; filename=")
    for name, value in FILE_HEADERS.items():
        assert headers[name] == value, (name, headers.get(name))


async def _files_scenario(mia: Actor, ivy: Actor, gus: Actor) -> None:
    """Uploading, downloading and thumbnails; the app allows 1 MB files and 1 MB per
    user. Ivy is in none of mia's rooms; gus is a guest."""
    rooms = "/api/v1/rooms"
    shared = {"kind": "private", "name": "Shared files", "members": ["gus"]}
    team = (await mia.call("POST", rooms, 201, json=shared))["room"]
    lobby = (await mia.call("POST", rooms, 201, json={"kind": "channel", "name": "Lobby"}))["room"]
    upload = f"{rooms}/{team['id']}/files"

    # Uploading: the type comes from the bytes, images get a size and a thumbnail.
    picture = _png(640, 480)
    photo = await mia.call("POST", upload, 201, data=_form(picture, "photo.png"), headers=FORM)
    photo = photo["file"]
    assert (photo["content_type"], photo["width"], photo["height"]) == ("image/png", 640, 480)
    assert photo["thumbnail_url"] == f"/api/v1/files/{photo['id']}/thumbnail"
    text = "Plan: ship it ✓\n".encode()
    notes = await mia.call("POST", upload, 201, data=_form(text, "notes.txt"), headers=FORM)
    notes = notes["file"]
    assert (notes["content_type"], notes["thumbnail_url"]) == ("text/plain", None)
    markup = b"<!doctype html><script>alert(1)</script>"
    page = await mia.call("POST", upload, 201, data=_form(markup, "cat.png"), headers=FORM)
    page = page["file"]
    assert page["content_type"] == "application/octet-stream"

    # Refusals.
    one = _form(b"x", "x.bin")
    await mia.call("POST", upload, 403, data=one, headers=FORM, csrf=False, code="csrf_failed")
    await mia.call("POST", f"{rooms}/x/files", 400, data=one, headers=FORM, code="invalid_field")
    other = _form(b"x", "x.bin", field="attachment")
    await mia.call("POST", upload, 400, data=other, headers=FORM, code="missing_file")
    long_header = f"--{BOUNDARY}\r\nX-Long: {'a' * 20_000}\r\n\r\nx\r\n--{BOUNDARY}--\r\n"
    await mia.call(
        "POST", upload, 400, data=long_header.encode(), headers=FORM, code="bad_multipart"
    )
    await mia.call("POST", upload, 415, json={"file": "x"}, code="unsupported_media_type")
    await ivy.call("POST", upload, 404, data=one, headers=FORM, code="room_not_found")
    in_lobby = f"{rooms}/{lobby['id']}/files"
    await ivy.call("POST", in_lobby, 403, data=one, headers=FORM, code="not_a_member")
    await mia.call("PATCH", f"{rooms}/{lobby['id']}", 200, json={"archived": True})
    await mia.call("POST", in_lobby, 403, data=one, headers=FORM, code="archived")
    big = _form(b"\0" * (1024 * 1024 + 100 * 1024), "big.bin")
    body = await mia.call("POST", upload, 413, data=big, headers=FORM, code="file_too_large")
    assert body["error"]["limit_bytes"] == 1024 * 1024
    full = _form(b"\0" * (1024 * 1024), "full.bin")  # fits the limit, not what is left
    body = await mia.call("POST", upload, 413, data=full, headers=FORM, code="quota_exceeded")
    assert body["error"]["quota_bytes"] == 1024 * 1024

    # Until it is sent, an upload is only its uploader's.
    assert await mia.call("GET", photo["url"], 200) == picture
    await gus.call("GET", photo["url"], 404, code="file_not_found")
    await gus.call("GET", photo["thumbnail_url"], 404, code="file_not_found")
    files = [photo["id"], notes["id"], page["id"]]
    sent = await mia.call(
        "POST", f"{rooms}/{team['id']}/messages", 201, json={"body": "The files", "files": files}
    )
    assert sent["message"]["files"] == [photo, notes, page]

    # Downloading, served so that nothing runs.
    assert await gus.call("GET", photo["url"], 200) == picture
    _served_safely(gus, "image/png", "inline")
    assert gus.headers is not None
    etag, modified = gus.headers["ETag"], gus.headers["Last-Modified"]
    assert await gus.call("HEAD", photo["url"], 200) == b""
    assert gus.headers["Content-Length"] == str(len(picture))
    assert await gus.call("GET", notes["url"], 200) == text
    _served_safely(gus, "text/plain; charset=utf-8", "inline")
    assert await gus.call("GET", page["url"], 200) == markup
    _served_safely(gus, "application/octet-stream", "attachment")
    first = await gus.call("GET", photo["url"], 206, headers={"Range": "bytes=0-7"})
    assert first == picture[:8]
    assert gus.headers["Content-Range"] == f"bytes 0-7/{len(picture)}"
    past_end = {"Range": f"bytes={len(picture)}-"}
    await gus.call("GET", photo["url"], 416, headers=past_end)
    assert gus.headers["Content-Range"] == f"bytes */{len(picture)}"
    await gus.call("GET", photo["url"], 304, headers={"If-None-Match": etag})
    await gus.call("GET", photo["url"], 304, headers={"If-Modified-Since": modified})
    await gus.call("GET", photo["url"], 412, headers={"If-Match": '"something-else"'})
    thumbnail = await gus.call("GET", photo["thumbnail_url"], 200)
    _served_safely(gus, "image/jpeg", "inline")
    with Image.open(io.BytesIO(thumbnail)) as small:
        assert (small.format, small.size) == ("JPEG", (400, 300))
    no_thumbnail = f"/api/v1/files/{notes['id']}/thumbnail"
    await gus.call("GET", no_thumbnail, 404, code="thumbnail_not_found")
    await ivy.call("GET", photo["url"], 404, code="file_not_found")
    await ivy.call("GET", photo["thumbnail_url"], 404, code="file_not_found")
    await gus.call("GET", "/api/v1/files/999999", 404, code="file_not_found")
    await gus.call("GET", "/api/v1/files/x", 400, code="invalid_field")
    await gus.call("GET", "/api/v1/files/x/thumbnail", 400, code="invalid_field")

    # Deleting the message takes its files away.
    await mia.call("DELETE", f"/api/v1/messages/{sent['message']['id']}", 200)
    await gus.call("GET", photo["url"], 404, code="file_not_found")
    await mia.call("GET", photo["thumbnail_url"], 404, code="file_not_found")


async def _search_scenario(admin: Actor, mia: Actor, ivy: Actor, gus: Actor) -> None:
    """Searching the messages of one's rooms; the files scenario has run."""
    rooms = "/api/v1/rooms"
    made = {"kind": "private", "name": "Releases", "members": ["gus", "root"]}
    releases = (await mia.call("POST", rooms, 201, json=made))["room"]
    messages = f"{rooms}/{releases['id']}/messages"
    words = {"body": "The deployment of build 42 went fine"}
    older = (await mia.call("POST", messages, 201, json=words))["message"]
    words = {"body": "Deploying build 43 tonight, @gus please watch the logs"}
    newer = (await admin.call("POST", messages, 201, json=words))["message"]
    with_file = (
        await mia.call(
            "POST",
            f"{rooms}/{releases['id']}/files",
            201,
            data=_form(b"log line\n", "deploy.log"),
            headers=FORM,
        )
    )["file"]
    attached = {"body": "Deployment log attached", "files": [with_file["id"]]}
    logged = (await mia.call("POST", messages, 201, json=attached))["message"]

    search = "/api/v1/search"
    page = await gus.call("GET", f"{search}?q=DEPLOY", 200)
    assert [hit["message"]["id"] for hit in page["results"]] == [
        logged["id"],
        newer["id"],
        older["id"],
    ]
    assert page["next_offset"] is None
    hit = page["results"][1]
    assert hit["room"] == {"id": releases["id"], "kind": "private", "name": "Releases"}
    assert hit["highlight"] == newer["body"]
    assert page["results"][0]["message"]["files"] == [with_file]
    first = await gus.call("GET", f"{search}?q=deploy&limit=1", 200)
    assert ([h["message"]["id"] for h in first["results"]], first["next_offset"]) == (
        [logged["id"]],
        1,
    )
    rest = await gus.call("GET", f"{search}?q=deploy&limit=1&offset=1", 200)
    assert [h["message"]["id"] for h in rest["results"]] == [newer["id"]]
    by_root = await gus.call("GET", f"{search}?q=build&sender=@ROOT&room={releases['id']}", 200)
    assert [h["message"]["id"] for h in by_root["results"]] == [newer["id"]]
    window = f"after={older['created_at'] - 1}&before={older['created_at'] + 1}"
    dated = await gus.call("GET", f"{search}?q=build+42&{window}", 200)
    assert [h["message"]["id"] for h in dated["results"]] == [older["id"]]
    assert (await ivy.call("GET", f"{search}?q=deploy", 200))["results"] == []

    await gus.call("GET", search, 400, code="empty_query")
    await gus.call("GET", f"{search}?q=%22*%22+OR", 400, code="empty_query")
    many = "+".join(f"w{i}" for i in range(17))
    await gus.call("GET", f"{search}?q={many}", 400, code="too_many_terms")
    await gus.call("GET", f"{search}?q=x&after=5&before=3", 400, code="invalid_field")
    await gus.call("GET", f"{search}?q=x&sender=no+one", 400, code="invalid_field")
    await gus.call("GET", f"{search}?q=x&limit=101", 400, code="invalid_field")
    await gus.call("GET", f"{search}?q=x&room=abc", 400, code="invalid_field")
    await gus.call("GET", f"{search}?q=x&page=2", 400, code="unknown_field")


async def _webhooks_scenario(anon: Actor, admin: Actor, mia: Actor, ivy: Actor, gus: Actor) -> None:
    """Making, using and deleting incoming webhooks."""
    rooms = "/api/v1/rooms"
    made = {"kind": "channel", "name": "Builds", "members": ["root"]}
    builds = (await mia.call("POST", rooms, 201, json=made))["room"]
    hooks = f"{rooms}/{builds['id']}/webhooks"

    # Making one, and posting through it with nothing but its URL.
    created = await mia.call("POST", hooks, 201, json={"bot_name": " Build  bot "})
    hook = created["webhook"]
    assert (hook["room"], hook["bot_name"]) == (builds["id"], "Build bot")
    assert hook["created_by"]["username"] == "mia"
    url = urlsplit(created["url"]).path
    assert url.startswith("/hooks/")
    post = {"text": "Build 42 is live @root", "client_msg_id": "build-42"}
    posted = (await anon.call("POST", url, 201, json=post))["message"]
    assert posted["room"] == builds["id"]
    again = await anon.call("POST", url, 200, json=post)
    assert again["message"] == posted
    # The secret is the credential: no CSRF check, even from another site.
    elsewhere = {"Origin": "https://ci.example"}
    await anon.call("POST", url, 201, json={"text": "Tests passed"}, headers=elsewhere)
    history = await admin.call("GET", f"{rooms}/{builds['id']}/messages?limit=2", 200)
    message = history["messages"][0]
    assert (message["id"], message["seq"]) == (posted["id"], posted["seq"])
    assert (message["kind"], message["bot_name"]) == ("bot", "Build bot")
    assert message["mentions"] == ["root"]
    listed = await admin.call("GET", hooks, 200)
    assert listed["webhooks"] == [hook]

    # Posts the webhook refuses.
    as_json = {"Content-Type": JSON}
    await anon.call("POST", url, 400, data=b'{"text": ', headers=as_json, code="bad_json")
    await anon.call("POST", url, 400, json={}, code="missing_field")
    await anon.call("POST", url, 400, json={"text": "x", "user": "x"}, code="unknown_field")
    await anon.call("POST", url, 400, json={"text": ""}, code="invalid_field")
    await anon.call(
        "POST", url, 400, json={"text": "x", "client_msg_id": "no spaces"}, code="invalid_field"
    )
    await anon.call("POST", url, 400, json={"text": "  \n "}, code="empty_message")
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    await anon.call("POST", url, 415, data=b"text=hi", headers=form, code="unsupported_media_type")
    huge = b'{"text": "' + b"a" * 70_000 + b'"}'
    await anon.call("POST", url, 413, data=huge, headers=as_json, code="payload_too_large")
    await anon.call("POST", "/hooks/not-a-secret", 404, json=post, code="webhook_not_found")

    # Making and listing, refused.
    await mia.call("POST", hooks, 403, json={"bot_name": "x"}, csrf=False, code="csrf_failed")
    await mia.call("POST", hooks, 400, data=b"{", headers=as_json, code="bad_json")
    await mia.call("POST", hooks, 400, json={}, code="missing_field")
    await mia.call("POST", hooks, 400, json={"bot_name": "  "}, code="missing_field")
    await mia.call("POST", hooks, 400, json={"bot_name": "b" * 65}, code="invalid_field")
    await mia.call("POST", hooks, 400, json={"bot_name": "a\u200bb"}, code="invalid_field")
    await mia.call("POST", hooks, 400, json={"bot_name": "x", "icon": "x"}, code="unknown_field")
    await mia.call("POST", f"{rooms}/x/webhooks", 400, json={"bot_name": "x"}, code="invalid_field")
    await ivy.call("POST", hooks, 403, json={"bot_name": "x"}, code="not_a_member")
    await ivy.call("GET", hooks, 403, code="not_a_member")
    private = {"kind": "private", "name": "Bots", "members": ["gus"]}
    bots = (await mia.call("POST", rooms, 201, json=private))["room"]
    private_hooks = f"{rooms}/{bots['id']}/webhooks"
    await ivy.call("POST", private_hooks, 404, json={"bot_name": "x"}, code="room_not_found")
    await ivy.call("GET", private_hooks, 404, code="room_not_found")
    await gus.call("POST", private_hooks, 403, json={"bot_name": "x"}, code="forbidden")
    assert (await gus.call("GET", private_hooks, 200))["webhooks"] == []
    await mia.call("GET", f"{rooms}/x/webhooks", 400, code="invalid_field")
    for i in range(25):
        await mia.call("POST", private_hooks, 201, json={"bot_name": f"Bot {i}"})
    await mia.call(
        "POST", private_hooks, 409, json={"bot_name": "One more"}, code="too_many_webhooks"
    )

    # An archived room takes no posts and no new webhooks.
    await mia.call("PATCH", f"{rooms}/{builds['id']}", 200, json={"archived": True})
    await anon.call("POST", url, 403, json={"text": "x"}, code="archived")
    await mia.call("POST", hooks, 403, json={"bot_name": "x"}, code="archived")
    await mia.call("PATCH", f"{rooms}/{builds['id']}", 200, json={"archived": False})

    # Deleting: the creator, the room's owner or an administrator. A webhook stops
    # working when its creator leaves the room.
    await ivy.call("POST", f"{rooms}/{builds['id']}/join", 200)
    ivys = await ivy.call("POST", hooks, 201, json={"bot_name": "Ivy's bot"})
    ivys_url = urlsplit(ivys["url"]).path
    await anon.call("POST", ivys_url, 201, json={"text": "works"})
    one = f"{hooks}/{hook['id']}"
    await ivy.call("DELETE", one, 403, code="forbidden")
    await ivy.call("POST", f"{rooms}/{builds['id']}/leave", 204)
    await anon.call("POST", ivys_url, 403, json={"text": "x"}, code="webhook_disabled")
    await ivy.call("DELETE", one, 404, code="webhook_not_found")
    await mia.call("DELETE", one, 403, csrf=False, code="csrf_failed")
    await mia.call("DELETE", f"{hooks}/x", 400, code="invalid_field")
    await mia.call(
        "DELETE", f"{rooms}/{bots['id']}/webhooks/{hook['id']}", 404, code="webhook_not_found"
    )
    await admin.call("DELETE", f"{hooks}/{ivys['webhook']['id']}", 204)
    await mia.call("DELETE", one, 204)
    await mia.call("DELETE", one, 404, code="webhook_not_found")
    await anon.call("POST", url, 404, json=post, code="webhook_not_found")

    # Each webhook may post 5 a second, in bursts of 20. The 30 posts go at once: sent
    # one after another on a loaded machine, the bucket refills between them.
    spam = urlsplit((await mia.call("POST", hooks, 201, json={"bot_name": "Spam"}))["url"]).path

    async def spam_post(i: int) -> tuple[int, Any]:
        async with anon.client.post(spam, json={"text": f"spam {i}"}) as response:
            body = anon.contract.check(
                "POST", spam, response.status, response.headers, await response.read()
            )
            if response.status == 429:
                assert response.headers["Retry-After"] == str(body["error"]["retry_after"])
            return response.status, body

    answers = await asyncio.gather(*(spam_post(i) for i in range(30)))
    statuses = [status for status, _ in answers]
    assert set(statuses) == {201, 429}, statuses
    assert statuses.count(201) >= 20, statuses
    refused = [body for status, body in answers if status == 429]
    assert all(body["error"]["code"] == "rate_limited" for body in refused), refused


def _calendar(start: int, end: int, *extra: str) -> bytes:
    """An iCalendar file with one event from ``start`` to ``end`` (epoch milliseconds)."""

    def stamp(ms: int) -> str:
        return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y%m%dT%H%M%SZ")

    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//collab openapi test//EN",
        "BEGIN:VEVENT",
        "UID:standup",
        f"DTSTAMP:{stamp(start)}",
        f"DTSTART:{stamp(start)}",
        f"DTEND:{stamp(end)}",
        "SUMMARY:Standup",
        *extra,
        "END:VEVENT",
        "END:VCALENDAR",
        "",
    ]
    return "\r\n".join(lines).encode()


async def _calendar_server(aiohttp_server: ServerFactory, ics: bytes) -> TestServer:
    """A company calendar server: a calendar, a sign-in page, one too large, and 404s."""

    async def calendar(request: web.Request) -> web.Response:
        return web.Response(body=ics, content_type="text/calendar")

    async def sign_in_page(request: web.Request) -> web.Response:
        return web.Response(text="<html>Please sign in</html>", content_type="text/html")

    async def too_large(request: web.Request) -> web.Response:
        return web.Response(body=b"BEGIN:VCALENDAR\r\n" + b"X" * 2048, content_type="text/calendar")

    calendars = web.Application()
    calendars.router.add_get("/team.ics", calendar)
    calendars.router.add_get("/login", sign_in_page)
    calendars.router.add_get("/huge.ics", too_large)
    return await aiohttp_server(calendars)


async def _presence_scenario(
    aiohttp_server: ServerFactory, anon: Actor, mia: Actor, ivy: Actor, gus: Actor
) -> None:
    """Presence, presence settings, calendars and notification levels. The app allows
    calendars of 1 KB. Gus (a guest) shares rooms with mia but not with ivy."""
    rooms = "/api/v1/rooms"
    made = {"kind": "private", "name": "Standup", "members": ["gus"]}
    standup = (await mia.call("POST", rooms, 201, json=made))["room"]
    made = {"kind": "channel", "name": "Watercooler"}
    watercooler = (await mia.call("POST", rooms, 201, json=made))["room"]

    # Looking people up: members anyone, guests only the people of their rooms.
    found = await mia.call("GET", "/api/v1/users/GUS/presence", 200)
    assert (found["username"], found["status"], found["last_seen"]) == ("gus", "offline", None)
    await mia.call("GET", "/api/v1/users/nobody/presence", 404, code="user_not_found")
    assert (await gus.call("GET", "/api/v1/users/mia/presence", 200))["username"] == "mia"
    await gus.call("GET", "/api/v1/users/ivy/presence", 403, code="forbidden")
    lookup = "/api/v1/presence"
    many = await mia.call("GET", f"{lookup}?users=ivy,%20GUS,nobody,ivy", 200)
    assert [p["username"] for p in many["users"]] == ["ivy", "gus"]
    await gus.call("GET", f"{lookup}?users=mia,ivy", 403, code="forbidden")
    await mia.call("GET", lookup, 400, code="missing_field")
    await mia.call("GET", f"{lookup}?users=", 400, code="invalid_field")
    await mia.call("GET", f"{lookup}?users=,,", 400, code="invalid_field")
    crowd = ",".join(f"u{i}" for i in range(201))
    await mia.call("GET", f"{lookup}?users={crowd}", 400, code="invalid_field")
    await mia.call("GET", f"{lookup}?users=mia&status=busy", 400, code="unknown_field")
    await anon.call("GET", f"{lookup}?users=mia", 401, code="unauthenticated")

    # Settings: time zone, quiet hours, busy silences notifications.
    settings = "/api/v1/me/presence/settings"
    assert (await mia.call("GET", settings, 200))["time_zone"] == "UTC"
    change = {
        "time_zone": "Europe/Berlin",
        "quiet_start": 22 * 60,
        "quiet_end": 7 * 60,
        "silence_when_busy": True,
    }
    changed = await mia.call("PATCH", settings, 200, json=change)
    assert (changed["quiet_start"], changed["quiet_end"]) == (1320, 420)
    off = await mia.call("PATCH", settings, 200, json={"quiet_hours": False, "quiet_start": 1})
    assert (off["quiet_start"], off["quiet_end"], off["time_zone"]) == (None, None, "Europe/Berlin")
    mars = {"time_zone": "Mars/Olympus"}
    await mia.call("PATCH", settings, 400, json=mars, code="invalid_field")
    await mia.call("PATCH", settings, 400, json={"time_zone": "utc"}, code="invalid_field")
    await mia.call("PATCH", settings, 400, json={"quiet_start": 60}, code="missing_field")
    late = {"quiet_start": 1440, "quiet_end": 0}
    await mia.call("PATCH", settings, 400, json=late, code="invalid_field")
    await mia.call("PATCH", settings, 400, json={"dnd": True}, code="unknown_field")
    await mia.call("PATCH", settings, 403, json=change, csrf=False, code="csrf_failed")

    now = int(time.time() * 1000)
    ics = _calendar(now - 10 * 60_000, now + 20 * 60_000)
    calendars = await _calendar_server(aiohttp_server, ics)
    me = "/api/v1/me/presence"
    mine = "/api/v1/users/mia/presence"
    async with mia.client.ws_connect("/ws") as socket:
        # With a socket open mia is online; her first command lets live events through.
        await socket.receive_json(timeout=5)  # hello
        await socket.send_json({"id": "p1", "type": "ping"})
        frames = await _frames_until(socket, lambda f: f.get("re") == "p1")
        if not any(f.get("type") == "presence.snapshot" for f in frames):
            frames += await _frames_until(socket, lambda f: f.get("type") == "presence.snapshot")
        [snapshot] = [f for f in frames if f.get("type") == "presence.snapshot"]
        for item in snapshot["users"]:
            mia.contract.validate("/components/schemas/PresenceEvent", item, "presence.snapshot")
        assert "gus" in {item["username"] for item in snapshot["users"]}
        assert (await mia.call("GET", mine, 200))["status"] == "available"
        await socket.send_json({"id": "p2", "type": "presence.get", "users": [found["user"]]})
        answer = (await _frames_until(socket, lambda f: f.get("re") == "p2"))[-1]
        assert answer["users"] == [found]

        # Choosing a status and a custom text.
        end = now + 30 * 60_000
        choice = {
            "status": "busy",
            "until": end,
            "text": "Dentist",
            "emoji": "🦷",
            "text_until": end,
        }
        busy = await mia.call("PUT", me, 200, json=choice)
        assert (busy["status"], busy["until"], busy["text"]) == ("busy", end, "Dentist")
        assert busy["reason"].startswith("until ")
        back = await mia.call("PUT", me, 200, json={"status": "available", "text": "", "emoji": ""})
        assert (back["status"], back["text"], back["emoji"], back["until"]) == (
            "available",
            None,
            None,
            None,
        )
        await mia.call("PUT", me, 400, json={"status": "sleeping"}, code="invalid_field")
        long_text = {"status": "busy", "text": "x" * 101}
        await mia.call("PUT", me, 400, json=long_text, code="invalid_field")
        await mia.call("PUT", me, 400, json={}, code="missing_field")
        await mia.call("PUT", me, 400, json={"status": "dnd", "mood": "x"}, code="unknown_field")
        await mia.call("PUT", me, 403, json={"status": "dnd"}, csrf=False, code="csrf_failed")

        # A calendar at an address: read at once, so mistakes are answered now.
        calendar = "/api/v1/me/calendar"
        url = str(calendars.make_url("/team.ics"))
        used = await mia.call("PUT", calendar, 200, json={"url": url})
        assert (used["calendar_kind"], used["calendar_url"], used["calendar_error"]) == (
            "url",
            url,
            None,
        )
        meeting = await mia.call("GET", mine, 200)
        assert (meeting["status"], meeting["until"]) == ("busy", (now + 20 * 60_000) // 1000 * 1000)
        assert meeting["reason"].startswith("in a meeting until ")
        for address, status, code in (
            ("ftp://calendar.example/mia.ics", 400, "calendar_bad_url"),
            (str(calendars.make_url("/login")), 400, "calendar_invalid"),
            (str(calendars.make_url("/huge.ics")), 400, "calendar_too_large"),
            (str(calendars.make_url("/missing.ics")), 502, "calendar_http_error"),
            ("http://127.0.0.1:1/x.ics", 502, "calendar_unreachable"),
        ):
            await mia.call("PUT", calendar, status, json={"url": address}, code=code)
        await mia.call("PUT", calendar, 400, json={"url": ""}, code="invalid_field")
        await mia.call("PUT", calendar, 400, json={"link": url}, code="unknown_field")
        await mia.call("PUT", calendar, 403, json={"url": url}, csrf=False, code="csrf_failed")
        kept = await mia.call("GET", settings, 200)
        assert (kept["calendar_url"], kept["calendar_error"]) == (url, None)

        # An uploaded calendar file.
        file = f"{calendar}/file"
        as_ics = {"Content-Type": "text/calendar"}
        filed = await mia.call("PUT", file, 200, data=ics, headers=as_ics)
        assert (filed["calendar_kind"], filed["calendar_url"]) == ("file", None)
        await mia.call(
            "PUT", file, 400, data=b"not a calendar", headers=as_ics, code="calendar_invalid"
        )
        dense = _calendar(now, now + 1000, "RRULE:FREQ=SECONDLY")
        await mia.call("PUT", file, 400, data=dense, headers=as_ics, code="calendar_too_big")
        big = b"BEGIN:VCALENDAR\r\n" + b"X" * 2048
        await mia.call("PUT", file, 413, data=big, headers=as_ics, code="calendar_too_large")
        await mia.call("PUT", file, 403, data=ics, headers=as_ics, csrf=False, code="csrf_failed")
        await mia.call("DELETE", calendar, 403, csrf=False, code="csrf_failed")
        await mia.call("DELETE", calendar, 204)
        assert (await mia.call("GET", settings, 200))["calendar_kind"] is None
        assert (await mia.call("GET", mine, 200))["status"] == "available"

        # Notification levels; the caller's sockets hear of a change.
        notify = f"{rooms}/{standup['id']}/notify"
        assert await mia.call("PUT", notify, 200, json={"level": "mute"}) == {"level": "mute"}
        changed_level = await _frames_until(socket, lambda f: f.get("type") == "room.notify")
        assert changed_level[-1] == {"type": "room.notify", "room": standup["id"], "level": "mute"}
        await mia.call("PUT", notify, 400, json={"level": "loud"}, code="invalid_field")
        await mia.call("PUT", notify, 400, json={}, code="missing_field")
        await mia.call("PUT", f"{rooms}/x/notify", 400, json={"level": "all"}, code="invalid_field")
        await mia.call("PUT", notify, 403, json={"level": "all"}, csrf=False, code="csrf_failed")
        await ivy.call("PUT", notify, 404, json={"level": "all"}, code="room_not_found")
        channel = f"{rooms}/{watercooler['id']}/notify"
        await ivy.call("PUT", channel, 403, json={"level": "all"}, code="not_a_member")

        # The call log: a call started and cancelled on the socket is in it.
        await socket.send_json({"id": "k1", "type": "call.start", "room": standup["id"]})
        started = (await _frames_until(socket, lambda f: f.get("re") == "k1"))[-1]
        cancel = {"id": "k2", "type": "call.cancel", "call": started["call"]["call"]}
        await socket.send_json(cancel)
        assert (await _frames_until(socket, lambda f: f.get("re") == "k2"))[-1]["ok"]
        calls = f"{rooms}/{standup['id']}/calls"
        logged = await mia.call("GET", f"{calls}?limit=5", 200)
        assert logged["calls"][0]["outcome"] == "cancelled"
        await mia.call("GET", f"{calls}?limit=0", 400, code="invalid_field")
        await mia.call("GET", f"{calls}?page=2", 400, code="unknown_field")
        await ivy.call("GET", calls, 404, code="room_not_found")
        await ivy.call("GET", f"{rooms}/{watercooler['id']}/calls", 403, code="not_a_member")

    # With no socket open, mia is offline, and when she was last seen is known.
    for _ in range(100):
        gone = await mia.call("GET", mine, 200)
        if gone["status"] == "offline":
            break
        await asyncio.sleep(0.05)
    assert gone["status"] == "offline" and gone["last_seen"] is not None

    # The stream of changes: Server-Sent Events, each a PresenceEvent.
    stream = "/api/v1/presence/stream"
    async with gus.client.get(stream) as response:
        first = b""
        while not first.endswith(b"\n\n"):
            first += await asyncio.wait_for(response.content.readline(), 5)
        text = gus.contract.check("GET", stream, response.status, response.headers, first)
    assert response.status == 200
    event, data = text.strip().split("\n")
    assert event == "event: presence" and data.startswith("data: ")
    gus.contract.validate("/components/schemas/PresenceEvent", json.loads(data[6:]), "stream")
    await anon.call("GET", stream, 401, code="unauthenticated")


async def test_responses_conform_to_the_document(
    app: web.Application,
    aiohttp_client: ClientFactory,
    aiohttp_server: ServerFactory,
    spec: dict[str, Any],
) -> None:
    contract = Contract(spec)
    first = await aiohttp_client(app)

    async def actor() -> Actor:
        # Another client of the same server: its own cookie jar.
        return Actor(await aiohttp_client(first.server), contract)

    await app[ACCOUNTS].create_user(
        username="root", password=ADMIN_PASSWORD, role="admin", display_name="Root"
    )
    anon = Actor(first, contract)
    admin, mia, gus, bot, stranger = [await actor() for _ in range(5)]

    # Operations endpoints and the document itself.
    assert (await anon.call("GET", "/healthz", 200)) == {"status": "ok"}
    assert (await anon.call("GET", "/readyz", 200))["status"] == "ready"
    assert "collab_http_requests_total" in await anon.call("GET", "/metrics", 200)
    assert await anon.call("GET", "/api/v1/openapi.json", 200) == load_spec()

    # Not signed in, or a bad token.
    await anon.call("GET", "/api/v1/me", 401, code="unauthenticated")
    await anon.call("GET", "/ws", 401, code="unauthenticated")
    stranger.bearer = "collab_pat_not-a-real-token"
    await stranger.call("GET", "/api/v1/tokens", 401, code="invalid_token")
    await stranger.call("GET", "/api/v1/openapi.json", 401, code="invalid_token")

    # Signing in, and bodies the server refuses.
    login = "/api/v1/login"
    as_json = {"Content-Type": JSON}
    await anon.call("POST", login, 400, data=b'{"username": ', headers=as_json, code="bad_json")
    await anon.call("POST", login, 400, json={"username": "root"}, code="missing_field")
    unknown = {"username": "root", "password": ADMIN_PASSWORD, "remember_me": True}
    body = await anon.call("POST", login, 400, json=unknown, code="unknown_field")
    assert body["error"]["field"] == "remember_me"
    empty = {"username": "", "password": "x"}
    body = await anon.call("POST", login, 400, json=empty, code="invalid_field")
    assert body["error"]["field"] == "username"
    await anon.call(
        "POST",
        login,
        415,
        data=b"username=root",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        code="unsupported_media_type",
    )
    huge = b'{"username": "' + b"a" * 70_000 + b'", "password": "x"}'
    await anon.call("POST", login, 413, data=huge, headers=as_json, code="payload_too_large")
    wrong = {"username": "root", "password": "not-the-password"}
    await anon.call("POST", login, 401, json=wrong, code="bad_credentials")
    right = {"username": "Root", "password": ADMIN_PASSWORD}
    cross_site = {"Origin": "https://evil.example"}
    await anon.call("POST", login, 403, json=right, headers=cross_site, code="csrf_failed")
    signed_in = await admin.sign_in("ROOT", ADMIN_PASSWORD)
    assert signed_in["user"]["username"] == "root"

    # The caller's own account.
    me = await admin.call("GET", "/api/v1/me", 200)
    assert me["csrf_token"] == admin.csrf
    profile = {"display_name": "  Root   Admin ", "email": "root@example.com"}
    await admin.call("PATCH", "/api/v1/me", 403, json=profile, csrf=False, code="csrf_failed")
    me = await admin.call("PATCH", "/api/v1/me", 200, json=profile)
    assert me["user"]["display_name"] == "Root Admin"
    await admin.call("PATCH", "/api/v1/me", 400, json={"email": "nope"}, code="invalid_field")

    # API tokens.
    token = await admin.call(
        "POST", "/api/v1/tokens", 201, json={"name": "ci bot", "expires_in_days": 30}
    )
    assert token["token"].startswith(token["prefix"])
    await admin.call("POST", "/api/v1/tokens", 400, json={}, code="missing_field")
    zero_days = {"name": "x", "expires_in_days": 0}
    await admin.call("POST", "/api/v1/tokens", 400, json=zero_days, code="invalid_field")
    tokens = await admin.call("GET", "/api/v1/tokens", 200)
    assert [t["id"] for t in tokens["tokens"]] == [token["id"]]
    bot.bearer = token["token"]
    assert (await bot.call("GET", "/api/v1/me", 200))["csrf_token"] is None
    spare = await bot.call("POST", "/api/v1/tokens", 201, json={"name": "spare"})
    await bot.call("DELETE", f"/api/v1/tokens/{spare['id']}", 204)
    await bot.call("DELETE", f"/api/v1/tokens/{spare['id']}", 404, code="token_not_found")
    await admin.call("DELETE", "/api/v1/tokens/abc", 400, code="invalid_field")

    # Invitations, and accepting one.
    invitation = await admin.call(
        "POST",
        "/api/v1/invitations",
        201,
        json={"role": "member", "email": "mia@example.com", "expires_in_hours": 2},
    )
    bad_role = {"role": "owner"}
    await admin.call("POST", "/api/v1/invitations", 400, json=bad_role, code="invalid_field")
    pending = await admin.call("GET", "/api/v1/invitations", 200)
    assert [i["id"] for i in pending["invitations"]] == [invitation["id"]]
    code = invitation["code"]
    assert invitation["url"].endswith(code)
    preview = await anon.call("GET", f"/api/v1/invitations/{code}", 200)
    expected = {"role": "member", "expires_at": invitation["expires_at"], "first_run": False}
    assert preview == expected
    await anon.call("GET", "/api/v1/invitations/no-such-code", 404, code="invitation_not_found")
    accept = f"/api/v1/invitations/{code}/accept"
    weak = {"username": "mia", "password": "short"}
    await mia.call("POST", accept, 400, json=weak, code="weak_password")
    reserved = {"username": "everyone", "password": MEMBER_PASSWORD}
    await mia.call("POST", accept, 400, json=reserved, code="invalid_username")
    taken = {"username": "root", "password": MEMBER_PASSWORD}
    await mia.call("POST", accept, 409, json=taken, code="username_taken")
    await mia.call("POST", accept, 403, json=taken, headers=cross_site, code="csrf_failed")
    joined = {"username": " Mia ", "password": MEMBER_PASSWORD, "display_name": "Mia"}
    signed_up = await mia.call("POST", accept, 201, json=joined)
    mia.csrf = signed_up["csrf_token"]
    assert signed_up["user"]["username"] == "mia"
    assert signed_up["user"]["email"] == "mia@example.com"
    again = {"username": "mia2", "password": MEMBER_PASSWORD}
    await anon.call("POST", accept, 410, json=again, code="invitation_used")
    await anon.call("GET", f"/api/v1/invitations/{code}", 410, code="invitation_used")
    other = await admin.call("POST", "/api/v1/invitations", 201, json={})
    await admin.call("DELETE", f"/api/v1/invitations/{other['id']}", 204)
    gone = f"/api/v1/invitations/{other['id']}"
    await admin.call("DELETE", gone, 404, code="invitation_not_found")
    await admin.call("DELETE", "/api/v1/invitations/abc", 400, code="invalid_field")

    # What a member may and may not do.
    await mia.call("GET", "/api/v1/invitations", 403, code="forbidden")
    await mia.call("POST", "/api/v1/invitations", 403, json={}, code="forbidden")
    page = await mia.call("GET", "/api/v1/users", 200)
    assert {u["username"] for u in page["users"]} == {"mia", "root"}
    assert all("email" not in u for u in page["users"])
    await mia.call("GET", "/api/v1/users?include_inactive=true", 403, code="forbidden")
    await mia.call("GET", "/api/v1/users?limit=0", 400, code="invalid_field")
    await mia.call("GET", "/api/v1/users?sort=name", 400, code="unknown_field")
    assert "email" not in (await mia.call("GET", "/api/v1/users/root", 200))["user"]
    assert "email" in (await mia.call("GET", "/api/v1/users/MIA", 200))["user"]
    await mia.call("GET", "/api/v1/users/nobody", 404, code="user_not_found")
    newcomer = {"username": "gus", "password": GUEST_PASSWORD, "role": "guest"}
    await mia.call("POST", "/api/v1/users", 403, json=newcomer, code="forbidden")
    promote = {"role": "admin"}
    await mia.call("PATCH", "/api/v1/users/mia", 403, json=promote, code="forbidden")

    # User administration.
    created = await admin.call("POST", "/api/v1/users", 201, json={**newcomer, "email": None})
    assert created["user"]["role"] == "guest"
    clash = {"username": "GUS", "password": "another-password"}
    await admin.call("POST", "/api/v1/users", 409, json=clash, code="username_taken")
    same = {"username": "kim", "password": "kim"}
    await admin.call("POST", "/api/v1/users", 400, json=same, code="weak_password")
    spaced = {"username": "no spaces", "password": "a-long-password"}
    await admin.call("POST", "/api/v1/users", 400, json=spaced, code="invalid_username")
    page = await admin.call("GET", "/api/v1/users?limit=2", 200)
    assert [u["username"] for u in page["users"]] == ["gus", "mia"]
    assert page["next_after"] == "mia"
    assert all("email" in u for u in page["users"])
    rest = await admin.call("GET", "/api/v1/users?limit=2&after=mia&include_inactive=1", 200)
    assert [u["username"] for u in rest["users"]] == ["root"]
    assert rest["next_after"] is None
    renamed = {"display_name": "Mia M.", "role": None}
    updated = await admin.call("PATCH", "/api/v1/users/mia", 200, json=renamed)
    assert updated["user"]["display_name"] == "Mia M."
    demote = {"role": "member"}
    await admin.call("PATCH", "/api/v1/users/root", 409, json=demote, code="last_admin")
    await admin.call("PATCH", "/api/v1/users/mia", 400, json=bad_role, code="invalid_field")
    nobody = {"active": False}
    await admin.call("PATCH", "/api/v1/users/nobody", 404, json=nobody, code="user_not_found")
    assert (await admin.call("GET", "/api/v1/users/mia", 200))["user"]["email"]

    # A guest sees only themselves.
    await gus.sign_in("gus", GUEST_PASSWORD)
    await gus.call("GET", "/api/v1/users", 403, code="forbidden")
    await gus.call("GET", "/api/v1/users/root", 403, code="forbidden")
    assert (await gus.call("GET", "/api/v1/users/gus", 200))["user"]["email"] is None

    # Chat: rooms, members and messages.
    general_id = await _chat_scenario(app, actor, admin, mia, gus)

    # Files, search and webhooks; ivy is in none of the rooms they make.
    await app[ACCOUNTS].create_user(username="ivy", password=MEMBER_PASSWORD, role="member")
    ivy = await actor()
    await ivy.sign_in("ivy", MEMBER_PASSWORD)
    await _files_scenario(mia, ivy, gus)
    await _search_scenario(admin, mia, ivy, gus)
    await _webhooks_scenario(anon, admin, mia, ivy, gus)
    await _presence_scenario(aiohttp_server, anon, mia, ivy, gus)

    # The realtime socket.
    await admin.call("GET", "/ws", 400, code="websocket_required")
    await admin.call(
        "GET", "/ws", 403, code="csrf_failed", headers={"Origin": "https://evil.example"}
    )
    async with admin.client.ws_connect("/ws") as socket:
        contract.check("GET", "/ws", 101, None, b"")
        hello = await socket.receive_json(timeout=5)
        assert hello["type"] == "hello"
        contract.validate("/components/schemas/UserDetail", hello["user"], "hello.user")
        assert hello["user"]["username"] == "root"
        # Events (of other kinds) may come before an answer; they are read past.
        await socket.send_json({"id": "c1", "type": "ping"})
        answer = (await _frames_until(socket, lambda f: f.get("re") == "c1"))[-1]
        assert answer["ok"] is True
        # A message over the socket has the same shape as over REST.
        send = {"id": "c2", "type": "chat.send", "room": general_id, "body": "From the socket"}
        await socket.send_json(send)
        frames = await _frames_until(socket, lambda f: f.get("re") == "c2")
        if not any(f.get("type") == "chat.message" for f in frames):
            frames += await _frames_until(socket, lambda f: f.get("type") == "chat.message")
        [event] = [f for f in frames if f.get("type") == "chat.message"]
        [answer] = [f for f in frames if f.get("re") == "c2"]
        contract.validate("/components/schemas/Message", answer["message"], "chat.send answer")
        assert event.pop("type") == "chat.message"
        contract.validate("/components/schemas/Message", event, "chat.message event")
        assert event == answer["message"]
        # Search over the socket answers as GET /api/v1/search does.
        await socket.send_json({"id": "c3", "type": "chat.search", "q": "socket", "limit": 5})
        answer = (await _frames_until(socket, lambda f: f.get("re") == "c3"))[-1]
        assert (answer.pop("re"), answer.pop("ok")) == ("c3", True)
        contract.validate("/components/schemas/SearchPage", answer, "chat.search answer")
        assert [hit["message"]["id"] for hit in answer["results"]] == [event["id"]]

    # Passwords.
    password = "/api/v1/me/password"
    wrong_current = {"current_password": "wrong-password", "new_password": "new-mia-password"}
    await mia.call("POST", password, 403, json=wrong_current, code="bad_credentials")
    too_short = {"current_password": MEMBER_PASSWORD, "new_password": "short"}
    await mia.call("POST", password, 400, json=too_short, code="weak_password")
    change = {"current_password": MEMBER_PASSWORD, "new_password": "new-mia-password"}
    old_csrf = mia.csrf
    renewed = await mia.call("POST", password, 200, json=change)
    assert renewed["csrf_token"] != old_csrf
    mia.csrf = renewed["csrf_token"]
    await mia.call("GET", "/api/v1/me", 200)
    by_token = {"current_password": ADMIN_PASSWORD, "new_password": "root-password-2"}
    await bot.call("POST", password, 204, json=by_token)
    # That ended every session of root; the cookie in admin's jar is now stale.
    await admin.call("GET", "/api/v1/me", 401, code="session_ended")
    await admin.sign_in("root", "root-password-2")

    # Signing out.
    await mia.call("POST", "/api/v1/logout", 403, csrf=False, code="csrf_failed")
    await mia.call("POST", "/api/v1/logout", 204)
    await mia.call("GET", "/api/v1/me", 401, code="unauthenticated")
    await bot.call("POST", "/api/v1/logout", 204)
    await bot.call("GET", "/api/v1/me", 200)

    # Guessing passwords is throttled.
    guess = {"username": "nobody", "password": "guess-password"}
    status = 401
    for _ in range(10):
        if status == 429:
            break
        response = await anon.client.post(login, json=guess)
        status = response.status
        contract.check("POST", login, status, response.headers, await response.read())
    assert status == 429
    await anon.call("POST", login, 429, json=guess, code="rate_limited")

    # Every documented operation was called.
    called = {(method, template) for method, template, _ in contract.seen}
    missed = documented_operations(spec) - called
    assert not missed, f"the scenario never called: {sorted(missed)}"


async def test_errors_outside_operations_have_the_error_shape(
    app: web.Application, aiohttp_client: ClientFactory, spec: dict[str, Any]
) -> None:
    contract = Contract(spec)
    client = await aiohttp_client(app)
    for method, path, status, code in (
        ("GET", "/api/v1/nothing-here", 404, "not_found"),
        ("PUT", "/api/v1/me", 405, "method_not_allowed"),
    ):
        response = await client.request(method, path)
        assert response.status == status
        body = await response.json()
        contract.validate("/components/schemas/Error", body, f"{method} {path}")
        assert body["error"]["code"] == code
        if status == 405:
            assert "PATCH" in response.headers["Allow"]

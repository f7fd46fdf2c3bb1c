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

import copy
import json
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
import openapi_spec_validator
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from multidict import CIMultiDictProxy
from openapi_schema_validator import OAS31Validator, oas31_format_checker
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from collab.accounts import http as accounts_http
from collab.accounts.passwords import Passwords
from collab.api.openapi import load_spec
from collab.app import create_app
from collab.appkeys import ACCOUNTS
from collab.config import Config

HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
SPEC_URI = "urn:collab:openapi"
JSON = "application/json"

ADMIN_PASSWORD = "root-password-1"
MEMBER_PASSWORD = "mia-password-1"
GUEST_PASSWORD = "gus-password-1"


@pytest.fixture
def app(tmp_path: Path, fast_passwords: Passwords) -> web.Application:
    return create_app(Config(data_dir=tmp_path), passwords=fast_passwords, announce_first_run=False)


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


def _facts(schema: dict[str, Any]) -> dict[str, Any]:
    """The parts of a property schema both sides must agree on."""
    variants = schema.get("anyOf", [schema])
    types: set[str] = set()
    limits: dict[str, Any] = {}
    for variant in variants:
        kind = variant.get("type")
        types.update(kind if isinstance(kind, list) else [kind])
        for key in ("minLength", "maxLength", "minimum", "maximum"):
            if key in variant:
                limits[key] = variant[key]
    for key in ("minLength", "maxLength", "minimum", "maximum"):
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


def test_request_schemas_match_the_structs(spec: dict[str, Any]) -> None:
    structs = [
        kind for kind in accounts_http.Strict.__subclasses__() if kind.__name__ != "UserListQuery"
    ]
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
        if body:
            referenced.add(body["content"][JSON]["schema"]["$ref"].rsplit("/", 1)[1])
    unused = {kind.__name__ for kind in structs} - referenced
    if unused:
        problems.append(f"request schemas no operation uses: {sorted(unused)}")
    assert not problems, "\n".join(problems)


def test_list_users_query_matches_its_struct(spec: dict[str, Any]) -> None:
    _, components = msgspec.json.schema_components([accounts_http.UserListQuery])
    expected = copy.deepcopy(components["UserListQuery"])
    for prop in expected["properties"].values():
        # A query parameter left out is the struct's None; it cannot be null itself.
        if "anyOf" in prop:
            prop["anyOf"] = [v for v in prop["anyOf"] if v.get("type") != "null"]
    parameters = spec["paths"]["/api/v1/users"]["get"]["parameters"]
    actual = {
        "properties": {p["name"]: p["schema"] for p in parameters if p["in"] == "query"},
        "required": [p["name"] for p in parameters if p.get("required")],
    }
    problems = _compare_object("listUsers query", expected, actual)
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
        """Check one response; returns the decoded body (JSON, text or None)."""
        template = self.template_for(path)
        operation = self.spec["paths"][template].get(method.lower())
        assert operation is not None, f"{method} {template} is not in the document"
        where = f"{method} {path} -> {status}"
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
            return raw.decode()
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


async def test_responses_conform_to_the_document(
    app: web.Application, aiohttp_client: ClientFactory, spec: dict[str, Any]
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
    assert preview == {"role": "member", "expires_at": invitation["expires_at"]}
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
        await socket.send_json({"id": "c1", "type": "ping"})
        answer = await socket.receive_json(timeout=5)
        assert answer["re"] == "c1"
        assert answer["ok"] is True

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

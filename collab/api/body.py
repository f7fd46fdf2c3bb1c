"""Turn a request body or query into a typed struct, or a 400 that says what is wrong."""

from __future__ import annotations

import re
from typing import TypeVar

import msgspec
from aiohttp import web

from collab.api.errors import ApiError, BadRequest
from collab.api.fields import INT32_MAX
from signaling.protocol import has_json_nul

T = TypeVar("T")


class StrictBody(msgspec.Struct, forbid_unknown_fields=True):
    """Base of request bodies and queries: a misspelt field is an error, not ignored."""


MAX_JSON_BODY = 64 * 1024

_MISSING = re.compile(r"missing required field `(?P<field>[^`]+)`")
_UNKNOWN = re.compile(r"unknown field `(?P<field>[^`]+)`")
_AT_PATH = re.compile(r" - at `\$\.?(?P<path>[^`]*)`")


def _validation_error(exc: msgspec.ValidationError) -> ApiError:
    text = str(exc)
    missing = _MISSING.search(text)
    if missing:
        field = missing.group("field")
        return BadRequest(f"The field '{field}' is required.", code="missing_field", field=field)
    unknown = _UNKNOWN.search(text)
    if unknown:
        field = unknown.group("field")
        return BadRequest(
            f"The field '{field}' is not known here; check its spelling.",
            code="unknown_field",
            field=field,
        )
    at_path = _AT_PATH.search(text)
    field = at_path.group("path") if at_path else ""
    reason = _AT_PATH.sub("", text)
    message = f"The field '{field}' is not valid: {reason}." if field else f"{reason}."
    return BadRequest(message, code="invalid_field", field=field)


async def read_json(request: web.Request, kind: type[T]) -> T:
    """Parse the JSON body into ``kind``; every failure is a 4xx with a code."""
    if request.content_type != "application/json":
        raise ApiError(
            "Send the request body as JSON with 'Content-Type: application/json'.",
            code="unsupported_media_type",
            status=415,
        )
    if request.content_length is not None and request.content_length > MAX_JSON_BODY:
        raise ApiError(
            f"The request body is larger than {MAX_JSON_BODY} bytes.",
            code="payload_too_large",
            status=413,
        )
    raw = await request.content.read(MAX_JSON_BODY + 1)
    if len(raw) > MAX_JSON_BODY:
        raise ApiError(
            f"The request body is larger than {MAX_JSON_BODY} bytes.",
            code="payload_too_large",
            status=413,
        )
    if has_json_nul(raw):
        raise BadRequest("Text may not contain NUL characters.", code="invalid_field")
    try:
        return msgspec.json.decode(raw, type=kind, strict=True)
    except msgspec.ValidationError as exc:
        raise _validation_error(exc) from None
    except msgspec.DecodeError:
        raise BadRequest("The request body is not valid JSON.", code="bad_json") from None


def read_query(request: web.Request, kind: type[T]) -> T:
    """Parse query parameters into ``kind`` (strings converted to the field types)."""
    try:
        return msgspec.convert(dict(request.query), type=kind, strict=False)
    except msgspec.ValidationError as exc:
        raise _validation_error(exc) from None


def json_response(data: object, *, status: int = 200) -> web.Response:
    return web.Response(
        body=msgspec.json.encode(data), status=status, content_type="application/json"
    )


_ASCII_ID = re.compile(r"^[0-9]{1,18}$")


def path_int(
    request: web.Request, name: str, label: str | None = None, *, maximum: int = INT32_MAX
) -> int:
    """A numeric id from the path: ASCII digits only (other Unicode digits are a 400), and
    no larger than its column holds."""
    raw = request.match_info[name]
    if not _ASCII_ID.match(raw) or not 0 < int(raw) <= maximum:
        raise BadRequest(
            f"'{raw[:40]}' is not a valid {label or name}.", code="invalid_field", field=name
        )
    return int(raw)

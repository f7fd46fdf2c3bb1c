"""Middleware every request passes: request id, access log and metrics, JSON errors,
security headers.

Errors of every kind leave as ``{"error": {"code", "message"}}``; an
unexpected exception is logged with its traceback and answered with a code
and the request id, never the traceback.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from collab.api.body import json_response
from collab.api.errors import ApiError, BadRequest
from collab.api.unavailable import as_unavailable
from collab.appkeys import CONFIG, METRICS
from collab.ops.logs import request_id

log = logging.getLogger("collab.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
PROBES = frozenset({"/healthz", "/readyz"})

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "media-src 'self' blob:",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "timeout",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}

_HTTP_MESSAGES = {
    404: "There is nothing at this address.",
    405: "This address does not accept that method.",
    413: "The request body is too large.",
}


def _loggable_path(path: str) -> str:
    """The path without secrets in it (a webhook's URL is its password)."""
    if path.startswith("/hooks/"):
        return "/hooks/<secret>"
    if path.startswith("/api/v1/invitations/") and path.count("/") >= 4:
        parts = path.split("/")
        parts[4] = "<code>"
        return "/".join(parts)
    return path


def _route_name(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    incoming = request.headers.get("X-Request-ID", "")
    rid = incoming if _REQUEST_ID.match(incoming) else secrets.token_hex(8)
    token = request_id.set(rid)
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        response.headers["X-Request-ID"] = rid
        return response
    finally:
        elapsed = time.perf_counter() - started
        route = _route_name(request)
        metrics = request.app[METRICS]
        metrics.http_requests.labels(route, request.method, str(status)).inc()
        metrics.http_latency.labels(route).observe(elapsed)
        # Health probes come every few seconds from every balancer: only failures are news.
        probe = request.path in PROBES and status < 400
        log.log(
            logging.DEBUG if probe else logging.INFO,
            "%s %s %d %.1fms addr=%s",
            request.method,
            _loggable_path(request.rel_url.path),
            status,
            elapsed * 1000,
            request.remote,
        )
        request_id.reset(token)


def error_response(error: ApiError) -> web.Response:
    response = json_response(error.body(), status=error.status)
    response.headers.update(error.headers)
    return response


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        if "\x00" in request.path or "\x00" in request.query_string:
            # PostgreSQL cannot store NUL in text; refuse it before it gets that far.
            raise BadRequest("The address may not contain NUL characters.", code="invalid_field")
        return await handler(request)
    except ApiError as error:
        return error_response(error)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "http_error")
        message = _HTTP_MESSAGES.get(exc.status, exc.reason)
        response = json_response({"error": {"code": code, "message": message}}, status=exc.status)
        if exc.status == 405 and "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except Exception as exc:
        outage = as_unavailable(exc)
        if isinstance(outage, ApiError):
            log.warning("%s %s: %s", request.method, request.rel_url.path, exc)
            return error_response(outage)
        log.exception("unhandled error in %s %s", request.method, request.rel_url.path)
        return json_response(
            {
                "error": {
                    "code": "internal",
                    "message": "Something went wrong on the server. "
                    f"Quote request id {request_id.get()} when you report it.",
                }
            },
            status=500,
        )


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    headers = response.headers
    headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "same-origin")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    headers.setdefault(
        "Permissions-Policy", "camera=(self), microphone=(self), display-capture=(self)"
    )
    if request.app[CONFIG].secure_cookies:
        headers.setdefault("Strict-Transport-Security", "max-age=31536000")
    if request.path.startswith("/api/"):
        headers.setdefault("Cache-Control", "no-store")
    else:
        # Revalidate the web client's files, so an upgrade reaches browsers at once.
        headers.setdefault("Cache-Control", "no-cache")

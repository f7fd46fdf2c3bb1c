"""Who is calling: the session cookie or an ``Authorization: Bearer`` token.

Runs on every API and socket request. A route is closed unless its handler
is marked public. Cookie-authenticated requests that change something must
carry the session's CSRF token in ``X-CSRF-Token``; bearer-token requests
need none, since a browser never attaches a bearer token by itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from aiohttp import web

from collab.accounts import secrets
from collab.accounts.models import Identity
from collab.api.errors import Forbidden, Unauthenticated
from collab.api.public import is_public
from collab.appkeys import ACCOUNTS, CONFIG

SESSION_COOKIE = "collab_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
IDENTITY_KEY: web.RequestKey[Identity | None] = web.RequestKey("identity", Identity | None)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _needs_identity(request: web.Request) -> bool:
    return request.path.startswith("/api/") or request.path == "/ws"


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def _same_origin(request: web.Request) -> bool:
    """False when the browser says the request comes from another site."""
    if request.headers.get("Sec-Fetch-Site") == "cross-site":
        return False
    origin = request.headers.get("Origin")
    if origin is None or origin == "null":
        return origin is None
    allowed = {
        f"{request.scheme}://{request.host}",
        request.app[CONFIG].effective_public_url,
    }
    parts = urlsplit(origin)
    return f"{parts.scheme}://{parts.netloc}" in allowed


async def resolve_identity(request: web.Request) -> Identity | None:
    accounts = request.app[ACCOUNTS]
    bearer = _bearer(request)
    if bearer is not None:
        identity = await accounts.identify_token(bearer)
        if identity is None:
            raise Unauthenticated(
                "The API token is not valid: it may have been revoked or expired.",
                code="invalid_token",
            )
        return identity
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        return await accounts.identify_session(cookie)
    return None


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not _needs_identity(request) or request.match_info.http_exception is not None:
        return await handler(request)  # unknown routes answer 404/405 to anyone
    unsafe = request.method not in SAFE_METHODS
    # A WebSocket upgrade is a GET, but it acts with the user's cookie: another
    # site must not open one (cross-site WebSocket hijacking).
    if (unsafe or request.path == "/ws") and not _same_origin(request):
        raise Forbidden("This request came from another site and was refused.", code="csrf_failed")
    if is_public(request):
        # A script that sends a bad token hears so at once, even on public routes.
        request[IDENTITY_KEY] = await resolve_identity(request) if _bearer(request) else None
        return await handler(request)
    identity = await resolve_identity(request)
    if identity is None:
        if SESSION_COOKIE in request.cookies:
            raise Unauthenticated(
                "Your session has ended. Sign in again.",
                code="session_ended",
                headers={"Set-Cookie": _expired_cookie(request)},
            )
        raise Unauthenticated(
            "Sign in, or send an API token as 'Authorization: Bearer <token>'.",
        )
    if unsafe and identity.session is not None:
        sent = request.headers.get(CSRF_HEADER, "")
        if not sent or not secrets.same(sent, identity.session.csrf_token):
            raise Forbidden(
                f"Missing or wrong {CSRF_HEADER} header. Reload the page and try again.",
                code="csrf_failed",
            )
    request[IDENTITY_KEY] = identity
    response = await handler(request)
    # Not when the handler set the cookie itself (signed out, a new session).
    if identity.renewed and not response.prepared and SESSION_COOKIE not in response.cookies:
        set_session_cookie(request, response, request.cookies[SESSION_COOKIE])
    return response


def identity_of(request: web.Request) -> Identity:
    """The caller of a route that needs sign-in (the middleware has made sure of it)."""
    identity = request.get(IDENTITY_KEY)
    if identity is None:
        raise Unauthenticated("Sign in first.")
    return identity


def require_admin(request: web.Request) -> Identity:
    identity = identity_of(request)
    if not identity.is_admin:
        raise Forbidden("Only administrators can do this.")
    return identity


def require_member(request: web.Request) -> Identity:
    """Members and admins; guests only see what they have been let into."""
    identity = identity_of(request)
    if identity.user.role == "guest":
        raise Forbidden("Guests cannot do this.")
    return identity


def set_session_cookie(request: web.Request, response: web.StreamResponse, secret: str) -> None:
    config = request.app[CONFIG]
    response.set_cookie(
        SESSION_COOKIE,
        secret,
        max_age=int(config.session_days * 86400),
        path="/",
        httponly=True,
        samesite="Lax",
        secure=config.secure_cookies,
    )


def _expired_cookie(request: web.Request) -> str:
    """A Set-Cookie value that makes the browser forget a dead session cookie."""
    response = web.Response()
    clear_session_cookie(request, response)
    return response.cookies[SESSION_COOKIE].OutputString()


def clear_session_cookie(request: web.Request, response: web.StreamResponse) -> None:
    response.del_cookie(
        SESSION_COOKIE,
        path="/",
        httponly=True,
        samesite="Lax",
        secure=request.app[CONFIG].secure_cookies,
    )

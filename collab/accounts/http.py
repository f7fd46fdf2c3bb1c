"""REST routes for sign-in, the caller's own account, tokens, invitations and users.

Thin by design: parse the request into a struct, call the service, answer.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from aiohttp import web

from collab.accounts.auth import (
    clear_session_cookie,
    identity_of,
    require_admin,
    require_member,
    set_session_cookie,
)
from collab.accounts.models import Identity, invitation_view, token_view, user_detail, user_view
from collab.accounts.service import SignedIn
from collab.api.addresses import client_address
from collab.api.body import StrictBody, json_response, path_int, read_json, read_query
from collab.api.errors import Forbidden
from collab.api.public import public
from collab.appkeys import ACCOUNTS, METRICS

Username = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Password = Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]
DisplayName = Annotated[str, msgspec.Meta(max_length=200)]
Email = Annotated[str, msgspec.Meta(max_length=254)]
Role = Annotated[str, msgspec.Meta(max_length=16)]


class LoginRequest(StrictBody):
    username: Username
    password: Password


class PasswordChange(StrictBody):
    current_password: Password
    new_password: Password


class ProfileUpdate(StrictBody):
    display_name: DisplayName | None = None
    email: Email | None = None


class TokenCreate(StrictBody):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    expires_in_days: int | None = None


class InvitationCreate(StrictBody):
    role: Role = "member"
    email: Email | None = None
    expires_in_hours: float | None = None


class InvitationAccept(StrictBody):
    username: Username
    password: Password
    display_name: DisplayName | None = None


class UserCreate(StrictBody):
    username: Username
    password: Password
    display_name: DisplayName | None = None
    email: Email | None = None
    role: Role = "member"


class UserUpdate(StrictBody):
    role: Role | None = None
    active: bool | None = None
    display_name: DisplayName | None = None


class UserListQuery(StrictBody):
    after: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=500)] = 100
    include_inactive: bool = False


def _me_body(identity: Identity, csrf_token: str | None) -> dict[str, object]:
    return {"user": user_detail(identity.user), "csrf_token": csrf_token}


def _signed_in_response(request: web.Request, signed_in: SignedIn, status: int) -> web.Response:
    response = json_response(
        {"user": user_detail(signed_in.user), "csrf_token": signed_in.session.csrf_token},
        status=status,
    )
    set_session_cookie(request, response, signed_in.secret)
    return response


def _user_agent(request: web.Request) -> str:
    return request.headers.get("User-Agent", "")


@public
async def login(request: web.Request) -> web.Response:
    body = await read_json(request, LoginRequest)
    metrics = request.app[METRICS]
    try:
        signed_in = await request.app[ACCOUNTS].login(
            body.username,
            body.password,
            address=client_address(request),
            user_agent=_user_agent(request),
        )
    except Exception as exc:
        metrics.sign_ins.labels(getattr(exc, "code", "error")).inc()
        raise
    metrics.sign_ins.labels("ok").inc()
    return _signed_in_response(request, signed_in, 200)


async def logout(request: web.Request) -> web.Response:
    await request.app[ACCOUNTS].logout(identity_of(request))
    response = web.Response(status=204)
    clear_session_cookie(request, response)
    return response


async def get_me(request: web.Request) -> web.Response:
    identity = identity_of(request)
    csrf = identity.session.csrf_token if identity.session else None
    return json_response(_me_body(identity, csrf))


async def patch_me(request: web.Request) -> web.Response:
    identity = identity_of(request)
    body = await read_json(request, ProfileUpdate)
    user = await request.app[ACCOUNTS].update_profile(
        identity, display_name=body.display_name, email=body.email
    )
    return json_response({"user": user_detail(user)})


async def change_password(request: web.Request) -> web.Response:
    identity = identity_of(request)
    body = await read_json(request, PasswordChange)
    signed_in = await request.app[ACCOUNTS].change_password(
        identity,
        body.current_password,
        body.new_password,
        address=client_address(request),
        user_agent=_user_agent(request),
    )
    if signed_in is None:
        return web.Response(status=204)
    return _signed_in_response(request, signed_in, 200)


async def list_tokens(request: web.Request) -> web.Response:
    tokens = await request.app[ACCOUNTS].list_tokens(identity_of(request))
    return json_response({"tokens": [token_view(t) for t in tokens]})


async def create_token(request: web.Request) -> web.Response:
    body = await read_json(request, TokenCreate)
    token, secret = await request.app[ACCOUNTS].create_token(
        identity_of(request), body.name, body.expires_in_days
    )
    return json_response({**msgspec.structs.asdict(token_view(token)), "token": secret}, status=201)


async def delete_token(request: web.Request) -> web.Response:
    await request.app[ACCOUNTS].revoke_token(
        identity_of(request), path_int(request, "id", "token id")
    )
    return web.Response(status=204)


async def list_invitations(request: web.Request) -> web.Response:
    require_admin(request)
    invitations = await request.app[ACCOUNTS].list_invitations()
    return json_response({"invitations": [invitation_view(i) for i in invitations]})


async def create_invitation(request: web.Request) -> web.Response:
    identity = require_admin(request)
    body = await read_json(request, InvitationCreate)
    accounts = request.app[ACCOUNTS]
    invitation, code = await accounts.create_invitation(
        identity, role=body.role, email=body.email, expires_in_hours=body.expires_in_hours
    )
    return json_response(
        {
            **msgspec.structs.asdict(invitation_view(invitation)),
            "code": code,
            "url": accounts.invitation_url(code),
        },
        status=201,
    )


async def delete_invitation(request: web.Request) -> web.Response:
    require_admin(request)
    await request.app[ACCOUNTS].revoke_invitation(path_int(request, "code", "invitation id"))
    return web.Response(status=204)


@public
async def get_invitation(request: web.Request) -> web.Response:
    invitation = await request.app[ACCOUNTS].usable_invitation(request.match_info["code"])
    return json_response(
        {
            "role": invitation.role,
            "expires_at": invitation.expires_at,
            "first_run": invitation.created_by is None and invitation.role == "admin",
        }
    )


@public
async def accept_invitation(request: web.Request) -> web.Response:
    body = await read_json(request, InvitationAccept)
    signed_in = await request.app[ACCOUNTS].accept_invitation(
        request.match_info["code"],
        username=body.username,
        password=body.password,
        display_name=body.display_name,
        address=client_address(request),
        user_agent=_user_agent(request),
    )
    return _signed_in_response(request, signed_in, 201)


async def list_users(request: web.Request) -> web.Response:
    identity = require_member(request)
    query = read_query(request, UserListQuery)
    if query.include_inactive and not identity.is_admin:
        raise Forbidden("Only administrators can list deactivated users.")
    users = await request.app[ACCOUNTS].list_users(
        after=query.after, limit=query.limit + 1, include_inactive=query.include_inactive
    )
    view = user_detail if identity.is_admin else user_view
    page, more = users[: query.limit], len(users) > query.limit
    next_after = page[-1].username if more else None
    return json_response({"users": [view(u) for u in page], "next_after": next_after})


async def create_user(request: web.Request) -> web.Response:
    require_admin(request)
    body = await read_json(request, UserCreate)
    user = await request.app[ACCOUNTS].create_user(
        username=body.username,
        password=body.password,
        display_name=body.display_name,
        email=body.email,
        role=body.role,
    )
    return json_response({"user": user_detail(user)}, status=201)


async def get_user(request: web.Request) -> web.Response:
    identity = identity_of(request)
    username = request.match_info["username"].strip().lower()
    if identity.user.role == "guest" and username != identity.user.username:
        raise Forbidden("Guests can only look up themselves.")
    user = await request.app[ACCOUNTS].get_user(username)
    view = user_detail if identity.is_admin or user.id == identity.user.id else user_view
    return json_response({"user": view(user)})


async def patch_user(request: web.Request) -> web.Response:
    identity = require_admin(request)
    body = await read_json(request, UserUpdate)
    user = await request.app[ACCOUNTS].update_user(
        identity,
        request.match_info["username"],
        role=body.role,
        active=body.active,
        display_name=body.display_name,
    )
    return json_response({"user": user_detail(user)})


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/api/v1/login", login)
    r.add_post("/api/v1/logout", logout)
    r.add_get("/api/v1/me", get_me)
    r.add_patch("/api/v1/me", patch_me)
    r.add_post("/api/v1/me/password", change_password)
    r.add_get("/api/v1/tokens", list_tokens)
    r.add_post("/api/v1/tokens", create_token)
    r.add_delete("/api/v1/tokens/{id}", delete_token)
    r.add_get("/api/v1/invitations", list_invitations)
    r.add_post("/api/v1/invitations", create_invitation)
    r.add_get("/api/v1/invitations/{code}", get_invitation)
    r.add_delete("/api/v1/invitations/{code}", delete_invitation)
    r.add_post("/api/v1/invitations/{code}/accept", accept_invitation)
    r.add_get("/api/v1/users", list_users)
    r.add_post("/api/v1/users", create_user)
    r.add_get("/api/v1/users/{username}", get_user)
    r.add_patch("/api/v1/users/{username}", patch_user)

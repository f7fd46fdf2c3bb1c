"""Arranging what the chat UI's browser tests start from, without going through the UI.

People and rooms are made over the REST API, so a test spends its time (and
its screenshots) on the screen it is about. A browser context is signed in
with ``context.request``, which shares its cookie jar with the context's pages.
``SocketCutter`` stands between a page and the server's ``/ws`` to drop the
connection on demand, as a flaky network would.

This module imports nothing from ``conftest`` at run time (the conftest
imports it), so the fixtures there can be built from these pieces.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from playwright.sync_api import APIRequestContext, BrowserContext, Page, WebSocketRoute

MEMBER_PASSWORD = "correct-horse-battery-staple"

# What the page's WebSocket reports on ``SocketCutter.cut()``: 1006 is the code a
# browser gives when the connection is lost without a closing handshake.
CUT_CODE = 1006
# A browser's WebSocket may only be closed with 1000 or 3000-4999; the server
# side of a cut socket is closed with this, as a dropped network would end it.
SERVER_SIDE_CLOSE_CODE = 1000


class ApiCaller(Protocol):
    """Anything that makes an authenticated REST call: conftest's ``ApiClient``
    (its own session, or a bearer token) or ``BrowserApi`` (a browser context's
    session)."""

    def call(self, method: str, path: str, body: object = None) -> tuple[int, Any]: ...


@dataclass(frozen=True)
class Person:
    """A user a test made, with the password it needs to sign them in."""

    id: int
    username: str
    display_name: str
    role: str
    password: str


def create_member(
    admin: ApiCaller,
    username: str,
    *,
    display_name: str | None = None,
    role: str = "member",
    password: str = MEMBER_PASSWORD,
) -> Person:
    """Create a user with ``POST /api/v1/users`` (``createUser``) as an administrator.

    The display name defaults to the capitalised username, so screens and
    screenshots show a name that differs from the @handle, as real ones do.
    """
    name = display_name if display_name is not None else username.capitalize()
    status, body = admin.call(
        "POST",
        "/api/v1/users",
        {"username": username, "password": password, "display_name": name, "role": role},
    )
    assert status == 201, (status, body)
    user = body["user"]
    return Person(
        id=user["id"],
        username=user["username"],
        display_name=user["display_name"],
        role=user["role"],
        password=password,
    )


def create_members(admin: ApiCaller, *usernames: str) -> list[Person]:
    """Several members at once, each with ``MEMBER_PASSWORD``."""
    return [create_member(admin, username) for username in usernames]


def create_channel(
    caller: ApiCaller, name: str, members: Iterable[str | Person] = (), *, topic: str = ""
) -> dict[str, Any]:
    """Create a channel as the caller with ``POST /api/v1/rooms``; returns the room.

    The caller becomes its owner and a member; ``members`` are added besides.
    """
    usernames = [m.username if isinstance(m, Person) else m for m in members]
    status, body = caller.call(
        "POST",
        "/api/v1/rooms",
        {"kind": "channel", "name": name, "topic": topic, "members": usernames},
    )
    assert status == 201, (status, body)
    return body["room"]


class BrowserApi:
    """REST calls made with a browser context's own session (its cookie jar).

    What the test does this way, the context's pages see as their own doing:
    same user, same session. Unsafe methods carry the session's CSRF token and
    the Origin a page of the server would send.
    """

    def __init__(self, request: APIRequestContext, base_url: str, csrf_token: str) -> None:
        self.request = request
        self.base_url = base_url
        self.csrf_token = csrf_token

    @classmethod
    def sign_in(
        cls, context: BrowserContext, base_url: str, username: str, password: str
    ) -> BrowserApi:
        """Sign the whole context in, as the sign-in form would, but without the UI."""
        response = context.request.post(
            f"{base_url}/api/v1/login",
            data={"username": username, "password": password},
            headers={"Origin": base_url},
        )
        assert response.status == 200, (response.status, response.text())
        return cls(context.request, base_url, response.json()["csrf_token"])

    @classmethod
    def of(cls, context: BrowserContext, base_url: str) -> BrowserApi:
        """The API of a context that is already signed in (through the UI or not)."""
        response = context.request.get(f"{base_url}/api/v1/me")
        assert response.status == 200, (response.status, response.text())
        return cls(context.request, base_url, response.json()["csrf_token"])

    def call(self, method: str, path: str, body: object = None) -> tuple[int, Any]:
        headers = {"Accept": "application/json"}
        if method.upper() not in {"GET", "HEAD", "OPTIONS"}:
            headers["X-CSRF-Token"] = self.csrf_token
            headers["Origin"] = self.base_url
        response = self.request.fetch(
            self.base_url + path,
            method=method,
            headers=headers,
            data=body,
            fail_on_status_code=False,
        )
        text = response.text()
        return response.status, response.json() if text else None


class SocketCutter:
    """Stands between the page's ``/ws`` WebSocket and the server, and can cut it.

    Built on Playwright's WebSocket routing: each socket the page opens is
    connected to the real server and every message passes through unchanged.
    ``cut()`` closes every socket as a lost network would (the page sees a
    ``close`` event with code 1006 and no ``open`` after it), and refuses new
    ones at once until ``restore()``. Install it before the page opens its
    socket, i.e. before ``goto``::

        cutter = SocketCutter(page)
        page.goto("/")
        cutter.wait_for_opened(1)
        cutter.cut()        # the client shows it is offline and retries...
        cutter.restore()    # ...and its next retry gets through
        cutter.wait_for_opened(2)

    What a page observes, checked by tests/browser/test_infra.py: on ``cut()``
    an open socket gets one ``close`` event, ``code`` 1006, ``reason`` empty,
    and no ``error`` event. ``wasClean`` is true, since Playwright's route can
    only close cleanly (a real drop says false). The server side is closed with
    1000 at once (a real drop would leave it to the heartbeat). A socket opened
    while cut gets a ``close`` (1006) and never an ``open``. (Not 4000 for the
    cut: the server sends 4000 to mean "reconnect at once and resync".)

    Everything else passes through as it is: when the server stops
    (``server.stop()``) the page gets ``close`` 1001 "server shutting down";
    a socket opened while it is down gets ``error``, then ``close`` 1006 with
    ``wasClean`` false, and Chromium logs a console error (open the page with
    ``tolerate=[SERVER_DOWN]``).

    Counters only change while the test thread is inside a Playwright call
    (that is when the route's handlers run), so wait with ``wait_for_opened``
    or ``wait_for_refused``, not a bare ``time.sleep``.
    """

    def __init__(self, page: Page, url: str = "**/ws") -> None:
        self.opened = 0  # page sockets passed through to the server
        self.refused = 0  # page sockets closed at once because the network was cut
        self.cuts = 0  # open sockets that cut() closed
        self._cut = False
        self._routes: list[WebSocketRoute] = []
        self._page = page
        page.route_web_socket(url, self._handle)

    @property
    def is_cut(self) -> bool:
        return self._cut

    def _handle(self, ws: WebSocketRoute) -> None:
        if self._cut:
            self.refused += 1
            ws.close(code=CUT_CODE, reason="")
            return
        server = ws.connect_to_server()

        def page_closed(code: int | None, reason: str | None) -> None:
            # Without this handler Playwright would pass the page's code on to the
            # real socket, and a browser refuses close(1006): the server side of a
            # cut socket would stay open.
            if code != 1000 and not (code is not None and 3000 <= code <= 4999):
                code, reason = SERVER_SIDE_CLOSE_CODE, ""
            server.close(code=code, reason=reason)

        ws.on_close(page_closed)
        self._routes.append(ws)
        self.opened += 1

    def cut(self) -> None:
        """Drop every socket now and refuse new ones until ``restore()``."""
        self._cut = True
        routes, self._routes = self._routes, []
        for ws in routes:
            # A socket that has closed already ignores this.
            ws.close(code=CUT_CODE, reason="")
            self.cuts += 1

    def restore(self) -> None:
        """Let new sockets through to the server again."""
        self._cut = False

    def wait_for_opened(self, count: int, timeout: float = 5.0) -> None:
        """Wait until ``count`` sockets in all have been passed through to the server."""
        self._wait(lambda: self.opened >= count, f"{count} sockets opened", timeout)

    def wait_for_refused(self, count: int, timeout: float = 5.0) -> None:
        """Wait until ``count`` sockets in all have been refused while cut."""
        self._wait(lambda: self.refused >= count, f"{count} sockets refused", timeout)

    def _wait(self, done: Callable[[], bool], what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"waited {timeout} s for {what}; opened={self.opened} refused={self.refused}"
                )
            # The route's handlers run only while Playwright has the thread.
            self._page.wait_for_timeout(25)

"""The browser-test fixtures themselves work: axe, restarts, the socket cutter, people.

The chat UI's tests will lean on these; a fixture that silently does nothing
(an accessibility check that never ran, a cut that leaves the socket open)
would let those tests pass for the wrong reason, so each is checked here
against the real server and Chromium.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.request import urlopen

import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page, expect

from tests.browser.chat_fixtures import (
    CUT_CODE,
    MEMBER_PASSWORD,
    BrowserApi,
    SocketCutter,
    create_channel,
    create_member,
    create_members,
)
from tests.browser.conftest import (
    ADMIN_PASSWORD,
    ADMIN_USERNAME,
    ARTIFACTS,
    SERVER_DOWN,
    CheckA11y,
    Server,
    SignedInPage,
    make_axe_checker,
)

OpenPage = Callable[..., Page]

# Page-side helpers for the socket tests: each socket has a label, and every
# event it gets is logged in window.socketLog as [label, event, ...details].
SOCKET_JS = """() => {
    window.socketLog = [];
    window.sockets = {};
    window.openSocket = (label) => {
        const ws = new WebSocket(location.origin.replace(/^http/, "ws") + "/ws");
        const log = (...entry) => window.socketLog.push([label, ...entry]);
        ws.onopen = () => log("open");
        ws.onmessage = (event) => {
            const frame = JSON.parse(event.data);
            log("message", frame.type ?? `re:${frame.re}`);
        };
        ws.onerror = () => log("error");
        ws.onclose = (event) => log("close", event.code, event.reason, event.wasClean);
        window.sockets[label] = ws;
    };
}"""


def socket_events(page: Page, label: str) -> list[list[Any]]:
    return [entry[1:] for entry in page.evaluate("window.socketLog") if entry[0] == label]


def wait_for_event(page: Page, label: str, *event: object) -> None:
    """Wait until socket ``label`` has logged an event starting with ``event``.

    (A function, not an expression string: the app's CSP forbids eval, and
    Playwright evaluates an expression string with it while it polls.)
    """
    page.wait_for_function(
        """([label, event]) => window.socketLog.some(
            e => e[0] === label && event.every((part, i) => e[i + 1] === part))""",
        arg=[label, list(event)],
    )


def kinds(events: list[list[Any]]) -> list[str]:
    """The events' kinds without the server's messages after hello, whose number varies."""
    return [e[0] for e in events if e[0] != "message" or e[1] == "hello"]


def open_sockets_on_server(server: Server) -> float:
    """The node's own count of open WebSockets (its Prometheus gauge)."""
    with urlopen(f"{server.url}/metrics", timeout=5) as response:
        text = response.read().decode()
    match = re.search(r"^collab_websockets_open (\S+)$", text, re.MULTILINE)
    assert match, text
    return float(match.group(1))


def wait_for_server_sockets(page: Page, server: Server, count: int) -> None:
    for _ in range(100):
        if open_sockets_on_server(server) == count:
            return
        page.wait_for_timeout(50)
    raise AssertionError(f"the server has {open_sockets_on_server(server)} sockets, not {count}")


def blank_same_origin_page(page: Page) -> None:
    """A page of the server's origin that runs none of the app's code.

    The app in web/ may open sockets of its own; these tests count only theirs.
    """
    page.goto("/healthz")
    page.evaluate(SOCKET_JS)


# -- axe ----------------------------------------------------------------------


def test_axe_checks_the_sign_in_page(server: Server, open_page: OpenPage, axe: CheckA11y) -> None:
    server.create_first_admin()
    page = open_page()
    response = page.goto("/#/sign-in")
    assert response is not None
    # The check runs under the app's own strict policy, not a weakened one.
    assert "script-src 'self'" in response.headers["content-security-policy"]
    expect(page.get_by_role("heading", name="Sign in to collab")).to_be_visible()

    results = axe(page, "sign-in")

    assert results["testEngine"] == {"name": "axe-core", "version": "4.14.1"}
    assert results["toolOptions"]["runOnly"]["values"] == [
        "wcag2a",
        "wcag2aa",
        "wcag21a",
        "wcag21aa",
    ]
    passed = {rule["id"] for rule in results["passes"]}
    assert {"label", "color-contrast", "html-has-lang"} <= passed, passed
    saved = json.loads((ARTIFACTS / "axe-sign-in.json").read_text())
    assert saved["url"].endswith("/#/sign-in")
    assert saved["violations"] == results["violations"]


def test_axe_fails_a_test_with_a_readable_list(open_page: OpenPage, axe: CheckA11y) -> None:
    page = open_page()
    page.set_content(
        """<!doctype html><html lang="en"><title>Broken</title><body>
        <main><section id="fine"><h1>Fine</h1><p>Nothing wrong here.</p></section>
        <section id="broken"><img src="data:,"><button class="icon"></button></section>
        </main></body></html>"""
    )

    with pytest.raises(pytest.fail.Exception) as failure:
        axe(page, "infra-broken")
    message = str(failure.value)
    assert "axe: 2 serious or critical violation(s) on 'infra-broken':" in message
    assert "- image-alt (critical): Images must have alternative text" in message
    assert "- button-name (critical): Buttons must have discernible text" in message
    assert "1 element(s): button\n" in message
    assert "Full result: tests/artifacts/axe-infra-broken.json" in message

    # Limited to a part of the page without the problems, the same check passes.
    results = axe(page, "infra-fine-part", include="#fine")
    assert results["violations"] == []
    assert results["passes"]


def test_axe_without_node_modules_fails_and_says_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(pytest.fail.Exception) as failure:
        make_axe_checker(tmp_path / "axe.min.js")
    assert "run `make test` once" in str(failure.value)


# -- restarts -----------------------------------------------------------------


def test_server_restarts_on_the_same_port_with_its_data(
    server: Server, signed_in_page: SignedInPage, open_page: OpenPage
) -> None:
    server.create_first_admin(display_name="Ada Lovelace")
    page = signed_in_page(ADMIN_USERNAME, goto="/#/sign-in", tolerate=[SERVER_DOWN])
    url = server.url

    assert server.stop() == 0
    with pytest.raises(PlaywrightError, match="ERR_CONNECTION_REFUSED"):
        page.reload()

    server.start()
    assert server.url == url
    assert server.first_run_link == ""  # users exist: no new link, nothing to wait for
    assert server.log().count("collab listening on") == 2
    # Same data: the browser's session survived, and the sign-in page loads.
    me = page.context.request.get(f"{url}/api/v1/me")
    assert me.status == 200
    assert me.json()["user"]["display_name"] == "Ada Lovelace"
    fresh = open_page()
    fresh.goto("/#/sign-in")
    expect(fresh.get_by_role("heading", name="Sign in to collab")).to_be_visible()


def test_restart_before_any_user_gives_a_new_first_run_link(server: Server) -> None:
    first = server.first_run_link
    server.restart()
    second = server.wait_first_run_link(timeout=5)
    assert second != first
    # The new link is the one that works (create_first_admin reads it).
    admin = server.create_first_admin()
    status, body = admin.call("GET", "/api/v1/me")
    assert status == 200
    assert body["user"]["role"] == "admin"


# -- the socket cutter ----------------------------------------------------------


def test_socket_cutter_passes_sockets_through_cuts_them_and_restores(
    server: Server, signed_in_page: SignedInPage
) -> None:
    server.create_first_admin()
    page = signed_in_page(ADMIN_USERNAME)
    cutter = SocketCutter(page)
    blank_same_origin_page(page)

    page.evaluate("openSocket('a')")
    wait_for_event(page, "a", "message", "hello")
    assert socket_events(page, "a")[:2] == [["open"], ["message", "hello"]]
    assert cutter.opened == 1
    wait_for_server_sockets(page, server, 1)

    cutter.cut()
    wait_for_event(page, "a", "close")
    # What the page observes: one close, code 1006, no reason; no error event.
    events = socket_events(page, "a")
    assert kinds(events) == ["open", "message", "close"]
    assert events[-1] == ["close", CUT_CODE, "", True]
    assert page.evaluate("window.sockets.a.readyState") == 3  # CLOSED
    assert cutter.cuts == 1
    wait_for_server_sockets(page, server, 0)  # the server side is closed too

    # While cut, a new socket is closed at once and never opens.
    page.evaluate("openSocket('b')")
    cutter.wait_for_refused(1)
    wait_for_event(page, "b", "close")
    assert socket_events(page, "b") == [["close", CUT_CODE, "", True]]
    assert cutter.opened == 1

    cutter.restore()
    page.evaluate("openSocket('c')")
    cutter.wait_for_opened(2)
    wait_for_event(page, "c", "message", "hello")
    assert socket_events(page, "c")[:2] == [["open"], ["message", "hello"]]
    wait_for_server_sockets(page, server, 1)

    # Messages pass through both ways: the server answers a ping the page sends.
    page.evaluate("window.sockets.c.send(JSON.stringify({type: 'ping', id: 'p1'}))")
    wait_for_event(page, "c", "message", "re:p1")

    # A close the page makes itself reaches the server.
    page.evaluate("window.sockets.c.close(3000, 'leaving')")
    wait_for_server_sockets(page, server, 0)
    assert cutter.refused == 1


def test_the_page_sees_its_socket_close_when_the_server_stops_and_reconnects_after(
    server: Server, signed_in_page: SignedInPage
) -> None:
    server.create_first_admin()
    page = signed_in_page(ADMIN_USERNAME, tolerate=[SERVER_DOWN])
    cutter = SocketCutter(page)
    blank_same_origin_page(page)
    page.evaluate("openSocket('before')")
    wait_for_event(page, "before", "message", "hello")

    server.stop()
    wait_for_event(page, "before", "close")
    # SIGTERM drains the node: it says so, then closes with 4000 (reconnect at once,
    # through the load balancer, and sync). (wasClean varies: the process may exit
    # before the browser's half of the closing handshake is through.)
    events = socket_events(page, "before")
    assert ["message", "server.draining"] in events
    assert events[-1][:3] == ["close", 4000, "node draining; reconnect and sync"]

    # While the server is down a new socket fails as a real one would.
    page.evaluate("openSocket('down')")
    wait_for_event(page, "down", "close")
    assert socket_events(page, "down") == [["error"], ["close", 1006, "", False]]

    server.start()
    page.evaluate("openSocket('after')")
    wait_for_event(page, "after", "message", "hello")
    assert socket_events(page, "after")[:2] == [["open"], ["message", "hello"]]
    assert cutter.opened == 3


# -- people and rooms -----------------------------------------------------------


def test_people_helpers_make_members_sign_them_in_and_make_a_channel(
    server: Server, signed_in_page: SignedInPage
) -> None:
    admin = server.create_first_admin()
    grace = create_member(admin, "grace", display_name="Grace Hopper")
    alan, edsger = create_members(admin, "alan", "edsger")
    assert (grace.username, grace.display_name, grace.role) == ("grace", "Grace Hopper", "member")
    assert (alan.display_name, alan.password) == ("Alan", MEMBER_PASSWORD)
    assert len({grace.id, alan.id, edsger.id}) == 3

    page = signed_in_page(grace)
    assert page.url == "about:blank"  # not navigated: room to route sockets first
    me = page.context.request.get(f"{server.url}/api/v1/me")
    assert me.status == 200
    assert me.json()["user"]["username"] == "grace"

    # A channel made with grace's browser session (CSRF token and Origin) ...
    room = create_channel(BrowserApi.of(page.context, server.url), "general", [alan, "edsger"])
    assert room["kind"] == "channel"
    assert room["name"] == "general"
    assert room["member_count"] == 3
    # ... has grace as its owner and the others as members: alan sees it.
    status, body = server.api().login("alan", MEMBER_PASSWORD).call("GET", "/api/v1/rooms")
    assert status == 200
    assert room["id"] in {summary["room"]["id"] for summary in body["rooms"]}
    # And the admin's ApiClient is a caller too.
    other = create_channel(admin, "random", [grace])
    assert other["id"] != room["id"]

    # Without the CSRF token the same browser session is refused.
    refused = page.context.request.post(
        f"{server.url}/api/v1/rooms", data={"kind": "channel", "name": "nope"}
    )
    assert refused.status == 403
    assert refused.json()["error"]["code"] == "csrf_failed"


def test_signed_in_page_takes_the_admin_by_name(
    server: Server, signed_in_page: SignedInPage
) -> None:
    server.create_first_admin(display_name="Ada Lovelace")
    # The page's own requests carry the session, not only context.request's.
    page = signed_in_page(ADMIN_USERNAME, goto="/api/v1/me")
    assert json.loads(page.inner_text("body"))["user"]["display_name"] == "Ada Lovelace"
    other = signed_in_page(ADMIN_USERNAME, ADMIN_PASSWORD)
    assert other.context is not page.context
    assert other.context.request.get(f"{server.url}/api/v1/me").status == 200
